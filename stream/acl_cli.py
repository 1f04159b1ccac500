"""``urbansense acl``: write the broker's password and ACL files from the site registry.

Writes the broker's two files into ``--output-dir`` and the plaintext credentials
next to it (see :mod:`stream.acl` for their contents):

``DIR/passwd``          the hashed password file (mode 0644: salted PBKDF2 hashes,
                        which the broker reads as its own user inside its container)
``DIR/acl``             the access rules of every user (mode 0644)
``DIR/../credentials``  the plaintext ``user:password`` lines for provisioning (mode
                        0600), or where ``--credentials`` says

The credentials stay out of ``DIR`` so that the whole directory can be mounted into
the broker's container: the broker then sees a new ``passwd`` and ``acl`` (they are
replaced by renaming, which a single-file mount would not follow).

Every gateway of the registry gets a user named by its id, plus one user for the
bridge processes and one for the stream workers. Passwords are random, except that a
user already in the credentials keeps its password (``--rotate USER`` issues a new
one), so the command can run again whenever the registry changes. Send the broker
SIGHUP afterwards and it reloads both files without dropping a connection.

Exit status: 0 written, 2 bad input (the message names the file or user).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from stream.acl import (
    BRIDGE_USER,
    DEFAULT_ITERATIONS,
    STREAM_USER,
    AclError,
    Role,
    parse_credentials,
    plan_accounts,
    render_acl,
    render_credentials,
    render_password_file,
)
from telemetry.documents import DocumentError
from telemetry.registry import load_example_registry, load_registry

__all__ = ["acl_command", "add_parser"]

PASSWORD_FILE = "passwd"  # noqa: S105 -- a file name, not a password
"""The hashed password file's name in the output directory."""
ACL_FILE = "acl"
"""The ACL file's name in the output directory."""
CREDENTIALS_FILE = "credentials"
"""The plaintext credentials file's name in the output directory."""


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register the ``acl`` subcommand on an argparse subparsers object.

    >>> parser = argparse.ArgumentParser(prog="urbansense")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["acl", "--output-dir", "secrets/broker", "--rotate", "gw-1"])
    >>> args.registry, args.rotate, args.func is acl_command
    ('example', ['gw-1'], True)
    """
    parser = subparsers.add_parser(
        "acl",
        help="write the MQTT broker's password and ACL files from the site registry",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--registry",
        default="example",
        help="site registry YAML, or 'example' for the shipped example city (default)",
    )
    parser.add_argument(
        "--output-dir",
        "-o",
        type=Path,
        required=True,
        help="where passwd and acl are written (created if missing)",
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        help="the plaintext credentials file (default: credentials next to --output-dir)",
    )
    parser.add_argument(
        "--bridge-user", default=BRIDGE_USER, help="MQTT user of the bridge (default %(default)s)"
    )
    parser.add_argument(
        "--stream-user", default=STREAM_USER, help="MQTT user of the stream (default %(default)s)"
    )
    parser.add_argument(
        "--rotate",
        action="append",
        default=[],
        metavar="USER",
        help="issue USER a new password even if it has one (repeatable)",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=DEFAULT_ITERATIONS,
        help="PBKDF2 rounds of new hashes (default %(default)s)",
    )
    parser.set_defaults(func=acl_command)
    return parser


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _write(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` atomically; the file never exists with a looser mode."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def acl_command(args: argparse.Namespace) -> int:
    """Write the three files the options ask for; returns the exit status."""
    try:
        return _run(args)
    except (AclError, DocumentError, OSError) as error:
        print(f"urbansense acl: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    registry = (
        load_example_registry() if args.registry == "example" else load_registry(args.registry)
    )
    out: Path = args.output_dir
    credentials_path: Path = args.credentials or out.parent / CREDENTIALS_FILE
    # Only the credentials are secret: their directory is private if this creates it.
    credentials_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    out.mkdir(mode=0o755, parents=True, exist_ok=True)
    old_credentials = _read(credentials_path)
    existing = (
        {} if old_credentials is None else parse_credentials(old_credentials, str(credentials_path))
    )
    old_passwd = _read(out / PASSWORD_FILE)
    existing_hashes = (
        {} if old_passwd is None else parse_credentials(old_passwd, str(out / PASSWORD_FILE))
    )
    accounts = plan_accounts(
        registry,
        existing=existing,
        bridge_user=args.bridge_user,
        stream_user=args.stream_user,
        rotate=args.rotate,
    )
    _write(credentials_path, render_credentials(accounts), 0o600)
    _write(
        out / PASSWORD_FILE,
        render_password_file(accounts, existing_hashes=existing_hashes, iterations=args.iterations),
        0o644,
    )
    _write(out / ACL_FILE, render_acl(accounts), 0o644)
    issued = [a.username for a in accounts if existing.get(a.username) != a.password]
    dropped = sorted(set(existing) - {a.username for a in accounts})
    gateways = sum(a.role is Role.GATEWAY for a in accounts)
    print(f"urbansense acl: {gateways} gateways, a bridge and a stream user in {out}/")
    print(f"  plaintext credentials (keep secret): {credentials_path}")
    print(f"  new passwords: {', '.join(issued) if issued else 'none'}")
    if dropped:
        print(f"  removed (no longer in the registry): {', '.join(dropped)}")
    print("  reload a running broker with SIGHUP (docker-compose kill -s HUP mosquitto)")
    return 0

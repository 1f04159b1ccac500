"""``urbansense grafana generate|push``: write the boards to files, or upload them.

``urbansense grafana generate [--out DIR] [--registry FILE] [--timezone TZ] [--check]``
    Writes every board as Grafana dashboard JSON into ``--out`` (default
    ``deploy/grafana/dashboards``), after checking every query against the measurements
    the sink writes. With ``--check`` it writes nothing and exits 1 when the files in
    ``--out`` differ from what the code generates (a CI step for hand edits).

``urbansense grafana push --url URL (--token TOKEN | --user USER --password PASSWORD)``
    Uploads the boards to a running Grafana into the folder ``urbansense``,
    replacing earlier versions of the same boards (stable uids, ``overwrite``), so it
    can run on every deployment. The token (or password) may come from the
    ``GRAFANA_TOKEN`` (or ``GRAFANA_PASSWORD``) environment variable instead, which
    keeps it out of the process list.

The maps carry the registry's coordinates: ``--registry`` names the site registry
(default: the example city's).

Exit status: 0 done, 1 ``--check`` found a difference or Grafana refused, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from stream.grafana.boards import BoardSettings
from stream.grafana.generate import BoardError, build_boards, check_boards, render, write_boards
from stream.grafana.push import FOLDER_TITLE, FOLDER_UID, PushError, connect, push_boards
from telemetry.documents import DocumentError
from telemetry.registry import load_example_registry, load_registry

__all__ = ["add_parser", "generate_command", "push_command"]

DEFAULT_OUT = Path("deploy/grafana/dashboards")
"""Where ``generate`` writes, relative to the working directory (the repository's root)."""


def _settings(args: argparse.Namespace) -> BoardSettings:
    registry = (
        load_example_registry()
        if args.registry in (None, "example")
        else load_registry(args.registry)
    )
    return BoardSettings(registry=registry, timezone=args.timezone)


def _differences(out: Path, expected: Mapping[str, str]) -> list[str]:
    found = []
    for name, text in expected.items():
        path = out / name
        if not path.exists():
            found.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            found.append(f"{path}: differs from what the code generates")
    for path in sorted(out.glob("*.json")):
        if path.name not in expected:
            found.append(f"{path}: not a generated board")
    return found


def generate_command(args: argparse.Namespace) -> int:
    """Write (or with ``--check`` compare) the boards' files; the exit status."""
    try:
        settings = _settings(args)
        out = Path(args.out)
        if args.check:
            boards = build_boards(settings)
            problems = check_boards(boards)
            problems += _differences(out, {n: render(b) for n, b in boards.items()})
            for problem in problems:
                print(f"urbansense grafana: {problem}", file=sys.stderr)
            if problems:
                print("regenerate with: urbansense grafana generate", file=sys.stderr)
            return 1 if problems else 0
        paths = write_boards(out, settings)
    except (BoardError, DocumentError, OSError) as exc:
        print(f"urbansense grafana: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


def push_command(args: argparse.Namespace) -> int:
    """Upload the boards to Grafana; the exit status."""
    token = args.token or os.environ.get("GRAFANA_TOKEN") or None
    password = args.password or os.environ.get("GRAFANA_PASSWORD")
    if args.user is None and token is None:
        print("urbansense grafana: push needs --token or --user and --password", file=sys.stderr)
        return 2
    try:
        settings = _settings(args)
        api = connect(
            args.url, token=None if args.user else token, user=args.user, password=password
        )
        boards = build_boards(settings)
        problems = check_boards(boards)
        if problems:
            raise BoardError("\n".join(problems))
        pushed = push_boards(api, boards, folder_uid=args.folder_uid, folder_title=args.folder)
    except (BoardError, DocumentError, OSError, ValueError) as exc:
        print(f"urbansense grafana: {exc}", file=sys.stderr)
        return 2
    except PushError as exc:
        hint = " (retrying may help)" if exc.retryable else ""
        print(f"urbansense grafana: {exc}{hint}", file=sys.stderr)
        return 1
    for board in pushed:
        print(f"{board.uid} version {board.version} {board.url}")
    return 0


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``grafana generate`` and ``grafana push`` on an argparse subparsers object.

    >>> parser = argparse.ArgumentParser(prog="urbansense")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["grafana", "push", "--url", "http://g:3000", "--token", "t"])
    >>> args.url, args.token, args.folder, args.func is push_command
    ('http://g:3000', 't', 'urbansense', True)
    """
    parser = subparsers.add_parser(
        "grafana",
        help="generate the Grafana boards, or push them to a running Grafana",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="grafana_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--registry", help="site registry (a file, or 'example', the default): the maps' places"
    )
    common.add_argument(
        "--timezone",
        default="Asia/Shanghai",
        help="the city's IANA time zone, where a day of visitors starts (default Asia/Shanghai)",
    )
    generate = commands.add_parser(
        "generate", parents=[common], help="write the boards' JSON files"
    )
    generate.add_argument(
        "-o", "--out", default=str(DEFAULT_OUT), help=f"directory (default {DEFAULT_OUT})"
    )
    generate.add_argument(
        "--check", action="store_true", help="compare with the files in --out, write nothing"
    )
    generate.set_defaults(func=generate_command)
    push = commands.add_parser("push", parents=[common], help="upload the boards to Grafana")
    push.add_argument("--url", required=True, help="Grafana's base URL, e.g. http://grafana:3000")
    push.add_argument("--token", help="service-account token (or GRAFANA_TOKEN)")
    push.add_argument("--user", help="user for basic authentication, instead of a token")
    push.add_argument("--password", help="that user's password (or GRAFANA_PASSWORD)")
    push.add_argument(
        "--folder", default=FOLDER_TITLE, help=f"folder title (default {FOLDER_TITLE})"
    )
    push.add_argument("--folder-uid", default=FOLDER_UID, help=f"folder uid (default {FOLDER_UID})")
    push.set_defaults(func=push_command)
    return parser

"""Mosquitto credentials and access rules for a city's gateways, from the site registry.

The broker of a deployment (``deploy/mosquitto/mosquitto-tls.conf``) refuses
anonymous clients and reads two files that this module writes:

* a **password file** in Mosquitto's own format, one ``user:$7$...`` line a user,
  the password hashed with PBKDF2-HMAC-SHA512 as ``mosquitto_passwd`` of Mosquitto
  2.0 does (:func:`hash_password`);
* an **ACL file** that lets each user do only its job (:func:`acl_rules`):

  ==========  ==========================================================================
  gateway     publish its own ``urbansense/v1/<gateway_id>/readings`` and ``.../status``
              (the status is retained and is its last will), and subscribe to its own
              ``urbansense/v1/<gateway_id>/commands``; nothing else
  bridge      subscribe to every gateway's readings and status (the MQTT 5 shared
              subscription ``$share/<group>/...`` is checked against the same topics)
  stream      publish alerts under ``urbansense/v1/alerts/`` and commands to gateways
  ==========  ==========================================================================

Mosquitto quietly drops a publish that the ACL forbids (the client still gets its
PUBACK). Mosquitto 2.0's ACL file grants every SUBSCRIBE but checks read access on
each message before delivering it, so a subscription to another gateway's topics
delivers nothing. A gateway that was taken over can neither pose as another gateway
nor read another's commands.

A third file, the **plaintext credentials** (``user:password`` lines, the format
``mosquitto_passwd -U`` also reads), is what the operator hands to each gateway's
configuration; :func:`plan_accounts` reuses the passwords in it, so running the
generator again after a gateway joins the registry issues a password to the new
gateway only. Everything here is pure: the files are written by ``urbansense acl``
(:mod:`stream.acl_cli`).

>>> from telemetry.registry import load_example_registry
>>> accounts = plan_accounts(load_example_registry(), existing={}, password=lambda: "pw")
>>> [a.username for a in accounts][-2:]
['urbansense-bridge', 'urbansense-stream']
>>> print(render_acl(accounts[:1]), end="")  # doctest: +ELLIPSIS
# Mosquitto ACL file of urbansense, written by `urbansense acl`...
<BLANKLINE>
# gateway gw-lakeside-01 (site st-aq-pier)
user gw-lakeside-01
topic write urbansense/v1/gw-lakeside-01/readings
topic write urbansense/v1/gw-lakeside-01/status
topic read urbansense/v1/gw-lakeside-01/commands
>>> verify_password("pw", hash_password("pw", salt=b"0123456789ab"))
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from telemetry.errors import InvalidIdError
from telemetry.ids import check_id
from telemetry.registry import Registry
from telemetry.topics import ROOT, alerts_filter, readings_filter, readings_topic, status_filter
from telemetry.topics import status_topic as gateway_status_topic

__all__ = [
    "BRIDGE_USER",
    "COMMANDS",
    "DEFAULT_ITERATIONS",
    "STREAM_USER",
    "Access",
    "Account",
    "AclError",
    "Role",
    "Rule",
    "acl_rules",
    "commands_topic",
    "hash_password",
    "new_password",
    "parse_credentials",
    "plan_accounts",
    "render_acl",
    "render_credentials",
    "render_password_file",
    "verify_password",
]

BRIDGE_USER: Final = "urbansense-bridge"
"""The default MQTT user of the bridge processes (they all share it)."""

STREAM_USER: Final = "urbansense-stream"
"""The default MQTT user of the stream workers, which publish alerts and commands."""

COMMANDS: Final = "commands"
"""The topic level under a gateway's id that carries commands to it."""

DEFAULT_ITERATIONS: Final = 1000
"""PBKDF2 rounds of a new hash.

``mosquitto_passwd`` of Mosquitto 2.0 uses 101; ten times that still costs the
broker about a millisecond a CONNECT, even when every gateway reconnects at once
after a restart, and makes a stolen password file ten times dearer to attack.
"""

_HASH_TYPE: Final = 7  # Mosquitto's pw_sha512_pbkdf2
_SALT_BYTES: Final = 12  # as mosquitto_passwd
_PASSWORD_BYTES: Final = 24  # 192 random bits, 32 URL-safe characters


class AclError(ValueError):
    """Credentials or access rules that cannot be written; the message names the user or line."""


class Role(StrEnum):
    """What an MQTT user is for, which decides its access rules."""

    GATEWAY = "gateway"
    BRIDGE = "bridge"
    STREAM = "stream"


class Access(StrEnum):
    """A Mosquitto ACL access type: ``write`` is publish, ``read`` is subscribe and receive."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``topic <access> <topic filter>`` line of an ACL file."""

    access: Access
    topic: str

    def line(self) -> str:
        """The line as the ACL file holds it."""
        return f"topic {self.access} {self.topic}"


@dataclass(frozen=True, slots=True)
class Account:
    """An MQTT user to write into the broker's files.

    Attributes:
        username: the MQTT user name; a gateway's is its id in the registry.
        role: what it is for.
        password: its plaintext password.
        comment: a note for the ACL file (a gateway's site).
    """

    username: str
    role: Role
    password: str
    comment: str = ""

    def __repr__(self) -> str:  # never print a password by accident
        return f"Account(username={self.username!r}, role={self.role.value!r})"


def commands_topic(gateway_id: str) -> str:
    """The topic a gateway reads its commands from.

    >>> commands_topic("gw-01")
    'urbansense/v1/gw-01/commands'
    """
    # Built from the readings topic so that the id is checked the same way.
    return readings_topic(gateway_id).rsplit("/", 1)[0] + f"/{COMMANDS}"


def acl_rules(account: Account) -> tuple[Rule, ...]:
    """The topics a user may publish and subscribe to, by its role.

    >>> [r.line() for r in acl_rules(Account("urbansense-bridge", Role.BRIDGE, "x"))]
    ['topic read urbansense/v1/+/readings', 'topic read urbansense/v1/+/status']
    """
    if account.role is Role.GATEWAY:
        return (
            Rule(Access.WRITE, readings_topic(account.username)),
            Rule(Access.WRITE, gateway_status_topic(account.username)),
            Rule(Access.READ, commands_topic(account.username)),
        )
    if account.role is Role.BRIDGE:
        return (Rule(Access.READ, readings_filter()), Rule(Access.READ, status_filter()))
    return (
        Rule(Access.WRITE, alerts_filter()),
        Rule(Access.WRITE, f"{ROOT}/+/{COMMANDS}"),
    )


def new_password() -> str:
    """A random password: 32 URL-safe characters, safe in TOML, shell and ``user:password``."""
    return secrets.token_urlsafe(_PASSWORD_BYTES)


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
) -> str:
    """Hash a password as Mosquitto 2.0's password file holds it.

    The format is ``$7$<iterations>$<salt>$<hash>``: PBKDF2-HMAC-SHA512 of the
    UTF-8 password with a 12-byte random salt, 64 bytes long, salt and hash in
    standard base64 -- what ``mosquitto_passwd`` writes, so either tool can
    verify the other's lines.

    >>> hash_password("s3cret", salt=bytes(12), iterations=101)[:32]
    '$7$101$AAAAAAAAAAAAAAAA$dVG6VmCV'

    Args:
        password: the plaintext password.
        salt: the salt; random unless given (tests give one).
        iterations: PBKDF2 rounds.

    Raises:
        AclError: an empty password or fewer than one round.
    """
    if not password:
        msg = "an empty password cannot be hashed"
        raise AclError(msg)
    if iterations < 1:
        msg = f"iterations must be at least 1, got {iterations}"
        raise AclError(msg)
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    encoded_salt = base64.b64encode(salt).decode("ascii")
    return f"${_HASH_TYPE}${iterations}${encoded_salt}${base64.b64encode(digest).decode('ascii')}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (as Mosquitto checks a CONNECT).

    Raises:
        AclError: ``hashed`` is not a ``$7$`` hash.
    """
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != str(_HASH_TYPE) or not parts[2].isdigit():
        msg = f"not a Mosquitto $7$ password hash: {hashed[:20]!r}..."
        raise AclError(msg)
    salt = base64.b64decode(parts[3], validate=True)
    expected = base64.b64decode(parts[4], validate=True)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(digest, expected)


def _check_username(username: str, what: str) -> None:
    try:
        check_id(username, what)
    except InvalidIdError as error:
        raise AclError(str(error)) from error
    if ":" in username:
        # The password file and the credentials file separate user and password with ':'.
        msg = f"{what} {username!r}: a ':' cannot be part of an MQTT user name in Mosquitto's files"
        raise AclError(msg)


def parse_credentials(text: str, source: str = "<credentials>") -> dict[str, str]:
    r"""Read ``user:password`` lines (``#`` comments and blank lines skipped).

    >>> parse_credentials("# c\ngw-01:abc\nurbansense-bridge:d:e\n")
    {'gw-01': 'abc', 'urbansense-bridge': 'd:e'}

    Raises:
        AclError: a line without ``:``, an empty user or password, or a user twice;
            the message names the source and line number.
    """
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            msg = f"{source}:{number}: expected user:password"
            raise AclError(msg)
        if user in found:
            msg = f"{source}:{number}: user {user!r} appears twice"
            raise AclError(msg)
        found[user] = password
    return found


def plan_accounts(
    registry: Registry,
    *,
    existing: Mapping[str, str],
    bridge_user: str = BRIDGE_USER,
    stream_user: str = STREAM_USER,
    password: Callable[[], str] = new_password,
    rotate: Iterable[str] = (),
) -> list[Account]:
    """Every gateway of the registry, then the bridge and the stream, with their passwords.

    Args:
        registry: the site registry; each gateway becomes a user named by its id.
        existing: passwords already issued, by user (the credentials file); a user
            found there keeps its password.
        bridge_user: the user name of the bridge processes.
        stream_user: the user name of the stream workers.
        password: makes a new password (random by default).
        rotate: users that get a new password even if they have one.

    Raises:
        AclError: a user name Mosquitto's files cannot hold, a name used twice (a
            gateway named like the bridge), or a user to rotate that is not planned.
    """
    wanted = [(g.id, Role.GATEWAY, f"site {g.site}") for g in registry.gateways]
    wanted += [(bridge_user, Role.BRIDGE, ""), (stream_user, Role.STREAM, "")]
    to_rotate = set(rotate)
    seen: set[str] = set()
    accounts: list[Account] = []
    for username, role, comment in wanted:
        _check_username(username, f"{role} user")
        if username in seen:
            msg = f"user {username!r} is planned twice; give the bridge or stream another name"
            raise AclError(msg)
        seen.add(username)
        kept = None if username in to_rotate else existing.get(username)
        accounts.append(Account(username, role, kept or password(), comment))
    unknown = sorted(to_rotate - seen)
    if unknown:
        msg = f"cannot rotate unknown user(s): {', '.join(unknown)}"
        raise AclError(msg)
    return accounts


def _header(what: str, lines: Sequence[str] = ()) -> list[str]:
    return [f"# {what} of urbansense, written by `urbansense acl` from the site registry.", *lines]


def render_acl(accounts: Iterable[Account]) -> str:
    """The ACL file: one ``user`` block per account, in order."""
    lines = _header(
        "Mosquitto ACL file",
        [
            "# Regenerate it rather than editing it. No rule comes before the first `user`",
            "# line, so an anonymous client may do nothing (the broker refuses them anyway).",
        ],
    )
    for account in accounts:
        note = f" ({account.comment})" if account.comment else ""
        lines += ["", f"# {account.role} {account.username}{note}", f"user {account.username}"]
        lines += [rule.line() for rule in acl_rules(account)]
    return "\n".join(lines) + "\n"


def render_password_file(
    accounts: Iterable[Account],
    *,
    existing_hashes: Mapping[str, str] | None = None,
    iterations: int = DEFAULT_ITERATIONS,
) -> str:
    """The password file: ``user:$7$...`` lines (Mosquitto allows no comments in it).

    Args:
        accounts: the users and their plaintext passwords.
        existing_hashes: the hashes of the current password file; a user whose
            password still matches keeps its line, so an unchanged account does not
            change the file.
        iterations: PBKDF2 rounds of a new hash.
    """
    old = existing_hashes or {}
    lines = []
    for account in accounts:
        hashed = old.get(account.username)
        if hashed is None or not _matches(account.password, hashed):
            hashed = hash_password(account.password, iterations=iterations)
        lines.append(f"{account.username}:{hashed}")
    return "\n".join(lines) + "\n"


def _matches(password: str, hashed: str) -> bool:
    try:
        return verify_password(password, hashed)
    except (AclError, ValueError):  # an old $6$ line or a broken one: hash afresh
        return False


def render_credentials(accounts: Iterable[Account]) -> str:
    """The plaintext credentials: ``user:password`` lines under a warning comment."""
    lines = _header(
        "MQTT credentials",
        [
            "# SECRET: plaintext passwords for provisioning the gateways, the bridge and the",
            "# stream. Keep this file mode 0600 and off every gateway; give each gateway",
            "# only its own line. The broker reads the hashed password file, not this one.",
        ],
    )
    lines += [f"{a.username}:{a.password}" for a in accounts]
    return "\n".join(lines) + "\n"

"""Mosquitto, started from the project's shipped configuration on a free loopback port."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers._procs import (
    LOOPBACK,
    REPO_ROOT,
    ManagedProcess,
    Probe,
    Server,
    free_ports,
    require_binary,
    tcp_probe,
)
from tests.servers.tls import TestPki

SHIPPED_CONFIG = REPO_ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
"""The broker configuration that the project ships; the fixture runs this file."""

_REPLACED_ONCE = ("listener", "persistence_location")
_DROPPED = ("user", "log_dest")


def fixture_config(shipped: str, *, port: int, persistence_dir: Path, user: str) -> str:
    """Return the shipped configuration with only its machine-specific lines replaced.

    The single active ``listener`` line becomes ``listener PORT 127.0.0.1``, the
    ``persistence_location`` line points into ``persistence_dir``, and the ``user`` and
    ``log_dest`` lines are replaced by ``user USER`` (so that a broker started by root
    can write the temporary directory) and ``log_dest stderr``. Every other setting,
    queue limits and persistence included, is kept as shipped.

    Args:
        shipped: The text of the shipped configuration.
        port: The loopback port to listen on.
        persistence_dir: The directory of the persistence database.
        user: The user the broker runs as.

    Returns:
        The configuration text.

    Raises:
        ValueError: If the shipped text has not exactly one active ``listener`` or
            ``persistence_location`` line, so that the substitution would be ambiguous.

    >>> text = "user mosquitto\\nlistener 1883\\npersistence_location /var/lib/mosquitto/\\n"
    >>> print(fixture_config(text, port=5, persistence_dir=Path("/d"), user="me"), end="")
    listener 5 127.0.0.1
    persistence_location /d/
    <BLANKLINE>
    # Replaced by tests/servers/mosquitto.py for the test broker:
    user me
    log_dest stderr
    """
    replacements = {
        "listener": f"listener {port} {LOOPBACK}",
        "persistence_location": f"persistence_location {persistence_dir}/",
    }
    found = dict.fromkeys(_REPLACED_ONCE, 0)
    lines: list[str] = []
    for line in shipped.splitlines():
        words = line.split()
        key = words[0] if words else ""
        if key in replacements:
            found[key] += 1
            lines.append(replacements[key])
        elif key not in _DROPPED:
            lines.append(line)
    for key, count in found.items():
        if count != 1:
            msg = f"the Mosquitto config must have exactly one active {key!r} line, found {count}"
            raise ValueError(msg)
    lines += [
        "",
        "# Replaced by tests/servers/mosquitto.py for the test broker:",
        f"user {user}",
        "log_dest stderr",
    ]
    return "\n".join(lines) + "\n"


def security_config(
    *, tls_port: int | None = None, pki: TestPki | None = None, password_file: Path | None = None
) -> list[str]:
    """Return the configuration lines that add a TLS listener and password authentication.

    They are meant to be appended after :func:`fixture_config`'s text. The TLS listener
    requires a client certificate signed by the PKI's CA; the MQTT username still comes
    from the CONNECT packet (``use_identity_as_username false``), so with a password
    file a client needs both a valid certificate and a valid password. The password
    settings rely on Mosquitto's default ``per_listener_settings false``, under which
    ``password_file`` and ``allow_anonymous`` apply to every listener wherever they
    appear, and the last ``allow_anonymous`` line wins over the shipped one.

    Args:
        tls_port: The loopback port of the TLS listener; needs ``pki``.
        pki: The CA and broker certificate of the TLS listener; needs ``tls_port``.
        password_file: A file written by ``mosquitto_passwd``, or None to keep the
            shipped (anonymous) access.

    Returns:
        The lines, without line ends; empty if nothing is asked for.

    Raises:
        ValueError: If only one of ``tls_port`` and ``pki`` is given.

    >>> from tests.servers.tls import CertFiles
    >>> pki = TestPki(
    ...     directory=Path("/p"),
    ...     ca_cert=Path("/p/ca.crt"),
    ...     server=CertFiles(Path("/p/server.crt"), Path("/p/server.key")),
    ...     clients={},
    ...     rogue=CertFiles(Path("/p/rogue.crt"), Path("/p/rogue.key")),
    ...     broken_cert=Path("/p/broken.crt"),
    ... )
    >>> print("\\n".join(security_config(tls_port=6, pki=pki, password_file=Path("/pw"))))
    <BLANKLINE>
    # Added by tests/servers/mosquitto.py: TLS listener requiring client certificates
    listener 6 127.0.0.1
    cafile /p/ca.crt
    certfile /p/server.crt
    keyfile /p/server.key
    require_certificate true
    use_identity_as_username false
    <BLANKLINE>
    # Added by tests/servers/mosquitto.py: passwords on every listener
    password_file /pw
    allow_anonymous false
    >>> security_config()
    []
    """
    if (tls_port is None) != (pki is None):
        msg = "a TLS listener needs both tls_port and pki"
        raise ValueError(msg)
    lines: list[str] = []
    if tls_port is not None and pki is not None:
        lines += [
            "",
            "# Added by tests/servers/mosquitto.py: TLS listener requiring client certificates",
            f"listener {tls_port} {LOOPBACK}",
            f"cafile {pki.ca_cert}",
            f"certfile {pki.server.cert}",
            f"keyfile {pki.server.key}",
            "require_certificate true",
            "use_identity_as_username false",
        ]
    if password_file is not None:
        lines += [
            "",
            "# Added by tests/servers/mosquitto.py: passwords on every listener",
            f"password_file {password_file}",
            "allow_anonymous false",
        ]
    return lines


def write_password_file(path: Path, passwords: Mapping[str, str]) -> None:
    """Write a Mosquitto password file (hashed passwords) with ``mosquitto_passwd``.

    Args:
        path: The file to create; it is overwritten if it exists.
        passwords: The passwords by username.

    Raises:
        ValueError: If ``passwords`` is empty (Mosquitto would then refuse everyone).
        RuntimeError: If ``mosquitto_passwd`` fails; the message holds its output.
    """
    if not passwords:
        msg = "a password file needs at least one user"
        raise ValueError(msg)
    binary = require_binary("mosquitto_passwd", "mosquitto")
    for index, (user, password) in enumerate(passwords.items()):
        create = ["-c"] if index == 0 else []
        result = subprocess.run(
            [binary, "-b", *create, str(path), user, password],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            msg = (
                f"mosquitto_passwd failed for user {user!r} (code {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
            raise RuntimeError(msg)


def _all_probes(*probes: Probe) -> Probe:
    def probe() -> bool:
        return all(each() for each in probes)

    return probe


@dataclass
class MosquittoServer(Server):
    """A Mosquitto broker on a loopback port, with its persistence in a temporary directory.

    Attributes:
        host: The address it listens on.
        port: The port of its plain MQTT listener (the shipped one).
        data_dir: The directory of its persistence database.
        config_path: The configuration file it runs (derived from the shipped one).
        log_path: Its log file.
        process: The managed process.
        tls_port: The port of its TLS listener, which requires a client certificate
            issued by ``pki``'s CA; None when it has none.
        pki: The CA and certificates of the TLS listener; None without one.
        passwords: The passwords by username that every listener requires; empty when
            anonymous clients are allowed, as shipped.
    """

    config_path: Path
    tls_port: int | None = None
    pki: TestPki | None = None
    passwords: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        root: Path,
        shipped_config: Path = SHIPPED_CONFIG,
        *,
        tls: TestPki | None = None,
        passwords: Mapping[str, str] | None = None,
    ) -> MosquittoServer:
        """Write the configuration for a broker under ``root``; it is not started yet.

        Args:
            root: An empty temporary directory for the config, data and log.
            shipped_config: The configuration to derive the test configuration from.
            tls: If given, add a second listener on its own loopback port that speaks
                TLS with this PKI's broker certificate and requires a client certificate
                issued by its CA.
            passwords: If given, passwords by username that every listener requires
                (anonymous clients are refused); written to ``root/passwords`` with
                ``mosquitto_passwd``.

        Returns:
            The (stopped) server.
        """
        binary = require_binary("mosquitto", "mosquitto")
        port, tls_port = free_ports(2)
        data_dir = root / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        password_file = None
        if passwords is not None:
            password_file = root / "passwords"
            write_password_file(password_file, passwords)
        extra = security_config(
            tls_port=None if tls is None else tls_port, pki=tls, password_file=password_file
        )
        config_path = root / "mosquitto.conf"
        config_path.write_text(
            fixture_config(
                shipped_config.read_text(encoding="utf-8"),
                port=port,
                persistence_dir=data_dir,
                user=pwd.getpwuid(os.getuid()).pw_name,
            )
            + "".join(f"{line}\n" for line in extra),
            encoding="utf-8",
        )
        log_path = root / "mosquitto.log"
        probe = tcp_probe(LOOPBACK, port)
        if tls is not None:
            probe = _all_probes(probe, tcp_probe(LOOPBACK, tls_port))
        process = ManagedProcess(
            name="mosquitto",
            argv=[binary, "-c", str(config_path)],
            log_path=log_path,
            probe=probe,
            cwd=root,
            start_timeout=15.0,
        )
        return cls(
            host=LOOPBACK,
            port=port,
            data_dir=data_dir,
            log_path=log_path,
            process=process,
            config_path=config_path,
            tls_port=None if tls is None else tls_port,
            pki=tls,
            passwords=dict(passwords or {}),
        )

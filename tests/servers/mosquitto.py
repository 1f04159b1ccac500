"""Mosquitto, started from the project's shipped configuration on a free loopback port."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from tests.servers._procs import (
    LOOPBACK,
    REPO_ROOT,
    ManagedProcess,
    Server,
    free_port,
    require_binary,
    tcp_probe,
)

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


@dataclass
class MosquittoServer(Server):
    """A Mosquitto broker on a loopback port, with its persistence in a temporary directory.

    Attributes:
        host: The address it listens on.
        port: The port it listens on.
        data_dir: The directory of its persistence database.
        config_path: The configuration file it runs (derived from the shipped one).
        log_path: Its log file.
        process: The managed process.
    """

    config_path: Path

    @classmethod
    def create(cls, root: Path, shipped_config: Path = SHIPPED_CONFIG) -> MosquittoServer:
        """Write the configuration for a broker under ``root``; it is not started yet.

        Args:
            root: An empty temporary directory for the config, data and log.
            shipped_config: The configuration to derive the test configuration from.

        Returns:
            The (stopped) server.
        """
        binary = require_binary("mosquitto", "mosquitto")
        port = free_port()
        data_dir = root / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        config_path = root / "mosquitto.conf"
        config_path.write_text(
            fixture_config(
                shipped_config.read_text(encoding="utf-8"),
                port=port,
                persistence_dir=data_dir,
                user=pwd.getpwuid(os.getuid()).pw_name,
            ),
            encoding="utf-8",
        )
        log_path = root / "mosquitto.log"
        process = ManagedProcess(
            name="mosquitto",
            argv=[binary, "-c", str(config_path)],
            log_path=log_path,
            probe=tcp_probe(LOOPBACK, port),
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
        )

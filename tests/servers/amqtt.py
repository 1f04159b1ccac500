"""amqtt, the pure-Python MQTT 3.1.1 broker, on a free loopback port.

It stands in for the older brokers that speak only MQTT 3.1.1: the edge agent
must fall back to 3.1.1 when it meets one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tests.servers._procs import LOOPBACK, ManagedProcess, Server, free_port, tcp_probe


@dataclass
class AmqttServer(Server):
    """An amqtt broker accepting anonymous clients on one loopback TCP listener."""

    @classmethod
    def create(cls, root: Path) -> AmqttServer:
        """Write the configuration for a broker under ``root``; it is not started yet."""
        binary = Path(sys.executable).parent / "amqtt"
        if not binary.exists():
            msg = f"{binary} is missing: install the dev extra (pip install -e '.[dev]')"
            raise AssertionError(msg)
        port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        config = root / "amqtt.yaml"
        config.write_text(
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: {LOOPBACK}:{port}\n"
            "plugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n",
            encoding="utf-8",
        )
        log_path = root / "amqtt.log"
        process = ManagedProcess(
            name="amqtt",
            argv=[str(binary), "-c", str(config)],
            log_path=log_path,
            probe=tcp_probe(LOOPBACK, port),
            cwd=root,
            start_timeout=30.0,
        )
        return cls(host=LOOPBACK, port=port, data_dir=root, log_path=log_path, process=process)

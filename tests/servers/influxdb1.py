"""InfluxDB 1.x (Debian's ``influxd``) on loopback ports, its files in a temporary directory."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers._procs import (
    LOOPBACK,
    ManagedProcess,
    Server,
    free_ports,
    http_probe,
    http_request,
    require_binary,
)


def influxd_config(root: Path, *, http_port: int, rpc_port: int) -> str:
    """Return an ``influxd`` configuration that keeps everything under ``root``.

    Only the HTTP API and the RPC (backup) service listen, both on 127.0.0.1;
    authentication, usage reporting and the ``_internal`` monitor database are off.

    Args:
        root: The directory for the meta, data and WAL directories.
        http_port: The HTTP API port.
        rpc_port: The RPC (backup and restore) port.

    Returns:
        The TOML text.
    """
    return f"""\
# Written by tests/servers/influxdb1.py for a throw-away test server.
# Upstream InfluxDB 1.x reads reporting-disabled; Debian's build renamed it
# reporting-enabled (default false). Each ignores the other's key.
reporting-disabled = true
reporting-enabled = false
bind-address = "{LOOPBACK}:{rpc_port}"

[meta]
  dir = "{root / "meta"}"
  logging-enabled = true

[data]
  dir = "{root / "data"}"
  wal-dir = "{root / "wal"}"
  query-log-enabled = true

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "{LOOPBACK}:{http_port}"
  auth-enabled = false
  log-enabled = true
  pprof-enabled = false

[logging]
  format = "logfmt"
  level = "info"
  suppress-logo = true
"""


@dataclass
class InfluxDB1Server(Server):
    """An InfluxDB 1.x server answering InfluxQL over HTTP on a loopback port.

    Attributes:
        host: The address it listens on.
        port: Its HTTP API port.
        rpc_port: Its RPC (backup) port.
        data_dir: The directory holding its meta, data and WAL directories.
        config_path: Its configuration file.
        log_path: Its log file.
        process: The managed process.
    """

    rpc_port: int
    config_path: Path

    @classmethod
    def create(cls, root: Path) -> InfluxDB1Server:
        """Write the configuration for a server under ``root``; it is not started yet.

        Args:
            root: An empty temporary directory for its configuration, files and log.

        Returns:
            The (stopped) server.
        """
        binary = require_binary("influxd", "influxdb")
        http_port, rpc_port = free_ports(2)
        data_dir = root / "influxdb"
        config_path = root / "influxdb.conf"
        config_path.write_text(
            influxd_config(data_dir, http_port=http_port, rpc_port=rpc_port), encoding="utf-8"
        )
        log_path = root / "influxd.log"
        process = ManagedProcess(
            name="influxd",
            argv=[binary, "run", "-config", str(config_path)],
            log_path=log_path,
            probe=http_probe(f"http://{LOOPBACK}:{http_port}/ping", statuses=(204,)),
            cwd=root,
            start_timeout=30.0,
        )
        return cls(
            host=LOOPBACK,
            port=http_port,
            data_dir=data_dir,
            log_path=log_path,
            process=process,
            rpc_port=rpc_port,
            config_path=config_path,
        )

    def query(
        self, influxql: str, *, db: str | None = None, epoch: str | None = None, method: str = "GET"
    ) -> Any:
        """Run InfluxQL through ``/query`` and return the decoded JSON answer.

        Use ``method="POST"`` for statements that change something (``CREATE DATABASE``).

        Args:
            influxql: The statement(s).
            db: The database to run them in, if any.
            epoch: Return times as integers in this unit (``s``, ``ms``, ...) instead of
                RFC 3339 strings.
            method: ``GET`` for reads, ``POST`` for writes.

        Returns:
            The JSON answer, e.g. ``{"results": [{"statement_id": 0, "series": [...]}]}``.

        Raises:
            RuntimeError: If the server answers with an error status or an error field.
        """
        params = {"q": influxql}
        if db is not None:
            params["db"] = db
        if epoch is not None:
            params["epoch"] = epoch
        encoded = urllib.parse.urlencode(params)
        if method == "GET":
            status, body = http_request("GET", f"{self.url}/query?{encoded}")
        else:
            status, body = http_request(
                method,
                f"{self.url}/query",
                body=encoded.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        answer: Any = json.loads(body) if body else None
        errors = [r["error"] for r in (answer or {}).get("results", []) if "error" in r]
        if status != 200 or errors or (isinstance(answer, dict) and "error" in answer):
            msg = f"InfluxQL {influxql!r} answered {status}: {body!r}"
            raise RuntimeError(msg)
        return answer

    def write(self, db: str, lines: str, *, precision: str = "s") -> None:
        """Write line protocol through ``/write``.

        Args:
            db: The database.
            lines: The points, in line protocol.
            precision: The timestamps' unit (``ns``, ``u``, ``ms``, ``s``, ...).

        Raises:
            RuntimeError: If the server does not answer 204.
        """
        query = urllib.parse.urlencode({"db": db, "precision": precision})
        status, body = http_request("POST", f"{self.url}/write?{query}", body=lines.encode())
        if status != 204:
            msg = f"write to {db!r} answered {status}: {body!r}"
            raise RuntimeError(msg)

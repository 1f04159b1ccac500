"""VictoriaMetrics, which accepts InfluxDB line protocol at /api/v2/write, on a loopback port."""

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
    free_port,
    http_probe,
    http_request,
    require_binary,
)


@dataclass
class VictoriaMetricsServer(Server):
    """A single-node VictoriaMetrics with its storage in a temporary directory.

    Written InfluxDB points become series named ``measurement_field`` whose labels are
    the point's tags.

    Attributes:
        host: The address it listens on.
        port: Its HTTP port (the only port it opens).
        data_dir: Its storage directory.
        log_path: Its log file.
        process: The managed process.
    """

    @classmethod
    def create(cls, root: Path) -> VictoriaMetricsServer:
        """Prepare a server under ``root``; it is not started yet.

        Args:
            root: An empty temporary directory for its storage and log.

        Returns:
            The (stopped) server.
        """
        binary = require_binary("victoria-metrics", "victoria-metrics")
        port = free_port()
        data_dir = root / "data"
        log_path = root / "victoria-metrics.log"
        process = ManagedProcess(
            name="victoria-metrics",
            argv=[
                binary,
                f"-storageDataPath={data_dir}",
                f"-httpListenAddr={LOOPBACK}:{port}",
                # The other ingestion listeners are off by default; say so explicitly,
                # so that the test server never opens a port but its HTTP one.
                "-graphiteListenAddr=",
                "-influxListenAddr=",
                "-opentsdbListenAddr=",
                "-opentsdbHTTPListenAddr=",
                # Let queries see points written a moment ago (the default hides the
                # last 30 s); a test reads back what it has just written.
                "-search.latencyOffset=0s",
                "-memory.allowedPercent=10",
            ],
            log_path=log_path,
            probe=http_probe(f"http://{LOOPBACK}:{port}/health", statuses=(200,)),
            cwd=root,
            start_timeout=20.0,
        )
        return cls(host=LOOPBACK, port=port, data_dir=data_dir, log_path=log_path, process=process)

    def force_flush(self) -> None:
        """Make recently ingested points searchable now (``/internal/force_flush``).

        Raises:
            RuntimeError: If the server refuses.
        """
        status, body = http_request("GET", f"{self.url}/internal/force_flush")
        if status != 200:
            msg = f"force_flush answered {status}: {body!r}"
            raise RuntimeError(msg)

    def export(self, selector: str) -> list[dict[str, Any]]:
        """Return the series matching a series selector, from ``/api/v1/export``.

        Args:
            selector: A series selector such as ``'m_f{sensor="a"}'``.

        Returns:
            One dict per series: ``{"metric": {...labels}, "values": [...],
            "timestamps": [...]}`` (timestamps in milliseconds).

        Raises:
            RuntimeError: If the server refuses.
        """
        query = urllib.parse.urlencode({"match[]": selector})
        status, body = http_request("GET", f"{self.url}/api/v1/export?{query}")
        if status != 200:
            msg = f"export answered {status}: {body!r}"
            raise RuntimeError(msg)
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

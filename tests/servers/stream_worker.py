"""The stream's Faust worker (``python -m stream.app worker``) as a test subprocess."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiokafka.admin import (  # type: ignore[import-untyped,unused-ignore]
    AIOKafkaAdminClient,
    NewTopic,
)

from tests.servers._procs import REPO_ROOT, ManagedProcess, log_probe
from tests.servers.tansu import TansuServer
from tests.servers.victoria_metrics import VictoriaMetricsServer


async def create_topics(tansu: TansuServer, names: Sequence[str], partitions: int) -> None:
    """Create topics with ``partitions`` partitions each."""
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


def stream_worker(
    tansu: TansuServer,
    vm: VictoriaMetricsServer,
    root: Path,
    *,
    app_id: str,
    name: str,
    partitions: int,
    settings: Mapping[str, str] | None = None,
) -> ManagedProcess:
    """Prepare a stream worker reading ``<app_id>.readings`` and writing to ``vm``.

    It is ready once Faust logs that the worker is ready; its log is ``root/<name>.log``
    and its data directory ``root/<name>-data``. It runs without alert rules unless
    ``settings`` (more ``URBANSENSE_*`` variables) give some.
    """
    log_path = root / f"{name}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(
        URBANSENSE_APP_ID=app_id,
        URBANSENSE_KAFKA=tansu.bootstrap_servers,
        URBANSENSE_READINGS_TOPIC=f"{app_id}.readings",
        URBANSENSE_STATUS_TOPIC=f"{app_id}.status",
        URBANSENSE_DEADLETTER_TOPIC=f"{app_id}.deadletter",
        URBANSENSE_ALERTS_TOPIC=f"{app_id}.alerts",
        URBANSENSE_RULES="none",
        URBANSENSE_PARTITIONS=str(partitions),
        URBANSENSE_INFLUX_URL=vm.url,
        URBANSENSE_DATADIR=str(root / f"{name}-data"),
        URBANSENSE_BATCH="200",
    )
    env.update(settings or {})
    return ManagedProcess(
        name=f"stream worker {name}",
        argv=[sys.executable, "-m", "stream.app", "worker", "--without-web", "--loglevel", "info"],
        log_path=log_path,
        probe=log_probe(log_path, "[^Worker]: Ready"),
        cwd=root,
        env=env,
        start_timeout=60.0,
        stop_timeout=15.0,
    )

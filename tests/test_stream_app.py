"""The stream worker end to end: Kafka (Tansu) in, InfluxDB protocol (VictoriaMetrics) out.

A simulated city's readings are produced to the readings topic as gateway envelopes;
a real ``python -m stream.app worker`` process turns them into points. Every reading
lands once as a raw point with an anomaly point beside it; envelopes sent again (a
gateway's store-and-forward, a bridge replay) add nothing; a worker SIGKILLed and
replaced continues from the changelog: it still recognises what was sent before.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped,unused-ignore]

from simulators.engine import City
from simulators.scenario import parse_scenario
from telemetry import Batch, Reading
from telemetry.registry import load_example_registry
from tests.servers._procs import ManagedProcess, log_tail
from tests.servers.stream_worker import create_topics, stream_worker
from tests.servers.tansu import TansuServer
from tests.servers.victoria_metrics import VictoriaMetricsServer

pytestmark = pytest.mark.servers

TIMEOUT_S = 90.0
# Two days ago at midnight UTC: recent enough for VictoriaMetrics' retention and the
# codec's clock checks, and a span no other test writes at.
START = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
SCENARIO = f"""
version: 1
name: two hours for the stream
registry: example
seed: 11
start: {START.isoformat()}
duration: 2h
"""


def envelopes(readings: Iterable[Reading]) -> list[Batch]:
    """The readings as the gateways publish them: per gateway, one envelope a minute."""
    gateway = {s.id: s.gateway for s in load_example_registry().sensors}
    grouped: dict[tuple[str, datetime], list[Reading]] = defaultdict(list)
    for r in readings:
        grouped[gateway[r.sensor_id], r.ts.replace(second=0, microsecond=0)].append(r)
    return [Batch(gateway_id=gw, readings=tuple(rs)) for (gw, _), rs in sorted(grouped.items())]


async def produce(tansu: TansuServer, topic: str, batches: Sequence[Batch]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for b in batches:
            await producer.send(
                topic, key=b.gateway_id.encode(), value=b.model_dump_json().encode()
            )
        await producer.flush()
    finally:
        await producer.stop()


def worker(
    tansu: TansuServer, vm: VictoriaMetricsServer, root: Path, app_id: str
) -> ManagedProcess:
    name = f"{app_id}-{uuid.uuid4().hex[:6]}"
    return stream_worker(tansu, vm, root, app_id=app_id, name=name, partitions=2)


def stored(vm: VictoriaMetricsServer, measurement: str, field: str) -> set[tuple[str, int]]:
    """(sensor, timestamp in ms) of every stored value of a field in the scenario's span."""
    vm.force_flush()
    since = int(START.timestamp() * 1000)
    found: set[tuple[str, int]] = set()
    for series in vm.export(f'{{__name__="{measurement}_{field}"}}'):
        sensor = series["metric"].get("sensor", "")
        found.update((sensor, ts) for ts in series["timestamps"] if ts >= since)
    return found


def wait_for(check: object, what: str, proc: ManagedProcess) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.5)
    pytest.fail(f"{what} within {TIMEOUT_S} s; worker log:\n{log_tail(proc.log_path)}")


def raw_points(vm: VictoriaMetricsServer) -> set[tuple[str, int]]:
    return set().union(
        *(
            stored(vm, kind, "seq")
            for kind in ("pollution", "ambient", "energy", "traffic", "crowd")
        )
    )


def test_every_reading_lands_once_and_resends_and_a_killed_worker_add_nothing(
    tansu: TansuServer, victoria_metrics: VictoriaMetricsServer, tmp_path: Path
) -> None:
    city = City(parse_scenario(SCENARIO))
    readings = list(city.run())
    batches = envelopes(readings)
    expected = {(r.sensor_id, int(r.ts.timestamp() * 1000)) for r in readings}
    first, second = batches[: len(batches) // 2], batches[len(batches) // 2 :]
    app_id = f"stream-{uuid.uuid4().hex[:8]}"
    topic = f"{app_id}.readings"
    asyncio.run(create_topics(tansu, [topic, f"{app_id}.status", f"{app_id}.deadletter"], 2))

    proc = worker(tansu, victoria_metrics, tmp_path, app_id)
    proc.start()
    try:
        asyncio.run(produce(tansu, topic, first))
        half = {(r.sensor_id, int(r.ts.timestamp() * 1000)) for b in first for r in b.readings}
        wait_for(lambda: raw_points(victoria_metrics) >= half, "the first half did not land", proc)
        assert raw_points(victoria_metrics) == half
        anomalies = stored(victoria_metrics, "anomaly", "score")
        assert anomalies <= half
        assert len(anomalies) >= 0.99 * len(half)  # a late reading has no anomaly point
    finally:
        if proc.pid is not None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.stop()

    # A new worker: it recovers the sensors' last seqs from the changelog, so the
    # first half sent again is recognised; the second half is new.
    proc = worker(tansu, victoria_metrics, tmp_path, app_id)
    proc.start()
    try:
        asyncio.run(produce(tansu, topic, first + second))
        wait_for(lambda: raw_points(victoria_metrics) >= expected, "not every reading landed", proc)
        time.sleep(2.0)  # anything doubled would have landed by now
        assert raw_points(victoria_metrics) == expected
        log = proc.log_path.read_text(encoding="utf-8", errors="replace")
        assert "Traceback" not in log, log_tail(proc.log_path)
    finally:
        proc.stop()

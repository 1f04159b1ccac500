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
import re
import signal
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
PACE_S = 0.05
"""Wall seconds per minute of event time, producing as the gateways publish live."""
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
    """The readings as the gateways publish them: per gateway, one envelope a minute.

    In time order, the gateways side by side, as they publish: a gateway sending an
    hour ahead of the others of its district would make their readings late.
    """
    gateway = {s.id: s.gateway for s in load_example_registry().sensors}
    grouped: dict[tuple[datetime, str], list[Reading]] = defaultdict(list)
    for r in readings:
        grouped[r.ts.replace(second=0, microsecond=0), gateway[r.sensor_id]].append(r)
    return [Batch(gateway_id=gw, readings=tuple(rs)) for (_, gw), rs in sorted(grouped.items())]


async def produce(
    tansu: TansuServer, topic: str, batches: Sequence[Batch], pace_s: float = 0.0
) -> None:
    """Produce the envelopes in order, sleeping ``pace_s`` whenever their minute changes.

    Paced, the gateways publish side by side as they would live. All at once, the
    worker drains a backlog: it may then read one gateway's partition minutes ahead
    of another of the same district, and find the other's readings late.
    """
    producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap_servers, acks="all")
    await producer.start()
    try:
        minute = None
        for b in batches:
            at = b.readings[0].ts.replace(second=0, microsecond=0)
            if pace_s and minute is not None and at != minute:
                await asyncio.sleep(pace_s)
            minute = at
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
        asyncio.run(produce(tansu, topic, first, PACE_S))
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


def half_hour(hour: int) -> tuple[datetime, list[Reading]]:
    """Half an hour of the city from ``hour`` five days ago: a span of its own."""
    start = (datetime.now(UTC) - timedelta(days=5)).replace(
        hour=hour, minute=0, second=0, microsecond=0
    )
    scenario = SCENARIO.replace(START.isoformat(), start.isoformat())
    city = City(parse_scenario(scenario.replace("duration: 2h", "duration: 30m")))
    return start, list(city.run())


def raw_samples(vm: VictoriaMetricsServer, start: datetime) -> list[tuple[str, int]]:
    """(sensor, timestamp in ms) of every raw sample stored in the hour from ``start``."""
    vm.force_flush()
    since = int(start.timestamp() * 1000)
    return [
        (series["metric"].get("sensor", ""), ts)
        for kind in ("pollution", "ambient", "energy", "traffic", "crowd")
        for series in vm.export(f'{{__name__="{kind}_seq"}}')
        for ts in series["timestamps"]
        if since <= ts < since + 3_600_000
    ]


def test_a_worker_stopped_gracefully_stores_its_state_before_it_exits(
    tansu: TansuServer, victoria_metrics: VictoriaMetricsServer, tmp_path: Path
) -> None:
    """The state is stored at once when the flow stops, however long its interval.

    A worker that stores its state only once an hour takes half an hour of the city
    and is stopped with SIGTERM: it stores the state, lets the offsets be committed
    and exits with 0. The next worker, given the same envelopes again, recognises
    every reading and writes none of them a second time.
    """
    start, readings = half_hour(hour=0)
    batches = envelopes(readings)
    expected = {(r.sensor_id, int(r.ts.timestamp() * 1000)) for r in readings}
    app_id = f"stop-{uuid.uuid4().hex[:8]}"
    topic = f"{app_id}.readings"
    asyncio.run(create_topics(tansu, [topic, f"{app_id}.status", f"{app_id}.deadletter"], 2))

    first = stream_worker(
        tansu,
        victoria_metrics,
        tmp_path,
        app_id=app_id,
        name="hourly",
        partitions=2,
        settings={"URBANSENSE_STATE_SECONDS": "3600"},
    )
    first.start()
    try:
        asyncio.run(produce(tansu, topic, batches))
        wait_for(
            lambda: set(raw_samples(victoria_metrics, start)) >= expected,
            "the readings did not land",
            first,
        )
    finally:
        first.stop()
    log = first.log_path.read_text(encoding="utf-8", errors="replace")
    assert "exited with code 0" in log, log_tail(first.log_path)

    second = worker(tansu, victoria_metrics, tmp_path, app_id)
    second.start()
    try:
        asyncio.run(produce(tansu, topic, batches))
        duplicates = re.compile(r"duplicates=(\d+)")

        def recognised() -> bool:
            text = second.log_path.read_text(encoding="utf-8", errors="replace")
            return max(map(int, duplicates.findall(text)), default=0) >= len(readings)

        wait_for(recognised, "the resent readings were not all recognised", second)
        time.sleep(2.0)  # anything written twice would have landed by now
        stored = raw_samples(victoria_metrics, start)
        assert len(stored) == len(set(stored)) == len(expected)
    finally:
        second.stop()


class RefusingInflux(ThreadingHTTPServer):
    """An InfluxDB stand-in that answers its ping and refuses every write (HTTP 401)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(204)
                self.end_headers()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = b'{"code":"unauthorized","message":"unauthorized access"}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def test_a_worker_whose_step_fails_exits_and_the_next_writes_every_reading(
    tansu: TansuServer, victoria_metrics: VictoriaMetricsServer, tmp_path: Path
) -> None:
    """A step that fails stores and acks nothing: the worker exits, as if killed.

    The first worker's database refuses its token, which no retry mends. It exits
    with 70 at the first step, leaving the envelopes' offsets uncommitted; the next
    worker, given the right database, writes every reading.
    """
    start, readings = half_hour(hour=1)
    expected = {(r.sensor_id, int(r.ts.timestamp() * 1000)) for r in readings}
    app_id = f"fail-{uuid.uuid4().hex[:8]}"
    topic = f"{app_id}.readings"
    asyncio.run(create_topics(tansu, [topic, f"{app_id}.status", f"{app_id}.deadletter"], 2))
    refusing = RefusingInflux()
    first = stream_worker(
        tansu,
        victoria_metrics,
        tmp_path,
        app_id=app_id,
        name="refused",
        partitions=2,
        settings={"URBANSENSE_INFLUX_URL": refusing.url},
    )
    try:
        first.start()
        asyncio.run(produce(tansu, topic, envelopes(readings)))
        wait_for(lambda: not first.running, "the worker did not exit", first)
    finally:
        first.stop()
        refusing.shutdown()
    log = first.log_path.read_text(encoding="utf-8", errors="replace")
    assert "step failed" in log, log_tail(first.log_path)
    assert "exited with code 70" in log, log_tail(first.log_path)

    second = worker(tansu, victoria_metrics, tmp_path, app_id)
    second.start()
    try:
        wait_for(
            lambda: set(raw_samples(victoria_metrics, start)) >= expected,
            "the readings did not land",
            second,
        )
    finally:
        second.stop()

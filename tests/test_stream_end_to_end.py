"""The whole path on real servers, with each part failing once on the way.

Simulated gateways publish a city's hour as envelopes over MQTT (QoS 1) to a real
Mosquitto; a real bridge process (``python -m stream.bridge.cli``) forwards them to
a real Tansu; a real worker (``python -m stream.app worker``) writes them to a real
VictoriaMetrics. While the gateways publish:

1. the bridge is SIGKILLed and started again with the same client id (the broker
   kept its session's messages);
2. the worker is SIGKILLed and a new one started (it recovers its state from the
   changelog and replays from the committed offsets);
3. VictoriaMetrics is stopped for 30 seconds and started again on the same data.

Then every reading published is in the database exactly once: the raw points'
(sensor, timestamp) are exactly the readings sent. A reading the killed worker wrote
but had not committed is written again on replay with the same value: the same point,
which InfluxDB overwrites; VictoriaMetrics keeps such a sample twice, so the test
allows a second sample only with the first one's value.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulators.engine import City
from simulators.scenario import parse_scenario
from stream.bridge import KafkaTopics
from tests.servers._procs import ManagedProcess, log_tail
from tests.servers.mosquitto import MosquittoServer
from tests.servers.stream_worker import create_topics, stream_worker
from tests.servers.tansu import TansuServer
from tests.servers.victoria_metrics import VictoriaMetricsServer
from tests.test_bridge import BridgeProcess, bridge_config, process_argv, publish
from tests.test_stream_app import envelopes

pytestmark = pytest.mark.servers

TIMEOUT_S = 90.0
"""The bound on each wait."""
OUTAGE_S = 30.0
"""How long the database is down."""
PACE_S = 0.8
"""Wall seconds per minute of event time while the gateways publish (about 48 s in all)."""
KINDS = ("pollution", "ambient", "energy", "traffic", "crowd")
# Four days ago at 06:00 UTC: a span no other test writes at (and this test has a
# database of its own).
START = (datetime.now(UTC) - timedelta(days=4)).replace(hour=6, minute=0, second=0, microsecond=0)
SCENARIO = f"""
version: 1
name: an hour through every part
registry: example
seed: 31
start: {START.isoformat()}
duration: 1h
"""


def samples(vm: VictoriaMetricsServer) -> dict[tuple[str, int], list[float]]:
    """Every raw sample stored: (sensor, timestamp in ms) -> the seq values stored there."""
    vm.force_flush()
    found: dict[tuple[str, int], list[float]] = defaultdict(list)
    for kind in KINDS:
        for series in vm.export(f'{{__name__="{kind}_seq"}}'):
            sensor = series["metric"].get("sensor", "")
            for ts, value in zip(series["timestamps"], series["values"], strict=True):
                found[sensor, ts].append(value)
    return found


def wait_for(check: Callable[[], bool], what: str | Callable[[], str], *logs: Path) -> None:
    """Wait until ``check()`` holds; fail with the logs' tails if it does not in time.

    ``what`` is what was waited for, or a function that says it (and what is missing).
    """
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}:\n{log_tail(p, 40)}" for p in logs)
    said = what if isinstance(what, str) else what()
    pytest.fail(f"{said} within {TIMEOUT_S:g} s\n{tails}", pytrace=False)


def test_every_reading_arrives_once_through_a_killed_bridge_a_killed_worker_and_a_database_outage(
    mosquitto: MosquittoServer, tansu: TansuServer, tmp_path: Path
) -> None:
    readings = list(City(parse_scenario(SCENARIO)).run())
    batches = envelopes(readings)
    sent = {(r.sensor_id, int(r.ts.timestamp() * 1000)) for r in readings}
    messages = [
        (f"urbansense/v1/{b.gateway_id}/readings", b.model_dump_json().encode()) for b in batches
    ]
    gateways = len({b.gateway_id for b in batches})
    app_id = f"e2e-{uuid.uuid4().hex[:8]}"
    asyncio.run(
        create_topics(tansu, [f"{app_id}.{t}" for t in ("readings", "status", "deadletter")], 2)
    )
    vm = VictoriaMetricsServer.create(tmp_path / "vm")
    topics = KafkaTopics(
        readings=f"{app_id}.readings", status=f"{app_id}.status", dead_letter=f"{app_id}.deadletter"
    )
    config = bridge_config(mosquitto, tansu.bootstrap_servers, app_id, topics=topics)
    bridges = [BridgeProcess(process_argv(config), tmp_path / f"bridge-{i}.log") for i in (1, 2)]
    workers: list[ManagedProcess] = [
        stream_worker(tansu, vm, tmp_path, app_id=app_id, name=f"worker-{i}", partitions=2)
        for i in (1, 2)
    ]
    logs = [b.log_path for b in bridges] + [w.log_path for w in workers]
    publisher = threading.Thread(
        target=publish,
        args=(mosquitto, messages),
        kwargs={"pause_every": gateways, "pause_s": PACE_S},
    )
    vm.start()
    try:
        workers[0].start()
        bridges[0].start().wait_for_event("subscribed")
        publisher.start()

        # 1. the bridge, killed while it forwards
        wait_for(
            lambda: any(e.get("forwarded", 0) >= 20 for e in bridges[0].events()),
            "the first bridge forwarding",
            *logs,
        )
        bridges[0].kill(signal.SIGKILL)
        bridges[1].start().wait_for_event("subscribed")

        # 2. the worker, killed once its writes land
        wait_for(lambda: len(samples(vm)) >= len(sent) // 5, "a fifth of the readings", *logs)
        pid = workers[0].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        workers[0].stop()
        workers[1].start()
        wait_for(
            lambda: "batch written" in workers[1].log_path.read_text(errors="replace"),
            "the new worker writing",
            *logs,
        )

        # 3. the database, down for 30 s while the gateways go on
        assert publisher.is_alive(), "the gateways finished before the outage: slow PACE_S down"
        vm.stop()
        time.sleep(OUTAGE_S)
        vm.start()

        publisher.join(TIMEOUT_S)
        assert not publisher.is_alive(), "the gateways' messages were not all acknowledged"

        def missing() -> str:
            lacking = sorted(sent - set(samples(vm)))
            when = [
                (s, datetime.fromtimestamp(t / 1000, UTC).strftime("%H:%M")) for s, t in lacking
            ]
            return f"every reading in the database ({len(lacking)} missing, e.g. {when[:5]})"

        wait_for(lambda: set(samples(vm)) >= sent, missing, *logs)
        time.sleep(2.0)  # anything doubled would have landed by now
        stored = samples(vm)
    finally:
        for bridge in bridges:
            bridge.close()
        for worker in workers:
            worker.stop()
        vm.stop()

    assert set(stored) == sent  # nothing lost, nothing else
    rewritten = {key: values for key, values in stored.items() if len(values) > 1}
    assert all(len(set(values)) == 1 for values in rewritten.values()), rewritten
    worker_log = workers[1].log_path.read_text(encoding="utf-8", errors="replace")
    assert "write failed, retrying" in worker_log  # the outage was felt
    assert "Traceback" not in worker_log, log_tail(workers[1].log_path)
    print(f"{len(sent):,} readings; {len(rewritten)} written again after the worker's kill")

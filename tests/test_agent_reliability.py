"""The edge agent against a real Mosquitto: outages, SIGKILL, a full queue, clean stops.

Each test runs the agent with synthetic sensors sampled every 50 ms and
published every 200 ms, so a few seconds hold hundreds of readings, and checks
delivery against the sequence numbers the agent's own queue handed out: every
reading from first to last arrives, first arrivals in per-sensor order, and a
duplicate only as an exact re-send.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from edge_agents.agent import Agent
from telemetry import GatewayState
from tests.agent_harness import (
    AgentProcess,
    agent_config,
    agent_toml,
    check_delivery,
    collecting,
    last_seqs,
    wait_until,
)
from tests.servers.mosquitto import MosquittoServer

pytestmark = pytest.mark.servers


def test_readings_and_status_flow_and_a_stop_drains_everything(
    private_mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    queue = tmp_path / "queue.db"
    broker = private_mosquitto
    with collecting(broker.host, broker.port) as collector:
        agent = Agent(agent_config(queue, f"mqtt://{broker.host}:{broker.port}"))
        agent.start()
        try:
            wait_until(lambda: collector.count() >= 30, 20, "30 readings")
            wait_until(
                lambda: any(s.state is GatewayState.ONLINE for s in collector.statuses),
                5,
                "the birth message",
            )
        finally:
            agent.stop()
        wait_until(
            lambda: (s := collector.last_status()) is not None and s.state is GatewayState.OFFLINE,
            5,
            "the offline status sent at a clean stop",
        )
    assert agent.publisher is not None
    assert agent.publisher.stats.protocol is not None
    assert agent.publisher.stats.protocol.value == "5"
    last = last_seqs(queue)
    check_delivery(collector, last)
    offline = collector.last_status()
    assert offline is not None
    assert offline.buffer_depth == 0
    assert offline.sent_total == sum(n + 1 for n in last.values())


def test_a_30_second_broker_outage_loses_nothing(
    private_mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    """The broker is stopped for 30 s mid-stream; the agent keeps sampling into its queue."""
    queue = tmp_path / "queue.db"
    broker = private_mosquitto
    with collecting(broker.host, broker.port) as collector:
        agent = Agent(agent_config(queue, f"mqtt://{broker.host}:{broker.port}"))
        agent.start()
        try:
            wait_until(lambda: collector.count() >= 20, 20, "readings before the outage")
            broker.stop()
            time.sleep(30)
            assert agent.buffer is not None
            assert agent.buffer.depth() > 100, "readings were queued during the outage"
            broker.start()
            wait_until(lambda: agent.buffer is not None and agent.buffer.depth() < 20, 30, "drain")
        finally:
            agent.stop()
        last = last_seqs(queue)
        wait_until(
            lambda: (
                len({(s, q) for s, q, _ in collector.readings()})
                == sum(n + 1 for n in last.values())
            ),
            20,
            "every reading at the collector",
        )
    check_delivery(collector, last)


def test_sigkill_with_readings_queued_then_restart_loses_nothing(
    private_mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    """Readings pile up while the broker is down; the agent is SIGKILLed, then restarted."""
    queue = tmp_path / "queue.db"
    broker = private_mosquitto
    config = tmp_path / "agent.toml"
    config.write_text(agent_toml(queue, f"mqtt://{broker.host}:{broker.port}"), encoding="utf-8")
    broker.stop()
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        time.sleep(2.0)
        agent.signal(signal.SIGKILL)
        agent.wait(10)
    finally:
        agent.kill()
    queued_before = last_seqs(queue)
    assert queued_before, "the killed agent had queued readings"

    broker.start()
    with collecting(broker.host, broker.port) as collector:
        agent = AgentProcess(config, tmp_path / "agent.log").start()
        try:
            wait_until(
                lambda: all(
                    max(collector.seqs().get(sensor, [-1])) >= seq
                    for sensor, seq in queued_before.items()
                ),
                30,
                "the readings queued before the kill",
            )
            agent.signal(signal.SIGTERM)
            assert agent.wait(15) == 0, agent.log()
        finally:
            agent.kill()
        last = last_seqs(queue)
        wait_until(
            lambda: (
                len({(s, q) for s, q, _ in collector.readings()})
                == sum(n + 1 for n in last.values())
            ),
            10,
            "every reading at the collector",
        )
    check_delivery(collector, last)
    events = [
        json.loads(line)["event"] for line in agent.log().splitlines() if line.startswith("{")
    ]
    assert "stop requested" in events
    assert events[-1] == "agent stopped"


def test_a_full_queue_drops_the_oldest_counts_them_and_keeps_sampling(
    private_mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    queue = tmp_path / "queue.db"
    broker = private_mosquitto
    broker.stop()
    agent = Agent(
        agent_config(
            queue,
            f"mqtt://{broker.host}:{broker.port}",
            sensors=2,
            sample_interval_s=0.02,
            publish_interval_s=0.05,
            max_bytes=6000,
        )
    )
    agent.start()
    try:
        assert agent.buffer is not None
        buffer = agent.buffer
        wait_until(lambda: buffer.dropped_total() >= 30, 20, "the queue to overflow")
        samples = sum(s.stats.samples for s in agent.samplers)
        wait_until(
            lambda: sum(s.stats.samples for s in agent.samplers) > samples + 20,
            5,
            "sampling to go on",
        )
        broker.start()
        with collecting(broker.host, broker.port) as collector:
            wait_until(
                lambda: (s := collector.last_status()) is not None and s.dropped_total >= 30,
                15,
                "a status reporting the drops",
            )
            agent.stop()
            last = last_seqs(queue)
            wait_until(
                lambda: all(
                    max(collector.seqs().get(sensor, [-1])) == seq for sensor, seq in last.items()
                ),
                10,
                "the newest readings",
            )
    finally:
        agent.stop()
    seqs = collector.seqs()
    # The oldest readings were dropped: no sensor's delivery starts at 0, and what arrived
    # is the unbroken tail of each sensor's readings.
    assert all(min(arrived) > 0 for arrived in seqs.values()), {k: min(v) for k, v in seqs.items()}
    check_delivery(collector, last, first=1)

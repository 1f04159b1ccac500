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
from paho.mqtt.enums import MQTTProtocolVersion
from structlog.testing import capture_logs

from edge_agents import publisher as publisher_module
from edge_agents.agent import Agent
from edge_agents.config import MqttVersion
from telemetry import GatewayState
from tests.agent_harness import (
    AgentProcess,
    agent_config,
    agent_toml,
    check_delivery,
    collecting,
    last_seqs,
    wait_for_every_reading,
    wait_until,
)
from tests.servers.amqtt import AmqttServer
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
                lambda: sum(s.state is GatewayState.ONLINE for s in collector.statuses) >= 3,
                10,
                "the birth message and two heartbeats",
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
    online = [s for s in collector.statuses if s.state is GatewayState.ONLINE]
    uptimes = [s.uptime_s for s in online]
    assert uptimes == sorted(uptimes)
    assert [s.sent_total for s in online] == sorted(s.sent_total for s in online)
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
        last = wait_for_every_reading(collector, queue, 20)
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
        last = wait_for_every_reading(collector, queue, 10)
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


# ---------------------------------------------------------------- TLS and credentials


def _tls_broker_section(broker: MosquittoServer, *, cert: Path, key: Path, password: str) -> str:
    assert broker.pki is not None
    return "\n".join(
        [
            'username = "gw-test"',
            f'password = "{password}"',
            "[broker.tls]",
            f'ca_file = "{broker.pki.ca_cert}"',
            f'cert_file = "{cert}"',
            f'key_file = "{key}"',
        ]
    )


def test_tls_with_a_client_certificate_and_credentials(
    tls_mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    broker = tls_mosquitto
    assert broker.pki is not None
    client = broker.pki.client("gw-test")
    password = broker.passwords["gw-test"]
    config = agent_config(
        tmp_path / "queue.db",
        f"mqtts://127.0.0.1:{broker.tls_port}",
        extra_broker=_tls_broker_section(
            broker, cert=client.cert, key=client.key, password=password
        ),
    )
    with collecting(broker.host, broker.port, username="gw-test", password=password) as collector:
        agent = Agent(config)
        agent.start()
        try:
            wait_until(lambda: collector.count() >= 10, 20, "readings over TLS")
        finally:
            agent.stop()
    assert agent.publisher is not None
    assert agent.publisher.stats.connects == 1
    assert agent.publisher.stats.last_error is None


@pytest.mark.parametrize("fault", ["broken certificate", "untrusted certificate", "wrong password"])
def test_a_refused_connection_is_logged_clearly_and_retried_with_backoff(
    tls_mosquitto: MosquittoServer, tmp_path: Path, fault: str
) -> None:
    broker = tls_mosquitto
    assert broker.pki is not None
    pki = broker.pki
    cert, key = pki.client("gw-test").cert, pki.client("gw-test").key
    password = broker.passwords["gw-test"]
    expected = {
        "broken certificate": "cannot load TLS files",
        "untrusted certificate": "connection closed before CONNACK",
        "wrong password": "broker refused the connection: Not authorized",
    }[fault]
    if fault == "broken certificate":
        cert = pki.broken_cert
    elif fault == "untrusted certificate":
        cert, key = pki.rogue.cert, pki.rogue.key
    else:
        password = "not-" + password
    config = agent_config(
        tmp_path / "queue.db",
        f"mqtts://127.0.0.1:{broker.tls_port}",
        extra_broker=_tls_broker_section(broker, cert=cert, key=key, password=password),
    )
    with capture_logs() as logs:
        agent = Agent(config)
        agent.start()
        try:
            assert agent.publisher is not None
            publisher = agent.publisher
            wait_until(lambda: publisher.backoff.failures >= 3, 20, "three failed attempts")
            assert publisher.is_alive()
            assert agent.healthy()
            # Sampling goes on into the queue while the broker refuses the gateway.
            wait_until(lambda: agent.buffer is not None and agent.buffer.depth() > 0, 10, "queue")
        finally:
            agent.stop()
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert errors, logs
    assert all(expected in entry["event"] for entry in errors), [e["event"] for e in errors]
    # Failures are counted and the attempts spaced out, not a tight loop.
    assert [entry["failures"] for entry in errors[:3]] == [0, 1, 2]
    assert len(errors) < 20
    assert publisher.stats.connects == 0


# ---------------------------------------------------------------- protocol versions


def test_mqtt_5_falls_back_to_3_1_1_on_a_broker_that_speaks_only_3_1_1(
    amqtt: AmqttServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # amqtt neither refuses nor answers an MQTT 5 CONNECT: the agent waits for the CONNACK,
    # then tries 3.1.1. A short wait keeps the test quick.
    monkeypatch.setattr(publisher_module, "CONNACK_TIMEOUT_S", 1.0)
    queue = tmp_path / "queue.db"
    config = agent_config(queue, f"mqtt://{amqtt.host}:{amqtt.port}")
    with collecting(amqtt.host, amqtt.port, protocol=MQTTProtocolVersion.MQTTv311) as collector:
        agent = Agent(config)
        agent.start()
        try:
            wait_until(lambda: collector.count() >= 10, 30, "readings through amqtt")
        finally:
            agent.stop()
    assert agent.publisher is not None
    assert agent.publisher.stats.protocol is MqttVersion.V311
    check_delivery(collector, last_seqs(queue))


def test_mqtt_3_1_1_when_configured(private_mosquitto: MosquittoServer, tmp_path: Path) -> None:
    queue = tmp_path / "queue.db"
    broker = private_mosquitto
    config = agent_config(
        queue, f"mqtt://{broker.host}:{broker.port}", extra_broker='protocol = "3.1.1"'
    )
    with collecting(broker.host, broker.port) as collector:
        agent = Agent(config)
        agent.start()
        try:
            wait_until(lambda: collector.count() >= 10, 20, "readings over MQTT 3.1.1")
        finally:
            agent.stop()
    assert agent.publisher is not None
    assert agent.publisher.stats.protocol is MqttVersion.V311
    check_delivery(collector, last_seqs(queue))


def test_two_gateways_with_one_id_back_off_instead_of_kicking_each_other_in_a_loop(
    private_mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    """A copied config: each connect takes the other's session over, and both must back off."""
    broker = private_mosquitto
    url = f"mqtt://{broker.host}:{broker.port}"
    agents = [Agent(agent_config(tmp_path / f"queue-{n}.db", url, sensors=1)) for n in (1, 2)]
    for agent in agents:
        agent.start()
    try:
        time.sleep(4.0)
        connects = [agent.publisher.stats.connects for agent in agents if agent.publisher]
    finally:
        for agent in agents:
            agent.stop()
    assert sum(connects) >= 3, connects  # they did take each other over
    # Backoff between 0.2 s and 1 s: a few connects each, not hundreds.
    assert all(n <= 20 for n in connects), connects

"""The MQTT-to-Kafka bridge: its routing decisions, and its guarantees on real servers.

The first part tests :mod:`stream.bridge.route` (pure) and the configuration. The
second runs bridges against a real Mosquitto and a real Tansu (a Kafka-protocol
broker): bulk forwarding with per-gateway order, dead letters, a SIGKILLed bridge
process, two processes on one shared subscription, and Kafka unreachable. Each test
has its own gateway ids, MQTT client ids, share group and Kafka topics, and every
wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped,unused-ignore]
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr, ValidationError

from edge_agents.config import BrokerConfig, TlsConfig
from stream.bridge import Bridge, BridgeConfig, DeadLetter, KafkaConfig, KafkaTopics, Route, Router
from stream.bridge.cli import PASSWORD_ENV, add_parser, bridge_command, config_from_args
from telemetry import Channel, CodecLimits
from tests.servers._procs import REPO_ROOT, log_tail
from tests.servers.mosquitto import MosquittoServer
from tests.servers.tansu import TansuServer
from tests.wire import NOW, batch, dumps, reading

# ============================================================================ routing

ROUTER = Router()
GW = "gw-lakeside-01"
READINGS = f"urbansense/v1/{GW}/readings"
STATUS = f"urbansense/v1/{GW}/status"


def status_payload(gateway_id: str = GW, **overrides: Any) -> bytes:
    data: dict[str, Any] = {
        "gateway_id": gateway_id,
        "state": "online",
        "ts": "2026-11-22T07:59:30Z",
        "agent_version": "0.1.0",
    }
    return dumps(data | overrides)


def route(topic: str, payload: bytes, router: Router = ROUTER) -> Route | DeadLetter:
    return router.route(topic, payload, NOW)


def dead_letter(topic: str, payload: bytes, router: Router = ROUTER) -> DeadLetter:
    result = route(topic, payload, router)
    assert isinstance(result, DeadLetter), result
    return result


def test_a_valid_batch_goes_to_the_readings_topic_keyed_by_gateway_with_its_own_bytes() -> None:
    payload = dumps(batch(reading(seq=1), reading(seq=2), gateway_id=GW))

    result = route(READINGS, payload)

    assert result == Route(
        topic="urbansense.readings",
        key=GW.encode(),
        value=payload,
        channel=Channel.READINGS,
        readings=2,
    )
    assert result.value is payload  # as received, not re-encoded


def test_a_valid_status_goes_to_the_status_topic_keyed_by_gateway() -> None:
    payload = status_payload()

    result = route(STATUS, payload)

    assert result == Route("urbansense.status", GW.encode(), payload, Channel.STATUS, 0)


def test_topic_names_come_from_the_router() -> None:
    router = Router(readings_topic="r", status_topic="s", dead_letter_topic="d")
    assert route(READINGS, dumps(batch(gateway_id=GW)), router).topic == "r"
    assert route(STATUS, status_payload(), router).topic == "s"
    assert route(READINGS, b"nope", router).topic == "d"


def test_invalid_json_becomes_a_dead_letter_with_the_reason_and_the_raw_bytes() -> None:
    payload = b'{"gateway_id": "gw-lakeside-01", "readings": ['

    letter = dead_letter(READINGS, payload)

    assert letter.topic == "urbansense.deadletter"
    assert letter.key == GW.encode()
    assert letter.reasons == ("malformed_json",)
    record = json.loads(letter.value)
    assert record["schema_version"] == 1
    assert record["reason"] == "malformed_json"
    assert record["reasons"] == ["malformed_json"]
    assert record["mqtt_topic"] == READINGS
    assert record["gateway_id"] == GW
    assert record["received_at"] == "2026-11-22T08:00:00Z"
    assert base64.b64decode(record["payload_base64"]) == payload
    assert record["payload_size"] == len(payload)
    assert record["payload_truncated"] is False
    assert record["problems"][0]["reason"] == "malformed_json"
    assert record["problems"][0]["message"]


def test_a_wrong_schema_names_every_problem_with_its_field() -> None:
    payload = dumps(
        batch(reading(seq="7", metrics={"pm2_5": 35.0}), gateway_id=GW, schema_version=2)
    )

    letter = dead_letter(READINGS, payload)

    found = {(r.reason, r.field) for r in letter.rejections}
    assert ("unsupported_schema", "schema_version") in found
    assert ("wrong_type", "readings.0.seq") in found
    record = json.loads(letter.value)
    assert {(p["reason"], p["field"]) for p in record["problems"]} == found
    assert set(record["reasons"]) == {"unsupported_schema", "wrong_type"}


def test_an_unknown_metric_is_dead_lettered_naming_the_metric() -> None:
    payload = dumps(batch(reading(metrics={"pm2_5": 35.0, "radon": 4.0}), gateway_id=GW))

    letter = dead_letter(READINGS, payload)

    assert letter.reason == "unknown_metric"
    assert letter.rejections[0].field == "readings.0.metrics.radon"
    assert "radon" in letter.rejections[0].message


def test_an_oversize_payload_is_dead_lettered_with_its_bytes_cut_to_the_limit() -> None:
    router = Router(limits=CodecLimits(max_payload_bytes=2048), max_raw_bytes=1000)
    payload = dumps(batch(reading(), gateway_id=GW) | {"pad": "y" * 5000})

    letter = dead_letter(READINGS, payload, router)

    assert letter.reasons == ("oversize",)
    record = json.loads(letter.value)
    assert record["payload_size"] == len(payload)
    assert record["payload_truncated"] is True
    assert base64.b64decode(record["payload_base64"]) == payload[:1000]


def test_a_reading_from_the_future_is_measured_against_the_receive_time() -> None:
    payload = dumps(batch(reading(ts="2026-11-22T08:10:00Z"), gateway_id=GW))

    assert dead_letter(READINGS, payload).reason == "future_timestamp"
    later = ROUTER.route(READINGS, payload, NOW + timedelta(minutes=10))
    assert isinstance(later, Route)


@pytest.mark.parametrize(
    "topic",
    [
        "somewhere/else",
        "urbansense/v1/gw-1/readings/extra",
        "urbansense/v1/gw-1/config",
        "urbansense/v1/alerts/pollution",
        "urbansense/v2/gw-1/readings",
        "",
    ],
)
def test_a_message_on_an_unknown_topic_is_dead_lettered_keyed_by_its_topic(topic: str) -> None:
    payload = dumps(batch(gateway_id="gw-1"))

    letter = dead_letter(topic, payload)

    assert letter.reasons == ("unknown_topic",)
    assert letter.key == topic.encode()
    assert letter.gateway_id is None
    assert json.loads(letter.value)["mqtt_topic"] == topic


def test_a_payload_naming_another_gateway_is_dead_lettered() -> None:
    readings = dead_letter(READINGS, dumps(batch(gateway_id="gw-other")))
    status = dead_letter(STATUS, status_payload("gw-other"))

    for letter in (readings, status):
        assert letter.reasons == ("gateway_mismatch",)
        assert letter.rejections[0].field == "gateway_id"
        assert letter.key == GW.encode()


def test_a_batch_sent_to_the_status_topic_is_refused_by_the_status_schema() -> None:
    letter = dead_letter(STATUS, dumps(batch(gateway_id=GW)))

    assert "unknown_field" in letter.reasons or "missing_field" in letter.reasons


def test_a_dead_letter_needs_an_aware_time_and_a_reason() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ROUTER.route("x", b"", datetime(2026, 11, 22, 8, 0))  # noqa: DTZ001 -- on purpose
    with pytest.raises(ValueError, match="at least one"):
        DeadLetter("d", b"k", "t", None, NOW, b"", 0, ())


@given(
    topic=st.one_of(
        st.text(max_size=80),
        st.sampled_from([READINGS, STATUS, "urbansense/v1/alerts/system"]),
    ),
    payload=st.one_of(
        st.binary(max_size=300),
        st.builds(lambda d: dumps(d), st.dictionaries(st.text(max_size=10), st.integers())),
    ),
)
def test_any_topic_and_payload_get_a_route_or_a_dead_letter_holding_the_bytes(
    topic: str, payload: bytes
) -> None:
    result = route(topic, payload)

    if isinstance(result, Route):
        assert result.value == payload
    else:
        record = json.loads(result.value)
        assert base64.b64decode(record["payload_base64"]) == payload
        assert record["reasons"]
        assert record["problems"]


# ============================================================================ configuration


def test_the_default_topics_and_subscriptions() -> None:
    config = BridgeConfig()
    assert (config.topics.readings, config.topics.status, config.topics.dead_letter) == (
        "urbansense.readings",
        "urbansense.status",
        "urbansense.deadletter",
    )
    assert BridgeConfig(share_group=None).subscriptions() == [
        "urbansense/v1/+/readings",
        "urbansense/v1/+/status",
    ]


@pytest.mark.parametrize("servers", ["", "kafka", "kafka:", "a:1,,b:2", "a b:1"])
def test_bad_bootstrap_servers_are_refused(servers: str) -> None:
    with pytest.raises(ValidationError, match="host:port"):
        KafkaConfig(bootstrap_servers=servers)


@pytest.mark.parametrize("name", ["", "has space", "slash/topic", "x" * 250])
def test_bad_kafka_topic_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        KafkaTopics(readings=name)


def test_records_must_fit_in_a_kafka_request() -> None:
    with pytest.raises(ValidationError, match="max_request_bytes"):
        BridgeConfig(max_payload_bytes=2 * 1024 * 1024)
    with pytest.raises(ValidationError, match="max_request_bytes"):
        BridgeConfig(dead_letter_max_raw_bytes=1024 * 1024)


def test_a_share_group_is_an_id() -> None:
    with pytest.raises(ValidationError, match="share_group"):
        BridgeConfig(share_group="a/b")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="urbansense")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bridge", *argv])


def test_the_cli_builds_the_config_and_takes_the_password_from_the_environment() -> None:
    args = parse(
        "--mqtt",
        "mqtt://broker.lan:1884",
        "--mqtt-username",
        "bridge",
        "--kafka",
        "k1:9092,k2:9092",
        "--share-group",
        "",
        "--client-id",
        "bridge-7",
        "--readings-topic",
        "r",
        "--create-topics",
        "6",
    )

    config = config_from_args(args, environ={PASSWORD_ENV: "s3cret"})

    assert config.mqtt.host == "broker.lan"
    assert config.mqtt.port == 1884
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "s3cret"
    assert config.share_group is None
    assert config.client_id == "bridge-7"
    assert config.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert config.kafka.create_topics_partitions == 6
    assert config.topics.readings == "r"


def test_the_cli_refuses_bad_options_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert bridge_command(parse("--kafka", "nowhere")) == 2
    assert "kafka.bootstrap_servers" in capsys.readouterr().err


# ============================================================================ real servers

TIMEOUT = 60.0
"""The bound on each wait for the servers and the bridge, in seconds."""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Envelope:
    """One published batch envelope: its gateway, its number and its bytes."""

    gateway_id: str
    number: int
    payload: bytes

    @property
    def topic(self) -> str:
        return f"urbansense/v1/{self.gateway_id}/readings"


def envelopes(gateways: Sequence[str], per_gateway: int, readings: int = 5) -> list[Envelope]:
    """``per_gateway`` envelopes of ``readings`` readings for each gateway, interleaved."""
    ts = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)
    out = []
    for number in range(per_gateway):
        for gateway_id in gateways:
            items = [
                reading(
                    sensor_id=f"{gateway_id}-aq",
                    seq=number * readings + i,
                    ts=ts.isoformat(),
                    metrics={"pm2_5": float(i), "pm10": 2.0 * i},
                )
                for i in range(readings)
            ]
            payload = dumps(batch(*items, gateway_id=gateway_id, sent_at=ts.isoformat()))
            out.append(Envelope(gateway_id, number, payload))
    return out


def envelope_number(value: bytes) -> tuple[str, int]:
    """The gateway and number of an envelope built by :func:`envelopes`, from its bytes."""
    data = json.loads(value)
    readings = data["readings"]
    return data["gateway_id"], readings[0]["seq"] // len(readings)


def publish(
    server: MosquittoServer,
    messages: Sequence[tuple[str, bytes]],
    *,
    pause_every: int = 0,
    pause_s: float = 0.0,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Publish with QoS 1 from one MQTT 5 client and wait until the broker acked each."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=unique("publisher"), protocol=mqtt.MQTTv5
    )
    if username is not None:
        client.username_pw_set(username, password)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    connected = threading.Event()

    def on_connect(
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        connected.set()

    client.on_connect = on_connect
    client.connect(server.host, server.port)
    client.loop_start()
    try:
        assert connected.wait(TIMEOUT), "the publisher did not connect"
        infos = []
        for index, (topic, payload) in enumerate(messages, start=1):
            infos.append(client.publish(topic, payload, qos=1))
            if pause_every and index % pause_every == 0:
                time.sleep(pause_s)
        deadline = time.monotonic() + TIMEOUT
        for info in infos:
            info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            assert info.is_published(), f"no PUBACK for message {info.mid}"
    finally:
        client.disconnect()
        client.loop_stop()


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def consume(
    bootstrap: str,
    topic: str,
    until: Callable[[list[Record]], bool],
    timeout: float = TIMEOUT,
) -> list[Record]:
    """Read ``topic`` from the beginning until ``until(records)`` holds (or the timeout)."""

    async def read() -> list[Record]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        records: list[Record] = []
        try:
            deadline = time.monotonic() + timeout
            while not until(records) and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=300)
                for batch_records in batches.values():
                    records.extend(
                        Record(r.partition, r.offset, r.key, r.value) for r in batch_records
                    )
        finally:
            await consumer.stop()
        return records

    return asyncio.run(asyncio.wait_for(read(), timeout + 30))


def has_envelopes(wanted: set[tuple[str, int]]) -> Callable[[list[Record]], bool]:
    def check(records: list[Record]) -> bool:
        return wanted <= {envelope_number(r.value) for r in records}

    return check


def check_forwarded(records: list[Record], sent: Sequence[Envelope]) -> int:
    """Every envelope arrived, as sent, keyed by its gateway, in order on one partition.

    Returns the number of duplicates.
    """
    by_bytes = {e.payload: e for e in sent}
    wanted = {(e.gateway_id, e.number) for e in sent}
    got = [envelope_number(r.value) for r in records]
    missing = wanted - set(got)
    assert not missing, (
        f"{len(missing)} of {len(wanted)} envelopes lost, e.g. {sorted(missing)[:5]}"
    )
    partitions: dict[str, set[int]] = defaultdict(set)
    first_seen: dict[str, list[int]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        envelope = by_bytes.get(record.value)
        if envelope is None:
            continue  # not one of this test's
        assert record.key == envelope.gateway_id.encode()
        partitions[envelope.gateway_id].add(record.partition)
        if (envelope.gateway_id, envelope.number) not in seen:
            seen.add((envelope.gateway_id, envelope.number))
            first_seen[envelope.gateway_id].append(envelope.number)
    for gateway_id, where in partitions.items():
        assert len(where) == 1, f"{gateway_id}'s records are spread over partitions {where}"
    for gateway_id, numbers in first_seen.items():
        assert numbers == sorted(numbers), f"{gateway_id}'s envelopes arrived out of order"
    return len(records) - len(wanted)


class BridgeThread:
    """A :class:`Bridge` running on its own asyncio loop in a thread of the test process."""

    def __init__(self, config: BridgeConfig) -> None:
        self.bridge = Bridge(config)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=config.client_id, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self.bridge.run())
        except BaseException as error:
            self.error = error

    def start(self, *, kafka: bool = True) -> BridgeThread:
        self.thread.start()
        wait_until(self.bridge.subscribed.is_set, "the bridge's subscriptions")
        if kafka:
            wait_until(lambda: self.bridge.stats.kafka_ready, "the bridge's Kafka producer")
        return self

    def stop(self) -> None:
        self.bridge.stop()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the bridge did not stop"
        if self.error is not None:
            raise self.error


@contextmanager
def running(config: BridgeConfig, *, kafka: bool = True) -> Iterator[Bridge]:
    runner = BridgeThread(config)
    try:
        yield runner.start(kafka=kafka).bridge
    finally:
        runner.stop()


def bridge_config(
    mosquitto: MosquittoServer, bootstrap: str, name: str, **overrides: Any
) -> BridgeConfig:
    """A bridge for one test: its own client id, share group and topics."""
    options: dict[str, Any] = {
        "mqtt": BrokerConfig(url=f"mqtt://{mosquitto.host}:{mosquitto.port}", reconnect_max_s=2),
        "client_id": f"{name}-a",
        "share_group": name,
        "session_expiry_s": 120,
        "kafka": KafkaConfig(
            bootstrap_servers=bootstrap, create_topics_partitions=4, request_timeout_ms=5000
        ),
        "topics": KafkaTopics(
            readings=f"{name}.readings", status=f"{name}.status", dead_letter=f"{name}.dead"
        ),
        "stats_interval_s": 1.0,
        "drain_timeout_s": 10.0,
    }
    return BridgeConfig(**(options | overrides))


pytestmark_servers = pytest.mark.servers


@pytestmark_servers
def test_every_envelope_arrives_keyed_by_gateway_and_in_order(
    mosquitto: MosquittoServer, tansu: TansuServer
) -> None:
    name = unique("bulk")
    gateways = [f"{name}-gw{i}" for i in range(8)]
    sent = envelopes(gateways, per_gateway=250)  # 2000 envelopes, 10,000 readings
    statuses = [
        (f"urbansense/v1/{g}/status", status_payload(g, ts=NOW.isoformat())) for g in gateways
    ]
    config = bridge_config(mosquitto, tansu.bootstrap_servers, name)

    with running(config) as bridge:
        publish(mosquitto, [(e.topic, e.payload) for e in sent] + statuses)
        records = consume(
            tansu.bootstrap_servers,
            config.topics.readings,
            has_envelopes({(e.gateway_id, e.number) for e in sent}),
        )
        status_records = consume(
            tansu.bootstrap_servers, config.topics.status, lambda r: len(r) >= len(gateways)
        )
        wait_until(lambda: bridge.stats.in_flight == 0, "every message settled")
        stats = bridge.stats

    duplicates = check_forwarded(records, sent)
    assert duplicates == 0  # nothing failed, so nothing was sent twice
    assert sorted(r.key or b"" for r in status_records) == sorted(g.encode() for g in gateways)
    assert {r.value for r in status_records} == {p for _, p in statuses}
    assert len({r.partition for r in records}) > 1  # the keys did spread over partitions
    assert stats.envelopes == len(sent)
    assert stats.readings == 5 * len(sent)
    assert stats.statuses == len(gateways)
    assert stats.acked == stats.received == len(sent) + len(gateways)
    assert stats.dead_lettered == stats.kafka_errors == 0


@pytestmark_servers
def test_bad_payloads_land_in_the_dead_letter_topic_and_are_counted(
    mosquitto: MosquittoServer, tansu: TansuServer
) -> None:
    name = unique("dead")
    gateway_id = f"{name}-gw"
    topic = f"urbansense/v1/{gateway_id}/readings"
    [good] = envelopes([gateway_id], per_gateway=1)
    bad = [
        (topic, b'{"gateway_id": "' + gateway_id.encode() + b'", "readings": ['),
        (topic, dumps(batch(reading(metrics={"radon": 4.0}), gateway_id=gateway_id))),
        (topic, dumps(batch(reading(), gateway_id=gateway_id) | {"pad": "y" * 300_000})),
    ]
    config = bridge_config(mosquitto, tansu.bootstrap_servers, name)

    with running(config) as bridge:
        publish(mosquitto, [*bad, (good.topic, good.payload)])
        letters = consume(tansu.bootstrap_servers, config.topics.dead_letter, lambda r: len(r) >= 3)
        forwarded = consume(tansu.bootstrap_servers, config.topics.readings, lambda r: len(r) >= 1)
        wait_until(lambda: bridge.stats.in_flight == 0, "every message settled")
        stats = bridge.stats

    records = [json.loads(r.value) for r in letters]
    assert [r["reasons"] for r in records] == [
        ["malformed_json"],
        ["unknown_metric"],
        ["oversize"],
    ]
    assert records[1]["problems"][0]["field"] == "readings.0.metrics.radon"
    for record, (mqtt_topic, payload), letter in zip(records, bad, letters, strict=True):
        assert letter.key == gateway_id.encode()
        assert record["mqtt_topic"] == mqtt_topic
        assert record["gateway_id"] == gateway_id
        assert record["payload_size"] == len(payload)
        raw = base64.b64decode(record["payload_base64"])
        assert raw == payload[: config.dead_letter_max_raw_bytes]
        received = datetime.fromisoformat(record["received_at"])
        assert abs(received - datetime.now(UTC)) < timedelta(minutes=5)
    assert records[2]["payload_truncated"] is True
    assert [r.value for r in forwarded] == [good.payload]  # the bridge went on
    assert stats.rejected == {"malformed_json": 1, "unknown_metric": 1, "oversize": 1}
    assert stats.dead_lettered == 3
    assert stats.acked == 4


@pytestmark_servers
def test_the_bridge_reaches_the_broker_over_tls_with_a_client_certificate_and_password(
    tls_mosquitto: MosquittoServer, tansu: TansuServer
) -> None:
    assert tls_mosquitto.pki is not None
    assert tls_mosquitto.tls_port is not None
    user = "gw-test"
    password = tls_mosquitto.passwords[user]
    certs = tls_mosquitto.pki.client(user)
    name = unique("tls")
    [envelope] = envelopes([f"{name}-gw"], per_gateway=1)
    broker = BrokerConfig(
        url=f"mqtts://127.0.0.1:{tls_mosquitto.tls_port}",
        username=user,
        password=SecretStr(password),
        tls=TlsConfig(ca_file=tls_mosquitto.pki.ca_cert, cert_file=certs.cert, key_file=certs.key),
    )
    config = bridge_config(tls_mosquitto, tansu.bootstrap_servers, name, mqtt=broker)

    with running(config) as bridge:
        publish(
            tls_mosquitto, [(envelope.topic, envelope.payload)], username=user, password=password
        )
        records = consume(tansu.bootstrap_servers, config.topics.readings, lambda r: len(r) >= 1)
        wait_until(lambda: bridge.stats.acked == 1, "the message acked")

    assert [r.value for r in records] == [envelope.payload]


# ------------------------------------------------------------------ bridge processes


@dataclass
class BridgeProcess:
    """``python -m stream.bridge.cli`` as a child process, logging JSON to a file."""

    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> BridgeProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream.bridge.cli", *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        return self

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            with_json = line.strip()
            if with_json.startswith("{"):
                out.append(json.loads(with_json))
        return out

    def wait_for_event(self, event: str, after: int = 0) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            assert self.process is not None
            exited = self.process.poll() is not None
            found[:] = [e for e in self.events()[after:] if e.get("event") == event]
            if not found and exited:
                pytest.fail(f"the bridge exited before {event!r}:\n{log_tail(self.log_path)}")
            return bool(found)

        wait_until(seen, f"{event!r} in the bridge's log")
        return found[0]

    def kill(self, signum: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(signum)
        self.process.wait(TIMEOUT)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)


def process_argv(config: BridgeConfig) -> list[str]:
    return [
        "--mqtt",
        config.mqtt.url,
        "--kafka",
        config.kafka.bootstrap_servers,
        "--client-id",
        config.client_id,
        "--share-group",
        config.share_group or "",
        "--session-expiry-s",
        str(config.session_expiry_s),
        "--readings-topic",
        config.topics.readings,
        "--status-topic",
        config.topics.status,
        "--dead-letter-topic",
        config.topics.dead_letter,
        "--create-topics",
        "4",
        "--stats-interval-s",
        "0.5",
        "--log-format",
        "json",
    ]


@pytestmark_servers
def test_a_killed_bridge_loses_nothing_once_restarted_with_the_same_client_id(
    mosquitto: MosquittoServer, tansu: TansuServer, tmp_path: Path
) -> None:
    name = unique("crash")
    gateways = [f"{name}-gw{i}" for i in range(4)]
    sent = envelopes(gateways, per_gateway=750)  # 3000 envelopes
    config = bridge_config(mosquitto, tansu.bootstrap_servers, name)
    argv = process_argv(config)
    first = BridgeProcess(argv, tmp_path / "bridge-1.log").start()
    second = BridgeProcess(argv, tmp_path / "bridge-2.log")
    try:
        first.wait_for_event("subscribed")
        first.wait_for_event("kafka connected")
        publisher = threading.Thread(
            target=publish,
            args=(mosquitto, [(e.topic, e.payload) for e in sent]),
            kwargs={"pause_every": 100, "pause_s": 0.05},
        )
        publisher.start()
        wait_until(
            lambda: any(e.get("forwarded", 0) >= 300 for e in first.events()),
            "the first bridge forwarding",
        )
        first.kill(signal.SIGKILL)
        killed_at = max(e.get("forwarded", 0) for e in first.events())
        publisher.join(TIMEOUT)
        assert not publisher.is_alive()
        assert killed_at < len(sent), "the bridge was killed too late to test anything"

        second.start()
        second.wait_for_event("subscribed")
        records = consume(
            tansu.bootstrap_servers,
            config.topics.readings,
            has_envelopes({(e.gateway_id, e.number) for e in sent}),
        )
        second.kill(signal.SIGTERM)
        stopped = second.wait_for_event("bridge stopped")
    finally:
        first.close()
        second.close()

    duplicates = check_forwarded(records, sent)
    assert duplicates >= 0
    assert stopped["in_flight"] == 0
    print(f"killed after {killed_at} forwarded; {duplicates} duplicates after the restart")


@pytestmark_servers
def test_two_bridges_on_one_shared_subscription_split_the_load_and_lose_nothing(
    mosquitto: MosquittoServer, tansu: TansuServer
) -> None:
    name = unique("shared")
    gateways = [f"{name}-gw{i}" for i in range(6)]
    sent = envelopes(gateways, per_gateway=200)  # 1200 envelopes
    config_a = bridge_config(mosquitto, tansu.bootstrap_servers, name)
    config_b = config_a.model_copy(update={"client_id": f"{name}-b"})

    with running(config_a) as bridge_a, running(config_b) as bridge_b:
        publish(mosquitto, [(e.topic, e.payload) for e in sent])
        records = consume(
            tansu.bootstrap_servers,
            config_a.topics.readings,
            has_envelopes({(e.gateway_id, e.number) for e in sent}),
        )
        wait_until(
            lambda: bridge_a.stats.in_flight == 0 and bridge_b.stats.in_flight == 0,
            "every message settled",
        )
        a, b = bridge_a.stats.envelopes, bridge_b.stats.envelopes

    # A shared subscription balances messages, not gateways: order across the two
    # bridges is not guaranteed, so only loss and keys are checked here.
    wanted = {(e.gateway_id, e.number) for e in sent}
    assert {envelope_number(r.value) for r in records} == wanted
    assert all(r.key == envelope_number(r.value)[0].encode() for r in records)
    assert min(a, b) > 0, f"one bridge did all the work: {a} and {b}"
    assert a + b == len(records) == len(sent)


@pytestmark_servers
def test_with_kafka_down_the_bridge_acks_nothing_and_forwards_everything_once_it_is_back(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    """Kafka down before the bridge first reaches it, and again while the bridge runs.

    The test starts the bridge before its own Tansu exists (the topics are created when
    the bridge first reaches it). The second outage freezes Tansu (SIGSTOP) rather than
    restarting it: Tansu keeps its records in memory, so a restarted one starts empty,
    with no topics, and it acks records sent to a topic it does not have without
    keeping them where a consumer finds them (all 120 of the outage's envelopes, in
    about one run in four).
    """
    tansu = TansuServer.create(tmp_path / "tansu")  # its port is known, nothing listens yet
    name = unique("down")
    gateways = [f"{name}-gw{i}" for i in range(3)]
    before = envelopes(gateways, per_gateway=100)  # 300, while Kafka has never been up
    during = _shifted(gateways, first=100, count=40)  # 120, during an outage
    config = bridge_config(
        mosquitto,
        tansu.bootstrap_servers,
        name,
        kafka=KafkaConfig(
            bootstrap_servers=tansu.bootstrap_servers,
            create_topics_partitions=2,
            request_timeout_ms=2000,
        ),
    )
    try:
        with running(config, kafka=False) as bridge:
            publish(mosquitto, [(e.topic, e.payload) for e in before])
            wait_until(lambda: bridge.stats.received == len(before), "the bridge receiving")
            time.sleep(2.0)
            assert bridge.stats.acked == 0
            assert bridge.stats.in_flight == len(before)
            assert bridge.stats.kafka_errors > 0
            assert not bridge.stats.kafka_ready

            tansu.start()
            wait_until(lambda: bridge.stats.kafka_ready, "the bridge reaching Kafka")
            records = consume(
                tansu.bootstrap_servers,
                config.topics.readings,
                has_envelopes({(e.gateway_id, e.number) for e in before}),
            )
            wait_until(lambda: bridge.stats.acked == len(before), "every message acked")
            check_forwarded(records, before)

            errors_before = bridge.stats.kafka_errors
            pid = tansu.process.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)  # down: it answers nothing, and keeps its records
            try:
                publish(mosquitto, [(e.topic, e.payload) for e in during])
                wait_until(
                    lambda: bridge.stats.received == len(before) + len(during),
                    "the bridge receiving",
                )
                time.sleep(3.0)
                errors_while_down = bridge.stats.kafka_errors - errors_before
                assert bridge.stats.acked == len(before), "acked while Kafka was down"
                assert bridge.stats.in_flight == len(during)
            finally:
                os.kill(pid, signal.SIGCONT)
            records = consume(
                tansu.bootstrap_servers,
                config.topics.readings,
                has_envelopes({(e.gateway_id, e.number) for e in during}),
            )
            wait_until(lambda: bridge.stats.in_flight == 0, "every message settled")
            stats = bridge.stats
    finally:
        tansu.stop()

    check_forwarded(records, during)
    assert stats.acked == len(before) + len(during)
    assert errors_while_down > 0


def _shifted(gateways: Sequence[str], first: int, count: int) -> list[Envelope]:
    """Envelopes numbered ``first`` to ``first + count - 1`` for each gateway."""
    made = envelopes(gateways, per_gateway=first + count)
    return [e for e in made if e.number >= first]


def test_a_bug_in_a_task_stops_the_bridge_with_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No broker needed: the bridge must not keep running half-dead."""

    async def broken(self: Bridge) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Bridge, "_log_stats", broken)
    bridge = Bridge(BridgeConfig(mqtt=BrokerConfig(url="mqtt://127.0.0.1:1")))
    with pytest.raises(RuntimeError, match="a bug"):
        asyncio.run(asyncio.wait_for(bridge.run(), TIMEOUT))


def test_stop_before_run_stops_at_once() -> None:
    """No broker needed: a bridge asked to stop before it runs returns at once."""
    bridge = Bridge(BridgeConfig(mqtt=BrokerConfig(url="mqtt://127.0.0.1:1"), drain_timeout_s=1))
    bridge.stop()
    stats = asyncio.run(asyncio.wait_for(bridge.run(), TIMEOUT))
    assert stats.received == 0


@pytestmark_servers
def test_a_broker_restart_with_kafka_down_keeps_one_copy_of_each_message_in_flight(
    private_mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    """The acks of a lost connection are never sent on the next one.

    Kafka is unreachable, so the bridge holds every message unacknowledged. The broker
    restarts (its persistence keeps the session), and the resumed session sends the
    same messages again: the bridge drops its old copies, so it holds one copy each,
    and once Kafka is reachable it forwards and acknowledges each exactly once.
    """
    tansu = TansuServer.create(tmp_path / "tansu")
    name = unique("restart")
    sent = envelopes([f"{name}-gw0", f"{name}-gw1"], per_gateway=100)
    config = bridge_config(
        private_mosquitto,
        tansu.bootstrap_servers,
        name,
        kafka=KafkaConfig(bootstrap_servers=tansu.bootstrap_servers, create_topics_partitions=2),
    )
    try:
        with running(config, kafka=False) as bridge:
            publish(private_mosquitto, [(e.topic, e.payload) for e in sent])
            wait_until(lambda: bridge.stats.in_flight == len(sent), "the bridge holding all")

            private_mosquitto.restart()
            wait_until(
                lambda: bridge.stats.received == 2 * len(sent), "the broker sending them again"
            )
            assert bridge.stats.mqtt_connects == 2
            assert bridge.stats.dropped_replayed == len(sent)
            assert bridge.stats.in_flight == len(sent)
            assert bridge.stats.acked == 0

            tansu.start()
            wait_until(lambda: bridge.stats.in_flight == 0, "every message settled")
            records = consume(
                tansu.bootstrap_servers,
                config.topics.readings,
                has_envelopes({(e.gateway_id, e.number) for e in sent}),
            )
            stats = bridge.stats
    finally:
        tansu.stop()

    assert check_forwarded(records, sent) == 0
    assert stats.acked == len(sent)
    assert stats.ack_skipped == 0

"""Smoke tests of the real servers: one round trip each, with the client the project uses.

The servers are shared by the session, so every test works on its own topic, database or
measurement. The Mosquitto restart test has a broker of its own.
"""

from __future__ import annotations

import asyncio
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from aiokafka import (  # type: ignore[import-untyped,unused-ignore]
    AIOKafkaConsumer,
    AIOKafkaProducer,
)
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write.point import Point
from influxdb_client.client.write_api import SYNCHRONOUS
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.servers._procs import log_tail, require_binary
from tests.servers.faust_echo import ECHO_PREFIX
from tests.servers.influxdb1 import InfluxDB1Server
from tests.servers.mosquitto import SHIPPED_CONFIG, MosquittoServer
from tests.servers.stream_worker import create_topics
from tests.servers.tansu import TansuServer, faust_echo_worker
from tests.servers.tls import CertFiles, TestPki
from tests.servers.victoria_metrics import VictoriaMetricsServer

pytestmark = pytest.mark.servers

TIMEOUT = 20.0
"""The bound on every single wait in these tests, in seconds."""

TLS_USER = "gw-test"
"""The client certificate and the user of the ``tls_mosquitto`` fixture."""


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------------------ MQTT


class Inbox:
    """Collects the payloads a client receives, in arrival order, from paho's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._payloads: list[bytes] = []
        self._changed = threading.Condition(self._lock)

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self._payloads.append(bytes(message.payload))
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = TIMEOUT) -> list[bytes]:
        """Wait until ``count`` payloads have arrived (or the timeout); return them all."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._payloads) >= count, timeout)
            return list(self._payloads)

    def wait_for_silence(self, quiet: float, timeout: float = TIMEOUT) -> list[bytes]:
        """Wait until nothing has arrived for ``quiet`` seconds; return what arrived."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while time.monotonic() < deadline:
                before = len(self._payloads)
                self._changed.wait(quiet)
                if len(self._payloads) == before:
                    break
            return list(self._payloads)


def mqtt_client(client_id: str, *, persistent: bool) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=not persistent,
        protocol=mqtt.MQTTv311,
    )


def connect(
    client: mqtt.Client, server: MosquittoServer, *, port: int | None = None
) -> mqtt.ConnectFlags:
    """Connect (to ``port``, default the plain listener), start the network thread, and
    return the CONNACK flags."""
    port = server.port if port is None else port
    connacks: queue.Queue[tuple[mqtt.ConnectFlags, ReasonCode]] = queue.Queue()

    def on_connect(
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        connacks.put((flags, reason))

    client.on_connect = on_connect
    client.connect(server.host, port, keepalive=30)
    client.loop_start()
    try:
        flags, reason = connacks.get(timeout=TIMEOUT)
    except queue.Empty:
        pytest.fail(f"no CONNACK from {server.host}:{port} within {TIMEOUT} s")
    assert not reason.is_failure, f"CONNACK refused: {reason}"
    return flags


def subscribe(client: mqtt.Client, topic: str) -> None:
    """Subscribe with QoS 1 and wait for the SUBACK granting it."""
    subacks: queue.Queue[list[ReasonCode]] = queue.Queue()

    def on_subscribe(
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        subacks.put(reasons)

    client.on_subscribe = on_subscribe
    result, _ = client.subscribe(topic, qos=1)
    assert result == mqtt.MQTT_ERR_SUCCESS
    try:
        granted = [r.value for r in subacks.get(timeout=TIMEOUT)]
    except queue.Empty:
        pytest.fail(f"no SUBACK for {topic} within {TIMEOUT} s")
    assert granted == [1], f"QoS 1 not granted: {granted}"


def disconnect(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def publish_all(server: MosquittoServer, topic: str, payloads: Sequence[bytes]) -> None:
    """Publish every payload with QoS 1 and wait until the broker has acknowledged each."""
    publisher = mqtt_client(unique("publisher"), persistent=False)
    publisher.max_inflight_messages_set(100)
    connect(publisher, server)
    try:
        infos = [publisher.publish(topic, payload, qos=1) for payload in payloads]
        deadline = time.monotonic() + TIMEOUT
        for info in infos:
            info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
            assert info.is_published(), f"no PUBACK for message {info.mid} in {TIMEOUT} s"
    finally:
        disconnect(publisher)


def test_mosquitto_qos1_round_trip(mosquitto: MosquittoServer) -> None:
    topic = f"urbansense/smoke/{unique('roundtrip')}"
    inbox = Inbox()
    subscriber = mqtt_client(unique("subscriber"), persistent=False)
    subscriber.on_message = inbox.on_message
    connect(subscriber, mosquitto)
    try:
        subscribe(subscriber, topic)
        publish_all(mosquitto, topic, [b'{"pm2_5": 35.0}'])
        assert inbox.wait_for(1) == [b'{"pm2_5": 35.0}']
    finally:
        disconnect(subscriber)


MOSQUITTO_DEFAULT_QUEUE = 1000
"""Mosquitto's default max_queued_messages."""

QUEUED = 3000
"""More messages than Mosquitto's default max_queued_messages would keep."""


def queue_for_offline_subscriber_then_restart(
    server: MosquittoServer, inbox: Inbox
) -> tuple[bool, mqtt.Client]:
    """Queue QUEUED QoS 1 messages for an offline persistent session, restart, reconnect.

    Returns whether the broker still had the session after the restart, and the
    reconnected subscriber, which delivers into ``inbox``; the caller disconnects it.
    """
    topic = f"urbansense/smoke/{unique('queued')}"
    subscriber_id = unique("bridge")

    subscriber = mqtt_client(subscriber_id, persistent=True)
    connect(subscriber, server)
    try:
        subscribe(subscriber, topic)
    finally:
        disconnect(subscriber)

    publish_all(server, topic, [str(i).encode() for i in range(QUEUED)])
    server.restart()

    subscriber = mqtt_client(subscriber_id, persistent=True)
    subscriber.on_message = inbox.on_message
    try:
        flags = connect(subscriber, server)
    except BaseException:
        disconnect(subscriber)
        raise
    return flags.session_present, subscriber


def test_mosquitto_keeps_every_queued_qos1_message_across_a_restart(
    private_mosquitto: MosquittoServer,
) -> None:
    inbox = Inbox()
    session_present, subscriber = queue_for_offline_subscriber_then_restart(
        private_mosquitto, inbox
    )
    try:
        received = inbox.wait_for(QUEUED)
    finally:
        disconnect(subscriber)

    assert session_present, "the persistent session did not survive the restart"
    expected = [str(i).encode() for i in range(QUEUED)]
    assert len(received) == QUEUED, f"received {len(received)} of {QUEUED} queued messages"
    assert received == expected, "the queued messages arrived out of order"
    assert "being dropped" not in private_mosquitto.log_path.read_text(encoding="utf-8")


def test_mosquitto_default_queue_limit_would_drop_messages(tmp_path: Path) -> None:
    """The control for the test above: without the raised limit, messages are lost."""
    shipped = SHIPPED_CONFIG.read_text(encoding="utf-8")
    limit_lines = [ln for ln in shipped.splitlines() if ln.startswith("max_queued_messages ")]
    assert len(limit_lines) == 1, "the shipped config must set max_queued_messages"
    default_config = tmp_path / "mosquitto-default-queue.conf"
    default_config.write_text(shipped.replace(limit_lines[0], "# (Mosquitto's default: 1000)"))

    server = MosquittoServer.create(tmp_path / "broker", shipped_config=default_config)
    server.start()
    try:
        inbox = Inbox()
        _, subscriber = queue_for_offline_subscriber_then_restart(server, inbox)
        try:
            inbox.wait_for(MOSQUITTO_DEFAULT_QUEUE)
            received = inbox.wait_for_silence(quiet=0.5)
        finally:
            disconnect(subscriber)
        log = server.log_path.read_text(encoding="utf-8")
    finally:
        server.stop()

    # The publisher had a PUBACK for all QUEUED messages; only the first 1000 survive.
    assert received == [str(i).encode() for i in range(MOSQUITTO_DEFAULT_QUEUE)]
    assert "Outgoing messages are being dropped" in log


# ----------------------------------------------------------------- MQTT security


def tls_client(
    server: MosquittoServer, client_id: str, certs: CertFiles, password: str | None
) -> mqtt.Client:
    """A client that presents ``certs``, trusts the broker's test CA, and logs in.

    ``password`` is for the user ``gw-test``; None means no username at all.
    """
    assert server.pki is not None, "the broker has no TLS listener"
    client = mqtt_client(client_id, persistent=False)
    client.tls_set(
        ca_certs=str(server.pki.ca_cert), certfile=str(certs.cert), keyfile=str(certs.key)
    )
    if password is not None:
        client.username_pw_set(TLS_USER, password)
    return client


@dataclass
class Refusal:
    """What a client saw of a connection attempt, up to its first disconnection."""

    connack: ReasonCode | None = None
    disconnect: ReasonCode | None = None
    log: list[str] = field(default_factory=list)


def attempt(client: mqtt.Client, host: str, port: int) -> Refusal:
    """Connect and run the client's loop in this thread until it is disconnected.

    No network thread and no automatic reconnection: the first disconnection ends it.
    """
    seen = Refusal()

    def on_connect(
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        seen.connack = reason

    def on_disconnect(
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        seen.disconnect = reason

    def on_log(client: mqtt.Client, userdata: Any, level: int, message: str) -> None:
        seen.log.append(message)

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_log = on_log
    client.connect(host, port, keepalive=30)
    deadline = time.monotonic() + TIMEOUT
    while seen.disconnect is None and time.monotonic() < deadline:
        client.loop(timeout=0.2)
    if seen.disconnect is None:
        client.disconnect()
        pytest.fail(f"{host}:{port} did not close the connection within {TIMEOUT} s: {seen}")
    return seen


ROGUE_CERT_ERRORS = (
    "failed to receive on socket: [SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca",
    "failed to receive on socket: EOF occurred in violation of protocol",
)
"""What paho logs when the broker drops a client whose certificate it does not trust."""


def wait_for_log(server: MosquittoServer, text: str) -> str:
    """Wait until the server's log contains ``text`` (or the timeout); return the log."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        log = server.log_path.read_text(encoding="utf-8")
        if text in log or time.monotonic() >= deadline:
            return log
        time.sleep(0.05)


def test_mosquitto_tls_client_cert_and_password_qos1_round_trip(
    tls_mosquitto: MosquittoServer,
) -> None:
    assert tls_mosquitto.pki is not None
    assert tls_mosquitto.tls_port is not None
    certs = tls_mosquitto.pki.client(TLS_USER)
    password = tls_mosquitto.passwords[TLS_USER]
    topic = f"urbansense/smoke/{unique('tls')}"
    inbox = Inbox()

    subscriber = tls_client(tls_mosquitto, unique("subscriber"), certs, password)
    subscriber.on_message = inbox.on_message
    connect(subscriber, tls_mosquitto, port=tls_mosquitto.tls_port)
    try:
        subscribe(subscriber, topic)
        publisher = tls_client(tls_mosquitto, unique("publisher"), certs, password)
        connect(publisher, tls_mosquitto, port=tls_mosquitto.tls_port)
        try:
            info = publisher.publish(topic, b'{"pm2_5": 35.0}', qos=1)
            info.wait_for_publish(timeout=TIMEOUT)
            assert info.is_published(), f"no PUBACK within {TIMEOUT} s"
        finally:
            disconnect(publisher)
        assert inbox.wait_for(1) == [b'{"pm2_5": 35.0}']
    finally:
        disconnect(subscriber)
    # The broker logs the username each client logged in with.
    logged_in = f"u'{TLS_USER}'"
    assert wait_for_log(tls_mosquitto, logged_in).count(logged_in) == 2


def test_mosquitto_tls_refuses_a_client_cert_from_an_untrusted_ca(
    tls_mosquitto: MosquittoServer,
) -> None:
    """The broker drops the connection without a CONNACK; ``connect`` itself succeeds.

    With TLS 1.3 the client's handshake is complete once it has sent its certificate,
    before the broker has checked it, so paho's ``connect`` returns and sends CONNECT.
    The broker then sends an ``unknown_ca`` alert and closes the socket with the
    CONNECT unread, which resets the connection: if paho reads before the reset
    arrives it sees the alert, otherwise the alert is lost and it sees a bare EOF.
    Either way paho reports the lost connection as "Unspecified error", and the broker
    logs "certificate verify failed".
    """
    assert tls_mosquitto.pki is not None
    assert tls_mosquitto.tls_port is not None
    password = tls_mosquitto.passwords[TLS_USER]
    client = tls_client(tls_mosquitto, unique("rogue"), tls_mosquitto.pki.rogue, password)

    seen = attempt(client, tls_mosquitto.host, tls_mosquitto.tls_port)

    assert seen.connack is None, f"the broker answered the rogue client: {seen.connack}"
    assert seen.disconnect is not None
    assert seen.disconnect.getName() == "Unspecified error"  # paho's MQTT_ERR_CONN_LOST
    errors = [line for line in seen.log if line.startswith(ROGUE_CERT_ERRORS)]
    assert len(errors) == 1, seen.log
    verify_failed = "SSL routines::certificate verify failed"
    assert verify_failed in wait_for_log(tls_mosquitto, verify_failed)


def test_mosquitto_refuses_a_wrong_password_with_not_authorized(
    tls_mosquitto: MosquittoServer,
) -> None:
    """Mosquitto 2.0 answers a wrong password with "Not authorized" (MQTT 3.1.1 return
    code 5), not with "Bad user name or password" (code 4), and then closes."""
    client = mqtt_client(unique("intruder"), persistent=False)
    client.username_pw_set(TLS_USER, "not-" + tls_mosquitto.passwords[TLS_USER])

    seen = attempt(client, tls_mosquitto.host, tls_mosquitto.port)

    assert seen.connack is not None, f"no CONNACK before the broker closed: {seen.log}"
    assert seen.connack.is_failure
    assert seen.connack.getName() == "Not authorized"
    assert "Received CONNACK (0, 5)" in seen.log


def test_mosquitto_with_passwords_refuses_anonymous_clients(
    tls_mosquitto: MosquittoServer,
) -> None:
    seen = attempt(
        mqtt_client(unique("anonymous"), persistent=False), tls_mosquitto.host, tls_mosquitto.port
    )

    assert seen.connack is not None
    assert seen.connack.getName() == "Not authorized"


def test_a_broken_pem_file_makes_tls_set_raise_ssl_error(test_pki: TestPki) -> None:
    """The broken file is the first half of a certificate; OpenSSL calls it "PEM lib"."""
    client = mqtt_client(unique("broken"), persistent=False)
    certs = test_pki.client(TLS_USER)
    with pytest.raises(ssl.SSLError, match=r"^\[SSL\] PEM lib"):
        client.tls_set(
            ca_certs=str(test_pki.ca_cert),
            certfile=str(test_pki.broken_cert),
            keyfile=str(certs.key),
        )
    client = mqtt_client(unique("broken"), persistent=False)
    with pytest.raises(ssl.SSLError, match=r"^\[X509\] PEM lib"):
        client.tls_set(ca_certs=str(test_pki.broken_cert))


# ---------------------------------------------------------------------------- Kafka


async def produce(tansu: TansuServer, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def consume_one(tansu: TansuServer, topic: str) -> tuple[bytes, bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=tansu.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await consumer.getone()
        return bytes(record.key), bytes(record.value)
    finally:
        await consumer.stop()


def test_tansu_aiokafka_round_trip(tansu: TansuServer) -> None:
    topic = unique("smoke")

    async def scenario() -> tuple[bytes, bytes]:
        await create_topics(tansu, [topic], 1)
        await produce(tansu, topic, key=b"aq-lakeside-01", value=b'{"pm2_5": 35.0}')
        return await consume_one(tansu, topic)

    key, value = asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))
    assert (key, value) == (b"aq-lakeside-01", b'{"pm2_5": 35.0}')


def test_faust_agent_round_trip_on_tansu(tansu: TansuServer, tmp_path: Path) -> None:
    app_id = unique("smoke_faust")
    source, sink = f"{app_id}_in", f"{app_id}_out"
    asyncio.run(asyncio.wait_for(create_topics(tansu, [source, sink], 1), TIMEOUT))

    worker = faust_echo_worker(tansu, tmp_path, app_id=app_id, source=source, sink=sink)
    worker.start()
    try:

        async def scenario() -> tuple[bytes, bytes]:
            await produce(tansu, source, key=b"aq-lakeside-01", value=b"35.0")
            return await consume_one(tansu, sink)

        try:
            key, value = asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))
        except TimeoutError:
            pytest.fail(
                f"the Faust agent wrote nothing to {sink} in {TIMEOUT} s; "
                f"worker log:\n{log_tail(worker.log_path)}"
            )
    finally:
        worker.stop()

    assert (key, value) == (b"aq-lakeside-01", ECHO_PREFIX + b"35.0")


# ----------------------------------------------------------------------- time series


def test_victoria_metrics_accepts_influxdb_client_writes(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    measurement = unique("smoke")
    at = datetime.now(tz=UTC).replace(microsecond=0)
    # Point's builder methods are unannotated; from_dict is the typed way to make one.
    point: Point = Point.from_dict(
        {
            "measurement": measurement,
            "tags": {"sensor_id": "aq-lakeside-01", "kind": "pollution"},
            "fields": {"pm2_5": 35.5},
            "time": at,
        }
    )
    # VictoriaMetrics ignores the token, but influxdb-client requires one.
    with InfluxDBClient(url=victoria_metrics.url, token="unused", org="urbansense") as client:  # noqa: S106
        client.write_api(write_options=SYNCHRONOUS).write(bucket="urbansense", record=point)

    selector = f"{measurement}_pm2_5"
    deadline = time.monotonic() + TIMEOUT
    series: list[dict[str, Any]] = []
    while not series and time.monotonic() < deadline:
        victoria_metrics.force_flush()
        series = victoria_metrics.export(selector)
        if not series:
            time.sleep(0.1)

    assert len(series) == 1, f"series {selector} not found within {TIMEOUT} s"
    labels = series[0]["metric"]
    assert labels["__name__"] == selector
    assert labels["sensor_id"] == "aq-lakeside-01"
    assert labels["kind"] == "pollution"
    assert series[0]["values"] == [35.5]
    assert series[0]["timestamps"] == [int(at.timestamp()) * 1000]


def test_influxdb1_write_then_influxql_select(influxdb1: InfluxDB1Server) -> None:
    db = unique("smoke")
    influxdb1.query(f'CREATE DATABASE "{db}"', method="POST")
    at = int(time.time())
    influxdb1.write(db, f"air_quality,sensor_id=aq-lakeside-01 pm2_5=35.5 {at}", precision="s")

    answer = influxdb1.query('SELECT "pm2_5", "sensor_id" FROM "air_quality"', db=db, epoch="s")

    assert answer["results"][0]["series"] == [
        {
            "name": "air_quality",
            "columns": ["time", "pm2_5", "sensor_id"],
            "values": [[at, 35.5, "aq-lakeside-01"]],
        }
    ]


def test_a_missing_server_binary_fails_naming_its_debian_package() -> None:
    with pytest.raises(
        pytest.fail.Exception,
        match="no-such-broker not found: install the Debian package 'no-such-package'",
    ):
        require_binary("no-such-broker", "no-such-package")

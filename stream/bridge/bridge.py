"""The bridge process: paho-mqtt in its network thread, aiokafka on an asyncio loop.

Decisions live in :mod:`stream.bridge.route`; this module only moves bytes and
acknowledgements between the two clients.

**Threads.** paho's network loop runs in its own thread (``loop_start()``) and
reconnects by itself. Its callbacks do no work: each message (and each
connect, disconnect and SUBACK) is appended to an inbox deque and the asyncio
loop is woken with ``call_soon_threadsafe`` — once per burst, not once per
message. Everything else happens on the asyncio thread: routing (the codec),
producing, counting, logging and acknowledging.

**Acknowledgements.** The client is created with ``manual_ack=True`` and the
bridge calls ``client.ack(mid, qos)`` from the asyncio thread when the Kafka
future of that message's own record completes. With ``loop_start()`` that is
safe: ``ack`` only appends the PUBACK to paho's outgoing deque and writes a
byte to paho's wake-up socket pair, exactly as ``publish()`` does when called
from another thread; paho's thread writes the packet. What is not safe is
acknowledging a message on a connection other than the one it arrived on:
the packet id would belong to someone else. So every message carries the
generation of its connection, ``on_disconnect`` (in paho's thread, before paho
reconnects and clears its outgoing queue) bumps the generation, and the
generation check and the ``ack`` call run under one lock. A message whose
connection is gone is not acknowledged: the broker sends it again on the
resumed session (duplicates are allowed), and the copy still waiting here is
dropped if it had not yet been handed to Kafka. Acknowledgements go out in
the order Kafka completes the records, which across partitions is not always
the order of arrival; MQTT asks for PUBACKs in arrival order, and Mosquitto
accepts them in any order (it matches them by packet id).

**Kafka.** Records are handed to aiokafka as they come, without awaiting each
delivery: aiokafka fills a batch per partition for ``linger_ms`` and keeps one
batch per partition in flight, which keeps the records of one key in order. A
failed delivery (Kafka down, a timeout) is counted and retried after an
exponential backoff with full jitter; while retries are pending no new record
is handed over, and the failed ones go again in their arrival order once
every record in flight has settled. Nothing failed is acknowledged on MQTT,
so the broker keeps it too. At most ``max_inflight`` messages are
unacknowledged at a time (the MQTT 5 receive maximum), which bounds memory.

**Stop.** :meth:`Bridge.stop` (SIGTERM or SIGINT in the CLI) stops taking new
messages (those that still arrive are left unacknowledged for the session),
waits up to ``drain_timeout_s`` for the records in flight and acknowledges
them, then disconnects, keeping the session. A second :meth:`Bridge.stop`
cuts the wait short.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped,unused-ignore]
from aiokafka.admin import (  # type: ignore[import-untyped,unused-ignore]
    AIOKafkaAdminClient,
    NewTopic,
)
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agents.backoff import Backoff
from edge_agents.config import MqttVersion
from stream.bridge.config import BridgeConfig
from stream.bridge.route import DeadLetter, Route, Router
from telemetry import Channel

__all__ = ["Bridge", "BridgeStats"]

log = structlog.get_logger(__name__)

_YIELD_EVERY = 32
"""The dispatcher lets aiokafka's I/O run after handing over this many records."""

_TOPIC_EXISTS = 36
"""Kafka's TOPIC_ALREADY_EXISTS error code."""

_PRODUCER_STOP_S = 10.0
"""How long a stopping bridge waits for aiokafka to flush and close."""

KAFKA_RETRY_MIN_S = 0.5
"""Ceiling of the first delay before producing again after a Kafka failure; it doubles."""

KAFKA_RETRY_MAX_S = 30.0
"""Largest ceiling of that delay; each delay is drawn at random below the ceiling."""

REJECTIONS_LOGGED = 10
"""Rejected payloads logged one by one per stats interval; the rest are only counted."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class BridgeStats:
    """The bridge's counters since it started; logged every ``stats_interval_s``.

    Attributes:
        received: MQTT messages received (redeliveries included).
        forwarded: records acknowledged by Kafka on the readings and status topics.
        envelopes: of those, readings envelopes.
        readings: readings in those envelopes.
        statuses: of those, status messages.
        dead_lettered: refused messages acknowledged by Kafka on the dead-letter topic.
        rejected: refused messages by (first) reason, counted when routed.
        acked: MQTT messages acknowledged to the broker.
        ack_skipped: messages settled after their connection was lost; the
            broker sends them again.
        dropped_replayed: messages dropped before producing because their
            connection was lost and the resumed session sends them again.
        left_on_stop: messages that arrived after :meth:`Bridge.stop`, left
            unacknowledged for the session.
        kafka_errors: failed Kafka connection attempts and deliveries.
        in_flight: messages received and not yet settled (acknowledged, or
            left to the broker to send again).
        mqtt_connects: successful MQTT connections.
        mqtt_connected: whether MQTT is connected now.
        kafka_ready: whether the producer is connected.
    """

    received: int = 0
    forwarded: int = 0
    envelopes: int = 0
    readings: int = 0
    statuses: int = 0
    dead_lettered: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    acked: int = 0
    ack_skipped: int = 0
    dropped_replayed: int = 0
    left_on_stop: int = 0
    kafka_errors: int = 0
    in_flight: int = 0
    mqtt_connects: int = 0
    mqtt_connected: bool = False
    kafka_ready: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The counters as plain data, for a log line."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["rejected"] = dict(self.rejected)
        return data


# ---------------------------------------------------------------------- inbox items


@dataclass(frozen=True, slots=True)
class _Incoming:
    mid: int
    qos: int
    topic: str
    payload: bytes
    generation: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class _Connected:
    generation: int
    session_present: bool


@dataclass(frozen=True, slots=True)
class _ConnectRefused:
    reason: str


@dataclass(frozen=True, slots=True)
class _Disconnected:
    generation: int
    reason: str
    failure: bool


@dataclass(frozen=True, slots=True)
class _Subscribed:
    granted: tuple[str, ...]
    ok: bool


_InboxItem = _Incoming | _Connected | _ConnectRefused | _Disconnected | _Subscribed


@dataclass(slots=True)
class _Message:
    """A message between its arrival and its settling; lives on the asyncio thread."""

    seq: int
    incoming: _Incoming
    record: Route | DeadLetter | None = None


# ---------------------------------------------------------------------- the bridge


class Bridge:
    """Forwards gateways' MQTT messages to Kafka, acknowledging each once Kafka has it.

    Args:
        config: the bridge configuration.
        clock: "now" (aware, UTC), taken as each message's receive time;
            injectable for tests.

    Attributes:
        stats: the counters; read them from any thread.
        subscribed: set once the broker has granted the subscriptions with QoS 1.
    """

    def __init__(self, config: BridgeConfig, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.config = config
        self.stats = BridgeStats()
        self.subscribed = threading.Event()
        self._clock = clock
        self._router = Router(
            readings_topic=config.topics.readings,
            status_topic=config.topics.status,
            dead_letter_topic=config.topics.dead_letter,
            limits=config.codec_limits(),
            max_raw_bytes=config.dead_letter_max_raw_bytes,
        )
        self._log = log.bind(client_id=config.client_id)
        self._v5 = config.mqtt.protocol is MqttVersion.V5
        # Shared with paho's thread.
        self._inbox: deque[_InboxItem] = deque()
        self._wake_pending = False
        self._ack_lock = threading.Lock()
        self._generation = 0
        self._connected = False
        # The asyncio thread's own.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._producer: Any = None
        self._seq = 0
        self._todo: deque[_Message] = deque()
        self._retry: list[_Message] = []
        self._retry_at = 0.0
        self._sending = 0
        self._session_since = 0  # the first generation of the broker's current session
        self._current_generation = 0
        self._backoff = Backoff(initial_s=KAFKA_RETRY_MIN_S, max_s=KAFKA_RETRY_MAX_S)
        self._rejections_to_log = REJECTIONS_LOGGED
        self._work = asyncio.Event()
        self._settled = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._hurry = asyncio.Event()
        self._stop_calls = 0
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Ask the bridge to stop gracefully; a second call cuts the drain short.

        Safe to call from any thread and from a signal handler.
        """
        loop = self._loop
        if loop is None:
            self._stop_calls += 1
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the bridge has stopped
            loop.call_soon_threadsafe(self._request_stop)

    def _request_stop(self) -> None:
        self._stop_calls += 1
        self._stop_requested.set()
        if self._stop_calls > 1:
            self._hurry.set()

    async def run(self) -> BridgeStats:
        """Run until :meth:`stop`; return the final counters."""
        self._loop = asyncio.get_running_loop()
        if self._stop_calls:
            self._stop_requested.set()
        client = self._new_client()
        self._client = client
        self._log.info(
            "bridge starting",
            mqtt=self.config.mqtt.url,
            kafka=self.config.kafka.bootstrap_servers,
            subscriptions=self.config.subscriptions(),
            topics=self.config.topics.model_dump(),
            max_inflight=self.config.max_inflight,
        )
        client.connect_async(
            self.config.mqtt.host,
            self.config.mqtt.port,
            keepalive=self.config.mqtt.keepalive_s,
            clean_start=False if self._v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=self._connect_properties(),
        )
        client.loop_start()
        tasks = [
            asyncio.create_task(self._connect_kafka(), name="bridge-kafka"),
            asyncio.create_task(self._dispatch(), name="bridge-dispatch"),
            asyncio.create_task(self._log_stats(), name="bridge-stats"),
        ]
        try:
            failure = await self._until_stop_or_failure(tasks)
            if failure is None:
                await self._drain()
        finally:
            await self._shut_down(client, tasks)
        if failure is not None:
            raise failure
        return self.stats

    async def _until_stop_or_failure(self, tasks: list[asyncio.Task[None]]) -> BaseException | None:
        """Wait for :meth:`stop`, or for a task to die of a bug (returned, to be raised)."""
        stop = asyncio.ensure_future(self._stop_requested.wait())
        waiting: set[asyncio.Future[Any]] = {stop, *tasks}
        try:
            while True:
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    return None
                for task in done:
                    error = None if task.cancelled() else task.exception()
                    if error is not None:
                        name = task.get_name() if isinstance(task, asyncio.Task) else "?"
                        self._log.error("bridge failed", task=name, error=repr(error))
                        return error
        finally:
            stop.cancel()

    async def _drain(self) -> None:
        self._stopping = True
        self._log.info("bridge stopping", in_flight=self.stats.in_flight)
        if self._producer is None or self.stats.in_flight == 0:
            return
        self._work.set()
        waits = [
            asyncio.ensure_future(self._settled_all()),
            asyncio.ensure_future(self._hurry.wait()),
        ]
        _, pending = await asyncio.wait(
            waits, timeout=self.config.drain_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        for waiting in pending:
            waiting.cancel()
        if self.stats.in_flight:
            self._log.warning(
                "stopping with records in flight; the broker sends them again",
                in_flight=self.stats.in_flight,
            )

    async def _settled_all(self) -> None:
        while self.stats.in_flight > 0:
            self._settled.clear()
            await self._settled.wait()

    async def _shut_down(self, client: mqtt.Client, tasks: list[asyncio.Task[None]]) -> None:
        self._stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Acks already queued go out before the DISCONNECT: paho sends its packets in order.
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        producer, self._producer = self._producer, None
        self.stats.kafka_ready = False
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), _PRODUCER_STOP_S)
            except Exception as error:  # closing anyway; say why it was unclean
                self._log.warning("kafka producer did not close cleanly", error=repr(error))
        self._log.info("bridge stopped", **self.stats.as_dict())

    # ------------------------------------------------------------------ MQTT, paho's thread

    def _new_client(self) -> mqtt.Client:
        broker = self.config.mqtt
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            clean_session=None if self._v5 else False,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            manual_ack=True,
        )
        client.reconnect_delay_set(
            min_delay=max(1, round(broker.reconnect_min_s)),
            max_delay=max(1, round(broker.reconnect_max_s)),
        )
        if broker.username is not None:
            password = broker.password.get_secret_value() if broker.password else None
            client.username_pw_set(broker.username, password)
        if broker.url.startswith("mqtts://"):
            client.tls_set_context(self._tls_context())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.config.mqtt.tls
        context = ssl.create_default_context(cafile=tls.ca_file if tls else None)
        if tls is not None and tls.cert_file is not None:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        return context

    def _connect_properties(self) -> Properties | None:
        if not self._v5:
            return None
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.config.session_expiry_s
        properties.ReceiveMaximum = self.config.max_inflight
        return properties

    def _post(self, item: _InboxItem) -> None:
        """Hand an item to the asyncio thread (called on paho's thread)."""
        self._inbox.append(item)
        if not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            with contextlib.suppress(RuntimeError):  # the loop closed: the bridge is gone
                self._loop.call_soon_threadsafe(self._take_inbox)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._post(_ConnectRefused(reason.getName()))
            return
        with self._ack_lock:
            self._connected = True
            generation = self._generation
        self._post(_Connected(generation, flags.session_present))
        if self._v5:
            options = SubscribeOptions(
                qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            )
            client.subscribe([(f, options) for f in self.config.subscriptions()])
        else:
            client.subscribe([(f, 1) for f in self.config.subscriptions()])

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # Before paho reconnects: no ack of this connection's messages may reach the next.
        with self._ack_lock:
            was_connected = self._connected
            self._connected = False
            self._generation += 1
            generation = self._generation
        if was_connected:
            self._post(_Disconnected(generation, reason.getName(), reason.is_failure))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        ok = all(not r.is_failure and r.value == 1 for r in reasons)
        self._post(_Subscribed(tuple(r.getName() for r in reasons), ok))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # not a valid topic: it goes to the dead letters as it is
            topic = message._topic.decode("utf-8", errors="replace")
        self._post(
            _Incoming(
                mid=message.mid,
                qos=message.qos,
                topic=topic,
                payload=bytes(message.payload),
                generation=self._generation,
                received_at=self._clock(),
            )
        )

    # ------------------------------------------------------------------ asyncio thread

    def _take_inbox(self) -> None:
        self._wake_pending = False  # first: an item posted from now on schedules another call
        inbox = self._inbox
        while inbox:
            item = inbox.popleft()
            if isinstance(item, _Incoming):
                self._admit(item)
            else:
                self._connection_event(item)
        self._work.set()

    def _admit(self, incoming: _Incoming) -> None:
        self.stats.received += 1
        if self._stopping:
            self.stats.left_on_stop += 1
            return
        self._seq += 1
        self._todo.append(_Message(self._seq, incoming))
        self.stats.in_flight += 1

    def _connection_event(self, item: _InboxItem) -> None:
        if isinstance(item, _Connected):
            self._current_generation = item.generation
            if not item.session_present:
                # A new session: what the old ones held will not come again; forward it all.
                self._session_since = item.generation
            self.stats.mqtt_connects += 1
            self.stats.mqtt_connected = True
            self._purge_replayed()
            self._log.info(
                "mqtt connected",
                broker=self.config.mqtt.url,
                session_present=item.session_present,
                in_flight=self.stats.in_flight,
            )
        elif isinstance(item, _ConnectRefused):
            self._log.error(
                "mqtt connection refused", broker=self.config.mqtt.url, reason=item.reason
            )
        elif isinstance(item, _Disconnected):
            self.stats.mqtt_connected = False
            self.subscribed.clear()
            event = self._log.warning if item.failure else self._log.info
            event("mqtt disconnected", reason=item.reason, in_flight=self.stats.in_flight)
        elif isinstance(item, _Subscribed):
            if item.ok:
                self._log.info("subscribed", filters=self.config.subscriptions(), qos=1)
                self.subscribed.set()
            else:
                self._log.error(
                    "subscription not granted with QoS 1: nothing (or not everything) is bridged",
                    filters=self.config.subscriptions(),
                    granted=list(item.granted),
                )

    def _purge_replayed(self) -> None:
        """Drop the waiting copies of messages that the resumed session sends again.

        Without this, each reconnect during a Kafka outage would add another window
        of copies: memory stays bounded by one window plus what Kafka already holds.
        """
        kept: deque[_Message] = deque()
        for message in self._todo:
            if self._replayed(message):
                self.stats.dropped_replayed += 1
                self._settle(message)
            else:
                kept.append(message)
        self._todo = kept
        retry = [m for m in self._retry if not self._replayed(m)]
        for message in self._retry:
            if self._replayed(message):
                self.stats.dropped_replayed += 1
                self._settle(message)
        self._retry = retry

    def _replayed(self, message: _Message) -> bool:
        """Whether the broker sends this message again: its connection is gone, its session not."""
        generation = message.incoming.generation
        return self._session_since <= generation < self._current_generation

    async def _connect_kafka(self) -> None:
        kafka = self.config.kafka
        backoff = Backoff(initial_s=KAFKA_RETRY_MIN_S, max_s=KAFKA_RETRY_MAX_S)
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=kafka.bootstrap_servers,
                client_id=self.config.client_id,
                acks="all",
                enable_idempotence=False,
                linger_ms=kafka.linger_ms,
                max_batch_size=kafka.max_batch_bytes,
                max_request_size=kafka.max_request_bytes,
                request_timeout_ms=kafka.request_timeout_ms,
                compression_type=None if kafka.compression == "none" else kafka.compression,
            )
            try:
                await producer.start()
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            except Exception as error:  # any failure: wait, then try again
                self.stats.kafka_errors += 1
                delay = backoff.next_delay()
                self._log.warning(
                    "kafka unavailable",
                    kafka=kafka.bootstrap_servers,
                    error=repr(error),
                    retry_in_s=round(delay, 2),
                    in_flight=self.stats.in_flight,
                )
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
                continue
            if kafka.create_topics_partitions is not None:
                await self._create_topics(kafka.create_topics_partitions)
            # Track the three topics from the start: aiokafka's client otherwise asks for
            # all topics until it first sends to one it did not know, then only for those
            # it added, and drops the others' metadata (see stream.app.transport).
            topics = self.config.topics
            producer.client.set_topics([topics.readings, topics.status, topics.dead_letter])
            self._producer = producer
            self.stats.kafka_ready = True
            self._log.info("kafka connected", kafka=kafka.bootstrap_servers)
            self._work.set()
            return

    async def _create_topics(self, partitions: int) -> None:
        kafka = self.config.kafka
        names = [self.config.topics.readings, self.config.topics.status]
        names.append(self.config.topics.dead_letter)
        admin = AIOKafkaAdminClient(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id=self.config.client_id,
            request_timeout_ms=kafka.request_timeout_ms,
        )
        try:
            await admin.start()
            response = await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=partitions,
                        replication_factor=kafka.create_topics_replication,
                    )
                    for name in dict.fromkeys(names)
                ]
            )
            for name, code, message in response.topic_errors:
                if code == 0:
                    self._log.info("kafka topic created", topic=name, partitions=partitions)
                elif code != _TOPIC_EXISTS:
                    self._log.warning(
                        "kafka topic not created", topic=name, code=code, error=message
                    )
        except Exception as error:  # the topics may exist or be auto-created
            self._log.warning("kafka topics not created", error=repr(error))
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    async def _dispatch(self) -> None:
        """Hand records to the producer as they come; retries go first, in arrival order."""
        loop = asyncio.get_running_loop()
        while True:
            timeout = None
            if self._retry and self._sending == 0:
                timeout = max(0.0, self._retry_at - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), timeout)
            self._work.clear()
            handed = 0
            while self._producer is not None:
                if self._retry:
                    if self._sending or loop.time() < self._retry_at:
                        break
                    self._retry.sort(key=lambda m: m.seq)
                    self._todo.extendleft(reversed(self._retry))
                    self._retry.clear()
                if not self._todo:
                    break
                message = self._todo.popleft()
                if self._replayed(message):
                    self.stats.dropped_replayed += 1
                    self._settle(message)
                    continue
                await self._send(message)
                handed += 1
                if handed % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)

    def _route(self, message: _Message) -> Route | DeadLetter:
        if message.record is None:
            incoming = message.incoming
            record = self._router.route(incoming.topic, incoming.payload, incoming.received_at)
            if isinstance(record, DeadLetter):
                self._rejected(record)
            message.record = record
        return message.record

    def _rejected(self, letter: DeadLetter) -> None:
        self.stats.rejected[letter.reason] += 1
        if self._rejections_to_log <= 0:
            return
        self._rejections_to_log -= 1
        first = letter.rejections[0]
        self._log.warning(
            "payload rejected",
            mqtt_topic=letter.mqtt_topic[:200],
            reasons=list(letter.reasons),
            field=first.field,
            problem=first.message[:300],
            more_not_logged=self._rejections_to_log == 0,
        )

    async def _send(self, message: _Message) -> None:
        record = self._route(message)
        received_ms = int(message.incoming.received_at.timestamp() * 1000)
        try:
            future = await self._producer.send(
                record.topic, record.value, key=record.key, timestamp_ms=received_ms
            )
        except Exception as error:  # every failure is retried
            self._failed(message, error)
            return
        self._sending += 1
        future.add_done_callback(functools.partial(self._delivered, message))

    def _delivered(self, message: _Message, future: asyncio.Future[Any]) -> None:
        self._sending -= 1
        error = asyncio.CancelledError() if future.cancelled() else future.exception()
        if error is not None:
            self._failed(message, error)
        else:
            self._backoff.reset()
            self._forwarded(message)
        if self._retry and self._sending == 0:
            self._work.set()

    def _failed(self, message: _Message, error: BaseException) -> None:
        self.stats.kafka_errors += 1
        if not self._retry:  # the first failure of a round sets the delay, and says so
            delay = self._backoff.next_delay()
            self._retry_at = asyncio.get_running_loop().time() + delay
            self._log.warning(
                "kafka delivery failed; holding acks and retrying",
                error=repr(error),
                retry_in_s=round(delay, 2),
                failures=self._backoff.failures,
                in_flight=self.stats.in_flight,
            )
        self._retry.append(message)

    def _forwarded(self, message: _Message) -> None:
        record = message.record
        if isinstance(record, Route):
            self.stats.forwarded += 1
            if record.channel is Channel.READINGS:
                self.stats.envelopes += 1
                self.stats.readings += record.readings
            else:
                self.stats.statuses += 1
        else:
            self.stats.dead_lettered += 1
        self._ack(message.incoming)
        self._settle(message)

    def _ack(self, incoming: _Incoming) -> None:
        if incoming.qos == 0:
            return
        client = self._client
        if client is None:  # never: messages come from the client
            return
        with self._ack_lock:
            live = incoming.generation == self._generation and self._connected
            rc = client.ack(incoming.mid, incoming.qos) if live else MQTTErrorCode.MQTT_ERR_NO_CONN
        if rc is MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.stats.acked += 1
        else:
            self.stats.ack_skipped += 1

    def _settle(self, message: _Message) -> None:
        self.stats.in_flight -= 1
        if self.stats.in_flight == 0 or self._stopping:
            self._settled.set()

    async def _log_stats(self) -> None:
        interval = self.config.stats_interval_s
        last = time.monotonic()
        last_forwarded, last_readings = self.stats.forwarded, self.stats.readings
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            elapsed = max(now - last, 1e-9)
            self._log.info(
                "bridge stats",
                messages_per_s=round((self.stats.forwarded - last_forwarded) / elapsed, 1),
                readings_per_s=round((self.stats.readings - last_readings) / elapsed, 1),
                **self.stats.as_dict(),
            )
            last, last_forwarded, last_readings = now, self.stats.forwarded, self.stats.readings
            self._rejections_to_log = REJECTIONS_LOGGED

"""The MQTT side of the agent: queued readings out, PUBACKs back, status on the side.

One thread owns the paho-mqtt client and drives its network loop itself, so
every callback runs on that thread and nothing else touches the client. The
thread keeps the connection up and moves readings from the on-disk queue to the
broker:

* **Connection.** A fixed client id (the gateway id) and a persistent session
  (MQTT 5 ``clean_start=False`` with a week's session expiry, or 3.1.1
  ``clean_session=False``); TLS with a CA and an optional client certificate;
  username and password. A failed attempt — broker unreachable, TLS handshake
  refused, certificate file unreadable, CONNACK refused — is logged with its
  cause and retried after an exponential backoff with full jitter
  (:class:`~edge_agents.backoff.Backoff`), which is only reset once a
  connection has stayed up for :data:`STABLE_AFTER_S`. Until the first
  connection succeeds, a failure that a 3.1.1-only broker would cause (a
  protocol refusal, a closed connection, silence) switches between MQTT 5 and
  3.1.1 for the next attempt.
* **Status.** The last will is a retained ``offline``
  :class:`~telemetry.GatewayStatus`; after each CONNACK the agent publishes a
  retained ``online`` status (the birth message), then a heartbeat every
  ``heartbeat_s`` with queue depth, readings sent and dropped, uptime and the
  last error; on a clean stop it publishes ``offline`` itself, since a broker
  sends no will after a normal disconnect.
* **Readings.** Queued readings leave in batches (the telemetry
  :class:`~telemetry.Batch` envelope, spliced from the JSON the queue stored)
  of up to ``max_batch_readings``, or fewer once the oldest has waited
  ``linger_s``. Each batch is one QoS 1 message; its entries are deleted from
  the queue only in the PUBACK callback. At most :data:`MAX_INFLIGHT_BATCHES`
  batches are unacknowledged at a time, so paho's in-memory queue never holds
  the backlog — the disk does (paho silently drops messages past its queue
  limit, returning ``MQTT_ERR_QUEUE_SIZE``; every ``publish()`` result is
  checked all the same).
* **Reconnects.** paho keeps unacknowledged QoS 1 messages across a reconnect
  of the same client and sends them again with the DUP flag, so a broker
  outage resends exactly the batches that were in flight, in order. Whenever
  nothing is in flight the queue's in-flight mark is rewound, so an entry whose
  message paho refused or the broker rejected is taken again.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agents.backoff import Backoff
from edge_agents.buffer import Entry, QueueStorageError, ReadingBuffer
from edge_agents.config import AgentConfig, MqttVersion
from telemetry import CodecLimits, GatewayStatus, readings_topic, status_topic, to_json
from telemetry.models import SCHEMA_VERSION

__all__ = [
    "MAX_INFLIGHT_BATCHES",
    "SESSION_EXPIRY_S",
    "STABLE_AFTER_S",
    "MqttPublisher",
    "PublisherStats",
    "batch_payload",
]

MAX_INFLIGHT_BATCHES = 10
"""Batches published and not yet acknowledged, at most; the rest wait on disk."""

SESSION_EXPIRY_S = 7 * 86_400
"""MQTT 5 session expiry: the broker keeps the session for a week offline."""

STABLE_AFTER_S = 30.0
"""A connection that stayed up this long resets the reconnect backoff."""

CONNACK_TIMEOUT_S = 15.0
"""How long to wait for the broker's CONNACK after the TCP (and TLS) connect."""

IDLE_LOOP_S = 0.5
"""How long the network loop sleeps when nothing waits: new readings wait at most this
long, on top of ``linger_s``, before they are noticed."""

_KEPT_BY_PAHO = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)
"""publish() results for which paho holds the message (sent, or sent after reconnecting)."""

_ENVELOPE_SLACK = 256  # bytes of envelope around the readings, generously
_UNSUPPORTED_PROTOCOL = (132, 1)  # MQTT 5 reason 0x84; MQTT 3.1.1 CONNACK return code 1

log = structlog.get_logger(__name__)


def batch_payload(gateway_id: str, sent_at: datetime, readings: Sequence[bytes]) -> bytes:
    """The telemetry batch envelope around readings already encoded as JSON.

    The queue stores each reading as the compact JSON that
    :func:`telemetry.to_json` writes; splicing those bytes into the envelope
    spares decoding and re-encoding every reading on a small CPU.

    >>> from datetime import datetime, timezone
    >>> batch_payload("gw-1", datetime(2026, 11, 22, tzinfo=timezone.utc), [b'{"a":1}'])
    b'{"schema_version":1,"gateway_id":"gw-1","sent_at":"2026-11-22T00:00:00Z","readings":[{"a":1}]}'
    """
    head = json.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "gateway_id": gateway_id,
            "sent_at": sent_at.isoformat().replace("+00:00", "Z"),
        },
        separators=(",", ":"),
    ).encode()
    return head[:-1] + b',"readings":[' + b",".join(readings) + b"]}"


@dataclass
class PublisherStats:
    """What the publisher has done since the agent started; read by the heartbeat.

    Attributes:
        sent: readings the broker acknowledged.
        batches: batches the broker acknowledged.
        connects: successful connections (CONNACK accepted).
        connected: whether a session is up now.
        protocol: the MQTT version in use, once connected.
        last_error: the most recent connection or publish failure.
        last_error_at: when it happened (``time.monotonic()``), 0 if never.
    """

    sent: int = 0
    batches: int = 0
    connects: int = 0
    connected: bool = False
    protocol: MqttVersion | None = None
    last_error: str | None = None
    last_error_at: float = 0.0


class _ConnectFailed(Exception):
    """One connection attempt failed; the message says why.

    ``protocol_suspect`` marks failures an MQTT 3.1.1-only broker would cause when
    spoken to in MQTT 5: a refusal naming the protocol version, a connection
    closed before the CONNACK, or no CONNACK at all.
    """

    def __init__(self, message: str, *, protocol_suspect: bool = False) -> None:
        super().__init__(message)
        self.protocol_suspect = protocol_suspect


class MqttPublisher(threading.Thread):
    """Publishes queued readings and the gateway's status until stopped.

    Args:
        config: the agent configuration (gateway id, broker, publishing).
        buffer: the queue readings come from.
        status: builds the gateway's current status (for birth and heartbeats).
        clock: the current UTC time, stamped as a batch's ``sent_at``.
        backoff: the reconnect policy; by default from the broker configuration.
        drain_timeout_s: on :meth:`stop`, how long to keep publishing and
            waiting for PUBACKs before disconnecting.
    """

    def __init__(
        self,
        config: AgentConfig,
        buffer: ReadingBuffer,
        status: Callable[[bool], GatewayStatus],
        *,
        clock: Callable[[], datetime],
        backoff: Backoff | None = None,
        drain_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(name="mqtt-publisher", daemon=True)
        self.config = config
        self.buffer = buffer
        self.status = status
        self.clock = clock
        self.backoff = backoff or Backoff(
            initial_s=config.broker.reconnect_min_s, max_s=config.broker.reconnect_max_s
        )
        self.drain_timeout_s = drain_timeout_s
        self.stats = PublisherStats()
        self.last_loop = time.monotonic()
        """When the thread last went round its loop; the watchdog checks it."""
        self._stopping = threading.Event()
        self._protocol = config.broker.protocol
        self._client: mqtt.Client | None = None
        self._inflight: dict[int, list[int]] = {}  # mid -> entry ids
        self._inflight_entries = 0
        self._waiting_since: float | None = None
        self._pause_until = 0.0
        self._connack: ReasonCode | None = None
        self._topic = readings_topic(config.gateway_id)
        self._status_topic = status_topic(config.gateway_id)
        self._max_batch_bytes = CodecLimits().max_payload_bytes - _ENVELOPE_SLACK
        self._log = log.bind(gateway_id=config.gateway_id, broker=config.broker.url)

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Ask the thread to drain (within ``drain_timeout_s``), say offline and disconnect."""
        self._stopping.set()

    def run(self) -> None:
        """Connect, publish, reconnect with backoff; until :meth:`stop`."""
        while not self._stopping.is_set():
            self.last_loop = time.monotonic()
            try:
                client = self._client or self._new_client()
                self._connect(client)
            except _ConnectFailed as failure:
                self._failed(str(failure))
                if failure.protocol_suspect:
                    self._maybe_switch_protocol()
                self._sleep(self.backoff.next_delay())
                continue
            connected_at = time.monotonic()
            self._serve(client)
            if time.monotonic() - connected_at >= STABLE_AFTER_S:
                self.backoff.reset()  # it was a good connection: try again at once
            elif not self._stopping.is_set():
                # A connection dropped soon after CONNACK (another client taking over the
                # same id, say) backs off like a failed attempt rather than looping.
                self._sleep(self.backoff.next_delay())
        self._log.info("publisher stopped", sent=self.stats.sent, depth=self.buffer.depth())

    # ------------------------------------------------------------------ connecting

    def _new_client(self) -> mqtt.Client:
        broker = self.config.broker
        v5 = self._protocol is MqttVersion.V5
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.config.gateway_id,
            clean_session=None if v5 else False,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        client.max_inflight_messages_set(MAX_INFLIGHT_BATCHES + 10)
        client.max_queued_messages_set(MAX_INFLIGHT_BATCHES * 10)
        if broker.username is not None:
            password = broker.password.get_secret_value() if broker.password else None
            client.username_pw_set(broker.username, password)
        if broker.url.startswith("mqtts://"):
            client.tls_set_context(self._tls_context())
        offline = self.status(False)
        client.will_set(self._status_topic, to_json(offline), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._forget_inflight()
        self._client = client
        return client

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.config.broker.tls
        try:
            context = ssl.create_default_context(cafile=tls.ca_file if tls else None)
            if tls is not None and tls.cert_file is not None:
                context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as error:
            files = tls.model_dump(mode="json", exclude_none=True) if tls else {}
            msg = f"cannot load TLS files {files}: {error}"
            raise _ConnectFailed(msg) from None
        return context

    def _connect(self, client: mqtt.Client) -> None:
        broker = self.config.broker
        self._connack = None
        properties = None
        if self._protocol is MqttVersion.V5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
        try:
            client.connect(
                broker.host,
                broker.port,
                keepalive=broker.keepalive_s,
                clean_start=False
                if self._protocol is MqttVersion.V5
                else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                properties=properties,
            )
        except (OSError, ssl.SSLError) as error:
            msg = f"cannot connect to {broker.host}:{broker.port}: {error}"
            raise _ConnectFailed(msg) from None
        reason = self._await_connack(client)
        if reason.is_failure:
            client.disconnect()
            msg = f"broker refused the connection: {reason.getName()}"
            raise _ConnectFailed(msg, protocol_suspect=reason.value in _UNSUPPORTED_PROTOCOL)

    def _maybe_switch_protocol(self) -> None:
        """Alternate MQTT 5 and 3.1.1 until one connects, if MQTT 5 was asked for.

        Brokers that only speak 3.1.1 answer an MQTT 5 CONNECT in different ways:
        a refusal, a closed connection, or silence. Until the first connection
        succeeds, each such failure switches version for the next attempt; once
        one succeeds, the agent keeps that version.
        """
        if self.stats.connects or self.config.broker.protocol is not MqttVersion.V5:
            return
        v5 = self._protocol is MqttVersion.V5
        self._protocol = MqttVersion.V311 if v5 else MqttVersion.V5
        self._client = None
        self._log.warning(
            f"trying MQTT {self._protocol.value} next",
            after=f"MQTT {'5' if v5 else '3.1.1'} failed",
        )

    def _await_connack(self, client: mqtt.Client) -> ReasonCode:
        deadline = time.monotonic() + CONNACK_TIMEOUT_S
        while True:
            rc = self._loop(client, 0.2)
            if self._connack is not None:
                return self._connack
            if rc is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                msg = f"connection closed before CONNACK: {mqtt.error_string(rc)}"
                raise _ConnectFailed(msg, protocol_suspect=True)
            if time.monotonic() > deadline or self._stopping.is_set():
                client.disconnect()
                msg = f"no CONNACK within {CONNACK_TIMEOUT_S:g} s"
                raise _ConnectFailed(msg, protocol_suspect=True)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connack = reason
        if reason.is_failure:
            return
        self.stats.connected = True
        self.stats.connects += 1
        self.stats.protocol = self._protocol
        self._log.info(
            "connected",
            protocol=self._protocol.value,
            session_present=flags.session_present,
            resending=len(self._inflight),
            depth=self.buffer.depth(),
        )
        self._publish_status(client, online=True)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self.stats.connected:
            self.stats.connected = False
            if reason.is_failure:
                self._failed(f"connection lost: {reason.getName()}")
            else:
                self._log.info("disconnected")

    # ------------------------------------------------------------------ serving

    def _serve(self, client: mqtt.Client) -> None:
        """Publish and heartbeat while connected; drain and disconnect on stop."""
        heartbeat_at = time.monotonic() + self.config.publish.heartbeat_s
        while self.stats.connected:
            self.last_loop = now = time.monotonic()
            if self._stopping.is_set():
                self._drain(client)
                return
            self._publish_ready(client, now, linger=True)
            if now >= heartbeat_at:
                self._publish_status(client, online=True)
                heartbeat_at = now + self.config.publish.heartbeat_s
            # Idle, wake twice a second; with readings waiting or in flight, ten times.
            self._loop(client, 0.1 if self._inflight or self._unsent() > 0 else IDLE_LOOP_S)

    def _drain(self, client: mqtt.Client) -> None:
        deadline = time.monotonic() + self.drain_timeout_s
        while self.stats.connected and time.monotonic() < deadline:
            self._publish_ready(client, time.monotonic(), linger=False)
            if not self._inflight and self._unsent() == 0:
                break
            self._loop(client, 0.05)
        info = self._publish_status(client, online=False)
        end = time.monotonic() + 1.0
        while info is not None and not info.is_published() and time.monotonic() < end:
            if self._loop(client, 0.05) is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        client.disconnect()
        self._loop(client, 0.05)
        self.stats.connected = False
        self._log.info("drained", left_in_queue=self.buffer.depth(), sent=self.stats.sent)

    def _unsent(self) -> int:
        return self.buffer.depth() - self._inflight_entries

    def _publish_ready(self, client: mqtt.Client, now: float, *, linger: bool) -> None:
        """Publish batches while the window has room and a batch is due."""
        max_batch = self.config.publish.max_batch_readings
        while len(self._inflight) < MAX_INFLIGHT_BATCHES and now >= self._pause_until:
            if not self._inflight:
                self.buffer.rewind()  # nothing in flight: anything still queued is unsent
                self._inflight_entries = 0
            unsent = self._unsent()
            if unsent <= 0:
                self._waiting_since = None
                return
            if self._waiting_since is None:
                self._waiting_since = now
            lingered = now - self._waiting_since >= self.config.publish.linger_s
            if linger and unsent < max_batch and not lingered:
                return
            try:
                entries = self.buffer.peek_batch(max_batch, self._max_batch_bytes)
            except QueueStorageError as error:
                self._failed(str(error))
                self._pause_until = now + self.backoff.next_delay()
                return
            if not entries:
                return
            self._waiting_since = None
            self._publish_batch(client, entries)

    def _publish_batch(self, client: mqtt.Client, entries: list[Entry]) -> None:
        payload = batch_payload(self.config.gateway_id, self.clock(), [e.payload for e in entries])
        info = client.publish(self._topic, payload, qos=1)
        # NO_CONN: paho kept the message and sends it after the reconnect; anything else
        # (QUEUE_SIZE above all) means paho dropped it, and the entries stay queued.
        if info.rc not in _KEPT_BY_PAHO:
            self._failed(f"publish refused by the MQTT client: {mqtt.error_string(info.rc)}")
            self._pause_until = time.monotonic() + 1.0
            return
        self._inflight[info.mid] = [e.id for e in entries]
        self._inflight_entries += len(entries)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        ids = self._inflight.pop(mid, None)
        if ids is None:  # a status message
            return
        self._inflight_entries -= len(ids)
        if reason.is_failure:
            # MQTT 5 only: the broker refused the batch (not authorised, quota exceeded).
            # The entries stay queued and are taken again once nothing is in flight.
            self._failed(f"broker refused a batch of {len(ids)} readings: {reason.getName()}")
            self._pause_until = time.monotonic() + self.backoff.next_delay()
            return
        try:
            self.buffer.ack(ids)
        except QueueStorageError as error:  # they stay queued and are sent again: no loss
            self._failed(str(error))
            return
        self.stats.sent += len(ids)
        self.stats.batches += 1

    def _publish_status(self, client: mqtt.Client, *, online: bool) -> mqtt.MQTTMessageInfo | None:
        info = client.publish(self._status_topic, to_json(self.status(online)), qos=1, retain=True)
        if info.rc not in _KEPT_BY_PAHO:
            self._failed(f"status publish refused: {mqtt.error_string(info.rc)}")
            return None
        return info

    # ------------------------------------------------------------------ helpers

    def _sleep(self, seconds: float) -> None:
        """Wait out a backoff delay, waking for :meth:`stop` and to show the thread is alive."""
        end = time.monotonic() + seconds
        while not self._stopping.wait(min(5.0, max(0.0, end - time.monotonic()))):
            self.last_loop = time.monotonic()
            if self.last_loop >= end:
                return

    def _loop(self, client: mqtt.Client, timeout: float) -> MQTTErrorCode:
        self.last_loop = time.monotonic()
        try:
            return client.loop(timeout)
        except (OSError, ssl.SSLError) as error:
            self._failed(f"network error: {error}")
            self.stats.connected = False
            return MQTTErrorCode.MQTT_ERR_CONN_LOST

    def _forget_inflight(self) -> None:
        """A new client starts with nothing in flight: whatever was, is taken again."""
        self._inflight.clear()
        self._inflight_entries = 0
        self.buffer.rewind()

    def _failed(self, message: str) -> None:
        self.stats.last_error = message
        self.stats.last_error_at = time.monotonic()
        self._log.error(message, failures=self.backoff.failures)

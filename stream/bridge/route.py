"""Where one MQTT message goes in Kafka: the bridge's decisions, without any I/O.

:meth:`Router.route` takes an MQTT topic, the payload bytes and the time they
were received, and answers with either

* a :class:`Route` — the Kafka topic, the key (the gateway id) and the value
  (the payload exactly as received, once the codec has accepted it); or
* a :class:`DeadLetter` — the payload refused, with every problem the codec
  found (reason, field path, value, message), the MQTT topic, the receive time
  and the raw bytes, ready to be written as one JSON record to the dead-letter
  topic.

A readings envelope travels whole as one record keyed by its gateway id, so
all of a gateway's readings land on one partition in the order they were
published. A payload whose gateway id differs from the one in its topic is
refused (``gateway_mismatch``), as is a message on a topic outside the scheme
(``unknown_topic``).

>>> from datetime import datetime, timezone
>>> at = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
>>> router = Router()
>>> payload = (b'{"gateway_id": "gw-1", "readings": [{"sensor_id": "aq-1", "kind": "pollution",'
...            b' "ts": "2026-11-22T08:00:00Z", "seq": 1, "metrics": {"pm2_5": 35}}]}')
>>> route = router.route("urbansense/v1/gw-1/readings", payload, at)
>>> route.topic, route.key, route.value == payload, route.readings
('urbansense.readings', b'gw-1', True, 1)
>>> rejected = router.route("urbansense/v1/gw-1/readings", b"{not json", at)
>>> rejected.topic, rejected.key, rejected.reasons
('urbansense.deadletter', b'gw-1', ('malformed_json',))
>>> record = json.loads(rejected.value)
>>> record["mqtt_topic"], record["received_at"], base64.b64decode(record["payload_base64"])
('urbansense/v1/gw-1/readings', '2026-11-22T08:00:00Z', b'{not json')
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from telemetry import (
    Channel,
    Codec,
    CodecLimits,
    DecodeError,
    Problem,
    TopicError,
    parse_topic,
)
from telemetry.topics import Topic

__all__ = [
    "DEAD_LETTER_SCHEMA_VERSION",
    "BridgeReason",
    "DeadLetter",
    "Rejection",
    "Route",
    "Router",
]

DEAD_LETTER_SCHEMA_VERSION = 1
"""The version of the dead-letter record's JSON layout."""

_MAX_TOPIC_IN_RECORD = 1024  # characters of an MQTT topic kept in a dead-letter record


class BridgeReason(StrEnum):
    """Reasons the bridge itself refuses a message, beside the codec's :class:`RejectReason`."""

    UNKNOWN_TOPIC = "unknown_topic"
    """The MQTT topic is not a gateway's readings or status topic."""
    GATEWAY_MISMATCH = "gateway_mismatch"
    """The payload's ``gateway_id`` is not the one in its topic."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """One problem with a refused message: the codec's :class:`~telemetry.Problem`, or the bridge's.

    Attributes:
        reason: a :class:`~telemetry.RejectReason` or :class:`BridgeReason` value.
        field: the dotted path of the field, e.g. ``readings.3.metrics.pm2_5``;
            empty for the message as a whole.
        value: the offending value, as a short ``repr``; may be empty.
        message: the problem in words.
    """

    reason: str
    field: str
    value: str
    message: str

    @classmethod
    def from_problem(cls, problem: Problem) -> Rejection:
        """The rejection for one of the codec's problems."""
        return cls(str(problem.reason), problem.field, problem.value, problem.message)

    def as_dict(self) -> dict[str, str]:
        """The rejection as JSON-ready data."""
        return {
            "reason": self.reason,
            "field": self.field,
            "value": self.value,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Route:
    """A message accepted: the Kafka record to produce.

    Attributes:
        topic: the Kafka topic.
        key: the record key, the gateway id as UTF-8.
        value: the record value, the MQTT payload exactly as received.
        channel: readings or status.
        readings: how many readings the envelope carries (0 for a status).
    """

    topic: str
    key: bytes
    value: bytes
    channel: Channel
    readings: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message refused: what the dead-letter topic receives, and why.

    Attributes:
        topic: the Kafka dead-letter topic.
        key: the record key: the gateway id if the MQTT topic names one, else
            the MQTT topic itself.
        mqtt_topic: the MQTT topic the payload arrived on.
        gateway_id: the gateway named by the MQTT topic, if any.
        received_at: when the bridge received it (UTC).
        payload: the raw payload, cut to the router's raw-bytes limit.
        payload_size: the payload's full size in bytes.
        rejections: every problem found, in the order found; never empty.
    """

    topic: str
    key: bytes
    mqtt_topic: str
    gateway_id: str | None
    received_at: datetime
    payload: bytes
    payload_size: int
    rejections: tuple[Rejection, ...]
    value: bytes = field(init=False, repr=False, compare=False)
    """The record value: the JSON document of :meth:`as_dict`, UTF-8."""

    def __post_init__(self) -> None:
        if not self.rejections:
            msg = "a DeadLetter needs at least one rejection"
            raise ValueError(msg)
        if self.received_at.tzinfo is None:
            msg = "received_at must be timezone-aware"
            raise ValueError(msg)
        value = json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":")).encode()
        object.__setattr__(self, "value", value)

    @property
    def reason(self) -> str:
        """The first rejection's reason: the one to count the message under."""
        return self.rejections[0].reason

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every distinct reason, in the order first found."""
        return tuple(dict.fromkeys(r.reason for r in self.rejections))

    @property
    def truncated(self) -> bool:
        """Whether :attr:`payload` holds less than the whole payload."""
        return len(self.payload) < self.payload_size

    def as_dict(self) -> dict[str, Any]:
        """The dead-letter record as JSON-ready data.

        Keys: ``schema_version``, ``received_at`` (ISO 8601, UTC, ``Z``),
        ``mqtt_topic``, ``gateway_id`` (or null), ``reason`` (the first),
        ``reasons`` (distinct, in order), ``problems`` (each with ``reason``,
        ``field``, ``value``, ``message``), ``payload_size``,
        ``payload_truncated`` and ``payload_base64``.
        """
        received = self.received_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return {
            "schema_version": DEAD_LETTER_SCHEMA_VERSION,
            "received_at": received,
            "mqtt_topic": self.mqtt_topic[:_MAX_TOPIC_IN_RECORD],
            "gateway_id": self.gateway_id,
            "reason": self.reason,
            "reasons": list(self.reasons),
            "problems": [r.as_dict() for r in self.rejections],
            "payload_size": self.payload_size,
            "payload_truncated": self.truncated,
            "payload_base64": base64.b64encode(self.payload).decode("ascii"),
        }


@dataclass(frozen=True, slots=True)
class Router:
    """Decides where each MQTT message goes; pure, so one instance serves every message.

    Args:
        readings_topic: the Kafka topic of accepted envelopes.
        status_topic: the Kafka topic of accepted status messages.
        dead_letter_topic: the Kafka topic of refused messages.
        limits: the codec's size and clock-skew limits.
        max_raw_bytes: at most this many bytes of a refused payload go into
            its dead-letter record, so that the record stays under Kafka's
            message size limit.
    """

    readings_topic: str = "urbansense.readings"
    status_topic: str = "urbansense.status"
    dead_letter_topic: str = "urbansense.deadletter"
    limits: CodecLimits = field(default_factory=CodecLimits)
    max_raw_bytes: int = 256 * 1024

    def route(self, mqtt_topic: str, payload: bytes, received_at: datetime) -> Route | DeadLetter:
        """Where one message goes.

        Args:
            mqtt_topic: the topic it arrived on.
            payload: its bytes.
            received_at: when it was received (aware); the codec measures a
                reading's clock skew against it, and a dead letter records it.

        Returns:
            The record to produce: a :class:`Route` if the message is valid,
            else a :class:`DeadLetter`. Never raises for any topic or payload.

        >>> from datetime import datetime, timezone
        >>> at = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
        >>> status = (b'{"gateway_id": "gw-1", "state": "online",'
        ...           b' "ts": "2026-11-22T08:00:00Z", "agent_version": "0.1.0"}')
        >>> Router().route("urbansense/v1/gw-1/status", status, at).topic
        'urbansense.status'
        >>> letter = Router().route("urbansense/v1/gw-2/status", status, at)
        >>> letter.reasons, letter.rejections[0].field
        (('gateway_mismatch',), 'gateway_id')
        >>> Router().route("somewhere/else", b"{}", at).reasons
        ('unknown_topic',)
        """
        try:
            topic = parse_topic(mqtt_topic)
        except TopicError as error:
            return self._dead_letter(
                mqtt_topic, None, payload, received_at, _unknown_topic(str(error))
            )
        if topic.channel is Channel.ALERTS or topic.gateway_id is None:
            message = f"the bridge forwards readings and status, not {topic.channel} topics"
            return self._dead_letter(
                mqtt_topic, None, payload, received_at, _unknown_topic(message)
            )
        codec = Codec(self.limits, clock=lambda: received_at)
        try:
            return self._accept(codec, topic, topic.gateway_id, payload)
        except DecodeError as error:
            rejections = tuple(Rejection.from_problem(p) for p in error.problems)
        except _Mismatch as mismatch:
            rejections = (mismatch.rejection,)
        return self._dead_letter(mqtt_topic, topic.gateway_id, payload, received_at, rejections)

    def _accept(self, codec: Codec, topic: Topic, gateway_id: str, payload: bytes) -> Route:
        if topic.channel is Channel.READINGS:
            batch = codec.decode_batch(payload)
            _check_gateway(gateway_id, batch.gateway_id)
            return Route(
                self.readings_topic,
                gateway_id.encode(),
                payload,
                Channel.READINGS,
                len(batch.readings),
            )
        status = codec.decode_status(payload)
        _check_gateway(gateway_id, status.gateway_id)
        return Route(self.status_topic, gateway_id.encode(), payload, Channel.STATUS)

    def _dead_letter(
        self,
        mqtt_topic: str,
        gateway_id: str | None,
        payload: bytes,
        received_at: datetime,
        rejections: tuple[Rejection, ...],
    ) -> DeadLetter:
        key = gateway_id if gateway_id is not None else mqtt_topic[:_MAX_TOPIC_IN_RECORD]
        return DeadLetter(
            topic=self.dead_letter_topic,
            key=key.encode(),
            mqtt_topic=mqtt_topic,
            gateway_id=gateway_id,
            received_at=received_at,
            payload=bytes(payload[: self.max_raw_bytes]),
            payload_size=len(payload),
            rejections=rejections,
        )


class _Mismatch(Exception):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


def _check_gateway(from_topic: str, from_payload: str) -> None:
    if from_topic != from_payload:
        message = (
            f"the payload names gateway {from_payload!r} but arrived on {from_topic!r}'s topic"
        )
        raise _Mismatch(
            Rejection(
                BridgeReason.GATEWAY_MISMATCH.value, "gateway_id", repr(from_payload), message
            )
        )


def _unknown_topic(message: str) -> tuple[Rejection, ...]:
    return (Rejection(BridgeReason.UNKNOWN_TOPIC.value, "", "", message),)

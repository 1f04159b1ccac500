"""The JSON codec: bytes on the wire to validated messages, and back.

Decoding gives a valid message or raises :class:`DecodeError`, never anything
else, whatever the bytes. A :class:`DecodeError` lists every problem found,
each with a :class:`RejectReason`, the field (a dotted path such as
``readings.3.metrics.pm2_5``), the offending value and a sentence, so the
bridge can count rejections by reason and send them to a dead-letter topic.

Checks that depend on the receiver live here rather than in the models: the
payload size limit and the largest clock skew into the future, both set by
:class:`CodecLimits`, and "now", from an injectable clock.

>>> from datetime import datetime, timezone
>>> codec = Codec(clock=lambda: datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc))
>>> batch = codec.decode_batch(
...     b'{"gateway_id": "gw-1", "readings": [{"sensor_id": "aq-1", "kind": "pollution",'
...     b' "ts": "2026-11-22T16:00:00+08:00", "seq": 1, "metrics": {"pm2_5": 35}}]}'
... )
>>> batch.readings[0].ts.isoformat(), batch.readings[0].metrics
('2026-11-22T08:00:00+00:00', {'pm2_5': 35.0})
>>> codec.decode_batch(b'{"gateway_id": "gw-1", "readings": [{"sensor_id": "aq-1",'
...     b' "kind": "pollution", "ts": "2026-11-22T08:00:00Z", "seq": 1,'
...     b' "metrics": {"pm2_5": NaN}}]}')
Traceback (most recent call last):
...
telemetry.codec.DecodeError: not_finite at readings.0.metrics.pm2_5 (value nan): Input should...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from telemetry.errors import TelemetryError
from telemetry.models import Alert, Batch, GatewayStatus

M = TypeVar("M", bound=BaseModel)


class RejectReason(StrEnum):
    """Why a payload was refused; one counter and dead-letter reason each."""

    OVERSIZE = "oversize"
    """The payload, or a list in it, is larger than the limit."""
    MALFORMED_JSON = "malformed_json"
    """Not JSON at all (or not UTF-8)."""
    WRONG_TYPE = "wrong_type"
    """A value of the wrong JSON type, e.g. a number in quotes."""
    MISSING_FIELD = "missing_field"
    """A required field is absent."""
    UNKNOWN_FIELD = "unknown_field"
    """A field the schema does not have."""
    UNSUPPORTED_SCHEMA = "unsupported_schema"
    """A ``schema_version`` this code cannot read."""
    NOT_FINITE = "not_finite"
    """NaN or an infinity where a number belongs."""
    OUT_OF_RANGE = "out_of_range"
    """Outside a metric's physical range, or a field's bounds."""
    NOT_INTEGER = "not_integer"
    """A fraction where a count belongs."""
    UNKNOWN_KIND = "unknown_kind"
    """A sensor kind the catalogue does not have."""
    UNKNOWN_METRIC = "unknown_metric"
    """A metric the catalogue does not have for the reading's kind."""
    MISSING_INTERVAL = "missing_interval"
    """Interval counts without the interval they cover."""
    NAIVE_TIMESTAMP = "naive_timestamp"
    """A timestamp without a UTC offset."""
    INVALID_TIMESTAMP = "invalid_timestamp"
    """A string that is not an ISO 8601 timestamp."""
    FUTURE_TIMESTAMP = "future_timestamp"
    """A timestamp further in the future than the allowed clock skew."""
    DUPLICATE_READING = "duplicate_reading"
    """The same ``(sensor_id, seq)`` twice in one batch."""
    INVALID_ID = "invalid_id"
    """An id that would break a topic or a tag: ``+``, ``#``, ``/``, NUL, too long…"""
    INVALID_VALUE = "invalid_value"
    """Any other invalid value."""


_REASON_OF_TYPE: dict[str, RejectReason] = {
    "json_invalid": RejectReason.MALFORMED_JSON,
    "json_type": RejectReason.MALFORMED_JSON,
    "missing": RejectReason.MISSING_FIELD,
    "extra_forbidden": RejectReason.UNKNOWN_FIELD,
    "finite_number": RejectReason.NOT_FINITE,
    "timezone_aware": RejectReason.NAIVE_TIMESTAMP,
    "datetime_parsing": RejectReason.INVALID_TIMESTAMP,
    "datetime_from_date_parsing": RejectReason.INVALID_TIMESTAMP,
    "datetime_object_invalid": RejectReason.INVALID_TIMESTAMP,
    "int_from_float": RejectReason.NOT_INTEGER,
    "greater_than": RejectReason.OUT_OF_RANGE,
    "greater_than_equal": RejectReason.OUT_OF_RANGE,
    "less_than": RejectReason.OUT_OF_RANGE,
    "less_than_equal": RejectReason.OUT_OF_RANGE,
}
_REASON_VALUES = {reason.value for reason in RejectReason}
_MAX_VALUE_CHARS = 80


def _reason(error: ErrorDetails) -> RejectReason:
    kind = error["type"]
    loc = error["loc"]
    if kind in _REASON_VALUES:  # our own PydanticCustomError types use the reason names
        return RejectReason(kind)
    if kind in _REASON_OF_TYPE:
        return _REASON_OF_TYPE[kind]
    if kind == "enum" and loc and loc[-1] == "kind":
        return RejectReason.UNKNOWN_KIND
    if kind == "literal_error" and loc and loc[-1] == "schema_version":
        return RejectReason.UNSUPPORTED_SCHEMA
    if kind == "too_long" and not isinstance(error.get("input"), str):
        return RejectReason.OVERSIZE
    if kind.endswith(("_type", "_parsing")):
        return RejectReason.WRONG_TYPE
    return RejectReason.INVALID_VALUE


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a payload was refused.

    Attributes:
        reason: the kind of problem, for counting and dead-lettering.
        field: dotted path of the field, e.g. ``readings.3.metrics.pm2_5``;
            empty for the payload as a whole.
        value: the offending value, as a short ``repr``.
        message: the problem in words.
    """

    reason: RejectReason
    field: str
    value: str
    message: str

    def __str__(self) -> str:
        where = f" at {self.field}" if self.field else ""
        value = f" (value {self.value})" if self.value else ""
        return f"{self.reason}{where}{value}: {self.message}"

    @classmethod
    def from_pydantic(cls, error: ErrorDetails) -> Problem:
        """Translate one pydantic error into a problem."""
        ctx: dict[str, Any] = dict(error.get("ctx") or {})
        path = [str(part) for part in error["loc"]]
        if "field" in ctx:  # a model-level check names the field it is about
            path.append(str(ctx["field"]))
        reason = _reason(error)
        value = (
            "" if reason is RejectReason.MISSING_FIELD else _short(ctx.get("value", error["input"]))
        )
        return cls(reason, ".".join(path), value, error["msg"])


class DecodeError(TelemetryError):
    """A payload the codec refused, with every problem found in it.

    The first problem's reason, field and value are also the error's own, for
    callers that count one reason per payload.

    Attributes:
        problems: every problem, in the order found; never empty.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        if not self.problems:
            msg = "a DecodeError needs at least one problem"
            raise ValueError(msg)
        more = len(self.problems) - 1
        super().__init__(str(self.problems[0]) + (f" (and {more} more)" if more else ""))

    @property
    def reason(self) -> RejectReason:
        """The first problem's reason."""
        return self.problems[0].reason

    @property
    def field(self) -> str:
        """The first problem's field."""
        return self.problems[0].field

    @property
    def value(self) -> str:
        """The first problem's value."""
        return self.problems[0].value


def to_json(message: BaseModel) -> bytes:
    """The wire form of any message or part of one: compact UTF-8 JSON, defaults left out.

    The one encoding every side uses, so that a reading stored on its own (in the
    gateway's queue) is byte for byte what it is inside a batch.
    """
    return message.model_dump_json(exclude_defaults=True).encode()


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CodecLimits:
    """Limits the codec enforces on what it decodes.

    Attributes:
        max_payload_bytes: largest payload accepted, in bytes. The default,
            256 KiB, holds a batch of about 1500 readings and is well under
            Mosquitto's and Kafka's default message limits (1 MiB).
        max_future_skew: how far ahead of the receiver's clock an event time
            may be before it is refused. Gateways keep time with NTP; five
            minutes allows for a gateway that lost it for a while.
    """

    max_payload_bytes: int = 256 * 1024
    max_future_skew: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.max_payload_bytes <= 0:
            msg = f"max_payload_bytes must be positive, got {self.max_payload_bytes}"
            raise ValueError(msg)
        if self.max_future_skew < timedelta(0):
            msg = f"max_future_skew must not be negative, got {self.max_future_skew}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class Codec:
    """Encodes and decodes urbansense messages as JSON.

    Args:
        limits: size and clock-skew limits.
        clock: returns "now" (aware, UTC); injectable for tests and replays.
    """

    limits: CodecLimits = field(default_factory=CodecLimits)
    clock: Callable[[], datetime] = _utc_now

    def decode_batch(self, payload: bytes) -> Batch:
        """Decode a gateway's readings envelope; raises :class:`DecodeError`."""
        batch = self._decode(Batch, payload)
        horizon = self.clock() + self.limits.max_future_skew
        future = [
            Problem(
                RejectReason.FUTURE_TIMESTAMP,
                f"readings.{index}.ts",
                _short(reading.ts.isoformat()),
                f"event time is {(reading.ts - horizon + self.limits.max_future_skew)}"
                f" ahead of the receiver's clock; at most {self.limits.max_future_skew} allowed",
            )
            for index, reading in enumerate(batch.readings)
            if reading.ts > horizon
        ]
        if future:
            raise DecodeError(future)
        return batch

    def decode_status(self, payload: bytes) -> GatewayStatus:
        """Decode a gateway status message; raises :class:`DecodeError`."""
        return self._decode(GatewayStatus, payload)

    def decode_alert(self, payload: bytes) -> Alert:
        """Decode an alert; raises :class:`DecodeError`."""
        return self._decode(Alert, payload)

    def encode(self, message: Batch | GatewayStatus | Alert) -> bytes:
        """Encode a message as compact UTF-8 JSON; raises :class:`DecodeError` if oversize.

        An oversize message is refused here too, so that a gateway never sends
        what every receiver would reject.
        """
        payload = to_json(message)
        self._check_size(payload)
        return payload

    def _check_size(self, payload: bytes) -> None:
        if len(payload) > self.limits.max_payload_bytes:
            raise DecodeError(
                [
                    Problem(
                        RejectReason.OVERSIZE,
                        "",
                        f"{len(payload)} bytes",
                        f"payload is {len(payload)} bytes, more than the"
                        f" {self.limits.max_payload_bytes} allowed",
                    )
                ]
            )

    def _decode(self, model: type[M], payload: object) -> M:
        if not isinstance(payload, bytes | bytearray | memoryview):
            msg = f"payload must be bytes, got {type(payload).__name__}"
            raise TypeError(msg)
        data = bytes(payload)
        self._check_size(data)
        try:
            return model.model_validate_json(data)
        except ValidationError as error:
            raise DecodeError(Problem.from_pydantic(e) for e in _root_causes(error)) from None


def _root_causes(error: ValidationError) -> list[ErrorDetails]:
    """Pydantic's errors less the echoes: a list left too short because its items failed."""
    errors = error.errors()
    has_failures_inside = {e["loc"][:n] for e in errors for n in range(len(e["loc"]))}
    causes = [
        e for e in errors if not (e["type"] == "too_short" and e["loc"] in has_failures_inside)
    ]
    return causes or errors

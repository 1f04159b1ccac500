"""The messages of the wire contract, as pydantic models.

* :class:`Reading` — one sensor's values at one event time.
* :class:`Batch` — the envelope a gateway publishes: its id, the schema version
  and a run of readings.
* :class:`GatewayStatus` — a gateway's health, published retained; its
  last-will twin says ``offline``.
* :class:`Alert` — a rule firing or resolving on a subject (a sensor, site,
  scenic area, road segment, building, gateway or district).

The models are strict: a number in quotes is a wrong type, not a number;
unknown keys, NaN and infinities, naive timestamps and ids that would break an
MQTT topic are refused. Metric names and values are checked against the metric
catalogue. Time is always UTC: an aware timestamp in another zone is converted.

The checks that depend on the receiver's clock (a timestamp too far in the
future) and on size limits live in :mod:`telemetry.codec`.

>>> from datetime import datetime, timezone
>>> r = Reading(
...     sensor_id="aq-lakeside-01", kind=Kind.POLLUTION, seq=7,
...     ts=datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc),
...     metrics={"pm2_5": 35.0, "pm10": 61.0},
... )
>>> r.ts.isoformat()
'2026-11-22T08:00:00+00:00'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from telemetry.catalogue import CATALOGUE, Kind, Semantics
from telemetry.ids import Identifier

SCHEMA_VERSION: Literal[1] = 1
"""The version of the batch envelope and status messages this code writes and reads."""

MAX_READINGS_PER_BATCH = 10_000
"""Most readings one envelope may carry."""


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


_PLAIN_RANGES: Mapping[Kind, Mapping[str, tuple[float, float]]] = {
    kind: {
        name: (spec.low, spec.high)
        for name, spec in specs.items()
        if not spec.integer and spec.max_rate_per_s is None
    }
    for kind, specs in CATALOGUE.items()
}
"""Per kind, the metrics whose valid range depends on nothing else, with that range.

A value inside it is valid (NaN and infinities never are); any other goes through the
whole check, which says what is wrong.
"""

_COUNTS: Mapping[Kind, frozenset[str]] = {
    kind: frozenset(n for n, s in specs.items() if s.semantics is Semantics.INTERVAL_COUNT)
    for kind, specs in CATALOGUE.items()
}
"""Per kind, its interval counts: metrics that need the reading's ``interval_s``."""

UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An aware timestamp, converted to UTC. Naive timestamps are refused."""

ShortText = Annotated[str, Field(max_length=1024)]


class _Wire(BaseModel):
    """Shared configuration of every wire model: strict, closed, immutable."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )


class QualityFlag(StrEnum):
    """Optional marks a gateway or driver puts on a reading."""

    ESTIMATED = "estimated"
    """Filled in by the device (interpolated or modelled), not measured."""
    CALIBRATING = "calibrating"
    """The sensor is warming up or calibrating; values may be off."""
    MAINTENANCE = "maintenance"
    """Taken while the site was under maintenance."""
    SUSPECT = "suspect"
    """The device itself doubts the value (self-test failed, flow fault…)."""
    BACKFILLED = "backfilled"
    """Sent late from the gateway's store-and-forward buffer after an outage."""


class MetricStats(_Wire):
    """How a pre-aggregated gauge varied over the reading's interval.

    An edge agent that samples every few seconds and publishes once a minute
    sends the mean as the metric's value and the spread here.

    Attributes:
        min: the lowest sample.
        max: the highest sample.
        count: how many samples the value summarises.
    """

    min: float
    max: float
    count: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise PydanticCustomError(
                "invalid_value",
                "min {min} is above max {max}",
                {"min": self.min, "max": self.max, "field": "min", "value": self.min},
            )
        return self


class Reading(_Wire):
    """One sensor's values at one event time.

    Attributes:
        sensor_id: the sensor, as named in the site registry.
        kind: what it measures; decides which metrics are allowed.
        ts: event time (when the values were measured, or the end of the
            interval they cover), UTC.
        seq: the sensor's sequence number, increasing by one per reading; with
            ``sensor_id`` it identifies a reading, so a resent one is
            recognised downstream.
        metrics: metric name to value, names and ranges per the catalogue.
        interval_s: the length of time the values cover. Required when a
            metric is an interval count (vehicles, entries, exits).
        quality: optional quality flags.
        stats: for pre-aggregated gauges, the min, max and sample count behind
            each metric's value (the mean); only for metrics in ``metrics``.
    """

    sensor_id: Identifier
    kind: Kind
    ts: UtcDatetime
    seq: Annotated[int, Field(ge=0, le=2**63 - 1)]
    # interval_s precedes metrics: the metric ranges of interval counts depend on it.
    interval_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    metrics: Annotated[dict[str, float], Field(min_length=1, max_length=64)]
    quality: frozenset[QualityFlag] = frozenset()
    stats: Annotated[dict[str, MetricStats], Field(max_length=64)] = {}

    @field_validator("metrics")
    @classmethod
    def _metrics_in_catalogue(
        cls, metrics: dict[str, float], info: ValidationInfo
    ) -> dict[str, float]:
        kind = info.data.get("kind")
        if kind is None:  # the kind itself was invalid and is reported on its own
            return metrics
        known = CATALOGUE[kind]
        interval_s = info.data.get("interval_s")
        plain = _PLAIN_RANGES[kind]
        for name, value in metrics.items():
            bounds = plain.get(name)
            if bounds is not None and bounds[0] <= value <= bounds[1]:
                continue  # the common case: a gauge's value within its range
            spec = known.get(name)
            if spec is None:
                raise PydanticCustomError(
                    "unknown_metric",
                    "{kind} has no metric '{metric}'; known: {known}",
                    {
                        "kind": str(kind),
                        "metric": name,
                        "known": ", ".join(known),
                        "field": name,
                        "value": value,
                    },
                )
            if spec.integer and not float(value).is_integer():
                raise PydanticCustomError(
                    "not_integer",
                    "{metric} counts {unit} and must be a whole number, got {value}",
                    {"metric": name, "unit": spec.unit, "value": value, "field": name},
                )
            problem = spec.range_problem(value, interval_s)
            if problem is not None:
                raise PydanticCustomError(
                    "out_of_range",
                    "{problem}",
                    {"problem": problem, "field": name, "value": value},
                )
        return metrics

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Interval counts come with their interval; stats bracket their metric's value."""
        if self.interval_s is None and not _COUNTS[self.kind].isdisjoint(self.metrics):
            counts = [name for name in self.metrics if name in _COUNTS[self.kind]]
            raise PydanticCustomError(
                "missing_interval",
                "interval_s is required with interval counts ({metrics})",
                {"metrics": ", ".join(counts), "field": "interval_s", "value": None},
            )
        for name, stats in self.stats.items():
            value = self.metrics.get(name)
            if value is None:
                raise PydanticCustomError(
                    "unknown_metric",
                    "stats given for '{metric}', which is not among the reading's metrics",
                    {"metric": name, "field": f"stats.{name}", "value": name},
                )
            if not stats.min <= value <= stats.max:
                raise PydanticCustomError(
                    "invalid_value",
                    "{metric} = {value} lies outside its own min {min} and max {max}",
                    {
                        "metric": name,
                        "value": value,
                        "min": stats.min,
                        "max": stats.max,
                        "field": f"stats.{name}",
                    },
                )
        return self

    @property
    def key(self) -> tuple[str, int]:
        """``(sensor_id, seq)``, which identifies the reading."""
        return self.sensor_id, self.seq


class Batch(_Wire):
    """The envelope a gateway publishes on its readings topic.

    Attributes:
        schema_version: the envelope's version; this code reads version 1.
        gateway_id: the publishing gateway.
        sent_at: when the gateway sent the envelope (its own clock, UTC);
            optional, useful to spot a gateway whose clock is off.
        readings: one or more readings, each ``(sensor_id, seq)`` at most once.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    gateway_id: Identifier
    sent_at: UtcDatetime | None = None
    readings: Annotated[tuple[Reading, ...], Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)]

    @field_validator("readings")
    @classmethod
    def _no_duplicate_readings(cls, readings: tuple[Reading, ...]) -> tuple[Reading, ...]:
        first_at: dict[tuple[str, int], int] = {}
        for index, reading in enumerate(readings):
            earlier = first_at.setdefault(reading.key, index)
            if earlier != index:
                raise PydanticCustomError(
                    "duplicate_reading",
                    "readings {earlier} and {index} are both sensor '{sensor_id}' seq {seq}",
                    {
                        "earlier": earlier,
                        "index": index,
                        "sensor_id": reading.sensor_id,
                        "seq": reading.seq,
                        "field": f"{index}.seq",
                        "value": reading.seq,
                    },
                )
        return readings


class GatewayState(StrEnum):
    """Whether a gateway is connected."""

    ONLINE = "online"
    OFFLINE = "offline"


class GatewayStatus(_Wire):
    """A gateway's health, published retained on its status topic.

    Its last-will message (sent by the broker when the gateway vanishes) is the
    same model with ``state="offline"``.

    Attributes:
        gateway_id: the gateway.
        state: online or offline.
        ts: when the status was taken, UTC.
        agent_version: version of the edge agent software.
        buffer_depth: readings waiting in the store-and-forward queue.
        dropped_total: readings the queue dropped because it was full, over the
            queue's whole life (it survives restarts).
        sent_total: readings the broker acknowledged since the agent started.
        sensor_errors_total: failed sensor opens and reads (garbage included)
            since the agent started.
        uptime_s: seconds since the agent started.
        last_error: the most recent error, if any.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    gateway_id: Identifier
    state: GatewayState
    ts: UtcDatetime
    agent_version: Annotated[str, Field(min_length=1, max_length=64)]
    buffer_depth: Annotated[int, Field(ge=0)] = 0
    dropped_total: Annotated[int, Field(ge=0)] = 0
    sent_total: Annotated[int, Field(ge=0)] = 0
    sensor_errors_total: Annotated[int, Field(ge=0)] = 0
    uptime_s: Annotated[float, Field(ge=0)] = 0.0
    last_error: ShortText | None = None


class Severity(StrEnum):
    """How urgent an alert is."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    """An alert's state as receivers see it."""

    FIRING = "firing"
    RESOLVED = "resolved"


class AlertSubject(_Wire):
    """What an alert is about; at least one field is set.

    The set fields, with the rule id, make the alert's fingerprint.
    """

    sensor_id: Identifier | None = None
    gateway_id: Identifier | None = None
    site_id: Identifier | None = None
    area_id: Identifier | None = None
    segment_id: Identifier | None = None
    building_id: Identifier | None = None
    district_id: Identifier | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.labels():
            raise PydanticCustomError(
                "missing",
                "an alert subject names at least one of {fields}",
                {"fields": ", ".join(type(self).model_fields)},
            )
        return self

    def labels(self) -> dict[str, str]:
        """The set fields as labels, e.g. ``{"sensor_id": "aq-01"}``."""
        return {name: value for name, value in self if value is not None}


def alert_fingerprint(rule_id: str, subject: AlertSubject) -> str:
    """The 16-hex-digit fingerprint that makes an alert unique: rule id plus subject labels.

    Stable across processes and releases, so that a replayed reading that fires
    the same rule on the same subject is recognised as the same alert.

    >>> alert_fingerprint("aqi-heavy", AlertSubject(site_id="st-lakeside"))
    '...'
    >>> len(alert_fingerprint("aqi-heavy", AlertSubject(site_id="st-lakeside")))
    16
    """
    canonical = json.dumps(
        {"rule_id": rule_id, **subject.labels()}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Alert(_Wire):
    """A rule firing or resolving on a subject.

    Build one with :meth:`Alert.create`, which computes the fingerprint.

    Attributes:
        fingerprint: :func:`alert_fingerprint` of rule and subject.
        rule_id: the rule that fired.
        severity: info, warning or critical.
        state: firing or resolved.
        subject: what the alert is about.
        kind: the kind of reading that fired it, if any.
        metric: the metric or index that fired it, if any.
        value: the value that crossed the threshold, if any.
        threshold: the threshold it crossed, if any.
        starts_at: when the condition began to hold, UTC.
        ends_at: when it stopped holding (only and always when resolved).
        labels: labels for routing and grouping.
        annotations: human-readable text: summary, description, runbook.
    """

    fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    rule_id: Identifier
    severity: Severity
    state: AlertState
    subject: AlertSubject
    kind: Kind | None = None
    metric: Annotated[str, Field(max_length=64)] | None = None
    value: float | None = None
    threshold: float | None = None
    starts_at: UtcDatetime
    ends_at: UtcDatetime | None = None
    labels: Annotated[dict[str, ShortText], Field(max_length=64)] = {}
    annotations: Annotated[
        dict[str, Annotated[str, Field(max_length=8192)]], Field(max_length=64)
    ] = {}

    @classmethod
    def create(cls, *, rule_id: str, subject: AlertSubject, **fields: Any) -> Alert:
        """Build an alert, computing its fingerprint from rule and subject."""
        return cls(
            fingerprint=alert_fingerprint(rule_id, subject),
            rule_id=rule_id,
            subject=subject,
            **fields,
        )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        expected = alert_fingerprint(self.rule_id, self.subject)
        if self.fingerprint != expected:
            raise PydanticCustomError(
                "invalid_fingerprint",
                "fingerprint {got} does not match rule and subject, expected {expected}",
                {"got": self.fingerprint, "expected": expected, "field": "fingerprint"},
            )
        if self.state is AlertState.RESOLVED and self.ends_at is None:
            raise PydanticCustomError(
                "missing", "a resolved alert needs ends_at", {"field": "ends_at"}
            )
        if self.state is AlertState.FIRING and self.ends_at is not None:
            raise PydanticCustomError(
                "invalid_value", "a firing alert has no ends_at", {"field": "ends_at"}
            )
        if self.ends_at is not None and self.ends_at < self.starts_at:
            raise PydanticCustomError(
                "invalid_value",
                "ends_at {ends_at} is before starts_at {starts_at}",
                {
                    "ends_at": self.ends_at.isoformat(),
                    "starts_at": self.starts_at.isoformat(),
                    "field": "ends_at",
                },
            )
        return self

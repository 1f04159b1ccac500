r"""The rule file, as pydantic models: what a rule selects, when it fires, when it clears.

A rule file is YAML with ``version: 1`` and a list of ``rules``; :mod:`rules.load`
reads one and points every problem at its file, rule and key. A rule:

.. code-block:: yaml

    version: 1
    utc_offset_h: 8                 # the city's local time, for `during`
    rules:
      - id: aqi-heavy               # unique; with the subject it makes the fingerprint
        severity: warning           # info, warning or critical
        select: {index: aqi}        # which samples: kind/metric or index, and subject ids
        threshold: {at_least: 201}  # the firing condition
        clear: {below: 151}         # hysteresis: the condition that resolves it
        for: 0s                     # how long the condition holds before it fires
        keep_firing_for: 30m        # the clear condition must hold this long to resolve
        labels: {team: environment}
        annotations:
          summary: "Heavy pollution (重度污染) at {site_name}: AQI {value}"

**Selection.** ``select`` names a series by ``kind`` and ``metric`` (a reading's, from
the metric catalogue, e.g. ``pollution``/``pm2_5``; or a stream output's, from
:data:`INDEX_FIELDS`, e.g. ``traffic_index``/``tpi``) or by ``index`` (a short name
from :data:`INDEX_ALIASES`, such as ``aqi``, ``tpi`` or ``occupancy_pct``, or
``measurement.field``). Subject ids (``sensor``, ``gateway``, ``site``, ``area``,
``segment``, ``building``, ``district``: one id or a list) and ``labels`` narrow it;
``subject: segment`` keeps only samples that name a segment (a segment's TPI, not its
district's).

**Conditions.** Exactly one of:

* ``threshold`` -- one comparison (``above`` >, ``at_least`` >=, ``below`` <,
  ``at_most`` <=) on the value, or with ``aggregate`` (mean, min, max, p50, p90,
  p95, p99) and ``window`` on a rolling aggregate of the subject's recent values;
* ``rate_of_change`` -- a comparison on the change ``per`` second, minute or hour
  between the oldest and the newest value within ``window``;
* ``anomaly`` -- the detectors' calibrated score reaches ``min_score`` (optionally
  only from some ``detector``\\ s);
* ``absence`` -- no sample for longer than ``for``, per sensor, gateway or other
  subject (``per``).

Durations are written ``30s``, ``5m``, ``1h30m``, ``1d`` (``0`` is zero).
Annotations are templates: ``{value}``, ``{threshold}`` and the names of
:data:`TEMPLATE_FIELDS`, with an optional format (``{value:.0f}``); an unknown name is
an error when the file is loaded.

>>> rule = Rule.model_validate({
...     "id": "tpi-severe", "severity": "critical",
...     "select": {"index": "tpi", "subject": "segment"},
...     "threshold": {"at_least": 8}, "clear": {"below": 6}, "for": "5m",
... })
>>> rule.select.kind, rule.select.metric, rule.for_
('traffic_index', 'tpi', datetime.timedelta(seconds=300))
>>> rule.firing.holds(8.0), rule.clearing.holds(7.0), rule.clearing.holds(5.9)
(True, False, True)
>>> parse_duration("1h30m")
datetime.timedelta(seconds=5400)
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from telemetry.catalogue import CATALOGUE, Kind
from telemetry.ids import Identifier
from telemetry.models import Severity

__all__ = [
    "INDEX_ALIASES",
    "INDEX_FIELDS",
    "RESERVED_LABELS",
    "SUBJECT_LABELS",
    "TEMPLATE_FIELDS",
    "Absence",
    "Aggregate",
    "AnomalyCondition",
    "Comparison",
    "Duration",
    "During",
    "Op",
    "RateOfChange",
    "Rule",
    "RuleSet",
    "Selector",
    "SubjectLabel",
    "Threshold",
    "format_duration",
    "parse_duration",
]

SKIP_DUPLICATE_CHECK: Final = "skip_duplicate_check"
"""Validation context key: :mod:`rules.load` reports duplicate ids itself, at their lines."""

# ---------------------------------------------------------------- vocabularies

INDEX_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "aqi": (
            "aqi",
            "level",
            "iaqi_pm2_5",
            "iaqi_pm10",
            "iaqi_so2",
            "iaqi_no2",
            "iaqi_co",
            "iaqi_o3_1h",
        ),
        "traffic_index": (
            "tpi",
            "grade",
            "speed_kmh",
            "speed_ratio",
            "tti",
            "vehicles",
            "congested_share",
        ),
        "scenic": (
            "occupancy",
            "occupancy_pct",
            "tier",
            "daily_visitors",
            "daily_pct",
            "daily_tier",
            "unexplained_exits",
        ),
        "energy_use": ("power_kw", "consumption_kwh", "baseline_kw", "power_ratio", "excess_kw"),
        "hotspot": ("score", "rank", "value", "peer_z", "self_z"),
        "gateway": (
            "online",
            "buffer_depth",
            "sent_total",
            "dropped_total",
            "sensor_errors_total",
            "uptime_s",
        ),
    }
)
"""The stream's outputs a rule can select besides readings: measurement -> numeric fields
(the names of :mod:`stream.schema`; a test keeps them in step). A sample of one has the
measurement as its ``kind`` and the field as its ``metric``."""

INDEX_ALIASES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "aqi": ("aqi", "aqi"),
        "aqi_level": ("aqi", "level"),
        "tpi": ("traffic_index", "tpi"),
        "tpi_grade": ("traffic_index", "grade"),
        "speed_ratio": ("traffic_index", "speed_ratio"),
        "occupancy": ("scenic", "occupancy"),
        "occupancy_pct": ("scenic", "occupancy_pct"),
        "occupancy_tier": ("scenic", "tier"),
        "daily_pct": ("scenic", "daily_pct"),
        "power_kw": ("energy_use", "power_kw"),
        "power_ratio": ("energy_use", "power_ratio"),
        "excess_kw": ("energy_use", "excess_kw"),
        "hotspot_score": ("hotspot", "score"),
        "gateway_online": ("gateway", "online"),
    }
)
"""Short names for ``select.index``; ``measurement.field`` works for every field too."""


class SubjectLabel(StrEnum):
    """The subject ids a sample can carry and a rule can select by."""

    SENSOR = "sensor"
    GATEWAY = "gateway"
    SITE = "site"
    AREA = "area"
    SEGMENT = "segment"
    BUILDING = "building"
    DISTRICT = "district"


SUBJECT_LABELS: tuple[str, ...] = tuple(label.value for label in SubjectLabel)
"""Subject label names, in the order of :class:`telemetry.AlertSubject`'s fields."""

RESERVED_LABELS: frozenset[str] = frozenset({"alertname", "severity"})
"""Alert labels the engine sets itself; a rule's ``labels`` may not use them."""

TEMPLATE_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "value": "the value the condition was evaluated on (aggregate, rate or score)",
        "threshold": "the firing condition's bound",
        "op": "the firing comparison in words, e.g. 'at least'",
        "rule": "the rule's id",
        "severity": "the rule's severity",
        "subject": "the subject, e.g. 'site=st-pier district=lakeside'",
        "site_name": "the display name of the subject's place (site, area, segment...)",
        "kind": "the sample's kind (a reading kind or a stream measurement)",
        "metric": "the sample's metric or index field",
        "sample_value": "the latest sample's own value",
        "score": "the anomaly score, if any",
        "detector": "the detector behind the anomaly score, if any",
        "explanation": "the detector's explanation, if any",
        "for": "the rule's pending duration, e.g. '5m'",
        "window": "the condition's window, e.g. '10m'",
        "last_seen": "absence: when the subject was last seen, ISO 8601 UTC",
        "starts_at": "when the condition began to hold, ISO 8601 UTC",
        **{label: f"the subject's {label} id, if any" for label in SUBJECT_LABELS},
    }
)
"""The names an annotation template may use, with what each holds. A name without a
value for an alert is rendered ``n/a``."""

_NUMERIC_FIELDS: Final = frozenset({"value", "threshold", "sample_value", "score"})


# ---------------------------------------------------------------- durations

_DURATION_RE: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: object) -> timedelta:
    """A duration written ``30s``, ``5m``, ``1h30m``, ``2d`` or ``0``.

    >>> parse_duration("90s"), parse_duration("1d2h")
    (datetime.timedelta(seconds=90), datetime.timedelta(days=1, seconds=7200))
    >>> parse_duration("5 minutes")
    Traceback (most recent call last):
    ...
    ValueError: invalid duration '5 minutes' (e.g. 30s, 5m, 1h30m, 1d)
    """
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int) and not isinstance(text, bool) and text == 0:
        return timedelta(0)
    if isinstance(text, str):
        stripped = text.strip()
        if stripped == "0":
            return timedelta(0)
        match = _DURATION_RE.fullmatch(stripped)
        if stripped and match:
            d, h, m, s = (int(g) if g else 0 for g in match.groups())
            return timedelta(days=d, hours=h, minutes=m, seconds=s)
    if isinstance(text, int | float) and not isinstance(text, bool):
        msg = f"invalid duration {text!r}: give a unit, e.g. '{text}s' or '{text}m'"
        raise ValueError(msg)
    msg = f"invalid duration {text!r} (e.g. 30s, 5m, 1h30m, 1d)"
    raise ValueError(msg)


def format_duration(value: timedelta) -> str:
    """A duration as :func:`parse_duration` reads it.

    >>> format_duration(timedelta(hours=1, minutes=30)), format_duration(timedelta(0))
    ('1h30m', '0s')
    """
    total = int(value.total_seconds())
    if total == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, total = divmod(total, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


def _non_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        msg = "a duration cannot be negative"
        raise ValueError(msg)
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_non_negative),
    PlainSerializer(format_duration, return_type=str),
]
"""A duration field: ``5m``, ``1h30m``... as a :class:`~datetime.timedelta`."""


def _one_or_many(value: object) -> object:
    """Let a single id stand for a list of one."""
    return [value] if isinstance(value, str) else value


IdSet = Annotated[tuple[Identifier, ...], BeforeValidator(_one_or_many), Field(min_length=1)]


# ---------------------------------------------------------------- templates


def template_problem(template: str) -> str | None:
    """Why an annotation template cannot be rendered, or None when it can.

    >>> template_problem("AQI {value:.0f} at {site_name}") is None
    True
    >>> template_problem("AQI {valeu}")
    "unknown template field 'valeu' (did you mean 'value'?)"
    """
    formatter = string.Formatter()
    try:
        parsed = list(formatter.parse(template))
    except ValueError as exc:
        return f"invalid template: {exc} (write a literal brace as {{{{ or }}}})"
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            close = difflib.get_close_matches(name, TEMPLATE_FIELDS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            if not name:
                return "empty template field '{}': name a field, e.g. {value}"
            return f"unknown template field {name!r}{hint}"
        if spec and ("{" in spec or "}" in spec):
            return f"nested fields in the format of {{{name}}} are not supported"
        sample: object = 1.5 if name in _NUMERIC_FIELDS else "x"
        try:
            formatter.format_field(formatter.convert_field(sample, conversion), spec or "")
        except (ValueError, TypeError) as exc:
            return f"invalid format {spec!r} for {{{name}}}: {exc}"
    return None


def _check_template(template: str) -> str:
    problem = template_problem(template)
    if problem is not None:
        raise ValueError(problem)
    return template


Template = Annotated[str, Field(max_length=4096), AfterValidator(_check_template)]


# ---------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Op(StrEnum):
    """A comparison of a value with a bound."""

    ABOVE = "above"
    AT_LEAST = "at_least"
    BELOW = "below"
    AT_MOST = "at_most"

    @property
    def upward(self) -> bool:
        """Whether the comparison holds for high values."""
        return self in (Op.ABOVE, Op.AT_LEAST)

    @property
    def inclusive(self) -> bool:
        """Whether the bound itself satisfies the comparison."""
        return self in (Op.AT_LEAST, Op.AT_MOST)

    @property
    def words(self) -> str:
        """The comparison in words: ``above``, ``at least``..."""
        return self.value.replace("_", " ")


_OPS: Final = tuple(op.value for op in Op)


class Comparison(_Model):
    """One comparison: exactly one of ``above``, ``at_least``, ``below``, ``at_most``.

    >>> Comparison(at_least=201).holds(201.0), Comparison(above=200).holds(200.0)
    (True, False)
    """

    above: float | None = Field(default=None, allow_inf_nan=False)
    at_least: float | None = Field(default=None, allow_inf_nan=False)
    below: float | None = Field(default=None, allow_inf_nan=False)
    at_most: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in _OPS if getattr(self, name) is not None]
        if len(given) != 1:
            found = f" (found {', '.join(given)})" if given else ""
            msg = f"give exactly one of above, at_least, below, at_most{found}"
            raise ValueError(msg)
        return self

    @property
    def op(self) -> Op:
        """The comparison's operator."""
        return next(Op(name) for name in _OPS if getattr(self, name) is not None)

    @property
    def bound(self) -> float:
        """The value compared with."""
        value = getattr(self, self.op.value)
        assert value is not None  # noqa: S101 -- guaranteed by the validator
        return float(value)

    def holds(self, x: float) -> bool:
        """Whether ``x`` satisfies the comparison."""
        op, bound = self.op, self.bound
        if op is Op.ABOVE:
            return x > bound
        if op is Op.AT_LEAST:
            return x >= bound
        if op is Op.BELOW:
            return x < bound
        return x <= bound

    def negated(self) -> Comparison:
        """The comparison that holds exactly when this one does not."""
        opposite = {Op.ABOVE: "at_most", Op.AT_LEAST: "below", Op.BELOW: "at_least"}
        return Comparison.model_validate({opposite.get(self.op, "above"): self.bound})

    def overlaps(self, other: Comparison) -> bool:
        """Whether some value satisfies both comparisons."""
        if self.op.upward == other.op.upward:
            return True
        low, high = (self, other) if self.op.upward else (other, self)
        if high.bound != low.bound:
            return high.bound > low.bound
        return low.op.inclusive and high.op.inclusive


class Aggregate(StrEnum):
    """A rolling aggregate of a subject's values over a window."""

    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"


class Threshold(Comparison):
    """A comparison on the value, or on a rolling aggregate over ``window``.

    Attributes:
        aggregate: mean, min, max or a percentile of the values within ``window``
            (event time, the newest value included); None: the value itself.
        window: the aggregate's window; required with ``aggregate``.
        min_samples: values the window must hold before the aggregate is compared.
    """

    aggregate: Aggregate | None = None
    window: Duration | None = None
    min_samples: int = Field(default=1, ge=1, le=100_000)

    @model_validator(mode="after")
    def _window_with_aggregate(self) -> Self:
        if self.aggregate is not None and not self.window:
            msg = "an aggregate needs a window, e.g. window: 10m"
            raise ValueError(msg)
        if self.aggregate is None and self.window is not None:
            msg = "a window needs an aggregate (mean, min, max, p95...)"
            raise ValueError(msg)
        return self


class RateOfChange(Comparison):
    """A comparison on how fast the value changes.

    The rate is ``(newest - oldest) / elapsed`` over the values within ``window``,
    in units ``per`` second, minute or hour; a rise is positive. It needs two values.

    Attributes:
        per: the rate's time unit.
        window: how far back the oldest value may lie.
    """

    per: Literal["second", "minute", "hour"] = "minute"
    window: Duration = Field(gt=timedelta(0))

    @property
    def per_s(self) -> float:
        """Seconds of the rate's time unit."""
        return {"second": 1.0, "minute": 60.0, "hour": 3600.0}[self.per]


class AnomalyCondition(_Model):
    """The detectors' calibrated anomaly score reaches ``min_score``.

    Attributes:
        min_score: the score from which the rule fires, in (0, 1]; 0.5 is the
            detectors' own alert level.
        detector: only scores from these detectors (one name or a list); None: any.
    """

    min_score: float = Field(default=0.5, gt=0, le=1)
    detector: Annotated[tuple[str, ...], BeforeValidator(_one_or_many)] | None = None

    def comparison(self) -> Comparison:
        """The firing condition as a comparison on the score."""
        return Comparison(at_least=self.min_score)


class Absence(_Model):
    """No sample from a subject for longer than ``for``.

    Attributes:
        for_: (``for``) how long without a sample.
        per: which subject must keep reporting: each sensor, each gateway...
    """

    for_: Duration = Field(alias="for", gt=timedelta(0))
    per: SubjectLabel = SubjectLabel.SENSOR


_HHMM_RE: Final = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def _hhmm(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"{value}:00" if 0 <= value <= 23 else value
    if isinstance(value, str):
        match = _HHMM_RE.fullmatch(value.strip())
        if match:
            return int(match.group(1)) * 60 + int(match.group(2))
    msg = f"invalid time of day {value!r} (write it like 22:00)"
    raise ValueError(msg)


class During(_Model):
    """Local hours in which the rule may fire; outside them its condition counts as clear.

    ``from`` after ``to`` spans midnight (``22:00`` to ``06:00`` is the night).

    Attributes:
        from_: (``from``) start, local ``HH:MM``, included.
        to: end, local ``HH:MM``, excluded.
        utc_offset_h: the local time's offset; None: the rule file's ``utc_offset_h``.
    """

    from_: Annotated[int, BeforeValidator(_hhmm)] = Field(alias="from")
    to: Annotated[int, BeforeValidator(_hhmm)]
    utc_offset_h: float | None = Field(default=None, ge=-14, le=14)

    def contains(self, epoch_s: float, default_offset_h: float) -> bool:
        """Whether an event time (epoch seconds) lies within the hours."""
        offset = default_offset_h if self.utc_offset_h is None else self.utc_offset_h
        minute = int((epoch_s + offset * 3600) // 60) % 1440
        if self.from_ <= self.to:
            return self.from_ <= minute < self.to
        return minute >= self.from_ or minute < self.to


class Selector(_Model):
    """Which samples a rule looks at; every given key must match.

    Attributes:
        kind: a reading kind (``pollution``...) or a stream measurement of
            :data:`INDEX_FIELDS`.
        metric: the reading's metric or the measurement's field; needs ``kind``.
        index: a short name of :data:`INDEX_ALIASES` or ``measurement.field``; sets
            ``kind`` and ``metric`` (give one or the other).
        sensor, gateway, site, area, segment, building, district: subject ids (one or
            a list); a sample matches when it carries one of them.
        subject: the sample must name a subject of this kind (e.g. ``segment``).
        labels: further labels the sample must carry with these values (e.g.
            ``{scope: district}``, ``{kind: pollution}`` for hotspots).
    """

    kind: str | None = None
    metric: str | None = None
    index: str | None = None
    sensor: IdSet | None = None
    gateway: IdSet | None = None
    site: IdSet | None = None
    area: IdSet | None = None
    segment: IdSet | None = None
    building: IdSet | None = None
    district: IdSet | None = None
    subject: SubjectLabel | None = None
    labels: dict[str, str] = {}

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        known = [*(k.value for k in Kind), *INDEX_FIELDS]
        if kind not in known:
            msg = f"unknown kind {kind!r}; known: {', '.join(known)}"
            raise ValueError(msg)
        return kind

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str, info: ValidationInfo) -> str:
        if "kind" not in info.data:
            return metric  # the kind's own error is reported
        kind = info.data["kind"]
        if kind is None:
            msg = "a metric needs a kind (or use index)"
            raise ValueError(msg)
        known = metric_names(kind)
        if metric not in known:
            msg = f"{kind} has no metric {metric!r}; known: {', '.join(known)}"
            raise ValueError(msg)
        return metric

    @field_validator("index")
    @classmethod
    def _known_index(cls, index: str, info: ValidationInfo) -> str:
        if info.data.get("kind") is not None or info.data.get("metric") is not None:
            msg = "give either index or kind and metric"
            raise ValueError(msg)
        if resolve_index(index) is None:
            known = ", ".join(INDEX_ALIASES)
            msg = f"unknown index {index!r}; known: {known}, or measurement.field"
            raise ValueError(msg)
        return index

    @model_validator(mode="after")
    def _resolve_index(self) -> Self:
        if self.index is not None:
            resolved = resolve_index(self.index)
            if resolved is not None:
                kind, metric = resolved
                object.__setattr__(self, "kind", kind)
                object.__setattr__(self, "metric", metric)
        return self

    @property
    def is_reading(self) -> bool:
        """Whether the selected kind is a reading kind (not a stream measurement)."""
        return self.kind is None or self.kind in Kind.__members__.values()

    def ids(self) -> dict[str, frozenset[str]]:
        """The subject-id filters given, as label -> allowed ids."""
        return {
            label: frozenset(values)
            for label in SUBJECT_LABELS
            if (values := getattr(self, label)) is not None
        }


def metric_names(kind: str) -> tuple[str, ...]:
    """The metrics of a reading kind, or the fields of a stream measurement."""
    if kind in INDEX_FIELDS:
        return INDEX_FIELDS[kind]
    return tuple(CATALOGUE[Kind(kind)])


def resolve_index(index: str) -> tuple[str, str] | None:
    """``(kind, metric)`` of an index name, or None if unknown.

    >>> resolve_index("tpi"), resolve_index("scenic.daily_tier"), resolve_index("x")
    (('traffic_index', 'tpi'), ('scenic', 'daily_tier'), None)
    """
    if index in INDEX_ALIASES:
        return INDEX_ALIASES[index]
    measurement, _, field = index.partition(".")
    if field and field in INDEX_FIELDS.get(measurement, ()):
        return measurement, field
    return None


def _labels(labels: dict[str, str]) -> dict[str, str]:
    reserved = sorted(RESERVED_LABELS & set(labels))
    if reserved:
        msg = f"label {reserved[0]!r} is set by the engine; choose another name"
        raise ValueError(msg)
    return labels


_ConditionName = Literal["threshold", "rate_of_change", "anomaly", "absence"]
_CONDITIONS: tuple[_ConditionName, ...] = ("threshold", "rate_of_change", "anomaly", "absence")


class Rule(_Model):
    """One rule: what it selects, when it fires and clears, and what its alert says.

    Attributes:
        id: unique in the rule set; with the subject it makes the alert fingerprint.
        severity: info, warning or critical.
        select: which samples it looks at.
        threshold, rate_of_change, anomaly, absence: the firing condition; exactly one.
        for_: (``for``) how long the condition must hold, in event time, before the
            alert fires (pending until then). Not with ``absence``.
        clear: the comparison that resolves a firing alert (hysteresis), on the
            same quantity as the firing condition; None: the firing condition's
            negation. It must not overlap the firing condition.
        keep_firing_for: how long the clear condition must hold before the alert
            resolves (against flapping).
        stale_after: a pending or firing alert whose subject sends no sample for this
            long resolves (its series stopped, e.g. a site left the hotspot list).
        during: local hours outside which the condition counts as clear.
        labels: added to the alert's labels, for routing and grouping.
        annotations: templates of the alert's texts (``summary``, ``description``,
            ``runbook_url``...).
    """

    id: Identifier
    severity: Severity
    description: str | None = Field(default=None, max_length=4096)
    select: Selector = Selector()
    threshold: Threshold | None = None
    rate_of_change: RateOfChange | None = None
    anomaly: AnomalyCondition | None = None
    absence: Absence | None = None
    for_: Duration = Field(default=timedelta(0), alias="for")
    clear: Comparison | None = None
    keep_firing_for: Duration = timedelta(0)
    stale_after: Duration | None = None
    during: During | None = None
    labels: Annotated[dict[Identifier, str], AfterValidator(_labels)] = {}
    annotations: dict[str, Template] = {}

    @field_validator("threshold", "rate_of_change")
    @classmethod
    def _one_series(cls, value: Comparison, info: ValidationInfo) -> Comparison:
        select = info.data.get("select")
        if select is not None and select.metric is None:
            msg = (
                f"{info.field_name} compares one series: select a metric (kind and metric,"
                " or index)"
            )
            raise ValueError(msg)
        return value

    @field_validator("anomaly")
    @classmethod
    def _scored_kind(cls, value: AnomalyCondition, info: ValidationInfo) -> AnomalyCondition:
        select = info.data.get("select")
        if select is not None and not select.is_reading:
            msg = f"anomaly scores are of readings: select a reading kind, not {select.kind!r}"
            raise ValueError(msg)
        return value

    @field_validator("for_", "keep_firing_for", "clear")
    @classmethod
    def _not_with_absence(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("absence") is not None:
            name = "for" if info.field_name == "for_" else info.field_name
            hint = " (the absence's own for says how long)" if name == "for" else ""
            msg = (
                f"{name} does not apply to an absence rule, which resolves when data returns{hint}"
            )
            raise ValueError(msg)
        return value

    @field_validator("clear")
    @classmethod
    def _clear_apart(cls, clear: Comparison, info: ValidationInfo) -> Comparison:
        fire = _firing(info.data)
        if fire is not None and fire.overlaps(clear):
            msg = (
                f"clear {clear.op.words} {clear.bound:g} overlaps the firing condition"
                f" {fire.op.words} {fire.bound:g}: an alert would fire and clear at once"
            )
            raise ValueError(msg)
        return clear

    @model_validator(mode="after")
    def _one_condition(self) -> Self:
        given = [name for name in _CONDITIONS if getattr(self, name) is not None]
        if len(given) != 1:
            found = f" (found {' and '.join(given)})" if given else ""
            msg = (
                "a rule needs exactly one condition: threshold, rate_of_change, anomaly or"
                f" absence{found}"
            )
            raise ValueError(msg)
        return self

    @property
    def condition(self) -> _ConditionName:
        """Which condition the rule has."""
        return next(name for name in _CONDITIONS if getattr(self, name) is not None)

    @property
    def firing(self) -> Comparison:
        """The firing condition as a comparison (absence: seconds since last seen)."""
        fire = _firing(dict(self))
        if fire is not None:
            return fire
        assert self.absence is not None  # noqa: S101 -- exactly one condition is set
        return Comparison(above=self.absence.for_.total_seconds())

    @property
    def clearing(self) -> Comparison:
        """The clear condition: ``clear``, or the firing condition's negation."""
        return self.clear if self.clear is not None else self.firing.negated()


def _firing(data: Mapping[str, Any]) -> Comparison | None:
    """The firing comparison of a rule's (partly validated) fields, if it has one."""
    for name in ("threshold", "rate_of_change"):
        value = data.get(name)
        if value is not None:
            return Comparison.model_validate({value.op.value: value.bound})
    anomaly = data.get("anomaly")
    if anomaly is not None:
        return anomaly.comparison()  # type: ignore[no-any-return]
    return None


class RuleSet(_Model):
    """A rule file: ``version: 1``, the city's ``utc_offset_h`` and the rules.

    Attributes:
        version: the format version; 1.
        utc_offset_h: the city's local time (hours from UTC) for ``during``.
        rules: the rules, ids unique.
    """

    version: Literal[1]
    utc_offset_h: float = Field(default=8.0, ge=-14, le=14)
    rules: tuple[Rule, ...] = ()

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: tuple[Rule, ...], info: ValidationInfo) -> tuple[Rule, ...]:
        if info.context and info.context.get(SKIP_DUPLICATE_CHECK):
            return rules
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                msg = f"duplicate rule id {rule.id!r}"
                raise ValueError(msg)
            seen.add(rule.id)
        return rules

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id; KeyError if none."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def merged(self, other: RuleSet) -> RuleSet:
        """Both files' rules; each keeps its own file's UTC offset.

        Raises:
            ValueError: a rule id is in both.
        """
        clash = {r.id for r in self.rules} & {r.id for r in other.rules}
        if clash:
            msg = f"rule id {sorted(clash)[0]!r} is defined twice"
            raise ValueError(msg)
        return RuleSet(
            version=1,
            utc_offset_h=self.utc_offset_h,
            rules=(*self.rules, *(_with_offset(r, other.utc_offset_h) for r in other.rules)),
        )


def _with_offset(rule: Rule, utc_offset_h: float) -> Rule:
    """The rule with its ``during`` pinned to an offset, unless it names its own."""
    if rule.during is None or rule.during.utc_offset_h is not None:
        return rule
    during = rule.during.model_copy(update={"utc_offset_h": utc_offset_h})
    return rule.model_copy(update={"during": during})

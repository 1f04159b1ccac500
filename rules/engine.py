r"""Rule evaluation: samples in, alert transitions out; pure, with its state as bytes.

The stream turns what it computes into :class:`Sample`\\ s -- one per metric of a
reading (with the metric's anomaly score when it was scored), one per field of an
index point (``aqi``, ``traffic_index``, ``scenic``, ``energy_use``, ``hotspot``), one
per numeric field of a gateway status -- and hands them to
:meth:`RuleEngine.evaluate`, which returns the :class:`~telemetry.Alert`\\ s that
changed state: a rule started firing on a subject, or resolved. Every few seconds of
event time the worker calls :meth:`RuleEngine.check_absence` with the watermark: it
fires absence rules (a gateway or sensor gone quiet) and resolves alerts that time
alone resolves (``keep_firing_for`` elapsed, ``stale_after``).

Lifecycle
---------
Each rule and subject has one state, identified by the alert's fingerprint (rule id
and subject labels, :func:`telemetry.alert_fingerprint`)::

    inactive --condition holds--> pending --held for `for`--> firing
       ^                            |                           |
       +-----condition fails--------+    clear held for `keep_firing_for`
       +------------------------------------ resolved <---------+

Everything runs on event time, never on the clock. A sample no newer than the last
one its state evaluated is ignored (a replay never fires twice), except that a sample
at the *same* time that is *worse* (higher for a rule that fires on high values)
may escalate -- that is how the several metrics of one reading, or the two
directions of a road segment, meet one rule without flapping; within one
:meth:`~RuleEngine.evaluate` call the samples of a state at one time are merged to
the worst first. Rolling aggregates and rates keep a bounded window per state.

State
-----
Each state is one key, ``rules/<district>/<fingerprint>`` (``-`` for a subject without
a district), so the worker keeps it in the changelog partition of its district
(:meth:`RuleEngine.district_of`), like the pipeline's keys. After a batch,
:meth:`RuleEngine.take_touched` gives the keys that changed; :meth:`~RuleEngine.snapshot`
and :meth:`~RuleEngine.restore` move a key's state as bytes.

>>> from datetime import UTC, datetime, timedelta
>>> from rules.load import parse_rules
>>> rules = parse_rules('''
... version: 1
... rules:
...   - id: aqi-heavy
...     severity: warning
...     select: {index: aqi}
...     threshold: {at_least: 201}
...     clear: {below: 151}
...     annotations: {summary: "Heavy pollution (重度污染) at {site}: AQI {value}"}
... ''')
>>> engine = RuleEngine(rules)
>>> t0 = datetime(2024, 1, 8, 9, tzinfo=UTC)
>>> def aqi(hour: int, value: float) -> Sample:
...     return Sample("aqi", "aqi", value, t0 + timedelta(hours=hour),
...                   site="st-pier", district="lakeside")
>>> [a.state.value for a in engine.evaluate([aqi(0, 180), aqi(1, 230)])]
['firing']
>>> engine.evaluate([aqi(1, 230), aqi(2, 170)])  # a replay, then the hysteresis band
[]
>>> [alert] = engine.evaluate([aqi(3, 140)])
>>> alert.state.value, alert.starts_at.hour, alert.ends_at.hour, alert.value
('resolved', 10, 12, 140.0)
>>> sorted(engine.take_touched())
['rules/lakeside/...']
"""

from __future__ import annotations

import json
import math
import operator
import string
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, cast

from pydantic import ValidationError

from rules.model import (
    SUBJECT_LABELS,
    Aggregate,
    Comparison,
    Rule,
    RuleSet,
    SubjectLabel,
    format_duration,
)
from telemetry.catalogue import Kind
from telemetry.models import Alert, AlertState, AlertSubject, alert_fingerprint

if TYPE_CHECKING:
    from telemetry.registry import Registry

__all__ = ["EngineStats", "RuleEngine", "Sample", "state_key"]

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_NO_DISTRICT: Final = "-"
_STATE_VERSION: Final = 1
_INACTIVE, _PENDING, _FIRING = 0, 1, 2
_PHASES: Final = ("inactive", "pending", "firing")
_KINDS: Final = frozenset(k.value for k in Kind)

# The labels of an absence subject: its `per` id and its district (stable, and from the
# registry too, so a seeded subject and a seen one are the same state).
_ABSENCE_LABELS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "sensor": ("sensor", "district"),
        "gateway": ("gateway", "district"),
        "site": ("site", "district"),
        "area": ("area", "district"),
        "segment": ("segment", "district"),
        "building": ("building", "district"),
        "district": ("district",),
    }
)


@dataclass(slots=True)
class Sample:
    """One value the stream computed, with the subject it is about.

    Attributes:
        kind: a reading kind (``pollution``...) or a stream measurement
            (``aqi``, ``traffic_index``, ``scenic``, ``energy_use``, ``hotspot``,
            ``gateway``).
        metric: the reading's metric, or the measurement's field (``tpi``...).
        value: the value.
        ts: event time, timezone-aware (UTC).
        sensor, gateway, site, area, segment, building, district: the subject's ids,
            as far as known; they make the alert's subject (and fingerprint), so give
            the same ones for the same series every time.
        labels: further tags of the series: ``scope``, ``direction``, ``road_class``,
            a hotspot's ``kind``...
        score: the metric's calibrated anomaly score, when it was scored.
        detector: the detector behind the score.
        explanation: the detector's explanation of the score.
        site_name: a display name of the subject's place; from the registry if None.

    >>> s = Sample("pollution", "pm2_5", 35.0, datetime(2024, 1, 8, tzinfo=UTC), sensor="aq-1")
    >>> s.subject_ids()
    ('aq-1', None, None, None, None, None, None)
    """

    kind: str
    metric: str
    value: float
    ts: datetime
    sensor: str | None = None
    gateway: str | None = None
    site: str | None = None
    area: str | None = None
    segment: str | None = None
    building: str | None = None
    district: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    score: float | None = None
    detector: str | None = None
    explanation: str | None = None
    site_name: str | None = None

    def subject_ids(self) -> tuple[str | None, ...]:
        """The subject ids in :data:`rules.model.SUBJECT_LABELS` order."""
        return (
            self.sensor,
            self.gateway,
            self.site,
            self.area,
            self.segment,
            self.building,
            self.district,
        )


@dataclass(slots=True)
class EngineStats:
    """Running counts, for logs and metrics.

    Attributes:
        samples: samples evaluated.
        matched: (sample, rule) pairs evaluated.
        stale: pairs ignored because their state had already evaluated a newer or
            equal (and no better) sample: replays and out-of-order samples.
        unusable: pairs whose subject cannot make an alert (no id, or an invalid one).
        fired: firing transitions.
        resolved: resolved transitions.
        orphaned: restored states of rules no longer in the rule set (dropped).
    """

    samples: int = 0
    matched: int = 0
    stale: int = 0
    unusable: int = 0
    fired: int = 0
    resolved: int = 0
    orphaned: int = 0


def state_key(district: str | None, fingerprint: str) -> str:
    """The key a state is kept under: ``rules/<district>/<fingerprint>``.

    >>> state_key("lakeside", "0123456789abcdef"), state_key(None, "0123456789abcdef")
    ('rules/lakeside/0123456789abcdef', 'rules/-/0123456789abcdef')
    """
    return f"rules/{district or _NO_DISTRICT}/{fingerprint}"


# ---------------------------------------------------------------- compiled rules

_COMPARE: Final[Mapping[str, Callable[[float, float], bool]]] = MappingProxyType(
    {"above": operator.gt, "at_least": operator.ge, "below": operator.lt, "at_most": operator.le}
)


def _test(comparison: Comparison) -> Callable[[float], bool]:
    compare, bound = _COMPARE[comparison.op.value], comparison.bound
    return lambda x: compare(x, bound)


def _percentile(q: float) -> Callable[[list[float]], float]:
    def pick(values: list[float]) -> float:
        ordered = sorted(values)
        # nearest rank: the smallest value with at least q of the values at or below it
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return pick


_AGGREGATES: Final[Mapping[Aggregate, Callable[[list[float]], float]]] = MappingProxyType(
    {
        Aggregate.MEAN: lambda v: math.fsum(v) / len(v),
        Aggregate.MIN: min,
        Aggregate.MAX: max,
        Aggregate.P50: _percentile(0.50),
        Aggregate.P90: _percentile(0.90),
        Aggregate.P95: _percentile(0.95),
        Aggregate.P99: _percentile(0.99),
    }
)


class _Compiled:
    """A rule made ready for the hot path."""

    __slots__ = (
        "absence_keep",
        "absence_per",
        "aggregate",
        "clears",
        "detectors",
        "during",
        "fires",
        "for_s",
        "ids",
        "index",
        "keep_s",
        "labels",
        "max_samples",
        "min_samples",
        "rate_per_s",
        "rule",
        "scored",
        "stale_s",
        "subject_pos",
        "threshold",
        "utc_offset_h",
        "window_s",
        "worse",
    )

    def __init__(self, rule: Rule, index: int, utc_offset_h: float, max_samples: int) -> None:
        self.rule = rule
        self.index = index
        self.utc_offset_h = utc_offset_h
        self.max_samples = max_samples
        select = rule.select
        ids = select.ids()
        self.ids = tuple((SUBJECT_LABELS.index(label), allowed) for label, allowed in ids.items())
        self.subject_pos = (
            None if select.subject is None else SUBJECT_LABELS.index(select.subject.value)
        )
        self.labels = tuple(select.labels.items())
        self.for_s = rule.for_.total_seconds()
        self.keep_s = rule.keep_firing_for.total_seconds()
        self.stale_s = None if rule.stale_after is None else rule.stale_after.total_seconds()
        self.during = rule.during
        self.scored = rule.anomaly is not None
        self.detectors = (
            None
            if rule.anomaly is None or rule.anomaly.detector is None
            else frozenset(rule.anomaly.detector)
        )
        self.absence_per: SubjectLabel | None = None if rule.absence is None else rule.absence.per
        self.absence_keep: frozenset[int] = frozenset(
            ()
            if self.absence_per is None
            else (SUBJECT_LABELS.index(n) for n in _ABSENCE_LABELS[self.absence_per])
        )
        self.aggregate: Callable[[list[float]], float] | None = None
        self.window_s: float | None = None
        self.min_samples = 1
        self.rate_per_s: float | None = None
        if rule.threshold is not None and rule.threshold.aggregate is not None:
            assert rule.threshold.window is not None  # noqa: S101 -- validated
            self.aggregate = _AGGREGATES[rule.threshold.aggregate]
            self.window_s = rule.threshold.window.total_seconds()
            self.min_samples = rule.threshold.min_samples
        if rule.rate_of_change is not None:
            self.window_s = rule.rate_of_change.window.total_seconds()
            self.rate_per_s = rule.rate_of_change.per_s
        fire = rule.firing
        self.threshold = fire.bound
        self.fires = _test(fire)
        self.clears = _test(rule.clearing)
        self.worse: Callable[[float, float], bool] = operator.gt if fire.op.upward else operator.lt

    def selects_detector(self, detector: str | None) -> bool:
        """Whether the rule takes scores of this detector."""
        return self.detectors is None or detector in self.detectors

    def may_take(self, detector: str | None) -> bool:
        """Whether the rule, not an absence rule, may look at a sample scored by ``detector``.

        ``detector`` is None for a sample without a score, which a rule on scores never
        takes.
        """
        if self.absence_per is not None:
            return False
        return not self.scored or (detector is not None and self.selects_detector(detector))

    def selects(self, sample: Sample, ids: tuple[str | None, ...]) -> bool:
        """Whether the rule looks at this sample (kind and metric already matched)."""
        for position, allowed in self.ids:
            if ids[position] not in allowed:
                return False
        if self.subject_pos is not None and ids[self.subject_pos] is None:
            return False
        if self.labels:
            labels = sample.labels
            for name, value in self.labels:
                if labels.get(name) != value:
                    return False
        if self.scored:
            if sample.score is None:
                return False
            if not self.selects_detector(sample.detector):
                return False
        return True


# ---------------------------------------------------------------- states


class _State:
    """One rule on one subject: its phase, times, window and what the alert needs."""

    __slots__ = (
        "clear_since",
        "ctx",
        "district",
        "fingerprint",
        "key",
        "last_raw",
        "last_ts",
        "phase",
        "rule",
        "sample",
        "since",
        "started",
        "subject",
        "value",
        "window",
    )

    def __init__(self, rule: _Compiled, subject: AlertSubject, district: str | None) -> None:
        self.rule = rule
        self.subject = subject
        self.district = district
        self.fingerprint = alert_fingerprint(rule.rule.id, subject)
        self.key = state_key(district, self.fingerprint)
        self.phase = _INACTIVE
        self.since: float | None = None
        """Pending and firing: when the condition began to hold. Absence: last seen."""
        self.clear_since: float | None = None
        self.started: float | None = None
        """Absence, firing: when the subject became overdue (the alert's start)."""
        self.last_ts = -math.inf
        self.last_raw: float | None = None
        self.value: float | None = None
        self.window: deque[tuple[float, float]] | None = (
            deque() if rule.window_s is not None else None
        )
        self.sample: Sample | None = None
        """The latest sample evaluated (for the alert's texts)."""
        self.ctx: dict[str, object] = {}
        """The alert's texts' context when no sample is at hand (restored, absence)."""

    def subject_ids(self) -> tuple[str | None, ...]:
        """The subject's ids in :data:`~rules.model.SUBJECT_LABELS` order."""
        subject = self.subject
        return (
            subject.sensor_id,
            subject.gateway_id,
            subject.site_id,
            subject.area_id,
            subject.segment_id,
            subject.building_id,
            subject.district_id,
        )

    def to_json(self, ctx: dict[str, object]) -> dict[str, object]:
        finite = None if self.last_ts == -math.inf else self.last_ts
        return {
            "v": _STATE_VERSION,
            "rule": self.rule.rule.id,
            "subject": self.subject.labels(),
            "district": self.district,
            "phase": _PHASES[self.phase],
            "since": self.since,
            "clear_since": self.clear_since,
            "started": self.started,
            "last_ts": finite,
            "last_raw": self.last_raw,
            "value": self.value,
            "window": None if self.window is None else [list(p) for p in self.window],
            "ctx": ctx,
        }


def _floats(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    msg = f"{name} is {value!r}, not a finite number"
    raise ValueError(msg)


# ---------------------------------------------------------------- the engine


def _dormant(state: _State | None) -> bool:
    """No state, or an inactive one: a value that does not fire leaves it as it is."""
    return state is None or state.phase == _INACTIVE


class RuleEngine:
    """Evaluates a rule set over samples; see the module docstring.

    Args:
        rules: the rule set (or a list of rules, with an 8 h UTC offset for ``during``).
        registry: the site registry, optional: it fills a sample's missing district,
            gives places' display names (``{site_name}``) and lists the sensors and
            gateways an absence rule expects (so one that never reports after a
            restart is found too).
        max_window_samples: most values one state's window keeps (the oldest go first).

    Not thread-safe: one engine per worker, fed in order.
    """

    def __init__(
        self,
        rules: RuleSet | Sequence[Rule],
        registry: Registry | None = None,
        *,
        max_window_samples: int = 10_000,
    ) -> None:
        if not isinstance(rules, RuleSet):
            rules = RuleSet(version=1, rules=tuple(rules))
        self.rule_set = rules
        self.registry = registry
        self.stats = EngineStats()
        self._rules = [
            _Compiled(rule, i, rules.utc_offset_h, max_window_samples)
            for i, rule in enumerate(rules.rules)
        ]
        self._by_id = {c.rule.id: c for c in self._rules}
        # rules by (kind, metric); None stands for "any"
        self._index: dict[tuple[str | None, str | None], list[_Compiled]] = {}
        for compiled in self._rules:
            select = compiled.rule.select
            self._index.setdefault((select.kind, select.metric), []).append(compiled)
        self._candidates: dict[tuple[str, str], tuple[_Compiled, ...]] = {}
        self._wanted: dict[tuple[str, str, str | None], bool] = {}
        self._watchers: dict[tuple[str, str], frozenset[int]] = {}
        self._watch_keep: dict[tuple[str, str], Callable[[tuple[str | None, ...]], object]] = {}
        self._stir_tests: dict[
            tuple[str, str, str | None], tuple[tuple[bool, Callable[[float], bool]], ...] | None
        ] = {}
        self._of_sensor: dict[str, dict[str, _State]] = {}  # a sensor's states, by key
        self._states: dict[tuple[int, tuple[str | None, ...]], _State] = {}
        self._absence_slots: dict[
            tuple[int, tuple[str | None, ...], str | None],
            tuple[int, tuple[str | None, ...]] | None,
        ] = {}
        self._by_key: dict[str, _State] = {}
        self._absent: dict[str, _State] = {}  # absence states by key
        self._timed: dict[str, _State] = {}  # states that time alone may resolve
        self._touched: set[str] = set()
        self._names: dict[tuple[int, str], str] = {}
        self._district_of: dict[tuple[int, str], str] = {}
        self._sensor_site: dict[str, str] = {}
        self._gateway_site: dict[str, str] = {}
        # per district, its sensors' and gateways' (kind, subject ids), to seed absence
        self._members: dict[str, list[tuple[str, tuple[str | None, ...]]]] = {}
        if registry is not None:
            self._learn_registry(registry)
        self._seeded: set[str | None] = set()  # districts seeded; None: all of them

    # ------------------------------------------------------------ registry
    def _learn_registry(self, registry: Registry) -> None:
        site_district = {s.id: s.district for s in registry.sites}
        pos = SUBJECT_LABELS.index
        for site in registry.sites:
            self._district_of[pos("site"), site.id] = site.district
            self._names[pos("site"), site.id] = _display(site.name, site.name_zh)
        for gateway in registry.gateways:
            self._district_of[pos("gateway"), gateway.id] = site_district[gateway.site]
        for sensor in registry.sensors:
            self._district_of[pos("sensor"), sensor.id] = site_district[sensor.site]
        for area in registry.scenic_areas:
            self._district_of[pos("area"), area.id] = area.district
            self._names[pos("area"), area.id] = _display(area.name, area.name_zh)
        for segment in registry.road_segments:
            self._district_of[pos("segment"), segment.id] = segment.district
            self._names[pos("segment"), segment.id] = _display(segment.name, segment.name_zh)
        for building in registry.buildings:
            self._district_of[pos("building"), building.id] = site_district[building.site]
            self._names[pos("building"), building.id] = _display(building.name, building.name_zh)
        for district in registry.districts:
            self._names[pos("district"), district.id] = _display(district.name, district.name_zh)
        self._sensor_site = {s.id: s.site for s in registry.sensors}
        self._gateway_site = {g.id: g.site for g in registry.gateways}
        for s in registry.sensors:
            where = site_district[s.site]
            of_sensor = (s.id, s.gateway, s.site, s.area, s.segment, s.building, where)
            self._members.setdefault(where, []).append((s.kind.value, of_sensor))
        for g in registry.gateways:
            where = site_district[g.site]
            of_gateway = (None, g.id, g.site, None, None, None, where)
            self._members.setdefault(where, []).append(("gateway", of_gateway))

    def _district(self, ids: tuple[str | None, ...]) -> str | None:
        district = ids[6]
        if district is not None or not self._district_of:
            return district
        for position, value in enumerate(ids[:6]):
            if value is not None:
                found = self._district_of.get((position, value))
                if found is not None:
                    return found
        return None

    def _place_name(self, sample_name: str | None, ids: Sequence[str | None]) -> str | None:
        if sample_name is not None:
            return sample_name
        names = self._names
        if names:
            sensor, gateway = ids[0], ids[1]
            site = ids[2]
            if site is None and sensor is not None:
                site = self._sensor_site.get(sensor)
            if site is None and gateway is not None:
                site = self._gateway_site.get(gateway)
            for position, value in ((5, ids[5]), (4, ids[4]), (3, ids[3]), (2, site)):
                if value is not None and (position, value) in names:
                    return names[position, value]
            if ids[6] is not None and (6, ids[6]) in names:
                return names[6, ids[6]]
        return next(
            (v for v in (ids[2], ids[3], ids[4], ids[5], ids[1], ids[0], ids[6]) if v), None
        )

    # ------------------------------------------------------------ evaluation
    def _rules_for(self, kind: str, metric: str) -> tuple[_Compiled, ...]:
        found = self._candidates.get((kind, metric))
        if found is None:
            index = self._index
            found = tuple(
                sorted(
                    [
                        *index.get((kind, metric), ()),
                        *index.get((kind, None), ()),
                        *(
                            index.get((None, None), ())
                            if kind in _KINDS or kind == "gateway"
                            else ()
                        ),
                    ],
                    key=lambda c: c.index,
                )
            )
            self._candidates[kind, metric] = found
        return found

    def selects(self, kind: str, metric: str) -> bool:
        """Whether any rule looks at samples of this kind and metric (skip the rest)."""
        return bool(self._rules_for(kind, metric))

    def wants(self, kind: str, metric: str, detector: str | None) -> bool:
        """Whether a rule other than an absence rule may look at such a sample.

        ``detector`` is the detector behind the sample's score (None: not scored). A
        rule of this kind and metric looks at it unless it asks for a score the
        sample has not, or for other detectors. Together with :meth:`watchers`, a
        caller with many samples builds only the ones that can matter.
        """
        key = (kind, metric, detector)
        found = self._wanted.get(key)
        if found is None:
            found = self._wanted[key] = any(
                c.may_take(detector) for c in self._rules_for(kind, metric)
            )
        return found

    def watchers(self, kind: str, metric: str) -> frozenset[int]:
        """The absence rules (by position) that look at samples of this kind and metric.

        An absence rule only notes that a subject reported at a time, so one sample
        per subject and time is enough for it: of a reading's metrics, one that each
        of these rules looks at.
        """
        found = self._watchers.get((kind, metric))
        if found is None:
            found = self._watchers[kind, metric] = frozenset(
                c.index for c in self._rules_for(kind, metric) if c.absence_per is not None
            )
        return found

    def watched(self, kind: str, metric: str, ids: tuple[str | None, ...]) -> object:
        """What the :meth:`watchers` of a sample tell apart: its ids that they keep.

        Two samples of a kind and metric with the same reach the same absence states,
        which only keep the newest time: of many such samples, the earliest and the
        latest are enough. Gateway-offline keeps the gateway (and district), so the
        readings of all of a gateway's sensors are one subject to it.

        >>> from rules.load import load_default_rules
        >>> engine = RuleEngine(load_default_rules())
        >>> engine.watched("pollution", "pm2_5", ("aq-1", "gw-1", "st-1", None, None, None, "d"))
        ('gw-1', 'd')
        """
        kept = self._watch_keep.get((kind, metric))
        if kept is None:
            positions = sorted(
                set[int]().union(
                    *(c.absence_keep for c in self._rules_for(kind, metric) if c.absence_per)
                )
            )
            kept = self._watch_keep[kind, metric] = (
                operator.itemgetter(*positions) if positions else (lambda _: None)
            )
        return kept(ids)

    def stirs(
        self, kind: str, metric: str, detector: str | None, value: float, score: float | None
    ) -> bool:
        """Whether a reading's sample could move a rule whose state of its sensor is idle.

        A sample of a :meth:`wanted <wants>` kind and metric is quiet if every rule that
        may look at it keeps no window and does not fire on it (on ``value``, or on
        ``score`` for a rule on anomaly scores). A quiet sample changes nothing unless
        its sensor has a state that is pending or firing (:meth:`awake`), or another
        sample of the same :meth:`evaluate` call stirs that state: so a caller holds the
        quiet samples of a sensor back, and hands them over once one of its samples
        stirs.
        """
        key = (kind, metric, detector)
        tests = self._stir_tests.get(key, ())
        if tests == ():
            tests = self._stir_tests[key] = self._stir_tests_of(kind, metric, detector)
        if tests is None:
            return True
        for scored, fires in tests:
            raw = score if scored else value
            if raw is not None and fires(raw):
                return True
        return False

    def _stir_tests_of(
        self, kind: str, metric: str, detector: str | None
    ) -> tuple[tuple[bool, Callable[[float], bool]], ...] | None:
        """The fire tests of :meth:`stirs`; None if a rule keeps a window (every sample stirs)."""
        tests = []
        for c in self._rules_for(kind, metric):
            if not c.may_take(detector):
                continue
            if c.window_s is not None:
                return None
            tests.append((c.scored, c.fires))
        return tuple(tests)

    def awake(self, sensor_id: str) -> bool:
        """Whether a rule's state of this sensor is pending or firing (see :meth:`stirs`)."""
        states = self._of_sensor.get(sensor_id)
        return states is not None and any(s.phase != _INACTIVE for s in states.values())

    def _hold(self, state: _State) -> None:
        """Index a new state by its key (and by its sensor, if it has one)."""
        old = self._by_key.pop(state.key, None)
        if old is not None:
            self._drop(old)
        self._states[state.rule.index, state.subject_ids()] = state
        self._by_key[state.key] = state
        if state.rule.absence_per is not None:
            self._absent[state.key] = state
        elif state.subject.sensor_id is not None:
            self._of_sensor.setdefault(state.subject.sensor_id, {})[state.key] = state

    def _drop(self, state: _State) -> None:
        """Forget a state held by :meth:`_hold`."""
        self._by_key.pop(state.key, None)
        self._states.pop((state.rule.index, state.subject_ids()), None)
        self._absent.pop(state.key, None)
        self._timed.pop(state.key, None)
        sensor = state.subject.sensor_id
        if sensor is not None and sensor in self._of_sensor:
            self._of_sensor[sensor].pop(state.key, None)

    def evaluate(self, samples: Iterable[Sample]) -> list[Alert]:
        """Evaluate samples; return the alerts that fired or resolved, in order.

        Samples may come in any order; each state takes only samples newer than the
        last one it evaluated (a sample at the same time only when worse). A rule
        without kind (an absence rule over everything) sees readings and gateway
        status samples, not index samples.
        """
        # pass 1: each state's samples, merged per event time to the worst
        pending: dict[tuple[_State, float], tuple[float, Sample]] = {}
        quiet: list[tuple[_Compiled, Sample, tuple[str | None, ...], str | None, float]] = []
        for sample in samples:
            self.stats.samples += 1
            rules = self._rules_for(sample.kind, sample.metric)
            if not rules:
                continue
            ids = sample.subject_ids()
            district: str | bool | None = False
            for compiled in rules:
                if not compiled.selects(sample, ids):
                    continue
                self.stats.matched += 1
                if district is False:
                    district = self._district(ids)
                where = cast("str | None", district)
                raw = sample.score if compiled.scored else sample.value
                assert raw is not None  # noqa: S101 -- selects() checked the score
                if (
                    compiled.window_s is None
                    and compiled.absence_per is None
                    and not compiled.fires(raw)
                    and _dormant(self._existing(compiled, ids, where))
                ):
                    # The hot path: a value that does not fire, for a subject neither
                    # pending nor firing, changes nothing (an inactive state without a
                    # window is not even stored) -- unless another sample of this batch
                    # fires for it: it waits for the end of the pass.
                    quiet.append((compiled, sample, ids, where, raw))
                    continue
                self._merge(pending, compiled, sample, ids, where, raw)
        merged = {state for state, _ in pending}
        for compiled, sample, ids, where, raw in quiet:
            if self._existing(compiled, ids, where) in merged:
                self._merge(pending, compiled, sample, ids, where, raw)
        # pass 2: the state machines, per state in time order
        alerts: list[Alert] = []
        for (state, ts), (raw, sample) in sorted(pending.items(), key=lambda item: item[0][1]):
            if state.rule.absence_per is not None:
                self._seen(state, ts, sample, alerts)
            else:
                self._step(state, ts, raw, sample, alerts)
        return alerts

    def _existing(
        self, compiled: _Compiled, ids: tuple[str | None, ...], district: str | None
    ) -> _State | None:
        """A rule's state of a sample's subject, if there is one."""
        slot = self._slot(compiled, ids, district)
        return None if slot is None else self._states.get(slot)

    def _merge(
        self,
        pending: dict[tuple[_State, float], tuple[float, Sample]],
        compiled: _Compiled,
        sample: Sample,
        ids: tuple[str | None, ...],
        district: str | None,
        raw: float,
    ) -> None:
        """Add a sample to its state's samples of pass 1, the worst one per event time."""
        state = self._state(compiled, sample, ids, district)
        if state is None:
            return
        ts = sample.ts.timestamp()
        if compiled.absence_per is not None:
            raw = ts
        slot = (state, ts)
        held = pending.get(slot)
        if held is None or compiled.worse(raw, held[0]):
            pending[slot] = (raw, sample)

    def _slot(
        self, compiled: _Compiled, ids: tuple[str | None, ...], district: str | None
    ) -> tuple[int, tuple[str | None, ...]] | None:
        """Where a rule's state of a sample's subject is kept; None if it has none.

        An absence rule keeps one state per subject of its ``per`` label (a sample
        without that id has none); the reduction is remembered, since every sample of
        a sensor asks it again.
        """
        if compiled.absence_per is None:
            if district is not None and ids[6] is None:
                ids = (*ids[:6], district)
            return (compiled.index, ids)
        memo = (compiled.index, ids, district)
        try:
            return self._absence_slots[memo]
        except KeyError:
            pass
        slot: tuple[int, tuple[str | None, ...]] | None = None
        if ids[SUBJECT_LABELS.index(compiled.absence_per.value)] is not None:
            keep = compiled.absence_keep
            reduced = tuple(v if i in keep else None for i, v in enumerate(ids))
            if district is not None and reduced[6] is None:
                reduced = (*reduced[:6], district)
            slot = (compiled.index, reduced)
        self._absence_slots[memo] = slot
        return slot

    def _state(
        self,
        compiled: _Compiled,
        sample: Sample,
        ids: tuple[str | None, ...],
        district: str | None,
    ) -> _State | None:
        slot = self._slot(compiled, ids, district)
        if slot is None:
            return None
        state = self._states.get(slot)
        if state is None:
            try:
                subject = AlertSubject(
                    **{f"{label}_id": v for label, v in zip(SUBJECT_LABELS, slot[1], strict=True)}
                )
            except ValidationError:
                self.stats.unusable += 1
                return None
            state = _State(compiled, subject, district)
            self._hold(state)
        return state

    def _step(
        self, state: _State, ts: float, raw: float, sample: Sample, alerts: list[Alert]
    ) -> None:
        """One state's transition on one (merged) sample."""
        rule = state.rule
        escalate_only = False
        if ts <= state.last_ts:
            if ts < state.last_ts or state.last_raw is None or not rule.worse(raw, state.last_raw):
                self.stats.stale += 1
                return
            escalate_only = True
        window = state.window
        if window is not None:
            if escalate_only and window and window[-1][0] == ts:
                window[-1] = (ts, raw)
            else:
                window.append((ts, raw))
            assert rule.window_s is not None  # noqa: S101 -- a window has a length
            horizon = ts - rule.window_s
            # the window is (ts - window, ts]: a value exactly `window` old has left it
            while window and (window[0][0] <= horizon or len(window) > rule.max_samples):
                window.popleft()
        state.last_ts = ts
        state.last_raw = raw
        phase = state.phase
        if window is not None or phase != _INACTIVE:
            # A window, or a pending or firing state, is worth keeping. An inactive
            # state without a window that stays inactive is not stored: restored
            # empty, it would make the same decisions.
            self._touched.add(state.key)
        x = self._quantity(rule, window, raw)
        if x is None:
            return
        state.value = x
        state.sample = sample
        in_hours = rule.during is None or rule.during.contains(ts, rule.utc_offset_h)
        fires = in_hours and rule.fires(x)
        clears = not in_hours or rule.clears(x)
        if phase == _INACTIVE:
            if fires:
                state.since = ts
                state.phase = _PENDING
                self._pending(state, ts, alerts)
        elif phase == _PENDING:
            if fires:
                self._pending(state, ts, alerts)
            elif not escalate_only:
                state.phase = _INACTIVE
                state.since = None
                self._untime(state)
        elif fires or not clears:
            state.clear_since = None
        elif not escalate_only:
            if state.clear_since is None:
                state.clear_since = ts
            if ts - state.clear_since >= rule.keep_s:
                self._resolve(state, state.clear_since, alerts)
        if state.phase != _INACTIVE:
            self._touched.add(state.key)
        if state.phase != _INACTIVE and (rule.stale_s is not None or state.clear_since is not None):
            self._timed[state.key] = state
        else:
            self._untime(state)

    @staticmethod
    def _quantity(
        rule: _Compiled, window: deque[tuple[float, float]] | None, raw: float
    ) -> float | None:
        """What the condition compares: the value, an aggregate or a rate (None: not yet)."""
        if window is None:
            return raw
        if rule.aggregate is not None:
            if len(window) < rule.min_samples:
                return None
            return rule.aggregate([v for _, v in window])
        assert rule.rate_per_s is not None  # noqa: S101 -- a window is an aggregate's or a rate's
        if len(window) < 2:
            return None
        (t0, v0), (t1, v1) = window[0], window[-1]
        if t1 <= t0:
            return None
        return (v1 - v0) / (t1 - t0) * rule.rate_per_s

    def _pending(self, state: _State, ts: float, alerts: list[Alert]) -> None:
        assert state.since is not None  # noqa: S101 -- pending has a start
        if ts - state.since >= state.rule.for_s:
            state.phase = _FIRING
            state.clear_since = None
            self.stats.fired += 1
            alerts.append(self._alert(state, AlertState.FIRING, None))

    def _resolve(self, state: _State, ends: float, alerts: list[Alert]) -> None:
        self.stats.resolved += 1
        alerts.append(self._alert(state, AlertState.RESOLVED, ends))
        state.phase = _INACTIVE
        state.since = None
        state.clear_since = None
        self._touched.add(state.key)
        self._untime(state)

    def _untime(self, state: _State) -> None:
        self._timed.pop(state.key, None)

    # ------------------------------------------------------------ absence
    def _seen(self, state: _State, ts: float, sample: Sample, alerts: list[Alert]) -> None:
        """A sample of an absence rule's subject: it reported at ``ts``."""
        if state.since is not None and ts <= state.since:
            self.stats.stale += 1
            return
        state.since = ts
        state.sample = sample
        self._touched.add(state.key)
        if state.phase == _FIRING:
            self._resolve(state, ts, alerts)
            state.since = ts
            state.started = None

    def check_absence(self, now: datetime | Mapping[str, datetime]) -> list[Alert]:
        """Fire absence rules and resolve what time alone resolves, at event time ``now``.

        Call it with the watermark every few seconds or minutes of event time: one
        time for every subject, or each district's own (a mapping), when districts
        keep their own event time; then the subjects of districts not in it are left
        alone. An absence rule fires for a subject whose last sample is more than its
        ``for`` before ``now``; with a registry, an expected sensor or gateway never
        seen is counted from the first call that names its district. A firing alert
        resolves once its clear condition has held ``keep_firing_for`` by ``now``,
        and a pending or firing alert of a rule with ``stale_after`` resolves when its
        subject has sent nothing for that long.
        """
        if isinstance(now, datetime):
            t_all = now.timestamp()
            if None not in self._seeded:
                self._seeded.add(None)
                self._seed(t_all)

            def time_of(state: _State) -> float:
                return t_all

        else:
            marks = {district: at.timestamp() for district, at in now.items()}
            for district, t in marks.items():
                if district not in self._seeded and None not in self._seeded:
                    self._seeded.add(district)
                    self._seed(t, district)

            def time_of(state: _State) -> float:  # NaN: a district another worker watches
                return marks.get(state.district or "", math.nan)

        alerts: list[Alert] = []
        for state in self._absent.values():
            if state.phase == _FIRING or state.since is None:
                continue
            t = time_of(state)
            if math.isnan(t):
                continue
            assert state.rule.rule.absence is not None  # noqa: S101
            limit = state.rule.rule.absence.for_.total_seconds()
            if t - state.since > limit:
                state.phase = _FIRING
                state.started = state.since + limit
                state.value = t - state.since
                last = state.sample
                state.ctx = {
                    "last_seen": _iso(state.since),
                    "site_name": self._place_name(
                        None if last is None else last.site_name,
                        state.subject_ids() if last is None else last.subject_ids(),
                    ),
                }
                self._touched.add(state.key)
                self.stats.fired += 1
                alerts.append(self._alert(state, AlertState.FIRING, None))
        for state in list(self._timed.values()):
            rule = state.rule
            t = time_of(state)
            if math.isnan(t):
                continue
            if state.clear_since is not None and t - state.clear_since >= rule.keep_s:
                self._resolve(state, state.clear_since, alerts)
            elif rule.stale_s is not None and t - state.last_ts >= rule.stale_s:
                self._touched.add(state.key)
                if state.phase == _FIRING:
                    self._resolve(state, state.last_ts + rule.stale_s, alerts)
                else:
                    state.phase, state.since = _INACTIVE, None
                    self._untime(state)
        return alerts

    def _seed(self, t: float, district: str | None = None) -> None:
        """Absence states for the registry's sensors and gateways (of ``district``), seen ``t``."""
        if district is None:
            members = [m for ms in self._members.values() for m in ms]
        else:
            members = self._members.get(district, [])
        for compiled in self._rules:
            per = compiled.absence_per
            if per not in (SubjectLabel.SENSOR, SubjectLabel.GATEWAY):
                continue
            want = compiled.rule.select.kind
            for kind, ids in members:
                if (kind == "gateway") == (per is SubjectLabel.GATEWAY) and want in (None, kind):
                    self._seed_one(compiled, ids, t, kind)

    def _seed_one(
        self, compiled: _Compiled, ids: tuple[str | None, ...], t: float, kind: str
    ) -> None:
        sensor, gateway, site, area, segment, building, district = ids
        at = datetime.fromtimestamp(t, UTC)
        sample = Sample(kind, "", 0.0, at, sensor, gateway, site, area, segment, building, district)
        if not compiled.selects(sample, ids):
            return
        state = self._state(compiled, sample, ids, ids[6])
        if state is not None and state.since is None:
            state.since = t
            self._touched.add(state.key)

    # ------------------------------------------------------------ alerts
    def _alert(self, state: _State, kind: AlertState, ends: float | None) -> Alert:
        rule = state.rule.rule
        start = state.started if state.rule.absence_per is not None else state.since
        assert start is not None  # noqa: S101 -- a firing state has a start
        ctx = self._ctx(state)
        measured = str(ctx.get("kind") or "")
        metric = str(ctx.get("metric") or "")
        # The routing adds the subject's ids, alertname, severity, kind and metric; an
        # index's measurement (which has no Kind) is kept here so routes can match it.
        labels = dict(rule.labels)
        if measured and measured not in _KINDS:
            labels.setdefault("kind", measured)
        values: dict[str, object] = {
            **ctx,
            "value": state.value,
            "threshold": state.rule.threshold,
            "op": rule.firing.op.words,
            "rule": rule.id,
            "severity": rule.severity.value,
            "subject": " ".join(
                f"{k.removesuffix('_id')}={v}" for k, v in state.subject.labels().items()
            ),
            "for": format_duration(rule.absence.for_ if rule.absence else rule.for_),
            "window": _duration_s(state.rule.window_s),
            "starts_at": _iso(start),
            **dict(zip(SUBJECT_LABELS, state.subject_ids(), strict=True)),
        }
        annotations = {name: _render(text, values) for name, text in rule.annotations.items()}
        annotations.setdefault("summary", _default_summary(rule, values))
        if rule.description and "description" not in annotations:
            annotations["description"] = rule.description
        return Alert.create(
            rule_id=rule.id,
            subject=state.subject,
            severity=rule.severity,
            state=kind,
            kind=Kind(measured) if measured in _KINDS else None,
            metric=_alert_metric(measured, metric),
            value=state.value,
            threshold=state.rule.threshold,
            starts_at=datetime.fromtimestamp(start, UTC),
            ends_at=None if ends is None else datetime.fromtimestamp(max(ends, start), UTC),
            labels=labels,
            annotations=annotations,
        )

    def _ctx(self, state: _State) -> dict[str, object]:
        """The alert texts' context of a state: from its latest sample, else as stored."""
        sample = state.sample
        if sample is None or state.rule.absence_per is not None:
            return state.ctx
        return {
            "kind": sample.kind,
            "metric": sample.metric,
            "sample_value": sample.value,
            "score": sample.score,
            "detector": sample.detector,
            "explanation": sample.explanation,
            "site_name": self._place_name(sample.site_name, state.subject_ids()),
        }

    # ------------------------------------------------------------ state
    def take_touched(self) -> set[str]:
        """The state keys changed since the last call (and forget them).

        Store each one's :meth:`snapshot` after a batch, before committing its offsets.
        """
        touched, self._touched = self._touched, set()
        return touched

    def state_keys(self) -> list[str]:
        """Every key this engine holds state under."""
        return list(self._by_key)

    def snapshot(self, key: str) -> bytes:
        """One state key's state, as bytes (compact JSON).

        Raises:
            KeyError: no state under this key.
        """
        state = self._by_key[key]
        data = state.to_json(self._ctx(state))
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    def restore(self, key: str, data: bytes) -> None:
        """Put back a state :meth:`snapshot` gave, replacing what is held under ``key``.

        A state of a rule no longer in the rule set is dropped (counted as orphaned).

        Raises:
            ValueError: the bytes are not a rule state for this key; nothing changes.
        """
        try:
            parsed = json.loads(data)
            if not isinstance(parsed, dict) or parsed.get("v") != _STATE_VERSION:
                msg = f"not a version {_STATE_VERSION} rule state"
                raise ValueError(msg)
            compiled = self._by_id.get(str(parsed["rule"]))
            if compiled is None:
                self.stats.orphaned += 1
                return
            subject = AlertSubject(**parsed["subject"])
            district = parsed["district"]
            state = _State(compiled, subject, district)
            if state.key != key:
                msg = f"the state is of {state.key}"
                raise ValueError(msg)
            state.phase = _PHASES.index(parsed["phase"])
            state.since = _floats(parsed["since"], "since")
            state.clear_since = _floats(parsed["clear_since"], "clear_since")
            state.started = _floats(parsed.get("started"), "started")
            last_ts = _floats(parsed["last_ts"], "last_ts")
            state.last_ts = -math.inf if last_ts is None else last_ts
            state.last_raw = _floats(parsed["last_raw"], "last_raw")
            state.value = _floats(parsed["value"], "value")
            window = parsed["window"]
            if state.window is not None and window:
                state.window.extend((float(t), float(v)) for t, v in window)
            ctx = parsed["ctx"]
            if not isinstance(ctx, dict):
                msg = "ctx is not a mapping"
                raise ValueError(msg)
            state.ctx = ctx
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            msg = f"key {key!r}: cannot restore its rule state: {exc}"
            raise ValueError(msg) from None
        self._hold(state)
        if state.phase != _INACTIVE and (
            compiled.stale_s is not None or state.clear_since is not None
        ):
            self._timed[key] = state
        else:
            self._timed.pop(key, None)

    @staticmethod
    def district_of(key: str) -> str:
        """The district a state key belongs to (``-`` for subjects without one).

        >>> RuleEngine.district_of("rules/lakeside/0123456789abcdef")
        'lakeside'
        """
        prefix, district, _ = key.split("/", 2)
        if prefix != "rules":
            raise KeyError(key)
        return district

    def drop_districts(self, districts: Iterable[str]) -> None:
        """Forget the states of some districts: another worker took them over."""
        districts = set(districts)
        self._seeded -= districts  # seeded again from its stored states if it comes back
        gone = {d or _NO_DISTRICT for d in districts}
        for key in [k for k in self._by_key if self.district_of(k) in gone]:
            self._drop(self._by_key[key])
            self._touched.discard(key)

    def alerts_firing(self) -> list[tuple[str, str]]:
        """``(rule id, fingerprint)`` of every alert firing now."""
        return [
            (s.rule.rule.id, s.fingerprint) for s in self._by_key.values() if s.phase == _FIRING
        ]


def _alert_metric(kind: str, metric: str) -> str | None:
    """An alert's ``metric``: a reading's metric, or ``measurement.field`` of an index."""
    if not metric:
        return None
    return (metric if kind in _KINDS else f"{kind}.{metric}")[:64]


def _display(name: str, name_zh: str | None) -> str:
    return f"{name} ({name_zh})" if name_zh else name


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


def _duration_s(seconds: float | None) -> str | None:
    """Seconds as a duration (``10m``), or None."""
    return None if seconds is None else format_duration(timedelta(seconds=seconds))


def _plain(value: float) -> str:
    """A number as people write it: ``201``, ``87.5``, ``0.93``."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"


class _Formatter:
    """Renders annotation templates; a missing value is ``n/a``, a bare number plain."""

    def __init__(self) -> None:
        self._inner = string.Formatter()

    def render(self, template: str, values: Mapping[str, object]) -> str:
        out: list[str] = []
        for literal, name, spec, conversion in self._inner.parse(template):
            out.append(literal)
            if name is None:
                continue
            value = values.get(name)
            if value is None:
                out.append("n/a")
                continue
            if conversion:
                value = self._inner.convert_field(value, conversion)
            if not spec and isinstance(value, float):
                out.append(_plain(value))
                continue
            try:
                out.append(format(value, spec or ""))
            except (TypeError, ValueError):
                out.append(str(value))
        return "".join(out)


_FORMATTER: Final = _Formatter()


def _render(template: str, values: Mapping[str, object]) -> str:
    return _FORMATTER.render(template, values)[:8192]


def _default_summary(rule: Rule, values: Mapping[str, object]) -> str:
    place = values.get("site_name") or values.get("subject")
    if rule.absence is not None:
        return _render(
            f"{rule.id}: no data from {place} for over {{for}} (last seen {{last_seen}})", values
        )
    what = (
        "anomaly score"
        if rule.anomaly is not None
        else f"{values.get('kind')}.{values.get('metric')}"
    )
    return _render(f"{rule.id}: {what} {{value}} at {place} ({{op}} {{threshold}})", values)

"""Sensor-fault detectors: a stuck value, silence, a value out of range, an impossible jump.

These detectors ask whether the *sensor* is working, not whether the city is doing
something unusual. Each scores ``>= 0`` with an alert level of 1.0:

- :class:`StuckValue` (``stuck``): the same value for ``min_run`` or more
  observations in a row; score ``run / min_run``.
- :class:`Silence` (``silence``): a gap longer than ``factor`` times the series'
  learned typical interval; score ``gap / (factor x interval)``.
  :meth:`Silence.overdue` finds the series that went quiet without waiting for
  their next reading.
- :class:`OutOfRange` (``out_of_range``): a value outside the physical range, which
  :meth:`OutOfRange.for_metric` takes from the metric catalogue.
- :class:`Jump` (``jump``): a change faster than the quantity can physically change;
  score ``rate / max_rate_per_s``.

Duplicates should be dropped before a detector sees them (the stream dedupes): a
replayed reading would lengthen a stuck run. Readings older than the latest one of
their series (late, out of order) score 0 in ``silence`` and ``jump`` and do not move
their clocks back.

>>> from stream.anomaly.base import Observation
>>> stuck = StuckValue(min_run=3)
>>> for i in range(3):
...     stuck.learn_one(Observation(60.0 * i, 21.5))
>>> stuck.score_one(Observation(180.0, 21.5))  # the fourth 21.5 in a row
1.33...
>>> OutOfRange.for_metric("pollution", "pm2_5").score_one(Observation(0.0, -200.0))
1.1
>>> jump = Jump(max_rate_per_s=0.1)  # temperature: 0.1 °C/s at most
>>> jump.learn_one(Observation(0.0, 20.0))
>>> jump.score_one(Observation(60.0, 32.0))  # 12 °C in a minute
2.0
>>> silence = Silence(grace_period=3)
>>> for i in range(5):
...     silence.learn_one(Observation(60.0 * i, 1.0), key="gate-1")
>>> silence.overdue(now=240.0 + 600.0)
Overdue(keys=['gate-1'], silent_s=array([600.]), ratio=array([3.33...]))
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar, NamedTuple, Self

import numpy as np
import numpy.typing as npt

from stream.anomaly.base import (
    AnomalyError,
    Detector,
    FloatArray,
    IntArray,
    StateField,
    check,
    register,
)
from telemetry.catalogue import Kind, MetricSpec, metric_spec
from telemetry.errors import UnknownMetricError

__all__ = ["MAX_RATE_PER_S", "Jump", "OutOfRange", "Overdue", "Silence", "StuckValue"]

BoolArray = npt.NDArray[np.bool_]

_INT32_MAX = np.iinfo(np.int32).max


def _spec(detector: str, kind: Kind | str, metric: str) -> MetricSpec:
    """The catalogue's spec of ``kind.metric``, as an :class:`AnomalyError` if unknown."""
    try:
        return metric_spec(kind, metric)
    except UnknownMetricError as exc:
        msg = f"{detector}: {exc}"
        raise AnomalyError(msg) from exc


# ---------------------------------------------------------------- stuck
@register
class StuckValue(Detector):
    """The same value, within ``tolerance``, for ``min_run`` or more observations in a row.

    A run starts at a value (its anchor) and lasts while readings stay within
    ``tolerance`` of it. A reading's score is ``run / min_run``, where ``run`` counts
    the run's readings up to and including this one; a reading that starts a new run
    scores 0. The alert level is 1.0: the ``min_run``-th equal reading.

    Some metrics are legitimately constant for long (no vehicles at night, no visitors
    after closing): a run whose anchor is within ``tolerance`` of one of
    ``ignore_values`` scores 0.

    The anchor is kept as float64, so that a tolerance of 0 compares exact values
    (float32 would merge neighbouring readings of a large energy register).

    Args:
        min_run: readings in a row that make a stuck sensor (at least 2).
        tolerance: the largest absolute difference from the run's anchor that still
            counts as the same value, in the metric's unit.
        ignore_values: values at which a run is normal, e.g. ``(0.0,)`` for counts.
    """

    name: ClassVar[str] = "stuck"

    def __init__(
        self, min_run: int = 10, tolerance: float = 0.0, ignore_values: Sequence[float] = ()
    ) -> None:
        check(min_run >= 2, f"stuck: min_run must be at least 2, not {min_run!r}")
        check(
            math.isfinite(tolerance) and tolerance >= 0,
            f"stuck: tolerance must be a finite number >= 0, not {tolerance!r}",
        )
        values = tuple(float(v) for v in ignore_values)
        check(
            all(math.isfinite(v) for v in values),
            f"stuck: ignore_values must be finite numbers, not {ignore_values!r}",
        )
        self.min_run = min_run
        self.tolerance = tolerance
        self.ignore_values = values
        self._ignore = np.asarray(values, dtype=np.float64)
        self.alert_level = 1.0
        self.state_fields = (
            StateField("anchor", (), "float64", np.nan),
            StateField("run", (), "int32", 0),
        )
        super().__init__()

    def _step(self, rows: IntArray, x: FloatArray) -> tuple[IntArray, FloatArray]:
        """The run length and anchor after each reading."""
        anchor = self._state["anchor"][rows]
        run = self._state["run"][rows].astype(np.intp)
        same = (run > 0) & (np.abs(x - anchor) <= self.tolerance)
        return np.where(same, run + 1, 1), np.where(same, anchor, x)

    def _score(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        return self._scored(*self._step(rows, x))

    def _scored(self, run: IntArray, anchor: FloatArray) -> FloatArray:
        """The score of a run of ``run`` readings at ``anchor``."""
        ignored = (np.abs(anchor[:, None] - self._ignore) <= self.tolerance).any(axis=1)
        return np.where((run >= 2) & ~ignored, run / self.min_run, 0.0)

    def _learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None = None
    ) -> None:
        run, anchor = self._step(rows, x)
        self._state["anchor"][rows] = anchor
        self._state["run"][rows] = np.minimum(run, _INT32_MAX)

    def _score_learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        run, anchor = self._step(rows, x)
        self._state["anchor"][rows] = anchor
        self._state["run"][rows] = np.minimum(run, _INT32_MAX)
        return self._scored(run, anchor)


# ---------------------------------------------------------------- silence
class Overdue(NamedTuple):
    """The series that have been silent too long, most overdue first.

    Attributes:
        keys: the series' keys.
        silent_s: seconds since each one's latest reading.
        ratio: ``silent_s / (factor x expected interval)``, i.e. the score its next
            reading would get; ``>= alert_level``.
    """

    keys: list[Hashable]
    silent_s: FloatArray
    ratio: FloatArray


@register
class Silence(Detector):
    """No data for longer than ``factor`` times the series' typical interval.

    The typical interval is learned per series as an exponentially weighted
    geometric mean of the intervals between readings. During the grace period it is
    the plain geometric mean; after it, each interval is first clipped to
    ``[typical / clip, typical x clip]``, so an outage (one huge interval) moves it by
    at most ``clip ** alpha`` (7 % with the defaults), while a lasting change of
    reporting rate is followed within a few dozen readings.

    A reading scores ``gap / (factor x typical)``, ``gap`` being the seconds since the
    series' previous reading; the alert level is 1.0. A series that stops sending
    never produces that reading: a periodic timer calls :meth:`overdue` instead.

    Args:
        factor: how many typical intervals of silence make an alert.
        alpha: the weight of a new interval once the grace period is over.
        clip: intervals are clipped to within this factor of the typical one before
            they are learned (> 1).
        grace_period: intervals learned before the first non-zero score.
        min_interval_s: the shortest typical interval, in seconds; shorter intervals
            are learned as this.
    """

    name: ClassVar[str] = "silence"

    def __init__(
        self,
        factor: float = 3.0,
        alpha: float = 0.1,
        clip: float = 2.0,
        grace_period: int = 5,
        min_interval_s: float = 1.0,
    ) -> None:
        check(factor >= 1, f"silence: factor must be at least 1, not {factor!r}")
        check(0 < alpha <= 1, f"silence: alpha must be in (0, 1], not {alpha!r}")
        check(clip > 1, f"silence: clip must be greater than 1, not {clip!r}")
        check(grace_period >= 1, f"silence: grace_period must be >= 1, not {grace_period!r}")
        check(
            0 < min_interval_s < math.inf,
            f"silence: min_interval_s must be a positive number, not {min_interval_s!r}",
        )
        self.factor = factor
        self.alpha = alpha
        self.clip = clip
        self.grace_period = grace_period
        self.min_interval_s = min_interval_s
        self.alert_level = 1.0
        self.state_fields = (
            StateField("last_ts", (), "float64", np.nan),
            StateField("interval", (), "float32", np.nan),
            StateField("n", (), "int32", 0),
        )
        super().__init__()

    def _ratio(self, rows: IntArray | slice, now: FloatArray | float) -> FloatArray:
        """``silence / (factor x typical interval)`` at ``now``; 0 while warming up."""
        s = self._state
        typical = s["interval"][rows].astype(np.float64)
        return self._ratio_of(now - s["last_ts"][rows], typical, s["n"][rows])

    def _ratio_of(self, silent: FloatArray, typical: FloatArray, n: IntArray) -> FloatArray:
        """:meth:`_ratio` from the seconds of silence and the series' interval and count."""
        warm = (n >= self.grace_period) & (silent > 0)
        return np.where(warm, silent / np.where(warm, self.factor * typical, 1.0), 0.0)

    def _score(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        return self._ratio(rows, ts)

    def _learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None = None
    ) -> None:
        self._score_learn(rows, ts, x, neighbours)

    def _score_learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        s = self._state
        last = s["last_ts"][rows]
        n = s["n"][rows].astype(np.intp)
        typical = s["interval"][rows].astype(np.float64)
        gap = ts - last
        ratio = self._ratio_of(gap, typical, n)
        new = gap > 0  # False for a first reading (NaN gap), a duplicate, a late one
        interval = np.where(new, np.maximum(gap, self.min_interval_s), 1.0)
        known = np.where(n > 0, typical, interval)
        limit = np.where(n >= self.grace_period, math.log(self.clip), np.inf)
        step = np.clip(np.log(interval / known), -limit, limit)
        weight = np.maximum(self.alpha, 1.0 / (n + 1))
        s["interval"][rows] = np.where(new, known * np.exp(weight * step), typical)
        s["n"][rows] = np.where(new, np.minimum(n + 1, _INT32_MAX), n)
        s["last_ts"][rows] = np.fmax(last, ts)
        return ratio

    def overdue(self, now: float) -> Overdue:
        """The series silent for at least ``alert_level`` at ``now``, most overdue first.

        Vectorised over every series; the state is unchanged. A series still in its
        grace period is never overdue. A series that stays silent is reported at every
        call: deduplicating alerts is the alert state machine's job.

        Args:
            now: the time to judge at, epoch seconds (UTC): event time (the stream's
                watermark) or wall-clock time, whichever the stream's timer uses.

        Returns:
            The overdue series' keys, their seconds of silence and their ratios.
        """
        count = self.series
        ratio = self._ratio(slice(0, count), now)
        hit = np.flatnonzero(ratio >= self.alert_level)
        hit = hit[np.argsort(-ratio[hit], kind="stable")]
        keys = list(self._slots)  # rows are allotted in insertion order: keys[row] is its key
        silent = now - self._state["last_ts"][hit]
        return Overdue([keys[row] for row in hit], silent, ratio[hit])


# ---------------------------------------------------------------- out of range
@register
class OutOfRange(Detector):
    """A value outside the physical range ``[low, high]``: a broken sensor or a bad encoding.

    A value inside the closed range scores 0; outside, ``1 + distance / width``, where
    ``distance`` is how far outside it is and ``width`` is ``high - low`` (with one side
    open, ``max(|bound|, 1)``). Any value outside therefore reaches the alert level
    1.0, and a value far outside scores higher. The detector keeps no state.

    Args:
        low: the lowest valid value, or None for no lower bound.
        high: the highest valid value, or None for no upper bound.
    """

    name: ClassVar[str] = "out_of_range"

    def __init__(self, low: float | None = None, high: float | None = None) -> None:
        for label, bound in (("low", low), ("high", high)):
            check(
                bound is None or math.isfinite(bound),
                f"out_of_range: {label} must be a finite number or None, not {bound!r}",
            )
        check(
            low is None or high is None or low < high,
            f"out_of_range: low={low!r} must be below high={high!r}",
        )
        self.low = low
        self.high = high
        self._low = -math.inf if low is None else float(low)
        self._high = math.inf if high is None else float(high)
        if low is not None and high is not None:
            self._width = float(high - low)
        else:
            bound = low if low is not None else high
            self._width = max(abs(bound or 0.0), 1.0)
        self.alert_level = 1.0
        self.state_fields = ()
        super().__init__()

    @classmethod
    def for_metric(cls, kind: Kind | str, metric: str, interval_s: float | None = None) -> Self:
        """The physical range of a catalogue metric, for readings covering ``interval_s``.

        For an interval count the top of the range depends on the interval (see
        :meth:`telemetry.catalogue.MetricSpec.valid_range`).

        >>> OutOfRange.for_metric("traffic", "vehicle_count", interval_s=60)
        OutOfRange(low=0.0, high=61.0)
        """
        low, high = _spec("out_of_range", kind, metric).valid_range(interval_s)
        return cls(low=float(low), high=float(high))

    def _score(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        distance = np.maximum(self._low - x, 0.0) + np.maximum(x - self._high, 0.0)
        return np.where(distance > 0, 1.0 + distance / self._width, 0.0)

    def _learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None = None
    ) -> None:
        return None

    def _expect(
        self, rows: IntArray, ts: FloatArray, neighbours: FloatArray | None
    ) -> tuple[FloatArray, FloatArray, FloatArray] | None:
        """The band is the range; the expected value its middle (or its one bound)."""
        if self.low is None and self.high is None:
            return None
        if self.low is not None and self.high is not None:
            middle = (self._low + self._high) / 2
        else:
            middle = self._low if self.low is not None else self._high
        n = len(rows)
        return np.full(n, middle), np.full(n, self._low), np.full(n, self._high)


# ---------------------------------------------------------------- jump
MAX_RATE_PER_S: Mapping[str, float] = MappingProxyType(
    {
        "pollution.pm2_5": 50.0,
        "pollution.pm10": 100.0,
        "pollution.no2": 20.0,
        "pollution.so2": 20.0,
        "pollution.o3": 5.0,
        "pollution.co": 1.0,
        "ambient.temperature_c": 0.1,
        "ambient.humidity_pct": 0.5,
        "ambient.pressure_hpa": 0.05,
        "ambient.wind_speed_ms": 10.0,
        "traffic.mean_speed_kmh": 5.0,
        "traffic.occupancy_pct": 3.0,
        "crowd.count_in_view": 10.0,
    }
)
"""Plausible fastest change per second of each metric (``kind.metric``), for :class:`Jump`."""


@register
class Jump(Detector):
    """A change faster than the quantity can physically change: a glitch, not the city.

    The rate is ``|x - previous| / dt``, ``dt`` being the seconds since the series'
    previous reading (at least ``min_dt_s``, so timestamp jitter between near-
    simultaneous readings does not make a tiny step look infinitely fast). A reading
    scores ``rate / max_rate_per_s``; the alert level is 1.0. After a gap longer than
    ``max_gap_s`` nothing is compared (score 0): the reading starts afresh.

    ``max_rate_per_s`` is in the metric's unit per second. Starting points, to be tuned
    on each deployment's data (:data:`MAX_RATE_PER_S`, used by :meth:`for_metric`):

    ======================  ===============  ================================================
    metric                  max_rate_per_s   why
    ======================  ===============  ================================================
    pollution.pm2_5         50 µg/m³ /s      a kerbside exhaust plume: tens within seconds
    pollution.pm10          100 µg/m³ /s     construction and road dust are coarser, burstier
    pollution.no2           20 µg/m³ /s      exhaust plumes at the kerb
    pollution.so2           20 µg/m³ /s      an industrial plume reaching the station
    pollution.o3            5 µg/m³ /s       secondary, slow; NO titration by a plume is the
                                             fastest change
    pollution.co            1 mg/m³ /s       exhaust plumes
    ambient.temperature_c   0.1 °C /s        a shielded sensor's time constant is minutes
    ambient.humidity_pct    0.5 % /s         the onset of a shower
    ambient.pressure_hpa    0.05 hPa /s      a squall line: a few hPa in minutes
    ambient.wind_speed_ms   10 m/s /s        gust onset
    traffic.mean_speed_kmh  5 km/h /s        a queue's tail reaching the detector
    traffic.occupancy_pct   3 % /s           the onset of a jam
    crowd.count_in_view     10 persons /s    a group walking into view
    ======================  ===============  ================================================

    Energy metrics have no such limit (a load switches in an instant; a register's rate
    is the building's power) and interval counts depend on the interval: use
    :class:`OutOfRange` for those.

    Args:
        max_rate_per_s: the fastest plausible change, in the metric's unit per second.
        max_gap_s: after a gap longer than this (seconds), a reading is not compared.
        min_dt_s: the smallest time step a rate is computed over, in seconds.
    """

    name: ClassVar[str] = "jump"

    def __init__(
        self, max_rate_per_s: float, max_gap_s: float = 3600.0, min_dt_s: float = 1.0
    ) -> None:
        check(
            0 < max_rate_per_s < math.inf,
            f"jump: max_rate_per_s must be a positive number, not {max_rate_per_s!r}",
        )
        check(
            0 < min_dt_s < math.inf,
            f"jump: min_dt_s must be a positive number, not {min_dt_s!r}",
        )
        check(
            min_dt_s <= max_gap_s,
            f"jump: max_gap_s must be at least min_dt_s={min_dt_s!r}, not {max_gap_s!r}",
        )
        self.max_rate_per_s = max_rate_per_s
        self.max_gap_s = max_gap_s
        self.min_dt_s = min_dt_s
        self.alert_level = 1.0
        self.state_fields = (
            StateField("prev_ts", (), "float64", np.nan),
            StateField("prev", (), "float32", np.nan),
        )
        super().__init__()

    @classmethod
    def for_metric(
        cls, kind: Kind | str, metric: str, max_gap_s: float = 3600.0, min_dt_s: float = 1.0
    ) -> Self:
        """A jump detector with the metric's plausible rate from :data:`MAX_RATE_PER_S`.

        >>> Jump.for_metric("ambient", "temperature_c")
        Jump(max_rate_per_s=0.1, max_gap_s=3600.0, min_dt_s=1.0)
        """
        key = _spec("jump", kind, metric).key
        rate = MAX_RATE_PER_S.get(key)
        if rate is None:
            msg = (
                f"jump: no plausible rate of change is known for {key}; give max_rate_per_s "
                f"(known: {', '.join(MAX_RATE_PER_S)})"
            )
            raise AnomalyError(msg)
        return cls(max_rate_per_s=rate, max_gap_s=max_gap_s, min_dt_s=min_dt_s)

    def _previous(self, rows: IntArray, ts: FloatArray) -> tuple[FloatArray, FloatArray, BoolArray]:
        """The previous value, the time step since it, and whether it can be compared."""
        prev = self._state["prev"][rows].astype(np.float64)
        dt = ts - self._state["prev_ts"][rows]
        usable = (dt >= 0) & (dt <= self.max_gap_s) & np.isfinite(prev)
        return prev, np.maximum(dt, self.min_dt_s), usable

    def _score(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        prev, dt, usable = self._previous(rows, ts)
        usable = usable & np.isfinite(x)
        rate = np.abs(np.where(usable, x, 0.0) - np.where(usable, prev, 0.0)) / dt
        return np.where(usable, rate / self.max_rate_per_s, 0.0)

    def _learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None = None
    ) -> None:
        s = self._state
        late = ts < s["prev_ts"][rows]  # False for a first reading (NaN)
        take = ~late & np.isfinite(x)
        s["prev"][rows] = np.where(take, x, s["prev"][rows])
        s["prev_ts"][rows] = np.where(take, ts, s["prev_ts"][rows])

    def _expect(
        self, rows: IntArray, ts: FloatArray, neighbours: FloatArray | None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The previous value, ± what ``max_rate_per_s`` allows since; open without one."""
        prev, dt, usable = self._previous(rows, ts)
        reach = self.max_rate_per_s * dt
        return (
            np.where(usable, prev, np.nan),
            np.where(usable, prev - reach, -np.inf),
            np.where(usable, prev + reach, np.inf),
        )

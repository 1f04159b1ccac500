"""Local pre-aggregation: sample at one rate, publish at another.

A sensor sampled every 5 s and published once a minute sends one reading per
minute: for a gauge the mean as the value, with min, max and the sample count
in :attr:`telemetry.Reading.stats`; interval counts (vehicles, gate entries)
summed, never averaged; a cumulative counter (a kWh register) its last value.

Windows are aligned to multiples of the publish interval in UTC (a one-minute
window runs from :00 to :00), and a window's reading carries its end as ``ts``
and its length as ``interval_s``. A sample that arrives after its window was
closed — the gateway's clock stepped back — is folded into the open window
rather than reopening a published one.

Pure code: no I/O, no clock; the agent passes each sample's time.

>>> from datetime import datetime, timezone
>>> agg = WindowAggregator(Kind.TRAFFIC, window_s=60)
>>> t0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
>>> for second, count, speed in [(5, 3, 50.0), (35, 4, 40.0)]:
...     agg.add(t0.replace(second=second), {"vehicle_count": count, "mean_speed_kmh": speed})
[]
[]
>>> [window] = agg.add(t0.replace(minute=1, second=5), {"vehicle_count": 1, "mean_speed_kmh": 60.0})
>>> window.end.isoformat(), window.interval_s, window.metrics
('2026-11-22T08:01:00+00:00', 60.0, {'vehicle_count': 7.0, 'mean_speed_kmh': 45.0})
>>> window.stats["mean_speed_kmh"]
MetricStats(min=40.0, max=50.0, count=2)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from telemetry import CATALOGUE, Kind, MetricStats, Semantics

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class _Accumulator:
    semantics: Semantics
    integer: bool
    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    last: float = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        self.last = value

    def value(self) -> float:
        if self.semantics is Semantics.GAUGE:
            mean = self.total / self.count
            # A gauge of whole things (people in view) stays whole: its mean is rounded.
            return float(round(mean)) if self.integer else mean
        if self.semantics is Semantics.INTERVAL_COUNT:
            return self.total
        return self.last

    def stats(self) -> MetricStats | None:
        if self.semantics is not Semantics.GAUGE:
            return None
        mean = self.value()
        # Guard the rounding of the mean so it never falls outside its own min and max.
        return MetricStats(min=min(self.low, mean), max=max(self.high, mean), count=self.count)


@dataclass(frozen=True, slots=True)
class Window:
    """One closed window: what the agent turns into a reading.

    Attributes:
        end: the window's end (the reading's event time), UTC.
        interval_s: the window's length in seconds.
        metrics: each metric's aggregated value.
        stats: for gauges, min, max and sample count.
        samples: how many samples fell in the window.
    """

    end: datetime
    interval_s: float
    metrics: dict[str, float]
    stats: dict[str, MetricStats]
    samples: int


@dataclass(slots=True)
class WindowAggregator:
    """Aggregates one sensor's samples over fixed, UTC-aligned windows.

    Args:
        kind: the sensor's kind; decides each metric's semantics.
        window_s: the publish interval in seconds. To publish every sample,
            make it the sampling interval.
    """

    kind: Kind
    window_s: float
    _end: datetime | None = field(default=None, init=False)
    _samples: int = field(default=0, init=False)
    _metrics: dict[str, _Accumulator] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            msg = f"window_s must be a finite number of seconds > 0, got {self.window_s!r}"
            raise ValueError(msg)

    def add(self, ts: datetime, metrics: Mapping[str, float]) -> list[Window]:
        """Add one sample taken at ``ts``; return the windows it closed (zero or one)."""
        if ts.tzinfo is None:
            msg = f"sample time {ts.isoformat()} has no timezone; pass UTC"
            raise ValueError(msg)
        closed: list[Window] = []
        end = self._window_end(ts)
        if self._end is not None and end > self._end:
            closed.extend(self.flush())
        if self._end is None:
            self._end = end
        known = CATALOGUE[self.kind]
        for name, value in metrics.items():
            accumulator = self._metrics.get(name)
            if accumulator is None:
                spec = known[name]
                accumulator = self._metrics[name] = _Accumulator(spec.semantics, spec.integer)
            accumulator.add(value)
        self._samples += 1
        return closed

    def close_due(self, now: datetime) -> list[Window]:
        """Close the open window if its end has passed by ``now``, without waiting for a sample."""
        if self._end is not None and now >= self._end:
            return self.flush()
        return []

    def flush(self) -> list[Window]:
        """Close the open window now, if it holds any sample (at shutdown, say)."""
        if self._end is None or not self._samples:
            return []
        window = Window(
            end=self._end,
            interval_s=float(self.window_s),
            metrics={name: acc.value() for name, acc in self._metrics.items()},
            stats={
                name: stats
                for name, acc in self._metrics.items()
                if (stats := acc.stats()) is not None
            },
            samples=self._samples,
        )
        self._end, self._samples, self._metrics = None, 0, {}
        return [window]

    def _window_end(self, ts: datetime) -> datetime:
        elapsed = (ts - _EPOCH).total_seconds()
        index = math.floor(elapsed / self.window_s) + 1
        return _EPOCH + timedelta(seconds=index * self.window_s)

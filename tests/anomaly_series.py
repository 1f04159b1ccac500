"""Labelled series for the anomaly detectors' conformance suite.

Each builder samples one of the project's simulators (an air-quality station with the
stations of its district as neighbours, an ambient station, an office's electricity
meter) at a fixed cadence, injects anomalies of one type at seeded, known indices and
returns a :class:`LabelledSeries`: event times, values, the neighbours' values and a
label per observation. Series are pure functions of their seed, and cached.

Anomalies start after ``warmup`` observations, which is also where a detector's
ROC-AUC is measured from, so a detector's warm-up zeros do not count.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from simulators.air_quality import StationModel, seed_of
from simulators.energy import BuildingType, MeterModel
from stream.anomaly.base import Observation

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]
ArrayT = TypeVar("ArrayT", bound=npt.NDArray[Any])

BEIJING = timedelta(hours=8)
"""Local time of the simulated city: UTC+8."""
START = datetime(2024, 1, 8, tzinfo=UTC) - BEIJING
"""Monday 2024-01-08 00:00 in Beijing: the first observation of every series."""
MINUTE, HOUR = 60.0, 3600.0
NEIGHBOURS = 4
"""Stations of the same district that each air-quality series carries as neighbours."""


@dataclass(frozen=True)
class LabelledSeries:
    """One series of observations with a label per observation (True: anomalous).

    Attributes:
        ts: event times, seconds since the Unix epoch (UTC).
        x: the values.
        labels: which observations are injected anomalies.
        neighbours: the neighbours' values at each observation (rows x k, NaN where a
            neighbour is absent), or None.
        warmup: the observations before the first anomaly; scores are judged after them.
    """

    ts: FloatArray
    x: FloatArray
    labels: BoolArray
    neighbours: FloatArray | None = None
    warmup: int = 0

    def __len__(self) -> int:
        return len(self.x)

    def observation(self, i: int) -> Observation:
        """The ``i``-th observation, with its neighbours (a NaN is an absent neighbour,
        left out, as a batch pads ragged neighbours with NaN)."""
        row = () if self.neighbours is None else self.neighbours[i]
        nb = tuple(float(v) for v in row if not np.isnan(v))
        return Observation(float(self.ts[i]), float(self.x[i]), nb)

    def observations(self) -> list[Observation]:
        """Every observation, in order."""
        return [self.observation(i) for i in range(len(self))]

    def part(self, start: int, stop: int | None = None) -> LabelledSeries:
        """The observations ``start:stop`` (labels kept, warm-up counted from ``start``)."""
        window = slice(start, stop)
        nb = None if self.neighbours is None else self.neighbours[window]
        return LabelledSeries(
            self.ts[window],
            self.x[window],
            self.labels[window],
            nb,
            max(self.warmup - start, 0),
        )

    def mapped(self, f: Callable[[FloatArray], FloatArray]) -> LabelledSeries:
        """The same series with ``f`` applied to the values and to the neighbours' values."""
        nb = None if self.neighbours is None else _frozen(f(self.neighbours))
        return replace(self, x=_frozen(f(self.x)), neighbours=nb)


def _frozen(a: ArrayT) -> ArrayT:
    """A read-only copy of ``a``, so a cached series cannot be changed by a test."""
    a = a.copy()
    a.setflags(write=False)
    return a


def _series(
    ts: FloatArray,
    x: FloatArray,
    labels: BoolArray,
    neighbours: FloatArray | None,
    warmup: int,
) -> LabelledSeries:
    nb = None if neighbours is None else _frozen(neighbours)
    return LabelledSeries(_frozen(ts), _frozen(x), _frozen(labels), nb, warmup)


def _times(count: int, step_s: float) -> FloatArray:
    return START.timestamp() + step_s * np.arange(count, dtype=np.float64)


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _station(seed: int) -> StationModel:
    return StationModel(
        seed=seed, district_seed=seed_of("dongcheng"), region_seed=seed_of("beijing")
    )


@functools.cache
def _district(
    metric: str, seed: int, count: int, step_s: float, neighbours: int = NEIGHBOURS
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """A station's ``metric`` and the same metric at ``neighbours`` other stations of its
    district: the event times, its values and theirs (rows x ``neighbours``), read-only.

    ``metric`` is a pollutant of :meth:`StationModel.values_at` or a weather metric of
    :meth:`StationModel.ambient_at`.
    """
    ts = _times(count, step_s)
    stations = [_station(10 * seed + i) for i in range(neighbours + 1)]
    ambient = metric not in stations[0].values_at(START)
    values = np.empty((count, neighbours + 1))
    for i, t in enumerate(ts):
        for j, station in enumerate(stations):
            at = _at(float(t))
            sample = station.ambient_at(at) if ambient else station.values_at(at)
            values[i, j] = sample[metric]
    return _frozen(ts), _frozen(values[:, 0]), _frozen(values[:, 1:])


def _places(rng: np.random.Generator, start: int, stop: int, count: int, gap: int) -> IntArray:
    """``count`` sorted indices in ``[start, stop)``, in distinct slots of ``gap``
    readings, each in its slot's first half: more than ``gap // 2`` apart."""
    slots = np.arange(start, stop - gap // 2, gap)
    chosen = np.sort(rng.choice(slots, size=count, replace=False))
    offsets = rng.integers(0, max(gap // 2, 1), size=count)
    return (chosen + offsets).astype(np.intp)


@functools.cache
def _meter(seed: int, count: int, step_s: float) -> tuple[FloatArray, dict[str, FloatArray]]:
    """An office's electricity meter: event times and each metric of its readings,
    read-only."""
    ts = _times(count, step_s)
    meter = MeterModel(
        seed=seed, building_type=BuildingType.OFFICE, commissioned=START - timedelta(days=1)
    )
    rows = [meter.values_at(_at(float(t))) for t in ts]
    return _frozen(ts), {name: _frozen(np.asarray([r[name] for r in rows])) for name in rows[0]}


def _labels(count: int, at: IntArray) -> BoolArray:
    """``count`` labels, True at the indices ``at``."""
    labels = np.zeros(count, dtype=bool)
    labels[at] = True
    return labels


# ---------------------------------------------------------------- builders
@functools.cache
def spikes(seed: int) -> LabelledSeries:
    """PM2.5 every 10 minutes for 80 hours; 12 single readings at 3x the level plus 40 ug/m3.

    The generic series: it carries the district's neighbours, so any detector runs on it.
    """
    count, warmup = 480, 160
    ts, x, nb = _district("pm2_5", seed, count, 10 * MINUTE)
    at = _places(np.random.default_rng(seed), warmup, count, 12, 25)
    x = x.copy()
    x[at] = 3.0 * x[at] + 40.0
    return _series(ts, x, _labels(count, at), nb, warmup)


@functools.cache
def records(seed: int) -> LabelledSeries:
    """PM2.5 every 10 minutes for 80 hours; 12 single readings at 1.5x the highest so far."""
    count, warmup = 480, 160
    ts, x, nb = _district("pm2_5", seed, count, 10 * MINUTE)
    at = _places(np.random.default_rng(seed), warmup, count, 12, 25)
    x = x.copy()
    for i in at:
        x[i] = 1.5 * float(x[:i].max()) + 10.0
    return _series(ts, x, _labels(count, at), nb, warmup)


@functools.cache
def level_shifts(seed: int, size: float = 4.0) -> LabelledSeries:
    """A meter's voltage every 10 minutes for 100 hours; 4 lasting shifts of +-``size`` V.

    Each shift lasts 48 readings. A shift and its return are both change points: the
    first 8 readings after each are labelled, the time a change-point detector has to
    notice it.
    """
    count, warmup, length, noticed = 600, 120, 48, 8
    ts, metrics = _meter(seed, count, 10 * MINUTE)
    x = metrics["voltage_v"].copy()
    rng = np.random.default_rng(seed)
    at = _places(rng, warmup, count - length - noticed, 4, 110)
    labels = np.zeros(count, dtype=bool)
    for i in at:
        x[i : i + length] += size * rng.choice([-1.0, 1.0])
        labels[i : i + noticed] = True
        labels[i + length : i + length + noticed] = True
    return _series(ts, x, labels, None, warmup)


@functools.cache
def unusual_hours(seed: int) -> LabelledSeries:
    """An office's power every hour for 3 weeks; in the last 6 days, 12 weekday readings
    take the value of 12 hours before: an afternoon's load at night, a night's at midday.
    """
    count, warmup = 21 * 24, 15 * 24
    ts, metrics = _meter(seed, count, HOUR)
    clean = metrics["power_w"]
    local = ts + BEIJING.total_seconds()
    hour = (local // HOUR % 24).astype(np.intp)
    weekday = (local // 86400 + 3) % 7 < 5  # 1970-01-01 was a Thursday
    odd = weekday & ((hour <= 4) | ((hour >= 10) & (hour <= 15)))
    rng = np.random.default_rng(seed)
    at = np.sort(rng.choice(np.flatnonzero(odd[warmup:]) + warmup, size=12, replace=False))
    x = clean.copy()
    x[at] = clean[at - 12]
    return _series(ts, x, _labels(count, at), None, warmup)


@functools.cache
def stuck_segments(seed: int) -> LabelledSeries:
    """Ambient temperature every 10 minutes for 80 hours; 4 runs of 24 readings frozen at
    the run's first value. The repeats are labelled (the first reading is a real one).
    """
    count, warmup, length = 480, 100, 24
    ts, x, _ = _district("temperature_c", seed, count, 10 * MINUTE, neighbours=0)
    at = _places(np.random.default_rng(seed), warmup, count - length, 4, 80)
    x = x.copy()
    labels = np.zeros(count, dtype=bool)
    for i in at:
        x[i + 1 : i + length] = x[i]
        labels[i + 1 : i + length] = True
    return _series(ts, x, labels, None, warmup)


@functools.cache
def gaps(seed: int) -> LabelledSeries:
    """PM2.5 about every minute (+-5 s jitter) for 10 hours, with 6 outages of 10-40
    minutes: the first reading after each outage is labelled.
    """
    count, warmup = 600, 60
    ts, x, _ = _district("pm2_5", seed, count, MINUTE, neighbours=0)
    rng = np.random.default_rng(seed)
    at = _places(rng, warmup, count, 6, 90)
    keep = np.ones(count, dtype=bool)
    for i in at:
        keep[i - int(rng.integers(10, 41)) : i] = False
    ts = ts + rng.uniform(-5.0, 5.0, size=count)
    labels = _labels(count, at)
    warm = int(np.count_nonzero(keep[:warmup]))
    return _series(ts[keep], x[keep], labels[keep], None, warm)


@functools.cache
def out_of_range(seed: int) -> LabelledSeries:
    """PM2.5 every 10 minutes for 50 hours; 10 readings outside the physical range
    [0, 2000] ug/m3: a negative reading, a saturated or badly decoded one.
    """
    count, warmup = 300, 20
    ts, x, _ = _district("pm2_5", seed, count, 10 * MINUTE, neighbours=0)
    rng = np.random.default_rng(seed)
    at = _places(rng, warmup, count, 10, 25)
    x = x.copy()
    x[at] = rng.choice([-1.0, -50.0, 2000.5, 6553.5, 65535.0], size=len(at))
    return _series(ts, x, _labels(count, at), None, warmup)


@functools.cache
def jumps(seed: int) -> LabelledSeries:
    """Ambient temperature every minute for 8 hours; 8 steps of 4-12 degC from one
    reading to the next (a re-seated or swapped sensor). The step's reading is labelled.
    """
    count, warmup = 480, 40
    ts, x, _ = _district("temperature_c", seed, count, MINUTE, neighbours=0)
    rng = np.random.default_rng(seed)
    at = _places(rng, warmup, count, 8, 50)
    x = x.copy()
    for i in at:
        x[i:] += rng.uniform(4.0, 12.0) * rng.choice([-1.0, 1.0])
    return _series(ts, x, _labels(count, at), None, warmup)


@functools.cache
def local_offsets(seed: int) -> LabelledSeries:
    """PM2.5 every 10 minutes for 80 hours at one station and its 4 district neighbours;
    4 episodes of 12 readings at 1.8x the level plus 30 ug/m3 at this station alone
    (a local source, or a failing sensor). The episodes are labelled.
    """
    count, warmup, length = 480, 100, 12
    ts, x, nb = _district("pm2_5", seed, count, 10 * MINUTE)
    at = _places(np.random.default_rng(seed), warmup, count - length, 4, 80)
    x = x.copy()
    labels = np.zeros(count, dtype=bool)
    for i in at:
        x[i : i + length] = 1.8 * x[i : i + length] + 30.0
        labels[i : i + length] = True
    return _series(ts, x, labels, nb, warmup)

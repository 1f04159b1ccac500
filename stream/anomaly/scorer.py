"""Scores whole readings: every metric of every sensor, through its kind's detectors.

:class:`ReadingScorer` keeps one :class:`~stream.anomaly.combine.Combiner` per (kind,
metric), built from the :class:`~stream.anomaly.config.AnomalyConfig`, each holding
the state of every sensor that reports that metric. A batch of readings is split by
(kind, metric) and scored with the combiners' batched path, so a stream worker scores
thousands of readings per call.

Detectors that compare a sensor with its neighbours get the neighbours' latest values
of the same metric from the scorer, which remembers the last value of every sensor;
who neighbours whom comes from the site registry (:func:`neighbours_from_registry`:
the same kind in the same district). :meth:`ReadingScorer.overdue` asks every
``silence`` detector which sensors have gone quiet, for a periodic timer.

>>> from datetime import UTC, datetime, timedelta
>>> from telemetry import Kind, Reading
>>> scorer = ReadingScorer()
>>> start = datetime(2024, 11, 8, tzinfo=UTC)
>>> readings = [
...     Reading(sensor_id="aq-1", kind=Kind.POLLUTION, seq=i, ts=start + timedelta(minutes=i),
...             metrics={"pm2_5": 30.0 + i % 5, "no2": 40.0})
...     for i in range(3)
... ]
>>> [(s.sensor_id, s.metric, round(s.score, 2)) for s in scorer.score(readings)][:2]
[('aq-1', 'pm2_5', 0.0), ('aq-1', 'no2', 0.0)]
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from stream.anomaly.base import FloatArray
from stream.anomaly.combine import Combiner
from stream.anomaly.config import DEFAULT_CONFIG, AnomalyConfig
from stream.anomaly.faults import Silence
from stream.anomaly.spatial import pad_neighbours
from telemetry import Kind, Reading
from telemetry.registry import Registry

__all__ = ["FlatScore", "MetricScore", "ReadingScorer", "neighbours_from_registry"]


@dataclass(frozen=True, slots=True)
class MetricScore:
    """The anomaly score of one metric of one reading.

    Attributes:
        sensor_id: the sensor.
        kind: its kind.
        metric: the metric.
        ts: the reading's event time (for a silence, the time it was judged at).
        value: the metric's value (for a silence, the seconds without data).
        score: calibrated score in ``[0, 1]``; 0.5 is the alert level.
        detector: the detector behind the score.
        raw: that detector's own score.
        reading: False for a silence found by :meth:`ReadingScorer.overdue`, which
            belongs to no reading.
    """

    sensor_id: str
    kind: Kind
    metric: str
    ts: datetime
    value: float
    score: float
    detector: str
    raw: float
    reading: bool = True


FlatScore = tuple[str, float, str, float]
"""One metric's score as :meth:`ReadingScorer.score_flat` gives it: metric, score,
detector, raw score."""
_NO_SCORE: FlatScore = ("", math.nan, "", math.nan)


@dataclass(slots=True)
class _Group:
    """The observations of one (kind, metric) in a batch, as columns."""

    positions: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    x: list[float] = field(default_factory=list)


def neighbours_from_registry(registry: Registry) -> dict[str, list[str]]:
    """Each sensor's neighbours: the other sensors of its kind in its district."""
    district = {site.id: site.district for site in registry.sites}
    groups: dict[tuple[Kind, str], list[str]] = defaultdict(list)
    for sensor in registry.sensors:
        groups[sensor.kind, district[sensor.site]].append(sensor.id)
    return {
        sensor.id: [s for s in groups[sensor.kind, district[sensor.site]] if s != sensor.id]
        for sensor in registry.sensors
    }


class ReadingScorer:
    """Anomaly scores for every metric of a stream of readings.

    Args:
        config: which detectors run on which kind and metric.
        neighbours: each sensor's neighbours, for spatial detectors.
    """

    def __init__(
        self,
        config: AnomalyConfig = DEFAULT_CONFIG,
        neighbours: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.config = config
        self.neighbours = dict(neighbours or {})
        self.combiners: dict[tuple[Kind, str], Combiner] = {}
        self.latest: dict[tuple[str, str], float] = {}
        """The last value of every (metric, sensor): the neighbours' consensus comes from
        it, so it is state to keep beside the combiners' snapshots."""

    def combiner(self, kind: Kind, metric: str) -> Combiner:
        """The combiner of a kind's metric, built on first use."""
        combiner = self.combiners.get((kind, metric))
        if combiner is None:
            combiner = self.combiners[kind, metric] = self.config.combiner_for(kind, metric)
        return combiner

    def score(self, readings: Sequence[Reading]) -> list[MetricScore]:
        """Score, then learn, a batch of readings; one result per metric, in input order."""
        flat = self.score_flat(readings)
        out: list[MetricScore] = []
        i = 0
        for r in readings:
            for metric, value in r.metrics.items():
                _, score, detector, raw = flat[i]
                out.append(
                    MetricScore(r.sensor_id, r.kind, metric, r.ts, value, score, detector, raw)
                )
                i += 1
        return out

    def score_flat(self, readings: Sequence[Reading]) -> list[FlatScore]:
        """What :meth:`score` does, as plain tuples: the stream's hot path.

        One ``(metric, score, detector, raw)`` per metric of each reading, in input
        order (readings, then each reading's metrics), so a reading with ``n`` metrics
        owns the next ``n`` entries.
        """
        groups: dict[tuple[Kind, str], _Group] = {}
        position = 0
        for reading in readings:
            t = reading.ts.timestamp()
            sensor = reading.sensor_id
            kind = reading.kind
            for metric, value in reading.metrics.items():
                group = groups.get((kind, metric))
                if group is None:
                    group = groups[kind, metric] = _Group()
                group.positions.append(position)
                group.keys.append(sensor)
                group.ts.append(t)
                group.x.append(value)
                position += 1
        flat: list[FlatScore] = [_NO_SCORE] * position
        for (kind, metric), group in groups.items():
            combiner = self.combiner(kind, metric)
            neighbours = (
                self._neighbour_values(metric, group.keys) if combiner.uses_neighbours else None
            )
            score, which, raw = combiner.process(
                group.keys, np.asarray(group.ts), np.asarray(group.x, dtype=np.float64), neighbours
            )
            names = [d.name for d in combiner.detectors]
            for at, s, w, r in zip(
                group.positions, score.tolist(), which.tolist(), raw.tolist(), strict=True
            ):
                flat[at] = (metric, s, names[w], r)
            self.latest.update(zip([(metric, k) for k in group.keys], group.x, strict=True))
        return flat

    def _neighbour_values(self, metric: str, keys: Sequence[str]) -> FloatArray:
        """Each key's neighbours' latest values of ``metric``, padded with NaN."""
        latest = self.latest
        nan = math.nan
        values = [[latest.get((metric, s), nan) for s in self.neighbours.get(k, ())] for k in keys]
        return pad_neighbours(values)  # NaN (no value yet) is ignored wherever it stands

    def overdue(self, now: datetime) -> list[MetricScore]:
        """Every (sensor, metric) whose ``silence`` detector finds it overdue at ``now``.

        Each is reported as a score at ``now`` whose value is the seconds of silence.
        """
        found: list[MetricScore] = []
        for (kind, metric), combiner in self.combiners.items():
            for detector in combiner.detectors:
                if not isinstance(detector, Silence):
                    continue
                late = detector.overdue(now.timestamp())
                levels = late.ratio * detector.alert_level
                scores = combiner.calibrate(levels, detector)
                for key, silent, raw, score in zip(
                    late.keys, late.silent_s, levels, scores, strict=True
                ):
                    found.append(
                        MetricScore(
                            str(key),
                            kind,
                            metric,
                            now,
                            float(silent),
                            float(score),
                            detector.name,
                            float(raw),
                            reading=False,
                        )
                    )
        return found

    def score_all(
        self, readings: Iterable[Reading], *, check_silence_s: float | None = None
    ) -> Iterator[MetricScore]:
        """Score a time-ordered stream of readings, yielding results in input order.

        Readings are scored in batches in which no sensor repeats, so each batch is one
        vectorised step and neighbours' values are at most one reading old. With
        ``check_silence_s``, :meth:`overdue` runs every that many seconds of event time
        and its findings are yielded too.
        """
        chunk: list[Reading] = []
        seen: set[str] = set()
        next_check: float | None = None
        for reading in readings:
            if reading.sensor_id in seen:
                yield from self.score(chunk)
                chunk, seen = [], set()
            if check_silence_s is not None:
                now = reading.ts.timestamp()
                if next_check is not None and now >= next_check:
                    yield from self.score(chunk)
                    chunk, seen = [], set()
                    yield from self.overdue(reading.ts)
                if next_check is None or now >= next_check:
                    next_check = now + check_silence_s
            chunk.append(reading)
            seen.add(reading.sensor_id)
        if chunk:
            yield from self.score(chunk)

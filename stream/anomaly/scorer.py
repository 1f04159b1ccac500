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

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from stream.anomaly.combine import Combiner
from stream.anomaly.config import DEFAULT_CONFIG, AnomalyConfig
from stream.anomaly.faults import Silence
from stream.anomaly.spatial import pad_neighbours
from telemetry import Kind, Reading
from telemetry.registry import Registry

__all__ = ["MetricScore", "ReadingScorer", "neighbours_from_registry"]


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
        groups: dict[tuple[Kind, str], list[Reading]] = defaultdict(list)
        order: list[tuple[Kind, str, int]] = []
        for reading in readings:
            for metric in reading.metrics:
                group = groups[reading.kind, metric]
                order.append((reading.kind, metric, len(group)))
                group.append(reading)
        results = {key: self._score_group(*key, members) for key, members in groups.items()}
        for (_, metric), members in groups.items():
            for r in members:
                self.latest[metric, r.sensor_id] = r.metrics[metric]
        return [results[kind, metric][i] for kind, metric, i in order]

    def _score_group(self, kind: Kind, metric: str, members: list[Reading]) -> list[MetricScore]:
        combiner = self.combiner(kind, metric)
        n = len(members)
        keys = [r.sensor_id for r in members]
        ts = np.fromiter((r.ts.timestamp() for r in members), np.float64, n)
        x = np.fromiter((r.metrics[metric] for r in members), np.float64, n)
        neighbours = None
        if combiner.uses_neighbours:
            latest = self.latest
            neighbours = pad_neighbours(
                [
                    [latest[metric, s] for s in self.neighbours.get(k, ()) if (metric, s) in latest]
                    for k in keys
                ]
            )
        score, which, raw = combiner.process(keys, ts, x, neighbours)
        names = [d.name for d in combiner.detectors]
        return [
            MetricScore(
                r.sensor_id,
                kind,
                metric,
                r.ts,
                float(x[i]),
                float(score[i]),
                names[which[i]],
                float(raw[i]),
            )
            for i, r in enumerate(members)
        ]

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

"""Scores whole readings: every metric of every sensor, through its kind's detectors.

:class:`ReadingScorer` keeps one :class:`~stream.anomaly.combine.Combiner` per (kind,
metric), built from the :class:`~stream.anomaly.config.AnomalyConfig`, each holding
the state of every sensor that reports that metric. A batch of readings is split by
(kind, metric) and scored with the combiners' batched path, so a stream worker scores
thousands of readings per call.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from stream.anomaly.combine import Combiner
from stream.anomaly.config import DEFAULT_CONFIG, AnomalyConfig
from telemetry import Kind, Reading

__all__ = ["MetricScore", "ReadingScorer"]


@dataclass(frozen=True, slots=True)
class MetricScore:
    """The anomaly score of one metric of one reading.

    Attributes:
        sensor_id: the sensor.
        kind: its kind.
        metric: the metric.
        ts: the reading's event time.
        value: the metric's value.
        score: calibrated score in ``[0, 1]``; 0.5 is the alert level.
        detector: the detector behind the score.
        raw: that detector's own score.
    """

    sensor_id: str
    kind: Kind
    metric: str
    ts: datetime
    value: float
    score: float
    detector: str
    raw: float


class ReadingScorer:
    """Anomaly scores for every metric of a stream of readings.

    Args:
        config: which detectors run on which kind and metric.
    """

    def __init__(self, config: AnomalyConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self.combiners: dict[tuple[Kind, str], Combiner] = {}

    def combiner(self, kind: Kind, metric: str) -> Combiner:
        """The combiner of a kind's metric, built on first use."""
        combiner = self.combiners.get((kind, metric))
        if combiner is None:
            combiner = self.combiners[kind, metric] = self.config.combiner_for(kind, metric)
        return combiner

    def score(self, readings: Sequence[Reading]) -> list[MetricScore]:
        """Score, then learn, a batch of readings; one result per metric, in input order."""
        groups: dict[tuple[Kind, str], list[tuple[int, Reading]]] = defaultdict(list)
        order: list[tuple[Kind, str, int]] = []
        for reading in readings:
            for metric in reading.metrics:
                group = groups[reading.kind, metric]
                order.append((reading.kind, metric, len(group)))
                group.append((len(order) - 1, reading))
        results: dict[tuple[Kind, str], list[MetricScore]] = {}
        for (kind, metric), members in groups.items():
            combiner = self.combiner(kind, metric)
            keys = [r.sensor_id for _, r in members]
            ts = np.fromiter((r.ts.timestamp() for _, r in members), np.float64, len(members))
            x = np.fromiter((r.metrics[metric] for _, r in members), np.float64, len(members))
            score, which, raw = combiner.process(keys, ts, x)
            names = [d.name for d in combiner.detectors]
            results[kind, metric] = [
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
                for i, (_, r) in enumerate(members)
            ]
        return [results[kind, metric][i] for kind, metric, i in order]

    def score_all(self, readings: Iterable[Reading], batch: int = 5000) -> Iterable[MetricScore]:
        """Score a long stream of readings in batches, yielding results in input order."""
        chunk: list[Reading] = []
        for reading in readings:
            chunk.append(reading)
            if len(chunk) >= batch:
                yield from self.score(chunk)
                chunk = []
        if chunk:
            yield from self.score(chunk)

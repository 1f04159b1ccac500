"""Incident scoring: detections against the simulator's ground truth (``ground-truth.jsonl``).

The simulator writes one line per injected incident or sensor fault (a
:class:`TruthLabel`): what it is (``kind``), when (``start``, ``end``), and which
sensors and metrics it changes. A detector emits :class:`Detection` events, one per
flagged reading of one (sensor, metric) series. Scoring goes in three steps:

1. **Episodes.** On each (sensor, metric) series, detections less than ``merge_gap``
   apart merge into one alert :class:`Episode` -- what an operator would see as one
   alert.
2. **Matching.** An episode matches a label when its sensor is among the label's
   sensors, its metric among the label's metrics (if the label lists any), and it starts
   within ``[label.start, label.end + tolerance]`` (no upper limit when ``end`` is
   null). An episode may match several labels (a crowd surge and its occupancy tiers);
   one that matches none is a *false* episode.
3. **Per kind.** For each label kind: how many labels, how many were detected (recall),
   the median and maximum time to detect (the first matching episode's start minus the
   label's start), how many episodes matched, and precision.

Per-kind precision is ``matched / (matched + false)``, where ``matched`` counts the
episodes that match a label of the kind and ``false`` counts the false episodes on
sensors *of the kinds that the kind's labels touch*: a false alarm on any traffic
detector counts against ``traffic_accident``, not only one on the accident's own
segment. Sensor kinds come from ``sensor_kind`` (sensor id -> kind, e.g. from the
scenario's registry); without it, only the labels' own sensors count. A false episode
may so count against several kinds. Overall precision is matched episodes over all
episodes; overall recall is detected labels over all labels.

>>> from datetime import UTC, datetime, timedelta
>>> at = lambda minute: datetime(2024, 11, 8, 9, minute, tzinfo=UTC)
>>> label = TruthLabel(id="incident-1", category="incident", kind="traffic_accident",
...                    sensors=("tr-1",), start=at(0), end=at(30))
>>> detections = [Detection(at(4), "tr-1", "mean_speed_kmh", 0.9),
...               Detection(at(6), "tr-1", "mean_speed_kmh", 0.8),
...               Detection(at(40), "tr-2", "mean_speed_kmh", 0.7)]
>>> report = score_incidents([label], detections,
...                          sensor_kind={"tr-1": "traffic", "tr-2": "traffic"})
>>> accident = report.kinds["traffic_accident"]
>>> accident.recall, accident.median_ttd_s, accident.matched_episodes, accident.precision
(1.0, 240.0, 1, 0.5)
>>> print(format_report(report))
kind              category  labels  detected  recall  TTD median  TTD max  matched  false  precision
traffic_accident  incident       1         1    1.00          4m       4m        1      1       0.50
all                              1         1    1.00          4m       4m        1      1       0.50
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from stream.backtest.errors import BacktestError

__all__ = [
    "DEFAULT_MERGE_GAP",
    "DEFAULT_TOLERANCE",
    "Detection",
    "Episode",
    "IncidentReport",
    "KindScore",
    "LabelOutcome",
    "TruthLabel",
    "format_report",
    "load_ground_truth",
    "merge_episodes",
    "score_incidents",
]

DEFAULT_TOLERANCE = timedelta(minutes=30)
"""How long after a label's end an episode may still start and count as detecting it."""

DEFAULT_MERGE_GAP = timedelta(minutes=15)
"""Detections on one series less than this apart belong to one episode."""


class TruthLabel(BaseModel):
    """One injected incident or fault: a line of the simulator's ``ground-truth.jsonl``.

    Attributes:
        id: ``incident-N`` or ``fault-N``, with a suffix for what an incident implies
            (``incident-4-occupancy-90``).
        category: ``incident`` (something in the city) or ``fault`` (a broken sensor).
        kind: what it is, e.g. ``traffic_accident``, ``stuck``, ``occupancy_over_90pct``.
        start: when it began.
        end: when it was over; null when it never ended.
        sensor: the one sensor it is about, if it is about one.
        area: the place it is about, if any.
        area_type: what ``area`` is (``district``, ``segment``, ``scenic_area`` ...).
        sensors: every sensor whose readings it changes.
        metrics: the metrics it changes; empty means any.
        description: in words.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    category: Literal["incident", "fault"]
    kind: str
    start: AwareDatetime
    end: AwareDatetime | None = None
    sensor: str | None = None
    area: str | None = None
    area_type: str | None = None
    sensors: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    description: str = ""

    @field_validator("end")
    @classmethod
    def _ends_after_it_starts(cls, end: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("start")
        if end is not None and start is not None and end < start:
            msg = f"ends before it starts ({start.isoformat()})"
            raise ValueError(msg)
        return end

    @property
    def affected_sensors(self) -> tuple[str, ...]:
        """The sensors it changes: ``sensors``, or else the one ``sensor``."""
        if self.sensors:
            return self.sensors
        return (self.sensor,) if self.sensor else ()

    def matches(self, episode: Episode, tolerance: timedelta) -> bool:
        """Whether ``episode`` detects this label (see the module's docstring)."""
        if episode.sensor not in self.affected_sensors:
            return False
        if self.metrics and episode.metric not in self.metrics:
            return False
        if episode.start < self.start:
            return False
        return self.end is None or episode.start <= self.end + tolerance


def load_ground_truth(path: str | Path) -> list[TruthLabel]:
    """The labels of a ``ground-truth.jsonl`` file, in file order; blank lines are skipped.

    Raises:
        BacktestError: a line is not JSON or not a label; the message names the file,
            the line, the field and the value.
    """
    source = Path(path)
    labels: list[TruthLabel] = []
    with source.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                labels.append(TruthLabel.model_validate_json(line))
            except ValidationError as exc:
                msg = f"{source}: line {number}: {_describe(exc)}"
                raise BacktestError(msg) from None
    return labels


def _describe(error: ValidationError) -> str:
    """A validation error as ``field 'x': what is wrong (got value)``, one per problem."""
    parts = []
    for item in error.errors(include_url=False):
        what = str(item.get("ctx", {}).get("error", item["msg"]))
        if item["type"] == "json_invalid":
            parts.append(f"not JSON: {what}")
        elif item["loc"]:
            where = ".".join(str(part) for part in item["loc"])
            parts.append(f"field {where!r}: {what} (got {item['input']!r})")
        else:
            parts.append(what)
    return "; ".join(parts)


@dataclass(frozen=True)
class Detection:
    """A detector flagging one reading of one series.

    Attributes:
        timestamp: the reading's event time, zone-aware.
        sensor: the sensor id.
        metric: the metric flagged.
        score: the detector's anomaly score.

    Raises:
        BacktestError: the timestamp has no zone.
    """

    timestamp: datetime
    sensor: str
    metric: str
    score: float = 1.0

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None or self.timestamp.utcoffset() is None:
            msg = (
                f"detection of {self.sensor}/{self.metric}: timestamp {self.timestamp} has no zone"
            )
            raise BacktestError(msg)


@dataclass(frozen=True)
class Episode:
    """Detections on one series that follow each other closely: one alert.

    Attributes:
        sensor: the sensor id.
        metric: the metric.
        start: the first detection's time.
        end: the last detection's time.
        detections: how many detections it merges.
        peak_score: the highest score among them.
    """

    sensor: str
    metric: str
    start: datetime
    end: datetime
    detections: int
    peak_score: float


def merge_episodes(
    detections: Iterable[Detection], merge_gap: timedelta = DEFAULT_MERGE_GAP
) -> list[Episode]:
    """Merge each series' detections less than ``merge_gap`` apart into episodes.

    Returns:
        The episodes, by start time (then sensor and metric).
    """
    by_series: dict[tuple[str, str], list[Detection]] = defaultdict(list)
    for detection in detections:
        by_series[detection.sensor, detection.metric].append(detection)
    episodes: list[Episode] = []
    for (sensor, metric), items in by_series.items():
        items.sort(key=lambda d: d.timestamp)
        run = [items[0]]
        for detection in items[1:]:
            if detection.timestamp - run[-1].timestamp < merge_gap:
                run.append(detection)
            else:
                episodes.append(_episode(sensor, metric, run))
                run = [detection]
        episodes.append(_episode(sensor, metric, run))
    episodes.sort(key=lambda e: (e.start, e.sensor, e.metric))
    return episodes


def _episode(sensor: str, metric: str, run: Sequence[Detection]) -> Episode:
    return Episode(
        sensor=sensor,
        metric=metric,
        start=run[0].timestamp,
        end=run[-1].timestamp,
        detections=len(run),
        peak_score=max(d.score for d in run),
    )


@dataclass(frozen=True)
class LabelOutcome:
    """How one label fared.

    Attributes:
        label: the label.
        episodes: the episodes that match it, by start time.
    """

    label: TruthLabel
    episodes: tuple[Episode, ...]

    @property
    def detected(self) -> bool:
        """Whether any episode matches it."""
        return bool(self.episodes)

    @property
    def time_to_detect_s(self) -> float | None:
        """Seconds from the label's start to its first matching episode; None if missed."""
        if not self.episodes:
            return None
        return (self.episodes[0].start - self.label.start).total_seconds()


@dataclass(frozen=True)
class KindScore:
    """Detection quality for one label kind.

    Attributes:
        kind: the label kind.
        category: ``incident`` or ``fault``.
        labels: labels of this kind.
        detected: labels of this kind with a matching episode.
        recall: ``detected / labels``.
        median_ttd_s: median time to detect of the detected labels, seconds; None if none.
        max_ttd_s: the longest time to detect, seconds; None if none was detected.
        matched_episodes: episodes that match a label of this kind.
        false_episodes: false episodes on sensors of the kinds this kind's labels touch.
        precision: ``matched / (matched + false)``; None when both are 0.
    """

    kind: str
    category: str
    labels: int
    detected: int
    recall: float
    median_ttd_s: float | None
    max_ttd_s: float | None
    matched_episodes: int
    false_episodes: int
    precision: float | None


@dataclass(frozen=True)
class IncidentReport:
    """Detections scored against ground truth.

    Attributes:
        kinds: the score of each label kind, incidents first, in order of appearance.
        outcomes: each label's outcome, in the labels' order.
        episodes: every episode, by start time.
        false_episodes: the episodes that match no label.
        tolerance: how long after a label's end an episode could still match.
        merge_gap: detections closer than this merged into one episode.
    """

    kinds: Mapping[str, KindScore]
    outcomes: tuple[LabelOutcome, ...]
    episodes: tuple[Episode, ...]
    false_episodes: tuple[Episode, ...]
    tolerance: timedelta
    merge_gap: timedelta

    @property
    def recall(self) -> float | None:
        """Detected labels over all labels; None without labels."""
        if not self.outcomes:
            return None
        return sum(o.detected for o in self.outcomes) / len(self.outcomes)

    @property
    def precision(self) -> float | None:
        """Episodes that match a label over all episodes; None without episodes."""
        if not self.episodes:
            return None
        return (len(self.episodes) - len(self.false_episodes)) / len(self.episodes)


def score_incidents(
    labels: Sequence[TruthLabel],
    detections: Iterable[Detection],
    *,
    sensor_kind: Mapping[str, str] | None = None,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    merge_gap: timedelta = DEFAULT_MERGE_GAP,
) -> IncidentReport:
    """Score detections against ground-truth labels, per label kind.

    Args:
        labels: the ground truth, e.g. from :func:`load_ground_truth`.
        detections: the detector's flagged readings.
        sensor_kind: each sensor's kind (``traffic``, ``pollution`` ...); a false
            episode counts against a label kind when its sensor is of a kind that the
            label kind's sensors have. Without it, only against label kinds whose
            labels name that very sensor.
        tolerance: how long after a label's end an episode may start and still match.
        merge_gap: detections on one series less than this apart form one episode.

    Returns:
        The report; see :func:`format_report` for a table of it.
    """
    episodes = merge_episodes(detections, merge_gap)
    outcomes = tuple(
        LabelOutcome(label, tuple(e for e in episodes if label.matches(e, tolerance)))
        for label in labels
    )
    matched_ids = {id(e) for o in outcomes for e in o.episodes}
    false_episodes = tuple(e for e in episodes if id(e) not in matched_ids)

    def group(sensor: str) -> str | None:
        return sensor if sensor_kind is None else sensor_kind.get(sensor)

    by_kind: dict[str, list[LabelOutcome]] = defaultdict(list)
    for outcome in sorted(outcomes, key=lambda o: o.label.category != "incident"):
        by_kind[outcome.label.kind].append(outcome)
    kinds: dict[str, KindScore] = {}
    for kind, items in by_kind.items():
        scope = {group(s) for o in items for s in o.label.affected_sensors} - {None}
        matched = len({id(e) for o in items for e in o.episodes})
        false = sum(1 for e in false_episodes if group(e.sensor) in scope)
        ttds = [t for o in items if (t := o.time_to_detect_s) is not None]
        kinds[kind] = KindScore(
            kind=kind,
            category=items[0].label.category,
            labels=len(items),
            detected=len(ttds),
            recall=len(ttds) / len(items),
            median_ttd_s=float(statistics.median(ttds)) if ttds else None,
            max_ttd_s=max(ttds) if ttds else None,
            matched_episodes=matched,
            false_episodes=false,
            precision=matched / (matched + false) if matched + false else None,
        )
    return IncidentReport(
        kinds=MappingProxyType(kinds),
        outcomes=outcomes,
        episodes=tuple(episodes),
        false_episodes=false_episodes,
        tolerance=tolerance,
        merge_gap=merge_gap,
    )


_COLUMNS = (
    ("kind", "<"),
    ("category", "<"),
    ("labels", ">"),
    ("detected", ">"),
    ("recall", ">"),
    ("TTD median", ">"),
    ("TTD max", ">"),
    ("matched", ">"),
    ("false", ">"),
    ("precision", ">"),
)


def format_report(report: IncidentReport) -> str:
    """The report as a plain-text table: one row per label kind and a total row ``all``.

    Times to detect read ``4m``, ``1h05m``; a ratio with nothing to divide reads ``-``.
    """
    rows = [
        [
            k.kind,
            k.category,
            str(k.labels),
            str(k.detected),
            _ratio(k.recall),
            _duration(k.median_ttd_s),
            _duration(k.max_ttd_s),
            str(k.matched_episodes),
            str(k.false_episodes),
            _ratio(k.precision),
        ]
        for k in report.kinds.values()
    ]
    ttds = [t for o in report.outcomes if (t := o.time_to_detect_s) is not None]
    rows.append(
        [
            "all",
            "",
            str(len(report.outcomes)),
            str(len(ttds)),
            _ratio(report.recall),
            _duration(statistics.median(ttds) if ttds else None),
            _duration(max(ttds) if ttds else None),
            str(len(report.episodes) - len(report.false_episodes)),
            str(len(report.false_episodes)),
            _ratio(report.precision),
        ]
    )
    header = [name for name, _ in _COLUMNS]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            f"{cell:{align}{width}}"
            for cell, (_, align), width in zip(row, _COLUMNS, widths, strict=True)
        ).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _duration(seconds: float | None) -> str:
    """``45s``, ``4m``, ``12m30s``, ``1h05m``; ``-`` for None."""
    if seconds is None:
        return "-"
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"

"""Numenta Anomaly Benchmark (NAB v1.1) scoring, written from NAB's published definition.

A detector gives every row of a series an anomaly score. One threshold per profile,
the same for every file, turns scores into detections (``score >= threshold``). Labels
are *windows* of rows around each known anomaly. The score of a set of files is a sum:

* the first rows of each file (15 %, at most 750: :func:`probation_length`) are a
  probationary period; they are neither detections nor misses;
* a window with a detection adds ``tp_weight * S(p) / S(-1)`` for its *earliest*
  detected row only, where ``S`` is :func:`scaled_sigmoid` and ``p`` in ``[-1, 0)`` is
  the row's relative position in the window: detecting on the window's first row earns
  exactly ``tp_weight``, later rows less;
* a window with no detection costs ``fn_weight`` -- unless it lies wholly in the
  probationary period, where it counts for nothing;
* each detected row outside the windows costs ``fp_weight`` when no window came before
  it, else adds ``fp_weight * S(d)`` (a negative number), where ``d`` is the rows
  between it and the previous window's last row over that window's width less one:
  right after a window a false positive costs almost nothing, from ``d > 3`` the full
  ``fp_weight``.

:func:`score_corpus` sweeps every distinct score as a threshold, keeps the one with the
highest total per profile (ties go to the highest threshold, as in NAB's optimiser) and
normalises the total the way NAB's ``Runner.normalize`` does::

    normalized = 100 * (raw - null) / (perfect - null)

where ``null`` is what NAB's null detector (a constant 0.5 on every row, with its own
optimised threshold) scores on the same files -- in practice no detections, so minus
``fn_weight`` per window -- and ``perfect`` is ``tp_weight`` times the number of label
windows of those files.

>>> from datetime import UTC, datetime, timedelta
>>> t = [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=5 * i) for i in range(100)]
>>> windows = {"demo/a.csv": [(t[40], t[49])]}
>>> scores = [0.0] * 100
>>> scores[42], scores[80] = 0.9, 0.6
>>> result = score_corpus([ScoredSeries("demo/a.csv", t, scores)], windows)["standard"]
>>> result.threshold, round(result.raw, 4), result.null, result.perfect
(0.9, 0.9771, -1.0, 1.0)
>>> round(result.normalized, 2)
98.86

At 0.5 the detection of row 80, long after the window, costs the full ``fp_weight``:

>>> fixed = score_at_threshold(
...     [ScoredSeries("demo/a.csv", t, scores)], windows, PROFILES["standard"], 0.5
... )
>>> round(fixed.raw, 4), fixed.files["demo/a.csv"].fp
(0.8671, 1)
"""

from __future__ import annotations

import bisect
import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from stream.backtest.errors import BacktestError

__all__ = [
    "NO_DETECTION",
    "PROBATION_PERCENT",
    "PROFILES",
    "CorpusScore",
    "FileScore",
    "Profile",
    "ScoredSeries",
    "ThresholdSweep",
    "Window",
    "WindowDetection",
    "format_detections",
    "format_report",
    "label_key",
    "load_series",
    "load_windows",
    "normalize",
    "parse_timestamp",
    "probation_length",
    "row_weights",
    "scaled_sigmoid",
    "score_at_threshold",
    "score_corpus",
    "threshold_sweep",
    "window_detections",
]

Window = tuple[datetime, datetime]
"""A label window: its first and last row's timestamps, both inclusive."""

FloatArray = npt.NDArray[np.float64]
Scores = Sequence[float] | npt.NDArray[np.floating[Any]]

PROBATION_PERCENT: Final = 0.15
"""The share of each file's first rows that is not scored (NAB's ``probationaryPercent``)."""

_PROBATION_CAP_ROWS: Final = 5000
"""NAB caps the probationary period at ``PROBATION_PERCENT`` of this many rows (750)."""

NO_DETECTION: Final = math.inf
"""The threshold at which nothing is detected. NAB's sweep writes 1.1 there instead,
which for scores in [0, 1] means the same."""

_NULL_SCORE: Final = 0.5
"""What NAB's null detector says about every row."""


@dataclass(frozen=True)
class Profile:
    """The weights of one NAB application profile (``config/profiles.json``).

    Attributes:
        name: the profile's name in NAB.
        tp_weight: what the earliest possible detection of a window earns.
        fp_weight: what a detection far from any window costs.
        fn_weight: what a window without a detection costs.
        tn_weight: listed by NAB but used by no NAB score; kept for completeness.
    """

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float
    tn_weight: float = 1.0


PROFILES: Final[Mapping[str, Profile]] = MappingProxyType(
    {
        "standard": Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),
        "reward_low_FP_rate": Profile(
            "reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0
        ),
        "reward_low_FN_rate": Profile(
            "reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0
        ),
    }
)
"""NAB's three profiles, by name, as in NAB's ``config/profiles.json``."""


# ---------------------------------------------------------------- input


def parse_timestamp(text: str, zone: tzinfo = UTC) -> datetime:
    """A NAB timestamp (``YYYY-MM-DD HH:MM:SS[.ffffff]``, no zone) as an aware datetime.

    NAB's timestamps carry no zone; they are read in ``zone`` (UTC by default, or the
    zone the data files were read in). One with a zone is converted to UTC.

    >>> parse_timestamp("2015-09-11 15:34:00.000000")
    datetime.datetime(2015, 9, 11, 15, 34, tzinfo=datetime.timezone.utc)

    Raises:
        BacktestError: the text is not such a timestamp.
    """
    try:
        ts = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        msg = f"{text!r} is not a timestamp of the form 'YYYY-MM-DD HH:MM:SS.ffffff'"
        raise BacktestError(msg) from None
    return ts.replace(tzinfo=zone) if ts.tzinfo is None else ts.astimezone(UTC)


def load_windows(path: str | Path, zone: tzinfo = UTC) -> dict[str, list[Window]]:
    """NAB's label windows (``labels/combined_windows.json``), by file key.

    Keys are data paths relative to NAB's ``data/`` folder, e.g.
    ``realTraffic/occupancy_6005.csv``; each window is ``[start, end]``, both inclusive,
    in time order. Timestamps are read in ``zone`` (UTC by default).

    Raises:
        BacktestError: the file is not JSON of that shape, or a window is reversed,
            out of order or overlaps the one before; the message names the file, key
            and value.
    """
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        msg = f"{source}: not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        raise BacktestError(msg) from None
    if not isinstance(data, dict):
        msg = f"{source}: expected an object of file keys, got {type(data).__name__}"
        raise BacktestError(msg)
    windows: dict[str, list[Window]] = {}
    for key, items in data.items():
        if not isinstance(items, list):
            msg = f"{source}: {key!r}: expected a list of windows, got {items!r}"
            raise BacktestError(msg)
        parsed: list[Window] = []
        for number, item in enumerate(items):
            if not (
                isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
            ):
                msg = f"{source}: {key!r} window {number}: expected [start, end], got {item!r}"
                raise BacktestError(msg)
            try:
                parsed.append((parse_timestamp(item[0], zone), parse_timestamp(item[1], zone)))
            except BacktestError as exc:
                msg = f"{source}: {key!r} window {number}: {exc}"
                raise BacktestError(msg) from None
        _check_windows(key, parsed, source=str(source))
        windows[key] = parsed
    return windows


def label_key(path: str | Path, keys: Iterable[str]) -> str:
    """The label key of a data file: the key that is the path's ``category/file.csv`` tail.

    >>> label_key("../shared/data/nab-dev/realTraffic/speed_7578.csv",
    ...           ["realTraffic/speed_7578.csv", "realTraffic/occupancy_6005.csv"])
    'realTraffic/speed_7578.csv'

    Raises:
        BacktestError: no key matches the path.
    """
    file = Path(path)
    tail = f"{file.parent.name}/{file.name}"
    if tail in set(keys):
        return tail
    msg = f"{str(path)!r}: no label key {tail!r} in the label windows"
    raise BacktestError(msg)


def load_series(path: str | Path) -> tuple[list[datetime], FloatArray]:
    """A NAB data file (header ``timestamp,value``): its UTC timestamps and its values.

    Raises:
        BacktestError: the header is not ``timestamp,value``, or a row's timestamp or
            value does not parse; the message names the file, line and value.
    """
    source = Path(path)
    timestamps: list[datetime] = []
    values: list[float] = []
    with source.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header != ["timestamp", "value"]:
            msg = f"{source}: expected the header 'timestamp,value', got {header!r}"
            raise BacktestError(msg)
        for line, row in enumerate(rows, start=2):
            try:
                if len(row) != 2:
                    raise ValueError
                timestamps.append(parse_timestamp(row[0]))
                values.append(float(row[1]))
            except (BacktestError, ValueError):
                msg = f"{source}: line {line}: expected 'timestamp,value', got {','.join(row)!r}"
                raise BacktestError(msg) from None
    return timestamps, np.asarray(values, dtype=np.float64)


def _check_windows(key: str, windows: Sequence[Window], *, source: str = "windows") -> None:
    """Raise unless the windows are forward, in time order and apart."""
    for number, (start, end) in enumerate(windows):
        if end < start:
            msg = f"{source}: {key!r} window {number} ends ({end}) before it starts ({start})"
            raise BacktestError(msg)
    for number, (before, after) in enumerate(pairwise(windows), start=1):
        if after[0] <= before[1]:
            msg = (
                f"{source}: {key!r} window {number} starts ({after[0]}) before the window"
                f" ahead of it ends ({before[1]}); windows must be in time order and apart"
            )
            raise BacktestError(msg)


@dataclass(frozen=True)
class ScoredSeries:
    """One file's anomaly scores, as a detector gave them.

    Attributes:
        key: the file's label key, e.g. ``realTraffic/speed_7578.csv``.
        timestamps: the rows' times, zone-aware and in time order (repeats allowed, as
            in NAB's own data); window limits must be among them.
        scores: one finite anomaly score per row; higher is more anomalous.

    Raises:
        BacktestError: lengths differ, a timestamp has no zone or goes back in time, or
            a score is not finite.
    """

    key: str
    timestamps: Sequence[datetime]
    scores: Scores

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, dtype=np.float64)
        if scores.shape != (len(self.timestamps),):
            msg = (
                f"{self.key!r}: {len(self.timestamps)} timestamps but scores of shape"
                f" {scores.shape}; expected one score per row"
            )
            raise BacktestError(msg)
        bad = np.flatnonzero(~np.isfinite(scores))
        if bad.size:
            msg = f"{self.key!r}: row {bad[0]}: score {scores[bad[0]]} is not a finite number"
            raise BacktestError(msg)
        for row, ts in enumerate(self.timestamps):
            if ts.tzinfo is None or ts.utcoffset() is None:
                msg = f"{self.key!r}: row {row}: timestamp {ts} has no zone"
                raise BacktestError(msg)
        for row, (before, after) in enumerate(pairwise(self.timestamps), start=1):
            if after < before:
                msg = (
                    f"{self.key!r}: row {row}: timestamp {after} is before the row ahead ({before})"
                )
                raise BacktestError(msg)


# ---------------------------------------------------------------- the scoring function


def probation_length(rows: int, percent: float = PROBATION_PERCENT) -> int:
    """How many first rows of a file are not scored: 15 % of them, at most 750.

    NAB computes ``min(floor(percent * rows), percent * 5000)``.

    >>> probation_length(1127), probation_length(15842)
    (169, 750)
    """
    return int(min(math.floor(percent * rows), percent * _PROBATION_CAP_ROWS))


def scaled_sigmoid(position: float) -> float:
    """NAB's scaled sigmoid ``2 / (1 + exp(5 * position)) - 1``, and -1 past ``position`` 3.

    ``position`` is a row's place relative to a window's end: -1 at the window's first
    row (0.98661), just below 0 at its last row, and after the window the distance past
    its end in units of its width (so negative scores: -0.98661 at one width).

    >>> round(scaled_sigmoid(-1.0), 5), scaled_sigmoid(0.0), scaled_sigmoid(3.5)
    (0.98661, 0.0, -1.0)
    """
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def _scaled_sigmoid(position: FloatArray) -> FloatArray:
    """:func:`scaled_sigmoid` of every element."""
    curve = 2.0 / (1.0 + np.exp(5.0 * np.minimum(position, 3.0))) - 1.0
    return np.where(position > 3.0, -1.0, curve)


_MAX_TP: Final = scaled_sigmoid(-1.0)
"""What detecting on a window's first row is worth before NAB rescales it to ``tp_weight``."""


@dataclass(frozen=True)
class _Layout:
    """One file's rows, placed against its windows; the same for every profile.

    Attributes:
        key: the file's label key.
        scores: every row's anomaly score.
        window: per row, the index of its window in the file, or -1 outside windows.
        curve: per row, :func:`scaled_sigmoid` of its position (in a window: relative to
            the window; after one: past the previous window; before any: -1).
        bounds: each window's first and last row index.
        probation: how many first rows are not scored.
    """

    key: str
    scores: FloatArray
    window: npt.NDArray[np.int64]
    curve: FloatArray
    bounds: tuple[tuple[int, int], ...]
    probation: int
    scorable: npt.NDArray[np.bool_] = field(init=False)

    def __post_init__(self) -> None:
        rows = np.arange(self.scores.size)
        object.__setattr__(self, "scorable", rows >= self.probation)

    def weights(self, profile: Profile) -> FloatArray:
        """What detecting each row would add: a TP value in windows, an FP cost outside."""
        inside = self.window >= 0
        return np.where(
            inside, self.curve * profile.tp_weight / _MAX_TP, self.curve * profile.fp_weight
        )

    def scored_windows(self) -> list[tuple[int, int]]:
        """The scorable rows (first, last) of each window that has any."""
        return [
            (max(first, self.probation), last)
            for first, last in self.bounds
            if last >= self.probation
        ]


def _layout(series: ScoredSeries, windows: Mapping[str, Sequence[Window]]) -> _Layout:
    """Place a file's rows against its label windows."""
    if series.key not in windows:
        msg = f"{series.key!r}: no such key in the label windows"
        raise BacktestError(msg)
    limits = list(windows[series.key])
    _check_windows(series.key, limits)
    timestamps = series.timestamps
    n = len(timestamps)
    bounds = tuple(
        (_row_of(series, start, "starts"), _row_of(series, end, "ends")) for start, end in limits
    )
    rows = np.arange(n, dtype=np.float64)
    window = np.full(n, -1, dtype=np.int64)
    curve = np.full(n, -1.0)  # before the first window: the full FP cost
    for number, (first, last) in enumerate(bounds):
        width = last - first + 1
        inside = slice(first, last + 1)
        window[inside] = number
        curve[inside] = _scaled_sigmoid(-(last - rows[inside] + 1) / width)
        # After the window, until the next one starts: distance past its end in widths.
        stop = bounds[number + 1][0] if number + 1 < len(bounds) else n
        after = slice(last + 1, stop)
        if width > 1:
            curve[after] = _scaled_sigmoid(np.abs(last - rows[after]) / (width - 1))
        # A one-row window has no width to measure by (NAB divides by zero): full cost.
    return _Layout(
        key=series.key,
        scores=np.asarray(series.scores, dtype=np.float64),
        window=window,
        curve=curve,
        bounds=bounds,
        probation=probation_length(n),
    )


def _row_of(series: ScoredSeries, ts: datetime, role: str) -> int:
    """The first row at ``ts``; a window limit must be a row's timestamp."""
    row = bisect.bisect_left(series.timestamps, ts)
    if row == len(series.timestamps) or series.timestamps[row] != ts:
        msg = f"{series.key!r}: a window {role} at {ts}, which is no row's timestamp"
        raise BacktestError(msg)
    return row


def row_weights(
    series: ScoredSeries, windows: Mapping[str, Sequence[Window]], profile: Profile
) -> FloatArray:
    """NAB's per-row weighted score: what detecting each row would add to the file's score.

    In a window it is the row's TP value (``tp_weight`` on the window's first row, less
    later); outside, the negative FP cost. Rows of the probationary period get a value
    too, but it never counts. NAB calls this the row's sweep score.
    """
    return _layout(series, windows).weights(profile)


# ---------------------------------------------------------------- scores


@dataclass(frozen=True)
class FileScore:
    """One file's NAB score at one threshold, with NAB's row counts.

    Attributes:
        key: the file's label key.
        threshold: rows with ``score >= threshold`` are detections.
        score: the file's raw NAB score.
        tp: detected rows in windows (after the probationary period).
        fp: detected rows outside windows.
        fn: undetected rows in windows.
        tn: undetected rows outside windows.
        windows: label windows the file has (including any wholly in probation).
        detected_windows: windows with at least one detection.
    """

    key: str
    threshold: float
    score: float
    tp: int
    fp: int
    fn: int
    tn: int
    windows: int
    detected_windows: int

    @property
    def total(self) -> int:
        """Rows scored (all but the probationary period), as NAB's ``Total_Count``."""
        return self.tp + self.fp + self.fn + self.tn


def _file_score(layout: _Layout, profile: Profile, threshold: float) -> FileScore:
    """A file's score at a threshold, window by window."""
    weights = layout.weights(profile)
    inside = layout.window >= 0
    detected = layout.scorable & (layout.scores >= threshold)
    score = float(weights[detected & ~inside].sum())
    found = 0
    for first, last in layout.scored_windows():
        hits = np.flatnonzero(detected[first : last + 1])
        if hits.size:
            found += 1
            score += float(weights[first + hits[0]])  # the earliest detection only
        else:
            score -= profile.fn_weight
    tp = int(np.count_nonzero(detected & inside))
    fp = int(np.count_nonzero(detected & ~inside))
    return FileScore(
        key=layout.key,
        threshold=threshold,
        score=score,
        tp=tp,
        fp=fp,
        fn=int(np.count_nonzero(layout.scorable & inside)) - tp,
        tn=int(np.count_nonzero(layout.scorable & ~inside)) - fp,
        windows=len(layout.bounds),
        detected_windows=found,
    )


@dataclass(frozen=True)
class ThresholdSweep:
    """The total score of a set of files at every threshold that changes it.

    Arrays run from the highest threshold (:data:`NO_DETECTION`, nothing detected) down
    to the lowest score (everything detected); each holds one entry per threshold.

    Attributes:
        profile: the profile scored.
        thresholds: every distinct score, in descending order, after ``NO_DETECTION``.
        scores: the summed raw score at each threshold.
        tp: detected rows in windows at each threshold.
        fp: detected rows outside windows at each threshold.
        fn: undetected rows in windows at each threshold.
        tn: undetected rows outside windows at each threshold.
    """

    profile: Profile
    thresholds: FloatArray
    scores: FloatArray
    tp: npt.NDArray[np.int64]
    fp: npt.NDArray[np.int64]
    fn: npt.NDArray[np.int64]
    tn: npt.NDArray[np.int64]

    @property
    def best(self) -> int:
        """The index of the highest score; among equal ones, the highest threshold."""
        return int(np.argmax(self.scores))


def _sweep(
    layouts: Sequence[_Layout], profile: Profile, *, constant: float | None = None
) -> ThresholdSweep:
    """Score every distinct threshold at once: sort rows by score, accumulate the gains.

    Lowering the threshold past a row adds its FP cost if it is outside windows; inside
    a window it raises the window's value from ``-fn_weight`` (or its current best) to
    the row's TP value if that is higher, i.e. if the row is the earliest detection yet.
    """
    scores_parts: list[FloatArray] = []
    weight_parts: list[FloatArray] = []
    window_parts: list[npt.NDArray[np.int64]] = []
    offset = 0
    for layout in layouts:
        keep = layout.scorable
        scores = layout.scores[keep]
        scores_parts.append(np.full(scores.size, constant) if constant is not None else scores)
        weight_parts.append(layout.weights(profile)[keep])
        local = layout.window[keep]
        window_parts.append(np.where(local >= 0, local + offset, -1))
        offset += len(layout.bounds)
    scores = np.concatenate(scores_parts) if scores_parts else np.empty(0)
    weights = np.concatenate(weight_parts) if weight_parts else np.empty(0)
    window = np.concatenate(window_parts) if window_parts else np.empty(0, dtype=np.int64)

    order = np.argsort(-scores, kind="stable")
    scores, weights, window = scores[order], weights[order], window[order]
    inside = window >= 0
    gain = np.where(inside, 0.0, weights)

    # Per window, in the order its rows are detected: the running best TP value.
    rows_in = np.flatnonzero(inside)
    rows_in = rows_in[np.argsort(window[rows_in], kind="stable")]
    ids = window[rows_in]
    starts = np.flatnonzero(np.diff(ids, prepend=-1))  # where each window's rows begin
    stops = np.r_[starts[1:], ids.size] if starts.size else starts
    miss = -profile.fn_weight
    for first, stop in zip(starts, stops, strict=True):
        rows = rows_in[first:stop]
        best = np.maximum(np.maximum.accumulate(weights[rows]), miss)
        gain[rows] = np.diff(best, prepend=miss)
    base = miss * starts.size  # every window the detector can see, missed

    totals = base + np.cumsum(gain)
    last = (
        np.flatnonzero(np.r_[scores[1:] != scores[:-1], True]) if scores.size else np.empty(0, int)
    )
    tp = np.cumsum(inside)[last]
    fp = np.cumsum(~inside)[last]
    n_in = int(np.count_nonzero(inside))
    n_out = scores.size - n_in
    return ThresholdSweep(
        profile=profile,
        thresholds=np.r_[NO_DETECTION, scores[last]],
        scores=np.r_[base, totals[last]],
        tp=np.r_[0, tp].astype(np.int64),
        fp=np.r_[0, fp].astype(np.int64),
        fn=np.r_[n_in, n_in - tp].astype(np.int64),
        tn=np.r_[n_out, n_out - fp].astype(np.int64),
    )


def threshold_sweep(
    files: Sequence[ScoredSeries], windows: Mapping[str, Sequence[Window]], profile: Profile
) -> ThresholdSweep:
    """The summed raw score of ``files`` at every distinct threshold (NAB's sweep).

    Raises:
        BacktestError: a file has no label key, a key repeats, or a window limit is no
            row's timestamp.
    """
    return _sweep(_layouts(files, windows), profile)


@dataclass(frozen=True)
class CorpusScore:
    """A set of files scored for one profile at one threshold, normalised as NAB does.

    Attributes:
        profile: the profile.
        threshold: the threshold (the best one, from :func:`score_corpus`).
        raw: the summed raw score of the files at the threshold.
        null: what NAB's null detector scores on the same files.
        perfect: ``tp_weight`` times the number of the files' label windows.
        normalized: ``100 * (raw - null) / (perfect - null)``: 100 perfect, 0 no better
            than detecting nothing; NaN when the files have no windows.
        files: each file's score at the threshold, by key, in input order.
    """

    profile: Profile
    threshold: float
    raw: float
    null: float
    perfect: float
    normalized: float
    files: Mapping[str, FileScore]


def normalize(raw: float, null: float, perfect: float) -> float:
    """NAB's normalised score ``100 * (raw - null) / (perfect - null)``; NaN if undefined.

    >>> normalize(-1.0, -4.0, 4.0)
    37.5
    """
    if perfect == null:
        return math.nan
    return 100.0 * (raw - null) / (perfect - null)


def _layouts(
    files: Sequence[ScoredSeries], windows: Mapping[str, Sequence[Window]]
) -> list[_Layout]:
    seen: set[str] = set()
    for series in files:
        if series.key in seen:
            msg = f"{series.key!r}: the file is given twice"
            raise BacktestError(msg)
        seen.add(series.key)
    return [_layout(series, windows) for series in files]


def _corpus_score(layouts: Sequence[_Layout], profile: Profile, threshold: float) -> CorpusScore:
    files = {layout.key: _file_score(layout, profile, threshold) for layout in layouts}
    # NAB's null detector: a constant score, its threshold optimised like any other's.
    # It either detects nothing or everything; its total is the files' sum, as in NAB.
    null_sweep = _sweep(layouts, profile, constant=_NULL_SCORE)
    everything = null_sweep.best > 0
    null_threshold = -math.inf if everything else NO_DETECTION
    null = float(sum(_file_score(layout, profile, null_threshold).score for layout in layouts))
    perfect = profile.tp_weight * sum(len(layout.bounds) for layout in layouts)
    raw = float(sum(file.score for file in files.values()))
    return CorpusScore(
        profile=profile,
        threshold=threshold,
        raw=raw,
        null=null,
        perfect=perfect,
        normalized=normalize(raw, null, perfect),
        files=MappingProxyType(files),
    )


def score_at_threshold(
    files: Sequence[ScoredSeries],
    windows: Mapping[str, Sequence[Window]],
    profile: Profile,
    threshold: float,
) -> CorpusScore:
    """Score ``files`` for one profile at a fixed threshold (``score >= threshold`` detects).

    Raises:
        BacktestError: a file has no label key, a key repeats, or a window limit is no
            row's timestamp.
    """
    return _corpus_score(_layouts(files, windows), profile, threshold)


def score_corpus(
    files: Sequence[ScoredSeries],
    windows: Mapping[str, Sequence[Window]],
    profiles: Iterable[Profile] | None = None,
) -> dict[str, CorpusScore]:
    """NAB's benchmark score of ``files``: per profile, the best threshold and its score.

    Args:
        files: each file's anomaly scores; keys must be in ``windows``.
        windows: label windows by key, e.g. from :func:`load_windows`. Keys without a
            file are ignored; ``null`` and ``perfect`` count only the files given.
        profiles: the profiles to score; NAB's three (:data:`PROFILES`) by default.

    Returns:
        The score of each profile, by profile name.

    Raises:
        BacktestError: a file has no label key, a key repeats, or a window limit is no
            row's timestamp.
    """
    layouts = _layouts(files, windows)
    result: dict[str, CorpusScore] = {}
    for profile in PROFILES.values() if profiles is None else profiles:
        sweep = _sweep(layouts, profile)
        result[profile.name] = _corpus_score(layouts, profile, float(sweep.thresholds[sweep.best]))
    return result


def format_report(results: Mapping[str, CorpusScore]) -> str:
    """:func:`score_corpus` results as a plain-text table: one row per profile, then files.

    The file rows give each file's label windows and, per profile, the windows it
    detected and its raw score at that profile's threshold.
    """
    summary = [["profile", "threshold", "raw", "null", "perfect", "NAB score"]]
    for name, result in results.items():
        summary.append(
            [
                name,
                f"{result.threshold:.6g}",
                f"{result.raw:.3f}",
                f"{result.null:.3f}",
                f"{result.perfect:.3f}",
                f"{result.normalized:.2f}",
            ]
        )
    files = [["file", "windows", *(f"{name} (found, raw)" for name in results)]]
    keys = next(iter(results.values())).files if results else {}
    for key, first in keys.items():
        cells = [
            f"{r.files[key].detected_windows}, {r.files[key].score:.3f}" for r in results.values()
        ]
        files.append([key, str(first.windows), *cells])
    return f"{_table(summary)}\n\n{_table(files)}"


@dataclass(frozen=True)
class WindowDetection:
    """When a label window was first detected at a threshold: NAB's incidents, one by one.

    Attributes:
        key: the file's label key.
        start: the window's first row's time.
        end: the window's last row's time.
        detected: the first scored row in the window at or above the threshold, if any.
    """

    key: str
    start: datetime
    end: datetime
    detected: datetime | None

    @property
    def delay(self) -> timedelta | None:
        """From the window's start to its first detection.

        NAB centres windows on the anomaly, so the first half of a window is lead time.
        """
        return None if self.detected is None else self.detected - self.start


def window_detections(
    files: Sequence[ScoredSeries], windows: Mapping[str, Sequence[Window]], threshold: float
) -> list[WindowDetection]:
    """Each window of each file with its first detection at ``threshold``, in file order.

    Rows of the probationary period do not count, as in the score.
    """
    found: list[WindowDetection] = []
    for series in files:
        scores = np.asarray(series.scores, dtype=np.float64)
        first = probation_length(len(series.timestamps))
        for start, end in windows[series.key]:
            detected = next(
                (
                    ts
                    for row, ts in enumerate(series.timestamps)
                    if row >= first and start <= ts <= end and scores[row] >= threshold
                ),
                None,
            )
            found.append(WindowDetection(series.key, start, end, detected))
    return found


def format_detections(detections: Sequence[WindowDetection]) -> str:
    """Window detections as a table: file, window, first detection and delay."""
    rows = [["file", "window start", "window end", "first detection", "after start"]]
    for d in detections:
        rows.append(
            [
                d.key,
                f"{d.start:%Y-%m-%d %H:%M}",
                f"{d.end:%Y-%m-%d %H:%M}",
                "-" if d.detected is None else f"{d.detected:%Y-%m-%d %H:%M}",
                "-" if d.delay is None else _duration(d.delay),
            ]
        )
    return _table(rows)


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    return (f"{days}d" if days else "") + f"{hours}h{minutes:02d}m"


def _table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as aligned columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )

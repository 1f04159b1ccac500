"""Backtests: how good are the anomaly detectors, measured against labelled data.

Two yardsticks, both pure functions of scores and labels (no I/O beyond reading label
files, no Faust):

* :mod:`stream.backtest.nab` -- the Numenta Anomaly Benchmark (NAB v1.1) score of a
  detector's per-row anomaly scores against NAB's label windows
  (``../shared/data/nab-dev``): :func:`score_corpus` finds, per NAB profile, the one
  threshold that maximises the summed score and normalises it so that NAB's null
  detector scores 0 and a perfect one 100.
* :mod:`stream.backtest.incidents` -- incident precision, recall and time to detect of
  a detector's alerts against the ground truth the simulator writes
  (``ground-truth.jsonl``): :func:`score_incidents` merges detections into alert
  episodes, matches them to injected incidents and faults, and reports per label kind.

Each module's ``format_report`` prints its results as a table (here
:func:`format_nab_report` and :func:`format_incident_report`).

A higher anomaly score means more anomalous, as everywhere in :mod:`stream`. Every
problem with the input raises :class:`BacktestError`, naming the file, line or series,
the field and the value.
"""

from __future__ import annotations

from stream.backtest.errors import BacktestError
from stream.backtest.incidents import (
    DEFAULT_MERGE_GAP,
    DEFAULT_TOLERANCE,
    Detection,
    Episode,
    IncidentReport,
    KindScore,
    LabelOutcome,
    TruthLabel,
    load_ground_truth,
    merge_episodes,
    score_incidents,
)
from stream.backtest.incidents import format_report as format_incident_report
from stream.backtest.nab import (
    NO_DETECTION,
    PROBATION_PERCENT,
    PROFILES,
    CorpusScore,
    FileScore,
    Profile,
    ScoredSeries,
    ThresholdSweep,
    Window,
    label_key,
    load_series,
    load_windows,
    normalize,
    parse_timestamp,
    probation_length,
    row_weights,
    scaled_sigmoid,
    score_at_threshold,
    score_corpus,
    threshold_sweep,
)
from stream.backtest.nab import format_report as format_nab_report

__all__ = [
    "DEFAULT_MERGE_GAP",
    "DEFAULT_TOLERANCE",
    "NO_DETECTION",
    "PROBATION_PERCENT",
    "PROFILES",
    "BacktestError",
    "CorpusScore",
    "Detection",
    "Episode",
    "FileScore",
    "IncidentReport",
    "KindScore",
    "LabelOutcome",
    "Profile",
    "ScoredSeries",
    "ThresholdSweep",
    "TruthLabel",
    "Window",
    "format_incident_report",
    "format_nab_report",
    "label_key",
    "load_ground_truth",
    "load_series",
    "load_windows",
    "merge_episodes",
    "normalize",
    "parse_timestamp",
    "probation_length",
    "row_weights",
    "scaled_sigmoid",
    "score_at_threshold",
    "score_corpus",
    "score_incidents",
    "threshold_sweep",
]

r"""Run a detector configuration over recorded data: CSV series or simulator readings.

The pure parts of ``urbansense backtest``: read a ``timestamp,value`` CSV (naive
timestamps are the city's local time), score it with a profile's combiner, and write
``timestamp,value,anomaly_score`` rows in input order; or score a file of wire-format
readings (the simulator's ``readings.jsonl``) metric by metric with each kind's
profile.

>>> import io
>>> from stream.anomaly.config import DEFAULT_CONFIG
>>> text = "timestamp,value\n" + "".join(
...     f"2024-01-01 {h:02d}:00:00,{10 + h % 3}\n" for h in range(24))
>>> series = read_series(io.StringIO(text), "day.csv", utc_offset_h=8)
>>> series.timestamps[0].isoformat(), len(series)
('2024-01-01T00:00:00+08:00', 24)
>>> scores = score_series(DEFAULT_CONFIG.combiner_for(None, None), series)
>>> out = io.StringIO()
>>> write_series(out, series, scores)
>>> out.getvalue().splitlines()[:2]
['timestamp,value,anomaly_score', '2024-01-01 00:00:00,10,0']
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import IO

import numpy as np

from stream.anomaly.combine import Combiner
from stream.anomaly.scorer import MetricScore
from stream.backtest.errors import BacktestError
from telemetry import Reading

__all__ = [
    "READING_COLUMNS",
    "Series",
    "read_readings",
    "read_series",
    "score_series",
    "write_metric_scores",
    "write_series",
]

FloatArray = np.ndarray


@dataclass(frozen=True, slots=True)
class Series:
    """One CSV series: its rows' timestamps and values, as written and as numbers."""

    source: str
    texts: list[str]
    timestamps: list[datetime]
    values: np.ndarray
    value_texts: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def _timestamp(text: str, zone: timezone, where: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = f"{where}: timestamp {text!r} is not an ISO 8601 date and time"
        raise BacktestError(msg) from None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=zone)


def read_series(stream: IO[str], source: str, *, utc_offset_h: float = 8.0) -> Series:
    """Read a CSV with ``timestamp`` and ``value`` columns (others are ignored).

    Timestamps are ISO 8601; one without a zone is local time at ``utc_offset_h``.

    Raises:
        BacktestError: a missing column, or a bad cell (named by line and column).
    """
    zone = timezone(timedelta(hours=utc_offset_h))
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        msg = f"{source}: empty file; expected a header with timestamp and value"
        raise BacktestError(msg)
    columns = [h.strip() for h in header]
    for needed in ("timestamp", "value"):
        if needed not in columns:
            msg = f"{source}:1: no {needed!r} column; the header is {','.join(columns)}"
            raise BacktestError(msg)
    t_col, v_col = columns.index("timestamp"), columns.index("value")
    texts: list[str] = []
    stamps: list[datetime] = []
    values: list[float] = []
    value_texts: list[str] = []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) <= max(t_col, v_col):
            msg = f"{source}:{line}: {len(row)} cells; expected at least {max(t_col, v_col) + 1}"
            raise BacktestError(msg)
        where = f"{source}:{line}"
        stamps.append(_timestamp(row[t_col], zone, f"{where}: timestamp"))
        try:
            value = float(row[v_col])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            msg = f"{where}: value: {row[v_col]!r} is not a finite number"
            raise BacktestError(msg)
        texts.append(row[t_col])
        values.append(value)
        value_texts.append(row[v_col].strip())
    return Series(source, texts, stamps, np.asarray(values, dtype=np.float64), value_texts)


def score_series(combiner: Combiner, series: Series, key: str = "series") -> FloatArray:
    """Score, then learn, every row of a series in order; the calibrated scores."""
    ts = np.asarray([t.timestamp() for t in series.timestamps], dtype=np.float64)
    scores, _, _ = combiner.process([key] * len(series), ts, series.values)
    return scores


def write_series(out: IO[str], series: Series, scores: FloatArray) -> None:
    """Write ``timestamp,value,anomaly_score``, one row per input row, in input order.

    The timestamp and the value are written as they were read.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["timestamp", "value", "anomaly_score"])
    for text, value, score in zip(series.texts, series.value_texts, scores, strict=True):
        writer.writerow([text, value, f"{score:.6g}"])


def read_readings(stream: IO[str], source: str) -> Iterator[Reading]:
    """Readings from a JSON-lines file of wire-format readings (the simulator's output).

    Raises:
        BacktestError: a line that is not a valid reading, named by its line.
    """
    for line, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            yield Reading.model_validate_json(text)
        except ValueError as exc:
            msg = f"{source}:{line}: not a reading: {exc}"
            raise BacktestError(msg) from None


READING_COLUMNS = ("timestamp", "sensor_id", "kind", "metric", "value", "anomaly_score", "detector")
"""The columns of a scored readings file."""


def write_metric_scores(out: IO[str], scores: Iterable[MetricScore]) -> None:
    """Write scored readings, one row per metric of each reading, in input order.

    Values are written as the shortest text that reads back as the same number.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(READING_COLUMNS)
    for s in scores:
        writer.writerow(
            [
                s.ts.isoformat(),
                s.sensor_id,
                s.kind,
                s.metric,
                repr(s.value),
                f"{s.score:.6g}",
                s.detector,
            ]
        )

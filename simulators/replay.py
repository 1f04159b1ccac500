r"""Replay recorded data: any CSV of timestamped readings, mapped by a small column spec.

A *spec* (YAML) says which column holds the time, which the sensor (or one fixed
sensor id), the kind, and which column gives each catalogue metric, with a scale for
unit changes. :func:`replay` turns every row into a :class:`~telemetry.Reading` -- one
per sensor and row, numbered per sensor like an edge agent's -- and the caller writes
them out or publishes them through virtual gateways (:mod:`simulators.publish`), paced
or as fast as possible.

Specs for the data in ``../shared/data`` ship in ``simulators/examples/specs/``:
``prsa.yaml`` (Beijing PRSA stations), ``cnemc.yaml`` (CNEMC hourly station data, with
its swapped O3 columns put right) and ``nab.yaml`` (NAB ``timestamp,value`` files).

>>> import io
>>> spec = parse_spec('''
... version: 1
... kind: pollution
... interval_s: 3600
... time: {parts: {year: year, month: month, day: day, hour: hour}, tz_offset_h: 8}
... sensor: {id: aq-dongsi}
... metrics: {pm2_5: PM2.5, co: {column: CO, scale: 0.001}}
... ''')
>>> rows = io.StringIO("year,month,day,hour,PM2.5,CO\n2013,3,1,0,9,300\n2013,3,1,1,NA,400\n")
>>> [(r.ts.isoformat(), r.seq, r.metrics) for r in replay(spec, rows)]
[('2013-02-28T16:00:00+00:00', 0, {'pm2_5': 9.0, 'co': 0.3}), ('2013-02-28T17:00:00+00:00', 1, {'co': 0.4})]
"""  # noqa: E501 - a doctest's output is one line

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from telemetry import CATALOGUE, Kind, Reading
from telemetry.documents import DocumentError, load_document, parse_document
from telemetry.ids import Identifier

__all__ = [
    "ColumnSpec",
    "ReplayError",
    "ReplaySpec",
    "ReplayStats",
    "SensorSpec",
    "SpecError",
    "TimeSpec",
    "builtin_spec",
    "load_spec",
    "parse_spec",
    "replay",
]


class SpecError(DocumentError):
    """A replay spec that cannot be used: every problem, each with its place."""


class ReplayError(ValueError):
    """A CSV that does not fit its spec: the line, the column and the value."""


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stamp(StrEnum):
    """What a row's time labels: the end of the interval it covers, or its start."""

    END = "end"
    START = "start"


class TimeSpec(_Item):
    """Where a row's time is.

    Attributes:
        column: one column with the time: ISO 8601, or ``format`` (strptime).
        parts: or columns for year, month, day and optionally hour and minute.
        format: the strptime format of ``column``; ISO 8601 when omitted.
        tz_offset_h: the offset of times written without a zone (Beijing: 8).
        label: ``end`` if a row's time is the end of the interval it covers (as a
            reading's is), ``start`` if it is the start (as an hourly average labelled
            by its first hour is).
    """

    column: str | None = None
    parts: dict[Literal["year", "month", "day", "hour", "minute"], str] | None = None
    format: str | None = None
    tz_offset_h: Annotated[float, Field(ge=-14, le=14)] = 0.0
    label: Stamp = Stamp.END

    @model_validator(mode="after")
    def _one_way(self) -> TimeSpec:
        if (self.column is None) == (self.parts is None):
            msg = "give either 'column' or 'parts', not both or neither"
            raise ValueError(msg)
        if self.parts is not None and not {"year", "month", "day"} <= set(self.parts):
            msg = "'parts' needs at least year, month and day"
            raise ValueError(msg)
        return self


class SensorSpec(_Item):
    """Which sensor a row is from.

    Attributes:
        id: one sensor for every row.
        column: or a column whose value (after ``prefix``) is the sensor id.
        prefix: put before the column's value, e.g. ``cnemc-``.
    """

    id: Identifier | None = None
    column: str | None = None
    prefix: str = ""

    @model_validator(mode="after")
    def _one_way(self) -> SensorSpec:
        if (self.id is None) == (self.column is None):
            msg = "give either 'id' or 'column', not both or neither"
            raise ValueError(msg)
        return self


class ColumnSpec(_Item):
    """Where one metric is: a column and a scale (to change units).

    Attributes:
        column: the CSV column.
        scale: multiplies the value (0.001 for µg/m³ of CO into mg/m³).
    """

    column: str
    scale: Annotated[float, Field(gt=0)] = 1.0


def _column(value: object) -> object:
    return {"column": value} if isinstance(value, str) else value


class ReplaySpec(_Item):
    """How to read a CSV of readings.

    Attributes:
        version: always 1.
        kind: the sensors' kind.
        interval_s: the time a row covers (its reading's ``interval_s``).
        time: where the time is.
        sensor: which sensor a row is from.
        gateway: the gateway id that publishes the readings.
        metrics: catalogue metric -> column (text) or ``{column, scale}``.
        missing: cell values that mean "no value" (the metric is left out of that row).
    """

    version: Literal[1]
    kind: Kind
    interval_s: Annotated[float, Field(gt=0, le=86_400)]
    time: TimeSpec
    sensor: SensorSpec
    gateway: Identifier = "gw-replay"
    metrics: Annotated[dict[str, ColumnSpec], Field(min_length=1)]
    missing: tuple[str, ...] = ("", "NA", "NaN", "nan", "-", "null")

    @model_validator(mode="before")
    @classmethod
    def _columns_as_text(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
            data = {**data, "metrics": {k: _column(v) for k, v in data["metrics"].items()}}
        return data

    @model_validator(mode="after")
    def _known_metrics(self) -> ReplaySpec:
        unknown = sorted(set(self.metrics) - set(CATALOGUE[self.kind]))
        if unknown:
            known = ", ".join(CATALOGUE[self.kind])
            msg = f"{self.kind} has no metric {', '.join(unknown)} (it has {known})"
            raise ValueError(msg)
        return self


def parse_spec(text: str, source: str = "<string>") -> ReplaySpec:
    """Read a replay spec from YAML text; :class:`SpecError` lists every problem."""
    return parse_document(text, source, ReplaySpec, what="replay spec", error=SpecError)


def load_spec(path: str | Path) -> ReplaySpec:
    """Read a replay spec file, or a built-in one by name (``prsa``, ``cnemc``, ``nab``)."""
    builtin = builtin_spec(str(path))
    if builtin is not None:
        return parse_spec(builtin.read_text(encoding="utf-8"), str(builtin))
    return load_document(path, ReplaySpec, what="replay spec", error=SpecError)


def builtin_spec(name: str) -> Traversable | None:
    """The shipped spec called ``name``, if there is one."""
    if "/" in name or name.endswith((".yaml", ".yml")):
        return None
    resource = files("simulators.examples").joinpath("specs", f"{name}.yaml")
    return resource if resource.is_file() else None


@dataclass
class ReplayStats:
    """What a replay read: rows, readings made, rows without any value."""

    rows: int = 0
    readings: int = 0
    empty_rows: int = 0
    sensors: set[str] = field(default_factory=set)


def replay(spec: ReplaySpec, stream: TextIO, stats: ReplayStats | None = None) -> Iterator[Reading]:
    """The readings of a CSV, in file order, numbered per sensor from 0.

    A row whose metrics are all missing gives no reading (counted in ``stats``).

    Raises:
        ReplayError: a missing column, an unreadable time or number, or a value the
            catalogue refuses; the message names the line, the column and the value.
    """
    stats = stats if stats is not None else ReplayStats()
    reader = csv.DictReader(stream)
    header = reader.fieldnames or []
    needed = [c.column for c in spec.metrics.values()]
    needed += [spec.time.column] if spec.time.column else list((spec.time.parts or {}).values())
    needed += [spec.sensor.column] if spec.sensor.column else []
    absent = [c for c in needed if c not in header]
    if absent:
        msg = (
            f"line 1: no column {', '.join(map(repr, absent))} (the header has {', '.join(header)})"
        )
        raise ReplayError(msg)
    zone = timezone(timedelta(hours=spec.time.tz_offset_h))
    shift = timedelta(seconds=spec.interval_s) if spec.time.label is Stamp.START else timedelta(0)
    seqs: dict[str, int] = {}
    missing = set(spec.missing)
    for row in reader:
        stats.rows += 1
        line = reader.line_num
        metrics: dict[str, float] = {}
        for name, column in spec.metrics.items():
            cell = (row.get(column.column) or "").strip()
            if cell in missing:
                continue
            try:
                value = float(cell) * column.scale
            except ValueError:
                msg = f"line {line}: column {column.column!r}: {cell!r} is not a number"
                raise ReplayError(msg) from None
            if not math.isfinite(value):
                continue
            metrics[name] = value
        if not metrics:
            stats.empty_rows += 1
            continue
        sensor_id = spec.sensor.id or f"{spec.sensor.prefix}{row[spec.sensor.column or '']}"
        ts = _row_time(spec.time, row, zone, line) + shift
        seq = seqs.get(sensor_id, 0)
        try:
            reading = Reading(
                sensor_id=sensor_id,
                kind=spec.kind,
                ts=ts,
                seq=seq,
                interval_s=spec.interval_s,
                metrics=metrics,
            )
        except ValidationError as error:
            problems = "; ".join(e["msg"] for e in error.errors(include_url=False))
            msg = f"line {line}: {problems}"
            raise ReplayError(msg) from None
        seqs[sensor_id] = seq + 1
        stats.readings += 1
        stats.sensors.add(sensor_id)
        yield reading


def _row_time(spec: TimeSpec, row: dict[str, str], zone: timezone, line: int) -> datetime:
    try:
        if spec.parts is not None:
            p = {k: int(row[c]) for k, c in spec.parts.items()}
            ts = datetime(p["year"], p["month"], p["day"], p.get("hour", 0), p.get("minute", 0))  # noqa: DTZ001 - zone below
        else:
            text = row[spec.column or ""].strip()
            ts = (
                datetime.strptime(text, spec.format)  # noqa: DTZ007 - the zone is added below
                if spec.format
                else datetime.fromisoformat(text)
            )
    except (ValueError, KeyError) as error:
        columns = spec.column or ", ".join((spec.parts or {}).values())
        msg = f"line {line}: time in {columns!r} cannot be read: {error}"
        raise ReplayError(msg) from None
    return (ts if ts.tzinfo else ts.replace(tzinfo=zone)).astimezone(UTC)

r"""``urbansense aqi``: the AQI of every row of a CSV of hourly station concentrations.

:func:`run` reads a CSV with a header row, computes each row's AQI with
:func:`~stream.indices.aqi.hourly_aqi` (HJ 633-2012 as CNEMC publishes it) or
:func:`~stream.indices.aqi.epa_aqi`, and writes every input row unchanged, in input
order, followed by the computed columns :data:`OUTPUT_COLUMNS`:

``calc_aqi``, ``calc_level`` (1-6), ``calc_grade`` (一级 … 六级; empty for EPA),
``calc_category`` (优 … / Good …), ``calc_category_en``, ``calc_colour`` (#RRGGBB),
``calc_primary`` (CNEMC's names, e.g. ``颗粒物(PM10),细颗粒物(PM2.5)``, or EPA's
labels) and ``calc_primary_codes`` (``pm10,pm2_5``).

With HJ 633 and an official AQI column, a last column ``calc_match`` says ``yes``
when the computed AQI and primary pollutants (as a set) equal the official ones,
``no`` when not, and is empty where no official AQI was published. A row with
none of the pollutants gets empty computed columns.

**Columns.** The input's columns are found by *metric* (:data:`METRICS`). By
default they are CNEMC's names (:data:`CNEMC_COLUMNS`, e.g. the
``../shared/data/cnemc-aqi-dev`` files). CNEMC's crawled files have the O3 columns
**swapped**: ``o3_24h`` holds the latest 1-hour O3 and ``o3`` the 24-hour maximum,
so the default reads 1-hour O3 from ``o3_24h``. Other files are mapped metric by
metric (``columns={"pm2_5": "PM2.5"}``, or ``--column pm2_5=PM2.5``); a mapping
given replaces the default for that metric, a default column the file lacks is
skipped, and an empty name switches a metric off.

Concentrations are in µg/m³, CO in mg/m³. Empty, ``NA``, ``N/A``, ``-`` and ``—``
cells are missing. Any other cell that is not a finite number >= 0 raises
:class:`AqiCsvError` naming the source, line, column and value, and nothing more is
read.

>>> import io
>>> out = io.StringIO()
>>> stats = run(io.StringIO("station,PM2.5,PM10\nA,80,60\nB,,\n"), out,
...             columns={"pm2_5": "PM2.5", "pm10": "PM10"}, standard="hj633", source="x.csv")
>>> print(out.getvalue())
station,PM2.5,PM10,calc_aqi,calc_level,calc_grade,calc_category,calc_category_en,...
A,80,60,107,3,三级,轻度污染,Lightly Polluted,#FF7E00,细颗粒物(PM2.5),pm2_5
B,,,,,,,,,,
>>> stats.rows, stats.with_aqi, stats.without_aqi
(2, 1, 1)
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal, TextIO

from stream.indices.aqi import AqiError, AqiInputError, AqiResult, Standard, epa_aqi, hourly_aqi

__all__ = [
    "CNEMC_COLUMNS",
    "METRICS",
    "MISSING",
    "OUTPUT_COLUMNS",
    "AqiCsvError",
    "AqiCsvStats",
    "add_parser",
    "aqi_command",
    "run",
]

METRICS: Mapping[str, str] = MappingProxyType(
    {
        "pm2_5": "PM2.5, latest 1-hour mean, µg/m³",
        "pm10": "PM10, latest 1-hour mean, µg/m³",
        "so2": "SO2, latest 1-hour mean, µg/m³",
        "no2": "NO2, latest 1-hour mean, µg/m³",
        "co": "CO, latest 1-hour mean, mg/m³",
        "o3": "O3, latest 1-hour mean, µg/m³",
        "so2_24h": "SO2, 24-hour mean, µg/m³ (rates SO2 when 1-hour SO2 is too high)",
        "o3_8h": "O3, latest 8-hour running mean, µg/m³ (EPA only)",
        "aqi": "the official AQI, passed through and compared (HJ 633)",
        "primary": "the official primary pollutant(s), passed through and compared",
    }
)
"""The metrics a column can be mapped to, with what they mean."""

CNEMC_COLUMNS: Mapping[str, str] = MappingProxyType(
    {
        "pm2_5": "pm2_5",
        "pm10": "pm10",
        "so2": "so2",
        "no2": "no2",
        "co": "co",
        "o3": "o3_24h",  # swapped in CNEMC's files: o3_24h is the latest 1-hour O3
        "so2_24h": "so2_24h",
        "o3_8h": "o3_8h_24h",  # the latest 8-hour running mean within the day
        "aqi": "aqi",
        "primary": "primarypollutant",
    }
)
"""The default columns: CNEMC's hourly station files (metric -> column)."""

OUTPUT_COLUMNS: tuple[str, ...] = (
    "calc_aqi",
    "calc_level",
    "calc_grade",
    "calc_category",
    "calc_category_en",
    "calc_colour",
    "calc_primary",
    "calc_primary_codes",
)
"""The computed columns appended to every row (then ``calc_match`` when comparing)."""

MATCH_COLUMN = "calc_match"

MISSING: frozenset[str] = frozenset({"", "na", "n/a", "-", "—"})
"""Cell contents (stripped, case-insensitive) that mean a missing value."""

# Which metric feeds which argument of the index function, per standard.
_INPUTS: Mapping[Standard, Mapping[str, str]] = MappingProxyType(
    {
        Standard.HJ633: MappingProxyType(
            {m: m for m in ("pm2_5", "pm10", "so2", "no2", "co", "o3", "so2_24h")}
        ),
        Standard.EPA: MappingProxyType(
            {"pm2_5": "pm2_5", "pm10": "pm10", "so2": "so2", "no2": "no2", "co": "co"}
            | {"o3": "o3_1h", "o3_8h": "o3_8h", "so2_24h": "so2_24h"}
        ),
    }
)
_POLLUTANTS = ("pm2_5", "pm10", "so2", "no2", "co", "o3", "o3_8h")
_OFFICIAL = ("aqi", "primary")


class AqiCsvError(AqiError):
    """A CSV the AQI tool cannot read: the source, line, column and value say where.

    Attributes:
        source: the file name (``<stdin>`` for standard input).
        line: the line of the file (the header is line 1), or None.
        column: the column's name, or None.
        value: the offending cell, or None.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str,
        line: int | None = None,
        column: str | None = None,
        value: str | None = None,
    ) -> None:
        self.source = source
        self.line = line
        self.column = column
        self.value = value
        where = source if line is None else f"{source}, line {line}"
        if column is not None:
            where += f", column {column!r}"
        if value is not None:
            where += f", value {value!r}"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True, slots=True)
class AqiCsvStats:
    """What a :func:`run` did.

    Attributes:
        standard: the standard followed.
        columns: the columns read, metric -> column name (the official ones included).
        rows: data rows read.
        with_aqi: rows that got an AQI.
        without_aqi: rows with none of the pollutants (empty computed columns).
        official: rows with an official AQI.
        matched: of those, rows whose computed AQI and primary pollutants equal the
            official ones; None unless HJ 633 was compared with an official column.
    """

    standard: Standard
    columns: Mapping[str, str]
    rows: int
    with_aqi: int
    without_aqi: int
    official: int
    matched: int | None

    def summary(self) -> str:
        """One line for the operator, e.g. on standard error.

        >>> AqiCsvStats(Standard.HJ633, {}, 3, 2, 1, 2, 2).summary()
        'hj633: 3 rows, 2 with an AQI, 1 without any pollutant; 2 of 2 official AQIs matched'
        """
        text = (
            f"{self.standard.value}: {self.rows} rows, {self.with_aqi} with an AQI, "
            f"{self.without_aqi} without any pollutant"
        )
        if self.matched is not None:
            text += f"; {self.matched} of {self.official} official AQIs matched"
        return text


def run(
    input: TextIO,
    output: TextIO,
    *,
    columns: Mapping[str, str] | None = None,
    standard: Literal["hj633", "epa"] | Standard = "hj633",
    source: str = "<input>",
) -> AqiCsvStats:
    """Compute the AQI of every row of ``input`` and write the rows to ``output``.

    Args:
        input: the CSV, header first.
        output: where the rows with their computed columns go (Unix line ends).
        columns: metric -> column name over :data:`CNEMC_COLUMNS`; an empty name
            switches the metric off.
        standard: ``hj633`` (CNEMC's hourly AQI) or ``epa``. With EPA, PM2.5, PM10 and
            CO are the hourly values placed on EPA's 24-hour and 8-hour rows -- an
            indicative hourly value, not EPA's daily AQI or NowCast; map the 24-hour
            columns to ``pm2_5``/``pm10`` for the daily PM rating.
        source: the input's name for error messages.

    Returns:
        The counts of rows read, rated, unrated and matching the official AQI.

    Raises:
        AqiCsvError: no header, an unknown metric, a mapped column the header lacks,
            no pollutant column, a row with the wrong number of cells, or a bad
            cell (named by line, column and value).
    """
    try:
        std = Standard(standard)
    except ValueError as exc:
        reason = f"standard {standard!r} is not one of {', '.join(s.value for s in Standard)}"
        raise AqiCsvError(reason, source=source) from exc
    reader = csv.reader(input)
    header = next(reader, None)
    if header is None:
        reason = "the file is empty; a header row is expected"
        raise AqiCsvError(reason, source=source, line=1)
    header[0] = header[0].removeprefix("\ufeff")
    found = _resolve(header, columns, std, source)
    clash = [c for c in (*OUTPUT_COLUMNS, MATCH_COLUMN) if c in header]
    if clash:
        reason = f"the input already has the output column(s) {', '.join(clash)}"
        raise AqiCsvError(reason, source=source, line=1)
    compare = std is Standard.HJ633 and "aqi" in found
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow([*header, *OUTPUT_COLUMNS, *([MATCH_COLUMN] if compare else [])])

    rows = with_aqi = official = matched = 0
    for row in reader:
        if not row:
            continue  # a blank line
        line = reader.line_num
        if len(row) != len(header):
            reason = f"the row has {len(row)} cells, the header {len(header)}"
            raise AqiCsvError(reason, source=source, line=line)
        rows += 1
        result = _rate(row, header, found, std, source, line)
        with_aqi += result.aqi is not None
        cells = [*row, *_computed(result)]
        if compare:
            published = _official_aqi(row, header, found["aqi"], source, line)
            if published is None:
                cells.append("")
            else:
                official += 1
                same = published == result.aqi and _names(
                    row[found["primary"]] if "primary" in found else ""
                ) == _names(result.primary_names)
                matched += same
                cells.append("yes" if same else "no")
        writer.writerow(cells)
    return AqiCsvStats(
        std,
        MappingProxyType(
            {m: header[i] for m, i in found.items() if m in _INPUTS[std] or m in _OFFICIAL}
        ),
        rows,
        with_aqi,
        rows - with_aqi,
        official,
        matched if compare else None,
    )


def _resolve(
    header: list[str], columns: Mapping[str, str] | None, std: Standard, source: str
) -> dict[str, int]:
    """Metric -> column position, from the defaults and the mapping given."""
    mapping = dict(CNEMC_COLUMNS)
    explicit = set()
    for metric, name in (columns or {}).items():
        if metric not in METRICS:
            reason = f"{metric!r} is not a metric; the metrics are {', '.join(METRICS)}"
            raise AqiCsvError(reason, source=source)
        mapping[metric] = name
        explicit.add(metric)
    found: dict[str, int] = {}
    for metric, name in mapping.items():
        if not name:
            continue
        places = [i for i, h in enumerate(header) if h == name]
        if len(places) > 1:
            reason = f"column {name!r} ({metric}) appears {len(places)} times in the header"
            raise AqiCsvError(reason, source=source, line=1)
        if places:
            found[metric] = places[0]
        elif metric in explicit:
            reason = f"the header has no column {name!r} for {metric}"
            raise AqiCsvError(reason, source=source, line=1)
        elif metric == "o3" and "o3" in header:
            reason = (
                "1-hour O3 is read from 'o3_24h' by default (CNEMC's files have the O3 "
                "columns swapped) but this file has only 'o3'; say which column holds "
                "1-hour O3, e.g. --column o3=o3"
            )
            raise AqiCsvError(reason, source=source, line=1)
    if not any(m in found and m in _INPUTS[std] for m in _POLLUTANTS):
        wanted = ", ".join(f"{m}={mapping[m]!r}" for m in _POLLUTANTS if m in _INPUTS[std])
        reason = f"the header has none of the pollutant columns ({wanted}); map them by metric"
        raise AqiCsvError(reason, source=source, line=1)
    return found


def _rate(
    row: list[str],
    header: list[str],
    found: Mapping[str, int],
    std: Standard,
    source: str,
    line: int,
) -> AqiResult:
    inputs = _INPUTS[std]
    values: dict[str, float | None] = {}
    for metric, argument in inputs.items():
        if metric in found:
            values[argument] = _cell(row, header, found[metric], source, line)
    try:
        return hourly_aqi(values) if std is Standard.HJ633 else epa_aqi(values)
    except AqiInputError as exc:
        metric = next(m for m, a in inputs.items() if a == exc.quantity)
        position = found[metric]
        raise AqiCsvError(
            exc.reason, source=source, line=line, column=header[position], value=row[position]
        ) from exc


def _cell(row: list[str], header: list[str], position: int, source: str, line: int) -> float | None:
    text = row[position].strip()
    if text.lower() in MISSING:
        return None
    try:
        value = float(text)
    except ValueError:
        reason = "not a number"
        raise AqiCsvError(
            reason, source=source, line=line, column=header[position], value=row[position]
        ) from None
    if not math.isfinite(value) or value < 0:
        reason = "a concentration must be a finite number >= 0"
        raise AqiCsvError(
            reason, source=source, line=line, column=header[position], value=row[position]
        )
    return value


def _official_aqi(
    row: list[str], header: list[str], position: int, source: str, line: int
) -> int | None:
    text = row[position].strip()
    if text.lower() in MISSING:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer() or not 0 <= value <= 500:
        reason = "an official AQI is an integer from 0 to 500"
        raise AqiCsvError(
            reason, source=source, line=line, column=header[position], value=row[position]
        )
    return int(value)


def _names(text: str) -> frozenset[str]:
    """Primary pollutant names as a set (CNEMC joins them by commas; '—' is none)."""
    parts = (p.strip() for p in text.replace("\uff0c", ",").split(","))  # full-width commas too
    return frozenset(p for p in parts if p.lower() not in MISSING)


def _computed(result: AqiResult) -> list[str]:
    level = result.level
    if result.aqi is None or level is None:
        return [""] * len(OUTPUT_COLUMNS)
    return [
        str(result.aqi),
        str(level.number),
        level.grade or "",
        level.name,
        level.name_en,
        level.colour_hex,
        result.primary_names,
        result.primary_codes,
    ]


# ---------------------------------------------------------------- command line


_DESCRIPTION = """\
Computes the AQI of every row of a CSV of hourly station concentrations and writes
each row with its AQI, level, category, colour and primary pollutant(s) appended
(calc_* columns), in input order. By default the columns are CNEMC's (pm2_5, pm10,
so2, no2, co; 1-hour O3 from o3_24h, as CNEMC's files have the O3 columns swapped);
map other names with --column METRIC=NAME. With HJ 633 and an official 'aqi'
column, calc_match compares the computed AQI and primary pollutants with it.

Concentrations in µg/m³, CO in mg/m³. A summary goes to standard error.
Exit status: 0 done, 2 bad input (the message names the line, column and value).
"""


def _column_pair(text: str) -> tuple[str, str]:
    metric, sep, name = text.partition("=")
    metric = metric.strip()
    if not sep or metric not in METRICS:
        msg = f"{text!r}: give METRIC=NAME with METRIC one of {', '.join(METRICS)}"
        raise argparse.ArgumentTypeError(msg)
    return metric, name


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register the ``aqi`` subcommand on an argparse subparsers object.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The ``aqi`` parser, whose ``func`` default is :func:`aqi_command`.

    >>> parser = argparse.ArgumentParser(prog="urbansense")
    >>> parser_aqi = add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["aqi", "--input", "in.csv", "--column", "pm2_5=PM2.5"])
    >>> args.input, args.output, args.standard, args.column, args.func is aqi_command
    ('in.csv', '-', 'hj633', [('pm2_5', 'PM2.5')], True)
    """
    parser = subparsers.add_parser(
        "aqi",
        help="compute the AQI (HJ 633 or US EPA) of a CSV of hourly station concentrations",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-i", "--input", default="-", metavar="CSV", help="the CSV to read; - (default): stdin"
    )
    parser.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="where to write; - (default): stdout"
    )
    parser.add_argument(
        "--standard",
        choices=[s.value for s in Standard],
        default=Standard.HJ633.value,
        help="hj633 (default): China's AQI as CNEMC publishes it hourly; epa: US EPA AQI (2024)",
    )
    parser.add_argument(
        "--column",
        action="append",
        type=_column_pair,
        default=[],
        metavar="METRIC=NAME",
        help=f"read METRIC from column NAME (repeatable); metrics: {', '.join(METRICS)}",
    )
    parser.set_defaults(func=aqi_command)
    return parser


def aqi_command(args: argparse.Namespace) -> int:
    """Run ``urbansense aqi`` with parsed arguments; the summary goes to standard error.

    Args:
        args: the namespace :func:`add_parser`'s parser made.

    Returns:
        0 when every row was written.

    Raises:
        AqiCsvError: bad input. An ``--output`` file appears only when every row was
            written; on standard output the rows before the bad one are already out.
        OSError: the input cannot be read or the output written.
    """
    columns = dict(args.column) if args.column else None
    with _reading(args.input) as (f, name), _writing(args.output) as out:
        stats = run(f, out, columns=columns, standard=args.standard, source=name)
    print(f"urbansense aqi: {stats.summary()}", file=sys.stderr)
    return 0


@contextmanager
def _reading(path: str) -> Iterator[tuple[TextIO, str]]:
    if path == "-":
        yield sys.stdin, "<stdin>"
        return
    with open(path, encoding="utf-8-sig", newline="") as f:
        yield f, path


@contextmanager
def _writing(path: str) -> Iterator[TextIO]:
    """Standard output, or a file that appears only when everything was written."""
    if path == "-":
        yield sys.stdout
        return
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            yield f
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""``urbansense rules check|test``: validate rule files, and dry-run them over recorded data.

``urbansense rules check FILE...`` loads every file (ids must be unique across them)
and prints each problem as ``file:line:column: rule 'id' (#n): key: message``; exit 0
when all are valid, 1 when not.

``urbansense rules test FILE... --input CSV`` runs the rules over a CSV of recorded
samples, in event-time order, as the stream would have evaluated them (a backtest of
the rules), and prints every alert transition -- time, state, rule, severity,
subject, value -- then a summary per rule. Absence rules are checked as event time
advances. Two CSV shapes are read:

* **long**: one sample a row, columns ``timestamp``, ``kind``, ``metric``, ``value``;
* **wide**: no ``metric``/``value`` columns; every column named as a metric of the
  kind (``--kind``, or a ``kind`` column) is a sample, e.g. ``aqi`` of ``--kind aqi``.

Both take the subject's columns ``sensor``, ``gateway``, ``site``, ``area``,
``segment``, ``building``, ``district`` and optional ``score``, ``detector``,
``explanation``, ``site_name``. ``--map SOURCE=NAME`` renames a column; ``--label
COLUMN`` passes a column as a sample label. Without a ``timestamp`` column the time is
composed from ``year``, ``month``, ``day``, ``hour`` (as in the PRSA files). A
timestamp without a zone is local time at ``--utc-offset-h`` (default: the rule set's).
Empty, ``NA`` and ``-`` values are skipped.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import IO

from rules.engine import RuleEngine, Sample
from rules.load import RuleFileError, load_rule_files
from rules.model import SUBJECT_LABELS, RuleSet, metric_names
from telemetry import Alert, AlertState, Kind
from telemetry.documents import DocumentError
from telemetry.ids import id_problem
from telemetry.registry import Registry, load_example_registry, load_registry

__all__ = ["RulesCsvError", "add_parser", "check_command", "read_samples", "run_test_command"]

_EPILOG = """\
examples:
  urbansense rules check rules/default.yaml my-city.yaml

  # Heavy-pollution alerts over four years of a Beijing station (PRSA data): compute the
  # hourly AQI first (CO is in µg/m³ in these files, so it is left out), then test.
  urbansense aqi --input ../shared/data/beijing-prsa/PRSA_Data_Dongsi_20130301-20170228.csv \\
      --column pm2_5=PM2.5 --column pm10=PM10 --column so2=SO2 --column no2=NO2 \\
      --column o3=O3 --column co= --output /tmp/dongsi-aqi.csv
  urbansense rules test rules/default.yaml --input /tmp/dongsi-aqi.csv \\
      --kind aqi --map calc_aqi=aqi --map station=site

  # CNEMC's published hourly AQI of 29 Zhejiang stations (wide, local time):
  # (its `area` column is the city's Chinese name, not a scenic area: read it as `city`)
  urbansense rules test my-rules.yaml --input ../shared/data/cnemc-aqi-dev/hourly.csv \\
      --kind aqi --map timepoint=timestamp --map stationcode=site --map area=city

exit status: check: 0 valid, 1 problems; test: 0 done, 1 invalid rules, 2 bad input.
"""

_MISSING = frozenset({"", "na", "n/a", "nan", "-", "—", "null", "none"})
_OPTIONAL = ("score", "detector", "explanation", "site_name")


class RulesCsvError(ValueError):
    """A CSV row that cannot be read; the message names the source, line and column."""


@dataclass(slots=True)
class _Shape:
    """How a CSV's columns map to samples."""

    long: bool
    kind: str | None
    metrics: dict[str, list[str]] = field(default_factory=dict)
    """Wide shape: kind -> its metric columns present."""


def _pair(text: str) -> tuple[str, str]:
    source, sep, name = text.partition("=")
    if not sep or not source or not name:
        msg = f"expected SOURCE=NAME, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return source, name


def _time_of(row: dict[str, str], zone: timezone, where: str) -> datetime:
    text = (row.get("timestamp") or "").strip()
    try:
        if text:
            ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
        elif all(row.get(k) for k in ("year", "month", "day", "hour")):
            ts = datetime(
                int(row["year"]), int(row["month"]), int(row["day"]), tzinfo=zone
            ) + timedelta(hours=int(row["hour"]))
        else:
            msg = f"{where}: no timestamp (nor year, month, day, hour)"
            raise RulesCsvError(msg)
    except ValueError as exc:
        if isinstance(exc, RulesCsvError):
            raise
        msg = f"{where}: timestamp: cannot read {text!r}: {exc}"
        raise RulesCsvError(msg) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=zone)
    return ts.astimezone(UTC)


def _number(text: str | None, where: str, column: str) -> float | None:
    if text is None or text.strip().lower() in _MISSING:
        return None
    try:
        value = float(text)
    except ValueError:
        msg = f"{where}: {column}: {text!r} is not a number"
        raise RulesCsvError(msg) from None
    if value != value or value in (float("inf"), float("-inf")):
        msg = f"{where}: {column}: {text!r} is not a finite number"
        raise RulesCsvError(msg)
    return value


def read_samples(
    f: IO[str],
    source: str,
    *,
    kind: str | None = None,
    rename: dict[str, str] | None = None,
    labels: Sequence[str] = (),
    utc_offset_h: float = 8.0,
) -> list[Sample]:
    r"""The samples of a long or wide CSV (see the module docstring), in event-time order.

    >>> import io
    >>> text = "timepoint,stationcode,aqi,pm2_5\n2023-06-01T08:00:00,1223A,215,160\n"
    >>> samples = read_samples(io.StringIO(text), "x.csv", kind="aqi",
    ...                        rename={"timepoint": "timestamp", "stationcode": "site"})
    >>> [(s.kind, s.metric, s.value, s.site, s.ts.isoformat()) for s in samples]
    [('aqi', 'aqi', 215.0, '1223A', '2023-06-01T00:00:00+00:00')]

    Raises:
        RulesCsvError: a row that cannot be read, named by source, line and column.
    """
    rename = rename or {}
    zone = timezone(timedelta(hours=utc_offset_h))
    reader = csv.DictReader(f)
    header = [rename.get(c, c) for c in (reader.fieldnames or [])]
    if not header:
        msg = f"{source}: empty file, expected a header row"
        raise RulesCsvError(msg)
    reader.fieldnames = header
    shape = _shape(header, kind, source)
    samples: list[Sample] = []
    for row in reader:
        where = f"{source}:{reader.line_num}"
        ts = _time_of(row, zone, where)
        ids = {label: (row.get(label) or "").strip() or None for label in SUBJECT_LABELS}
        for label, value in ids.items():
            problem = None if value is None else id_problem(value)
            if problem is not None:
                msg = (
                    f"{where}: {label}: invalid id {value!r}: {problem} (if the column holds no"
                    f" {label} ids, read it under another name: --map {label}=other)"
                )
                raise RulesCsvError(msg)
        extra = {c: row[c] for c in labels if row.get(c)}
        context = {c: (row.get(c) or "").strip() or None for c in _OPTIONAL}
        score = _number(context["score"], where, "score")
        row_kind = (row.get("kind") or "").strip() or shape.kind
        if row_kind is None:
            msg = f"{where}: kind: empty, and no --kind given"
            raise RulesCsvError(msg)
        if shape.long:
            series = [((row.get("metric") or "").strip(), row.get("value"))]
        else:
            columns = shape.metrics.get(row_kind)
            if columns is None:
                columns = [c for c in metric_names_or_empty(row_kind) if c in header]
                shape.metrics[row_kind] = columns
            series = [(c, row.get(c)) for c in columns]
        for metric, text in series:
            value = _number(text, where, "value" if shape.long else metric)
            if value is None or not metric:
                continue
            samples.append(
                Sample(
                    row_kind,
                    metric,
                    value,
                    ts,
                    labels=extra,
                    score=score,
                    detector=context["detector"],
                    explanation=context["explanation"],
                    site_name=context["site_name"],
                    **ids,
                )
            )
    samples.sort(key=lambda s: s.ts)
    return samples


def metric_names_or_empty(kind: str) -> tuple[str, ...]:
    """The metrics of a kind, or nothing for an unknown kind."""
    try:
        return metric_names(kind)
    except ValueError:
        return ()


def _shape(header: list[str], kind: str | None, source: str) -> _Shape:
    if "metric" in header and "value" in header:
        if kind is None and "kind" not in header:
            msg = f"{source}: a long CSV needs a kind column or --kind"
            raise RulesCsvError(msg)
        return _Shape(long=True, kind=kind)
    if kind is None and "kind" not in header:
        msg = (
            f"{source}: no metric and value columns (long shape), nor --kind or a kind column"
            " (wide shape)"
        )
        raise RulesCsvError(msg)
    if kind is not None and not metric_names_or_empty(kind):
        known = ", ".join([*(k.value for k in Kind), "aqi", "traffic_index", "scenic", "..."])
        msg = f"--kind {kind!r} is not a kind ({known})"
        raise RulesCsvError(msg)
    if kind is not None and not any(c in header for c in metric_names(kind)):
        msg = f"{source}: no column is a metric of {kind} ({', '.join(metric_names(kind))})"
        raise RulesCsvError(msg)
    return _Shape(long=False, kind=kind)


# ---------------------------------------------------------------- output


def _subject(alert: Alert) -> str:
    return " ".join(f"{k.removesuffix('_id')}={v}" for k, v in alert.subject.labels().items())


def _number_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _line(alert: Alert, now: datetime) -> str:
    """One transition, at the event time it happened: firing since / resolved after."""
    if alert.state is AlertState.RESOLVED and alert.ends_at is not None:
        extra = f"  after {alert.ends_at - alert.starts_at}"
    else:
        extra = "" if alert.starts_at == now else f"  since {_iso(alert.starts_at)}"
    return (
        f"{_iso(now)}  {alert.state.value:<8}  {alert.rule_id}  {alert.severity.value}"
        f"  {_subject(alert)}  value={_number_text(alert.value)}"
        f" threshold={_number_text(alert.threshold)}{extra}"
    )


@dataclass(slots=True)
class _Tally:
    fired: Counter[str] = field(default_factory=Counter)
    resolved: Counter[str] = field(default_factory=Counter)

    def add(self, alert: Alert) -> None:
        (self.fired if alert.state is AlertState.FIRING else self.resolved)[alert.rule_id] += 1


def dry_run(
    rule_set: RuleSet,
    samples: Sequence[Sample],
    out: IO[str],
    registry: Registry | None = None,
    check_every: timedelta = timedelta(minutes=1),
) -> _Tally:
    """Run the rules over samples in time order, printing every transition to ``out``."""
    engine = RuleEngine(rule_set, registry)
    tally = _Tally()
    next_check: datetime | None = None
    has_timed = any(
        r.absence is not None or r.keep_firing_for or r.stale_after for r in rule_set.rules
    )
    i = 0
    while i < len(samples):
        ts = samples[i].ts
        j = i
        while j < len(samples) and samples[j].ts == ts:
            j += 1
        # absences and timed resolutions, every `check_every` of event time up to now
        while has_timed and next_check is not None and next_check < ts:
            for alert in engine.check_absence(next_check):
                tally.add(alert)
                print(_line(alert, next_check), file=out)
            next_check += check_every
        if next_check is None:
            next_check = ts + check_every
        for alert in engine.evaluate(samples[i:j]):
            tally.add(alert)
            print(_line(alert, ts), file=out)
        i = j
    if samples and has_timed:
        for alert in engine.check_absence(samples[-1].ts):
            tally.add(alert)
            print(_line(alert, samples[-1].ts), file=out)
    return tally


def _summary(rule_set: RuleSet, tally: _Tally, samples: int, out: IO[str]) -> None:
    print(f"\n{samples} samples; alerts per rule:", file=out)
    width = max((len(r.id) for r in rule_set.rules), default=4)
    print(f"  {'rule':<{width}}  {'severity':<8}  fired  resolved  firing at end", file=out)
    for rule in rule_set.rules:
        fired, resolved = tally.fired[rule.id], tally.resolved[rule.id]
        print(
            f"  {rule.id:<{width}}  {rule.severity.value:<8}  {fired:>5}  {resolved:>8}"
            f"  {fired - resolved:>13}",
            file=out,
        )


# ---------------------------------------------------------------- commands


def _print_problems(error: DocumentError) -> None:
    for problem in error.problems:
        print(problem, file=sys.stderr)


def check_command(args: argparse.Namespace) -> int:
    """``urbansense rules check``: 0 when every file is valid, else 1 (problems on stderr)."""
    try:
        rule_set = load_rule_files(args.files)
    except RuleFileError as exc:
        _print_problems(exc)
        files = len({p.source for p in exc.problems})
        print(
            f"urbansense rules: {len(exc.problems)} problem(s) in {files} file(s)", file=sys.stderr
        )
        return 1
    print(f"{len(rule_set.rules)} rules in {len(args.files)} file(s): ok")
    return 0


@contextmanager
def _reading(path: str) -> Iterator[tuple[IO[str], str]]:
    if path == "-":
        yield sys.stdin, "<stdin>"
        return
    with open(path, encoding="utf-8-sig", newline="") as f:
        yield f, path


def run_test_command(args: argparse.Namespace) -> int:
    """``urbansense rules test``: print the transitions and a summary; 0, 1 or 2."""
    try:
        rule_set = load_rule_files(args.files)
    except RuleFileError as exc:
        _print_problems(exc)
        return 1
    try:
        registry = None
        if args.registry:
            registry = (
                load_example_registry()
                if args.registry == "example"
                else load_registry(args.registry)
            )
        offset = rule_set.utc_offset_h if args.utc_offset_h is None else args.utc_offset_h
        with _reading(args.input) as (f, name):
            samples = read_samples(
                f,
                name,
                kind=args.kind,
                rename=dict(args.map),
                labels=args.label,
                utc_offset_h=offset,
            )
    except (RulesCsvError, DocumentError, OSError) as exc:
        print(f"urbansense rules: {exc}", file=sys.stderr)
        return 2
    tally = dry_run(rule_set, samples, sys.stdout, registry)
    _summary(rule_set, tally, len(samples), sys.stdout)
    return 0


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``rules check`` and ``rules test`` on an argparse subparsers object.

    >>> parser = argparse.ArgumentParser(prog="urbansense")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["rules", "test", "r.yaml", "--input", "x.csv", "--kind", "aqi"])
    >>> args.files, args.input, args.kind, args.func is run_test_command
    (['r.yaml'], 'x.csv', 'aqi', True)
    """
    parser = subparsers.add_parser(
        "rules",
        help="check rule files, or dry-run them over recorded data",
        description=__doc__,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="rules_command", required=True)
    check = commands.add_parser(
        "check",
        help="validate rule files",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="rule files (YAML)")
    check.set_defaults(func=check_command)
    test = commands.add_parser(
        "test",
        help="show the alerts rule files would have fired over a CSV of recorded samples",
        description=__doc__,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test.add_argument("files", nargs="+", metavar="FILE", help="rule files (YAML)")
    test.add_argument("-i", "--input", required=True, metavar="CSV", help="samples; - for stdin")
    test.add_argument("--kind", help="the kind of every row (wide CSV: whose metric columns)")
    test.add_argument(
        "--map",
        action="append",
        type=_pair,
        default=[],
        metavar="SOURCE=NAME",
        help="read column SOURCE as NAME (e.g. stationcode=site); repeatable",
    )
    test.add_argument(
        "--label", action="append", default=[], metavar="COLUMN", help="pass a column as a label"
    )
    test.add_argument(
        "--utc-offset-h",
        type=float,
        default=None,
        help="offset of timestamps without a zone (default: the rule set's utc_offset_h)",
    )
    test.add_argument(
        "--registry",
        help="site registry (a file, or 'example'): districts and names of the subjects",
    )
    test.set_defaults(func=run_test_command)
    return parser

"""``urbansense``: the operator's command line.

``urbansense backtest [INPUT ...]``
    Runs a detector configuration over recorded data and writes the scores. An input
    is a CSV with ``timestamp`` and ``value`` columns (a path, or ``-`` / nothing for
    standard input), scored as one series; or a ``.jsonl`` file of wire-format
    readings (``urbansense-sim run``'s ``readings.jsonl``), scored metric by metric
    with each kind's profile, sensors that went quiet looked for every ``--silence-s``
    seconds of event time, and pollution stations compared with their district's when
    ``--registry`` names the site registry. One input writes to ``--output``
    (standard output by default); several write one file each into the ``--output``
    directory.

    With ``--labels``, it scores the detections too: NAB's label windows
    (``combined_windows.json``) give the NAB score of the CSV inputs for NAB's three
    profiles, normalised between the null and the perfect detector on the files
    given; a simulator's ``ground-truth.jsonl`` gives precision, recall and time to
    detect per incident kind for readings input. The report goes to standard error
    when the scores go to standard output.

``urbansense aqi --input CSV``
    Computes the air quality index of every row of a CSV of hourly station
    concentrations (CNEMC's column names by default, others mapped with ``--column
    METRIC=NAME``): HJ 633-2012 as CNEMC publishes it hourly, or the US EPA AQI with
    ``--standard epa``; each row is written back with its AQI, level, colour and
    primary pollutant(s), and checked against an official ``aqi`` column if present.

``urbansense bridge --mqtt URL --kafka HOST:PORT``
    Forwards the gateways' envelopes and status messages from MQTT (QoS 1, persistent
    session, an MQTT 5 shared subscription with ``--share-group``) to Kafka, one
    record per envelope keyed by gateway id, acknowledging each MQTT message only
    once Kafka has its record; payloads the codec refuses go to the dead-letter topic
    with the reasons. Runs until SIGTERM or Ctrl-C.

``urbansense rules check FILE...`` / ``urbansense rules test FILE... --input CSV``
    Validates rule files, or dry-runs them over recorded samples (see ``stream.rules_cli``).

``urbansense grafana generate|push``
    Writes the Grafana boards (dashboards as code) into ``deploy/grafana/dashboards``,
    or uploads them to a running Grafana (see ``stream.grafana.cli``).

``urbansense acl --registry FILE -o DIR``
    Writes the broker's password and ACL files from the site registry: each gateway
    publishes only under its own topics (see ``stream.acl_cli``).

Exit status: 0 done, 2 bad input (the message names the file, line and field).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta, timezone
from pathlib import Path
from typing import IO

from stream.acl_cli import add_parser as add_acl_parser
from stream.anomaly.config import AnomalyConfig, load_config
from stream.anomaly.scorer import MetricScore, ReadingScorer, neighbours_from_registry
from stream.backtest import incidents, nab
from stream.backtest.errors import BacktestError
from stream.backtest.run import (
    read_readings,
    read_series,
    score_series,
    write_metric_scores,
    write_series,
)
from stream.bridge.cli import add_parser as add_bridge_parser
from stream.grafana.cli import add_parser as add_grafana_parser
from stream.indices.aqi import AqiError
from stream.indices.aqi_csv import add_parser as add_aqi_parser
from stream.rules_cli import add_parser as add_rules_parser
from telemetry import Kind
from telemetry.documents import DocumentError
from telemetry.registry import load_example_registry, load_registry

__all__ = ["main"]


@contextmanager
def _opened(path: str, mode: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdin if "r" in mode else sys.stdout
        return
    with open(path, mode, encoding="utf-8", newline="" if "w" in mode else None) as f:
        yield f


def _output_paths(args: argparse.Namespace, suffix: str) -> list[str]:
    """Where each input's scores go: the output, or a file each in the output directory."""
    inputs = args.inputs or ["-"]
    if len(inputs) == 1:
        return [args.output or "-"]
    if not args.output:
        msg = "several inputs need --output DIR for their scores"
        raise BacktestError(msg)
    directory = Path(args.output)
    paths = [str(directory / (Path(source).stem + suffix)) for source in inputs]
    clash = next((p for p in paths if paths.count(p) > 1), None)
    if clash is not None:
        msg = f"two inputs would write {clash}: give inputs different file names"
        raise BacktestError(msg)
    directory.mkdir(parents=True, exist_ok=True)
    return paths


def _backtest_csv(
    args: argparse.Namespace, config: AnomalyConfig, report: IO[str]
) -> list[nab.ScoredSeries]:
    scored: list[nab.ScoredSeries] = []
    zone = timezone(timedelta(hours=config.utc_offset_h))
    windows = nab.load_windows(args.labels, zone) if args.labels else None
    outputs = _output_paths(args, ".scores.csv")
    for source, output in zip(args.inputs or ["-"], outputs, strict=True):
        with _opened(source, "r") as f:
            name = "<stdin>" if source == "-" else source
            series = read_series(f, name, utc_offset_h=config.utc_offset_h)
        combiner = config.combiner_for(args.kind, args.metric)
        scores = score_series(combiner, series)
        with _opened(output, "w") as out:
            write_series(out, series, scores)
        if windows is not None:
            key = nab.label_key(source, windows)
            scored.append(nab.ScoredSeries(key, series.timestamps, scores))
    if windows is not None:
        results = nab.score_corpus(scored, windows)
        standard = results["standard"].threshold
        print(nab.format_report(results), file=report)
        print(f"\nwindows at the standard profile's threshold ({standard:.6g}):", file=report)
        print(nab.format_detections(nab.window_detections(scored, windows, standard)), file=report)
    return scored


def _backtest_readings(args: argparse.Namespace, config: AnomalyConfig, report: IO[str]) -> None:
    neighbours = None
    if args.registry:
        registry = (
            load_example_registry() if args.registry == "example" else load_registry(args.registry)
        )
        neighbours = neighbours_from_registry(registry)
    scorer = ReadingScorer(config, neighbours)
    results: list[MetricScore] = []
    sensor_kind: dict[str, str] = {}
    for source, output in zip(args.inputs, _output_paths(args, ".scores.csv"), strict=True):
        with _opened(source, "r") as f:
            scores = scorer.score_all(read_readings(f, source), check_silence_s=args.silence_s)
            with _opened(output, "w") as out:
                kept = _keep(scores, args.threshold, results, sensor_kind)
                write_metric_scores(out, (s for s in kept if s.reading))
    if args.labels:
        labels = incidents.load_ground_truth(args.labels)
        detections = [incidents.Detection(s.ts, s.sensor_id, s.metric, s.score) for s in results]
        result = incidents.score_incidents(
            labels,
            detections,
            sensor_kind=sensor_kind,
            tolerance=timedelta(minutes=args.tolerance_min),
        )
        print(incidents.format_report(result), file=report)


def _keep(
    scores: Iterable[MetricScore],
    threshold: float,
    into: list[MetricScore],
    sensor_kind: dict[str, str],
) -> Iterator[MetricScore]:
    """Pass scores through, keeping the detections and each sensor's kind on the way."""
    for s in scores:
        sensor_kind[s.sensor_id] = s.kind
        if s.score >= threshold:
            into.append(s)
        yield s


def _cmd_backtest(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    to_stdout = len(args.inputs) <= 1 and (args.output in (None, "-"))
    report = sys.stderr if to_stdout else sys.stdout
    readings = [p for p in args.inputs if p.endswith(".jsonl")]
    if readings and len(readings) != len(args.inputs):
        msg = "give either CSV series or readings files (.jsonl), not both"
        raise BacktestError(msg)
    if readings:
        _backtest_readings(args, config, report)
    else:
        _backtest_csv(args, config, report)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="urbansense", description="urbansense operator tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    bt = commands.add_parser(
        "backtest",
        help="run a detector configuration over recorded data",
        description=__doc__.split("``urbansense backtest [INPUT ...]``")[1].split("Exit status")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bt.add_argument(
        "inputs", nargs="*", metavar="INPUT", help="CSV or readings .jsonl; - or none: stdin"
    )
    bt.add_argument("--config", help="anomaly config YAML over the shipped defaults")
    bt.add_argument("--kind", choices=[k.value for k in Kind], help="profile of a CSV series: kind")
    bt.add_argument("--metric", help="profile of a CSV series: metric within --kind")
    bt.add_argument(
        "-o", "--output", help="scores file (one input) or directory (several); default stdout"
    )
    bt.add_argument("--labels", help="NAB combined_windows.json, or a simulator ground-truth.jsonl")
    bt.add_argument(
        "--registry",
        help="site registry of the readings' sensors (a file, or 'example'): "
        "compares each pollution station with its district's",
    )
    bt.add_argument(
        "--silence-s",
        type=float,
        default=300.0,
        help="readings: look for sensors gone quiet every this many seconds of event time",
    )
    bt.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="score that counts as a detection (ground truth); default 0.5",
    )
    bt.add_argument(
        "--tolerance-min",
        type=float,
        default=30.0,
        help="minutes after an incident's end that still count; default 30",
    )
    bt.set_defaults(func=_cmd_backtest)
    add_acl_parser(commands)
    add_aqi_parser(commands)
    add_bridge_parser(commands)
    add_grafana_parser(commands)
    add_rules_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if getattr(args, "metric", None) and not args.kind:
        print("urbansense: --metric needs --kind", file=sys.stderr)
        return 2
    try:
        status: int = args.func(args)
    except (AqiError, BacktestError, DocumentError, OSError) as exc:
        print(f"urbansense: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())

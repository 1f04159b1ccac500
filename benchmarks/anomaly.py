"""Anomaly detection quality and speed: the figures the README reports.

Three parts, each selectable with ``--part``:

``nab``
    The default configuration's NAB score (standard, reward-low-FP and reward-low-FN
    profiles, normalised on the files scored) on the ten files of
    ``../shared/data/nab-dev/``, one configuration for every file.
``week``
    Simulates ``simulators/examples/city-week.yaml`` (a learning week, then a week of
    incidents and sensor faults) and the same two weeks without incidents, scores
    every reading with the shipped per-kind profiles (silence checked every 5 minutes
    of event time), and prints precision, recall and median time to detect per
    incident kind for the second week, and the alerts the quiet twin raised in its
    second week (the daily cycles alone). Simulated readings are cached in
    ``--cache`` (default: a folder in the system's temporary directory).
``speed``
    Throughput of the generic default profile on one core: per event
    (``Combiner.process_one``) and batched (10,000 series, one observation each per
    call); the stream's scorer (every shipped profile, neighbours included) over the
    stream benchmark's stage readings (134,400 readings of 560 sensors over an hour) in
    steps of 500 envelopes, in event-time order and in partition blocks as a worker
    takes a backlog (about 45 readings of each sensor a step); and the bytes of state
    per series of every shipped profile.

    .venv/bin/python benchmarks/anomaly.py [--part nab|week|speed] [--cache DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import yaml
from streaming import stage_envelopes, write_registry

from simulators.engine import City
from simulators.scenario import load_scenario, parse_scenario
from stream.anomaly import DEFAULT_CONFIG, Observation, ReadingScorer
from stream.anomaly.scorer import MetricScore, neighbours_from_registry
from stream.backtest import nab
from stream.backtest.incidents import (
    Detection,
    TruthLabel,
    format_report,
    score_incidents,
)
from stream.backtest.run import read_series, score_series
from telemetry import Reading
from telemetry.catalogue import CATALOGUE

ROOT = Path(__file__).resolve().parent.parent
NAB_DIR = ROOT.parent / "shared" / "data" / "nab-dev"
WEEK = ROOT / "simulators" / "examples" / "city-week.yaml"
LEARNING = timedelta(days=7)
SILENCE_CHECK_S = 300.0


# ---------------------------------------------------------------- NAB
def nab_part() -> None:
    config = DEFAULT_CONFIG
    zone = timezone(timedelta(hours=config.utc_offset_h))
    windows = nab.load_windows(NAB_DIR / "combined_windows.json", zone)
    scored = []
    started = time.perf_counter()
    rows = 0
    for key in windows:
        with open(NAB_DIR / key, encoding="utf-8") as f:
            series = read_series(f, key, utc_offset_h=config.utc_offset_h)
        scores = score_series(config.combiner_for(None, None), series)
        scored.append(nab.ScoredSeries(key, series.timestamps, scores))
        rows += len(series)
    elapsed = time.perf_counter() - started
    print(f"NAB dev: {len(scored)} files, {rows} rows scored per event in {elapsed:.1f} s")
    print(nab.format_report(nab.score_corpus(scored, windows)))


# ---------------------------------------------------------------- simulated week
def _simulate(scenario_text: str, out: Path) -> None:
    scenario = parse_scenario(scenario_text, str(WEEK), base=WEEK.parent)
    city = City(scenario)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "readings.jsonl.part"
    with open(tmp, "w", encoding="utf-8") as f:
        for reading in city.run():
            f.write(reading.model_dump_json() + "\n")
    with open(out / "ground-truth.jsonl", "w", encoding="utf-8") as f:
        for entry in city.truth:
            f.write(entry.to_json() + "\n")
    tmp.rename(out / "readings.jsonl")


def _cached(cache: Path, name: str, text: str) -> Path:
    folder = cache / name
    if not (folder / "readings.jsonl").exists():
        print(f"simulating {name} (about a minute) into {folder}")
        _simulate(text, folder)
    return folder


def _readings(folder: Path) -> Iterable[Reading]:
    with open(folder / "readings.jsonl", encoding="utf-8") as f:
        for line in f:
            yield Reading.model_validate_json(line)


def _alerts(folder: Path, since: datetime) -> tuple[list[MetricScore], dict[str, str], int]:
    scenario = load_scenario(WEEK)
    scorer = ReadingScorer(DEFAULT_CONFIG, neighbours_from_registry(scenario.registry))
    alerts: list[MetricScore] = []
    kinds: dict[str, str] = {}
    count = 0
    for s in scorer.score_all(_readings(folder), check_silence_s=SILENCE_CHECK_S):
        count += 1
        kinds[s.sensor_id] = s.kind
        if s.score >= 0.5 and s.ts >= since:
            alerts.append(s)
    return alerts, kinds, count


def week_part(cache: Path) -> None:
    text = WEEK.read_text(encoding="utf-8")
    quiet = yaml.safe_load(text)
    quiet["incidents"], quiet["faults"] = [], []
    start = load_scenario(WEEK).file.start
    since = start + LEARNING

    folder = _cached(cache, "city-week", text)
    started = time.perf_counter()
    alerts, kinds, count = _alerts(folder, since)
    elapsed = time.perf_counter() - started
    labels = [
        TruthLabel.model_validate_json(line)
        for line in (folder / "ground-truth.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    labels = [label for label in labels if label.end is None or label.end >= since]
    detections = [Detection(a.ts, a.sensor_id, a.metric, a.score) for a in alerts]
    report = score_incidents(labels, detections, sensor_kind=kinds)
    print(f"City week: {count} metric scores in {elapsed:.1f} s; scored from {since:%Y-%m-%d}")
    print(format_report(report))
    print()
    print("false alarm episodes by detector:")
    by = Counter((kinds[e.sensor], e.metric) for e in report.false_episodes)
    for (kind, metric), n in by.most_common():
        print(f"  {kind}.{metric}: {n}")

    quiet_folder = _cached(cache, "city-week-quiet", yaml.safe_dump(quiet, sort_keys=False))
    quiet_alerts, _, _ = _alerts(quiet_folder, since)
    print()
    print(f"Quiet twin (daily cycles only), second week: {len(quiet_alerts)} alerts")
    for (kind, metric, det), n in Counter(
        (a.kind.value, a.metric, a.detector) for a in quiet_alerts
    ).most_common():
        print(f"  {kind}.{metric} by {det}: {n}")


# ---------------------------------------------------------------- speed
def speed_part() -> None:
    rng = np.random.default_rng(7)
    combiner = DEFAULT_CONFIG.combiner_for(None, None)
    n_events = 20_000
    values = 50 + 10 * np.sin(np.arange(n_events) / 50) + rng.normal(0, 2, n_events)
    started = time.perf_counter()
    for i in range(n_events):
        combiner.process_one(Observation(60.0 * i, float(values[i])), "one")
    per_event = n_events / (time.perf_counter() - started)

    series, steps = 10_000, 60
    combiner = DEFAULT_CONFIG.combiner_for(None, None)
    keys = [f"s{i}" for i in range(series)]
    base = 50 + 10 * rng.random(series)
    started = time.perf_counter()
    for step in range(steps):
        x = base + rng.normal(0, 2, series)
        combiner.process(keys, np.full(series, 60.0 * step), x)
    batched = series * steps / (time.perf_counter() - started)
    print(f"generic profile ({', '.join(d.name for d in combiner.detectors)}), one core:")
    print(f"  per event: {per_event:,.0f} observations/s")
    print(f"  batched, {series} series per call: {batched:,.0f} observations/s")
    scorer_speed()
    print("state bytes per series:")
    print(f"  generic: {combiner.state_size()}")
    for kind, metrics in CATALOGUE.items():
        sizes = {m: DEFAULT_CONFIG.combiner_for(kind, m).state_size() for m in metrics}
        print(f"  {kind}: " + ", ".join(f"{m} {b}" for m, b in sizes.items()))


def scorer_speed(gateways: int = 20, readings: int = 134_400, step: int = 500) -> None:
    """The stream's scorer over the stage readings, in two orders (see the module doc)."""
    with tempfile.TemporaryDirectory() as folder:
        _, registry = write_registry(Path(folder), gateways)
    envelopes = stage_envelopes(gateways, readings, 15.0, 50)
    # Four partitions by gateway; the sort is stable, so each block keeps time order.
    blocks = sorted(envelopes, key=lambda e: zlib.crc32(e.gateway_id.encode()) % 4)
    print(f"stream scorer, {readings:,} readings in steps of {step} envelopes, one core:")
    for name, order in (("event-time order", envelopes), ("partition blocks", blocks)):
        scorer = ReadingScorer(DEFAULT_CONFIG, neighbours_from_registry(registry))
        steps = [
            [r for e in order[start : start + step] for r in e.readings]
            for start in range(0, len(order), step)
        ]
        started = time.perf_counter()
        for batch in steps:
            scorer.score_flat(batch)
        rate = readings / (time.perf_counter() - started)
        print(f"  {name}: {rate:,.0f} readings/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["nab", "week", "speed"], action="append")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "urbansense-bench"
    )
    args = parser.parse_args()
    parts = args.part or ["nab", "week", "speed"]
    if "nab" in parts:
        nab_part()
    if "week" in parts:
        week_part(args.cache)
    if "speed" in parts:
        speed_part()


if __name__ == "__main__":
    main()

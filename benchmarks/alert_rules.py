"""The alert rules' cost: evaluations per second with the default rule set, on one core.

A simulated city of ``--sensors`` sensors (copies of the example city, one district
per copy, as in ``benchmarks/streaming.py``; synthetic values), one reading per sensor
every 15 s over ``--minutes`` of event time, goes through

* the rule engine alone: each reading's metrics as samples (with an anomaly score
  of 0.1), :meth:`rules.engine.RuleEngine.evaluate` in batches of 25,000 readings;
* the stream's pipeline without rules and with the default rule set (scores,
  windows, indices, line protocol, state snapshots, and the rules over readings,
  scores and index points), in batches of 500 envelopes of 50 readings.

It prints samples/s, readings/s and the alerts fired (the synthetic drivers' values
are random walks, so the stuck and out-of-range rules find some).

    .venv/bin/python benchmarks/alert_rules.py [--sensors 10000] [--minutes 10]

(Not ``benchmarks/rules.py``: a script's folder comes first on ``sys.path``, and a
module of that name would hide the ``rules`` package.)
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from streaming import stage_envelopes, write_registry

from rules.engine import RuleEngine, Sample
from rules.load import load_default_rules
from stream.pipeline import Pipeline
from stream.sinks.lineprotocol import Precision
from telemetry import Batch, Reading
from telemetry.registry import Registry

SENSORS_PER_COPY = 28


def samples_of(readings: list[Reading], registry: Registry) -> list[Sample]:
    """Each reading's metrics as the pipeline hands them to the rules."""
    site = {s.id: s.site for s in registry.sensors}
    gateway = {s.id: s.gateway for s in registry.sensors}
    district = {s.id: s.district for s in registry.sites}
    return [
        Sample(
            r.kind.value,
            metric,
            float(value),
            r.ts,
            sensor=r.sensor_id,
            gateway=gateway[r.sensor_id],
            site=site[r.sensor_id],
            district=district[site[r.sensor_id]],
            score=0.1,
            detector="seasonal",
        )
        for r in readings
        for metric, value in r.metrics.items()
    ]


def engine_alone(registry: Registry, envelopes: list[Batch]) -> None:
    readings = [r for e in envelopes for r in e.readings]
    engine = RuleEngine(load_default_rules(), registry)
    batch = 25_000
    samples = [
        samples_of(readings[i : i + batch], registry) for i in range(0, len(readings), batch)
    ]
    count = sum(len(s) for s in samples)
    began = time.perf_counter()
    alerts = 0
    for part in samples:
        alerts += len(engine.evaluate(part))
    alerts += len(engine.check_absence(readings[-1].ts))
    seconds = time.perf_counter() - began
    print(
        f"  rule engine alone: {count / seconds:,.0f} samples/s = {len(readings) / seconds:,.0f}"
        f" readings/s ({count:,} samples, {engine.stats.matched:,} rule matches,"
        f" {alerts} alerts)"
    )


def pipeline(registry: Registry, envelopes: list[Batch], rules: RuleEngine | None) -> None:
    readings = sum(len(e.readings) for e in envelopes)
    stream = Pipeline(registry, precision=Precision.MS, rules=rules)
    alerts = 0
    began = time.perf_counter()
    for start in range(0, len(envelopes), 500):
        out = stream.process(envelopes[start : start + 500])
        alerts += len(out.alerts)
        for key in out.touched:
            stream.snapshot(key)
    seconds = time.perf_counter() - began
    what = "with the default rules" if rules else "without rules"
    print(f"  pipeline {what}: {readings / seconds:,.0f} readings/s ({alerts} alerts)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    copies = math.ceil(args.sensors / SENSORS_PER_COPY)
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as folder:
        _, registry = write_registry(Path(folder), copies)
    readings = int(copies * SENSORS_PER_COPY * args.minutes * 4)
    envelopes = stage_envelopes(copies, readings, 15.0, 50)
    print(
        f"== {copies * SENSORS_PER_COPY:,} sensors, {readings:,} readings over"
        f" {args.minutes:g} minutes, {len(load_default_rules().rules)} default rules =="
    )
    engine_alone(registry, envelopes)
    pipeline(registry, envelopes, None)
    pipeline(registry, envelopes, RuleEngine(load_default_rules(), registry))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The alert rules' cost: evaluations per second with the default rule set, on one core.

A simulated city of ``--sensors`` sensors (copies of the example city, one district
per copy, as in ``benchmarks/streaming.py``; synthetic values), one reading per sensor
every 15 s over ``--minutes`` of event time, goes through

* the rule engine alone: each reading's metrics as samples (with an anomaly score
  of 0.1), :meth:`rules.engine.RuleEngine.evaluate` in batches of 25,000 readings;
* the stream's pipeline without rules and with the default rule set (scores,
  windows, indices, line protocol, state snapshots once a second, and the rules
  over readings, scores and index points), in steps of 500 envelopes of 50
  readings; and with the rules in steps of 6 envelopes, as a live worker takes them.

It prints samples/s, readings/s and the alerts fired (the synthetic drivers' values
are random walks, so the stuck and out-of-range rules find some).

``--latency-rate R ...``: the time from a reading crossing a threshold to a webhook
receiving the alert. A Tansu, a VictoriaMetrics and one stream worker (the default
rules plus one probe rule: PM2.5 above 400 fires, below 100 clears; a webhook route
with no group wait) run here; the fleet's readings go straight into the readings
topic at ``R`` readings/s, in envelopes of 50, stamped with the wall clock, and every
``--every-s`` the probe station's reading crosses the threshold one way or the other.
A crossing's latency is from producing that reading to the webhook receiving its
firing or resolved notification (an aiohttp server in this process).

    .venv/bin/python benchmarks/alert_rules.py [--sensors 10000] [--minutes 10]
        [--latency-rate 1000 3000] [--seconds 60] [--every-s 4] [--profile-worker]

``--profile-worker`` runs each latency run's worker under cProfile (so slower) and
prints where its main thread's time goes.

(Not ``benchmarks/rules.py``: a script's folder comes first on ``sys.path``, and a
module of that name would hide the ``rules`` package.)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import pstats
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped,unused-ignore]
from broker import free_port
from streaming import (
    PROBE_GATEWAY,
    PROBE_SENSOR,
    create_topics,
    profile_table,
    servers,
    stage_envelopes,
    stream_worker,
    worker_breakdown,
    write_registry,
)

from rules.engine import RuleEngine, Sample
from rules.load import default_rules_path, load_default_rules
from simulators.fleet import FleetPlan
from stream.pipeline import Pipeline
from stream.sinks.lineprotocol import Precision
from telemetry import Batch, Kind, Reading
from telemetry.codec import Codec
from telemetry.registry import Registry, load_example_registry

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


def pipeline(
    registry: Registry, envelopes: list[Batch], rules: RuleEngine | None, step: int = 500
) -> None:
    """The pipeline in steps of ``step`` envelopes, the state snapshotted once a second
    (of this process's clock) as the worker stores it."""
    readings = sum(len(e.readings) for e in envelopes)
    stream = Pipeline(registry, precision=Precision.MS, rules=rules)
    alerts = 0
    touched: set[str] = set()
    began = stored_at = time.perf_counter()
    for start in range(0, len(envelopes), step):
        out = stream.process(envelopes[start : start + step])
        alerts += len(out.alerts)
        touched |= out.touched
        if time.perf_counter() - stored_at >= 1.0:
            stream.snapshots(touched)
            touched, stored_at = set(), time.perf_counter()
    stream.snapshots(touched)
    seconds = time.perf_counter() - began
    what = "with the default rules" if rules else "without rules"
    samples = f", {rules.stats.samples:,} rule samples" if rules else ""
    print(
        f"  pipeline {what}, steps of {step} envelopes ({step * 50:,} readings):"
        f" {readings / seconds:,.0f} readings/s ({alerts} alerts{samples})"
    )


PROBE_RULE = f"""
version: 1
rules:
  - id: probe-pm25
    severity: critical
    select: {{kind: pollution, metric: pm2_5, sensor: {PROBE_SENSOR}}}
    threshold: {{above: 400}}
    clear: {{below: 100}}
"""


class Webhook:
    """An aiohttp webhook on a loopback port, in a thread: when each status arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: list[tuple[float, str]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        now = time.time()
        self.arrivals += [(now, a["status"]) for a in body["alerts"]]
        return web.Response(text="ok")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> Webhook:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


async def produce(
    kafka: str, topic: str, copies: int, rate: float, seconds: float, every_s: float
) -> list[tuple[float, str]]:
    """The fleet at ``rate`` and the probe's crossings; (send time, status) of each crossing."""
    plan = FleetPlan(
        gateways=copies,
        sensors_per_gateway=SENSORS_PER_COPY,
        rate=1.0,
        start=datetime.now(UTC),
    )
    sensors = plan.sensors(load_example_registry())
    for sensor in sensors:
        sensor.driver.open()
    gateways = [
        sensors[start : start + SENSORS_PER_COPY]
        for start in range(0, len(sensors), SENSORS_PER_COPY)
    ]
    codec = Codec()
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=5)
    await producer.start()
    crossings: list[tuple[float, str]] = []
    try:
        began = time.time()
        sent, g, probe_seq, high = 0, 0, 0, False
        next_cross = began + every_s
        while (now := time.time()) < began + seconds:
            due = int((now - began) * rate) - sent
            stamp = datetime.fromtimestamp(now, UTC)
            for _ in range(max(0, due) // SENSORS_PER_COPY):  # a gateway's sensors at once
                gateway = gateways[g % len(gateways)]
                g += 1
                readings = []
                for sensor in gateway:
                    sensor.seq += 1
                    readings.append(
                        Reading(
                            sensor_id=sensor.id,
                            kind=sensor.kind,
                            seq=sensor.seq,
                            ts=stamp,
                            interval_s=15.0,
                            metrics=sensor.driver.read(),
                        )
                    )
                batch = Batch(gateway_id=gateway[0].gateway_id, readings=tuple(readings))
                key = batch.gateway_id.encode()
                await producer.send(topic, key=key, value=codec.encode(batch))
                sent += len(readings)
            if now >= next_cross:
                high = not high
                probe_seq += 1
                probe = Reading(
                    sensor_id=PROBE_SENSOR,
                    kind=Kind.POLLUTION,
                    seq=probe_seq,
                    ts=stamp,
                    metrics={"pm2_5": 450.0 if high else 50.0},
                )
                batch = Batch(gateway_id=PROBE_GATEWAY, readings=(probe,))
                await producer.send_and_wait(
                    topic, key=PROBE_GATEWAY.encode(), value=codec.encode(batch)
                )
                crossings.append((time.time(), "firing" if high else "resolved"))
                next_cross += every_s
            await asyncio.sleep(0.02)
    finally:
        await producer.stop()
    return crossings[:-1] if crossings and crossings[-1][1] == "firing" else crossings


def latency(args: argparse.Namespace, copies: int) -> None:
    """Threshold crossing to webhook, at each ``--latency-rate``."""
    with tempfile.TemporaryDirectory(prefix="bench-alert-latency-") as name:
        folder = Path(name)
        registry_path, _ = write_registry(folder, copies)
        (folder / "probe.yaml").write_text(PROBE_RULE, encoding="utf-8")
        with Webhook() as hook:
            (folder / "routing.yaml").write_text(
                "receivers: [{name: hook, type: webhook,"
                f" url: 'http://127.0.0.1:{hook.port}/hook'}}]\n"
                "route: {receiver: hook, group_by: [rule_id], group_wait: 0s,"
                " group_interval: 1s, repeat_interval: 4h}\n",
                encoding="utf-8",
            )
            rules = f"{default_rules_path()},{folder / 'probe.yaml'}"
            for rate in args.latency_rate:
                run = f"lat{int(rate)}"
                with servers(folder / run, with_mqtt=False) as (_, kafka, url):
                    asyncio.run(
                        create_topics(kafka, [f"{run}.readings", f"{run}.status", f"{run}.dead"])
                    )
                    settings = {
                        "URBANSENSE_RULES": rules,
                        "URBANSENSE_ROUTING": str(folder / "routing.yaml"),
                    }
                    profile = folder / f"{run}.prof" if args.profile_worker else None
                    with stream_worker(
                        folder, run, kafka, url, registry_path, profile, settings=settings
                    ):
                        hook.arrivals.clear()
                        crossings = asyncio.run(
                            produce(
                                kafka, f"{run}.readings", copies, rate, args.seconds, args.every_s
                            )
                        )
                        time.sleep(10.0)  # the last crossings' notifications
                        arrivals = list(hook.arrivals)
                delays = []
                for sent_at, status in crossings:
                    after = [t for t, s in arrivals if s == status and t >= sent_at]
                    if after:
                        delays.append(min(after) - sent_at)
                delays.sort()
                if delays:
                    p50 = delays[len(delays) // 2]
                    p99 = delays[min(len(delays) - 1, math.ceil(0.99 * len(delays)) - 1)]
                    figures = f"p50 {p50 * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms"
                else:
                    figures = "no notification arrived"
                print(
                    f"  threshold crossing -> webhook at {rate:,.0f} readings/s: {figures}"
                    f" ({len(delays)} of {len(crossings)} crossings notified)"
                    + (", the worker under cProfile" if profile else ""),
                    flush=True,
                )
                if profile is not None and profile.exists():
                    stats = pstats.Stats(str(profile), stream=io.StringIO())
                    print(f"{worker_breakdown(stats)}\n{profile_table(stats, 12)}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--latency-rate", type=float, nargs="*", default=[])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every-s", type=float, default=4.0)
    parser.add_argument(
        "--profile-worker",
        action="store_true",
        help="run each latency run's worker under cProfile and print where its time goes",
    )
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
    # As a live worker takes them: what arrives within its fetch wait.
    pipeline(registry, envelopes, RuleEngine(load_default_rules(), registry), step=6)
    if args.latency_rate:
        latency(args, copies)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The stream end to end, each stage alone, and the latency from MQTT publish to a query.

Everything runs on this machine, on 127.0.0.1, started and stopped here: Mosquitto
(no persistence, unlimited queues), Tansu (in memory), VictoriaMetrics (data in a
temporary folder), one bridge process (``python -m stream.bridge.cli``, 4 partitions)
and one stream worker (``python -m stream.app worker --without-web``, its defaults:
batches of up to 500 envelopes or 0.5 s). Every wait is bounded.

(This file is not ``benchmarks/stream.py``: a script's folder comes first on
``sys.path``, so a module of that name would hide the ``stream`` package from every
benchmark here, and mypy would refuse two modules named ``stream``.)

The city. The example registry has 28 sensors on 4 gateways; the fleet's gateway
``fleet-gw-0007`` serves a copy of those 28 sensors bound to its own copy of the
example's sites, scenic areas, road segments and buildings, all in one district of its
own (a gateway's sensors lie in one district, so the worker forwards its envelopes
whole). So every
reading is one the stream knows, scores and indexes, with its spatial neighbours
in its copy. Sensor ids and values are the fleet runner's
(:mod:`simulators.fleet`, synthetic drivers). The registry goes to a YAML file the
worker loads (``URBANSENSE_REGISTRY``).

Parts (``--part``; all by default):

* ``stages`` -- each stage alone, on the same readings: ``--stage-gateways`` x 28
  sensors, one reading per sensor every ``--interval-s`` over ``--stage-minutes`` of
  event time (so that windows close as in a steady state), in envelopes of
  ``--envelope`` readings:

  - codec decode of the envelopes' JSON, one core;
  - the pipeline as the agent runs it (``Pipeline.process``, then a snapshot of every
    key the batch touched), one core, in two batch sizes: the worker's full batch
    (500 envelopes), what it gets under a backlog; and ``--realtime-readings``, what it
    gets in its 0.5 s window at about 1,000 readings/s. Each is run again under
    cProfile: own time by source file, top functions by own and cumulative time;
  - the sink: ``benchmarks/sink.py``'s ``encode_and_write`` (200,000 points);
  - the bridge: ``benchmarks/bridge.py``'s ``measure`` (2,000 envelopes of 100
    readings queued in Mosquitto, drained by one bridge process);
  - the worker: the readings topic filled beforehand (keyed by gateway over its
    partitions, so that the worker reads them at different paces), then one worker
    started and timed from Faust's "Ready" to its last "batch written", every reading
    checked in VictoriaMetrics; and the CPU that VictoriaMetrics and Tansu spent
    meanwhile, per reading. With ``--profile-worker`` a second worker runs under
    cProfile (its main thread: the agent, the pipeline, the sink; aiokafka's consumer
    has a thread of its own), and where its time went is printed.

* ``e2e`` -- the whole path: fleet -> Mosquitto -> bridge -> Tansu -> worker ->
  VictoriaMetrics. The fleet is a child process (this script with ``--fleet-child``)
  doing what :func:`simulators.fleet.run_fleet` does -- each virtual gateway with the
  edge agent's disk queue and batching MQTT publisher -- in phases whose sequence
  numbers go on from one to the next (a new run would restart them, and the stream
  would drop its readings as resends). Event time is the wall clock.

  - a probe runs throughout, in this process: a gateway of its own (``probe-gw``, one
    pollution sensor) publishing one reading per envelope ``--probe-hz`` times a
    second, QoS 1, with paho. Each probe reading's wall time is taken just before
    ``publish``; a thread polls VictoriaMetrics every 20 ms for the probe's
    ``pollution_seq`` series and notes when each seq first shows. A reading's latency
    is the difference: publish to queryable, through the fleet's traffic, including
    VictoriaMetrics' own delay before an ingested sample is searchable (about 0.9 s,
    measured here at idle and printed). No forced flush is made while latencies are
    taken;
  - warm-up: every sensor publishes a few readings, and the run waits until they are
    in VictoriaMetrics (a new series becomes searchable only ~10 s after its first
    sample, which would otherwise count as latency);
  - latency: the fleet at each ``--latency-rate`` for ``--seconds``; p50, p99 and max
    of the probe readings published meanwhile, and the CPU of every process (the
    worker, the bridge, the fleet, Mosquitto, Tansu and VictoriaMetrics);
  - throughput: the fleet at ``--rate`` (the target, 50,000; the fleet gets what one
    Python process gives it on a shared machine) for ``--seconds``, then up to
    ``--drain-s`` for the backlog; VictoriaMetrics' count of raw readings
    (``<kind>_seq`` samples, after a forced flush) every second. The end-to-end rate
    is the readings that landed per second while the stream was saturated. Each
    process's CPU time per reading it moved follows, and the cores the target rate
    would take at that cost.

    .venv/bin/python benchmarks/streaming.py [--part all|stages|e2e] [--gateways 100]
        [--stage-gateways 20] [--stage-minutes 60] [--rate 50000]
        [--latency-rate 500 1000 2000] [--seconds 30] [--profile-worker]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import math
import os
import pstats
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped,unused-ignore]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped,unused-ignore]
from bridge import bridge, cpu_model, cpu_seconds, measure, mosquitto, tansu
from broker import terminate
from paho.mqtt.enums import CallbackAPIVersion
from sink import encode_and_write, http_get, make_points, victoria_metrics

from edge_agents.config import BrokerConfig
from edge_agents.logs import configure_logging
from simulators.fleet import FleetPlan
from simulators.publish import VirtualGateways
from stream.pipeline import Pipeline
from stream.sinks import Precision
from telemetry import Batch, Kind, Reading
from telemetry.codec import Codec
from telemetry.registry import Registry, example_registry_path, load_example_registry, load_registry
from telemetry.topics import readings_topic

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4
KINDS = tuple(k.value for k in Kind)
PROBE_GATEWAY = "probe-gw"
PROBE_SENSOR = "probe-aq-pollution"
PHASE_TIMEOUT_S = 300.0
_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


# ---------------------------------------------------------------- the city


def fleet_registry(gateways: int) -> dict[str, Any]:
    """A registry of ``gateways`` copies of the example city, one per fleet gateway.

    Each copy's ids end in ``-gNNNN``; the fleet runner's sensor ``fleet-gw-NNNN-<id>``
    copies the example sensor ``<id>`` with its bindings moved to the copy. A probe
    gateway with one pollution sensor sits on the first copy's pier station.
    """
    base = yaml.safe_load(example_registry_path().read_text(encoding="utf-8"))
    raw = {s["id"]: s for s in base["sensors"]}
    templates = load_example_registry().sensors
    out: dict[str, Any] = {"version": 1}
    for key in ("districts", "sites", "gateways", "sensors"):
        out[key] = []
    for key in ("scenic_areas", "road_segments", "buildings"):
        out[key] = []
    for g in range(gateways):
        gateway = f"fleet-gw-{g:04d}"

        def moved(entry: dict[str, Any], *keys: str, suffix: str = f"-g{g:04d}") -> dict[str, Any]:
            return {**entry, **{k: f"{entry[k]}{suffix}" for k in keys if k in entry}}

        # One district per copy: a gateway's sensors lie in one district, as a street
        # cabinet's do, so the worker forwards its envelopes whole.
        district = f"{base['districts'][0]['id']}-g{g:04d}"
        out["districts"].append({**base["districts"][0], "id": district})
        out["sites"] += [{**moved(s, "id"), "district": district} for s in base["sites"]]
        out["road_segments"] += [
            {**moved(r, "id"), "district": district} for r in base["road_segments"]
        ]
        out["buildings"] += [moved(b, "id", "site") for b in base["buildings"]]
        out["scenic_areas"] += [
            {**moved(a, "id"), "district": district, "gates": [moved(g, "id") for g in a["gates"]]}
            for a in base["scenic_areas"]
        ]
        out["gateways"].append(moved({"id": gateway, "site": base["gateways"][0]["site"]}, "site"))
        for t in templates:
            entry = moved(raw[t.id], "site", "segment", "area", "gate", "building")
            out["sensors"].append({**entry, "id": f"{gateway}-{t.id}"[:64], "gateway": gateway})
    pier = f"{base['sensors'][0]['site']}-g0000"
    out["gateways"].append({"id": PROBE_GATEWAY, "site": pier})
    out["sensors"].append(
        {"id": PROBE_SENSOR, "kind": "pollution", "site": pier, "gateway": PROBE_GATEWAY}
    )
    return out


def write_registry(folder: Path, gateways: int) -> tuple[Path, Registry]:
    path = folder / "fleet-registry.yaml"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(
        yaml.dump(fleet_registry(gateways), Dumper=dumper, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    return path, load_registry(path)


def fleet_plan(gateways: int, rate: float, start: datetime, seconds: float | None) -> FleetPlan:
    sensors = len(load_example_registry().sensors)
    return FleetPlan(
        gateways=gateways, sensors_per_gateway=sensors, rate=rate, start=start, duration_s=seconds
    )


def stage_envelopes(
    gateways: int, readings: int, interval_s: float, per_envelope: int
) -> list[Batch]:
    """``readings`` fleet readings, one per sensor every ``interval_s`` of event time.

    Event time ends two minutes ago (the codec refuses readings from the future); each
    gateway's readings go in envelopes of ``per_envelope``, in the order they were made.
    """
    sensors_per_gateway = len(load_example_registry().sensors)
    count = gateways * sensors_per_gateway
    span = timedelta(seconds=interval_s * (readings // count + 1))
    start = datetime.now(UTC).replace(microsecond=0) - span - timedelta(minutes=2)
    plan = FleetPlan(
        gateways=gateways, sensors_per_gateway=sensors_per_gateway, rate=1.0, start=start
    )
    sensors = plan.sensors(load_example_registry())
    for s in sensors:
        s.driver.open()
    step = timedelta(seconds=interval_s)
    out: list[Batch] = []
    pending: dict[str, list[Reading]] = defaultdict(list)
    for i in range(readings):
        sensor = sensors[i % count]
        sensor.event_s = interval_s * (sensor.seq + 1)
        reading = Reading(
            sensor_id=sensor.id,
            kind=sensor.kind,
            ts=start + step * (sensor.seq + 1),
            seq=sensor.seq,
            interval_s=interval_s,
            metrics=sensor.driver.read(),
            stats={},
        )
        sensor.seq += 1
        waiting = pending[sensor.gateway_id]
        waiting.append(reading)
        if len(waiting) == per_envelope:
            out.append(Batch(gateway_id=sensor.gateway_id, readings=tuple(waiting)))
            waiting.clear()
    out += [Batch(gateway_id=gw, readings=tuple(rs)) for gw, rs in pending.items() if rs]
    return out


# ---------------------------------------------------------------- profiles


def profile_table(stats: pstats.Stats, top: int = 15) -> str:
    """Own time by source file, then the top functions by own and by cumulative time."""
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    by_file: dict[str, float] = defaultdict(float)
    for (path, _, _), (_, _, tottime, _, _) in raw.items():
        by_file[short(path)] += tottime
    lines = [f"  own time by file (total {total:.2f} s):"]
    for path, seconds in sorted(by_file.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {100 * seconds / total:5.1f} %  {seconds:6.2f} s  {path}")
    for key, label in ((2, "own"), (3, "cumulative")):
        lines.append(f"  top functions by {label} time:")
        ranked = sorted(raw.items(), key=lambda kv: -kv[1][key])[:top]
        for (path, line, name), (_, calls, tottime, cumtime, _) in ranked:
            lines.append(
                f"    {tottime:6.2f} s own {cumtime:6.2f} s cum {calls:>9,} calls"
                f"  {short(path)}:{line}({name})"
            )
    return "\n".join(lines)


WORKER_PARTS = (
    ("the readings agent, in all", "stream/app/agents.py", "readings"),
    ("  codec.decode_batch", "telemetry/codec.py", "decode_batch"),
    ("  pipeline.process", "stream/pipeline.py", "process"),
    ("  sink write (write_until_done)", "stream/app/agents.py", "write_until_done"),
    ("the state store, every state_seconds", "stream/app/agents.py", "store_state"),
    ("  pipeline.snapshots", "stream/pipeline.py", "snapshots"),
    ("  changelog batches (table.store)", "stream/app/tables.py", "store"),
    ("building the app (registry, detectors)", "stream/app/app.py", "build_app"),
    ("waiting in epoll (idle)", "~", "<method 'poll' of 'select.epoll' objects>"),
)


def worker_breakdown(stats: pstats.Stats) -> str:
    """The worker's main thread: where the readings agent's time goes."""
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    lines = [f"  main thread, {total:.2f} s of own time in all:"]
    for label, path, name in WORKER_PARTS:
        seconds = sum(
            v[3] for (p, _, n), v in raw.items() if n == name and (p == path or p.endswith(path))
        )
        lines.append(f"    {label:<40} {seconds:7.2f} s cumulative")
    return "\n".join(lines)


def short(path: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path if path.startswith("~") else Path(path).name


# ---------------------------------------------------------------- servers


@contextmanager
def servers(folder: Path, *, with_mqtt: bool) -> Iterator[tuple[int, str, str]]:
    """(Mosquitto's port or 0, Tansu's bootstrap address, VictoriaMetrics' URL)."""
    mqtt_folder = folder / "mqtt"
    kafka_folder = folder / "kafka"
    vm_folder = folder / "vm"
    for f in (mqtt_folder, kafka_folder, vm_folder):
        f.mkdir(parents=True, exist_ok=True)
    with tansu(kafka_folder) as kafka, victoria_metrics(vm_folder) as url:
        if with_mqtt:
            with mosquitto(mqtt_folder) as port:
                yield port, kafka, url
        else:
            yield 0, kafka, url


SERVER_NAMES = ("mosquitto", "tansu", "victoria")
"""How the servers' processes are named (the kernel keeps 15 characters of a name)."""


def server_pids() -> dict[str, int]:
    """This process's children that are servers, by the start of their names.

    >>> set(server_pids()) <= set(SERVER_NAMES)
    True
    """
    found: dict[str, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) != os.getpid():  # its parent
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        for server in SERVER_NAMES:
            if name.startswith(server):
                found[server] = int(stat.parent.name)
    return found


def cpu_budget(cpu_s: dict[str, float], moved: dict[str, int], target: float) -> str:
    """Each process's CPU time per reading it moved, and the cores ``target`` readings/s need.

    >>> print(cpu_budget({"worker": 1.0, "fleet": 0.5}, {"worker": 10_000, "fleet": 20_000}, 5e4))
      CPU per reading moved: worker 100 us, fleet 25 us; 125 us in all, so 50,000
      readings/s would take 6.2 cores
    """
    per = {name: 1e6 * seconds / moved[name] for name, seconds in cpu_s.items()}
    total = sum(per.values())
    parts = ", ".join(f"{name} {us:,.0f} us" for name, us in per.items())
    return (
        f"  CPU per reading moved: {parts}; {total:,.0f} us in all, so {target:,.0f}\n"
        f"  readings/s would take {total * target / 1e6:,.1f} cores"
    )


async def create_topics(kafka: str, names: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


@dataclass
class WorkerRun:
    process: subprocess.Popen[bytes]
    log_path: Path

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready_at(self) -> float | None:
        for line in self.text().splitlines():
            if "[^Worker]: Ready" in line:
                return stamp(line)
        return None

    def batches(self) -> list[tuple[float, dict[str, int]]]:
        out = []
        for line in self.text().splitlines():
            if "batch written" in line:
                counts = {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", line)}
                out.append((stamp(line), counts))
        return out

    def alive(self) -> bool:
        """True, or RuntimeError with the log's tail if the worker has exited."""
        if self.process.poll() is not None:
            msg = f"the worker exited:\n{self.text()[-3000:]}"
            raise RuntimeError(msg)
        return True


def stamp(line: str) -> float:
    """The epoch seconds of a Faust log line's ``[YYYY-mm-dd HH:MM:SS,mmm]`` (local time)."""
    match = _STAMP.match(line)
    if match is None:
        return math.nan
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()


@contextmanager
def stream_worker(
    folder: Path,
    name: str,
    kafka: str,
    vm_url: str,
    registry: Path,
    profile: Path | None = None,
    settings: dict[str, str] | None = None,
) -> Iterator[WorkerRun]:
    argv = [sys.executable]
    if profile is not None:
        argv += ["-m", "cProfile", "-o", str(profile)]
    argv += ["-m", "stream.app", "worker", "--without-web", "--loglevel", "info"]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(REPO),
        "URBANSENSE_APP_ID": name,
        "URBANSENSE_KAFKA": kafka,
        "URBANSENSE_READINGS_TOPIC": f"{name}.readings",
        "URBANSENSE_STATUS_TOPIC": f"{name}.status",
        "URBANSENSE_DEADLETTER_TOPIC": f"{name}.dead",
        "URBANSENSE_PARTITIONS": str(PARTITIONS),
        "URBANSENSE_INFLUX_URL": vm_url,
        "URBANSENSE_REGISTRY": str(registry),
        "URBANSENSE_DATADIR": str(folder / f"{name}-data"),
        **(settings or {}),
    }
    log_path = folder / f"{name}-worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=folder)
    run = WorkerRun(process, log_path)
    try:
        wait(lambda: run.alive() and run.ready_at() is not None, "the worker to be ready", 120)
        yield run
    finally:
        terminate(process, timeout=60)


def wait(condition: Callable[[], object], what: str, timeout: float = PHASE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:g} s waiting for {what}"
            raise TimeoutError(msg)
        time.sleep(0.1)


def readings_in_vm(url: str, *, flush: bool, window: str = "6h") -> int:
    """How many raw readings (``<kind>_seq`` samples) VictoriaMetrics can return now."""
    if flush:
        http_get(f"{url}/internal/force_flush")
    selector = '{__name__=~"(' + "|".join(KINDS) + f')_seq",sensor!="{PROBE_SENSOR}"}}'
    query = urllib.parse.urlencode(
        {"query": f"sum(count_over_time({selector}[{window}]))", "time": f"{time.time() + 1:.3f}"}
    )
    result = json.loads(http_get(f"{url}/api/v1/query?{query}", timeout=30))["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


# ---------------------------------------------------------------- stages


@dataclass
class Stages:
    readings: int = 0
    envelopes: int = 0
    points_per_reading: float = 0.0
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, stage: str, figure: str, note: str = "") -> None:
        self.rows.append((stage, figure, note))
        print(f"  {stage}: {figure} {note}", flush=True)


def stage_decode(stages: Stages, payloads: list[bytes]) -> None:
    codec = Codec()
    began = time.perf_counter()
    for payload in payloads:
        codec.decode_batch(payload)
    rate = stages.readings / (time.perf_counter() - began)
    stages.add("codec decode (one core)", f"{rate:,.0f} readings/s")


def stage_pipeline(
    stages: Stages, registry: Registry, envelopes: list[Batch], batch: int
) -> tuple[float, str]:
    """Readings/s of the pipeline in batches of ``batch`` envelopes, as the agent runs it:
    :meth:`~stream.pipeline.Pipeline.process`, then the snapshots of every key the batch
    touched (the agent stores them in its table); and the same under cProfile."""

    def run() -> Pipeline:
        pipeline = Pipeline(registry, precision=Precision.MS)
        for start in range(0, len(envelopes), batch):
            out = pipeline.process(envelopes[start : start + batch])
            pipeline.snapshots(out.touched)
        return pipeline

    began = time.perf_counter()
    pipeline = run()
    seconds = time.perf_counter() - began
    stages.points_per_reading = pipeline.stats.points / stages.readings
    per_batch = stages.readings / math.ceil(len(envelopes) / batch)
    stages.add(
        f"pipeline.process + state snapshots, batches of ~{per_batch:,.0f} readings (one core)",
        f"{stages.readings / seconds:,.0f} readings/s",
        f"({stages.points_per_reading:.1f} points per reading, {pipeline.stats.late} late)",
    )
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    table = profile_table(pstats.Stats(profiler, stream=io.StringIO()))
    return per_batch, table


def stage_sink(stages: Stages, url: str) -> None:
    count = 200_000
    first_ms = int(time.time() * 1000) - (count // 50 + 10) * 1000
    points = make_points(count, first_ms)
    speed, written = asyncio.run(encode_and_write(url, points, 5_000, 1))
    per = stages.points_per_reading or 1.0
    stages.add(
        "sink: encode + write to VictoriaMetrics",
        f"{speed:,.0f} points/s",
        f"(= {speed / per:,.0f} readings/s at {per:.1f} points per reading; {written:,} written)",
    )


def stage_bridge(stages: Stages, folder: Path) -> None:
    bridge_folder = folder / "bridge-stage"
    bridge_folder.mkdir()
    with mosquitto(bridge_folder) as port, tansu(bridge_folder) as kafka:
        result = measure(bridge_folder, port, kafka, 100, 2_000)
    stages.add(
        "bridge (one process, 100-reading envelopes)",
        f"{result.readings_per_s:,.0f} readings/s",
        f"({result.messages_per_s:,.0f} messages/s, {result.cpu_pct:.0f} % of a core,"
        f" {result.distinct}/{result.count} envelopes in Kafka)",
    )


def stage_worker(
    stages: Stages,
    folder: Path,
    registry: Path,
    payloads: list[tuple[str, bytes]],
    profile: bool,
) -> str:
    name = "profiled" if profile else "stage"
    profile_path = folder / "worker.prof" if profile else None
    with servers(folder / f"worker-{name}", with_mqtt=False) as (_, kafka, url):

        async def fill() -> None:
            await create_topics(kafka, [f"{name}.readings", f"{name}.status", f"{name}.dead"])
            producer = AIOKafkaProducer(
                bootstrap_servers=kafka, acks="all", linger_ms=20, max_batch_size=1 << 20
            )
            await producer.start()
            try:
                # Keyed by gateway over every partition: the worker reads them at
                # different paces, and each district keeps its own event time.
                for gateway, payload in payloads:
                    await producer.send(f"{name}.readings", key=gateway.encode(), value=payload)
                await producer.flush()
            finally:
                await producer.stop()

        asyncio.run(asyncio.wait_for(fill(), PHASE_TIMEOUT_S))
        servers_before = {n: cpu_seconds(p) for n, p in server_pids().items()}
        with stream_worker(folder, name, kafka, url, registry, profile_path) as run:
            pid = run.process.pid
            cpu_before = cpu_seconds(pid)

            def done() -> bool:
                run.alive()
                return sum(c.get("envelopes", 0) for _, c in run.batches()) >= len(payloads)

            wait(done, "the worker to take the whole topic")
            cpu = cpu_seconds(pid) - cpu_before
            ready = run.ready_at()
            assert ready is not None
            last, counts = run.batches()[-1]
        landed = readings_in_vm(url, flush=True)
        deadline = time.monotonic() + 10  # the last write was seen searchable late once
        while landed < stages.readings and time.monotonic() < deadline:
            time.sleep(0.5)
            landed = readings_in_vm(url, flush=True)
        # What the servers spent meanwhile: VictoriaMetrics storing the worker's points,
        # Tansu serving its fetches and taking its routed records and changelogs.
        servers_us = {
            n: 1e6 * (cpu_seconds(p) - servers_before[n]) / stages.readings
            for n, p in server_pids().items()
        }
    seconds = last - ready
    spent = ", ".join(f"{n} {us:,.1f} us" for n, us in servers_us.items())
    stages.add(
        "worker: Kafka topic filled beforehand -> VictoriaMetrics"
        + (", under cProfile" if profile else ""),
        f"{stages.readings / seconds:,.0f} readings/s",
        f"({stages.readings:,} readings in {seconds:.1f} s, {100 * cpu / seconds:.0f} % of a"
        f" core; {counts.get('late', 0):,} late; {landed:,} in VictoriaMetrics; server CPU"
        f" per reading: {spent})",
    )
    if profile_path is None or not profile_path.exists():
        return ""
    stats = pstats.Stats(str(profile_path), stream=io.StringIO())
    return f"{worker_breakdown(stats)}\n{profile_table(stats)}"


def run_stages(
    args: argparse.Namespace, folder: Path, registry_path: Path, registry: Registry
) -> None:
    readings = int(args.stage_gateways * 28 * args.stage_minutes * 60 / args.interval_s)
    print(
        f"\n== each stage alone: {readings:,} readings of {args.stage_gateways * 28:,} sensors,"
        f" one per sensor every {args.interval_s:g} s over {args.stage_minutes:g} minutes of"
        f" event time, envelopes of {args.envelope} ==",
        flush=True,
    )
    envelopes = stage_envelopes(args.stage_gateways, readings, args.interval_s, args.envelope)
    stages = Stages(readings=sum(len(e.readings) for e in envelopes), envelopes=len(envelopes))
    payloads = [(e.gateway_id, e.model_dump_json().encode()) for e in envelopes]
    stage_decode(stages, [p for _, p in payloads])
    profiles = [
        stage_pipeline(stages, registry, envelopes, batch)
        for batch in (args.batch, max(1, args.realtime_readings // args.envelope))
    ]
    del envelopes
    with servers(folder / "sink-stage", with_mqtt=False) as (_, _, url):
        stage_sink(stages, url)
    stage_bridge(stages, folder)
    stage_worker(stages, folder, registry_path, payloads, profile=False)
    worker_profile = ""
    if args.profile_worker:
        worker_profile = stage_worker(stages, folder, registry_path, payloads, profile=True)
    print("\n| stage | throughput | |\n| --- | ---: | --- |")
    for stage, figure, note in stages.rows:
        print(f"| {stage} | {figure} | {note} |")
    for per_batch, table in profiles:
        print(f"\npipeline, batches of ~{per_batch:,.0f} readings, under cProfile:\n{table}")
    if worker_profile:
        print(f"\nthe worker process under cProfile (main thread):\n{worker_profile}")


# ---------------------------------------------------------------- end to end


class Probe:
    """One reading per envelope from ``probe-gw``, timed from publish to queryable."""

    def __init__(self, mqtt_port: int, vm_url: str, hz: float) -> None:
        self.mqtt_port = mqtt_port
        self.vm_url = vm_url
        self.hz = hz
        self.published: dict[int, float] = {}
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self.next_seq = 0
        self._threads: list[threading.Thread] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-probe", protocol=mqtt.MQTTv5
        )

    def __enter__(self) -> Probe:
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect("127.0.0.1", self.mqtt_port)
        self.client.loop_start()
        if not connected.wait(10):
            msg = "the probe did not connect"
            raise RuntimeError(msg)
        self._threads = [
            threading.Thread(target=self._publish, daemon=True),
            threading.Thread(target=self._poll, daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    def _publish(self) -> None:
        topic = readings_topic(PROBE_GATEWAY)
        period = 1.0 / self.hz
        next_at = time.monotonic()
        while not self._stop.is_set():
            seq = self.next_seq
            self.next_seq += 1
            now = datetime.now(UTC)
            payload = {
                "schema_version": 1,
                "gateway_id": PROBE_GATEWAY,
                "sent_at": now.isoformat(),
                "readings": [
                    {
                        "sensor_id": PROBE_SENSOR,
                        "kind": "pollution",
                        "ts": now.isoformat(timespec="milliseconds"),
                        "seq": seq,
                        "metrics": {"pm2_5": 35.0 + seq % 5},
                    }
                ],
            }
            body = json.dumps(payload).encode()
            self.published[seq] = time.time()
            self.client.publish(topic, body, qos=1)
            next_at += period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _poll(self) -> None:
        since = int(time.time()) - 60
        query = urllib.parse.urlencode(
            {"match[]": f'pollution_seq{{sensor="{PROBE_SENSOR}"}}', "start": str(since)}
        )
        while not self._stop.is_set():
            try:
                body = http_get(f"{self.vm_url}/api/v1/export?{query}", timeout=5)
            except OSError:
                time.sleep(0.02)
                continue
            now = time.time()
            for line in body.decode().splitlines():
                for value in json.loads(line)["values"]:
                    self.seen.setdefault(int(value), now)
            time.sleep(0.02)

    def dump(self, path: Path) -> None:
        """Each probe's publish time and latency (empty if never seen), as CSV."""
        with path.open("w", encoding="utf-8") as out:
            out.write("seq,published,latency_s\n")
            for seq, at in sorted(self.published.items()):
                seen = self.seen.get(seq)
                latency = "" if seen is None else f"{seen - at:.3f}"
                out.write(f"{seq},{at:.3f},{latency}\n")

    def latencies(self, first: int, last: int) -> tuple[list[float], int]:
        """Latencies (s) of the probe readings published in [first, last), and how many
        of them never showed up."""
        got = [self.seen[s] - self.published[s] for s in range(first, last) if s in self.seen]
        return got, (last - first) - len(got)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def idle_visibility(url: str) -> float:
    """The median time VictoriaMetrics takes to make a written sample searchable."""
    series = f"bench_visibility_{os.getpid()}"
    took = []
    for i in range(12):
        ts = int(time.time() * 1000)
        began = time.monotonic()
        _post(f"{url}/api/v2/write?precision=ms", f"{series},s=a seq={i}i {ts}\n".encode())
        query = urllib.parse.urlencode({"match[]": f"{series}_seq", "start": str(ts // 1000 - 5)})
        while time.monotonic() - began < 30:
            body = http_get(f"{url}/api/v1/export?{query}")
            values = [v for line in body.decode().splitlines() for v in json.loads(line)["values"]]
            if i in values:
                break
            time.sleep(0.01)
        if i:  # the first one also waits for the new series to be indexed
            took.append(time.monotonic() - began)
        time.sleep(0.1)
    return statistics.median(took)


def _post(url: str, body: bytes) -> None:
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as answer:
        answer.read()


def fleet_child(gateways: int, port: int) -> int:
    """The fleet, as a process of its own: phases read from standard input.

    Each line ``RATE SECONDS`` publishes at RATE readings/s for SECONDS (as
    :func:`simulators.fleet.run_fleet` does: synthetic drivers, each gateway with the
    edge agent's disk queue and MQTT publisher), waits until the broker has
    acknowledged everything, and answers with a JSON line of counts. Sequence numbers
    and event times go on from phase to phase, so that the stream never takes a later
    phase's readings for resends. Event time is the wall clock.
    """
    configure_logging(level="warning")
    plan = fleet_plan(gateways, 1.0, datetime.now(UTC), None)
    sensors = plan.sensors(load_example_registry())
    last_ts: dict[str, datetime] = {}
    gateway_sensors: dict[str, list[str]] = defaultdict(list)
    for sensor in sensors:
        gateway_sensors[sensor.gateway_id].append(sensor.id)
        sensor.driver.open()
    cursor = 0
    with VirtualGateways(gateway_sensors, BrokerConfig(url=f"mqtt://127.0.0.1:{port}")) as fleet:
        for command in sys.stdin:
            if not command.strip():
                break
            rate, seconds = (float(x) for x in command.split())
            acked_before = fleet.counts().acked
            made = 0
            began = time.monotonic()
            while (elapsed := time.monotonic() - began) < seconds:
                due = int(rate * elapsed) - made
                now = datetime.now(UTC)
                batch = []
                for _ in range(max(0, due)):
                    sensor = sensors[cursor]
                    cursor = (cursor + 1) % len(sensors)
                    # the driver counts from its opening, at the plan's start
                    previous = last_ts.get(sensor.id, plan.start)
                    ts = max(now, previous + timedelta(milliseconds=1))
                    interval = (ts - previous).total_seconds()
                    last_ts[sensor.id] = ts
                    sensor.event_s = (ts - plan.start).total_seconds()
                    batch.append(
                        Reading(
                            sensor_id=sensor.id,
                            kind=sensor.kind,
                            ts=ts,
                            seq=sensor.seq,
                            interval_s=min(max(interval, 0.001), 86_400.0),
                            metrics=sensor.driver.read(),
                            stats={},
                        )
                    )
                    sensor.seq += 1
                if batch:
                    fleet.put(batch)
                    made += len(batch)
                time.sleep(max(0.0, 0.05 - (time.monotonic() - began - elapsed)))
            produced_s = time.monotonic() - began
            acked_by_end = fleet.counts().acked - acked_before
            drained = fleet.wait_drained(120.0)
            answer = {
                "made": made,
                "produced_s": produced_s,
                "acked_while_producing": acked_by_end,
                "acked": fleet.counts().acked - acked_before,
                "elapsed_s": time.monotonic() - began,
                "drained": drained,
            }
            print(json.dumps(answer), flush=True)
    return 0


class Fleet:
    """The fleet child process: phases started, answers read from its output."""

    def __init__(self, folder: Path, gateways: int, port: int) -> None:
        argv = [sys.executable, str(Path(__file__).resolve()), "--fleet-child"]
        argv += ["--gateways", str(gateways), "--mqtt-port", str(port)]
        self.log_path = folder / "fleet.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
            )
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.answers.put(json.loads(line))

    def start(self, rate: float, seconds: float) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{rate} {seconds}\n".encode())
        self.process.stdin.flush()

    def result(self, timeout: float = PHASE_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return self.answers.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
        msg = f"the fleet did not answer:\n{self.log_path.read_text()[-3000:]}"
        raise RuntimeError(msg)

    def running(self) -> bool:
        return self.answers.empty() and self.process.poll() is None

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        terminate(self.process, timeout=60)


@contextmanager
def fleet_process(folder: Path, gateways: int, port: int) -> Iterator[Fleet]:
    fleet = Fleet(folder, gateways, port)
    try:
        yield fleet
    finally:
        fleet.close()


def landed_at_least(url: str, count: int, worker: WorkerRun, what: str, timeout: float) -> None:
    wait(lambda: worker.alive() and readings_in_vm(url, flush=True) >= count, what, timeout)


def run_e2e(args: argparse.Namespace, folder: Path, registry_path: Path) -> None:
    name = "e2e"
    sensors = args.gateways * 28
    print(
        f"\n== end to end: fleet of {args.gateways} gateways x 28 sensors = {sensors:,}"
        " -> Mosquitto -> bridge -> Tansu -> worker -> VictoriaMetrics ==",
        flush=True,
    )
    with servers(folder / "e2e", with_mqtt=True) as (port, kafka, url):
        visibility = idle_visibility(url)
        print(
            f"  VictoriaMetrics makes a sample searchable {visibility * 1000:.0f} ms"
            " after its write (idle, median)",
            flush=True,
        )
        asyncio.run(create_topics(kafka, [f"{name}.readings", f"{name}.status", f"{name}.dead"]))
        with (
            stream_worker(folder, name, kafka, url, registry_path) as worker,
            bridge(folder, name, port, kafka, 1) as bridge_run,
            fleet_process(folder, args.gateways, port) as fleet,
        ):
            bridge_run.wait_event("subscribed")
            bridge_run.wait_event("kafka connected")
            pids = {"worker": worker.process.pid, "bridge": bridge_run.process.pid}
            pids["fleet"] = fleet.process.pid
            pids |= server_pids()

            with Probe(port, url, args.probe_hz) as probe:
                # -- warm-up: a few readings of every sensor (and the probe's first ones),
                # until all are in VictoriaMetrics: a new series is searchable only ~10 s
                # after its first sample
                warm_rate = min(min(args.latency_rate), 2_000.0)
                fleet.start(warm_rate, max(10.0, 3 * sensors / warm_rate))
                total = fleet.result()["acked"]
                landed_at_least(url, total, worker, "the warm-up readings to land", PHASE_TIMEOUT_S)
                print(f"  warm-up: {total:,} readings landed", flush=True)

                # -- latency at moderate rates
                for rate in args.latency_rate:
                    first = probe.next_seq
                    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
                    began = time.monotonic()
                    fleet.start(rate, args.seconds)
                    answer = fleet.result()
                    last = probe.next_seq
                    elapsed = time.monotonic() - began
                    cpu = {k: 100 * (cpu_seconds(p) - cpu0[k]) / elapsed for k, p in pids.items()}
                    time.sleep(5)  # the last probes' way through (no forced flush meanwhile)
                    lat, lost = probe.latencies(first, last)
                    total += answer["acked"]
                    landed_at_least(url, total, worker, "the latency run to land", PHASE_TIMEOUT_S)
                    if args.dump_probes:
                        probe.dump(Path(args.dump_probes))
                    offered = answer["acked_while_producing"] / answer["produced_s"]
                    print(
                        f"  latency run: fleet {offered:,.0f} readings/s acknowledged by"
                        f" Mosquitto; probe publish -> queryable:"
                        f" p50 {percentile(lat, 0.5) * 1000:,.0f} ms,"
                        f" p99 {percentile(lat, 0.99) * 1000:,.0f} ms,"
                        f" max {max(lat, default=math.nan) * 1000:,.0f} ms"
                        f" ({len(lat)} probes, {lost} not seen); CPU, of a core: "
                        + ", ".join(f"{name} {pct:.0f} %" for name, pct in cpu.items()),
                        flush=True,
                    )

                # -- throughput at the target rate
                before = readings_in_vm(url, flush=True)
                first = probe.next_seq
                cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
                counts: list[tuple[float, int]] = []
                began = time.monotonic()
                fleet.start(args.rate, args.seconds)
                while fleet.running() and time.monotonic() - began < args.seconds + 130:
                    counts.append(
                        (time.monotonic() - began, readings_in_vm(url, flush=True) - before)
                    )
                    time.sleep(1.0)
                answer = fleet.result()
                last = probe.next_seq
                drain_end = time.monotonic() + args.drain_s
                while time.monotonic() < drain_end:
                    counts.append(
                        (time.monotonic() - began, readings_in_vm(url, flush=True) - before)
                    )
                    if counts[-1][1] >= answer["acked"]:
                        break
                    time.sleep(1.0)
                elapsed = time.monotonic() - began
                cpu_s = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
                cpu = {k: 100 * seconds / elapsed for k, seconds in cpu_s.items()}
                lat, lost = probe.latencies(first, last)
    landed = counts[-1][1] if counts else 0
    moving = [(t, n) for t, n in counts if n > 0]
    slope = (
        (moving[-1][1] - moving[0][1]) / (moving[-1][0] - moving[0][0])
        if len(moving) > 1
        else math.nan
    )
    offered = answer["acked_while_producing"] / answer["produced_s"]
    print(
        f"  throughput run: fleet {offered:,.0f} readings/s acknowledged by Mosquitto while"
        f" producing ({answer['acked']:,} in all); landed in VictoriaMetrics: {landed:,} in"
        f" {elapsed:.1f} s, {slope:,.0f} readings/s while landing;"
        f" {answer['acked'] - landed:,} not landed when the run stopped"
    )
    shares = ", ".join(f"{name} {pct:.0f} %" for name, pct in cpu.items())
    print(f"  CPU over the throughput run, of a core: {shares}")
    if landed:
        # The worker and VictoriaMetrics moved the readings that landed; the fleet,
        # Mosquitto, the bridge and Tansu (producing) every one the fleet published.
        moved = {n: landed if n in ("worker", "victoria") else answer["acked"] for n in cpu_s}
        print(cpu_budget(cpu_s, moved, args.rate))
    print(
        f"  probe during the throughput run: {len(lat)} of {len(lat) + lost} seen; p50"
        f" {percentile(lat, 0.5) * 1000:,.0f} ms, p99 {percentile(lat, 0.99) * 1000:,.0f} ms"
    )


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "stages", "e2e"], default="all")
    parser.add_argument(
        "--gateways", type=int, default=100, help="fleet gateways (28 sensors each)"
    )
    parser.add_argument(
        "--stage-gateways", type=int, default=20, help="gateways of the stages (28 sensors each)"
    )
    parser.add_argument(
        "--stage-minutes", type=float, default=60.0, help="event time of the stages' readings"
    )
    parser.add_argument(
        "--interval-s",
        type=float,
        default=15.0,
        help="event time between a sensor's readings (stages)",
    )
    parser.add_argument("--envelope", type=int, default=50, help="readings per envelope (stages)")
    parser.add_argument(
        "--batch", type=int, default=500, help="envelopes per pipeline batch (the worker's default)"
    )
    parser.add_argument(
        "--realtime-readings",
        type=int,
        default=500,
        help="readings per batch of the pipeline's second run: what a live worker gets in its"
        " 0.5 s batch window at 1,000 readings/s",
    )
    parser.add_argument(
        "--rate", type=float, default=50_000, help="fleet's target readings/s, throughput run"
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        nargs="+",
        default=[500.0, 1_000.0, 2_000.0],
        help="fleet's readings/s, one latency run each",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each e2e run")
    parser.add_argument(
        "--drain-s", type=float, default=20.0, help="wait for the backlog after the throughput run"
    )
    parser.add_argument("--probe-hz", type=float, default=20.0)
    parser.add_argument(
        "--profile-worker", action="store_true", help="run the worker stage under cProfile"
    )
    parser.add_argument("--dump-probes", help="write the latency run's probes to this CSV file")
    parser.add_argument("--fleet-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mqtt-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fleet_child:
        return fleet_child(args.gateways, args.mqtt_port)
    configure_logging(level="warning")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        folder = Path(tmp)
        began = time.monotonic()
        registry_path, registry = write_registry(folder, max(args.gateways, args.stage_gateways))
        print(
            f"registry: {len(registry.sensors):,} sensors,"
            f" written and loaded in {time.monotonic() - began:.1f} s"
        )
        if args.part in ("all", "stages"):
            run_stages(args, folder, registry_path, registry)
        if args.part in ("all", "e2e"):
            run_e2e(args, folder, registry_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

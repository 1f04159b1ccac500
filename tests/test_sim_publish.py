"""``urbansense-sim`` end to end: replay, scenario runs and the fleet through a real Mosquitto.

Each test runs the installed ``urbansense-sim`` command as a process against the
session's Mosquitto on a loopback port and checks, with a subscriber of its own, that
every reading arrived and says what the source said.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from simulators.replay import ReplayStats, load_spec, replay
from telemetry import Reading
from tests.agent_harness import collecting, wait_until
from tests.servers.mosquitto import MosquittoServer

SIM_BIN = Path(sys.executable).parent / "urbansense-sim"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CNEMC = DATA / "cnemc-aqi-dev" / "hourly.csv"
DONGSI = DATA / "beijing-prsa" / "PRSA_Data_Dongsi_20130301-20170228.csv"
SCENARIO = Path(__file__).resolve().parents[1] / "simulators" / "examples" / "lakeside-weekend.yaml"
BEIJING = timezone(timedelta(hours=8))


def sim(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SIM_BIN), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_replay_of_the_prsa_file_reproduces_every_row() -> None:
    stats = ReplayStats()
    with DONGSI.open(encoding="utf-8", newline="") as source:
        readings = list(replay(load_spec("prsa"), source, stats))
    with DONGSI.open(encoding="utf-8", newline="") as source:
        rows = list(csv.DictReader(source))
    assert stats.rows == len(rows) == 35_064
    columns = {"pm2_5": "PM2.5", "pm10": "PM10", "so2": "SO2", "no2": "NO2", "co": "CO", "o3": "O3"}
    expected = []
    for row in rows:
        metrics = {m: float(row[c]) for m, c in columns.items() if row[c] != "NA"}
        if "co" in metrics:
            metrics["co"] /= 1000
        if metrics:
            start = datetime(
                int(row["year"]),
                int(row["month"]),
                int(row["day"]),
                int(row["hour"]),
                tzinfo=BEIJING,
            )
            expected.append((start + timedelta(hours=1), metrics))
    assert len(readings) == len(expected)
    for reading, (ts, metrics) in zip(readings, expected, strict=True):
        assert reading.ts == ts
        assert reading.metrics == pytest.approx(metrics, rel=1e-12)
    assert [r.seq for r in readings] == list(range(len(readings)))


def test_a_replay_through_mosquitto_delivers_every_row_as_published(
    mosquitto: MosquittoServer,
) -> None:
    with CNEMC.open(encoding="utf-8", newline="") as source:
        rows = list(csv.DictReader(source))
    with collecting(
        mosquitto.host, mosquitto.port, gateway_id=None, client_id="replay-check"
    ) as got:
        done = sim(
            "replay",
            str(CNEMC),
            "--spec",
            "cnemc",
            "--broker",
            f"mqtt://{mosquitto.host}:{mosquitto.port}",
        )
        assert done.returncode == 0, done.stderr
        assert "2,088 readings of 29 sensors" in done.stderr
        wait_until(lambda: got.count() >= len(rows), 30, "every replayed reading")
        arrived = {(s, q): Reading.model_validate_json(p) for s, q, p in got.readings()}
    assert len(arrived) == len(rows)
    seq: dict[str, int] = {}
    for row in rows:
        sensor = f"cnemc-{row['stationcode']}"
        reading = arrived[(sensor, seq.setdefault(sensor, 0))]
        seq[sensor] += 1
        assert reading.ts == datetime.fromisoformat(row["timepoint"]).replace(tzinfo=BEIJING)
        # o3_24h: the source's swapped column, which holds the latest 1-h O3.
        columns = {"pm2_5": "pm2_5", "pm10": "pm10", "so2": "so2", "no2": "no2", "co": "co"}
        columns["o3"] = "o3_24h"
        assert reading.metrics == {m: float(row[c]) for m, c in columns.items() if row[c]}


def test_a_scenario_published_is_the_scenario_written(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    written = sim("run", str(SCENARIO), "--until", "2h", "--out", str(tmp_path / "file"))
    assert written.returncode == 0, written.stderr
    lines = (tmp_path / "file" / "readings.jsonl").read_text().splitlines()
    expected = {(r.sensor_id, r.seq): r for r in map(Reading.model_validate_json, lines)}
    truth = (tmp_path / "file" / "ground-truth.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in truth] == ["spikes"]  # all of the first 2 h

    url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    with collecting(mosquitto.host, mosquitto.port, gateway_id=None, client_id="run-check") as got:
        published = sim(
            "run", str(SCENARIO), "--until", "2h", "--out", str(tmp_path / "pub"), "--broker", url
        )
        assert published.returncode == 0, published.stderr
        wait_until(lambda: got.count() >= len(expected), 30, "every scenario reading")
        arrived = {(s, q): Reading.model_validate_json(p) for s, q, p in got.readings()}
    assert arrived == expected
    assert not (tmp_path / "pub" / "readings.jsonl").exists()


def test_the_fleet_publishes_at_its_rate_and_loses_nothing(mosquitto: MosquittoServer) -> None:
    url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    with collecting(
        mosquitto.host, mosquitto.port, gateway_id=None, client_id="fleet-check"
    ) as got:
        done = sim(
            "fleet", "--gateways", "4", "--sensors-per-gateway", "25", "--rate", "2000",
            "--until", "3s", "--broker", url, "--seed", "5",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "lag" in done.stderr
        assert "behind schedule" in done.stderr
        acked = int(
            done.stderr.split(" readings acknowledged")[0].rsplit(" ", 1)[-1].replace(",", "")
        )
        assert 5_000 <= acked <= 6_200
        wait_until(lambda: len({(s, q) for s, q, _ in got.readings()}) >= acked, 30, "the fleet")
        seqs = got.seqs()
    assert len(seqs) == 100
    assert sum(len(set(v)) for v in seqs.values()) == acked
    for sensor, arrived in seqs.items():
        firsts = list(dict.fromkeys(arrived))
        assert firsts == list(range(len(firsts))), sensor

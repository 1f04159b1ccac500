"""``urbansense backtest``: NAB CSV series and simulator readings, scores and reports.

Most tests call :func:`stream.cli.main` in process; one runs the installed
``urbansense`` entry point as a real process. The NAB dev files live in
``../shared/data/nab-dev`` from the project root.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from simulators.engine import City
from simulators.scenario import parse_scenario
from stream.backtest.run import READING_COLUMNS
from stream.cli import main
from telemetry import Reading

ROOT = Path(__file__).resolve().parents[1]
NAB_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nab-dev"
LABELS = NAB_DEV / "combined_windows.json"
SPEED = NAB_DEV / "realTraffic" / "speed_7578.csv"
OCCUPANCY = NAB_DEV / "realTraffic" / "occupancy_6005.csv"
URBANSENSE = Path(sys.executable).parent / "urbansense"

CLAIMED_NAB_STANDARD = 67.1
"""The standard-profile NAB score the project claims for the shipped defaults."""


@dataclass(frozen=True)
class Run:
    """What one in-process ``urbansense`` call returned and printed."""

    status: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    capsys.readouterr()
    status = main(["backtest", *args])
    captured = capsys.readouterr()
    return Run(status, captured.out, captured.err)


def run_quietly(*args: str) -> Run:
    """In process, for module-scoped fixtures (which cannot use capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(["backtest", *args])
    return Run(status, out.getvalue(), err.getvalue())


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def check_scores(output: str, source: Path) -> None:
    """One scores row per input row, in input order, with its timestamp and value as written."""
    given = read_csv(source.read_text(encoding="utf-8"))
    got = read_csv(output)
    assert got[0] == ["timestamp", "value", "anomaly_score"]
    assert given[0][:2] == ["timestamp", "value"]
    assert len(got) == len(given)
    for (ts, value), (out_ts, out_value, score) in zip(given[1:], got[1:], strict=True):
        assert out_ts == ts
        assert out_value == value
        assert 0.0 <= float(score) <= 1.0


# ---------------------------------------------------------------- one CSV series


@pytest.fixture(scope="module")
def speed_scores() -> str:
    """The scores of ``speed_7578.csv`` as ``urbansense backtest FILE`` prints them."""
    run = run_quietly(str(SPEED))
    assert run.status == 0, run.err
    assert run.err == ""
    return run.out


def test_a_nab_csv_gives_one_score_per_row_in_input_order(speed_scores: str) -> None:
    check_scores(speed_scores, SPEED)
    scores = [float(row[2]) for row in read_csv(speed_scores)[1:]]
    assert max(scores) >= 0.5, "the detectors found nothing in a file with four anomalies"


def test_a_relative_path_from_the_project_root_works_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, speed_scores: str
) -> None:
    monkeypatch.chdir(ROOT)
    run = run_cli(capsys, "../shared/data/nab-dev/realTraffic/speed_7578.csv")
    assert (run.status, run.out, run.err) == (0, speed_scores, "")


def test_standard_input_with_a_dash_gives_the_same_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, speed_scores: str
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(SPEED.read_text(encoding="utf-8")))
    run = run_cli(capsys, "-")
    assert (run.status, run.out, run.err) == (0, speed_scores, "")


def test_the_entry_point_reads_standard_input_without_an_argument(speed_scores: str) -> None:
    done = subprocess.run(
        [str(URBANSENSE), "backtest"],
        input=SPEED.read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == speed_scores


def test_output_writes_the_scores_to_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, speed_scores: str
) -> None:
    target = tmp_path / "speed.scores.csv"
    run = run_cli(capsys, str(SPEED), "--output", str(target))
    assert (run.status, run.out, run.err) == (0, "", "")
    assert target.read_text(encoding="utf-8") == speed_scores


def test_several_inputs_write_one_file_each_into_the_output_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, speed_scores: str
) -> None:
    folder = tmp_path / "scores"
    run = run_cli(capsys, str(SPEED), str(OCCUPANCY), "-o", str(folder))
    assert (run.status, run.out, run.err) == (0, "", "")
    assert sorted(p.name for p in folder.iterdir()) == [
        "occupancy_6005.scores.csv",
        "speed_7578.scores.csv",
    ]
    # Each file is scored on its own, as if it were the only input.
    assert (folder / "speed_7578.scores.csv").read_text(encoding="utf-8") == speed_scores
    check_scores((folder / "occupancy_6005.scores.csv").read_text(encoding="utf-8"), OCCUPANCY)


def test_several_inputs_without_an_output_directory_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = run_cli(capsys, str(SPEED), str(OCCUPANCY))
    assert run.status == 2
    assert "several inputs need --output DIR" in run.err
    assert run.out == ""


def test_inputs_with_the_same_name_do_not_overwrite_each_other(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "speed.csv").write_text(
            SPEED.read_text(encoding="utf-8"), encoding="utf-8"
        )
    out = tmp_path / "scores"
    run = run_cli(
        capsys, str(tmp_path / "a" / "speed.csv"), str(tmp_path / "b" / "speed.csv"), "-o", str(out)
    )
    # Either one file each, or a refusal that names the clash: not one file for two inputs.
    assert run.status == 2 or len(list(out.iterdir())) == 2


# ---------------------------------------------------------------- NAB labels


@pytest.fixture(scope="module")
def nab_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path, list[Path]]:
    """All ten NAB dev files with their labels, scores into a directory (about 10 s)."""
    files = sorted(NAB_DEV.glob("*/*.csv"))
    folder = tmp_path_factory.mktemp("nab") / "scores"
    run = run_quietly(*map(str, files), "--labels", str(LABELS), "-o", str(folder))
    return run, folder, files


def report_rows(report: str, first: str) -> list[list[str]]:
    """The whitespace-split rows of a report whose first cell is ``first``."""
    return [line.split() for line in report.splitlines() if line.split()[:1] == [first]]


def test_labels_print_the_nab_report_with_the_claimed_standard_score(
    nab_run: tuple[Run, Path, list[Path]],
) -> None:
    run, folder, files = nab_run
    assert run.status == 0, run.err
    assert run.err == ""
    assert len(files) == 10
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{f.stem}.scores.csv" for f in files)
    for source in files:
        check_scores((folder / f"{source.stem}.scores.csv").read_text(encoding="utf-8"), source)

    report = run.out
    header = report.splitlines()[0]
    assert header.split()[:5] == ["profile", "threshold", "raw", "null", "perfect"]
    assert header.endswith("NAB score")
    scores = {}
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        [row] = report_rows(report, profile)
        scores[profile] = float(row[-1])
        assert -100.0 <= scores[profile] <= 100.0
    assert scores["standard"] > CLAIMED_NAB_STANDARD
    # Every file appears in the per-file table by its label key.
    for source in files:
        assert report_rows(report, f"{source.parent.name}/{source.name}")


def test_labels_with_scores_on_standard_output_send_the_report_to_standard_error(
    capsys: pytest.CaptureFixture[str], speed_scores: str
) -> None:
    run = run_cli(capsys, str(SPEED), "--labels", str(LABELS))
    assert run.status == 0
    assert run.out == speed_scores
    assert "NAB score" in run.err
    assert report_rows(run.err, "standard")
    assert report_rows(run.err, "realTraffic/speed_7578.csv")


# ---------------------------------------------------------------- bad input


def test_a_value_that_is_not_a_number_names_the_file_line_and_value(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "timestamp,value\n2024-01-01 00:00:00,1.5\n2024-01-01 00:05:00,lots\n", encoding="utf-8"
    )
    run = run_cli(capsys, str(bad))
    assert run.status == 2
    assert run.out == ""
    assert f"{bad}:3:" in run.err
    assert "value" in run.err
    assert "'lots'" in run.err


def test_a_missing_value_column_names_the_header(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "nocolumn.csv"
    bad.write_text("timestamp,reading\n2024-01-01 00:00:00,1.5\n", encoding="utf-8")
    run = run_cli(capsys, str(bad))
    assert run.status == 2
    assert run.out == ""
    assert f"{bad}:1:" in run.err
    assert "'value'" in run.err
    assert "timestamp,reading" in run.err


def test_metric_without_kind_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli(capsys, str(SPEED), "--metric", "mean_speed_kmh")
    assert run.status == 2
    assert "--metric needs --kind" in run.err
    assert run.out == ""


def test_a_kinds_profile_scores_a_csv_series(
    capsys: pytest.CaptureFixture[str], speed_scores: str
) -> None:
    run = run_cli(capsys, str(SPEED), "--kind", "traffic", "--metric", "mean_speed_kmh")
    assert run.status == 0, run.err
    check_scores(run.out, SPEED)
    assert run.out != speed_scores  # another profile than the generic one


# ---------------------------------------------------------------- simulator readings

SCENARIO = """
version: 1
name: backtest
seed: 7
start: 2024-11-08T00:00:00+08:00
duration: 4h
incidents:
  - {kind: local_source, sensor: aq-pier-pollution,
     start: 2024-11-08T02:00:00+08:00, duration: 1h, factor: 6}
faults:
  - {kind: stuck, sensor: aq-north-bank-ambient, metric: humidity_pct,
     start: 2024-11-08T01:00:00+08:00, duration: 2h}
  - {kind: dead, sensor: cr-canal-west, start: 2024-11-08T03:00:00+08:00}
"""


@dataclass(frozen=True)
class SimRun:
    """A simulated city's readings, its ground truth and the backtest over them."""

    readings: list[Reading]
    run: Run
    scores: list[list[str]]


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> SimRun:
    """Four hours of the example city with a local source, a stuck and a dead sensor,
    backtested (about 5 s)."""
    folder = tmp_path_factory.mktemp("sim")
    city = City(parse_scenario(SCENARIO))
    readings = list(city.run())
    with (folder / "readings.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(r.model_dump_json() + "\n" for r in readings)
    with (folder / "ground-truth.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(entry.to_json() + "\n" for entry in city.truth)
    run = run_quietly(
        str(folder / "readings.jsonl"),
        "--labels",
        str(folder / "ground-truth.jsonl"),
        "--registry",
        "example",
        "-o",
        str(folder / "scores.csv"),
    )
    scores = (
        read_csv((folder / "scores.csv").read_text(encoding="utf-8")) if run.status == 0 else []
    )
    return SimRun(readings, run, scores)


def test_readings_give_one_scored_row_per_metric_of_each_reading(sim_run: SimRun) -> None:
    assert sim_run.run.status == 0, sim_run.run.err
    assert sim_run.run.err == ""
    header, *rows = sim_run.scores
    assert tuple(header) == READING_COLUMNS
    assert header == [
        "timestamp",
        "sensor_id",
        "kind",
        "metric",
        "value",
        "anomaly_score",
        "detector",
    ]
    # Values exactly: the scores file writes the shortest text of the same number.
    expected = [
        (r.sensor_id, str(r.kind), metric, value)
        for r in sim_run.readings
        for metric, value in r.metrics.items()
    ]
    assert len(rows) == len(expected)
    got = [(row[1], row[2], row[3], float(row[4])) for row in rows]
    assert got == expected
    assert all(0.0 <= float(row[5]) <= 1.0 for row in rows)
    assert {row[6] for row in rows} >= {"stuck", "silence"}


def test_readings_with_ground_truth_print_the_incident_report(sim_run: SimRun) -> None:
    report = sim_run.run.out
    header = report.splitlines()[0].split()
    assert header[:5] == ["kind", "category", "labels", "detected", "recall"]
    recall = header.index("recall")
    [stuck] = report_rows(report, "stuck")
    [dead] = report_rows(report, "dead")
    [local] = report_rows(report, "local_source")
    [total] = report_rows(report, "all")
    assert stuck[1] == dead[1] == "fault"
    assert local[1] == "incident"
    assert stuck[2] == dead[2] == local[2] == "1"
    assert stuck[recall] == "1.00"  # 36 repeats of one value, well inside two hours
    assert total[1] == "3"  # the total row has no category: three labels in all


def test_readings_backtest_finds_a_dead_sensor(sim_run: SimRun) -> None:
    report = sim_run.run.out
    recall = report.splitlines()[0].split().index("recall")
    [dead] = report_rows(report, "dead")
    assert dead[recall] == "1.00"


def test_readings_backtest_judges_pollution_stations_against_their_neighbours(
    sim_run: SimRun,
) -> None:
    # The local source next to the pier is what the pier's neighbours disagree with.
    spatial = [
        row
        for row in sim_run.scores[1:]
        if row[1] == "aq-pier-pollution" and row[6] == "neighbours" and float(row[5]) > 0.0
    ]
    assert spatial


def columns(rows: Sequence[Sequence[str]], name: str) -> list[str]:
    index = list(READING_COLUMNS).index(name)
    return [row[index] for row in rows]


def test_scored_readings_keep_the_readings_times(sim_run: SimRun) -> None:
    rows = sim_run.scores[1:]
    expected = [r.ts.isoformat() for r in sim_run.readings for _ in r.metrics]
    assert columns(rows, "timestamp") == expected

"""``urbansense rules check`` and ``urbansense rules test``, through ``stream.cli.main``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rules.load import default_rules_path
from stream.cli import main

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT = str(default_rules_path())

GOOD = """\
version: 1
rules:
  - id: pm-high
    severity: warning
    select: {kind: pollution, metric: pm2_5}
    threshold: {above: 75}
    clear: {below: 50}
    for: 10m
  - id: gw-offline
    severity: warning
    absence: {for: 5m, per: gateway}
"""

BAD = """\
version: 1
rules:
  - id: pm-high
    severity: warning
    select: {kind: pollution, metric: pm2_5}
    threshold: {above: 75}
    for: 5 minutes
  - id: tpi
    severity: severe
    select: {index: tpi}
    threshold: {at_least: 8}
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_accepts_valid_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", DEFAULT, write(tmp_path, "good.yaml", GOOD)]) == 0
    assert capsys.readouterr().out.strip().endswith("in 2 file(s): ok")


def test_check_prints_each_problem_with_file_rule_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, "bad.yaml", BAD)
    assert main(["rules", "check", bad]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (
        f"{bad}:7:10: rule 'pm-high' (#1): for: invalid duration '5 minutes'"
        " (e.g. 30s, 5m, 1h30m, 1d)"
    )
    assert lines[1].startswith(f"{bad}:9:15: rule 'tpi' (#2): severity: 'severe' is not one of")
    assert lines[2] == "urbansense rules: 2 problem(s) in 1 file(s)"


def test_check_finds_ids_defined_in_two_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two = write(tmp_path, "a.yaml", GOOD), write(tmp_path, "b.yaml", GOOD)
    assert main(["rules", "check", one, two]) == 1
    err = capsys.readouterr().err
    assert (
        f"{two}:3:9: rule 'pm-high' (#1): id: rule id 'pm-high' is already defined in {one}" in err
    )


LONG_CSV = """\
timestamp,kind,metric,value,sensor,gateway,site,district
2024-11-08T02:00:00Z,pollution,pm2_5,80,aq-1,gw-1,st-1,lakeside
2024-11-08T02:05:00Z,pollution,pm2_5,90,aq-1,gw-1,st-1,lakeside
2024-11-08T02:10:00Z,pollution,pm2_5,85,aq-1,gw-1,st-1,lakeside
2024-11-08T02:11:00Z,pollution,pm2_5,NA,aq-1,gw-1,st-1,lakeside
2024-11-08T02:20:00Z,pollution,pm2_5,40,aq-1,gw-1,st-1,lakeside
2024-11-08T03:00:00Z,pollution,pm2_5,40,aq-1,gw-1,st-1,lakeside
"""


def test_dry_run_prints_transitions_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = write(tmp_path, "good.yaml", GOOD)
    data = write(tmp_path, "samples.csv", LONG_CSV)
    assert main(["rules", "test", rules, "--input", data]) == 0
    out = capsys.readouterr().out.splitlines()
    subject = "sensor=aq-1 gateway=gw-1 site=st-1 district=lakeside"
    assert out[:6] == [
        f"2024-11-08T02:10:00Z  firing    pm-high  warning  {subject}  value=85 threshold=75"
        "  since 2024-11-08T02:00:00Z",
        # ten minutes without a sample (the NA row is skipped): offline from 02:15
        "2024-11-08T02:16:00Z  firing    gw-offline  warning  gateway=gw-1 district=lakeside"
        "  value=360 threshold=300  since 2024-11-08T02:15:00Z",
        f"2024-11-08T02:20:00Z  resolved  pm-high  warning  {subject}  value=40 threshold=75"
        "  after 0:20:00",
        "2024-11-08T02:20:00Z  resolved  gw-offline  warning  gateway=gw-1 district=lakeside"
        "  value=360 threshold=300  after 0:05:00",
        "2024-11-08T02:26:00Z  firing    gw-offline  warning  gateway=gw-1 district=lakeside"
        "  value=360 threshold=300  since 2024-11-08T02:25:00Z",
        "2024-11-08T03:00:00Z  resolved  gw-offline  warning  gateway=gw-1 district=lakeside"
        "  value=360 threshold=300  after 0:35:00",
    ]
    assert "5 samples; alerts per rule:" in out
    assert out[-2].split() == ["pm-high", "warning", "1", "1", "0"]
    assert out[-1].split() == ["gw-offline", "warning", "2", "2", "0"]


def test_dry_run_of_a_wide_csv_with_renamed_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write(
        tmp_path,
        "cnemc.csv",
        "timepoint,stationcode,aqi,pm2_5\n"
        "2023-06-01T08:00:00,1223A,180,120\n"
        "2023-06-01T09:00:00,1223A,230,170\n"
        "2023-06-01T10:00:00,1223A,310,250\n"
        "2023-06-01T11:00:00,1223A,140,100\n"
        "2023-06-01T12:00:00,1223A,120,80\n"
        "2023-06-01T13:00:00,1223A,110,70\n",
    )
    args = ["rules", "test", DEFAULT, "--input", data, "--kind", "aqi"]
    assert main([*args, "--map", "timepoint=timestamp", "--map", "stationcode=site"]) == 0
    out = capsys.readouterr().out
    # local time (UTC+8, the rule set's offset) to UTC; both resolve once the AQI has been
    # below their clear bounds for two hours (keep_firing_for), ending when it fell below
    assert out.splitlines()[:4] == [
        "2023-06-01T01:00:00Z  firing    aqi-heavy  warning  site=1223A  value=230 threshold=201",
        "2023-06-01T02:00:00Z  firing    aqi-severe  critical  site=1223A  value=310 threshold=301",
        "2023-06-01T05:00:00Z  resolved  aqi-heavy  warning  site=1223A  value=110 threshold=201"
        "  after 2:00:00",
        "2023-06-01T05:00:00Z  resolved  aqi-severe  critical  site=1223A  value=110"
        " threshold=301  after 1:00:00",
    ]


def test_dry_run_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write(tmp_path, "x.csv", "timestamp,kind,metric,value\n2024-11-08T02:00:00Z,aqi,aqi,x\n")
    assert main(["rules", "test", DEFAULT, "--input", data]) == 2
    assert f"{data}:2: value: 'x' is not a number" in capsys.readouterr().err
    city = write(
        tmp_path,
        "c.csv",
        "timestamp,kind,metric,value,area\n2024-11-08T02:00:00Z,aqi,aqi,1,杭州市\n",
    )
    assert main(["rules", "test", DEFAULT, "--input", city]) == 2
    assert "c.csv:2: area: invalid id '杭州市'" in capsys.readouterr().err
    bad_rules = write(tmp_path, "bad.yaml", BAD)
    assert main(["rules", "test", bad_rules, "--input", data]) == 1


@pytest.mark.skipif(not (DATA / "cnemc-aqi-dev").is_dir(), reason="needs ../shared/data")
def test_dry_run_over_the_cnemc_data_as_a_subprocess(tmp_path: Path) -> None:
    """The --help example on real data: 29 stations, 72 hours of published AQI."""
    rules = write(
        tmp_path,
        "light.yaml",
        "version: 1\nrules:\n  - id: aqi-light\n    severity: info\n    select: {index: aqi}\n"
        "    threshold: {at_least: 101}\n    clear: {below: 90}\n",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream.cli",
            "rules",
            "test",
            rules,
            "--input",
            str(DATA / "cnemc-aqi-dev" / "hourly.csv"),
            "--kind",
            "aqi",
            "--map",
            "timepoint=timestamp",
            "--map",
            "stationcode=site",
            "--map",
            "area=city",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    fired = [line for line in lines if "  firing  " in line]
    assert fired
    assert all("aqi-light  info  site=" in line for line in fired)
    [summary] = [line for line in lines if line.strip().startswith("aqi-light")]
    assert int(summary.split()[2]) == len(fired)


def test_help_shows_an_example() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli", "rules", "test", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0
    assert "urbansense rules test rules/default.yaml --input /tmp/dongsi-aqi.csv" in result.stdout

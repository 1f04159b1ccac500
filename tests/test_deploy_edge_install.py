"""The gateway's install script: it lints, plans the right steps, and installs into a root.

The script runs for real with ``--root`` into a temporary directory: it makes the
virtual environment from this checkout (pip installs the ``edge`` extra's
dependencies from the configured index), lays out /etc/urbansense and the unit, and
enables the unit through ``systemctl --root``. Creating the user and starting the
service need the real machine's root; ``--dry-run`` shows that they are planned.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.servers._procs import REPO_ROOT, require_binary

SCRIPT = REPO_ROOT / "deploy" / "edge" / "install.sh"
UNIT = REPO_ROOT / "deploy" / "edge" / "urbansense-agent.service"
SAMPLE_CONFIG = REPO_ROOT / "edge_agents" / "examples" / "agent.toml"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_script_parses_and_passes_shellcheck() -> None:
    shellcheck = require_binary("shellcheck", "shellcheck")
    assert os.access(SCRIPT, os.X_OK)
    subprocess.run(["sh", "-n", str(SCRIPT)], check=True, timeout=30)
    result = subprocess.run(
        [shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout


def test_a_dry_run_plans_every_step_in_order_and_changes_nothing(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not read in a dry run\n", encoding="utf-8")
    result = _run("--dry-run", "--config", str(SAMPLE_CONFIG), "--ca-file", str(ca))
    assert result.returncode == 0, result.stderr
    planned = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    steps = [
        "useradd --system" if "useradd" in planned[0] else "usermod --append --groups dialout",
        "-m venv /opt/urbansense",
        "/opt/urbansense/bin/python -m pip install",
        "install -d -m 0755 /etc/urbansense",
        "install -m 0640 -o root -g urbansense",
        "install -m 0644",
        f"install -D -m 0644 {UNIT} /etc/systemd/system/urbansense-agent.service",
        "systemctl daemon-reload",
        "systemctl enable urbansense-agent.service",
        "/opt/urbansense/bin/urbansense-agent check /etc/urbansense/agent.toml",
        "systemctl restart urbansense-agent.service",
    ]
    if Path("/opt/urbansense/bin/python").exists():  # a machine that has the agent
        steps.remove("-m venv /opt/urbansense")
    assert len(planned) == len(steps), planned
    for line, step in zip(planned, steps, strict=True):
        assert step in line, (step, line)
    assert planned[2].endswith("--upgrade urbansense[edge]")
    staged = _run("--dry-run", "--root", str(tmp_path / "root"), "--config", str(SAMPLE_CONFIG))
    assert staged.returncode == 0, staged.stderr
    assert f"+ systemctl --root={tmp_path / 'root'} enable" in staged.stdout
    assert not (tmp_path / "root").exists()


def test_bad_options_exit_with_status_2(tmp_path: Path) -> None:
    assert _run("--bogus").returncode == 2
    missing = _run("--dry-run", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert "no such config file" in missing.stderr


def test_it_installs_into_a_root_and_running_it_again_keeps_the_config(tmp_path: Path) -> None:
    require_binary("systemctl", "systemd")
    root = tmp_path / "root"
    common = ["--root", str(root), "--python", sys.executable, "--package", f"{REPO_ROOT}[edge]"]

    # First run, no configuration yet: the sample is put next to where it belongs.
    first = _run(*common)
    assert first.returncode == 0, first.stderr + first.stdout
    etc = root / "etc" / "urbansense"
    assert (etc / "agent.toml.example").read_bytes() == SAMPLE_CONFIG.read_bytes()
    assert not (etc / "agent.toml").exists()
    unit = root / "etc" / "systemd" / "system" / "urbansense-agent.service"
    assert unit.read_bytes() == UNIT.read_bytes()
    wanted = root / "etc" / "systemd" / "system" / "multi-user.target.wants" / unit.name
    assert wanted.is_symlink()

    # The venv has the agent and its edge dependencies, and nothing of the stream.
    python = root / "opt" / "urbansense" / "bin" / "python"
    imports = "import edge_agents, paho.mqtt, serial, pymodbus, structlog; import faust"
    probe = subprocess.run(
        [str(python), "-c", imports], capture_output=True, text=True, timeout=60, check=False
    )
    assert "No module named 'faust'" in probe.stderr

    # Second run with the gateway's configuration: installed 0640 and valid.
    config = tmp_path / "agent.toml"
    config.write_bytes(SAMPLE_CONFIG.read_bytes())
    second = _run(*common, "--config", str(config))
    assert second.returncode == 0, second.stderr + second.stdout
    assert "virtual environment" in second.stdout
    installed = etc / "agent.toml"
    assert stat.S_IMODE(installed.stat().st_mode) == 0o640
    agent = root / "opt" / "urbansense" / "bin" / "urbansense-agent"
    check = subprocess.run(
        [str(agent), "check", str(installed)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr

    # Third run with a changed file: the installed configuration is kept...
    config.write_text(SAMPLE_CONFIG.read_text(encoding="utf-8") + "# changed\n", encoding="utf-8")
    third = _run(*common, "--config", str(config))
    assert third.returncode == 0, third.stderr
    assert "keeping it" in third.stdout
    assert installed.read_bytes() == SAMPLE_CONFIG.read_bytes()
    # ...unless it is to be replaced.
    fourth = _run(*common, "--config", str(config), "--force-config")
    assert fourth.returncode == 0, fourth.stderr
    assert installed.read_text(encoding="utf-8").endswith("# changed\n")

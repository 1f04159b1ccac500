"""The gateway's systemd unit: it verifies, its commands work, and the agent speaks sd_notify."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.agent_harness import AGENT_BIN, AgentProcess, agent_toml
from tests.servers._procs import REPO_ROOT, require_binary

UNIT = REPO_ROOT / "deploy" / "edge" / "urbansense-agent.service"
SAMPLE_CONFIG = REPO_ROOT / "edge_agents" / "examples" / "agent.toml"


def _installed_unit(tmp_path: Path) -> Path:
    """The unit with its install paths pointed at this checkout's agent and sample config."""
    text = UNIT.read_text(encoding="utf-8")
    text = text.replace("/opt/urbansense/bin/urbansense-agent", str(AGENT_BIN))
    text = text.replace("/etc/urbansense/agent.toml", str(SAMPLE_CONFIG))
    path = tmp_path / UNIT.name
    path.write_text(text, encoding="utf-8")
    return path


def _unit_values(key: str) -> list[str]:
    prefix = f"{key}="
    return [
        line.removeprefix(prefix)
        for line in UNIT.read_text(encoding="utf-8").splitlines()
        if line.startswith(prefix)
    ]


def test_the_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze", "systemd")
    result = subprocess.run(
        [analyze, "verify", str(_installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_the_units_check_command_accepts_the_sample_config() -> None:
    [pre] = _unit_values("ExecStartPre")
    argv = shlex.split(pre.replace("/opt/urbansense/bin/urbansense-agent", str(AGENT_BIN)))
    argv[-1] = str(SAMPLE_CONFIG)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert _unit_values("Type") == ["notify"]
    assert _unit_values("RestartPreventExitStatus") == ["2"]  # the exit status of a bad config


def test_the_agent_reports_ready_feeds_the_watchdog_and_reports_stopping(tmp_path: Path) -> None:
    """The agent under a stand-in for systemd: a datagram socket in ``$NOTIFY_SOCKET``."""
    config = tmp_path / "agent.toml"
    # No broker listens on port 9: the agent must still be ready and healthy.
    config.write_text(agent_toml(tmp_path / "queue.db", "mqtt://127.0.0.1:9"), encoding="utf-8")
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(10)
        os.environ["NOTIFY_SOCKET"] = str(notify_path)
        os.environ["WATCHDOG_USEC"] = "1000000"  # ping every 0.5 s
        try:
            agent = AgentProcess(config, tmp_path / "agent.log").start()
        finally:
            del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
        try:
            messages = [notify.recv(256).decode() for _ in range(4)]
            assert messages[0] == "READY=1"
            assert messages[1:] == ["WATCHDOG=1"] * 3
            started = time.monotonic()
            agent.signal(signal.SIGTERM)
            while (message := notify.recv(256).decode()) == "WATCHDOG=1":
                assert time.monotonic() - started < 10
            assert message == "STOPPING=1"
            assert agent.wait(15) == 0, agent.log()
        finally:
            agent.kill()

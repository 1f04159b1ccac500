"""The dependency directions of ARCHITECTURE.md hold, and breaking one fails the build.

``lint-imports`` checks the contracts in ``pyproject.toml``. The second test
plants a forbidden import in a copy of the tree and checks that the same
contracts catch it, so the check cannot silently pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("telemetry", "edge_agents", "simulators", "rules", "stream")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(cwd / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("package", "statement", "contract"),
    [
        ("edge_agents", "import numpy", "edge_agents runs on a gateway"),
        ("edge_agents", "import faust", "edge_agents runs on a gateway"),
        ("edge_agents", "from stream import demo", "edge_agents runs on a gateway"),
        ("edge_agents", "import rules", "edge_agents runs on a gateway"),
        ("telemetry", "import paho.mqtt.client", "telemetry is the shared wire contract"),
        ("rules", "import influxdb_client", "rules are pure"),
        ("simulators", "import stream", "simulators are edge-agent drivers"),
    ],
)
def test_a_forbidden_import_fails_the_check(
    tmp_path: Path, package: str, statement: str, contract: str
) -> None:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / package / "_planted.py").write_text(f'"""Planted by the test."""\n\n{statement}\n')

    result = lint_imports(tmp_path)

    assert result.returncode != 0, result.stdout
    assert f"{contract}" in result.stdout
    assert f"{package}._planted" in result.stdout

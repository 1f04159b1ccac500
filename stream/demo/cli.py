"""``python -m stream.demo`` (``make demo``): the command line of the demo.

Options: ``--speed N`` (simulated seconds per wall second; the default runs the
example city's fortnight in about five minutes), ``--duration S``
(stop by itself after S seconds of running), ``--scenario FILE`` (any scenario of
``urbansense-sim``), ``--workdir DIR`` (each run gets a folder there),
``--mqtt auto|mosquitto|amqtt`` and ``--store auto|victoria-metrics|files``
(``auto``: the Debian package's server when installed, else the embedded one).

Exit status: 0 stopped as asked (duration, Ctrl-C, SIGTERM), 1 a part failed to
start or died, 2 bad options or scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from simulators.scenario import ScenarioError
from stream.demo.run import DemoOptions, run_demo

__all__ = ["DEFAULT_SCENARIO", "DEFAULT_SPEED", "default_workdir", "main", "parse_options"]

DEFAULT_SCENARIO = (
    Path(__file__).resolve().parents[2] / "simulators" / "examples" / "city-week.yaml"
)
"""The example city's fortnight: a quiet week to learn from, then a haze episode, a local
source, two accidents, a crowd past capacity, a leak and a tower running at night."""
DEFAULT_SPEED = 4000.0
"""Simulated seconds per wall second: a day in 22 seconds, the fortnight in 5 minutes."""


def default_workdir(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/urbansense/demo``, else ``~/.local/share/urbansense/demo``.

    >>> default_workdir({"XDG_DATA_HOME": "/data"})
    PosixPath('/data/urbansense/demo')
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "urbansense" / "demo"


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        msg = f"{text!r} is not a positive number"
        raise argparse.ArgumentTypeError(msg)
    return value


def parse_options(argv: Sequence[str] | None = None) -> DemoOptions:
    """The options of a command line (argparse exits with status 2 on a mistake)."""
    parser = argparse.ArgumentParser(
        prog="python -m stream.demo",
        description="Run the whole urbansense pipeline on this machine with a simulated city.",
    )
    parser.add_argument(
        "--speed",
        type=_positive,
        default=DEFAULT_SPEED,
        help=f"simulated seconds per wall second (default {DEFAULT_SPEED:g}: two weeks in 5 min)",
    )
    parser.add_argument(
        "--duration",
        type=_positive,
        metavar="SECONDS",
        help="stop by itself after this many seconds of running (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--scenario",
        type=Path,
        default=DEFAULT_SCENARIO,
        help="a scenario file (default: simulators/examples/city-week.yaml)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help=f"where each run's folder goes (default {default_workdir()})",
    )
    parser.add_argument(
        "--mqtt",
        choices=["auto", "mosquitto", "amqtt"],
        default="auto",
        help="the MQTT broker; auto: Mosquitto if installed, else the embedded amqtt",
    )
    parser.add_argument(
        "--store",
        choices=["auto", "victoria-metrics", "files"],
        default="auto",
        help="where points land; auto: VictoriaMetrics if installed, else line-protocol files",
    )
    parser.add_argument(
        "--summary-every",
        type=_positive,
        default=10.0,
        metavar="SECONDS",
        help="seconds between summary lines when the output is not a terminal (default 10)",
    )
    args = parser.parse_args(argv)
    return DemoOptions(
        scenario=args.scenario,
        speed=args.speed,
        duration_s=args.duration,
        workdir=args.workdir or default_workdir(),
        mqtt=args.mqtt,
        store=args.store,
        plain_every_s=args.summary_every,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    options = parse_options(argv)
    try:
        return asyncio.run(run_demo(options))
    except ScenarioError as exc:
        print(f"urbansense demo: {exc}", file=sys.stderr)
        return 2

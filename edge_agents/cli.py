"""``urbansense-agent``: the edge agent's command line.

``urbansense-agent check CONFIG`` validates a configuration file without
opening any device or connection and prints the effective configuration (with
defaults filled in and secrets masked) as JSON; exit status 0 when it is valid,
2 with every problem on standard error when it is not.

``urbansense-agent run CONFIG`` runs the agent until SIGTERM or SIGINT, then
drains and exits 0 within a few seconds. It logs structured events to standard
error (``--log-format json`` for log shippers, ``text`` for people). Exit status
2 means an invalid configuration, 1 a queue that cannot be opened.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import structlog

from edge_agents.agent import Agent
from edge_agents.buffer import QueueStorageError
from edge_agents.config import AgentConfig, ConfigError, load_config
from edge_agents.logs import LogFormat, configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="urbansense-agent", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help="validate CONFIG and print the effective configuration"
    )
    check.add_argument("config", help="path of the agent's TOML configuration")
    run = commands.add_parser("run", help="run the agent until SIGTERM or Ctrl-C")
    run.add_argument("config", help="path of the agent's TOML configuration")
    run.add_argument(
        "--log-format",
        type=LogFormat,
        choices=list(LogFormat),
        default=LogFormat.TEXT,
        help="json: one JSON object per line; text: key=value (default)",
    )
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    args = parser.parse_args(argv)

    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"urbansense-agent: invalid configuration:\n{error}", file=sys.stderr)
        return 2
    if args.command == "check":
        print(json.dumps(config.masked(), indent=2, ensure_ascii=False))
        print(
            f"urbansense-agent: {args.config} is valid ({len(config.sensors)} sensors)",
            file=sys.stderr,
        )
        return 0
    configure_logging(args.log_format, level=args.log_level)
    return _run(config)


def _run(config: AgentConfig) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        structlog.get_logger(__name__).info("stop requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        Agent(config).run(stop)
    except QueueStorageError as error:
        structlog.get_logger(__name__).error("cannot open the queue", error=str(error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

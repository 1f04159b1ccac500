"""``urbansense-agent``: the edge agent's command line.

``urbansense-agent check CONFIG`` validates a configuration file without
opening any device or connection and prints the effective configuration (with
defaults filled in and secrets masked) as JSON; exit status 0 when it is valid,
2 with every problem on standard error when it is not.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from edge_agents.config import ConfigError, load_config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="urbansense-agent", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help="validate CONFIG and print the effective configuration"
    )
    check.add_argument("config", help="path of the agent's TOML configuration")
    args = parser.parse_args(argv)

    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"urbansense-agent: invalid configuration:\n{error}", file=sys.stderr)
        return 2
    print(json.dumps(config.masked(), indent=2, ensure_ascii=False))
    print(
        f"urbansense-agent: {args.config} is valid ({len(config.sensors)} sensors)", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

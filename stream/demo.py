"""The main job on an embedded default: a simulated city through the whole pipeline.

Not built yet: the demo arrives with the issue that builds it ("The main job in
one command"). Until then ``make demo`` says so and exits with status 0.
"""

import sys


def main() -> int:
    """Say plainly that the demo is not built yet."""
    print(
        "urbansense demo: the one-command demo is not built yet.\n"
        "Its parts run on their own today: the simulated city (urbansense-sim run\n"
        "simulators/examples/city-week.yaml), edge agents (urbansense-agent run), the bridge\n"
        "(urbansense bridge), the stream worker (python -m stream.app worker --without-web),\n"
        "the rules (urbansense rules check|test) and the indices (urbansense aqi).\n"
        "Run `make test` to see all of them work against real servers."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the demo: ``python -m stream.demo [--speed N] [--duration S] ...``."""

import sys

from stream.demo.cli import main

if __name__ == "__main__":
    sys.exit(main())

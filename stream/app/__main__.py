"""Run a stream worker: ``python -m stream.app worker --without-web``.

Settings come from ``URBANSENSE_*`` variables (:class:`stream.app.settings.StreamSettings`);
the arguments are Faust's own command line.
"""

from __future__ import annotations

import gc
import os

from stream.app.app import build_app
from stream.app.settings import StreamSettings

GC_THRESHOLDS = (50_000, 50, 100)
"""The cyclic collector's generation thresholds in a worker (Python's are 700, 10, 10)."""


def main() -> None:
    """Build the app from the environment and hand over to Faust's command line."""
    stream = build_app(StreamSettings.from_env(os.environ))
    tune_gc()
    stream.app.main()


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a worker's heap.

    A step allocates hundreds of thousands of short-lived objects, which reference
    counting frees; with Python's thresholds the collector passes over the young ones
    every 700 allocations, and now and then over everything the worker built at start
    (registry, detectors, rules, Faust), which lives as long as the worker. So what is
    built by now is frozen out of the passes, and a young pass waits for 50,000
    allocations. Measured on the worker-alone benchmark: decoding 0.32 -> 0.21 s and
    the pipeline 2.45 -> 2.2 s a step of 25,000 readings.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


if __name__ == "__main__":
    main()

"""A synthetic sensor of any kind: plausible values, seeded, with faults on request.

The ``synthetic`` driver stands in for any device when what matters is the path
a reading takes rather than what it says — load tests, the agent's reliability
tests, the memory and CPU benchmark. Each gauge wanders around a typical value
of its metric (a bounded random walk), interval counts are Poisson-like whole
numbers at a typical rate for the time since the previous read, and a
cumulative counter only grows. For every read the output is a
function of the seed and the read's number, so two runs with the same seed give
the same values.

Faults are injected on purpose, to exercise the agent's handling of bad
drivers: ``fail_every`` makes every n-th read raise a
:class:`~edge_agents.errors.DriverError`, ``garbage_every`` makes every n-th
read return a value outside the metric's physical range.

>>> driver = SyntheticDriver(SyntheticOptions(kind=Kind.TRAFFIC, seed=3))
>>> driver.open()
>>> sorted(driver.read())
['mean_speed_kmh', 'occupancy_pct', 'vehicle_count']
>>> driver.close()
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Annotated, ClassVar

from pydantic import Field

from edge_agents.drivers.base import Driver, DriverOptions
from edge_agents.errors import DriverError
from telemetry import CATALOGUE, Kind, Semantics

__all__ = ["TYPICAL", "SyntheticDriver", "SyntheticOptions"]

TYPICAL: dict[str, float] = {
    "pm2_5": 35.0,
    "pm10": 70.0,
    "no2": 40.0,
    "so2": 8.0,
    "o3": 60.0,
    "co": 0.8,
    "temperature_c": 15.0,
    "humidity_pct": 55.0,
    "pressure_hpa": 1013.0,
    "wind_speed_ms": 2.5,
    "power_w": 12_000.0,
    "energy_kwh": 150_000.0,
    "voltage_v": 230.0,
    "current_a": 52.0,
    "power_factor": 0.95,
    "vehicle_count": 0.2,
    "mean_speed_kmh": 45.0,
    "occupancy_pct": 18.0,
    "entries": 0.2,
    "exits": 0.2,
    "count_in_view": 40.0,
}
"""A typical value of every catalogue metric: the centre of a gauge's random walk, the
start of a cumulative counter, or an interval count's mean rate per second."""


class SyntheticOptions(DriverOptions):
    """Options of the ``synthetic`` driver.

    Attributes:
        kind: the kind of sensor to imitate; all its catalogue metrics are produced.
        seed: makes the values reproducible.
        wander: how far a gauge strays from its typical value, as a fraction.
        fail_every: every n-th read raises ``DriverError`` (0: never).
        garbage_every: every n-th read returns an out-of-range value (0: never).
    """

    kind: Kind = Kind.POLLUTION
    seed: int = 0
    wander: Annotated[float, Field(ge=0, le=0.9)] = 0.2
    fail_every: Annotated[int, Field(ge=0)] = 0
    garbage_every: Annotated[int, Field(ge=0)] = 0


class SyntheticDriver(Driver[SyntheticOptions]):
    """Produces plausible values for every metric of its kind; see the module docstring."""

    Options: ClassVar[type[DriverOptions]] = SyntheticOptions

    def __init__(
        self, options: SyntheticOptions, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(options)
        self.clock = clock
        """Seconds on any steady scale: interval counts cover the time between reads."""
        self._reads = 0
        self._walk: dict[str, float] = {}
        self._rng = random.Random(options.seed)
        self._last_read = clock()

    def sensor_kind(self) -> Kind:
        """The kind configured in the options."""
        return self.options.kind

    def open(self) -> None:
        """Nothing to acquire; restarts the walk at the typical values."""
        self._walk = dict.fromkeys(CATALOGUE[self.options.kind], 0.0)
        self._last_read = self.clock()

    def read(self) -> dict[str, float]:
        """One sample of every metric of the kind."""
        self._reads += 1
        options = self.options
        if options.fail_every and self._reads % options.fail_every == 0:
            msg = f"synthetic failure on read {self._reads}"
            raise DriverError(msg)
        now = self.clock()
        elapsed, self._last_read = now - self._last_read, now
        sample: dict[str, float] = {}
        for name, spec in CATALOGUE[options.kind].items():
            typical = TYPICAL[name]
            if spec.semantics is Semantics.INTERVAL_COUNT:
                # Capped at the most the metric allows for the interval: a Poisson
                # tail would otherwise, once in a thousand reads, be out of range.
                most = spec.valid_range(elapsed)[1] if elapsed > 0 else 0.0
                value = float(min(self._poisson(typical * elapsed), math.floor(most)))
            elif spec.semantics is Semantics.CUMULATIVE:
                self._walk[name] += self._rng.uniform(0.0, 0.1)
                value = typical + self._walk[name]
            else:
                step = self._rng.gauss(0.0, options.wander / 4)
                self._walk[name] = max(
                    -options.wander, min(options.wander, self._walk[name] + step)
                )
                low, high = spec.valid_range(None)
                value = min(high, max(low, typical * (1.0 + self._walk[name])))
                if spec.integer:
                    value = float(round(value))
            sample[name] = value
        if options.garbage_every and self._reads % options.garbage_every == 0:
            name = next(iter(sample))
            sample[name] = CATALOGUE[options.kind][name].high * 10 + 1
        return sample

    def close(self) -> None:
        """Nothing to release."""

    def _poisson(self, mean: float) -> int:
        # Knuth's method: fine for the small means of a sensor's per-read counts.
        limit, count, product = math.exp(-mean), 0, self._rng.random()
        while product > limit:
            count += 1
            product *= self._rng.random()
        return count

"""What every simulated device shares: an injectable clock and timed effects.

A simulated device is a pure model of time (no state, no wall clock) wrapped in an
edge-agent driver that asks a *clock* what time it is. The wall clock is the default; a
scenario, a test or a replay passes its own, so a simulated day runs in seconds and the
same seed gives the same readings.

:class:`Effect` is how a scenario reaches into a model: an accident drops a lane's
capacity, a holiday multiplies a park's arrivals, a meter left running adds a load.
Each model says what an effect's ``amount`` means for it.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2024, 5, 1, 8, tzinfo=UTC)
>>> surge = Effect(t0, t0 + timedelta(hours=4), amount=3.0, ramp_s=3600)
>>> surge.weight(t0 + timedelta(minutes=30)), surge.weight(t0 + timedelta(hours=2))
(0.5, 1.0)
>>> surge.factor(t0 + timedelta(minutes=30))
2.0
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from edge_agents.drivers.base import Driver, DriverOptions
from edge_agents.errors import DriverError

__all__ = ["Clock", "Effect", "SimulatedDriver", "combined_factor", "total_amount", "utc_now"]

Clock = Callable[[], datetime]
"""Gives the current time, an aware datetime."""


def utc_now() -> datetime:
    """The wall clock, in UTC: the default clock of every simulated device."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Effect:
    """A change to a model's behaviour over ``[start, end)``, ramping in and out.

    Attributes:
        start: when the change begins to take hold (aware).
        end: when it is over (aware, after ``start``).
        amount: what the change is; its meaning is the model's (a factor, watts, ...).
        ramp_s: the change grows linearly over the first ``ramp_s`` seconds and fades
            over the last ``ramp_s`` (at most half the span); 0 for a step.

    Raises:
        ValueError: a naive time, ``end`` not after ``start``, a negative ramp or a
            non-finite amount.
    """

    start: datetime
    end: datetime
    amount: float
    ramp_s: float = 0.0

    def __post_init__(self) -> None:
        if self.start.utcoffset() is None or self.end.utcoffset() is None:
            msg = f"effect times must be aware, not {self.start!r} .. {self.end!r}"
            raise ValueError(msg)
        if self.end <= self.start:
            msg = f"effect end {self.end.isoformat()} is not after start {self.start.isoformat()}"
            raise ValueError(msg)
        if not (math.isfinite(self.ramp_s) and self.ramp_s >= 0):
            msg = f"effect ramp_s must be a non-negative number, not {self.ramp_s!r}"
            raise ValueError(msg)
        if not math.isfinite(self.amount):
            msg = f"effect amount must be a finite number, not {self.amount!r}"
            raise ValueError(msg)

    def weight(self, ts: datetime) -> float:
        """How much of the change holds at ``ts``: 0 outside, 1 between the ramps."""
        if not self.start <= ts < self.end:
            return 0.0
        ramp = min(self.ramp_s, (self.end - self.start).total_seconds() / 2)
        if ramp <= 0:
            return 1.0
        edge = min((ts - self.start).total_seconds(), (self.end - ts).total_seconds())
        return min(1.0, edge / ramp)

    def factor(self, ts: datetime) -> float:
        """``amount`` read as a factor: 1 outside, ``amount`` in full, between on a ramp."""
        return 1.0 + (self.amount - 1.0) * self.weight(ts)


def combined_factor(effects: Iterable[Effect], ts: datetime) -> float:
    """The product of the factors of ``effects`` at ``ts`` (1 when none holds)."""
    return math.prod(effect.factor(ts) for effect in effects)


def total_amount(effects: Iterable[Effect], ts: datetime) -> float:
    """The sum of the amounts of ``effects`` at ``ts``, each weighted by its ramp."""
    return sum(effect.amount * effect.weight(ts) for effect in effects)


OptionsT = TypeVar("OptionsT", bound=DriverOptions)


class SimulatedDriver(Driver[OptionsT]):
    """A driver with no device behind it: a model read at the clock's time.

    ``open()`` remembers when the device was opened (interval counts run from there) and
    ``close()`` does nothing; subclasses implement :meth:`read` with :meth:`now`.

    Args:
        options: the validated options.
        clock: gives the time of each read (an aware datetime); the wall clock by
            default, a stepping function in scenarios, tests and replays.
    """

    def __init__(self, options: OptionsT, *, clock: Clock = utc_now) -> None:
        super().__init__(options)
        self.clock = clock
        """Gives the time of each read."""
        self.opened_at: datetime | None = None
        """When :meth:`open` last ran, by the clock; None before."""

    def open(self) -> None:
        """Nothing to acquire; interval counts start now."""
        self.opened_at = self.now()

    def close(self) -> None:
        """Nothing to release."""

    def now(self) -> datetime:
        """The clock's time.

        Raises:
            DriverError: the clock gave a naive datetime (not retryable).
        """
        ts = self.clock()
        if ts.utcoffset() is None:
            msg = f"the clock gave a naive datetime ({ts.isoformat()}); it must be aware"
            raise DriverError(msg, retryable=False)
        return ts

    @abstractmethod
    def read(self) -> dict[str, float]:
        """The model's metrics at :meth:`now`."""

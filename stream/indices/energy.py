"""Energy consumption from kWh registers, and building power against its weekly baseline.

Two pure steps, each with a small state the caller keeps per meter or per building:

* :func:`consume` turns consecutive values of a cumulative kWh register into the
  energy consumed between them. A register only grows, except when it *rolls over*
  (it passed its largest value and restarted at 0) or is *reset* (cleared to 0 by a
  technician or a meter swap). A decrease is a rollover when the previous value was
  within ``rollover_fraction`` of ``register_max_kwh``: the consumption is then
  ``max + resolution - previous + new`` (``max - previous + new`` for a resolution of
  0). Otherwise it is a reset, and the consumption is the new value, counted from 0
  (what was used between the previous reading and the reset is lost). Consumption is
  never negative. A step longer than ``max_gap_s`` is reported as a gap; its energy is
  still counted, since a register misses nothing while nobody reads it.
* :func:`update_baseline` compares a building's power with what this hour of the week
  usually draws (local time, 168 buckets) and then learns it: each bucket keeps an
  exponentially weighted mean in which one whole hour of observations weighs
  ``weekly_weight`` (so the weight of a reading depends on its interval, not on how
  often the meter reports), and an exact running mean until the bucket has that much
  history. A bucket gives no baseline until it has seen ``warm_up_h`` hours of data
  (two weeks of that hour by default).

>>> from datetime import UTC, datetime, timedelta
>>> config = RegisterConfig(register_max_kwh=99_999.99)
>>> t0 = datetime(2024, 10, 8, tzinfo=UTC)
>>> state, first = consume(RegisterState(), t0, 99_990.00, config)
>>> state, step = consume(state, t0 + timedelta(minutes=15), 4.99, config)
>>> step.step, round(step.kwh, 2), round(step.mean_power_kw, 2)  # 10.00 + 4.99
(<RegisterStep.ROLLOVER: 'rollover'>, 14.99, 59.96)
>>> state, step = consume(state, t0 + timedelta(minutes=30), 2.50, config)
>>> step.step, step.kwh  # a reset: 2.50 kWh since it
(<RegisterStep.RESET: 'reset'>, 2.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

__all__ = [
    "HOURS_OF_WEEK",
    "BaselineComparison",
    "BaselineConfig",
    "Consumption",
    "EnergyError",
    "PowerBaseline",
    "RegisterConfig",
    "RegisterState",
    "RegisterStep",
    "consume",
    "hour_of_week",
    "update_baseline",
]


class EnergyError(ValueError):
    """An energy input or setting that cannot be used; the message names the field and the value."""


HOURS_OF_WEEK: Final = 168


def _check_finite(name: str, value: float, *, low: float = -math.inf) -> None:
    if not (math.isfinite(value) and value >= low):
        bound = f" at least {low:g}" if low > -math.inf else ""
        msg = f"{name} must be a finite number{bound}, not {value!r}"
        raise EnergyError(msg)


def _check_aware(name: str, ts: datetime) -> None:
    if ts.tzinfo is None:
        msg = f"{name} {ts.isoformat()} has no time zone"
        raise EnergyError(msg)


# ---------------------------------------------------------------- the register


class RegisterStep(StrEnum):
    """What happened between two register readings."""

    FIRST = "first"
    """The first reading: nothing to subtract from."""
    NORMAL = "normal"
    """The register grew (or stood still)."""
    ROLLOVER = "rollover"
    """It passed its largest value and restarted at 0."""
    RESET = "reset"
    """It was cleared to 0 and counted on."""
    LATE = "late"
    """The reading is not newer than the last one applied: ignored."""
    IMPLAUSIBLE = "implausible"
    """More energy than ``max_power_kw`` allows: not counted, the register taken as it is."""


@dataclass(frozen=True, slots=True)
class RegisterConfig:
    """How to read one meter's register.

    Attributes:
        register_max_kwh: the largest value the register shows (999 999.99 for 6+2
            digits).
        resolution_kwh: its last digit's step; one step past the maximum reads 0.
        rollover_fraction: a decrease is a rollover when the previous value was at least
            ``(1 - rollover_fraction) * register_max_kwh``, otherwise a reset.
        max_gap_s: a step longer than this is reported as a gap.
        max_power_kw: if given, a step implying a higher mean power is implausible (a
            glitch of the register) and counts nothing.
    """

    register_max_kwh: float = 999_999.99
    resolution_kwh: float = 0.01
    rollover_fraction: float = 0.01
    max_gap_s: float = 900.0
    max_power_kw: float | None = None

    def __post_init__(self) -> None:
        _check_finite("register_max_kwh", self.register_max_kwh, low=0.01)
        _check_finite("resolution_kwh", self.resolution_kwh, low=0.0)
        _check_finite("max_gap_s", self.max_gap_s, low=0.0)
        if not 0.0 <= self.rollover_fraction <= 1.0:
            msg = f"rollover_fraction must be within [0, 1], not {self.rollover_fraction!r}"
            raise EnergyError(msg)
        if self.max_power_kw is not None:
            _check_finite("max_power_kw", self.max_power_kw, low=0.0)


@dataclass(frozen=True, slots=True)
class RegisterState:
    """The last register value applied, and when.

    Attributes:
        ts: its event time; None before the first reading.
        kwh: its value.
    """

    ts: datetime | None = None
    kwh: float = 0.0


@dataclass(frozen=True, slots=True)
class Consumption:
    """The energy consumed between the previous register reading and this one.

    Attributes:
        ts: this reading's event time.
        since: the previous reading's event time (None for the first).
        register_kwh: the register's value now.
        kwh: the energy consumed since ``since``, never negative.
        step: how the register moved.
        mean_power_kw: ``kwh`` over the step's hours (None without a previous reading).
        gap_s: the step's length when it is longer than ``max_gap_s``, else None.
    """

    ts: datetime
    since: datetime | None
    register_kwh: float
    kwh: float
    step: RegisterStep
    mean_power_kw: float | None = None
    gap_s: float | None = None


def consume(
    state: RegisterState, ts: datetime, register_kwh: float, config: RegisterConfig
) -> tuple[RegisterState, Consumption]:
    """Apply one register reading: the new state, and the energy since the previous one.

    Readings must come newest-last per meter; an older (or same-time) reading is
    reported ``LATE`` and changes nothing, as the newer one already counts its energy.

    Raises:
        EnergyError: ``ts`` is naive, or ``register_kwh`` is negative or not finite.
    """
    _check_aware("ts", ts)
    _check_finite("register_kwh", register_kwh, low=0.0)
    previous = state.ts
    if previous is None:
        return RegisterState(ts, register_kwh), Consumption(
            ts, None, register_kwh, 0.0, RegisterStep.FIRST
        )
    if ts <= previous:
        return state, Consumption(ts, previous, register_kwh, 0.0, RegisterStep.LATE)
    step, kwh = RegisterStep.NORMAL, register_kwh - state.kwh
    if kwh < 0:
        top = config.register_max_kwh
        if state.kwh >= (1.0 - config.rollover_fraction) * top:
            step, kwh = (
                RegisterStep.ROLLOVER,
                top + config.resolution_kwh - state.kwh + register_kwh,
            )
        else:
            step, kwh = RegisterStep.RESET, register_kwh
    kwh = max(0.0, kwh)
    seconds = (ts - previous).total_seconds()
    power = kwh / (seconds / 3600.0)
    limit = config.max_power_kw
    if limit is not None and power > limit + config.resolution_kwh / (seconds / 3600.0):
        step, kwh, power = RegisterStep.IMPLAUSIBLE, 0.0, 0.0
    gap = seconds if seconds > config.max_gap_s else None
    return RegisterState(ts, register_kwh), Consumption(
        ts, previous, register_kwh, kwh, step, power, gap
    )


# ---------------------------------------------------------------- the baseline


def hour_of_week(ts: datetime, utc_offset_h: float) -> int:
    """The local hour of the week, 0 (Monday 00:00-01:00) to 167.

    >>> from datetime import UTC
    >>> hour_of_week(datetime(2024, 10, 7, 1, 30, tzinfo=UTC), 8.0)  # Monday 09:30 local
    9
    """
    _check_aware("ts", ts)
    seconds = ts.timestamp() + utc_offset_h * 3600.0
    hours = math.floor(seconds / 3600.0)
    weekday = (hours // 24 + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    return int(weekday * 24 + hours % 24)


@dataclass(frozen=True, slots=True)
class BaselineConfig:
    """How a building's weekly power baseline learns.

    Attributes:
        weekly_weight: the weight one whole hour of new observations gets against a
            bucket's past (0.3: the last week counts 30 %, the week before 21 %, ...).
        warm_up_h: hours of observations a bucket needs before it gives a baseline.
        utc_offset_h: local time's offset from UTC, hours.
    """

    weekly_weight: float = 0.3
    warm_up_h: float = 2.0
    utc_offset_h: float = 8.0

    def __post_init__(self) -> None:
        if not 0.0 < self.weekly_weight <= 1.0:
            msg = f"weekly_weight must be within (0, 1], not {self.weekly_weight!r}"
            raise EnergyError(msg)
        _check_finite("warm_up_h", self.warm_up_h, low=0.0)
        if not -14.0 <= self.utc_offset_h <= 14.0:
            msg = f"utc_offset_h must be within [-14, 14], not {self.utc_offset_h!r}"
            raise EnergyError(msg)


_ZEROS: Final = (0.0,) * HOURS_OF_WEEK


@dataclass(frozen=True, slots=True)
class PowerBaseline:
    """A building's learned power per local hour of the week.

    Attributes:
        mean_kw: each bucket's weighted mean power, kW.
        seen_h: how many hours of observations each bucket has learned.
    """

    mean_kw: tuple[float, ...] = _ZEROS
    seen_h: tuple[float, ...] = _ZEROS


@dataclass(frozen=True, slots=True)
class BaselineComparison:
    """A building's power against its baseline, before the observation was learned.

    Attributes:
        ts: event time.
        hour_of_week: the bucket, 0 (Monday 00:00 local) to 167.
        power_kw: the power observed.
        baseline_kw: the bucket's mean; None while it warms up.
        ratio: ``power_kw / baseline_kw``; None while warming up or for a zero baseline.
        excess_kw: ``power_kw - baseline_kw``; None while warming up.
    """

    ts: datetime
    hour_of_week: int
    power_kw: float
    baseline_kw: float | None
    ratio: float | None
    excess_kw: float | None


def update_baseline(
    state: PowerBaseline,
    ts: datetime,
    power_kw: float,
    config: BaselineConfig,
    *,
    interval_s: float = 60.0,
    learn: bool = True,
) -> tuple[PowerBaseline, BaselineComparison]:
    """Compare a power observation with its hour-of-week baseline, then learn it.

    Args:
        state: the building's baseline (``PowerBaseline()`` at first).
        ts: the observation's event time (aware).
        power_kw: the building's mean power over the interval (all its meters).
        config: how the baseline learns.
        interval_s: the time the observation covers; its weight in the bucket.
        learn: False to compare only (e.g. while an alert on the building is open, so
            that a leak does not become the norm).

    >>> from datetime import UTC, timedelta
    >>> base, week = PowerBaseline(), timedelta(days=7)
    >>> monday = datetime(2024, 10, 7, 1, tzinfo=UTC)  # 09:00 local
    >>> for weeks in range(2):
    ...     base, seen = update_baseline(base, monday + weeks * week, 100.0,
    ...                                  BaselineConfig(), interval_s=3600)
    >>> seen.baseline_kw is None  # one hour seen before this one: still warming up
    True
    >>> base, seen = update_baseline(base, monday + 2 * week, 130.0, BaselineConfig(),
    ...                              interval_s=3600)
    >>> seen.baseline_kw, seen.ratio, seen.excess_kw
    (100.0, 1.3, 30.0)
    """
    _check_aware("ts", ts)
    _check_finite("power_kw", power_kw)
    _check_finite("interval_s", interval_s, low=0.0)
    bucket = hour_of_week(ts, config.utc_offset_h)
    mean, seen = state.mean_kw[bucket], state.seen_h[bucket]
    warm = seen >= config.warm_up_h and seen > 0
    baseline = mean if warm else None
    ratio = power_kw / mean if warm and mean > 0 else None
    comparison = BaselineComparison(
        ts, bucket, power_kw, baseline, ratio, power_kw - mean if warm else None
    )
    hours = interval_s / 3600.0
    if not learn or hours == 0:
        return state, comparison
    weight = max(1.0 - (1.0 - config.weekly_weight) ** hours, hours / (seen + hours))
    means, seens = list(state.mean_kw), list(state.seen_h)
    means[bucket] = mean + weight * (power_kw - mean)
    seens[bucket] = seen + hours
    return PowerBaseline(tuple(means), tuple(seens)), comparison

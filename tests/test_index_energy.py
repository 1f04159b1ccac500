"""Energy: consumption from kWh registers through rollovers, resets, gaps and late readings,
the hour-of-week power baseline, and a simulated meter whose register is reset."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.energy import EnergyMeterDriver
from simulators.engine import City
from simulators.scenario import parse_scenario
from stream.indices.energy import (
    HOURS_OF_WEEK,
    BaselineConfig,
    Consumption,
    EnergyError,
    PowerBaseline,
    RegisterConfig,
    RegisterState,
    RegisterStep,
    consume,
    hour_of_week,
    update_baseline,
)

T0 = datetime(2024, 10, 8, 0, 0, tzinfo=UTC)
QUARTER = timedelta(minutes=15)
SMALL = RegisterConfig(register_max_kwh=99_999.99)  # a 5+2-digit register


def steps(values: list[float], config: RegisterConfig = SMALL) -> list[Consumption]:
    state, out = RegisterState(), []
    for i, value in enumerate(values):
        state, step = consume(state, T0 + i * QUARTER, value, config)
        out.append(step)
    return out


# ---------------------------------------------------------------- the register


def test_consumption_is_the_difference_of_consecutive_values() -> None:
    first, second, third = steps([100.00, 101.50, 101.50])
    assert (first.step, first.kwh, first.mean_power_kw, first.since) == (
        RegisterStep.FIRST,
        0,
        None,
        None,
    )
    assert (second.step, second.since) == (RegisterStep.NORMAL, T0)
    assert second.kwh == pytest.approx(1.5)
    assert second.mean_power_kw == pytest.approx(6.0)
    assert third.kwh == 0


@pytest.mark.parametrize(
    ("previous", "new", "step", "kwh"),
    [
        (99_999.99, 0.00, RegisterStep.ROLLOVER, 0.01),  # one 0.01 step past the maximum
        (99_999.99, 0.50, RegisterStep.ROLLOVER, 0.51),
        (99_990.00, 4.99, RegisterStep.ROLLOVER, 14.99),
        (99_000.00, 10.00, RegisterStep.ROLLOVER, 1_010.00),  # 1 % below the maximum: still a wrap
        (98_999.98, 10.00, RegisterStep.RESET, 10.00),  # just outside the 1 %: a reset
        (500.00, 3.00, RegisterStep.RESET, 3.00),
        (500.00, 0.00, RegisterStep.RESET, 0.00),
    ],
)
def test_a_decrease_is_a_rollover_near_the_maximum_and_a_reset_elsewhere(
    previous: float, new: float, step: RegisterStep, kwh: float
) -> None:
    _, change = steps([previous, new])
    assert change.step is step
    assert change.kwh == pytest.approx(kwh, abs=1e-6)


def test_without_a_resolution_the_rollover_is_max_minus_previous_plus_new() -> None:
    config = RegisterConfig(register_max_kwh=1e6, resolution_kwh=0.0, rollover_fraction=0.05)
    _, change = steps([999_000.0, 250.0], config)
    assert change.step is RegisterStep.ROLLOVER
    assert change.kwh == pytest.approx(1e6 - 999_000.0 + 250.0)


def test_late_readings_change_nothing_and_gaps_are_reported() -> None:
    state, _ = consume(RegisterState(), T0, 10.0, SMALL)
    same, late = consume(state, T0, 9.0, SMALL)
    assert same == state
    assert (late.step, late.kwh) == (RegisterStep.LATE, 0.0)
    _, older = consume(state, T0 - QUARTER, 5.0, SMALL)
    assert older.step is RegisterStep.LATE
    state, short = consume(state, T0 + QUARTER, 11.0, SMALL)
    assert short.gap_s is None  # 900 s is not more than max_gap_s
    _, gap = consume(state, T0 + 5 * QUARTER, 31.0, SMALL)
    assert gap.gap_s == 3600.0
    assert gap.kwh == pytest.approx(20.0)  # a register misses nothing while unread


def test_an_implausible_jump_counts_nothing_and_the_register_moves_on() -> None:
    config = replace(SMALL, max_power_kw=100.0)
    values = [40_000.00, 12.00, 40_001.00, 40_026.00]  # a glitch low, back, then 100 kW
    _, glitch, back, full = steps(values, config)
    assert (glitch.step, glitch.kwh) == (RegisterStep.RESET, 12.0)
    assert (back.step, back.kwh, back.mean_power_kw) == (RegisterStep.IMPLAUSIBLE, 0.0, 0.0)
    assert full.step is RegisterStep.NORMAL  # exactly 100 kW for 15 minutes is allowed
    assert full.kwh == pytest.approx(25.0)


def test_inputs_are_checked() -> None:
    with pytest.raises(EnergyError, match="register_kwh must be a finite number at least 0"):
        consume(RegisterState(), T0, -1.0, SMALL)
    with pytest.raises(EnergyError, match=r"register_kwh must be a finite number.*nan"):
        consume(RegisterState(), T0, math.nan, SMALL)
    with pytest.raises(EnergyError, match="has no time zone"):
        consume(RegisterState(), datetime(2024, 1, 1), 1.0, SMALL)  # noqa: DTZ001
    with pytest.raises(EnergyError, match="rollover_fraction must be within"):
        RegisterConfig(rollover_fraction=1.5)


@given(
    values=st.lists(st.floats(0, 99_999.99), min_size=1, max_size=30),
    fraction=st.floats(0, 1),
)
def test_consumption_is_never_negative(values: list[float], fraction: float) -> None:
    for change in steps(values, replace(SMALL, rollover_fraction=fraction)):
        assert change.kwh >= 0
        assert change.mean_power_kw is None or change.mean_power_kw >= 0


@given(
    start=st.integers(0, 9_999_999),
    increments=st.lists(st.integers(0, 50_000), min_size=1, max_size=40),
)
def test_a_wrapping_register_adds_up_to_what_was_consumed(
    start: int, increments: list[int]
) -> None:
    # Counted in cents, as a 5+2-digit register wraps from 99 999.99 to 0.00.
    cents = [start]
    for inc in increments:
        cents.append((cents[-1] + inc) % 10_000_000)
    total = sum(change.kwh for change in steps([c / 100 for c in cents]))
    assert total == pytest.approx(sum(increments) / 100, abs=1e-6 * len(increments))


# ---------------------------------------------------------------- the baseline


def test_hour_of_week_is_local() -> None:
    monday = datetime(2024, 10, 6, 16, 0, tzinfo=UTC)  # Monday 00:00 in Beijing
    assert hour_of_week(monday, 8.0) == 0
    assert hour_of_week(monday - timedelta(seconds=1), 8.0) == HOURS_OF_WEEK - 1
    assert hour_of_week(monday + timedelta(days=2, hours=14, minutes=59), 8.0) == 2 * 24 + 14
    assert hour_of_week(monday, 0.0) == 6 * 24 + 16  # Sunday 16:00 in UTC


def test_the_baseline_warms_up_then_compares_before_it_learns() -> None:
    config = BaselineConfig(weekly_weight=0.3, warm_up_h=2.0)
    week = timedelta(days=7)
    state = PowerBaseline()
    state, first = update_baseline(state, T0, 100.0, config, interval_s=3600)
    state, second = update_baseline(state, T0 + week, 200.0, config, interval_s=3600)
    assert first.baseline_kw is second.baseline_kw is None  # warming up
    assert state.mean_kw[first.hour_of_week] == pytest.approx(150.0)  # a running mean so far
    state, third = update_baseline(state, T0 + 2 * week, 180.0, config, interval_s=3600)
    assert (third.baseline_kw, third.excess_kw) == (150.0, 30.0)
    assert third.ratio == pytest.approx(1.2)
    # The running mean gives way to the weekly weight once it is the larger: 1/3 > 0.3 here.
    assert state.mean_kw[third.hour_of_week] == pytest.approx(150.0 + 30.0 / 3)
    state, fourth = update_baseline(state, T0 + 3 * week, 200.0, config, interval_s=3600)
    assert state.mean_kw[fourth.hour_of_week] == pytest.approx(160.0 + 0.3 * 40.0)  # 0.3 > 1/4
    frozen, _ = update_baseline(state, T0 + 4 * week, 999.0, config, learn=False)
    assert frozen == state


def test_minute_readings_weigh_as_much_as_an_hourly_one() -> None:
    config = BaselineConfig(weekly_weight=0.3, warm_up_h=1.0)
    hourly, minutes = PowerBaseline(), PowerBaseline()
    for week in range(4):
        start = T0 + timedelta(days=7 * week)
        hourly, _ = update_baseline(hourly, start, 100.0 + week, config, interval_s=3600)
        for minute in range(60):
            at = start + timedelta(minutes=minute)
            minutes, _ = update_baseline(minutes, at, 100.0 + week, config)
    bucket = hour_of_week(T0, 8.0)
    assert minutes.mean_kw[bucket] == pytest.approx(hourly.mean_kw[bucket], abs=0.2)
    assert minutes.seen_h[bucket] == pytest.approx(4.0)


def test_a_leak_shows_as_excess_power_over_the_weekly_profile() -> None:
    config = BaselineConfig()
    state = PowerBaseline()

    def profile(at: datetime) -> float:  # an office: 300 kW in working hours, 80 kW else
        local = at + timedelta(hours=8)
        return 300.0 if local.weekday() < 5 and 8 <= local.hour < 19 else 80.0

    hours = [T0 + timedelta(hours=h) for h in range(4 * HOURS_OF_WEEK)]
    for at in hours[: 3 * HOURS_OF_WEEK]:
        state, _ = update_baseline(state, at, profile(at), config, interval_s=3600)
    for at in hours[3 * HOURS_OF_WEEK :]:
        state, seen = update_baseline(state, at, profile(at) + 40.0, config, interval_s=3600)
        assert seen.excess_kw == pytest.approx(40.0)
        assert seen.ratio == pytest.approx((profile(at) + 40.0) / profile(at))


def test_a_zero_baseline_has_no_ratio_and_settings_are_checked() -> None:
    config = BaselineConfig(warm_up_h=0.5)
    state, _ = update_baseline(PowerBaseline(), T0, 0.0, config, interval_s=3600)
    _, seen = update_baseline(state, T0 + timedelta(days=7), 5.0, config)
    assert (seen.baseline_kw, seen.ratio, seen.excess_kw) == (0.0, None, 5.0)
    with pytest.raises(EnergyError, match="weekly_weight must be within"):
        BaselineConfig(weekly_weight=0.0)
    with pytest.raises(EnergyError, match="power_kw must be a finite number, not inf"):
        update_baseline(PowerBaseline(), T0, math.inf, config)


# ---------------------------------------------------------------- the simulated city


RESET = """
version: 1
name: a meter reset
seed: 2
start: 2024-11-08T07:00:00+08:00
duration: 2h
faults:
  - {kind: counter_reset, sensor: em-willow-court-main, start: 2024-11-08T08:00:00+08:00}
"""


def test_a_counter_reset_keeps_consumption_non_negative_and_matching_the_register() -> None:
    city = City(parse_scenario(RESET))
    meter = "em-willow-court-main"
    readings = [r for r in city.run() if r.sensor_id == meter]
    state, changes = RegisterState(), []
    for reading in readings:
        state, change = consume(state, reading.ts, reading.metrics["energy_kwh"], RegisterConfig())
        changes.append(change)
    assert all(change.kwh >= 0 for change in changes)
    assert [c.step for c in changes].count(RegisterStep.RESET) == 1
    reset = next(i for i, c in enumerate(changes) if c.step is RegisterStep.RESET)
    register = [r.metrics["energy_kwh"] for r in readings]
    # What the register showed: its rise before the reset, and all it counted after it.
    shown = (register[reset - 1] - register[0]) + register[-1]
    assert sum(c.kwh for c in changes) == pytest.approx(shown, abs=1e-6)
    # Against the meter's true energy, only what ran between the last reading before the
    # reset and the reset itself is lost: at most one minute at the meter's power.
    driver = city.driver(meter)
    assert isinstance(driver, EnergyMeterDriver)
    model = replace(driver.model, resets=())
    true_kwh = model.energy_kwh(readings[-1].ts) - model.energy_kwh(readings[0].ts)
    most_in_a_minute = max(r.metrics["power_w"] for r in readings) / 1000 / 60
    assert 0 <= true_kwh - sum(c.kwh for c in changes) <= most_in_a_minute + 0.02

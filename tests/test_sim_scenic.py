"""The simulated scenic area: its visitors' bookkeeping, calendar, calibration and drivers.

Statistical tests use small parks (a few thousand visitors a day) where the property does
not depend on the size, so that simulated weeks and months build in a fraction of a second.
The figures they hold the model to are those of the module docstring of
:mod:`simulators.scenic` (Jiuzhaigou's daily visitors and the Shanghai snapshot).
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time as timer
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge_agents.errors import DriverError
from edge_agents.sampler import check_sample
from simulators.base import Effect
from simulators.scenic import (
    GateCounterDriver,
    GateCounterOptions,
    Holiday,
    ParkModel,
    holiday_on,
)
from telemetry import CATALOGUE, Kind

BEIJING = timedelta(hours=8)
GATES = ("gate-north", "gate-pier", "gate-south")


def local(day: date, hour: int = 0, minute: int = 0) -> datetime:
    """``hour:minute`` on ``day`` in Beijing, as a UTC datetime."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - BEIJING


def minutes(day: date, step: int = 1) -> Iterator[datetime]:
    """Every ``step`` minutes of local ``day``."""
    start = local(day)
    return (start + timedelta(minutes=m) for m in range(0, 24 * 60, step))


def small_park(seed: int = 0, **overrides: Any) -> ParkModel:
    """A park of a few thousand visitors a day, three gates."""
    settings_: dict[str, Any] = {"seed": seed, "gates": GATES, "daily_visitors_mean": 2500}
    settings_.update(overrides)
    return ParkModel(**settings_)


def is_ordinary(day: date) -> bool:
    return holiday_on(day) is None


# ---------------------------------------------------------------- bookkeeping


def test_occupancy_is_never_negative_and_empties_at_closing_over_a_week() -> None:
    # 28 Sep to 4 Oct 2024: a weekend, Golden Week's first days and a surge on the Sunday.
    first = date(2024, 9, 28)
    surge = Effect(local(date(2024, 9, 29), 9), local(date(2024, 9, 29), 13), 4.0, 1800)
    park = small_park(daily_visitors_mean=20_000, surges=(surge,))
    for offset in range(7):
        day = first + timedelta(days=offset)
        levels = [park.occupancy_at(ts) for ts in minutes(day)]
        assert min(levels) >= 0
        assert max(levels) > 1000
        closing = 21 * 60 + 30
        assert all(level == 0 for level in levels[closing:]), day
        assert all(level == 0 for level in levels[: 6 * 60 + 1]), day


def test_nobody_enters_before_opening_or_in_the_last_hour() -> None:
    park = small_park(opens_at=time(8, 30), closes_at=time(17, 0))
    for day in (date(2024, 3, 5), date(2024, 5, 2), date(2024, 8, 10)):
        for gate in GATES:
            assert park.counts(gate, local(day), local(day, 8, 30))[0] == 0
            assert park.counts(gate, local(day, 16), local(day + timedelta(days=1)))[0] == 0
            assert park.counts(gate, local(day, 8, 30), local(day, 10))[0] > 0
        assert park.expected_arrivals_per_h(local(day, 8, 29)) == 0
        assert park.expected_arrivals_per_h(local(day, 16, 0)) == 0
        assert park.expected_arrivals_per_h(local(day, 10, 30)) > 0


def test_entries_and_exits_balance_over_a_day_across_gates() -> None:
    park = small_park(daily_visitors_mean=15_000)
    for day in (date(2024, 6, 4), date(2024, 10, 3), date(2025, 1, 29)):
        start, end = local(day), local(day + timedelta(days=1))
        counts = [park.counts(gate, start, end) for gate in GATES]
        entries = sum(entries for entries, _ in counts)
        exits = sum(exits for _, exits in counts)
        assert entries - exits == 0
        assert entries == park.day_visitors(day) > 0
        # Gates are used unevenly on the way out, but every gate is used.
        assert all(e > 0 and x > 0 for e, x in counts)


def test_gate_shares_split_the_entries_and_exits_use_the_gates_otherwise() -> None:
    park = small_park(seed=5, daily_visitors_mean=20_000, gate_shares=(6.0, 3.0, 1.0))
    day = date(2024, 6, 4)
    start, end = local(day), local(day + timedelta(days=1))
    counts = [park.counts(gate, start, end) for gate in GATES]
    entries = [e / park.day_visitors(day) for e, _ in counts]
    exits = [x / park.day_visitors(day) for _, x in counts]
    assert entries == pytest.approx([0.6, 0.3, 0.1], abs=0.01)
    # Half leave by their own gate, half by the shares turned round: not the entry split.
    assert max(abs(e - x) for e, x in zip(entries, exits, strict=True)) > 0.1
    assert min(exits) > 0.1


@settings(max_examples=60)
@given(
    st.lists(st.integers(min_value=0, max_value=2 * 86_400_000), min_size=3, max_size=3),
    st.sampled_from(GATES),
)
def test_counts_are_additive_for_any_split_points(offsets_ms: list[int], gate: str) -> None:
    park = small_park(seed=7)
    start = local(date(2024, 6, 4))
    a, b, c = (start + timedelta(milliseconds=ms) for ms in sorted(offsets_ms))
    first, second, whole = park.counts(gate, a, b), park.counts(gate, b, c), park.counts(gate, a, c)
    assert (first[0] + second[0], first[1] + second[1]) == whole
    assert min(*first, *second) >= 0


# ---------------------------------------------------------------- the day's shape


def test_occupancy_peaks_between_11_and_16_on_ordinary_days() -> None:
    for seed in range(3):
        park = small_park(seed=seed)
        for day in (date(2024, 3, 12), date(2024, 6, 8), date(2024, 9, 18), date(2024, 11, 26)):
            levels = [(park.occupancy_at(ts), ts) for ts in minutes(day, 5)]
            peak_at = max(levels)[1] + BEIJING
            assert 11 <= peak_at.hour < 16, (seed, day, peak_at)


def test_mean_stay_matches_mean_stay_h() -> None:
    for stay_h, hours in ((3.0, (time(6), time(21, 30))), (1.5, (time(9), time(17)))):
        park = small_park(mean_stay_h=stay_h, opens_at=hours[0], closes_at=hours[1])
        for day in (date(2024, 6, 4), date(2024, 12, 10)):
            # The area under occupancy is the sum of the visitors' stays.
            visitor_minutes = sum(park.occupancy_at(ts) for ts in minutes(day))
            mean_h = visitor_minutes / 60 / park.day_visitors(day)
            assert mean_h == pytest.approx(stay_h, rel=0.10)


def test_expected_arrivals_add_up_to_the_days_visitors() -> None:
    park = small_park()
    day = date(2024, 6, 4)
    expected = sum(park.expected_arrivals_per_h(ts) / 60 for ts in minutes(day))
    assert park.day_visitors(day) == pytest.approx(expected, rel=0.05)


# ---------------------------------------------------------------- calendar and calibration


def test_weekend_days_bring_more_visitors_than_weekdays() -> None:
    park = small_park(seed=3, seasonality=0.0)
    days = [date(2024, 6, 3) + timedelta(days=k) for k in range(56)]
    weekend = [park.day_visitors(d) for d in days if d.weekday() >= 5 and is_ordinary(d)]
    weekday = [park.day_visitors(d) for d in days if d.weekday() < 5 and is_ordinary(d)]
    ratio = statistics.fmean(weekend) / statistics.fmean(weekday)
    assert 1.05 < ratio < 1.25  # Jiuzhaigou: 1.14


def test_golden_week_against_september_weekdays() -> None:
    ratios, peaks = [], []
    for seed in range(4):
        park = small_park(seed=seed, daily_visitors_mean=1500)
        september = [
            park.day_visitors(date(2024, 9, k))
            for k in range(1, 31)
            if date(2024, 9, k).weekday() < 5 and is_ordinary(date(2024, 9, k))
        ]
        golden = [park.day_visitors(date(2024, 10, k)) for k in range(1, 8)]
        base = statistics.median(september)
        ratios.append(statistics.fmean(golden) / base)
        peaks.append(max(golden) / base)
    # Jiuzhaigou 2014-2016: the week 1.45-1.56, the peak day 2.14-2.39 September weekdays.
    assert 1.35 < statistics.fmean(ratios) < 1.85
    assert statistics.fmean(peaks) > 2.0
    assert min(peaks) > 1.8


def test_seasonality_sets_the_yearly_amplitude() -> None:
    def august_over_january(seasonality: float) -> float:
        park = small_park(seed=1, seasonality=seasonality, daily_visitors_mean=800)
        aug = [park.day_visitors(date(2023, 8, k)) for k in range(5, 26)]
        jan = [park.day_visitors(date(2023, 1, k)) for k in range(5, 20)]
        return statistics.median(aug) / statistics.median(jan)

    assert 0.85 < august_over_january(0.0) < 1.15
    assert 1.6 < august_over_january(0.25) < 2.6  # 2.0 by design
    assert 12 < august_over_january(1.0) < 26  # Jiuzhaigou: 18


def test_the_holiday_calendar() -> None:
    assert holiday_on(date(2024, 10, 1)) == (Holiday.NATIONAL_DAY, 0, 7)
    assert holiday_on(date(2025, 10, 8)) == (Holiday.NATIONAL_DAY, 7, 8)
    assert holiday_on(date(2023, 9, 29)) == (Holiday.NATIONAL_DAY, 0, 8)
    assert holiday_on(date(2026, 2, 15)) == (Holiday.SPRING_FESTIVAL, 0, 9)
    assert holiday_on(date(2019, 2, 4)) == (Holiday.SPRING_FESTIVAL, 0, 7)  # lunar table
    assert holiday_on(date(2030, 5, 5)) == (Holiday.LABOUR_DAY, 4, 5)
    assert holiday_on(date(2024, 6, 10)) == (Holiday.DRAGON_BOAT, 2, 3)
    assert holiday_on(date(2024, 10, 8)) is None
    park, plain = small_park(), small_park(holidays=False)
    assert park.day_visitors(date(2024, 10, 3)) > 1.5 * plain.day_visitors(date(2024, 10, 3))


def test_a_surge_pushes_occupancy_past_capacity_where_the_plain_day_stays_below_80pct() -> None:
    day = date(2024, 6, 4)
    plain = ParkModel(gates=GATES, mean_stay_h=3.1)
    surge = Effect(local(day, 9), local(day, 14), 6.0, ramp_s=1800)
    crowded = ParkModel(gates=GATES, mean_stay_h=3.1, surges=(surge,))
    capacity = plain.instantaneous_capacity
    plain_peak = max(plain.occupancy_at(ts) for ts in minutes(day, 5))
    crowded_peak = max(crowded.occupancy_at(ts) for ts in minutes(day, 5))
    assert plain_peak < 0.8 * capacity
    assert crowded_peak > capacity
    assert crowded.day_visitors(day) > 2 * plain.day_visitors(day)
    # Outside the surge's span the arrival rate is the plain day's.
    assert crowded.expected_arrivals_per_h(local(day, 16)) == pytest.approx(
        plain.expected_arrivals_per_h(local(day, 16))
    )


def test_the_daily_quota_stops_ticket_sales() -> None:
    park = small_park(daily_visitors_mean=20_000, daily_quota=12_000)
    day = date(2024, 10, 3)
    assert park.day_visitors(day) == 12_000
    entries = [
        sum(park.counts(g, local(day, h), local(day, h + 1))[0] for g in GATES)
        for h in range(6, 21)
    ]
    sold_out = entries.index(0)
    assert sold_out > 0
    assert all(count == 0 for count in entries[sold_out:])


def test_the_changfeng_snapshot_order() -> None:
    # Changfeng Park (MAX_NUM 20 000, 06:00-21:30) had 164 visitors at 07:48 on Tuesday
    # 25 November 2025; Shanghai's open parks then were at 0.1-5.3 % of capacity.
    day = date(2025, 11, 25)
    for seed in range(3):
        park = ParkModel(seed=seed, gates=GATES, mean_stay_h=3.1)
        at_eight = park.occupancy_at(local(day, 8))
        assert 50 < at_eight < 0.053 * park.instantaneous_capacity


# ---------------------------------------------------------------- determinism and seeds


def test_the_same_seed_gives_byte_identical_counts_in_any_order() -> None:
    day = date(2024, 5, 2)
    times = list(minutes(day, 7))

    def record(park: ParkModel, order: Callable[[list[datetime]], list[datetime]]) -> str:
        rows = {
            ts.isoformat(): [
                park.occupancy_at(ts),
                *park.counts("gate-pier", ts, ts + timedelta(minutes=7)),
            ]
            for ts in order(times)
        }
        return json.dumps(dict(sorted(rows.items())))

    forward = record(small_park(seed=11), lambda xs: xs)
    backward = record(small_park(seed=11), lambda xs: xs[::-1])
    assert forward == backward
    assert forward != record(small_park(seed=12), lambda xs: xs)


def test_areas_have_their_own_noise_but_one_calendar() -> None:
    def park(area: str, seasonality: float = 0.25) -> ParkModel:
        options = GateCounterOptions(
            area=area,
            daily_visitors_mean=1500,
            gates=list(GATES),
            gate=GATES[0],
            seasonality=seasonality,
        )
        return options.park_model()

    first, second = park("lakeside", seasonality=0.0), park("canal", seasonality=0.0)
    days = [d for d in (date(2024, 3, 1) + timedelta(days=k) for k in range(150)) if is_ordinary(d)]

    def residuals(model: ParkModel) -> list[float]:
        logs = [math.log(model.day_visitors(d)) for d in days]
        by_weekday = {
            w: statistics.fmean(v for d, v in zip(days, logs, strict=True) if d.weekday() == w)
            for w in range(7)
        }
        return [v - by_weekday[d.weekday()] for d, v in zip(days, logs, strict=True)]

    a, b = residuals(first), residuals(second)
    assert statistics.stdev(a) > 0.05
    assert abs(statistics.correlation(a, b)) < 0.25
    # One calendar: both are crowded on the same holiday.
    for model in (park("lakeside"), park("canal")):
        assert model.day_visitors(date(2024, 10, 3)) > 1.4 * model.day_visitors(date(2024, 9, 24))


# ---------------------------------------------------------------- drivers


def stepping(start: datetime, step: timedelta) -> Callable[[], datetime]:
    """A clock that moves on by ``step`` at every call after the first."""
    state = {"now": start - step}

    def clock() -> datetime:
        state["now"] += step
        return state["now"]

    return clock


def test_gate_drivers_of_one_area_reproduce_the_models_totals() -> None:
    day = date(2024, 10, 2)
    start, end = local(day, 5), local(day, 23)
    step = timedelta(minutes=3)
    totals = {}
    models = []
    for index, gate in enumerate(GATES):
        options = GateCounterOptions(
            seed=index, area="lakeside-park", gate=gate, gates=list(GATES), daily_visitors_mean=8000
        )
        driver = GateCounterDriver(options, clock=stepping(start, step))
        driver.open()
        entries = exits = 0
        for _ in range(int((end - start) / step)):
            reading = check_sample(Kind.CROWD, driver.read())
            entries += int(reading["entries"])
            exits += int(reading["exits"])
        driver.close()
        totals[gate] = (entries, exits)
        models.append(driver.model)
        assert driver.model.counts(gate, start, end) == (entries, exits)
    assert models[0] == models[1] == models[2]
    assert sum(e for e, _ in totals.values()) == models[0].day_visitors(day)
    assert sum(x for _, x in totals.values()) == models[0].day_visitors(day)


def test_readings_stay_within_the_catalogue_even_in_a_huge_surge() -> None:
    day = date(2024, 6, 4)
    morning = Effect(local(day, 10), local(day, 10, 40), 200.0)
    evening = Effect(local(day, 20), local(day, 20, 30), 200.0)  # up to the last entry
    park = ParkModel(gates=("only",), surges=(morning, evening), mean_stay_h=1.0)
    specs = CATALOGUE[Kind.CROWD]
    # Arrivals are capped at the counter's 20/s, and the gate lets one through per 1/20 s.
    assert park.expected_arrivals_per_h(local(day, 10, 20)) <= 20 * 3600 + 1e-6
    worst = {"entries": 0, "exits": 0}
    for first, seconds in ((local(day, 10, 10), 900), (local(day, 20, 45), 2700)):
        for quarter in range(4 * seconds):
            t0 = first + timedelta(milliseconds=250 * quarter)
            values = park.values("only", t0, t0 + timedelta(seconds=1))
            for name, value in values.items():
                assert specs[name].range_problem(value, 1.0) is None, (t0, values)
                assert value == int(value) >= 0
                worst[name] = max(worst[name], int(value))
    assert min(worst.values()) >= 19  # the caps are reached, not avoided
    hours = [local(day, 0) + timedelta(hours=h) for h in range(25)]
    for t0, t1 in itertools.pairwise(hours):
        for name, value in park.values("only", t0, t1).items():
            assert specs[name].range_problem(value, 3600.0) is None
    # Those queued past the last entry are turned away; everyone is out at closing.
    assert park.counts("only", local(day, 20, 30), local(day, 23))[0] == 0
    assert park.occupancy_at(local(day, 21, 30)) == 0


def test_a_read_counts_since_the_previous_one_and_tolerates_a_clock_going_back() -> None:
    day = date(2024, 6, 4)
    times = iter([local(day, 10), local(day, 11), local(day, 10, 30), local(day, 12)])
    driver = GateCounterDriver(GateCounterOptions(), clock=lambda: next(times))
    with pytest.raises(DriverError, match="before open"):
        driver.read()
    driver.open()
    first = driver.read()
    assert first == driver.model.values("gate-1", local(day, 10), local(day, 11))
    assert driver.read() == {"entries": 0, "exits": 0}  # the clock went back
    assert driver.read() == driver.model.values("gate-1", local(day, 11), local(day, 12))
    assert driver.sensor_kind() is Kind.CROWD


def test_a_day_builds_fast() -> None:
    park = ParkModel(daily_visitors_mean=100_000, gates=GATES)
    began = timer.perf_counter()
    visitors = park.day_visitors(date(2024, 6, 4))
    elapsed = timer.perf_counter() - began
    assert visitors > 80_000
    assert elapsed < 1.0
    began = timer.perf_counter()
    for second in range(3600):
        park.counts(
            "gate-pier",
            local(date(2024, 6, 4), 12) + timedelta(seconds=second),
            local(date(2024, 6, 4), 12) + timedelta(seconds=second + 1),
        )
    assert (timer.perf_counter() - began) / 3600 < 1e-3


# ---------------------------------------------------------------- errors


def test_naive_times_are_errors() -> None:
    park = small_park()
    naive = datetime(2024, 6, 4, 12)  # noqa: DTZ001 - the point of the test
    aware = local(date(2024, 6, 4), 12)
    with pytest.raises(ValueError, match="naive"):
        park.occupancy_at(naive)
    with pytest.raises(ValueError, match=r"t0 .* naive"):
        park.counts("gate-pier", naive, aware)
    with pytest.raises(ValueError, match="naive"):
        park.expected_arrivals_per_h(naive)
    with pytest.raises(ValueError, match="before t0"):
        park.counts("gate-pier", aware, aware - timedelta(seconds=1))
    with pytest.raises(ValueError, match="'gate-x' is not one of"):
        park.counts("gate-x", aware, aware)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"gate": "east", "gates": ["west"]}, "gate"),
        ({"gates": ["a", "a"], "gate": "a"}, "gates"),
        ({"instantaneous_capacity": 5000, "daily_capacity": 4000}, "daily_capacity"),
        ({"opens_at": "09:00", "closes_at": "10:30"}, "closes_at"),
        ({"mean_stay_h": 0}, "mean_stay_h"),
        ({"seasonality": 1.5}, "seasonality"),
        ({"area": ""}, "area"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_options_errors_name_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        GateCounterOptions(**overrides)  # type: ignore[arg-type]
    assert field in {str(part) for error in caught.value.errors() for part in error["loc"]}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"seasonality": -0.1}, "seasonality"),
        ({"gate_shares": (1.0,)}, "gate_shares"),
        ({"instantaneous_capacity": 10, "daily_capacity": 5}, "daily_capacity"),
        ({"closes_at": time(7, 0)}, "closes_at"),
        ({"daily_quota": 0}, "daily_quota"),
        ({"tz_offset_h": 15.0}, "tz_offset_h"),
    ],
)
def test_model_errors_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        small_park(**overrides)


def test_a_negative_surge_is_an_error() -> None:
    day = date(2024, 6, 4)
    with pytest.raises(ValueError, match="surges"):
        small_park(surges=(Effect(local(day, 9), local(day, 10), -1.0),))

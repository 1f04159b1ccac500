"""The simulated electricity meter: load shapes, annual intensity, the register, the driver.

The statistical tests simulate one year (2023, Beijing time) of fixed seeds at hourly steps
and check the load shapes and the annual intensities that the module docstring of
:mod:`simulators.energy` states; the register tests check that it is the exact integral of
the model's own power curve, with its resets and rollovers.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import pytest
from pydantic import ValidationError

from edge_agents.errors import DriverError
from simulators.air_quality import seed_of
from simulators.base import Effect
from simulators.energy import (
    KNOT_INTERVAL,
    BuildingType,
    EnergyMeterDriver,
    EnergyMeterOptions,
    MeterModel,
)
from telemetry import CATALOGUE, Kind

BEIJING = timedelta(hours=8)
START = datetime(2023, 1, 1, tzinfo=UTC) - BEIJING
"""2023-01-01 00:00 in Beijing."""
HOURS = 365 * 24
COMMISSIONED = datetime(2022, 12, 1, tzinfo=UTC)
"""Close to the year simulated, so that the register's prefix is cheap to build."""

BANDS = {
    BuildingType.OFFICE: (80.0, 120.0),
    BuildingType.MALL: (150.0, 250.0),
    BuildingType.RESIDENTIAL: (20.0, 40.0),
    BuildingType.OTHER: (50.0, 90.0),
}
"""The assumed annual intensity of each type, kWh/m2/yr (the module docstring's table)."""

Row = tuple[datetime, float]
"""Local (Beijing) time, naive, and the true power at it."""


def model_of(building_type: BuildingType, **kwargs: object) -> MeterModel:
    return MeterModel(
        building_type=building_type,
        commissioned=COMMISSIONED,
        register_max_kwh=1e12,
        **kwargs,  # type: ignore[arg-type]
    )


def hourly_power(model: MeterModel) -> list[Row]:
    rows = []
    for hour in range(HOURS):
        ts = START + timedelta(hours=hour)
        rows.append(((ts + BEIJING).replace(tzinfo=None), model.power_w(ts)))
    return rows


def mean_where(rows: list[Row], keep: Callable[[datetime], bool]) -> float:
    return statistics.fmean(power for at, power in rows if keep(at))


def weekday(at: datetime) -> bool:
    return at.weekday() < 5


@pytest.fixture(scope="module")
def office_year() -> list[Row]:
    return hourly_power(model_of(BuildingType.OFFICE))


@pytest.fixture(scope="module")
def mall_year() -> list[Row]:
    return hourly_power(model_of(BuildingType.MALL))


@pytest.fixture(scope="module")
def residential_year() -> list[Row]:
    return hourly_power(model_of(BuildingType.RESIDENTIAL))


# ---------------------------------------------------------------- load shapes


def test_office_works_on_weekday_daytimes(office_year: list[Row]) -> None:
    day = mean_where(office_year, lambda at: weekday(at) and 10 <= at.hour < 16)
    night = mean_where(office_year, lambda at: weekday(at) and 1 <= at.hour < 5)
    weekend_day = mean_where(office_year, lambda at: not weekday(at) and 10 <= at.hour < 16)
    assert day > 2.5 * night
    assert weekend_day < 0.6 * day
    assert weekend_day > night  # a few people in on weekend days


def test_office_hvac_starts_before_the_working_day(office_year: list[Row]) -> None:
    # The pre-start: at 07:00 (before people arrive at 08:00) the conditioning is on, so in
    # summer 07:00 already draws well above the night, while in spring it barely does.
    def at_hour(hour: int, months: tuple[int, ...]) -> float:
        return mean_where(
            office_year, lambda at: weekday(at) and at.month in months and at.hour == hour
        )

    summer = at_hour(7, (7, 8)) / at_hour(4, (7, 8))
    spring = at_hour(7, (4,)) / at_hour(4, (4,))
    assert summer > spring + 0.5


def test_mall_is_busy_when_open_and_more_at_weekends(mall_year: list[Row]) -> None:
    open_ = mean_where(mall_year, lambda at: 10 <= at.hour < 22)
    closed = mean_where(mall_year, lambda at: at.hour < 7 or at.hour >= 23)
    assert open_ > 3.0 * closed
    weekend = mean_where(mall_year, lambda at: not weekday(at) and 10 <= at.hour < 22)
    weekdays = mean_where(mall_year, lambda at: weekday(at) and 10 <= at.hour < 22)
    assert 1.03 < weekend / weekdays < 1.2


def test_residential_peaks_in_the_evening(residential_year: list[Row]) -> None:
    profile = [
        statistics.fmean(power for at, power in residential_year if at.hour == hour)
        for hour in range(24)
    ]
    peak = profile.index(max(profile))
    assert 18 <= peak < 22
    assert profile[7] > 1.5 * profile[4]  # the morning peak over the night base
    weekend = mean_where(residential_year, lambda at: not weekday(at) and 10 <= at.hour < 16)
    weekdays = mean_where(residential_year, lambda at: weekday(at) and 10 <= at.hour < 16)
    assert weekend > 1.2 * weekdays


def test_cooling_raises_summer_office_afternoons(office_year: list[Row]) -> None:
    def afternoons(month: int) -> float:
        return mean_where(
            office_year, lambda at: weekday(at) and at.month == month and 14 <= at.hour < 17
        )

    assert afternoons(7) > 1.3 * afternoons(4)
    assert afternoons(1) > afternoons(4)  # the electric part of the heating


def test_days_are_not_identical(office_year: list[Row]) -> None:
    # At 03:00 no heating or cooling runs: the same hour varies from day to day by a few
    # per cent (the day and hour factors), not by 0 or by tens of per cent.
    nights = [power for at, power in office_year if weekday(at) and at.hour == 3]
    assert len(set(nights)) == len(nights)
    spread = statistics.pstdev(nights) / statistics.fmean(nights)
    assert 0.025 < spread < 0.06  # day 3 % and hour 2 %: 3.6 %


def test_outdoor_temperature_follows_beijing() -> None:
    # Dongsi 2013-2017: January -1.78, July 27.44 degC; the mean daily profile's range 8.5.
    model = MeterModel(weather_seed=0)
    january = [model.outdoor_temperature_c(START + timedelta(hours=h)) for h in range(31 * 24)]
    july_start = datetime(2023, 7, 1, tzinfo=UTC) - BEIJING
    july = [model.outdoor_temperature_c(july_start + timedelta(hours=h)) for h in range(31 * 24)]
    assert statistics.fmean(january) == pytest.approx(-1.78, abs=2.0)
    assert statistics.fmean(july) == pytest.approx(27.44, abs=2.0)
    profile = [statistics.fmean(july[h::24]) for h in range(24)]
    assert 13 <= profile.index(max(profile)) <= 16
    assert 3 <= profile.index(min(profile)) <= 6
    assert 5.0 < max(profile) - min(profile) < 11.0


def test_load_follows_the_outdoor_temperature() -> None:
    # A mall's open afternoons and evenings have a flat profile and full cooling, so in
    # July its power rises and falls with the model's own outdoor temperature.
    model = model_of(BuildingType.MALL, seed=1)
    july = datetime(2023, 7, 1, tzinfo=UTC) - BEIJING
    knots = [
        july + timedelta(days=day, hours=hour) + quarter * KNOT_INTERVAL
        for day in range(31)
        for hour in range(12, 21)
        for quarter in range(4)
    ]
    weekday_knots = [t for t in knots if (t + BEIJING).weekday() < 5]
    temperatures = [model.outdoor_temperature_c(t) for t in weekday_knots]
    powers = [model.power_w(t) for t in weekday_knots]
    assert statistics.correlation(temperatures, powers) > 0.8
    slope = statistics.linear_regression(temperatures, powers).slope / model.floor_area_m2
    assert 1.5 < slope < 4.5  # W/m2/K: the mall's 3 above 22 degC, 0 below, flat above 34


def test_meters_of_a_city_share_the_weather() -> None:
    times = [START + timedelta(hours=7 * h) for h in range(300)]
    a = MeterModel(seed=1, weather_seed=5, building_type=BuildingType.MALL)
    b = MeterModel(seed=2, weather_seed=5, building_type=BuildingType.OFFICE)
    c = MeterModel(seed=1, weather_seed=6, building_type=BuildingType.MALL)
    assert [a.outdoor_temperature_c(t) for t in times] == [
        b.outdoor_temperature_c(t) for t in times
    ]
    differences = [abs(a.outdoor_temperature_c(t) - c.outdoor_temperature_c(t)) for t in times]
    assert statistics.fmean(differences) > 1.0


# ---------------------------------------------------------------- annual intensity


@pytest.mark.parametrize("building_type", list(BuildingType))
def test_annual_intensity_is_within_the_assumed_band(building_type: BuildingType) -> None:
    model = model_of(building_type, floor_area_m2=20_000.0, seed=3, weather_seed=seed_of("x"))
    readings = [model.energy_kwh(START + timedelta(hours=h)) for h in range(HOURS + 1)]
    hourly = [later - earlier for earlier, later in pairwise(readings)]
    assert min(hourly) >= 0
    intensity = math.fsum(hourly) / model.floor_area_m2
    low, high = BANDS[building_type]
    assert low < intensity < high
    # ... and near the middle, where the module docstring says it was tuned.
    assert abs(intensity - (low + high) / 2) < 0.15 * (high - low)


# ---------------------------------------------------------------- the register


def test_register_is_the_exact_integral_of_the_knots() -> None:
    model = model_of(BuildingType.OFFICE, seed=7)
    start = datetime(2023, 3, 14, 2, 45, tzinfo=UTC)  # on a knot
    knots = [start + k * KNOT_INTERVAL for k in range(4 * 24 * 2 + 1)]  # two days
    powers = [model.power_w(t) for t in knots]
    hours = KNOT_INTERVAL / timedelta(hours=1)
    trapezoid_kwh = math.fsum((low + high) / 2 * hours / 1000 for low, high in pairwise(powers))
    delta = model.energy_kwh(knots[-1]) - model.energy_kwh(knots[0])
    assert delta == pytest.approx(trapezoid_kwh, abs=0.0101)
    # Between knots the curve is linear, so a partial knot interval is a trapezoid too.
    a = start + timedelta(minutes=3, seconds=20)
    b = start + timedelta(minutes=11, seconds=40)
    partial_kwh = (model.power_w(a) + model.power_w(b)) / 2 * (b - a).total_seconds() / 3.6e6
    assert model.power_w(start + KNOT_INTERVAL / 2) == pytest.approx(
        (powers[0] + powers[1]) / 2, rel=1e-12
    )
    assert model.energy_kwh(b) - model.energy_kwh(a) == pytest.approx(partial_kwh, abs=0.0101)


def test_register_matches_power_sampled_every_minute() -> None:
    model = model_of(BuildingType.MALL, seed=2, floor_area_m2=30_000.0)
    start = datetime(2023, 7, 20, 1, 7, 13, tzinfo=UTC)  # not on a knot
    minutes = 36 * 60
    riemann_kwh = math.fsum(
        model.power_w(start + timedelta(minutes=m, seconds=30)) / 60 / 1000 for m in range(minutes)
    )
    delta = model.energy_kwh(start + timedelta(minutes=minutes)) - model.energy_kwh(start)
    assert delta == pytest.approx(riemann_kwh, rel=0.005)


def times_of_a_year(count: int, rng: random.Random) -> list[datetime]:
    return sorted(
        START + timedelta(seconds=rng.uniform(0, HOURS * 3600.0), microseconds=rng.randrange(10**6))
        for _ in range(count)
    )


def test_register_never_runs_backwards_without_resets() -> None:
    model = model_of(BuildingType.RESIDENTIAL, seed=4, initial_kwh=123_456.78)
    readings = [model.energy_kwh(t) for t in times_of_a_year(3000, random.Random(1))]
    assert all(later >= earlier for earlier, later in pairwise(readings))
    assert readings[0] > 123_456.78


def test_register_runs_backwards_only_at_resets_and_rollovers() -> None:
    # 10 000 m2 of office use about 2.7 MWh a day: a 20 000 kWh register wraps weekly.
    resets = (START + timedelta(days=40, hours=3), START + timedelta(days=200, minutes=7))
    common = {"seed": 5, "commissioned": COMMISSIONED, "initial_kwh": 19_000.0}
    model = MeterModel(register_max_kwh=20_000.0, resets=resets, **common)  # type: ignore[arg-type]
    unwrapped = MeterModel(register_max_kwh=1e12, resets=resets, **common)  # type: ignore[arg-type]
    modulus = 20_000.01
    times = sorted({*times_of_a_year(1500, random.Random(2)), *resets})
    backwards = 0
    for earlier, later in pairwise(times):
        reading = model.energy_kwh(later)
        # The register is the unwrapped one wrapped: a rollover, not a clamp.
        assert reading == pytest.approx(unwrapped.energy_kwh(later) % modulus, abs=0.011)
        if reading < model.energy_kwh(earlier):
            backwards += 1
            reset_between = any(earlier < at <= later for at in resets)
            wrapped = (
                unwrapped.energy_kwh(later) // modulus > unwrapped.energy_kwh(earlier) // modulus
            )
            assert reset_between or wrapped, (earlier, later)
    assert backwards > 30  # about 50 rollovers and 2 resets in the year


def test_rollover_wraps_past_the_register_maximum() -> None:
    ts = datetime(2023, 6, 7, 1, tzinfo=UTC)  # 09:00 Beijing, a Wednesday
    small = MeterModel(
        floor_area_m2=1_000.0, commissioned=ts, initial_kwh=95.0, register_max_kwh=100
    )
    big = MeterModel(floor_area_m2=1_000.0, commissioned=ts, initial_kwh=95.0, register_max_kwh=1e6)
    hour_later = ts + timedelta(hours=1)
    assert big.energy_kwh(hour_later) > 100.01  # 1 000 m2 of office use ~30 kWh an hour
    assert small.energy_kwh(hour_later) == pytest.approx(
        big.energy_kwh(hour_later) - 100.01, abs=0.011
    )
    assert small.energy_kwh(hour_later) < 95.0
    assert small.energy_kwh(ts) == 95.0


def test_reset_clears_the_register_then_it_grows_again() -> None:
    reset = datetime(2023, 5, 10, 3, 10, tzinfo=UTC)
    plain = model_of(BuildingType.OTHER, seed=9, initial_kwh=5_000.0)
    model = model_of(BuildingType.OTHER, seed=9, initial_kwh=5_000.0, resets=(reset,))
    before = reset - timedelta(seconds=1)
    assert model.energy_kwh(before) == plain.energy_kwh(before) > 5_000.0
    assert model.energy_kwh(reset) == 0.0
    later = reset + timedelta(hours=2)
    grown = plain.energy_kwh(later) - plain.energy_kwh(reset)
    assert model.energy_kwh(later) == pytest.approx(grown, abs=0.011)
    assert model.energy_kwh(later) > 100  # 10 000 m2 draws ~100 kW at 11:00 Beijing time


def test_an_extra_load_at_night_adds_its_power_and_its_integral() -> None:
    night = datetime(2023, 11, 8, 15, tzinfo=UTC)  # 23:00 Beijing
    leak = Effect(night, night + timedelta(hours=6), amount=50_000.0, ramp_s=600)
    plain = model_of(BuildingType.OFFICE, seed=1)
    leaky = model_of(BuildingType.OFFICE, seed=1, extra_loads=(leak,))
    for minutes in (30, 100, 200, 350):
        ts = night + timedelta(minutes=minutes)
        assert leaky.power_w(ts) - plain.power_w(ts) == pytest.approx(50_000.0, abs=1e-6)
    ramping = night + timedelta(seconds=150)
    assert leaky.power_w(ramping) - plain.power_w(ramping) == pytest.approx(12_500.0, abs=1e-6)
    before, after = night - timedelta(hours=1), night + timedelta(hours=8)
    assert leaky.power_w(before) == plain.power_w(before)
    added = (leaky.energy_kwh(after) - leaky.energy_kwh(before)) - (
        plain.energy_kwh(after) - plain.energy_kwh(before)
    )
    assert added == pytest.approx(50.0 * (6.0 - 600 / 3600), abs=0.021)
    # Mid-ramp: the register holds the exact integral of the ramp so far, amount t^2 / 2r.
    ramp_added = leaky.energy_kwh(ramping) - plain.energy_kwh(ramping)
    assert ramp_added == pytest.approx(50.0 * 150**2 / (2 * 600) / 3600, abs=0.011)
    # The night is now the office's busiest time of day, day and night alike raised.
    assert leaky.power_w(night + timedelta(hours=3)) > 2 * plain.power_w(night + timedelta(hours=3))


def test_first_query_years_after_commissioning_is_cheap_and_order_free() -> None:
    late = datetime(2025, 3, 1, 6, tzinfo=UTC)
    early = datetime(2021, 8, 1, 6, tzinfo=UTC)
    model = MeterModel(seed=11, register_max_kwh=1e12)
    began = time.perf_counter()
    late_first = model.energy_kwh(late)
    assert time.perf_counter() - began < 1.0
    began = time.perf_counter()
    model.energy_kwh(late + timedelta(hours=5))
    assert time.perf_counter() - began < 0.05
    other = MeterModel(seed=11, register_max_kwh=1e12)
    early_first = other.energy_kwh(early)
    assert (model.energy_kwh(early), late_first) == (early_first, other.energy_kwh(late))


# ---------------------------------------------------------------- readings


def day_of_values(model: MeterModel, step_s: int = 300) -> Iterator[dict[str, float]]:
    day = datetime(2023, 8, 9, tzinfo=UTC)
    return (model.values_at(day + timedelta(seconds=s)) for s in range(0, 86_400, step_s))


def test_same_seed_gives_byte_identical_values_and_seeds_differ() -> None:
    first = json.dumps(list(day_of_values(model_of(BuildingType.MALL, seed=3))))
    again = json.dumps(list(day_of_values(model_of(BuildingType.MALL, seed=3))))
    assert first == again
    other = list(day_of_values(model_of(BuildingType.MALL, seed=4)))
    assert other != json.loads(first)
    powers = [v["power_w"] for v in json.loads(first)]
    assert sum(a != b["power_w"] for a, b in zip(powers, other, strict=True)) > 0.9 * len(powers)
    # Asked in reverse order, a fresh model gives the same values.
    backwards = model_of(BuildingType.MALL, seed=3)
    day = datetime(2023, 8, 9, tzinfo=UTC)
    times = [day + timedelta(seconds=s) for s in range(0, 86_400, 300)]
    reversed_values = [backwards.values_at(t) for t in reversed(times)][::-1]
    assert json.dumps(reversed_values) == first


@pytest.mark.parametrize("building_type", list(BuildingType))
def test_values_stay_within_the_catalogue(building_type: BuildingType) -> None:
    model = model_of(building_type, seed=6, floor_area_m2=40_000.0, initial_kwh=1.0)
    specs = CATALOGUE[Kind.ENERGY]
    low_pf, high_pf = {
        BuildingType.OFFICE: (0.90, 0.95),
        BuildingType.MALL: (0.92, 0.97),
        BuildingType.RESIDENTIAL: (0.95, 0.98),
        BuildingType.OTHER: (0.90, 0.96),
    }[building_type]
    for hour in range(0, HOURS, 5):
        values = model.values_at(START + timedelta(hours=hour, minutes=17))
        assert set(values) == set(specs)
        for name, value in values.items():
            assert specs[name].range_problem(value, interval_s=None) is None, (name, value)
        assert low_pf - 0.015 <= values["power_factor"] <= high_pf + 0.015
        assert 0.965 * 230 <= values["voltage_v"] <= 1.035 * 230
        assert values["power_w"] > 0


def test_voltage_current_and_power_factor_agree_with_power() -> None:
    model = model_of(BuildingType.OFFICE, seed=8, floor_area_m2=48_000.0)
    samples = [model.values_at(START + timedelta(hours=h, minutes=23)) for h in range(0, HOURS, 3)]
    for values in samples:
        apparent = 3 * values["voltage_v"] * values["current_a"] * values["power_factor"]
        assert apparent == pytest.approx(values["power_w"], rel=0.025)
    # Voltage sags under load and the power factor rises with it.
    ordered = sorted(samples, key=lambda v: v["power_w"])
    tenth = len(ordered) // 10
    light, heavy = ordered[:tenth], ordered[-tenth:]
    sag = statistics.fmean(v["voltage_v"] for v in light) - statistics.fmean(
        v["voltage_v"] for v in heavy
    )
    assert sag > 0.005 * 230
    assert statistics.fmean(v["power_factor"] for v in heavy) > statistics.fmean(
        v["power_factor"] for v in light
    )
    voltages = [v["voltage_v"] for v in samples]
    assert 0.5 < statistics.pstdev(voltages) < 4.0  # it varies, by about 1 %


# ---------------------------------------------------------------- driver and validation


def test_driver_reads_the_model_at_a_stepping_clock() -> None:
    times = iter([START + timedelta(minutes=10 * i) for i in range(50)])
    options = EnergyMeterOptions(
        seed=2, building_type=BuildingType.RESIDENTIAL, floor_area_m2=36_500, city="lakeside"
    )
    driver = EnergyMeterDriver(options, clock=lambda: next(times))
    assert driver.sensor_kind() is Kind.ENERGY
    assert EnergyMeterDriver.Options is EnergyMeterOptions
    assert driver.model.weather_seed == seed_of("lakeside")
    driver.open()
    assert driver.opened_at == START
    readings = [driver.read() for _ in range(6)]
    driver.close()
    expected = options.meter_model()
    for i, values in enumerate(readings, start=1):
        assert values == expected.values_at(START + timedelta(minutes=10 * i))
    registers = [values["energy_kwh"] for values in readings]
    assert registers == sorted(registers)
    assert registers[-1] > registers[0]


def test_driver_reports_bad_times_as_driver_errors() -> None:
    naive = EnergyMeterDriver(
        EnergyMeterOptions(),
        clock=lambda: datetime(2024, 1, 1),  # noqa: DTZ001 - naive on purpose
    )
    with pytest.raises(DriverError, match="naive"):
        naive.read()
    early = EnergyMeterDriver(EnergyMeterOptions(), clock=lambda: datetime(2019, 6, 1, tzinfo=UTC))
    with pytest.raises(DriverError, match="commissioned") as caught:
        early.read()
    assert not caught.value.retryable


def test_naive_times_are_refused() -> None:
    model = MeterModel()
    naive = datetime(2024, 1, 1, 12)  # noqa: DTZ001 - naive on purpose
    for method in (model.power_w, model.energy_kwh, model.values_at, model.outdoor_temperature_c):
        with pytest.raises(ValueError, match="naive"):
            method(naive)
    with pytest.raises(ValueError, match="commissioned"):
        MeterModel(commissioned=naive)


def test_the_register_cannot_be_read_before_commissioning() -> None:
    model = MeterModel(commissioned=datetime(2023, 1, 1, tzinfo=UTC))
    asked = datetime(2022, 12, 31, 23, tzinfo=UTC)
    with pytest.raises(ValueError, match="commissioned") as caught:
        model.energy_kwh(asked)
    assert "2022-12-31T23:00:00+00:00" in str(caught.value)
    assert "2023-01-01T00:00:00+00:00" in str(caught.value)
    # Other time zones are the same instants.
    east = timezone(timedelta(hours=8))
    assert model.energy_kwh(datetime(2023, 1, 1, 8, tzinfo=east)) == 0.0


T0 = datetime(2023, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"floor_area_m2": 0.0}, "floor_area_m2"),
        ({"floor_area_m2": math.nan}, "floor_area_m2"),
        ({"floor_area_m2": 2_000_000.0}, "floor_area_m2"),
        ({"building_type": "factory"}, "building_type"),
        ({"tz_offset_h": 8.1}, "tz_offset_h"),
        ({"tz_offset_h": 15.0}, "tz_offset_h"),
        ({"phases": 2}, "phases"),
        ({"nominal_voltage_v": 10.0}, "nominal_voltage_v"),
        ({"register_max_kwh": 0.0}, "register_max_kwh"),
        ({"initial_kwh": -1.0}, "initial_kwh"),
        ({"initial_kwh": 500.0, "register_max_kwh": 100.0}, "initial_kwh"),
        ({"commissioned": T0, "resets": (T0 - timedelta(days=1),)}, "resets"),
        ({"resets": (datetime(2024, 1, 1),)}, "resets"),  # noqa: DTZ001
        ({"extra_loads": (Effect(T0, T0 + timedelta(hours=1), -5.0),)}, "extra_loads"),
    ],
)
def test_model_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        MeterModel(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"floor_area_m2": 0}, "floor_area_m2"),
        ({"floor_area_m2": 900_000}, "floor_area_m2"),
        ({"building_type": "factory"}, "building_type"),
        ({"commissioned": datetime(2020, 1, 1)}, "commissioned"),  # noqa: DTZ001
        ({"initial_kwh": -1}, "initial_kwh"),
        ({"initial_kwh": 2_000_000}, "initial_kwh"),
        ({"register_max_kwh": 0}, "register_max_kwh"),
        ({"tz_offset_h": 20}, "tz_offset_h"),
        ({"tz_offset_h": 5.2}, "tz_offset_h"),
        ({"city": ""}, "city"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_options_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        EnergyMeterOptions(**kwargs)  # type: ignore[arg-type]


def test_options_build_the_model_they_describe() -> None:
    options = EnergyMeterOptions(
        seed=4,
        building_type=BuildingType.MALL,
        floor_area_m2=86_000,
        city="hangzhou",
        tz_offset_h=8,
        commissioned=datetime(2023, 1, 1, tzinfo=UTC),
        initial_kwh=12.5,
        register_max_kwh=99_999.99,
    )
    model = options.meter_model()
    assert model == MeterModel(
        seed=4,
        building_type=BuildingType.MALL,
        floor_area_m2=86_000.0,
        weather_seed=seed_of("hangzhou"),
        commissioned=datetime(2023, 1, 1, tzinfo=UTC),
        initial_kwh=12.5,
        register_max_kwh=99_999.99,
    )
    assert model.energy_kwh(datetime(2023, 1, 1, tzinfo=UTC)) == 12.5

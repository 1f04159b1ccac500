"""The simulated air-quality station: its calibration, determinism, correlation and drivers.

The statistical tests simulate one year (2023, Beijing time) of fixed seeds, hourly for one
urban station and more sparsely for the others, and compare it with the figures computed
from the PRSA data that the module docstring of :mod:`simulators.air_quality` states.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from edge_agents.errors import DriverError
from simulators.air_quality import (
    AirQualityOptions,
    AirQualityStationDriver,
    AmbientOptions,
    AmbientStationDriver,
    Profile,
    StationModel,
    seed_of,
)
from telemetry import CATALOGUE, Kind

BEIJING = timedelta(hours=8)
START = datetime(2023, 1, 1, tzinfo=UTC) - BEIJING
"""2023-01-01 00:00 in Beijing."""
HOURS = 365 * 24

WINTER, SUMMER = (12, 1, 2), (6, 7, 8)

# Real hourly PM2.5 at Dongsi, 2013-03 to 2017-02 (the module docstring's table).
REAL_WINTER_MEDIAN, REAL_WINTER_P90 = 60.0, 261.0
REAL_SUMMER_MEDIAN, REAL_SUMMER_P90 = 57.5, 147.0
REAL_ACF_1H, REAL_ACF_24H = 0.970, 0.404
# Huairou, the suburban profile.
REAL_SUBURBAN_WINTER_MEDIAN = 46.0

Row = tuple[datetime, dict[str, float]]
"""Local (Beijing) time and the values at it."""


def simulate(
    sample: Callable[[datetime], dict[str, float]], hours: Sequence[int] = range(HOURS)
) -> list[Row]:
    rows = []
    for hour in hours:
        ts = START + timedelta(hours=hour)
        rows.append(((ts + BEIJING).replace(tzinfo=None), sample(ts)))
    return rows


def every_third_day() -> Iterator[int]:
    """Every hour of every third day: all hours of the day and the year, a third of the cost."""
    return (hour for hour in range(HOURS) if hour // 24 % 3 == 0)


def column(
    rows: Sequence[Row], name: str, months: Sequence[int] = tuple(range(1, 13))
) -> list[float]:
    return [values[name] for at, values in rows if at.month in months]


def quantile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    position = p * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def daily_profile(rows: Sequence[Row], name: str) -> list[float]:
    return [
        statistics.fmean(values[name] for at, values in rows if at.hour == hour)
        for hour in range(24)
    ]


def daily_means(rows: Sequence[Row], name: str) -> list[float]:
    days: dict[tuple[int, int], list[float]] = {}
    for at, values in rows:
        days.setdefault((at.month, at.day), []).append(values[name])
    return [statistics.fmean(day) for day in days.values()]


def autocorrelation(values: Sequence[float], lag: int) -> float:
    return statistics.correlation(values[:-lag], values[lag:])


def within(value: float, target: float, tolerance: float) -> bool:
    return abs(value - target) <= tolerance * target


def urban_model(
    seed: int = 1, district: str = "dongcheng", region: str = "beijing"
) -> StationModel:
    return StationModel(seed=seed, district_seed=seed_of(district), region_seed=seed_of(region))


@pytest.fixture(scope="module")
def urban_year() -> list[Row]:
    """One urban station, hourly, for a year."""
    return simulate(urban_model().values_at)


# ---------------------------------------------------------------- daily, weekly, yearly


def test_no2_peaks_with_the_evening_and_the_morning_traffic(urban_year: list[Row]) -> None:
    profile = daily_profile(urban_year, "no2")
    evening = max(range(24), key=profile.__getitem__)
    morning = max(range(5, 12), key=profile.__getitem__)
    assert 19 <= evening <= 23  # the data: 22:00
    assert 7 <= morning <= 9  # the data: 08:00, a secondary peak
    assert profile[morning] > profile[5]
    assert profile[morning] > profile[11]
    assert min(range(24), key=profile.__getitem__) in range(12, 17)  # the data: 15:00


def test_co_follows_the_traffic_too(urban_year: list[Row]) -> None:
    profile = daily_profile(urban_year, "co")
    assert min(range(24), key=profile.__getitem__) in range(13, 18)  # the data: 16:00
    assert max(profile) / min(profile) > 1.2


def test_o3_peaks_in_the_afternoon_against_no2(urban_year: list[Row]) -> None:
    o3 = daily_profile(urban_year, "o3")
    no2 = daily_profile(urban_year, "no2")
    assert 13 <= max(range(24), key=o3.__getitem__) <= 17  # the data: 16:00
    assert 5 <= min(range(24), key=o3.__getitem__) <= 9  # the data: 07:00
    assert statistics.correlation(o3, no2) < -0.6  # the data: -0.82


def test_pm_builds_up_in_winter_and_o3_in_summer(urban_year: list[Row]) -> None:
    assert statistics.fmean(column(urban_year, "pm2_5", WINTER)) > statistics.fmean(
        column(urban_year, "pm2_5", SUMMER)
    )
    assert statistics.fmean(column(urban_year, "o3", SUMMER)) > 2 * statistics.fmean(
        column(urban_year, "o3", WINTER)
    )
    # Winter haze builds up at night, when the air is still.
    winter = [row for row in urban_year if row[0].month in WINTER]
    profile = daily_profile(winter, "pm2_5")
    assert statistics.fmean(profile[20:24]) > 1.2 * statistics.fmean(profile[11:16])


def test_no_weekly_cycle_unless_asked(urban_year: list[Row]) -> None:
    weekdays = [values["no2"] for at, values in urban_year if at.weekday() < 5]
    weekends = [values["no2"] for at, values in urban_year if at.weekday() >= 5]
    assert within(statistics.fmean(weekends), statistics.fmean(weekdays), 0.1)

    plain = urban_model()
    quiet = StationModel(
        seed=1,
        district_seed=seed_of("dongcheng"),
        region_seed=seed_of("beijing"),
        weekend_traffic_factor=0.5,
    )
    saturday_noon = datetime(2023, 3, 4, 12, tzinfo=UTC) - BEIJING
    monday_noon = datetime(2023, 3, 6, 12, tzinfo=UTC) - BEIJING
    assert quiet.values_at(monday_noon) == plain.values_at(monday_noon)
    on_saturday, off_saturday = quiet.values_at(saturday_noon), plain.values_at(saturday_noon)
    assert on_saturday["no2"] == pytest.approx(off_saturday["no2"] / 2, abs=0.1)
    assert on_saturday["co"] == pytest.approx(off_saturday["co"] / 2, abs=0.001)
    assert on_saturday["pm2_5"] == off_saturday["pm2_5"]


# ---------------------------------------------------------------- levels and episodes


def test_winter_and_summer_pm2_5_match_the_data(urban_year: list[Row]) -> None:
    winter = column(urban_year, "pm2_5", WINTER)
    summer = column(urban_year, "pm2_5", SUMMER)
    assert within(quantile(winter, 0.5), REAL_WINTER_MEDIAN, 0.25)
    assert within(quantile(winter, 0.9), REAL_WINTER_P90, 0.30)
    assert within(quantile(summer, 0.5), REAL_SUMMER_MEDIAN, 0.25)
    assert within(quantile(summer, 0.9), REAL_SUMMER_P90, 0.30)


def test_pm2_5_episodes_last_as_long_as_in_the_data(urban_year: list[Row]) -> None:
    pm2_5 = column(urban_year, "pm2_5")
    assert abs(autocorrelation(pm2_5, 1) - REAL_ACF_1H) <= 0.05
    assert abs(autocorrelation(pm2_5, 24) - REAL_ACF_24H) <= 0.15
    assert autocorrelation(pm2_5, 168) < 0.2


def test_the_suburban_profile_is_cleaner() -> None:
    suburban = StationModel(seed=1, district_seed=seed_of("huairou"), profile=Profile.SUBURBAN)
    rows = simulate(suburban.values_at, list(every_third_day()))
    winter = column(rows, "pm2_5", WINTER)
    assert within(quantile(winter, 0.5), REAL_SUBURBAN_WINTER_MEDIAN, 0.25)
    assert statistics.fmean(column(rows, "no2")) < 40  # Dongsi 54, Huairou 32


def test_values_are_physical(urban_year: list[Row]) -> None:
    specs = CATALOGUE[Kind.POLLUTION]
    for _, values in urban_year:
        assert sorted(values) == sorted(specs)
        for name, value in values.items():
            assert specs[name].range_problem(value, None) is None, (name, value)
        assert values["pm10"] >= values["pm2_5"]
    ratios = [
        values["pm10"] / values["pm2_5"]
        for at, values in urban_year
        if at.month in WINTER and values["pm2_5"] >= 3
    ]
    assert 1.05 <= quantile(ratios, 0.5) <= 1.4  # the data: 1.18
    assert 0.3 <= quantile(column(urban_year, "co", WINTER), 0.5) <= 3  # mg/m³: 1.3


def test_extreme_scales_stay_in_range() -> None:
    heavy = StationModel(seed=5, district_seed=5, scale=60.0)
    specs = CATALOGUE[Kind.POLLUTION]
    for _, values in simulate(heavy.values_at, range(0, HOURS, 97)):
        for name, value in values.items():
            assert specs[name].range_problem(value, None) is None, (name, value)
        assert values["pm10"] >= values["pm2_5"]


# ---------------------------------------------------------------- stations and seeds


def test_stations_of_one_district_move_together(urban_year: list[Row]) -> None:
    hours = range(0, HOURS, 3)
    own = daily_means([urban_year[hour] for hour in hours], "pm2_5")
    neighbour = daily_means(simulate(urban_model(seed=2).values_at, hours), "pm2_5")
    across_town = daily_means(
        simulate(urban_model(seed=3, district="chaoyang").values_at, hours), "pm2_5"
    )
    elsewhere = daily_means(
        simulate(urban_model(seed=4, district="pudong", region="shanghai").values_at, hours),
        "pm2_5",
    )
    same_district = statistics.correlation(own, neighbour)
    same_region = statistics.correlation(own, across_town)
    other_region = statistics.correlation(own, elsewhere)
    assert same_district > 0.9
    assert 0.6 < same_region < same_district  # the data, Dongsi and Huairou: 0.92
    assert other_region < same_region - 0.2


def test_the_same_seed_gives_the_same_values_in_any_order() -> None:
    times = [START + timedelta(minutes=37 * i) for i in range(200)]
    forwards = [urban_model().values_at(ts) for ts in times]
    other = urban_model()
    backwards = [other.values_at(ts) for ts in reversed(times)][::-1]
    assert json.dumps(forwards) == json.dumps(backwards)
    assert [urban_model().ambient_at(ts) for ts in times[:20]] == [
        other.ambient_at(ts) for ts in times[:20]
    ]
    reseeded = [urban_model(seed=2).values_at(ts) for ts in times]
    assert sum(a != b for a, b in zip(forwards, reseeded, strict=True)) > 190


def test_time_zones_and_sub_hour_times() -> None:
    model = urban_model()
    ts = datetime(2023, 7, 1, 3, 30, tzinfo=UTC)
    in_beijing = ts.astimezone(timezone(BEIJING))
    assert model.values_at(in_beijing) == model.values_at(ts)
    later = model.values_at(ts + timedelta(seconds=10))
    assert later != model.values_at(ts)  # new sensor noise every second
    assert later["pm2_5"] == pytest.approx(model.values_at(ts)["pm2_5"], rel=0.2)


def test_bad_parameters_and_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="scale"):
        StationModel(scale=0)
    with pytest.raises(ValueError, match="tz_offset_h"):
        StationModel(tz_offset_h=15)
    with pytest.raises(ValueError, match="naive"):
        urban_model().values_at(datetime(2023, 1, 1))  # noqa: DTZ001 - the point of the test
    assert StationModel(profile="suburban").profile is Profile.SUBURBAN  # type: ignore[arg-type]


# ---------------------------------------------------------------- weather


def test_the_weather_follows_beijing() -> None:
    rows = simulate(urban_model().ambient_at, list(every_third_day()))
    specs = CATALOGUE[Kind.AMBIENT]
    for _, values in rows:
        assert sorted(values) == sorted(specs)
        for name, value in values.items():
            assert specs[name].range_problem(value, None) is None, (name, value)
    assert statistics.fmean(column(rows, "temperature_c", (1,))) == pytest.approx(-1.8, abs=3)
    assert statistics.fmean(column(rows, "temperature_c", (7,))) == pytest.approx(27.4, abs=2)
    assert statistics.fmean(column(rows, "pressure_hpa", (1,))) == pytest.approx(1024.1, abs=4)
    assert statistics.fmean(column(rows, "pressure_hpa", (7,))) == pytest.approx(999.9, abs=4)
    assert statistics.fmean(column(rows, "humidity_pct", SUMMER)) > statistics.fmean(
        column(rows, "humidity_pct", WINTER)
    )
    assert statistics.fmean(column(rows, "wind_speed_ms")) == pytest.approx(1.86, abs=0.4)
    temperature = daily_profile(rows, "temperature_c")
    wind = daily_profile(rows, "wind_speed_ms")
    assert 13 <= max(range(24), key=temperature.__getitem__) <= 16  # the data: 15:00
    assert 3 <= min(range(24), key=temperature.__getitem__) <= 7  # the data: 05:00
    assert 12 <= max(range(24), key=wind.__getitem__) <= 16  # the data: 14:00


# ---------------------------------------------------------------- drivers


class SteppingClock:
    """An injectable clock that moves one minute per read."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def test_the_pollution_driver_reads_the_model_at_its_clock() -> None:
    clock = SteppingClock(datetime(2023, 1, 10, tzinfo=UTC))
    options = AirQualityStationDriver.Options.model_validate(
        {"seed": 7, "district": "dongcheng", "profile": "urban"}
    )
    assert isinstance(options, AirQualityOptions)
    driver = AirQualityStationDriver(options, clock=clock)
    assert driver.sensor_kind() is Kind.POLLUTION
    driver.open()
    try:
        first, second = driver.read(), driver.read()
    finally:
        driver.close()
    driver.close()  # idempotent
    assert sorted(first) == sorted(CATALOGUE[Kind.POLLUTION])
    assert first != second
    model = StationModel(seed=7, district_seed=seed_of("dongcheng"), region_seed=seed_of("beijing"))
    assert second == model.values_at(clock.now)


def test_the_ambient_driver_and_its_default_clock() -> None:
    driver = AmbientStationDriver(AmbientOptions(seed=7, profile=Profile.SUBURBAN))
    assert driver.sensor_kind() is Kind.AMBIENT
    driver.open()
    values = driver.read()
    driver.close()
    assert sorted(values) == sorted(CATALOGUE[Kind.AMBIENT])
    assert driver.model.profile is Profile.SUBURBAN


def test_the_driver_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="tz_offset_h"):
        AirQualityOptions.model_validate({"tz_offset_h": 20})
    with pytest.raises(ValidationError, match="clock"):
        AirQualityOptions.model_validate({"clock": "now"})
    with pytest.raises(ValidationError, match="profile"):
        AmbientOptions.model_validate({"profile": "rural"})
    with pytest.raises(ValidationError, match="scale"):
        AmbientOptions.model_validate({"scale": 2})
    scaled = AirQualityOptions(scale=2.0, weekend_traffic_factor=0.8).station_model()
    assert (scaled.scale, scaled.weekend_traffic_factor) == (2.0, 0.8)


def test_a_naive_clock_is_a_driver_error() -> None:
    driver = AirQualityStationDriver(
        AirQualityOptions(),
        clock=lambda: datetime(2023, 1, 1),  # noqa: DTZ001 - the point of the test
    )
    for action in (driver.open, driver.read):
        with pytest.raises(DriverError, match="naive") as caught:
            action()
        assert caught.value.retryable is False

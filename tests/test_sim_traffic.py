"""The simulated traffic detector: daily and weekly demand, the fundamental diagram, the
queue behind an accident, lane and segment correlation, exact counts and the driver.

Times are Beijing time (UTC+8) unless said otherwise; 2024-05-06 was a Monday. Most tests
read the noiseless :meth:`~simulators.traffic.LaneModel.state`; the ones about readings
use :meth:`~simulators.traffic.LaneModel.values` or the driver.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge_agents.errors import DriverError
from simulators.base import Effect
from simulators.traffic import (
    LaneModel,
    LaneState,
    RoadClass,
    TrafficDetectorDriver,
    TrafficDetectorOptions,
    seed_of,
)
from telemetry import CATALOGUE, Kind

BEIJING = timedelta(hours=8)
MONDAY = datetime(2024, 5, 6, tzinfo=UTC) - BEIJING
"""Monday 2024-05-06 00:00 in Beijing."""
WEDNESDAY = MONDAY + timedelta(days=2)
SATURDAY = MONDAY + timedelta(days=5)
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


def at(day: datetime, hour: float) -> datetime:
    """``hour`` local hours into the local day starting at ``day``."""
    return day + timedelta(hours=hour)


def lane(
    seed: int = 1,
    segment: str = "ring-k3:northbound",
    road_class: RoadClass = RoadClass.EXPRESSWAY,
    **fields: object,
) -> LaneModel:
    """A lane of a 3-lane expressway, lane 2 unless told."""
    options: dict[str, object] = {"lanes": 3, "lane": 2, **fields}
    return LaneModel(
        seed=seed,
        segment_seed=seed_of(segment),
        road_class=road_class,
        **options,  # type: ignore[arg-type]
    )


def series(model: LaneModel, start: datetime, step: timedelta, count: int) -> list[LaneState]:
    return [model.state(start + i * step, start + (i + 1) * step) for i in range(count)]


def ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    for rank, index in enumerate(order):
        out[index] = float(rank)
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return statistics.correlation(ranks(x), ranks(y))


def q_equals_kv(state: LaneState) -> bool:
    return abs(state.flow_veh_h - state.density_veh_km * state.mean_speed_kmh) <= 1e-9 * max(
        1.0, state.flow_veh_h
    )


# ---------------------------------------------------------------- daily and weekly demand


@pytest.mark.parametrize("day", [0, 2, 4], ids=["monday", "wednesday", "friday"])
def test_weekday_flow_peaks_in_the_morning_and_evening_rush_hours(day: int) -> None:
    model = lane(road_class=RoadClass.ARTERIAL, lanes=2, lane=1)
    start = MONDAY + timedelta(days=day)
    quarters = series(model, start, timedelta(minutes=15), 96)
    flows = [state.flow_veh_h for state in quarters]
    morning = max(range(20, 48), key=flows.__getitem__) / 4  # 05:00-12:00
    evening = max(range(56, 88), key=flows.__getitem__) / 4  # 14:00-22:00
    assert 7.0 <= morning < 9.0
    assert 17.0 <= evening < 19.0
    # Both are real peaks: well above the midday shoulder.
    midday = statistics.fmean(flows[44:56])  # 11:00-14:00
    assert flows[int(morning * 4)] > 1.3 * midday
    assert flows[int(evening * 4)] > 1.3 * midday


def test_weekend_mornings_are_quieter_and_the_weekend_peaks_at_midday() -> None:
    model = lane()
    weekday_morning = statistics.fmean(
        model.state(at(MONDAY + timedelta(days=d), 7), at(MONDAY + timedelta(days=d), 9)).flow_veh_h
        for d in range(5)
    )
    for day in (SATURDAY, SATURDAY + timedelta(days=1)):
        assert model.state(at(day, 7), at(day, 9)).flow_veh_h < 0.5 * weekday_morning
        hourly = [state.flow_veh_h for state in series(model, day, HOUR, 24)]
        assert 10 <= max(range(24), key=hourly.__getitem__) <= 17


def test_night_flow_is_a_small_share_of_the_peak() -> None:
    model = lane()
    hourly = [state.flow_veh_h for state in series(model, WEDNESDAY, HOUR, 24)]
    night = statistics.fmean(hourly[3:5])
    assert 0.03 * max(hourly) < night < 0.15 * max(hourly)


def test_direction_bias_mirrors_the_two_peaks() -> None:
    def peaks(bias: float) -> tuple[float, float]:
        model = lane(direction_bias=bias)
        return (
            model.state(at(WEDNESDAY, 7), at(WEDNESDAY, 9)).flow_veh_h,
            model.state(at(WEDNESDAY, 17), at(WEDNESDAY, 19)).flow_veh_h,
        )

    inbound_morning, inbound_evening = peaks(0.6)
    outbound_morning, outbound_evening = peaks(-0.6)
    assert inbound_morning > 1.2 * inbound_evening
    assert outbound_evening > 1.2 * outbound_morning


def test_inner_lanes_are_faster_and_carry_more_at_peak() -> None:
    inner, outer = lane(lane=1), lane(lane=3)
    assert inner.lane_free_flow_speed_kmh > outer.lane_free_flow_speed_kmh
    peak = (at(WEDNESDAY, 7), at(WEDNESDAY, 9))
    assert inner.state(*peak).flow_veh_h > outer.state(*peak).flow_veh_h
    night = (at(WEDNESDAY, 3), at(WEDNESDAY, 5))
    assert inner.state(*night).mean_speed_kmh > outer.state(*night).mean_speed_kmh


# ---------------------------------------------------------------- the fundamental diagram


def test_speed_falls_as_flow_rises_on_the_uncongested_branch() -> None:
    model = lane()
    start = at(WEDNESDAY, 3)
    quarters = series(model, start, timedelta(minutes=15), 96)
    assert all(state.queue_veh == 0 for state in quarters)
    # Without a queue, what arrives passes: at the middle of a step (where the simulation
    # evaluates demand) the flow is the demand.
    for hour in range(24):
        middle = start + hour * HOUR + 15 * timedelta(seconds=1)
        flow = model.state(middle, middle).flow_veh_h
        assert flow == pytest.approx(model.demand_veh_h(middle), rel=1e-12)
    readings = [
        model.values(start + i * 15 * MINUTE, start + (i + 1) * 15 * MINUTE) for i in range(96)
    ]
    counts = [reading["vehicle_count"] for reading in readings]
    speeds = [reading["mean_speed_kmh"] for reading in readings]
    assert spearman(counts, speeds) < -0.9
    # And the speed has really fallen at the peak, not just by noise.
    assert min(speeds) < 0.85 * max(speeds)


def test_a_busy_expressway_lane_keeps_above_40_percent_of_free_flow_at_peak() -> None:
    model = lane(lane=1)
    capacity = model.defaults.capacity_veh_h
    free = model.lane_free_flow_speed_kmh
    busiest = 0.0
    for day in range(5):
        start = at(MONDAY + timedelta(days=day), 6)
        for state in series(model, start, 5 * MINUTE, 14 * 12):  # 06:00-20:00
            assert state.mean_speed_kmh > 0.4 * free
            busiest = max(busiest, state.flow_veh_h)
    assert busiest > 0.8 * capacity  # the lane is busy: the test is not trivial


# Models shared by the property tests, so that their examples reuse the simulated days.
PLAIN = lane()
ACCIDENT = lane(capacity_drops=(Effect(at(WEDNESDAY, 17.5), at(WEDNESDAY, 18.25), 0.25, 120),))


@given(
    offset_s=st.integers(0, 86_400),
    length_s=st.integers(0, 4 * 3600),
    micro=st.integers(0, 999_999),
)
@settings(max_examples=60)
def test_flow_is_density_times_speed(offset_s: int, length_s: int, micro: int) -> None:
    for model in (PLAIN, ACCIDENT):
        t0 = at(WEDNESDAY, 3) + timedelta(seconds=offset_s, microseconds=micro)
        state = model.state(t0, t0 + timedelta(seconds=length_s))
        assert q_equals_kv(state)
        assert state.occupancy_pct == pytest.approx(min(100.0, state.density_veh_km * 0.7))


# ---------------------------------------------------------------- an accident


def test_an_accident_builds_a_queue_that_collapses_speed_and_then_clears() -> None:
    start, end = at(WEDNESDAY, 17.5), at(WEDNESDAY, 18.25)
    accident = Effect(start, end, 0.25, ramp_s=120)
    normal = lane()
    blocked = lane(capacity_drops=(accident,))
    free = blocked.lane_free_flow_speed_kmh
    capacity = blocked.defaults.capacity_veh_h

    # Before: nothing differs.
    assert blocked.state(start - HOUR, start) == normal.state(start - HOUR, start)
    # Within 10 minutes: speed collapses and occupancy at least doubles.
    window = (start + 9 * MINUTE, start + 10 * MINUTE)
    hit, usual = blocked.state(*window), normal.state(*window)
    assert hit.mean_speed_kmh < 0.3 * free
    assert hit.occupancy_pct >= 2 * usual.occupancy_pct
    assert hit.queue_veh > 0
    # While fully blocked, the detector passes about the reduced capacity.
    during = blocked.state(start + 10 * MINUTE, end - 5 * MINUTE)
    assert 0.2 * capacity <= during.flow_veh_h <= 0.3 * capacity
    assert during.vehicle_count == pytest.approx(during.flow_veh_h * 30 / 60, rel=0.15)
    # The queue clears within two hours of the end, and then all is as before.
    minutes = [blocked.state(end + i * MINUTE, end + (i + 1) * MINUTE) for i in range(120)]
    cleared = next(i for i, state in enumerate(minutes) if state.queue_veh == 0)
    assert cleared > 10  # a queue of hundreds of vehicles does not vanish at once
    after = end + (cleared + 5) * MINUTE
    recovered, undisturbed = blocked.state(after, after + HOUR), normal.state(after, after + HOUR)
    assert recovered.vehicle_count == undisturbed.vehicle_count
    assert recovered == pytest.approx(undisturbed, rel=1e-9)
    assert blocked.state(after, after + 5 * MINUTE).mean_speed_kmh > 0.7 * free


def test_a_queue_carries_over_the_traffic_day_boundary_in_any_order() -> None:
    # A closure at night: 02:00-03:30 local, across the 03:00 start of a traffic day.
    closure = Effect(at(WEDNESDAY, 2), at(WEDNESDAY, 3.5), 0.05)
    first, second = lane(capacity_drops=(closure,)), lane(capacity_drops=(closure,))
    boundary = at(WEDNESDAY, 3)
    later = second.state(boundary, boundary + 30 * MINUTE)  # the later day first
    earlier = second.state(boundary - 30 * MINUTE, boundary)
    assert first.state(boundary - 30 * MINUTE, boundary) == earlier
    assert first.state(boundary, boundary + 30 * MINUTE) == later
    before = first.state(boundary - 30 * timedelta(seconds=1), boundary).queue_veh
    after = first.state(boundary, boundary + 30 * timedelta(seconds=1)).queue_veh
    assert before > 5
    assert after == pytest.approx(before, abs=2.0)


# ---------------------------------------------------------------- lanes and segments


def hourly_counts(model: LaneModel, start: datetime, hours: int) -> list[float]:
    return [float(state.vehicle_count) for state in series(model, start, HOUR, hours)]


def midday_residuals(model: LaneModel, days: Sequence[datetime], counts: bool) -> list[float]:
    """Hourly counts (or model flows) 10:00-16:00 of each day relative to the hour's mean."""
    rows = [
        [
            float(s.vehicle_count) if counts else s.flow_veh_h
            for s in series(model, at(day, 10), HOUR, 6)
        ]
        for day in days
    ]
    means = [statistics.fmean(row[h] for row in rows) for h in range(6)]
    return [row[h] / means[h] - 1 for row in rows for h in range(6)]


def test_lanes_of_a_segment_correlate_and_other_segments_less() -> None:
    def arterial(seed: int, segment: str, number: int) -> LaneModel:
        return lane(seed, f"{segment}:northbound", RoadClass.ARTERIAL, lanes=2, lane=number)

    a1, a2, b1, c1 = (
        arterial(11, "A", 1),
        arterial(12, "A", 2),
        arterial(13, "B", 1),
        arterial(14, "C", 1),
    )
    assert (
        statistics.correlation(hourly_counts(a1, MONDAY, 48), hourly_counts(a2, MONDAY, 48)) > 0.9
    )
    # Beyond the shared daily cycle: the day-to-day and within-day variation of demand
    # (the model's flows), and what is left of it in the counts with their draw noise.
    days = [MONDAY + timedelta(days=7 * week + d) for week in range(4) for d in (1, 2, 3)]
    for counts, same_above, others_below in ((False, 0.8, 0.5), (True, 0.4, 0.35)):
        first = midday_residuals(a1, days, counts)
        same = statistics.correlation(first, midday_residuals(a2, days, counts))
        others = [
            statistics.correlation(first, midday_residuals(other, days, counts))
            for other in (b1, c1)
        ]
        assert same > same_above, counts
        assert max(others) < min(others_below, same - 0.3), counts


# ---------------------------------------------------------------- counts and readings


@given(
    start_s=st.integers(0, 86_400),
    cuts=st.lists(st.integers(0, 6 * 3600 * 1_000_000), min_size=2, max_size=4),
)
@settings(max_examples=80)
def test_counts_are_additive_over_any_split(start_s: int, cuts: list[int]) -> None:
    model = ACCIDENT
    t0 = at(WEDNESDAY, 0) + timedelta(seconds=start_s)
    points = [t0 + timedelta(microseconds=cut) for cut in sorted(cuts)]
    pieces = sum(model.state(a, b).vehicle_count for a, b in pairwise(points))
    assert pieces == model.state(points[0], points[-1]).vehicle_count


def test_counts_are_additive_across_days() -> None:
    model = lane()
    start = at(WEDNESDAY, 1.2345)
    whole = model.state(start, start + timedelta(days=3)).vehicle_count
    hours = sum(state.vehicle_count for state in series(model, start, HOUR, 72))
    assert whole == hours


def test_the_same_seed_gives_byte_identical_readings_in_any_order() -> None:
    spans = [(at(WEDNESDAY, h), at(WEDNESDAY, h) + 7 * MINUTE) for h in (2.5, 8.0, 17.9, 26.0)]
    forward = [lane().values(*span) for span in spans]
    model = lane()
    backward = [model.values(*span) for span in reversed(spans)][::-1]
    assert json.dumps(forward) == json.dumps(backward)
    other = [lane(seed=2).values(*span) for span in spans]
    assert json.dumps(other) != json.dumps(forward)


def test_readings_stay_within_the_catalogue() -> None:
    specs = CATALOGUE[Kind.TRAFFIC]
    accident = Effect(at(WEDNESDAY, 8), at(WEDNESDAY, 9), 0.0, ramp_s=60)  # a full closure
    for model in (lane(), lane(capacity_drops=(accident,)), lane(road_class=RoadClass.BRANCH)):
        for i in range(24 * 12):
            t0 = at(WEDNESDAY, 3) + i * 5 * MINUTE
            values = model.values(t0, t0 + 5 * MINUTE)
            assert set(values) == set(specs)
            assert isinstance(values["vehicle_count"], int)
            for name, value in values.items():
                assert specs[name].range_problem(value, interval_s=300) is None, (name, value)


def test_counts_never_exceed_the_catalogue_rate() -> None:
    model = lane(lane=1, capacity_drops=(Effect(at(WEDNESDAY, 7.5), at(WEDNESDAY, 7.6), 0.1),))
    spec = CATALOGUE[Kind.TRAFFIC]["vehicle_count"]
    assert spec.max_rate_per_s is not None
    start = at(WEDNESDAY, 7.4)  # busy, then queue discharge at the highest flow
    for length in (timedelta(seconds=0.5), timedelta(seconds=1), timedelta(seconds=7)):
        span_s = length.total_seconds()
        limit = spec.max_rate_per_s * span_s + 1
        t, seen = start, 0
        while t < start + 30 * MINUTE:
            count = model.state(t, t + length).vehicle_count
            assert count <= limit
            seen += count
            t += length / 3  # overlapping windows: every alignment
        assert seen > 0


def test_an_empty_interval_still_reports_the_model_speed() -> None:
    model = lane()
    t = at(WEDNESDAY, 3.5)
    values = model.values(t, t)
    assert values["vehicle_count"] == 0
    assert values["mean_speed_kmh"] > 0.8 * model.lane_free_flow_speed_kmh


# ---------------------------------------------------------------- the driver


class SteppingClock:
    def __init__(self, start: datetime, step: timedelta) -> None:
        self.now, self.step = start, step

    def __call__(self) -> datetime:
        return self.now

    def advance(self) -> None:
        self.now += self.step


def test_the_driver_counts_add_up_to_the_model_over_its_span() -> None:
    options = TrafficDetectorOptions(
        seed=5, segment="hubin", road_class=RoadClass.ARTERIAL, lanes=2, lane=2, direction_bias=0.3
    )
    clock = SteppingClock(at(WEDNESDAY, 7), timedelta(seconds=10))
    driver = TrafficDetectorDriver(options, clock=clock)
    assert driver.sensor_kind() is Kind.TRAFFIC
    driver.open()
    opened = clock.now
    assert driver.read()["vehicle_count"] == 0
    total = 0
    for _ in range(360):
        clock.advance()
        reading = driver.read()
        assert reading["mean_speed_kmh"] > 0
        total += int(reading["vehicle_count"])
    driver.close()
    assert total == options.lane_model().state(opened, clock.now).vehicle_count > 500


def test_the_driver_reads_the_model_a_scenario_gives_it() -> None:
    clock = SteppingClock(at(WEDNESDAY, 17.6), timedelta(minutes=1))
    driver = TrafficDetectorDriver(
        TrafficDetectorOptions(road_class=RoadClass.EXPRESSWAY), clock=clock
    )
    driver.open()
    clock.advance()
    normal = driver.read()["mean_speed_kmh"]
    accident = Effect(at(WEDNESDAY, 17.5), at(WEDNESDAY, 18.5), 0.2)
    driver.model = replace(driver.model, capacity_drops=(accident,))
    clock.advance()
    assert driver.read()["mean_speed_kmh"] < 0.3 * normal


def test_naive_times_are_refused() -> None:
    model = lane()
    naive = datetime(2024, 5, 8, 8)  # noqa: DTZ001 - the point of the test
    aware = naive.replace(tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        model.values(naive, aware)
    with pytest.raises(ValueError, match="naive"):
        model.state(aware, naive)
    with pytest.raises(ValueError, match="naive"):
        model.demand_veh_h(naive)
    with pytest.raises(ValueError, match="before"):
        model.state(aware, aware - MINUTE)
    driver = TrafficDetectorDriver(TrafficDetectorOptions(), clock=lambda: naive)
    with pytest.raises(DriverError, match="naive"):
        driver.open()


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"lanes": 2, "lane": 3}, "lane"),
        ({"lanes": 0}, "lanes"),
        ({"road_class": "motorway"}, "road_class"),
        ({"direction_bias": 1.5}, "direction_bias"),
        ({"free_flow_speed_kmh": 2}, "free_flow_speed_kmh"),
        ({"tz_offset_h": 20}, "tz_offset_h"),
        ({"segment": ""}, "segment"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_options_errors_name_the_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        TrafficDetectorOptions(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"lanes": 2, "lane": 3}, "lane must be within 1..lanes=2, not 3"),
        ({"lane": 0}, "lane must be"),
        ({"road_class": "motorway"}, "road_class must be one of"),
        ({"direction_bias": -2.0}, "direction_bias"),
        ({"free_flow_speed_kmh": 12.0}, "free_flow_speed_kmh 12.0 is too low"),
        ({"tz_offset_h": float("nan")}, "tz_offset_h"),
        ({"capacity_drops": (Effect(MONDAY, WEDNESDAY, 1.5),)}, r"capacity_drops\[0\].amount"),
        ({"demand_factors": (Effect(MONDAY, WEDNESDAY, -1.0),)}, r"demand_factors\[0\].amount"),
    ],
)
def test_model_errors_name_the_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        LaneModel(**fields)  # type: ignore[arg-type]

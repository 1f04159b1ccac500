"""Scenic-area occupancy: tiers at their boundaries, clamping, late and out-of-order gate
counts, the daily reset at opening, and a simulated crowd surge crossing 80/90/100 %
exactly when the simulator's ground truth says."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.engine import OCCUPANCY_TIERS_PCT, City
from simulators.scenario import parse_scenario
from stream.indices.scenic import (
    GateCounts,
    OccupancyState,
    OccupancyTier,
    OccupancyUpdate,
    ScenicConfig,
    ScenicError,
    apply,
    tier_of,
)
from telemetry import Kind, Reading

CONFIG = ScenicConfig("park", instantaneous_capacity=1000, daily_capacity=3000)
NOON = datetime(2024, 10, 8, 4, 0, tzinfo=UTC)  # 12:00 in Beijing
MINUTE = timedelta(minutes=1)


def fold(
    counts: list[GateCounts], config: ScenicConfig = CONFIG, state: OccupancyState | None = None
) -> tuple[OccupancyState, list[OccupancyUpdate]]:
    state = state or OccupancyState()
    updates = []
    for item in counts:
        state, update = apply(state, item, config)
        updates.append(update)
    return state, updates


def gate(name: str, at: datetime, entries: int = 0, exits: int = 0) -> GateCounts:
    return GateCounts(name, at, entries, exits, interval_s=60.0)


# ---------------------------------------------------------------- tiers


def test_tier_boundaries() -> None:
    assert [tier_of(p) for p in (0, 79.99, 80, 89.99, 90, 99.99, 100, 250)] == [
        OccupancyTier(t) for t in (0, 0, 80, 80, 90, 90, 100, 100)
    ]


@pytest.mark.parametrize(
    ("inside", "tier"),
    [(799, 0), (800, 80), (899, 80), (900, 90), (999, 90), (1000, 100), (1200, 100)],
)
def test_occupancy_tiers_at_their_boundaries(inside: int, tier: int) -> None:
    _, [update] = fold([gate("north", NOON, entries=inside)])
    assert update.occupancy == inside
    assert update.occupancy_pct == pytest.approx(inside / 10)
    assert update.tier == OccupancyTier(tier)
    assert update.raised == tuple(t for t in OccupancyTier if 0 < t <= tier)


def test_tiers_are_raised_and_cleared_once_each_way() -> None:
    _, updates = fold(
        [
            gate("north", NOON, entries=850),  # 85 %
            gate("south", NOON, entries=100),  # 95 %
            gate("north", NOON + MINUTE, entries=60),  # 101 %
            gate("north", NOON + 2 * MINUTE, exits=10),  # 100 %: still full
            gate("south", NOON + 2 * MINUTE, exits=300),  # 70 %
        ]
    )
    assert [u.raised for u in updates] == [
        (OccupancyTier.WARNING,),
        (OccupancyTier.RESTRICT,),
        (OccupancyTier.FULL,),
        (),
        (),
    ]
    assert updates[3].tier is OccupancyTier.FULL
    assert updates[4].cleared == (OccupancyTier.FULL, OccupancyTier.RESTRICT, OccupancyTier.WARNING)


def test_daily_visitors_against_the_daily_capacity() -> None:
    _, updates = fold(
        [gate("north", NOON, entries=2400, exits=2000), gate("south", NOON, entries=300)]
    )
    assert (updates[0].daily_visitors, updates[0].daily_pct) == (2400, 80.0)
    assert updates[0].daily_tier is OccupancyTier.WARNING
    assert updates[1].daily_tier is OccupancyTier.RESTRICT
    assert updates[1].occupancy == 700


# ---------------------------------------------------------------- never negative, in any order


def test_exits_beyond_entries_are_clamped_and_reported_until_the_entries_arrive() -> None:
    _, updates = fold(
        [
            gate("north", NOON, entries=5),
            gate("south", NOON + MINUTE, exits=12),  # before the west gate's entries
            gate("west", NOON, entries=10),  # late: it covers an earlier minute
        ]
    )
    assert [(u.occupancy, u.unexplained_exits) for u in updates] == [(5, 0), (0, 7), (3, 0)]
    assert updates[2].ts == NOON + MINUTE  # figures as of the latest event time


def test_a_gates_older_reading_is_flagged_late_and_still_counted() -> None:
    state, updates = fold([gate("north", NOON, entries=5), gate("north", NOON - MINUTE, entries=3)])
    assert [u.late for u in updates] == [False, True]
    assert updates[1].occupancy == 8
    assert state.latest == {"north": NOON}


counts_strategy = st.lists(
    st.builds(
        gate,
        st.sampled_from(["north", "south", "west"]),
        st.integers(0, 600).map(lambda m: NOON + m * MINUTE),
        st.integers(0, 40),
        st.integers(0, 40),
    ),
    max_size=40,
)


@given(counts=counts_strategy, seed=st.integers(0, 2**32))
def test_occupancy_is_never_negative_and_does_not_depend_on_order(
    counts: list[GateCounts], seed: int
) -> None:
    state, updates = fold(counts)
    shuffled = list(counts)
    random.Random(seed).shuffle(shuffled)
    other, _ = fold(shuffled)
    for update in updates:
        assert update.occupancy >= 0
        assert update.unexplained_exits >= 0
    assert state.today == other.today
    assert state.tier == other.tier
    if updates:
        entries = sum(c.entries for c in counts)
        exits = sum(c.exits for c in counts)
        last = updates[-1]
        assert last.occupancy - last.unexplained_exits == entries - exits
        assert last.daily_visitors == entries


# ---------------------------------------------------------------- the operating day


def test_the_day_restarts_at_opening_and_late_readings_complete_the_day_before() -> None:
    opening = datetime(2024, 10, 8, 22, 0, tzinfo=UTC)  # 06:00 on the 9th in Beijing
    state, updates = fold(
        [
            gate("north", opening - 10 * MINUTE, entries=50, exits=20),  # the 8th
            gate("north", opening, entries=4),  # covers 05:59-06:00: still the 8th
            gate("north", opening + MINUTE, entries=7),  # the 9th
            gate("south", opening - 30 * MINUTE, exits=30),  # a late exit of the 8th
            gate("south", opening - timedelta(days=2), entries=99),  # the 6th: too old
        ]
    )
    day8, day9 = datetime(2024, 10, 8).date(), datetime(2024, 10, 9).date()  # noqa: DTZ001
    assert [u.day for u in updates] == [day8, day8, day9, day8, day9]
    assert [u.new_day for u in updates] == [False, False, True, False, False]
    assert (updates[1].occupancy, updates[1].daily_visitors) == (34, 54)
    assert (updates[2].occupancy, updates[2].daily_visitors) == (7, 7)
    assert updates[3].past_day
    assert updates[3].raised == updates[3].cleared == ()
    assert (updates[3].occupancy, updates[3].daily_visitors) == (4, 54)
    assert updates[4].ignored
    assert updates[4].occupancy == 7
    assert state.today is not None
    assert state.yesterday is not None
    assert (state.today.entries, state.yesterday.exits) == (7, 50)


def test_opening_time_and_utc_offset_are_configurable() -> None:
    config = ScenicConfig("p", 100, 300, opens_at=time(9, 30), utc_offset_h=-5.0)
    boundary = datetime(2024, 10, 8, 14, 30, tzinfo=UTC)  # 09:30 at UTC-5
    assert config.operating_day(boundary - timedelta(seconds=1)).day == 7
    assert config.operating_day(boundary).day == 8


def test_inputs_are_checked() -> None:
    with pytest.raises(ScenicError, match="instantaneous_capacity of p must be above zero, not 0"):
        ScenicConfig("p", 0, 10)
    with pytest.raises(ScenicError, match="exits at gate g must not be negative, not -1"):
        GateCounts("g", NOON, 1, -1)
    with pytest.raises(ScenicError, match="has no time zone"):
        GateCounts("g", datetime(2024, 1, 1), 1, 1)  # noqa: DTZ001
    camera = Reading(
        sensor_id="cr-1", kind=Kind.CROWD, ts=NOON, seq=0, metrics={"count_in_view": 4}
    )
    with pytest.raises(ScenicError, match="cr-1 has neither entries nor exits"):
        apply(OccupancyState(), camera, CONFIG)


def test_a_crowd_reading_is_counted_under_its_sensor_id() -> None:
    reading = Reading(
        sensor_id="cr-park-north",
        kind=Kind.CROWD,
        ts=NOON,
        seq=3,
        interval_s=60,
        metrics={"entries": 12, "exits": 2},
    )
    state, update = apply(OccupancyState(), reading, CONFIG)
    assert (update.occupancy, update.daily_visitors) == (10, 12)
    assert state.latest == {"cr-park-north": NOON}


# ---------------------------------------------------------------- the simulated city


SURGE = """
version: 1
name: a holiday crowd at the canal quarter
seed: 11
start: 2024-10-15T08:30:00+08:00
duration: 6h40m
scenic_hours:
  canal-quarter: {opens_at: "09:00", closes_at: "21:00"}
incidents:
  - {kind: crowd_surge, area: canal-quarter, peak_pct: 105,
     start: 2024-10-15T10:00:00+08:00, duration: 3h}
"""


def test_a_crowd_surge_crosses_the_tiers_when_the_ground_truth_says() -> None:
    city = City(parse_scenario(SURGE))
    area = city.registry.scenic_area("canal-quarter")
    config = ScenicConfig.from_area(area, opens_at=time(9, 0))
    gates = {s.id for s in city.registry.sensors_of_area(area.id)}
    readings = [r for r in city.run() if r.sensor_id in gates]
    state = OccupancyState()
    raised: dict[int, datetime] = {}
    cleared: dict[int, datetime] = {}
    for reading in readings:
        state, update = apply(state, reading, config)
        assert update.occupancy >= 0
        for level in update.raised:
            raised.setdefault(level.value, update.ts)
        for level in update.cleared:
            cleared.setdefault(level.value, update.ts)
    truth = {e.kind: e for e in city.truth}
    for tier in OCCUPANCY_TIERS_PCT:
        entry = truth[f"occupancy_over_{tier}pct"]
        assert abs(raised[tier] - entry.start) <= MINUTE, tier
        assert abs(cleared[tier] - entry.end) <= MINUTE, tier
    # The same readings, each gate's up to five minutes late: the same day totals.
    rng = random.Random(3)
    delayed = sorted(readings, key=lambda r: r.ts + rng.randrange(6) * MINUTE)
    shuffled = OccupancyState()
    for reading in delayed:
        shuffled, update = apply(shuffled, reading, config)
        assert update.occupancy >= 0
    assert shuffled.today == state.today
    opening = datetime(2024, 10, 15, 1, 0, tzinfo=UTC)  # 09:00 in Beijing
    assert state.today is not None
    assert state.today.entries == sum(r.metrics["entries"] for r in readings if r.ts > opening)

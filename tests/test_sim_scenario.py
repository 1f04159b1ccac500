"""Scenarios: their files, determinism, and ground truth that matches what was injected.

The ground-truth tests run the same day twice, with and without the incidents or faults,
and compare reading by reading: whatever changed must be named by the ground truth, in
the window it gives, and everything it names must have changed something.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from itertools import pairwise

import pytest

from simulators.engine import OCCUPANCY_TIERS_PCT, City, TruthEntry
from simulators.scenario import ScenarioError, parse_scenario
from telemetry import CATALOGUE, Reading, Semantics, to_json

DAY = """
version: 1
name: test day
seed: {seed}
start: 2024-11-08T00:00:00+08:00
duration: {duration}
"""

INCIDENTS = """
incidents:
  - {kind: pollution_episode, district: lakeside, origin: aq-pier-pollution,
     start: 2024-11-08T02:00:00+08:00, duration: 6h, peak_factor: 4, ramp: 2h}
  - {kind: local_source, sensor: aq-drum-tower-pollution,
     start: 2024-11-08T14:00:00+08:00, duration: 2h, factor: 6}
  - {kind: traffic_accident, segment: seg-ring-east-k3, direction: northbound,
     start: 2024-11-08T17:30:00+08:00, duration: 45m}
  - {kind: night_load, building: bld-lakeside-tower, extra_kw: 150,
     start: 2024-11-07T12:00:00+08:00, duration: 1d}
  - {kind: energy_leak, building: bld-willow-court, extra_kw: 40,
     start: 2024-11-08T09:00:00+08:00, duration: 3h}
"""

FAULTS = """
faults:
  - {kind: stuck, sensor: aq-north-bank-ambient, metric: humidity_pct,
     start: 2024-11-08T02:00:00+08:00, duration: 3h}
  - {kind: drift, sensor: aq-pier-pollution, metric: pm2_5, rate_per_day: 0.5,
     start: 2024-11-08T04:00:00+08:00, duration: 12h}
  - {kind: spikes, sensor: em-lakeview-mall-main, metric: power_w, probability: 0.1,
     factor: 3, start: 2024-11-08T08:00:00+08:00, duration: 8h}
  - {kind: dropout, sensor: tr-hubin-sb-2, probability: 0.5,
     start: 2024-11-08T07:00:00+08:00, duration: 4h}
  - {kind: clock_skew, sensor: aq-library-ambient, offset: -10m,
     start: 2024-11-08T12:00:00+08:00, duration: 2h}
  - {kind: dead, sensor: cr-canal-west, start: 2024-11-08T14:00:00+08:00}
  - {kind: counter_reset, sensor: em-willow-court-main, start: 2024-11-08T03:00:00+08:00}
"""

SURGE = """
incidents:
  - {kind: crowd_surge, area: canal-quarter, peak_pct: 105,
     start: 2024-11-08T10:00:00+08:00, duration: 6h}
"""

Key = tuple[str, datetime]


def run(text: str) -> tuple[dict[Key, Reading], list[TruthEntry]]:
    city = City(parse_scenario(text))
    readings = {(r.sensor_id, r.ts): r for r in city.run()}
    return readings, city.truth


@pytest.fixture(scope="module")
def baseline() -> dict[Key, Reading]:
    return run(DAY.format(seed=7, duration="1d"))[0]


@pytest.fixture(scope="module")
def incidents() -> tuple[dict[Key, Reading], list[TruthEntry]]:
    return run(DAY.format(seed=7, duration="1d") + INCIDENTS)


def covered(truth: list[TruthEntry], sensor: str, ts: datetime, slack: timedelta) -> bool:
    return any(
        sensor in entry.sensors and entry.start <= ts <= entry.end + slack for entry in truth
    )


# ---------------------------------------------------------------- the file


def test_scenario_errors_point_at_the_line_and_the_key() -> None:
    text = """version: 1
name: broken
start: 2024-11-08T00:00:00
duration: 1d
publish_interval_s: 90
incidents:
  - {kind: traffic_accident, segment: seg-ring, start: 2024-11-08T08:00:00+08:00,
     duration: 40m}
  - {kind: crowd_surge, area: lakeside-park, start: 2024-11-08T08:00:00+08:00, duration: -1h}
faults:
  - {kind: drift, sensor: aq-pier-pollution, metric: pm25, start: 2024-11-08T08:00:00+08:00,
     duration: 1h}
  - {kind: melted, sensor: aq-pier-pollution, start: 2024-11-08T08:00:00+08:00, duration: 1h}
"""
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "city.yaml")
    assert str(caught.value).splitlines() == [
        "city.yaml:3:8: start: input should have timezone info",
        "city.yaml:5:21: publish_interval_s: 90 must be a whole multiple of sample_interval_s (60)",
        "city.yaml:7:39: incidents[0].segment: unknown road segment 'seg-ring'"
        " (did you mean 'seg-ring-east-k3'?)",
        "city.yaml:9:90: incidents[1].duration: must be a positive duration, not -1 day, 23:00:00",
        "city.yaml:11:54: faults[0].metric: a pollution sensor has no metric 'pm25'"
        " (did you mean 'pm2_5'?)",
        "city.yaml:13:12: faults[1].kind: unknown kind 'melted'"
        " (known: stuck, drift, spikes, dropout, clock_skew, dead, counter_reset)",
    ]


def test_durations_and_until() -> None:
    scenario = parse_scenario(DAY.format(seed=1, duration="1d12h"))
    assert scenario.file.duration == timedelta(hours=36)
    short = scenario.until(scenario.file.start + timedelta(hours=2))
    assert short.file.duration == timedelta(hours=2)
    with pytest.raises(ValueError, match="not after the start"):
        scenario.until(scenario.file.start)


# ---------------------------------------------------------------- determinism


def test_the_same_seed_gives_byte_identical_readings_and_another_seed_does_not() -> None:
    def jsonl(seed: int) -> bytes:
        city = City(parse_scenario(DAY.format(seed=seed, duration="2h") + FAULTS))
        return b"\n".join(to_json(r) for r in city.run())

    first = jsonl(3)
    assert first == jsonl(3)
    assert first != jsonl(4)
    assert len(first.splitlines()) > 28 * 100


# ---------------------------------------------------------------- incidents


def test_incidents_change_only_what_the_ground_truth_names(
    baseline: dict[Key, Reading], incidents: tuple[dict[Key, Reading], list[TruthEntry]]
) -> None:
    readings, truth = incidents
    assert readings.keys() == baseline.keys()
    changed: dict[str, set[str]] = defaultdict(set)
    for key, reading in readings.items():
        sensor, ts = key
        before = baseline[key]
        kind = reading.kind
        differs = [
            metric
            for metric, value in reading.metrics.items()
            if CATALOGUE[kind][metric].semantics is not Semantics.CUMULATIVE
            and value != before.metrics[metric]
        ]
        if not differs:
            continue
        assert covered(truth, sensor, ts, timedelta(minutes=1)), (sensor, ts, differs)
        for entry in truth:
            if sensor in entry.sensors and entry.start <= ts <= entry.end + timedelta(minutes=1):
                changed[entry.id].add(sensor)
    for entry in truth:
        assert changed[entry.id] == set(entry.sensors), entry.id


def test_a_local_source_leaves_its_neighbours_alone_and_an_episode_does_not(
    baseline: dict[Key, Reading], incidents: tuple[dict[Key, Reading], list[TruthEntry]]
) -> None:
    readings, truth = incidents
    episode, local = truth[0], truth[1]
    assert episode.area == "lakeside"
    assert set(episode.sensors) == {
        "aq-pier-pollution",
        "aq-library-pollution",
        "aq-north-bank-pollution",
    }
    assert local.sensor == "aq-drum-tower-pollution"

    def ratio(sensor: str, at: datetime) -> float:
        key = (sensor, at)
        return readings[key].metrics["pm2_5"] / baseline[key].metrics["pm2_5"]

    middle = episode.start + timedelta(hours=4)
    assert all(ratio(s, middle) > 2.5 for s in episode.sensors)
    peak = local.start + timedelta(hours=1)
    assert ratio("aq-drum-tower-pollution", peak) > 5
    # The front reaches the pier first: at the start of the ramp the others lag behind.
    early = episode.start + timedelta(minutes=30)
    assert ratio("aq-pier-pollution", early) > ratio("aq-north-bank-pollution", early)


def test_an_accident_collapses_speed_until_the_queue_clears(
    baseline: dict[Key, Reading], incidents: tuple[dict[Key, Reading], list[TruthEntry]]
) -> None:
    readings, truth = incidents
    accident = next(e for e in truth if e.kind == "traffic_accident")
    assert accident.end > accident.start + timedelta(minutes=45)  # the queue outlasts it
    during = accident.start + timedelta(minutes=20)
    for lane in accident.sensors:
        now, usual = readings[(lane, during)].metrics, baseline[(lane, during)].metrics
        assert now["mean_speed_kmh"] < 0.5 * usual["mean_speed_kmh"]
        assert now["occupancy_pct"] > 2 * usual["occupancy_pct"]
    after = accident.end + timedelta(minutes=2)
    for lane in accident.sensors:
        assert readings[(lane, after)].metrics == baseline[(lane, after)].metrics


def test_loads_raise_the_register_by_their_energy(
    baseline: dict[Key, Reading], incidents: tuple[dict[Key, Reading], list[TruthEntry]]
) -> None:
    readings, truth = incidents
    leak = next(e for e in truth if e.kind == "energy_leak")
    end_of_day = max(ts for sensor, ts in readings if sensor == "em-willow-court-main")
    key = ("em-willow-court-main", end_of_day)
    extra_kwh = readings[key].metrics["energy_kwh"] - baseline[key].metrics["energy_kwh"]
    assert extra_kwh == pytest.approx(40 * 3, abs=0.05)
    assert leak.end - leak.start == timedelta(hours=3)


def test_a_crowd_surge_and_its_occupancy_tiers_match_the_gate_counts() -> None:
    text = DAY.format(seed=11, duration="1d") + SURGE
    readings, truth = run(text)
    capacity = 4500
    gates = {"cr-canal-east", "cr-canal-west", "cr-canal-bridge"}
    occupancy: dict[datetime, float] = defaultdict(float)
    for (sensor, ts), reading in readings.items():
        if sensor in gates:
            occupancy[ts] += reading.metrics["entries"] - reading.metrics["exits"]
    level, running = {}, 0.0
    for ts in sorted(occupancy):
        running += occupancy[ts]
        level[ts] = 100 * running / capacity
    assert min(level.values()) >= 0
    surge = next(e for e in truth if e.kind == "crowd_surge")
    in_span = [pct for ts, pct in level.items() if surge.start <= ts <= surge.end]
    assert 100 <= max(in_span) <= 110
    tiers = {e.kind: e for e in truth if e.kind.startswith("occupancy_over_")}
    assert set(tiers) == {f"occupancy_over_{tier}pct" for tier in OCCUPANCY_TIERS_PCT}
    for tier in OCCUPANCY_TIERS_PCT:
        entry = tiers[f"occupancy_over_{tier}pct"]
        inside = [pct for ts, pct in level.items() if entry.start <= ts < entry.end]
        assert inside, tier
        assert min(inside) >= tier
        assert level[entry.start - timedelta(minutes=1)] < tier
        assert level[entry.end] < tier


# ---------------------------------------------------------------- faults


def test_faults_do_what_the_ground_truth_says(baseline: dict[Key, Reading]) -> None:
    readings, truth = run(DAY.format(seed=7, duration="1d") + FAULTS)
    faults = {entry.kind: entry for entry in truth}
    assert all(entry.category == "fault" for entry in truth)

    def window(kind: str, sensor: str) -> list[datetime]:
        entry = faults[kind]
        # A sample taken at t is in the reading of the minute that ends at t.
        return sorted(ts for s, ts in baseline if s == sensor and entry.start <= ts < entry.end)

    stuck = {
        readings[("aq-north-bank-ambient", ts)].metrics["humidity_pct"]
        for ts in window("stuck", "aq-north-bank-ambient")
    }
    assert len(stuck) == 1

    for ts in window("drift", "aq-pier-pollution"):
        key = ("aq-pier-pollution", ts)
        days = (ts - faults["drift"].start).total_seconds() / 86_400
        expected = baseline[key].metrics["pm2_5"] * (1 + 0.5 * days)
        assert readings[key].metrics["pm2_5"] == pytest.approx(expected, rel=0.02)

    spiked = [
        ts
        for ts in window("spikes", "em-lakeview-mall-main")
        if readings[("em-lakeview-mall-main", ts)].metrics["power_w"]
        != baseline[("em-lakeview-mall-main", ts)].metrics["power_w"]
    ]
    assert 0.05 * 480 < len(spiked) < 0.16 * 480
    for ts in spiked:
        key = ("em-lakeview-mall-main", ts)
        assert readings[key].metrics["power_w"] == pytest.approx(
            3 * baseline[key].metrics["power_w"]
        )

    dropout = window("dropout", "tr-hubin-sb-2")
    kept = sum(("tr-hubin-sb-2", ts) in readings for ts in dropout)
    assert 0.3 * len(dropout) < kept < 0.7 * len(dropout)

    skew = window("clock_skew", "aq-library-ambient")
    for ts in skew[15:-15]:
        shifted = readings[("aq-library-ambient", ts - timedelta(minutes=10))]
        assert shifted.metrics == baseline[("aq-library-ambient", ts)].metrics

    reset = faults["counter_reset"]
    register = [
        (ts, readings[("em-willow-court-main", ts)].metrics["energy_kwh"])
        for ts in sorted(ts for s, ts in readings if s == "em-willow-court-main")
    ]
    falls = [ts for (_, a), (ts, b) in pairwise(register) if b < a]
    assert falls == [reset.start]
    after = dict(register)
    assert after[reset.start] < 1.0
    assert 0 < after[reset.start + timedelta(hours=1)] < 300  # counting on from zero

    dead = faults["dead"]
    assert not [
        ts for s, ts in readings if s == "cr-canal-west" and ts > dead.start + timedelta(minutes=1)
    ]
    assert dead.end == datetime.fromisoformat("2024-11-09T00:00:00+08:00")

"""The traffic index: GB/T 33171 grades at every boundary, the TPI mapping, segments,
districts, and an accident in the simulated city driving its segment into congestion."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from simulators.engine import City
from simulators.scenario import parse_scenario
from stream.indices.traffic import (
    GRADE_SPEEDS_KMH,
    CongestionGrade,
    DistrictIndex,
    GradeScale,
    LaneObservation,
    SegmentIndex,
    SpeedBasis,
    TrafficError,
    district_index,
    grade_of_tpi,
    segment_index,
    space_mean_speed,
)
from telemetry import Kind, Reading
from telemetry.registry import RoadClass, RoadSegment

TS = datetime(2024, 10, 8, 1, 0, tzinfo=UTC)
NOMINAL = {  # T1 + (T1 - T2): the free-flow speed at which the table applies unscaled
    RoadClass.EXPRESSWAY: 80.0,
    RoadClass.ARTERIAL: 50.0,
    RoadClass.SECONDARY: 45.0,
    RoadClass.BRANCH: 45.0,
}


def road(
    road_class: RoadClass | None = RoadClass.ARTERIAL,
    free_flow: float = 50.0,
    length_m: float = 1000.0,
    segment_id: str = "seg-a",
) -> RoadSegment:
    return RoadSegment(
        id=segment_id,
        name="A Road",
        district="d",
        road_class=road_class,
        free_flow_speed_kmh=free_flow,
        lanes=2,
        length_m=length_m,
    )


# ---------------------------------------------------------------- grades and TPI


def test_the_table_is_gbt_33171() -> None:
    assert GRADE_SPEEDS_KMH[RoadClass.EXPRESSWAY] == (65, 50, 35, 20)
    assert GRADE_SPEEDS_KMH[RoadClass.ARTERIAL] == (40, 30, 20, 15)
    assert GRADE_SPEEDS_KMH[RoadClass.SECONDARY] == (35, 25, 15, 10)
    assert GRADE_SPEEDS_KMH[RoadClass.BRANCH] == (35, 25, 15, 10)
    assert [g.label_zh for g in CongestionGrade] == [
        "畅通",
        "基本畅通",
        "轻度拥堵",
        "中度拥堵",
        "严重拥堵",
    ]


@pytest.mark.parametrize("road_class", list(RoadClass))
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_each_threshold_belongs_to_the_worse_grade(road_class: RoadClass, k: int) -> None:
    scale = GradeScale.of(road_class, NOMINAL[road_class])
    threshold = GRADE_SPEEDS_KMH[road_class][k]
    assert scale.thresholds_kmh == GRADE_SPEEDS_KMH[road_class]
    # The standard's bands are (lower, upper]: the threshold itself is the next grade.
    assert scale.grade(threshold) == CongestionGrade(k + 2)
    assert scale.grade(threshold + 0.01) == CongestionGrade(k + 1)
    assert scale.tpi(threshold) == 2.0 * (k + 1)
    assert scale.tpi(threshold + 0.01) < 2.0 * (k + 1)


@pytest.mark.parametrize(
    ("speed", "grade", "tpi"),
    [
        (90.0, CongestionGrade.SMOOTH, 0.0),  # above free flow
        (80.0, CongestionGrade.SMOOTH, 0.0),
        (72.5, CongestionGrade.SMOOTH, 1.0),  # 2 * (80 - 72.5) / (80 - 65)
        (57.5, CongestionGrade.BASICALLY_SMOOTH, 3.0),  # 2 + 2 * 7.5 / 15
        (42.5, CongestionGrade.LIGHT, 5.0),  # 4 + 2 * 7.5 / 15
        (27.5, CongestionGrade.MODERATE, 7.0),  # 6 + 2 * 7.5 / 15
        (10.0, CongestionGrade.SEVERE, 9.0),  # 8 + 2 * 10 / 20
        (0.0, CongestionGrade.SEVERE, 10.0),
    ],
)
def test_expressway_by_hand(speed: float, grade: CongestionGrade, tpi: float) -> None:
    scale = GradeScale.of(RoadClass.EXPRESSWAY, 80.0)
    assert scale.grade(speed) == grade
    assert scale.tpi(speed) == pytest.approx(tpi)


def test_a_slow_road_is_scaled_so_that_its_free_flow_is_smooth() -> None:
    scale = GradeScale.of(RoadClass.BRANCH, 30.0)  # Canal Lane: 30 km/h, nominal 45
    assert scale.thresholds_kmh == pytest.approx((35 * 2 / 3, 25 * 2 / 3, 10.0, 10 * 2 / 3))
    assert scale.grade(30.0) == CongestionGrade.SMOOTH
    assert scale.tpi(30.0) == 0.0
    assert scale.grade(scale.thresholds_kmh[0]) == CongestionGrade.BASICALLY_SMOOTH
    assert scale.tpi(10.0) == pytest.approx(6.0)  # the scaled T3
    # A fast expressway keeps the table; its smooth band runs up to its own free flow.
    fast = GradeScale.of(RoadClass.EXPRESSWAY, 100.0)
    assert fast.thresholds_kmh == (65.0, 50.0, 35.0, 20.0)
    assert fast.tpi(100.0) == 0.0
    assert fast.tpi(82.5) == pytest.approx(1.0)


def test_a_segment_without_class_is_graded_as_an_arterial() -> None:
    assert GradeScale.for_segment(road(road_class=None)).road_class is RoadClass.ARTERIAL


def test_grade_of_tpi_bands() -> None:
    assert [grade_of_tpi(t) for t in (0.0, 1.99, 2.0, 4.0, 6.0, 7.99, 8.0, 10.0)] == [
        CongestionGrade(g) for g in (1, 1, 2, 3, 4, 4, 5, 5)
    ]
    with pytest.raises(TrafficError, match=r"tpi 10\.5 is outside"):
        grade_of_tpi(10.5)


@given(
    road_class=st.sampled_from(list(RoadClass)),
    free_flow=st.floats(5.0, 150.0),
    a=st.floats(0.0, 200.0),
    b=st.floats(0.0, 200.0),
)
def test_tpi_is_bounded_monotonic_and_agrees_with_the_grade(
    road_class: RoadClass, free_flow: float, a: float, b: float
) -> None:
    scale = GradeScale.of(road_class, free_flow)
    slow, fast = sorted((a, b))
    assert 0.0 <= scale.tpi(fast) <= scale.tpi(slow) <= 10.0
    if fast - slow > 1e-6 and fast <= free_flow:
        assert scale.tpi(slow) > scale.tpi(fast)  # strictly, below free flow
    low, high = scale.grade(slow).tpi_band
    assert low <= scale.tpi(slow) <= high


# ---------------------------------------------------------------- one segment


def test_space_mean_speed_is_volume_weighted_harmonic() -> None:
    lanes = [LaneObservation(30, 60.0), LaneObservation(10, 20.0), LaneObservation(0, 0.0)]
    # 40 vehicles over 30/60 + 10/20 = 1 vehicle-hour per km: 40 km/h (arithmetic: 50).
    assert space_mean_speed(lanes) == pytest.approx(40.0)
    assert space_mean_speed([LaneObservation(5, 0.0), LaneObservation(5, 50.0)]) == 0.0
    assert space_mean_speed([]) is None
    with pytest.raises(TrafficError, match="vehicle_count -1"):
        space_mean_speed([LaneObservation(-1, 50.0, sensor_id="tr-1")])


def test_segment_figures_by_hand() -> None:
    index = segment_index(
        road(RoadClass.ARTERIAL, 50.0, length_m=1200.0),
        [LaneObservation(20, 30.0, 12.0), LaneObservation(10, 15.0, 30.0)],
        ts=TS,
        direction="northbound",
    )
    assert index.speed_kmh == pytest.approx(22.5)
    assert index.speed_ratio == pytest.approx(0.45)
    assert index.travel_time_index == pytest.approx(50 / 22.5)
    assert index.grade is CongestionGrade.LIGHT
    assert index.tpi == pytest.approx(5.5)
    assert index.vehicles == 30
    assert index.vehicle_km == pytest.approx(36.0)
    assert (index.basis, index.direction, index.lanes) == (SpeedBasis.MEASURED, "northbound", 2)


def test_no_vehicles_is_free_flow_unless_the_detectors_stand_occupied() -> None:
    empty = segment_index(road(), [LaneObservation(0, 0.0, 0.5)], ts=TS)
    assert (empty.basis, empty.speed_kmh, empty.tpi) == (SpeedBasis.NO_TRAFFIC, 50.0, 0.0)
    jam = segment_index(
        road(), [LaneObservation(0, 0.0, 95.0), LaneObservation(0, 0.0, 90.0)], ts=TS
    )
    assert (jam.basis, jam.speed_kmh, jam.tpi) == (SpeedBasis.STANDSTILL, 0.0, 10.0)
    assert jam.travel_time_index is None
    assert jam.grade is CongestionGrade.SEVERE


def test_segment_errors_name_the_problem() -> None:
    with pytest.raises(TrafficError, match="segment seg-a: no lane observations"):
        segment_index(road(), [], ts=TS)
    with pytest.raises(TrafficError, match="has no time zone"):
        segment_index(road(), [LaneObservation(1, 1.0)], ts=datetime(2024, 1, 1))  # noqa: DTZ001
    with pytest.raises(TrafficError, match="speed_kmh must be a non-negative number, not -3"):
        segment_index(road(), [LaneObservation(1, -3.0)], ts=TS)


def test_lane_observation_from_reading() -> None:
    reading = Reading(
        sensor_id="tr-1",
        kind=Kind.TRAFFIC,
        ts=TS,
        seq=1,
        interval_s=60,
        metrics={"vehicle_count": 12, "mean_speed_kmh": 41.5, "occupancy_pct": 8.0},
    )
    assert LaneObservation.from_reading(reading) == LaneObservation(12, 41.5, 8.0, "tr-1")
    partial = reading.model_copy(update={"metrics": {"vehicle_count": 12}})
    with pytest.raises(TrafficError, match="tr-1 has no mean_speed_kmh"):
        LaneObservation.from_reading(partial)
    crowd = Reading(sensor_id="cr-1", kind=Kind.CROWD, ts=TS, seq=1, metrics={"count_in_view": 3})
    with pytest.raises(TrafficError, match="kind crowd, not traffic"):
        LaneObservation.from_reading(crowd)


# ---------------------------------------------------------------- districts


def rated(tpi: float, vehicle_km: float, length_km: float = 1.0) -> SegmentIndex:
    return SegmentIndex(
        segment_id="s",
        direction=None,
        ts=TS,
        road_class=RoadClass.ARTERIAL,
        length_km=length_km,
        lanes=1,
        vehicles=vehicle_km / length_km,
        vehicle_km=vehicle_km,
        speed_kmh=30.0,
        basis=SpeedBasis.MEASURED,
        speed_ratio=0.6,
        travel_time_index=1 / 0.6,
        grade=grade_of_tpi(tpi),
        tpi=tpi,
    )


def test_district_tpi_is_weighted_by_vehicle_kilometres() -> None:
    district = district_index("lakeside", [rated(9.0, 100.0), rated(1.0, 300.0), rated(5.0, 0.0)])
    assert district.tpi == pytest.approx((9 * 100 + 1 * 300) / 400)  # 3.0
    assert district.grade is CongestionGrade.BASICALLY_SMOOTH
    assert district.weighting == "vehicle_km"
    assert district.congested_share == pytest.approx(0.25)
    assert (district.vehicle_km, district.segments) == (400.0, 3)


def test_typical_vehicle_kilometres_keep_a_jammed_segment_heavy() -> None:
    jammed = rated(9.5, 20.0)  # a blocked arterial passes few vehicles
    smooth = replace(rated(1.0, 200.0), segment_id="ring")
    assert district_index("d", [jammed, smooth]).tpi == pytest.approx((9.5 * 20 + 200) / 220)
    typical: dict[tuple[str, str | None], float] = {("s", None): 150.0, ("ring", None): 200.0}
    weighted = district_index("d", [jammed, smooth], typical_vehicle_km=typical)
    assert weighted.tpi == pytest.approx((9.5 * 150 + 1 * 200) / 350)
    assert weighted.weighting == "typical_vehicle_km"
    assert weighted.vehicle_km == pytest.approx(220.0)
    with pytest.raises(TrafficError, match="typical_vehicle_km of s must be >= 0, not -1"):
        district_index("d", [jammed], typical_vehicle_km={("s", None): -1.0})


def test_a_district_without_traffic_weighs_by_length() -> None:
    district = district_index("old-town", [rated(0.0, 0.0, 3.0), rated(4.0, 0.0, 1.0)])
    assert district.weighting == "length"
    assert district.tpi == pytest.approx(1.0)
    with pytest.raises(TrafficError, match="district old-town: no segment figures"):
        district_index("old-town", [])


@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 1e4)), min_size=1, max_size=8))
@example(parts=[(0.5, 5e-324)])  # a weight that underflowed to 0 when multiplied
def test_district_tpi_lies_between_its_segments(parts: list[tuple[float, float]]) -> None:
    segments = [rated(tpi, vkm) for tpi, vkm in parts]
    district = district_index("d", segments)
    tpis = [s.tpi for s in segments]
    assert min(tpis) - 1e-9 <= district.tpi <= max(tpis) + 1e-9


# ---------------------------------------------------------------- the simulated city


ACCIDENT = """
version: 1
name: a morning accident on Hubin Road
seed: 5
start: 2024-10-15T07:30:00+08:00
duration: 3h
incidents:
  - {kind: traffic_accident, segment: seg-hubin-road, direction: northbound,
     start: 2024-10-15T08:30:00+08:00, duration: 40m}
"""


def test_an_accident_drives_its_segment_into_congestion_until_the_queue_clears() -> None:
    city = City(parse_scenario(ACCIDENT))
    registry = city.registry
    lanes: dict[tuple[str, str, datetime], list[LaneObservation]] = defaultdict(list)
    for reading in city.run():
        if reading.kind is Kind.TRAFFIC:
            sensor = registry.sensor(reading.sensor_id)
            key = (sensor.segment or "", str(sensor.direction), reading.ts)
            lanes[key].append(LaneObservation.from_reading(reading))
    figures = {
        key: segment_index(registry.road_segment(key[0]), group, ts=key[2], direction=key[1])
        for key, group in lanes.items()
    }
    accident = next(e for e in city.truth if e.kind == "traffic_accident")

    def tpis(direction: str, start: datetime, end: datetime) -> list[float]:
        return [
            f.tpi
            for (segment, d, ts), f in figures.items()
            if segment == "seg-hubin-road" and d == direction and start <= ts < end
        ]

    minutes = timedelta(minutes=1)
    before = tpis("northbound", accident.start - 30 * minutes, accident.start)
    during = tpis("northbound", accident.start + 5 * minutes, accident.start + 40 * minutes)
    after = tpis("northbound", accident.end + 5 * minutes, accident.end + 30 * minutes)
    assert len(before) == len(during) - 5 == 30
    assert max(before) < 6  # the morning peak: at worst lightly congested
    assert min(during) >= 8  # severely congested while the lanes are blocked
    assert max(after) < 4  # the queue has cleared
    assert max(tpis("southbound", accident.start, accident.end)) < 6  # the other way is fine

    # Weighed by the interval's own vehicle-kilometres, the blocked direction (which
    # passes a quarter of its usual traffic) loses weight as it jams; weighed by what
    # each direction carried in the half hour before, it keeps its weight.
    typical: dict[tuple[str, str | None], float] = defaultdict(float)
    for (segment, d, ts), f in figures.items():
        if accident.start - 30 * minutes <= ts < accident.start:
            typical[(segment, d)] += f.vehicle_km / 30

    def lakeside(at: datetime, weights: dict[tuple[str, str | None], float]) -> DistrictIndex:
        segments = [
            f
            for (segment, _, ts), f in figures.items()
            if ts == at and registry.road_segment(segment).district == "lakeside"
        ]
        return district_index("lakeside", segments, typical_vehicle_km=weights)

    usual = lakeside(accident.start - 10 * minutes, typical)
    jammed = lakeside(accident.start + 20 * minutes, typical)
    assert usual.congested_share == 0
    assert jammed.congested_share > 0.1  # Hubin Road northbound's share of the traffic
    assert jammed.tpi > usual.tpi
    assert jammed.tpi > lakeside(accident.start + 20 * minutes, {}).tpi + 0.5

"""Traffic congestion per road segment and per district: speed ratio, grade and TPI.

For one interval of one road segment (one direction, or both pooled), the lanes'
detector readings give:

* the **space-mean speed**: the volume-weighted harmonic mean of the lanes' mean
  speeds, ``sum(n_i) / sum(n_i / v_i)`` -- the speed that makes the counted vehicles'
  travel time over the segment right (an arithmetic mean would overstate it);
* the **speed ratio** ``v / v_ff`` to the segment's free-flow speed and the
  **travel-time index** ``v_ff / v`` (actual over free-flow travel time; ``None`` at a
  standstill);
* the **congestion grade** of GB/T 33171-2016 by average travel speed and road class;
* the **traffic performance index** (TPI, 交通运行指数), 0-10, whose bands match the
  grades: 0-2 畅通, 2-4 基本畅通, 4-6 轻度拥堵, 6-8 中度拥堵, 8-10 严重拥堵.

A district's TPI is the vehicle-kilometre-weighted mean of its segments' TPIs
(:func:`district_index` explains which vehicle-kilometres).

GB/T 33171-2016 grades
----------------------
《城市交通运行状况评价规范》 grades a road segment by its average travel speed ``v``
(km/h). Thresholds ``T1 > T2 > T3 > T4`` per road class; 畅通 ``v > T1``, 基本畅通
``T2 < v <= T1``, 轻度拥堵 ``T3 < v <= T2``, 中度拥堵 ``T4 < v <= T3``, 严重拥堵
``v <= T4``:

==================  ====  ====  ====  ====
road class          T1    T2    T3    T4
==================  ====  ====  ====  ====
快速路 expressway    65    50    35    20
主干路 arterial      40    30    20    15
次干路 secondary     35    25    15    10
支路 branch          35    25    15    10
==================  ====  ====  ====  ====

Source: the standard's segment-grade table as reproduced in a Hans Publishers paper
(html.hanspub.org/file/_6-1700079_1_hanspub.htm); the standard's own text was not at
hand, so check the table against it before relying on the exact figures.

Assumptions (ours, not the standard's):

* A segment without a ``road_class`` is graded as an arterial.
* The standard grades the *average travel speed* over the segment; a detector's speed
  at one point stands in for it. On a signalised road that point speed misses the
  delay at the junction, so the grade leans optimistic there.
* The table suits roads whose free-flow speed is at least the class's *nominal*
  free-flow speed ``F = T1 + (T1 - T2)`` (80, 50, 45, 45 km/h). A slower road (a
  30 km/h old-town lane) would otherwise never be 畅通, even empty; its thresholds are
  scaled by ``v_ff / F``, so the table keeps its shape and the road at its own
  free-flow speed is 畅通.
* The TPI is piecewise-linear in speed through the anchors ``(v_ff, 0)``, ``(T1, 2)``,
  ``(T2, 4)``, ``(T3, 6)``, ``(T4, 8)``, ``(0, 10)`` and 0 above ``v_ff``: it falls
  continuously and strictly as speed rises up to free flow, and a speed of grade ``g``
  (1 畅通 ... 5 严重拥堵) has a TPI in ``[2(g - 1), 2g]``. Beijing's DB11/T 785 derives a
  *network* TPI from the share of congested road mileage instead; here the district's
  figure is the vehicle-kilometre-weighted mean of segment TPIs (see
  :func:`district_index`), and :attr:`DistrictIndex.congested_share` gives the
  mileage-share view alongside.

>>> from datetime import UTC, datetime
>>> from telemetry.registry import RoadSegment
>>> segment = RoadSegment(id="seg-a", name="A Road", district="d", road_class="arterial",
...                       free_flow_speed_kmh=50.0, lanes=2, length_m=1200.0)
>>> lanes = [LaneObservation(vehicle_count=20, mean_speed_kmh=30.0),
...          LaneObservation(vehicle_count=10, mean_speed_kmh=15.0)]
>>> index = segment_index(segment, lanes, ts=datetime(2024, 10, 8, 1, tzinfo=UTC))
>>> index.speed_kmh, index.speed_ratio, index.travel_time_index  # 30 / (20/30 + 10/15)
(22.5, 0.45, 2.22...)
>>> index.grade, index.grade.label_zh, index.tpi
(<CongestionGrade.LIGHT: 3>, '轻度拥堵', 5.5)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from itertools import pairwise
from types import MappingProxyType
from typing import Final

from telemetry import Kind, Reading
from telemetry.registry import RoadClass, RoadSegment

__all__ = [
    "DEFAULT_ROAD_CLASS",
    "GRADE_SPEEDS_KMH",
    "CongestionGrade",
    "DistrictIndex",
    "GradeScale",
    "LaneObservation",
    "SegmentIndex",
    "SpeedBasis",
    "TrafficError",
    "district_index",
    "grade_of_tpi",
    "segment_index",
    "space_mean_speed",
]


class TrafficError(ValueError):
    """A traffic input that cannot be rated; the message names the field and the value."""


class CongestionGrade(IntEnum):
    """The road-segment congestion grades of GB/T 33171-2016, 1 (best) to 5 (worst)."""

    SMOOTH = 1
    """畅通: free flow."""
    BASICALLY_SMOOTH = 2
    """基本畅通: some slowing."""
    LIGHT = 3
    """轻度拥堵: lightly congested."""
    MODERATE = 4
    """中度拥堵: moderately congested."""
    SEVERE = 5
    """严重拥堵: severely congested."""

    @property
    def label_zh(self) -> str:
        """The grade's name in the standard."""
        return _LABELS_ZH[self.value]

    @property
    def tpi_band(self) -> tuple[float, float]:
        """The TPI range of the grade: ``(2(g - 1), 2g)``."""
        return 2.0 * (self.value - 1), 2.0 * self.value


_LABELS_ZH: Final = {1: "畅通", 2: "基本畅通", 3: "轻度拥堵", 4: "中度拥堵", 5: "严重拥堵"}

GRADE_SPEEDS_KMH: Mapping[RoadClass, tuple[float, float, float, float]] = MappingProxyType(
    {
        RoadClass.EXPRESSWAY: (65.0, 50.0, 35.0, 20.0),
        RoadClass.ARTERIAL: (40.0, 30.0, 20.0, 15.0),
        RoadClass.SECONDARY: (35.0, 25.0, 15.0, 10.0),
        RoadClass.BRANCH: (35.0, 25.0, 15.0, 10.0),
    }
)
"""GB/T 33171-2016: the lower speed bounds (km/h) of 畅通, 基本畅通, 轻度 and 中度拥堵."""

DEFAULT_ROAD_CLASS: Final = RoadClass.ARTERIAL
"""The class a segment without ``road_class`` is graded as."""


def grade_of_tpi(tpi: float) -> CongestionGrade:
    """The grade whose TPI band holds ``tpi``: [0, 2) 畅通 ... [8, 10] 严重拥堵.

    >>> grade_of_tpi(0.0).label_zh, grade_of_tpi(2.0).label_zh, grade_of_tpi(10.0).label_zh
    ('畅通', '基本畅通', '严重拥堵')
    """
    if not 0.0 <= tpi <= 10.0:
        msg = f"tpi {tpi!r} is outside [0, 10]"
        raise TrafficError(msg)
    return CongestionGrade(min(5, int(tpi // 2.0) + 1))


@dataclass(frozen=True, slots=True)
class GradeScale:
    """The speed thresholds and TPI anchors of one road segment.

    Attributes:
        road_class: the class whose GB/T 33171 thresholds apply.
        free_flow_speed_kmh: the segment's free-flow speed, where the TPI reaches 0.
        thresholds_kmh: ``(T1, T2, T3, T4)`` after scaling for a slow road.

    >>> scale = GradeScale.of(RoadClass.EXPRESSWAY, 80.0)
    >>> scale.grade(65.0).label_zh, scale.tpi(65.0), scale.tpi(20.0), scale.tpi(0.0)
    ('基本畅通', 2.0, 8.0, 10.0)
    >>> GradeScale.of(RoadClass.BRANCH, 30.0).thresholds_kmh  # scaled by 30 / 45
    (23.33..., 16.66..., 10.0, 6.66...)
    """

    road_class: RoadClass
    free_flow_speed_kmh: float
    thresholds_kmh: tuple[float, float, float, float]

    @classmethod
    def of(cls, road_class: RoadClass | None, free_flow_speed_kmh: float) -> GradeScale:
        """The scale of a road of this class and free-flow speed (see the module notes)."""
        if not (math.isfinite(free_flow_speed_kmh) and free_flow_speed_kmh > 0):
            msg = f"free_flow_speed_kmh must be a positive number, not {free_flow_speed_kmh!r}"
            raise TrafficError(msg)
        road_class = road_class or DEFAULT_ROAD_CLASS
        t1, t2, t3, t4 = GRADE_SPEEDS_KMH[road_class]
        nominal = t1 + (t1 - t2)
        factor = min(1.0, free_flow_speed_kmh / nominal)
        scaled = (t1 * factor, t2 * factor, t3 * factor, t4 * factor)
        return cls(road_class, free_flow_speed_kmh, scaled)

    @classmethod
    def for_segment(cls, segment: RoadSegment) -> GradeScale:
        """The scale of a registry road segment."""
        return cls.of(segment.road_class, segment.free_flow_speed_kmh)

    def grade(self, speed_kmh: float) -> CongestionGrade:
        """The GB/T 33171 grade of an average travel speed (upper bounds inclusive)."""
        _check_speed(speed_kmh)
        for grade, threshold in enumerate(self.thresholds_kmh, start=1):
            if speed_kmh > threshold:
                return CongestionGrade(grade)
        return CongestionGrade.SEVERE

    def tpi(self, speed_kmh: float) -> float:
        """The traffic performance index, 0-10, piecewise-linear in speed."""
        _check_speed(speed_kmh)
        anchors = (self.free_flow_speed_kmh, *self.thresholds_kmh, 0.0)
        if speed_kmh >= anchors[0]:
            return 0.0
        for band, (upper, lower) in enumerate(pairwise(anchors)):
            if speed_kmh >= lower:
                return min(10.0, 2.0 * band + 2.0 * (upper - speed_kmh) / (upper - lower))
        return 10.0


def _check_speed(speed_kmh: float) -> None:
    if not (math.isfinite(speed_kmh) and speed_kmh >= 0):
        msg = f"speed_kmh must be a non-negative number, not {speed_kmh!r}"
        raise TrafficError(msg)


# ---------------------------------------------------------------- one segment


@dataclass(frozen=True, slots=True)
class LaneObservation:
    """One lane detector's reading over an interval.

    Attributes:
        vehicle_count: vehicles counted in the interval.
        mean_speed_kmh: their mean speed.
        occupancy_pct: the share of the interval the detector was occupied, if known.
        sensor_id: the detector, for tracing.
    """

    vehicle_count: float
    mean_speed_kmh: float
    occupancy_pct: float | None = None
    sensor_id: str = ""

    @classmethod
    def from_reading(cls, reading: Reading) -> LaneObservation:
        """A traffic reading's lane values; :class:`TrafficError` naming what is missing."""
        if reading.kind is not Kind.TRAFFIC:
            msg = f"reading of {reading.sensor_id} has kind {reading.kind}, not traffic"
            raise TrafficError(msg)
        metrics = reading.metrics
        for name in ("vehicle_count", "mean_speed_kmh"):
            if name not in metrics:
                msg = f"traffic reading of {reading.sensor_id} has no {name}"
                raise TrafficError(msg)
        return cls(
            vehicle_count=metrics["vehicle_count"],
            mean_speed_kmh=metrics["mean_speed_kmh"],
            occupancy_pct=metrics.get("occupancy_pct"),
            sensor_id=reading.sensor_id,
        )


class SpeedBasis(StrEnum):
    """Where a segment's speed came from."""

    MEASURED = "measured"
    """The counted vehicles' space-mean speed."""
    NO_TRAFFIC = "no_traffic"
    """No vehicle passed and the detectors were mostly free: free flow assumed."""
    STANDSTILL = "standstill"
    """No vehicle passed while the detectors stood occupied: speed 0."""


def space_mean_speed(lanes: Iterable[LaneObservation]) -> float | None:
    """The volume-weighted harmonic mean speed, ``sum(n) / sum(n / v)``; None without vehicles.

    A lane that counted vehicles at speed 0 makes the mean 0 (they never cross). The
    lanes' means should themselves be space-mean speeds (as the simulator's are); the
    arithmetic mean of spot speeds that some detectors report overstates it a little.

    >>> space_mean_speed([LaneObservation(10, 60.0), LaneObservation(10, 30.0)])
    40.0
    >>> space_mean_speed([LaneObservation(0, 0.0)]) is None
    True
    """
    vehicles = hours = 0.0
    for lane in lanes:
        if lane.vehicle_count < 0 or not math.isfinite(lane.vehicle_count):
            msg = f"vehicle_count {lane.vehicle_count!r} of {lane.sensor_id or 'a lane'} is invalid"
            raise TrafficError(msg)
        if lane.vehicle_count == 0:
            continue
        _check_speed(lane.mean_speed_kmh)
        if lane.mean_speed_kmh == 0:
            return 0.0
        vehicles += lane.vehicle_count
        hours += lane.vehicle_count / lane.mean_speed_kmh
    return vehicles / hours if vehicles > 0 else None


@dataclass(frozen=True, slots=True)
class SegmentIndex:
    """The congestion figures of one road segment over one interval.

    Attributes:
        segment_id: the road segment.
        direction: the direction rated, or None when every lane was pooled.
        ts: the interval's end (event time, UTC).
        road_class: the class graded by.
        length_km: the segment's length.
        lanes: how many lane observations went in.
        vehicles: vehicles counted over the interval, all lanes.
        vehicle_km: ``vehicles * length_km``, the district weight.
        speed_kmh: the space-mean speed (see :attr:`basis`).
        basis: whether the speed was measured, or assumed for an empty road or a jam.
        speed_ratio: ``speed_kmh / free-flow speed``.
        travel_time_index: ``free-flow speed / speed_kmh``; None at a standstill.
        grade: the GB/T 33171 grade.
        tpi: the traffic performance index, 0-10.
    """

    segment_id: str
    direction: str | None
    ts: datetime
    road_class: RoadClass
    length_km: float
    lanes: int
    vehicles: float
    vehicle_km: float
    speed_kmh: float
    basis: SpeedBasis
    speed_ratio: float
    travel_time_index: float | None
    grade: CongestionGrade
    tpi: float


def segment_index(
    segment: RoadSegment,
    lanes: Iterable[LaneObservation],
    *,
    ts: datetime,
    direction: str | None = None,
    standstill_occupancy_pct: float = 50.0,
) -> SegmentIndex:
    """Rate one segment (or one direction of it) from its lanes' readings of one interval.

    Args:
        segment: the road segment, from the registry.
        lanes: the interval's lane observations, one per detector. Give one direction's
            lanes to rate that direction: congestion is often one-sided, and pooling
            both directions would dilute it.
        ts: the interval's end, event time (aware).
        direction: the direction the lanes watch, for the record.
        standstill_occupancy_pct: when no vehicle was counted, a mean occupancy at or
            above this means a standing queue (speed 0), below it an empty road (free
            flow).

    Raises:
        TrafficError: no lanes, a naive ``ts``, or a negative count or speed.
    """
    observed = list(lanes)
    if not observed:
        msg = f"segment {segment.id}: no lane observations to rate"
        raise TrafficError(msg)
    if ts.tzinfo is None:
        msg = f"ts {ts.isoformat()} of segment {segment.id} has no time zone"
        raise TrafficError(msg)
    scale = GradeScale.for_segment(segment)
    speed = space_mean_speed(observed)
    basis = SpeedBasis.MEASURED
    if speed is None:
        occupancies = [lane.occupancy_pct for lane in observed if lane.occupancy_pct is not None]
        jammed = bool(occupancies) and (
            sum(occupancies) / len(occupancies) >= standstill_occupancy_pct
        )
        basis = SpeedBasis.STANDSTILL if jammed else SpeedBasis.NO_TRAFFIC
        speed = 0.0 if jammed else segment.free_flow_speed_kmh
    vehicles = math.fsum(lane.vehicle_count for lane in observed)
    length_km = segment.length_m / 1000.0
    return SegmentIndex(
        segment_id=segment.id,
        direction=direction,
        ts=ts,
        road_class=scale.road_class,
        length_km=length_km,
        lanes=len(observed),
        vehicles=vehicles,
        vehicle_km=vehicles * length_km,
        speed_kmh=speed,
        basis=basis,
        speed_ratio=speed / segment.free_flow_speed_kmh,
        travel_time_index=segment.free_flow_speed_kmh / speed if speed > 0 else None,
        grade=scale.grade(speed),
        tpi=scale.tpi(speed),
    )


# ---------------------------------------------------------------- a district


@dataclass(frozen=True, slots=True)
class DistrictIndex:
    """A district's congestion over one interval.

    Attributes:
        district_id: the district.
        ts: the latest interval end among its segments.
        tpi: the weighted mean of the segments' TPIs.
        grade: the grade of that TPI's band.
        weighting: ``vehicle_km`` (the interval's), ``typical_vehicle_km`` (the
            caller's), or ``length`` when every weight was 0.
        vehicle_km: the vehicle-kilometres over the interval, all segments.
        segments: how many segment figures went in.
        congested_share: the share of the weight on segments graded 中度 or 严重拥堵.
    """

    district_id: str
    ts: datetime
    tpi: float
    grade: CongestionGrade
    weighting: str
    vehicle_km: float
    segments: int
    congested_share: float


def district_index(
    district_id: str,
    segments: Iterable[SegmentIndex],
    *,
    typical_vehicle_km: Mapping[tuple[str, str | None], float] | None = None,
) -> DistrictIndex:
    """The vehicle-kilometre-weighted mean TPI of a district's segments.

    A segment weighs by the vehicle-kilometres driven on it, so a busy expressway
    counts more than a quiet lane. The interval's own vehicle-kilometres have a flaw:
    a jammed segment passes *fewer* vehicles, so its weight falls just as its TPI
    rises (a blocked arterial can lower its district's figure). Pass
    ``typical_vehicle_km`` -- per ``(segment_id, direction)``, what the segment usually
    carries in such an interval (an average of its ``vehicle_km`` at this hour of the
    week, kept by the caller; Beijing's index uses fixed historical weights in the same
    way) -- to weigh by demand instead; segments missing from it weigh by their
    interval's figure. When every weight is 0 (a night without traffic), segments weigh
    by their length.

    >>> from datetime import UTC, datetime
    >>> at = datetime(2024, 10, 8, tzinfo=UTC)
    >>> def rated(tpi: float, vehicle_km: float) -> SegmentIndex:
    ...     return SegmentIndex("s", None, at, RoadClass.ARTERIAL, 1.0, 1, vehicle_km,
    ...                         vehicle_km, 30.0, SpeedBasis.MEASURED, 0.6, 1.7,
    ...                         grade_of_tpi(tpi), tpi)
    >>> d = district_index("lakeside", [rated(8.0, 300.0), rated(2.0, 100.0)])
    >>> d.tpi, d.grade.label_zh, d.congested_share  # (8 * 300 + 2 * 100) / 400
    (6.5, '中度拥堵', 0.75)

    Raises:
        TrafficError: no segments, or a negative typical figure.
    """
    rated = list(segments)
    if not rated:
        msg = f"district {district_id}: no segment figures to combine"
        raise TrafficError(msg)
    typical = typical_vehicle_km or {}
    weights = []
    for segment in rated:
        weight = typical.get((segment.segment_id, segment.direction), segment.vehicle_km)
        if not (math.isfinite(weight) and weight >= 0):
            msg = f"typical_vehicle_km of {segment.segment_id} must be >= 0, not {weight!r}"
            raise TrafficError(msg)
        weights.append(weight)
    weighting = "typical_vehicle_km" if typical else "vehicle_km"
    if math.fsum(weights) <= 0:
        weights, weighting = [s.length_km for s in rated], "length"
    # Relative to the largest, so that a weight as small as 5e-324 does not underflow
    # to 0 when multiplied by a TPI and leave a mean below every segment's.
    top = max(weights)
    weights = [w / top for w in weights]
    total = math.fsum(weights)
    tpi = math.fsum(w * s.tpi for w, s in zip(weights, rated, strict=True)) / total
    tpi = min(10.0, max(0.0, tpi))
    congested = math.fsum(
        w for w, s in zip(weights, rated, strict=True) if s.grade >= CongestionGrade.MODERATE
    )
    return DistrictIndex(
        district_id=district_id,
        ts=max(s.ts for s in rated),
        tpi=tpi,
        grade=grade_of_tpi(tpi),
        weighting=weighting,
        vehicle_km=math.fsum(s.vehicle_km for s in rated),
        segments=len(rated),
        congested_share=congested / total,
    )

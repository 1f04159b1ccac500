"""A simulated per-lane traffic detector whose flow, speed and occupancy share one state.

:class:`LaneModel` gives the three metrics of ``Kind.TRAFFIC`` over any half-open interval
``[t0, t1)`` of UTC time (:meth:`~LaneModel.values`), and the noiseless state behind them
(:meth:`~LaneModel.state`), as a pure function of its parameters and the times asked: no
state, no clock, no dependence on the order of calls, so a seed gives byte-identical values
on every run. :class:`TrafficDetectorDriver` makes it an edge-agent driver that reads an
injectable clock and reports the vehicles counted since its previous read.

>>> from datetime import UTC, datetime, timedelta
>>> lane = LaneModel(seed=1, segment_seed=seed_of("ring-k3:northbound"),
...                  road_class=RoadClass.EXPRESSWAY, lanes=3, lane=1)
>>> t0 = datetime(2024, 5, 8, 0, tzinfo=UTC)  # a Wednesday, 08:00 in Beijing
>>> t1, t2 = t0 + timedelta(minutes=7, seconds=13), t0 + timedelta(minutes=15)
>>> sorted(lane.values(t0, t2))
['mean_speed_kmh', 'occupancy_pct', 'vehicle_count']
>>> lane.state(t0, t1).vehicle_count + lane.state(t1, t2).vehicle_count == (
...     lane.state(t0, t2).vehicle_count)
True
>>> peak, night = lane.state(t0, t2), lane.state(t0 - timedelta(hours=4), t2 - timedelta(hours=4))
>>> peak.flow_veh_h > 8 * night.flow_veh_h, peak.mean_speed_kmh < night.mean_speed_kmh
(True, True)
>>> abs(peak.flow_veh_h - peak.density_veh_km * peak.mean_speed_kmh) < 1e-6 * peak.flow_veh_h
True
>>> driver = TrafficDetectorDriver(TrafficDetectorOptions(segment="ring-k3"), clock=lambda: t0)
>>> driver.open()
>>> driver.read()["vehicle_count"]
0
>>> driver.close()

How a value is made
-------------------
One lane is a point queue in front of a bottleneck, simulated on 30-second steps
(:data:`STEP_S`) through each *traffic day*, which runs from 03:00 to 03:00 local time,
when the road is nearly empty. A traffic day is simulated once and cached per model
(measured here: 16 ms for a day; 25-50 us per read at 1-10 s steps over a day after
that), and the result is a pure function of the day.

1. **Demand** (:meth:`~LaneModel.demand_veh_h`, vehicles per hour arriving at the lane)
   is ``capacity * peak_demand_ratio * shape(t) * lane_share * day * wobble * events``:

   * ``shape`` is a daily profile in local time, 1 at the day's heavier weekday peak.
     Weekdays have a morning peak near 07:55 and an evening peak near 18:00 (Gaussian
     humps of 0.7 h and 0.8 h) over a piecewise-linear base with a midday shoulder of
     about 0.6 and a night low of 7 % at 03:00-04:00; Monday's morning hump is 5 %
     higher, Friday's evening hump 6 % higher and its late evening busier. Saturday and
     Sunday have no morning peak but one broad hump of 0.66-0.71 from 11:00 to 17:00
     (Sunday's a little lower and ending earlier). ``direction_bias`` ``b`` scales the
     morning hump by ``1 + 0.8 b`` and the evening one by ``1 - 0.8 b``, and the profile
     is rescaled so that the heavier peak is 1: the two directions of a radial road
     mirror each other (inbound heavy in the morning with ``b > 0``, outbound in the
     evening with ``b < 0``).
   * ``lane_share`` is ``1 + 0.08 * c * shape``, ``c`` from +0.5 for the lane nearest the
     median (lane 1) to -0.5 for the kerb lane: inner lanes carry up to 4 % more at
     peak, outer lanes 4 % less, and nearly the same at night.
   * ``day`` is a seeded day-to-day factor: 4 % (sd) shared by every lane of the segment
     and direction (``segment_seed``) times 0.5 % of the lane's own (``seed``).
     ``wobble`` is a smooth within-day variation: 4 % of the segment's (knots every 20
     minutes) and 1.5 % of the lane's (knots every 10 minutes), cosine interpolated. All
     are held within 2.5 sd. Lanes of one segment therefore move together; other
     segments do not. On rare days the peak demand of a busy lane exceeds capacity and a
     short recurrent queue forms (speed about 47 % of free flow on an expressway).
   * ``events`` is the product of the ``demand_factors`` effects (an event, a holiday).

2. **Capacity** (:meth:`~LaneModel.capacity_veh_h`) is the road class's lane capacity
   times the product of the ``capacity_drops`` effects (the share that remains).

3. **Queue.** Each step, the arrivals join the queue; with no queue the bottleneck
   serves up to its capacity, with a queue it discharges at 95 % of it (the capacity
   drop after breakdown). What is served passes the detector: ``flow = min(queue/dt +
   demand, service rate)``. A queue left at 03:00 (only possible while an effect holds)
   carries into the next traffic day, so days join continuously.

4. **Fundamental diagram.** With ``v_f`` the lane's free-flow speed, ``C`` its capacity
   (without effects: the road at the detector is intact), ``r`` the speed at capacity as
   a share of ``v_f``, the critical density is ``k_c = C / (r v_f)`` and the jam density
   ``k_j``. The uncongested branch has ``v = v_f (1 - (1 - r) (q / C)^p)`` (a BPR-like
   curve: flat at low flow, falling near capacity) and ``k = q / v``; the congested
   branch is linear from ``(k_c, C)`` to ``(k_j, 0)``: ``k = k_j - (q / C)(k_j - k_c)``.
   The detector stands 100 m upstream of the bottleneck: it reads the uncongested branch
   at the served flow while the queue is shorter than that, the congested branch once
   the queue reaches it (blended linearly as the queue grows to 100 m). Speed is always
   ``q / k``, occupancy ``k * 7 m`` (a 5 m vehicle plus a 2 m loop), so ``q = k v`` holds
   and all three come from one state.

5. **Counts.** The vehicles passing in step ``s`` are a binomial draw ``B(30, q dt /
   30)`` (one vehicle per second at most; under-dispersed near capacity, as counts at
   capacity are) from a hash of the lane's seeds and ``s``. They pass evenly spaced
   within their step, the first half a headway after its start, so every headway is at
   least one second and a count over ``[t0, t1)`` is the number of passages in it:
   counts are integers and exactly additive over any split of an interval.

6. **Readings.** Over ``[t0, t1)``: ``vehicle_count`` is the count; ``mean_speed_kmh``
   is the space-mean speed ``integral(q) / integral(k)`` -- the flow-weighted harmonic
   mean of the steps' speeds, so the aggregated noiseless state still obeys ``q = k v``;
   within one step it is the step's speed. ``occupancy_pct`` is the time-weighted mean
   occupancy. When no vehicle passes (a short interval at night) the speed reported is
   still the model's speed. Detector noise multiplies speed by ``exp(s z)`` with ``s =
   sqrt(0.01^2 + 0.10^2 / n)`` (1 % instrument error, 10 % spread of the ``n`` vehicles'
   speeds, ``n >= 1``) and occupancy with ``s = sqrt(0.02^2 + 0.25^2 / n)``, ``z``
   hashed from the lane and the interval. Speed is rounded to 0.1 km/h, occupancy to
   0.01 %, both held within the catalogue's ranges.

Road classes
------------
:class:`RoadClass` is the registry's enum (:class:`telemetry.registry.RoadClass`), so a
segment's ``road_class`` is used as it is. Per lane, engineering assumptions -- typical
values, not data:

* capacity: CJJ 37-2012 (Code for design of urban road engineering) gives an expressway
  lane a design capacity of 1400-2000 pcu/h for design speeds of 60-100 km/h; the HCM a
  basic freeway lane 2200-2400 pc/h. An expressway lane here passes 1950 veh/h. At-grade
  roads are limited by their signals: with the HCM's base saturation flow of 1900 pc/h
  of green, an arterial's through lane with 80 % of the cycle green passes about 1500
  veh/h, a secondary road's about 1200, a branch's, with short greens and parking, 800.
  (CJJ 37's design capacity of an at-grade lane between junctions, 1300-1400 pcu/h at
  40-60 km/h, is of the same order.)
* peak-hour demand is 0.85 of capacity on expressways, less on minor roads; speed at
  capacity is 50-60 % of free flow (HCM speed-flow curves); jam density is 140
  veh/km/lane (a 7.1 m spacing, so occupancy tops out near 98 %).

==========  ========  ===========  ==========  =========  =========  ===
class       capacity  peak demand  free flow   v at cap.  k_c (v_f)  p
==========  ========  ===========  ==========  =========  =========  ===
expressway  1950/h    0.85         80 km/h     0.55       44 /km     3
arterial    1500/h    0.82         50 km/h     0.50       60 /km     2
secondary   1200/h    0.75         40 km/h     0.50       60 /km     2
branch      800/h     0.65         30 km/h     0.50       53 /km     2
==========  ========  ===========  ==========  =========  =========  ===

A lane's free-flow speed is the segment's times ``1 + 0.12 c`` (the median lane 6 %
faster, the kerb lane 6 % slower). When a low free-flow speed would put ``k_c`` above
60 % of ``k_j``, the speed at capacity is raised to keep it there; a free-flow speed so
low that the speed at capacity would exceed 95 % of it is refused.

Calibration
-----------
Data: Numenta Anomaly Benchmark v1.1, ``realTraffic/occupancy_6005.csv``: occupancy (%)
of one Minnesota DOT (Twin Cities) freeway detector, 2015-09-01 to 09-17, 2380 rows at
irregular steps (5 minutes for 74 % of them, 10 minutes for 14 %, some of hours, and
no rows from 09-04 22:41 to 09-08 10:44; denser by day than by night). Its timestamps
carry no zone; they are read as local time, the only reading in which its morning peak
falls in a rush hour. Hourly means of its rows (weekdays: 12 days, three of them
partial, 45-119 rows per hour; weekends: 2 days, 2-24 rows per hour): a sharp morning
peak (05:00 5.7 %, 06:00 11.9 %, 07:00 10.6 %, 08:00 7.4 %), a midday trough
(3.8-4.2 %), a flat afternoon (4.8-5.5 % from 14:00 to 18:00) and no evening peak -- an inbound
detector -- and a night low at 01:00 (0.89 %). At weekends no morning peak and one
midday hump.

Simulated for comparison: an expressway lane 2 of 3 with the detector's character,
``free_flow_speed_kmh=105`` (NAB's ``speed_7578.csv``, another Twin Cities detector, has a
median of 66 mph = 106 km/h) and ``direction_bias=1``, the four weeks from 2024-03-04,
hourly means of the noiseless occupancy (seed 0; seeds 0-2 in brackets where they
differ), and 5-minute readings of seed 0 for the last two rows:

======================================  =====================  ======================
statistic                               real (6005)            simulated
======================================  =====================  ======================
weekday peak hour; its occupancy        06:00; 11.9 %          07:00; 11.6 % (11.6-12.3)
weekday night low: hour; occupancy      01:00; 0.89 %          03:00; 0.56 %
weekday peak / night low                13.3                   21 (20.9-21.4)
weekday midday 10:00-13:00              3.8-4.2 %              4.7-5.1 %
weekday 16:00-18:00 / morning peak      0.46                   0.46 (0.45-0.46)
weekday highest hour 17:00-19:00        5.5 %                  5.5 % (5.5-5.6)
weekend 07:00-09:00 / weekday's         0.29                   0.18 (0.17-0.18)
weekend max / weekday max; its hour     0.61; 13:00            0.50 (0.47-0.50); 14-15
5-min, weekdays 05:00-10:00: median,    7.6, 14.2, 22.3 %      5.6, 13.5, 20.3 %
90th percentile, max
5-min, weekdays: 10th, 50th, 90th pct   0.89, 3.83, 9.06 %     0.67, 4.46, 6.13 %
======================================  =====================  ======================

Matched: the level and height of the inbound morning peak (hourly and at 5 minutes),
the afternoon at under half the morning peak with no evening peak, a night low under
1 %, and weekends with no morning peak and one midday hump.

Not matched:

* The real morning peak comes an hour earlier (06:00 local) and is broader: hourly means
  above 5 % from 05:00 to 10:00, the model's from 07:00 to 10:00. So the real weekday 90th
  percentile is higher (9.1 % against 6.1 %). The model keeps the Chinese urban rush
  hours (07:00-09:00, 17:00-19:00) on purpose.
* The model's peak is sharper: peak / night 21 against 13; its night is lower (0.56 %
  against 0.89 %) and its midday 20 % higher.
* Weekends are quieter in the model: weekend mornings 0.18 of the weekday's against 0.29,
  the weekend hump 0.50 of the weekday peak against 0.61. Two real weekend days with 2-24
  rows an hour are weak evidence either way.
* Only occupancy was compared. Flow and speed are the assumptions above, not fitted: NAB
  has no flow series, and its speed and travel-time series come from other detectors
  and links. Lane-to-lane and segment-to-segment correlations are design choices (the
  day and wobble shares above), not measured.
* Queues have no spatial extent beyond the detector's 100 m and demand does not divert:
  a queue after an accident clears only as fast as the peak's demand falls (expressway
  lanes blocked to 25 % for 45 minutes from 17:30 on a Wednesday cleared at 19:15-19:47,
  over 4 seeds and 3 lanes).
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, ClassVar, NamedTuple, Self

from pydantic import Field, model_validator

from edge_agents.drivers.base import DriverOptions
from simulators.air_quality import seed_of
from simulators.base import Clock, Effect, SimulatedDriver, combined_factor, utc_now
from telemetry import CATALOGUE, Kind
from telemetry.registry import RoadClass

__all__ = [
    "DETECTOR_LENGTH_KM",
    "STEP_S",
    "ClassDefaults",
    "LaneModel",
    "LaneState",
    "RoadClass",
    "TrafficDetectorDriver",
    "TrafficDetectorOptions",
    "seed_of",
]


class ClassDefaults(NamedTuple):
    """A road class's per-lane assumptions (see the module docstring's table).

    Attributes:
        capacity_veh_h: the most vehicles per hour the lane passes.
        peak_demand_ratio: demand at the heavier weekday peak, as a share of capacity.
        jam_density_veh_km: vehicles per km of lane when traffic stands still.
        free_flow_speed_kmh: the free-flow speed when none is given.
        speed_ratio_at_capacity: speed at capacity as a share of free-flow speed.
        curve_exponent: how late speed falls on the uncongested branch (higher: later).
    """

    capacity_veh_h: float
    peak_demand_ratio: float
    jam_density_veh_km: float
    free_flow_speed_kmh: float
    speed_ratio_at_capacity: float
    curve_exponent: float


_CLASSES: dict[RoadClass, ClassDefaults] = {
    RoadClass.EXPRESSWAY: ClassDefaults(1950.0, 0.85, 140.0, 80.0, 0.55, 3.0),
    RoadClass.ARTERIAL: ClassDefaults(1500.0, 0.82, 140.0, 50.0, 0.50, 2.0),
    RoadClass.SECONDARY: ClassDefaults(1200.0, 0.75, 140.0, 40.0, 0.50, 2.0),
    RoadClass.BRANCH: ClassDefaults(800.0, 0.65, 140.0, 30.0, 0.50, 2.0),
}

STEP_S = 30
"""The simulation step, in seconds: queue, flow and speed are constant within a step."""
DETECTOR_LENGTH_KM = 0.007
"""Effective length of a vehicle over the loop: ~5 m of vehicle plus ~2 m of detector."""

_STEP_US = STEP_S * 1_000_000
_STEP_H = STEP_S / 3600.0
_MAX_PER_STEP = STEP_S  # one vehicle per second, the catalogue's max_rate_per_s
_DAY_S = 86_400
_DAY_START_S = 3 * 3600
"""A traffic day runs from 03:00 local time, when the road is nearly empty."""
_QUEUE_DISCHARGE = 0.95
"""A queue discharges at this share of capacity (the capacity drop after breakdown)."""
_SETBACK_KM = 0.1
"""How far upstream of the bottleneck the detector stands."""
_MAX_CRITICAL_SHARE = 0.6
"""Critical density is held at or below this share of jam density."""
_CARRY_DAYS = 28
"""A queue is carried over at most this many traffic days (see ``LaneModel._day``)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# ---------------------------------------------------------------- demand profiles
# Share of the weekday peak at each local hour from 03:00 to 03:00 the next day (27:00).
# Assumptions, not fitted to data (see the module docstring): each traffic day runs from
# 03:00, so Friday's table holds the small hours of Saturday.
# fmt: off
_WEEKDAY_BASE = (
    0.07, 0.07, 0.11, 0.24, 0.42, 0.52, 0.58, 0.60, 0.61, 0.58, 0.58, 0.61, 0.63,
    0.64, 0.62, 0.58, 0.54, 0.47, 0.39, 0.30, 0.21, 0.14, 0.10, 0.08, 0.07,
)
_FRIDAY_BASE = (
    0.07, 0.07, 0.11, 0.24, 0.42, 0.52, 0.58, 0.60, 0.61, 0.58, 0.58, 0.61, 0.63,
    0.64, 0.63, 0.60, 0.57, 0.52, 0.45, 0.37, 0.28, 0.20, 0.14, 0.10, 0.075,
)
_SATURDAY = (
    0.075, 0.07, 0.07, 0.09, 0.15, 0.26, 0.40, 0.53, 0.62, 0.66, 0.68, 0.70, 0.71,
    0.70, 0.67, 0.62, 0.56, 0.50, 0.43, 0.35, 0.27, 0.20, 0.14, 0.10, 0.07,
)
_SUNDAY = (
    0.075, 0.07, 0.07, 0.08, 0.13, 0.24, 0.37, 0.50, 0.59, 0.63, 0.64, 0.65, 0.66,
    0.65, 0.63, 0.59, 0.53, 0.46, 0.38, 0.30, 0.22, 0.15, 0.10, 0.08, 0.07,
)
# fmt: on
_BASES = (_WEEKDAY_BASE,) * 4 + (_FRIDAY_BASE, _SATURDAY, _SUNDAY)
"""Monday (0) to Sunday (6)."""
_MORNING_H, _MORNING_SD_H, _MORNING_AMPLITUDE = 7.9, 0.7, 0.48
_EVENING_H, _EVENING_SD_H, _EVENING_AMPLITUDE = 18.0, 0.8, 0.40
_MONDAY_MORNING, _FRIDAY_EVENING = 1.05, 1.06
_BIAS_SHARE = 0.8
"""``direction_bias`` 1 makes the morning hump 1.8 times and the evening one 0.2 times."""
_LANE_SHARE = 0.08
_LANE_SPEED = 0.12

_SEGMENT_DAY_SD, _LANE_DAY_SD, _DAY_CLIP = 0.04, 0.005, 2.5
_SEGMENT_WOBBLE_SD, _SEGMENT_KNOT_S = 0.04, 1200
_LANE_WOBBLE_SD, _LANE_KNOT_S = 0.015, 600
_WOBBLE_CLIP = 2.5

_SPEED_NOISE, _SPEED_SPREAD = 0.01, 0.10
_OCCUPANCY_NOISE, _OCCUPANCY_SPREAD = 0.02, 0.25


# ---------------------------------------------------------------- hashing


def _uniform(key: str) -> float:
    """A uniform number in (0, 1), a pure function of ``key``."""
    word = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return (word + 0.5) / 2.0**64


def _normal(key: str) -> float:
    """A standard-normal number, a pure function of ``key``."""
    words = hashlib.blake2b(key.encode(), digest_size=16).digest()
    u1 = (int.from_bytes(words[:8], "big") + 0.5) / 2.0**64
    u2 = (int.from_bytes(words[8:], "big") + 0.5) / 2.0**64
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


_cached_normal = lru_cache(maxsize=8192)(_normal)
""":func:`_normal` for the keys asked again and again: wobble knots and day factors."""


def _clip(z: float, limit: float) -> float:
    return max(-limit, min(limit, z))


def _binomial(n: int, p: float, u: float) -> int:
    """The ``u``-quantile of a binomial distribution of ``n`` trials of probability ``p``."""
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    ratio = p / (1.0 - p)
    pmf = (1.0 - p) ** n
    cdf = pmf
    k = 0
    while cdf < u and k < n:
        pmf *= (n - k) / (k + 1) * ratio
        k += 1
        cdf += pmf
    return k


def _interpolate(table: Sequence[float], hour: float) -> float:
    """``table`` (hourly anchors from 03:00) at ``hour`` (3 <= hour < 27), linearly."""
    position = hour - 3.0
    index = min(int(position), len(table) - 2)
    return table[index] + (table[index + 1] - table[index]) * (position - index)


def _hump(hour: float, centre: float, sd: float) -> float:
    return math.exp(-0.5 * ((hour - centre) / sd) ** 2)


def _blend(a: float, b: float, fraction: float) -> float:
    """Cosine interpolation from ``a`` (fraction 0) to ``b`` (fraction 1)."""
    return a + (b - a) * (0.5 - 0.5 * math.cos(math.pi * fraction))


def _epoch_us(ts: datetime, name: str) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    if ts.utcoffset() is None:
        msg = f"{name} {ts.isoformat()} is a naive datetime; give the time in UTC"
        raise ValueError(msg)
    return (ts - _EPOCH) // _MICROSECOND


# ---------------------------------------------------------------- state


class LaneState(NamedTuple):
    """The noiseless state of a lane over an interval (see :meth:`LaneModel.state`).

    ``flow_veh_h == density_veh_km * mean_speed_kmh`` up to rounding error.
    """

    vehicle_count: int
    """Vehicles that passed the detector in the interval (drawn, so not noiseless)."""
    mean_speed_kmh: float
    """Space-mean speed: the time integral of flow over that of density."""
    occupancy_pct: float
    """Time-weighted mean occupancy, density times the effective vehicle length."""
    flow_veh_h: float
    """Time-weighted mean of the model's flow (the counts' expectation per hour)."""
    density_veh_km: float
    """Time-weighted mean density."""
    queue_veh: float
    """Time-weighted mean queue in front of the bottleneck, vehicles; 0 when there is none."""


class _Day(NamedTuple):
    """One simulated traffic day: per-step arrays and their prefix sums.

    Step ``i`` is the global step ``first + i``; prefix arrays have one more entry, the
    sum over the steps before ``i`` (gauges in value-seconds).
    """

    first: int
    flow: array[float]
    density: array[float]
    queue: array[float]
    counts: array[int]
    count_before: array[int]
    flow_before: array[float]
    density_before: array[float]
    queue_before: array[float]
    final_queue: float


@dataclass(frozen=True)
class LaneModel:
    """A deterministic traffic detector on one lane: counts, speed and occupancy over time.

    Everything is a pure function of the fields and the times asked; see the module
    docstring for how. Lanes with the same ``segment_seed`` share the day-to-day and
    within-day demand variation of their segment and direction, so they correlate
    strongly; each lane adds its own from ``seed``.

    Attributes:
        seed: the lane's own demand variation, its vehicle draws and its detector noise.
        segment_seed: the variation shared by every lane of one segment and direction.
        road_class: sets capacity, peak demand, jam density and the speed-flow curve.
        free_flow_speed_kmh: the segment's free-flow speed; the class's when None.
        lanes: lanes in this direction.
        lane: this lane, 1 nearest the median (faster, a little busier at peak) up to
            ``lanes`` at the kerb.
        direction_bias: -1..1; shifts demand from the evening peak to the morning peak
            (positive: an inbound direction) or back (negative: outbound).
        tz_offset_h: the local time's offset from UTC, hours.
        capacity_drops: effects whose ``amount`` is the share of the lane's capacity
            that remains (0.25: an accident blocking most of the road), ramping in and
            out over ``ramp_s``; several multiply.
        demand_factors: effects whose ``amount`` (0..100) multiplies the arriving demand
            (an event, a holiday); several multiply.

    Raises:
        ValueError: a field out of its range; the message names it and its value.
    """

    seed: int = 0
    segment_seed: int = 0
    road_class: RoadClass = RoadClass.ARTERIAL
    free_flow_speed_kmh: float | None = None
    lanes: int = 2
    lane: int = 1
    direction_bias: float = 0.0
    tz_offset_h: float = 8.0
    capacity_drops: tuple[Effect, ...] = ()
    demand_factors: tuple[Effect, ...] = ()
    _days: dict[int, _Day] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        try:
            set_(self, "road_class", RoadClass(self.road_class))
        except ValueError:
            known = ", ".join(RoadClass)
            msg = f"road_class must be one of {known}, not {self.road_class!r}"
            raise ValueError(msg) from None
        for name in ("seed", "segment_seed", "lanes", "lane"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                msg = f"{name} must be an integer, not {value!r}"
                raise ValueError(msg)
        if not 1 <= self.lanes <= 8:
            msg = f"lanes must be within 1..8, not {self.lanes!r}"
            raise ValueError(msg)
        if not 1 <= self.lane <= self.lanes:
            msg = f"lane must be within 1..lanes={self.lanes}, not {self.lane!r}"
            raise ValueError(msg)
        if not (math.isfinite(self.direction_bias) and -1.0 <= self.direction_bias <= 1.0):
            msg = f"direction_bias must be within [-1, 1], not {self.direction_bias!r}"
            raise ValueError(msg)
        if not (math.isfinite(self.tz_offset_h) and -14.0 <= self.tz_offset_h <= 14.0):
            msg = f"tz_offset_h must be within [-14, 14] hours, not {self.tz_offset_h!r}"
            raise ValueError(msg)
        speed = self.free_flow_speed_kmh
        if speed is not None and not (math.isfinite(speed) and 5.0 <= speed <= 200.0):
            msg = f"free_flow_speed_kmh must be within [5, 200] km/h or None, not {speed!r}"
            raise ValueError(msg)
        for name, low, high in (("capacity_drops", 0.0, 1.0), ("demand_factors", 0.0, 100.0)):
            effects = getattr(self, name)
            if not isinstance(effects, tuple):
                msg = f"{name} must be a tuple of Effect, not {effects!r}"
                raise ValueError(msg)
            for i, effect in enumerate(effects):
                if not isinstance(effect, Effect):
                    msg = f"{name}[{i}] must be an Effect, not {effect!r}"
                    raise ValueError(msg)
                if not low <= effect.amount <= high:
                    amount = effect.amount
                    msg = f"{name}[{i}].amount must be within [{low:g}, {high:g}], not {amount!r}"
                    raise ValueError(msg)
        defaults = _CLASSES[self.road_class]
        lane_speed = self.lane_free_flow_speed_kmh
        if defaults.capacity_veh_h / (self.critical_density_veh_km * lane_speed) > 0.95:
            msg = (
                f"free_flow_speed_kmh {speed!r} is too low for a {self.road_class} lane of"
                f" {defaults.capacity_veh_h:g} veh/h (lane {self.lane}: {lane_speed:.1f} km/h)"
            )
            raise ValueError(msg)
        set_(self, "_days", {})

    # ------------------------------------------------------------ public

    @property
    def defaults(self) -> ClassDefaults:
        """The road class's assumptions this lane uses."""
        return _CLASSES[self.road_class]

    @property
    def lane_free_flow_speed_kmh(self) -> float:
        """This lane's free-flow speed: the segment's, faster near the median."""
        segment = self.free_flow_speed_kmh or _CLASSES[self.road_class].free_flow_speed_kmh
        return segment * (1.0 + _LANE_SPEED * self._lane_position)

    @property
    def critical_density_veh_km(self) -> float:
        """The density at capacity, where the uncongested and congested branches meet."""
        defaults = self.defaults
        return min(
            defaults.capacity_veh_h
            / (defaults.speed_ratio_at_capacity * self.lane_free_flow_speed_kmh),
            _MAX_CRITICAL_SHARE * defaults.jam_density_veh_km,
        )

    def demand_veh_h(self, ts: datetime) -> float:
        """The demand arriving at the lane at ``ts``, vehicles per hour.

        Raises:
            ValueError: ``ts`` is naive.
        """
        return self._demand(_epoch_us(ts, "ts") / 1e6, ts)

    def capacity_veh_h(self, ts: datetime) -> float:
        """The lane's capacity at ``ts`` (after ``capacity_drops``), vehicles per hour.

        Raises:
            ValueError: ``ts`` is naive.
        """
        _epoch_us(ts, "ts")
        return self.defaults.capacity_veh_h * combined_factor(self.capacity_drops, ts)

    def state(self, t0: datetime, t1: datetime) -> LaneState:
        """The lane's noiseless state over ``[t0, t1)``, and the vehicles counted in it.

        With ``t0 == t1`` it is the state at that instant and no vehicle.

        Raises:
            ValueError: a naive time, or ``t1`` before ``t0``.
        """
        us0, us1 = _epoch_us(t0, "t0"), _epoch_us(t1, "t1")
        if us1 < us0:
            msg = f"t1 {t1.isoformat()} is before t0 {t0.isoformat()}"
            raise ValueError(msg)
        if us1 == us0:
            day, i = self._locate(us0)
            flow, density, queue = day.flow[i], day.density[i], day.queue[i]
            return self._state(0, flow, density, queue)
        count = self._count_to(us1) - self._count_to(us0)
        flow1, density1, queue1 = self._integrals_to(us1)
        flow0, density0, queue0 = self._integrals_to(us0)
        span_s = (us1 - us0) / 1e6
        d0, d1 = self._day_of_us(us0), self._day_of_us(us1)
        for number in range(d0, d1):
            day = self._day(number)
            flow1 += day.flow_before[-1]
            density1 += day.density_before[-1]
            queue1 += day.queue_before[-1]
            count += day.count_before[-1]
        return self._state(
            count,
            max(0.0, (flow1 - flow0) / span_s),
            max(0.0, (density1 - density0) / span_s),
            max(0.0, (queue1 - queue0) / span_s),
        )

    def values(self, t0: datetime, t1: datetime) -> dict[str, float]:
        """The detector's reading over ``[t0, t1)``: the metrics of ``CATALOGUE[Kind.TRAFFIC]``.

        ``vehicle_count`` is exact and additive; speed and occupancy carry detector noise
        (less the more vehicles passed), are rounded and held within the catalogue range.

        Raises:
            ValueError: a naive time, or ``t1`` before ``t0``.
        """
        state = self.state(t0, t1)
        span = f"{_epoch_us(t0, 't0')}:{_epoch_us(t1, 't1')}"
        key = f"{self.seed}:{self.segment_seed}:{self.lane}:noise:{span}"
        z_speed, z_occupancy = _normal(key + ":v"), _normal(key + ":o")
        n = max(1, state.vehicle_count)
        s_speed = math.sqrt(_SPEED_NOISE**2 + _SPEED_SPREAD**2 / n)
        s_occupancy = math.sqrt(_OCCUPANCY_NOISE**2 + _OCCUPANCY_SPREAD**2 / n)
        speed = state.mean_speed_kmh * math.exp(s_speed * z_speed - s_speed**2 / 2)
        occupancy = state.occupancy_pct * math.exp(s_occupancy * z_occupancy - s_occupancy**2 / 2)
        specs = CATALOGUE[Kind.TRAFFIC]
        speed_spec, occupancy_spec = specs["mean_speed_kmh"], specs["occupancy_pct"]
        return {
            "vehicle_count": state.vehicle_count,
            "mean_speed_kmh": round(min(speed_spec.high, max(speed_spec.low, speed)), 1),
            "occupancy_pct": round(min(occupancy_spec.high, max(occupancy_spec.low, occupancy)), 2),
        }

    # ------------------------------------------------------------ demand

    @property
    def _lane_position(self) -> float:
        """+0.5 for the lane nearest the median, -0.5 for the kerb lane, 0 for one lane."""
        if self.lanes == 1:
            return 0.0
        return 0.5 - (self.lane - 1) / (self.lanes - 1)

    def _tz_s(self) -> int:
        return round(self.tz_offset_h * 3600)

    def _norm(self) -> float:
        return _weekday_peak(self.direction_bias)

    def _shape(self, weekday: int, hour: float) -> float:
        """The day's profile at ``hour`` (3..27 of the traffic day), 1 at the weekday peak."""
        raw = _interpolate(_BASES[weekday], hour)
        if weekday < 5:
            bias = _BIAS_SHARE * self.direction_bias
            morning = _MORNING_AMPLITUDE * (1.0 + bias)
            evening = _EVENING_AMPLITUDE * (1.0 - bias)
            if weekday == 0:
                morning *= _MONDAY_MORNING
            elif weekday == 4:
                evening *= _FRIDAY_EVENING
            raw += morning * _hump(hour, _MORNING_H, _MORNING_SD_H)
            raw += evening * _hump(hour, _EVENING_H, _EVENING_SD_H)
        return raw / self._norm()

    def _knot(self, segment: bool, knot: int) -> float:
        """The wobble's clipped standard-normal value at ``knot`` (segment's or lane's)."""
        if segment:
            key = f"segment:{self.segment_seed}:{_SEGMENT_KNOT_S}:{knot}"
        else:
            key = f"lane:{self.seed}:{self.segment_seed}:{self.lane}:{_LANE_KNOT_S}:{knot}"
        return _clip(_cached_normal(key), _WOBBLE_CLIP)

    def _day_scale(self, traffic_day: int) -> float:
        """Capacity times peak demand ratio times the segment's and the lane's day factors."""
        segment = _cached_normal(f"segment-day:{self.segment_seed}:{traffic_day}")
        own = _cached_normal(f"lane-day:{self.seed}:{self.segment_seed}:{self.lane}:{traffic_day}")
        defaults = self.defaults
        return (
            defaults.capacity_veh_h
            * defaults.peak_demand_ratio
            * (1.0 + _SEGMENT_DAY_SD * _clip(segment, _DAY_CLIP))
            * (1.0 + _LANE_DAY_SD * _clip(own, _DAY_CLIP))
        )

    def _demand(self, epoch_s: float, ts: datetime | None) -> float:
        """Demand at ``epoch_s`` (seconds since the epoch), vehicles per hour.

        ``ts`` is the same instant as a datetime when the caller has one.
        """
        local_s = epoch_s + self._tz_s() - _DAY_START_S
        traffic_day = math.floor(local_s / _DAY_S)
        hour = 3.0 + (local_s - traffic_day * _DAY_S) / 3600.0
        wobbles = []
        for segment, knot_s in ((True, _SEGMENT_KNOT_S), (False, _LANE_KNOT_S)):
            position = epoch_s / knot_s
            knot = math.floor(position)
            a, b = self._knot(segment, knot), self._knot(segment, knot + 1)
            wobbles.append(_blend(a, b, position - knot))
        weekday, scale = (traffic_day + 3) % 7, self._day_scale(traffic_day)
        return self._demand_from(weekday, hour, scale, wobbles[0], wobbles[1], epoch_s, ts)

    def _demand_from(
        self,
        weekday: int,
        hour: float,
        scale: float,
        segment_wobble: float,
        lane_wobble: float,
        epoch_s: float,
        ts: datetime | None,
    ) -> float:
        """Demand, vehicles per hour, from the day's ``scale`` and the wobbles' values."""
        shape = self._shape(weekday, hour)
        lane_share = 1.0 + _LANE_SHARE * self._lane_position * min(1.0, shape)
        demand = scale * shape * lane_share
        demand *= (1.0 + _SEGMENT_WOBBLE_SD * segment_wobble) * (
            1.0 + _LANE_WOBBLE_SD * lane_wobble
        )
        if self.demand_factors:
            at = ts if ts is not None else _EPOCH + timedelta(seconds=epoch_s)
            demand *= combined_factor(self.demand_factors, at)
        return max(0.0, demand)

    # ------------------------------------------------------------ dynamics

    def _first_step(self, day: int) -> int:
        """The first global step of traffic day ``day``."""
        start_s = day * _DAY_S + _DAY_START_S - self._tz_s()
        return -(-start_s // STEP_S)

    def _day_of_step(self, step: int) -> int:
        return (step * STEP_S + self._tz_s() - _DAY_START_S) // _DAY_S

    def _day_of_us(self, us: int) -> int:
        return self._day_of_step(us // _STEP_US)

    def _locate(self, us: int) -> tuple[_Day, int]:
        """The day holding the step of ``us``, and the step's index in it."""
        step = us // _STEP_US
        day = self._day(self._day_of_step(step))
        return day, step - day.first

    def _count_to(self, us: int) -> int:
        """Vehicles that passed from the start of ``us``'s traffic day to before ``us``."""
        day, i = self._locate(us)
        n = day.counts[i]
        offset = us - (day.first + i) * _STEP_US
        # Vehicle j passes at (j + 1/2) * STEP / n into the step: count those before offset.
        reached = -(-2 * offset * n // _STEP_US)
        return day.count_before[i] + min(n, reached // 2)

    def _integrals_to(self, us: int) -> tuple[float, float, float]:
        """Flow, density and queue integrated (value-seconds) from the day's start to ``us``."""
        day, i = self._locate(us)
        seconds = (us - (day.first + i) * _STEP_US) / 1e6
        return (
            day.flow_before[i] + day.flow[i] * seconds,
            day.density_before[i] + day.density[i] * seconds,
            day.queue_before[i] + day.queue[i] * seconds,
        )

    def _state(self, count: int, flow: float, density: float, queue: float) -> LaneState:
        speed = flow / density if density > 0.0 else self.lane_free_flow_speed_kmh
        occupancy = min(100.0, density * DETECTOR_LENGTH_KM * 100.0)
        return LaneState(count, speed, occupancy, flow, density, queue)

    def _day(self, number: int) -> _Day:
        """Traffic day ``number`` (days since 1970-01-01 03:00 local), simulated once.

        A day starts with no queue unless an effect held the day before; then the days
        are simulated in a chain from the last day no effect touched (or from the start
        of ``number``'s block of :data:`_CARRY_DAYS` days, so that a never-ending effect
        costs a bounded time), whichever is later. The chain depends on ``number`` only,
        never on what was asked before.
        """
        cached = self._days.get(number)
        if cached is not None:
            return cached
        start = number
        earliest = number - number % _CARRY_DAYS
        while start > earliest and self._effects_touch(start - 1):
            start -= 1
        queue = 0.0
        for earlier in range(start, number):
            queue = self._chained(earlier, queue).final_queue
        return self._chained(number, queue)

    def _chained(self, number: int, queue: float) -> _Day:
        """Traffic day ``number`` from the cache, or simulated from ``queue`` and cached."""
        day = self._days.get(number)
        if day is None:
            day = self._simulate(number, queue)
            self._remember(number, day)
        return day

    def _remember(self, number: int, day: _Day) -> None:
        days = self._days
        days[number] = day
        if len(days) > 6:
            del days[next(iter(days))]

    def _effects_touch(self, number: int) -> bool:
        """Whether an effect holds during traffic day ``number`` (so a queue may outlast it)."""
        first, last = self._first_step(number), self._first_step(number + 1)
        begin = _EPOCH + timedelta(seconds=first * STEP_S)
        end = _EPOCH + timedelta(seconds=last * STEP_S)
        return any(
            effect.start < end and effect.end > begin
            for effect in (*self.capacity_drops, *self.demand_factors)
        )

    def _simulate(self, number: int, queue: float) -> _Day:
        """Run traffic day ``number`` from an initial ``queue``."""
        first, last = self._first_step(number), self._first_step(number + 1)
        defaults = self.defaults
        base_capacity = defaults.capacity_veh_h
        free_speed = self.lane_free_flow_speed_kmh
        jam = defaults.jam_density_veh_km
        critical = self.critical_density_veh_km
        ratio = base_capacity / (critical * free_speed)  # speed at capacity / free flow
        exponent = defaults.curve_exponent
        effects = self.capacity_drops
        flows: array[float] = array("d")
        densities: array[float] = array("d")
        queues: array[float] = array("d")
        counts: array[int] = array("q")
        key = f"{self.seed}:{self.segment_seed}:{self.lane}:"
        # The day's constants and wobble knots, looked up once (see _demand: same values).
        weekday, scale = (number + 3) % 7, self._day_scale(number)
        day_start_s = number * _DAY_S + _DAY_START_S - self._tz_s()
        knots: dict[bool, tuple[int, int, list[float]]] = {}
        for segment, knot_s in ((True, _SEGMENT_KNOT_S), (False, _LANE_KNOT_S)):
            k0 = math.floor((first * STEP_S) / knot_s)
            count = math.floor((last * STEP_S) / knot_s) - k0 + 2
            knots[segment] = (k0, knot_s, [self._knot(segment, k0 + i) for i in range(count)])
        timed = bool(effects or self.demand_factors)
        for step in range(first, last):
            mid_s = step * STEP_S + STEP_S / 2
            at = _EPOCH + timedelta(seconds=mid_s) if timed else None
            wobbles: list[float] = []
            for k0, knot_s, values in knots.values():
                position = mid_s / knot_s
                knot = math.floor(position)
                i = knot - k0
                wobbles.append(_blend(values[i], values[i + 1], position - knot))
            hour = 3.0 + (mid_s - day_start_s) / 3600.0
            demand = self._demand_from(weekday, hour, scale, wobbles[0], wobbles[1], mid_s, at)
            capacity = base_capacity
            if at is not None and effects:
                capacity *= combined_factor(effects, at)
            service = capacity * (_QUEUE_DISCHARGE if queue > 0.0 else 1.0) * _STEP_H
            arriving = queue + demand * _STEP_H
            if arriving <= service:
                served, after = arriving, 0.0
            else:
                served, after = service, arriving - service
            flow = served / _STEP_H
            mean_queue = 0.5 * (queue + after)
            queue = after
            # The detector's density: uncongested below the queue's reach, else congested.
            share = min(1.0, flow / base_capacity)
            free_density = (
                flow / (free_speed * (1.0 - (1.0 - ratio) * share**exponent)) if flow > 0.0 else 0.0
            )
            if mean_queue > 0.0:
                jammed = jam - share * (jam - critical)
                reach = min(1.0, mean_queue / (jammed * _SETBACK_KM))
                density = free_density + (jammed - free_density) * reach
            else:
                density = free_density
            flows.append(flow)
            densities.append(density)
            queues.append(mean_queue)
            p = min(1.0, flow * _STEP_H / _MAX_PER_STEP)
            counts.append(_binomial(_MAX_PER_STEP, p, _uniform(key + str(step))))
        return _Day(
            first=first,
            flow=flows,
            density=densities,
            queue=queues,
            counts=counts,
            count_before=_prefix_int(counts),
            flow_before=_prefix(flows),
            density_before=_prefix(densities),
            queue_before=_prefix(queues),
            final_queue=queue,
        )


def _prefix(values: array[float]) -> array[float]:
    """Running sums of ``values`` times the step length, starting at 0."""
    out: array[float] = array("d", [0.0])
    total = 0.0
    for value in values:
        total += value * STEP_S
        out.append(total)
    return out


def _prefix_int(values: array[int]) -> array[int]:
    out: array[int] = array("q", [0])
    total = 0
    for value in values:
        total += value
        out.append(total)
    return out


@lru_cache(maxsize=64)
def _weekday_peak(direction_bias: float) -> float:
    """The highest raw Tuesday-Thursday profile value for ``direction_bias``."""
    bias = _BIAS_SHARE * direction_bias
    best = 0.0
    for i in range(2400):
        hour = 3.0 + i / 100.0
        value = _interpolate(_WEEKDAY_BASE, hour)
        value += _MORNING_AMPLITUDE * (1.0 + bias) * _hump(hour, _MORNING_H, _MORNING_SD_H)
        value += _EVENING_AMPLITUDE * (1.0 - bias) * _hump(hour, _EVENING_H, _EVENING_SD_H)
        best = max(best, value)
    return best


# ---------------------------------------------------------------- driver


class TrafficDetectorOptions(DriverOptions):
    """Options of the simulated traffic detector (``kind = traffic``), one lane.

    Attributes:
        seed: the lane's own variation, vehicle draws and noise.
        segment: the road segment's name; with ``direction`` it gives the variation
            shared by the lanes of one segment and direction.
        direction: the direction of travel, e.g. ``northbound``.
        road_class: expressway, arterial, secondary or branch.
        free_flow_speed_kmh: the segment's free-flow speed; the class's when omitted.
        lanes: lanes in this direction.
        lane: this lane, 1 nearest the median, at most ``lanes``.
        direction_bias: -1..1, positive for a direction heavier in the morning peak.
        tz_offset_h: the local time's offset from UTC, in hours.
    """

    seed: int = 0
    segment: Annotated[str, Field(min_length=1)] = "default"
    direction: Annotated[str, Field(min_length=1)] = "northbound"
    road_class: RoadClass = RoadClass.ARTERIAL
    free_flow_speed_kmh: Annotated[float, Field(ge=5, le=200)] | None = None
    lanes: Annotated[int, Field(ge=1, le=8)] = 2
    lane: Annotated[int, Field(ge=1, le=8)] = 1
    direction_bias: Annotated[float, Field(ge=-1, le=1)] = 0.0
    tz_offset_h: Annotated[float, Field(ge=-14, le=14)] = 8.0

    @model_validator(mode="after")
    def _lane_within_lanes(self) -> Self:
        if self.lane > self.lanes:
            msg = f"lane {self.lane} is beyond lanes={self.lanes}; lanes are numbered 1..lanes"
            raise ValueError(msg)
        return self

    def lane_model(self) -> LaneModel:
        """The lane model these options describe."""
        return LaneModel(
            seed=self.seed,
            segment_seed=seed_of(f"{self.segment}:{self.direction}"),
            road_class=self.road_class,
            free_flow_speed_kmh=self.free_flow_speed_kmh,
            lanes=self.lanes,
            lane=self.lane,
            direction_bias=self.direction_bias,
            tz_offset_h=self.tz_offset_h,
        )


class TrafficDetectorDriver(SimulatedDriver[TrafficDetectorOptions]):
    """A simulated lane detector: ``read()`` is ``model.values(previous read, clock())``.

    The first read after :meth:`open` counts from the time of ``open()`` (so a read at
    that same instant counts no vehicle); every later one from the previous read. A clock
    that steps back gives an empty interval at the new time and counts on from there.

    Args:
        options: the validated options.
        clock: gives the time of each read (an aware datetime); ``datetime.now(UTC)``
            by default, a stepping function in scenarios, tests and replays.
    """

    Options: ClassVar[type[DriverOptions]] = TrafficDetectorOptions
    kind: ClassVar[Kind | None] = Kind.TRAFFIC

    def __init__(self, options: TrafficDetectorOptions, *, clock: Clock = utc_now) -> None:
        super().__init__(options, clock=clock)
        self.model = options.lane_model()
        """The lane model the readings come from; a scenario may replace it with effects."""
        self.previous_read: datetime | None = None
        """The end of the interval the previous read covered; None before the first."""

    def open(self) -> None:
        """Start counting at the clock's time."""
        super().open()
        self.previous_read = self.opened_at

    def read(self) -> dict[str, float]:
        """Vehicles since the previous read, mean speed (km/h) and occupancy (%) over it."""
        now = self.now()
        start = self.previous_read or now
        if now < start:
            start = now
        self.previous_read = now
        return self.model.values(start, now)

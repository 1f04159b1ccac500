"""A simulated electricity meter of a building: load profile, weather, and an exact register.

:class:`MeterModel` gives the five metrics of ``Kind.ENERGY`` (:meth:`~MeterModel.values_at`)
of an office, a residential block, a shopping mall or another public building at any UTC
time, as a pure function of its parameters and the time: no state, no clock, no dependence
on the order of calls. Its register (:meth:`~MeterModel.energy_kwh`) is the exact integral
of its own power curve (:meth:`~MeterModel.power_w`), so a detector that compares the
two sees only what a scenario injected. :class:`EnergyMeterDriver` makes it an
edge-agent driver that reads an injectable clock.

>>> from datetime import UTC, datetime, timedelta
>>> model = MeterModel(seed=1, building_type=BuildingType.OFFICE, floor_area_m2=48_000)
>>> noon = datetime(2024, 7, 10, 4, tzinfo=UTC)  # a Wednesday, 12:00 in Beijing
>>> sample = model.values_at(noon)
>>> sorted(sample)
['current_a', 'energy_kwh', 'power_factor', 'power_w', 'voltage_v']
>>> sample == MeterModel(seed=1, building_type="office", floor_area_m2=48_000).values_at(noon)
True
>>> model.power_w(noon) > 3 * model.power_w(noon - timedelta(hours=10))  # noon vs 02:00
True
>>> start, end = noon, noon + KNOT_INTERVAL
>>> trapezoid = (model.power_w(start) + model.power_w(end)) / 2 * 0.25 / 1000
>>> abs(model.energy_kwh(end) - model.energy_kwh(start) - trapezoid) <= 0.01
True
>>> driver = EnergyMeterDriver(EnergyMeterOptions(building_type="mall"), clock=lambda: noon)
>>> driver.open()
>>> driver.read()["power_factor"] > 0.9
True
>>> driver.close()

How a value is made
-------------------
Active power is defined at *knots* every 15 minutes of local time (:data:`KNOT_INTERVAL`;
with a whole number of quarter hours of time zone, these are the quarter hours of UTC
too) and is linear between them. At a knot, in watts::

    P = A * (base * shape(type, day, t) + hvac(type, day, t) * (
             cool * max(0, T - T_cool) + heat * max(0, T_heat - T))) * day_factor * wobble

* ``A`` is the floor area; ``base`` the type's non-HVAC load intensity (lighting, plug
  loads, lifts, refrigeration, pumps), W/m2, and ``shape`` its piecewise-linear daily
  profile in local time, one for weekdays and one for Saturdays and Sundays (0..1):

  - office: weekday working hours 08:00-19:00 high, an evening tail to 22:00, a night
    base of 28 % (servers, security, standby); weekends a low base;
  - mall: open 10:00-22:00 every day with staff from 08:30 and cleaning to 23:30, 10 %
    busier at weekends, a night base of 22 % (refrigeration, security lighting);
  - residential: a night base, a morning peak 07:00-08:00, a low working day and an
    evening peak 19:00-22:00; at weekends the daytime is 40-60 % higher;
  - other: a generic public building open every day (07:00-21:00), a 45 % night base.

* ``hvac`` is the share of the building conditioned at ``t`` (office: weekdays from a
  06:00-07:00 pre-start to 19:00-20:00, a fifth of the building on weekend days; mall:
  09:00-22:00 every day; residential: mostly evenings and nights; other: 07:00-21:00
  with a 30 % night share). ``cool`` and ``heat`` are W/m2 per kelvin above the cooling
  balance point ``T_cool`` (office 23, mall 22, residential 25, other 24 degC) and below
  the heating one (10-12 degC), flat beyond 34 degC and -10 degC, about Beijing's design
  temperatures, where the plant runs flat out. Beijing's space heating is mostly district
  heating, so only a small electric part (heat pumps, electric heaters) reaches the meter.
* ``T`` is :meth:`MeterModel.outdoor_temperature_c`: a seasonal level (12 monthly anchors
  at mid-month, linearly interpolated) plus a daily cycle (two harmonics, peak 14:15,
  low 04:35, scaled by a monthly daily range) plus a weather anomaly. The anomaly is a
  moving average of daily standard-normal numbers hashed from ``weather_seed`` and the
  UTC day (weights 0.45**k over 7 days), 2.95 degC standard deviation, held within +-10
  degC and linear between UTC midnights, so every meter of a city (one ``weather_seed``)
  feels the same warm and cold spells.
* ``day_factor`` (1 + 3 % N(0, 1) a local day, held within +-15 %) and ``wobble``
  (1 + 2 % N(0, 1) an hour, linear between local hours, within +-6 %) are hashed from
  ``seed``, so no two days are alike and no two buildings alike.

``extra_loads`` add their watts (with their ramps) to the knot curve at the exact time,
not at the knots. The register is ``initial_kwh`` at ``commissioned`` (0 after each of
``resets``) plus the integral of power: the trapezoid rule over the knots, which is exact
for a piecewise-linear curve, and the exact integral of each extra load's ramped step.
Daily totals are cached and summed into a prefix from the commissioning day, so the
register at any time costs one day of knots the first time. It is rounded to 0.01 kWh and
wraps to 0 one step past ``register_max_kwh`` (999 999.99 -> 0.00), as a 6+2-digit
register does.

The readings add sensor noise hashed from ``seed`` and the second, held within three
standard deviations as a meter's accuracy class bounds its error: power and current
0.3 % (so within +-0.9 %, about class 1), voltage 0.1 %, power factor +-0.003. Voltage
is the nominal phase-to-neutral voltage with a slow seeded process (three cosines with
seeded phases, periods of about 5 h, 17 h and 3 days, up to +-1.2 %) and a drop under
load (1.5 % at the type's design load). The power factor rises with load from the
type's low to its high end (office 0.90-0.95, mall 0.92-0.97, residential 0.95-0.98,
other 0.90-0.96). Current is ``P / (phases * V * pf)`` of the true values. Every value
is held within the catalogue's range; at most :data:`MAX_CURRENT_A` can be read, so a
floor area that would draw more at its design load (the type's base plus 8 K of
cooling) is refused.

Calibration
-----------
Outdoor temperature: UCI "Beijing Multi-Site Air-Quality" (PRSA) data, Dongsi, hourly
TEMP, 2013-03-01 to 2017-02-28 (``hour`` taken as local time). Computed once with the
standard library and numpy: the monthly means, the range of each month's mean hourly
profile, the first two harmonics of the all-year mean hourly profile and, for the
anomaly, the daily means minus their centred 31-day running mean. The monthly anchors
were solved so that the interpolation's monthly means equal the data's; the anomaly's
weights and spread were tuned by simulation. Real versus simulated (hourly, 2013-03 to
2017-02 like the data, weather seeds 0-4: the mean over the seeds and their range;
anomaly statistics from the same estimator on both):

=====================================  ===================  =========================
statistic                              real                 simulated
=====================================  ===================  =========================
monthly mean Jan / Apr (degC)          -1.78 / 15.44        -1.8 (-2.1 - -1.2) /
                                                            15.6 (14.8-15.9)
monthly mean Jul / Oct (degC)          27.44 / 13.55        27.5 (27.3-28.0) /
                                                            13.3 (12.8-13.7)
annual mean (degC)                     13.6                 13.5 (13.4-13.7)
range of the mean daily profile        8.5                  8.6
(all year, degC)
warmest / coldest hour (local)         15 / 05              14 / 05
daily-mean anomaly s.d. (degC)         2.39                 2.42 (2.38-2.50)
its autocorrelation at 1 / 2 days      0.59 / 0.24          0.62 / 0.23
mean daily max - min (degC)            10.1                 8.7
=====================================  ===================  =========================

Annual electricity intensity: an **assumption**, not data. The targets are the typical
figures for Chinese buildings that this module was asked to meet -- office 80-120,
shopping mall 150-250, residential 20-40 kWh/m2/yr -- and, for ``other``, a band of
50-90 kWh/m2/yr chosen here for a generic public building between an office and a
residence. They were not checked against a published source or metered data here.
``base`` of each type was tuned so that the simulated annual intensity (2021-2023,
weather seeds 0-4, meter seeds 0-4) sits near the middle of its band:

=================  ===================  =====================================
type               assumed band         simulated mean (range over the seeds)
=================  ===================  =====================================
office             80-120               101 (99-103)
mall               150-250              201 (197-204)
residential        20-40                30.0 (29.7-30.4)
other              50-90                70 (69-71)
=================  ===================  =====================================

Shape figures (seed 0, weather seed 0, 2023, hourly): office weekday 10:00-16:00 mean
power is 5.0 times the 01:00-05:00 mean, its weekend daytime 33 % of its weekday daytime,
its July weekday afternoons (14:00-17:00) 2.2 times April's. Mall: 10:00-22:00 is 5.5
times 23:00-08:00, weekend open hours 1.08 times weekday ones. Residential: the peak hour
of the mean day is 20:00-21:00 (21:00 in January, 20:00 in July), weekend daytime 1.6
times weekday daytime. Cost (measured): the first register read 4.5 years after
commissioning 0.27 s, the first read of a later day 0.6 ms, then 18 us a read at 1 Hz
(70 us with 30 extra loads).

Not matched:

* The load profiles and balance points are assumptions shaped after common descriptions
  of such buildings, not fitted to metered data; no metered building was available.
* Chinese public holidays (Spring Festival, National Day) are not modelled: they are
  ordinary weekdays or weekends here, where offices would be nearly empty and malls busy.
* The weather anomaly has one spread in every season, where Beijing's day-to-day
  variation is larger in winter and spring; its cold spells build and clear alike.
* Load follows the temperature at once: no thermal mass, no solar gain, no humidity.
* The daily temperature range (7.5 in November to 11.0 degC in April) is the range of
  the monthly *mean* profile; single days vary more (their mean max - min is 10.1 degC
  in the data, 8.7 simulated), and the diurnal shape is one all-year shape (its peak at
  14:15, the data's hourly peak at 15:00).
* A large mall on one 230 V meter is close to what a reading may carry: the registry's
  86 000 m2 mall reaches 8.8-9.4 kA on the hottest hours (2023, weather seeds 0-2); a
  hotter hour would read :data:`MAX_CURRENT_A` and break ``P = phases V I pf`` there.
* Voltage and power factor are plausible behaviour (+-2-3 %, the stated pf bands), not
  matched to a measured feeder.
"""

from __future__ import annotations

import hashlib
import math
import struct
import threading
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from itertools import pairwise
from typing import Annotated, ClassVar, NamedTuple, Self

from pydantic import AwareDatetime, Field, model_validator

from edge_agents.drivers.base import DriverOptions
from edge_agents.errors import DriverError
from simulators.air_quality import seed_of
from simulators.base import Clock, Effect, SimulatedDriver, total_amount, utc_now
from telemetry import CATALOGUE, Kind

__all__ = [
    "KNOT_INTERVAL",
    "MAX_CURRENT_A",
    "BuildingType",
    "EnergyMeterDriver",
    "EnergyMeterOptions",
    "MeterModel",
]


class BuildingType(StrEnum):
    """What a metered building is used for: the registry's ``type`` of a building."""

    OFFICE = "office"
    """Working hours on weekdays, HVAC with a morning pre-start, a low weekend."""
    RESIDENTIAL = "residential"
    """Morning and evening peaks, busier weekend days, air conditioning in the evening."""
    MALL = "mall"
    """Open 10:00-22:00 every day, busier at weekends, a large cooling load."""
    OTHER = "other"
    """A generic public building open every day, between an office and a residence."""


KNOT_INTERVAL = timedelta(minutes=15)
"""Power is given at knots this far apart (from local midnight) and is linear between."""
MAX_CURRENT_A = CATALOGUE[Kind.ENERGY]["current_a"].high
"""The most current a reading may carry (the catalogue's range)."""

_KNOT_S = 900
_KNOTS = 96
_KNOT_H = _KNOT_S / 3600.0
_DAY_S = 86_400
_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIX_EPOCH_ORDINAL = 719_163
_MONTH_DAYS = 365.25 / 12
_CYCLES = 2.0 * math.pi

# ---------------------------------------------------------------- calibration tables
# Beijing, Dongsi, hourly TEMP 2013-03 to 2017-02 (see the module docstring). Anchors at
# mid-month (January first), solved so that the linear interpolation's monthly means
# are the data's.
_SEASONAL_C = (-2.44, 0.75, 9.03, 15.78, 22.51, 24.69, 27.96, 27.65, 20.91, 13.69, 3.98, -0.53)
"""The seasonal level, degC, at mid-month."""
_DAILY_RANGE_C = (7.51, 8.29, 11.18, 11.07, 10.41, 7.72, 7.45, 8.41, 7.84, 8.64, 7.21, 7.77)
"""The range of the mean daily cycle, degC, at mid-month."""
_DIURNAL = ((-0.3206, -0.3483), (0.0784, 0.0455))
"""Cosine and sine coefficients of the first two daily harmonics, for a unit range."""
_ANOMALY_SD_C = 2.95
_ANOMALY_RHO = 0.45
_ANOMALY_TERMS = 7
_ANOMALY_LIMIT_C = 10.0
_ANOMALY_WEIGHTS = tuple(
    _ANOMALY_SD_C * math.sqrt(1.0 - _ANOMALY_RHO**2) * _ANOMALY_RHO**k
    for k in range(_ANOMALY_TERMS)
)
"""The weights of the day's and the previous days' normal numbers in the anomaly."""

_COOLING_FULL_C, _HEATING_FULL_C = 34.0, -10.0
"""Above and below these the plant runs flat out (about Beijing's design temperatures)."""
_DAY_SD, _DAY_LIMIT = 0.03, 0.15
_HOUR_SD, _HOUR_LIMIT = 0.02, 0.06
_NOISE_POWER, _NOISE_CURRENT, _NOISE_VOLTAGE, _NOISE_PF = 0.003, 0.003, 0.001, 0.003
_NOISE_LIMIT = 3.0
"""Sensor noise is held within this many standard deviations."""
_VOLTAGE_SWING, _VOLTAGE_DROP = 0.012, 0.015
_VOLTAGE_PERIODS_H = (4.7, 17.3, 69.1)
_VOLTAGE_WEIGHTS = (0.3, 0.3, 0.4)


def _shape(points: Sequence[tuple[float, float]]) -> tuple[float, ...]:
    """A daily profile at the 96 knots, linear between ``(local hour, value)`` points."""
    hours = [hour for hour, _ in points]
    out = []
    for knot in range(_KNOTS):
        hour = knot * _KNOT_H
        i = bisect_right(hours, hour) - 1
        (h0, v0), (h1, v1) = points[i], points[i + 1]
        out.append(v0 + (v1 - v0) * (hour - h0) / (h1 - h0))
    return tuple(out)


class _Usage(NamedTuple):
    """How one building type uses electricity (see the module docstring)."""

    base_w_m2: float
    """Non-HVAC load intensity where the profile is 1, W/m2."""
    weekday: tuple[float, ...]
    """The non-HVAC profile at the 96 knots of a weekday, 0..1."""
    weekend: tuple[float, ...]
    """The same on Saturdays and Sundays."""
    hvac_weekday: tuple[float, ...]
    """The conditioned share of the building at the knots of a weekday, 0..1."""
    hvac_weekend: tuple[float, ...]
    """The same on Saturdays and Sundays."""
    cool_w_m2_k: float
    """Cooling load per kelvin above ``cool_above_c``, W/m2/K."""
    cool_above_c: float
    heat_w_m2_k: float
    """Electric heating load per kelvin below ``heat_below_c``, W/m2/K."""
    heat_below_c: float
    pf_low: float
    """Power factor at no load."""
    pf_high: float
    """Power factor at the design load."""
    design_w_m2: float
    """A typical summer peak (8 K above the cooling balance point), W/m2: the load at which
    the power factor reaches ``pf_high`` and the voltage drops most."""
    cool_most_k: float
    """Cooling grows with temperature up to this many kelvin above ``cool_above_c``."""
    heat_most_k: float
    """Heating grows up to this many kelvin below ``heat_below_c``."""


def _usage(
    base_w_m2: float,
    profiles: tuple[Sequence[tuple[float, float]], ...],
    cooling: tuple[float, float],
    heating: tuple[float, float],
    pf: tuple[float, float],
) -> _Usage:
    weekday, weekend, hvac_weekday, hvac_weekend = (_shape(points) for points in profiles)
    cool, cool_above = cooling
    heat, heat_below = heating
    return _Usage(
        base_w_m2=base_w_m2,
        weekday=weekday,
        weekend=weekend,
        hvac_weekday=hvac_weekday,
        hvac_weekend=hvac_weekend,
        cool_w_m2_k=cool,
        cool_above_c=cool_above,
        heat_w_m2_k=heat,
        heat_below_c=heat_below,
        pf_low=pf[0],
        pf_high=pf[1],
        design_w_m2=base_w_m2 + cool * 8.0,
        cool_most_k=_COOLING_FULL_C - cool_above,
        heat_most_k=heat_below - _HEATING_FULL_C,
    )


# Profiles are (local hour, value) points: non-HVAC weekday, weekend; HVAC weekday, weekend.
# fmt: off
_USAGES = {
    BuildingType.OFFICE: _usage(
        16.7,
        (
            ((0, .28), (6, .28), (7, .40), (8, .85), (9, 1.0), (12, 1.0), (12.5, .90),
             (13.5, .95), (14, 1.0), (17.5, 1.0), (18.5, .75), (19.5, .55), (21, .40),
             (22.5, .30), (24, .28)),
            ((0, .28), (8, .28), (9.5, .38), (16.5, .38), (18, .30), (24, .28)),
            ((0, 0), (6, 0), (7, 1), (18, 1), (19, .5), (20, 0), (24, 0)),
            ((0, 0), (9, 0), (10, .2), (16, .2), (17, 0), (24, 0)),
        ),
        cooling=(2.5, 23.0), heating=(0.6, 12.0), pf=(0.90, 0.95),
    ),
    BuildingType.MALL: _usage(
        28.3,
        (
            ((0, .22), (7, .22), (8.5, .35), (9.5, .80), (10, .95), (12, 1.0), (14, .95),
             (18, 1.0), (21, 1.0), (22, .85), (22.5, .45), (23.5, .25), (24, .22)),
            ((0, .22), (7, .22), (8.5, .35), (9.5, .85), (10, 1.05), (12, 1.1), (14, 1.05),
             (18, 1.1), (21, 1.1), (22, .90), (22.5, .45), (23.5, .25), (24, .22)),
            ((0, 0), (8.5, 0), (9.5, 1), (22, 1), (22.5, .2), (23, 0), (24, 0)),
            ((0, 0), (8.5, 0), (9.5, 1), (22, 1), (22.5, .2), (23, 0), (24, 0)),
        ),
        cooling=(3.0, 22.0), heating=(0.5, 10.0), pf=(0.92, 0.97),
    ),
    BuildingType.RESIDENTIAL: _usage(
        5.55,
        (
            ((0, .35), (1, .28), (5, .25), (6, .35), (7, .62), (8, .60), (9, .42), (11, .38),
             (12, .48), (13, .42), (16, .42), (17.5, .60), (19, .90), (20, 1.0), (21, 1.0),
             (22, .85), (23, .60), (24, .35)),
            ((0, .38), (1, .30), (6, .27), (7, .40), (8, .60), (9, .68), (11, .65), (12, .70),
             (14, .60), (17, .65), (18, .75), (19, .92), (20, 1.0), (21, 1.0), (22, .85),
             (23, .62), (24, .38)),
            ((0, .6), (6, .5), (7, .35), (9, .25), (17, .3), (18, .6), (19, .9), (22, 1.0),
             (23, .8), (24, .6)),
            ((0, .6), (7, .45), (9, .55), (17, .6), (19, .9), (22, 1.0), (23, .8), (24, .6)),
        ),
        cooling=(0.6, 25.0), heating=(0.15, 10.0), pf=(0.95, 0.98),
    ),
    BuildingType.OTHER: _usage(
        8.45,
        (
            ((0, .45), (6, .45), (7, .70), (8, .90), (9, 1.0), (18, 1.0), (19, .90),
             (21, .75), (22, .55), (24, .45)),
            ((0, .45), (7, .45), (8.5, .80), (18, .85), (21, .65), (22, .50), (24, .45)),
            ((0, .3), (6, .3), (7, 1), (20, 1), (22, .4), (24, .3)),
            ((0, .3), (6, .3), (7, 1), (20, 1), (22, .4), (24, .3)),
        ),
        cooling=(1.2, 24.0), heating=(0.3, 12.0), pf=(0.90, 0.96),
    ),
}
# fmt: on


def _normals(key: bytes, count: int) -> list[float]:
    """Up to sixteen independent standard-normal numbers, a pure function of ``key``."""
    words = struct.unpack(
        "<16I", hashlib.blake2b(key, digest_size=64, person=b"us-energy").digest()
    )
    out: list[float] = []
    for i in range(0, count + count % 2, 2):
        radius = math.sqrt(-2.0 * math.log((words[i] + 0.5) / 2**32))
        angle = _CYCLES * (words[i + 1] + 0.5) / 2**32
        out += (radius * math.cos(angle), radius * math.sin(angle))
    return out[:count]


def _monthly(anchors: Sequence[float], doy: float) -> float:
    """The value of 12 mid-month ``anchors`` at day of year ``doy``, linear between them."""
    position = doy / _MONTH_DAYS - 0.5
    month = math.floor(position)
    later = position - month
    first = anchors[month % 12]
    return first + (anchors[(month + 1) % 12] - first) * later


def _diurnal(hour: float) -> float:
    """The daily temperature cycle at local ``hour``, for a unit range (mean 0)."""
    angle = _CYCLES * hour / 24.0
    (a1, b1), (a2, b2) = _DIURNAL
    return (
        a1 * math.cos(angle)
        + b1 * math.sin(angle)
        + a2 * math.cos(2.0 * angle)
        + b2 * math.sin(2.0 * angle)
    )


_DIURNAL_KNOTS = tuple(_diurnal(knot * _KNOT_H) for knot in range(_KNOTS))


def _ramp_integral(effect: Effect, start: datetime, end: datetime) -> float:
    """The integral of ``effect.weight`` over ``[start, end)``, in seconds (exact)."""
    span = (effect.end - effect.start).total_seconds()
    ramp = min(effect.ramp_s, span / 2)

    def area(ts: datetime) -> float:
        s = min(span, max(0.0, (ts - effect.start).total_seconds()))
        if ramp <= 0:
            return s
        if s <= ramp:
            return s * s / (2 * ramp)
        if s <= span - ramp:
            return ramp / 2 + (s - ramp)
        return span - ramp - (span - s) ** 2 / (2 * ramp)

    return area(end) - area(start)


def _aware(ts: datetime, what: str) -> None:
    if ts.utcoffset() is None:
        msg = f"{what} {ts.isoformat()} is a naive datetime; give the time in UTC"
        raise ValueError(msg)


class _Day(NamedTuple):
    """The base power curve of one local day."""

    watts: tuple[float, ...]
    """Power at the 97 knots from local midnight to the next (inclusive), W."""
    cumulative_wh: tuple[float, ...]
    """Energy from local midnight to each of the 97 knots (trapezoids), Wh."""


class _Where(NamedTuple):
    """Where an instant lies on the knot grid."""

    day: int
    """The local day, counted from 1970-01-01."""
    knot: int
    """The knot at or before the instant, 0..95."""
    fraction: float
    """How far the instant is from that knot to the next, 0 <= fraction < 1."""


class _Prefix:
    """Energy from the commissioning day's local midnight to each later local midnight.

    Grows forward only, one day at a time and always in the same order, so its values
    do not depend on which times were asked first.
    """

    def __init__(self, first_day: int, day_total_wh: Callable[[int], float]) -> None:
        self._first_day = first_day
        self._day_total_wh = day_total_wh
        self._wh = [0.0]
        self._lock = threading.Lock()

    def at(self, day: int) -> float:
        """Wh from the first day's midnight to ``day``'s midnight (``day`` >= first day)."""
        index = day - self._first_day
        if index >= len(self._wh):
            with self._lock:
                wh = self._wh
                total = wh[-1]
                for earlier in range(self._first_day + len(wh) - 1, day):
                    total += self._day_total_wh(earlier)
                    wh.append(total)
        return self._wh[index]


@dataclass(frozen=True)
class MeterModel:
    """A deterministic building electricity meter: power and the kWh register at any time.

    Values are a pure function of the parameters and the time (see the module docstring).
    Meters with the same ``weather_seed`` share the outdoor temperature; ``seed`` gives
    each its own day-to-day variation and sensor noise.

    Attributes:
        seed: the meter's own variation (day and hour factors) and sensor noise.
        building_type: ``office``, ``residential``, ``mall`` or ``other``.
        floor_area_m2: the gross floor area; the load scales with it.
        weather_seed: the city's weather anomaly; every meter of a city shares it.
        tz_offset_h: local time minus UTC, in hours, a whole number of quarter hours.
        commissioned: when the register read ``initial_kwh`` (aware); the register
            cannot be read before.
        initial_kwh: the register at ``commissioned``.
        register_max_kwh: the register's largest value; one 0.01 kWh step past it, the
            register reads 0 again (rollover, a wrap).
        resets: times (aware, after ``commissioned``) at which the register was cleared
            to 0, e.g. a meter replacement.
        extra_loads: ``Effect.amount`` watts (>= 0) added to the real power over each
            effect's span, with its ramp: an energy leak, equipment left running.
        phases: 1 or 3 phases.
        nominal_voltage_v: the nominal phase-to-neutral voltage.

    Raises:
        ValueError: a parameter is out of its range, naming it and its value.
    """

    seed: int = 0
    building_type: BuildingType = BuildingType.OFFICE
    floor_area_m2: float = 10_000.0
    weather_seed: int = 0
    tz_offset_h: float = 8.0
    commissioned: datetime = datetime(2020, 1, 1, tzinfo=UTC)
    initial_kwh: float = 0.0
    register_max_kwh: float = 999_999.99
    resets: tuple[datetime, ...] = ()
    extra_loads: tuple[Effect, ...] = ()
    phases: int = 3
    nominal_voltage_v: float = 230.0
    _usage: _Usage = field(init=False, repr=False, compare=False)
    _offset_us: int = field(init=False, repr=False, compare=False)
    _modulus_cents: int = field(init=False, repr=False, compare=False)
    _knots: Callable[[int], tuple[float, ...]] = field(init=False, repr=False, compare=False)
    _day: Callable[[int], _Day] = field(init=False, repr=False, compare=False)
    _anomaly_knot: Callable[[int], float] = field(init=False, repr=False, compare=False)
    _prefix: _Prefix = field(init=False, repr=False, compare=False)
    _voltage_waves: tuple[tuple[float, float, float], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        try:
            kind = BuildingType(self.building_type)
        except ValueError:
            known = ", ".join(BuildingType)
            msg = f"building_type must be one of {known}, not {self.building_type!r}"
            raise ValueError(msg) from None
        set_ = object.__setattr__
        set_(self, "building_type", kind)
        usage = _USAGES[kind]
        self._check_numbers(usage)
        _aware(self.commissioned, "commissioned")
        for i, at in enumerate(self.resets):
            _aware(at, f"resets[{i}]")
            if at <= self.commissioned:
                msg = (
                    f"resets[{i}] {at.isoformat()} is not after commissioned"
                    f" {self.commissioned.isoformat()}"
                )
                raise ValueError(msg)
        set_(self, "resets", tuple(sorted(self.resets)))
        set_(self, "extra_loads", tuple(self.extra_loads))
        for i, effect in enumerate(self.extra_loads):
            if not isinstance(effect, Effect) or effect.amount < 0:
                msg = f"extra_loads[{i}] must be an Effect of >= 0 W, not {effect!r}"
                raise ValueError(msg)
        set_(self, "_usage", usage)
        set_(self, "_offset_us", round(self.tz_offset_h * 3600) * _US)
        set_(self, "_modulus_cents", round(self.register_max_kwh * 100) + 1)
        set_(self, "_knots", lru_cache(maxsize=16)(self._compute_knots))
        set_(self, "_day", lru_cache(maxsize=64)(self._compute_day))
        set_(self, "_anomaly_knot", lru_cache(maxsize=64)(self._compute_anomaly_knot))
        first_day = self._where(self.commissioned).day
        set_(self, "_prefix", _Prefix(first_day, lambda day: self._day(day).cumulative_wh[-1]))
        waves = []
        numbers = _normals(f"{self.seed}:voltage".encode(), 2 * len(_VOLTAGE_PERIODS_H))
        for i, (period, weight) in enumerate(
            zip(_VOLTAGE_PERIODS_H, _VOLTAGE_WEIGHTS, strict=True)
        ):
            stretch = 1.0 + 0.1 * math.tanh(numbers[2 * i])
            phase = math.pi * (1.0 + math.erf(numbers[2 * i + 1] / math.sqrt(2.0)))
            waves.append((weight, _CYCLES / (period * stretch * 3600.0), phase))
        set_(self, "_voltage_waves", tuple(waves))

    def _check_numbers(self, usage: _Usage) -> None:
        """Raise ValueError naming the first numeric parameter out of its range."""
        area = self.floor_area_m2
        if not (math.isfinite(area) and area > 0):
            msg = f"floor_area_m2 must be a positive number, not {area!r}"
            raise ValueError(msg)
        if not (-14.0 <= self.tz_offset_h <= 14.0 and (self.tz_offset_h * 4).is_integer()):
            msg = (
                f"tz_offset_h must be a whole number of quarter hours within [-14, 14],"
                f" not {self.tz_offset_h!r}"
            )
            raise ValueError(msg)
        if self.phases not in (1, 3):
            msg = f"phases must be 1 or 3, not {self.phases!r}"
            raise ValueError(msg)
        voltage = self.nominal_voltage_v
        if not (math.isfinite(voltage) and 50.0 <= voltage <= 900.0):
            msg = f"nominal_voltage_v must be within [50, 900] V, not {voltage!r}"
            raise ValueError(msg)
        top = CATALOGUE[Kind.ENERGY]["energy_kwh"].high
        if not (math.isfinite(self.register_max_kwh) and 0.01 <= self.register_max_kwh <= top):
            msg = f"register_max_kwh must be within [0.01, {top:g}], not {self.register_max_kwh!r}"
            raise ValueError(msg)
        if not (math.isfinite(self.initial_kwh) and 0 <= self.initial_kwh <= self.register_max_kwh):
            msg = (
                f"initial_kwh must be within [0, register_max_kwh = {self.register_max_kwh!r}],"
                f" not {self.initial_kwh!r}"
            )
            raise ValueError(msg)
        design_a = area * usage.design_w_m2 / (self.phases * voltage * usage.pf_high)
        if design_a > MAX_CURRENT_A:
            largest = area * MAX_CURRENT_A / design_a
            msg = (
                f"floor_area_m2 {area!r} would draw {design_a:.0f} A at its design load, over"
                f" the {MAX_CURRENT_A:g} A a reading may carry; at most {largest:.0f} m2 for a"
                f" {self.building_type} of {self.phases} phase(s) at {voltage:g} V"
            )
            raise ValueError(msg)

    # ------------------------------------------------------------ public values

    def outdoor_temperature_c(self, ts: datetime) -> float:
        """The outdoor air temperature at ``ts``, degC: the weather that drives the load.

        Raises:
            ValueError: ``ts`` is naive.
        """
        where = self._where(ts)
        level, level_next, spread, spread_next = self._season(where.day)
        share = (where.knot + where.fraction) / _KNOTS
        hour = share * 24.0
        epoch_s = (self._local_us(ts) - self._offset_us) / _US
        return (
            level
            + (level_next - level) * share
            + (spread + (spread_next - spread) * share) * _diurnal(hour)
            + self._anomaly(epoch_s)
        )

    def power_w(self, ts: datetime) -> float:
        """The true active power at ``ts``, W, without sensor noise, extra loads included.

        Raises:
            ValueError: ``ts`` is naive.
        """
        where = self._where(ts)
        watts = self._day(where.day).watts
        low = watts[where.knot]
        base = low + (watts[where.knot + 1] - low) * where.fraction
        return base + total_amount(self.extra_loads, ts) if self.extra_loads else base

    def energy_kwh(self, ts: datetime) -> float:
        """The register at ``ts``, kWh, to 0.01 kWh, after resets and rollovers.

        Raises:
            ValueError: ``ts`` is naive or before ``commissioned``.
        """
        _aware(ts, "energy_kwh at")
        if ts < self.commissioned:
            msg = (
                f"energy_kwh asked at {ts.isoformat()}, before the meter was commissioned"
                f" at {self.commissioned.isoformat()}"
            )
            raise ValueError(msg)
        count = bisect_right(self.resets, ts)
        origin, start_kwh = (
            (self.resets[count - 1], 0.0) if count else (self.commissioned, self.initial_kwh)
        )
        wh = self._base_wh(ts) - self._base_wh(origin)
        for effect in self.extra_loads:
            wh += effect.amount * _ramp_integral(effect, origin, ts) / 3600.0
        cents = round((start_kwh + wh / 1000.0) * 100)
        return (cents % self._modulus_cents) / 100

    def values_at(self, ts: datetime) -> dict[str, float]:
        """All five metrics of ``CATALOGUE[Kind.ENERGY]`` at ``ts``, with sensor noise.

        Returns:
            ``power_w`` (W), ``energy_kwh`` (the register, kWh), ``voltage_v`` (V,
            phase-to-neutral), ``current_a`` (A, per phase) and ``power_factor``, each
            within its catalogue range.

        Raises:
            ValueError: ``ts`` is naive or before ``commissioned``.
        """
        energy = self.energy_kwh(ts)
        power = self.power_w(ts)
        usage = self._usage
        load = min(1.5, power / (usage.design_w_m2 * self.floor_area_m2))
        epoch_s = (self._local_us(ts) - self._offset_us) / _US
        slow = sum(w * math.cos(omega * epoch_s + phase) for w, omega, phase in self._voltage_waves)
        n_power, n_voltage, n_current, n_pf = (
            max(-_NOISE_LIMIT, min(_NOISE_LIMIT, z))
            for z in _normals(f"{self.seed}:{math.floor(epoch_s)}".encode(), 4)
        )
        swing = _VOLTAGE_SWING * slow - _VOLTAGE_DROP * min(1.0, load)
        voltage = self.nominal_voltage_v * (1.0 + swing)
        pf = usage.pf_low + (usage.pf_high - usage.pf_low) * min(1.0, load)
        current = power / (self.phases * voltage * pf)
        spec = CATALOGUE[Kind.ENERGY]
        values = {
            "power_w": round(power * (1.0 + _NOISE_POWER * n_power), 1),
            "energy_kwh": energy,
            "voltage_v": round(voltage * (1.0 + _NOISE_VOLTAGE * n_voltage), 2),
            "current_a": round(current * (1.0 + _NOISE_CURRENT * n_current), 2),
            "power_factor": round(min(1.0, pf + _NOISE_PF * n_pf), 3),
        }
        return {
            name: min(spec[name].high, max(spec[name].low, value)) for name, value in values.items()
        }

    # ------------------------------------------------------------ time

    def _local_us(self, ts: datetime) -> int:
        """Local time as whole microseconds since 1970-01-01 (exact)."""
        _aware(ts, "time")
        delta = ts - _EPOCH
        return (delta.days * _DAY_S + delta.seconds) * _US + delta.microseconds + self._offset_us

    def _where(self, ts: datetime) -> _Where:
        local_us = self._local_us(ts)
        day, within = divmod(local_us, _DAY_S * _US)
        knot, rest = divmod(within, _KNOT_S * _US)
        return _Where(day, knot, rest / (_KNOT_S * _US))

    def _base_wh(self, ts: datetime) -> float:
        """Energy of the knot curve from the commissioning day's local midnight to ``ts``."""
        where = self._where(ts)
        day = self._day(where.day)
        low, high = day.watts[where.knot], day.watts[where.knot + 1]
        now = low + (high - low) * where.fraction
        partial = (low + now) / 2.0 * _KNOT_H * where.fraction
        return self._prefix.at(where.day) + day.cumulative_wh[where.knot] + partial

    # ------------------------------------------------------------ weather

    @staticmethod
    def _season(day: int) -> tuple[float, float, float, float]:
        """The seasonal level and daily range at the start and the end of a local day."""
        doy = date.fromordinal(day + _UNIX_EPOCH_ORDINAL).timetuple().tm_yday - 1
        return (
            _monthly(_SEASONAL_C, doy),
            _monthly(_SEASONAL_C, doy + 1),
            _monthly(_DAILY_RANGE_C, doy),
            _monthly(_DAILY_RANGE_C, doy + 1),
        )

    def _compute_anomaly_knot(self, utc_day: int) -> float:
        """The weather anomaly at a UTC midnight: a moving average of daily normals."""
        total = 0.0
        for lag, weight in enumerate(_ANOMALY_WEIGHTS):
            (z,) = _normals(f"{self.weather_seed}:weather:{utc_day - lag}".encode(), 1)
            total += weight * z
        return max(-_ANOMALY_LIMIT_C, min(_ANOMALY_LIMIT_C, total))

    def _anomaly(self, epoch_s: float) -> float:
        """The weather anomaly at ``epoch_s`` seconds since 1970, linear between UTC days."""
        utc_day = math.floor(epoch_s / _DAY_S)
        later = epoch_s / _DAY_S - utc_day
        first = self._anomaly_knot(utc_day)
        return first + (self._anomaly_knot(utc_day + 1) - first) * later

    # ------------------------------------------------------------ the knot curve

    def _compute_knots(self, day: int) -> tuple[float, ...]:
        """The base power at the 96 knots of a local day, W."""
        usage = self._usage
        weekend = (day + 3) % 7 >= 5
        shape = usage.weekend if weekend else usage.weekday
        hvac = usage.hvac_weekend if weekend else usage.hvac_weekday
        level, level_next, spread, spread_next = self._season(day)
        numbers = _normals(f"{self.seed}:day:{day}".encode(), 1)
        day_factor = 1.0 + max(-_DAY_LIMIT, min(_DAY_LIMIT, _DAY_SD * numbers[0]))
        hours = _normals(f"{self.seed}:hours:{day}".encode(), 16)
        hours += _normals(f"{self.seed}:hours:{day}:more".encode(), 8)
        (first_hour,) = _normals(f"{self.seed}:hours:{day + 1}".encode(), 1)
        hours.append(first_hour)
        wobble = [1.0 + max(-_HOUR_LIMIT, min(_HOUR_LIMIT, _HOUR_SD * z)) for z in hours]
        start_s = day * _DAY_S - self._offset_us // _US
        utc_day = start_s // _DAY_S
        anomalies = [self._anomaly_knot(utc_day + i) for i in range(3)]
        area, base = self.floor_area_m2, usage.base_w_m2
        cool, cool_above, cool_most = usage.cool_w_m2_k, usage.cool_above_c, usage.cool_most_k
        heat, heat_below, heat_most = usage.heat_w_m2_k, usage.heat_below_c, usage.heat_most_k
        out = []
        for knot in range(_KNOTS):
            share = knot / _KNOTS
            since = (start_s + knot * _KNOT_S) / _DAY_S - utc_day
            whole = int(since)
            anomaly = anomalies[whole] + (anomalies[whole + 1] - anomalies[whole]) * (since - whole)
            temperature = (
                level
                + (level_next - level) * share
                + (spread + (spread_next - spread) * share) * _DIURNAL_KNOTS[knot]
                + anomaly
            )
            climate = cool * min(cool_most, max(0.0, temperature - cool_above)) + heat * min(
                heat_most, max(0.0, heat_below - temperature)
            )
            hour, quarter = divmod(knot, 4)
            hour_factor = wobble[hour] + (wobble[hour + 1] - wobble[hour]) * quarter / 4
            load = base * shape[knot] + hvac[knot] * climate
            out.append(area * load * day_factor * hour_factor)
        return tuple(out)

    def _compute_day(self, day: int) -> _Day:
        """The day's 97 knots (the next day's first closes it) and their running energy."""
        watts = (*self._knots(day), self._knots(day + 1)[0])
        cumulative = [0.0]
        total = 0.0
        for low, high in pairwise(watts):
            total += (low + high) / 2.0 * _KNOT_H
            cumulative.append(total)
        return _Day(watts, tuple(cumulative))


class EnergyMeterOptions(DriverOptions):
    """Options of the simulated electricity meter (``kind = energy``).

    Attributes:
        seed: the meter's own variation and sensor noise.
        building_type: ``office``, ``residential``, ``mall`` or ``other``.
        floor_area_m2: the building's gross floor area.
        city: the city's name; meters of one city share its weather (hashed with
            :func:`simulators.air_quality.seed_of` into ``weather_seed``).
        tz_offset_h: local time minus UTC, in hours (whole quarter hours).
        commissioned: when the register read ``initial_kwh`` (aware).
        initial_kwh: the register at ``commissioned``.
        register_max_kwh: the register's largest value before it rolls over to 0.
    """

    seed: int = 0
    building_type: BuildingType = BuildingType.OFFICE
    floor_area_m2: Annotated[float, Field(gt=0)] = 10_000.0
    city: Annotated[str, Field(min_length=1)] = "default"
    tz_offset_h: Annotated[float, Field(ge=-14, le=14)] = 8.0
    commissioned: AwareDatetime = datetime(2020, 1, 1, tzinfo=UTC)
    initial_kwh: Annotated[float, Field(ge=0)] = 0.0
    register_max_kwh: Annotated[float, Field(gt=0, le=1e12)] = 999_999.99

    @model_validator(mode="after")
    def _describes_a_meter(self) -> Self:
        """Refuse options no meter model accepts (the message names the field)."""
        self.meter_model()
        return self

    def meter_model(self) -> MeterModel:
        """The meter model these options describe."""
        return MeterModel(
            seed=self.seed,
            building_type=self.building_type,
            floor_area_m2=self.floor_area_m2,
            weather_seed=seed_of(self.city),
            tz_offset_h=self.tz_offset_h,
            commissioned=self.commissioned,
            initial_kwh=self.initial_kwh,
            register_max_kwh=self.register_max_kwh,
        )


class EnergyMeterDriver(SimulatedDriver[EnergyMeterOptions]):
    """A simulated building electricity meter: ``read()`` is ``model.values_at(clock())``.

    Args:
        options: the validated options.
        clock: gives the time of each read (an aware datetime); ``datetime.now(UTC)`` by
            default, a fixed or stepping function in tests, scenarios and replays.
    """

    Options: ClassVar[type[DriverOptions]] = EnergyMeterOptions
    kind: ClassVar[Kind | None] = Kind.ENERGY

    def __init__(self, options: EnergyMeterOptions, *, clock: Clock = utc_now) -> None:
        super().__init__(options, clock=clock)
        self.model = options.meter_model()
        """The meter model the readings come from; a scenario may replace it with effects."""

    def read(self) -> dict[str, float]:
        """Power, the register, voltage, current and power factor at the clock's time.

        Raises:
            DriverError: the clock gave a naive time or one before the meter was
                commissioned (not retryable).
        """
        ts = self.now()
        try:
            return self.model.values_at(ts)
        except ValueError as error:
            raise DriverError(str(error), retryable=False) from error

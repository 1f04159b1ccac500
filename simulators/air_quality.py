"""A simulated air-quality station, calibrated against two Beijing monitoring stations.

:class:`StationModel` gives the six pollutants of ``Kind.POLLUTION``
(:meth:`~StationModel.values_at`) and the weather of ``Kind.AMBIENT``
(:meth:`~StationModel.ambient_at`) at any UTC time, as a pure function of its parameters
and the time: no state, no clock, no dependence on the order of calls, so a seed gives
byte-identical values on every run. :class:`AirQualityStationDriver` and
:class:`AmbientStationDriver` make it an edge-agent driver that reads an injectable clock.

>>> from datetime import UTC
>>> model = StationModel(seed=1, district_seed=seed_of("dongcheng"))
>>> at = datetime(2024, 1, 15, 14, tzinfo=UTC)  # 22:00 in Beijing
>>> sample = model.values_at(at)
>>> sorted(sample)
['co', 'no2', 'o3', 'pm10', 'pm2_5', 'so2']
>>> sample == StationModel(seed=1, district_seed=seed_of("dongcheng")).values_at(at)
True
>>> sample["pm10"] >= sample["pm2_5"]
True
>>> driver = AmbientStationDriver(AmbientOptions(district="dongcheng"), clock=lambda: at)
>>> driver.open()
>>> sorted(driver.read())
['humidity_pct', 'pressure_hpa', 'temperature_c', 'wind_speed_ms']
>>> driver.close()

How a value is made
-------------------
Ten latent variables -- PM2.5, the coarse ratio ln(PM10 / PM2.5 - 1), NO2, CO, SO2 and
O3 (natural logs of the concentrations), ln(wind + 0.2 m/s), temperature, dew point and
pressure -- are each ``level(month) + daily(hour, season) + Q_season(z)``:

* ``level``: twelve monthly anchors at mid-month, linearly interpolated;
* ``daily``: a winter (DJF) and a summer (JJA) hourly profile, in local time, blended by
  a cosine of the day of the year;
* ``Q_season``: the anomaly's quantile function, piecewise linear through knots at 0.1,
  1, 10, 50, 90, 99 and 99.9 %, one set per season, interpolated between mid-January,
  -April, -July and -October;
* ``z``: a standard-normal score. The ten scores are correlated as the data's are
  (seasonal 10 x 10 correlation matrices of normal scores, through their Cholesky
  factors): haze comes with humid, still air, with high CO, NO2 and SO2 and, in winter,
  with low O3.

Each variable's own driver is the sum of a region, a district and a station process:
``region_seed`` gives weather and haze episodes to every station of a region,
``district_seed`` to the stations of a district, ``seed`` to one station. A process is a
sum of cosines with seeded random phases whose frequencies are stratified draws from an
Ornstein-Uhlenbeck spectrum with a slow and a fast time scale, truncated to periods from
2 h to 30 days and kept clear of the daily and weekly cycles: AR(1)-like multi-day
episodes in log space, but a pure function of time. PM10 = PM2.5 (1 + exp(coarse)), so
PM10 >= PM2.5. Relative humidity comes from temperature and dew point (Magnus). Every
reading has multiplicative sensor noise drawn from a hash of the station and the second
(PM 3 %, gases 2 %, wind 5 %; 0.1 degC, 1 % RH and 0.1 hPa added); values are rounded
and held within the catalogue's physical ranges.

Calibration
-----------
Data: UCI "Beijing Multi-Site Air-Quality" (PRSA), hourly, 2013-03-01 to 2017-02-28,
Dongsi for ``urban`` and Huairou for ``suburban``. The ``hour`` column is taken as the
local time (UTC+8) of the value; CO is converted to mg/m3; RH is computed from TEMP and
DEWP. The tables below were derived once, with the standard library:

1. month x hour cell means of each variable give the monthly levels and the DJF and JJA
   profiles, solved so that the model's interpolation reproduces the cell means;
2. the hourly anomalies give each season's quantile knots, then refined by simulation (4
   rounds, 3 seeds x 4 years) until every season's simulated hourly quantiles met the
   data's -- except O3, whose hour-dependent spread this cannot fit (see below);
3. normal scores of the anomalies give the seasonal correlation matrices (pooled over
   both stations) and, from their autocorrelation at 1-48 h, the two time scales;
4. the Dongsi-Huairou correlation of each variable's scores gives the region's share of
   its variance (PM2.5 0.84). PM2.5's slow time scale, 22 h in the fit, is 38 h, so that
   the truncated process gives hourly PM2.5 the data's autocorrelation.

Real versus simulated, ``urban`` (Dongsi); simulated is the mean over 4 seeds x 4 years
(2013-03 to 2017-02) with the range over the seeds; concentrations in ug/m3, CO mg/m3:

=========================================  =================  ==========================
statistic                                  real               simulated
=========================================  =================  ==========================
PM2.5 winter (DJF) median / 90th pct       60.0 / 261         58.0 (55-61) / 252 (228-267)
PM2.5 summer (JJA) median / 90th pct       57.5 / 147         56.5 (56-58) / 148 (141-156)
PM2.5 mean DJF / MAM / JJA / SON           103 / 83 / 71 / 89  98 / 84 / 70 / 88
PM2.5 autocorrelation at 1 h / 24 h        0.970 / 0.404      0.97 (0.94-0.98) / 0.40 (0.35-0.44)
PM10 median DJF / JJA                      81 / 72            86 / 69
PM10/PM2.5 median DJF / MAM / JJA / SON    1.18/1.46/1.00/1.27  1.19/1.47/1.06/1.25
NO2 mean DJF / JJA                         58.9 / 42.6        58.9 / 42.8
CO mean DJF / JJA                          1.83 / 1.01        1.85 / 1.02
SO2 mean DJF / JJA                         31.2 / 8.0         30.8 / 7.9
O3 mean DJF / JJA                          29.4 / 92.7        29.6 / 90.5
O3 90th percentile DJF / JJA               66 / 186           68 / 186
NO2 daily peak, morning peak, low (hour)   22, 08, 15         22, 08, 14
CO evening peak, morning peak, low         23, 08, 16         23 (plateau to 02), 07, 16
O3 daily peak, low (hour)                  16, 07             15-16, 07
corr. of the O3 and NO2 daily profiles     -0.82              -0.86
NO2 weekend / weekday mean                 1.00               1.00
temperature Jan / Jul mean, degC           -1.8 / 27.4        -1.7 / 27.6
temperature daily range, degC              8.5                7.8
pressure Jan / Jul mean, hPa               1024.1 / 999.9     1023.6 / 999.7
RH Jan / Jul mean, %                       42.0 / 66.7        40.9 / 65.5
wind mean, m/s; daily peak hour            1.86; 14           1.86; 14
=========================================  =================  ==========================

``suburban`` (Huairou), real -> simulated: PM2.5 DJF median 46.0 -> 44.1, 90th pct 206
-> 202; JJA median 41.0 -> 40.2, 90th pct 127 -> 128; NO2 peaks 08 and 19 -> 08 and 20;
O3 peak 16 -> 16; PM2.5 autocorrelation 0.968 / 0.402 -> 0.96 / 0.39; temperature Jan /
Jul -3.5 / 26.3 -> -3.5 / 26.4 degC.

Stations: Dongsi and Huairou (other districts, ~50 km apart) correlate at r = 0.84 for
hourly and 0.92 for daily PM2.5. Simulated stations of one region but other districts:
0.81-0.86 hourly, 0.81-0.87 daily; of one district: 0.95-0.96 hourly, 0.96-0.97 daily;
of other regions: 0.2-0.3 daily (only the seasons in common).

Weekly cycle: the data has none. The weekend / weekday mean is 1.00 for NO2 at Dongsi and
1.01 at Huairou; week by week the mean ln(weekend / weekday) is -0.044 +- 0.033 for NO2,
-0.045 +- 0.042 for CO and -0.054 +- 0.059 for PM2.5 (Dongsi; Huairou alike), none
significant. ``weekend_traffic_factor`` (default 1) can impose one.

Not matched:

* Episodes build up and clear alike; in the data ln PM2.5 clears faster than it builds
  (its 3-12 h changes have a skewness of -0.7), in the model's Gaussian process 0.
* One anomaly spread per season for every hour, where O3 spreads most at night: O3
  medians are 12-21 % low (JJA 79.5 -> 67, MAM 67 -> 53) and MAM's 90th percentile 6 %
  high (138 -> 147), while O3 means are within 11 %.
* PM10's upper tail is high: 90th percentile DJF 290 -> 335, JJA 162 -> 175.
* Dongsi reports PM10 = PM2.5 in 44 % of summer hours and less in 7 %, artefacts of
  the record; the model keeps PM10 >= 1.02 PM2.5 before noise, so the summer ratio is
  1.06, not 1.00.
* Stations of other districts correlate less by the day (0.81-0.87) than the data's 0.92.
* Huairou's O3 and NO2 daily profiles correlate at +0.02, the model's at -0.19.
* The daily temperature range is 0.6-0.7 degC narrow; RH is 1-2 points low.

One simulated year of one seed varies more: over ten seeds of 2023, the PM2.5 DJF median
was 51-69, its 90th percentile 207-313, the JJA median 53-64 and its 90th percentile
131-165; the tests hold a fixed seed to 25 % (medians) and 30 % (90th percentiles).
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
from bisect import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from functools import reduce
from itertools import repeat
from operator import add, mul
from typing import Annotated, ClassVar, NamedTuple, TypeVar

from pydantic import Field

from edge_agents.drivers.base import DriverOptions
from simulators.base import Clock, SimulatedDriver, utc_now
from telemetry import CATALOGUE, Kind

__all__ = [
    "AirQualityOptions",
    "AirQualityStationDriver",
    "AmbientOptions",
    "AmbientStationDriver",
    "Profile",
    "StationModel",
    "StationOptions",
    "seed_of",
]


class Profile(StrEnum):
    """Which real station a simulated one imitates."""

    URBAN = "urban"
    """Dongsi, central Beijing: traffic peaks, high NO2 and CO, a warm night."""
    SUBURBAN = "suburban"
    """Huairou, an outer district: lower NO2, a sharper morning peak, colder nights."""


class _VarTable(NamedTuple):
    """The calibrated marginal of one latent variable at one profile (see the module docstring).

    ``level`` holds the 12 monthly anchors of the transformed variable (mid-month),
    ``djf`` and ``jja`` its deviation at each local hour 0…23 in winter and in summer,
    ``knots`` four seasonal rows (DJF, MAM, JJA, SON) of the anomaly's quantiles at the
    standard-normal scores of :data:`_Z_KNOTS`. All are anchors: the model interpolates
    between them, and they were solved so that the interpolation matches the data.
    """

    level: tuple[float, ...]
    djf: tuple[float, ...]
    jja: tuple[float, ...]
    knots: tuple[tuple[float, ...], ...]


class _Dynamics(NamedTuple):
    """The time structure of one latent variable's anomaly.

    Its autocorrelation is close to ``(1 - fast_share) exp(-lag / tau_slow_h) +
    fast_share exp(-lag / tau_fast_h)``; ``region_share`` of its variance is shared by
    every station of the region, the rest by the district and the station itself.
    """

    tau_slow_h: float
    tau_fast_h: float
    fast_share: float
    region_share: float


_VARS = ("pm2_5", "coarse", "no2", "co", "so2", "o3", "wind", "temp", "dewp", "pres")
"""The latent variables, in the order of the correlation matrices; ``coarse`` is
ln(PM10 / PM2.5 - 1), ``wind`` ln(wind speed + 0.2 m/s), ``dewp`` the dew point."""
_N_POLLUTION = 6
"""The first six latent variables make the pollution metrics."""

_Z_KNOTS = (-3.0902, -2.3263, -1.2816, 0.0, 1.2816, 2.3263, 3.0902)
"""Standard-normal scores of the 0.1, 1, 10, 50, 90, 99 and 99.9th percentiles."""

# ---------------------------------------------------------------- calibration tables
# Derived once from PRSA_Data_{Dongsi,Huairou}_20130301-20170228.csv (see the module
# docstring). Pollutants are natural logs of µg/m³ (CO: mg/m³), floored at 1 (CO 0.05);
# coarse is ln(PM10 / PM2.5 - 1), floored at ln 0.02; wind ln(m/s + 0.2); temp and dewp
# are °C, pres hPa. Rows are laid out as the data is, not as ruff would.
# fmt: off
_URBAN: Mapping[str, _VarTable] = {
    "pm2_5": _VarTable(
        level=(4.57, 4.51, 4.67, 4.29, 4.23, 4.28,
               4.46, 3.98, 4.18, 4.66, 4.55, 4.76),
        djf=(0.22, 0.23, 0.21, 0.19, 0.11, 0.03, -0.03, -0.10, -0.15, -0.21, -0.22, -0.23,
             -0.22, -0.20, -0.20, -0.18, -0.13, -0.07, 0.00, 0.09, 0.17, 0.23, 0.23, 0.24),
        jja=(0.03, 0.03, 0.02, 0.01, 0.01, 0.01, 0.01, 0.02, 0.05, 0.06, 0.05, 0.03,
             0.03, 0.02, -0.02, -0.08, -0.09, -0.10, -0.09, -0.05, -0.01, 0.02, 0.02, 0.02),
        knots=(
            (-3.91, -3.71, -2.80, -0.62, 1.01, 1.82, 2.10),
            (-3.66, -3.18, -1.91, -0.10, 0.80, 1.09, 1.31),
            (-3.25, -2.89, -1.47, -0.15, 0.70, 1.28, 1.50),
            (-3.70, -3.63, -2.51, -0.28, 1.02, 1.10, 1.64),
        ),
    ),
    "coarse": _VarTable(
        level=(-1.84, -2.00, -1.12, -0.86, -1.00, -2.19,
               -3.27, -2.02, -1.83, -1.43, -1.61, -1.50),
        djf=(-0.19, -0.36, -0.30, -0.46, -0.49, -0.45, -0.45, -0.19, 0.09, 0.23, 0.19, 0.11,
             -0.06, -0.32, -0.23, 0.18, 0.32, 0.51, 0.65, 0.53, 0.33, 0.17, 0.23, -0.03),
        jja=(0.08, 0.01, -0.07, -0.15, -0.18, -0.23, -0.05, 0.05, -0.02, -0.03, -0.12, -0.23,
             -0.43, -0.41, -0.43, -0.36, 0.03, 0.14, 0.28, 0.49, 0.61, 0.48, 0.30, 0.23),
        knots=(
            (-2.83, -2.54, -2.09, -0.18, 2.86, 4.74, 5.75),
            (-3.77, -3.69, -2.99, 0.75, 1.72, 2.97, 3.83),
            (-2.51, -2.02, -1.45, -1.05, 2.89, 3.23, 4.42),
            (-3.04, -3.03, -2.55, 0.67, 1.98, 3.92, 5.17),
        ),
    ),
    "no2": _VarTable(
        level=(4.14, 3.69, 4.24, 3.74, 3.76, 3.80,
               3.68, 3.64, 3.97, 4.26, 4.13, 4.22),
        djf=(0.15, 0.11, 0.10, 0.10, 0.07, 0.01, 0.00, 0.02, 0.05, -0.01, -0.10, -0.18,
             -0.23, -0.26, -0.30, -0.22, -0.16, -0.07, 0.03, 0.12, 0.18, 0.21, 0.21, 0.19),
        jja=(0.21, 0.22, 0.22, 0.22, 0.23, 0.21, 0.20, 0.21, 0.24, 0.19, 0.11, 0.01,
             -0.12, -0.28, -0.42, -0.50, -0.51, -0.44, -0.32, -0.15, -0.01, 0.10, 0.19, 0.20),
        knots=(
            (-3.70, -1.93, -1.44, 0.05, 0.66, 0.85, 1.08),
            (-3.07, -2.17, -1.33, -0.04, 0.64, 1.11, 1.42),
            (-1.63, -1.17, -0.59, -0.08, 0.48, 0.82, 1.25),
            (-2.51, -2.20, -1.16, 0.03, 0.51, 0.89, 1.07),
        ),
    ),
    "co": _VarTable(
        level=(0.58, 0.29, 0.42, -0.20, -0.08, 0.09,
               0.01, -0.07, 0.09, 0.21, 0.60, 0.89),
        djf=(0.16, 0.19, 0.21, 0.07, -0.01, 0.10, 0.10, 0.08, 0.07, 0.01, -0.07, -0.08,
             -0.16, -0.20, -0.25, -0.24, -0.22, -0.17, -0.09, 0.00, 0.07, 0.12, 0.16, 0.17),
        jja=(0.08, 0.08, 0.07, -0.04, -0.08, 0.01, 0.03, 0.05, 0.08, 0.08, 0.08, 0.05,
             0.04, -0.02, -0.09, -0.10, -0.15, -0.15, -0.10, -0.07, 0.00, 0.04, 0.04, 0.09),
        knots=(
            (-3.08, -2.70, -1.91, -0.38, 0.92, 1.56, 1.86),
            (-2.42, -2.23, -1.21, -0.09, 0.79, 0.97, 1.26),
            (-1.01, -0.77, -0.77, -0.10, 0.35, 1.15, 2.53),
            (-3.42, -2.05, -1.14, -0.13, 0.66, 0.87, 1.05),
        ),
    ),
    "so2": _VarTable(
        level=(3.54, 3.40, 3.53, 2.63, 2.98, 2.31,
               1.93, 1.69, 2.07, 2.47, 2.98, 3.41),
        djf=(0.13, 0.19, 0.13, 0.17, 0.12, 0.05, 0.00, -0.02, -0.04, -0.05, -0.02, 0.02,
             -0.03, -0.06, -0.14, -0.16, -0.16, -0.17, -0.15, -0.07, -0.01, 0.06, 0.10, 0.12),
        jja=(-0.06, -0.06, -0.05, -0.09, -0.10, -0.12, -0.11, -0.03, 0.11, 0.19, 0.25, 0.25,
             0.25, 0.18, 0.11, 0.04, -0.06, -0.07, -0.05, -0.08, -0.11, -0.12, -0.15, -0.12),
        knots=(
            (-3.04, -2.89, -2.00, -0.34, 0.83, 1.47, 1.74),
            (-3.04, -2.90, -2.30, -0.36, 0.96, 1.41, 1.83),
            (-1.98, -1.73, -1.23, -0.60, 0.79, 1.83, 2.25),
            (-2.60, -2.30, -1.87, -0.37, 0.80, 1.61, 2.08),
        ),
    ),
    "o3": _VarTable(
        level=(3.24, 3.74, 3.85, 4.17, 4.46, 4.46,
               4.33, 4.48, 3.82, 3.08, 2.78, 2.90),
        djf=(-0.20, -0.20, -0.31, -0.39, -0.12, -0.17, -0.19, -0.29, -0.38, -0.23, 0.01, 0.23,
             0.38, 0.48, 0.55, 0.59, 0.54, 0.38, 0.18, -0.03, -0.17, -0.22, -0.23, -0.21),
        jja=(-0.08, -0.24, -0.43, -0.61, -0.62, -0.80, -0.85, -0.83, -0.69, -0.43, -0.15, 0.12,
             0.35, 0.52, 0.62, 0.66, 0.68, 0.67, 0.64, 0.57, 0.46, 0.29, 0.12, 0.03),
        knots=(
            (-3.55, -2.72, -1.97, -0.33, 0.82, 1.30, 2.61),
            (-3.55, -3.09, -1.60, 0.04, 0.53, 0.94, 0.94),
            (-4.43, -3.66, -0.96, 0.01, 0.39, 0.83, 2.91),
            (-3.12, -2.78, -2.31, -0.35, 0.91, 1.53, 1.53),
        ),
    ),
    "wind": _VarTable(
        level=(0.72, 0.83, 0.77, 0.92, 0.91, 0.57,
               0.60, 0.55, 0.51, 0.50, 0.64, 0.75),
        djf=(-0.10, -0.12, -0.16, -0.16, -0.18, -0.16, -0.16, -0.18, -0.14, 0.04, 0.12, 0.21,
             0.25, 0.26, 0.29, 0.26, 0.20, 0.16, 0.01, -0.04, -0.07, -0.08, -0.11, -0.14),
        jja=(-0.19, -0.24, -0.25, -0.31, -0.32, -0.31, -0.23, -0.07, -0.02, 0.07, 0.12, 0.16,
             0.22, 0.28, 0.31, 0.29, 0.27, 0.27, 0.19, 0.09, 0.01, -0.06, -0.11, -0.15),
        knots=(
            (-2.52, -2.30, -0.74, -0.31, 0.72, 1.13, 1.42),
            (-2.93, -2.62, -0.95, -0.10, 0.63, 1.02, 1.35),
            (-2.58, -2.18, -0.39, -0.05, 0.38, 0.74, 1.07),
            (-2.43, -2.18, -0.91, -0.13, 0.55, 1.29, 1.73),
        ),
    ),
    "temp": _VarTable(
        level=(-2.44, 0.75, 9.04, 15.79, 22.51, 24.69,
               27.97, 27.64, 20.90, 13.68, 3.98, -0.53),
        djf=(-1.61, -1.83, -2.14, -2.43, -2.73, -3.19, -3.56, -3.61, -2.88, -1.08, 0.46, 1.74,
             2.79, 3.63, 4.20, 4.34, 3.87, 2.83, 1.82, 1.02, 0.43, -0.15, -0.73, -1.20),
        jja=(-2.18, -2.71, -3.24, -3.65, -4.00, -4.04, -3.34, -2.14, -0.96, 0.14, 1.23, 2.13,
             2.91, 3.53, 3.87, 3.94, 3.78, 3.21, 2.49, 1.46, 0.50, -0.30, -1.02, -1.61),
        knots=(
            (-13.77, -4.98, -2.99, 0.15, 2.25, 7.89, 9.62),
            (-16.64, -14.03, -6.62, -0.03, 7.34, 11.13, 15.36),
            (-5.18, -2.63, -2.63, -0.57, 3.69, 5.19, 5.78),
            (-14.80, -13.13, -4.66, 1.39, 3.79, 7.42, 9.32),
        ),
    ),
    "dewp": _VarTable(
        level=(-15.16, -13.42, -8.09, 0.98, 6.51, 16.64,
               20.51, 19.34, 14.16, 5.83, -5.33, -12.64),
        djf=(0.73, 0.89, 0.84, 0.66, 0.49, 0.17, -0.06, -0.20, -0.06, -0.04, -0.19, -0.49,
             -0.73, -0.80, -0.95, -0.96, -0.88, -0.59, -0.27, 0.02, 0.34, 0.59, 0.68, 0.79),
        jja=(0.59, 0.60, 0.59, 0.57, 0.50, 0.64, 0.76, 0.65, 0.41, 0.18, -0.16, -0.41,
             -0.67, -0.90, -0.98, -1.00, -0.97, -0.79, -0.49, -0.22, -0.02, 0.21, 0.39, 0.51),
        knots=(
            (-14.45, -11.83, -7.25, -1.38, 9.34, 14.61, 18.03),
            (-27.39, -23.91, -12.69, 2.91, 9.41, 13.66, 16.46),
            (-6.78, -2.09, -2.09, -0.87, 4.11, 6.65, 8.45),
            (-32.93, -26.92, -8.66, 2.74, 5.89, 5.89, 5.89),
        ),
    ),
    "pres": _VarTable(
        level=(1024.42, 1022.74, 1015.22, 1010.03, 1003.47, 1000.88,
               999.31, 1002.45, 1010.92, 1017.23, 1020.57, 1023.38),
        djf=(0.48, 0.50, 0.49, 0.38, 0.09, 0.11, 0.20, 0.57, 1.18, 1.52, 1.39, 0.91,
             -0.12, -0.96, -1.57, -1.83, -1.64, -1.36, -0.89, -0.48, -0.08, 0.26, 0.44, 0.43),
        jja=(0.25, 0.14, 0.08, 0.09, 0.25, 0.50, 0.79, 1.03, 1.11, 1.07, 0.92, 0.61,
             0.15, -0.39, -0.87, -1.21, -1.44, -1.48, -1.29, -0.85, -0.27, 0.16, 0.31, 0.34),
        knots=(
            (-18.96, -16.09, -8.96, 1.15, 6.92, 9.61, 15.40),
            (-22.83, -17.62, -8.03, 0.49, 8.15, 19.20, 21.38),
            (-12.44, -6.61, -4.20, 0.62, 3.43, 3.43, 3.43),
            (-15.19, -10.72, -5.49, -1.37, 7.17, 16.73, 20.06),
        ),
    ),
}
_SUBURBAN: Mapping[str, _VarTable] = {
    "pm2_5": _VarTable(
        level=(4.34, 4.37, 4.56, 4.17, 3.97, 4.00,
               4.31, 3.76, 3.97, 4.45, 4.29, 4.41),
        djf=(0.17, 0.18, 0.09, 0.05, -0.03, -0.06, -0.11, -0.13, -0.10, -0.05, -0.03, -0.09,
             -0.14, -0.17, -0.21, -0.18, -0.16, -0.09, -0.01, 0.17, 0.26, 0.24, 0.22, 0.19),
        jja=(-0.01, -0.02, -0.03, -0.05, -0.07, -0.07, -0.09, -0.06, -0.02, -0.02, -0.01, 0.00,
             0.02, 0.03, 0.04, 0.06, 0.06, 0.05, 0.06, 0.04, 0.02, 0.03, 0.02, 0.01),
        knots=(
            (-3.49, -3.23, -2.46, -0.69, 1.03, 1.81, 2.31),
            (-3.67, -3.40, -2.14, -0.10, 0.83, 1.25, 1.42),
            (-3.01, -2.85, -1.50, -0.34, 0.82, 1.37, 1.77),
            (-3.50, -3.37, -2.43, -0.28, 0.97, 1.30, 1.39),
        ),
    ),
    "coarse": _VarTable(
        level=(-2.03, -2.13, -1.08, -1.04, -0.74, -1.66,
               -2.20, -1.70, -1.89, -1.89, -1.81, -2.09),
        djf=(-0.32, -0.53, -0.58, -0.52, -0.51, -0.42, -0.32, 0.04, 0.13, 0.03, 0.21, 0.00,
             -0.12, -0.30, -0.15, 0.35, 0.53, 0.69, 0.87, 0.60, 0.28, 0.13, 0.01, -0.08),
        jja=(-0.20, -0.42, -0.44, -0.59, -0.73, -0.74, -0.43, 0.01, 0.41, 0.27, 0.18, -0.05,
             -0.33, -0.32, -0.38, -0.27, 0.12, 0.30, 0.55, 0.94, 0.83, 0.79, 0.36, 0.15),
        knots=(
            (-2.57, -2.37, -1.80, -0.11, 2.40, 4.08, 5.37),
            (-4.12, -3.92, -2.89, 0.63, 1.74, 2.70, 3.43),
            (-3.31, -2.82, -2.09, 0.32, 2.29, 3.65, 5.49),
            (-2.86, -2.85, -2.29, 0.28, 2.23, 3.63, 4.56),
        ),
    ),
    "no2": _VarTable(
        level=(3.83, 3.50, 3.79, 3.40, 3.28, 3.00,
               2.86, 2.76, 3.06, 3.54, 3.86, 3.82),
        djf=(0.06, -0.05, -0.15, -0.14, -0.12, -0.22, -0.04, 0.05, 0.13, 0.10, 0.02, -0.12,
             -0.23, -0.29, -0.29, -0.21, -0.09, 0.08, 0.29, 0.37, 0.32, 0.24, 0.17, 0.11),
        jja=(0.09, 0.01, -0.09, -0.10, -0.15, -0.13, -0.09, 0.11, 0.23, 0.16, 0.00, -0.09,
             -0.18, -0.28, -0.26, -0.22, -0.17, -0.12, 0.03, 0.20, 0.30, 0.32, 0.28, 0.15),
        knots=(
            (-3.41, -3.18, -2.00, 0.04, 0.69, 0.83, 1.06),
            (-3.15, -2.86, -1.76, -0.01, 0.69, 1.24, 1.53),
            (-2.26, -1.99, -0.87, -0.11, 0.60, 1.02, 1.25),
            (-3.52, -2.83, -1.48, 0.03, 0.66, 1.03, 1.39),
        ),
    ),
    "co": _VarTable(
        level=(0.34, 0.13, 0.13, -0.36, -0.37, -0.10,
               -0.14, -0.42, -0.22, -0.09, 0.23, 0.54),
        djf=(0.20, 0.16, 0.05, 0.06, 0.04, 0.07, 0.04, 0.05, 0.11, 0.11, 0.00, -0.12,
             -0.20, -0.31, -0.33, -0.36, -0.34, -0.25, -0.09, 0.15, 0.24, 0.25, 0.24, 0.23),
        jja=(-0.01, 0.00, -0.09, -0.09, -0.12, -0.10, -0.08, -0.02, 0.02, 0.00, 0.05, 0.07,
             0.07, 0.01, -0.01, 0.04, 0.01, 0.01, 0.02, 0.06, 0.02, 0.06, 0.05, 0.02),
        knots=(
            (-2.94, -2.63, -1.45, -0.25, 0.67, 1.89, 2.28),
            (-2.58, -2.34, -1.51, -0.13, 0.81, 0.83, 1.06),
            (-2.05, -0.85, -0.85, -0.10, 0.35, 1.41, 2.69),
            (-2.54, -2.30, -1.12, -0.16, 0.75, 0.88, 0.94),
        ),
    ),
    "so2": _VarTable(
        level=(3.13, 3.03, 3.17, 2.28, 2.46, 1.68,
               1.40, 1.12, 1.49, 1.64, 2.40, 2.92),
        djf=(-0.09, -0.14, -0.25, -0.34, -0.38, -0.35, -0.37, -0.37, -0.30, -0.04, 0.13, 0.27,
             0.26, 0.31, 0.29, 0.32, 0.27, 0.23, 0.12, 0.13, 0.15, 0.09, 0.05, 0.02),
        jja=(-0.20, -0.24, -0.14, -0.35, -0.41, -0.45, -0.44, -0.33, -0.11, 0.17, 0.33, 0.39,
             0.39, 0.36, 0.38, 0.33, 0.26, 0.21, 0.18, 0.11, 0.01, -0.09, -0.17, -0.20),
        knots=(
            (-3.50, -2.76, -2.55, -0.61, 0.91, 1.73, 2.32),
            (-2.87, -2.87, -2.13, -0.62, 1.21, 1.49, 1.88),
            (-1.33, -1.13, -0.73, -0.26, 0.38, 1.67, 2.37),
            (-2.88, -2.18, -1.36, -0.57, 1.02, 2.07, 2.63),
        ),
    ),
    "o3": _VarTable(
        level=(3.15, 3.79, 3.98, 4.27, 4.55, 4.42,
               4.45, 4.27, 3.94, 3.46, 3.12, 3.36),
        djf=(-0.10, -0.09, -0.09, -0.09, -0.09, -0.14, -0.23, -0.39, -0.60, -0.48, -0.14, 0.19,
             0.39, 0.51, 0.58, 0.58, 0.53, 0.35, 0.03, -0.15, -0.18, -0.14, -0.13, -0.11),
        jja=(-0.17, -0.27, -0.40, -0.48, -0.54, -0.66, -0.77, -0.84, -0.70, -0.39, -0.09, 0.13,
             0.31, 0.45, 0.55, 0.64, 0.70, 0.71, 0.67, 0.58, 0.41, 0.20, 0.04, -0.07),
        knots=(
            (-3.65, -3.02, -2.63, -0.21, 0.89, 1.29, 1.50),
            (-3.68, -3.29, -0.99, -0.01, 0.47, 0.85, 1.12),
            (-4.58, -3.62, -1.01, -0.04, 0.54, 0.85, 1.18),
            (-4.05, -3.31, -2.66, -0.23, 0.77, 1.41, 2.07),
        ),
    ),
    "wind": _VarTable(
        level=(0.49, 0.70, 0.75, 0.91, 0.79, 0.52,
               0.42, 0.47, 0.31, 0.53, 0.44, 0.66),
        djf=(-0.09, -0.12, -0.17, -0.14, -0.19, -0.21, -0.21, -0.22, -0.27, -0.16, 0.06, 0.20,
             0.26, 0.32, 0.32, 0.32, 0.20, 0.10, 0.08, 0.10, 0.01, 0.01, -0.08, -0.12),
        jja=(-0.19, -0.19, -0.22, -0.24, -0.27, -0.29, -0.29, -0.25, -0.07, 0.05, 0.10, 0.22,
             0.25, 0.31, 0.33, 0.33, 0.29, 0.26, 0.17, 0.10, 0.00, -0.09, -0.13, -0.15),
        knots=(
            (-2.10, -1.49, -0.78, -0.24, 0.60, 1.37, 1.71),
            (-2.46, -1.48, -0.73, -0.20, 0.63, 1.14, 1.39),
            (-1.52, -0.79, -0.57, -0.17, 0.47, 0.90, 1.30),
            (-2.38, -1.73, -0.71, -0.20, 0.46, 1.21, 1.69),
        ),
    ),
    "temp": _VarTable(
        level=(-4.18, -0.68, 7.88, 14.88, 21.31, 23.71,
               26.87, 26.25, 19.50, 12.68, 3.28, -2.37),
        djf=(-2.06, -2.46, -2.91, -3.27, -3.64, -3.98, -4.42, -4.67, -3.98, -1.42, 1.01, 2.72,
             4.05, 5.02, 5.57, 5.66, 5.03, 3.66, 2.00, 0.89, 0.19, -0.41, -1.02, -1.55),
        jja=(-2.88, -3.35, -3.75, -4.16, -4.47, -4.52, -3.70, -1.98, -0.32, 0.97, 2.03, 2.97,
             3.68, 4.20, 4.48, 4.47, 4.18, 3.62, 2.67, 1.20, -0.06, -1.09, -1.79, -2.39),
        knots=(
            (-14.22, -6.59, -3.22, 0.12, 2.79, 6.63, 8.54),
            (-15.39, -13.32, -6.97, -0.17, 7.72, 12.43, 15.66),
            (-5.89, -3.46, -3.07, -0.60, 3.78, 4.46, 5.43),
            (-13.94, -11.95, -4.66, 1.64, 2.97, 8.12, 10.68),
        ),
    ),
    "dewp": _VarTable(
        level=(-15.70, -13.56, -8.68, 0.09, 6.50, 16.77,
               20.90, 19.61, 14.67, 5.16, -5.70, -13.43),
        djf=(0.49, 0.44, 0.55, 0.45, 0.35, 0.25, 0.21, 0.19, 0.45, 0.66, 0.39, -0.12,
             -0.44, -0.68, -0.73, -0.84, -0.87, -0.76, -0.34, -0.20, -0.10, 0.04, 0.23, 0.39),
        jja=(0.47, 0.41, 0.31, 0.25, 0.13, 0.12, 0.36, 0.42, 0.21, -0.09, -0.29, -0.48,
             -0.58, -0.72, -0.79, -0.79, -0.58, -0.40, -0.04, 0.26, 0.40, 0.49, 0.45, 0.46),
        knots=(
            (-14.96, -11.72, -5.94, -1.58, 8.11, 14.78, 18.63),
            (-26.46, -22.91, -12.72, 2.40, 10.20, 12.65, 14.74),
            (-11.57, -2.29, -2.08, -1.32, 3.89, 7.20, 9.09),
            (-28.97, -25.36, -10.02, 3.88, 5.28, 5.28, 5.28),
        ),
    ),
    "pres": _VarTable(
        level=(1019.14, 1017.69, 1010.27, 1005.17, 998.71, 996.26,
               994.76, 997.87, 1006.19, 1012.51, 1014.50, 1018.28),
        djf=(0.62, 0.52, 0.47, 0.31, 0.14, 0.11, 0.23, 0.48, 1.02, 1.25, 1.21, 0.69,
             -0.21, -1.09, -1.60, -1.71, -1.58, -1.36, -0.79, -0.33, 0.08, 0.38, 0.57, 0.58),
        jja=(0.35, 0.23, 0.16, 0.18, 0.32, 0.59, 0.85, 1.09, 1.13, 1.03, 0.83, 0.49,
             0.03, -0.48, -0.95, -1.30, -1.51, -1.53, -1.32, -0.85, -0.27, 0.18, 0.35, 0.41),
        knots=(
            (-18.88, -15.16, -8.86, 0.86, 7.24, 9.78, 14.72),
            (-23.35, -17.61, -7.91, 0.38, 8.10, 18.71, 21.00),
            (-12.86, -6.91, -4.10, 0.63, 3.49, 3.49, 3.49),
            (-15.28, -10.67, -5.08, -1.61, 7.08, 17.07, 20.84),
        ),
    ),
}
_CORRELATION: tuple[tuple[tuple[float, ...], ...], ...] = (
    # Lower triangles, rows and columns in the order of _VARS; DJF, MAM, JJA, SON.
    (  # DJF
        (1.00,),
        (-0.46, 1.00),
        (0.83, -0.33, 1.00),
        (0.86, -0.37, 0.83, 1.00),
        (0.66, -0.29, 0.69, 0.65, 1.00),
        (-0.66, 0.25, -0.69, -0.66, -0.47, 1.00),
        (-0.49, 0.32, -0.55, -0.50, -0.45, 0.46, 1.00),
        (0.07, -0.01, 0.09, 0.03, 0.07, 0.06, 0.08, 1.00),
        (0.72, -0.42, 0.63, 0.65, 0.42, -0.52, -0.44, 0.34, 1.00),
        (-0.30, 0.04, -0.27, -0.26, -0.23, 0.20, 0.11, -0.46, -0.36, 1.00),
    ),
    (  # MAM
        (1.00,),
        (-0.44, 1.00),
        (0.67, -0.22, 1.00),
        (0.79, -0.36, 0.74, 1.00),
        (0.66, -0.18, 0.64, 0.72, 1.00),
        (-0.12, 0.07, -0.37, -0.24, 0.01, 1.00),
        (-0.30, 0.22, -0.44, -0.37, -0.25, 0.28, 1.00),
        (0.20, 0.08, 0.05, 0.02, 0.13, 0.34, 0.18, 1.00),
        (0.70, -0.41, 0.52, 0.65, 0.47, -0.08, -0.36, 0.16, 1.00),
        (-0.32, 0.05, -0.24, -0.24, -0.19, 0.03, 0.04, -0.36, -0.34, 1.00),
    ),
    (  # JJA
        (1.00,),
        (-0.30, 1.00),
        (0.47, 0.06, 1.00),
        (0.79, -0.26, 0.48, 1.00),
        (0.42, 0.08, 0.33, 0.41, 1.00),
        (0.19, -0.02, -0.22, 0.03, 0.20, 1.00),
        (-0.14, 0.04, -0.25, -0.21, -0.03, 0.20, 1.00),
        (0.08, 0.13, -0.11, -0.09, 0.17, 0.38, 0.22, 1.00),
        (0.62, -0.26, 0.28, 0.63, 0.10, -0.07, -0.28, -0.12, 1.00),
        (0.03, -0.06, 0.01, 0.07, 0.04, 0.02, -0.03, -0.20, -0.14, 1.00),
    ),
    (  # SON
        (1.00,),
        (-0.43, 1.00),
        (0.72, -0.15, 1.00),
        (0.87, -0.34, 0.75, 1.00),
        (0.52, -0.09, 0.55, 0.54, 1.00),
        (-0.24, 0.06, -0.45, -0.37, -0.04, 1.00),
        (-0.36, 0.16, -0.43, -0.39, -0.25, 0.30, 1.00),
        (0.16, -0.01, 0.01, 0.09, 0.17, 0.21, 0.14, 1.00),
        (0.73, -0.46, 0.52, 0.72, 0.26, -0.35, -0.38, 0.24, 1.00),
        (-0.30, -0.02, -0.22, -0.27, -0.17, 0.05, 0.08, -0.40, -0.30, 1.00),
    ),
)
_DYNAMICS: Mapping[str, _Dynamics] = {
    # tau_slow_h, tau_fast_h, fast_share, region_share; PM2.5: tau_slow_h set by simulation
    "pm2_5": _Dynamics(38, 8, 0.02, 0.84),
    "coarse": _Dynamics(42, 1.5, 0.46, 0.47),
    "no2": _Dynamics(34, 5, 0.5, 0.54),
    "co": _Dynamics(22, 5, 0.16, 0.74),
    "so2": _Dynamics(44, 6, 0.4, 0.68),
    "o3": _Dynamics(44, 6, 0.68, 0.59),
    "wind": _Dynamics(14, 1, 0.54, 0.35),
    "temp": _Dynamics(72, 6, 0.52, 0.89),
    "dewp": _Dynamics(34, 8, 0.02, 0.93),
    "pres": _Dynamics(40, 0.5, 0, 0.95),
}
# fmt: on

_TABLES: Mapping[Profile, tuple[_VarTable, ...]] = {
    Profile.URBAN: tuple(_URBAN[name] for name in _VARS),
    Profile.SUBURBAN: tuple(_SUBURBAN[name] for name in _VARS),
}
"""Each profile's tables, in the order of :data:`_VARS`."""

_DISTRICT_SHARE = 0.75
"""Of the variance not shared by the region, the part shared by a district (the rest is
the station's own). The data has no two stations in one district; this is an assumption."""
_WAVES = {"pm2_5": (48, 16, 8)}
"""Waves summed for the region, district and station processes of a variable: more for
PM2.5, whose time structure matters most."""
_DEFAULT_WAVES = (16, 12, 8)
_MIN_CYCLES_PER_H = 1.0 / 720.0
"""No wave is slower than one cycle per 30 days. The seasons come from the tables; a few
waves of periods near a year would instead bias whole seasons of one seed."""
_MAX_CYCLES_PER_H = 0.5
"""No wave is faster than one cycle per two hours."""
_WEEK_H = 168.0
_CALENDAR_GUARD = 1.0 / 1440.0
"""Waves keep this far (cycles per hour) from every multiple of one cycle per week: they
drift through the hours of the week within 60 days at most."""
_SENSOR_NOISE = {
    "pm2_5": 0.03,
    "pm10": 0.03,
    "no2": 0.02,
    "co": 0.02,
    "so2": 0.02,
    "o3": 0.02,
    "temperature_c": 0.1,
    "humidity_pct": 1.0,
    "pressure_hpa": 0.1,
    "wind_speed_ms": 0.05,
}
"""Standard deviation of each reading's sensor noise: relative (log) for concentrations
and wind, absolute (°C, %, hPa) for the other ambient metrics."""
_WIND_OFFSET = 0.2
"""m/s added to the wind speed before its logarithm is taken, so calm air has one."""
_MAGNUS_A, _MAGNUS_B = 17.625, 243.04
"""Magnus coefficients (Alduchov and Eskridge) for the saturation pressure over water."""
_CYCLES = 2.0 * math.pi
_YEAR_DAYS = 365.25
_EPOCH_2000_S = 946_684_800.0
_UNIX_EPOCH_ORDINAL = 719_163
"""``date(1970, 1, 1).toordinal()``."""


def _cholesky(lower: Sequence[Sequence[float]]) -> tuple[tuple[float, ...], ...]:
    """The lower Cholesky factor of a correlation matrix given by its lower triangle."""
    n = len(lower)
    factor = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            rest = lower[i][j] - sum(factor[i][k] * factor[j][k] for k in range(j))
            factor[i][j] = math.sqrt(rest) if i == j else rest / factor[j][j]
    return tuple(tuple(row[: i + 1]) for i, row in enumerate(factor))


_FACTORS = tuple(_cholesky(matrix) for matrix in _CORRELATION)
"""Cholesky factors of the four seasonal correlation matrices."""
_OVERLAPS = tuple(
    tuple(
        sum(map(mul, row, following))
        for row, following in zip(factor, _FACTORS[(s + 1) % 4], strict=True)
    )
    for s, factor in enumerate(_FACTORS)
)
"""Row by row, the dot product of each season's factor with the next season's, which
gives the variance of a blend of the two."""


def seed_of(name: str) -> int:
    """A stable 63-bit seed for a name, the same in every process and on every machine.

    >>> seed_of("dongcheng") == seed_of("dongcheng") != seed_of("huairou")
    True
    """
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"urbansense-aq").digest()
    return int.from_bytes(digest, "big") >> 1


def _season(doy: float) -> tuple[int, int, float]:
    """The two seasons (0 DJF … 3 SON) around day ``doy`` and the weight of the second.

    Seasons are anchored at mid-January, mid-April, mid-July and mid-October.
    """
    position = (doy - 15.0) / (_YEAR_DAYS / 4)
    index = math.floor(position)
    return index % 4, (index + 1) % 4, position - index


def _quantile(knots_a: Sequence[float], knots_b: Sequence[float], weight: float, z: float) -> float:
    """Map a standard-normal score to the anomaly, piecewise linearly through the knots.

    The knots are those of two seasons, blended with ``weight`` on the second; beyond the
    outer knots the end segments extend.
    """
    segment = min(max(bisect(_Z_KNOTS, z) - 1, 0), len(_Z_KNOTS) - 2)
    z0, z1 = _Z_KNOTS[segment], _Z_KNOTS[segment + 1]
    k0 = knots_a[segment] + (knots_b[segment] - knots_a[segment]) * weight
    k1 = knots_a[segment + 1] + (knots_b[segment + 1] - knots_a[segment + 1]) * weight
    return k0 + (k1 - k0) * (z - z0) / (z1 - z0)


def _normals(key: bytes, count: int) -> list[float]:
    """Up to sixteen independent standard-normal numbers, a pure function of ``key``."""
    words = struct.unpack("<16I", hashlib.blake2b(key, digest_size=64).digest())
    out: list[float] = []
    for i in range(0, count + count % 2, 2):
        radius = math.sqrt(-2.0 * math.log((words[i] + 0.5) / 2**32))
        angle = _CYCLES * (words[i + 1] + 0.5) / 2**32
        out += (radius * math.cos(angle), radius * math.sin(angle))
    return out


def _off_calendar(cycles: float) -> bool:
    """Whether a wave of ``cycles`` per hour stays clear of the daily and weekly cycles.

    A wave whose frequency is within :data:`_CALENDAR_GUARD` of a multiple of one cycle
    per week (which includes the daily harmonics) would keep nearly the same phase at the
    same hour of the week for months, and so add a false daily or weekly pattern.
    """
    nearest = round(cycles * _WEEK_H) / _WEEK_H
    return abs(cycles - nearest) >= _CALENDAR_GUARD


def _off_calendar_nearest(cycles: float) -> float:
    """The frequency nearest to ``cycles`` that :func:`_off_calendar` accepts."""
    nearest = round(cycles * _WEEK_H) / _WEEK_H
    return nearest + math.copysign(_CALENDAR_GUARD, cycles - nearest)


class _Process:
    """A stationary random process with zero mean and unit variance, a pure function of time.

    It is a sum of cosines with random phases whose frequencies are stratified quantiles of
    the spectrum of an Ornstein-Uhlenbeck process (a Cauchy density, truncated to periods
    from 2 hours to 30 days) with a slow and a fast time scale, so its autocorrelation
    is close to that of :class:`_Dynamics`. Everything is drawn once from a generator
    seeded with ``key``. Processes add up (:meth:`plus`) into one with the waves of both.
    """

    __slots__ = ("_amplitudes", "_omegas", "_phases")

    def __init__(
        self, amplitudes: tuple[float, ...], omegas: tuple[float, ...], phases: tuple[float, ...]
    ) -> None:
        self._amplitudes = amplitudes
        self._omegas = omegas
        """Angular frequencies, radians per hour."""
        self._phases = phases
        """Phases, radians."""

    @classmethod
    def seeded(cls, key: str, waves: int, dynamics: _Dynamics, weight: float) -> _Process:
        """A process of ``waves`` cosines drawn from ``key``, times ``weight``."""
        rng = random.Random(key)
        fast = dynamics.fast_share
        n_fast = max(1, round(waves * fast)) if fast > 0 else 0
        amplitudes: list[float] = []
        omegas: list[float] = []
        for count, tau, share in (
            (waves - n_fast, dynamics.tau_slow_h, 1.0 - fast),
            (n_fast, dynamics.tau_fast_h, fast),
        ):
            # The Cauchy spectrum, truncated to the band, cut into strata of equal power.
            bottom = 2.0 / math.pi * math.atan(_CYCLES * _MIN_CYCLES_PER_H * tau)
            top = 2.0 / math.pi * math.atan(_CYCLES * _MAX_CYCLES_PER_H * tau)
            for stratum in range(count):
                for _ in range(16):
                    quantile = bottom + (top - bottom) * (stratum + rng.random()) / count
                    cycles = math.tan(math.pi / 2 * quantile) / tau / _CYCLES
                    if _off_calendar(cycles):
                        break
                else:
                    cycles = _off_calendar_nearest(cycles)
                omegas.append(_CYCLES * cycles)
                amplitudes.append(weight * math.sqrt(2.0 * share / count))
        phases = [_CYCLES * rng.random() for _ in omegas]
        return cls(tuple(amplitudes), tuple(omegas), tuple(phases))

    def plus(self, other: _Process) -> _Process:
        """The sum of two processes."""
        return _Process(
            self._amplitudes + other._amplitudes,
            self._omegas + other._omegas,
            self._phases + other._phases,
        )

    def __call__(self, t_h: float) -> float:
        # map() keeps the loop in C: this is the model's hot path.
        angles = map(add, map(mul, self._omegas, repeat(t_h)), self._phases)
        total: float = sum(map(mul, self._amplitudes, map(math.cos, angles)))
        return total


class _Instant(NamedTuple):
    """One moment, as the model needs it."""

    t_h: float
    """Hours since 2000-01-01T00:00Z."""
    second: int
    """Whole seconds since the Unix epoch: the bucket of the sensor noise."""
    hour: float
    """Local hour of the day, 0 ≤ hour < 24."""
    doy: float
    """Local day of the year, 0 at the start of 1 January, with the hour as a fraction."""
    weekend: bool
    """Whether it is Saturday or Sunday, local time."""

    @classmethod
    def of(cls, ts: datetime, tz_offset_h: float) -> _Instant:
        if ts.utcoffset() is None:
            msg = f"{ts.isoformat()} is a naive datetime; give the time in UTC"
            raise ValueError(msg)
        epoch_s = ts.timestamp()
        local_h = epoch_s / 3600.0 + tz_offset_h
        day = math.floor(local_h / 24.0)
        hour = local_h - 24.0 * day
        yday = date.fromordinal(day + _UNIX_EPOCH_ORDINAL).timetuple().tm_yday
        return cls(
            t_h=(epoch_s - _EPOCH_2000_S) / 3600.0,
            second=math.floor(epoch_s),
            hour=hour,
            doy=yday - 1 + hour / 24.0,
            weekend=(day + 3) % 7 >= 5,
        )


def _clamped(kind: Kind, values: Mapping[str, float]) -> dict[str, float]:
    """``values`` with each metric held within its catalogue range."""
    specs = CATALOGUE[kind]
    return {
        name: min(specs[name].high, max(specs[name].low, value)) for name, value in values.items()
    }


@dataclass(frozen=True)
class StationModel:
    """A deterministic air-quality station: pollutant and weather values at any UTC time.

    The values are a pure function of the parameters and the time: the same model gives
    byte-identical values for the same ``ts`` whatever was asked before. Stations with the
    same ``district_seed`` (and ``region_seed``) share the district's and the region's
    weather and episodes, so they correlate strongly; each station adds its own local
    variation from ``seed``. See the module docstring for the calibration.

    Attributes:
        seed: the station's own variation and sensor noise.
        district_seed: the variation shared by the stations of one district.
        region_seed: the variation (weather, haze episodes) shared by every station of
            the region; stations of other districts in the same region still correlate.
        profile: the real station imitated: ``urban`` (Dongsi) or ``suburban`` (Huairou).
        scale: multiplies every concentration: a station's offset from its profile.
        tz_offset_h: the local time's offset from UTC in hours, for the daily, weekly and
            yearly cycles (Beijing: 8).
        weekend_traffic_factor: multiplies NO2 and CO on Saturdays and Sundays, local
            time. The Beijing data shows no weekend effect, hence 1.

    Raises:
        ValueError: a parameter is out of its range.
    """

    seed: int = 0
    district_seed: int = 0
    region_seed: int = 0
    profile: Profile = Profile.URBAN
    scale: float = 1.0
    tz_offset_h: float = 8.0
    weekend_traffic_factor: float = 1.0
    _processes: tuple[_Process, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "profile", Profile(self.profile))
        if not (math.isfinite(self.scale) and self.scale > 0):
            msg = f"scale must be a positive number, not {self.scale!r}"
            raise ValueError(msg)
        if not -14.0 <= self.tz_offset_h <= 14.0:
            msg = f"tz_offset_h must be within [-14, 14] hours, not {self.tz_offset_h!r}"
            raise ValueError(msg)
        factor = self.weekend_traffic_factor
        if not (math.isfinite(factor) and factor > 0):
            msg = f"weekend_traffic_factor must be a positive number, not {factor!r}"
            raise ValueError(msg)
        processes = []
        for name in _VARS:
            dynamics = _DYNAMICS[name]
            rest = 1.0 - dynamics.region_share
            shares = (
                ("region", self.region_seed, dynamics.region_share),
                ("district", self.district_seed, rest * _DISTRICT_SHARE),
                ("station", self.seed, rest * (1.0 - _DISTRICT_SHARE)),
            )
            waves = _WAVES.get(name, _DEFAULT_WAVES)
            parts = [
                _Process.seeded(f"{level}:{seed}:{name}", count, dynamics, math.sqrt(share))
                for (level, seed, share), count in zip(shares, waves, strict=True)
            ]
            processes.append(reduce(_Process.plus, parts))
        object.__setattr__(self, "_processes", tuple(processes))

    def values_at(self, ts: datetime) -> dict[str, float]:
        """The pollution metrics at ``ts``: PM2.5, PM10, NO2, SO2, O3 in µg/m³, CO in mg/m³.

        Args:
            ts: an aware datetime; local time is ``ts`` plus ``tz_offset_h``.

        Returns:
            The six metrics of ``CATALOGUE[Kind.POLLUTION]``, within their physical ranges,
            with PM10 ≥ PM2.5.

        Raises:
            ValueError: ``ts`` is naive.
        """
        at = _Instant.of(ts, self.tz_offset_h)
        pm2_5, coarse, no2, co, so2, o3 = self._transformed(at, _N_POLLUTION)
        n_pm2_5, n_pm10, n_no2, n_so2, n_o3, n_co = self._sensor_noise(at, Kind.POLLUTION)
        noise = _SENSOR_NOISE
        scale = self.scale
        traffic = scale * (self.weekend_traffic_factor if at.weekend else 1.0)
        fine = math.exp(pm2_5) * scale
        fine_read = fine * math.exp(noise["pm2_5"] * n_pm2_5)
        coarse_read = fine * math.exp(coarse + noise["pm10"] * n_pm10)
        return _clamped(
            Kind.POLLUTION,
            {
                "pm2_5": round(fine_read, 1),
                "pm10": round(fine_read + coarse_read, 1),
                "no2": round(math.exp(no2 + noise["no2"] * n_no2) * traffic, 1),
                "so2": round(math.exp(so2 + noise["so2"] * n_so2) * scale, 1),
                "o3": round(math.exp(o3 + noise["o3"] * n_o3) * scale, 1),
                "co": round(math.exp(co + noise["co"] * n_co) * traffic, 3),
            },
        )

    def ambient_at(self, ts: datetime) -> dict[str, float]:
        """The weather at the station at ``ts``: the metrics of ``CATALOGUE[Kind.AMBIENT]``.

        Temperature, dew point, pressure and wind follow the profile's monthly means and
        daily cycles and move with the same latent weather as the pollutants (humid, still
        air in haze episodes); relative humidity comes from the temperature and the dew
        point (Magnus formula).

        Args:
            ts: an aware datetime; local time is ``ts`` plus ``tz_offset_h``.

        Raises:
            ValueError: ``ts`` is naive.
        """
        at = _Instant.of(ts, self.tz_offset_h)
        wind, temperature, dew_point, pressure = self._transformed(at, len(_VARS))[_N_POLLUTION:]
        n_temperature, n_humidity, n_pressure, n_wind = self._sensor_noise(at, Kind.AMBIENT)
        noise = _SENSOR_NOISE
        dew_point = min(dew_point, temperature)
        humidity = 100.0 * math.exp(
            _MAGNUS_A * dew_point / (_MAGNUS_B + dew_point)
            - _MAGNUS_A * temperature / (_MAGNUS_B + temperature)
        )
        speed = max(0.0, math.exp(wind) - _WIND_OFFSET) * math.exp(noise["wind_speed_ms"] * n_wind)
        return _clamped(
            Kind.AMBIENT,
            {
                "temperature_c": round(temperature + noise["temperature_c"] * n_temperature, 2),
                "humidity_pct": round(humidity + noise["humidity_pct"] * n_humidity, 1),
                "pressure_hpa": round(pressure + noise["pressure_hpa"] * n_pressure, 2),
                "wind_speed_ms": round(speed, 2),
            },
        )

    def _sensor_noise(self, at: _Instant, kind: Kind) -> list[float]:
        """One standard-normal number per metric of ``kind``, for this station and second."""
        key = f"{self.seed}:{self.district_seed}:{self.region_seed}:{kind}:{at.second}"
        return _normals(key.encode(), len(CATALOGUE[kind]))

    def _transformed(self, at: _Instant, count: int) -> list[float]:
        """The first ``count`` latent variables at ``at``, in their transformed units."""
        t_h, doy = at.t_h, at.doy
        latent = [process(t_h) for process in self._processes[:count]]
        first, second, weight = _season(doy)
        keep = 1.0 - weight
        factor_a, factor_b, overlaps = _FACTORS[first], _FACTORS[second], _OVERLAPS[first]
        summer = 0.5 - 0.5 * math.cos(_CYCLES * (doy - 15.0) / _YEAR_DAYS)
        # The monthly anchors and the hours either side of ``at``, with their weights.
        month_position = doy / (_YEAR_DAYS / 12) - 0.5
        month = math.floor(month_position)
        later_month = month_position - month
        month, next_month = month % 12, (month + 1) % 12
        hour = math.floor(at.hour)
        later_hour = at.hour - hour
        hour, next_hour = hour % 24, (hour + 1) % 24
        out: list[float] = []
        for i, table in enumerate(_TABLES[self.profile][:count]):
            # The two seasons' correlated scores, blended and rescaled to unit variance.
            mixed = keep * sum(map(mul, factor_a[i], latent)) + weight * sum(
                map(mul, factor_b[i], latent)
            )
            z = mixed / math.sqrt(keep * keep + weight * weight + 2.0 * keep * weight * overlaps[i])
            level = (
                table.level[month] + (table.level[next_month] - table.level[month]) * later_month
            )
            winter = table.djf[hour] + (table.djf[next_hour] - table.djf[hour]) * later_hour
            summer_ = table.jja[hour] + (table.jja[next_hour] - table.jja[hour]) * later_hour
            daily = winter + (summer_ - winter) * summer
            anomaly = _quantile(table.knots[first], table.knots[second], weight, z)
            out.append(level + daily + anomaly)
        return out


class StationOptions(DriverOptions):
    """Options shared by the simulated station drivers.

    Attributes:
        seed: the station's own variation and sensor noise.
        district: the district's name; stations of one district share its variation.
        region: the region's name; stations of one region share its weather and episodes.
        profile: ``urban`` (Dongsi-like) or ``suburban`` (Huairou-like).
        tz_offset_h: the local time's offset from UTC, in hours.
    """

    seed: int = 0
    district: Annotated[str, Field(min_length=1)] = "default"
    region: Annotated[str, Field(min_length=1)] = "beijing"
    profile: Profile = Profile.URBAN
    tz_offset_h: Annotated[float, Field(ge=-14, le=14)] = 8.0

    def station_model(self) -> StationModel:
        """The station model these options describe."""
        return StationModel(
            seed=self.seed,
            district_seed=seed_of(self.district),
            region_seed=seed_of(self.region),
            profile=self.profile,
            tz_offset_h=self.tz_offset_h,
        )


class AirQualityOptions(StationOptions):
    """Options of the simulated air-quality station (``kind = pollution``).

    Attributes:
        scale: multiplies every concentration.
        weekend_traffic_factor: multiplies NO2 and CO on local Saturdays and Sundays.
    """

    scale: Annotated[float, Field(gt=0, le=100)] = 1.0
    weekend_traffic_factor: Annotated[float, Field(gt=0, le=10)] = 1.0

    def station_model(self) -> StationModel:
        """The station model these options describe."""
        return replace(
            super().station_model(),
            scale=self.scale,
            weekend_traffic_factor=self.weekend_traffic_factor,
        )


class AmbientOptions(StationOptions):
    """Options of the simulated weather sensor of an air-quality station (``kind = ambient``)."""


_OptionsT = TypeVar("_OptionsT", bound=StationOptions)


class _StationDriver(SimulatedDriver[_OptionsT]):
    """What the two station drivers share: the station model their options describe."""

    def __init__(self, options: _OptionsT, *, clock: Clock = utc_now) -> None:
        super().__init__(options, clock=clock)
        self.model = options.station_model()
        """The station model the readings come from."""


class AirQualityStationDriver(_StationDriver[AirQualityOptions]):
    """A simulated air-quality station: ``read()`` is ``model.values_at(clock())``.

    Args:
        options: the validated options.
        clock: gives the time of each read (an aware datetime); ``datetime.now(UTC)``
            by default, a fixed or stepping function in tests and replays.
    """

    Options: ClassVar[type[DriverOptions]] = AirQualityOptions
    kind: ClassVar[Kind | None] = Kind.POLLUTION

    def read(self) -> dict[str, float]:
        """PM2.5, PM10, NO2, SO2, O3 (µg/m³) and CO (mg/m³) at the clock's time."""
        return self.model.values_at(self.now())


class AmbientStationDriver(_StationDriver[AmbientOptions]):
    """The weather sensor of a simulated station: ``read()`` is ``model.ambient_at(clock())``.

    Args:
        options: the validated options.
        clock: gives the time of each read (an aware datetime); ``datetime.now(UTC)``
            by default.
    """

    Options: ClassVar[type[DriverOptions]] = AmbientOptions
    kind: ClassVar[Kind | None] = Kind.AMBIENT

    def read(self) -> dict[str, float]:
        """Temperature, relative humidity, pressure and wind speed at the clock's time."""
        return self.model.ambient_at(self.now())

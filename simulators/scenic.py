"""A simulated scenic area (a park) with visitor counters at its gates.

:class:`ParkModel` makes each local day's visitors one by one -- when each arrives, by
which gate, how long they stay and by which gate they leave -- as a pure function of the
seed and the date, and answers :meth:`~ParkModel.counts` (entries and exits at a gate over
``[t0, t1)``) and :meth:`~ParkModel.occupancy_at` (visitors inside) from the sorted
times. :class:`GateCounterDriver` is the edge-agent driver of one gate's counter
(``Kind.CROWD``): each ``read()`` gives the entries and exits since the previous read.

>>> from datetime import UTC
>>> park = ParkModel(seed=1, gates=("north", "south"))
>>> opening = datetime(2024, 6, 3, 22, tzinfo=UTC)  # Tuesday 4 June, 06:00 in Beijing
>>> closing = opening + timedelta(hours=15, minutes=30)
>>> north, south = park.counts("north", opening, closing), park.counts("south", opening, closing)
>>> north[0] + south[0] == park.day_visitors(date(2024, 6, 4)) == north[1] + south[1]
True
>>> park.occupancy_at(opening + timedelta(hours=7)) > 0, park.occupancy_at(closing)
(True, 0)
>>> ticks = iter([opening + timedelta(hours=8), opening + timedelta(hours=8, seconds=60)])
>>> options = GateCounterOptions(seed=1, area="lakeside", gate="north", gates=["north", "south"])
>>> driver = GateCounterDriver(options, clock=lambda: next(ticks))
>>> driver.open()
>>> sorted(driver.read())
['entries', 'exits']
>>> driver.close()

How a value is made
-------------------
Each local day ``d`` has an expected number of visitors::

    daily_visitors_mean x season(d) x (holiday(d) or week(d)) x noise(d)

* ``daily_visitors_mean``: the mean of an ordinary (non-holiday) day over a year; by
  default 20 % of ``daily_capacity`` (the registry's capacities follow LB/T 034-2014:
  daily = instantaneous x opening hours / mean stay, so 20 % of it is a day whose peak
  occupancy is about a third of the instantaneous capacity);
* ``season``: Jiuzhaigou's monthly profile (below) at mid-month anchors, interpolated
  day by day in log space and raised to the power ``seasonality`` (1: Jiuzhaigou's mountain
  season, 0: none; the default 0.25 is a judgement for a city park, see Calibration),
  scaled to a yearly mean of 1;
* ``week``: Jiuzhaigou's Monday-to-Sunday profile; Saturday and Sunday together are
  ``weekend_factor`` times a weekday, and the week averages 1;
* ``holiday``: on the Chinese public holidays (``holidays=True``), a factor by the day's
  position in the holiday instead of the weekday's, measured at Jiuzhaigou; New Year and
  Spring Festival's are raised to the power ``seasonality`` as they are mostly a winter
  (off-season) effect there. Golden Week is 1-7 October and Labour Day 1-5 May every year
  (1-3 May before 2020), New Year 1 January, Qingming 4-6 April, Spring Festival from the
  eve for seven days (from a table of lunar new years, 2013-2030); 2023-2026 follow the
  State Council's notices (e.g. 29 Sep-6 Oct 2023, 1-8 Oct 2025) and 2027 the festival
  dates. Dragon Boat and Mid-Autumn are known for 2023-2027 only; make-up working days
  are ignored (they count as ordinary days);
* ``noise``: exp of a Student-t (3 degrees of freedom) draw times 0.085, held within
  +-0.7, seeded by (seed, date): parks of other seeds share the calendar, not the noise.

Arrivals follow an intraday curve over local clock hours -- a slow morning ramp, a peak
at 10-11, a lunch dip, an afternoon shoulder and an evening tail -- cut to the opening
hours, with nobody entering in the last hour. ``surges`` multiply this arrival rate over
their span (``Effect.amount`` is the factor, ramps included), so the day's visitors grow
with them. The rate is evaluated per minute; the day's count is its integral plus a
Poisson-sized normal draw, and the visitors' arrival times are sorted uniform draws
mapped through the integrated rate. Each visitor then gets:

* an entry gate, by ``gate_shares`` (equal when not given);
* a stay: lognormal with sigma 0.6 (a 1024-quantile table), its mean solved so that the
  stays, once cut short at closing, average ``mean_stay_h`` on an ordinary day (the
  registry's capacities assume that mean: daily = instantaneous x open hours / stay);
* an exit time: ``min(arrival + stay, closing - U(1, 45) min)``, so that those who would
  stay past closing leave in its last 45 minutes and the park is empty at closing;
* an exit gate: the entry gate with probability 1/2, otherwise drawn by the entry shares
  rotated by a seeded offset of 1 or more (another gate is busiest on the way out).

A counter sees at most 20 persons per second (the catalogue's ``max_rate_per_s``): the
minute's arrival rate is capped so that the busiest gate takes at most 20/s, each gate's
entries and exits then queue 1/20 s apart, and a visitor whose queued entry falls in the
last hour is turned away (after a surge beyond the gates' throughput, exits queued past
closing are the one way anybody is inside after it). ``daily_quota`` stops ticket sales
after that many entries (as Jiuzhaigou's 41 000 a day). One day of visitors is built at
the first question about it and kept (8 days per model); counts and occupancy are then
bisections of the sorted times, so counts are additive over any split points and
occupancy is never negative (every exit follows its own entry on the same day). A day
of 100 000 visitors builds in about 0.12 s and a day of 20 000 in about 25 ms, and a
driver read once a second costs about 10 us on average over a day, builds included
(measured on the development machine).

Calibration
-----------
Data (1): Jiuzhaigou's daily visitors, 2012-11-21 to 2022-12-20 (the park's daily
notices, via YuantingMaSC/Jiuzhaigou_Crawler; ``/work/shared/data/jiuzhaigou``).
Duplicate dates were reduced to their median, the 208 595 of 2013-10-07 (a Golden Week
total) dropped, and only 2013-2016 used (later years have closures and COVID-19 caps).
Holidays are the official ones of those years; weekday and noise figures leave out
January, February and the days within two days of a holiday. "Centred median" is the
median of the 7 days around a day; "nearby weekdays" the median of the weekdays within
three weeks, holidays excluded. The model's figures are the same statistics of its
day levels, 2013-2016, seeds 0-2, ``seasonality=1`` unless said:

=========================================  ==========================  ====================
statistic                                  real                        model
=========================================  ==========================  ====================
Mon ... Sun / centred median (geo. mean)   0.92 0.99 1.01 0.95 1.02    0.92-0.94 0.99
                                           1.20 1.03                   0.98-1.01 0.93-0.95
                                                                       0.99-1.01 1.19-1.20
                                                                       1.00-1.03
weekend / weekday                          1.14                        1.13-1.15
monthly median / mean of months, Jan-Jun   0.12 0.20 0.73 0.77 0.84    0.14 0.22 0.67 0.80
                                           1.06                        0.88 1.11 (seed 0)
... Jul-Dec                                1.89 2.17 1.54 1.89 0.58    1.86 2.14 1.69 1.67
                                           0.20 (Aug / Jan 18)         0.59 0.21
Aug / Jan at the default seasonality 0.25  --                          2.0
ln(day / centred median), weekday          -0.40 -0.20 -0.16 -0.05     -0.31..-0.44
removed: quantiles 1 5 10 25 %                                         -0.19..-0.22
                                                                       -0.14..-0.15 -0.06
... 75 90 95 99 %; sd                      0.06 0.13 0.22 0.49; 0.16   0.07 0.13-0.14
                                                                       0.18-0.20 0.34-0.36;
                                                                       0.12-0.13
Golden Week day 1..7 / Sep weekday median  0.85 1.79 2.14 2.14 1.73    the same factors
                                           1.09 0.83 (per-day median)
Golden Week mean / Sep weekday median      1.48 1.45 1.56 (2014-16)    1.55-1.86; 1.50-1.75
                                                                       at 0.25 (2024, 2026,
                                                                       seeds 0-5)
Golden Week peak day / Sep weekday median  2.39 2.21 2.14              2.23-3.97; 2.22-3.27
                                                                       at 0.25
Labour Day (3 days) / nearby weekdays      1.10 2.10 0.78              the same factors
Qingming; Dragon Boat; Mid-Autumn          0.87 2.06 0.57; 1.18 1.48   the same factors
                                           0.93; 0.90 1.09 0.73
New Year; Spring Festival (7 days)         1.91 5.29 1.19; 0.73 1.65   those factors to the
                                           4.50 7.00 6.99 5.52 3.62    power seasonality
=========================================  ==========================  ====================

Golden Week's peak days sit at Jiuzhaigou's 41 000 cap (40 987, 41 030 and 40 998 in
2014-2016, within 0.1 % of it; 19 days of the record reach 40 000, 12 of them in the
summer of 2015), so its factors are lower bounds of the demand. The model's Golden Week
is higher than the data's because its October season starts earlier (the monthly anchors
are interpolated) and the day noise makes some peaks higher than the cap allowed.

Data (2): the Shanghai culture and tourism bureau's live visitor counts of 150 spots at
about 08:00 on Tuesday 25 November 2025 (PPsteven/shanghai-view-tourist-realtime;
``/work/shared/data/shanghai-scenic``). Instantaneous capacities (MAX_NUM) have a median
of 5 000 (quartiles 2 000 and 17 045, at most 118 577); the 26 parks' median is 20 525.
Opening hours mostly begin at 08:00-09:00 and end at 16:00-17:00 (113 and 100 of 150);
large city parks open at 05:00-06:00 and close at 18:00-22:00, or never close. Changfeng
Park (MAX_NUM 20 000, 06:00-21:30: the registry's Lakeside Park) had 164 visitors at
07:48 (0.8 %); the open parks were at 0.1-5.3 %. The model with Lakeside Park's settings
(20 000 / 100 000, 06:00-21:30, 3.1 h stay, three gates), seeds 0-9, on that day: 196-300
visitors at 07:48 and 282-402 at 08:00 (1.4-2.0 %), out of 13 557-20 384 visitors that
day, with a peak of 4 603-7 056 (23-35 %) at 12:30-13:00. With these settings Golden
Week's peak days (3-5 October 2024, seed 0) reach 86-90 % of the capacity, an ordinary
September weekday 37-48 %.

Not matched:

* The intraday curve and the spread of the stays are assumptions: there was no series
  over the day, only the 08:00 snapshot above, which the model exceeds 1.2-1.8 times.
* ``seasonality`` 0.25 (Aug / Jan 2.0 against Jiuzhaigou's 18) is a judgement, not a
  fit: there is no city park's yearly series here, and Jiuzhaigou's peak months (Jul-Aug,
  Oct) are a mountain park's, not a city's (whose seasons are spring and autumn).
* The weekend effect is a destination park's (1.14); a city park's is likely stronger.
* Holiday shapes are Jiuzhaigou's, with its travel days (a low first and last day); a
  city park's holiday crowds probably peak earlier. Its capped peaks understate demand.
* The day noise is independent from day to day (no weather spells) and its tails are
  thinner than the data's (99 % quantile 0.35 against 0.49); its sd 0.12-0.13 against 0.16.
* Make-up working days on weekends are ordinary weekend days; Dragon Boat and
  Mid-Autumn exist for 2023-2027 only; 2027's dates are the festivals', not a notice.
"""

from __future__ import annotations

import math
import random
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from itertools import repeat
from statistics import NormalDist
from types import MappingProxyType
from typing import Annotated, ClassVar, NamedTuple

from pydantic import Field, ValidationInfo, field_validator

from edge_agents.drivers.base import DriverOptions
from edge_agents.errors import DriverError
from simulators.air_quality import seed_of
from simulators.base import Clock, Effect, SimulatedDriver, combined_factor, utc_now
from telemetry import CATALOGUE, Kind

__all__ = [
    "GateCounterDriver",
    "GateCounterOptions",
    "Holiday",
    "ParkModel",
    "holiday_on",
]

# ---------------------------------------------------------------- calibration tables
# From Jiuzhaigou's daily visitors 2013-2016 (see the module docstring).

_WEEK = (0.924, 0.986, 1.007, 0.951, 1.017, 1.201, 1.025)
"""Monday ... Sunday: each day's visitors over the centred 7-day median (geometric mean)."""

_WEEKEND_FACTOR = 1.139
"""Jiuzhaigou's mean weekend day over its mean weekday."""

_MONTHS = (0.120, 0.203, 0.734, 0.774, 0.835, 1.063, 1.894, 2.167, 1.543, 1.888, 0.579, 0.199)
"""January ... December: the month's median non-holiday day over the mean of the twelve."""

_NOISE_SCALE = 0.085
"""Scale of the Student-t(3) day noise in log space, fitted to the quartiles and tails."""
_NOISE_DF = 3
_NOISE_LIMIT = 0.7
"""The day noise is held within exp(+-0.7)."""

# Local clock hour 0 ... 23 -> relative arrival rate at the middle of the hour (a scenic
# park: a slow start, the peak at 10-11, a lunch dip, an afternoon shoulder, an evening
# tail). Not calibrated: see "Not matched".
_ARRIVALS = (
    0.0, 0.0, 0.0, 0.0, 0.01, 0.02, 0.04, 0.08, 0.35, 0.85, 1.00, 0.85,
    0.60, 0.62, 0.60, 0.50, 0.40, 0.32, 0.30, 0.25, 0.18, 0.10, 0.05, 0.02,
)  # fmt: skip

_STAY_SIGMA = 0.6
"""Sigma of the lognormal stay (a coefficient of variation of 0.66)."""
_STAY_QUANTILES = 1024
_LAST_ENTRY_S = 3600.0
"""Nobody enters in the last hour before closing."""
_STRAGGLE_S = (60.0, 45 * 60.0)
"""Who would stay past closing leaves between 45 and 1 minutes before it."""
_SAME_GATE = 0.5
"""The chance that a visitor leaves by the gate they came in by."""
_BIN_S = 60.0
"""The arrival rate is evaluated per minute."""
_MAX_RATE_PER_S = min(
    spec.max_rate_per_s or math.inf
    for name, spec in CATALOGUE[Kind.CROWD].items()
    if name in ("entries", "exits")
)
"""The most persons per second one gate counter sees (20)."""
_HEADWAY_S = 1.0 / _MAX_RATE_PER_S
_CACHED_DAYS = 8
_UNIX_ORDINAL = date(1970, 1, 1).toordinal()


class Holiday(StrEnum):
    """A Chinese public holiday that changes a park's visitor numbers."""

    NEW_YEAR = "new_year"
    SPRING_FESTIVAL = "spring_festival"
    QINGMING = "qingming"
    LABOUR_DAY = "labour_day"
    DRAGON_BOAT = "dragon_boat"
    MID_AUTUMN = "mid_autumn"
    NATIONAL_DAY = "national_day"
    """Golden Week."""


_SHAPES: Mapping[Holiday, tuple[float, ...]] = MappingProxyType(
    {
        # Per-day medians at Jiuzhaigou 2013-2016 over the weekdays within three weeks
        # (Golden Week: over the September weekday median), first day to last.
        Holiday.NEW_YEAR: (1.91, 5.29, 1.19),
        Holiday.SPRING_FESTIVAL: (0.73, 1.65, 4.50, 7.00, 6.99, 5.52, 3.62),
        Holiday.QINGMING: (0.87, 2.06, 0.57),
        Holiday.LABOUR_DAY: (1.10, 2.10, 0.78),
        Holiday.DRAGON_BOAT: (1.18, 1.48, 0.93),
        Holiday.MID_AUTUMN: (0.90, 1.09, 0.73),
        Holiday.NATIONAL_DAY: (0.85, 1.79, 2.14, 2.14, 1.73, 1.09, 0.83),
    }
)
"""Each holiday's factor by position, stretched over holidays of other lengths."""

_WINTER = frozenset({Holiday.NEW_YEAR, Holiday.SPRING_FESTIVAL})
"""Holidays whose Jiuzhaigou factor is mostly the off-season's: raised to ``seasonality``."""

_LUNAR_NEW_YEAR = {
    2013: (2, 10), 2014: (1, 31), 2015: (2, 19), 2016: (2, 8), 2017: (1, 28), 2018: (2, 16),
    2019: (2, 5), 2020: (1, 25), 2021: (2, 12), 2022: (2, 1), 2023: (1, 22), 2024: (2, 10),
    2025: (1, 29), 2026: (2, 17), 2027: (2, 6), 2028: (1, 26), 2029: (2, 13), 2030: (2, 3),
}  # fmt: skip
"""The first day of the lunar year (month, day)."""

# The State Council's notices for 2023-2026; 2027 is the festival dates, not a notice.
# (holiday, first month, first day, days)
_NOTICES: Mapping[int, tuple[tuple[Holiday, int, int, int], ...]] = {
    2023: (
        (Holiday.NEW_YEAR, 1, 1, 2), (Holiday.SPRING_FESTIVAL, 1, 21, 7),
        (Holiday.QINGMING, 4, 5, 1), (Holiday.LABOUR_DAY, 4, 29, 5),
        (Holiday.DRAGON_BOAT, 6, 22, 3), (Holiday.NATIONAL_DAY, 9, 29, 8),
    ),
    2024: (
        (Holiday.NEW_YEAR, 1, 1, 1), (Holiday.SPRING_FESTIVAL, 2, 10, 8),
        (Holiday.QINGMING, 4, 4, 3), (Holiday.LABOUR_DAY, 5, 1, 5),
        (Holiday.DRAGON_BOAT, 6, 8, 3), (Holiday.MID_AUTUMN, 9, 15, 3),
        (Holiday.NATIONAL_DAY, 10, 1, 7),
    ),
    2025: (
        (Holiday.NEW_YEAR, 1, 1, 1), (Holiday.SPRING_FESTIVAL, 1, 28, 8),
        (Holiday.QINGMING, 4, 4, 3), (Holiday.LABOUR_DAY, 5, 1, 5),
        (Holiday.DRAGON_BOAT, 5, 31, 3), (Holiday.NATIONAL_DAY, 10, 1, 8),
    ),
    2026: (
        (Holiday.NEW_YEAR, 1, 1, 3), (Holiday.SPRING_FESTIVAL, 2, 15, 9),
        (Holiday.QINGMING, 4, 4, 3), (Holiday.LABOUR_DAY, 5, 1, 5),
        (Holiday.DRAGON_BOAT, 6, 19, 3), (Holiday.MID_AUTUMN, 9, 25, 3),
        (Holiday.NATIONAL_DAY, 10, 1, 7),
    ),
    2027: (
        (Holiday.NEW_YEAR, 1, 1, 3), (Holiday.SPRING_FESTIVAL, 2, 5, 7),
        (Holiday.QINGMING, 4, 3, 3), (Holiday.LABOUR_DAY, 5, 1, 5),
        (Holiday.DRAGON_BOAT, 6, 8, 3), (Holiday.MID_AUTUMN, 9, 14, 3),
        (Holiday.NATIONAL_DAY, 10, 1, 7),
    ),
}  # fmt: skip


def _holidays_of(year: int) -> dict[date, tuple[Holiday, int, int]]:
    """Each holiday date of ``year`` with its holiday, its index and the holiday's length."""
    spans = _NOTICES.get(year)
    if spans is None:
        labour = 5 if year >= 2020 else 3
        rules = [
            (Holiday.NEW_YEAR, 1, 1, 1),
            (Holiday.QINGMING, 4, 4, 3),
            (Holiday.LABOUR_DAY, 5, 1, labour),
            (Holiday.NATIONAL_DAY, 10, 1, 7),
        ]
        if year in _LUNAR_NEW_YEAR:
            month, day = _LUNAR_NEW_YEAR[year]
            eve = date(year, month, day) - timedelta(days=1)
            rules.append((Holiday.SPRING_FESTIVAL, eve.month, eve.day, 7))
        spans = tuple(rules)
    out: dict[date, tuple[Holiday, int, int]] = {}
    for holiday, month, day, length in spans:
        first = date(year, month, day)
        for index in range(length):
            out[first + timedelta(days=index)] = (holiday, index, length)
    return out


def holiday_on(day: date) -> tuple[Holiday, int, int] | None:
    """The public holiday ``day`` falls in, as (holiday, index of the day, its length).

    >>> holiday_on(date(2024, 10, 3))
    (<Holiday.NATIONAL_DAY: 'national_day'>, 2, 7)
    >>> holiday_on(date(2024, 10, 9)) is None
    True
    """
    return _holidays_of(day.year).get(day)


def _shape_at(shape: tuple[float, ...], index: int, length: int) -> float:
    """``shape`` stretched over ``length`` days, at day ``index``."""
    position = 0.5 if length == 1 else index / (length - 1)
    x = position * (len(shape) - 1)
    low = min(int(x), len(shape) - 2)
    return shape[low] + (shape[low + 1] - shape[low]) * (x - low)


def _local_day(epoch_s: float, tz_offset_h: float) -> int:
    """Days since 1970-01-01 of the local date at ``epoch_s``."""
    return math.floor((epoch_s + tz_offset_h * 3600.0) / 86400.0)


def _epoch_s(ts: datetime, name: str = "ts") -> float:
    """``ts`` in seconds since the Unix epoch; a naive ``ts`` is an error."""
    if ts.utcoffset() is None:
        msg = f"{name} {ts.isoformat()} is a naive datetime; give the time in UTC"
        raise ValueError(msg)
    return ts.timestamp()


def _seconds(at: time) -> float:
    """Seconds since midnight of a local clock time."""
    return at.hour * 3600.0 + at.minute * 60.0 + at.second + at.microsecond / 1e6


class _Plan(NamedTuple):
    """One day's arrival rate, per minute bin from opening to the last entry."""

    starts: tuple[float, ...]
    """Each bin's start, epoch seconds."""
    lengths: tuple[float, ...]
    """Each bin's length, seconds."""
    rates: tuple[float, ...]
    """Expected arrivals in each bin."""
    cutoff_s: float
    """The last entry (one hour before closing), epoch seconds."""
    closing_s: float
    """Closing, epoch seconds."""


class _Day(NamedTuple):
    """One day's visitors, as sorted event times (epoch seconds)."""

    entries: tuple[array[float], ...]
    """Per gate."""
    exits: tuple[array[float], ...]
    """Per gate."""
    all_entries: array[float]
    all_exits: array[float]


@dataclass(frozen=True)
class ParkModel:
    """A deterministic park: its visitors, their gates and stays, day by day.

    Every answer is a pure function of the parameters and the times asked: the same model
    gives the same counts whatever was asked before. See the module docstring for how the
    visitors are made and calibrated.

    Attributes:
        seed: the day-to-day noise and every visitor draw.
        instantaneous_capacity: the most visitors the park may hold at once (LB/T 034-2014,
            as the registry's ``capacity.instantaneous``); for occupancy percentages.
        daily_capacity: the most visitors a day (``capacity.daily``); at least the
            instantaneous capacity.
        gates: the gate ids.
        gate_shares: each gate's share of the entries (positive, normalised); equal
            when None.
        opens_at: opening, local clock time (no time zone).
        closes_at: closing, local clock time, at least 2 h after opening (same day).
        mean_stay_h: the mean of the visitors' planned stay, hours.
        daily_visitors_mean: the mean visitors of an ordinary day over a year; 20 % of
            ``daily_capacity`` when None.
        tz_offset_h: local time's offset from UTC, hours.
        surges: each multiplies the arrival rate by its ``amount`` over its span, with
            its ramps (a holiday crowd); amounts must not be negative.
        holidays: whether the Chinese public holidays change the day's visitors.
        seasonality: 0 (no season) ... 1 (Jiuzhaigou's strong mountain season).
        weekend_factor: a weekend day's visitors over a weekday's.
        daily_quota: ticket sales stop after this many entries a day (Jiuzhaigou: 41 000);
            None for no quota.

    Raises:
        ValueError: a parameter out of its range; the message names it and its value.
    """

    seed: int = 0
    instantaneous_capacity: int = 20_000
    daily_capacity: int = 100_000
    gates: tuple[str, ...] = ("gate-1",)
    gate_shares: tuple[float, ...] | None = None
    opens_at: time = time(6, 0)
    closes_at: time = time(21, 30)
    mean_stay_h: float = 3.0
    daily_visitors_mean: float | None = None
    tz_offset_h: float = 8.0
    surges: tuple[Effect, ...] = ()
    holidays: bool = True
    seasonality: float = 0.25
    weekend_factor: float = _WEEKEND_FACTOR
    daily_quota: int | None = None
    _shares: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _entry_cum: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _exit_cum: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _stays: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _season_norm: float = field(init=False, repr=False, compare=False)
    _plan_of: Callable[[int], _Plan] = field(init=False, repr=False, compare=False)
    _day_of: Callable[[int], _Day] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._validate()
        set_ = object.__setattr__
        set_(self, "gates", tuple(self.gates))
        set_(self, "surges", tuple(self.surges))
        raw = self.gate_shares if self.gate_shares is not None else (1.0,) * len(self.gates)
        total = math.fsum(raw)
        shares = tuple(share / total for share in raw)
        set_(self, "_shares", shares)
        set_(self, "_entry_cum", _cumulative(shares))
        # Visitors who leave by another gate favour the gates in a rotated order.
        turn = 1 + random.Random(f"{self.seed}:exit-gates").randrange(max(len(shares) - 1, 1))
        set_(self, "_exit_cum", _cumulative(shares[turn:] + shares[:turn]))
        planned = self._planned_stay_s()
        unit = NormalDist()
        stays = [
            math.exp(_STAY_SIGMA * unit.inv_cdf((k + 0.5) / _STAY_QUANTILES))
            for k in range(_STAY_QUANTILES)
        ]
        scale = planned / math.fsum(stays) * _STAY_QUANTILES
        set_(self, "_stays", tuple(stay * scale for stay in stays))
        set_(self, "_season_norm", 1.0)
        year = [self._season(date(2023, 1, 1) + timedelta(days=k)) for k in range(365)]
        set_(self, "_season_norm", math.fsum(year) / 365)
        set_(self, "_plan_of", lru_cache(maxsize=_CACHED_DAYS)(self._plan))
        set_(self, "_day_of", lru_cache(maxsize=_CACHED_DAYS)(self._build))

    def _planned_stay_s(self) -> float:
        """The mean planned stay whose stays, cut short at closing, average ``mean_stay_h``.

        Solved for an ordinary day's arrival curve, in 15-minute steps, with the closed
        form of E[min(X, r)] for a lognormal X; at most four times ``mean_stay_h`` (a park
        open too briefly for the stay cannot reach it).
        """
        target = self.mean_stay_h * 3600.0
        opening, closing = _seconds(self.opens_at), _seconds(self.closes_at)
        cutoff = closing - _LAST_ENTRY_S
        step = 900.0
        arrivals = [opening + step * (k + 0.5) for k in range(math.ceil((cutoff - opening) / step))]
        weights = [_arrival_curve(at / 3600.0) for at in arrivals]
        total = math.fsum(weights)
        if total <= 0:
            weights, total = [1.0] * len(arrivals), float(len(arrivals))
        low, late = _STRAGGLE_S
        leaves = [closing - low - (late - low) * (k + 0.5) / 6 for k in range(6)]
        unit = NormalDist()
        sigma = _STAY_SIGMA

        def realised(mean: float) -> float:
            mu = math.log(mean) - sigma * sigma / 2
            out = 0.0
            for at, weight in zip(arrivals, weights, strict=True):
                for leave in leaves:
                    room = math.log(max(leave - at, 1.0))
                    out += weight * (
                        mean * unit.cdf((room - mu - sigma * sigma) / sigma)
                        + math.exp(room) * (1.0 - unit.cdf((room - mu) / sigma))
                    )
            return out / total / len(leaves)

        low_mean, high_mean = target, 4.0 * target
        if realised(high_mean) <= target:
            return high_mean
        for _ in range(20):
            middle = (low_mean + high_mean) / 2
            if realised(middle) < target:
                low_mean = middle
            else:
                high_mean = middle
        return (low_mean + high_mean) / 2

    def _validate(self) -> None:
        problems = []
        if self.instantaneous_capacity < 1:
            problems.append(
                f"instantaneous_capacity must be positive, not {self.instantaneous_capacity!r}"
            )
        if self.daily_capacity < self.instantaneous_capacity:
            problems.append(
                f"daily_capacity {self.daily_capacity!r} is less than instantaneous_capacity"
                f" {self.instantaneous_capacity!r}"
            )
        if not self.gates or len(set(self.gates)) != len(self.gates) or not all(self.gates):
            problems.append(f"gates must be distinct non-empty ids, not {self.gates!r}")
        shares = self.gate_shares
        if shares is not None and (
            len(shares) != len(self.gates)
            or not all(math.isfinite(share) and share > 0 for share in shares)
        ):
            problems.append(
                f"gate_shares must be {len(self.gates)} positive numbers, one per gate,"
                f" not {shares!r}"
            )
        for name, at in (("opens_at", self.opens_at), ("closes_at", self.closes_at)):
            if at.tzinfo is not None:
                problems.append(f"{name} is a local clock time without a time zone, not {at!r}")
        if _seconds(self.closes_at) - _seconds(self.opens_at) < 2 * 3600:
            problems.append(
                f"closes_at {self.closes_at} must be at least 2 h after opens_at"
                f" {self.opens_at} on the same day"
            )
        if not (math.isfinite(self.mean_stay_h) and 0 < self.mean_stay_h <= 24):
            problems.append(f"mean_stay_h must be within (0, 24] hours, not {self.mean_stay_h!r}")
        mean = self.daily_visitors_mean
        if mean is not None and not (math.isfinite(mean) and mean >= 0):
            problems.append(f"daily_visitors_mean must be a number >= 0, not {mean!r}")
        if not -14.0 <= self.tz_offset_h <= 14.0:
            problems.append(f"tz_offset_h must be within [-14, 14] hours, not {self.tz_offset_h!r}")
        if not 0.0 <= self.seasonality <= 1.0:
            problems.append(f"seasonality must be within [0, 1], not {self.seasonality!r}")
        if not (math.isfinite(self.weekend_factor) and 0 < self.weekend_factor <= 10):
            problems.append(f"weekend_factor must be within (0, 10], not {self.weekend_factor!r}")
        if self.daily_quota is not None and self.daily_quota < 1:
            problems.append(f"daily_quota must be positive or None, not {self.daily_quota!r}")
        for surge in self.surges:
            if not isinstance(surge, Effect) or surge.amount < 0:
                problems.append(f"surges must be Effects with amounts >= 0, not {surge!r}")
        if problems:
            raise ValueError("; ".join(problems))

    # ------------------------------------------------------------ public questions

    def expected_arrivals_per_h(self, ts: datetime) -> float:
        """The park's arrival rate at ``ts`` that the visitors were drawn from, per hour.

        It includes the day's season, weekday or holiday, noise, surges and the gates'
        throughput cap, and is 0 outside the hours of entry.

        Raises:
            ValueError: ``ts`` is naive.
        """
        epoch = _epoch_s(ts)
        plan = self._plan_of(_local_day(epoch, self.tz_offset_h))
        if not plan.starts or not plan.starts[0] <= epoch < plan.cutoff_s:
            return 0.0
        index = bisect_right(plan.starts, epoch) - 1
        return plan.rates[index] * 3600.0 / plan.lengths[index]

    def day_visitors(self, day: date) -> int:
        """How many visitors entered the park on local date ``day``."""
        return len(self._day_of(day.toordinal() - _UNIX_ORDINAL).all_entries)

    def counts(self, gate: str, t0: datetime, t1: datetime) -> tuple[int, int]:
        """Entries and exits at ``gate`` over ``[t0, t1)``.

        Additive: ``counts(g, a, b)`` plus ``counts(g, b, c)`` is ``counts(g, a, c)``.

        Raises:
            ValueError: an unknown gate, a naive time or ``t1`` before ``t0``.
        """
        index = self._gate_index(gate)
        s0, s1 = self._span(t0, t1)
        entries = exits = 0
        for day in self._days_over(s0, s1):
            visitors = self._day_of(day)
            entries += _between(visitors.entries[index], s0, s1)
            exits += _between(visitors.exits[index], s0, s1)
        return entries, exits

    def values(self, gate: str, t0: datetime, t1: datetime) -> dict[str, float]:
        """The counter's reading over ``[t0, t1)``: ``entries`` and ``exits``, persons.

        Raises:
            ValueError: as :meth:`counts`.
        """
        entries, exits = self.counts(gate, t0, t1)
        return {"entries": entries, "exits": exits}

    def occupancy_at(self, ts: datetime) -> int:
        """Visitors inside the park at ``ts``: entries minus exits of the day so far.

        Raises:
            ValueError: ``ts`` is naive.
        """
        epoch = _epoch_s(ts)
        inside = 0
        for day in self._days_over(epoch, epoch):
            visitors = self._day_of(day)
            inside += bisect_left(visitors.all_entries, epoch)
            inside -= bisect_left(visitors.all_exits, epoch)
        return inside

    # ------------------------------------------------------------ the day's level

    def _season(self, day: date) -> float:
        """The seasonal factor of ``day`` (yearly mean 1)."""
        if self.seasonality == 0:
            return 1.0
        position = (day.timetuple().tm_yday - 1) / 365.0 * 12.0 - 0.5
        month = math.floor(position)
        later = position - month
        low, high = _LOG_MONTHS[month % 12], _LOG_MONTHS[(month + 1) % 12]
        return math.exp(self.seasonality * (low + (high - low) * later)) / self._season_norm

    def _day_factor(self, day: date) -> float:
        """The weekday's or the holiday's factor of ``day``."""
        found = holiday_on(day) if self.holidays else None
        if found is not None:
            holiday, index, length = found
            factor = _shape_at(_SHAPES[holiday], index, length)
            return factor**self.seasonality if holiday in _WINTER else factor
        weekday = day.weekday()
        weekend = self.weekend_factor
        norm = 7.0 / (5.0 + 2.0 * weekend)
        if weekday >= 5:
            return norm * weekend * _WEEK[weekday] / _WEEKEND_MEAN
        return norm * _WEEK[weekday] / _WEEKDAY_MEAN

    def _noise(self, day: date) -> float:
        """The day's own variation, a factor: seeded by (seed, day) only."""
        rng = random.Random(f"{self.seed}:day-noise:{day.isoformat()}")
        z = rng.gauss(0.0, 1.0)
        chi2 = math.fsum(rng.gauss(0.0, 1.0) ** 2 for _ in range(_NOISE_DF))
        t = z / math.sqrt(max(chi2, 1e-12) / _NOISE_DF)
        return math.exp(max(-_NOISE_LIMIT, min(_NOISE_LIMIT, _NOISE_SCALE * t)))

    def _day_level(self, day: date) -> float:
        """The day's expected visitors before surges and the throughput cap."""
        mean = self.daily_visitors_mean
        if mean is None:
            mean = 0.2 * self.daily_capacity
        return mean * self._season(day) * self._day_factor(day) * self._noise(day)

    def _plan(self, day_number: int) -> _Plan:
        """Local day ``day_number``'s arrival rate, per minute of the hours of entry."""
        day = date.fromordinal(day_number + _UNIX_ORDINAL)
        midnight = day_number * 86400.0 - self.tz_offset_h * 3600.0
        opening = midnight + _seconds(self.opens_at)
        closing = midnight + _seconds(self.closes_at)
        cutoff = closing - _LAST_ENTRY_S
        starts: list[float] = []
        lengths: list[float] = []
        weights: list[float] = []
        start = opening
        while start < cutoff:
            length = min(_BIN_S, cutoff - start)
            local_h = (start + length / 2 - midnight) / 3600.0
            starts.append(start)
            lengths.append(length)
            weights.append(_arrival_curve(local_h) * length)
            start += length
        total = math.fsum(weights)
        if total <= 0:  # open only at night: arrivals spread evenly
            weights, total = list(lengths), math.fsum(lengths)
        level = self._day_level(day)
        rates = [level * weight / total for weight in weights]
        surges = [
            s for s in self.surges if s.start.timestamp() < cutoff and s.end.timestamp() > opening
        ]
        if surges:
            rates = [
                rate * combined_factor(surges, datetime.fromtimestamp(begin + length / 2, UTC))
                for rate, begin, length in zip(rates, starts, lengths, strict=True)
            ]
        # The busiest gate takes at most the counter's 20 persons per second on average.
        cap_per_s = _MAX_RATE_PER_S / max(self._shares)
        rates = [min(rate, cap_per_s * length) for rate, length in zip(rates, lengths, strict=True)]
        return _Plan(tuple(starts), tuple(lengths), tuple(rates), cutoff, closing)

    # ------------------------------------------------------------ the day's visitors

    def _build(self, day_number: int) -> _Day:
        """Local day ``day_number``'s visitors, as sorted entry and exit times per gate."""
        plan = self._plan_of(day_number)
        day = date.fromordinal(day_number + _UNIX_ORDINAL)
        rng = random.Random(f"{self.seed}:visitors:{day.isoformat()}")
        uniform = rng.random
        cum: list[float] = []
        running = 0.0
        for rate in plan.rates:
            running += rate
            cum.append(running)
        expected = running
        count = max(0, round(expected + math.sqrt(expected) * rng.gauss(0.0, 1.0)))
        if expected <= 0:
            count = 0
        # Arrival times: sorted uniform draws through the integrated rate.
        quantiles = sorted([uniform() * expected for _ in range(count)])
        lows = [0.0, *cum[:-1]]
        slopes = [
            length / rate if rate > 0 else 0.0
            for rate, length in zip(plan.rates, plan.lengths, strict=True)
        ]
        starts = plan.starts
        arrivals = [
            starts[b] + (q - lows[b]) * slopes[b]
            for b, q in zip(map(bisect_right, repeat(cum), quantiles), quantiles, strict=True)
        ]
        n_gates = len(self.gates)
        entry_cum = self._entry_cum
        if n_gates == 1:
            gates_in: Iterable[int] = repeat(0, len(arrivals))
        else:
            gates_in = [bisect_right(entry_cum, uniform()) for _ in arrivals]
        # Each gate lets one person through per headway; too late is turned away.
        quota = self.daily_quota if self.daily_quota is not None else len(arrivals)
        cutoff = plan.cutoff_s
        last = [-math.inf] * n_gates
        per_gate: list[list[float]] = [[] for _ in range(n_gates)]
        appenders = [entries.append for entries in per_gate]
        kept: list[float] = []
        kept_gates: list[int] = []
        for at, gate in zip(arrivals, gates_in, strict=True):
            if len(kept) >= quota:
                break
            free = last[gate] + _HEADWAY_S
            if at < free:
                at = free
                if at >= cutoff:
                    continue
            last[gate] = at
            appenders[gate](at)
            kept.append(at)
            kept_gates.append(gate)
        # Stays, capped so that everyone has left before closing.
        stays = self._stays
        k = len(stays)
        early, late = plan.closing_s - _STRAGGLE_S[0], _STRAGGLE_S[1] - _STRAGGLE_S[0]
        leaving = [min(at + stays[int(uniform() * k)], early - late * uniform()) for at in kept]
        if n_gates == 1:
            exits_per_gate = [leaving]
        else:
            exit_cum = self._exit_cum
            exits_per_gate = [[] for _ in range(n_gates)]
            out = [exits.append for exits in exits_per_gate]
            for at, gate in zip(leaving, kept_gates, strict=True):
                if uniform() >= _SAME_GATE:
                    gate = bisect_right(exit_cum, uniform())
                out[gate](at)
        for exits in exits_per_gate:
            exits.sort()
            _queue(exits)
        return _Day(
            entries=tuple(array("d", entries) for entries in per_gate),
            exits=tuple(array("d", exits) for exits in exits_per_gate),
            all_entries=array("d", sorted(kept)),
            all_exits=array("d", sorted(at for exits in exits_per_gate for at in exits)),
        )

    # ------------------------------------------------------------ helpers

    def _gate_index(self, gate: str) -> int:
        try:
            return self.gates.index(gate)
        except ValueError:
            msg = f"gate {gate!r} is not one of the park's gates {list(self.gates)}"
            raise ValueError(msg) from None

    @staticmethod
    def _span(t0: datetime, t1: datetime) -> tuple[float, float]:
        s0, s1 = _epoch_s(t0, "t0"), _epoch_s(t1, "t1")
        if s1 < s0:
            msg = f"t1 {t1.isoformat()} is before t0 {t0.isoformat()}"
            raise ValueError(msg)
        return s0, s1

    def _days_over(self, s0: float, s1: float) -> range:
        """The local days whose visitors may pass a gate within ``[s0, s1]``.

        A day's events end before the next local midnight but one: exits queue for at
        most as long as the park is open.
        """
        return range(_local_day(s0, self.tz_offset_h) - 1, _local_day(s1, self.tz_offset_h) + 1)


_LOG_MONTHS = tuple(math.log(m) - math.fsum(map(math.log, _MONTHS)) / 12 for m in _MONTHS)
"""ln of the monthly profile over its geometric mean."""
_WEEKDAY_MEAN = math.fsum(_WEEK[:5]) / 5
_WEEKEND_MEAN = math.fsum(_WEEK[5:]) / 2


def _arrival_curve(local_h: float) -> float:
    """The relative arrival rate at local hour ``local_h``, linear between mid-hours."""
    x = local_h - 0.5
    hour = math.floor(x)
    later = x - hour
    return _ARRIVALS[hour % 24] * (1.0 - later) + _ARRIVALS[(hour + 1) % 24] * later


def _cumulative(shares: tuple[float, ...]) -> tuple[float, ...]:
    """Cumulative shares for drawing a gate with ``bisect_right``; the last is 1."""
    out: list[float] = []
    running = 0.0
    for share in shares:
        running += share
        out.append(running)
    out[-1] = 1.0
    return tuple(out)


def _queue(times: list[float]) -> None:
    """Space sorted ``times`` at least one headway apart, moving the later ones on."""
    for i in range(1, len(times)):
        free = times[i - 1] + _HEADWAY_S
        if times[i] < free:
            times[i] = free


def _between(times: array[float], s0: float, s1: float) -> int:
    """How many of the sorted ``times`` fall in ``[s0, s1)``."""
    return bisect_left(times, s1) - bisect_left(times, s0)


# ---------------------------------------------------------------- the driver


class GateCounterOptions(DriverOptions):
    """Options of a simulated visitor counter at one gate of a scenic area.

    Attributes:
        seed: accepted as every simulated driver's is, but it does not change the
            visitors: the counters of one area must count one visitor process, which
            ``area`` alone seeds (put a scenario's seed into ``area``).
        area: the scenic area's name; every counter of an area shares its visitors.
        gates: the ids of the area's gates, in one order for all its counters.
        gate: the gate this counter watches; one of ``gates``.
        instantaneous_capacity: the most visitors at once (LB/T 034-2014).
        daily_capacity: the most visitors a day; at least ``instantaneous_capacity``.
        opens_at: opening, local clock time.
        closes_at: closing, local clock time, at least 2 h after opening.
        mean_stay_h: the visitors' mean stay, hours.
        tz_offset_h: local time's offset from UTC, hours.
        seasonality: 0 (none) ... 1 (Jiuzhaigou's mountain season).
        daily_visitors_mean: an ordinary day's mean visitors; 20 % of the daily
            capacity when None.
        daily_quota: ticket sales stop after this many entries a day; None for none.
        holidays: whether the Chinese public holidays change the visitors.
    """

    seed: int = 0
    area: Annotated[str, Field(min_length=1)] = "default"
    gates: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["gate-1"], min_length=1
    )
    gate: Annotated[str, Field(min_length=1)] = "gate-1"
    instantaneous_capacity: Annotated[int, Field(gt=0)] = 20_000
    daily_capacity: Annotated[int, Field(gt=0)] = 100_000
    opens_at: time = time(6, 0)
    closes_at: time = time(21, 30)
    mean_stay_h: Annotated[float, Field(gt=0, le=24)] = 3.0
    tz_offset_h: Annotated[float, Field(ge=-14, le=14)] = 8.0
    seasonality: Annotated[float, Field(ge=0, le=1)] = 0.25
    daily_visitors_mean: Annotated[float | None, Field(ge=0)] = None
    daily_quota: Annotated[int | None, Field(gt=0)] = None
    holidays: bool = True

    @field_validator("gates")
    @classmethod
    def _distinct(cls, gates: list[str]) -> list[str]:
        if len(set(gates)) != len(gates):
            msg = f"gate ids must be distinct, not {gates!r}"
            raise ValueError(msg)
        return gates

    @field_validator("gate")
    @classmethod
    def _one_of_gates(cls, gate: str, info: ValidationInfo) -> str:
        gates = info.data.get("gates")
        if gates is not None and gate not in gates:
            msg = f"gate {gate!r} is not one of gates {gates!r}"
            raise ValueError(msg)
        return gate

    @field_validator("daily_capacity")
    @classmethod
    def _not_below_instantaneous(cls, daily: int, info: ValidationInfo) -> int:
        instantaneous = info.data.get("instantaneous_capacity")
        if instantaneous is not None and daily < instantaneous:
            msg = f"daily_capacity {daily} is less than instantaneous_capacity {instantaneous}"
            raise ValueError(msg)
        return daily

    @field_validator("opens_at", "closes_at")
    @classmethod
    def _local(cls, at: time, info: ValidationInfo) -> time:
        if at.tzinfo is not None:
            msg = f"{info.field_name} is a local clock time without a time zone, not {at}"
            raise ValueError(msg)
        return at

    @field_validator("closes_at")
    @classmethod
    def _after_opening(cls, closes_at: time, info: ValidationInfo) -> time:
        opens_at = info.data.get("opens_at")
        if opens_at is not None and _seconds(closes_at) - _seconds(opens_at) < 2 * 3600:
            msg = f"closes_at {closes_at} must be at least 2 h after opens_at {opens_at}"
            raise ValueError(msg)
        return closes_at

    def park_model(self) -> ParkModel:
        """The area's park model: the same for every gate of the area."""
        return ParkModel(
            seed=seed_of(self.area),
            instantaneous_capacity=self.instantaneous_capacity,
            daily_capacity=self.daily_capacity,
            gates=tuple(self.gates),
            opens_at=self.opens_at,
            closes_at=self.closes_at,
            mean_stay_h=self.mean_stay_h,
            daily_visitors_mean=self.daily_visitors_mean,
            tz_offset_h=self.tz_offset_h,
            holidays=self.holidays,
            seasonality=self.seasonality,
            daily_quota=self.daily_quota,
        )


class GateCounterDriver(SimulatedDriver[GateCounterOptions]):
    """A simulated gate counter: each read gives the entries and exits since the last.

    The first read after :meth:`open` counts from the time it opened; a clock that goes
    back gives zero counts until it passes the previous read again.

    Args:
        options: the validated options.
        clock: gives the time of each read (an aware datetime); the wall clock by default,
            a stepping function in scenarios, tests and replays.
    """

    Options: ClassVar[type[DriverOptions]] = GateCounterOptions
    kind: ClassVar[Kind | None] = Kind.CROWD

    def __init__(self, options: GateCounterOptions, *, clock: Clock = utc_now) -> None:
        super().__init__(options, clock=clock)
        self.model = options.park_model()
        """The park the counts come from; a scenario may replace it (to add surges)."""
        self._since: datetime | None = None

    def open(self) -> None:
        """Counting starts now."""
        super().open()
        self._since = self.opened_at

    def read(self) -> dict[str, float]:
        """Entries and exits at the gate since the previous read (or the opening).

        Raises:
            DriverError: read before open, or the clock gave a naive time (not retryable).
        """
        if self._since is None:
            msg = "read() before open(): the gate counter has no start to count from"
            raise DriverError(msg, retryable=False)
        now = self.now()
        if now <= self._since:
            return {"entries": 0, "exits": 0}
        values = self.model.values(self.options.gate, self._since, now)
        self._since = now
        return values

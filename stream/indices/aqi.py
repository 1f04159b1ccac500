r"""Air quality index: China's HJ 633-2012 and, as an option, the US EPA AQI (2024).

Everything here is a pure function of concentrations; nothing reads a clock or a file.

**HJ 633-2012** (《环境空气质量指数(AQI)技术规定(试行)》) is what China's
national network publishes. Each pollutant's concentration is placed between two
breakpoints of HJ 633's Table 1 and its individual index (IAQI) is interpolated
linearly and **rounded up** to an integer; the AQI is the largest IAQI; when the
AQI is above 50 the pollutants whose IAQI equals it are the *primary pollutants*
(首要污染物), all of them on a tie. Above a table's last breakpoint the IAQI is 500.

* :func:`hourly_aqi` is the hourly AQI exactly as CNEMC (中国环境监测总站) publishes
  it: the 1-hour SO2, NO2, CO and O3 on their 1-hour breakpoints and the hourly PM2.5
  and PM10 on the 24-hour ones. This rule reproduces every one of the 2020 official
  hourly AQIs in ``../shared/data/cnemc-aqi-dev`` (AQI and primary pollutants).
* :func:`daily_aqi` is HJ 633's daily report: 24-hour means of SO2, NO2, CO, PM10 and
  PM2.5, and ozone's daily maximum 8-hour mean and daily maximum 1-hour value.
  :func:`o3_8h_running_means` and :func:`o3_daily_max_8h` derive the ozone values
  from hourly data under HJ 663-2013's validity rules.

Two notes of HJ 633's Table 1 change which value is used:

* SO2 1-hour above 800 µg/m³: no 1-hour IAQI; SO2 is rated by its 24-hour mean.
* O3 8-hour above 800 µg/m³: no 8-hour IAQI; O3 is rated by its 1-hour value.

Units are the catalogue's: µg/m³, CO in mg/m³. Since GB 3095-2012's 2018 amendment,
China reports gases at 25 °C and 1013.25 hPa, the same reference state as below.

**US EPA AQI** (:func:`epa_aqi`): the breakpoints of EPA's Technical Assistance
Document (EPA-454/B-24-002, May 2024) with the 2024 PM2.5 rows (0-9.0, 9.1-35.4,
35.5-55.4, 55.5-125.4, 125.5-225.4, 225.5-325.4 µg/m³). Concentrations are first
*truncated* (O3 to 0.001 ppm, PM2.5 to 0.1 µg/m³, PM10 to 1 µg/m³, CO to 0.1 ppm, SO2
and NO2 to 1 ppb), the index is interpolated and **rounded to the nearest integer**.
Given in µg/m³ (CO mg/m³), gases are converted at 25 °C and 101.325 kPa, where one
mole of gas fills :data:`MOLAR_VOLUME_L` = 24.465 L: ``ppb = µg/m³ * 24.465 / M``
(``ppm = mg/m³ * 24.465 / M`` for CO) with the :data:`MOLECULAR_WEIGHTS` M, i.e.
1 ppb O3 = 1.962 µg/m³, 1 ppb NO2 = 1.880 µg/m³, 1 ppb SO2 = 2.619 µg/m³ and
1 ppm CO = 1.145 mg/m³.

Bad input -- a negative, non-finite or non-numeric concentration, an unknown name --
raises :class:`AqiInputError` naming the quantity and the value.

>>> r = hourly_aqi({"pm2_5": 32, "pm10": 63, "so2": 6, "no2": 29, "co": 0.8, "o3": 45})
>>> r.aqi, r.level.grade, r.level.name, r.level.colour_hex, r.primary_names
(57, '二级', '良', '#FFFF00', '颗粒物(PM10)')
>>> r.iaqi[Pollutant.PM10], r.iaqi[Pollutant.PM2_5]
(57, 46)
>>> hourly_aqi({"pm2_5": -1})
Traceback (most recent call last):
...
stream.indices.aqi.AqiInputError: pm2_5 = -1: a concentration cannot be negative
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType
from typing import Literal

__all__ = [
    "EPA_BREAKPOINTS",
    "EPA_LEVELS",
    "HJ633_BREAKPOINTS",
    "HJ633_LEVELS",
    "MOLAR_VOLUME_L",
    "MOLECULAR_WEIGHTS",
    "AqiError",
    "AqiInputError",
    "AqiLevel",
    "AqiResult",
    "Breakpoints",
    "Pollutant",
    "Segment",
    "Standard",
    "SubIndex",
    "aqi_level",
    "daily_aqi",
    "epa_aqi",
    "hourly_aqi",
    "o3_8h_running_means",
    "o3_daily_max_8h",
    "parse_cnemc_primary",
    "to_epa_units",
]


# ---------------------------------------------------------------- errors


class AqiError(ValueError):
    """Root of the AQI errors: input an index cannot be computed from."""


class AqiInputError(AqiError):
    """A concentration (or other input) the index cannot use.

    Attributes:
        quantity: the input's name, e.g. ``pm2_5`` or ``o3_8h``.
        value: the offending value, as given.
        reason: what is wrong with it, as a sentence fragment.
    """

    def __init__(self, reason: str, *, quantity: str, value: object) -> None:
        self.quantity = quantity
        self.value = value
        self.reason = reason
        super().__init__(f"{quantity} = {value!r}: {reason}")


# ---------------------------------------------------------------- vocabulary


class Standard(StrEnum):
    """Which AQI a result follows."""

    HJ633 = "hj633"
    """China, HJ 633-2012, as published by CNEMC."""
    EPA = "epa"
    """United States, EPA's AQI with the 2024 PM2.5 breakpoints."""


class Pollutant(StrEnum):
    """A pollutant as an AQI rates it; ozone's two averaging times count separately.

    The order of the members is the order CNEMC lists tied primary pollutants in
    (every combination seen in the dev data; CO's place is not attested there).

    >>> Pollutant.O3_1H.cnemc_name, Pollutant.O3_1H.label
    ('臭氧1小时', 'O3 1-h')
    """

    SO2 = "so2"
    NO2 = "no2"
    PM10 = "pm10"
    PM2_5 = "pm2_5"
    CO = "co"
    O3_1H = "o3_1h"
    O3_8H = "o3_8h"

    @property
    def cnemc_name(self) -> str:
        """The name CNEMC publishes as a primary pollutant, e.g. ``细颗粒物(PM2.5)``."""
        return _CNEMC_NAMES[self]

    @property
    def label(self) -> str:
        """A short English label, e.g. ``PM2.5`` or ``O3 8-h``."""
        return _LABELS[self]


_CNEMC_NAMES: Mapping[Pollutant, str] = MappingProxyType(
    {
        Pollutant.SO2: "二氧化硫",
        Pollutant.NO2: "二氧化氮",
        Pollutant.PM10: "颗粒物(PM10)",
        Pollutant.PM2_5: "细颗粒物(PM2.5)",
        Pollutant.CO: "一氧化碳",
        Pollutant.O3_1H: "臭氧1小时",
        Pollutant.O3_8H: "臭氧8小时",
    }
)
_LABELS: Mapping[Pollutant, str] = MappingProxyType(
    {
        Pollutant.SO2: "SO2",
        Pollutant.NO2: "NO2",
        Pollutant.PM10: "PM10",
        Pollutant.PM2_5: "PM2.5",
        Pollutant.CO: "CO",
        Pollutant.O3_1H: "O3 1-h",
        Pollutant.O3_8H: "O3 8-h",
    }
)
_BY_CNEMC_NAME: Mapping[str, Pollutant] = MappingProxyType({v: k for k, v in _CNEMC_NAMES.items()})


def parse_cnemc_primary(text: str) -> frozenset[Pollutant]:
    """The pollutants of a CNEMC ``primarypollutant`` cell (comma separated, may be empty).

    Args:
        text: the cell, e.g. ``颗粒物(PM10),细颗粒物(PM2.5)``; ``""`` or ``—`` means none.

    Returns:
        The set of pollutants named.

    Raises:
        AqiInputError: a name CNEMC does not use.

    >>> sorted(parse_cnemc_primary("颗粒物(PM10),细颗粒物(PM2.5)"))
    [<Pollutant.PM10: 'pm10'>, <Pollutant.PM2_5: 'pm2_5'>]
    """
    found: set[Pollutant] = set()
    for raw in text.replace("\uff0c", ",").split(","):  # full-width commas too
        name = raw.strip()
        if name in ("", "—", "-"):
            continue
        if name not in _BY_CNEMC_NAME:
            reason = f"is not a pollutant name CNEMC uses ({', '.join(_BY_CNEMC_NAME)})"
            raise AqiInputError(reason, quantity="primarypollutant", value=name)
        found.add(_BY_CNEMC_NAME[name])
    return frozenset(found)


# ---------------------------------------------------------------- breakpoint tables


@dataclass(frozen=True, slots=True)
class Segment:
    """One row of a breakpoint table: concentrations ``c_low..c_high`` map to ``i_low..i_high``."""

    c_low: float
    c_high: float
    i_low: int
    i_high: int


@dataclass(frozen=True, slots=True)
class Breakpoints:
    """One pollutant's breakpoints for one averaging time.

    Attributes:
        pollutant: what the table rates.
        averaging: the averaging time it is defined for: ``1h``, ``8h`` or ``24h``.
        unit: the unit of the concentrations.
        segments: the rows, in increasing order. HJ 633's rows share their ends;
            EPA's leave a gap of one unit of the truncated resolution (9.0 / 9.1).
    """

    pollutant: Pollutant
    averaging: str
    unit: str
    segments: tuple[Segment, ...]

    @property
    def low(self) -> float:
        """The lowest concentration the table rates."""
        return self.segments[0].c_low

    @property
    def high(self) -> float:
        """The highest concentration the table rates."""
        return self.segments[-1].c_high

    def exact_index(self, c: Fraction) -> Fraction | None:
        """The unrounded index of ``c``, or None when ``c`` is below the table.

        Above the table, the caller decides (HJ 633 and this module cap at 500).
        """
        row = None
        for seg in self.segments:
            if _exact(seg.c_low) <= c:
                row = seg
        if row is None:
            return None
        lo, hi = _exact(row.c_low), _exact(row.c_high)
        return row.i_low + (row.i_high - row.i_low) * (c - lo) / (hi - lo)


_IAQI_POINTS = (0, 50, 100, 150, 200, 300, 400, 500)


def _hj(pollutant: Pollutant, averaging: str, unit: str, *cs: float) -> Breakpoints:
    rows = tuple(
        Segment(cs[k], cs[k + 1], _IAQI_POINTS[k], _IAQI_POINTS[k + 1]) for k in range(len(cs) - 1)
    )
    return Breakpoints(pollutant, averaging, unit, rows)


_UG, _MG = "µg/m³", "mg/m³"
_P = Pollutant

HJ633_BREAKPOINTS: Mapping[str, Breakpoints] = MappingProxyType(
    {
        "so2_24h": _hj(_P.SO2, "24h", _UG, 0, 50, 150, 475, 800, 1600, 2100, 2620),
        "so2_1h": _hj(_P.SO2, "1h", _UG, 0, 150, 500, 650, 800),
        "no2_24h": _hj(_P.NO2, "24h", _UG, 0, 40, 80, 180, 280, 565, 750, 940),
        "no2_1h": _hj(_P.NO2, "1h", _UG, 0, 100, 200, 700, 1200, 2340, 3090, 3840),
        "pm10_24h": _hj(_P.PM10, "24h", _UG, 0, 50, 150, 250, 350, 420, 500, 600),
        "co_24h": _hj(_P.CO, "24h", _MG, 0, 2, 4, 14, 24, 36, 48, 60),
        "co_1h": _hj(_P.CO, "1h", _MG, 0, 5, 10, 35, 60, 90, 120, 150),
        "o3_1h": _hj(_P.O3_1H, "1h", _UG, 0, 160, 200, 300, 400, 800, 1000, 1200),
        "o3_8h": _hj(_P.O3_8H, "8h", _UG, 0, 100, 160, 215, 265, 800),
        "pm2_5_24h": _hj(_P.PM2_5, "24h", _UG, 0, 35, 75, 115, 150, 250, 350, 500),
    }
)
"""HJ 633-2012 Table 1, keyed ``<pollutant>_<averaging>``.

SO2 1-hour stops at 800 and O3 8-hour at 800 µg/m³: above them HJ 633 rates SO2 by
its 24-hour mean and O3 by its 1-hour value. PM has no 1-hour rows; CNEMC's hourly
AQI places hourly PM on the 24-hour rows.
"""


def _epa(
    pollutant: Pollutant, averaging: str, unit: str, *rows: tuple[float, float], first: int = 1
) -> Breakpoints:
    """EPA rows from level ``first`` on (O3 1-hour starts at level 3, AQI 101)."""
    aqi_rows = ((0, 50), (51, 100), (101, 150), (151, 200), (201, 300), (301, 500))
    segments = tuple(
        Segment(c_lo, c_hi, *aqi_rows[first - 1 + k]) for k, (c_lo, c_hi) in enumerate(rows)
    )
    return Breakpoints(pollutant, averaging, unit, segments)


EPA_BREAKPOINTS: Mapping[str, Breakpoints] = MappingProxyType(
    {
        "o3_8h": _epa(
            _P.O3_8H,
            "8h",
            "ppm",
            (0.000, 0.054),
            (0.055, 0.070),
            (0.071, 0.085),
            (0.086, 0.105),
            (0.106, 0.200),
        ),
        "o3_1h": _epa(
            _P.O3_1H,
            "1h",
            "ppm",
            (0.125, 0.164),
            (0.165, 0.204),
            (0.205, 0.404),
            (0.405, 0.604),
            first=3,
        ),
        "pm2_5_24h": _epa(
            _P.PM2_5,
            "24h",
            _UG,
            (0.0, 9.0),
            (9.1, 35.4),
            (35.5, 55.4),
            (55.5, 125.4),
            (125.5, 225.4),
            (225.5, 325.4),
        ),
        "pm10_24h": _epa(
            _P.PM10, "24h", _UG, (0, 54), (55, 154), (155, 254), (255, 354), (355, 424), (425, 604)
        ),
        "co_8h": _epa(
            _P.CO,
            "8h",
            "ppm",
            (0.0, 4.4),
            (4.5, 9.4),
            (9.5, 12.4),
            (12.5, 15.4),
            (15.5, 30.4),
            (30.5, 50.4),
        ),
        "so2_1h": _epa(_P.SO2, "1h", "ppb", (0, 35), (36, 75), (76, 185), (186, 304)),
        "so2_24h": _epa(_P.SO2, "24h", "ppb", (305, 604), (605, 1004), first=5),
        "no2_1h": _epa(
            _P.NO2,
            "1h",
            "ppb",
            (0, 53),
            (54, 100),
            (101, 360),
            (361, 649),
            (650, 1249),
            (1250, 2049),
        ),
    }
)
"""EPA's AQI breakpoints (Technical Assistance Document, May 2024, Table 6).

O3 1-hour starts at 0.125 ppm (AQI 101); below it only the 8-hour value rates O3.
The 8-hour O3 table stops at 0.200 ppm: above it the 1-hour value rates O3. SO2
1-hour stops at 304 ppb (AQI 200): above it the 24-hour mean rates SO2.
"""

_EPA_DECIMALS: Mapping[str, int] = MappingProxyType(
    {
        "o3_8h": 3,  # 0.001 ppm
        "o3_1h": 3,
        "pm2_5_24h": 1,  # 0.1 µg/m³
        "pm10_24h": 0,  # 1 µg/m³
        "co_8h": 1,  # 0.1 ppm
        "so2_1h": 0,  # 1 ppb
        "so2_24h": 0,
        "no2_1h": 0,
    }
)
"""Decimal places EPA truncates each table's concentrations to before interpolating."""

MOLAR_VOLUME_L: float = 8.314462618 * 298.15 / 101_325 * 1000
"""Litres filled by one mole of an ideal gas at 25 °C and 101.325 kPa (≈ 24.465)."""

MOLECULAR_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"o3": 47.997, "no2": 46.006, "so2": 64.066, "co": 28.010}
)
"""Molar masses in g/mol of the gases :func:`to_epa_units` converts."""


# ---------------------------------------------------------------- levels


@dataclass(frozen=True, slots=True)
class AqiLevel:
    """One of the six AQI levels of a standard.

    Attributes:
        standard: the standard the level belongs to.
        number: 1 (best) to 6 (worst).
        grade: HJ 633's level name, ``一级`` … ``六级``; None for EPA, which has none.
        name: the category in the standard's language: ``优`` … ``严重污染`` for
            HJ 633, ``Good`` … ``Hazardous`` for EPA.
        name_en: the category in English (HJ 633: CNEMC's English names).
        colour: the colour in the standard's language (``绿色``, ``Green``).
        colour_en: the colour in English.
        colour_hex: the colour as ``#RRGGBB``.
        low: the lowest AQI of the level.
        high: the highest AQI of the level.
    """

    standard: Standard
    number: int
    grade: str | None
    name: str
    name_en: str
    colour: str
    colour_en: str
    colour_hex: str
    low: int
    high: int


def _levels(
    standard: Standard, rows: Iterable[tuple[str | None, str, str, str, str, str]]
) -> tuple[AqiLevel, ...]:
    bounds = ((0, 50), (51, 100), (101, 150), (151, 200), (201, 300), (301, 500))
    return tuple(AqiLevel(standard, n, *row, *bounds[n - 1]) for n, row in enumerate(rows, start=1))


HJ633_LEVELS: tuple[AqiLevel, ...] = _levels(
    Standard.HJ633,
    (
        ("一级", "优", "Excellent", "绿色", "green", "#00E400"),
        ("二级", "良", "Good", "黄色", "yellow", "#FFFF00"),
        ("三级", "轻度污染", "Lightly Polluted", "橙色", "orange", "#FF7E00"),
        ("四级", "中度污染", "Moderately Polluted", "红色", "red", "#FF0000"),
        ("五级", "重度污染", "Heavily Polluted", "紫色", "purple", "#99004C"),
        ("六级", "严重污染", "Severely Polluted", "褐红色", "maroon", "#7E0023"),
    ),
)
"""HJ 633-2012 Table 2 and Appendix A (RGB colours): AQI 0-50 一级 优 green … >300 六级."""

EPA_LEVELS: tuple[AqiLevel, ...] = _levels(
    Standard.EPA,
    (
        (None, "Good", "Good", "Green", "green", "#00E400"),
        (None, "Moderate", "Moderate", "Yellow", "yellow", "#FFFF00"),
        (
            None,
            "Unhealthy for Sensitive Groups",
            "Unhealthy for Sensitive Groups",
            "Orange",
            "orange",
            "#FF7E00",
        ),
        (None, "Unhealthy", "Unhealthy", "Red", "red", "#FF0000"),
        (None, "Very Unhealthy", "Very Unhealthy", "Purple", "purple", "#8F3F97"),
        (None, "Hazardous", "Hazardous", "Maroon", "maroon", "#7E0023"),
    ),
)
"""EPA's six categories and their RGB colours (Technical Assistance Document, Table 1-2)."""


def aqi_level(aqi: int, standard: Standard | str = Standard.HJ633) -> AqiLevel:
    """The level an AQI value falls in.

    Args:
        aqi: an AQI, 0 to 500.
        standard: ``hj633`` (default) or ``epa``.

    Returns:
        The level whose range holds ``aqi``.

    Raises:
        AqiInputError: ``aqi`` is not an integer from 0 to 500.

    >>> aqi_level(101).name, aqi_level(101, "epa").name
    ('轻度污染', 'Unhealthy for Sensitive Groups')
    """
    if isinstance(aqi, bool) or not isinstance(aqi, int) or not 0 <= aqi <= 500:
        reason = "an AQI is an integer from 0 to 500"
        raise AqiInputError(reason, quantity="aqi", value=aqi)
    levels = HJ633_LEVELS if Standard(standard) is Standard.HJ633 else EPA_LEVELS
    return next(level for level in levels if aqi <= level.high)


# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class SubIndex:
    """One pollutant's individual index (IAQI) and how it was obtained.

    Attributes:
        pollutant: the pollutant rated.
        table: the breakpoint table used, a key of :data:`HJ633_BREAKPOINTS` or
            :data:`EPA_BREAKPOINTS` (hourly PM on HJ 633 uses ``pm2_5_24h``).
        concentration: the concentration rated, in ``unit``; for EPA after
            conversion and truncation.
        unit: ``µg/m³``, ``mg/m³``, ``ppm`` or ``ppb``.
        index: the individual index, 0 to 500.
    """

    pollutant: Pollutant
    table: str
    concentration: float
    unit: str
    index: int


@dataclass(frozen=True, slots=True)
class AqiResult:
    """An AQI with its level, primary pollutants and every individual index.

    Attributes:
        standard: the standard followed.
        aqi: the AQI, 0 to 500; None when no pollutant was given.
        level: the level of ``aqi``; None with it.
        primary: the pollutants whose index equals the AQI, in CNEMC's order. HJ 633
            names them only when the AQI is above 50; EPA always names its
            *critical pollutant(s)*.
        sub_indices: every pollutant's index, in the order of :class:`Pollutant`.
    """

    standard: Standard
    aqi: int | None
    level: AqiLevel | None
    primary: tuple[Pollutant, ...]
    sub_indices: tuple[SubIndex, ...]

    @property
    def iaqi(self) -> dict[Pollutant, int]:
        """Each rated pollutant's individual index."""
        return {s.pollutant: s.index for s in self.sub_indices}

    @property
    def primary_names(self) -> str:
        """The primary pollutants as the standard's publisher writes them, comma-joined.

        HJ 633: CNEMC's names (``颗粒物(PM10),细颗粒物(PM2.5)``); EPA: English labels.
        Empty when there is none.
        """
        if self.standard is Standard.HJ633:
            return ",".join(p.cnemc_name for p in self.primary)
        return ",".join(p.label for p in self.primary)

    @property
    def primary_codes(self) -> str:
        """The primary pollutants' codes, comma-joined, e.g. ``pm10,pm2_5``."""
        return ",".join(p.value for p in self.primary)


def _result(standard: Standard, subs: list[SubIndex]) -> AqiResult:
    if not subs:
        return AqiResult(standard, None, None, (), ())
    subs.sort(key=lambda s: list(Pollutant).index(s.pollutant))
    aqi = max(s.index for s in subs)
    named = standard is Standard.EPA or aqi > 50
    primary = tuple(s.pollutant for s in subs if s.index == aqi) if named else ()
    return AqiResult(standard, aqi, aqi_level(aqi, standard), primary, tuple(subs))


# ---------------------------------------------------------------- arithmetic


def _exact(x: float) -> Fraction:
    """The decimal a float was written as (0.8 -> 4/5), so breakpoints compare exactly."""
    return Fraction(repr(float(x)))


def _value(quantity: str, value: object) -> float | None:
    """A validated concentration: None stays None, anything else a finite number >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        reason = "a concentration must be a number"
        raise AqiInputError(reason, quantity=quantity, value=value)
    x = float(value)
    if not math.isfinite(x):
        reason = "a concentration must be finite"
        raise AqiInputError(reason, quantity=quantity, value=value)
    if x < 0:
        reason = "a concentration cannot be negative"
        raise AqiInputError(reason, quantity=quantity, value=value)
    return x


def _values(
    given: Mapping[str, float | None], known: Sequence[str], function: str
) -> dict[str, float]:
    values: dict[str, float] = {}
    for key, raw in given.items():
        if key not in known:
            reason = f"{function} takes {', '.join(known)}"
            raise AqiInputError(reason, quantity=str(key), value=raw)
        x = _value(key, raw)
        if x is not None:
            values[key] = x
    return values


def _hj_sub(table_key: str, concentration: float) -> SubIndex:
    """HJ 633's IAQI: interpolate, round up, 500 above the table."""
    table = HJ633_BREAKPOINTS[table_key]
    c = _exact(concentration)
    exact = table.exact_index(c) if c <= _exact(table.high) else None
    index = 500 if exact is None else min(500, math.ceil(exact))
    return SubIndex(table.pollutant, table_key, concentration, table.unit, index)


def _truncate(x: float, decimals: int) -> Fraction:
    """EPA's truncation to ``decimals`` places (after removing float noise at 1e-6 of a step)."""
    step = Fraction(10) ** decimals
    scaled = round(_exact(x) * step, 6)
    return Fraction(math.floor(scaled)) / step


def _epa_sub(table_key: str, concentration: float) -> list[SubIndex]:
    """EPA's index: truncate, interpolate, round half up; 500 above the table.

    Returns:
        The sub-index, or nothing when the value is below the table (O3 1-hour
        under 0.125 ppm, SO2 24-hour under 305 ppb).
    """
    table = EPA_BREAKPOINTS[table_key]
    c = _truncate(concentration, _EPA_DECIMALS[table_key])
    if c > _exact(table.high):
        index = 500
    else:
        exact = table.exact_index(c)
        if exact is None:
            return []
        index = math.floor(exact + Fraction(1, 2))
    return [SubIndex(table.pollutant, table_key, float(c), table.unit, index)]


# ---------------------------------------------------------------- HJ 633


_HOURLY_KEYS = ("so2", "no2", "pm10", "pm2_5", "co", "o3", "so2_24h")
_HOURLY_TABLES = (
    ("no2", "no2_1h"),
    ("pm10", "pm10_24h"),
    ("pm2_5", "pm2_5_24h"),
    ("co", "co_1h"),
    ("o3", "o3_1h"),
)


def hourly_aqi(concentrations: Mapping[str, float | None]) -> AqiResult:
    """The hourly AQI of one station as CNEMC publishes it (HJ 633-2012).

    Args:
        concentrations: 1-hour means by the catalogue's metric names -- ``pm2_5``,
            ``pm10``, ``so2``, ``no2``, ``o3`` in µg/m³ and ``co`` in mg/m³ -- so a
            pollution reading's ``metrics`` can be passed as is; plus, optionally,
            ``so2_24h``, the 24-hour SO2 mean, used only when 1-hour SO2 is above
            800 µg/m³. A missing or None pollutant is skipped and the AQI comes
            from those present.

    Returns:
        The AQI (None when no pollutant is present), its level, the primary
        pollutants (only when the AQI is above 50, every one tying the maximum)
        and each pollutant's IAQI. SO2, NO2, CO and O3 use the 1-hour breakpoints,
        PM2.5 and PM10 the 24-hour ones (HJ 633 has no 1-hour PM rows);
        IAQI = linear interpolation rounded up, 500 above the last breakpoint.

    Raises:
        AqiInputError: a negative, non-finite or non-numeric concentration, an
            unknown name, or SO2 above 800 µg/m³ without ``so2_24h``.

    >>> r = hourly_aqi({"pm2_5": 75, "pm10": 150, "o3": 200})
    >>> r.aqi, r.primary_names, r.level.name_en
    (100, '颗粒物(PM10),细颗粒物(PM2.5),臭氧1小时', 'Good')
    >>> hourly_aqi({"pm2_5": 35.1}).aqi  # 50.14... rounds up
    51
    >>> hourly_aqi({"pm2_5": 35}).primary  # AQI 50: no primary pollutant
    ()
    >>> hourly_aqi({"so2": 900, "so2_24h": 500}).sub_indices[0].table
    'so2_24h'
    >>> print(hourly_aqi({}).aqi)
    None
    """
    values = _values(concentrations, _HOURLY_KEYS, "hourly_aqi")
    subs = [_hj_sub(table, values[key]) for key, table in _HOURLY_TABLES if key in values]
    if "so2" in values:
        so2 = values["so2"]
        if so2 <= HJ633_BREAKPOINTS["so2_1h"].high:
            subs.append(_hj_sub("so2_1h", so2))
        elif "so2_24h" in values:
            subs.append(_hj_sub("so2_24h", values["so2_24h"]))
        else:
            reason = (
                "1-hour SO2 above 800 µg/m³ is rated by its 24-hour mean (HJ 633 "
                "Table 1, note 2); give so2_24h too"
            )
            raise AqiInputError(reason, quantity="so2", value=concentrations["so2"])
    return _result(Standard.HJ633, subs)


_DAILY_KEYS = ("so2", "no2", "pm10", "pm2_5", "co", "o3_8h", "o3_1h")
_DAILY_TABLES = (
    ("so2", "so2_24h"),
    ("no2", "no2_24h"),
    ("pm10", "pm10_24h"),
    ("pm2_5", "pm2_5_24h"),
    ("co", "co_24h"),
    ("o3_1h", "o3_1h"),
)


def daily_aqi(means: Mapping[str, float | None]) -> AqiResult:
    """The daily AQI of HJ 633-2012 (日报) from one natural day's means.

    Args:
        means: ``so2``, ``no2``, ``pm10``, ``pm2_5`` (µg/m³) and ``co`` (mg/m³) as
            24-hour means; ``o3_8h``, the day's maximum 8-hour running mean of O3
            (:func:`o3_daily_max_8h`); and optionally ``o3_1h``, the day's maximum
            1-hour O3. Missing or None values are skipped.

    Returns:
        The AQI over the seven daily indicators of HJ 633 §5.1 that are present,
        its level and primary pollutants (``臭氧8小时`` or ``臭氧1小时`` for ozone).
        An 8-hour O3 above 800 µg/m³ has no IAQI (HJ 633 Table 1, note 3): ozone is
        then rated by ``o3_1h`` alone.

    Raises:
        AqiInputError: a bad or unknown value, or ``o3_8h`` above 800 without ``o3_1h``.

    >>> r = daily_aqi({"pm2_5": 60, "pm10": 90, "no2": 30, "o3_8h": 180, "o3_1h": 230})
    >>> r.aqi, r.primary_names
    (119, '臭氧8小时')
    >>> daily_aqi({"o3_8h": 850, "o3_1h": 900}).iaqi
    {<Pollutant.O3_1H: 'o3_1h'>: 350}
    """
    values = _values(means, _DAILY_KEYS, "daily_aqi")
    subs = [_hj_sub(table, values[key]) for key, table in _DAILY_TABLES if key in values]
    if "o3_8h" in values:
        if values["o3_8h"] <= HJ633_BREAKPOINTS["o3_8h"].high:
            subs.append(_hj_sub("o3_8h", values["o3_8h"]))
        elif "o3_1h" not in values:
            reason = (
                "8-hour O3 above 800 µg/m³ has no IAQI; ozone is rated by its 1-hour "
                "value (HJ 633 Table 1, note 3): give o3_1h too"
            )
            raise AqiInputError(reason, quantity="o3_8h", value=means["o3_8h"])
    return _result(Standard.HJ633, subs)


def _o3_hours(hourly: Sequence[float | None]) -> list[float | None]:
    return [_value(f"o3[{i}]", v) for i, v in enumerate(hourly)]


def o3_8h_running_means(
    hourly: Sequence[float | None], *, min_hours: int = 6
) -> list[float | None]:
    """8-hour running means of consecutive hourly O3 values (HJ 663-2013 validity).

    Args:
        hourly: 1-hour O3 means (µg/m³) of consecutive hours, None where missing.
        min_hours: valid hours a window needs; HJ 663-2013 and GB 3095-2012 ask
            for at least 6 of the 8.

    Returns:
        One value per input hour: the mean of the valid values among that hour and
        the 7 before it, or None when fewer than ``min_hours`` are valid. Hours
        before the start of ``hourly`` count as missing, so the first five are None
        with the default.

    Raises:
        AqiInputError: a bad hourly value, or ``min_hours`` outside 1..8.

    >>> o3_8h_running_means([80, 90, None, 100, 110, 120, 130, 140, 150])
    [None, None, None, None, None, None, 105.0, 110.0, 120.0]
    """
    if not 1 <= min_hours <= 8:
        reason = "a window has 8 hours; min_hours must be 1 to 8"
        raise AqiInputError(reason, quantity="min_hours", value=min_hours)
    values = _o3_hours(hourly)
    means: list[float | None] = []
    for end in range(len(values)):
        window = [v for v in values[max(0, end - 7) : end + 1] if v is not None]
        means.append(math.fsum(window) / len(window) if len(window) >= min_hours else None)
    return means


def o3_daily_max_8h(
    day: Sequence[float | None],
    *,
    min_hours: int = 6,
    min_windows: int = 14,
    limit: float | None = 160.0,
) -> float | None:
    """A natural day's maximum 8-hour O3 mean (日最大8小时滑动平均, HJ 663-2013).

    The day's 8-hour means are the 17 ending at 08:00 … 24:00, each over that day's
    own hours only (CNEMC's real-time ``o3_8h_24h`` column, which averages fewer
    hours before 08:00, is a different quantity).

    Args:
        day: the 24 hourly O3 means (µg/m³) of one day, index 0 the hour 00:00-01:00
            (labelled 01:00 by its end) and index 23 the hour 23:00-24:00; None
            where missing.
        min_hours: valid hours an 8-hour window needs (6).
        min_windows: valid 8-hour means the day needs (14 of 17).
        limit: with fewer valid windows the maximum still counts when it exceeds
            this concentration (GB 3095-2012's class-2 limit, 160 µg/m³); None to
            never accept a day short of windows.

    Returns:
        The maximum valid 8-hour mean, or None when the day is not valid.

    Raises:
        AqiInputError: ``day`` does not hold 24 values, or a bad hourly value.

    >>> o3_daily_max_8h([50.0] * 8 + [120.0] * 8 + [60.0] * 8)
    120.0
    >>> print(o3_daily_max_8h([None] * 10 + [200.0] * 8 + [None] * 6))
    200.0
    >>> print(o3_daily_max_8h([None] * 10 + [90.0] * 8 + [None] * 6))
    None
    """
    if len(day) != 24:
        reason = "a day needs its 24 hourly values (None where missing)"
        raise AqiInputError(reason, quantity="day", value=f"{len(day)} values")
    means = o3_8h_running_means(day, min_hours=min_hours)[7:]
    valid = [m for m in means if m is not None]
    if not valid:
        return None
    best = max(valid)
    if len(valid) >= min_windows or (limit is not None and best > limit):
        return best
    return None


# ---------------------------------------------------------------- US EPA


_EPA_KEYS = ("pm2_5", "pm10", "o3_8h", "o3_1h", "co", "so2", "so2_24h", "no2")
_EPA_UNITS = frozenset({"mass", "epa"})
_EPA_GAS = {"o3_8h": "o3", "o3_1h": "o3", "co": "co", "so2": "so2", "so2_24h": "so2", "no2": "no2"}


def to_epa_units(quantity: str, value: float) -> float:
    """Convert a concentration from µg/m³ (CO: mg/m³) to EPA's unit at 25 °C, 101.325 kPa.

    Args:
        quantity: one of :func:`epa_aqi`'s names; O3 becomes ppm, CO ppm, SO2 and
            NO2 ppb, PM2.5 and PM10 stay in µg/m³.
        value: the concentration.

    Returns:
        The concentration in EPA's unit: ``µg/m³ * 24.465 / M`` ppb (÷ 1000 for ppm).

    Raises:
        AqiInputError: an unknown quantity or a bad value.

    >>> round(to_epa_units("o3_8h", 153.0), 4), round(to_epa_units("co", 1.145), 2)
    (0.078, 1.0)
    """
    x = _value(quantity, value)
    if quantity not in _EPA_KEYS or x is None:
        reason = f"to_epa_units takes a number for one of {', '.join(_EPA_KEYS)}"
        raise AqiInputError(reason, quantity=quantity, value=value)
    if quantity not in _EPA_GAS:
        return x
    gas = _EPA_GAS[quantity]
    ppb_or_ppm = x * MOLAR_VOLUME_L / MOLECULAR_WEIGHTS[gas]
    return ppb_or_ppm / 1000 if gas == "o3" else ppb_or_ppm


def epa_aqi(
    concentrations: Mapping[str, float | None], *, units: Literal["mass", "epa"] = "mass"
) -> AqiResult:
    """The US EPA AQI with the 2024 PM2.5 breakpoints.

    Args:
        concentrations: by name -- ``pm2_5`` and ``pm10`` (24-hour means),
            ``o3_8h`` (8-hour mean), ``o3_1h`` (1-hour), ``co`` (8-hour mean),
            ``so2`` (1-hour), ``so2_24h`` (24-hour mean, needed only when 1-hour SO2
            is 305 ppb or more) and ``no2`` (1-hour). Missing or None are skipped.
        units: ``mass`` (default): µg/m³, CO in mg/m³, converted as the module says;
            ``epa``: EPA's own units, O3 and CO in ppm, SO2 and NO2 in ppb, PM in µg/m³.

    Returns:
        The AQI, its EPA category and the critical pollutant(s) (always named, as
        EPA reports them). Each value is truncated, interpolated and rounded to the
        nearest integer; above a table's last row the index is 500 (AirNow calls
        that *Beyond the AQI*). Ozone is rated by the larger of its 8-hour and
        1-hour indices; 1-hour O3 below 0.125 ppm has no index, and 8-hour O3 above
        0.200 ppm is rated by 1-hour O3 alone. 1-hour SO2 of 305 ppb or more is
        rated by the 24-hour mean, and by 200 when that mean is below 305 ppb.

    Raises:
        AqiInputError: a bad or unknown value; ``o3_8h`` above 0.200 ppm without
            ``o3_1h``; 1-hour SO2 of 305 ppb or more without ``so2_24h``.

    >>> r = epa_aqi({"o3_8h": 0.07853, "pm2_5": 35.9, "co": 8.4}, units="epa")
    >>> r.aqi, r.level.name, r.primary_names, r.iaqi[Pollutant.PM2_5], r.iaqi[Pollutant.CO]
    (126, 'Unhealthy for Sensitive Groups', 'O3 8-h', 102, 90)
    >>> epa_aqi({"pm2_5": 9.0}).aqi, epa_aqi({"pm2_5": 9.1}).aqi, epa_aqi({"pm2_5": 125.4}).aqi
    (50, 51, 200)
    """
    if units not in _EPA_UNITS:
        reason = "units are 'mass' (µg/m³, CO mg/m³) or 'epa' (ppm, ppb)"
        raise AqiInputError(reason, quantity="units", value=units)
    checked = _values(concentrations, _EPA_KEYS, "epa_aqi")
    values = checked if units == "epa" else {k: to_epa_units(k, v) for k, v in checked.items()}

    subs: list[SubIndex] = []
    for key, table in (
        ("pm2_5", "pm2_5_24h"),
        ("pm10", "pm10_24h"),
        ("co", "co_8h"),
        ("no2", "no2_1h"),
    ):
        if key in values:
            subs.extend(_epa_sub(table, values[key]))
    subs.extend(_epa_o3(values, concentrations))
    if "so2" in values:
        subs.append(_epa_so2(values, concentrations))
    return _result(Standard.EPA, subs)


def _epa_o3(values: Mapping[str, float], given: Mapping[str, float | None]) -> list[SubIndex]:
    subs: list[SubIndex] = []
    if "o3_8h" in values:
        if _truncate(values["o3_8h"], 3) <= _exact(EPA_BREAKPOINTS["o3_8h"].high):
            subs.extend(_epa_sub("o3_8h", values["o3_8h"]))
        elif "o3_1h" not in values:
            reason = (
                "8-hour O3 above 0.200 ppm does not define the AQI; EPA rates it by "
                "1-hour O3: give o3_1h too"
            )
            raise AqiInputError(reason, quantity="o3_8h", value=given["o3_8h"])
    if "o3_1h" in values:
        subs.extend(_epa_sub("o3_1h", values["o3_1h"]))
    return subs


def _epa_so2(values: Mapping[str, float], given: Mapping[str, float | None]) -> SubIndex:
    one_hour = _truncate(values["so2"], 0)
    if one_hour <= _exact(EPA_BREAKPOINTS["so2_1h"].high):
        return _epa_sub("so2_1h", values["so2"])[0]
    if "so2_24h" not in values:
        reason = (
            "1-hour SO2 of 305 ppb or more does not define the AQI; EPA rates it by "
            "the 24-hour mean: give so2_24h too"
        )
        raise AqiInputError(reason, quantity="so2", value=given["so2"])
    daily = _epa_sub("so2_24h", values["so2_24h"])
    # A 24-hour mean below 305 ppb: the AQI is 200, the top of the 1-hour table.
    return daily[0] if daily else SubIndex(Pollutant.SO2, "so2_1h", float(one_hour), "ppb", 200)

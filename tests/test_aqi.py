"""The AQI: HJ 633-2012's rules, EPA's 2024 AQI, CNEMC's official hourly AQI, the CSV tool.

The official check recomputes every row of ``../shared/data/cnemc-aqi-dev/hourly.csv``
that CNEMC published an AQI for and requires the same AQI and primary pollutants.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.indices.aqi import (
    EPA_BREAKPOINTS,
    HJ633_BREAKPOINTS,
    HJ633_LEVELS,
    MOLAR_VOLUME_L,
    AqiError,
    AqiInputError,
    Pollutant,
    Standard,
    aqi_level,
    daily_aqi,
    epa_aqi,
    hourly_aqi,
    o3_8h_running_means,
    o3_daily_max_8h,
    parse_cnemc_primary,
    to_epa_units,
)
from stream.indices.aqi_csv import AqiCsvError, add_parser, aqi_command, run

CNEMC_HOURLY = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cnemc-aqi-dev" / "hourly.csv"
)
"""CNEMC hourly station data with the official AQI (see its README)."""


# ---------------------------------------------------------------- HJ 633: breakpoints


@pytest.mark.parametrize(
    ("key", "table"),
    [
        ("so2", "so2_1h"),
        ("no2", "no2_1h"),
        ("pm10", "pm10_24h"),
        ("pm2_5", "pm2_5_24h"),
        ("co", "co_1h"),
        ("o3", "o3_1h"),
    ],
)
def test_hourly_iaqi_is_exact_at_every_breakpoint_and_rounds_up_just_above(
    key: str, table: str
) -> None:
    for seg in HJ633_BREAKPOINTS[table].segments:
        at = hourly_aqi({key: seg.c_high})
        assert at.aqi == seg.i_high, (key, seg)
        assert hourly_aqi({key: seg.c_low}).aqi == seg.i_low
        if seg.c_high < HJ633_BREAKPOINTS[table].high:
            # A hair above a breakpoint is rounded up to the next integer.
            assert hourly_aqi({key: seg.c_high + 0.01}).aqi == seg.i_high + 1, (key, seg)


@pytest.mark.parametrize(
    ("concentrations", "expected"),
    [
        ({"pm10": 63}, 57),  # 56.5 -> 57
        ({"pm2_5": 32}, 46),  # 45.71 -> 46
        ({"pm2_5": 35.1}, 51),  # 50.14 -> 51
        ({"no2": 1}, 1),  # 0.5 -> 1
        ({"co": 0.8}, 8),  # exactly 8, not 8.000000000000002 -> 9
        ({"co": 0.3}, 3),
        ({"o3": 0}, 0),
        ({"so2": 501}, 101),  # 100.33 -> 101
        ({"pm10": 351}, 202),  # 201.43 -> 202
    ],
)
def test_hourly_iaqi_is_interpolated_and_rounded_up(
    concentrations: dict[str, float], expected: int
) -> None:
    assert hourly_aqi(concentrations).aqi == expected


def test_hj633_table_matches_the_standard() -> None:
    """HJ 633-2012 Table 1 as published (IAQI 0, 50, 100, 150, 200, 300, 400, 500)."""
    expected = {
        "so2_24h": (0, 50, 150, 475, 800, 1600, 2100, 2620),
        "so2_1h": (0, 150, 500, 650, 800),
        "no2_24h": (0, 40, 80, 180, 280, 565, 750, 940),
        "no2_1h": (0, 100, 200, 700, 1200, 2340, 3090, 3840),
        "pm10_24h": (0, 50, 150, 250, 350, 420, 500, 600),
        "co_24h": (0, 2, 4, 14, 24, 36, 48, 60),
        "co_1h": (0, 5, 10, 35, 60, 90, 120, 150),
        "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
        "o3_8h": (0, 100, 160, 215, 265, 800),
        "pm2_5_24h": (0, 35, 75, 115, 150, 250, 350, 500),
    }
    assert set(HJ633_BREAKPOINTS) == set(expected)
    for key, cs in expected.items():
        segs = HJ633_BREAKPOINTS[key].segments
        assert (segs[0].c_low, *(s.c_high for s in segs)) == cs, key
        assert (0, *(s.i_high for s in segs)) == (0, 50, 100, 150, 200, 300, 400, 500)[: len(cs)]


# ---------------------------------------------------------------- HJ 633: primary, cap, rules


def test_ties_list_every_primary_pollutant_in_cnemc_order() -> None:
    r = hourly_aqi({"o3": 200, "pm2_5": 75, "pm10": 150, "no2": 50})
    assert r.aqi == 100
    assert r.primary == (Pollutant.PM10, Pollutant.PM2_5, Pollutant.O3_1H)
    assert r.primary_names == "颗粒物(PM10),细颗粒物(PM2.5),臭氧1小时"
    assert r.primary_codes == "pm10,pm2_5,o3_1h"


def test_primary_pollutant_only_above_50() -> None:
    at_50 = hourly_aqi({"pm2_5": 35, "pm10": 50})
    assert (at_50.aqi, at_50.primary, at_50.primary_names) == (50, (), "")
    assert at_50.level is not None
    assert at_50.level.grade == "一级"
    above = hourly_aqi({"pm2_5": 35.1, "pm10": 50})
    assert (above.aqi, above.primary) == (51, (Pollutant.PM2_5,))


def test_iaqi_is_capped_at_500() -> None:
    r = hourly_aqi({"pm2_5": 800, "pm10": 2000, "o3": 5000, "co": 400, "no2": 9000})
    assert r.aqi == 500
    assert set(r.iaqi.values()) == {500}
    assert set(r.primary) == {
        Pollutant.PM2_5,
        Pollutant.PM10,
        Pollutant.O3_1H,
        Pollutant.CO,
        Pollutant.NO2,
    }
    assert r.level is not None
    assert (r.level.grade, r.level.name, r.level.colour_hex) == ("六级", "严重污染", "#7E0023")


def test_missing_pollutants_are_skipped() -> None:
    r = hourly_aqi({"pm2_5": 80, "pm10": None, "o3": None})
    assert r.aqi == 107
    assert list(r.iaqi) == [Pollutant.PM2_5]
    empty = hourly_aqi({"pm2_5": None})
    assert (empty.aqi, empty.level, empty.primary, empty.sub_indices) == (None, None, (), ())


def test_so2_above_800_one_hour_is_rated_by_its_24_hour_mean() -> None:
    assert hourly_aqi({"so2": 800, "so2_24h": 10}).aqi == 200
    above = hourly_aqi({"so2": 801, "so2_24h": 900})
    assert above.sub_indices[0].table == "so2_24h"
    assert above.aqi == 213  # 200 + 100 * 100 / 800 = 212.5
    assert above.primary_names == "二氧化硫"
    with pytest.raises(AqiInputError, match=r"so2 = 900.*so2_24h"):
        hourly_aqi({"so2": 900})


def test_daily_aqi_uses_24_hour_breakpoints_and_the_daily_ozone_values() -> None:
    r = daily_aqi({"so2": 150, "no2": 80, "pm10": 150, "pm2_5": 75, "co": 4, "o3_8h": 160})
    assert r.aqi == 100
    assert len(r.primary) == 6
    assert Pollutant.O3_8H in r.primary
    assert "臭氧8小时" in r.primary_names
    ozone = daily_aqi({"pm2_5": 60, "o3_8h": 180, "o3_1h": 230})
    assert (ozone.aqi, ozone.primary_names) == (119, "臭氧8小时")
    one_hour = daily_aqi({"o3_8h": 150, "o3_1h": 420})
    assert (one_hour.aqi, one_hour.primary_names) == (205, "臭氧1小时")


def test_daily_o3_8h_above_800_is_rated_by_the_1_hour_value() -> None:
    assert daily_aqi({"o3_8h": 800}).aqi == 300
    above = daily_aqi({"o3_8h": 801, "o3_1h": 900})
    assert above.iaqi == {Pollutant.O3_1H: 350}
    assert above.primary_names == "臭氧1小时"
    with pytest.raises(AqiInputError, match=r"o3_8h = 850.*o3_1h"):
        daily_aqi({"o3_8h": 850})


def test_levels_boundaries_names_and_colours() -> None:
    names = [(lvl.grade, lvl.name, lvl.colour_hex) for lvl in HJ633_LEVELS]
    assert names == [
        ("一级", "优", "#00E400"),
        ("二级", "良", "#FFFF00"),
        ("三级", "轻度污染", "#FF7E00"),
        ("四级", "中度污染", "#FF0000"),
        ("五级", "重度污染", "#99004C"),
        ("六级", "严重污染", "#7E0023"),
    ]
    for aqi, number in [(0, 1), (50, 1), (51, 2), (100, 2), (101, 3), (200, 4), (300, 5)]:
        assert aqi_level(aqi).number == number
    assert aqi_level(301).number == aqi_level(500).number == 6
    assert aqi_level(250, "epa").colour_hex == "#8F3F97"
    with pytest.raises(AqiInputError, match="aqi = 501"):
        aqi_level(501)


# ---------------------------------------------------------------- ozone helpers


def test_o3_8h_running_means_need_6_valid_hours() -> None:
    hours: list[float | None] = [100.0] * 8
    assert o3_8h_running_means(hours)[-1] == 100.0
    hours[0] = hours[1] = None
    assert o3_8h_running_means(hours)[-1] == 100.0  # 6 of 8
    hours[2] = None
    assert o3_8h_running_means(hours)[-1] is None  # 5 of 8
    assert o3_8h_running_means([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0])[-2:] == [
        45.0,
        55.0,
    ]


def test_o3_daily_max_8h_uses_windows_ending_08_to_24() -> None:
    # The first window ends at 08:00: the morning peak enters it diluted by 4 hours of 50.
    day: list[float | None] = [*[300.0] * 4, *[50.0] * 20]
    assert o3_daily_max_8h(day) == pytest.approx((4 * 300 + 4 * 50) / 8)
    # Five hours missing: the 14 windows ending 11:00 ... 24:00 have 6 hours or more.
    sparse: list[float | None] = [*[None] * 5, *[100.0] * 19]
    assert o3_daily_max_8h(sparse) == 100.0
    # Nine hours missing: 10 valid windows, too few unless the maximum exceeds 160.
    short: list[float | None] = [*[None] * 9, *[100.0] * 15]
    assert o3_daily_max_8h(short) is None
    high: list[float | None] = [*[None] * 9, *[170.0] * 15]
    assert o3_daily_max_8h(high) == 170.0
    assert o3_daily_max_8h(high, limit=None) is None
    with pytest.raises(AqiInputError, match="24 hourly values"):
        o3_daily_max_8h([1.0] * 23)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-0.5, "negative"),
        (math.nan, "finite"),
        (math.inf, "finite"),
        ("12", "number"),
        (True, "number"),
    ],
)
def test_a_bad_concentration_is_answered_with_its_name_and_value(
    value: object, reason: str
) -> None:
    with pytest.raises(AqiInputError) as info:
        hourly_aqi({"pm10": 40, "no2": value})  # type: ignore[dict-item]
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, AqiError)
    assert (info.value.quantity, info.value.value) == ("no2", value)
    assert str(info.value).startswith(f"no2 = {value!r}: ")
    assert reason in str(info.value)
    with pytest.raises(AqiInputError, match="o3_8h"):
        epa_aqi({"o3_8h": value})  # type: ignore[dict-item]


def test_an_unknown_name_is_refused() -> None:
    with pytest.raises(AqiInputError, match=r"pm25 = 30: hourly_aqi takes .*pm2_5"):
        hourly_aqi({"pm25": 30})
    with pytest.raises(AqiInputError, match="daily_aqi takes"):
        daily_aqi({"o3": 30})


def test_parse_cnemc_primary() -> None:
    assert parse_cnemc_primary("") == frozenset()
    assert parse_cnemc_primary("二氧化氮,细颗粒物(PM2.5)") == {Pollutant.NO2, Pollutant.PM2_5}
    with pytest.raises(AqiInputError, match=r"PM2\.5"):
        parse_cnemc_primary("PM2.5")


# ---------------------------------------------------------------- US EPA


def test_epa_technical_assistance_document_examples() -> None:
    """EPA's AQI Technical Assistance Document: 8-hour O3 0.07853 ppm truncates to 0.078.

    Its multi-pollutant example adds PM2.5 35.9 µg/m³ (AQI 102) and CO 8.4 ppm (AQI
    90); the AQI is 126 with ozone as the critical pollutant.
    """
    assert epa_aqi({"o3_8h": 0.07853}, units="epa").aqi == 126
    r = epa_aqi({"o3_8h": 0.078, "pm2_5": 35.9, "co": 8.4}, units="epa")
    assert r.iaqi == {Pollutant.PM2_5: 102, Pollutant.CO: 90, Pollutant.O3_8H: 126}
    assert (r.aqi, r.primary, r.standard) == (126, (Pollutant.O3_8H,), Standard.EPA)
    assert r.level is not None
    assert (r.level.name, r.level.colour_hex, r.level.grade) == (
        "Unhealthy for Sensitive Groups",
        "#FF7E00",
        None,
    )


@pytest.mark.parametrize(
    ("pm2_5", "expected"),
    [
        (0.0, 0),
        (9.0, 50),
        (9.05, 50),  # truncated to 9.0
        (9.1, 51),
        (12.0, 56),  # 56.40: 2024 breakpoints (it was 50 before)
        (35.4, 100),
        (35.49, 100),
        (35.5, 101),
        (55.4, 150),
        (55.5, 151),
        (125.4, 200),
        (125.5, 201),
        (225.4, 300),
        (225.5, 301),
        (325.4, 500),
        (600.0, 500),
    ],
)
def test_epa_pm2_5_2024_breakpoints_and_truncation(pm2_5: float, expected: int) -> None:
    assert epa_aqi({"pm2_5": pm2_5}).aqi == expected


def test_epa_tables_follow_the_2024_document() -> None:
    pm = EPA_BREAKPOINTS["pm2_5_24h"].segments
    assert [(s.c_low, s.c_high) for s in pm] == [
        (0.0, 9.0),
        (9.1, 35.4),
        (35.5, 55.4),
        (55.5, 125.4),
        (125.5, 225.4),
        (225.5, 325.4),
    ]
    assert [(s.i_low, s.i_high) for s in EPA_BREAKPOINTS["o3_1h"].segments] == [
        (101, 150),
        (151, 200),
        (201, 300),
        (301, 500),
    ]
    assert epa_aqi({"pm10": 154}).aqi == 100
    assert epa_aqi({"no2": 100}, units="epa").aqi == 100
    assert epa_aqi({"co": 9.4}, units="epa").aqi == 100
    assert epa_aqi({"so2": 75}, units="epa").aqi == 100
    assert epa_aqi({"o3_8h": 0.070}, units="epa").aqi == 100


def test_epa_ozone_rules() -> None:
    # 1-hour O3 below 0.125 ppm has no index; the larger of 8-hour and 1-hour counts.
    assert epa_aqi({"o3_1h": 0.120}, units="epa").aqi is None
    both = epa_aqi({"o3_8h": 0.080, "o3_1h": 0.170}, units="epa")
    assert (both.aqi, both.primary) == (157, (Pollutant.O3_1H,))
    above = epa_aqi({"o3_8h": 0.250, "o3_1h": 0.450}, units="epa")
    assert above.iaqi == {Pollutant.O3_1H: 346}
    with pytest.raises(AqiInputError, match=r"o3_8h = 0\.25.*o3_1h"):
        epa_aqi({"o3_8h": 0.250}, units="epa")


def test_epa_so2_rules() -> None:
    assert epa_aqi({"so2": 304}, units="epa").aqi == 200
    from_24h = epa_aqi({"so2": 400, "so2_24h": 350}, units="epa")
    assert (from_24h.aqi, from_24h.sub_indices[0].table) == (216, "so2_24h")
    assert epa_aqi({"so2": 400, "so2_24h": 100}, units="epa").aqi == 200
    with pytest.raises(AqiInputError, match="so2_24h"):
        epa_aqi({"so2": 400}, units="epa")


def test_epa_names_the_critical_pollutant_even_when_good() -> None:
    r = epa_aqi({"pm2_5": 5.0, "pm10": 20})
    assert (r.aqi, r.primary_names) == (28, "PM2.5")


def test_epa_unit_conversion_at_25_c() -> None:
    assert pytest.approx(24.465, abs=1e-3) == MOLAR_VOLUME_L
    assert to_epa_units("o3_8h", 1.962) == pytest.approx(0.001, rel=1e-3)  # ppm
    assert to_epa_units("no2", 1.880) == pytest.approx(1.0, rel=1e-3)  # ppb
    assert to_epa_units("so2", 2.619) == pytest.approx(1.0, rel=1e-3)  # ppb
    assert to_epa_units("co", 1.145) == pytest.approx(1.0, rel=1e-3)  # mg/m³ -> ppm
    assert to_epa_units("pm2_5", 35.0) == 35.0
    # 200 µg/m³ NO2 (China's 1-hour class-2 limit) is 106.4 ppb, truncated to 106: AQI 102.
    assert epa_aqi({"no2": 200}).aqi == 102


# ---------------------------------------------------------------- monotonicity (properties)

_conc = st.floats(min_value=0, max_value=5000, allow_nan=False, allow_infinity=False)
_co = st.floats(min_value=0, max_value=200, allow_nan=False, allow_infinity=False)
_maybe = st.one_of(st.none(), _conc)


@st.composite
def _hourly(draw: st.DrawFn) -> dict[str, float | None]:
    values: dict[str, float | None] = {
        k: draw(_maybe) for k in ("pm2_5", "pm10", "no2", "o3", "so2_24h")
    }
    values["co"] = draw(st.one_of(st.none(), _co))
    values["so2"] = draw(st.one_of(st.none(), st.floats(0, 800)))
    return values


@given(_hourly(), st.sampled_from(["pm2_5", "pm10", "no2", "o3", "co", "so2"]), _conc, _conc)
def test_hourly_aqi_is_monotonic_in_each_concentration(
    base: dict[str, float | None], key: str, a: float, b: float
) -> None:
    """SO2 stays within its 1-hour table: above 800 HJ 633 switches to the 24-hour mean."""
    lo, hi = sorted((a, b))
    if key == "so2":
        lo, hi = min(lo, 800.0), min(hi, 800.0)
    low = hourly_aqi({**base, key: lo})
    high = hourly_aqi({**base, key: hi})
    assert low.aqi is not None
    assert high.aqi is not None
    assert 0 <= low.aqi <= high.aqi <= 500
    assert low.iaqi[Pollutant(key if key != "o3" else "o3_1h")] <= high.aqi


@given(
    st.fixed_dictionaries({k: _maybe for k in ("so2", "no2", "pm10", "pm2_5")}),
    st.sampled_from(["so2", "no2", "pm10", "pm2_5", "co", "o3_8h"]),
    _conc,
    _conc,
    _conc,
)
def test_daily_aqi_is_monotonic_in_each_concentration(
    base: dict[str, float | None], key: str, a: float, b: float, extra_1h: float
) -> None:
    """O3: the day's maximum 1-hour value is at least its maximum 8-hour mean."""
    lo, hi = sorted((a, b))
    if key == "co":
        lo, hi = lo / 25, hi / 25
    o3_1h = hi + extra_1h if key == "o3_8h" else None
    low = daily_aqi({**base, key: lo, "o3_1h": o3_1h})
    high = daily_aqi({**base, key: hi, "o3_1h": o3_1h})
    assert low.aqi is not None
    assert high.aqi is not None
    assert low.aqi <= high.aqi


@given(
    st.fixed_dictionaries({k: _maybe for k in ("pm2_5", "pm10", "no2", "so2_24h")}),
    st.sampled_from(["pm2_5", "pm10", "no2", "co", "so2", "o3_8h", "o3_1h"]),
    _conc,
    _conc,
)
def test_epa_aqi_is_monotonic_in_each_concentration(
    base: dict[str, float | None], key: str, a: float, b: float
) -> None:
    """8-hour O3 stays within its table (0.200 ppm = 392 µg/m³); SO2 has its 24-hour mean."""
    lo, hi = sorted((a, b))
    if key == "co":
        lo, hi = lo / 25, hi / 25
    if key == "o3_8h":
        lo, hi = min(lo, 392.0), min(hi, 392.0)
    so2_24h = base["so2_24h"] if base["so2_24h"] is not None else 0.0
    low = epa_aqi({**base, "so2_24h": so2_24h, key: lo})
    high = epa_aqi({**base, "so2_24h": so2_24h, key: hi})
    assert (low.aqi or 0) <= (high.aqi or 0) <= 500


# ---------------------------------------------------------------- CNEMC official hourly AQI


def _cnemc_rows() -> list[dict[str, str]]:
    assert CNEMC_HOURLY.is_file(), f"the CNEMC dev data is missing: {CNEMC_HOURLY}"
    with CNEMC_HOURLY.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _number(cell: str) -> float | None:
    return float(cell) if cell.strip() else None


def test_every_official_cnemc_hourly_aqi_is_reproduced() -> None:
    """AQI and primary pollutants (as sets) of every row CNEMC published an AQI for.

    The source's O3 columns are swapped: ``o3_24h`` holds the latest 1-hour O3.
    """
    rows = [r for r in _cnemc_rows() if r["aqi"].strip()]
    assert len(rows) == 2020
    mismatches = []
    for r in rows:
        result = hourly_aqi(
            {
                "pm2_5": _number(r["pm2_5"]),
                "pm10": _number(r["pm10"]),
                "so2": _number(r["so2"]),
                "no2": _number(r["no2"]),
                "co": _number(r["co"]),
                "o3": _number(r["o3_24h"]),
                "so2_24h": _number(r["so2_24h"]),
            }
        )
        official = (int(r["aqi"]), parse_cnemc_primary(r["primarypollutant"]))
        if (result.aqi, frozenset(result.primary)) != official:
            mismatches.append((r["timepoint"], r["stationcode"], official, result.aqi))
    assert mismatches == []


def test_the_csv_tool_reproduces_the_official_data() -> None:
    out = io.StringIO()
    with CNEMC_HOURLY.open(encoding="utf-8", newline="") as f:
        stats = run(f, out, columns=None, standard="hj633", source=str(CNEMC_HOURLY))
    assert (stats.rows, stats.with_aqi, stats.without_aqi) == (2088, 2088, 0)
    assert (stats.official, stats.matched) == (2020, 2020)
    assert stats.columns["o3"] == "o3_24h"
    written = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["stationcode"] for r in written] == [r["stationcode"] for r in _cnemc_rows()]
    assert {r["calc_match"] for r in written} == {"yes", ""}


# ---------------------------------------------------------------- the CSV tool

_HEADER = "timepoint,stationcode,primarypollutant,aqi,pm10,pm2_5,o3,o3_24h,no2,so2,so2_24h,co\n"


def test_run_writes_each_row_with_its_aqi_in_input_order() -> None:
    data = (
        _HEADER
        + '2023-06-01T00:00:00,1228A,"颗粒物(PM10),细颗粒物(PM2.5)",53,55,37,107,46,16,8,7,0.6\n'
        + "2023-06-01T00:00:00,1233A,,38,38,24,78,10,23,6,7,0.9\n"
        + "2023-06-01T01:00:00,9999A,,,,,,,,,,\n"
        + "2023-06-01T01:00:00,9998A,,,,,,,,,,0.4\n"
    )
    out = io.StringIO()
    stats = run(io.StringIO(data), out, columns=None, standard="hj633", source="t.csv")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["stationcode"] for r in rows] == ["1228A", "1233A", "9999A", "9998A"]
    first = rows[0]
    assert (first["aqi"], first["calc_aqi"], first["calc_level"]) == ("53", "53", "2")
    assert first["calc_primary"] == "颗粒物(PM10),细颗粒物(PM2.5)"
    assert first["primarypollutant"] == "颗粒物(PM10),细颗粒物(PM2.5)"
    assert (first["calc_category"], first["calc_colour"], first["calc_match"]) == (
        "良",
        "#FFFF00",
        "yes",
    )
    assert (rows[1]["calc_aqi"], rows[1]["calc_primary"], rows[1]["calc_match"]) == (
        "38",
        "",
        "yes",
    )
    assert all(rows[2][c] == "" for c in ("calc_aqi", "calc_level", "calc_primary", "calc_match"))
    assert (rows[3]["calc_aqi"], rows[3]["calc_match"]) == ("4", "")
    assert (stats.rows, stats.with_aqi, stats.without_aqi, stats.official, stats.matched) == (
        4,
        3,
        1,
        2,
        2,
    )


def test_run_maps_other_column_names_and_computes_epa() -> None:
    data = "site,PM2.5,PM10,O3_8h\nA,35.5,40,\nB,NA,,150\n"
    out = io.StringIO()
    stats = run(
        io.StringIO(data),
        out,
        columns={"pm2_5": "PM2.5", "pm10": "PM10", "o3_8h": "O3_8h"},
        standard="epa",
        source="epa.csv",
    )
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert (rows[0]["calc_aqi"], rows[0]["calc_category"], rows[0]["calc_primary"]) == (
        "101",
        "Unhealthy for Sensitive Groups",
        "PM2.5",
    )
    # 150 µg/m³ is 0.0765 ppm, truncated to 0.076: 118.5, rounded to 119.
    assert (rows[1]["calc_aqi"], rows[1]["calc_primary_codes"]) == ("119", "o3_8h")
    assert "calc_match" not in rows[0]
    assert stats.matched is None


def test_a_bad_cell_names_the_line_column_and_value() -> None:
    data = _HEADER + "2023-06-01T00:00:00,1223A,,57,63,32,82,45,29,6,6,0.8\n"
    for cell, reason in [("abc", "not a number"), ("-3", ">= 0"), ("nan", "finite")]:
        bad = data + f"2023-06-01T01:00:00,1224A,,55,59,{cell},113,64,28,6,6,0.7\n"
        with pytest.raises(AqiCsvError, match=reason) as info:
            run(io.StringIO(bad), io.StringIO(), columns=None, standard="hj633", source="h.csv")
        assert isinstance(info.value, ValueError)
        assert (info.value.source, info.value.line, info.value.column, info.value.value) == (
            "h.csv",
            3,
            "pm2_5",
            cell,
        )
        assert str(info.value).startswith(f"h.csv, line 3, column 'pm2_5', value {cell!r}: ")


def test_an_index_rule_error_is_reported_at_its_cell() -> None:
    data = "so2\n900\n"
    with pytest.raises(AqiCsvError, match=r"line 2, column 'so2', value '900'.*so2_24h"):
        run(io.StringIO(data), io.StringIO(), columns={"so2_24h": ""}, standard="hj633", source="s")


@pytest.mark.parametrize(
    ("data", "columns", "reason"),
    [
        ("", None, "empty"),
        ("a,b\n1,2\n", None, "none of the pollutant columns"),
        ("pm2_5,o3\n10,20\n", None, "--column o3=o3"),
        ("pm2_5\n10\n", {"pm10": "PM10"}, "no column 'PM10'"),
        ("pm2_5\n10\n", {"pm25": "x"}, "not a metric"),
        ("pm2_5,pm10\n10\n", None, "1 cells, the header 2"),
        ("pm2_5,calc_aqi\n10,1\n", None, "output column"),
    ],
)
def test_run_refuses_files_it_cannot_read(
    data: str, columns: dict[str, str] | None, reason: str
) -> None:
    with pytest.raises(AqiCsvError, match=reason):
        run(io.StringIO(data), io.StringIO(), columns=columns, standard="hj633", source="f.csv")


def test_the_o3_column_is_used_when_mapped_explicitly() -> None:
    out = io.StringIO()
    run(io.StringIO("pm2_5,o3\n10,400\n"), out, columns={"o3": "o3"}, standard="hj633", source="f")
    assert "200,4,四级,中度污染" in out.getvalue()


def test_the_aqi_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="urbansense")
    add_parser(parser.add_subparsers(dest="command", required=True))
    source = tmp_path / "in.csv"
    source.write_text("\ufeffstation,PM2.5\nA,80\n", encoding="utf-8")
    target = tmp_path / "out.csv"
    args = parser.parse_args(
        ["aqi", "--input", str(source), "--output", str(target), "--column", "pm2_5=PM2.5"]
    )
    assert args.func is aqi_command
    assert args.func(args) == 0
    assert target.read_text(encoding="utf-8").splitlines()[1].startswith("A,80,107,3,三级")
    assert "hj633: 1 rows, 1 with an AQI" in capsys.readouterr().err

    # Bad input: an AqiCsvError (a ValueError) and no output file left behind.
    source.write_text("station,PM2.5\nA,x\n", encoding="utf-8")
    failed = tmp_path / "failed.csv"
    args = parser.parse_args(
        ["aqi", "-i", str(source), "-o", str(failed), "--column", "pm2_5=PM2.5"]
    )
    with pytest.raises(AqiCsvError, match="line 2"):
        args.func(args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]

    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["aqi", "--column", "pm25"])
    assert exit_info.value.code == 2
    assert parser.parse_args(["aqi", "--standard", "epa"]).standard == "epa"

"""Hotspots: robust z-scores against the district and against a site's own baseline, the
threshold, top-N, staleness, and a local pollution source in the simulated city."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.engine import City
from simulators.scenario import parse_scenario
from stream.indices.hotspots import (
    MAD_TO_SIGMA,
    HotspotConfig,
    HotspotError,
    SiteValue,
    intensity_w_m2,
    rank_hotspots,
    robust_scale,
)
from telemetry import Kind

NOW = datetime(2024, 10, 8, 6, 0, tzinfo=UTC)
NO_FLOOR = HotspotConfig(relative_floor=0.0)


def site(name: str, value: float, district: str = "lakeside", **fields: object) -> SiteValue:
    return SiteValue(name, district, value, fields.pop("ts", NOW), **fields)  # type: ignore[arg-type]


def test_robust_z_against_the_district_by_hand() -> None:
    values = [site("a", 10.0), site("b", 12.0), site("c", 14.0), site("d", 40.0)]
    [ranking] = rank_hotspots(values, metric="pm2_5", now=NOW, config=NO_FLOOR)
    # median 13; |deviations| 3, 1, 1, 27 -> MAD 2; scale 2.9652
    assert ranking.median == 13.0
    assert ranking.scale == pytest.approx(2 * MAD_TO_SIGMA)
    [hotspot] = ranking.hotspots
    assert (hotspot.rank, hotspot.site_id, hotspot.reason) == (1, "d", "district")
    assert hotspot.peer_z == pytest.approx(27 / (2 * MAD_TO_SIGMA))
    assert hotspot.self_z is None
    assert (ranking.metric, ranking.sites, ranking.ts) == ("pm2_5", 4, NOW)


def test_the_threshold_is_inclusive() -> None:
    config = HotspotConfig(min_scale=5.0, relative_floor=0.0)  # MAD 0: the scale is 5
    values = [site("a", 10.0), site("b", 10.0), site("c", 10.0), site("d", 20.0)]
    [ranking] = rank_hotspots(values, metric="m", now=NOW, config=config)
    assert [(h.site_id, h.score) for h in ranking.hotspots] == [("d", 2.0)]
    values[3] = site("d", 19.99)
    [ranking] = rank_hotspots(values, metric="m", now=NOW, config=config)
    assert ranking.hotspots == ()


def test_identical_values_use_the_floor_not_a_zero_scale() -> None:
    assert robust_scale([50.0, 50.0, 50.0, 60.0], HotspotConfig()) == (50.0, 0.001 + 0.05 * 50)
    [ranking] = rank_hotspots(
        [site("a", 50.0), site("b", 50.0), site("c", 50.0), site("d", 60.0)], metric="m", now=NOW
    )
    assert ranking.hotspots[0].peer_z == pytest.approx(10 / 2.501)


def test_own_baseline_and_both_reasons() -> None:
    values = [
        site("a", 10.0),
        site("b", 11.0),
        site("c", 12.0, baseline=6.0, baseline_scale=2.0),  # 3 above its own norm
        site("d", 40.0, baseline=10.0, baseline_scale=5.0),  # above both
    ]
    [ranking] = rank_hotspots(values, metric="m", now=NOW, config=NO_FLOOR)
    assert [(h.site_id, h.reason) for h in ranking.hotspots] == [("d", "both"), ("c", "baseline")]
    d, c = ranking.hotspots
    assert d.score == max(d.peer_z or 0, d.self_z or 0)
    assert c.self_z == pytest.approx(3.0)
    assert c.peer_z is not None
    assert c.peer_z < 2


def test_a_small_district_is_compared_with_baselines_only() -> None:
    values = [site("a", 10.0, "old-town"), site("b", 90.0, "old-town", baseline=30.0)]
    [ranking] = rank_hotspots(values, metric="m", now=NOW)
    assert (ranking.median, ranking.scale) == (None, None)
    [hotspot] = ranking.hotspots
    assert hotspot.peer_z is None
    assert hotspot.self_z == pytest.approx(60 / (0.001 + 0.05 * 30))


def test_top_n_ranks_ties_by_site_id_and_districts_are_separate() -> None:
    values = [site(name, 10.0) for name in "abcdefgh"]
    values += [site(name, 100.0) for name in ("z", "y", "x")]
    values += [site("quiet", 5.0, "old-town", baseline=5.0)]
    rankings = rank_hotspots(values, metric="m", now=NOW, config=HotspotConfig(top_n=2))
    assert [r.district_id for r in rankings] == ["lakeside", "old-town"]
    lakeside, old_town = rankings
    assert [(h.rank, h.site_id) for h in lakeside.hotspots] == [(1, "x"), (2, "y")]
    assert old_town.hotspots == ()
    assert old_town.sites == 1


def test_stale_values_are_left_out_and_the_newest_value_of_a_site_counts() -> None:
    old = NOW - timedelta(minutes=20)
    values = [
        site("a", 10.0),
        site("b", 11.0),
        site("c", 12.0),
        site("d", 90.0, ts=old),  # stale
        site("c", 80.0, ts=NOW - timedelta(minutes=1)),  # older than c's 12.0
    ]
    [ranking] = rank_hotspots(values, metric="m", now=NOW)
    assert ranking.sites == 3
    assert ranking.hotspots == ()
    [everything] = rank_hotspots(values, metric="m", now=NOW, config=HotspotConfig(max_age=None))
    assert [h.site_id for h in everything.hotspots] == ["d"]


def test_inputs_are_checked() -> None:
    with pytest.raises(HotspotError, match="top_n must be at least 1, not 0"):
        HotspotConfig(top_n=0)
    with pytest.raises(HotspotError, match="min_scale must be above zero"):
        HotspotConfig(min_scale=0.0)
    with pytest.raises(HotspotError, match="value of site a must be finite, not nan"):
        site("a", float("nan"))
    with pytest.raises(HotspotError, match=r"now .* has no time zone"):
        rank_hotspots([], metric="m", now=datetime(2024, 1, 1))  # noqa: DTZ001
    assert intensity_w_m2(860_000.0, 86_000.0) == 10.0
    with pytest.raises(HotspotError, match="floor_area_m2 must be above zero, not 0"):
        intensity_w_m2(1.0, 0.0)


@given(
    values=st.lists(st.floats(0, 1000), min_size=1, max_size=30),
    top_n=st.integers(1, 5),
    threshold=st.floats(0.5, 5),
)
def test_hotspots_are_the_highest_values_above_the_threshold(
    values: list[float], top_n: int, threshold: float
) -> None:
    sites = [site(f"s{i:02d}", v) for i, v in enumerate(values)]
    config = HotspotConfig(top_n=top_n, threshold=threshold)
    [ranking] = rank_hotspots(sites, metric="m", now=NOW, config=config)
    listed = ranking.hotspots
    assert len(listed) <= top_n
    assert all(h.score >= threshold for h in listed)
    assert [h.rank for h in listed] == list(range(1, len(listed) + 1))
    assert [h.value for h in listed] == sorted((h.value for h in listed), reverse=True)
    if listed:  # nothing unlisted stands higher than the last listed
        shown = {h.site_id for h in listed}
        assert all(s.value <= listed[-1].value for s in sites if s.site_id not in shown)


# ---------------------------------------------------------------- the simulated city


LOCAL_SOURCE = """
version: 1
name: a fire next to the library station
seed: 4
start: 2024-11-08T12:00:00+08:00
duration: 4h
incidents:
  - {kind: local_source, sensor: aq-library-pollution, start: 2024-11-08T13:30:00+08:00,
     duration: 90m, factor: 6}
"""


def test_a_local_source_tops_its_districts_ranking_while_it_burns() -> None:
    city = City(parse_scenario(LOCAL_SOURCE))
    registry = city.registry
    latest: dict[str, SiteValue] = {}
    rankings: dict[datetime, list[str]] = {}
    for reading in city.run():
        if reading.kind is not Kind.POLLUTION:
            continue
        sensor = registry.sensor(reading.sensor_id)
        district = registry.site(sensor.site).district
        latest[sensor.site] = SiteValue(sensor.site, district, reading.metrics["pm2_5"], reading.ts)
        if reading.ts.minute % 5 == 0:  # the caller refreshes every five minutes
            ranked = rank_hotspots(latest.values(), metric="pollution.pm2_5", now=reading.ts)
            lakeside = next(r for r in ranked if r.district_id == "lakeside")
            rankings[reading.ts] = [h.site_id for h in lakeside.hotspots]
    source = next(e for e in city.truth if e.kind == "local_source")
    burning = [
        top
        for ts, top in rankings.items()
        if source.start + timedelta(minutes=20) <= ts < source.end
    ]
    quiet = [top for ts, top in rankings.items() if ts < source.start]
    assert burning
    assert quiet
    assert all(top[:1] == ["st-aq-library"] for top in burning)
    assert not any("st-aq-library" in top for top in quiet)

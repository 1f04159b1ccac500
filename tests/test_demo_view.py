"""The demo's live view, without a server: what landed -> rows, words and colours.

Snapshots are built by hand (or by :class:`~stream.demo.store.Landed` from lines of
line protocol, as the file-sink reader does), so every rule of the view is checked:
HJ 633 colours, the primary pollutant from the worst station, tiers against
capacity, worst congestion first, the newest energy ranking only, alert transitions.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from stream.demo.lines import Point
from stream.demo.receiver import AlertBook
from stream.demo.store import Landed, Snapshot, points_from_export
from stream.demo.view import (
    AlertEvent,
    Names,
    RateMeter,
    build_view,
    local_time,
    render_plain,
    render_rich,
)
from telemetry.registry import load_example_registry

HOUR_MS = 3_600_000
T0 = 1_795_730_400_000  # 2026-11-26T22:00:00Z, an hour's end
NAMES = Names(
    districts={"lakeside": "Lakeside District", "old-town": "Old Town District"},
    areas={
        "lakeside-park": ("Lakeside Park", 20_000),
        "canal-quarter": ("Old Canal Quarter", 4_500),
    },
    segments={"seg-ring": "East Ring", "seg-hubin": "Hubin Road"},
    sites={"st-pier": "Pier station", "st-library": "Library station", "st-tower": "Tower"},
)


def district_aqi(district: str, aqi: int, ts: int = T0) -> Point:
    return Point("aqi", {"scope": "district", "district": district}, {"aqi": aqi, "level": 0}, ts)


def station_aqi(district: str, site: str, aqi: int, ts: int = T0, **iaqi: int) -> Point:
    fields: dict[str, float | int | bool | str] = {"aqi": aqi}
    fields.update({f"iaqi_{k}": v for k, v in iaqi.items()})
    return Point("aqi", {"scope": "station", "district": district, "site": site}, fields, ts)


@pytest.mark.parametrize(
    ("aqi", "level", "colour", "words"),
    [
        (0, 1, "#00E400", "Excellent"),
        (50, 1, "#00E400", "Excellent"),
        (51, 2, "#FFFF00", "Good"),
        (150, 3, "#FF7E00", "Lightly Polluted"),
        (200, 4, "#FF0000", "Moderately Polluted"),
        (201, 5, "#99004C", "Heavily Polluted"),
        (301, 6, "#7E0023", "Severely Polluted"),
        (500, 6, "#7E0023", "Severely Polluted"),
    ],
)
def test_a_district_aqi_gets_its_hj633_level_and_colour(
    aqi: int, level: int, colour: str, words: str
) -> None:
    view = build_view(Snapshot(aqi=(district_aqi("lakeside", aqi),)), NAMES, [], 0.0)
    [row] = view.aqi
    assert (row.district, row.aqi, row.level, row.colour, row.category) == (
        "Lakeside District",
        aqi,
        level,
        colour,
        words,
    )


def test_the_primary_pollutant_is_the_worst_stations_of_the_same_hour() -> None:
    snapshot = Snapshot(
        aqi=(district_aqi("lakeside", 212),),
        stations=(
            station_aqi("lakeside", "st-pier", 150, pm2_5=150, pm10=90),
            station_aqi("lakeside", "st-library", 212, pm2_5=180, pm10=212, no2=40),
            station_aqi("lakeside", "st-library", 300, ts=T0 - HOUR_MS, pm2_5=300),
            station_aqi("old-town", "st-tower", 400, pm2_5=400),
        ),
    )
    [row] = build_view(snapshot, NAMES, [], 0.0).aqi
    assert (row.primary, row.station) == ("PM10", "Library station")


def test_no_primary_pollutant_when_every_iaqi_is_50_or_less() -> None:
    snapshot = Snapshot(
        aqi=(district_aqi("old-town", 40),),
        stations=(station_aqi("old-town", "st-tower", 40, pm2_5=40, no2=12),),
    )
    assert build_view(snapshot, NAMES, [], 0.0).aqi[0].primary == "-"


def test_an_aqi_outside_0_to_500_is_not_shown() -> None:
    assert build_view(Snapshot(aqi=(district_aqi("lakeside", 612),)), NAMES, [], 0.0).aqi == ()


@pytest.mark.parametrize(
    ("tier", "colour", "word"),
    [(0, "#00E400", "normal"), (80, "#FFFF00", "warning 预警"), (90, "#FF7E00", "restrict 限流"),
     (100, "#FF0000", "full 饱和")],
)  # fmt: skip
def test_scenic_occupancy_against_capacity_with_its_tier(tier: int, colour: str, word: str) -> None:
    point = Point(
        "scenic",
        {"area": "lakeside-park", "district": "lakeside"},
        {"occupancy": 18_000, "occupancy_pct": 90.0, "tier": tier, "daily_visitors": 41_000},
        T0,
    )
    [row] = build_view(Snapshot(scenic=(point,)), NAMES, [], 0.0).scenic
    assert (row.area, row.occupancy, row.capacity, row.pct, row.daily_visitors) == (
        "Lakeside Park",
        18_000,
        20_000,
        90.0,
        41_000,
    )
    assert (row.colour, row.tier_word) == (colour, word)


def test_congestion_is_listed_worst_first_with_its_grade() -> None:
    def tpi(segment: str, direction: str, value: float) -> Point:
        tags = {"scope": "segment", "segment": segment, "direction": direction}
        return Point(
            "traffic_index", tags, {"tpi": value, "grade": min(5, int(value // 2) + 1)}, T0
        )

    snapshot = Snapshot(
        traffic=(tpi("seg-hubin", "northbound", 3.1), tpi("seg-ring", "northbound", 8.6),
                 tpi("seg-ring", "southbound", 0.4)),
    )  # fmt: skip
    view = build_view(snapshot, NAMES, [], 0.0)
    assert [(r.segment, r.direction, r.grade, r.grade_word, r.colour) for r in view.traffic] == [
        ("East Ring", "northbound", 5, "严重拥堵", "#FF0000"),
        ("Hubin Road", "northbound", 2, "基本畅通", "#9ACD32"),
        ("East Ring", "southbound", 1, "畅通", "#00E400"),
    ]
    assert view.worst_traffic == view.traffic[0]


def test_only_the_newest_energy_ranking_of_each_district_is_shown() -> None:
    landed = Landed()
    landed.add(Point("pollution", {"sensor": "a"}, {"pm2_5": 1.0, "seq": 1}, T0))
    old = T0 - 5 * 60_000
    for ts, site, rank in [(old, "st-tower", 1), (T0, "st-library", 2), (T0, "st-tower", 1)]:
        tags = {"district": "lakeside", "kind": "energy", "site": site}
        landed.add(Point("hotspot", tags, {"rank": rank, "value": 40.0, "score": 3.0}, ts))
    landed.add(Point("hotspot", {"district": "lakeside", "kind": "pollution", "site": "st-pier"},
                     {"rank": 1}, T0))  # fmt: skip
    view = build_view(landed.snapshot(), NAMES, [], 0.0)
    assert [(h.site, h.rank) for h in view.hotspots] == [("Tower", 1), ("Library station", 2)]


def test_points_older_than_their_window_in_event_time_are_left_out() -> None:
    landed = Landed()
    landed.add(Point("traffic", {"sensor": "t"}, {"seq": 1}, T0))
    seg = {"scope": "segment", "segment": "seg-ring", "direction": "northbound"}
    landed.add(Point("traffic_index", seg, {"tpi": 9.0}, T0 - 2 * HOUR_MS))
    landed.add(district_aqi("lakeside", 90, ts=T0 - HOUR_MS))
    snapshot = landed.snapshot()
    assert snapshot.traffic == ()
    assert [p.fields["aqi"] for p in snapshot.aqi] == [90]
    assert snapshot.sim_time == datetime.fromtimestamp(T0 / 1000, UTC)


def test_landed_counts_readings_and_alerts_from_lines_and_parses_only_what_it_shows() -> None:
    landed = Landed()
    lines = [
        f"pollution,sensor=a,site=s pm2_5=30.0,seq=1i {T0 - 60_000}",
        f"traffic,sensor=t vehicle_count=3i,seq=7i {T0}",
        f"agg_1m,scope=sensor,sensor=a mean=30.0 {T0}",
        f'alert,rule=aqi-heavy,state=firing firing=1i,summary="x" {T0}',
        f'aqi,scope=district,district=lakeside aqi=212i,level=5i,primary="PM2.5" {T0}',
        "aqi,scope=district,district=broken aqi=",
    ]
    for line in lines:
        landed.add_line(line)
    snapshot = landed.snapshot()
    assert (snapshot.readings, snapshot.alert_points, landed.bad_lines) == (2, 1, 1)
    assert snapshot.sim_time == datetime.fromtimestamp(T0 / 1000, UTC)
    assert snapshot.aqi[0].fields["aqi"] == 212


def test_victoria_metrics_series_become_points_again() -> None:
    def row(name: str, value: float, ts: int, **labels: str) -> str:
        return json.dumps(
            {"metric": {"__name__": name, "db": "urbansense", **labels},
             "values": [value], "timestamps": [ts]}
        )  # fmt: skip

    rows = [
        row("scenic_occupancy", 18000, T0, area="lakeside-park"),
        row("scenic_occupancy_pct", 90.5, T0, area="lakeside-park"),
        row("scenic_occupancy", 17000, T0 - 60_000, area="lakeside-park"),
        row("aqi_aqi", 1, T0, area="x"),
    ]
    points = points_from_export(rows, "scenic")
    assert [(p.tags, p.fields, p.ts_ms) for p in points] == [
        ({"area": "lakeside-park"}, {"occupancy": 17000}, T0 - 60_000),
        ({"area": "lakeside-park"}, {"occupancy": 18000, "occupancy_pct": 90.5}, T0),
    ]


def test_alerts_newest_first_coloured_by_severity_and_counted_as_firing() -> None:
    at = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)

    def event(seconds: int, status: str, rule: str, severity: str, fp: str) -> AlertEvent:
        return AlertEvent(at + timedelta(seconds=seconds), status, rule, severity, rule, fp)

    alerts = [
        event(0, "firing", "aqi-heavy", "warning", "a"),
        event(1, "firing", "aqi-severe", "critical", "b"),
        event(2, "firing", "scenic-occupancy-80", "info", "c"),
        event(3, "resolved", "aqi-heavy", "warning", "a"),
    ]
    view = build_view(Snapshot(), NAMES, alerts, 0.0, max_alerts=3)
    assert [(a.rule, a.status, a.colour) for a in view.alerts] == [
        ("aqi-heavy", "resolved", "#00E400"),
        ("scenic-occupancy-80", "firing", "#00BFFF"),
        ("aqi-severe", "firing", "#FF0000"),
    ]
    assert (view.firing, view.notified) == (2, 4)


def test_the_alert_book_keeps_transitions_not_repeats_of_a_group() -> None:
    book = AlertBook()
    now = datetime(2026, 12, 5, tzinfo=UTC)

    def alert(fp: str, status: str) -> dict[str, object]:
        return {"status": status, "fingerprint": fp, "labels": {"alertname": fp}, "annotations": {}}

    assert [e.fingerprint for e in book.add({"alerts": [alert("a", "firing")]}, now)] == ["a"]
    body = {"alerts": [alert("a", "firing"), alert("b", "firing")]}  # the group, again
    assert [e.fingerprint for e in book.add(body, now)] == ["b"]
    assert [e.status for e in book.add({"alerts": [alert("a", "resolved")]}, now)] == ["resolved"]
    assert [e.status for e in book.events] == ["firing", "firing", "resolved"]


def test_the_landing_rate_is_over_a_sliding_window() -> None:
    meter = RateMeter(window_s=5)
    assert meter.add(0.0, 0) == 0.0
    assert meter.add(1.0, 500) == 500.0
    assert meter.add(2.0, 1000) == 500.0
    for t in range(3, 10):
        rate = meter.add(float(t), 1000)
    assert rate == 0.0


def test_names_come_from_the_registry() -> None:
    names = Names.of(load_example_registry())
    assert names.areas["lakeside-park"] == ("Lakeside Park", 20_000)
    assert names.districts["old-town"] == "Old Town District"


def test_local_time_is_the_citys() -> None:
    assert local_time(datetime(2026, 11, 26, 22, 0, tzinfo=UTC), 8) == "2026-11-27 06:00 +08:00"
    assert local_time(None, 8) == "-"


def full_view_snapshot() -> Snapshot:
    return Snapshot(
        readings=12_345,
        sim_time=datetime.fromtimestamp(T0 / 1000, UTC),
        aqi=(district_aqi("lakeside", 212),),
        stations=(station_aqi("lakeside", "st-library", 212, pm2_5=212),),
        scenic=(Point("scenic", {"area": "lakeside-park"}, {"occupancy": 18_000, "tier": 90}, T0),),
        traffic=(
            Point(
                "traffic_index",
                {"segment": "seg-ring", "direction": "northbound"},
                {"tpi": 8.6, "grade": 5},
                T0,
            ),
        ),
    )


def test_the_plain_line_says_everything_in_one_line() -> None:
    alerts = [AlertEvent(datetime(2026, 12, 5, tzinfo=UTC), "firing", "r", "warning", "s", "f")]
    line = render_plain(build_view(full_view_snapshot(), NAMES, alerts, 336.4), NAMES, 42)
    assert line == (
        "[    42s] sim 2026-11-27 06:00 +08:00 | 336 readings/s, 12,345 landed"
        " | AQI Lakeside District 212 (L5) | scenic Lakeside Park 18,000/20,000 (90 %)"
        " | worst TPI 8.6 East Ring northbound | energy hotspots - | alerts 1 firing, 1 notified"
    )


def test_the_rich_view_draws_every_table() -> None:
    console = Console(file=io.StringIO(), width=100, record=True, color_system="truecolor")
    view = build_view(full_view_snapshot(), NAMES, [], 336.0)
    console.print(render_rich(view, NAMES, ["urbansense demo: header"], 42, width=100))
    text = console.export_text()
    [aqi_line] = [line for line in text.splitlines() if line.startswith("Air quality")]
    assert "Congestion" not in aqi_line  # one column: the tables one under another
    console = Console(file=io.StringIO(), width=160, record=True, color_system="truecolor")
    console.print(render_rich(view, NAMES, ["urbansense demo: header"], 42, width=160))
    text = console.export_text(clear=False)
    [aqi_line] = [line for line in text.splitlines() if line.startswith("Air quality")]
    assert "Congestion" in aqi_line  # two columns: side by side
    for expected in (
        "urbansense demo: header",
        "336 readings/s landed",
        "5 Heavily Polluted",
        "Library station",
        "18,000 / 20,000",
        "restrict 限流",
        "East Ring",
        "严重拥堵",
        "no building stands out",
        "none received yet",
    ):
        assert expected in text
    assert "#99004c" in console.export_html().lower()  # HJ 633 level 5 purple

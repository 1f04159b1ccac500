"""Every board's queries against a real InfluxDB 1.x holding the real sink's output.

An hour and a quarter of the example city (a crowd filling Lakeside Park, a local
pollution source by the library station, an accident on the East Ring, an energy leak
in Lakeside Tower) runs through the pure stream pipeline with the default alert rules,
and minute heartbeats of every gateway (one going offline, one whose queue fills and
drops readings) through its status path. The lines it writes -- exactly what the
InfluxDB sink sends -- are loaded into InfluxDB 1.x (Debian's ``influxd``), and every
InfluxQL statement of every board (panel targets, template variables, annotations) is
run as Grafana would send it: ``$timeFilter`` as Grafana writes it for the simulated
span, ``$__interval`` as one minute, each variable as "All" (``.*``).

Every statement must answer with data, and the figures must be the pipeline's: the
latest AQI per station and district and its primary pollutant, the maps' coordinates,
each 1-minute PM2.5 mean, occupancy, daily visitors, congestion per segment,
consumption and baseline per building, gateways' state and drops, the open alerts.
A district chosen in ``$district`` leaves the other district out.
"""

from __future__ import annotations

import math
import re
import secrets
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rules.engine import RuleEngine
from rules.load import load_default_rules
from simulators.engine import City
from simulators.scenario import parse_scenario
from stream.cityindex import IndexConfig
from stream.grafana import BoardSettings, board_queries, build_boards
from stream.indices.energy import BaselineConfig
from stream.pipeline import Pipeline
from stream.sinks.lineprotocol import Precision
from telemetry import Alert, AlertState, Batch, GatewayState, GatewayStatus
from telemetry.registry import load_example_registry
from tests.servers.influxdb1 import InfluxDB1Server
from tests.test_schema import Parsed, parse_line

pytestmark = pytest.mark.servers

REGISTRY = load_example_registry()
START = datetime(2024, 11, 7, 22, 0, tzinfo=UTC)  # Friday 06:00 in the city
SPAN = timedelta(minutes=75)
GATEWAY_OF = {s.id: s.gateway for s in REGISTRY.sensors}
OFFLINE = "gw-oldtown-01"  # its last will at minute 70
FILLING = "gw-ring-01"  # its queue grows from minute 40 and drops readings from minute 60

SCENARIO = """
version: 1
name: an hour and a quarter of the example city, for the boards
seed: 11
start: 2024-11-08T06:00:00+08:00
duration: 75m
incidents:
  - {kind: crowd_surge, area: lakeside-park, start: 2024-11-08T06:00:00+08:00,
     duration: 3h, peak_pct: 105, ramp: 30m}
  - {kind: local_source, sensor: aq-library-pollution, start: 2024-11-08T06:00:00+08:00,
     duration: 90m, factor: 6}
  - {kind: traffic_accident, segment: seg-ring-east-k3, direction: northbound,
     start: 2024-11-08T06:15:00+08:00, duration: 40m, capacity_remaining: 0.25}
  - {kind: energy_leak, building: bld-lakeside-tower, start: 2024-11-08T06:30:00+08:00,
     duration: 2h, extra_kw: 400}
"""


def _envelopes() -> list[Batch]:
    """The simulated readings as gateways publish them, four to an envelope."""
    pending: dict[str, list[Any]] = defaultdict(list)
    envelopes: list[Batch] = []
    for reading in City(parse_scenario(SCENARIO)).run():
        gateway = GATEWAY_OF[reading.sensor_id]
        queue = pending[gateway]
        queue.append(reading)
        if len(queue) == 4:
            envelopes.append(Batch(gateway_id=gateway, readings=tuple(queue)))
            queue.clear()
    envelopes += [Batch(gateway_id=g, readings=tuple(q)) for g, q in pending.items() if q]
    return envelopes


def _statuses() -> list[GatewayStatus]:
    """A heartbeat of every gateway every minute."""
    statuses = []
    for minute in range(int(SPAN.total_seconds() // 60) + 1):
        for i, gateway in enumerate(REGISTRY.gateways):
            filling = gateway.id == FILLING
            statuses.append(
                GatewayStatus(
                    gateway_id=gateway.id,
                    state=(
                        GatewayState.OFFLINE
                        if gateway.id == OFFLINE and minute >= 70
                        else GatewayState.ONLINE
                    ),
                    ts=START + timedelta(minutes=minute),
                    agent_version="0.1.0",
                    buffer_depth=minute * 30 if filling and minute > 40 else i,
                    sent_total=100 * minute,
                    dropped_total=2 * max(0, minute - 60) if filling else 0,
                    uptime_s=60.0 * minute,
                )
            )
    return statuses


@dataclass
class Loaded:
    """The pipeline's output, parsed, and the database it was loaded into."""

    server: InfluxDB1Server
    db: str
    points: list[Parsed]
    alerts: list[Alert]
    boards: dict[str, dict[str, Any]]

    def of(self, measurement: str, **tags: str) -> list[Parsed]:
        return [
            p
            for p in self.points
            if p.measurement == measurement and all(p.tags.get(k) == v for k, v in tags.items())
        ]


@pytest.fixture(scope="module")
def loaded(influxdb1: InfluxDB1Server) -> Loaded:
    pipeline = Pipeline(
        REGISTRY,
        rules=RuleEngine(load_default_rules(), REGISTRY),
        precision=Precision.S,
        # A 15-minute warm-up, so that an hour shows the meters' baselines.
        indices=IndexConfig(baseline=BaselineConfig(warm_up_h=0.25)),
    )
    envelopes = _envelopes()
    lines: list[str] = []
    alerts: list[Alert] = []
    for i in range(0, len(envelopes), 7):
        out = pipeline.process(envelopes[i : i + 7])
        lines += out.lines
        alerts += out.alerts
    lines += pipeline.status_lines(_statuses())
    db = f"grafana_{secrets.token_hex(4)}"
    influxdb1.query(f'CREATE DATABASE "{db}"', method="POST")
    for i in range(0, len(lines), 5000):
        influxdb1.write(db, "\n".join(lines[i : i + 5000]), precision="s")
    boards = build_boards(BoardSettings(REGISTRY))
    return Loaded(influxdb1, db, [parse_line(line) for line in lines], alerts, boards)


# ---------------------------------------------------------------- running queries

_TIME_FILTER = (
    f"time >= {int(START.timestamp() * 1000)}ms and "
    f"time <= {int((START + SPAN + timedelta(minutes=5)).timestamp() * 1000)}ms"
)


def substitute(query: str, **values: str) -> str:
    """The statement as Grafana sends it: time range, interval, variables (All: ``.*``)."""
    query = query.replace("$timeFilter", _TIME_FILTER).replace("$__interval", "1m")

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        return re.escape(values[name]) if name in values else ".*"

    return re.sub(r"\$(district|site|kind|severity)\b", value, query)


@dataclass(frozen=True)
class Series:
    """One series of an answer: its tags and rows (column name to value)."""

    tags: dict[str, str]
    rows: list[dict[str, Any]]


def run(loaded: Loaded, query: str, **values: str) -> list[Series]:
    answer = loaded.server.query(substitute(query, **values), db=loaded.db, epoch="s")
    out = []
    for result in answer["results"]:
        for series in result.get("series", []):
            columns = series["columns"]
            rows = [dict(zip(columns, row, strict=True)) for row in series["values"]]
            out.append(Series(series.get("tags", {}), rows))
    return out


def table(loaded: Loaded, query: str, **values: str) -> list[dict[str, Any]]:
    """The answer as Grafana's table format shows it: a row per series row, tags as columns."""
    return [{**s.tags, **row} for s in run(loaded, query, **values) for row in s.rows]


def panel(loaded: Loaded, board: str, title: str) -> dict[str, Any]:
    def walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from walk(item.get("panels", []))

    [found] = [p for p in walk(loaded.boards[board]["panels"]) if p["title"] == title]
    return found


def query_of(loaded: Loaded, board: str, title: str, ref: str = "A") -> str:
    [target] = [t for t in panel(loaded, board, title)["targets"] if t["refId"] == ref]
    return str(target["query"])


def latest(series: Series, column: str) -> Any:
    return [row[column] for row in series.rows if row[column] is not None][-1]


# ---------------------------------------------------------------- every statement answers


def test_every_statement_of_every_board_returns_data(loaded: Loaded) -> None:
    empty = []
    ran = 0
    for name, board in loaded.boards.items():
        for place, query in board_queries(board):
            ran += 1
            series = run(loaded, query)
            values = [
                v
                for s in series
                for row in s.rows
                for column, v in row.items()
                if column != "time" and v is not None
            ]
            if not values:
                empty.append(f"{name}: {place}: {query}")
    assert not empty, "\n".join(empty)
    assert ran > 60


# ---------------------------------------------------------------- the figures are the pipeline's


def test_station_and_district_aqi_are_the_pipelines(loaded: Loaded) -> None:
    stations = run(loaded, query_of(loaded, "air-quality.json", "Station AQI"))
    expected = {p.tags["site"]: p.fields["aqi"] for p in loaded.of("aqi", scope="station")}
    assert len(expected) == 4
    assert {s.tags["site"]: latest(s, "aqi") for s in stations} == expected
    # The local source makes one station's AQI stand apart: no constant could pass.
    assert len(set(expected.values())) > 1
    districts = run(loaded, query_of(loaded, "city-overview.json", "District AQI"))
    by_district = {p.tags["district"]: p.fields["aqi"] for p in loaded.of("aqi", scope="district")}
    assert {s.tags["district"]: latest(s, "last") for s in districts} == by_district
    assert by_district["lakeside"] == max(
        v for site, v in expected.items() if REGISTRY.site(site).district == "lakeside"
    )


def test_the_latest_hour_table_has_the_primary_pollutant_and_level(loaded: Loaded) -> None:
    rows = {
        row["site"]: row
        for row in table(loaded, query_of(loaded, "air-quality.json", "Latest hour by station"))
    }
    for point in loaded.of("aqi", scope="station"):
        row = rows[point.tags["site"]]
        assert (row["AQI"], row["level"], row["primary"]) == (
            point.fields["aqi"],
            point.fields["level"],
            point.fields["primary"],
        )
    assert any(row["primary"] for row in rows.values())


def test_the_map_puts_each_station_where_the_registry_has_it(loaded: Loaded) -> None:
    stations = panel(loaded, "city-overview.json", "Air-quality stations by AQI")
    aqi = {p.tags["site"]: p.fields["aqi"] for p in loaded.of("aqi", scope="station")}
    seen = {}
    for target in stations["targets"]:
        [series] = run(loaded, target["query"])
        [row] = series.rows
        site = series.tags["site"]
        seen[site] = (row["aqi"], row["lat"], row["lon"])
    assert set(seen) == set(aqi)
    for site, (value, lat, lon) in seen.items():
        assert value == aqi[site]
        assert math.isclose(lat, REGISTRY.site(site).lat, abs_tol=1e-9)
        assert math.isclose(lon, REGISTRY.site(site).lon, abs_tol=1e-9)


def test_each_minutes_pm25_is_the_pipelines_1_minute_mean(loaded: Loaded) -> None:
    series = run(loaded, query_of(loaded, "air-quality.json", "pm2_5 (µg/m³)"))
    got = {(s.tags["site"], row["time"]): row["mean"] for s in series for row in s.rows}
    expected = {
        (p.tags["site"], p.ts): p.fields["mean"]
        for p in loaded.of("agg_1m", scope="sensor", kind="pollution", metric="pm2_5")
    }
    assert len(expected) > 200
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert math.isclose(got[key], float(value), rel_tol=1e-12), key


def test_a_districts_pm25_is_the_mean_of_its_stations(loaded: Loaded) -> None:
    series = run(loaded, query_of(loaded, "air-quality.json", "pm2_5 by district (µg/m³)"))
    got = {(s.tags["district"], row["time"]): row["mean"] for s in series for row in s.rows}
    stations: defaultdict[tuple[str, int], list[float]] = defaultdict(list)
    for p in loaded.of("agg_1m", scope="sensor", kind="pollution", metric="pm2_5"):
        stations[p.tags["district"], p.ts].append(float(p.fields["mean"]))
    assert got.keys() == stations.keys()
    for key, means in stations.items():
        assert math.isclose(got[key], sum(means) / len(means), rel_tol=1e-12), key
    assert max(len(m) for m in stations.values()) == 3  # lakeside's three stations


def test_scenic_occupancy_and_visitors_are_the_pipelines(loaded: Loaded) -> None:
    occupancy = run(loaded, query_of(loaded, "city-overview.json", "Scenic occupancy"))
    last: dict[str, Parsed] = {}
    for point in loaded.of("scenic"):
        last[point.tags["area"]] = point
    assert {s.tags["area"]: latest(s, "last") for s in occupancy} == {
        area: p.fields["occupancy_pct"] for area, p in last.items()
    }
    daily = run(loaded, query_of(loaded, "scenic-areas.json", "Visitors per day"))
    most: Counter[str] = Counter()
    for point in loaded.of("scenic"):
        area = point.tags["area"]
        most[area] = max(most[area], int(point.fields["daily_visitors"]))
    assert {s.tags["area"]: latest(s, "max") for s in daily} == dict(most)
    assert most["lakeside-park"] > 0


def test_segments_now_have_the_pipelines_latest_congestion(loaded: Loaded) -> None:
    rows = table(loaded, query_of(loaded, "traffic.json", "Segments now"))
    last: dict[tuple[str, str], Parsed] = {}
    for point in loaded.of("traffic_index", scope="segment"):
        last[point.tags["segment"], point.tags["direction"]] = point
    got = {(row["segment"], row["direction"]): (row["tpi"], row["grade"]) for row in rows}
    assert got == {k: (p.fields["tpi"], p.fields["grade"]) for k, p in last.items()}
    # The accident leaves the northbound East Ring worse than its southbound side.
    tpi = {k: v[0] for k, v in got.items()}
    assert tpi["seg-ring-east-k3", "northbound"] != tpi["seg-ring-east-k3", "southbound"]


def test_consumption_and_baseline_are_the_pipelines(loaded: Loaded) -> None:
    total = run(loaded, query_of(loaded, "energy.json", "Consumption in range"))
    expected: defaultdict[str, float] = defaultdict(float)
    for point in loaded.of("energy_use"):
        expected[point.tags["building"]] += float(point.fields["consumption_kwh"])
    got = {s.tags["building"]: latest(s, "sum") for s in total}
    assert got.keys() == expected.keys()
    for building, kwh in expected.items():
        assert math.isclose(got[building], kwh, rel_tol=1e-9), building
    power = run(loaded, query_of(loaded, "energy.json", "Power and baseline"))
    baselines = {
        (s.tags["building"], row["time"]): row["baseline"]
        for s in power
        for row in s.rows
        if row["baseline"] is not None
    }
    want = {
        (p.tags["building"], p.ts): p.fields["baseline_kw"]
        for p in loaded.of("energy_use")
        if "baseline_kw" in p.fields
    }
    assert want, "the baseline warmed up within the hour"
    assert baselines.keys() == want.keys()
    for key, value in want.items():
        assert math.isclose(baselines[key], float(value), rel_tol=1e-12), key


def test_gateways_state_queue_and_drops(loaded: Loaded) -> None:
    rows = {
        row["gateway"]: row
        for row in table(loaded, query_of(loaded, "gateways.json", "Gateways now"))
    }
    assert {g: row["online"] for g, row in rows.items()} == {
        g.id: int(g.id != OFFLINE) for g in REGISTRY.gateways
    }
    assert rows[FILLING]["dropped"] == 2 * 15
    assert rows[FILLING]["queued"] == 75 * 30
    dropped = run(loaded, query_of(loaded, "gateways.json", "Dropped readings"))
    per_gateway = {
        s.tags["gateway"]: sum(r["non_negative_difference"] or 0 for r in s.rows) for s in dropped
    }
    assert per_gateway[FILLING] == 2 * 15
    assert all(v == 0 for g, v in per_gateway.items() if g != FILLING)


def test_readings_scored_by_kind_count_the_on_time_readings(loaded: Loaded) -> None:
    series = run(loaded, query_of(loaded, "gateways.json", "Readings scored by kind"))
    got = {s.tags["kind"]: sum(r["count"] for r in s.rows) for s in series}
    assert got == dict(Counter(p.tags["kind"] for p in loaded.of("anomaly")))


def test_current_alerts_are_the_open_ones(loaded: Loaded) -> None:
    rows = table(loaded, query_of(loaded, "city-overview.json", "Current alerts"))
    # What the panel's filterByValue transformation keeps: latest transition firing.
    shown = {row["fingerprint"] for row in rows if row["firing"] == 1}
    state: dict[str, AlertState] = {}
    for alert in loaded.alerts:
        state[alert.fingerprint] = alert.state
    open_now = {f for f, s in state.items() if s is AlertState.FIRING}
    assert open_now
    assert shown == open_now
    assert any(s is AlertState.RESOLVED for s in state.values()), "a resolved one stays out"


def test_alert_annotations_are_every_firing(loaded: Loaded) -> None:
    annotations = {a["name"]: a for a in loaded.boards["traffic.json"]["annotations"]["list"]}
    [fired] = run(loaded, annotations["Alerts fired"]["query"])
    assert len(fired.rows) == sum(a.state is AlertState.FIRING for a in loaded.alerts)
    assert all(row["summary"] for row in fired.rows)


def test_a_chosen_district_leaves_the_others_out(loaded: Loaded) -> None:
    query = query_of(loaded, "city-overview.json", "District AQI")
    assert {s.tags["district"] for s in run(loaded, query, district="old-town")} == {"old-town"}
    segments = run(loaded, query_of(loaded, "traffic.json", "Segment TPI"), district="lakeside")
    assert {s.tags["segment"] for s in segments} == {"seg-ring-east-k3", "seg-hubin-road"}
    site = run(
        loaded,
        query_of(loaded, "air-quality.json", "Station AQI"),
        district="lakeside",
        site="st-aq-pier",
    )
    assert [s.tags["site"] for s in site] == ["st-aq-pier"]

"""The InfluxDB schema: the measurement table and the point builders keep to it.

Lines are read back with a small line-protocol parser written here (``parse_line``),
so a field's type is what InfluxDB would see (``12i`` an integer, ``12.0`` a float),
not what the Python value happened to be. ``check_line`` holds a parsed line against
:data:`~stream.schema.MEASUREMENTS`; the pipeline's tests use both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.aggregate import HOUR, MINUTE, Closed, Moments, WindowSize
from stream.indices.aqi import Pollutant, hourly_aqi
from stream.indices.energy import BaselineComparison, Consumption, RegisterStep
from stream.indices.hotspots import SiteValue, rank_hotspots
from stream.indices.scenic import GateCounts, OccupancyState, ScenicConfig
from stream.indices.scenic import apply as apply_occupancy
from stream.indices.traffic import LaneObservation, district_index, segment_index
from stream.schema import (
    MEASUREMENTS,
    AggregateLines,
    MeasurementSpec,
    SensorTags,
    aggregate_point,
    alert_point,
    anomaly_line,
    anomaly_point,
    district_aqi_point,
    district_traffic_point,
    energy_point,
    gateway_point,
    hotspot_points,
    markdown_table,
    reading_line,
    reading_point,
    scenic_point,
    segment_traffic_point,
    sensor_tags,
    station_aqi_point,
)
from stream.sinks.lineprotocol import (
    FieldValue,
    LineEncoder,
    LinePoint,
    LineProtocolError,
    Precision,
)
from telemetry import (
    CATALOGUE,
    Alert,
    AlertState,
    AlertSubject,
    GatewayState,
    GatewayStatus,
    Kind,
    Reading,
    Severity,
)
from telemetry.registry import Registry, Sensor, load_example_registry

REGISTRY: Registry = load_example_registry()
TAGS: dict[str, SensorTags] = sensor_tags(REGISTRY)
SPECS: dict[str, MeasurementSpec] = {spec.name: spec for spec in MEASUREMENTS}
SENSOR_TAGS = ("sensor", "site", "district", "gateway")
KIND_TAGS: Mapping[Kind, tuple[str, ...]] = {
    Kind.TRAFFIC: ("segment", "direction", "lane"),
    Kind.CROWD: ("area", "gate"),
    Kind.ENERGY: ("building",),
}
START = datetime(2024, 11, 8, tzinfo=UTC)
DERIVED = ("agg_1m", "agg_1h", "aqi", "traffic_index", "scenic", "energy_use", "hotspot")


# ---------------------------------------------------------------- a line-protocol reader


@dataclass(frozen=True)
class Parsed:
    """One line of line protocol, read back."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    ts: int


_ESCAPABLE = ',= "\\'


def _scan(text: str, pos: int, stops: str) -> tuple[str, int]:
    """Read an escaped name up to the first unescaped character of ``stops``."""
    out: list[str] = []
    while pos < len(text) and text[pos] not in stops:
        if text[pos] == "\\" and pos + 1 < len(text) and text[pos + 1] in _ESCAPABLE:
            out.append(text[pos + 1])
            pos += 2
        else:
            out.append(text[pos])
            pos += 1
    return "".join(out), pos


def _value(text: str, pos: int) -> tuple[FieldValue, int]:
    """Read one field value starting at ``pos``; its type comes from its spelling."""
    if text[pos] == '"':
        out: list[str] = []
        pos += 1
        while text[pos] != '"':
            if text[pos] == "\\" and text[pos + 1] in '"\\':
                pos += 1
            out.append(text[pos])
            pos += 1
        return "".join(out), pos + 1
    end = pos
    while end < len(text) and text[end] not in ", ":
        end += 1
    token = text[pos:end]
    if token.endswith("i"):
        return int(token[:-1]), end
    if token in {"t", "T", "true", "True", "TRUE"}:
        return True, end
    if token in {"f", "F", "false", "False", "FALSE"}:
        return False, end
    return float(token), end


def parse_line(line: str) -> Parsed:
    """Read one line: ``measurement[,tag=value...] field=value[,...] timestamp``."""
    measurement, pos = _scan(line, 0, ", ")
    tags: dict[str, str] = {}
    while line[pos] == ",":
        key, pos = _scan(line, pos + 1, "=")
        value, pos = _scan(line, pos + 1, ", ")
        tags[key] = value
    assert line[pos] == " ", line
    fields: dict[str, FieldValue] = {}
    pos += 1
    while True:
        key, pos = _scan(line, pos, "=")
        fields[key], pos = _value(line, pos + 1)
        if line[pos] == " ":
            break
        assert line[pos] == ",", line
        pos += 1
    return Parsed(measurement, tags, fields, int(line[pos + 1 :]))


def influx_type(value: FieldValue) -> str:
    """The InfluxDB type of a parsed field value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    return "string"


def check_line(parsed: Parsed) -> MeasurementSpec:
    """Assert a line is a point of a declared measurement, tags and typed fields as declared."""
    spec = SPECS[parsed.measurement]
    assert set(parsed.tags) <= set(spec.tags), (parsed.measurement, parsed.tags)
    for name, value in parsed.fields.items():
        assert influx_type(value) == spec.field(name).type, (parsed.measurement, name, value)
    return spec


def encode(point: LinePoint) -> str:
    return LineEncoder(Precision.NS).encode_batch([point])[0]


def test_the_parser_reads_escapes_and_every_type() -> None:
    line = r'm\ 1,a\,b=c\=d,z=y f=1.5,i=-3i,s="q \"x\" \\",t=true,e=1e+20 17'
    assert parse_line(line) == Parsed(
        "m 1",
        {"a,b": "c=d", "z": "y"},
        {"f": 1.5, "i": -3, "s": 'q "x" \\', "t": True, "e": 1e20},
        17,
    )


# ---------------------------------------------------------------- the table


def test_measurement_names_are_unique_and_every_kind_has_one() -> None:
    names = [spec.name for spec in MEASUREMENTS]
    assert len(names) == len(set(names))
    assert {kind.value for kind in Kind} | {"anomaly", "gateway", "alert", *DERIVED} == set(names)
    for spec in MEASUREMENTS:
        fields = [f.name for f in spec.fields]
        assert len(fields) == len(set(fields)), spec.name
        assert len(spec.tags) == len(set(spec.tags)), spec.name
        assert spec.point, spec.name
        assert all(f.description for f in spec.fields), spec.name


@pytest.mark.parametrize("kind", list(Kind))
def test_every_catalogue_metric_is_a_field_with_its_unit_and_type(kind: Kind) -> None:
    spec = SPECS[kind.value]
    for metric in CATALOGUE[kind].values():
        field = spec.field(metric.name)
        assert field.unit == metric.unit, metric.key
        assert field.type == ("integer" if metric.integer else "float"), metric.key
        assert field.description == metric.description, metric.key
    assert spec.field("seq").type == "integer"
    assert {f.name for f in spec.fields} == {*CATALOGUE[kind], "seq"}
    assert spec.tags == (*SENSOR_TAGS, *KIND_TAGS.get(kind, ()))


def test_the_anomaly_measurement_has_a_float_score_for_every_metric_of_every_kind() -> None:
    spec = SPECS["anomaly"]
    for metrics in CATALOGUE.values():
        for name in metrics:
            assert spec.field(f"score_{name}").type == "float"
    assert [spec.field(n).type for n in ("score", "metric", "detector", "raw")] == [
        "float",
        "string",
        "string",
        "float",
    ]
    with pytest.raises(KeyError):
        spec.field("score_speed")


# ---------------------------------------------------------------- points


def test_integer_metrics_get_the_i_suffix_and_whole_floats_stay_floats() -> None:
    traffic = Reading(
        sensor_id="tr-ring-nb-1",
        kind=Kind.TRAFFIC,
        seq=3,
        ts=START,
        interval_s=60.0,
        metrics={"vehicle_count": 12.0, "mean_speed_kmh": 48.0, "occupancy_pct": 7.5},
    )
    line = encode(reading_point(traffic, TAGS["tr-ring-nb-1"]))
    assert " vehicle_count=12i,mean_speed_kmh=48.0,occupancy_pct=7.5,seq=3i " in line
    energy = Reading(
        sensor_id="em-willow-court-main",
        kind=Kind.ENERGY,
        seq=0,
        ts=START,
        metrics={"power_w": 12.0, "energy_kwh": 100.0},
    )
    assert " power_w=12.0,energy_kwh=100.0,seq=0i " in encode(
        reading_point(energy, TAGS["em-willow-court-main"])
    )
    crowd = Reading(
        sensor_id="cr-park-north",
        kind=Kind.CROWD,
        seq=1,
        ts=START,
        metrics={"count_in_view": 0.0},
    )
    assert " count_in_view=0i,seq=1i " in encode(reading_point(crowd, TAGS["cr-park-north"]))


@st.composite
def readings(draw: st.DrawFn, kind: Kind | None = None) -> tuple[Sensor, Reading]:
    """A registry sensor (of ``kind``) and a valid reading of it: any metrics, any values."""
    sensor = draw(st.sampled_from([s for s in REGISTRY.sensors if kind in {None, s.kind}]))
    specs = CATALOGUE[sensor.kind]
    names = draw(st.lists(st.sampled_from(list(specs)), min_size=1, unique=True))
    interval_s = draw(st.sampled_from([1.0, 60.0, 300.0, 3600.0]))
    metrics: dict[str, float] = {}
    for name in names:
        low, high = specs[name].valid_range(interval_s)
        if specs[name].integer:
            metrics[name] = float(draw(st.integers(math.ceil(low), math.floor(high))))
        else:
            # Whole floats are the interesting case: they must still be written as floats.
            metrics[name] = draw(
                st.floats(low, high)
                | st.integers(math.ceil(low), math.floor(high)).map(float)
                | st.sampled_from([float(low), float(high)])
            )
    reading = Reading(
        sensor_id=sensor.id,
        kind=sensor.kind,
        seq=draw(st.integers(0, 2**63 - 1)),
        ts=START + timedelta(seconds=draw(st.integers(0, 10 * 365 * 86_400))),
        interval_s=interval_s,
        metrics=metrics,
    )
    return sensor, reading


@given(readings())
def test_a_reading_point_keeps_every_field_type_and_tag_of_its_measurement(
    drawn: tuple[Sensor, Reading],
) -> None:
    sensor, reading = drawn
    parsed = parse_line(encode(reading_point(reading, TAGS[sensor.id])))
    spec = check_line(parsed)
    assert spec.name == sensor.kind.value
    assert set(parsed.fields) == {*reading.metrics, "seq"}
    for name, value in reading.metrics.items():
        assert parsed.fields[name] == value
        expected = "integer" if CATALOGUE[reading.kind][name].integer else "float"
        assert influx_type(parsed.fields[name]) == expected
    assert parsed.fields["seq"] == reading.seq
    assert set(SENSOR_TAGS) <= set(parsed.tags)
    assert parsed.tags["sensor"] == sensor.id
    assert parsed.ts == int(reading.ts.timestamp()) * 10**9


@given(readings(), st.lists(st.floats(0.0, 1.0), min_size=6, max_size=6))
def test_an_anomaly_point_keeps_every_field_type_of_its_measurement(
    drawn: tuple[Sensor, Reading], scores: list[float]
) -> None:
    sensor, reading = drawn
    metrics = list(reading.metrics)
    given_scores = [(m, scores[i], "neighbours", scores[i] * 8) for i, m in enumerate(metrics)]
    district = TAGS[sensor.id].district
    parsed = parse_line(encode(anomaly_point(reading, district, given_scores)))
    assert check_line(parsed).name == "anomaly"
    assert parsed.tags == {"sensor": sensor.id, "kind": sensor.kind.value, "district": district}
    assert parsed.fields["score"] == max(scores[: len(metrics)])
    assert {f"score_{m}" for m in metrics} <= set(parsed.fields)


@pytest.mark.parametrize("state", list(GatewayState))
def test_a_gateway_point_keeps_every_field_type_and_tag(state: GatewayState) -> None:
    status = GatewayStatus(
        gateway_id="gw-ring-01", state=state, ts=START, agent_version="1.0", uptime_s=60
    )
    parsed = parse_line(encode(gateway_point(status, "st-tr-ring-east", "lakeside")))
    spec = check_line(parsed)
    assert set(parsed.tags) == set(spec.tags)
    assert set(parsed.fields) == {f.name for f in spec.fields}
    assert parsed.fields["online"] == int(state is GatewayState.ONLINE)
    assert parsed.fields["uptime_s"] == 60.0


# ---------------------------------------------------------------- tags


def test_every_registry_sensor_gets_its_sites_district_and_its_kinds_tags() -> None:
    tags = sensor_tags(REGISTRY)
    assert set(tags) == {s.id for s in REGISTRY.sensors}
    for sensor in REGISTRY.sensors:
        where = tags[sensor.id]
        assert where.site == sensor.site
        assert where.district == REGISTRY.site(sensor.site).district
        assert where.gateway == sensor.gateway
        # In the example city every sensor names all of its kind's tags.
        assert set(where.extra) == set(KIND_TAGS.get(sensor.kind, ())), sensor.id
    ring = tags["tr-ring-nb-2"].extra
    assert ring == {"segment": "seg-ring-east-k3", "direction": "northbound", "lane": "2"}
    assert tags["cr-canal-east"].extra == {"area": "canal-quarter", "gate": "gate-canal-east"}
    assert tags["em-lakeview-mall-main"].extra == {"building": "bld-lakeview-mall"}
    assert tags["aq-drum-tower-pollution"].district == "old-town"


# ---------------------------------------------------------------- derived measurements


def check_full(point: LinePoint, scope_tags: set[str] | None = None) -> Parsed:
    """Encode, read back and check a point; with ``scope_tags``, its tags exactly."""
    parsed = parse_line(encode(point))
    spec = check_line(parsed)
    if scope_tags is not None:
        assert set(parsed.tags) == scope_tags, (spec.name, parsed.tags)
    return parsed


@pytest.mark.parametrize(
    ("measurement", "field", "type_"),
    [
        ("agg_1m", "count", "integer"),
        ("agg_1h", "mean", "float"),
        ("aqi", "aqi", "integer"),
        ("aqi", "level", "integer"),
        ("aqi", "primary", "string"),
        ("aqi", "iaqi_pm2_5", "integer"),
        ("aqi", "iaqi_o3_1h", "integer"),
        ("traffic_index", "tpi", "float"),
        ("traffic_index", "grade", "integer"),
        ("scenic", "occupancy", "integer"),
        ("scenic", "tier", "integer"),
        ("scenic", "occupancy_pct", "float"),
        ("scenic", "unexplained_exits", "integer"),
        ("energy_use", "consumption_kwh", "float"),
        ("energy_use", "event", "string"),
        ("hotspot", "rank", "integer"),
        ("hotspot", "score", "float"),
    ],
)
def test_derived_fields_have_the_types_the_boards_expect(
    measurement: str, field: str, type_: str
) -> None:
    assert SPECS[measurement].field(field).type == type_


@given(
    st.lists(st.integers(0, 500).map(float), min_size=1, max_size=5),
    st.sampled_from([MINUTE, HOUR]),
    st.booleans(),
)
def test_an_aggregate_point_writes_whole_values_as_floats_and_the_count_as_integer(
    values: list[float], size: WindowSize, of_sensor: bool
) -> None:
    moments = Moments()
    for v in values:
        moments.add(v, v, v, 60.0)
    end = int(START.timestamp())
    closed = Closed(
        size,
        end,
        "tr-ring-nb-1" if of_sensor else None,
        "traffic.vehicle_count",
        moments,
    )
    agg = {"scope", "site", "kind", "metric", "district"}
    parsed = check_full(
        aggregate_point(closed, "st-tr-ring-east", "lakeside"),
        agg | {"sensor"} if of_sensor else agg,
    )
    assert parsed.measurement == f"agg_{closed.size.name}"
    assert parsed.fields["count"] == len(values)
    assert parsed.fields["max"] == max(values)
    assert parsed.ts == end * 10**9
    assert (parsed.tags["kind"], parsed.tags["metric"]) == ("traffic", "vehicle_count")


@given(
    st.fixed_dictionaries(
        {},
        optional={
            name: st.floats(0, high, allow_nan=False)
            for name, high in [
                ("pm2_5", 600.0),
                ("pm10", 700.0),
                ("no2", 3000.0),
                ("so2", 800.0),
                ("o3", 1500.0),
                ("co", 180.0),
            ]
        },
    ).filter(bool)
)
def test_station_and_district_aqi_points_keep_their_types(means: dict[str, float]) -> None:
    result = hourly_aqi(means)
    end = int(START.timestamp())
    station = check_full(
        station_aqi_point(result, "aq-pier-pollution", "st-aq-pier", "lakeside", end),
        {"scope", "sensor", "site", "district", "standard"},
    )
    assert station.fields["aqi"] == result.aqi
    assert station.fields["primary"] == result.primary_names
    assert (station.fields["primary"] == "") == (result.aqi is not None and result.aqi <= 50)
    assert {k for k in station.fields if k.startswith("iaqi_")} == {
        f"iaqi_{p.value}" for p in result.iaqi
    }
    quiet = hourly_aqi({"pm2_5": 10.0})
    district = check_full(
        district_aqi_point("lakeside", [result, quiet], end), {"scope", "district", "standard"}
    )
    assert district.fields["aqi"] == max(result.aqi or 0, 15)
    assert district.fields["stations"] == 2


def test_a_district_aqi_joins_the_primary_pollutants_of_tied_stations() -> None:
    pm10 = hourly_aqi({"pm10": 150.0})  # IAQI 100
    pm25 = hourly_aqi({"pm2_5": 75.0})  # IAQI 100
    parsed = check_full(district_aqi_point("old-town", [pm25, pm10], 0))
    assert parsed.fields["primary"] == f"{Pollutant.PM10.cnemc_name},{Pollutant.PM2_5.cnemc_name}"
    with pytest.raises(ValueError, match="old-town"):
        district_aqi_point("old-town", [hourly_aqi({})], 0)


def test_traffic_points_leave_out_the_travel_time_index_at_a_standstill() -> None:
    segment = REGISTRY.road_segment("seg-ring-east-k3")
    jam = segment_index(segment, [LaneObservation(0, 0.0, 95.0)], ts=START, direction="northbound")
    free = segment_index(
        segment, [LaneObservation(20, 80.0, 5.0)], ts=START, direction="southbound"
    )
    tags = {"scope", "segment", "direction", "district", "road_class"}
    stopped = check_full(segment_traffic_point(jam, "lakeside"), tags)
    assert "tti" not in stopped.fields
    assert (stopped.fields["grade"], stopped.fields["basis"]) == (5, "standstill")
    moving = check_full(segment_traffic_point(free, "lakeside"), tags)
    assert (moving.fields["tti"], moving.fields["speed_kmh"], moving.fields["vehicles"]) == (
        1.0,
        80.0,
        20,
    )
    district = check_full(
        district_traffic_point(district_index("lakeside", [jam, free])), {"scope", "district"}
    )
    assert district.fields["segments"] == 2
    assert influx_type(district.fields["tpi"]) == "float"


def test_a_scenic_point_has_every_figure_with_its_type() -> None:
    config = ScenicConfig("canal-quarter", instantaneous_capacity=100, daily_capacity=300)
    _, update = apply_occupancy(OccupancyState(), GateCounts("east", START, 95, 0), config)
    parsed = check_full(scenic_point(update, "old-town"), {"area", "district"})
    assert set(parsed.fields) == {f.name for f in SPECS["scenic"].fields}
    assert (parsed.fields["occupancy"], parsed.fields["tier"]) == (95, 90)
    assert parsed.fields["occupancy_pct"] == 95.0


def test_an_energy_point_names_a_gap_and_adds_the_baseline_when_warm() -> None:
    where = ("em-willow-court-main", "bld-willow-court", "st-willow-court", "old-town")
    gap = Consumption(START, START, 12.0, 3.0, RegisterStep.NORMAL, 2.0, 5400.0)
    parsed = check_full(energy_point(gap, where), {"sensor", "building", "site", "district"})
    assert (parsed.fields["event"], parsed.fields["gap_s"]) == ("gap", 5400.0)
    warm = BaselineComparison(START, 0, 2.0, 1.6, 1.25, 0.4)
    first = Consumption(START, None, 12.0, 0.0, RegisterStep.FIRST)
    parsed = check_full(energy_point(first, where, warm))
    assert parsed.fields == {
        "consumption_kwh": 0.0,
        "event": "first",
        "baseline_kw": 1.6,
        "power_ratio": 1.25,
        "excess_kw": 0.4,
    }
    cold = BaselineComparison(START, 0, 2.0, None, None, None)
    assert "baseline_kw" not in check_full(energy_point(first, where, cold)).fields


def test_hotspot_points_rank_only_the_sites_that_stand_out() -> None:
    values = [
        SiteValue("st-aq-pier", "lakeside", 180.0, START),
        SiteValue("st-aq-library", "lakeside", 40.0, START),
        SiteValue("st-aq-north-bank", "lakeside", 36.0, START),
    ]
    [ranking] = rank_hotspots(values, metric="pollution.pm2_5", now=START)
    [point] = hotspot_points(ranking, "pollution")
    parsed = check_full(point, {"district", "kind", "site"})
    assert (parsed.tags["site"], parsed.fields["rank"], parsed.fields["reason"]) == (
        "st-aq-pier",
        1,
        "district",
    )
    assert "self_z" not in parsed.fields


# ---------------------------------------------------------------- lines built directly
# The lines written per reading and per window are built without points; they must be
# exactly what the encoder writes for the points above, so MEASUREMENTS stays the
# contract of both.

PRECISIONS = st.sampled_from(list(Precision))
DETECTORS = st.sampled_from(["neighbours", "hst", 'the "odd" one', "C:\\raw"])


def encoded(point: LinePoint, precision: Precision = Precision.NS) -> str:
    return LineEncoder(precision).encode(*point)


def pier_reading(**metrics: float) -> Reading:
    """A pollution reading of the pier station, unvalidated: any values at all."""
    return Reading.model_construct(
        sensor_id="aq-pier-pollution", kind=Kind.POLLUTION, seq=4, ts=START, metrics=metrics
    )


@pytest.mark.parametrize("kind", list(Kind))
@given(data=st.data())
def test_a_reading_line_is_its_encoded_point(kind: Kind, data: st.DataObject) -> None:
    sensor, reading = data.draw(readings(kind))
    precision = data.draw(PRECISIONS)
    where = TAGS[sensor.id]
    assert where.series is not None
    line = reading_line(reading, where, precision)
    assert line == encoded(reading_point(reading, where), precision)
    check_line(parse_line(line))


@pytest.mark.parametrize("kind", list(Kind))
@given(data=st.data())
def test_an_anomaly_line_is_its_encoded_point(kind: Kind, data: st.DataObject) -> None:
    sensor, reading = data.draw(readings(kind))
    scores = [
        (
            metric,
            data.draw(st.floats(0.0, 1.0)),
            data.draw(DETECTORS),
            data.draw(st.floats(-1e9, 1e9) | st.integers(0, 9).map(float)),
        )
        for metric in reading.metrics
    ]
    precision = data.draw(PRECISIONS)
    where = TAGS[sensor.id]
    line = anomaly_line(reading, where, scores, precision)
    assert line == encoded(anomaly_point(reading, where.district, scores), precision)
    check_line(parse_line(line))


def test_lines_of_other_tags_or_odd_scores_are_still_the_encoded_points() -> None:
    reading = pier_reading(pm2_5=35.0, pm10=50.0)
    scores = [("pm2_5", 0.2, "hst", 1.0), ("pm10", 0.9, "z", 4), ("pm2_5", 0.7, "hst", 2.0)]
    made_by_hand = SensorTags(site="st 1", district="lake,side", gateway="gw=1")
    of_another_sensor = TAGS["aq-drum-tower-pollution"]
    for where in (TAGS["aq-pier-pollution"], made_by_hand, of_another_sensor):
        assert reading_line(reading, where) == encoded(reading_point(reading, where))
        assert anomaly_line(reading, where, scores) == encoded(
            anomaly_point(reading, where.district, scores)
        )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_value_line_protocol_cannot_hold_fails_as_its_point_does(bad: float) -> None:
    where = TAGS["aq-pier-pollution"]
    reading = pier_reading(pm2_5=bad)
    with pytest.raises(LineProtocolError) as fast:
        reading_line(reading, where)
    with pytest.raises(LineProtocolError) as slow:
        encoded(reading_point(reading, where))
    assert fast.value.message == slow.value.message
    reading = pier_reading(pm2_5=35.0, pm10=50.0)
    for scores in (
        [("pm2_5", bad, "hst", 1.0), ("pm10", 0.1, "hst", 1.0)],
        [("pm2_5", 0.2, "hst", bad), ("pm10", 0.1, "hst", 1.0)],
        [("pm2_5", 0.2, "hst", 1.0), ("pm10", bad, "hst", 1.0)],
    ):
        with pytest.raises(LineProtocolError) as fast:
            anomaly_line(reading, where, scores)
        with pytest.raises(LineProtocolError) as slow:
            encoded(anomaly_point(reading, where.district, scores))
        assert fast.value.message == slow.value.message
    closed = Closed(MINUTE, 60, None, "pollution.pm2_5", Moments(1, 1.0, bad, 2.0))
    with pytest.raises(LineProtocolError) as fast:
        AggregateLines().line(closed, "st-aq-pier", "lakeside")
    with pytest.raises(LineProtocolError) as slow:
        encoded(aggregate_point(closed, "st-aq-pier", "lakeside"))
    assert fast.value.message == slow.value.message


@given(
    st.lists(st.floats(-1e9, 1e9) | st.integers(-500, 500).map(float), min_size=1, max_size=5),
    st.sampled_from([MINUTE, HOUR]),
    st.sampled_from(["tr-ring-nb-1", None]),
    st.sampled_from(["traffic.vehicle_count", "traffic.mean_speed_kmh"]),
    PRECISIONS,
)
def test_an_aggregate_line_is_its_encoded_point(
    values: list[float], size: WindowSize, sensor: str | None, metric: str, precision: Precision
) -> None:
    moments = Moments()
    for v in values:
        moments.add(v, v - 0.5, v + 0.5, 60.0)
    closed = Closed(size, int(START.timestamp()) + 7, sensor, metric, moments)
    lines = AggregateLines(precision)
    for _ in range(2):  # the second time from the remembered series
        line = lines.line(closed, "st-tr-ring-east", "lakeside")
        assert line == encoded(aggregate_point(closed, "st-tr-ring-east", "lakeside"), precision)
    check_line(parse_line(line))


def test_the_readme_prints_the_current_measurement_table() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme, (
        "README.md's measurement table is out of date: paste in "
        "`.venv/bin/python -c 'from stream.schema import markdown_table; print(markdown_table())'`"
    )


def test_an_alert_transition_is_a_point_as_declared() -> None:
    subject = AlertSubject(site_id="st-aq-pier", district_id="lakeside")
    start = datetime(2024, 11, 8, 9, tzinfo=UTC)
    firing = Alert.create(
        rule_id="aqi-heavy",
        subject=subject,
        severity=Severity.WARNING,
        state=AlertState.FIRING,
        metric="aqi.aqi",
        value=231.0,
        threshold=201.0,
        starts_at=start,
        annotations={"summary": 'Heavy pollution "重度污染" at Pier'},
    )
    resolved = firing.model_copy(
        update={"state": AlertState.RESOLVED, "ends_at": start + timedelta(hours=3)}
    )
    encoder = LineEncoder(Precision.S)
    for alert, firing_flag, at in ((firing, 1, start), (resolved, 0, start + timedelta(hours=3))):
        parsed = parse_line(encoder.encode(*alert_point(alert)))
        check_line(parsed)
        assert parsed.tags["district"] == "lakeside"
        assert parsed.fields["firing"] == firing_flag
        assert parsed.fields["subject"] == "site=st-aq-pier,district=lakeside"
        assert parsed.ts == int(at.timestamp())

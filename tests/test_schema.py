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

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.schema import (
    MEASUREMENTS,
    MeasurementSpec,
    SensorTags,
    anomaly_point,
    gateway_point,
    reading_point,
    sensor_tags,
)
from stream.sinks.lineprotocol import FieldValue, LineEncoder, LinePoint, Precision
from telemetry import CATALOGUE, GatewayState, GatewayStatus, Kind, Reading
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
    assert {kind.value for kind in Kind} | {"anomaly", "gateway"} == set(names)
    for spec in MEASUREMENTS:
        fields = [f.name for f in spec.fields]
        assert len(fields) == len(set(fields)), spec.name
        assert len(spec.tags) == len(set(spec.tags)), spec.name


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
def readings(draw: st.DrawFn) -> tuple[Sensor, Reading]:
    """A registry sensor and a valid reading of it: any metrics of its kind, any values."""
    sensor = draw(st.sampled_from(REGISTRY.sensors))
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

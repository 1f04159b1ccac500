"""The site registry: the example loads and is sound; broken files report every problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from telemetry.catalogue import Kind
from telemetry.errors import DocumentProblem, RegistryError, TelemetryError, UnknownIdError
from telemetry.registry import (
    GATE_TOLERANCE_M,
    BuildingType,
    Direction,
    Registry,
    RoadClass,
    example_registry_path,
    load_example_registry,
    load_registry,
    parse_registry,
)

# ---------------------------------------------------------------- the example registry


@pytest.fixture(scope="module")
def example() -> Registry:
    return load_example_registry()


def test_example_registry_is_shipped_as_package_data() -> None:
    path = example_registry_path()
    assert path.name == "registry.yaml"
    assert path.read_text(encoding="utf-8").lstrip().startswith("#")


def test_example_loads_from_a_path_too() -> None:
    registry = load_registry(str(example_registry_path()))
    assert registry == load_example_registry()


def test_example_has_what_the_stream_code_expects(example: Registry) -> None:
    assert len(example.districts) >= 2
    assert 3 <= len(example.gateways) <= 4
    # Four air-quality stations, each with a pollution and an ambient sensor.
    stations = {s.site for s in example.sensors_of_kind(Kind.POLLUTION)}
    assert len(stations) == 4
    assert stations == {s.site for s in example.sensors_of_kind("ambient")}
    per_district: dict[str, int] = {}
    for site_id in stations:
        district = example.site(site_id).district
        per_district[district] = per_district.get(district, 0) + 1
    assert max(per_district.values()) == 3
    # Three road segments of different classes, a detector per lane and direction.
    assert len(example.road_segments) == 3
    assert len({seg.road_class for seg in example.road_segments}) == 3
    for seg in example.road_segments:
        watched = {(s.lane, s.direction) for s in example.sensors_of_segment(seg.id)}
        assert watched == {(lane, d) for lane in range(1, seg.lanes + 1) for d in seg.directions}
    # Scenic areas with 2-3 gates, a counter per gate, sane capacities.
    assert 1 <= len(example.scenic_areas) <= 2
    for area in example.scenic_areas:
        assert 2 <= len(area.gates) <= 3
        assert {s.gate for s in example.sensors_of_area(area.id)} == {g.id for g in area.gates}
        assert 0 < area.capacity.instantaneous <= area.capacity.daily
        assert area.capacity.turnover >= 1
    # Three buildings of different types, each with a meter.
    assert {b.type for b in example.buildings} == {
        BuildingType.OFFICE,
        BuildingType.RESIDENTIAL,
        BuildingType.MALL,
    }
    for building in example.buildings:
        assert example.sensors_of_building(building.id)


def test_example_cross_references_are_sound(example: Registry) -> None:
    districts = {d.id for d in example.districts}
    sites = {s.id for s in example.sites}
    assert all(s.district in districts for s in example.sites)
    assert all(g.site in sites for g in example.gateways)
    assert len({s.id for s in example.sensors}) == len(example.sensors)
    for sensor in example.sensors:
        assert sensor.site in sites
        example.gateway(sensor.gateway)
        if sensor.kind is Kind.TRAFFIC:
            assert sensor.segment is not None
            assert sensor.lane is not None
            assert sensor.lane <= example.road_segment(sensor.segment).lanes
        if sensor.kind is Kind.CROWD:
            assert sensor.gate is not None
            assert example.area_of_gate(sensor.gate).id == sensor.area
        if sensor.kind is Kind.ENERGY:
            assert sensor.building is not None
            assert example.building(sensor.building).site == sensor.site


def test_example_coordinates_lie_within_a_few_km(example: Registry) -> None:
    points = [(s.lat, s.lon) for s in example.sites]
    points += [(g.lat, g.lon) for a in example.scenic_areas for g in a.gates]
    lats, lons = [p[0] for p in points], [p[1] for p in points]
    assert (max(lats) - min(lats)) * 111 < 5
    assert (max(lons) - min(lons)) * 96 < 5


# ---------------------------------------------------------------- lookups


def test_lookups(example: Registry) -> None:
    sensor = example.sensor("aq-pier-pollution")
    assert sensor.kind is Kind.POLLUTION
    assert sensor.site == "st-aq-pier"
    assert sensor.gateway == "gw-lakeside-01"
    assert example.district_of_sensor("aq-pier-pollution").id == "lakeside"
    assert example.district_of_sensor("cr-canal-east").name_zh == "老城区"
    assert example.has_sensor("tr-ring-nb-1")
    assert not example.has_sensor("tr-ring-nb-9")

    segment = example.road_segment("seg-ring-east-k3")
    assert (segment.free_flow_speed_kmh, segment.lanes, segment.length_m) == (80, 3, 1850)
    assert segment.road_class is RoadClass.EXPRESSWAY
    assert example.sensor("tr-canal-eb-1").direction is Direction.EASTBOUND

    park = example.scenic_area("lakeside-park")
    assert (park.capacity.instantaneous, park.capacity.daily) == (20_000, 100_000)
    assert example.area_of_gate("gate-park-pier") is park
    assert example.gate("gate-park-pier").name_zh == "码头门"

    mall = example.building("bld-lakeview-mall")
    assert mall.type is BuildingType.MALL
    assert mall.floor_area_m2 == 86_000
    assert [s.id for s in example.sensors_of_building(mall.id)] == ["em-lakeview-mall-main"]
    assert len(example.sensors_of_gateway("gw-ring-01")) == 6


def test_neighbours_are_same_kind_same_district(example: Registry) -> None:
    neighbours = [s.id for s in example.neighbours("aq-pier-pollution")]
    assert neighbours == ["aq-library-pollution", "aq-north-bank-pollution"]
    assert example.neighbours("aq-drum-tower-pollution") == ()
    assert {s.id for s in example.neighbours("cr-park-pier")} == {"cr-park-north", "cr-park-south"}


def test_sensors_of_kind_keeps_file_order(example: Registry) -> None:
    ids = [s.id for s in example.sensors_of_kind(Kind.ENERGY)]
    assert ids == ["em-lakeside-tower-main", "em-lakeview-mall-main", "em-willow-court-main"]
    assert len(example.sensors_of_kind(Kind.TRAFFIC)) == 11
    assert len(example.sensors_of_kind(Kind.CROWD)) == 6


@pytest.mark.parametrize(
    ("lookup", "key", "expected"),
    [
        ("sensor", "aq-pier-polution", "unknown sensor 'aq-pier-polution' (did you mean"),
        ("site", "st-nowhere", "unknown site 'st-nowhere' (known: st-aq-pier, "),
        ("gate", "gate-park-east", "unknown gate 'gate-park-east' (did you mean"),
        ("area_of_gate", "nope", "unknown gate 'nope'"),
        ("road_segment", "seg-x", "unknown road segment 'seg-x'"),
        ("sensors_of_gateway", "gw-9", "unknown gateway 'gw-9'"),
    ],
)
def test_unknown_ids_raise_with_a_hint(
    example: Registry, lookup: str, key: str, expected: str
) -> None:
    with pytest.raises(UnknownIdError) as info:
        getattr(example, lookup)(key)
    assert str(info.value).startswith(expected)
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, TelemetryError)


def test_registry_is_frozen(example: Registry) -> None:
    with pytest.raises(ValidationError):
        example.sensor("aq-pier-pollution").site = "elsewhere"  # type: ignore[misc]


# ---------------------------------------------------------------- a broken registry

BROKEN = """\
version: 1
districts:
  - {id: lakeside, name: Lakeside}
sites:
  - {id: st-a, name: A, district: lakeside, lat: 30.26, lon: 120.16}
  - {id: st-b, name: B, district: lakesde, lat: 30.27, lon: 120.17}  # P:unknown-district
  - {id: st/c, name: C, district: lakeside, lat: 30.27, lon: 120.17}  # P:bad-id
  - {id: st-d, name: D, district: lakeside, lat: 95.0, lon: 120.17}  # P:bad-lat
gateways:
  - {id: gw-1, site: st-a}
  - {id: 0042, site: st-a}  # P:number-id
sensors:
  - {id: aq-1, kind: pollution, site: st-a, gateway: gw-1}  # P:first-aq-1
  - {id: aq-2, kind: pollution, site: st-nowhere, gateway: gw-1}  # P:missing-site
  - {id: aq-1, kind: ambient, site: st-a, gateway: gw-1}  # P:duplicate-sensor
  - {id: aq-3, kind: ambient, site: st-a, gateway: gw-9}  # P:unknown-gateway
  - {id: aq-4, kind: ambient, site: st-a, gateway: gw-1, colour: red}  # P:unknown-key
  - {id: tr-1, kind: traffic, site: st-a, gateway: gw-1,
     segment: seg-1, lane: 3, direction: eastbound}  # P:bad-lane
  - {id: tr-2, kind: traffic, site: st-a, gateway: gw-1,
     segment: seg-1, lane: two, direction: eastbound}  # P:wrong-type
  - {id: tr-3, kind: traffic, site: st-a, gateway: gw-1,
     segment: seg-1, lane: 1, direction: northbound}  # P:wrong-direction
  - {id: aq-5, kind: pollution, site: st-a, gateway: gw-1, building: bld-1}  # P:foreign-binding
  - {id: em-1, kind: energy, site: st-a, gateway: gw-1}  # P:missing-binding
  - {id: em-2, kind: energy, site: st-a, gateway: gw-1, building: bld-1}  # P:building-site
  - {id: cr-1, kind: crowd, site: st-a, gateway: gw-1, area: park, gate: gate-x}  # P:unknown-gate
  - {id: cr-2, kind: kiosk, site: st-a, gateway: gw-1}  # P:bad-kind
  - id: aq-6  # P:missing-key
    kind: pollution
    site: st-a
scenic_areas:
  - id: park
    name: Park
    name: Park again  # P:yaml-duplicate-key
    district: lakeside
    boundary: [[30.250, 120.150], [30.250, 120.160], [30.260, 120.160], [30.260, 120.150]]
    capacity: {instantaneous: 5000, daily: 4000}  # P:capacity
    gates:
      - {id: gate-in, name: In, lat: 30.255, lon: 120.155}
      - {id: gate-out, name: Out, lat: 30.270, lon: 120.155}  # P:gate-outside
road_segments:
  - {id: seg-1, name: S1, district: lakeside, free_flow_speed_kmh: 50, lanes: 2,
     length_m: 800, directions: [eastbound, westbound]}
buildings:
  - {id: bld-1, name: B1, site: st-b, type: office, floor_area_m2: 1000}
"""


def _line_of(marker: str, text: str = BROKEN) -> int:
    """The 1-based line on which ``# P:<marker>`` is written."""
    lines = [n for n, line in enumerate(text.splitlines(), 1) if line.endswith(f"# P:{marker}")]
    assert len(lines) == 1, marker
    return lines[0]


# marker, YAML path, a fragment of the message, the text the position points at
BROKEN_CASES: list[tuple[str, str, str, str]] = [
    (
        "unknown-district",
        "sites[1].district",
        "unknown district 'lakesde' (did you mean 'lakeside'?)",
        "lakesde,",
    ),
    ("bad-id", "sites[2].id", "invalid id: contains '/'", "st/c,"),
    ("bad-lat", "sites[3].lat", "95.0 should be less than or equal to 90", "95.0,"),
    (
        "number-id",
        "gateways[1].id",
        "expected text, got the number 34; write it in quotes: '0042'",
        "0042,",
    ),
    (
        "missing-site",
        "sensors[1].site",
        "unknown site 'st-nowhere' (known: st-a, st-b, st/c, st-d)",
        "st-nowhere,",
    ),
    (
        "duplicate-sensor",
        "sensors[2].id",
        "duplicate sensor id 'aq-1' (first at sensors[0], line {first-aq-1})",
        "aq-1, kind: ambient",
    ),
    (
        "unknown-gateway",
        "sensors[3].gateway",
        "unknown gateway 'gw-9' (did you mean 'gw-1'?)",
        "gw-9}",
    ),
    (
        "unknown-key",
        "sensors[4].colour",
        "unknown key 'colour' (known: id, kind, site, gateway, segment,",
        "colour: red",
    ),
    (
        "bad-lane",
        "sensors[5].lane",
        "lane 3 does not exist: road segment 'seg-1' has 2 lanes in each direction",
        "3, direction",
    ),
    ("wrong-type", "sensors[6].lane", "'two' should be a valid integer", "two,"),
    (
        "wrong-direction",
        "sensors[7].direction",
        "road segment 'seg-1' carries traffic eastbound, westbound only, not northbound",
        "northbound}",
    ),
    (
        "foreign-binding",
        "sensors[8].building",
        "'building' is for energy sensors, but this sensor's kind is pollution",
        "building: bld-1}",
    ),
    (
        "missing-binding",
        "sensors[9]",
        "an energy sensor needs 'building' (the building it meters)",
        "{id: em-1,",
    ),
    (
        "building-site",
        "sensors[10].site",
        "the sensor is at site 'st-a' but the building 'bld-1' it meters stands on site 'st-b'",
        "st-a, gateway: gw-1, building",
    ),
    (
        "unknown-gate",
        "sensors[11].gate",
        "unknown gate 'gate-x' of scenic area 'park' (did you mean 'gate-in'?)",
        "gate-x}",
    ),
    (
        "bad-kind",
        "sensors[12].kind",
        "'kiosk' is not one of 'pollution', 'ambient', 'energy', 'traffic' or 'crowd'",
        "kiosk,",
    ),
    ("missing-key", "sensors[13].gateway", "missing required key 'gateway'", "id: aq-6"),
    (
        "yaml-duplicate-key",
        "scenic_areas[0].name",
        "key 'name' is given twice in this mapping (first at line {yaml-duplicate-key-1})",
        "name: Park again",
    ),
    (
        "capacity",
        "scenic_areas[0].capacity.instantaneous",
        "the instantaneous capacity 5000 exceeds the daily capacity 4000",
        "5000,",
    ),
    (
        "gate-outside",
        "scenic_areas[0].gates[1]",
        "gate 'gate-out' at (30.27, 120.155) lies outside the boundary of scenic area 'park',"
        " about 1,106 m from its nearest edge",
        "{id: gate-out,",
    ),
]


def _expected_message(template: str) -> str:
    def line(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "yaml-duplicate-key-1":
            return str(_line_of("yaml-duplicate-key") - 1)
        return str(_line_of(name))

    return re.sub(r"\{([a-z0-9-]+)\}", line, template)


@pytest.fixture(scope="module")
def broken() -> RegistryError:
    with pytest.raises(RegistryError) as info:
        parse_registry(BROKEN, source="registry.yaml")
    return info.value


@pytest.mark.parametrize(
    ("marker", "path", "message", "points_at"),
    BROKEN_CASES,
    ids=[case[0] for case in BROKEN_CASES],
)
def test_broken_registry_reports_each_problem_where_it_is(
    broken: RegistryError, marker: str, path: str, message: str, points_at: str
) -> None:
    matching = [p for p in broken.problems if p.path == path]
    assert len(matching) == 1, [str(p) for p in broken.problems]
    problem = matching[0]
    assert problem.source == "registry.yaml"
    assert problem.line == _line_of(marker)
    assert problem.column is not None
    line = BROKEN.splitlines()[problem.line - 1]
    assert line[problem.column - 1 :].startswith(points_at), line
    assert _expected_message(message) in problem.message
    assert f"registry.yaml:{problem.line}:{problem.column}: {path}: " in str(broken)


def test_broken_registry_reports_nothing_else(broken: RegistryError) -> None:
    assert sorted(p.path for p in broken.problems) == sorted(case[1] for case in BROKEN_CASES)


def test_problems_are_in_file_order_one_per_line(broken: RegistryError) -> None:
    positions = [(p.line or 0, p.column or 0) for p in broken.problems]
    assert positions == sorted(positions)
    assert str(broken).splitlines() == [str(p) for p in broken.problems]
    first = broken.problems[0]
    assert str(first) == f"registry.yaml:{first.line}:{first.column}: {first.path}: {first.message}"


def test_problems_carry_the_offending_value(broken: RegistryError) -> None:
    by_path = {p.path: p for p in broken.problems}
    assert by_path["sensors[1].site"].value == "st-nowhere"
    assert by_path["sensors[6].lane"].value == "two"
    assert by_path["sites[3].lat"].value == 95.0
    assert by_path["sensors[13].gateway"].value is None


# ---------------------------------------------------------------- more broken files

MINIMAL = """\
version: 1
districts:
  - {id: d1, name: D1}
sites:
  - {id: st-a, name: A, district: d1, lat: 30.26, lon: 120.16}
gateways:
  - {id: gw-1, site: st-a}
"""


def _problems(text: str) -> list[DocumentProblem]:
    with pytest.raises(RegistryError) as info:
        parse_registry(text, source="r.yaml")
    return list(info.value.problems)


def test_minimal_registry_loads() -> None:
    registry = parse_registry(MINIMAL)
    assert registry.sensors == ()
    assert registry.sensors_of_gateway("gw-1") == ()


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (MINIMAL + "sensors:\n  - {id: a, kind: ambient\n", 10, "flow mapping at line 9"),
        (MINIMAL + "sensors:\n   - {id: a}\n  - {id: b}\n", 10, "invalid YAML"),
        ("version: 1\n\tdistricts: []\n", 2, "invalid YAML"),
        ("", 1, "the registry is empty"),
        ("# nothing but a comment\n", 1, "the registry is empty"),
        ("version: 1\n---\nversion: 1\n", 2, "found another document (expected a single document"),
        ("version: !!python/object:os.system 1\n", 1, "invalid YAML"),
    ],
)
def test_yaml_syntax_errors_give_the_line(text: str, line: int, fragment: str) -> None:
    problems = _problems(text)
    assert len(problems) == 1
    assert problems[0].line == line
    assert fragment in problems[0].message
    assert str(problems[0]).startswith(f"r.yaml:{line}:")


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("- version: 1\n", "", "expected a mapping of keys to values, got a list"),
        ("districts: []\n", "version", "missing required key 'version'"),
        ("version: 2\n", "version", "unsupported registry version 2; this loader reads version 1"),
        ("version: '1'\n", "version", "'1' should be a valid integer"),
        ("version: 1\nsensor: []\n", "sensor", "unknown key 'sensor' (did you mean 'sensors'?)"),
        ("version: 1\ndistricts: {id: d1}\n", "districts", "expected a list, got a mapping"),
        ("version: 1\ndistricts: [d1]\n", "districts[0]", "expected a mapping of keys to values"),
    ],
)
def test_shape_problems(text: str, path: str, fragment: str) -> None:
    problems = _problems(text)
    assert [p.path for p in problems] == [path]
    assert fragment in problems[0].message


def test_missing_key_of_a_nested_mapping_points_at_its_key() -> None:
    text = MINIMAL + (
        "scenic_areas:\n"
        "  - id: park\n"
        "    name: Park\n"
        "    district: d1\n"
        "    boundary: [[30.25, 120.15], [30.25, 120.16], [30.26, 120.16]]\n"
        "    capacity:\n"
        "      instantaneous: 100\n"
    )
    (problem,) = _problems(text)
    assert problem.path == "scenic_areas[0].capacity.daily"
    assert (problem.line, problem.column) == (13, 5)


@pytest.mark.parametrize(
    ("boundary", "path", "fragment"),
    [
        ("[[30.25, 120.15], [30.25, 120.16]]", "scenic_areas[0].boundary", "at least 3 items"),
        (
            "[[30.25, 120.15], [30.25, 120.16, 5], [30.26, 120.16]]",
            "scenic_areas[0].boundary[1]",
            "at most 2 items",
        ),
        (
            "[[30.25, 120.15], [30.25, 190.0], [30.26, 120.16]]",
            "scenic_areas[0].boundary[1][1]",
            "190.0 should be less than or equal to 180",
        ),
    ],
)
def test_bad_boundaries(boundary: str, path: str, fragment: str) -> None:
    text = MINIMAL + (
        "scenic_areas:\n"
        "  - {id: park, name: Park, district: d1, capacity: {instantaneous: 1, daily: 1},\n"
        f"     boundary: {boundary}}}\n"
    )
    (problem,) = _problems(text)
    assert problem.path == path
    assert problem.line == 10
    assert fragment in problem.message


def test_gate_ids_are_unique_across_areas_and_bound_to_their_area() -> None:
    area = (
        "  - {{id: {area}, name: P, district: d1, capacity: {{instantaneous: 1, daily: 2}},\n"
        "     boundary: [[30.25, 120.15], [30.25, 120.16], [30.26, 120.16], [30.26, 120.15]],\n"
        "     gates: [{{id: {gate}, name: G, lat: 30.255, lon: 120.155}}]}}\n"
    )
    text = (
        MINIMAL
        + "scenic_areas:\n"
        + area.format(area="p1", gate="g1")
        + area.format(area="p2", gate="g1")
        + area.format(area="p3", gate="g3")
        + "sensors:\n"
        + "  - {id: c1, kind: crowd, site: st-a, gateway: gw-1, area: p1, gate: g3}\n"
    )
    problems = _problems(text)
    assert [(p.path, p.line) for p in problems] == [
        ("scenic_areas[1].gates[0].id", 14),
        ("sensors[0].gate", 19),
    ]
    assert "duplicate gate id 'g1' (first at scenic_areas[0].gates[0], line 11)" in str(problems[0])
    assert "gate 'g3' belongs to scenic area 'p3', not 'p1'" in problems[1].message


def test_anchors_and_merge_keys_work() -> None:
    text = MINIMAL + (
        "sensors:\n"
        "  - &aq {id: aq-1, kind: pollution, site: st-a, gateway: gw-1}\n"
        "  - {<<: *aq, id: aq-2, kind: ambient}\n"
        "  - {<<: *aq, id: aq-3, site: st-zz}\n"
    )
    (problem,) = _problems(text)
    assert (problem.path, problem.line) == ("sensors[2].site", 11)
    registry = parse_registry(text.replace("st-zz", "st-a"))
    assert [s.kind for s in registry.sensors] == [Kind.POLLUTION, Kind.AMBIENT, Kind.POLLUTION]


def test_load_registry_reads_a_file_and_names_it(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(MINIMAL, encoding="utf-8")
    assert load_registry(good).site("st-a").lat == 30.26
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("district: d1", "district: d2"), encoding="utf-8")
    with pytest.raises(RegistryError, match=re.escape(f"{bad}:5:")):
        load_registry(bad)


def test_load_registry_of_a_missing_file_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read") as info:
        load_registry(tmp_path / "nope.yaml")
    assert info.value.problems[0].line is None
    assert isinstance(info.value, TelemetryError)


def test_validating_the_model_directly_still_checks_references() -> None:
    data = yaml.safe_load(MINIMAL)
    data["gateways"].append({"id": "gw-2", "site": "st-b"})
    with pytest.raises(ValidationError, match=re.escape("gateways[1].site: unknown site 'st-b'")):
        Registry.model_validate(data)
    data["gateways"].pop()
    assert Registry.model_validate(data).gateway("gw-1").site == "st-a"


# ---------------------------------------------------------------- gate geometry


def _area_with_gate(lat0: float, lon0: float, size: float, gate_lat: float, gate_lon: float) -> str:
    return MINIMAL + (
        "scenic_areas:\n"
        "  - id: park\n"
        "    name: Park\n"
        "    district: d1\n"
        f"    boundary: [[{lat0:.8f}, {lon0:.8f}], [{lat0:.8f}, {lon0 + size:.8f}],"
        f" [{lat0 + size:.8f}, {lon0 + size:.8f}], [{lat0 + size:.8f}, {lon0:.8f}]]\n"
        "    capacity: {instantaneous: 10, daily: 10}\n"
        f"    gates: [{{id: g, name: G, lat: {gate_lat:.8f}, lon: {gate_lon:.8f}}}]\n"
    )


_lat0 = st.floats(min_value=-60, max_value=60)
_lon0 = st.floats(min_value=-170, max_value=170)
_size = st.floats(min_value=0.002, max_value=0.05)
_fraction = st.floats(min_value=0.0, max_value=1.0)


@settings(max_examples=60, deadline=None)
@given(lat0=_lat0, lon0=_lon0, size=_size, fx=_fraction, fy=_fraction)
def test_a_gate_inside_or_on_the_boundary_is_accepted(
    lat0: float, lon0: float, size: float, fx: float, fy: float
) -> None:
    text = _area_with_gate(lat0, lon0, size, lat0 + fy * size, lon0 + fx * size)
    assert parse_registry(text).gate("g").name == "G"


@settings(max_examples=60, deadline=None)
@given(lat0=_lat0, lon0=_lon0, size=_size, fx=_fraction, beyond=st.floats(0.1, 2.0))
def test_a_gate_well_outside_the_boundary_is_refused(
    lat0: float, lon0: float, size: float, fx: float, beyond: float
) -> None:
    # North of the area by ``beyond`` kilometres, well past the tolerance.
    gate_lat = lat0 + size + beyond / 110.574
    (problem,) = _problems(_area_with_gate(lat0, lon0, size, gate_lat, lon0 + fx * size))
    assert problem.path == "scenic_areas[0].gates[0]"
    assert problem.line == 14
    reported = float(re.findall(r"about ([\d,]+) m", problem.message)[0].replace(",", ""))
    assert reported == pytest.approx(beyond * 1000, abs=2)


def test_a_gate_just_outside_is_within_tolerance() -> None:
    lat0, lon0, size = 30.25, 120.15, 0.01
    just_outside = lat0 + size + (GATE_TOLERANCE_M - 5) / 110_574
    assert parse_registry(_area_with_gate(lat0, lon0, size, just_outside, lon0 + 0.005))
    too_far = lat0 + size + (GATE_TOLERANCE_M + 5) / 110_574
    assert _problems(_area_with_gate(lat0, lon0, size, too_far, lon0 + 0.005))

"""The site registry: the city's districts, sites, gateways and sensors, read from YAML.

The registry says where every sensor is and what it watches. Stream code asks it
for a sensor's kind, site, district and gateway; for a scenic area's capacities
and gates; for a road segment's free-flow speed, lanes, length and class; for a
building's type and floor area.

File format
-----------
One YAML mapping with ``version: 1`` and up to seven lists. Every entry has an
``id`` (see :mod:`telemetry.ids`); entries point at each other by id.

``districts``
    ``id``, ``name``, optional ``name_zh`` (a Chinese display name).
``sites``
    Places where equipment is installed: ``id``, ``name``, ``name_zh``,
    ``district``, ``lat``, ``lon`` (WGS-84 degrees).
``gateways``
    ``id``, ``site``, optional ``name``. A gateway may serve no sensor.
``sensors``
    ``id``, ``kind`` (pollution, ambient, energy, traffic, crowd), ``site``,
    ``gateway``, and the binding its kind needs: a traffic sensor names a
    ``segment``, a ``lane`` (1 to the segment's ``lanes``, counted from the
    median) and a ``direction`` (northbound, southbound, eastbound, westbound);
    a crowd sensor names a scenic ``area`` and a ``gate`` of it; an energy
    sensor names a ``building`` (on its own site). Pollution and ambient
    sensors name only their site.
``scenic_areas``
    ``id``, ``name``, ``name_zh``, ``district``, ``boundary`` (a polygon of at
    least three ``[lat, lon]`` points), ``capacity`` with ``instantaneous`` and
    ``daily`` visitors (LB/T 034-2014; both above zero, instantaneous at most
    daily), and ``gates`` (``id``, ``name``, ``name_zh``, ``lat``, ``lon``),
    each inside the boundary or within :data:`GATE_TOLERANCE_M` of it. Gate ids
    are unique across all areas.
``road_segments``
    ``id``, ``name``, ``name_zh``, ``district``, ``free_flow_speed_kmh``,
    ``lanes`` (per direction), ``length_m``, optional ``road_class``
    (expressway, arterial, secondary, branch: the classes of the GB/T 33171
    traffic index) and optional ``directions`` (the one or two directions of
    travel; when given, a sensor's direction must be one of them).
``buildings``
    Metered buildings: ``id``, ``name``, ``name_zh``, ``site``, ``type``
    (office, residential, mall, other), ``floor_area_m2``.

Unknown keys are refused. A broken file raises :class:`RegistryError` listing
every problem with its file position and YAML path, e.g.
``registry.yaml:42:11: sensors[3].site: unknown site 'st-nowhere' (known: st-a, st-b)``.
``telemetry/examples/registry.yaml`` is a complete, commented example; see
:func:`load_example_registry`.

>>> registry = parse_registry('''
... version: 1
... districts:
...   - {id: lakeside, name: Lakeside, name_zh: 湖滨区}
... sites:
...   - {id: st-pier, name: Pier, district: lakeside, lat: 30.2598, lon: 120.1628}
... gateways:
...   - {id: gw-01, site: st-pier}
... sensors:
...   - {id: aq-pier-pollution, kind: pollution, site: st-pier, gateway: gw-01}
...   - {id: aq-pier-ambient, kind: ambient, site: st-pier, gateway: gw-01}
... ''')
>>> registry.sensor("aq-pier-pollution").kind
<Kind.POLLUTION: 'pollution'>
>>> registry.district_of_sensor("aq-pier-pollution").name_zh
'湖滨区'
>>> try:
...     parse_registry('''
... version: 1
... districts:
...   - {id: lakeside, name: Lakeside}
... sites:
...   - {id: st-pier, name: Pier, district: lakeside, lat: 30.2598, lon: 120.1628}
...   - {id: st-pier, name: Pier, district: lakside, lat: 91, lon: 120.1628}
... ''', source="city.yaml")
... except RegistryError as error:
...     print(error)
city.yaml:7:10: sites[1].id: duplicate site id 'st-pier' (first at sites[0], line 6)
city.yaml:7:41: sites[1].district: unknown district 'lakside' (did you mean 'lakeside'?)
city.yaml:7:55: sites[1].lat: 91 should be less than or equal to 90
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import (
    Annotated,
    Any,
    Final,
    NamedTuple,
    Self,
    TypeVar,
)

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from telemetry.catalogue import Kind
from telemetry.documents import Finding, Loc, format_loc, known_hint, load_document, parse_document
from telemetry.errors import DocumentProblem, RegistryError, UnknownIdError
from telemetry.ids import Identifier

__all__ = [
    "GATE_TOLERANCE_M",
    "REGISTRY_VERSION",
    "Building",
    "BuildingType",
    "Capacity",
    "Direction",
    "District",
    "DocumentProblem",
    "Gate",
    "Gateway",
    "Registry",
    "RegistryError",
    "RoadClass",
    "RoadSegment",
    "ScenicArea",
    "Sensor",
    "Site",
    "UnknownIdError",
    "example_registry_path",
    "load_example_registry",
    "load_registry",
    "parse_registry",
]

REGISTRY_VERSION: Final = 1
"""The version of the registry format this module reads."""

GATE_TOLERANCE_M: Final = 30.0
"""How far outside its area's boundary a gate may lie, in metres: gates sit on fences."""

_T = TypeVar("_T")
_SKIP_CROSS_CHECK: Final = "skip_cross_check"
_MAX_KNOWN_SHOWN: Final = 8


# ---------------------------------------------------------------- vocabularies


class RoadClass(StrEnum):
    """The functional class of an urban road, as the GB/T 33171 traffic index uses it."""

    EXPRESSWAY = "expressway"
    """快速路: grade-separated, no signals."""
    ARTERIAL = "arterial"
    """主干路: the main roads between districts."""
    SECONDARY = "secondary"
    """次干路: collects traffic from branches to arterials."""
    BRANCH = "branch"
    """支路: local access streets."""


class Direction(StrEnum):
    """The direction of travel a traffic detector watches."""

    NORTHBOUND = "northbound"
    SOUTHBOUND = "southbound"
    EASTBOUND = "eastbound"
    WESTBOUND = "westbound"


class BuildingType(StrEnum):
    """What a metered building is used for, which shapes its load profile."""

    OFFICE = "office"
    RESIDENTIAL = "residential"
    MALL = "mall"
    OTHER = "other"


# ---------------------------------------------------------------- field types


def _check_version(value: int) -> int:
    if value != REGISTRY_VERSION:
        raise PydanticCustomError(
            "registry_version",
            "unsupported registry version {version}; this loader reads version {supported}",
            {"version": value, "supported": REGISTRY_VERSION},
        )
    return value


_Version = Annotated[int, Strict(), AfterValidator(_check_version)]
_Name = Annotated[str, Field(min_length=1, max_length=200)]
_Latitude = Annotated[float, Strict(), Field(ge=-90, le=90, allow_inf_nan=False)]
_Longitude = Annotated[float, Strict(), Field(ge=-180, le=180, allow_inf_nan=False)]
_Positive = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
_Count = Annotated[int, Strict(), Field(gt=0)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- entries


class District(_Entry):
    """An administrative district of the city.

    Attributes:
        id: the district's id.
        name: its display name.
        name_zh: its Chinese display name, if any.
    """

    id: Identifier
    name: _Name
    name_zh: _Name | None = None


class Site(_Entry):
    """A place where equipment is installed: a station, a cabinet, a plant room.

    Attributes:
        id: the site's id.
        name: its display name.
        name_zh: its Chinese display name, if any.
        district: the id of the district it lies in.
        lat: latitude, WGS-84 degrees.
        lon: longitude, WGS-84 degrees.
    """

    id: Identifier
    name: _Name
    name_zh: _Name | None = None
    district: Identifier
    lat: _Latitude
    lon: _Longitude


class Gateway(_Entry):
    """An edge gateway that collects sensors and publishes their readings.

    Attributes:
        id: the gateway's id, as it appears in MQTT topics.
        site: the id of the site it is installed at.
        name: a display name, if any.
    """

    id: Identifier
    site: Identifier
    name: _Name | None = None


class Sensor(_Entry):
    """One sensor, where it is, and what it is bound to.

    Attributes:
        id: the sensor's id, as readings carry it.
        kind: what it measures.
        site: the id of the site it belongs to.
        gateway: the id of the gateway that collects it.
        segment: for a traffic sensor, the road segment it watches.
        lane: for a traffic sensor, the lane, 1 nearest the median.
        direction: for a traffic sensor, the direction of travel it watches.
        area: for a crowd sensor, the scenic area.
        gate: for a crowd sensor, the gate of ``area`` it counts.
        building: for an energy sensor, the building it meters.
    """

    id: Identifier
    kind: Kind
    site: Identifier
    gateway: Identifier
    segment: Identifier | None = None
    lane: Annotated[int, Strict(), Field(ge=1)] | None = None
    direction: Direction | None = None
    area: Identifier | None = None
    gate: Identifier | None = None
    building: Identifier | None = None


class Gate(_Entry):
    """An entrance of a scenic area, where visitors are counted.

    Attributes:
        id: the gate's id, unique across all areas.
        name: its display name.
        name_zh: its Chinese display name, if any.
        lat: latitude, WGS-84 degrees.
        lon: longitude, WGS-84 degrees.
    """

    id: Identifier
    name: _Name
    name_zh: _Name | None = None
    lat: _Latitude
    lon: _Longitude


class Capacity(_Entry):
    """The visitor capacities of a scenic area, as LB/T 034-2014 defines them.

    Attributes:
        instantaneous: the most visitors the area may hold at one moment
            (瞬时最大承载量).
        daily: the most visitors the area may receive in one day (日最大承载量);
            the instantaneous capacity times the daily turnover.
    """

    instantaneous: _Count
    daily: _Count

    @property
    def turnover(self) -> float:
        """How many times a day the area fills up at capacity: ``daily / instantaneous``."""
        return self.daily / self.instantaneous


class ScenicArea(_Entry):
    """A scenic area with a fence, gates and published capacities.

    Attributes:
        id: the area's id.
        name: its display name.
        name_zh: its Chinese display name, if any.
        district: the id of the district it lies in.
        boundary: its outline, as ``(lat, lon)`` points (at least three).
        capacity: its instantaneous and daily capacities.
        gates: its entrances.
    """

    id: Identifier
    name: _Name
    name_zh: _Name | None = None
    district: Identifier
    boundary: Annotated[tuple[tuple[_Latitude, _Longitude], ...], Field(min_length=3)]
    capacity: Capacity
    gates: tuple[Gate, ...] = ()


class RoadSegment(_Entry):
    """A stretch of road between two junctions, as the traffic index rates it.

    Attributes:
        id: the segment's id.
        name: its display name.
        name_zh: its Chinese display name, if any.
        district: the id of the district it lies in.
        road_class: its functional class, if known.
        free_flow_speed_kmh: the speed of traffic when the road is empty.
        lanes: the number of lanes in each direction.
        length_m: its length in metres.
        directions: its directions of travel; empty when not stated.
    """

    id: Identifier
    name: _Name
    name_zh: _Name | None = None
    district: Identifier
    road_class: RoadClass | None = None
    free_flow_speed_kmh: Annotated[float, Strict(), Field(gt=0, le=200, allow_inf_nan=False)]
    lanes: Annotated[int, Strict(), Field(ge=1, le=12)]
    length_m: _Positive
    directions: Annotated[tuple[Direction, ...], Field(max_length=2)] = ()


class Building(_Entry):
    """A building whose electricity is metered.

    Attributes:
        id: the building's id.
        name: its display name.
        name_zh: its Chinese display name, if any.
        site: the id of the site it stands on (its meters belong to it).
        type: what the building is used for.
        floor_area_m2: its gross floor area in square metres.
    """

    id: Identifier
    name: _Name
    name_zh: _Name | None = None
    site: Identifier
    type: BuildingType
    floor_area_m2: _Positive


# ---------------------------------------------------------------- the registry


class Registry(_Entry):
    """The whole site registry, with lookups by id.

    Build it with :func:`load_registry` or :func:`parse_registry`, which report
    every problem with its place in the file. Validating it directly (e.g.
    ``Registry.model_validate(data)``) runs the same cross-reference checks but
    can only name the YAML paths of problems.

    Attributes:
        version: the format version, always :data:`REGISTRY_VERSION`.
        districts: the districts, in file order.
        sites: the sites, in file order.
        gateways: the gateways, in file order.
        sensors: the sensors, in file order.
        scenic_areas: the scenic areas, in file order.
        road_segments: the road segments, in file order.
        buildings: the metered buildings, in file order.
    """

    version: _Version
    districts: tuple[District, ...] = ()
    sites: tuple[Site, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    sensors: tuple[Sensor, ...] = ()
    scenic_areas: tuple[ScenicArea, ...] = ()
    road_segments: tuple[RoadSegment, ...] = ()
    buildings: tuple[Building, ...] = ()

    _districts: dict[str, District] = PrivateAttr(default_factory=dict)
    _sites: dict[str, Site] = PrivateAttr(default_factory=dict)
    _gateways: dict[str, Gateway] = PrivateAttr(default_factory=dict)
    _sensors: dict[str, Sensor] = PrivateAttr(default_factory=dict)
    _areas: dict[str, ScenicArea] = PrivateAttr(default_factory=dict)
    _segments: dict[str, RoadSegment] = PrivateAttr(default_factory=dict)
    _buildings: dict[str, Building] = PrivateAttr(default_factory=dict)
    _gates: dict[str, tuple[Gate, ScenicArea]] = PrivateAttr(default_factory=dict)
    _grouped: dict[tuple[str, str], tuple[Sensor, ...]] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        """Build the lookup indexes."""
        self._districts = {d.id: d for d in self.districts}
        self._sites = {s.id: s for s in self.sites}
        self._gateways = {g.id: g for g in self.gateways}
        self._sensors = {s.id: s for s in self.sensors}
        self._areas = {a.id: a for a in self.scenic_areas}
        self._segments = {s.id: s for s in self.road_segments}
        self._buildings = {b.id: b for b in self.buildings}
        self._gates = {g.id: (g, a) for a in self.scenic_areas for g in a.gates}
        grouped: dict[tuple[str, str], list[Sensor]] = {}
        for sensor in self.sensors:
            site = self._sites.get(sensor.site)
            keys = [
                ("kind", sensor.kind.value),
                ("gateway", sensor.gateway),
                ("segment", sensor.segment),
                ("area", sensor.area),
                ("building", sensor.building),
                ("kind@district", f"{sensor.kind}@{site.district if site else ''}"),
            ]
            for key in keys:
                if key[1] is not None:
                    grouped.setdefault((key[0], key[1]), []).append(sensor)
        self._grouped = {key: tuple(sensors) for key, sensors in grouped.items()}

    @model_validator(mode="after")
    def _cross_check(self, info: ValidationInfo) -> Self:
        if isinstance(info.context, Mapping) and info.context.get(_SKIP_CROSS_CHECK):
            return self
        findings = _CrossCheck(self.model_dump(), format_loc).run()
        if findings:
            lines = "\n".join(f"{format_loc(f.loc)}: {f.message}" for f in findings)
            msg = f"inconsistent registry:\n{lines}"
            raise ValueError(msg)
        return self

    # -- lookups by id

    def district(self, district_id: str) -> District:
        """The district with this id; :class:`UnknownIdError` if there is none."""
        return _lookup(self._districts, "district", district_id)

    def site(self, site_id: str) -> Site:
        """The site with this id; :class:`UnknownIdError` if there is none."""
        return _lookup(self._sites, "site", site_id)

    def gateway(self, gateway_id: str) -> Gateway:
        """The gateway with this id; :class:`UnknownIdError` if there is none."""
        return _lookup(self._gateways, "gateway", gateway_id)

    def sensor(self, sensor_id: str) -> Sensor:
        """The sensor with this id; :class:`UnknownIdError` if there is none."""
        return _lookup(self._sensors, "sensor", sensor_id)

    def scenic_area(self, area_id: str) -> ScenicArea:
        """The scenic area with this id; :class:`UnknownIdError` if there is none."""
        return _lookup(self._areas, "scenic area", area_id)

    def road_segment(self, segment_id: str) -> RoadSegment:
        """The road segment with this id; :class:`UnknownIdError` if there is none."""
        return _lookup(self._segments, "road segment", segment_id)

    def building(self, building_id: str) -> Building:
        """The building with this id; :class:`UnknownIdError` if there is none."""
        return _lookup(self._buildings, "building", building_id)

    def gate(self, gate_id: str) -> Gate:
        """The gate with this id, whichever area it belongs to."""
        return _lookup(self._gates, "gate", gate_id)[0]

    def has_sensor(self, sensor_id: str) -> bool:
        """Whether the registry knows this sensor (a cheap check for incoming readings)."""
        return sensor_id in self._sensors

    # -- relations

    def area_of_gate(self, gate_id: str) -> ScenicArea:
        """The scenic area a gate belongs to."""
        return _lookup(self._gates, "gate", gate_id)[1]

    def district_of_sensor(self, sensor_id: str) -> District:
        """The district of a sensor: the district of its site."""
        return self.district(self.site(self.sensor(sensor_id).site).district)

    def sensors_of_kind(self, kind: Kind | str) -> tuple[Sensor, ...]:
        """Every sensor of one kind, in file order."""
        return self._grouped.get(("kind", Kind(kind).value), ())

    def sensors_of_gateway(self, gateway_id: str) -> tuple[Sensor, ...]:
        """The sensors a gateway collects, in file order (empty for an idle gateway)."""
        self.gateway(gateway_id)
        return self._grouped.get(("gateway", gateway_id), ())

    def sensors_of_area(self, area_id: str) -> tuple[Sensor, ...]:
        """The crowd sensors at the gates of a scenic area, in file order."""
        self.scenic_area(area_id)
        return self._grouped.get(("area", area_id), ())

    def sensors_of_segment(self, segment_id: str) -> tuple[Sensor, ...]:
        """The traffic sensors on a road segment, every lane and direction, in file order."""
        self.road_segment(segment_id)
        return self._grouped.get(("segment", segment_id), ())

    def sensors_of_building(self, building_id: str) -> tuple[Sensor, ...]:
        """The energy meters of a building, in file order."""
        self.building(building_id)
        return self._grouped.get(("building", building_id), ())

    def neighbours(self, sensor_id: str) -> tuple[Sensor, ...]:
        """The other sensors of the same kind in the same district, in file order.

        A spatial detector compares a station with these ("one station high
        while its neighbours are not").
        """
        sensor = self.sensor(sensor_id)
        district = self.site(sensor.site).district
        group = self._grouped.get(("kind@district", f"{sensor.kind}@{district}"), ())
        return tuple(other for other in group if other.id != sensor_id)


def _lookup(index: Mapping[str, _T], what: str, key: str) -> _T:
    try:
        return index[key]
    except KeyError:
        raise UnknownIdError(what, key, known_hint(key, index)) from None


# ---------------------------------------------------------------- loading


def parse_registry(text: str, source: str = "<string>") -> Registry:
    """Read a registry from YAML text.

    Args:
        text: the YAML document.
        source: the name to give positions in problems, usually the file name.

    Returns:
        The validated registry.

    Raises:
        RegistryError: listing every problem found, with its YAML path, line
            and column.
    """
    return parse_document(
        text,
        source,
        Registry,
        what="registry",
        context={_SKIP_CROSS_CHECK: True},
        cross_check=lambda data, locator: _CrossCheck(data, locator.describe).run(),
        error=RegistryError,
    )


def load_registry(path: str | os.PathLike[str]) -> Registry:
    """Read a registry from a YAML file.

    Args:
        path: the file to read, UTF-8.

    Returns:
        The validated registry.

    Raises:
        RegistryError: when the file cannot be read, or listing every problem
            in it with its YAML path, line and column.
    """
    return load_document(
        path,
        Registry,
        what="registry",
        context={_SKIP_CROSS_CHECK: True},
        cross_check=lambda data, locator: _CrossCheck(data, locator.describe).run(),
        error=RegistryError,
    )


def example_registry_path() -> Traversable:
    """The example registry shipped with the package, ``telemetry/examples/registry.yaml``."""
    return files("telemetry.examples").joinpath("registry.yaml")


def load_example_registry() -> Registry:
    """Load the example registry: a fictional lakeside city with every kind of sensor."""
    resource = example_registry_path()
    return parse_registry(resource.read_text(encoding="utf-8"), source=str(resource))


# ---------------------------------------------------------------- cross-reference checks


def _text(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value if isinstance(value, str) else None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _entries(data: Mapping[str, Any], key: str) -> list[tuple[int, Mapping[str, Any]]]:
    collection = data.get(key)
    if not isinstance(collection, Sequence) or isinstance(collection, str):
        return []
    return [(i, item) for i, item in enumerate(collection) if isinstance(item, Mapping)]


def _polygon(value: object) -> list[tuple[float, float]] | None:
    """The ``(lat, lon)`` points of a boundary, or ``None`` if it is malformed."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) < 3:
        return None
    points: list[tuple[float, float]] = []
    for point in value:
        if not isinstance(point, Sequence) or isinstance(point, str) or len(point) != 2:
            return None
        lat, lon = _number(point[0]), _number(point[1])
        if lat is None or lon is None:
            return None
        points.append((lat, lon))
    return points


_M_PER_DEG_LAT: Final = 110_574.0
_M_PER_DEG_LON_AT_EQUATOR: Final = 111_320.0


def _metres_outside(lat: float, lon: float, polygon: list[tuple[float, float]]) -> float:
    """0 if the point is inside the polygon, else its distance to the nearest edge in metres.

    Points are projected on a plane tangent at the point (equirectangular),
    which is accurate to well under a metre over a few kilometres.
    """
    scale_x = _M_PER_DEG_LON_AT_EQUATOR * math.cos(math.radians(lat))
    xy = [((p_lon - lon) * scale_x, (p_lat - lat) * _M_PER_DEG_LAT) for p_lat, p_lon in polygon]
    if xy[0] == xy[-1]:
        xy.pop()
    inside = False
    nearest = math.inf
    for (x1, y1), (x2, y2) in zip(xy, xy[1:] + xy[:1], strict=True):
        if (y1 > 0) != (y2 > 0) and x1 - y1 * (x2 - x1) / (y2 - y1) > 0:
            inside = not inside
        dx, dy = x2 - x1, y2 - y1
        length2 = dx * dx + dy * dy
        t = 0.0 if length2 == 0 else max(0.0, min(1.0, -(x1 * dx + y1 * dy) / length2))
        nearest = min(nearest, math.hypot(x1 + t * dx, y1 + t * dy))
    return 0.0 if inside else nearest


_BINDING_KEYS: Final[Mapping[str, Kind]] = {
    "segment": Kind.TRAFFIC,
    "lane": Kind.TRAFFIC,
    "direction": Kind.TRAFFIC,
    "area": Kind.CROWD,
    "gate": Kind.CROWD,
    "building": Kind.ENERGY,
}
_BINDING_MEANING: Final[Mapping[str, str]] = {
    "segment": "the road segment it watches",
    "lane": "the lane number, 1 nearest the median",
    "direction": "the direction of travel it watches",
    "area": "the scenic area it counts visitors of",
    "gate": "the gate of that area it stands at",
    "building": "the building it meters",
}


class _Index(NamedTuple):
    loc: Loc
    item: Mapping[str, Any]


class _CrossCheck:
    """Checks between entries, on the plain data: ids unique, references resolve, geometry.

    It reads the raw YAML data (or a dumped model) defensively, so it runs even
    when some entries are malformed; pydantic reports those, and this skips what
    it cannot read.
    """

    def __init__(self, data: Mapping[str, Any], describe: Callable[[Loc], str]) -> None:
        self.data = data
        self.describe = describe
        self.findings: list[Finding] = []

    def add(self, loc: Loc, message: str, value: object = None, *, at_key: bool = False) -> None:
        self.findings.append(Finding(loc, message, value, at_key))

    def run(self) -> list[Finding]:
        """Every cross-reference problem, in the order checked."""
        districts = self.index("districts", "district")
        sites = self.index("sites", "site")
        gateways = self.index("gateways", "gateway")
        self.index("sensors", "sensor")
        areas = self.index("scenic_areas", "scenic area")
        segments = self.index("road_segments", "road segment")
        buildings = self.index("buildings", "building")
        gates = self.gate_index()

        for collection, key, known, what in (
            ("sites", "district", districts, "district"),
            ("gateways", "site", sites, "site"),
            ("scenic_areas", "district", districts, "district"),
            ("road_segments", "district", districts, "district"),
            ("buildings", "site", sites, "site"),
        ):
            for i, item in _entries(self.data, collection):
                self.reference((collection, i, key), _text(item, key), known, what)

        for i, area in _entries(self.data, "scenic_areas"):
            self.check_area(i, area)

        for i, sensor in _entries(self.data, "sensors"):
            loc: Loc = ("sensors", i)
            self.reference((*loc, "site"), _text(sensor, "site"), sites, "site")
            self.reference((*loc, "gateway"), _text(sensor, "gateway"), gateways, "gateway")
            self.check_binding(loc, sensor)
            self.check_traffic(loc, sensor, segments)
            self.check_crowd(loc, sensor, areas, gates)
            self.check_energy(loc, sensor, buildings)
        return self.findings

    def index(self, collection: str, what: str) -> dict[str, _Index]:
        """The entries of a collection by id; a repeated id is a problem."""
        found: dict[str, _Index] = {}
        for i, item in _entries(self.data, collection):
            self.claim(found, _text(item, "id"), (collection, i), item, what)
        return found

    def gate_index(self) -> dict[str, tuple[_Index, str | None]]:
        """Every gate of every area by id, with its area's id; ids are unique across areas."""
        found: dict[str, _Index] = {}
        area_of: dict[str, str | None] = {}
        for i, area in _entries(self.data, "scenic_areas"):
            for j, gate in _entries(area, "gates"):
                gate_id = _text(gate, "id")
                if self.claim(found, gate_id, ("scenic_areas", i, "gates", j), gate, "gate"):
                    area_of[str(gate_id)] = _text(area, "id")
        return {gate_id: (entry, area_of[gate_id]) for gate_id, entry in found.items()}

    def claim(
        self,
        found: dict[str, _Index],
        item_id: str | None,
        loc: Loc,
        item: Mapping[str, Any],
        what: str,
    ) -> bool:
        if item_id is None:
            return False
        if item_id in found:
            first = self.describe(found[item_id].loc)
            self.add((*loc, "id"), f"duplicate {what} id {item_id!r} (first at {first})", item_id)
            return False
        found[item_id] = _Index(loc, item)
        return True

    def reference(
        self, loc: Loc, value: str | None, known: Mapping[str, object], what: str
    ) -> None:
        if value is not None and value not in known:
            self.add(loc, f"unknown {what} {value!r}{known_hint(value, known)}", value)

    def check_area(self, i: int, area: Mapping[str, Any]) -> None:
        loc: Loc = ("scenic_areas", i)
        capacity = area.get("capacity")
        if isinstance(capacity, Mapping):
            instantaneous = _integer(capacity.get("instantaneous"))
            daily = _integer(capacity.get("daily"))
            if instantaneous is not None and daily is not None and instantaneous > daily:
                self.add(
                    (*loc, "capacity", "instantaneous"),
                    f"the instantaneous capacity {instantaneous} exceeds the daily capacity"
                    f" {daily}; every visitor present at one moment is also one of the day's",
                    instantaneous,
                )
        boundary = _polygon(area.get("boundary"))
        if boundary is None:
            return
        area_id = _text(area, "id") or f"scenic_areas[{i}]"
        for j, gate in _entries(area, "gates"):
            lat, lon = _number(gate.get("lat")), _number(gate.get("lon"))
            if lat is None or lon is None:
                continue
            outside = _metres_outside(lat, lon, boundary)
            if outside > GATE_TOLERANCE_M:
                gate_id = _text(gate, "id") or f"gates[{j}]"
                self.add(
                    (*loc, "gates", j),
                    f"gate {gate_id!r} at ({lat:g}, {lon:g}) lies outside the boundary of"
                    f" scenic area {area_id!r}, about {outside:,.0f} m from its nearest edge"
                    f" (a gate may lie up to {GATE_TOLERANCE_M:g} m outside)",
                    [lat, lon],
                )

    def check_binding(self, loc: Loc, sensor: Mapping[str, Any]) -> None:
        """The binding keys a sensor has must be those of its kind, all of them."""
        kind_text = _text(sensor, "kind")
        if kind_text not in set(Kind):
            return  # pydantic reports the bad kind
        kind = Kind(kind_text)
        for key, owner in _BINDING_KEYS.items():
            present = sensor.get(key) is not None
            if owner == kind and not present:
                article = "an" if kind[0] in "aeiou" else "a"
                self.add(loc, f"{article} {kind} sensor needs {key!r} ({_BINDING_MEANING[key]})")
            elif owner != kind and present:
                self.add(
                    (*loc, key),
                    f"{key!r} is for {owner} sensors, but this sensor's kind is {kind}",
                    sensor.get(key),
                    at_key=True,
                )

    def check_traffic(
        self, loc: Loc, sensor: Mapping[str, Any], segments: Mapping[str, _Index]
    ) -> None:
        segment_id = _text(sensor, "segment")
        self.reference((*loc, "segment"), segment_id, segments, "road segment")
        if segment_id is None or segment_id not in segments:
            return
        segment = segments[segment_id].item
        lane, lanes = _integer(sensor.get("lane")), _integer(segment.get("lanes"))
        if lane is not None and lanes is not None and lane > lanes:
            self.add(
                (*loc, "lane"),
                f"lane {lane} does not exist: road segment {segment_id!r} has {lanes}"
                f" lane{'s' if lanes != 1 else ''} in each direction",
                lane,
            )
        direction = _text(sensor, "direction")
        directions = segment.get("directions")
        if (
            direction is not None
            and isinstance(directions, Sequence)
            and directions
            and direction not in directions
        ):
            listed = ", ".join(str(d) for d in directions)
            self.add(
                (*loc, "direction"),
                f"road segment {segment_id!r} carries traffic {listed} only, not {direction}",
                direction,
            )

    def check_crowd(
        self,
        loc: Loc,
        sensor: Mapping[str, Any],
        areas: Mapping[str, _Index],
        gates: Mapping[str, tuple[_Index, str | None]],
    ) -> None:
        area_id = _text(sensor, "area")
        self.reference((*loc, "area"), area_id, areas, "scenic area")
        gate_id = _text(sensor, "gate")
        if gate_id is None:
            return
        if gate_id in gates:
            owner = gates[gate_id][1]
            if area_id in areas and owner != area_id:
                self.add(
                    (*loc, "gate"),
                    f"gate {gate_id!r} belongs to scenic area {owner!r}, not {area_id!r}",
                    gate_id,
                )
            return
        if area_id in areas:
            own = [g for g, (_, owner) in gates.items() if owner == area_id]
            hint = known_hint(gate_id, own)
            message = f"unknown gate {gate_id!r} of scenic area {area_id!r}{hint}"
        else:
            message = f"unknown gate {gate_id!r}{known_hint(gate_id, gates)}"
        self.add((*loc, "gate"), message, gate_id)

    def check_energy(
        self, loc: Loc, sensor: Mapping[str, Any], buildings: Mapping[str, _Index]
    ) -> None:
        building_id = _text(sensor, "building")
        self.reference((*loc, "building"), building_id, buildings, "building")
        if building_id is None or building_id not in buildings or sensor.get("kind") != Kind.ENERGY:
            return
        site, building_site = _text(sensor, "site"), _text(buildings[building_id].item, "site")
        if site is not None and building_site is not None and site != building_site:
            self.add(
                (*loc, "site"),
                f"the sensor is at site {site!r} but the building {building_id!r} it meters"
                f" stands on site {building_site!r}",
                site,
            )

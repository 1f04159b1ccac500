"""The city indices inside the stream: each a small step with its own state.

:class:`CityIndices` takes the pipeline's on-time readings and, once the watermark
has passed a window, its closed windows, and gives points:

* **per reading** -- a gate counter's reading moves its scenic area's occupancy
  (:class:`ScenicStep`, a ``scenic`` point); a meter's register reading gives the
  energy consumed since the last one, against the meter's power baseline
  (:class:`EnergyStep`, an ``energy_use`` point);
* **per reading, into windows** -- every reading is added to its sensor's and its
  site's one-minute and one-hour windows (:class:`AggregateStep`); a traffic reading
  also to its segment direction's one-minute lane window (:class:`TrafficStep`);
* **per closed window**, in order of window end -- ``agg_1m`` and ``agg_1h`` points;
  at an hour's end each pollution station's HJ 633 hourly AQI from the hour's means and
  its district's (:class:`AirQualityStep`); at a minute's end each segment direction's
  congestion and its district's TPI; at every fifth minute, each district's hotspots
  of PM2.5 and of energy intensity (:class:`HotspotStep`).

State keys
----------
A sensor's own state stays under its id (the pipeline's). State that spans sensors
lives under a key of its own, with a ``/`` that no registry id can contain, so no key
can collide with a sensor id:

=============================  ==================================================
``site/<site>``                open windows of the site and of each of its sensors,
                               each sensor's latest one-minute means
``segment/<segment>/<dir>``    a segment direction's open lane windows
                               (``segment/<segment>`` where lanes name no direction)
``area/<area>``                a scenic area's occupancy state
``building/<building>``        its meters' registers and power baselines
=============================  ==================================================

District figures (district AQI, TPI, hotspots) need no state of their own: they are
computed, window by window in event-time order, from the states of the district's
sites and segments. So that a worker that takes over has all of them at once, the
pipeline loads every cross-sensor key of a district together, the first time any of
them is needed (:meth:`CityIndices.keys_of_district`).

>>> from datetime import UTC, datetime
>>> from telemetry import Kind, Reading
>>> from telemetry.registry import load_example_registry
>>> city = CityIndices(load_example_registry())
>>> city.keys_of("tr-ring-nb-1")
('site/st-tr-ring-east', 'segment/seg-ring-east-k3/northbound')
>>> gate = Reading(sensor_id="cr-canal-east", kind=Kind.CROWD, seq=0, interval_s=60,
...                ts=datetime(2024, 11, 8, 3, 0, tzinfo=UTC), metrics={"entries": 40, "exits": 2})
>>> touched: set[str] = set()
>>> [point] = city.add([gate], touched)
>>> point.measurement, point.fields["occupancy"], sorted(touched)
('scenic', 38, ['area/canal-quarter', 'site/st-canal-quarter-office'])
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Final

from stream.aggregate import HOUR, MINUTE, Closed, SiteAggregates, epoch_us, window_end
from stream.citystate import (
    BuildingEnergy,
    LaneWindows,
    MeterState,
    OccupancyState,
    pack_occupancy,
    unpack_occupancy,
)
from stream.indices.aqi import AqiInputError, AqiResult, hourly_aqi
from stream.indices.energy import (
    BaselineConfig,
    EnergyError,
    RegisterConfig,
    RegisterStep,
    consume,
    update_baseline,
)
from stream.indices.hotspots import HotspotConfig, SiteValue, rank_hotspots
from stream.indices.scenic import GateCounts, ScenicConfig, ScenicError
from stream.indices.scenic import apply as apply_occupancy
from stream.indices.traffic import (
    LaneObservation,
    SegmentIndex,
    TrafficError,
    district_index,
    segment_index,
)
from stream.schema import (
    AggregateLines,
    district_aqi_point,
    district_traffic_point,
    energy_point,
    hotspot_points,
    scenic_point,
    segment_traffic_point,
    station_aqi_point,
)
from stream.sinks.lineprotocol import LinePoint, Precision
from telemetry import Kind, Reading
from telemetry.registry import Registry, Sensor

__all__ = [
    "AggregateStep",
    "AirQualityStep",
    "CityIndices",
    "EnergyStep",
    "HotspotStep",
    "IndexConfig",
    "ScenicStep",
    "TrafficStep",
]

_POLLUTANTS: Final = ("pm2_5", "pm10", "so2", "no2", "o3", "co")
_HOTSPOT_METRICS: Final = {"pollution.pm2_5": Kind.POLLUTION, "energy.power_w": Kind.ENERGY}


@dataclass(frozen=True, slots=True)
class IndexConfig:
    """How the city indices are computed; the defaults suit a Chinese city.

    Attributes:
        utc_offset_h: local time's offset from UTC: scenic days, hours of the week.
        scenic_opens_at: per scenic area id, its opening time (local); the registry has
            no opening hours, so an area not listed opens at ``default_opens_at``.
        default_opens_at: the opening time of an area not in ``scenic_opens_at``.
        register: how meters' kWh registers are read.
        baseline: how meters' power baselines learn.
        hotspots: how hotspots are found.
        hotspot_every: how often (event time) hotspots are ranked.
        aqi_min_coverage_s: the seconds of readings a pollutant's hour needs to count in
            the hourly AQI (HJ 663-2013: 45 minutes). Readings that do not give their
            interval cannot be checked and are taken as they are.
        standstill_occupancy_pct: a lane window without vehicles at or above this
            occupancy is a standing queue, not an empty road.
        energy_baseline_spread: a building's usual spread around its baseline, as a
            fraction of it, for the hotspots' ``self_z``.
    """

    utc_offset_h: float = 8.0
    scenic_opens_at: Mapping[str, time] = field(default_factory=dict)
    default_opens_at: time = time(6, 0)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    hotspots: HotspotConfig = field(default_factory=HotspotConfig)
    hotspot_every: timedelta = timedelta(minutes=5)
    aqi_min_coverage_s: float = 45 * 60.0
    standstill_occupancy_pct: float = 50.0
    energy_baseline_spread: float = 0.2

    def __post_init__(self) -> None:
        every = self.hotspot_every.total_seconds()
        if every < MINUTE.seconds or every % MINUTE.seconds:
            msg = f"hotspot_every must be a whole number of minutes, not {self.hotspot_every}"
            raise ValueError(msg)
        if not self.energy_baseline_spread > 0:
            msg = f"energy_baseline_spread must be above zero, not {self.energy_baseline_spread!r}"
            raise ValueError(msg)


def _end_time(end: int) -> datetime:
    return datetime.fromtimestamp(end, UTC)


# ---------------------------------------------------------------- windowed aggregates


class AggregateStep:
    """Per site, the one-minute and one-hour windows of its sensors and of itself.

    State: one :class:`~stream.aggregate.SiteAggregates` per site, under ``site/<id>``.
    """

    def __init__(self, registry: Registry, precision: Precision = Precision.NS) -> None:
        self._lines = AggregateLines(precision)
        self._site_of = {s.id: s.site for s in registry.sensors}
        self._district_of = {s.id: s.district for s in registry.sites}
        self.states: dict[str, SiteAggregates] = {}

    def add(self, reading: Reading) -> str:
        """Add an on-time reading; returns its site."""
        site = self._site_of[reading.sensor_id]
        state = self.states.get(site)
        if state is None:
            state = self.states[site] = SiteAggregates()
        state.add(reading)
        return site

    def due(self, watermark: datetime, sites: Iterable[str]) -> set[int]:
        """Window ends the watermark has passed, at any of these sites."""
        states = self.states
        return {
            end
            for site in sites
            if (state := states.get(site)) is not None
            for end in state.due(watermark)
        }

    def close(self, end: int, sites: Iterable[str]) -> list[tuple[str, Closed]]:
        """Close these sites' windows ending at ``end``: (site, closed), in the sites' order."""
        states = self.states
        return [
            (site, closed)
            for site in sites
            if (state := states.get(site)) is not None
            for closed in state.close(end)
        ]

    def lines(self, closed: Iterable[tuple[str, Closed]]) -> list[str]:
        """The ``agg_1m`` and ``agg_1h`` lines of closed windows."""
        line = self._lines.line
        district_of = self._district_of
        return [line(c, site, district_of[site]) for site, c in closed]


# ---------------------------------------------------------------- AQI


class AirQualityStep:
    """At each hour's end: each pollution station's HJ 633 hourly AQI, and its district's.

    Stateless: the hour's means are the closed one-hour windows of
    :class:`AggregateStep`. A pollutant counts when its readings cover
    ``aqi_min_coverage_s`` of the hour; a 1-hour SO2 above 800 µg/m³ (which HJ 633
    rates by its 24-hour mean, not kept here) is left out of that hour.
    """

    def __init__(self, registry: Registry, config: IndexConfig) -> None:
        self._config = config
        self._district_of = {s.id: s.district for s in registry.sites}
        self._stations = {s.id for s in registry.sensors_of_kind(Kind.POLLUTION)}

    def _means(
        self, closed: Sequence[tuple[str, Closed]]
    ) -> dict[tuple[str, str], dict[str, float]]:
        """Per (site, station): its pollutants' valid hourly means."""
        means: dict[tuple[str, str], dict[str, float]] = {}
        for site, c in closed:
            if c.size is not HOUR or c.sensor not in self._stations or c.name not in _POLLUTANTS:
                continue
            m = c.moments
            if m.span_s == 0 or m.span_s >= self._config.aqi_min_coverage_s:
                means.setdefault((site, c.sensor), {})[c.name] = m.mean
        return means

    def points(self, end: int, closed: Sequence[tuple[str, Closed]]) -> list[LinePoint]:
        """The hour's station and district AQI points, when ``end`` ends an hour."""
        if end % HOUR.seconds:
            return []
        points: list[LinePoint] = []
        by_district: dict[str, list[AqiResult]] = defaultdict(list)
        for (site, station), means in self._means(closed).items():
            result = _hourly(means)
            if result.aqi is None:
                continue
            district = self._district_of[site]
            points.append(station_aqi_point(result, station, site, district, end))
            by_district[district].append(result)
        for district in sorted(by_district):
            points.append(district_aqi_point(district, by_district[district], end))
        return points


def _hourly(means: dict[str, float]) -> AqiResult:
    try:
        return hourly_aqi(means)
    except AqiInputError as exc:
        if exc.quantity != "so2":
            raise
        return hourly_aqi({k: v for k, v in means.items() if k != "so2"})


# ---------------------------------------------------------------- traffic


def segment_key(segment: str, direction: str | None) -> str:
    """The state key of a segment direction's lane windows."""
    return f"segment/{segment}" if direction is None else f"segment/{segment}/{direction}"


class TrafficStep:
    """Per segment direction and minute, GB/T 33171 congestion; per district, its TPI.

    State: one :class:`~stream.citystate.LaneWindows` per segment direction, under
    ``segment/<segment>/<direction>``. A traffic reading without a count or a speed
    is not rated (counted by the caller).
    """

    def __init__(self, registry: Registry, config: IndexConfig) -> None:
        self._registry = registry
        self._config = config
        self.lane_of: dict[str, tuple[str, str, str | None]] = {}
        for s in registry.sensors_of_kind(Kind.TRAFFIC):
            if s.segment is not None:
                direction = None if s.direction is None else str(s.direction)
                self.lane_of[s.id] = (segment_key(s.segment, direction), s.segment, direction)
        self.states: dict[str, LaneWindows] = {}
        self._key_of = {key: (seg, d) for key, seg, d in self.lane_of.values()}

    def add(self, reading: Reading) -> str | None:
        """Add an on-time traffic reading to its lane window; its key, or None if not rated."""
        lane = self.lane_of.get(reading.sensor_id)
        if lane is None:
            return None
        try:
            observation = LaneObservation.from_reading(reading)
        except TrafficError:
            return None
        key = lane[0]
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = LaneWindows()
        state.open.setdefault(window_end(reading.ts, MINUTE), []).append(observation)
        return key

    def due(self, watermark: datetime, keys: Iterable[str]) -> set[int]:
        """Window ends the watermark has passed, of these segment directions' keys."""
        mark = epoch_us(watermark)
        states = self.states
        return {
            end
            for key in keys
            if (state := states.get(key)) is not None
            for end in state.open
            if end * 1_000_000 < mark
        }

    def close(self, end: int, touched: set[str], keys: Iterable[str]) -> list[LinePoint]:
        """Rate the minute ending at ``end``: each of these keys with lanes in it, in order."""
        at = _end_time(end)
        points: list[LinePoint] = []
        by_district: dict[str, list[SegmentIndex]] = defaultdict(list)
        for key in keys:
            state = self.states.get(key)
            lanes = None if state is None else state.open.pop(end, None)
            if lanes is None:
                continue
            touched.add(key)
            segment_id, direction = self._key_of[key]
            segment = self._registry.road_segment(segment_id)
            index = segment_index(
                segment,
                lanes,
                ts=at,
                direction=direction,
                standstill_occupancy_pct=self._config.standstill_occupancy_pct,
            )
            points.append(segment_traffic_point(index, segment.district))
            by_district[segment.district].append(index)
        for district in sorted(by_district):
            points.append(district_traffic_point(district_index(district, by_district[district])))
        return points


# ---------------------------------------------------------------- scenic areas


class ScenicStep:
    """Each gate reading moves its area's occupancy; a ``scenic`` point per reading.

    State: one :class:`~stream.indices.scenic.OccupancyState` per area, under
    ``area/<id>``. A reading that only completes the previous operating day (or is
    older still) updates the state but gives no point, since the point's time is the
    area's latest reading and it would show the past day there. A crowd reading
    without entries or exits (a camera's count in view) is not applied.
    """

    def __init__(self, registry: Registry, config: IndexConfig) -> None:
        self._gate_of = {
            s.id: (s.area, s.gate or s.id)
            for s in registry.sensors_of_kind(Kind.CROWD)
            if s.area is not None
        }
        self._configs = {
            a.id: ScenicConfig.from_area(
                a,
                opens_at=config.scenic_opens_at.get(a.id, config.default_opens_at),
                utc_offset_h=config.utc_offset_h,
            )
            for a in registry.scenic_areas
        }
        self._district_of = {a.id: a.district for a in registry.scenic_areas}
        self.states: dict[str, OccupancyState] = {}

    def apply(self, reading: Reading) -> tuple[str, LinePoint | None] | None:
        """Fold a gate reading into its area: (area, point or None); None if not applied."""
        where = self._gate_of.get(reading.sensor_id)
        if where is None:
            return None
        area, gate = where
        try:
            counts = GateCounts.from_reading(reading, gate)
        except ScenicError:
            return None
        state, update = apply_occupancy(
            self.states.get(area, OccupancyState()), counts, self._configs[area]
        )
        self.states[area] = state
        if update.past_day or update.ignored:
            return area, None
        return area, scenic_point(update, self._district_of[area])


# ---------------------------------------------------------------- energy


class EnergyStep:
    """Each register reading gives the energy since the last; power against its baseline.

    State: per building, its meters' :class:`~stream.citystate.MeterState` (register
    and hour-of-week baseline), under ``building/<id>``. The baseline learns from
    normal and rollover steps only: a reset loses the energy before it and a gap's
    mean power spreads over hours the bucket does not cover.
    """

    def __init__(self, registry: Registry, config: IndexConfig) -> None:
        self._config = config
        self._where: dict[str, tuple[str, str, str, str]] = {}
        for s in registry.sensors_of_kind(Kind.ENERGY):
            if s.building is not None:
                district = registry.site(s.site).district
                self._where[s.id] = (s.id, s.building, s.site, district)
        self.states: dict[str, BuildingEnergy] = {}

    def apply(self, reading: Reading) -> tuple[str, LinePoint] | None:
        """Apply a meter reading with ``energy_kwh``: (building, point); None otherwise."""
        where = self._where.get(reading.sensor_id)
        kwh = reading.metrics.get("energy_kwh")
        if where is None or kwh is None:
            return None
        building = where[1]
        state = self.states.get(building)
        if state is None:
            state = self.states[building] = BuildingEnergy()
        meter = state.meters.get(reading.sensor_id, MeterState())
        try:
            register, step = consume(meter.register, reading.ts, kwh, self._config.register)
        except EnergyError:
            return None
        baseline, comparison = meter.baseline, None
        learns = step.step in (RegisterStep.NORMAL, RegisterStep.ROLLOVER) and step.gap_s is None
        if learns and step.mean_power_kw is not None and step.since is not None:
            baseline, comparison = update_baseline(
                baseline,
                reading.ts,
                step.mean_power_kw,
                self._config.baseline,
                interval_s=(reading.ts - step.since).total_seconds(),
            )
        state.meters[reading.sensor_id] = MeterState(register, baseline)
        return building, energy_point(step, where, comparison)

    def baseline_kw(self, meter: str, building: str, at: datetime) -> float | None:
        """A meter's warmed-up baseline at ``at``'s hour of the week, or None."""
        state = self.states.get(building)
        if state is None or meter not in state.meters:
            return None
        _, comparison = update_baseline(
            state.meters[meter].baseline, at, 0.0, self._config.baseline, learn=False
        )
        return comparison.baseline_kw


# ---------------------------------------------------------------- hotspots


class HotspotStep:
    """Every ``hotspot_every`` of event time: per district, the sites that stand out.

    Stations are ranked by their latest one-minute PM2.5, energy sites by their
    meters' latest one-minute power per square metre of their buildings (with the
    meters' baselines for ``self_z`` once warmed up). A district is ranked at a mark
    when one of its sites of that kind closed the minute that ends there, so a
    district ranked again after a takeover gets the same values.
    """

    def __init__(self, registry: Registry, config: IndexConfig, energy: EnergyStep) -> None:
        self._config = config
        self._energy = energy
        self._district_of = {s.id: s.district for s in registry.sites}
        self._sensors: dict[tuple[str, Kind], list[Sensor]] = defaultdict(list)
        for s in registry.sensors:
            self._sensors[s.site, s.kind].append(s)
        self._area: dict[str, float] = defaultdict(float)
        for b in registry.buildings:
            self._area[b.site] += b.floor_area_m2

    def points(
        self, end: int, closed: Sequence[tuple[str, Closed]], sites: Mapping[str, SiteAggregates]
    ) -> list[LinePoint]:
        """The hotspots of every district due at ``end`` (a multiple of ``hotspot_every``)."""
        if end % int(self._config.hotspot_every.total_seconds()):
            return []
        due = {
            (self._district_of[site], _HOTSPOT_METRICS[c.metric])
            for site, c in closed
            if c.size is MINUTE and c.sensor is not None and c.metric in _HOTSPOT_METRICS
        }
        now = _end_time(end)
        points: list[LinePoint] = []
        for metric, kind in _HOTSPOT_METRICS.items():
            districts = {d for d, k in due if k is kind}
            if not districts:
                continue
            values = [
                v
                for site in sorted(sites)
                if self._district_of[site] in districts
                for v in self._value(site, sites[site], kind, metric, now)
            ]
            for ranking in rank_hotspots(
                values, metric=metric, now=now, config=self._config.hotspots
            ):
                points += hotspot_points(ranking, kind.value)
        return points

    def _value(
        self, site: str, state: SiteAggregates, kind: Kind, metric: str, now: datetime
    ) -> list[SiteValue]:
        latest = [
            (s, state.latest[s.id][metric])
            for s in self._sensors[site, kind]
            if metric in state.latest.get(s.id, {})
        ]
        if not latest:
            return []
        ts = _end_time(max(end for _, (end, _) in latest))
        district = self._district_of[site]
        if kind is Kind.POLLUTION:
            mean = sum(v for _, (_, v) in latest) / len(latest)
            return [SiteValue(site, district, mean, ts)]
        area = self._area.get(site, 0.0)
        if area <= 0:
            return []
        watts = sum(v for _, (_, v) in latest)
        baselines = [self._energy.baseline_kw(s.id, s.building or "", now) for s, _ in latest]
        if all(b is not None for b in baselines):
            base = 1000.0 * sum(b for b in baselines if b is not None) / area
            spread = self._config.energy_baseline_spread * base
            return [SiteValue(site, district, watts / area, ts, base, spread)]
        return [SiteValue(site, district, watts / area, ts)]


# ---------------------------------------------------------------- together


_PREFIXES: Final = ("site/", "segment/", "area/", "building/")


class CityIndices:
    """Every city index step, their state by key, and which keys belong together.

    Args:
        registry: the site registry.
        config: how the indices are computed.
    """

    def __init__(
        self,
        registry: Registry,
        config: IndexConfig | None = None,
        precision: Precision = Precision.NS,
    ) -> None:
        self.config = config = config or IndexConfig()
        self.aggregates = AggregateStep(registry, precision)
        self.air = AirQualityStep(registry, config)
        self.traffic = TrafficStep(registry, config)
        self.scenic = ScenicStep(registry, config)
        self.energy = EnergyStep(registry, config)
        self.hotspots = HotspotStep(registry, config, self.energy)
        self.unrated = 0
        self._kinds = {s.id: s.kind for s in registry.sensors}
        site_district = {s.id: s.district for s in registry.sites}
        self._keys: dict[str, tuple[str, ...]] = {}
        district_of: dict[str, str] = {f"site/{s.id}": s.district for s in registry.sites}
        district_of |= {f"area/{a.id}": a.district for a in registry.scenic_areas}
        district_of |= {f"building/{b.id}": site_district[b.site] for b in registry.buildings}
        for s in registry.sensors:
            keys = [f"site/{s.site}"]
            if s.id in self.traffic.lane_of:
                key, segment, _ = self.traffic.lane_of[s.id]
                district_of[key] = registry.road_segment(segment).district
                keys.append(key)
            if s.kind is Kind.CROWD and s.area is not None:
                keys.append(f"area/{s.area}")
            if s.kind is Kind.ENERGY and s.building is not None:
                keys.append(f"building/{s.building}")
            self._keys[s.id] = tuple(keys)
        self._district_of_key = district_of
        groups: dict[str, list[str]] = defaultdict(list)
        for key, district in district_of.items():
            groups[district].append(key)
        self._groups = {d: tuple(sorted(keys)) for d, keys in groups.items()}
        # A key's home: the district of the first sensor (by id) that feeds it, where its
        # readings are routed; the district's watermark closes its windows.
        sensor_district = {s.id: site_district[s.site] for s in registry.sensors}
        home: dict[str, str] = {}
        for sensor_id in sorted(self._keys):
            for key in self._keys[sensor_id]:
                home.setdefault(key, sensor_district[sensor_id])
        self._home = {key: home.get(key, district) for key, district in district_of.items()}
        sites: dict[str, list[str]] = defaultdict(list)
        segments: dict[str, list[str]] = defaultdict(list)
        for key in sorted(self._home):
            kind, _, name = key.partition("/")
            if kind == "site":
                sites[self._home[key]].append(name)
            elif kind == "segment":
                segments[self._home[key]].append(key)
        self._sites_at = {d: tuple(names) for d, names in sites.items()}
        self._segments_at = {d: tuple(keys) for d, keys in segments.items()}
        self._crossing = frozenset(
            key
            for sensor_id, keys in self._keys.items()
            for key in keys
            if self._home[key] != sensor_district[sensor_id]
        )
        """Keys fed by a sensor of another district than their home's (a segment
        across a district line): its readings may open a window already due."""
        self._closed_at: dict[str, datetime] = {}
        """Per district, the watermark its windows were last closed at. An on-time
        reading opens no window the watermark has passed, so until the watermark moves
        (or state is restored, or a crossing key fed) none can be due."""

    # ------------------------------------------------------------ keys

    def keys_of(self, sensor_id: str) -> tuple[str, ...]:
        """The cross-sensor state keys a sensor's readings update."""
        return self._keys.get(sensor_id, ())

    def district_of_key(self, key: str) -> str:
        """The district a cross-sensor key belongs to; KeyError for an unknown key."""
        return self._district_of_key[key]

    def home_of_key(self, key: str) -> str:
        """The district whose readings feed a cross-sensor key first (by sensor id).

        Its readings are routed there, and that district's watermark closes the key's
        windows; it is the key's own district unless a segment or building lies across
        a district line. KeyError for an unknown key.
        """
        return self._home[key]

    def all_keys(self) -> tuple[str, ...]:
        """Every cross-sensor key of the registry."""
        return tuple(self._district_of_key)

    def keys_of_district(self, district: str) -> tuple[str, ...]:
        """Every cross-sensor key of a district, sorted: what is loaded together."""
        return self._groups.get(district, ())

    @staticmethod
    def is_key(key: str) -> bool:
        """Whether ``key`` names cross-sensor state (not a sensor id)."""
        return key.startswith(_PREFIXES)

    def snapshot(self, key: str) -> bytes:
        """A cross-sensor key's state as bytes (an empty state's if never touched).

        Raises:
            KeyError: the key is not one of the registry's.
        """
        if key not in self._district_of_key:
            raise KeyError(key)
        kind, _, name = key.partition("/")
        if kind == "site":
            return self.aggregates.states.get(name, SiteAggregates()).pack()
        if kind == "segment":
            return self.traffic.states.get(key, LaneWindows()).pack()
        if kind == "area":
            return pack_occupancy(self.scenic.states.get(name, OccupancyState()))
        return self.energy.states.get(name, BuildingEnergy()).pack()

    def drop(self, key: str) -> None:
        """Forget a cross-sensor key's state (another worker has taken it over).

        Raises:
            KeyError: the key is not one of the registry's.
        """
        if key not in self._district_of_key:
            raise KeyError(key)
        self._closed_at.pop(self._home[key], None)
        kind, _, name = key.partition("/")
        if kind == "site":
            self.aggregates.states.pop(name, None)
        elif kind == "segment":
            self.traffic.states.pop(key, None)
        elif kind == "area":
            self.scenic.states.pop(name, None)
        else:
            self.energy.states.pop(name, None)

    def restore(self, key: str, data: bytes) -> None:
        """Put back a cross-sensor key's state that :meth:`snapshot` gave.

        Raises:
            KeyError: the key is not one of the registry's.
            ValueError: the bytes are not such a state; nothing changed.
        """
        if key not in self._district_of_key:
            raise KeyError(key)
        self._closed_at.pop(self._home[key], None)
        kind, _, name = key.partition("/")
        if kind == "site":
            self.aggregates.states[name] = SiteAggregates.unpack(data)
        elif kind == "segment":
            self.traffic.states[key] = LaneWindows.unpack(data)
        elif kind == "area":
            self.scenic.states[name] = unpack_occupancy(data)
        else:
            self.energy.states[name] = BuildingEnergy.unpack(data)

    # ------------------------------------------------------------ steps

    def add(self, readings: Iterable[Reading], touched: set[str]) -> list[LinePoint]:
        """Apply on-time readings: scenic and energy points; windows fed."""
        points: list[LinePoint] = []
        for reading in readings:
            touched.add(f"site/{self.aggregates.add(reading)}")
            kind = self._kinds[reading.sensor_id]
            if kind is Kind.TRAFFIC:
                key = self.traffic.add(reading)
                if key is None:
                    self.unrated += 1
                else:
                    touched.add(key)
                    if key in self._crossing:
                        self._closed_at.pop(self._home[key], None)
            elif kind is Kind.CROWD:
                applied = self.scenic.apply(reading)
                if applied is None:
                    self.unrated += 1
                else:
                    area, point = applied
                    touched.add(f"area/{area}")
                    points += [] if point is None else [point]
            elif kind is Kind.ENERGY:
                used = self.energy.apply(reading)
                if used is not None:
                    building, point = used
                    touched.add(f"building/{building}")
                    points.append(point)
        return points

    def close(
        self, watermarks: Mapping[str, datetime], touched: set[str], lines: list[str]
    ) -> list[LinePoint]:
        """Close every window its district's watermark has passed: per district, oldest end first.

        ``watermarks`` is per district (:meth:`home_of_key`): each district's event time
        is its own, so a district read ahead of another never makes the other's
        readings late. The aggregates' lines are appended to ``lines`` (built
        directly, being many); the indices' points are returned.
        """
        points: list[LinePoint] = []
        states = self.aggregates.states
        for district in sorted(watermarks):
            mark = watermarks[district]
            if self._closed_at.get(district) == mark:
                continue  # nothing can have fallen due since
            self._closed_at[district] = mark
            sites = self._sites_at.get(district, ())
            segments = self._segments_at.get(district, ())
            ends = self.aggregates.due(mark, sites) | self.traffic.due(mark, segments)
            for end in sorted(ends):
                closed = self.aggregates.close(end, sites)
                touched.update(f"site/{site}" for site, _ in closed)
                lines += self.aggregates.lines(closed)
                points += self.air.points(end, closed)
                points += self.traffic.close(end, touched, segments)
                mine = {site: states[site] for site in sites if site in states}
                points += self.hotspots.points(end, closed, mine)
        return points

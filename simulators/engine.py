"""Run a scenario: every sensor of the city, simulated time, incidents, faults, ground truth.

:class:`City` builds one simulated device per sensor of the scenario's registry -- the
same drivers an edge agent loads -- on a shared simulated clock, injects the scenario's
incidents into the device models and its faults into the samples, and turns the samples
into readings with the edge agent's own window aggregation. Simulated time runs as fast
as the CPU allows (or paced by the caller), and the same scenario and seed give
byte-identical readings.

What was injected is known exactly: :attr:`City.truth` lists every incident and fault
with the sensors it touches and when, for scoring detectors (precision, recall, time to
detect). For a crowd surge it also lists when occupancy stood above 80, 90 and 100 % of
the area's instantaneous capacity, and for an accident when the queue had cleared.

How a sample becomes a reading: every ``sample_interval_s`` the clock steps and each
device is read; a gauge gives its value at that moment, an interval count the events
since the previous read. A sample covers the interval ending at its read, so it is
aggregated at the interval's middle; windows of ``publish_interval_s`` close as in the
edge agent (gauges averaged with min/max, counts summed, counters last).

>>> from simulators.scenario import parse_scenario
>>> city = City(parse_scenario('''
... version: 1
... name: a quiet hour
... start: 2024-10-08T08:00:00+08:00
... duration: 1h
... faults:
...   - {kind: dead, sensor: tr-canal-eb-1, start: 2024-10-08T08:30:00+08:00}
... '''))
>>> readings = list(city.run())
>>> len(readings), len({r.sensor_id for r in readings})
(1649, 28)
>>> sum(r.sensor_id == "tr-canal-eb-1" for r in readings)  # dead from 08:30
29
>>> city.truth[0].kind, city.truth[0].sensors
('dead', ('tr-canal-eb-1',))
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any, Final, TypeVar

from edge_agents.aggregate import Window, WindowAggregator
from edge_agents.drivers.base import Driver
from edge_agents.sampler import check_sample
from simulators.air_quality import (
    AirQualityOptions,
    AirQualityStationDriver,
    AmbientOptions,
    AmbientStationDriver,
    seed_of,
)
from simulators.base import Effect
from simulators.energy import BuildingType, EnergyMeterDriver, EnergyMeterOptions
from simulators.scenario import (
    ClockSkew,
    CounterReset,
    CrowdSurge,
    Dead,
    Drift,
    Dropout,
    EnergyLeak,
    Fault,
    Incident,
    LocalSource,
    NightLoad,
    OpeningHours,
    PollutionEpisode,
    Scenario,
    Spikes,
    Stuck,
    TrafficAccident,
    metrics_of,
    nights,
)
from simulators.scenic import GateCounterDriver, GateCounterOptions, ParkModel
from simulators.traffic import LaneModel, RoadClass, TrafficDetectorDriver, TrafficDetectorOptions
from telemetry import CATALOGUE, Kind, Reading
from telemetry.registry import Direction, Registry, Sensor

__all__ = ["OCCUPANCY_TIERS_PCT", "City", "SimClock", "TruthEntry"]

OCCUPANCY_TIERS_PCT: Final = (80, 90, 100)
"""The occupancy warning tiers, percent of instantaneous capacity (LB/T 034-2014 as cities
such as Haikou apply it), whose crossings a crowd surge's ground truth lists."""

# How an incident's factor reaches each pollutant: value * factor ** exponent. In a
# regional episode PM builds up with CO and NO2 (still, humid air) while O3 falls; a local
# burning source raises PM and some CO.
_EPISODE_EXPONENTS: Final = {
    "pm2_5": 1.0,
    "pm10": 0.9,
    "co": 0.6,
    "so2": 0.5,
    "no2": 0.35,
    "o3": -0.3,
}
_LOCAL_EXPONENTS: Final = {"pm2_5": 1.0, "pm10": 1.0, "co": 0.5}
_EARTH_RADIUS_KM: Final = 6371.0
_RECOVERY_SEARCH: Final = timedelta(hours=12)


class SimClock:
    """The simulated time every device of a city reads; the runner moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        """The simulated time."""
        return self.now


@dataclass(frozen=True)
class TruthEntry:
    """One injected incident or fault, as the ground-truth file lists it.

    Attributes:
        id: ``incident-N`` or ``fault-N`` (N counts from 1 in the scenario's order), with a
            suffix for what one incident implies (``incident-3-occupancy-90``).
        category: ``incident`` (something in the city) or ``fault`` (a broken sensor).
        kind: what it is: the scenario's ``kind``, or ``occupancy_over_80pct`` and the like.
        start: when it began.
        end: when it was over.
        description: in words.
        sensor: the one sensor it is about, if it is about one.
        area: the place it is about (a district, road segment, scenic area or building).
        area_type: what ``area`` is: ``district``, ``segment``, ``scenic_area``, ``building``.
        sensors: every sensor whose readings it changes.
        metrics: the metrics it changes.
    """

    id: str
    category: str
    kind: str
    start: datetime
    end: datetime
    description: str
    sensor: str | None = None
    area: str | None = None
    area_type: str | None = None
    sensors: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()

    def to_json(self) -> str:
        """One line of the ground-truth file."""
        return json.dumps(
            {
                "id": self.id,
                "category": self.category,
                "kind": self.kind,
                "sensor": self.sensor,
                "area": self.area,
                "area_type": self.area_type,
                "sensors": list(self.sensors),
                "metrics": list(self.metrics),
                "start": _iso(self.start),
                "end": _iso(self.end),
                "description": self.description,
            },
            ensure_ascii=False,
        )


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------- faults


@dataclass
class _SensorFaults:
    """The faults of one sensor, applied to its samples in order."""

    sensor_id: str
    kind: Kind
    seed: int
    interval_s: float
    faults: list[Fault]
    held: dict[int, dict[str, float]] = field(default_factory=dict)

    def _roll(self, index: int, ts: datetime) -> float:
        return random.Random(f"{self.seed}:{self.sensor_id}:{index}:{ts.isoformat()}").random()

    def silent(self, ts: datetime) -> bool:
        """Whether the device gives nothing at ``ts`` (dead, or this sample dropped)."""
        for index, fault in enumerate(self.faults):
            if fault.start <= ts < fault.end:
                if isinstance(fault, Dead):
                    return True
                if isinstance(fault, Dropout) and self._roll(index, ts) < fault.probability:
                    return True
        return False

    def apply(self, ts: datetime, sample: dict[str, float]) -> tuple[datetime, dict[str, float]]:
        """The sample as the faulty sensor reports it, and the time it stamps on it."""
        stamp = ts
        out = dict(sample)
        for index, fault in enumerate(self.faults):
            if not fault.start <= ts < fault.end:
                continue
            metrics = [m for m in metrics_of(fault, self.kind) if m in out]
            if isinstance(fault, Stuck):
                held = self.held.setdefault(index, {m: out[m] for m in metrics})
                out.update(held)
            elif isinstance(fault, Drift):
                days = (ts - fault.start).total_seconds() / 86_400
                for m in metrics:
                    out[m] *= 1.0 + fault.rate_per_day * days
            elif isinstance(fault, Spikes) and self._roll(index, ts) < fault.probability:
                for m in metrics:
                    out[m] *= fault.factor
            elif isinstance(fault, ClockSkew):
                stamp = ts + fault.offset
        return stamp, _clamped(self.kind, out, self.interval_s)


def _clamped(kind: Kind, sample: dict[str, float], interval_s: float) -> dict[str, float]:
    """Values held in their physical ranges for ``interval_s``, whole numbers kept whole."""
    out = {}
    for name, value in sample.items():
        spec = CATALOGUE[kind][name]
        low, high = spec.valid_range(interval_s)
        value = min(max(value, low), high)
        out[name] = float(math.floor(value)) if spec.integer else value
    return out


# ---------------------------------------------------------------- devices


Transform = Callable[[datetime, dict[str, float]], dict[str, float]]


@dataclass
class _Device:
    """One simulated sensor: its driver, what incidents do to its values, its faults."""

    sensor: Sensor
    driver: Driver[Any]
    faults: _SensorFaults
    aggregator: WindowAggregator
    transforms: list[Transform] = field(default_factory=list)
    seq: int = 0

    def step(self, ts: datetime, half_interval: timedelta) -> list[Reading]:
        if self.faults.silent(ts):
            return []
        sample = check_sample(self.sensor.kind, self.driver.read())
        for transform in self.transforms:
            sample = transform(ts, sample)
        stamp, sample = self.faults.apply(ts, sample)
        return self.readings(self.aggregator.add(stamp - half_interval, sample))

    def readings(self, windows: Sequence[Window]) -> list[Reading]:
        out = []
        for window in windows:
            out.append(
                Reading(
                    sensor_id=self.sensor.id,
                    kind=self.sensor.kind,
                    ts=window.end,
                    seq=self.seq,
                    interval_s=window.interval_s,
                    metrics=window.metrics,
                    stats=window.stats,
                )
            )
            self.seq += 1
        return out


def _factor_transform(effect: Effect, exponents: Mapping[str, float]) -> Transform:
    def transform(ts: datetime, sample: dict[str, float]) -> dict[str, float]:
        factor = effect.factor(ts)
        if factor == 1.0:
            return sample
        scaled = {m: v * factor ** exponents.get(m, 0.0) for m, v in sample.items()}
        return _clamped(Kind.POLLUTION, scaled, 0.0)

    return transform


def _seconds(of_day: time) -> float:
    return of_day.hour * 3600 + of_day.minute * 60 + of_day.second


def _distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lat, lon) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * _EARTH_RADIUS_KM * math.asin(math.sqrt(h))


# ---------------------------------------------------------------- the city


class City:
    """Every sensor of a scenario's city, with its incidents and faults injected.

    Args:
        scenario: the scenario to run.

    Attributes:
        clock: the simulated time the devices read.
        truth: every injected incident and fault (see :class:`TruthEntry`).
    """

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.file = file = scenario.file
        self.registry: Registry = scenario.registry
        self.clock = SimClock(file.start)
        self.truth: list[TruthEntry] = []
        self._devices: dict[str, _Device] = {}
        for sensor in self.registry.sensors:
            faults = [f for f in file.faults if f.sensor == sensor.id]
            self._devices[sensor.id] = _Device(
                sensor=sensor,
                driver=self._driver(sensor),
                faults=_SensorFaults(
                    sensor.id, sensor.kind, file.seed, file.sample_interval_s, faults
                ),
                aggregator=WindowAggregator(sensor.kind, file.publish_interval_s),
            )
        for number, incident in enumerate(file.incidents, start=1):
            self._inject(f"incident-{number}", incident)
        for number, fault in enumerate(file.faults, start=1):
            if isinstance(fault, CounterReset):
                driver = _as(self._devices[fault.sensor].driver, EnergyMeterDriver)
                driver.model = replace(driver.model, resets=(*driver.model.resets, fault.start))
            self.truth.append(self._fault_truth(f"fault-{number}", fault))
        # What starts after the span is not injected; what outlasts it ends with it.
        self.truth = [
            replace(entry, end=min(entry.end, file.end))
            for entry in self.truth
            if entry.start < file.end
        ]
        for device in self._devices.values():
            device.driver.open()

    @property
    def sensor_ids(self) -> list[str]:
        """Every simulated sensor, in the registry's order."""
        return list(self._devices)

    def driver(self, sensor_id: str) -> Driver[Any]:
        """The simulated device of a sensor, with the scenario's incidents in its model."""
        return self._devices[sensor_id].driver

    def run(self, *, until: datetime | None = None) -> Iterator[Reading]:
        """The readings of the whole span (or up to ``until``), in time order.

        Each step's readings come out together, so a caller may pace or publish them
        step by step. At the end, open windows are flushed.
        """
        file = self.file
        end = min(file.end, until) if until else file.end
        step = timedelta(seconds=file.sample_interval_s)
        half = step / 2
        ts = file.start + step
        while ts <= end:
            self.clock.now = ts
            for device in self._devices.values():
                yield from device.step(ts, half)
            ts += step
        for device in self._devices.values():
            yield from device.readings(device.aggregator.flush())

    # ------------------------------------------------------------ devices

    def _seed(self, *names: str) -> int:
        return seed_of(":".join((str(self.file.seed), *names)))

    def _driver(self, sensor: Sensor) -> Driver[Any]:
        file, registry = self.file, self.registry
        site = registry.site(sensor.site)
        tz = file.tz_offset_h
        if sensor.kind is Kind.POLLUTION:
            return AirQualityStationDriver(
                AirQualityOptions(
                    seed=self._seed(site.id),
                    district=f"{file.seed}:{site.district}",
                    region=f"{file.seed}:{file.region}",
                    tz_offset_h=tz,
                ),
                clock=self.clock,
            )
        if sensor.kind is Kind.AMBIENT:
            return AmbientStationDriver(
                AmbientOptions(
                    seed=self._seed(site.id),
                    district=f"{file.seed}:{site.district}",
                    region=f"{file.seed}:{file.region}",
                    tz_offset_h=tz,
                ),
                clock=self.clock,
            )
        if sensor.kind is Kind.TRAFFIC:
            segment = registry.road_segment(sensor.segment or "")
            direction = sensor.direction or Direction.NORTHBOUND
            inbound = direction in (Direction.NORTHBOUND, Direction.EASTBOUND)
            return TrafficDetectorDriver(
                TrafficDetectorOptions(
                    seed=self._seed(sensor.id),
                    segment=f"{file.seed}:{segment.id}",
                    direction=str(direction),
                    road_class=segment.road_class or RoadClass.ARTERIAL,
                    free_flow_speed_kmh=segment.free_flow_speed_kmh,
                    lanes=segment.lanes,
                    lane=sensor.lane or 1,
                    direction_bias=0.3 if inbound else -0.3,
                    tz_offset_h=tz,
                ),
                clock=self.clock,
            )
        if sensor.kind is Kind.CROWD:
            area = registry.scenic_area(sensor.area or "")
            hours = file.scenic_hours.get(area.id, OpeningHours())
            open_h = (_seconds(hours.closes_at) - _seconds(hours.opens_at)) / 3600
            turnover = area.capacity.daily / area.capacity.instantaneous
            return GateCounterDriver(
                GateCounterOptions(
                    seed=self._seed(sensor.id),
                    area=f"{file.seed}:{area.id}",
                    gate=sensor.gate or "",
                    gates=[gate.id for gate in area.gates],
                    instantaneous_capacity=area.capacity.instantaneous,
                    daily_capacity=area.capacity.daily,
                    opens_at=hours.opens_at,
                    closes_at=hours.closes_at,
                    mean_stay_h=max(0.5, open_h / max(turnover, 1.0)),
                    tz_offset_h=tz,
                ),
                clock=self.clock,
            )
        building = registry.building(sensor.building or "")
        return EnergyMeterDriver(
            EnergyMeterOptions(
                seed=self._seed(sensor.id),
                building_type=BuildingType(building.type),
                floor_area_m2=building.floor_area_m2,
                city=f"{file.seed}:{file.region}",
                tz_offset_h=tz,
                commissioned=file.start - timedelta(days=365),
                initial_kwh=float(self._seed(sensor.id, "register") % 400_000),
            ),
            clock=self.clock,
        )

    # ------------------------------------------------------------ incidents

    def _inject(self, name: str, incident: Incident) -> None:
        if isinstance(incident, PollutionEpisode):
            self._episode(name, incident)
        elif isinstance(incident, LocalSource):
            self._local_source(name, incident)
        elif isinstance(incident, TrafficAccident):
            self._accident(name, incident)
        elif isinstance(incident, CrowdSurge):
            self._surge(name, incident)
        else:
            self._load(name, incident)

    def _record(self, name: str, incident: Incident, description: str, **fields: Any) -> None:
        fields.setdefault("start", incident.start)
        fields.setdefault("end", incident.end)
        self.truth.append(
            TruthEntry(
                id=name,
                category="incident",
                kind=incident.kind,
                description=incident.description or description,
                **fields,
            )
        )

    def _episode(self, name: str, incident: PollutionEpisode) -> None:
        registry = self.registry
        stations = [
            s
            for s in registry.sensors_of_kind(Kind.POLLUTION)
            if registry.site(s.site).district == incident.district
        ]
        if not stations:
            return
        origin_sensor = next((s for s in stations if s.id == incident.origin), stations[0])
        origin = registry.site(origin_sensor.site)
        latest = incident.end
        for station in stations:
            site = registry.site(station.site)
            delay = timedelta(
                hours=_distance_km((origin.lat, origin.lon), (site.lat, site.lon))
                / incident.spread_kmh
            )
            effect = Effect(
                incident.start + delay,
                incident.end + delay,
                incident.peak_factor,
                incident.ramp.total_seconds(),
            )
            self._devices[station.id].transforms.append(
                _factor_transform(effect, _EPISODE_EXPONENTS)
            )
            latest = max(latest, effect.end)
        self._record(
            name,
            incident,
            f"pollution episode over {incident.district}, PM2.5 up to {incident.peak_factor:g}x,"
            f" from {origin_sensor.id} at {incident.spread_kmh:g} km/h",
            end=latest,
            area=incident.district,
            area_type="district",
            sensors=tuple(s.id for s in stations),
            metrics=tuple(_EPISODE_EXPONENTS),
        )

    def _local_source(self, name: str, incident: LocalSource) -> None:
        effect = Effect(
            incident.start, incident.end, incident.factor, incident.ramp.total_seconds()
        )
        self._devices[incident.sensor].transforms.append(
            _factor_transform(effect, _LOCAL_EXPONENTS)
        )
        self._record(
            name,
            incident,
            f"local source next to {incident.sensor}: PM up to {incident.factor:g}x,"
            " its neighbours normal",
            sensor=incident.sensor,
            sensors=(incident.sensor,),
            metrics=tuple(_LOCAL_EXPONENTS),
        )

    def _accident(self, name: str, incident: TrafficAccident) -> None:
        segment = self.registry.road_segment(incident.segment)
        direction = incident.direction or (
            segment.directions[0] if segment.directions else Direction.NORTHBOUND
        )
        lanes = [
            s
            for s in self.registry.sensors_of_segment(segment.id)
            if (s.direction or Direction.NORTHBOUND) == direction
        ]
        effect = Effect(
            incident.start, incident.end, incident.capacity_remaining, incident.ramp.total_seconds()
        )
        cleared = incident.end
        for lane in lanes:
            driver = _as(self._devices[lane.id].driver, TrafficDetectorDriver)
            model = replace(driver.model, capacity_drops=(*driver.model.capacity_drops, effect))
            driver.model = model
            cleared = max(cleared, _queue_cleared(model, incident.end))
        self._record(
            name,
            incident,
            f"accident on {segment.id} {direction}: capacity down to"
            f" {incident.capacity_remaining:.0%}; queue cleared {_iso(cleared)}",
            end=cleared,
            area=segment.id,
            area_type="segment",
            sensors=tuple(s.id for s in lanes),
            metrics=tuple(CATALOGUE[Kind.TRAFFIC]),
        )

    def _surge(self, name: str, incident: CrowdSurge) -> None:
        area = self.registry.scenic_area(incident.area)
        gates = self.registry.sensors_of_area(area.id)
        drivers = [_as(self._devices[g.id].driver, GateCounterDriver) for g in gates]
        if not drivers:
            return
        base = drivers[0].model
        capacity = area.capacity.instantaneous

        def with_factor(factor: float) -> ParkModel:
            effect = Effect(incident.start, incident.end, factor, incident.ramp.total_seconds())
            return replace(base, surges=(*base.surges, effect))

        minutes = [
            incident.start + timedelta(minutes=m)
            for m in range(int((incident.end - incident.start).total_seconds() // 60) + 1)
        ]

        def peak_pct(model: ParkModel) -> float:
            return 100.0 * max(model.occupancy_at(ts) for ts in minutes) / capacity

        low, high = 1.0, 2.0
        while peak_pct(with_factor(high)) < incident.peak_pct and high < 200:
            low, high = high, high * 2
        for _ in range(12):
            middle = (low + high) / 2
            low, high = (
                (middle, high)
                if peak_pct(with_factor(middle)) < incident.peak_pct
                else (low, middle)
            )
        model = with_factor(high)
        for driver in drivers:  # the gates of one area share one visitor process
            driver.model = model
        reached = peak_pct(model)
        self._record(
            name,
            incident,
            f"crowd surge at {area.id}: arrivals x{high:.2f}, occupancy peaking at"
            f" {reached:.0f} % of {capacity}",
            area=area.id,
            area_type="scenic_area",
            sensors=tuple(g.id for g in gates),
            metrics=("entries", "exits"),
        )
        self._tiers(name, incident, model, capacity, [g.id for g in gates])

    def _tiers(
        self, name: str, incident: CrowdSurge, model: ParkModel, capacity: int, sensors: list[str]
    ) -> None:
        """Ground truth of each occupancy tier crossed: when occupancy stood above it."""
        horizon = incident.end + timedelta(hours=24)
        minutes = int((horizon - incident.start).total_seconds() // 60)
        times = [incident.start + timedelta(minutes=m) for m in range(minutes + 1)]
        levels = [(ts, 100.0 * model.occupancy_at(ts) / capacity) for ts in times]
        for tier in OCCUPANCY_TIERS_PCT:
            above_since: datetime | None = None
            run = 0
            for ts, pct in levels:
                if pct >= tier and above_since is None:
                    above_since = ts
                elif pct < tier and above_since is not None:
                    run += 1
                    self.truth.append(
                        TruthEntry(
                            id=f"{name}-occupancy-{tier}" + (f"-{run}" if run > 1 else ""),
                            category="incident",
                            kind=f"occupancy_over_{tier}pct",
                            start=above_since,
                            end=ts,
                            description=f"occupancy of {incident.area} at or above {tier} %"
                            f" of its instantaneous capacity {capacity}",
                            area=incident.area,
                            area_type="scenic_area",
                            sensors=tuple(sensors),
                            metrics=("entries", "exits"),
                        )
                    )
                    above_since = None

    def _load(self, name: str, incident: EnergyLeak | NightLoad) -> None:
        meters = self.registry.sensors_of_building(incident.building)
        if isinstance(incident, EnergyLeak):
            effects = [
                Effect(
                    incident.start,
                    incident.end,
                    incident.extra_kw * 1000,
                    incident.ramp.total_seconds(),
                )
            ]
            what = f"energy leak at {incident.building}: +{incident.extra_kw:g} kW day and night"
        else:
            effects = [
                Effect(on, off, incident.extra_kw * 1000)
                for on, off in nights(incident, self.file.tz_offset_h)
            ]
            what = (
                f"load left running at night at {incident.building}: +{incident.extra_kw:g} kW"
                f" from {incident.night_start:%H:%M} to {incident.night_end:%H:%M}"
            )
        for meter in meters:
            driver = _as(self._devices[meter.id].driver, EnergyMeterDriver)
            driver.model = replace(driver.model, extra_loads=(*driver.model.extra_loads, *effects))
        self._record(
            name,
            incident,
            what,
            area=incident.building,
            area_type="building",
            sensors=tuple(m.id for m in meters),
            metrics=("power_w", "energy_kwh", "current_a"),
        )

    def _fault_truth(self, name: str, fault: Fault) -> TruthEntry:
        kind = self.registry.sensor(fault.sensor).kind
        end = min(fault.end, self.file.end) if isinstance(fault, Dead) else fault.end
        details = {
            "stuck": "repeats its value",
            "drift": f"drifts by {getattr(fault, 'rate_per_day', 0):+.0%} a day",
            "spikes": f"spikes x{getattr(fault, 'factor', 0):g} with probability"
            f" {getattr(fault, 'probability', 0):g}",
            "dropout": f"loses samples with probability {getattr(fault, 'probability', 0):g}",
            "clock_skew": f"stamps readings {getattr(fault, 'offset', 0)} off",
            "dead": "is dead: no readings",
            "counter_reset": "has its register reset to zero",
        }
        return TruthEntry(
            id=name,
            category="fault",
            kind=fault.kind,
            start=fault.start,
            end=end,
            description=fault.description or f"{fault.sensor} {details[fault.kind]}",
            sensor=fault.sensor,
            sensors=(fault.sensor,),
            metrics=metrics_of(fault, kind),
        )


_DriverT = TypeVar("_DriverT", bound=Driver[Any])


def _as(driver: Driver[Any], cls: type[_DriverT]) -> _DriverT:
    """The driver as the class its sensor's kind implies."""
    if not isinstance(driver, cls):
        msg = f"expected a {cls.__name__}, got {type(driver).__name__}"
        raise TypeError(msg)
    return driver


def _queue_cleared(model: LaneModel, after: datetime) -> datetime:
    """The first minute from ``after`` at which the lane's queue is gone."""
    ts = after
    limit = after + _RECOVERY_SEARCH
    while ts < limit:
        if model.state(ts, ts + timedelta(minutes=1)).queue_veh <= 0:
            return ts
        ts += timedelta(minutes=1)
    return limit

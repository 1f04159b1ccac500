"""Scenario files: a simulated city, a time span, and the incidents and faults to inject.

A scenario is YAML that names a site registry (the city), when to simulate, and what goes
wrong: pollution episodes and local sources, traffic accidents, crowd surges, energy
leaks and loads left running at night, and sensor faults (stuck, drift, spikes, dropout,
clock skew, dead). :func:`load_scenario` validates it against the registry and reports
every mistake at once with its line, e.g.
``city.yaml:14:13: incidents[0].segment: unknown road segment 'seg-ring' (did you mean
'seg-ring-east-k3'?)``. :mod:`simulators.engine` runs it and writes the ground truth.

Times are ISO 8601 with a zone (``2024-10-01T08:00:00+08:00``); durations are seconds or
text such as ``90s``, ``45m``, ``3h``, ``1d12h`` (a leading ``-`` for a clock that runs
behind). ``simulators/examples/golden-week.yaml`` is a complete, commented example.

>>> scenario = parse_scenario('''
... version: 1
... name: one accident
... start: 2024-10-08T07:00:00+08:00
... duration: 3h
... incidents:
...   - {kind: traffic_accident, segment: seg-hubin-road, start: 2024-10-08T08:00:00+08:00,
...      duration: 40m}
... ''')
>>> scenario.file.incidents[0].end.isoformat()
'2024-10-08T08:40:00+08:00'
>>> scenario.registry.road_segment("seg-hubin-road").lanes
2
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from telemetry import CATALOGUE, Kind
from telemetry.documents import (
    DocumentError,
    Finding,
    Loc,
    Locator,
    known_hint,
    load_document,
    parse_document,
)
from telemetry.ids import Identifier
from telemetry.registry import Direction, Registry, load_example_registry, load_registry

__all__ = [
    "ClockSkew",
    "CounterReset",
    "CrowdSurge",
    "Dead",
    "Drift",
    "Dropout",
    "EnergyLeak",
    "Fault",
    "Incident",
    "LocalSource",
    "NightLoad",
    "OpeningHours",
    "PollutionEpisode",
    "Scenario",
    "ScenarioError",
    "ScenarioFile",
    "Spikes",
    "Stuck",
    "TrafficAccident",
    "load_scenario",
    "metrics_of",
    "nights",
    "parse_duration",
    "parse_scenario",
]

EXAMPLE_REGISTRY: Final = "example"
"""The ``registry`` value that names the example city shipped with ``telemetry``."""

_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>[dhms])")
_UNIT_S: Final = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}


class ScenarioError(DocumentError):
    """A scenario file that cannot be used: every problem, each with its place."""


def parse_duration(value: object) -> object:
    """Read ``90``, ``"90s"``, ``"45m"``, ``"3h"``, ``"1d12h"`` or ``"-5m"`` as a timedelta.

    Anything else is returned unchanged for pydantic to refuse (or to read as ISO 8601).

    >>> parse_duration("1d12h"), parse_duration("-90s"), parse_duration(30)
    (datetime.timedelta(days=1, seconds=43200), datetime.timedelta(days=-1, seconds=86310), datetime.timedelta(seconds=30))
    """  # noqa: E501 - a doctest's output is one line
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and math.isfinite(value):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        text = text.lstrip("+-")
        parts = list(_DURATION.finditer(text))
        if parts and "".join(part.group(0) for part in parts) == text:
            seconds = sum(float(p["number"]) * _UNIT_S[p["unit"]] for p in parts)
            return timedelta(seconds=sign * seconds)
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A length of time: seconds, or text like ``45m``, ``3h``, ``1d12h``."""


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        msg = f"must be a positive duration, not {value}"
        raise ValueError(msg)
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Timed(_Item):
    """Something that happens over a span of the scenario.

    Attributes:
        start: when it begins.
        duration: how long it lasts.
        description: words for the ground truth; a sensible one is made if omitted.
    """

    start: AwareDatetime
    duration: PositiveDuration
    description: Annotated[str, Field(max_length=500)] | None = None

    @property
    def end(self) -> datetime:
        """When it is over: ``start + duration``."""
        return self.start + self.duration


# ---------------------------------------------------------------- incidents


class PollutionEpisode(_Timed):
    """A regional pollution episode over a district, reaching each station in turn.

    Particulate matter builds up over ``ramp`` to ``peak_factor`` times its usual level,
    holds, and clears; the front starts at ``origin`` and reaches a station ``distance /
    spread_kmh`` hours later, so neighbours see it one after the other.

    Attributes:
        district: the district affected (every pollution sensor in it).
        origin: the pollution sensor where it starts; the district's first by default.
        peak_factor: PM2.5 at the peak over its usual level.
        spread_kmh: how fast the front moves between stations.
        ramp: how long it takes to build up (and to clear).
    """

    kind: Literal["pollution_episode"]
    district: Identifier
    origin: Identifier | None = None
    peak_factor: Annotated[float, Field(gt=1, le=50)] = 3.0
    spread_kmh: Annotated[float, Field(gt=0, le=200)] = 4.0
    ramp: Duration = timedelta(hours=6)


class LocalSource(_Timed):
    """A local source next to one station (illegal burning): it reads high, its neighbours not.

    Attributes:
        sensor: the pollution sensor next to the source.
        factor: PM2.5 and PM10 over their usual level (CO rises less).
        ramp: how long it takes to flare up (and to die down).
    """

    kind: Literal["local_source"]
    sensor: Identifier
    factor: Annotated[float, Field(gt=1, le=100)] = 6.0
    ramp: Duration = timedelta(minutes=15)


class TrafficAccident(_Timed):
    """An accident that blocks lanes of one direction of a road segment.

    The lanes' capacity drops to ``capacity_remaining``; a queue builds, speed collapses
    and occupancy jumps at the segment's detectors until the queue has cleared after the
    accident (which may be well after ``end``).

    Attributes:
        segment: the road segment.
        direction: the direction blocked; the segment's first by default.
        capacity_remaining: the share of capacity left while it lasts.
        ramp: how long until the lanes are fully blocked (and reopened).
    """

    kind: Literal["traffic_accident"]
    segment: Identifier
    direction: Direction | None = None
    capacity_remaining: Annotated[float, Field(gt=0, lt=1)] = 0.25
    ramp: Duration = timedelta(minutes=2)


class CrowdSurge(_Timed):
    """A holiday crowd at a scenic area, filling it to ``peak_pct`` % of its capacity.

    The arrival rate is multiplied by the factor that brings the simulated occupancy's
    peak in the span to ``peak_pct`` (found by search); the ground truth then also lists
    when occupancy stood above 80, 90 and 100 % (the LB/T 034 warning tiers).

    Attributes:
        area: the scenic area.
        peak_pct: the peak occupancy to reach, percent of instantaneous capacity.
        ramp: how long the surge takes to build up (and to fade).
    """

    kind: Literal["crowd_surge"]
    area: Identifier
    peak_pct: Annotated[float, Field(gt=0, le=300)] = 105.0
    ramp: Duration = timedelta(hours=1)


class EnergyLeak(_Timed):
    """A load that should not be there, running day and night (a leak, a stuck chiller).

    Attributes:
        building: the metered building.
        extra_kw: the added active power.
        ramp: how long it takes to reach ``extra_kw``.
    """

    kind: Literal["energy_leak"]
    building: Identifier
    extra_kw: Annotated[float, Field(gt=0, le=100_000)]
    ramp: Duration = timedelta(0)


class NightLoad(_Timed):
    """Equipment left running at night: a load added every night of the span.

    Attributes:
        building: the metered building.
        extra_kw: the added active power.
        night_start: local time the load comes on each night.
        night_end: local time it goes off the next morning.
    """

    kind: Literal["night_load"]
    building: Identifier
    extra_kw: Annotated[float, Field(gt=0, le=100_000)]
    night_start: time = time(22, 0)
    night_end: time = time(6, 0)


Incident = Annotated[
    PollutionEpisode | LocalSource | TrafficAccident | CrowdSurge | EnergyLeak | NightLoad,
    Field(discriminator="kind"),
]
"""An incident in the city, by its ``kind``."""


# ---------------------------------------------------------------- sensor faults


class _Fault(_Timed):
    """A fault of one sensor.

    Attributes:
        sensor: the faulty sensor.
        metric: the metric affected; every metric of the sensor when omitted.
    """

    sensor: Identifier
    metric: str | None = None


class Stuck(_Fault):
    """The sensor repeats the value it had when the fault began."""

    kind: Literal["stuck"]


class Drift(_Fault):
    """The reading drifts away from the truth by ``rate_per_day`` of it per day.

    Attributes:
        rate_per_day: the relative error added per day (0.2: 20 % high after a day,
            negative for a sensor that reads low).
    """

    kind: Literal["drift"]
    rate_per_day: Annotated[float, Field(ge=-0.9, le=10)] = 0.2


class Spikes(_Fault):
    """Now and then a sample is ``factor`` times the truth (electrical noise, a bad cable).

    Attributes:
        probability: the chance of each sample being a spike.
        factor: how far a spike is off.
    """

    kind: Literal["spikes"]
    probability: Annotated[float, Field(gt=0, le=1)] = 0.05
    factor: Annotated[float, Field(gt=0, le=1000)] = 5.0


class Dropout(_Fault):
    """Samples are lost (a flaky link): each with ``probability``; 1 for a clean gap.

    Interval counts are not lost: the device keeps counting and the next read that
    gets through carries them, as a real counter would.
    """

    kind: Literal["dropout"]
    probability: Annotated[float, Field(gt=0, le=1)] = 1.0


class ClockSkew(_Fault):
    """The sensor's readings are stamped ``offset`` off the true time.

    Attributes:
        offset: how far ahead the sensor's clock runs (negative: behind).
    """

    kind: Literal["clock_skew"]
    offset: Duration

    @model_validator(mode="after")
    def _offset_not_zero(self) -> ClockSkew:
        if not self.offset:
            msg = "a clock skew's offset must not be zero"
            raise ValueError(msg)
        return self


class Dead(_Fault):
    """The sensor stops for good (or for ``duration``): no readings at all."""

    kind: Literal["dead"]
    duration: PositiveDuration = timedelta(days=3650)


class CounterReset(_Fault):
    """An energy meter's register is cleared to zero at ``start``; it counts on from there."""

    kind: Literal["counter_reset"]
    duration: PositiveDuration = timedelta(minutes=1)


Fault = Annotated[
    Stuck | Drift | Spikes | Dropout | ClockSkew | Dead | CounterReset,
    Field(discriminator="kind"),
]
"""A sensor fault, by its ``kind``."""


class OpeningHours(_Item):
    """When a scenic area is open, local time; the registry does not say.

    The mean stay follows from the registry's capacities (LB/T 034): the opening hours
    divided by the daily turnover (daily / instantaneous capacity).
    """

    opens_at: time = time(6, 0)
    closes_at: time = time(21, 30)

    @model_validator(mode="after")
    def _closes_after_opening(self) -> OpeningHours:
        if self.closes_at <= self.opens_at:
            msg = f"closes_at {self.closes_at} is not after opens_at {self.opens_at}"
            raise ValueError(msg)
        return self


class ScenarioFile(_Item):
    """A scenario file as written.

    Attributes:
        version: the format's version, always 1.
        name: a short name, shown while it runs.
        description: what the scenario is for.
        registry: the site registry: a path relative to the scenario file, or
            ``example`` for the example city.
        seed: makes every simulated value reproducible.
        start: the first simulated moment.
        duration: how long to simulate.
        sample_interval_s: how often every device is read, in simulated seconds.
        publish_interval_s: each reading's window; a multiple of the sample interval.
        tz_offset_h: the city's local time offset from UTC (daily cycles follow it).
        region: the name of the region: stations of one region share weather.
        scenic_hours: opening hours per scenic area id (default 06:00 to 21:30).
        incidents: what happens in the city.
        faults: what goes wrong with sensors.
    """

    version: Literal[1]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str = ""
    registry: Annotated[str, Field(min_length=1)] = EXAMPLE_REGISTRY
    seed: int = 0
    start: AwareDatetime
    duration: PositiveDuration
    sample_interval_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    publish_interval_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    tz_offset_h: Annotated[float, Field(ge=-14, le=14)] = 8.0
    region: Annotated[str, Field(min_length=1)] = "city"
    scenic_hours: dict[Identifier, OpeningHours] = {}
    incidents: list[Incident] = []
    faults: list[Fault] = []

    @property
    def end(self) -> datetime:
        """The end of the simulated span."""
        return self.start + self.duration

    @field_validator("publish_interval_s")
    @classmethod
    def _windows_fit(cls, value: float, info: ValidationInfo) -> float:
        sample = info.data.get("sample_interval_s")
        if sample is None:
            return value
        ratio = value / sample
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
            msg = f"{value:g} must be a whole multiple of sample_interval_s ({sample:g})"
            raise ValueError(msg)
        return value


@dataclass(frozen=True)
class Scenario:
    """A validated scenario with the registry it runs on.

    Attributes:
        file: the scenario as written.
        registry: the city.
        source: where it came from (a file name or ``<string>``).
    """

    file: ScenarioFile
    registry: Registry
    source: str

    def with_seed(self, seed: int) -> Scenario:
        """The same scenario with another seed."""
        return Scenario(self.file.model_copy(update={"seed": seed}), self.registry, self.source)

    def until(self, end: datetime) -> Scenario:
        """The same scenario cut short at ``end`` (never extended past its own end)."""
        duration = min(self.file.duration, end - self.file.start)
        if duration <= timedelta(0):
            msg = f"--until {end.isoformat()} is not after the start {self.file.start.isoformat()}"
            raise ValueError(msg)
        return Scenario(
            self.file.model_copy(update={"duration": duration}), self.registry, self.source
        )


def parse_scenario(text: str, source: str = "<string>", *, base: Path | None = None) -> Scenario:
    """Read a scenario from YAML text; its registry path is relative to ``base``.

    Raises:
        ScenarioError: every problem, with its line, column and YAML path.
    """
    checker = _Checker(base or Path.cwd())
    file = parse_document(
        text,
        source,
        ScenarioFile,
        what="scenario",
        cross_check=checker.run,
        error=ScenarioError,
    )
    return Scenario(file, checker.loaded(), source)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file; its registry path is relative to the file.

    Raises:
        ScenarioError: the file cannot be read, or every problem in it with its place.
    """
    checker = _Checker(Path(path).parent)
    file = load_document(
        path, ScenarioFile, what="scenario", cross_check=checker.run, error=ScenarioError
    )
    return Scenario(file, checker.loaded(), str(path))


class _Checker:
    """Checks a scenario's ids against its registry, on the raw YAML data."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.registry: Registry | None = None

    def loaded(self) -> Registry:
        """The registry, once :meth:`run` loaded it (a failure to load is a problem)."""
        if self.registry is None:
            msg = "the scenario's registry was not loaded"
            raise RuntimeError(msg)
        return self.registry

    def run(self, data: Mapping[str, Any], locator: Locator) -> Iterator[Finding]:
        name = data.get("registry", EXAMPLE_REGISTRY)
        if not isinstance(name, str):
            return
        try:
            if name == EXAMPLE_REGISTRY:
                self.registry = load_example_registry()
            else:
                self.registry = load_registry(self.base / name)
        except DocumentError as error:
            first = error.problems[0] if error.problems else "unreadable"
            yield Finding(("registry",), f"the registry cannot be loaded: {first}", name)
            return
        registry = self.registry
        for section in ("incidents", "faults"):
            items = data.get(section)
            if isinstance(items, list):
                for index, item in enumerate(items):
                    if isinstance(item, Mapping):
                        yield from self.check_item(registry, (section, index), item)
        hours = data.get("scenic_hours")
        if isinstance(hours, Mapping):
            areas = [area.id for area in registry.scenic_areas]
            for area in hours:
                if area not in areas:
                    message = f"unknown scenic area {area!r}{known_hint(str(area), areas)}"
                    yield Finding(("scenic_hours", str(area)), message, area, at_key=True)

    def check_item(
        self, registry: Registry, loc: Loc, item: Mapping[str, Any]
    ) -> Iterator[Finding]:
        kinds = {
            "district": ("district", [d.id for d in registry.districts]),
            "segment": ("road segment", [s.id for s in registry.road_segments]),
            "area": ("scenic area", [a.id for a in registry.scenic_areas]),
            "building": ("building", [b.id for b in registry.buildings]),
        }
        for key, (what, known) in kinds.items():
            value = item.get(key)
            if isinstance(value, str) and value not in known:
                yield Finding(
                    (*loc, key), f"unknown {what} {value!r}{known_hint(value, known)}", value
                )
        if item.get("kind") in ("local_source", "pollution_episode"):
            yield from self.pollution_sensor(registry, loc, item)
        sensor_id = item.get("sensor")
        if loc[0] == "faults" and isinstance(sensor_id, str):
            yield from self.fault_sensor(
                registry, loc, sensor_id, item.get("metric"), item.get("kind")
            )
        segment_id, direction = item.get("segment"), item.get("direction")
        if isinstance(segment_id, str) and isinstance(direction, str):
            segment = next((s for s in registry.road_segments if s.id == segment_id), None)
            if segment is not None and segment.directions and direction not in segment.directions:
                known = [str(d) for d in segment.directions]
                message = (
                    f"segment {segment_id!r} has no direction {direction!r}"
                    f" (it has {', '.join(known)})"
                )
                yield Finding((*loc, "direction"), message, direction)

    def pollution_sensor(
        self, registry: Registry, loc: Loc, item: Mapping[str, Any]
    ) -> Iterator[Finding]:
        key = "sensor" if item.get("kind") == "local_source" else "origin"
        value = item.get(key)
        if not isinstance(value, str):
            return
        pollution = registry.sensors_of_kind(Kind.POLLUTION)
        district = item.get("district")
        if isinstance(district, str):
            pollution = tuple(s for s in pollution if registry.site(s.site).district == district)
        known = [s.id for s in pollution]
        if value not in known:
            where = f" in district {district!r}" if isinstance(district, str) else ""
            message = f"no pollution sensor {value!r}{where}{known_hint(value, known)}"
            yield Finding((*loc, key), message, value)

    def fault_sensor(
        self, registry: Registry, loc: Loc, sensor_id: str, metric: object, fault_kind: object
    ) -> Iterator[Finding]:
        if not registry.has_sensor(sensor_id):
            known = [s.id for s in registry.sensors]
            yield Finding(
                (*loc, "sensor"),
                f"unknown sensor {sensor_id!r}{known_hint(sensor_id, known)}",
                sensor_id,
            )
            return
        kind = registry.sensor(sensor_id).kind
        if fault_kind == "counter_reset" and kind is not Kind.ENERGY:
            message = f"only an energy meter has a register to reset; {sensor_id!r} is {kind}"
            yield Finding((*loc, "sensor"), message, sensor_id)
        if isinstance(metric, str) and metric not in CATALOGUE[kind]:
            known = list(CATALOGUE[kind])
            message = f"a {kind} sensor has no metric {metric!r}{known_hint(metric, known)}"
            yield Finding((*loc, "metric"), message, metric)


def metrics_of(fault: Fault, kind: Kind) -> tuple[str, ...]:
    """The metrics a fault touches: its ``metric``, or every metric of the sensor's kind."""
    return (fault.metric,) if fault.metric else tuple(CATALOGUE[kind])


def nights(load: NightLoad, tz_offset_h: float) -> Iterable[tuple[datetime, datetime]]:
    """Each night of a night load: ``night_start`` to ``night_end`` local, within its span."""
    offset = timedelta(hours=tz_offset_h)
    local_day = (load.start + offset).date() - timedelta(days=1)
    while True:
        on = datetime.combine(local_day, load.night_start, UTC) - offset
        off_day = local_day + timedelta(days=1 if load.night_end <= load.night_start else 0)
        off = datetime.combine(off_day, load.night_end, UTC) - offset
        if on >= load.end:
            return
        begin, finish = max(on, load.start), min(off, load.end)
        if begin < finish:
            yield begin, finish
        local_day += timedelta(days=1)

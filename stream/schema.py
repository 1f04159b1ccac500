"""What the stream writes to InfluxDB: every measurement, its tags and its typed fields.

One table (:data:`MEASUREMENTS`) is the contract with the Grafana boards: the README
prints it, the dashboards' queries are checked against it, and the point builders
here are the only code that makes points. A field always keeps its type (an integer
metric is always written as an integer, a gauge always as a float), so InfluxDB never
refuses a write for a type conflict.

A point is identified by its measurement, tags and timestamp, so writing the same
reading twice overwrites it: replays after a crash never double anything.

What the stream writes:

* per reading: the raw reading (one measurement per kind), its ``anomaly`` scores,
  and for a gate counter its area's ``scenic`` figures, for a meter its ``energy_use``;
* per closed window (event time, stamped at the window's end, as a reading is
  stamped at the end of its interval): ``agg_1m`` and ``agg_1h`` per sensor and site
  and metric; ``aqi`` per station and district every hour; ``traffic_index`` per road
  segment and direction and per district every minute; ``hotspot`` per district and
  kind every five minutes;
* per gateway status message: ``gateway``.

>>> from datetime import UTC, datetime
>>> from telemetry import Kind, Reading
>>> r = Reading(sensor_id="aq-1", kind=Kind.POLLUTION, seq=7,
...             ts=datetime(2024, 11, 8, 8, 0, tzinfo=UTC), metrics={"pm2_5": 35.0})
>>> point = reading_point(r, SensorTags(site="st-1", district="lakeside", gateway="gw-1"))
>>> point.measurement, point.fields, point.ts_ns
('pollution', {'pm2_5': 35.0, 'seq': 7}, 1731052800000000000)
>>> point.tags
{'sensor': 'aq-1', 'site': 'st-1', 'district': 'lakeside', 'gateway': 'gw-1'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from stream.aggregate import HOUR, MINUTE, Closed, WindowSize
from stream.indices.aqi import AqiResult, Pollutant
from stream.indices.energy import BaselineComparison, Consumption, RegisterStep
from stream.indices.hotspots import DistrictRanking, Hotspot
from stream.indices.scenic import OccupancyUpdate
from stream.indices.traffic import DistrictIndex, SegmentIndex
from stream.sinks.lineprotocol import FieldValue, LinePoint, timestamp_ns
from telemetry import CATALOGUE, GatewayStatus, Kind, Reading
from telemetry.registry import Registry

__all__ = [
    "AGG_1H",
    "AGG_1M",
    "AQI",
    "ENERGY_USE",
    "HOTSPOT",
    "HOURLY_POLLUTANTS",
    "MEASUREMENTS",
    "SCENIC",
    "TRAFFIC_INDEX",
    "FieldSpec",
    "MeasurementSpec",
    "SensorTags",
    "aggregate_point",
    "anomaly_point",
    "district_aqi_point",
    "district_traffic_point",
    "energy_point",
    "gateway_point",
    "hotspot_points",
    "reading_point",
    "scenic_point",
    "segment_traffic_point",
    "sensor_tags",
    "station_aqi_point",
]

FieldType = Literal["float", "integer", "string"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a measurement: its name, InfluxDB type, unit and meaning."""

    name: str
    type: FieldType
    unit: str
    description: str


@dataclass(frozen=True, slots=True)
class MeasurementSpec:
    """One measurement: what a point of it is, its tags and its fields."""

    name: str
    point: str
    tags: tuple[str, ...]
    fields: tuple[FieldSpec, ...]

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``; KeyError if the measurement has none."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


_SENSOR_TAGS = ("sensor", "site", "district", "gateway")
_KIND_TAGS: Mapping[Kind, tuple[str, ...]] = {
    Kind.TRAFFIC: ("segment", "direction", "lane"),
    Kind.CROWD: ("area", "gate"),
    Kind.ENERGY: ("building",),
}


def _reading_measurement(kind: Kind) -> MeasurementSpec:
    metrics = tuple(
        FieldSpec(
            spec.name,
            "integer" if spec.integer else "float",
            spec.unit,
            spec.description,
        )
        for spec in CATALOGUE[kind].values()
    )
    return MeasurementSpec(
        name=kind.value,
        point=f"one {kind.value} reading (the mean of a gauge over the reading's interval)",
        tags=(*_SENSOR_TAGS, *_KIND_TAGS.get(kind, ())),
        fields=(
            *metrics,
            FieldSpec("seq", "integer", "1", "the sensor's sequence number of the reading"),
        ),
    )


ANOMALY = MeasurementSpec(
    name="anomaly",
    point="the anomaly scores of one reading's metrics",
    tags=("sensor", "kind", "district"),
    fields=(
        FieldSpec("score", "float", "0-1", "the highest calibrated score of the reading's metrics"),
        FieldSpec("metric", "string", "", "the metric with the highest score"),
        FieldSpec("detector", "string", "", "the detector behind the highest score"),
        FieldSpec("raw", "float", "detector's", "that detector's own score"),
        *(
            FieldSpec(f"score_{name}", "float", "0-1", f"the calibrated score of {name}")
            for name in sorted({m for metrics in CATALOGUE.values() for m in metrics})
        ),
    ),
)

GATEWAY = MeasurementSpec(
    name="gateway",
    point="one status message of a gateway (birth, heartbeat or last will)",
    tags=("gateway", "site", "district"),
    fields=(
        FieldSpec("online", "integer", "1", "1 online, 0 offline"),
        FieldSpec("buffer_depth", "integer", "readings", "readings waiting in its disk queue"),
        FieldSpec("sent_total", "integer", "readings", "readings sent since the agent started"),
        FieldSpec("dropped_total", "integer", "readings", "readings dropped by a full queue"),
        FieldSpec(
            "sensor_errors_total", "integer", "errors", "failed sensor opens and reads since start"
        ),
        FieldSpec("uptime_s", "float", "s", "seconds since the agent started"),
    ),
)


def _aggregate_measurement(size: WindowSize) -> MeasurementSpec:
    unit = "the metric's unit"
    return MeasurementSpec(
        name=f"agg_{size.name}",
        point=(
            f"one metric over one {size.seconds} s tumbling window of event time, of one "
            "sensor (scope=sensor) or of all of a site's sensors (scope=site); stamped at "
            "the window's end"
        ),
        tags=("scope", "sensor", "site", "kind", "metric", "district"),
        fields=(
            FieldSpec("mean", "float", unit, "the mean of the readings' values"),
            FieldSpec("min", "float", unit, "the lowest sample (the readings' own min)"),
            FieldSpec("max", "float", unit, "the highest sample (the readings' own max)"),
            FieldSpec("sum", "float", unit, "the sum of the readings' values"),
            FieldSpec("count", "integer", "readings", "the readings in the window"),
        ),
    )


AGG_1M = _aggregate_measurement(MINUTE)
AGG_1H = _aggregate_measurement(HOUR)

HOURLY_POLLUTANTS: tuple[Pollutant, ...] = tuple(p for p in Pollutant if p is not Pollutant.O3_8H)
"""The pollutants an hourly AQI rates (ozone by its 1-hour value)."""

AQI = MeasurementSpec(
    name="aqi",
    point=(
        "the HJ 633-2012 hourly AQI of one station (scope=station) from the hour's means, "
        "or of a district (scope=district: its worst station); stamped at the hour's end"
    ),
    tags=("scope", "sensor", "site", "district", "standard"),
    fields=(
        FieldSpec("aqi", "integer", "1", "the air quality index, 0-500"),
        FieldSpec("level", "integer", "1", "the HJ 633 level, 1 (excellent) to 6 (severe)"),
        FieldSpec(
            "primary",
            "string",
            "",
            "the primary pollutants by CNEMC's names, comma-joined; empty when AQI <= 50",
        ),
        *(
            FieldSpec(f"iaqi_{p.value}", "integer", "1", f"the individual index of {p.label}")
            for p in HOURLY_POLLUTANTS
        ),
        FieldSpec("stations", "integer", "stations", "scope=district: the stations rated"),
    ),
)

TRAFFIC_INDEX = MeasurementSpec(
    name="traffic_index",
    point=(
        "the congestion of one road segment and direction (scope=segment) from its lanes' "
        "readings of one minute, or of a district (scope=district, vehicle-km weighted); "
        "stamped at the minute's end"
    ),
    tags=("scope", "segment", "direction", "district", "road_class"),
    fields=(
        FieldSpec("speed_kmh", "float", "km/h", "the lanes' space-mean speed"),
        FieldSpec("speed_ratio", "float", "1", "speed over the free-flow speed"),
        FieldSpec("tti", "float", "1", "travel-time index; absent at a standstill"),
        FieldSpec("tpi", "float", "0-10", "traffic performance index"),
        FieldSpec("grade", "integer", "1-5", "GB/T 33171 grade, 1 smooth to 5 severe"),
        FieldSpec("vehicles", "integer", "vehicles", "vehicles counted in the minute"),
        FieldSpec("lanes", "integer", "readings", "lane readings rated"),
        FieldSpec("basis", "string", "", "measured, no_traffic or standstill"),
        FieldSpec("vehicle_km", "float", "veh km", "scope=district: vehicle-kilometres"),
        FieldSpec("segments", "integer", "segments", "scope=district: segments rated"),
        FieldSpec("congested_share", "float", "0-1", "scope=district: weight on grades 4 and 5"),
    ),
)

SCENIC = MeasurementSpec(
    name="scenic",
    point="a scenic area's occupancy after one gate reading, stamped at the latest reading",
    tags=("area", "district"),
    fields=(
        FieldSpec("occupancy", "integer", "persons", "visitors inside: entries minus exits"),
        FieldSpec("occupancy_pct", "float", "%", "occupancy of the instantaneous capacity"),
        FieldSpec("tier", "integer", "%", "LB/T 034 warning tier: 0, 80, 90 or 100"),
        FieldSpec("daily_visitors", "integer", "persons", "entries since opening"),
        FieldSpec("daily_pct", "float", "%", "daily visitors of the daily capacity"),
        FieldSpec("daily_tier", "integer", "%", "the tier of daily_pct"),
        FieldSpec("unexplained_exits", "integer", "persons", "exits beyond the day's entries"),
    ),
)

ENERGY_USE = MeasurementSpec(
    name="energy_use",
    point="the energy a meter's register counted since its previous reading",
    tags=("sensor", "building", "site", "district"),
    fields=(
        FieldSpec("consumption_kwh", "float", "kWh", "energy since the previous reading, >= 0"),
        FieldSpec(
            "event",
            "string",
            "",
            "how the register moved: first, normal, gap, rollover, reset, late, implausible",
        ),
        FieldSpec("power_kw", "float", "kW", "mean power since the previous reading"),
        FieldSpec("gap_s", "float", "s", "the step's length, when longer than the gap limit"),
        FieldSpec("baseline_kw", "float", "kW", "the usual power at this hour of the week"),
        FieldSpec("power_ratio", "float", "1", "power over its baseline"),
        FieldSpec("excess_kw", "float", "kW", "power minus its baseline"),
    ),
)

HOTSPOT = MeasurementSpec(
    name="hotspot",
    point=(
        "one site that stands out in its district, ranked every five minutes of event "
        "time: stations by PM2.5 (kind=pollution), buildings by W/m² (kind=energy)"
    ),
    tags=("district", "kind", "site"),
    fields=(
        FieldSpec("rank", "integer", "1", "1 for the highest score in the district"),
        FieldSpec("score", "float", "z", "the larger of peer_z and self_z"),
        FieldSpec("value", "float", "metric's", "the value ranked (µg/m³ or W/m²)"),
        FieldSpec("metric", "string", "", "what was ranked, e.g. pollution.pm2_5"),
        FieldSpec("reason", "string", "", "district, baseline or both"),
        FieldSpec("peer_z", "float", "z", "robust z against the district's sites"),
        FieldSpec("self_z", "float", "z", "z against the site's own baseline"),
    ),
)

MEASUREMENTS: tuple[MeasurementSpec, ...] = (
    *(_reading_measurement(kind) for kind in Kind),
    ANOMALY,
    GATEWAY,
    AGG_1M,
    AGG_1H,
    AQI,
    TRAFFIC_INDEX,
    SCENIC,
    ENERGY_USE,
    HOTSPOT,
)
"""Every measurement the stream writes."""


@dataclass(frozen=True, slots=True)
class SensorTags:
    """Where a sensor is, as tags: from the site registry."""

    site: str
    district: str
    gateway: str
    extra: Mapping[str, str] = field(default_factory=dict)


def sensor_tags(registry: Registry) -> dict[str, SensorTags]:
    """Every registry sensor's tags: site, district, gateway and its kind's extras."""
    district = {site.id: site.district for site in registry.sites}
    tags: dict[str, SensorTags] = {}
    for s in registry.sensors:
        extra = {
            "segment": s.segment,
            "direction": None if s.direction is None else str(s.direction),
            "lane": None if s.lane is None else str(s.lane),
            "area": s.area,
            "gate": s.gate,
            "building": s.building,
        }
        tags[s.id] = SensorTags(
            site=s.site,
            district=district[s.site],
            gateway=s.gateway,
            extra={k: v for k, v in extra.items() if v is not None},
        )
    return tags


def reading_point(reading: Reading, where: SensorTags) -> LinePoint:
    """The raw reading: its metrics (integers where the catalogue says so) and seq."""
    catalogue = CATALOGUE[reading.kind]
    fields: dict[str, FieldValue] = {
        name: int(value) if catalogue[name].integer else float(value)
        for name, value in reading.metrics.items()
    }
    fields["seq"] = reading.seq
    tags = {
        "sensor": reading.sensor_id,
        "site": where.site,
        "district": where.district,
        "gateway": where.gateway,
        **where.extra,
    }
    return LinePoint(reading.kind.value, tags, fields, timestamp_ns(reading.ts))


def anomaly_point(
    reading: Reading,
    district: str,
    scores: Sequence[tuple[str, float, str, float]],
) -> LinePoint:
    """The anomaly scores of a reading's metrics: ``(metric, score, detector, raw)`` each."""
    metric, score, detector, raw = max(scores, key=lambda s: s[1])
    fields: dict[str, FieldValue] = {
        "score": float(score),
        "metric": metric,
        "detector": detector,
        "raw": float(raw),
    }
    for name, value, _, _ in scores:
        fields[f"score_{name}"] = float(value)
    tags = {"sensor": reading.sensor_id, "kind": reading.kind.value, "district": district}
    return LinePoint(ANOMALY.name, tags, fields, timestamp_ns(reading.ts))


def gateway_point(status: GatewayStatus, site: str, district: str) -> LinePoint:
    """One gateway status message."""
    fields: dict[str, FieldValue] = {
        "online": int(status.state == "online"),
        "buffer_depth": status.buffer_depth,
        "sent_total": status.sent_total,
        "dropped_total": status.dropped_total,
        "sensor_errors_total": status.sensor_errors_total,
        "uptime_s": float(status.uptime_s),
    }
    tags = {"gateway": status.gateway_id, "site": site, "district": district}
    return LinePoint(GATEWAY.name, tags, fields, timestamp_ns(status.ts))


def _ns(epoch_s: int) -> int:
    return epoch_s * 1_000_000_000


def aggregate_point(closed: Closed, site: str, district: str) -> LinePoint:
    """One metric of a closed window, of a sensor or (``closed.sensor`` None) of its site."""
    m = closed.moments
    fields: dict[str, FieldValue] = {
        "mean": float(m.mean),
        "min": float(m.low),
        "max": float(m.high),
        "sum": float(m.total),
        "count": m.count,
    }
    tags = {
        "scope": "site" if closed.sensor is None else "sensor",
        "site": site,
        "kind": closed.kind,
        "metric": closed.name,
        "district": district,
    }
    if closed.sensor is not None:
        tags["sensor"] = closed.sensor
    name = AGG_1M.name if closed.size is MINUTE else AGG_1H.name
    return LinePoint(name, tags, fields, _ns(closed.end))


def station_aqi_point(
    result: AqiResult, sensor: str, site: str, district: str, end: int
) -> LinePoint:
    """A station's hourly AQI (``result.aqi`` must not be None), stamped at the hour's end."""
    if result.aqi is None or result.level is None:
        msg = f"sensor {sensor!r}: an AQI point needs an AQI, got {result.aqi!r}"
        raise ValueError(msg)
    fields: dict[str, FieldValue] = {
        "aqi": result.aqi,
        "level": result.level.number,
        "primary": result.primary_names,
    }
    for sub in result.sub_indices:
        fields[f"iaqi_{sub.pollutant.value}"] = sub.index
    tags = {
        "scope": "station",
        "sensor": sensor,
        "site": site,
        "district": district,
        "standard": result.standard.value,
    }
    return LinePoint(AQI.name, tags, fields, _ns(end))


def district_aqi_point(district: str, stations: Sequence[AqiResult], end: int) -> LinePoint:
    """A district's hourly AQI: its worst station's, with that station's primary pollutants.

    Where stations tie at the worst AQI, their primary pollutants are joined.
    """
    rated = [r for r in stations if r.aqi is not None]
    if not rated:
        msg = f"district {district!r}: no station AQI to combine"
        raise ValueError(msg)
    worst = max(r.aqi for r in rated if r.aqi is not None)
    primary: set[Pollutant] = set()
    level = 0
    for r in rated:
        if r.aqi == worst and r.level is not None:
            primary.update(r.primary)
            level = r.level.number
    names = ",".join(p.cnemc_name for p in Pollutant if p in primary)
    fields: dict[str, FieldValue] = {
        "aqi": worst,
        "level": level,
        "primary": names,
        "stations": len(rated),
    }
    tags = {"scope": "district", "district": district, "standard": rated[0].standard.value}
    return LinePoint(AQI.name, tags, fields, _ns(end))


def segment_traffic_point(index: SegmentIndex, district: str) -> LinePoint:
    """A road segment's (one direction's) congestion over one interval."""
    fields: dict[str, FieldValue] = {
        "speed_kmh": float(index.speed_kmh),
        "speed_ratio": float(index.speed_ratio),
        "tpi": float(index.tpi),
        "grade": int(index.grade),
        "vehicles": round(index.vehicles),
        "lanes": index.lanes,
        "basis": index.basis.value,
    }
    if index.travel_time_index is not None:
        fields["tti"] = float(index.travel_time_index)
    tags = {
        "scope": "segment",
        "segment": index.segment_id,
        "district": district,
        "road_class": index.road_class.value,
    }
    if index.direction is not None:
        tags["direction"] = index.direction
    return LinePoint(TRAFFIC_INDEX.name, tags, fields, timestamp_ns(index.ts))


def district_traffic_point(index: DistrictIndex) -> LinePoint:
    """A district's congestion over one interval."""
    fields: dict[str, FieldValue] = {
        "tpi": float(index.tpi),
        "grade": int(index.grade),
        "vehicle_km": float(index.vehicle_km),
        "segments": index.segments,
        "congested_share": float(index.congested_share),
    }
    tags = {"scope": "district", "district": index.district_id}
    return LinePoint(TRAFFIC_INDEX.name, tags, fields, timestamp_ns(index.ts))


def scenic_point(update: OccupancyUpdate, district: str) -> LinePoint:
    """A scenic area's figures after a gate reading, stamped at the latest reading applied."""
    fields: dict[str, FieldValue] = {
        "occupancy": update.occupancy,
        "occupancy_pct": float(update.occupancy_pct),
        "tier": int(update.tier),
        "daily_visitors": update.daily_visitors,
        "daily_pct": float(update.daily_pct),
        "daily_tier": int(update.daily_tier),
        "unexplained_exits": update.unexplained_exits,
    }
    tags = {"area": update.area_id, "district": district}
    return LinePoint(SCENIC.name, tags, fields, timestamp_ns(update.ts))


def energy_point(
    step: Consumption,
    where: tuple[str, str, str, str],
    baseline: BaselineComparison | None = None,
) -> LinePoint:
    """A meter reading's consumption; ``where`` is (sensor, building, site, district).

    The event is the register's step, or ``gap`` for a normal step longer than the
    gap limit.
    """
    sensor, building, site, district = where
    event = step.step.value
    if step.step is RegisterStep.NORMAL and step.gap_s is not None:
        event = "gap"
    fields: dict[str, FieldValue] = {"consumption_kwh": float(step.kwh), "event": event}
    if step.mean_power_kw is not None:
        fields["power_kw"] = float(step.mean_power_kw)
    if step.gap_s is not None:
        fields["gap_s"] = float(step.gap_s)
    if baseline is not None and baseline.baseline_kw is not None:
        fields["baseline_kw"] = float(baseline.baseline_kw)
        if baseline.excess_kw is not None:
            fields["excess_kw"] = float(baseline.excess_kw)
        if baseline.ratio is not None:
            fields["power_ratio"] = float(baseline.ratio)
    tags = {"sensor": sensor, "building": building, "site": site, "district": district}
    return LinePoint(ENERGY_USE.name, tags, fields, timestamp_ns(step.ts))


def _hotspot_point(ranking: DistrictRanking, kind: str, hotspot: Hotspot) -> LinePoint:
    fields: dict[str, FieldValue] = {
        "rank": hotspot.rank,
        "score": float(hotspot.score),
        "value": float(hotspot.value),
        "metric": ranking.metric,
        "reason": hotspot.reason,
    }
    if hotspot.peer_z is not None:
        fields["peer_z"] = float(hotspot.peer_z)
    if hotspot.self_z is not None:
        fields["self_z"] = float(hotspot.self_z)
    tags = {"district": ranking.district_id, "kind": kind, "site": hotspot.site_id}
    return LinePoint(HOTSPOT.name, tags, fields, timestamp_ns(ranking.ts))


def hotspot_points(ranking: DistrictRanking, kind: str) -> list[LinePoint]:
    """One point per hotspot of a district's ranking, stamped at the ranking's time."""
    return [_hotspot_point(ranking, kind, h) for h in ranking.hotspots]

"""What the stream writes to InfluxDB: every measurement, its tags and its typed fields.

One table (:data:`MEASUREMENTS`) is the contract with the Grafana boards: the README
prints it, the dashboards' queries are checked against it, and the point builders
here are the only code that makes points. A field always keeps its type (an integer
metric is always written as an integer, a gauge always as a float), so InfluxDB never
refuses a write for a type conflict.

A point is identified by its measurement, tags and timestamp, so writing the same
reading twice overwrites it: replays after a crash never double anything.

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

from stream.sinks.lineprotocol import FieldValue, LinePoint, timestamp_ns
from telemetry import CATALOGUE, GatewayStatus, Kind, Reading
from telemetry.registry import Registry

__all__ = [
    "MEASUREMENTS",
    "FieldSpec",
    "MeasurementSpec",
    "SensorTags",
    "anomaly_point",
    "gateway_point",
    "reading_point",
    "sensor_tags",
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

MEASUREMENTS: tuple[MeasurementSpec, ...] = (
    *(_reading_measurement(kind) for kind in Kind),
    ANOMALY,
    GATEWAY,
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

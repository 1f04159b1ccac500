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

The two lines written for every reading, the raw reading and its ``anomaly`` scores,
are also built directly as line protocol (:func:`reading_line`, :func:`anomaly_line`):
the sensor's series is encoded once, by :func:`sensor_tags`, and only the values and
the timestamp are formatted per line -- the same text as encoding the point. So are
the many ``agg_1m`` and ``agg_1h`` lines, by :class:`AggregateLines`.

>>> from datetime import UTC, datetime
>>> from telemetry import Kind, Reading
>>> r = Reading(sensor_id="aq-1", kind=Kind.POLLUTION, seq=7,
...             ts=datetime(2024, 11, 8, 8, 0, tzinfo=UTC), metrics={"pm2_5": 35.0})
>>> point = reading_point(r, SensorTags(site="st-1", district="lakeside", gateway="gw-1"))
>>> point.measurement, point.fields, point.ts_ns
('pollution', {'pm2_5': 35.0, 'seq': 7}, 1731052800000000000)
>>> point.tags
{'sensor': 'aq-1', 'site': 'st-1', 'district': 'lakeside', 'gateway': 'gw-1'}
>>> reading_line(r, SensorTags(site="st-1", district="lakeside", gateway="gw-1"), Precision.S)
'pollution,district=lakeside,gateway=gw-1,sensor=aq-1,site=st-1 pm2_5=35.0,seq=7i 1731052800'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Literal

from stream.aggregate import HOUR, MINUTE, Closed, WindowSize
from stream.indices.aqi import AqiResult, Pollutant
from stream.indices.energy import BaselineComparison, Consumption, RegisterStep
from stream.indices.hotspots import DistrictRanking, Hotspot
from stream.indices.scenic import OccupancyUpdate
from stream.indices.traffic import DistrictIndex, SegmentIndex
from stream.sinks.lineprotocol import (
    FieldValue,
    LinePoint,
    LineProtocolError,
    Precision,
    encode_point,
    encode_series,
    encode_timestamp,
    escape_field_key,
    quote_string,
    timestamp_ns,
)
from telemetry import CATALOGUE, Alert, AlertState, GatewayStatus, Kind, Reading
from telemetry.registry import Registry

__all__ = [
    "AGG_1H",
    "AGG_1M",
    "ALERT",
    "AQI",
    "ENERGY_USE",
    "HOTSPOT",
    "HOURLY_POLLUTANTS",
    "MEASUREMENTS",
    "SCENIC",
    "TRAFFIC_INDEX",
    "AggregateLines",
    "FieldSpec",
    "MeasurementSpec",
    "SensorSeries",
    "SensorTags",
    "aggregate_point",
    "alert_point",
    "anomaly_line",
    "anomaly_point",
    "district_aqi_point",
    "district_traffic_point",
    "energy_point",
    "gateway_point",
    "hotspot_points",
    "markdown_table",
    "reading_line",
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


_READINGS: Mapping[Kind, MeasurementSpec] = {kind: _reading_measurement(kind) for kind in Kind}

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

ALERT = MeasurementSpec(
    name="alert",
    point=(
        "a rule starting to fire on a subject (stamped when its condition began) or "
        "resolving (stamped when it stopped); Grafana's annotations and alert history"
    ),
    tags=("rule", "severity", "state", "district", "fingerprint"),
    fields=(
        FieldSpec("firing", "integer", "1", "1 when it fired, 0 when it resolved"),
        FieldSpec("value", "float", "the metric's unit", "the value that crossed"),
        FieldSpec("threshold", "float", "the metric's unit", "the threshold it crossed"),
        FieldSpec("subject", "string", "", "what it is about: sensor=..., site=..."),
        FieldSpec("metric", "string", "", "the metric or index, e.g. aqi.aqi"),
        FieldSpec("summary", "string", "", "the rule's summary annotation, rendered"),
        FieldSpec("description", "string", "", "the rule's description, rendered"),
    ),
)

MEASUREMENTS: tuple[MeasurementSpec, ...] = (
    *_READINGS.values(),
    ANOMALY,
    GATEWAY,
    AGG_1M,
    AGG_1H,
    AQI,
    TRAFFIC_INDEX,
    SCENIC,
    ENERGY_USE,
    HOTSPOT,
    ALERT,
)
"""Every measurement the stream writes."""


@dataclass(frozen=True, slots=True)
class SensorSeries:
    """A sensor's series, encoded once: how its raw reading and anomaly lines start.

    Attributes:
        sensor: the sensor.
        kind: its kind.
        reading: its raw reading's measurement and tags, escaped and sorted.
        anomaly: the same of its ``anomaly`` line.
    """

    sensor: str
    kind: Kind
    reading: str
    anomaly: str


@dataclass(frozen=True, slots=True)
class SensorTags:
    """Where a sensor is, as tags: from the site registry.

    ``series`` is the sensor's encoded series, which :func:`sensor_tags` adds for
    :func:`reading_line` and :func:`anomaly_line`; it takes no part in comparisons.
    """

    site: str
    district: str
    gateway: str
    extra: Mapping[str, str] = field(default_factory=dict)
    series: SensorSeries | None = field(default=None, compare=False, repr=False)


def markdown_table(measurements: Sequence[MeasurementSpec] = MEASUREMENTS) -> str:
    """The measurement table as Markdown, as the README prints it (a test keeps them equal).

    One row per measurement: what a point is, its tags, and its fields with type and
    unit (``anomaly``'s per-metric ``score_<metric>`` fields are summarised).
    """

    def fields(spec: MeasurementSpec) -> str:
        listed = [f for f in spec.fields if not f.name.startswith("score_")]
        text = ", ".join(
            f"`{f.name}` {f.type}" + (f" ({f.unit})" if f.unit and f.unit != "1" else "")
            for f in listed
        )
        per_metric = len(spec.fields) - len(listed)
        if per_metric:
            text += f", `score_<metric>` float (0-1), one per metric ({per_metric})"
        return text.replace("|", "\\|")

    rows = [
        "| measurement | a point is | tags | fields (type, unit) |",
        "| --- | --- | --- | --- |",
    ]
    rows += [
        f"| `{m.name}` | {m.point} | {', '.join(f'`{t}`' for t in m.tags)} | {fields(m)} |"
        for m in measurements
    ]
    return "\n".join(rows) + "\n"


def sensor_tags(registry: Registry) -> dict[str, SensorTags]:
    """Every registry sensor's tags: site, district, gateway and its kind's extras.

    Each comes with the sensor's encoded series, unless a tag cannot be written (the
    lines of that sensor then fail when they are built, as their points' would).
    """
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
        where = SensorTags(
            site=s.site,
            district=district[s.site],
            gateway=s.gateway,
            extra={k: v for k, v in extra.items() if v is not None},
        )
        try:
            series = SensorSeries(
                s.id,
                s.kind,
                encode_series(s.kind.value, _reading_tags(s.id, where)),
                encode_series(ANOMALY.name, _anomaly_tags(s.id, s.kind, where.district)),
            )
        except LineProtocolError:
            series = None
        tags[s.id] = replace(where, series=series)
    return tags


def _reading_tags(sensor: str, where: SensorTags) -> dict[str, str]:
    return {
        "sensor": sensor,
        "site": where.site,
        "district": where.district,
        "gateway": where.gateway,
        **where.extra,
    }


def _anomaly_tags(sensor: str, kind: Kind, district: str) -> dict[str, str]:
    return {"sensor": sensor, "kind": kind.value, "district": district}


def reading_point(reading: Reading, where: SensorTags) -> LinePoint:
    """The raw reading: its metrics (integers where the catalogue says so) and seq."""
    catalogue = CATALOGUE[reading.kind]
    fields: dict[str, FieldValue] = {
        name: int(value) if catalogue[name].integer else float(value)
        for name, value in reading.metrics.items()
    }
    fields["seq"] = reading.seq
    tags = _reading_tags(reading.sensor_id, where)
    return LinePoint(reading.kind.value, tags, fields, timestamp_ns(reading.ts))


_highest = itemgetter(1)
"""The key that picks a reading's highest score among ``(metric, score, detector, raw)``."""


def anomaly_point(
    reading: Reading,
    district: str,
    scores: Sequence[tuple[str, float, str, float]],
) -> LinePoint:
    """The anomaly scores of a reading's metrics: ``(metric, score, detector, raw)`` each."""
    metric, score, detector, raw = max(scores, key=_highest)
    fields: dict[str, FieldValue] = {
        "score": float(score),
        "metric": metric,
        "detector": detector,
        "raw": float(raw),
    }
    for name, value, _, _ in scores:
        fields[f"score_{name}"] = float(value)
    tags = _anomaly_tags(reading.sensor_id, reading.kind, district)
    return LinePoint(ANOMALY.name, tags, fields, timestamp_ns(reading.ts))


# ------------------------------------------------ the lines written for every reading
# Built directly, for speed, and always the text the encoder writes for the point of
# the builder above: the field keys come from the measurement's spec, escaped by the
# encoder's own function; a value is formatted here only when its text is certain (a
# finite float, a 64-bit integer), and anything else goes through the point and the
# encoder, so the line or the error is theirs.

_METRIC_FIELDS: Mapping[Kind, Mapping[str, tuple[str, bool]]] = {
    kind: {
        f.name: (escape_field_key(f.name) + "=", f.type == "integer")
        for f in spec.fields
        if f.name != "seq"
    }
    for kind, spec in _READINGS.items()
}
"""Each kind's metrics: the field's ``key=`` and whether it is an integer."""

_SEQ_FIELD = escape_field_key("seq") + "="

_SCORE_FIELDS: Mapping[str, str] = {
    f.name.removeprefix("score_"): escape_field_key(f.name) + "="
    for f in ANOMALY.fields
    if f.name.startswith("score_")
}
"""Each metric's ``score_<metric>=``."""

_INT64 = range(-(2**63), 2**63)
"""The integers a line-protocol field holds."""

_METRIC_WHAT = f"field {'metric'!r}"
_DETECTOR_WHAT = f"field {'detector'!r}"


def _series_of(reading: Reading, where: SensorTags) -> SensorSeries | None:
    """``where``'s encoded series if it is of this reading's sensor and kind."""
    series = where.series
    if series is None or series.sensor != reading.sensor_id or series.kind is not reading.kind:
        return None
    return series


def reading_line(reading: Reading, where: SensorTags, precision: Precision = Precision.NS) -> str:
    """The line of :func:`reading_point`, built directly: what the encoder writes for it.

    Args:
        reading: The reading.
        where: Its sensor's tags, best from :func:`sensor_tags` (which encodes the
            series once); other tags work, as fast as encoding the point.
        precision: The unit of the timestamp.

    Returns:
        The line, without the newline.

    Raises:
        LineProtocolError: What encoding :func:`reading_point` would raise.
    """
    series = _series_of(reading, where)
    if series is None:
        return encode_point(*reading_point(reading, where), precision=precision)
    fields = _METRIC_FIELDS[reading.kind]
    parts: list[str] = []
    for name, value in reading.metrics.items():
        spec = fields.get(name)
        if spec is None:
            return encode_point(*reading_point(reading, where), precision=precision)
        key, integer = spec
        if integer:
            count = int(value)
            if count not in _INT64:
                return encode_point(*reading_point(reading, where), precision=precision)
            parts.append(f"{key}{count}i")
        else:
            number = float(value)
            if number - number != 0.0:  # inf - inf is nan
                return encode_point(*reading_point(reading, where), precision=precision)
            parts.append(key + repr(number))
    seq = reading.seq
    if type(seq) is not int or seq not in _INT64:
        return encode_point(*reading_point(reading, where), precision=precision)
    parts.append(f"{_SEQ_FIELD}{seq}i")
    ts = encode_timestamp(timestamp_ns(reading.ts), precision)
    return f"{series.reading} {','.join(parts)} {ts}"


def anomaly_line(
    reading: Reading,
    where: SensorTags,
    scores: Sequence[tuple[str, float, str, float]],
    precision: Precision = Precision.NS,
) -> str:
    """The line of :func:`anomaly_point`, built directly: what the encoder writes for it.

    Args:
        reading: The reading scored.
        where: Its sensor's tags, best from :func:`sensor_tags`; the district is theirs.
        scores: ``(metric, score, detector, raw)`` of each of its metrics.
        precision: The unit of the timestamp.

    Returns:
        The line, without the newline.

    Raises:
        LineProtocolError: What encoding :func:`anomaly_point` would raise.
    """
    series = _series_of(reading, where)
    if series is None:
        return encode_point(*anomaly_point(reading, where.district, scores), precision=precision)
    metric, score, detector, raw = max(scores, key=_highest)
    top = float(score)
    top_raw = float(raw)
    if top - top != 0.0 or top_raw - top_raw != 0.0 or type(metric) is not str:
        return encode_point(*anomaly_point(reading, where.district, scores), precision=precision)
    if type(detector) is not str:
        return encode_point(*anomaly_point(reading, where.district, scores), precision=precision)
    # A dict, as the point's fields: a metric scored twice keeps its first place, last value.
    scored: dict[str, str] = {}
    for name, value, _, _ in scores:
        key = _SCORE_FIELDS.get(name)
        number = float(value)
        if key is None or number - number != 0.0:
            return encode_point(
                *anomaly_point(reading, where.district, scores), precision=precision
            )
        scored[name] = key + repr(number)
    fields = (
        f"score={top!r},metric={quote_string(metric, _METRIC_WHAT)},"
        f"detector={quote_string(detector, _DETECTOR_WHAT)},raw={top_raw!r},"
        + ",".join(scored.values())
    )
    ts = encode_timestamp(timestamp_ns(reading.ts), precision)
    return f"{series.anomaly} {fields} {ts}"


def alert_point(alert: Alert) -> LinePoint:
    """One alert transition: firing at its start, resolved at its end."""
    firing = alert.state is AlertState.FIRING
    fields: dict[str, FieldValue] = {"firing": int(firing)}
    if alert.value is not None:
        fields["value"] = float(alert.value)
    if alert.threshold is not None:
        fields["threshold"] = float(alert.threshold)
    labels = alert.subject.labels()
    fields["subject"] = ",".join(f"{k.removesuffix('_id')}={v}" for k, v in labels.items())
    if alert.metric is not None:
        fields["metric"] = alert.metric
    for name in ("summary", "description"):
        if name in alert.annotations:
            fields[name] = alert.annotations[name]
    tags = {
        "rule": alert.rule_id,
        "severity": alert.severity.value,
        "state": alert.state.value,
        "district": labels.get("district_id", "none"),
        "fingerprint": alert.fingerprint,
    }
    at = alert.starts_at if firing or alert.ends_at is None else alert.ends_at
    return LinePoint(ALERT.name, tags, fields, timestamp_ns(at))


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


class AggregateLines:
    """``agg_1m`` and ``agg_1h`` lines built directly: what the encoder writes for their points.

    Each series (window size, sensor or site, metric) is encoded once and kept: at most
    twice as many as the registry has sensors' and sites' metrics.

    Args:
        precision: The unit of the timestamps written.

    >>> from stream.aggregate import Moments
    >>> moments = Moments()
    >>> moments.add(35.0, 30.0, 41.0, 60.0)
    >>> closed = Closed(MINUTE, 1_731_052_800, None, "pollution.pm2_5", moments)
    >>> print(AggregateLines(Precision.S).line(closed, "st-1", "lakeside"))
    agg_1m,district=lakeside,kind=pollution,metric=pm2_5,scope=site,site=st-1
        mean=35.0,min=30.0,max=41.0,sum=35.0,count=1i 1731052800
    """

    def __init__(self, precision: Precision = Precision.NS) -> None:
        self.precision = precision
        self._series: dict[tuple[bool, str | None, str, str, str], str] = {}

    def __repr__(self) -> str:
        return f"AggregateLines(precision={self.precision.value!r})"

    def line(self, closed: Closed, site: str, district: str) -> str:
        """The line of :func:`aggregate_point` for the same arguments.

        Raises:
            LineProtocolError: What encoding :func:`aggregate_point` would raise.
        """
        key = (closed.size is MINUTE, closed.sensor, site, closed.metric, district)
        series = self._series.get(key)
        if series is None:
            measurement, tags, _, _ = aggregate_point(closed, site, district)
            series = self._series[key] = encode_series(measurement, tags)
        m = closed.moments
        mean, low, high, total = float(m.mean), float(m.low), float(m.high), float(m.total)
        count = m.count
        # x - x is 0.0 for a finite float and nan otherwise, and nan spreads through +.
        finite = (mean - mean) + (low - low) + (high - high) + (total - total) == 0.0
        if not finite or type(count) is not int or count not in _INT64:
            point = aggregate_point(closed, site, district)
            return encode_point(*point, precision=self.precision)
        ts = encode_timestamp(_ns(closed.end), self.precision)
        return f"{series} mean={mean!r},min={low!r},max={high!r},sum={total!r},count={count}i {ts}"


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

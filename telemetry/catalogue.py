"""The metric catalogue: for each kind of sensor, its metrics, units and valid ranges.

The catalogue is the single source of truth for what a reading may carry. The
codec rejects a metric the catalogue does not know or a value outside its
physical range; the edge agent uses :attr:`MetricSpec.semantics` to decide how
to pre-aggregate (gauges are averaged, interval counts summed, cumulative
counters keep their last value); the sink uses :attr:`MetricSpec.integer` so an
InfluxDB field always keeps one type.

Ranges are *physical* limits — what a working sensor can report — not alert
thresholds. They are deliberately wide (a dust storm can push PM10 past
5000 µg/m³), so that only broken sensors and bad encodings fall outside them.

>>> spec = metric_spec(Kind.POLLUTION, "pm2_5")
>>> spec.unit, spec.low, spec.high
('µg/m³', 0, 2000)
>>> spec.range_problem(12.5, interval_s=None) is None
True
>>> spec.range_problem(-3.0, interval_s=None)
'-3.0 is outside the physical range [0, 2000] µg/m³ of pollution.pm2_5'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from telemetry.errors import UnknownMetricError


class Kind(StrEnum):
    """What a sensor measures; every reading has exactly one kind."""

    POLLUTION = "pollution"
    """Air pollutants, as an air-quality station reports them."""
    AMBIENT = "ambient"
    """Weather at an air-quality station: temperature, humidity, pressure, wind."""
    ENERGY = "energy"
    """An electricity meter of a building."""
    TRAFFIC = "traffic"
    """A traffic detector (loop, radar, camera) on one lane of a road segment."""
    CROWD = "crowd"
    """A visitor counter at a gate of a scenic area, or a camera counting people in view."""


class Semantics(StrEnum):
    """How a metric's values relate over time, which decides how they aggregate."""

    GAUGE = "gauge"
    """An instantaneous level (a concentration, a speed); aggregates to mean, min and max."""
    INTERVAL_COUNT = "interval_count"
    """Events counted over the reading's interval (vehicles, entries); aggregates to a sum."""
    CUMULATIVE = "cumulative"
    """A running total that only grows, except on reset or rollover (a kWh register)."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric of one kind: its unit and its physically valid range.

    Attributes:
        kind: the kind of sensor that reports it.
        name: the metric's name on the wire and in InfluxDB, e.g. ``pm2_5``.
        unit: its unit, e.g. ``µg/m³``.
        low: the lowest physically possible value.
        high: the highest physically possible value (for a gauge or counter).
        semantics: gauge, interval count or cumulative counter.
        integer: whether values must be whole numbers (counts).
        max_rate_per_s: for an interval count, the most events per second one
            sensor can see, i.e. one event per ``1 / max_rate_per_s`` seconds at
            the closest; an interval of ``interval_s`` seconds can then hold at
            most ``max_rate_per_s * interval_s + 1`` events (one at each end of
            the shortest headways), which is the top of its valid range.
        description: what the metric is, in words.
    """

    kind: Kind
    name: str
    unit: str
    low: float
    high: float
    semantics: Semantics
    description: str
    integer: bool = False
    max_rate_per_s: float | None = None

    @property
    def key(self) -> str:
        """The metric's dotted name, ``kind.metric``."""
        return f"{self.kind}.{self.name}"

    def valid_range(self, interval_s: float | None) -> tuple[float, float]:
        """The closed range of valid values for a reading covering ``interval_s`` seconds."""
        if self.max_rate_per_s is not None and interval_s is not None:
            return self.low, min(self.high, self.max_rate_per_s * interval_s + 1)
        return self.low, self.high

    def range_problem(self, value: float, interval_s: float | None) -> str | None:
        """Say why ``value`` is not a valid value of this metric, or ``None`` if it is."""
        if not math.isfinite(value):
            return f"{value} is not a finite number"
        low, high = self.valid_range(interval_s)
        if not low <= value <= high:
            per = (
                f" for a {interval_s:g} s interval"
                if self.max_rate_per_s is not None and interval_s is not None
                else ""
            )
            return (
                f"{value!r} is outside the physical range [{low:g}, {high:g}] {self.unit}"
                f" of {self.key}{per}"
            )
        return None


def _specs(*specs: MetricSpec) -> Mapping[str, MetricSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


_G, _I, _C = Semantics.GAUGE, Semantics.INTERVAL_COUNT, Semantics.CUMULATIVE
_P, _A, _E, _T, _W = Kind.POLLUTION, Kind.AMBIENT, Kind.ENERGY, Kind.TRAFFIC, Kind.CROWD

CATALOGUE: Mapping[Kind, Mapping[str, MetricSpec]] = MappingProxyType(
    {
        Kind.POLLUTION: _specs(
            MetricSpec(_P, "pm2_5", "µg/m³", 0, 2000, _G, "fine particulate matter, PM2.5"),
            MetricSpec(_P, "pm10", "µg/m³", 0, 10000, _G, "inhalable particulate matter, PM10"),
            MetricSpec(_P, "no2", "µg/m³", 0, 4000, _G, "nitrogen dioxide"),
            MetricSpec(_P, "so2", "µg/m³", 0, 10000, _G, "sulphur dioxide"),
            MetricSpec(_P, "o3", "µg/m³", 0, 1500, _G, "ozone"),
            MetricSpec(_P, "co", "mg/m³", 0, 200, _G, "carbon monoxide"),
        ),
        Kind.AMBIENT: _specs(
            MetricSpec(_A, "temperature_c", "°C", -60, 70, _G, "air temperature"),
            MetricSpec(_A, "humidity_pct", "%", 0, 100, _G, "relative humidity"),
            MetricSpec(_A, "pressure_hpa", "hPa", 300, 1100, _G, "station air pressure"),
            MetricSpec(_A, "wind_speed_ms", "m/s", 0, 100, _G, "mean wind speed"),
        ),
        Kind.ENERGY: _specs(
            MetricSpec(_E, "power_w", "W", -1e8, 1e8, _G, "active power; negative when exporting"),
            MetricSpec(_E, "energy_kwh", "kWh", 0, 1e12, _C, "cumulative imported active energy"),
            MetricSpec(_E, "voltage_v", "V", 0, 1000, _G, "RMS voltage"),
            MetricSpec(_E, "current_a", "A", 0, 10000, _G, "RMS current"),
            MetricSpec(_E, "power_factor", "1", -1, 1, _G, "power factor"),
        ),
        Kind.TRAFFIC: _specs(
            MetricSpec(
                _T,
                "vehicle_count",
                "vehicles",
                0,
                1e6,
                _I,
                "vehicles over the interval, one lane",
                integer=True,
                max_rate_per_s=1.0,
            ),
            MetricSpec(_T, "mean_speed_kmh", "km/h", 0, 250, _G, "mean spot speed, one lane"),
            MetricSpec(_T, "occupancy_pct", "%", 0, 100, _G, "time the detector was occupied"),
        ),
        Kind.CROWD: _specs(
            MetricSpec(
                _W,
                "entries",
                "persons",
                0,
                1e7,
                _I,
                "visitors entering through the gate",
                integer=True,
                max_rate_per_s=20.0,
            ),
            MetricSpec(
                _W,
                "exits",
                "persons",
                0,
                1e7,
                _I,
                "visitors leaving through the gate",
                integer=True,
                max_rate_per_s=20.0,
            ),
            MetricSpec(
                _W,
                "count_in_view",
                "persons",
                0,
                1e6,
                _G,
                "people a camera counter sees now",
                integer=True,
            ),
        ),
    }
)
"""Every kind's metrics, by name. Read-only."""


def metric_spec(kind: Kind | str, metric: str) -> MetricSpec:
    """Look up one metric, raising :class:`UnknownMetricError` with the known names if absent.

    >>> metric_spec("traffic", "speed")
    Traceback (most recent call last):
    ...
    telemetry.errors.UnknownMetricError: traffic has no metric 'speed'; known: vehicle_count, ...
    """
    try:
        metrics = CATALOGUE[Kind(kind)]
    except ValueError:
        known = ", ".join(Kind)
        msg = f"unknown kind {kind!r}; known: {known}"
        raise UnknownMetricError(msg) from None
    try:
        return metrics[metric]
    except KeyError:
        msg = f"{kind} has no metric {metric!r}; known: {', '.join(metrics)}"
        raise UnknownMetricError(msg) from None


def all_metrics() -> list[MetricSpec]:
    """Every metric of every kind, in catalogue order."""
    return [spec for metrics in CATALOGUE.values() for spec in metrics.values()]

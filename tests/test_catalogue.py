"""The metric catalogue covers what the contract promises and is self-consistent."""

from __future__ import annotations

import pytest

from telemetry import CATALOGUE, Kind, Semantics, UnknownMetricError, all_metrics, metric_spec

REQUIRED = {
    Kind.POLLUTION: {
        "pm2_5": "µg/m³",
        "pm10": "µg/m³",
        "no2": "µg/m³",
        "so2": "µg/m³",
        "o3": "µg/m³",
        "co": "mg/m³",
    },
    Kind.AMBIENT: {"temperature_c": "°C", "humidity_pct": "%", "pressure_hpa": "hPa"},
    Kind.ENERGY: {
        "power_w": "W",
        "energy_kwh": "kWh",
        "voltage_v": "V",
        "current_a": "A",
        "power_factor": "1",
    },
    Kind.TRAFFIC: {"vehicle_count": "vehicles", "mean_speed_kmh": "km/h", "occupancy_pct": "%"},
    Kind.CROWD: {"entries": "persons", "exits": "persons", "count_in_view": "persons"},
}


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_has_its_required_metrics_and_units(kind: Kind) -> None:
    units = {name: spec.unit for name, spec in CATALOGUE[kind].items()}
    assert REQUIRED[kind].items() <= units.items()


@pytest.mark.parametrize("spec", all_metrics(), ids=lambda spec: spec.key)
def test_specs_are_consistent(spec: object) -> None:
    from telemetry import MetricSpec

    assert isinstance(spec, MetricSpec)
    assert spec.low < spec.high
    assert CATALOGUE[spec.kind][spec.name] is spec
    assert (spec.max_rate_per_s is not None) == (spec.semantics is Semantics.INTERVAL_COUNT)
    if spec.semantics is not Semantics.GAUGE:
        assert spec.integer or spec.semantics is Semantics.CUMULATIVE
        assert spec.low == 0


def test_counters_are_cumulative_and_counts_per_interval() -> None:
    assert metric_spec("energy", "energy_kwh").semantics is Semantics.CUMULATIVE
    assert metric_spec("traffic", "vehicle_count").semantics is Semantics.INTERVAL_COUNT
    assert metric_spec("crowd", "entries").semantics is Semantics.INTERVAL_COUNT


def test_interval_counts_scale_their_range_with_the_interval() -> None:
    spec = metric_spec(Kind.TRAFFIC, "vehicle_count")
    assert spec.valid_range(60.0) == (0, 61.0)  # one vehicle a second, plus the one at the end
    assert spec.range_problem(62, interval_s=60.0) is not None
    assert spec.range_problem(61, interval_s=60.0) is None


def test_unknown_lookups_name_what_exists() -> None:
    with pytest.raises(UnknownMetricError, match="unknown kind 'noise'; known: pollution"):
        metric_spec("noise", "db")
    with pytest.raises(UnknownMetricError, match="energy has no metric 'kw'; known: power_w"):
        metric_spec("energy", "kw")


def test_catalogue_is_read_only() -> None:
    with pytest.raises(TypeError):
        CATALOGUE[Kind.POLLUTION]["pm1"] = CATALOGUE[Kind.POLLUTION]["pm2_5"]  # type: ignore[index]

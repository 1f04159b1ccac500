"""The seven boards, as code: what each panel shows and the InfluxQL it asks.

Every query reads what :mod:`stream.schema` says the sink writes (checked by
:func:`stream.grafana.check.check_query`), filters by the board's template variables
(``$district``, ``$site``, ``$kind``, ``$severity``, each "All" as ``.*``) and by
Grafana's time range (``$timeFilter``), and buckets graphs by ``$__interval``.

The maps need coordinates, which InfluxDB does not hold: they come from the site
registry, written into one query per place (``last("aqi") * 0 + 30.2598 AS "lat"``)
whose answers a ``merge`` transformation stacks into one table per map. So the boards
are generated for a registry (the example city's by default); a city regenerates them
with ``urbansense grafana generate --registry city.yaml``.
"""

# The InfluxQL here is built from constants and registry ids, which the registry only
# accepts as letters, digits and "._:-" (and _literal escapes quotes all the same).
# ruff: noqa: S608

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import bargauge, geomap, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm

from stream.grafana.common import (
    DATASOURCE,
    DISTRICT,
    KIND,
    SITE,
    AlertAnnotation,
    aqi_level_mappings,
    aqi_thresholds,
    datasource_variable,
    district_variable,
    grade_thresholds,
    kind_variable,
    occupancy_thresholds,
    online_mappings,
    severity_variable,
    site_variable,
    thresholds,
    tpi_thresholds,
    where,
)
from stream.grafana.influxql import InfluxTarget
from stream.schema import HOURLY_POLLUTANTS
from telemetry import CATALOGUE, Kind
from telemetry.registry import Registry

__all__ = ["BOARDS", "BoardSettings", "BoardSpec"]


@dataclass(frozen=True, slots=True)
class BoardSettings:
    """What the boards are generated for.

    Attributes:
        registry: the site registry: the places on the maps and their coordinates.
        timezone: the city's IANA time zone: where a day of visitors starts.
        refresh: how often an open board reloads.
    """

    registry: Registry
    timezone: str = "Asia/Shanghai"
    refresh: str = "1m"


@dataclass(frozen=True, slots=True)
class BoardSpec:
    """One board: its file name, stable uid, title and the function that builds it."""

    slug: str
    uid: str
    title: str
    build: Callable[[BoardSpec, BoardSettings], db.Dashboard]


# ---------------------------------------------------------------- helpers


def _target(query: str, ref: str = "A", alias: str | None = None) -> InfluxTarget:
    target = InfluxTarget(query).ref_id(ref)
    return target if alias is None else target.alias(alias)


def _table_target(query: str, ref: str = "A") -> InfluxTarget:
    return InfluxTarget(query).ref_id(ref).table()


def _series(
    title: str,
    description: str,
    query: str,
    alias: str,
    unit: str,
    *,
    span: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(_target(query, alias=alias))
        .unit(unit)
        .span(span)
        .height(height)
        .line_width(1)
        .fill_opacity(10)
        .show_points(cm.VisibilityMode.NEVER)
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
    )


def _stat(
    title: str, description: str, query: str, alias: str, unit: str, *, span: int = 6
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(_target(query, alias=alias))
        .unit(unit)
        .span(span)
        .height(5)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.AREA)
    )


def _table(
    title: str, description: str, query: str, *, span: int = 12, hide_time: bool = True
) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(_table_target(query))
        .span(span)
        .height(8)
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": hide_time}, "renameByName": {}},
            )
        )
    )


def _colour_cells(panel: table.Panel, column: str, mode: str = "color-background") -> table.Panel:
    return panel.override_by_name(
        column, [dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": mode})]
    )


def _dashboard(spec: BoardSpec, settings: BoardSettings, description: str) -> db.Dashboard:
    return (
        db.Dashboard(spec.title)
        .uid(spec.uid)
        .description(description)
        .tags(["urbansense"])
        .editable()
        .timezone("browser")
        .time("now-24h", "now")
        .refresh(settings.refresh)
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .link(
            db.DashboardLink("urbansense boards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["urbansense"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .annotation(AlertAnnotation(firing=True))
        .annotation(AlertAnnotation(firing=False).enable(False))
        .with_variable(datasource_variable())
        .with_variable(district_variable())
    )


def _is(tag: str, value: str) -> str:
    """The condition that a tag has a value, the value quoted as an InfluxQL string."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"\"{tag}\" = '{escaped}'"


def _number(value: float) -> str:
    """A coordinate as an InfluxQL number literal."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _place_query(
    select: str, anchor: str, measurement: str, conditions: Sequence[str], at: tuple[float, float]
) -> str:
    """One place's latest figures and its coordinates (InfluxDB holds none)."""
    lat, lon = at
    return (
        f'SELECT {select}, {anchor} * 0 + {_number(lat)} AS "lat", '
        f'{anchor} * 0 + {_number(lon)} AS "lon" FROM "{measurement}" '
        f"WHERE {where(*conditions)}"
    )


def _map(
    title: str, description: str, layer: str, colour_field: str, text_field: str
) -> geomap.Panel:
    style = {
        "color": {"field": colour_field, "fixed": "dark-green"},
        "opacity": 0.9,
        "size": {"fixed": 12, "min": 4, "max": 20},
        "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
        "text": {"field": text_field, "fixed": "", "mode": "field"},
        "textConfig": {
            "fontSize": 11,
            "offsetY": -14,
            "textAlign": "center",
            "textBaseline": "bottom",
        },
    }
    return (
        geomap.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(8)
        .height(11)
        .view(geomap.MapViewConfig().id("fit").all_layers(True).padding(20))
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True))
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
        .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
        .layers(
            [
                cb.MapLayerOptions()
                .type("markers")
                .name(layer)
                .config({"showLegend": True, "style": style})
                .location(
                    cb.FrameGeometrySource()
                    .mode(cm.FrameGeometrySourceMode.COORDS)
                    .latitude("lat")
                    .longitude("lon")
                )
                .tooltip(True)
            ]
        )
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    )


def _segment_places(registry: Registry) -> list[tuple[str, str, tuple[float, float]]]:
    """Each road segment's directions at its detectors' sites; a second direction a bit east."""
    places: list[tuple[str, str, tuple[float, float]]] = []
    for segment in registry.road_segments:
        sensors = [s for s in registry.sensors if s.segment == segment.id]
        sites = [registry.site(s.site) for s in sensors]
        if not sites:
            continue
        lat = statistics.fmean(s.lat for s in sites)
        lon = statistics.fmean(s.lon for s in sites)
        directions = segment.directions or tuple(
            dict.fromkeys(s.direction for s in sensors if s.direction is not None)
        )
        for i, direction in enumerate(directions):
            places.append((segment.id, str(direction), (lat, lon + 0.0006 * i)))
    return places


# ---------------------------------------------------------------- city overview


def _overview(spec: BoardSpec, settings: BoardSettings) -> db.Dashboard:
    registry = settings.registry
    board = _dashboard(
        spec,
        settings,
        "The city at a glance: district AQI, scenic occupancy, congestion, energy, open "
        "alerts, and maps of the stations, scenic areas and road segments.",
    ).with_variable(kind_variable())
    board = board.with_row(db.Row("Now"))
    board = board.with_panel(
        _stat(
            "District AQI",
            "The latest hourly AQI (HJ 633-2012) of each district: its worst station's.",
            'SELECT last("aqi") FROM "aqi" WHERE '
            + where("\"scope\" = 'district'", DISTRICT)
            + ' GROUP BY "district"',
            "$tag_district",
            "none",
        ).thresholds(aqi_thresholds())
    )
    board = board.with_panel(
        _stat(
            "Scenic occupancy",
            "Visitors inside each scenic area, as a share of its instantaneous capacity "
            "(LB/T 034 tiers at 80, 90 and 100 %).",
            'SELECT last("occupancy_pct") FROM "scenic" WHERE '
            + where(DISTRICT)
            + ' GROUP BY "area"',
            "$tag_area",
            "percent",
        ).thresholds(occupancy_thresholds())
    )
    board = board.with_panel(
        _stat(
            "District congestion (TPI)",
            "The latest traffic performance index of each district (GB/T 33171, 0-10).",
            'SELECT last("tpi") FROM "traffic_index" WHERE '
            + where("\"scope\" = 'district'", DISTRICT)
            + ' GROUP BY "district"',
            "$tag_district",
            "none",
        )
        .thresholds(tpi_thresholds())
        .decimals(1)
    )
    board = board.with_panel(
        _stat(
            "Building power",
            "Each metered building's mean power since its meter's previous reading.",
            'SELECT last("power_kw") FROM "energy_use" WHERE '
            + where(DISTRICT)
            + ' GROUP BY "building"',
            "$tag_building",
            "kwatt",
        ).thresholds(thresholds("blue"))
    )
    alerts = (
        _table(
            "Current alerts",
            "Every alert whose latest transition is firing: the rule, severity, subject, "
            "the value that crossed and its threshold, and the rule's summary.",
            'SELECT last("firing") AS "firing", last("value") AS "value", '
            'last("threshold") AS "threshold", last("subject") AS "subject", '
            'last("metric") AS "metric", last("summary") AS "summary" FROM "alert" WHERE '
            + where(DISTRICT)
            + ' GROUP BY "fingerprint", "rule", "severity", "district"',
            span=24,
        )
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="filterByValue",
                options={
                    "type": "include",
                    "match": "all",
                    "filters": [
                        {"fieldName": "firing", "config": {"id": "equal", "options": {"value": 1}}}
                    ],
                },
            )
        )
        .override_by_name(
            "severity",
            [
                dm.DynamicConfigValue(
                    id_val="mappings",
                    value=[
                        {
                            "type": "value",
                            "options": {
                                "critical": {"color": "red", "index": 0},
                                "warning": {"color": "orange", "index": 1},
                                "info": {"color": "blue", "index": 2},
                            },
                        }
                    ],
                ),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
            ],
        )
    )
    board = board.with_panel(alerts)
    board = board.with_row(db.Row("Map"))
    stations = _map(
        "Air-quality stations by AQI",
        "Each station's latest hourly AQI, coloured by its HJ 633 level.",
        "Stations",
        "aqi",
        "site",
    ).thresholds(aqi_thresholds())
    for i, site in enumerate(s for s in registry.sites if _has_pollution(registry, s.id)):
        stations = stations.with_target(
            _table_target(
                _place_query(
                    'last("aqi") AS "aqi", last("level") AS "level"',
                    'last("aqi")',
                    "aqi",
                    ("\"scope\" = 'station'", _is("site", site.id), DISTRICT),
                    (site.lat, site.lon),
                )
                + ' GROUP BY "site"',
                f"station{i}",
            )
        )
    areas = _map(
        "Scenic areas by occupancy",
        "Each scenic area's latest occupancy against its instantaneous capacity.",
        "Scenic areas",
        "occupancy_pct",
        "area",
    ).thresholds(occupancy_thresholds())
    areas = areas.unit("percent")
    for i, area in enumerate(registry.scenic_areas):
        centre = (
            statistics.fmean(p[0] for p in area.boundary),
            statistics.fmean(p[1] for p in area.boundary),
        )
        areas = areas.with_target(
            _table_target(
                _place_query(
                    'last("occupancy_pct") AS "occupancy_pct", last("occupancy") AS "occupancy"',
                    'last("occupancy_pct")',
                    "scenic",
                    (_is("area", area.id), DISTRICT),
                    centre,
                )
                + ' GROUP BY "area"',
                f"area{i}",
            )
        )
    segments = _map(
        "Road segments by congestion",
        "Each road segment's and direction's latest TPI, coloured by GB/T 33171 grade.",
        "Segments",
        "tpi",
        "segment",
    ).thresholds(tpi_thresholds())
    for i, (segment, direction, at) in enumerate(_segment_places(registry)):
        segments = segments.with_target(
            _table_target(
                _place_query(
                    'last("tpi") AS "tpi", last("speed_kmh") AS "speed_kmh"',
                    'last("tpi")',
                    "traffic_index",
                    (
                        "\"scope\" = 'segment'",
                        _is("segment", segment),
                        _is("direction", direction),
                        DISTRICT,
                    ),
                    at,
                )
                + ' GROUP BY "segment", "direction"',
                f"segment{i}",
            )
        )
    board = board.with_panel(stations).with_panel(areas).with_panel(segments)
    board = board.with_row(db.Row("Anomalies"))
    return board.with_panel(
        _series(
            "Anomaly scores",
            "The highest calibrated anomaly score (0-1) of each sensor's readings, for the "
            "chosen kinds of sensor.",
            'SELECT max("score") FROM "anomaly" WHERE '
            + where(KIND, DISTRICT)
            + ' GROUP BY time($__interval), "sensor" fill(none)',
            "$tag_sensor",
            "percentunit",
            span=24,
        )
        .min(0)
        .max(1)
        .thresholds(thresholds("green", (0.5, "orange"), (0.8, "red")))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED))
    )


def _has_pollution(registry: Registry, site: str) -> bool:
    return any(s.site == site and s.kind is Kind.POLLUTION for s in registry.sensors)


# ---------------------------------------------------------------- air quality


def _air_quality(spec: BoardSpec, settings: BoardSettings) -> db.Dashboard:
    board = _dashboard(
        spec,
        settings,
        "Air quality per station and district: the hourly AQI of HJ 633-2012 with its "
        "primary pollutant and individual indices, each pollutant's 1-minute means, and "
        "pollution hotspots.",
    ).with_variable(site_variable(Kind.POLLUTION.value))
    station = "\"scope\" = 'station'"
    board = board.with_row(db.Row("AQI"))
    board = board.with_panel(
        _series(
            "Station AQI",
            "Each station's hourly AQI, stamped at the hour's end; the bands are HJ 633's levels.",
            'SELECT "aqi" FROM "aqi" WHERE ' + where(station, DISTRICT, SITE) + ' GROUP BY "site"',
            "$tag_site",
            "none",
        )
        .thresholds(aqi_thresholds())
        .thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE_AND_AREA)
        )
        .show_points(cm.VisibilityMode.ALWAYS)
    )
    board = board.with_panel(
        _series(
            "District AQI",
            "Each district's hourly AQI: its worst station's.",
            'SELECT "aqi" FROM "aqi" WHERE '
            + where("\"scope\" = 'district'", DISTRICT)
            + ' GROUP BY "district"',
            "$tag_district",
            "none",
        )
        .thresholds(aqi_thresholds())
        .thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE_AND_AREA)
        )
        .show_points(cm.VisibilityMode.ALWAYS)
    )
    latest = _table(
        "Latest hour by station",
        "Each station's latest hourly AQI, its level and its primary pollutant(s) "
        "(CNEMC's names; none when the AQI is 50 or less).",
        'SELECT last("aqi") AS "AQI", last("level") AS "level", last("primary") AS "primary" '
        'FROM "aqi" WHERE ' + where(station, DISTRICT, SITE) + ' GROUP BY "site", "district"',
    ).thresholds(aqi_thresholds())
    latest = _colour_cells(latest, "AQI").override_by_name(
        "level", [dm.DynamicConfigValue(id_val="mappings", value=aqi_level_mappings())]
    )
    board = board.with_panel(_colour_cells(latest, "level", "color-text"))
    iaqi = ", ".join(f'last("iaqi_{p.value}") AS "{p.label}"' for p in HOURLY_POLLUTANTS)
    board = board.with_panel(
        bargauge.Panel()
        .title("Individual indices (IAQI)")
        .description(
            "Each pollutant's individual index in each station's latest hour: the "
            "highest is the AQI, and its pollutant the primary one."
        )
        .datasource(DATASOURCE)
        .with_target(
            _target(
                f'SELECT {iaqi} FROM "aqi" WHERE '
                + where(station, DISTRICT, SITE)
                + ' GROUP BY "site"',
                alias="$tag_site $col",
            )
        )
        .thresholds(aqi_thresholds())
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .min(0)
        .max(300)
        .span(12)
        .height(8)
    )
    board = board.with_row(db.Row("Pollutants"))
    for metric in CATALOGUE[Kind.POLLUTION].values():
        board = board.with_panel(
            _series(
                f"{metric.name} ({metric.unit})",
                f"Each station's 1-minute mean of {metric.description or metric.name}.",
                'SELECT mean("mean") FROM "agg_1m" WHERE '
                + where(
                    "\"scope\" = 'sensor'",
                    "\"kind\" = 'pollution'",
                    f"\"metric\" = '{metric.name}'",
                    DISTRICT,
                    SITE,
                )
                + ' GROUP BY time($__interval), "site" fill(none)',
                "$tag_site",
                "conmgm3" if metric.unit == "mg/m³" else "conμgm3",
                span=8,
            )
        )
    board = board.with_row(db.Row("Districts"))
    for name in ("pm2_5", "pm10"):
        metric = CATALOGUE[Kind.POLLUTION][name]
        board = board.with_panel(
            _series(
                f"{metric.name} by district ({metric.unit})",
                f"The mean of each district's stations' 1-minute means of {metric.name}.",
                'SELECT mean("mean") FROM "agg_1m" WHERE '
                + where(
                    "\"scope\" = 'sensor'",
                    "\"kind\" = 'pollution'",
                    f"\"metric\" = '{metric.name}'",
                    DISTRICT,
                )
                + ' GROUP BY time($__interval), "district" fill(none)',
                "$tag_district",
                "conμgm3",
            )
        )
    board = board.with_row(db.Row("Hotspots"))
    return board.with_panel(
        _series(
            "Pollution hotspots",
            "Stations that stand out in their district by PM2.5 (robust z-score against the "
            "district's stations or the station's own baseline), ranked every five minutes.",
            'SELECT "score" FROM "hotspot" WHERE '
            + where("\"kind\" = 'pollution'", DISTRICT, SITE)
            + ' GROUP BY "site"',
            "$tag_site",
            "none",
            span=24,
        ).show_points(cm.VisibilityMode.ALWAYS)
    )


# ---------------------------------------------------------------- traffic


def _traffic(spec: BoardSpec, settings: BoardSettings) -> db.Dashboard:
    board = _dashboard(
        spec,
        settings,
        "Congestion per road segment and direction and per district (GB/T 33171 TPI and "
        "grade), speeds and vehicle counts.",
    )
    segment = "\"scope\" = 'segment'"
    board = board.with_row(db.Row("Congestion"))
    board = board.with_panel(
        _series(
            "District TPI",
            "Each district's traffic performance index: its segments' TPIs weighted by "
            "vehicle-kilometres. 0-2 smooth ... 8-10 severely congested.",
            'SELECT mean("tpi") FROM "traffic_index" WHERE '
            + where("\"scope\" = 'district'", DISTRICT)
            + ' GROUP BY time($__interval), "district" fill(none)',
            "$tag_district",
            "none",
        )
        .min(0)
        .max(10)
        .thresholds(tpi_thresholds())
        .thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE_AND_AREA)
        )
    )
    board = board.with_panel(
        _series(
            "Segment TPI",
            "Each road segment's and direction's traffic performance index, per minute.",
            'SELECT mean("tpi") FROM "traffic_index" WHERE '
            + where(segment, DISTRICT)
            + ' GROUP BY time($__interval), "segment", "direction" fill(none)',
            "$tag_segment $tag_direction",
            "none",
        )
        .min(0)
        .max(10)
        .thresholds(tpi_thresholds())
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED))
    )
    now = _table(
        "Segments now",
        "Each segment's and direction's latest minute: TPI, grade (1 smooth ... 5 "
        "severe), space-mean speed, vehicles and how it was rated.",
        'SELECT last("tpi") AS "tpi", last("grade") AS "grade", last("speed_kmh") AS "speed", '
        'last("vehicles") AS "vehicles", last("basis") AS "basis" FROM "traffic_index" WHERE '
        + where(segment, DISTRICT)
        + ' GROUP BY "segment", "direction", "district"',
    )
    now = now.override_by_name(
        "tpi", [dm.DynamicConfigValue(id_val="thresholds", value=tpi_thresholds().build())]
    ).override_by_name(
        "grade", [dm.DynamicConfigValue(id_val="thresholds", value=grade_thresholds().build())]
    )
    board = board.with_panel(_colour_cells(_colour_cells(now, "tpi"), "grade"))
    board = board.with_panel(
        _stat(
            "Congested share",
            "The share of each district's traffic (vehicle-km) on segments graded 4 or 5.",
            'SELECT last("congested_share") FROM "traffic_index" WHERE '
            + where("\"scope\" = 'district'", DISTRICT)
            + ' GROUP BY "district"',
            "$tag_district",
            "percentunit",
            span=12,
        ).thresholds(thresholds("green", (0.1, "orange"), (0.3, "red")))
    )
    board = board.with_row(db.Row("Flow"))
    board = board.with_panel(
        _series(
            "Segment speed",
            "Each segment's and direction's space-mean speed.",
            'SELECT mean("speed_kmh") FROM "traffic_index" WHERE '
            + where(segment, DISTRICT)
            + ' GROUP BY time($__interval), "segment", "direction" fill(none)',
            "$tag_segment $tag_direction",
            "velocitykmh",
        )
    )
    return board.with_panel(
        _series(
            "Vehicles",
            "Vehicles counted on each segment and direction per interval of the graph.",
            'SELECT sum("vehicles") FROM "traffic_index" WHERE '
            + where(segment, DISTRICT)
            + ' GROUP BY time($__interval), "segment", "direction" fill(none)',
            "$tag_segment $tag_direction",
            "short",
        ).draw_style(cm.GraphDrawStyle.BARS)
    )


# ---------------------------------------------------------------- scenic areas


def _scenic(spec: BoardSpec, settings: BoardSettings) -> db.Dashboard:
    board = _dashboard(
        spec,
        settings,
        "Visitors per scenic area against its carrying capacity (LB/T 034-2014): occupancy "
        "against the 80, 90 and 100 % tiers, and the day's visitors against the daily capacity.",
    )
    board = board.with_row(db.Row("Occupancy"))
    board = board.with_panel(
        _series(
            "Occupancy against capacity",
            "Visitors inside each area as a share of its instantaneous capacity; the lines "
            "are the warning tiers at 80, 90 and 100 %.",
            'SELECT max("occupancy_pct") FROM "scenic" WHERE '
            + where(DISTRICT)
            + ' GROUP BY time($__interval), "area" fill(none)',
            "$tag_area",
            "percent",
            span=16,
        )
        .min(0)
        .thresholds(occupancy_thresholds())
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE))
    )
    board = board.with_panel(
        _stat(
            "Tier now",
            "Each area's current LB/T 034 warning tier: 0, 80, 90 or 100 %.",
            'SELECT last("tier") FROM "scenic" WHERE ' + where(DISTRICT) + ' GROUP BY "area"',
            "$tag_area",
            "percent",
            span=8,
        ).thresholds(occupancy_thresholds())
    )
    board = board.with_panel(
        _series(
            "Visitors inside",
            "Visitors inside each area: entries minus exits since opening.",
            'SELECT last("occupancy") FROM "scenic" WHERE '
            + where(DISTRICT)
            + ' GROUP BY time($__interval), "area" fill(none)',
            "$tag_area",
            "short",
        )
    )
    board = board.with_panel(
        _series(
            "Unexplained exits",
            "Exits beyond the day's entries: a gate counter that misses entries.",
            'SELECT max("unexplained_exits") FROM "scenic" WHERE '
            + where(DISTRICT)
            + ' GROUP BY time($__interval), "area" fill(none)',
            "$tag_area",
            "short",
        )
    )
    board = board.with_row(db.Row("Daily visitors"))
    board = board.with_panel(
        _series(
            "Visitors per day",
            f"Each area's visitors per local day ({settings.timezone}): entries since opening.",
            'SELECT max("daily_visitors") FROM "scenic" WHERE '
            + where(DISTRICT)
            + f" GROUP BY time(1d), \"area\" fill(none) tz('{settings.timezone}')",
            "$tag_area",
            "short",
            span=16,
        ).draw_style(cm.GraphDrawStyle.BARS)
    )
    return board.with_panel(
        _stat(
            "Today against daily capacity",
            "Each area's visitors today as a share of its daily capacity (tiers at 80, 90, 100 %).",
            'SELECT last("daily_pct") FROM "scenic" WHERE ' + where(DISTRICT) + ' GROUP BY "area"',
            "$tag_area",
            "percent",
            span=8,
        ).thresholds(occupancy_thresholds())
    )


# ---------------------------------------------------------------- energy


def _energy(spec: BoardSpec, settings: BoardSettings) -> db.Dashboard:
    board = _dashboard(
        spec,
        settings,
        "Electricity per metered building: power against its hour-of-week baseline, "
        "consumption from the kWh registers, and the buildings that stand out.",
    ).with_variable(site_variable(Kind.ENERGY.value))
    board = board.with_row(db.Row("Power"))
    board = board.with_panel(
        _series(
            "Power and baseline",
            "Each building's mean power, and the power it usually draws at this hour of the week.",
            'SELECT mean("power_kw") AS "power", mean("baseline_kw") AS "baseline" '
            'FROM "energy_use" WHERE '
            + where(DISTRICT, SITE)
            + ' GROUP BY time($__interval), "building" fill(none)',
            "$tag_building $col",
            "kwatt",
        ).override_by_regexp(
            ".*baseline",
            [
                dm.DynamicConfigValue(
                    id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
                )
            ],
        )
    )
    board = board.with_panel(
        _series(
            "Power over baseline",
            "Each building's power divided by its baseline: 1 is a usual hour.",
            'SELECT mean("power_ratio") FROM "energy_use" WHERE '
            + where(DISTRICT, SITE)
            + ' GROUP BY time($__interval), "building" fill(none)',
            "$tag_building",
            "none",
        )
        .thresholds(thresholds("green", (1.3, "orange"), (2, "red")))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED))
    )
    board = board.with_row(db.Row("Consumption"))
    board = board.with_panel(
        _series(
            "Consumption",
            "Energy each building used per interval of the graph, from its kWh register "
            "(rollovers and resets accounted for).",
            'SELECT sum("consumption_kwh") FROM "energy_use" WHERE '
            + where(DISTRICT, SITE)
            + ' GROUP BY time($__interval), "building" fill(none)',
            "$tag_building",
            "kwatth",
        ).draw_style(cm.GraphDrawStyle.BARS)
    )
    board = board.with_panel(
        _stat(
            "Consumption in range",
            "Energy each building used over the board's time range.",
            'SELECT sum("consumption_kwh") FROM "energy_use" WHERE '
            + where(DISTRICT, SITE)
            + ' GROUP BY "building"',
            "$tag_building",
            "kwatth",
        ).thresholds(thresholds("blue"))
    )
    board = board.with_panel(
        _table(
            "Register events",
            "Meter readings whose register did not simply move on: first reading, gap, "
            "rollover, reset, late or implausible step.",
            'SELECT count("consumption_kwh") AS "readings" FROM "energy_use" WHERE '
            + where("\"event\" != 'normal'", DISTRICT, SITE)
            + ' GROUP BY "building", "sensor"',
            span=6,
        )
    )
    board = board.with_row(db.Row("Hotspots"))
    return board.with_panel(
        _table(
            "Energy hotspots",
            "Buildings that stand out in their district by power per square metre "
            "(robust z against the district's buildings or the building's own baseline).",
            'SELECT last("rank") AS "rank", last("score") AS "score", last("value") AS "W/m²", '
            'last("reason") AS "reason", last("peer_z") AS "peer z", last("self_z") AS "self z" '
            'FROM "hotspot" WHERE '
            + where("\"kind\" = 'energy'", DISTRICT, SITE)
            + ' GROUP BY "site", "district"',
            span=24,
        )
    )


# ---------------------------------------------------------------- gateways


def _gateways(spec: BoardSpec, settings: BoardSettings) -> db.Dashboard:
    board = (
        _dashboard(
            spec,
            settings,
            "The gateways: online or offline, their disk queues, readings dropped by a full "
            "queue, sensor errors, and the readings the stream scored by kind.",
        )
        .with_variable(site_variable())
        .with_variable(kind_variable())
    )
    board = board.with_row(db.Row("State"))
    board = board.with_panel(
        statetimeline.Panel()
        .title("Online")
        .description(
            "Each gateway's state from its status messages: the birth and heartbeats say "
            "online, its last will (or a clean stop) offline."
        )
        .datasource(DATASOURCE)
        .with_target(
            _target(
                'SELECT last("online") FROM "gateway" WHERE '
                + where(DISTRICT, SITE)
                + ' GROUP BY time($__interval), "gateway" fill(previous)',
                alias="$tag_gateway",
            )
        )
        .mappings(online_mappings())
        .thresholds(thresholds("red", (1, "green")))
        .show_value(cm.VisibilityMode.NEVER)
        .span(24)
        .height(6)
    )
    now = _table(
        "Gateways now",
        "Each gateway's latest status: online, readings queued on its disk, sent and "
        "dropped since its agent started, sensor errors and uptime.",
        'SELECT last("online") AS "online", last("buffer_depth") AS "queued", '
        'last("sent_total") AS "sent", last("dropped_total") AS "dropped", '
        'last("sensor_errors_total") AS "sensor errors", last("uptime_s") AS "uptime" '
        'FROM "gateway" WHERE ' + where(DISTRICT, SITE) + ' GROUP BY "gateway", "site", "district"',
        span=24,
    )
    now = now.override_by_name(
        "online",
        [
            dm.DynamicConfigValue(id_val="mappings", value=online_mappings()),
            dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
        ],
    ).override_by_name("uptime", [dm.DynamicConfigValue(id_val="unit", value="s")])
    board = board.with_panel(now)
    board = board.with_row(db.Row("Queues"))
    board = board.with_panel(
        _series(
            "Buffer depth",
            "Readings waiting in each gateway's disk queue: it grows while the broker is "
            "out of reach.",
            'SELECT max("buffer_depth") FROM "gateway" WHERE '
            + where(DISTRICT, SITE)
            + ' GROUP BY time($__interval), "gateway" fill(none)',
            "$tag_gateway",
            "short",
        )
    )
    board = board.with_panel(
        _series(
            "Dropped readings",
            "Readings each gateway dropped per interval because its queue was full "
            "(the increase of its dropped counter).",
            'SELECT non_negative_difference(max("dropped_total")) FROM "gateway" WHERE '
            + where(DISTRICT, SITE)
            + ' GROUP BY time($__interval), "gateway" fill(none)',
            "$tag_gateway",
            "short",
        )
        .draw_style(cm.GraphDrawStyle.BARS)
        .thresholds(thresholds("green", (1, "red")))
    )
    board = board.with_row(db.Row("Readings"))
    return board.with_panel(
        _series(
            "Readings scored by kind",
            "On-time readings the stream scored per interval, by kind of sensor.",
            'SELECT count("score") FROM "anomaly" WHERE '
            + where(KIND, DISTRICT)
            + ' GROUP BY time($__interval), "kind" fill(0)',
            "$tag_kind",
            "short",
            span=24,
        ).draw_style(cm.GraphDrawStyle.BARS)
    )


# ---------------------------------------------------------------- alert history


def _alerts(spec: BoardSpec, settings: BoardSettings) -> db.Dashboard:
    board = _dashboard(
        spec,
        settings,
        "Alert history: every transition of every rule, fired and resolved, with the "
        "value, threshold and summary; the same alerts are annotations on every board.",
    ).with_variable(severity_variable())
    severity = '"severity" =~ /^$severity$/'
    board = board.with_row(db.Row("History"))
    board = board.with_panel(
        _series(
            "Alerts fired",
            "Alerts that started firing per interval, by rule.",
            'SELECT count("firing") FROM "alert" WHERE '
            + where('"firing" = 1', severity, DISTRICT)
            + ' GROUP BY time($__interval), "rule" fill(none)',
            "$tag_rule",
            "short",
            span=24,
        ).draw_style(cm.GraphDrawStyle.BARS)
    )
    history = _table(
        "Transitions",
        "Every alert transition, newest first: 1 fired, 0 resolved.",
        'SELECT "firing", "rule", "severity", "subject", "metric", "value", "threshold", '
        '"summary", "description" FROM "alert" WHERE '
        + where(severity, DISTRICT)
        + " ORDER BY time DESC LIMIT 1000",
        span=24,
        hide_time=False,
    )
    return board.with_panel(history.height(14))


BOARDS: tuple[BoardSpec, ...] = (
    BoardSpec("city-overview", "urbansense-overview", "urbansense · City overview", _overview),
    BoardSpec("air-quality", "urbansense-air-quality", "urbansense · Air quality", _air_quality),
    BoardSpec("traffic", "urbansense-traffic", "urbansense · Traffic", _traffic),
    BoardSpec("scenic-areas", "urbansense-scenic", "urbansense · Scenic areas", _scenic),
    BoardSpec("energy", "urbansense-energy", "urbansense · Energy", _energy),
    BoardSpec("gateways", "urbansense-gateways", "urbansense · Gateways", _gateways),
    BoardSpec("alerts", "urbansense-alerts", "urbansense · Alert history", _alerts),
)
"""Every board, in the order of the boards' dropdown."""

r"""What every board shares: the data source, template variables, filters, colours, annotations.

The colours are the standards' own: the AQI's six levels are HJ 633-2012's (taken from
:data:`stream.indices.aqi.HJ633_LEVELS`, so the boards and ``urbansense aqi`` can never
disagree), the scenic tiers LB/T 034's 80, 90 and 100 %, the congestion grades
GB/T 33171's TPI bands.

>>> [(s.value, s.color) for s in aqi_thresholds().build().steps]
[(None, '#00e400'), (51.0, '#ffff00'), (101.0, '#ff7e00'), (151.0, '#ff0000'),
 (201.0, '#99004c'), (301.0, '#7e0023')]
>>> where(DISTRICT, "\"scope\" = 'station'")
'"district" =~ /^$district$/ AND "scope" = \'station\' AND $timeFilter'
"""

from __future__ import annotations

from typing import Self

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dm

from stream.indices.aqi import HJ633_LEVELS
from telemetry import Severity

__all__ = [
    "DATASOURCE",
    "DATASOURCE_UID",
    "DISTRICT",
    "KIND",
    "SITE",
    "AlertAnnotation",
    "aqi_level_mappings",
    "aqi_thresholds",
    "datasource_variable",
    "district_variable",
    "grade_thresholds",
    "kind_variable",
    "occupancy_thresholds",
    "online_mappings",
    "severity_variable",
    "site_variable",
    "thresholds",
    "tpi_thresholds",
    "where",
]

DATASOURCE_UID = "urbansense-influxdb"
"""The uid of the InfluxDB data source that ``deploy/grafana/provisioning`` creates."""

DATASOURCE = dm.DataSourceRef(type_val="influxdb", uid="${datasource}")
"""Every panel's data source: the board's ``datasource`` variable (any InfluxDB source)."""

DISTRICT = '"district" =~ /^$district$/'
"""The condition of the ``district`` variable (all districts: ``.*``)."""
SITE = '"site" =~ /^$site$/'
"""The condition of the ``site`` variable."""
KIND = '"kind" =~ /^$kind$/'
"""The condition of the ``kind`` variable."""


def where(*conditions: str) -> str:
    """The conditions joined by AND, then Grafana's time range (``$timeFilter``)."""
    return " AND ".join((*conditions, "$timeFilter"))


# ---------------------------------------------------------------- colours


def thresholds(base: str, *steps: tuple[float, str]) -> db.ThresholdsConfig:
    """Absolute thresholds: ``base`` below the first step, then each step's colour."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps(
            [dm.Threshold(value=None, color=base)]
            + [dm.Threshold(value=float(v), color=c) for v, c in steps]
        )
    )


def aqi_thresholds() -> db.ThresholdsConfig:
    """HJ 633-2012's six level colours, from 0, 51, 101, 151, 201 and 301."""
    first, *rest = HJ633_LEVELS
    return thresholds(
        first.colour_hex.lower(), *((level.low, level.colour_hex.lower()) for level in rest)
    )


def aqi_level_mappings() -> list[dm.ValueMapping]:
    """The AQI level number (1-6) shown as HJ 633's English name, in its colour."""
    return [
        dm.ValueMap(
            options={
                str(level.number): dm.ValueMappingResult(
                    text=f"{level.number} {level.name_en}",
                    color=level.colour_hex.lower(),
                    index=level.number - 1,
                )
                for level in HJ633_LEVELS
            }
        )
    ]


def occupancy_thresholds() -> db.ThresholdsConfig:
    """LB/T 034-2014's warning tiers: 80 % (yellow), 90 % (orange), 100 % (red)."""
    return thresholds("green", (80, "yellow"), (90, "orange"), (100, "red"))


def tpi_thresholds() -> db.ThresholdsConfig:
    """GB/T 33171's five congestion grades over the TPI: 0, 2, 4, 6 and 8."""
    return thresholds("green", (2, "light-green"), (4, "yellow"), (6, "orange"), (8, "red"))


def grade_thresholds() -> db.ThresholdsConfig:
    """The same five grades, by grade number 1-5."""
    return thresholds("green", (2, "light-green"), (3, "yellow"), (4, "orange"), (5, "red"))


def online_mappings() -> list[dm.ValueMapping]:
    """A gateway's ``online`` field: 1 online (green), 0 offline (red)."""
    return [
        dm.ValueMap(
            options={
                "1": dm.ValueMappingResult(text="online", color="green", index=0),
                "0": dm.ValueMappingResult(text="offline", color="red", index=1),
            }
        )
    ]


# ---------------------------------------------------------------- variables


def datasource_variable() -> db.DatasourceVariable:
    """Which InfluxDB data source the board reads; the provisioned one by default."""
    return (
        db.DatasourceVariable("datasource")
        .label("Data source")
        .type("influxdb")
        .current(dm.VariableOption(text="urbansense InfluxDB", value=DATASOURCE_UID))
    )


def _tag_variable(name: str, label: str, query: str) -> db.QueryVariable:
    everything = dm.VariableOption(text="All", value="$__all")
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(everything)
    )


def district_variable() -> db.QueryVariable:
    """The districts that have data (from the 1-minute aggregates); several or all."""
    return _tag_variable(
        "district", "District", 'SHOW TAG VALUES FROM "agg_1m" WITH KEY = "district"'
    )


def site_variable(kind: str | None = None) -> db.QueryVariable:
    """The sites of the chosen districts, of one kind of sensor if ``kind`` is given."""
    condition = DISTRICT if kind is None else f"\"kind\" = '{kind}' AND {DISTRICT}"
    return _tag_variable(
        "site", "Site", f'SHOW TAG VALUES FROM "agg_1m" WITH KEY = "site" WHERE {condition}'
    )


def kind_variable() -> db.QueryVariable:
    """The kinds of sensor that have data in the chosen districts."""
    return _tag_variable(
        "kind", "Kind", f'SHOW TAG VALUES FROM "agg_1m" WITH KEY = "kind" WHERE {DISTRICT}'
    )


def severity_variable() -> db.CustomVariable:
    """Alert severities, from the wire contract's :class:`~telemetry.Severity`."""
    values = ",".join(s.value for s in Severity)
    return (
        db.CustomVariable("severity")
        .label("Severity")
        .values(values)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(text="All", value="$__all"))
    )


# ---------------------------------------------------------------- annotations


class _InfluxAnnotation(dm.AnnotationQuery):
    """An annotation query of Grafana's InfluxDB data source (the SDK has none).

    Grafana reads an InfluxQL annotation's statement and columns both from the query
    itself and from its ``target`` (newer versions); both are written.
    """

    def __init__(self, name: str, query: str, *, icon_color: str, text: str, tags: str) -> None:
        super().__init__(name=name, datasource=DATASOURCE, enable=True, icon_color=icon_color)
        self.query = query
        self.text_column = text
        self.tags_column = tags

    def to_json(self) -> dict[str, object]:
        columns = {"textColumn": self.text_column, "tagsColumn": self.tags_column}
        payload = super().to_json()
        payload.update(query=self.query, **columns)
        payload["target"] = {
            "refId": "Anno",
            "query": self.query,
            "rawQuery": True,
            "resultFormat": "table",
            "fromAnnotations": True,
            **columns,
        }
        return payload


class AlertAnnotation(cogbuilder.Builder[dm.AnnotationQuery]):
    """Alerts of the chosen districts as annotations: when each fired, or resolved.

    The ``alert`` measurement holds a point when a rule starts firing on a subject
    (stamped when its condition began) and one when it resolves.
    """

    def __init__(self, firing: bool) -> None:
        condition = f'"firing" = {int(firing)}'
        query = (
            'SELECT "summary", "subject", "value", "threshold", "rule", "severity" '
            'FROM "alert" WHERE ' + where(condition, DISTRICT)
        )
        self._internal = _InfluxAnnotation(
            "Alerts fired" if firing else "Alerts resolved",
            query,
            icon_color="red" if firing else "green",
            text="summary",
            tags="rule,severity",
        )

    def build(self) -> dm.AnnotationQuery:
        """The annotation query."""
        return self._internal

    def enable(self, enable: bool) -> Self:
        """Show the annotations when the board opens, or only when toggled on."""
        self._internal.enable = enable
        return self

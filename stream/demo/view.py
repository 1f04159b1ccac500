"""The live view: from what landed to the rows, words and colours on the terminal.

:func:`build_view` is pure: a :class:`~stream.demo.store.Snapshot` of the store,
the registry's names and capacities (:class:`Names`), the alerts the webhook
received and the landing rate go in; a :class:`DemoView` of rows with their colours
comes out. :func:`render_rich` draws it with rich (tables in a ``Live`` display on
a terminal) and :func:`render_plain` gives one summary line for logs and pipes.

Colours are the standards' own: HJ 633-2012 Appendix A for AQI levels (green,
yellow, orange, red, purple, maroon), the LB/T 034 warning tiers for scenic
occupancy, and the usual traffic-map colours for the five GB/T 33171 grades.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from stream.demo.lines import FieldValue, Point
from stream.demo.store import Snapshot
from stream.indices.aqi import AqiInputError, aqi_level
from stream.indices.traffic import CongestionGrade
from telemetry.registry import Registry

__all__ = [
    "AlertEvent",
    "AlertRow",
    "AqiRow",
    "DemoView",
    "HotspotRow",
    "Names",
    "RateMeter",
    "ScenicRow",
    "TrafficRow",
    "build_view",
    "render_plain",
    "render_rich",
]

_TIER_COLOURS = {0: "#00E400", 80: "#FFFF00", 90: "#FF7E00", 100: "#FF0000"}
_TIER_WORDS = {0: "normal", 80: "warning 预警", 90: "restrict 限流", 100: "full 饱和"}
_GRADE_COLOURS = {1: "#00E400", 2: "#9ACD32", 3: "#FFFF00", 4: "#FF7E00", 5: "#FF0000"}
_SEVERITY_COLOURS = {"critical": "#FF0000", "warning": "#FF7E00", "info": "#00BFFF"}
_RESOLVED_COLOUR = "#00E400"
_TWO_COLUMNS = 150
_DARK = frozenset({"#99004C", "#7E0023", "#FF0000"})
_POLLUTANTS = {
    "pm2_5": "PM2.5",
    "pm10": "PM10",
    "no2": "NO2",
    "so2": "SO2",
    "co": "CO",
    "o3_1h": "O3",
    "o3_8h": "O3 (8h)",
}


@dataclass(frozen=True, slots=True)
class Names:
    """What the view needs from the site registry: display names and capacities.

    Attributes:
        districts: district id -> name.
        areas: scenic area id -> (name, instantaneous capacity in persons).
        segments: road segment id -> name.
        sites: site id -> name.
        utc_offset_h: the city's local time, for the clock shown.
    """

    districts: Mapping[str, str] = field(default_factory=dict)
    areas: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    segments: Mapping[str, str] = field(default_factory=dict)
    sites: Mapping[str, str] = field(default_factory=dict)
    utc_offset_h: float = 8.0

    @classmethod
    def of(cls, registry: Registry, utc_offset_h: float = 8.0) -> Names:
        """The names of a registry."""
        return cls(
            districts={d.id: d.name for d in registry.districts},
            areas={a.id: (a.name, a.capacity.instantaneous) for a in registry.scenic_areas},
            segments={s.id: s.name for s in registry.road_segments},
            sites={s.id: s.name for s in registry.sites},
            utc_offset_h=utc_offset_h,
        )


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alert's transition as the webhook received it.

    Attributes:
        received: when the notification arrived (wall clock, UTC).
        status: ``firing`` or ``resolved``.
        rule: the rule's id (the ``alertname`` label).
        severity: ``critical``, ``warning`` or ``info``.
        summary: the alert's summary annotation.
        fingerprint: rule and subject, as a 16-hex id.
        starts_at: when its condition began (event time, RFC 3339).
    """

    received: datetime
    status: str
    rule: str
    severity: str
    summary: str
    fingerprint: str
    starts_at: str = ""


@dataclass(frozen=True, slots=True)
class AqiRow:
    """A district's latest hourly AQI and its HJ 633 level."""

    district: str
    aqi: int
    level: int
    category: str
    colour: str
    primary: str
    station: str
    at: datetime | None


@dataclass(frozen=True, slots=True)
class ScenicRow:
    """A scenic area's occupancy against its instantaneous capacity."""

    area: str
    occupancy: int
    capacity: int
    pct: float
    tier: int
    tier_word: str
    colour: str
    daily_visitors: int


@dataclass(frozen=True, slots=True)
class TrafficRow:
    """A road segment's (one direction's) congestion."""

    segment: str
    direction: str
    tpi: float
    grade: int
    grade_word: str
    colour: str
    speed_kmh: float


@dataclass(frozen=True, slots=True)
class HotspotRow:
    """A building that stands out in its district's energy ranking."""

    district: str
    site: str
    rank: int
    value: float
    score: float


@dataclass(frozen=True, slots=True)
class AlertRow:
    """An alert transition, for the alerts table."""

    received: datetime
    status: str
    severity: str
    rule: str
    summary: str
    colour: str


@dataclass(frozen=True, slots=True)
class DemoView:
    """Everything the terminal shows at one moment."""

    sim_time: datetime | None
    readings: int
    rate: float
    aqi: tuple[AqiRow, ...]
    scenic: tuple[ScenicRow, ...]
    traffic: tuple[TrafficRow, ...]
    hotspots: tuple[HotspotRow, ...]
    alerts: tuple[AlertRow, ...]
    firing: int
    notified: int
    alert_points: int

    @property
    def worst_traffic(self) -> TrafficRow | None:
        """The most congested segment and direction, if any is known."""
        return self.traffic[0] if self.traffic else None


class RateMeter:
    """Readings per second over a sliding window of wall-clock seconds.

    >>> meter = RateMeter(window_s=10)
    >>> meter.add(0.0, 0), meter.add(5.0, 1000), meter.add(10.0, 3000)
    (0.0, 200.0, 300.0)
    >>> meter.add(20.0, 3000)
    0.0
    """

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, total: int) -> float:
        """Note the running total at a moment (seconds); return the rate over the window."""
        self._samples.append((at, total))
        while len(self._samples) > 2 and at - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        first_at, first = self._samples[0]
        return (total - first) / (at - first_at) if at > first_at else 0.0


def _number(fields: Mapping[str, FieldValue], key: str, default: float = 0.0) -> float:
    value = fields.get(key)
    return float(value) if isinstance(value, int | float) else default


def _primary(station: Point | None) -> str:
    """The primary pollutants of a station's AQI: those with the highest IAQI above 50."""
    if station is None:
        return "-"
    iaqi = {
        k.removeprefix("iaqi_"): _number(station.fields, k)
        for k in sorted(station.fields)
        if k.startswith("iaqi_")
    }
    top = max(iaqi.values(), default=0.0)
    return ", ".join(_POLLUTANTS.get(k, k) for k, v in iaqi.items() if v == top and v > 50) or "-"


def _aqi_row(point: Point, stations: Sequence[Point], names: Names) -> AqiRow | None:
    aqi = int(_number(point.fields, "aqi", -1))
    try:
        level = aqi_level(aqi)
    except AqiInputError:
        return None
    district = point.tags.get("district", "?")
    # A district's AQI is its worst station's, of the same hour.
    worst = max(
        (p for p in stations if p.tags.get("district") == district and p.ts_ms == point.ts_ms),
        key=lambda p: (_number(p.fields, "aqi"), p.tags.get("site", "")),
        default=None,
    )
    site = worst.tags.get("site", "") if worst else ""
    return AqiRow(
        district=names.districts.get(district, district),
        aqi=aqi,
        level=level.number,
        category=level.name_en,
        colour=level.colour_hex,
        primary=_primary(worst),
        station=names.sites.get(site, site) or "-",
        at=None if point.ts_ms is None else datetime.fromtimestamp(point.ts_ms / 1000, UTC),
    )


def _scenic_row(point: Point, names: Names) -> ScenicRow:
    area = point.tags.get("area", "?")
    name, capacity = names.areas.get(area, (area, 0))
    occupancy = int(_number(point.fields, "occupancy"))
    pct = _number(point.fields, "occupancy_pct", 100.0 * occupancy / capacity if capacity else 0.0)
    tier = int(_number(point.fields, "tier"))
    return ScenicRow(
        area=name,
        occupancy=occupancy,
        capacity=capacity,
        pct=pct,
        tier=tier,
        tier_word=_TIER_WORDS.get(tier, f"{tier} %"),
        colour=_TIER_COLOURS.get(tier, "#FF0000"),
        daily_visitors=int(_number(point.fields, "daily_visitors")),
    )


def _traffic_row(point: Point, names: Names) -> TrafficRow:
    segment = point.tags.get("segment", "?")
    tpi = _number(point.fields, "tpi")
    grade = int(_number(point.fields, "grade", min(5, int(tpi // 2) + 1)))
    grade = min(5, max(1, grade))
    return TrafficRow(
        segment=names.segments.get(segment, segment),
        direction=point.tags.get("direction", ""),
        tpi=tpi,
        grade=grade,
        grade_word=CongestionGrade(grade).label_zh,
        colour=_GRADE_COLOURS[grade],
        speed_kmh=_number(point.fields, "speed_kmh"),
    )


def _hotspot_row(point: Point, names: Names) -> HotspotRow:
    district = point.tags.get("district", "?")
    site = point.tags.get("site", "?")
    return HotspotRow(
        district=names.districts.get(district, district),
        site=names.sites.get(site, site),
        rank=int(_number(point.fields, "rank")),
        value=_number(point.fields, "value"),
        score=_number(point.fields, "score"),
    )


def _alert_row(event: AlertEvent) -> AlertRow:
    colour = (
        _RESOLVED_COLOUR
        if event.status == "resolved"
        else _SEVERITY_COLOURS.get(event.severity, "#FF7E00")
    )
    return AlertRow(event.received, event.status, event.severity, event.rule, event.summary, colour)


def build_view(
    snapshot: Snapshot,
    names: Names,
    alerts: Sequence[AlertEvent],
    rate: float,
    *,
    max_alerts: int = 8,
    max_rows: int = 5,
) -> DemoView:
    """The view of a snapshot: sorted rows with their colours.

    Args:
        snapshot: what has landed in the store.
        names: display names and capacities from the registry.
        alerts: every alert transition the webhook received, oldest first.
        rate: readings landed per second, lately.
        max_alerts: how many of the latest transitions to list.
        max_rows: how many segments and hotspots to list.

    Districts and areas are in name order; segments worst first; hotspots by district
    and rank; the alerts newest first.
    """
    aqi = sorted(
        (row for p in snapshot.aqi if (row := _aqi_row(p, snapshot.stations, names)) is not None),
        key=lambda r: r.district,
    )
    scenic = sorted((_scenic_row(p, names) for p in snapshot.scenic), key=lambda r: r.area)
    traffic = sorted(
        (_traffic_row(p, names) for p in snapshot.traffic),
        key=lambda r: (-r.tpi, r.segment, r.direction),
    )[:max_rows]
    hotspots = sorted(
        (_hotspot_row(p, names) for p in snapshot.hotspots), key=lambda r: (r.district, r.rank)
    )[:max_rows]
    state: dict[str, str] = {}
    for event in alerts:
        state[event.fingerprint] = event.status
    return DemoView(
        sim_time=snapshot.sim_time,
        readings=snapshot.readings,
        rate=rate,
        aqi=tuple(aqi),
        scenic=tuple(scenic),
        traffic=tuple(traffic),
        hotspots=tuple(hotspots),
        alerts=tuple(_alert_row(e) for e in reversed(alerts[-max_alerts:])),
        firing=sum(1 for s in state.values() if s == "firing"),
        notified=len(alerts),
        alert_points=snapshot.alert_points,
    )


# ------------------------------------------------------------------ rendering


def local_time(when: datetime | None, utc_offset_h: float) -> str:
    """A time as the city's local time with its offset, or a dash.

    >>> local_time(datetime(2026, 11, 28, 9, 40, tzinfo=UTC), 8)
    '2026-11-28 17:40 +08:00'
    """
    if when is None:
        return "-"
    zone = timezone(timedelta(hours=utc_offset_h))
    local = when.astimezone(zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]}"


def render_plain(view: DemoView, names: Names, elapsed_s: float) -> str:
    """One summary line of the view, for a log or a pipe.

    >>> v = build_view(Snapshot(readings=1200), Names(), [], 40.0)
    >>> render_plain(v, Names(), 30.0)
    '[   30s] sim - | 40 readings/s, 1,200 landed | AQI - | scenic - | worst TPI - | energy hotspots - | alerts 0 firing, 0 notified'
    """  # noqa: E501 - a doctest's output is one line
    aqi = ", ".join(f"{r.district} {r.aqi} (L{r.level})" for r in view.aqi) or "-"
    scenic = (
        ", ".join(f"{r.area} {r.occupancy:,}/{r.capacity:,} ({r.pct:.0f} %)" for r in view.scenic)
        or "-"
    )
    worst = view.worst_traffic
    tpi = f"{worst.tpi:.1f} {worst.segment} {worst.direction}" if worst else "-"
    hot = ", ".join(f"{r.site} #{r.rank}" for r in view.hotspots) or "-"
    return (
        f"[{elapsed_s:6.0f}s] sim {local_time(view.sim_time, names.utc_offset_h)}"
        f" | {view.rate:,.0f} readings/s, {view.readings:,} landed | AQI {aqi}"
        f" | scenic {scenic} | worst TPI {tpi} | energy hotspots {hot}"
        f" | alerts {view.firing} firing, {view.notified} notified"
    )


def alert_line(event: AlertEvent) -> str:
    """One line for an alert transition as it arrives.

    >>> alert_line(AlertEvent(datetime(2026, 12, 5, 9, 0, 1, tzinfo=UTC), "firing", "aqi-heavy",
    ...                       "warning", "Heavy pollution", "0123456789abcdef"))
    'ALERT 09:00:01Z FIRING   warning  aqi-heavy: Heavy pollution'
    """
    return (
        f"ALERT {event.received:%H:%M:%S}Z {event.status.upper():8} {event.severity:8}"
        f" {event.rule}: {event.summary}"
    )


def _swatch(text: str, colour: str) -> Text:
    foreground = "white" if colour in _DARK else "black"
    return Text(f" {text} ", style=f"{foreground} on {colour}")


def _table(title: str, *columns: str) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        expand=True,
        pad_edge=False,
    )
    *first, last = columns
    for column in first:
        table.add_column(column, no_wrap=True)
    table.add_column(last, ratio=1)  # the room left goes to the last column
    return table


def _empty(table: Table, text: str) -> Table:
    if table.row_count == 0:
        table.add_row(Text(text, style="dim"), *[""] * (len(table.columns) - 1))
    return table


def render_rich(
    view: DemoView, names: Names, header: Iterable[str], elapsed_s: float, width: int = 160
) -> RenderableType:
    """The view as rich tables, for a ``Live`` display ``width`` columns wide.

    From 150 columns the tables stand in two columns, else one under another.
    """
    top = Text()
    for line in header:
        top.append(f"{line}\n", style="dim")
    top.append(
        f"sim {local_time(view.sim_time, names.utc_offset_h)}   "
        f"{view.rate:,.0f} readings/s landed   {view.readings:,} readings   "
        f"{view.firing} alerts firing, {view.notified} notified   {elapsed_s:,.0f} s",
        style="bold",
    )
    aqi = _table(
        "Air quality (hourly AQI, HJ 633)", "district", "AQI", "level", "primary", "worst station"
    )
    for r in view.aqi:
        aqi.add_row(
            r.district,
            str(r.aqi),
            _swatch(f"{r.level} {r.category}", r.colour),
            r.primary,
            r.station,
        )
    scenic = _table("Scenic areas", "area", "inside / capacity", "%", "tier", "today")
    for s in view.scenic:
        scenic.add_row(
            s.area,
            f"{s.occupancy:,} / {s.capacity:,}",
            f"{s.pct:.0f}",
            _swatch(s.tier_word, s.colour),
            f"{s.daily_visitors:,}",
        )
    traffic = _table("Congestion, worst first (GB/T 33171)", "segment", "dir", "TPI", "grade")
    for t in view.traffic:
        traffic.add_row(
            t.segment, t.direction, f"{t.tpi:.1f}", _swatch(f"{t.grade} {t.grade_word}", t.colour)
        )
    hot = _table("Energy hotspots", "district", "building", "#", "W/m²", "z")
    for h in view.hotspots:
        hot.add_row(h.district, h.site, str(h.rank), f"{h.value:.1f}", f"{h.score:.1f}")
    alerts = _table("Alerts (webhook)", "received", "state", "severity", "rule", "summary")
    for a in view.alerts:
        alerts.add_row(
            f"{a.received:%H:%M:%S}",
            Text(a.status, style=f"bold {a.colour}"),
            a.severity,
            a.rule,
            a.summary,
        )
    _empty(aqi, "no hourly AQI yet")
    _empty(scenic, "no gate counts yet")
    _empty(traffic, "no congestion index yet")
    _empty(hot, "no building stands out")
    _empty(alerts, "none received yet")
    if width < _TWO_COLUMNS:
        return Group(top, aqi, scenic, traffic, hot, alerts)
    grid = Table.grid(expand=True, padding=(0, 2))
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(Group(aqi, scenic), Group(traffic, hot))
    return Group(top, grid, alerts)

"""What has landed in the store, read back for the live view.

Two readers give the same :class:`Snapshot`: :class:`VictoriaMetricsReader` asks a
VictoriaMetrics server (two instant queries for the totals, and ``/api/v1/export``
for the latest points of the indices, around the newest reading's event time), and
:class:`LineFilesReader` follows the line-protocol files of the file sink. Both feed
:class:`Landed`, the pure reducer that keeps the latest point of every series the
view shows and cuts the snapshot, so what the terminal shows is what a query of the
store would give.

Event time is the clock: the demo replays a scenario faster than the wall clock, so
"now" in the view is the newest reading's timestamp (``sim_time``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from stream.demo.lines import FieldValue, LineParseError, LineTail, Point, parse_line

__all__ = [
    "READING_MEASUREMENTS",
    "Landed",
    "LineFilesReader",
    "Snapshot",
    "VictoriaMetricsReader",
    "points_from_export",
]

READING_MEASUREMENTS = ("pollution", "ambient", "energy", "traffic", "crowd")
"""The measurements of raw readings: one point per reading."""

_SEQ_SELECTOR = '{__name__=~"(' + "|".join(READING_MEASUREMENTS) + ')_seq"}'


@dataclass(frozen=True, slots=True)
class _Watch:
    """A series the view shows: its measurement, required tags and how far back it counts."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    window: timedelta

    def matches(self, point: Point) -> bool:
        return point.measurement == self.measurement and all(
            point.tags.get(k) == v for k, v in self.tags
        )

    def selector(self) -> str:
        tags = "".join(f',{k}="{v}"' for k, v in self.tags)
        return f'{{__name__=~"{self.measurement}_.+"{tags}}}'


_WATCHES = {
    "aqi": _Watch("aqi", (("scope", "district"),), timedelta(hours=2)),
    "stations": _Watch("aqi", (("scope", "station"),), timedelta(hours=2)),
    "scenic": _Watch("scenic", (), timedelta(hours=1)),
    "traffic": _Watch("traffic_index", (("scope", "segment"),), timedelta(hours=1)),
    "hotspots": _Watch("hotspot", (("kind", "energy"),), timedelta(hours=1)),
}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the store holds at one moment, as the view needs it.

    Attributes:
        readings: raw readings landed so far.
        sim_time: the newest reading's event time, or None before the first.
        aqi: the latest district AQI point of each district (fields ``aqi``,
            ``level``, ``stations``).
        stations: the latest AQI point of each station (``aqi``, ``level``,
            ``iaqi_<pollutant>``): the primary pollutant of a district is its worst
            station's.
        scenic: the latest point of each scenic area (``occupancy``,
            ``occupancy_pct``, ``tier``, ``daily_visitors``...).
        traffic: the latest congestion point of each road segment and direction in
            the last hour of event time (``tpi``, ``grade``, ``speed_kmh``...).
        hotspots: the newest energy hotspot ranking of each district (``rank``,
            ``value``, ``score``...).
        alert_points: alert transitions (firing and resolved) landed so far.
    """

    readings: int = 0
    sim_time: datetime | None = None
    aqi: tuple[Point, ...] = ()
    stations: tuple[Point, ...] = ()
    scenic: tuple[Point, ...] = ()
    traffic: tuple[Point, ...] = ()
    hotspots: tuple[Point, ...] = ()
    alert_points: int = 0


def _key(point: Point) -> tuple[str, tuple[tuple[str, str], ...]]:
    return point.measurement, tuple(sorted(point.tags.items()))


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@dataclass
class Landed:
    """Points in, a :class:`Snapshot` out: counts readings, keeps the latest of each series.

    ``slack`` widens every window: the stream closes a window only once event time
    is past its end by the lateness bound, so indices trail the newest reading by
    that much.

    >>> landed = Landed()
    >>> landed.add(Point("pollution", {"sensor": "a"}, {"pm2_5": 30.0, "seq": 1}, 3_600_000))
    >>> landed.add(Point("aqi", {"scope": "district", "district": "d"}, {"aqi": 80}, 3_600_000))
    >>> snap = landed.snapshot()
    >>> snap.readings, snap.sim_time.isoformat(), snap.aqi[0].fields
    (1, '1970-01-01T01:00:00+00:00', {'aqi': 80})
    """

    readings: int = 0
    newest_ms: int | None = None
    alert_points: int = 0
    bad_lines: int = 0
    slack: timedelta = timedelta(0)
    latest: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], Point]] = field(
        default_factory=lambda: {name: {} for name in _WATCHES}
    )

    def add_line(self, line: str) -> None:
        """Count or keep one line of line protocol; only the lines the view shows are parsed.

        A line that is not line protocol is counted in ``bad_lines`` and skipped.
        """
        measurement = line.split(",", 1)[0].split(" ", 1)[0]
        if measurement in READING_MEASUREMENTS:
            self.readings += 1
            stamp = line.rsplit(" ", 1)[-1]
            if stamp.isdigit():
                ts = int(stamp)
                if self.newest_ms is None or ts > self.newest_ms:
                    self.newest_ms = ts
        elif measurement == "alert":
            self.alert_points += 1
        elif any(w.measurement == measurement for w in _WATCHES.values()):
            try:
                self.add(parse_line(line))
            except LineParseError:
                self.bad_lines += 1

    def add(self, point: Point) -> None:
        """Count a point, and keep it if it is the newest of a series the view shows."""
        if point.measurement in READING_MEASUREMENTS:
            self.readings += 1
            if point.ts_ms is not None and (self.newest_ms is None or point.ts_ms > self.newest_ms):
                self.newest_ms = point.ts_ms
            return
        if point.measurement == "alert":
            self.alert_points += 1
            return
        for name, watch in _WATCHES.items():
            if watch.matches(point):
                series = self.latest[name]
                key = _key(point)
                old = series.get(key)
                if old is None or (old.ts_ms or 0) <= (point.ts_ms or 0):
                    series[key] = point
                return

    def snapshot(self) -> Snapshot:
        """The snapshot at the newest reading's event time."""
        if self.newest_ms is None:
            return Snapshot(alert_points=self.alert_points)
        now = self.newest_ms

        def recent(name: str) -> list[Point]:
            since = now - (_WATCHES[name].window + self.slack) / timedelta(milliseconds=1)
            return [p for p in self.latest[name].values() if (p.ts_ms or 0) > since]

        newest_ranking: dict[str, int] = {}
        for p in recent("hotspots"):
            district = p.tags.get("district", "")
            newest_ranking[district] = max(newest_ranking.get(district, 0), p.ts_ms or 0)
        hotspots = [
            p for p in recent("hotspots") if p.ts_ms == newest_ranking[p.tags.get("district", "")]
        ]
        return Snapshot(
            readings=self.readings,
            sim_time=datetime.fromtimestamp(now / 1000, UTC),
            aqi=tuple(recent("aqi")),
            stations=tuple(recent("stations")),
            scenic=tuple(recent("scenic")),
            traffic=tuple(recent("traffic")),
            hotspots=tuple(hotspots),
            alert_points=self.alert_points,
        )


# --------------------------------------------------------------- VictoriaMetrics


def points_from_export(lines: Iterable[str], measurement: str) -> list[Point]:
    """Points rebuilt from ``/api/v1/export`` JSON lines of one measurement's series.

    VictoriaMetrics stores each field of an InfluxDB point as a series named
    ``<measurement>_<field>`` with the tags as labels (and ``db``, the bucket); the
    samples of one tag set and timestamp are one point again.

    >>> rows = ['{"metric":{"__name__":"aqi_aqi","db":"u","district":"d"},'
    ...         '"values":[212],"timestamps":[3600000]}',
    ...         '{"metric":{"__name__":"aqi_level","db":"u","district":"d"},'
    ...         '"values":[5],"timestamps":[3600000]}']
    >>> [(p.tags, p.fields, p.ts_ms) for p in points_from_export(rows, "aqi")]
    [({'district': 'd'}, {'aqi': 212, 'level': 5}, 3600000)]
    """
    prefix = f"{measurement}_"
    merged: dict[tuple[tuple[tuple[str, str], ...], int], dict[str, FieldValue]] = {}
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        labels: dict[str, str] = dict(row["metric"])
        name = labels.pop("__name__", "")
        labels.pop("db", None)
        if not name.startswith(prefix):
            continue
        fieldname = name[len(prefix) :]
        tags = tuple(sorted(labels.items()))
        for value, ts in zip(row["values"], row["timestamps"], strict=True):
            number = float(value)
            merged.setdefault((tags, int(ts)), {})[fieldname] = (
                int(number) if number.is_integer() else number
            )
    return [
        Point(measurement, dict(tags), fields, ts) for (tags, ts), fields in sorted(merged.items())
    ]


class VictoriaMetricsReader:
    """Reads a snapshot from VictoriaMetrics over HTTP.

    Args:
        url: the server's base URL.
        lookback: how far back the totals count (the scenario's span and more).
        slack: how much every window of :class:`Landed` is widened.
        timeout_s: the longest wait for one answer.
    """

    def __init__(
        self,
        url: str,
        *,
        lookback: timedelta,
        slack: timedelta = timedelta(0),
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._slack = slack
        self._lookback = f"{max(1, int(lookback.total_seconds()))}s"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the HTTP session; safe to call twice."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        return self._session

    async def _get(self, path: str, params: Mapping[str, str]) -> str:
        async with self._http().get(f"{self.url}{path}", params=params) as response:
            text = await response.text()
            if response.status != 200:
                msg = f"{path} answered {response.status}: {text[:200]}"
                raise RuntimeError(msg)
            return text

    async def _scalar(self, query: str) -> float | None:
        body = json.loads(await self._get("/api/v1/query", {"query": query}))
        result: Sequence[Any] = body.get("data", {}).get("result", [])
        return float(result[0]["value"][1]) if result else None

    async def snapshot(self) -> Snapshot:
        """Ask the server what has landed.

        Raises:
            aiohttp.ClientError, RuntimeError, TimeoutError: the server did not answer
                well; the caller shows the last snapshot and asks again later.
        """
        total = await self._scalar(f"sum(count_over_time({_SEQ_SELECTOR}[{self._lookback}]))")
        newest = await self._scalar(f"max(tlast_over_time({_SEQ_SELECTOR}[{self._lookback}]))")
        alerts = await self._scalar(f"sum(count_over_time(alert_firing[{self._lookback}]))")
        landed = Landed(alert_points=int(alerts or 0), slack=self._slack)
        if newest is None:
            return landed.snapshot()
        newest_ms = int(newest * 1000)
        for watch in _WATCHES.values():
            start = newest_ms - int((watch.window + self._slack) / timedelta(milliseconds=1))
            text = await self._get(
                "/api/v1/export",
                {"match[]": watch.selector(), "start": str(start / 1000), "end": str(newest + 1)},
            )
            for point in points_from_export(text.splitlines(), watch.measurement):
                landed.add(point)
        landed.readings = int(total or 0)
        landed.newest_ms = newest_ms
        return landed.snapshot()


class LineFilesReader:
    """Follows the file sink's directory and keeps a running :class:`Landed`.

    Args:
        directory: the worker's ``URBANSENSE_LINES_DIR``.
        slack: how much every window of :class:`Landed` is widened.
    """

    def __init__(self, directory: Path, slack: timedelta = timedelta(0)) -> None:
        self.tail = LineTail(directory)
        self._landed = Landed(slack=slack)

    async def close(self) -> None:
        """Nothing to release; here so both readers close alike."""

    async def snapshot(self) -> Snapshot:
        """Read the lines written since the last call (in a thread) and give the snapshot."""
        return await asyncio.to_thread(self._read)

    def _read(self) -> Snapshot:
        for line in self.tail.read():
            self._landed.add_line(line)
        return self._landed.snapshot()

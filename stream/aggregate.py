"""Windowed aggregates in event time: 1-minute and 1-hour tumbling windows, per sensor and site.

Per sensor and metric, each window gives the mean, min, max, sum and count of the
readings in it; per site and metric the same over all of the site's sensors' readings
(the mean is over readings, so a site with three lanes averages the three). A window
is a half-open span ``(end - size, end]`` of event time, aligned to UTC multiples of
its size, and a reading belongs to the window that holds its timestamp. Readings are
stamped at the end of the interval they cover, so a one-minute reading stamped 09:00
(covering 08:59-09:00) counts to the 08:00-09:00 hour, as it should.

Min and max are those of the samples behind a reading when the gateway sent them
(:attr:`telemetry.Reading.stats`), else of the readings themselves. ``span_s`` adds up
the intervals the readings cover, so a consumer can tell a full hour from a few minutes
(HJ 663's rule: an hourly mean needs 45 minutes of data).

Windows roll up: a reading goes only into its sensor's one-minute window. When that
window closes, its moments are merged into the sensor's hour and the site's minute and
hour (count, sum, extremes and span compose; a sum may differ from adding reading by
reading in the last bit). So a site's minute window exists only while it closes, and
an hour holds the minutes closed so far.

Nothing here knows about time passing: the caller adds on-time readings
(:meth:`SiteAggregates.add`) and closes the windows its watermark has passed
(:meth:`SiteAggregates.due`, :meth:`SiteAggregates.close`), in order of end. The
pipeline closes a window only once the watermark is *past* its end and never adds a
reading behind the watermark, so no reading can land in a window already closed.
State is what is open, plus each sensor's newest closed one-minute means;
:meth:`SiteAggregates.pack` and :meth:`SiteAggregates.unpack` turn it into bytes and
back.

>>> from datetime import UTC, datetime, timedelta
>>> from telemetry import Kind, Reading
>>> site = SiteAggregates()
>>> t0 = datetime(2024, 11, 8, 8, 0, tzinfo=UTC)
>>> for minute, pm in [(1, 30.0), (2, 34.0), (2, 38.0)]:
...     site.add(Reading(sensor_id=f"aq-{pm:g}", kind=Kind.POLLUTION, seq=0, interval_s=60,
...                      ts=t0 + timedelta(minutes=minute), metrics={"pm2_5": pm}))
>>> sorted(site.due(t0 + timedelta(minutes=2, seconds=1)))  # 08:01 and 08:02 have passed
[1731052860, 1731052920]
>>> closed = site.close(1731052920)
>>> [(c.sensor, c.moments.mean, c.moments.count) for c in closed if c.size is MINUTE]
[('aq-34', 34.0, 1), ('aq-38', 38.0, 1), (None, 36.0, 2)]
>>> SiteAggregates.unpack(site.pack()).pack() == site.pack()
True
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from stream.statecodec import Packer, Unpacker
from telemetry import Reading, all_metrics

__all__ = [
    "HOUR",
    "MINUTE",
    "SIZES",
    "Closed",
    "Moments",
    "SiteAggregates",
    "WindowSize",
    "Windows",
    "epoch_us",
    "window_end",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_VERSION: Final = 2
"""2: hours and site minutes hold closed sensor minutes only (1 fed them every reading)."""
_WINDOW: Final = struct.Struct("<qB")  # end, number of metrics
_MOMENTS: Final = struct.Struct("<BIdddd")  # metric number, count, total, low, high, span_s
_LATEST: Final = struct.Struct("<Bqd")  # metric number, window end, mean


@dataclass(frozen=True, slots=True)
class WindowSize:
    """A tumbling window's length.

    Attributes:
        name: its short name, as in the measurement ``agg_<name>``.
        seconds: its length.
    """

    name: str
    seconds: int


MINUTE: Final = WindowSize("1m", 60)
HOUR: Final = WindowSize("1h", 3600)
SIZES: Final = (MINUTE, HOUR)
"""The window sizes every scope keeps, shortest first."""

_METRIC_KEYS: Final = tuple(spec.key for spec in all_metrics())
_METRIC_INDEX: Final = {key: i for i, key in enumerate(_METRIC_KEYS)}


def epoch_us(ts: datetime) -> int:
    """An aware datetime as whole microseconds since the epoch, exactly.

    >>> epoch_us(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC))
    1000005
    """
    return (ts - _EPOCH) // _US


def window_end(ts: datetime, size: WindowSize) -> int:
    """The end (epoch seconds) of the window ``(end - size, end]`` that holds ``ts``.

    >>> t = datetime(2024, 11, 8, 9, 0, tzinfo=UTC)
    >>> window_end(t, HOUR) == int(t.timestamp())  # the hour that ends at 09:00
    True
    >>> window_end(t + timedelta(microseconds=1), HOUR) - int(t.timestamp())
    3600
    """
    size_us = size.seconds * 1_000_000
    return -(-epoch_us(ts) // size_us) * size.seconds


@dataclass(slots=True)
class Moments:
    """What a window knows of one metric: count, sum, extremes and time covered.

    Attributes:
        count: readings added.
        total: the sum of their values.
        low: the lowest sample (``inf`` while empty).
        high: the highest sample (``-inf`` while empty).
        span_s: the seconds the readings cover (those that say).
    """

    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    span_s: float = 0.0

    def add(self, value: float, low: float, high: float, span_s: float) -> None:
        """Add one reading's value, the extremes of its samples and its interval."""
        self.count += 1
        self.total += value
        self.span_s += span_s
        # min(self.low, low, value) and the max likewise, without the calls.
        if low < self.low:
            self.low = low
        if value < self.low:
            self.low = value
        if high > self.high:
            self.high = high
        if value > self.high:
            self.high = value

    def merge(self, other: Moments) -> None:
        """Add what another window of the same metric saw: a roll-up."""
        self.count += other.count
        self.total += other.total
        if other.low < self.low:
            self.low = other.low
        if other.high > self.high:
            self.high = other.high
        self.span_s += other.span_s

    def copy(self) -> Moments:
        """An independent copy."""
        return Moments(self.count, self.total, self.low, self.high, self.span_s)

    @property
    def mean(self) -> float:
        """The mean of the values added; NaN while empty."""
        return self.total / self.count if self.count else math.nan


class Windows:
    """The open windows of one size of one scope: window end -> metric key -> moments.

    Metric keys are the catalogue's dotted names (``pollution.pm2_5``).
    """

    __slots__ = ("open", "size")

    def __init__(self, size: WindowSize) -> None:
        self.size = size
        self.open: dict[int, dict[str, Moments]] = {}

    def add(
        self, ts: datetime, key: str, value: float, low: float, high: float, span: float
    ) -> None:
        """Add a value to the window that holds ``ts``."""
        window = self.open.setdefault(window_end(ts, self.size), {})
        moments = window.get(key)
        if moments is None:
            moments = window[key] = Moments()
        moments.add(value, low, high, span)

    def merge(self, end: int, moments: dict[str, Moments]) -> None:
        """Roll a closed shorter window's moments up into the window that ends at ``end``."""
        window = self.open.get(end)
        if window is None:
            self.open[end] = {key: m.copy() for key, m in moments.items()}
            return
        for key, m in moments.items():
            mine = window.get(key)
            if mine is None:
                window[key] = m.copy()
            else:
                mine.merge(m)

    def pack(self, packer: Packer) -> None:
        """Write the open windows, in order of end and metric."""
        packer.u16(len(self.open))
        for end in sorted(self.open):
            window = self.open[end]
            packer.record(_WINDOW, end, len(window))
            packer.records(
                _MOMENTS,
                sorted(
                    [
                        (_METRIC_INDEX[key], m.count, m.total, m.low, m.high, m.span_s)
                        for key, m in window.items()
                    ]
                ),
            )

    @classmethod
    def unpack(cls, size: WindowSize, reader: Unpacker) -> Windows:
        """Read what :meth:`pack` wrote."""
        windows = cls(size)
        for _ in range(reader.u16()):
            end, metrics = reader.record(_WINDOW)
            if end % size.seconds:
                msg = f"window end {end} is not a multiple of {size.seconds} s"
                raise ValueError(msg)
            window: dict[str, Moments] = {}
            for _ in range(metrics):
                index, count, total, low, high, span_s = reader.record(_MOMENTS)
                window[_metric_key(index)] = Moments(count, total, low, high, span_s)
            windows.open[end] = window
        return windows


def _metric_key(index: int) -> str:
    if index >= len(_METRIC_KEYS):
        msg = f"metric number {index}: the catalogue has {len(_METRIC_KEYS)}"
        raise ValueError(msg)
    return _METRIC_KEYS[index]


@dataclass(frozen=True, slots=True)
class Closed:
    """One metric of one window that has closed.

    Attributes:
        size: the window's size.
        end: its end, epoch seconds.
        sensor: the sensor, or None for the whole site.
        metric: the metric's dotted name, ``kind.metric``.
        moments: what the window saw of it.
    """

    size: WindowSize
    end: int
    sensor: str | None
    metric: str
    moments: Moments

    @property
    def kind(self) -> str:
        """The kind of the metric, ``pollution`` of ``pollution.pm2_5``."""
        return self.metric.partition(".")[0]

    @property
    def name(self) -> str:
        """The metric's own name, ``pm2_5`` of ``pollution.pm2_5``."""
        return self.metric.partition(".")[2]

    @property
    def ends_at(self) -> datetime:
        """The window's end as a datetime."""
        return datetime.fromtimestamp(self.end, UTC)


def _new_windows() -> list[Windows]:
    return [Windows(size) for size in SIZES]


@dataclass(slots=True)
class SiteAggregates:
    """One site's open windows: of each of its sensors, and of the site as a whole.

    Attributes:
        of_sensor: per sensor, its windows of each size (in the order of :data:`SIZES`).
            A reading is added to its minute; the hour holds the minutes closed so far.
        of_site: the site's windows of each size, fed by its sensors' closed minutes
            (so no site minute stays open once :meth:`close` returns).
        latest: per sensor, each metric's newest closed one-minute mean and that
            window's end (epoch seconds): the sensor's current value for rankings.
    """

    of_sensor: dict[str, list[Windows]] = field(default_factory=dict)
    of_site: list[Windows] = field(default_factory=_new_windows)
    latest: dict[str, dict[str, tuple[int, float]]] = field(default_factory=dict)

    def add(self, reading: Reading) -> None:
        """Add an on-time reading to its sensor's one-minute window.

        The sensor's hour and the site's windows get it when that minute closes.
        """
        sensor = self.of_sensor.get(reading.sensor_id)
        if sensor is None:
            sensor = self.of_sensor[reading.sensor_id] = _new_windows()
        minutes = sensor[0].open
        end = window_end(reading.ts, MINUTE)
        window = minutes.get(end)
        if window is None:
            window = minutes[end] = {}
        span = reading.interval_s or 0.0
        kind = reading.kind.value
        stats = reading.stats
        for name, value in reading.metrics.items():
            key = f"{kind}.{name}"
            moments = window.get(key)
            if moments is None:
                moments = window[key] = Moments()
            spread = stats.get(name) if stats else None
            if spread is None:
                moments.add(value, value, value, span)
            else:
                moments.add(value, spread.min, spread.max, span)

    def _all(self) -> Iterable[Windows]:
        for windows in self.of_sensor.values():
            yield from windows
        yield from self.of_site

    def due(self, watermark: datetime) -> set[int]:
        """The ends (epoch seconds) of the windows the watermark has passed.

        These include the hours the passed minutes roll up into, once the watermark has
        passed those too: closing the ends in order closes every window as if each
        reading had been in all of its windows from the start.
        """
        limit = -(-epoch_us(watermark) // 1_000_000)  # end * 10**6 < mark <=> end < limit
        ends = {end for windows in self._all() for end in windows.open if end < limit}
        hour = HOUR.seconds
        return ends | {h for end in ends if (h := -(-end // hour) * hour) < limit}

    def close(self, end: int) -> list[Closed]:
        """Close every window that ends at ``end``: sizes shortest first, sensors by id, site last.

        Each sensor's one-minute window rolls up into its hour and the site's minute
        and hour, and its means become the sensor's :attr:`latest` values. An hour that
        ends at ``end`` closes after the minute ending with it has rolled up.
        """
        if end % MINUTE.seconds:
            return []
        closed: list[Closed] = []
        hour = -(-end // HOUR.seconds) * HOUR.seconds
        site_minutes, site_hours = self.of_site
        for sensor in sorted(self.of_sensor):
            minutes, hours = self.of_sensor[sensor]
            window = minutes.open.pop(end, None)
            if not window:
                continue
            latest = self.latest.setdefault(sensor, {})
            for key in sorted(window, key=_METRIC_INDEX.__getitem__):
                moments = window[key]
                closed.append(Closed(MINUTE, end, sensor, key, moments))
                latest[key] = (end, moments.mean)
            hours.merge(hour, window)
            site_minutes.merge(end, window)
        whole = site_minutes.open.pop(end, None)
        if whole:
            for key in sorted(whole, key=_METRIC_INDEX.__getitem__):
                closed.append(Closed(MINUTE, end, None, key, whole[key]))
            site_hours.merge(hour, whole)
        if end == hour:
            for sensor in sorted(self.of_sensor):
                window = self.of_sensor[sensor][1].open.pop(end, None)
                if window is not None:
                    for key in sorted(window, key=_METRIC_INDEX.__getitem__):
                        closed.append(Closed(HOUR, end, sensor, key, window[key]))
            whole = site_hours.open.pop(end, None)
            if whole is not None:
                for key in sorted(whole, key=_METRIC_INDEX.__getitem__):
                    closed.append(Closed(HOUR, end, None, key, whole[key]))
        return closed

    def pack(self) -> bytes:
        """The whole state as bytes; equal states give equal bytes."""
        packer = Packer().u8(_VERSION).u16(len(self.of_sensor))
        for sensor in sorted(self.of_sensor):
            packer.text(sensor)
            for windows in self.of_sensor[sensor]:
                windows.pack(packer)
        for windows in self.of_site:
            windows.pack(packer)
        packer.u16(len(self.latest))
        for sensor in sorted(self.latest):
            values = self.latest[sensor]
            packer.text(sensor).u8(len(values))
            packer.records(
                _LATEST,
                sorted((_METRIC_INDEX[key], end, mean) for key, (end, mean) in values.items()),
            )
        return packer.result()

    @classmethod
    def unpack(cls, data: bytes) -> SiteAggregates:
        """Read what :meth:`pack` wrote.

        Raises:
            ValueError: the bytes are not such a state; the message says where.
        """
        reader = Unpacker(data)
        version = reader.u8()
        if version != _VERSION:
            msg = f"state version {version}, expected {_VERSION}"
            raise ValueError(msg)
        state = cls()
        for _ in range(reader.u16()):
            sensor = reader.text()
            state.of_sensor[sensor] = [Windows.unpack(size, reader) for size in SIZES]
        state.of_site = [Windows.unpack(size, reader) for size in SIZES]
        for _ in range(reader.u16()):
            sensor = reader.text()
            values: dict[str, tuple[int, float]] = {}
            for _ in range(reader.u8()):
                index, end, mean = reader.record(_LATEST)
                values[_metric_key(index)] = (end, mean)
            state.latest[sensor] = values
        reader.end()
        return state

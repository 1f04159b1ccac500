"""Scenic-area occupancy from gate counts: visitors inside, capacity tiers, daily visitors.

An area's occupancy is the entries minus the exits counted at all its gates since the
area opened this local day, as a percentage of its instantaneous capacity (瞬时最大承载量,
LB/T 034-2014), with the warning tier it stands at, and the day's visitors (entries
since opening) as a percentage of its daily capacity (日最大承载量).

The caller keeps one :class:`OccupancyState` per area (in a table) and folds every gate
reading into it with :func:`apply`, which returns the new state and an
:class:`OccupancyUpdate` to publish. Nothing else is remembered, and no clock is read:
the day a reading belongs to comes from its event time.

Design
------
* **Sums, clamped when read.** The state keeps the day's entry and exit *totals*;
  occupancy is ``max(0, entries - exits)``. Addition does not care about order, so gate
  readings that arrive late or out of order (one gate's exits before another gate's
  entries) add up exactly as if they had come in time order, and a transient deficit
  heals when the missing entries arrive. What is clamped is reported as
  :attr:`OccupancyUpdate.unexplained_exits` (exits the day's entries do not explain:
  entries still in flight, or a miscounting counter if it persists). The caller must
  apply each reading once (dedupe by ``(sensor_id, seq)``); :attr:`OccupancyUpdate.late`
  only says that a gate's reading is older than one already applied for it.
* **Operating day.** A reading belongs to the local day whose opening time (``opens_at``
  at ``utc_offset_h``) most recently precedes the middle of its interval; the first
  reading of a new day resets the totals, so exits after closing still count to the day
  they closed. The previous day's totals are kept, so its late readings still complete
  its daily figure (reported with ``past_day=True``, no tier changes); older readings
  are reported ``ignored``.
* **Tiers.** 80, 90 and 100 % of the instantaneous capacity are the warning tiers of
  LB/T 034-2014 as cities such as Haikou apply them (the simulator's ground truth lists
  the same); what each one triggers (guide and divert, restrict entry, stop entry) is
  the operator's plan, named here as is usual. A tier is reached at or above its
  percentage. :attr:`OccupancyUpdate.raised` and :attr:`~OccupancyUpdate.cleared` list
  the tiers crossed by this update; debouncing is left to the rules.

>>> from datetime import UTC, datetime
>>> config = ScenicConfig("canal-quarter", instantaneous_capacity=100, daily_capacity=300)
>>> state = OccupancyState()
>>> at = datetime(2024, 10, 8, 3, 0, tzinfo=UTC)  # 11:00 local
>>> state, update = apply(state, GateCounts("east", at, entries=85, exits=0), config)
>>> update.occupancy, update.tier, update.raised
(85, <OccupancyTier.WARNING: 80>, (<OccupancyTier.WARNING: 80>,))
>>> state, update = apply(state, GateCounts("west", at, entries=0, exits=10), config)
>>> update.occupancy, update.occupancy_pct, update.cleared, update.daily_visitors
(75, 75.0, (<OccupancyTier.WARNING: 80>,), 85)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum
from typing import Final

from telemetry import Kind, Reading
from telemetry.registry import ScenicArea

__all__ = [
    "DayTally",
    "GateCounts",
    "OccupancyState",
    "OccupancyTier",
    "OccupancyUpdate",
    "ScenicConfig",
    "ScenicError",
    "apply",
    "tier_of",
]


class ScenicError(ValueError):
    """A scenic-area input that cannot be used; the message names the field and the value."""


class OccupancyTier(IntEnum):
    """The occupancy warning tier, by its threshold in percent of capacity."""

    NORMAL = 0
    """Below 80 %."""
    WARNING = 80
    """预警: warn; guide and divert visitors."""
    RESTRICT = 90
    """限流: restrict entry."""
    FULL = 100
    """饱和: capacity reached; stop entry."""


_TIERS: Final = (OccupancyTier.FULL, OccupancyTier.RESTRICT, OccupancyTier.WARNING)
_THRESHOLDS: Final = tuple((tier, float(tier.value)) for tier in _TIERS)
"""Each tier with its threshold as a float: a float comparison is cheaper than an IntEnum's."""


def tier_of(pct: float) -> OccupancyTier:
    """The highest tier at or below ``pct``.

    >>> tier_of(79.99), tier_of(80.0), tier_of(99.9), tier_of(130.0)
    (<OccupancyTier.NORMAL: 0>, <OccupancyTier.WARNING: 80>, <OccupancyTier.RESTRICT: 90>, <OccupancyTier.FULL: 100>)
    """  # noqa: E501 - a doctest's output is one line
    for tier, threshold in _THRESHOLDS:
        if pct >= threshold:
            return tier
    return OccupancyTier.NORMAL


@dataclass(frozen=True, slots=True)
class ScenicConfig:
    """What :func:`apply` needs to know about an area.

    Attributes:
        area_id: the scenic area.
        instantaneous_capacity: the most visitors at one moment (LB/T 034-2014).
        daily_capacity: the most visitors in one day.
        opens_at: the local time the area opens, when the day's counts restart.
        utc_offset_h: local time's offset from UTC, hours (8 for China).
    """

    area_id: str
    instantaneous_capacity: int
    daily_capacity: int
    opens_at: time = time(6, 0)
    utc_offset_h: float = 8.0

    def __post_init__(self) -> None:
        for name in ("instantaneous_capacity", "daily_capacity"):
            value = getattr(self, name)
            if value <= 0:
                msg = f"{name} of {self.area_id} must be above zero, not {value!r}"
                raise ScenicError(msg)
        if self.opens_at.tzinfo is not None:
            msg = f"opens_at {self.opens_at} is a local clock time and takes no time zone"
            raise ScenicError(msg)
        if not -14 <= self.utc_offset_h <= 14:
            msg = f"utc_offset_h must be within [-14, 14], not {self.utc_offset_h!r}"
            raise ScenicError(msg)

    @classmethod
    def from_area(
        cls, area: ScenicArea, *, opens_at: time = time(6, 0), utc_offset_h: float = 8.0
    ) -> ScenicConfig:
        """The configuration of a registry scenic area (the registry has no opening hours)."""
        return cls(
            area.id, area.capacity.instantaneous, area.capacity.daily, opens_at, utc_offset_h
        )

    def operating_day(self, ts: datetime) -> date:
        """The local day, opening to opening, that the instant ``ts`` belongs to.

        >>> config = ScenicConfig("a", 10, 30, opens_at=time(6, 0))
        >>> config.operating_day(datetime(2024, 10, 7, 21, 59, tzinfo=UTC))  # 05:59 local
        datetime.date(2024, 10, 7)
        >>> config.operating_day(datetime(2024, 10, 7, 22, 0, tzinfo=UTC))  # 06:00 local
        datetime.date(2024, 10, 8)
        """
        if ts.tzinfo is None:
            msg = f"ts {ts.isoformat()} has no time zone"
            raise ScenicError(msg)
        at = self.opens_at
        opening = timedelta(hours=at.hour, minutes=at.minute, seconds=at.second)
        return (ts.astimezone(UTC) + timedelta(hours=self.utc_offset_h) - opening).date()


@dataclass(frozen=True, slots=True)
class GateCounts:
    """Entries and exits counted at one gate over an interval ending at ``ts``.

    Attributes:
        gate: the gate (or its counter's sensor id): readings are tracked per gate.
        ts: the end of the interval, event time (aware).
        entries: visitors in.
        exits: visitors out.
        interval_s: the interval's length, if known; its middle decides the day.
    """

    gate: str
    ts: datetime
    entries: int
    exits: int
    interval_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("entries", "exits"):
            value = getattr(self, name)
            if value < 0:
                msg = f"{name} at gate {self.gate} must not be negative, not {value!r}"
                raise ScenicError(msg)
        if self.ts.tzinfo is None:
            msg = f"ts {self.ts.isoformat()} at gate {self.gate} has no time zone"
            raise ScenicError(msg)

    @classmethod
    def from_reading(cls, reading: Reading, gate: str | None = None) -> GateCounts:
        """A crowd reading's counts; the gate defaults to the sensor id.

        Raises:
            ScenicError: not a crowd reading, or it has neither entries nor exits.
        """
        metrics = reading.metrics
        if reading.kind is not Kind.CROWD:
            msg = f"reading of {reading.sensor_id} has kind {reading.kind}, not crowd"
            raise ScenicError(msg)
        if "entries" not in metrics and "exits" not in metrics:
            msg = f"crowd reading of {reading.sensor_id} has neither entries nor exits"
            raise ScenicError(msg)
        return cls(
            gate=gate or reading.sensor_id,
            ts=reading.ts,
            entries=round(metrics.get("entries", 0.0)),
            exits=round(metrics.get("exits", 0.0)),
            interval_s=reading.interval_s,
        )

    @property
    def at(self) -> datetime:
        """The middle of the interval (``ts`` when the interval is unknown)."""
        return self.ts - timedelta(seconds=(self.interval_s or 0.0) / 2)


@dataclass(frozen=True, slots=True)
class DayTally:
    """One operating day's totals at all gates of an area.

    Attributes:
        day: the local date the area opened.
        entries: entries since opening.
        exits: exits since opening.
    """

    day: date
    entries: int = 0
    exits: int = 0

    def add(self, counts: GateCounts) -> DayTally:
        """These totals with a gate's counts added."""
        return DayTally(self.day, self.entries + counts.entries, self.exits + counts.exits)


@dataclass(frozen=True, slots=True)
class OccupancyState:
    """What one area remembers between readings: small, immutable, storable.

    Attributes:
        today: the current operating day's totals; None before the first reading.
        yesterday: the previous operating day's totals, for its late readings.
        tier: the tier the current day last stood at.
        as_of: the latest event time applied.
        latest: per gate, the latest reading time applied (a new dict per state: never
            mutate it, states are values).
    """

    today: DayTally | None = None
    yesterday: DayTally | None = None
    tier: OccupancyTier = OccupancyTier.NORMAL
    as_of: datetime | None = None
    latest: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OccupancyUpdate:
    """An area's figures after one reading.

    Attributes:
        area_id: the scenic area.
        ts: the latest event time applied (the figures are as of then).
        day: the operating day the figures are of.
        occupancy: visitors inside, never negative.
        occupancy_pct: ``occupancy`` in percent of the instantaneous capacity.
        tier: the tier ``occupancy_pct`` stands at.
        raised: tiers reached by this reading, lowest first.
        cleared: tiers left by this reading, highest first.
        daily_visitors: entries since opening.
        daily_pct: ``daily_visitors`` in percent of the daily capacity.
        daily_tier: the tier ``daily_pct`` stands at.
        unexplained_exits: exits beyond the day's entries, clamped off ``occupancy``.
        new_day: this reading opened a new operating day (the totals restarted).
        late: the reading is older than one already applied for its gate.
        past_day: the reading completed the previous day's figures (shown here).
        ignored: the reading is older than the previous day and was not applied.
    """

    area_id: str
    ts: datetime
    day: date
    occupancy: int
    occupancy_pct: float
    tier: OccupancyTier
    raised: tuple[OccupancyTier, ...]
    cleared: tuple[OccupancyTier, ...]
    daily_visitors: int
    daily_pct: float
    daily_tier: OccupancyTier
    unexplained_exits: int
    new_day: bool = False
    late: bool = False
    past_day: bool = False
    ignored: bool = False


def apply(
    state: OccupancyState, counts: GateCounts | Reading, config: ScenicConfig
) -> tuple[OccupancyState, OccupancyUpdate]:
    """Fold one gate reading into an area's state; a pure function.

    Args:
        state: the area's state (``OccupancyState()`` at first).
        counts: a gate's counts, or a crowd reading (tracked by its sensor id).
        config: the area's capacities, opening time and UTC offset.

    Returns:
        The new state, and the area's figures after the reading.
    """
    if isinstance(counts, Reading):
        counts = GateCounts.from_reading(counts)
    day = config.operating_day(counts.at)
    previous = state.latest.get(counts.gate)
    late = previous is not None and counts.ts < previous
    latest = dict(state.latest)
    latest[counts.gate] = max(counts.ts, previous) if previous else counts.ts
    as_of = max(counts.ts, state.as_of) if state.as_of else counts.ts
    today, yesterday = state.today, state.yesterday
    new_day = past_day = ignored = False
    if today is None or day > today.day:
        new_day = today is not None
        yesterday = today if today is not None and today.day == day - timedelta(days=1) else None
        today = DayTally(day).add(counts)
    elif day == today.day:
        today = today.add(counts)
    elif yesterday is not None and day == yesterday.day:
        yesterday, past_day = yesterday.add(counts), True
    else:
        ignored = True
    flags = (new_day, late, past_day, ignored)
    if past_day and yesterday is not None:  # the past day's figures; no tier crossings
        update, tier = _figures(config, yesterday, as_of, None, flags), state.tier
    elif ignored:
        update, tier = _figures(config, today, as_of, None, flags), state.tier
    else:
        update = _figures(config, today, as_of, state.tier, flags)
        tier = update.tier
    return OccupancyState(today, yesterday, tier, as_of, latest), update


def _figures(
    config: ScenicConfig,
    tally: DayTally,
    ts: datetime,
    before: OccupancyTier | None,
    flags: tuple[bool, bool, bool, bool],
) -> OccupancyUpdate:
    """The figures of a day's totals; tiers crossed from ``before`` (None: none crossed).

    ``flags``: the update's ``new_day``, ``late``, ``past_day`` and ``ignored``.
    """
    occupancy = max(0, tally.entries - tally.exits)
    pct = 100.0 * occupancy / config.instantaneous_capacity
    tier = tier_of(pct)
    daily_pct = 100.0 * tally.entries / config.daily_capacity
    raised: tuple[OccupancyTier, ...] = ()
    cleared: tuple[OccupancyTier, ...] = ()
    if before is not None and before is not tier:
        raised = tuple(t for t in reversed(_TIERS) if before < t <= tier)
        cleared = tuple(t for t in _TIERS if tier < t <= before)
    return OccupancyUpdate(
        area_id=config.area_id,
        ts=ts,
        day=tally.day,
        occupancy=occupancy,
        occupancy_pct=pct,
        tier=tier,
        raised=raised,
        cleared=cleared,
        daily_visitors=tally.entries,
        daily_pct=daily_pct,
        daily_tier=tier_of(daily_pct),
        unexplained_exits=max(0, tally.exits - tally.entries),
        new_day=flags[0],
        late=flags[1],
        past_day=flags[2],
        ignored=flags[3],
    )

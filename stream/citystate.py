"""The state the city indices keep between batches, and its bytes.

Each class here is the state of one key of the stream's table (see
:mod:`stream.cityindex` for the keys): small, plain data, packed with
:mod:`stream.statecodec` so that equal states give equal bytes (dicts are written
in sorted order). ``unpack`` reads the bytes whole and raises ``ValueError`` saying
where they stop making sense; it never returns half a state.

>>> from datetime import UTC, datetime
>>> from stream.indices.scenic import GateCounts, ScenicConfig, apply
>>> config = ScenicConfig("canal-quarter", instantaneous_capacity=100, daily_capacity=300)
>>> at = datetime(2024, 10, 8, 3, 0, tzinfo=UTC)
>>> state, _ = apply(OccupancyState(), GateCounts("east", at, entries=85, exits=3), config)
>>> unpack_occupancy(pack_occupancy(state)) == state
True
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final

from stream.aggregate import epoch_us
from stream.indices.energy import HOURS_OF_WEEK, PowerBaseline, RegisterState
from stream.indices.scenic import DayTally, OccupancyState, OccupancyTier
from stream.indices.traffic import LaneObservation
from stream.statecodec import Packer, Unpacker

__all__ = [
    "BuildingEnergy",
    "LaneWindows",
    "MeterState",
    "OccupancyState",
    "pack_occupancy",
    "unpack_occupancy",
]

_VERSION: Final = 1
_LANE: Final = struct.Struct("<3d")  # vehicle count, mean speed, occupancy (NaN: none)
_METER: Final = struct.Struct(f"<Bqd{2 * HOURS_OF_WEEK}d")
# has a register time, its epoch us, kWh; the baseline's means, then its hours seen
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _version(reader: Unpacker) -> None:
    version = reader.u8()
    if version != _VERSION:
        msg = f"state version {version}, expected {_VERSION}"
        raise ValueError(msg)


# ---------------------------------------------------------------- a scenic area


def _pack_tally(packer: Packer, tally: DayTally | None) -> None:
    if tally is None:
        packer.u8(0)
    else:
        packer.u8(1).i64(tally.day.toordinal()).i64(tally.entries).i64(tally.exits)


def _unpack_tally(reader: Unpacker) -> DayTally | None:
    if not reader.u8():
        return None
    ordinal = reader.i64()
    if not 1 <= ordinal <= date.max.toordinal():
        msg = f"day number {ordinal} is not a date"
        raise ValueError(msg)
    return DayTally(date.fromordinal(ordinal), reader.i64(), reader.i64())


def pack_occupancy(state: OccupancyState) -> bytes:
    """An area's occupancy state as bytes."""
    packer = Packer().u8(_VERSION)
    _pack_tally(packer, state.today)
    _pack_tally(packer, state.yesterday)
    packer.u8(int(state.tier))
    packer.u8(state.as_of is not None).i64(0 if state.as_of is None else epoch_us(state.as_of))
    packer.u16(len(state.latest))
    for gate in sorted(state.latest):
        packer.text(gate).i64(epoch_us(state.latest[gate]))
    return packer.result()


def unpack_occupancy(data: bytes) -> OccupancyState:
    """Read what :func:`pack_occupancy` wrote."""
    reader = Unpacker(data)
    _version(reader)
    today = _unpack_tally(reader)
    yesterday = _unpack_tally(reader)
    tier = OccupancyTier(reader.u8())
    has_as_of, as_of_us = reader.u8(), reader.i64()
    latest = {reader.text(): _from_us(reader.i64()) for _ in range(reader.u16())}
    reader.end()
    as_of = _from_us(as_of_us) if has_as_of else None
    return OccupancyState(today, yesterday, tier, as_of, latest)


# ---------------------------------------------------------------- a road segment


@dataclass(slots=True)
class LaneWindows:
    """One segment direction's open one-minute windows of lane readings.

    Attributes:
        open: per window end (epoch seconds), the lane observations in it, in the
            order they came.
    """

    open: dict[int, list[LaneObservation]] = field(default_factory=dict)

    def pack(self) -> bytes:
        """The state as bytes."""
        packer = Packer().u8(_VERSION).u16(len(self.open))
        for end in sorted(self.open):
            lanes = self.open[end]
            packer.i64(end).u16(len(lanes))
            for lane in lanes:
                occupancy = math.nan if lane.occupancy_pct is None else lane.occupancy_pct
                packer.text(lane.sensor_id)
                packer.record(_LANE, lane.vehicle_count, lane.mean_speed_kmh, occupancy)
        return packer.result()

    @classmethod
    def unpack(cls, data: bytes) -> LaneWindows:
        """Read what :meth:`pack` wrote."""
        reader = Unpacker(data)
        _version(reader)
        state = cls()
        for _ in range(reader.u16()):
            end = reader.i64()
            if end % 60:
                msg = f"window end {end} is not a whole minute"
                raise ValueError(msg)
            lanes: list[LaneObservation] = []
            for _ in range(reader.u16()):
                sensor = reader.text()
                count, speed, occupancy = reader.record(_LANE)
                lanes.append(
                    LaneObservation(
                        count, speed, None if math.isnan(occupancy) else occupancy, sensor
                    )
                )
            state.open[end] = lanes
        reader.end()
        return state


# ---------------------------------------------------------------- a building's meters


@dataclass(frozen=True, slots=True)
class MeterState:
    """One meter's register and its power baseline.

    Attributes:
        register: the last register value applied.
        baseline: the meter's power per local hour of the week.
    """

    register: RegisterState = field(default_factory=RegisterState)
    baseline: PowerBaseline = field(default_factory=PowerBaseline)


@dataclass(slots=True)
class BuildingEnergy:
    """A building's meters' states.

    Attributes:
        meters: per meter (sensor id), its state.
    """

    meters: dict[str, MeterState] = field(default_factory=dict)

    def pack(self) -> bytes:
        """The state as bytes."""
        packer = Packer().u8(_VERSION).u16(len(self.meters))
        for meter in sorted(self.meters):
            state = self.meters[meter]
            ts = state.register.ts
            packer.text(meter).record(
                _METER,
                ts is not None,
                0 if ts is None else epoch_us(ts),
                state.register.kwh,
                *state.baseline.mean_kw,
                *state.baseline.seen_h,
            )
        return packer.result()

    @classmethod
    def unpack(cls, data: bytes) -> BuildingEnergy:
        """Read what :meth:`pack` wrote."""
        reader = Unpacker(data)
        _version(reader)
        state = cls()
        for _ in range(reader.u16()):
            meter = reader.text()
            has_ts, ts_us, kwh, *baseline = reader.record(_METER)
            means = tuple(baseline[:HOURS_OF_WEEK])
            seen = tuple(baseline[HOURS_OF_WEEK:])
            register = RegisterState(_from_us(ts_us) if has_ts else None, kwh)
            state.meters[meter] = MeterState(register, PowerBaseline(means, seen))
        reader.end()
        return state

"""The stream's state: changelog-backed tables, so a worker that takes over continues.

``state`` holds, per state key of :class:`stream.pipeline.Pipeline` (a sensor id, or
``site/...``, ``area/...``, ``segment/...``, ``building/...``), the bytes of
:meth:`~stream.pipeline.Pipeline.snapshot`: last sequence number, detectors, last
values, open windows, occupancy, meter registers.

Every key belongs to one district, and the worker reads readings re-keyed by
district (:mod:`stream.app.topics`), so all of a district's readings arrive on one
partition of that topic. A key's changelog record must go to that same partition:
the worker assigned it restores exactly that changelog partition, and so every key
of its districts. Faust would take the partition from the current event, which a
batched agent does not have, or hash the key, which scatters a district's keys over
every partition; :class:`DistrictTable` writes to the partition the agent names.

The agent stores many keys at once (:meth:`DistrictTable.store`): their records go
to the changelog in whole record batches, a partition at a time, not one by one
through Faust's producer buffer (see :mod:`stream.app.transport`).

After the records of a store, one small record more, the seal, goes to each
partition written, in a batch of its own. Tansu reports a partition's end as the
first offset of its last produced record batch plus one (measured: 13 records
produced in one batch at offsets 247-259, end offset 248), and a worker taking a
partition over restores its table only up to that end, so without the seal all but
one record of the last batch would be lost at a takeover, and their readings taken
as new when resent. The seal is ignored when read back; on Apache Kafka it costs a
few bytes per store.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.types import TP

from stream.app.settings import StreamSettings
from stream.app.transport import BatchProducer

__all__ = ["SEAL_KEY", "DistrictTable", "Tables", "define_tables"]

SEAL_KEY = b"~seal"
"""The key of the seal records (never a state key: those are ids and ``kind/id``)."""


class DistrictTable(faust.Table[bytes, bytes]):
    """A table whose writes go to the changelog partition the writer names.

    >>> # in an agent: state.put(b"aq-pier-pollution", data, partition=3)
    """

    _partition: int | None = None
    _sorted: list[bytes] | None = None
    """Every key, sorted, for :meth:`with_prefix`; None: sort again."""

    def put(self, key: bytes, value: bytes, *, partition: int) -> None:
        """Store ``value`` under ``key``, its changelog record in ``partition``."""
        self._partition = partition
        try:
            self[key] = value
        finally:
            self._partition = None

    async def store(self, records: Mapping[int, Sequence[tuple[bytes, bytes]]]) -> dict[int, int]:
        """Store ``(key, value)`` records, by changelog partition; return when Kafka has them.

        Each partition's records go in as few record batches as hold them, then its
        seal in a batch of its own. Returns each partition's seal offset (for the log:
        a worker taking the partition over must restore up to it).
        """
        producer = cast(BatchProducer, self.app.producer)
        topic = self.changelog_topic.get_topic_name()
        sent: list[asyncio.Future[Any]] = []
        for partition, items in records.items():
            self.data.update(items)
            sent += await producer.send_records(topic, partition, items)
        await asyncio.gather(*sent)
        seals = {p: await producer.send_records(topic, p, [(SEAL_KEY, b"")]) for p in records}
        acked = await asyncio.gather(*(f for futures in seals.values() for f in futures))
        return {p: meta.offset for p, meta in zip(seals, acked, strict=True)}

    def with_prefix(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """Every stored ``(key, value)`` whose key starts with ``prefix``, in key order.

        The keys are kept sorted, and sorted again only after the table gained keys or
        recovered partitions, so that looking up every district's rule states costs a
        sort, not a pass over the table per district.

        >>> # state.with_prefix(b"rules/old-town/")
        """
        data = self.data
        if self._sorted is None or len(self._sorted) != len(data):
            self._sorted = sorted(data.keys())
        keys = self._sorted
        found = []
        for i in range(bisect_left(keys, prefix), len(keys)):
            key = keys[i]
            if not key.startswith(prefix):
                break
            value = data.get(key)
            if value is not None:
                found.append((key, value))
        return found

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Faust's recovery end; the keys are sorted again at the next :meth:`with_prefix`."""
        self._sorted = None
        await super().on_recovery_completed(active_tps, standby_tps)

    def partition_for_key(self, key: Any) -> int:
        """The partition :meth:`put` names; a plain ``table[key] = value`` is refused."""
        if self._partition is None:
            msg = f"{self.name}: write with put(key, value, partition=...), not table[key]"
            raise TypeError(msg)
        return self._partition


@dataclass(frozen=True, slots=True)
class Tables:
    """The stream's tables."""

    state: DistrictTable
    notify: DistrictTable
    """The alert dispatcher's state (groups, what was sent), under ``dispatcher``; one
    partition, like the alerts topic, so it moves with the worker that notifies."""


def define_tables(app: faust.App, settings: StreamSettings) -> Tables:
    """Declare the tables on the app."""
    state = DistrictTable(
        app,
        name="state",
        beacon=app.tables.beacon,
        key_type=bytes,  # bytes keys and values: raw serializers, in the changelog too
        value_type=bytes,
        partitions=settings.partitions,
        help="per state key: the pipeline's snapshot of it",
    )
    app.tables.add(state)
    notify = DistrictTable(
        app,
        name="notify",
        beacon=app.tables.beacon,
        key_type=bytes,
        value_type=bytes,
        partitions=1,
        help="the alert dispatcher's state",
    )
    app.tables.add(notify)
    return Tables(state=state, notify=notify)

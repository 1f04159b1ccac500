"""Faust's Kafka transport: a setting for how long a fetch may wait, and batched produce.

Faust's aiokafka consumer asks the broker to hold each fetch up to 1.5 s until data
arrives (``fetch_max_wait_ms``, fixed in Faust). Apache Kafka answers such a fetch as
soon as a record comes. Tansu holds it the whole time if the partition was empty when
the fetch came. Measured here, one record produced now and then reached a consumer
after 407 ms (median; 743 ms at most) with Faust's 1.5 s, and after 23 ms (50 ms at
most) with 100 ms. The worker has up to three such hops (readings, by district,
alerts), so the wait is most of the time from a reading to its alert.

:class:`StreamFaustApp` is a :class:`faust.App` whose consumer waits at most
``fetch_wait_ms``; a shorter wait costs a few empty fetches a second while idle.

Its producer (:class:`BatchProducer`) differs from Faust's in two ways:

* It sends many records to one partition as whole record batches
  (:meth:`BatchProducer.send_records`). Faust sends each record on its own: a
  table write goes through a queue, a task, a future and a flush wait per record.
  Under cProfile, a live worker storing a few thousand keys a second made 320,000
  flush waits and 185,000 tasks in 40 s, and its readings agent had a sixth of its
  main thread's busy time.
* Its client keeps the metadata of every topic it sends to. aiokafka's client asks
  for every topic's metadata until the first topic it did not know is sent to (a
  changelog or the alerts topic, created after the worker started); from then on it
  asks only for the topics it had to add, and the metadata of the others is dropped
  at the next refresh. A batch for a dropped topic then waits for a partition
  leader that no refresh will bring, and the worker stops sending to that topic
  for good (seen here: the ``by_district`` records of a finished backlog stayed
  queued, the readings agent never got them).

Its consumer never commits past an offset that no agent acked, unless there is no
record there (:func:`recordless`). Faust lets one such offset through when it is the
first after the committed offset (its check of the acked offsets against the committed
one is off by one; faust-streaming issue 606): a record that an agent still holds, or
that never reached an agent, is then lost at the next restart. Seen here: each single
offset the Faust test app dropped unacked (the first, the fourth, the eighth of ten)
was committed past, and never read again. Before the group's first commit of a
partition, Faust checks nothing at all; the stream's consumer then counts from the
first offset it read (:func:`start_offset`).

Nor does it forget a commit that Kafka did not take. Faust books the offsets as
committed, and drops their acks, whether or not the commit went through (a commit
refused because the group "has already rebalanced" is not even logged). A partition
the worker keeps through that rebalance then has nothing to commit until newer records
are acked: its group offset stays behind, and a restart reads those records again.

And its gaps (offsets Faust takes as having no record, to be committed without an
ack) are only offsets it never delivered. Faust notes a gap when a partition's next
record is more than one past its read offset, and counted that record in the gap.
After a takeover, Faust seeks back to the committed offset while it still hands on
the rest of a fetch made before: the next record of that fetch looked like a jump,
and every record delivered since the committed offset fell into a gap. Those acked
were then listed twice and the partition's commits crawled on one offset at a time
(in one failover test run in three to eight); those an agent never acked would have
been committed past.

>>> app = StreamFaustApp("example", fetch_wait_ms=100)
>>> app.fetch_wait_ms
100
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, cast

import aiokafka  # type: ignore[import-untyped,unused-ignore]
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

__all__ = ["BatchProducer", "StreamFaustApp", "recordless", "start_offset"]

FAUST_FETCH_WAIT_MS = 1500
"""The longest wait of a fetch in Faust's own consumer."""


class StreamFaustApp(faust.App):
    """A Faust app whose Kafka consumer waits at most ``fetch_wait_ms`` per fetch."""

    def __init__(
        self, id: str, *, fetch_wait_ms: int = FAUST_FETCH_WAIT_MS, **options: Any
    ) -> None:
        self.fetch_wait_ms = fetch_wait_ms
        super().__init__(id, **options)

    def _new_transport(self) -> faust.types.TransportT:
        return _Transport(self.conf.broker_consumer, self)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by the consumer when it starts, which has not happened yet.
        consumer._fetch_max_wait_ms = cast(StreamFaustApp, self.app).fetch_wait_ms
        return consumer


class _ReadOffsets(defaultdict[TP, int | None]):
    """Faust's read offset of each partition, which also keeps the first and the highest.

    Faust's fetch loop sets a partition's read offset as it hands each record to the
    agents; a seek sets it back (to the committed offset, after a rebalance or when
    the offset watch reads skipped records again). ``highest`` is the last offset
    handed on before any such seek: every offset up to it has been delivered once.
    ``first`` is the first offset set since the partition was assigned: where its
    reading began.

    >>> tp = TP("readings", 0)
    >>> offsets = _ReadOffsets()
    >>> offsets[tp] = 40
    >>> offsets[tp] = 57
    >>> offsets.update({tp: 39})  # Faust's seek to the committed offset
    >>> offsets[tp], offsets.first[tp], offsets.highest[tp]
    (39, 40, 57)
    """

    def __init__(self) -> None:
        super().__init__(lambda: None)
        self.first: dict[TP, int] = {}
        self.highest: dict[TP, int] = {}

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        super().__setitem__(tp, offset)
        if offset is not None:
            self.first.setdefault(tp, offset)
            if offset > self.highest.get(tp, -1):
                self.highest[tp] = offset

    def __delitem__(self, tp: TP) -> None:
        super().__delitem__(tp)
        self._forget(tp)

    def pop(self, tp: TP, *default: int | None) -> int | None:  # type: ignore[override]
        """Forget a partition (Faust: it was revoked)."""
        self._forget(tp)
        return super().pop(tp, *default)

    def _forget(self, tp: TP) -> None:
        self.first.pop(tp, None)
        self.highest.pop(tp, None)


def start_offset(consumer: Any, tp: TP) -> int | None:
    """The offset from which a partition's records must all be acked before a commit.

    Its committed offset; before the group's first commit of the partition, the first
    offset this consumer read of it (:class:`_ReadOffsets`); None before either.
    Reads Faust's private consumer state; None from a consumer that keeps it otherwise.
    """
    committed: int | None = getattr(consumer, "_committed_offset", {}).get(tp)
    if committed is not None:
        return committed
    first: dict[TP, int] = getattr(getattr(consumer, "_read_offset", None), "first", {})
    return first.get(tp)


class _Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = _ReadOffsets()

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's offset to commit; None while an offset from :func:`start_offset` is unacked.

        Offsets without a record (:func:`recordless`) need no ack; they join the acked
        ones once each (:meth:`_fold_gaps`) before Faust looks for its run of
        consecutive offsets.
        """
        start = start_offset(self, tp)
        acked = self._acked[tp]
        if start is not None and acked:
            gaps = self._gap[tp]
            for offset in range(start, min(acked)):
                if not recordless(gaps, start, offset):
                    return None
        if acked:
            self._fold_gaps(tp, acked)
        return super()._new_offset(tp)

    def _fold_gaps(self, tp: TP, acked: list[int]) -> None:
        """Move a partition's gaps up to its highest acked offset into ``acked``, each offset once.

        Faust's own adds every offset of those gaps, acked or not. A gap holds no
        offset with a record any more (:meth:`_add_gap`), but one acked all the same
        would be listed twice, which ends Faust's run of consecutive offsets: from
        there on each commit moved the partition on by one offset (seen here before
        :meth:`_add_gap` was fixed, after a takeover: 270 records behind, one commit
        every 2.8 s, which the offset watch does not see, its lowest acked offset
        moving on). Offsets an agent holds are left out: they wait for their acks.
        """
        gaps = self._gap.get(tp)
        if not gaps:
            return
        high = max(acked)
        spans = gaps.overlap(0, high)
        if not spans:
            return
        have = set(acked)
        have.update(m.offset for m in self._unacked_messages if m.tp == tp and not m.acked)
        acked += [o for span in spans for o in range(span.begin, span.end) if o not in have]
        acked.sort()
        gaps.chop(0, max(max(span.end for span in spans), high + 1))

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Note the offsets from ``offset_from`` to before ``offset_to`` as without records.

        Faust's fetch loop calls this when a partition's next record, at
        ``offset_to``, is more than one past its read offset. Faust's own notes
        ``offset_to`` too, so that record was committed past before an agent had it.
        And offsets already delivered are not noted (:class:`_ReadOffsets`): the jump
        came from a seek back made while the rest of an earlier fetch was handed on,
        and those records, not seen as missing, would be committed past even if no
        agent acked them (Faust skips some after a rebalance, faust-streaming issue
        596), and acked ones would be acked twice (:meth:`_fold_gaps`).
        """
        delivered = cast(_ReadOffsets, self._read_offset).highest.get(tp, -1)
        await super()._add_gap(tp, max(offset_from, delivered + 1), offset_to - 1)

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        """Faust's commit; offsets Kafka did not take stay acked, to be committed again."""
        before = {tp: (self._committed_offset[tp], start_offset(self, tp)) for tp in offsets}
        if await super()._commit_offsets(offsets, start_new_transaction):
            return True
        assigned = self.assignment()
        kept = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        for tp, offset in kept.items():
            committed, start = before[tp]
            self._committed_offset[tp] = committed
            # _new_offset took [start, offset) out of the acked offsets (with no start
            # known, those from its lowest acked one: the last suffices)
            if start is None:
                start = offset - 1
            index = self._acked_index[tp]
            back = [o for o in range(start, offset) if o not in index]
            index.update(back)
            acked = self._acked[tp]
            acked.extend(back)
            acked.sort()
        if kept:
            self.log.warning("Kafka did not take the commit of %r: committing it again", kept)
        return False


def recordless(gaps: Any, committed: int, offset: int) -> bool:
    """Whether Faust found no record at ``offset`` of a partition read from ``committed`` on.

    ``gaps`` is Faust's interval tree of the partition's offsets without records
    (deleted by retention or compaction), found when a fetch skips offsets. A gap
    Faust notes never starts before ``committed + 1``, even when the record at
    ``committed`` is gone too, so that offset counts as recordless when the next one is.

    >>> from intervaltree import IntervalTree
    >>> gaps = IntervalTree.from_tuples([(89, 200)])
    >>> [recordless(gaps, 88, o) for o in (88, 150, 200)], recordless(gaps, 87, 88)
    ([True, True, False], False)
    """
    if not gaps:
        return False
    return bool(gaps.overlaps(offset) or (offset == committed and gaps.overlaps(offset + 1)))


class BatchProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer: batches to a partition, metadata of every topic it sends to."""

    _tracked: tuple[object, frozenset[str]] = (None, frozenset())
    """The aiokafka client, and the topics it was told to keep (a restart makes a new one)."""

    def _track(self, topic: str) -> aiokafka.AIOKafkaProducer:
        """The aiokafka producer, its client told to keep ``topic``'s metadata."""
        producer = self._ensure_producer()
        client, topics = self._tracked
        if client is not producer.client:
            topics = frozenset()
        if topic not in topics:
            producer.client.add_topic(topic)
            self._tracked = (producer.client, topics | {topic})
        return producer

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        """Faust's send, with ``topic`` tracked first."""
        self._track(topic)
        return await super().send(topic, *args, **kwargs)

    async def send_records(
        self, topic: str, partition: int, records: Iterable[tuple[bytes, bytes]]
    ) -> list[asyncio.Future[Any]]:
        """Queue ``(key, value)`` records for one partition, as few record batches as hold them.

        Returns one future per batch, done when Kafka has acknowledged it. The records
        keep their order. A batch holds up to ``producer_max_batch_size`` bytes, or one
        record larger than that.
        """
        producer = self._track(topic)
        futures: list[asyncio.Future[Any]] = []
        batch = producer.create_batch()
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is not None:
                continue
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # an empty batch takes any
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
    Producer = BatchProducer

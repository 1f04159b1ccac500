"""The stream's watch over Faust's commits and reads.

The decision and the reading of Faust's bookkeeping are tested directly; that skipped
records are read again, on a real Faust worker and Tansu, with an agent that drops
records unacked as Faust sometimes does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka import (  # type: ignore[import-untyped,unused-ignore]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)
from faust.types import TP
from intervaltree import Interval, IntervalTree  # type: ignore[import-untyped]

from stream.app.agents import (
    OffsetWatch,
    _held_offsets,
    _skipped_offsets,
    _unread_offsets,
    _waiting_offsets,
)
from stream.app.transport import _Consumer, _ReadOffsets
from tests.servers._procs import log_tail
from tests.servers.faust_echo import ECHO_PREFIX
from tests.servers.stream_worker import create_topics
from tests.servers.tansu import TansuServer, faust_echo_worker

TIMEOUT_S = 60.0


def test_a_partition_is_reported_once_when_its_lowest_acked_offset_waits_too_long() -> None:
    watch = OffsetWatch(limit_s=30)
    assert watch.observe(0.0, {"a/0": 10, "a/1": 5}) == []
    assert watch.observe(20.0, {"a/0": 12, "a/1": 5}) == []  # a/0 committed some: moved on
    assert watch.observe(31.0, {"a/0": 12, "a/1": 5}) == ["a/1"]
    assert watch.observe(45.0, {"a/0": 12, "a/1": 5}) == []  # told already
    assert watch.observe(51.0, {"a/0": 12, "a/1": 5}) == ["a/0"]
    assert watch.observe(52.0, {"a/1": 9}) == []  # a/1 moved on, a/0 all committed
    assert watch.observe(82.0, {"a/1": 9, "a/0": 30}) == ["a/1"]


def test_faust_bookkeeping_is_read_as_faust_keeps_it() -> None:
    """The attributes and container types of faust.transport.consumer.Consumer."""
    stuck, idle = TP("by-district", 2), TP("by-district", 3)
    consumer = SimpleNamespace(
        _acked=defaultdict(list, {stuck: [141, 142, 143], idle: []}),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, {stuck: 139}),
        _read_offset=defaultdict(lambda: None, {stuck: 143}),
        _unacked_messages=[],
    )
    consumer._gap[stuck].addi(150, 152)
    assert _waiting_offsets(consumer) == {
        "by-district/2": {
            "tp": stuck,
            "lowest": 141,
            "highest": 143,
            "acked": 3,
            "committed": 139,
            "start": 139,
            "read": 143,
            "gaps": [(150, 152)],
            "skipped": [(139, 140)],
        }
    }
    assert _waiting_offsets(object()) == {}  # another Faust: nothing to say, no error


def bookkeeping(
    tp: TP, committed: int | None, acked: list[int], held: tuple[int, ...] = ()
) -> _Consumer:
    """The stream's consumer with only Faust's bookkeeping of one partition, no gaps yet."""
    consumer = object.__new__(_Consumer)
    consumer._committed_offset = defaultdict(lambda: None, {tp: committed})
    consumer._acked = defaultdict(list, {tp: list(acked)})
    consumer._acked_index = defaultdict(set, {tp: set(acked)})
    consumer._gap = defaultdict(IntervalTree)
    consumer._read_offset = _ReadOffsets()
    consumer._unacked_messages = cast(  # a weak set of messages in Faust
        Any, [SimpleNamespace(tp=tp, offset=o, acked=False) for o in held]
    )
    return consumer


def committed_next(
    committed: int | None, acked: list[int], gap: tuple[int, int] | None
) -> int | None:
    """The offset the stream's consumer would commit next, given Faust's bookkeeping."""
    tp = TP("readings", 1)
    consumer = bookkeeping(tp, committed, acked)
    if gap is not None:
        consumer._gap[tp].addi(*gap)
    return consumer._new_offset(tp)


def test_the_consumer_commits_nothing_past_an_unacked_offset_after_the_committed_one() -> None:
    assert committed_next(88, [89, 90], None) is None  # Faust's own would commit 91
    assert committed_next(88, [88, 89, 91], None) == 90
    assert committed_next(88, [89, 91], (90, 91)) is None  # 88 unacked, 90 has no record
    assert committed_next(88, [88, 89, 91], (90, 91)) == 92
    assert committed_next(88, [95, 96], (89, 95)) == 97  # no records from 88 on
    assert committed_next(None, [3, 4], None) == 5  # nothing committed yet, nor read


def test_before_the_first_commit_nothing_is_committed_past_the_first_offset_read() -> None:
    """A brand-new group: Faust's own would commit 5, past the unacked record at 2."""
    tp = TP("readings", 1)
    consumer = bookkeeping(tp, None, [3, 4])
    consumer._read_offset[tp] = 2  # the first record read; no agent acked it
    consumer._read_offset[tp] = 4
    assert consumer._new_offset(tp) is None
    found = _waiting_offsets(consumer)["readings/1"]
    assert (found["committed"], found["start"], found["skipped"]) == (None, 2, [(2, 2)])
    consumer._acked[tp].insert(0, 2)
    assert consumer._new_offset(tp) == 5


def test_records_delivered_before_a_seek_back_are_not_taken_for_a_gap() -> None:
    """A takeover: Faust delivered 117-152 of a fetch, then sought back to 117.

    The record at 153, the rest of that fetch, then looked like a jump from 117:
    Faust noted 118-153 as without records, and its commits went 119, 120, 121...
    one offset a commit, every offset listed twice.
    """
    tp = TP("by-district", 2)
    consumer = bookkeeping(tp, 117, [])
    for offset in range(117, 153):  # Faust's fetch loop, as it hands records on
        consumer._read_offset[tp] = offset
    consumer._read_offset.update({tp: 117})  # Faust's seek to the committed offset
    asyncio.run(consumer._add_gap(tp, 118, 153))  # the record at 153 came next
    assert not consumer._gap[tp]
    consumer._acked[tp] += range(117, 200)
    assert consumer._new_offset(tp) == 200
    consumer._read_offset.pop(tp, None)  # revoked: a later jump is a gap again
    asyncio.run(consumer._add_gap(tp, 201, 205))
    assert sorted(consumer._gap[tp]) == [Interval(201, 205)]  # not 205: it has a record


def test_a_gap_is_committed_with_the_acked_offsets_each_once_and_not_past_a_held_one() -> None:
    tp = TP("by-district", 2)
    consumer = bookkeeping(tp, 117, [117, 118, 119, 120, 121, 125], held=(122,))
    consumer._gap[tp].addi(120, 125)  # a gap over offsets acked or held all the same
    assert consumer._new_offset(tp) == 122  # 122 is not acked yet
    assert consumer._acked[tp] == [123, 124, 125]
    assert not consumer._gap[tp]
    consumer._committed_offset[tp] = 122
    assert consumer._new_offset(tp) is None  # still held
    consumer._unacked_messages.clear()
    consumer._acked[tp].append(122)
    assert consumer._new_offset(tp) == 126


def test_offsets_kafka_did_not_take_are_committed_at_the_next_commit() -> None:
    """A commit refused (the group "has already rebalanced") is tried again, not forgotten."""
    tp, other = TP("by-district", 2), TP("by-district", 3)
    answers = [False, True]
    sent: list[dict[TP, int]] = []

    async def commit(offsets: Mapping[TP, int]) -> bool:
        sent.append(dict(offsets))
        return answers.pop(0)

    async def flush() -> None:
        return None

    # Faust's own _commit_offsets, its Kafka call faked. ``other`` is a partition of a
    # group that has committed nothing yet: read from 5 on.
    consumer = bookkeeping(tp, 139, list(range(139, 211)))
    consumer._acked[other], consumer._acked_index[other] = [5, 6], {5, 6}
    consumer._read_offset[other] = 5
    warned: list[tuple[object, ...]] = []
    consumer.log = cast(
        Any, SimpleNamespace(dev=_quiet, info=_quiet, warning=lambda *a: warned.append(a))
    )
    consumer.in_transaction = False
    consumer.app = cast(
        Any,
        SimpleNamespace(
            producer=SimpleNamespace(flush=flush),
            tables=SimpleNamespace(on_commit=lambda offsets: None),
            monitor=SimpleNamespace(on_tp_commit=lambda offsets: None),
        ),
    )
    consumer.assignment = lambda: {tp, other}  # type: ignore[method-assign]
    consumer._commit = commit  # type: ignore[method-assign]

    async def commit_twice() -> list[bool]:
        return [
            await consumer._commit_offsets(consumer._filter_committable_offsets([tp, other]))
            for _ in range(2)
        ]

    assert asyncio.run(commit_twice()) == [False, True]
    assert sent == [{tp: 211, other: 7}, {tp: 211, other: 7}]
    assert consumer._committed_offset == {tp: 211, other: 7}
    assert consumer._acked == {tp: [], other: []}
    assert [args[1] for args in warned] == [{tp: 211, other: 7}]


def _quiet(*args: object) -> None:
    return None


def test_offsets_held_by_an_agent_or_in_a_gap_are_not_skipped() -> None:
    tp, other = TP("readings", 1), TP("readings", 0)
    consumer = SimpleNamespace(
        _unacked_messages=[  # a weak set in Faust
            SimpleNamespace(tp=tp, offset=90, acked=False),  # an agent holds it
            SimpleNamespace(tp=tp, offset=91, acked=True),  # acked: not held
            SimpleNamespace(tp=other, offset=92, acked=False),  # another partition's
        ],
    )
    held = _held_offsets(consumer)
    assert held == {tp: {90}, other: {92}}
    gaps = IntervalTree.from_tuples([(93, 95)])  # no records at 93 and 94
    assert _skipped_offsets(held[tp], gaps, 88, 97) == [(88, 89), (91, 92), (95, 96)]
    assert _skipped_offsets(held[tp], gaps, 96, 96) == []
    # Records deleted from the committed offset on: Faust's gap starts one after it.
    assert _skipped_offsets(held[tp], gaps, 92, 97) == [(95, 96)]


def test_partitions_with_records_past_the_last_read_are_found_among_the_streamed_topics() -> None:
    """Faust's consumer: its assignment, the ends its fetches saw, its read offsets."""
    behind, done, fresh, other, revoked, taken = (
        TP("by-district", 2),
        TP("by-district", 3),
        TP("by-district", 1),
        TP("app-state-changelog", 0),
        TP("by-district", 0),
        TP("by-district", 4),
    )
    ends = {behind: 169, done: 56, fresh: None, other: 99, taken: 57}

    def highwater(tp: TP) -> int | None:
        if tp == revoked:
            raise AssertionError("Partition is not assigned")
        return ends[tp]

    consumer = SimpleNamespace(
        assignment=lambda: {behind, done, fresh, other, revoked, taken},
        highwater=highwater,
        # taken: read up to 39 by an old fetch, committed to its end by its last owner
        _read_offset=defaultdict(lambda: None, {behind: 139, done: 55, taken: 39}),
        _committed_offset=defaultdict(lambda: None, {behind: 120, taken: 57}),
        _paused_partitions={behind},
        _unacked_messages=[
            SimpleNamespace(tp=behind, offset=121, acked=False),
            SimpleNamespace(tp=behind, offset=122, acked=True),
        ],
    )
    assert _unread_offsets(consumer, {"by-district"}) == {
        "by-district/2": {
            "read": 139,
            "highwater": 169,
            "paused": True,
            "committed": 120,
            "held": 1,
        }
    }


@pytest.mark.servers
@pytest.mark.parametrize("skip", [[3, 7], [0]], ids=["after-commits", "before-any-commit"])
def test_records_an_agent_never_got_are_read_again_and_the_partition_commits_past_them(
    tansu: TansuServer, tmp_path: Path, skip: list[int]
) -> None:
    """The agent drops records unacked the first time; every record is echoed in the end.

    The stream's consumer then commits nothing past the first dropped offset (Faust's
    own would commit past each, a single unacked offset after the committed one, and
    anything at all before the group's first commit); the watch finds it neither
    acked nor held, and seeks the partition back to it. The watch waits longer than
    Faust's commit interval (2.8 s), so it would come too late for a consumer that
    committed past the dropped offsets.
    """
    app_id = f"skip-{uuid.uuid4().hex[:8]}"
    source, sink = f"{app_id}-in", f"{app_id}-out"
    asyncio.run(asyncio.wait_for(create_topics(tansu, [source, sink], 1), TIMEOUT_S))
    worker = faust_echo_worker(
        tansu, tmp_path, app_id=app_id, source=source, sink=sink, skip=skip, watch_s=8.0
    )
    values = [str(n).encode() for n in range(10)]
    worker.start()
    try:
        echoed, committed = asyncio.run(
            asyncio.wait_for(_echo(tansu, app_id, source, sink, values), TIMEOUT_S + 10)
        )
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    details = f"; worker log:\n{log_tail(worker.log_path)}"
    assert echoed >= {ECHO_PREFIX + v for v in values}, f"echoed only {sorted(echoed)}{details}"
    assert committed == len(values), f"committed offset {committed}{details}"
    assert "offsets skipped, reading them again" in log, details


async def _echo(
    tansu: TansuServer, group: str, source: str, sink: str, values: list[bytes]
) -> tuple[set[bytes], int | None]:
    """Produce ``values``, then wait until every one is echoed and committed (or time is up).

    Returns what the agent echoed and the group's committed offset.
    """
    producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap_servers)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(source, value, key=b"k")
    finally:
        await producer.stop()
    reader = AIOKafkaConsumer(
        sink, bootstrap_servers=tansu.bootstrap_servers, auto_offset_reset="earliest"
    )
    offsets = AIOKafkaConsumer(
        bootstrap_servers=tansu.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await reader.start()
    await offsets.start()
    tp = TopicPartition(source, 0)
    offsets.assign([tp])
    echoed: set[bytes] = set()
    committed: int | None = None
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            for records in (await reader.getmany(timeout_ms=500)).values():
                echoed.update(r.value for r in records)
            committed = await offsets.committed(tp)
            if len(echoed) >= len(values) and committed == len(values):
                break
    finally:
        await reader.stop()
        await offsets.stop()
    return echoed, committed

"""The readings agent's watch over Faust's commits and reads: pure decision, bookkeeping read."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from faust.types import TP
from intervaltree import IntervalTree  # type: ignore[import-untyped]

from stream.app.agents import OffsetWatch, _unread_offsets, _waiting_offsets


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
    )
    consumer._gap[stuck].addi(150, 152)
    assert _waiting_offsets(consumer) == {
        "by-district/2": {
            "lowest": 141,
            "highest": 143,
            "acked": 3,
            "committed": 139,
            "read": 143,
            "gaps": [(150, 152)],
        }
    }
    assert _waiting_offsets(object()) == {}  # another Faust: nothing to say, no error


def test_partitions_with_records_past_the_last_read_are_found_among_the_streamed_topics() -> None:
    """Faust's consumer: its assignment, the ends its fetches saw, its read offsets."""
    behind, done, fresh, other, revoked = (
        TP("by-district", 2),
        TP("by-district", 3),
        TP("by-district", 1),
        TP("app-state-changelog", 0),
        TP("by-district", 0),
    )
    ends = {behind: 169, done: 56, fresh: None, other: 99}

    def highwater(tp: TP) -> int | None:
        if tp == revoked:
            raise AssertionError("Partition is not assigned")
        return ends[tp]

    consumer = SimpleNamespace(
        assignment=lambda: {behind, done, fresh, other, revoked},
        highwater=highwater,
        _read_offset=defaultdict(lambda: None, {behind: 139, done: 55}),
        _paused_partitions={behind},
    )
    assert _unread_offsets(consumer, {"by-district"}) == {
        "by-district/2": {"read": 139, "highwater": 169, "paused": True}
    }

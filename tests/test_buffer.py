"""The store-and-forward queue: FIFO, at-least-once, bounded, durable through SIGKILL."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge_agents.buffer import (
    Entry,
    PutResult,
    QueueStorageError,
    ReadingBuffer,
    SequenceError,
    default_max_bytes,
)
from edge_agents.errors import EdgeAgentError
from telemetry import Kind, Reading

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
BIG = 10_000_000


def make(sensor_id: str = "aq-01", seq: int = 0, value: float = 35.0, minute: int = 0) -> Reading:
    return Reading(
        sensor_id=sensor_id,
        kind=Kind.POLLUTION,
        seq=seq,
        ts=T0 + timedelta(minutes=minute),
        metrics={"pm2_5": value},
    )


def builder(sensor_id: str, value: float = 35.0) -> Callable[[int], Reading]:
    return lambda seq: make(sensor_id, seq, value)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture
def queue(db: Path) -> Iterator[ReadingBuffer]:
    with ReadingBuffer(db, max_bytes=BIG) as buffer:
        yield buffer


def keys(entries: list[Entry]) -> list[tuple[str, int]]:
    return [(e.sensor_id, e.seq) for e in entries]


# ---------------------------------------------------------------- FIFO and in flight


def test_fifo_put_peek_ack(queue: ReadingBuffer) -> None:
    for seq in range(5):
        queue.put(make(seq=seq))
    batch = queue.peek_batch(3, 1 << 20)
    assert keys(batch) == [("aq-01", 0), ("aq-01", 1), ("aq-01", 2)]
    assert batch[0].reading() == make(seq=0)
    assert queue.depth() == 5  # peek removes nothing
    assert queue.ack(e.id for e in batch) == 3
    assert queue.depth() == 2
    assert keys(queue.peek_batch(10, 1 << 20)) == [("aq-01", 3), ("aq-01", 4)]


def test_peek_does_not_hand_out_in_flight_entries_twice(queue: ReadingBuffer) -> None:
    for seq in range(4):
        queue.put(make(seq=seq))
    first = queue.peek_batch(2, 1 << 20)
    second = queue.peek_batch(10, 1 << 20)
    assert keys(first) == [("aq-01", 0), ("aq-01", 1)]
    assert keys(second) == [("aq-01", 2), ("aq-01", 3)]
    assert queue.peek_batch(10, 1 << 20) == []
    queue.put(make(seq=4))
    assert keys(queue.peek_batch(10, 1 << 20)) == [("aq-01", 4)]


def test_rewind_hands_unacked_entries_out_again(queue: ReadingBuffer) -> None:
    for seq in range(4):
        queue.put(make(seq=seq))
    first = queue.peek_batch(2, 1 << 20)
    queue.peek_batch(2, 1 << 20)
    queue.ack([first[0].id])
    queue.rewind()
    assert keys(queue.peek_batch(10, 1 << 20)) == [("aq-01", 1), ("aq-01", 2), ("aq-01", 3)]


def test_ack_of_unknown_or_repeated_ids_is_harmless(queue: ReadingBuffer) -> None:
    queue.put(make(seq=0))
    (entry,) = queue.peek_batch(10, 1 << 20)
    assert queue.ack([entry.id + 1000, -1]) == 0
    assert queue.ack([]) == 0
    assert queue.ack([entry.id, entry.id]) == 1
    assert queue.ack([entry.id]) == 0
    assert queue.depth() == 0
    assert queue.size_bytes() == 0


def test_peek_respects_byte_limit_but_always_returns_one(queue: ReadingBuffer) -> None:
    queue.put_many(make(seq=seq) for seq in range(5))
    one = len(queue.peek_batch(1, 1 << 20)[0].payload)
    queue.rewind()
    assert len(queue.peek_batch(10, 2 * one + 1)) == 2
    assert len(queue.peek_batch(10, 1)) == 1  # a lone oversize entry still goes out
    assert queue.peek_batch(0, 1 << 20) == []


def test_ids_are_not_reused_after_the_queue_drains(db: Path) -> None:
    with ReadingBuffer(db, max_bytes=BIG) as queue:
        queue.put(make(seq=0))
        (entry,) = queue.peek_batch(10, 1 << 20)
        queue.ack([entry.id])
        queue.put(make(seq=1))
        assert keys(queue.peek_batch(10, 1 << 20)) == [("aq-01", 1)]


def test_stats(queue: ReadingBuffer) -> None:
    assert queue.oldest_ts() is None
    assert (queue.depth(), queue.size_bytes(), queue.dropped_total()) == (0, 0, 0)
    result = queue.put_many([make("aq-01", 0, minute=3), make("aq-02", 0, minute=5)])
    assert len(result.entry_ids) == 2
    assert result.dropped == 0
    assert queue.depth() == 2
    assert queue.size_bytes() == sum(len(e.payload) for e in queue.peek_batch(10, 1 << 20))
    assert queue.oldest_ts() == T0 + timedelta(minutes=3)


def test_samples_put_while_the_queue_is_busy_are_stored_together(queue: ReadingBuffer) -> None:
    """A group commit: one transaction for every waiting sample, each caller its own result."""
    results: dict[str, object] = {}

    def put(sensor_id: str, value: float) -> None:
        try:
            results[sensor_id] = queue.put_sample(sensor_id, builder(sensor_id, value))
        except ValueError as error:
            results[sensor_id] = error

    sensors = [(f"aq-{i}", 35.0) for i in range(8)] + [("aq-bad", -1.0)]  # -1 is out of range
    with queue._lock:  # the queue is busy: every put below waits
        threads = [threading.Thread(target=put, args=sensor) for sensor in sensors]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(queue._waiting) < len(sensors) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(queue._waiting) == len(sensors)
    for thread in threads:
        thread.join(10)
    assert isinstance(results.pop("aq-bad"), ValueError)  # its own error, nobody else's
    stored = {sensor: result for sensor, result in results.items() if isinstance(result, PutResult)}
    assert set(stored) == {f"aq-{i}" for i in range(8)}
    assert all(result.reading.sensor_id == sensor for sensor, result in stored.items())
    assert len({result.entry_ids[0] for result in stored.values()}) == 8
    assert queue.depth() == 8


def test_concurrent_samplers_get_unique_seqs(queue: ReadingBuffer) -> None:
    def sample(sensor_id: str) -> None:
        for _ in range(50):
            queue.put_sample(sensor_id, builder(sensor_id))

    threads = [threading.Thread(target=sample, args=(f"aq-{i % 2}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = queue.peek_batch(1000, 1 << 24)
    assert len(entries) == queue.depth() == 200
    for sensor_id in ("aq-0", "aq-1"):
        seqs = [e.seq for e in entries if e.sensor_id == sensor_id]
        assert seqs == list(range(100))


# ---------------------------------------------------------------- bound


def test_full_queue_drops_oldest_first_and_counts(db: Path) -> None:
    size = len(make(seq=0).model_dump_json(exclude_defaults=True))
    with ReadingBuffer(db, max_bytes=3 * size) as queue:
        results = [queue.put(make(seq=seq)) for seq in range(5)]
        assert [r.dropped for r in results] == [0, 0, 0, 1, 1]
        assert queue.dropped_total() == 2
        assert queue.depth() == 3
        assert queue.size_bytes() <= 3 * size
        assert [e.seq for e in queue.peek_batch(10, 1 << 20)] == [2, 3, 4]
    with ReadingBuffer(db, max_bytes=3 * size) as queue:
        assert queue.dropped_total() == 2
        assert queue.depth() == 3
        queue.put(make(seq=5))
        assert queue.dropped_total() == 3
    # A smaller bound at reopen trims at once, and counts it.
    with ReadingBuffer(db, max_bytes=size) as queue:
        assert queue.depth() == 1
        assert queue.dropped_total() == 5
        assert [e.seq for e in queue.peek_batch(10, 1 << 20)] == [5]


def test_dropping_in_flight_entries_makes_their_ack_harmless(db: Path) -> None:
    size = len(make(seq=0).model_dump_json(exclude_defaults=True))
    with ReadingBuffer(db, max_bytes=2 * size) as queue:
        queue.put_many([make(seq=0), make(seq=1)])
        in_flight = queue.peek_batch(10, 1 << 20)
        queue.put_many([make(seq=2), make(seq=3)])
        assert queue.ack(e.id for e in in_flight) == 0
        assert [e.seq for e in queue.peek_batch(10, 1 << 20)] == [2, 3]


def test_default_max_bytes_holds_a_day_and_a_half() -> None:
    assert default_max_bytes(1, bytes_per_reading=100) == 129_600 * 100
    assert default_max_bytes(2, seconds=10, bytes_per_reading=50) == 1000
    with pytest.raises(ValueError, match="positive"):
        default_max_bytes(0)
    with pytest.raises(ValueError, match="positive"):
        ReadingBuffer(Path("unused.db"), max_bytes=0)


# ---------------------------------------------------------------- sequence numbers


def test_sequence_numbers_persist_and_never_repeat(db: Path) -> None:
    with ReadingBuffer(db, max_bytes=BIG) as queue:
        assert queue.next_seq("aq-01") == 0
        assert queue.put_sample("aq-01", builder("aq-01")).reading.seq == 0
        assert queue.put_sample("aq-01", builder("aq-01")).reading.seq == 1
        queue.put(make("aq-02", seq=41))
        assert queue.next_seq("aq-02") == 42
        # Acking everything does not forget the numbering.
        queue.ack(e.id for e in queue.peek_batch(10, 1 << 20))
    with ReadingBuffer(db, max_bytes=BIG) as queue:
        assert queue.next_seq("aq-01") == 2
        assert queue.put_sample("aq-02", builder("aq-02")).reading.seq == 42
        with pytest.raises(SequenceError, match="not above"):
            queue.put(make("aq-01", seq=1))
        with pytest.raises(SequenceError):  # the whole batch is refused
            queue.put_many([make("aq-03", seq=0), make("aq-03", seq=0)])
        assert queue.next_seq("aq-03") == 0
        assert queue.depth() == 1


def test_put_sample_checks_what_build_returns(queue: ReadingBuffer) -> None:
    with pytest.raises(ValueError, match="returned sensor"):
        queue.put_sample("aq-01", lambda seq: make("aq-02", seq))
    with pytest.raises(ValueError, match="returned sensor"):
        queue.put_sample("aq-01", lambda seq: make("aq-01", seq + 1))
    assert queue.depth() == 0
    assert queue.next_seq("aq-01") == 0


def test_first_seq(db: Path) -> None:
    with ReadingBuffer(db, max_bytes=BIG, first_seq=1000) as queue:
        assert queue.put_sample("aq-01", builder("aq-01")).reading.seq == 1000


# ---------------------------------------------------------------- bad files


def test_garbage_file_is_reported_and_left_alone(db: Path) -> None:
    garbage = b"this is not an sqlite database, it is a log file\n" * 100
    db.write_bytes(garbage)
    with pytest.raises(QueueStorageError, match=re.escape(str(db))) as caught:
        ReadingBuffer(db, max_bytes=BIG)
    assert caught.value.path == db
    assert isinstance(caught.value, EdgeAgentError)
    assert db.read_bytes() == garbage


def test_truncated_database_is_reported(db: Path) -> None:
    with ReadingBuffer(db, max_bytes=BIG) as queue:
        queue.put_many(make(seq=seq, value=float(seq)) for seq in range(2000))
    data = db.read_bytes()
    db.write_bytes(data[:100] + b"\xff" * 4000 + data[4100:])  # clobber the schema page
    with pytest.raises(QueueStorageError, match=re.escape(str(db))):
        ReadingBuffer(db, max_bytes=BIG)


def test_another_programs_database_is_refused(db: Path) -> None:
    with sqlite3.connect(db) as other:
        other.execute("CREATE TABLE users (name TEXT)")
    other.close()
    with pytest.raises(QueueStorageError, match="not an urbansense reading buffer"):
        ReadingBuffer(db, max_bytes=BIG)


def test_second_owner_is_refused(queue: ReadingBuffer, db: Path) -> None:
    with pytest.raises(QueueStorageError, match=re.escape(str(db))):
        ReadingBuffer(db, max_bytes=BIG, busy_timeout_s=0.05)


def test_missing_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(QueueStorageError, match="cannot open"):
        ReadingBuffer(tmp_path / "no" / "such" / "queue.db", max_bytes=BIG)


# ---------------------------------------------------------------- SIGKILL

CHILD = """
import sys
from datetime import UTC, datetime, timedelta
from edge_agents.buffer import ReadingBuffer
from telemetry import Kind, Reading

t0 = datetime(2026, 11, 22, tzinfo=UTC)
queue = ReadingBuffer(sys.argv[1], max_bytes=10**9)

def build(sensor_id, i):
    return lambda seq: Reading(sensor_id=sensor_id, kind=Kind.POLLUTION, seq=seq,
                               ts=t0 + timedelta(seconds=i), metrics={"pm2_5": float(i % 500)})

for i in range(20):
    queue.put_sample(f"aq-{i % 3}", build(f"aq-{i % 3}", i))
peeked = queue.peek_batch(10, 1 << 20)
print("peeked", *[e.id for e in peeked], flush=True)
for i in range(20, 20_000):
    sensor_id = f"aq-{i % 3}"
    result = queue.put_sample(sensor_id, build(sensor_id, i))
    print("put", result.entry_ids[0], sensor_id, result.reading.seq, flush=True)
"""


def run_and_kill(db: Path, puts_before_kill: int) -> tuple[list[int], list[tuple[int, str, int]]]:
    """Run the child until it reported ``puts_before_kill`` puts, SIGKILL it, parse its output."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert child.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    try:
        while sum(line.startswith("put") for line in lines) < puts_before_kill:
            line = child.stdout.readline()
            if not line:
                assert child.stderr is not None
                pytest.fail(f"child exited early: {child.wait()} {child.stderr.read()}")
            lines.append(line)
            assert time.monotonic() < deadline, "child too slow"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    lines.extend(child.stdout.read().splitlines(keepends=True))
    child.stdout.close()
    assert child.stderr is not None
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    complete = [line.split() for line in lines if line.endswith("\n")]
    peeked = [int(word) for word in complete[0][1:]]
    puts = [(int(f[1]), f[2], int(f[3])) for f in complete[1:] if f and f[0] == "put"]
    return peeked, puts


def test_sigkill_loses_no_committed_reading(db: Path) -> None:
    reported: list[tuple[int, str, int]] = []
    all_peeked: list[int] = []
    for puts_before_kill in (150, 60):
        peeked, puts = run_and_kill(db, puts_before_kill)
        assert len(peeked) == 10
        all_peeked += peeked
        reported += puts
    with ReadingBuffer(db, max_bytes=10**9) as queue:
        entries = queue.peek_batch(100_000, 1 << 30)
        assert len(entries) == queue.depth()
        stored = {(e.id, e.sensor_id, e.seq) for e in entries}
        missing = set(reported) - stored
        assert not missing, f"committed readings lost: {sorted(missing)[:5]}"
        # Peeked but never acknowledged: still queued.
        assert set(all_peeked) <= {e.id for e in entries}
        # 20 + at least 150 and 60 puts, no duplicate keys, seqs strictly increasing per sensor.
        assert len(entries) >= 40 + 150 + 60
        assert len({(e.sensor_id, e.seq) for e in entries}) == len(entries)
        for sensor_id in ("aq-0", "aq-1", "aq-2"):
            seqs = [e.seq for e in entries if e.sensor_id == sensor_id]
            assert seqs == sorted(seqs)
            assert seqs == list(range(len(seqs)))  # no gaps either: numbering is transactional
            assert queue.next_seq(sensor_id) == len(seqs)
        assert all(e.reading().sensor_id == e.sensor_id for e in entries)


# ---------------------------------------------------------------- model-based


class QueueMachine(RuleBasedStateMachine):
    """Random put/peek/ack/rewind/reopen against a plain-list model of the queue."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp())
        self.path = self.folder / "queue.db"
        self.size = len(make(seq=0).model_dump_json(exclude_defaults=True))
        self.max_bytes = 6 * self.size + self.size // 2
        self.queue = ReadingBuffer(self.path, max_bytes=self.max_bytes)
        self.model: list[tuple[int, int]] = []  # (entry id, payload size), oldest first
        self.mark = 0  # in-flight high-water mark
        self.handed_out: list[int] = []
        self.puts = self.acked = self.drops = 0

    def teardown(self) -> None:
        self.queue.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    @rule(count=st.integers(1, 4), sensor=st.sampled_from(["aq-1", "aq-2"]))
    def put(self, count: int, sensor: str) -> None:
        first = self.queue.next_seq(sensor)
        result = self.queue.put_many(make(sensor, first + i) for i in range(count))
        sizes = [len(r.model_dump_json(exclude_defaults=True)) for r in result.readings]
        self.model += list(zip(result.entry_ids, sizes, strict=True))
        dropped = 0
        while sum(size for _, size in self.model) > self.max_bytes:
            self.model.pop(0)
            dropped += 1
        assert result.dropped == dropped
        self.puts += count
        self.drops += dropped

    @rule(limit=st.integers(1, 5))
    def peek(self, limit: int) -> None:
        entries = self.queue.peek_batch(limit, 1 << 20)
        expected = [i for i, _ in self.model if i > self.mark][:limit]
        assert [e.id for e in entries] == expected
        if entries:
            self.mark = entries[-1].id
        self.handed_out += expected

    @precondition(lambda self: bool(self.handed_out))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from(self.handed_out), max_size=5))
        present = {i for i, _ in self.model} & set(ids)
        assert self.queue.ack(ids) == len(present)
        self.model = [(i, s) for i, s in self.model if i not in present]
        self.acked += len(present)

    @rule()
    def rewind(self) -> None:
        self.queue.rewind()
        self.mark = 0

    @rule()
    def reopen(self) -> None:
        self.queue.close()
        self.queue = ReadingBuffer(self.path, max_bytes=self.max_bytes)
        self.mark = 0

    @invariant()
    def counts_add_up(self) -> None:
        assert self.queue.depth() == self.puts - self.acked - self.drops == len(self.model)
        assert self.queue.dropped_total() == self.drops
        assert self.queue.size_bytes() == sum(size for _, size in self.model)


QueueMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30)
TestQueueMachine = QueueMachine.TestCase

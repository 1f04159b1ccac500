"""The gateway's store-and-forward queue: readings wait on disk until the broker has them.

Every reading the agent takes goes first into a :class:`ReadingBuffer`, an SQLite
database in WAL mode on the gateway's own storage, and leaves it only when the
MQTT broker has acknowledged the message that carried it (QoS 1 PUBACK). Sampling
never waits on the network: putting a reading is a local transaction.

Durability guarantees
---------------------

* **A put is durable when it returns.** Each :meth:`ReadingBuffer.put`,
  :meth:`~ReadingBuffer.put_many` and :meth:`~ReadingBuffer.put_sample` is one
  committed transaction. The queue runs with ``PRAGMA synchronous=FULL`` by
  default: in WAL mode the WAL is fsynced at every commit, so a committed reading
  survives a process crash (SIGKILL, OOM kill) *and* a power cut. With
  ``synchronous=NORMAL`` the WAL is only fsynced at checkpoints: a process crash
  still loses nothing (the data is in the OS page cache), but a power cut can
  roll back the last transactions. Gateways lose power (fuses, brown-outs, people
  pulling plugs), so FULL is the default; ``benchmarks/buffer.py`` measures the
  cost (on a development VM: about 5,000 single puts/s with FULL against 30,000
  with NORMAL; ``put_many`` of 50 about 90,000 readings/s). An SD card's fsync is
  slower, but even 100 fsyncs a second is well above a gateway's sampling rate. (No software setting
  protects against storage that lies about flushing its cache; use decent SD
  cards or an SSD.)
* **At least once, never lost.** :meth:`~ReadingBuffer.peek_batch` hands out the
  oldest entries *without* removing them; :meth:`~ReadingBuffer.ack` deletes them
  once the broker acknowledged. A crash between peek and ack sends them again:
  receivers recognise the resend by ``(sensor_id, seq)``.
* **Sequence numbers never repeat.** The last ``seq`` given to each sensor is
  stored in the same transaction as the reading, so after any restart, even
  after SIGKILL or a power cut, numbering goes on from where the committed
  readings left off. :meth:`~ReadingBuffer.put` refuses a ``seq`` that is not
  above the sensor's last one.
* **Bounded.** The stored payload never exceeds ``max_bytes``; when a put would
  pass it, the *oldest* entries are dropped (even if in flight) and counted in
  :meth:`~ReadingBuffer.dropped_total`, which is stored in the database too and
  so survives restarts. :func:`default_max_bytes` sizes the queue for a day and a
  half offline.
* **Nothing is deleted behind your back.** A file that is not a readable SQLite
  database, or is another program's database, raises :class:`QueueStorageError`
  naming the path; the file is left alone for someone to look at.

One process owns the queue at a time: the database is opened in SQLite's
exclusive locking mode, so a second agent started on the same file fails at
open with :class:`QueueStorageError` instead of both handing out the same
entries.

>>> import tempfile, pathlib
>>> from datetime import datetime, timezone
>>> from telemetry import Kind, Reading
>>> folder = tempfile.mkdtemp()
>>> with ReadingBuffer(pathlib.Path(folder) / "queue.db", max_bytes=1_000_000) as queue:
...     stored = queue.put_sample("aq-01", lambda seq: Reading(
...         sensor_id="aq-01", kind=Kind.POLLUTION, seq=seq,
...         ts=datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc), metrics={"pm2_5": 35.0}))
...     [(entry.sensor_id, entry.seq) for entry in queue.peek_batch(100, 65_536)]
[('aq-01', 0)]
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from edge_agents.errors import EdgeAgentError
from telemetry.codec import to_json
from telemetry.models import Reading

__all__ = [
    "DEFAULT_BYTES_PER_READING",
    "DEFAULT_OFFLINE_SECONDS",
    "Entry",
    "PutResult",
    "QueueStorageError",
    "ReadingBuffer",
    "SequenceError",
    "Synchronous",
    "default_max_bytes",
]

DEFAULT_OFFLINE_SECONDS = 86_400 * 1.5
"""How long :func:`default_max_bytes` keeps readings when the link is down: 36 hours.

A day and a half covers a whole day of outage plus the time it takes someone to
notice and the backlog to drain.
"""

DEFAULT_BYTES_PER_READING = 320
"""Stored payload bytes assumed per reading by :func:`default_max_bytes`.

A pollution reading with six metrics encodes to about 160 bytes of JSON; the
margin covers longer sensor ids, more metrics, interval and quality fields. On
disk SQLite adds a few tens of bytes per row (row id, sensor id, seq, event time,
b-tree overhead): ``benchmarks/buffer.py`` measured about 1.25 times the payload
(190-200 bytes for a 157-byte reading), so budget the disk at ``1.3 * max_bytes``.
"""

_APPLICATION_ID = 0x55534251  # "USBQ": urbansense buffer queue, in the database header
_SCHEMA_VERSION = 1
_MAX_SQL_VARIABLES = 500  # below SQLite's historical 999 bound on ``?`` parameters
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OPENING, _READING, _WRITING, _COMMITTING = "open", "read", "write", "commit"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts_us INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sequences (
    sensor_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO counters (name, value) VALUES ('dropped_total', 0), ('opens', 0);
"""
# AUTOINCREMENT matters: without it SQLite reuses the largest id once that row is
# deleted, and an entry put after the queue drained could get an id at or below the
# in-flight high-water mark and never be handed out.


class QueueStorageError(EdgeAgentError):
    """The queue's database cannot be opened, read or written.

    Raised at open for a file that is not an SQLite database, is corrupt, is
    another program's database, was written by a newer agent, or is locked by
    another process; and later for I/O errors such as a full disk. The message
    names the path. The file is never deleted or rewritten to "repair" it.

    Attributes:
        path: the database file.
    """

    def __init__(self, message: str, *, path: Path) -> None:
        self.path = path
        super().__init__(message)


class SequenceError(EdgeAgentError, ValueError):
    """A reading's ``seq`` is not above the last one stored for its sensor."""


class Synchronous(StrEnum):
    """SQLite's ``PRAGMA synchronous`` settings that make sense for the queue."""

    FULL = "FULL"
    """fsync the WAL at every commit: survives process crashes and power loss."""
    NORMAL = "NORMAL"
    """fsync at checkpoints only: survives process crashes; a power cut can lose the
    last commits."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One queued reading, as :meth:`ReadingBuffer.peek_batch` hands it out.

    Attributes:
        id: the entry's id in the queue, increasing in put order; pass it to
            :meth:`ReadingBuffer.ack`.
        sensor_id: the reading's sensor.
        seq: the reading's sequence number.
        payload: the reading as compact UTF-8 JSON (defaults left out), ready to
            be spliced into a batch envelope.
    """

    id: int
    sensor_id: str
    seq: int
    payload: bytes

    def reading(self) -> Reading:
        """Decode the payload back into a :class:`~telemetry.models.Reading`."""
        return Reading.model_validate_json(self.payload)


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a put stored.

    Attributes:
        readings: the readings stored, in order (with their ``seq``).
        entry_ids: their entry ids, in the same order.
        dropped: how many entries (old ones, or in a put larger than the whole
            queue, early ones of this put) were dropped to stay within
            ``max_bytes``.
    """

    readings: tuple[Reading, ...]
    entry_ids: tuple[int, ...]
    dropped: int

    @property
    def reading(self) -> Reading:
        """The first reading stored; the only one for :meth:`ReadingBuffer.put_sample`."""
        return self.readings[0]


def default_max_bytes(
    readings_per_second: float,
    seconds: float = DEFAULT_OFFLINE_SECONDS,
    bytes_per_reading: int = DEFAULT_BYTES_PER_READING,
) -> int:
    """Queue size that holds ``seconds`` of readings at the given rate.

    The default keeps 36 hours (:data:`DEFAULT_OFFLINE_SECONDS`) at
    :data:`DEFAULT_BYTES_PER_READING` bytes each, so a gateway rides out a whole
    day without a link. The result counts stored payload; the file on disk is
    larger by SQLite's per-row overhead.

    Args:
        readings_per_second: readings the gateway takes per second, all sensors
            together.
        seconds: how long an outage the queue must hold.
        bytes_per_reading: payload bytes per reading.

    Returns:
        The ``max_bytes`` to give :class:`ReadingBuffer`.

    Raises:
        ValueError: a rate, duration or size that is not positive.

    >>> default_max_bytes(10)  # ten readings a second for 36 hours
    414720000
    """
    if readings_per_second <= 0 or seconds <= 0 or bytes_per_reading <= 0:
        msg = (
            "readings_per_second, seconds and bytes_per_reading must be positive, got"
            f" {readings_per_second}, {seconds} and {bytes_per_reading}"
        )
        raise ValueError(msg)
    return int(readings_per_second * seconds * bytes_per_reading)


def _ts_us(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _MAX_SQL_VARIABLES):
        yield ids[start : start + _MAX_SQL_VARIABLES]


class ReadingBuffer:
    """A bounded, durable FIFO of readings waiting for the broker's acknowledgement.

    Put readings from any thread; a publisher thread takes batches with
    :meth:`peek_batch`, publishes them and calls :meth:`ack` with their ids when
    the broker acknowledged. Entries handed out and not yet acknowledged are *in
    flight*: :meth:`peek_batch` does not hand them out again until
    :meth:`rewind`, which the agent calls on reconnect (the broker may never have
    received them). The in-flight mark lives in memory: after a restart every
    stored entry is handed out again, which is the at-least-once contract.

    Threads share one SQLite connection guarded by a lock. SQLite lets one writer
    in at a time anyway, so a connection per thread would add ``SQLITE_BUSY``
    retries without adding throughput; the in-memory in-flight mark, depth and
    byte counters need the same lock to stay consistent with the database; and
    every operation holds it for well under a millisecond plus, for a put with
    ``synchronous=FULL``, one fsync. Threads that take many readings at once
    should use :meth:`put_many`, which pays one fsync for all of them.

    Args:
        path: the database file; created if missing (its folder must exist).
        max_bytes: most payload bytes stored; see :func:`default_max_bytes`.
        synchronous: ``FULL`` (default, power-loss safe) or ``NORMAL`` (crash
            safe only); see the module docstring.
        first_seq: the ``seq`` given to a sensor the queue has never seen.
        busy_timeout_s: how long to wait at open for another process holding
            the file before giving up.

    Raises:
        ValueError: ``max_bytes`` is not positive.
        QueueStorageError: the file cannot be opened as a queue.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        max_bytes: int,
        synchronous: Synchronous | Literal["FULL", "NORMAL"] = Synchronous.FULL,
        first_seq: int = 0,
        busy_timeout_s: float = 1.0,
    ) -> None:
        if max_bytes <= 0:
            msg = f"max_bytes must be positive, got {max_bytes}"
            raise ValueError(msg)
        if first_seq < 0:
            msg = f"first_seq must not be negative, got {first_seq}"
            raise ValueError(msg)
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.synchronous = Synchronous(synchronous)
        self.first_seq = first_seq
        self._lock = threading.RLock()
        self._in_flight_mark = 0  # highest entry id handed out since open or rewind
        self._depth = 0
        self._size = 0
        self._dropped_total = 0
        self._last_seq: dict[str, int] = {}
        self._waiting_lock = threading.Lock()
        self._waiting: list[_Waiting] = []  # samples put while the queue was busy
        self._conn = self._open(busy_timeout_s)

    # ------------------------------------------------------------------ open / close

    def _open(self, busy_timeout_s: float) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise self._error(_OPENING, error) from error
        try:
            self._prepare(conn)
        except QueueStorageError:
            conn.close()
            raise
        except sqlite3.Error as error:
            conn.close()
            raise self._error(_OPENING, error) from error
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        # Exclusive locking before WAL: no shared-memory index, and the lock taken at the
        # first write below is kept until close, so one process owns the queue.
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and app_id != _APPLICATION_ID:
            msg = (
                f"{self.path} is an SQLite database but not an urbansense reading buffer"
                f" (application_id {app_id:#x}); refusing to touch it"
            )
            raise QueueStorageError(msg, path=self.path)
        if version > _SCHEMA_VERSION:
            msg = (
                f"{self.path} has queue schema version {version}, newer than the"
                f" {_SCHEMA_VERSION} this agent knows; refusing to touch it"
            )
            raise QueueStorageError(msg, path=self.path)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            msg = f"{self.path}: cannot switch to WAL journal mode (got {mode!r})"
            raise QueueStorageError(msg, path=self.path)
        conn.execute(f"PRAGMA synchronous={self.synchronous.value}")
        # Truncate the WAL after checkpoints instead of keeping it at its largest size.
        conn.execute("PRAGMA journal_size_limit=4194304")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):  # executescript() would COMMIT first
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'opens'")
            self._depth, self._size = conn.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM entries"
            ).fetchone()
            self._dropped_total = conn.execute(
                "SELECT value FROM counters WHERE name = 'dropped_total'"
            ).fetchone()[0]
            self._last_seq = dict(conn.execute("SELECT sensor_id, last_seq FROM sequences"))
            # max_bytes may have been lowered since the last run.
            dropped = self._trim(conn)
            conn.execute("COMMIT")
        except BaseException:
            _Transaction.rollback(conn)
            raise
        self._depth -= dropped
        self._dropped_total += dropped

    def close(self) -> None:
        """Close the database; the queue's contents stay on disk. Idempotent."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ put

    def next_seq(self, sensor_id: str) -> int:
        """The ``seq`` the next reading of ``sensor_id`` must carry; nothing is reserved.

        For a sensor sampled by a single thread, ``put(build(next_seq(s)))`` is
        safe; :meth:`put_sample` does the same in one step under the lock.
        """
        with self._lock:
            last = self._last_seq.get(sensor_id)
            return self.first_seq if last is None else last + 1

    def put_sample(self, sensor_id: str, build: Callable[[int], Reading]) -> PutResult:
        """Give ``sensor_id`` its next ``seq``, build the reading with it and store it.

        Numbering and storing happen under the queue's lock and in one
        transaction, so no two readings of a sensor get the same ``seq``, even
        from several threads, and a crash cannot skip or repeat one.

        **Group commit.** Samplers whose windows close at the same moment (they
        are aligned to the clock) put at the same moment. A thread that finds
        the queue busy leaves its sample waiting; the next thread to get the
        lock stores every waiting sample in its own transaction, so fifty
        sensors pay one fsync instead of fifty. Every call still returns only
        once its own reading is durable.

        Args:
            sensor_id: the sensor sampled.
            build: makes the reading from its ``seq``. Called with the lock held,
                possibly by another thread: it should only build the model from
                a sample already taken.

        Returns:
            The reading stored (``result.reading``), its entry id and how many
            old entries were dropped to make room.

        Raises:
            ValueError: ``build`` raised it (a pydantic ``ValidationError``, say),
                or returned a reading of another sensor or seq.
            QueueStorageError: the database could not be written.
        """
        waiting = _Waiting(sensor_id, build)
        with self._waiting_lock:
            self._waiting.append(waiting)
        with self._lock:
            if not waiting.done:
                with self._waiting_lock:
                    group, self._waiting = self._waiting, []
                self._store_group(group)
        return waiting.outcome()

    def _store_group(self, group: list[_Waiting]) -> None:
        """Number, build and store waiting samples in one transaction; with the lock held."""
        readings: list[Reading] = []
        stored: list[_Waiting] = []
        next_seq: dict[str, int] = {}
        for waiting in group:
            seq = next_seq.get(waiting.sensor_id, self.next_seq(waiting.sensor_id))
            try:
                reading = waiting.build(seq)
                if reading.sensor_id != waiting.sensor_id or reading.seq != seq:
                    msg = (
                        f"build({seq}) for sensor {waiting.sensor_id!r} returned sensor"
                        f" {reading.sensor_id!r} seq {reading.seq}"
                    )
                    raise ValueError(msg)
            except ValueError as error:
                waiting.finish(error=error)
                continue
            next_seq[waiting.sensor_id] = seq + 1
            readings.append(reading)
            stored.append(waiting)
        try:
            result = self.put_many(readings)
        except (QueueStorageError, SequenceError) as error:
            for waiting in stored:
                waiting.finish(error=error)
            return
        for index, waiting in enumerate(stored):
            waiting.finish(
                PutResult(
                    readings=(result.readings[index],),
                    entry_ids=(result.entry_ids[index],),
                    dropped=result.dropped if index == 0 else 0,
                )
            )

    def put(self, reading: Reading) -> PutResult:
        """Store one reading durably; see :meth:`put_many`."""
        return self.put_many([reading])

    def put_many(self, readings: Iterable[Reading]) -> PutResult:
        """Store readings durably, in order, in one transaction.

        Each reading's ``seq`` must be above the last one stored for its sensor
        (numbers may be skipped, never repeated); it becomes the sensor's last
        ``seq``. When the queue would exceed ``max_bytes``, the oldest entries
        are dropped first and counted.

        Args:
            readings: the readings, oldest first.

        Returns:
            What was stored and how many entries were dropped.

        Raises:
            SequenceError: a reading's ``seq`` is not above its sensor's last one;
                nothing is stored.
            QueueStorageError: the database could not be written; nothing is
                stored.
        """
        batch = tuple(readings)
        if not batch:
            return PutResult(readings=(), entry_ids=(), dropped=0)
        rows = [(r.sensor_id, r.seq, _ts_us(r.ts), to_json(r)) for r in batch]
        with self._lock:
            pending: dict[str, int] = {}
            for sensor_id, seq, _, _ in rows:
                last = pending.get(sensor_id, self._last_seq.get(sensor_id))
                if last is not None and seq <= last:
                    msg = (
                        f"sensor {sensor_id!r} seq {seq} is not above its last stored"
                        f" seq {last}; sequence numbers must never repeat"
                    )
                    raise SequenceError(msg)
                pending[sensor_id] = seq
            added = sum(len(row[3]) for row in rows)
            try:
                with self._transaction():
                    self._conn.executemany(
                        "INSERT INTO entries (sensor_id, seq, ts_us, payload) VALUES (?, ?, ?, ?)",
                        rows,
                    )
                    # AUTOINCREMENT ids of one statement in one write transaction are
                    # consecutive: each is one above the largest ever used.
                    last = self._conn.execute("SELECT last_insert_rowid()").fetchone()[0]
                    ids = tuple(range(last - len(rows) + 1, last + 1))
                    self._conn.executemany(
                        "INSERT INTO sequences (sensor_id, last_seq) VALUES (?, ?)"
                        " ON CONFLICT (sensor_id) DO UPDATE SET last_seq = excluded.last_seq",
                        pending.items(),
                    )
                    self._depth += len(rows)
                    self._size += added
                    dropped = self._trim(self._conn)
            except BaseException:
                self._depth, self._size = self._recount()
                raise
            self._last_seq.update(pending)
            self._depth -= dropped
            self._dropped_total += dropped
            return PutResult(readings=batch, entry_ids=ids, dropped=dropped)

    def _trim(self, conn: sqlite3.Connection) -> int:
        """Drop the oldest entries until the payload fits ``max_bytes``; in a transaction.

        Updates ``_size`` and the stored ``dropped_total``; the caller updates
        ``_depth`` and ``_dropped_total`` once the transaction committed.
        """
        excess = self._size - self.max_bytes
        if excess <= 0:
            return 0
        freed = count = 0
        last_id = 0
        for entry_id, size in conn.execute("SELECT id, length(payload) FROM entries ORDER BY id"):
            freed += size
            count += 1
            last_id = entry_id
            if freed >= excess:
                break
        conn.execute("DELETE FROM entries WHERE id <= ?", (last_id,))
        conn.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped_total'", (count,))
        self._size -= freed
        return count

    # ------------------------------------------------------------------ take / ack

    def peek_batch(self, max_readings: int, max_bytes: int) -> list[Entry]:
        """Hand out the oldest entries not in flight, without removing them.

        The entries become in flight: later calls hand out the ones after them,
        until :meth:`rewind`. At least one entry is handed out when any is
        waiting, even if it alone is larger than ``max_bytes``.

        Args:
            max_readings: most entries to return.
            max_bytes: most payload bytes to return, summed over the entries.

        Returns:
            The entries, oldest first; empty when nothing waits.

        Raises:
            QueueStorageError: the database could not be read.
        """
        if max_readings <= 0:
            return []
        entries: list[Entry] = []
        total = 0
        with self._lock:
            try:
                cursor = self._conn.execute(
                    "SELECT id, sensor_id, seq, payload FROM entries WHERE id > ?"
                    " ORDER BY id LIMIT ?",
                    (self._in_flight_mark, max_readings),
                )
                for entry_id, sensor_id, seq, payload in cursor:
                    if entries and total + len(payload) > max_bytes:
                        break
                    entries.append(Entry(entry_id, sensor_id, seq, bytes(payload)))
                    total += len(payload)
                cursor.close()
            except sqlite3.Error as error:
                raise self._error(_READING, error) from error
            if entries:
                self._in_flight_mark = entries[-1].id
        return entries

    def ack(self, entry_ids: Iterable[int]) -> int:
        """Delete entries the broker acknowledged.

        Ids that are not in the queue (acknowledged before, dropped, or never
        existing) are ignored.

        Args:
            entry_ids: the acknowledged entries' ids.

        Returns:
            How many entries were deleted.

        Raises:
            QueueStorageError: the database could not be written.
        """
        ids = sorted(set(entry_ids))
        if not ids:
            return 0
        with self._lock:
            count = size = 0
            with self._transaction():
                for chunk in _chunks(ids):
                    marks = ",".join("?" * len(chunk))
                    n, s = self._conn.execute(
                        "SELECT count(*), coalesce(sum(length(payload)), 0) FROM entries"  # noqa: S608
                        f" WHERE id IN ({marks})",
                        chunk,
                    ).fetchone()
                    self._conn.execute(f"DELETE FROM entries WHERE id IN ({marks})", chunk)  # noqa: S608
                    count += n
                    size += s
            self._depth -= count
            self._size -= size
            return count

    def rewind(self) -> None:
        """Forget what is in flight: the next peeks start again from the oldest entry.

        Call it after reconnecting, when the unacknowledged messages may never
        have reached the broker.
        """
        with self._lock:
            self._in_flight_mark = 0

    # ------------------------------------------------------------------ stats

    def depth(self) -> int:
        """Entries in the queue, in flight or not."""
        with self._lock:
            return self._depth

    def size_bytes(self) -> int:
        """Payload bytes in the queue (the file on disk is larger)."""
        with self._lock:
            return self._size

    def dropped_total(self) -> int:
        """Entries dropped because the queue was full, over the queue's whole life."""
        with self._lock:
            return self._dropped_total

    def oldest_ts(self) -> datetime | None:
        """Event time of the entry at the head of the queue (UTC), or ``None`` when empty.

        That is the oldest reading put, whose event time is normally the oldest.
        """
        with self._lock:
            try:
                row = self._conn.execute("SELECT ts_us FROM entries ORDER BY id LIMIT 1").fetchone()
            except sqlite3.Error as error:
                raise self._error(_READING, error) from error
        return None if row is None else _EPOCH + timedelta(microseconds=row[0])

    # ------------------------------------------------------------------ helpers

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _recount(self) -> tuple[int, int]:
        try:
            depth, size = self._conn.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM entries"
            ).fetchone()
        except sqlite3.Error:
            return self._depth, self._size
        return int(depth), int(size)

    def _error(self, action: str, error: sqlite3.Error) -> QueueStorageError:
        msg = f"reading buffer {self.path}: cannot {action}: {error}"
        return QueueStorageError(msg, path=self.path)


class _Waiting:
    """A sample waiting in :meth:`ReadingBuffer.put_sample` to be stored by a group commit."""

    __slots__ = ("_error", "_result", "build", "done", "sensor_id")

    def __init__(self, sensor_id: str, build: Callable[[int], Reading]) -> None:
        self.sensor_id = sensor_id
        self.build = build
        self.done = False
        self._result: PutResult | None = None
        self._error: Exception | None = None

    def finish(self, result: PutResult | None = None, *, error: Exception | None = None) -> None:
        self._result, self._error, self.done = result, error, True

    def outcome(self) -> PutResult:
        if self._error is not None:
            raise self._error
        assert self._result is not None  # noqa: S101 - finish() always set one of the two
        return self._result


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on error, SQLite errors wrapped."""

    def __init__(self, buffer: ReadingBuffer) -> None:
        self._buffer = buffer

    def __enter__(self) -> None:
        try:
            self._buffer._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise self._buffer._error(_WRITING, error) from error

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        conn = self._buffer._conn
        if exc is None:
            try:
                conn.execute("COMMIT")
                return
            except sqlite3.Error as error:
                self.rollback(conn)
                raise self._buffer._error(_COMMITTING, error) from error
        self.rollback(conn)
        if isinstance(exc, sqlite3.Error):
            raise self._buffer._error(_WRITING, exc) from exc

    @staticmethod
    def rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

"""The line-protocol file sink: points appended to files that ``influx write`` loads later.

Where no time-series database runs (a laptop, a demo, a gateway cut off for a
while), :class:`LineFileSink` keeps the stream's points as InfluxDB line protocol,
one point per line, in files of a directory: exactly the lines
:class:`~stream.sinks.InfluxSink` would have posted. Load them later with::

    influx write --bucket urbansense --precision ms --file urbansense-...-001.ms.lp

(InfluxDB 2/3; for 1.x, ``influx -import`` after a ``# DML`` header, or post each
file to ``/write?db=urbansense&precision=ms``). The precision is part of every
file's name.

Files are named ``<prefix>-<started, UTC>-p<pid>-<nnn>.<precision>.lp``: each
process writes its own, so several workers can share a directory, and a file is
closed and the next one begun once it holds ``max_file_bytes``.

What happens to a batch: the lines are appended, flushed and fsynced in a thread
(the event loop never waits on the disk), then :meth:`LineFileSink.write` returns.
A line holding a line break cannot be one line of the file: it goes to the
``dead_letter`` callback (or the log) with the reason, and the others are written.
A full disk or an I/O error raises :class:`~stream.sinks.SinkError` with
``retryable=True`` (the caller keeps its input and writes it again later); any other
OS error (a directory that is not writable, say) is a configuration error,
``retryable=False``.

**Replays are safe**, as with the database: a batch written again after a crash
appends the same lines again, and loading them overwrites each point with itself
(a point is identified by measurement, tag set and timestamp), so the database
ends up as one write would have left it.

>>> sink = LineFileSink("/var/lib/urbansense/lines", precision=Precision.MS)
>>> sink
LineFileSink(directory='/var/lib/urbansense/lines', precision='ms', max_file_bytes=67108864)
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from stream.sinks.influx import DeadLetter, SinkStats, WriteResult
from stream.sinks.lineprotocol import Precision, SinkConfigError, SinkError

__all__ = ["LineFileSink"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
"""A file is closed and the next begun once it holds this many bytes."""

_RETRYABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR})


class LineFileSink:
    """Appends line protocol to rotating files in a directory (see the module docstring).

    Args:
        directory: where the files go; created by :meth:`connect` if missing.
        precision: the unit of the lines' timestamps (only named in the file names:
            the lines are written as given).
        prefix: the start of every file name.
        max_file_bytes: the size at which a file is closed and the next begun.
        dead_letter: receives a line that cannot be written and the reason.

    Raises:
        SinkConfigError: an empty prefix, a prefix with a path separator, or a
            ``max_file_bytes`` below 1.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        precision: Precision = Precision.MS,
        prefix: str = "urbansense",
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        dead_letter: DeadLetter | None = None,
    ) -> None:
        if not prefix or os.sep in prefix or (os.altsep and os.altsep in prefix):
            msg = f"prefix: {prefix!r} must be a non-empty file name part"
            raise SinkConfigError(msg)
        if max_file_bytes < 1:
            msg = f"max_file_bytes: {max_file_bytes} must be at least 1"
            raise SinkConfigError(msg)
        self._directory = Path(directory)
        self._precision = Precision(precision)
        self._prefix = prefix
        self._max_file_bytes = max_file_bytes
        self._dead_letter = dead_letter
        self._stats = SinkStats()
        self._lock = asyncio.Lock()
        self._file: IO[bytes] | None = None
        self._size = 0
        self._number = 0
        self._started = ""
        self._files: list[Path] = []
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(directory={str(self._directory)!r}, "
            f"precision={self._precision.value!r}, max_file_bytes={self._max_file_bytes})"
        )

    @property
    def stats(self) -> SinkStats:
        """What the sink has done since it was built (``requests`` counts file writes)."""
        return self._stats

    @property
    def directory(self) -> Path:
        """Where the files go."""
        return self._directory

    @property
    def files(self) -> list[Path]:
        """The files this sink has begun, oldest first."""
        return list(self._files)

    async def connect(self) -> None:
        """Create the directory and begin a file; nothing happens while connected.

        Raises:
            SinkError: the directory or the file cannot be made (retryable only for a
                full disk or an I/O error).
        """
        async with self._lock:
            if self._closed:
                self._closed = False
            if self._file is None:
                await asyncio.to_thread(self._open_next)

    async def write(self, lines: Iterable[str]) -> WriteResult:
        """Append the lines, then flush and fsync the file.

        Returns:
            How many lines were written and how many went to the dead-letter callback.

        Raises:
            SinkError: the sink is closed (not retryable) or the disk failed (see the
                module docstring).
        """
        good: list[str] = []
        bad: list[str] = []
        for line in lines:
            (bad if "\n" in line or "\r" in line else good).append(line)
        async with self._lock:
            if self._closed:
                msg = "the line-file sink is closed"
                raise SinkError(msg, retryable=False)
            if good:
                await asyncio.to_thread(self._append, "".join(f"{line}\n" for line in good))
                self._stats.points_written += len(good)
                self._stats.batches += 1
        for line in bad:
            await self._refuse(line, "a line break inside a point: not one line of a file")
        return WriteResult(len(good), len(bad))

    async def close(self) -> None:
        """Close the current file. Always safe: before connect, twice, after a failure."""
        async with self._lock:
            self._closed = True
            file, self._file = self._file, None
            if file is not None:
                await asyncio.to_thread(file.close)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------ in a thread

    def _open_next(self) -> IO[bytes]:
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            if not self._started:
                self._started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            self._number += 1
            name = (
                f"{self._prefix}-{self._started}-p{os.getpid()}-{self._number:03d}"
                f".{self._precision.value}.lp"
            )
            path = self._directory / name
            file = path.open("ab")
            self._size = file.tell()
        except OSError as exc:
            raise self._error(exc, f"cannot begin a file in {self._directory}") from exc
        self._file = file
        self._files.append(path)
        return file

    def _append(self, text: str) -> None:
        file = self._file
        if file is None or self._size >= self._max_file_bytes:
            if file is not None:
                file.close()
                self._file = None
            file = self._open_next()
        data = text.encode("utf-8")
        self._stats.requests += 1
        try:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        except OSError as exc:
            raise self._error(exc, f"cannot write {file.name}") from exc
        self._size += len(data)

    def _error(self, exc: OSError, what: str) -> SinkError:
        message = f"{what}: {exc.strerror or exc}"
        self._stats.last_error = message
        if exc.errno in _RETRYABLE_ERRNOS:
            return SinkError(message, retryable=True)
        return SinkConfigError(message)

    async def _refuse(self, line: str, reason: str) -> None:
        self._stats.dead_lettered += 1
        if self._dead_letter is None:
            logger.warning("line not written: %s: %.200r", reason, line)
            return
        outcome = self._dead_letter(line, reason)
        if inspect.isawaitable(outcome):
            await outcome

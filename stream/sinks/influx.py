"""The InfluxDB sink: batched, asynchronous writes of line protocol over HTTP.

:class:`InfluxSink` posts lines to InfluxDB's v2 write API (``/api/v2/write``:
InfluxDB 2 and 3, VictoriaMetrics) or to the v1 one (``/write`` with ``db`` and
``rp``: InfluxDB 1.x, and the compatibility endpoint of 2 and 3). It speaks HTTP
through aiohttp itself rather than through influxdb-client's async API: that API
serves the v2 endpoint only, and hands back connection failures as bare aiohttp
exceptions anyway, so one small HTTP layer covers both endpoints and sees every
status, body and ``Retry-After`` header directly.

What happens to a batch:

* **2xx**: written.
* **5xx, 408, 429, a timeout or a connection error**: retried with exponential
  backoff and full jitter, or after the server's ``Retry-After`` (seconds or an
  HTTP date), until ``max_retry_time`` has passed since the first failure; then
  :class:`~stream.sinks.SinkError` with ``retryable=True``, and the caller keeps
  its input (does not commit its Kafka offset) and writes it again later.
* **400, 406, 422** (a bad point: malformed, a field type conflict, outside the
  retention period): the batch is split to isolate the bad lines, which go to the
  ``dead_letter`` callback with the server's message; the other lines are
  written. A server's hint of the bad line number (InfluxDB 2's ``line``,
  InfluxDB 3's ``line_number``) is tried first, then bisection. The work is
  bounded by ``max_split_requests`` per batch; lines still mixed when it is spent
  are dead-lettered together, the reason saying so.
* **413** (too large): the batch is split in halves until it fits.
* **401, 403, 404 and any other 4xx** (bad token, missing bucket or database, an
  endpoint that does not exist): configuration errors, raised at once as
  ``SinkError(retryable=False)`` with the server's message.

**Replays are safe.** A point is identified by measurement, tag set and
timestamp; writing it again overwrites it with the same values and never
doubles it. So a batch retried after a crash, a lost answer or a partial write
(InfluxDB 1.x and 3 keep the good lines of a rejected batch, InfluxDB 2 keeps
none) leaves the database as a single successful write would. VictoriaMetrics
keeps every sample it is sent, duplicates included, unless it runs with
``-dedup.minScrapeInterval`` (``1ms`` is enough); give it that flag in production.

>>> sink = InfluxSink("http://127.0.0.1:8428", bucket="urbansense", batch_size=5_000)
>>> sink
InfluxSink(url='http://127.0.0.1:8428', api='v2', bucket='urbansense',
           precision='ns', batch_size=5000)
>>> sink.stats
SinkStats(points_written=0, batches=0, requests=0, retries=0, dead_lettered=0, last_error=None)
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum, StrEnum
from types import TracebackType
from typing import Any, NamedTuple, Self

import aiohttp
from yarl import URL

from stream.sinks.lineprotocol import Precision, SinkConfigError, SinkError

__all__ = [
    "DeadLetter",
    "InfluxSink",
    "SinkStats",
    "WriteApi",
    "WriteResult",
    "error_message",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

DeadLetter = Callable[[str, str], Awaitable[None] | None]
"""Receives a line the server refused and the reason (the server's message)."""

MAX_ERROR_BODY = 64 * 1024
"""How much of an error answer's body is read, in bytes."""

_CONTENT_TYPE = {"Content-Type": "text/plain; charset=utf-8"}


class WriteApi(StrEnum):
    """Which write endpoint to use."""

    V2 = "v2"
    """``POST /api/v2/write?bucket=&org=&precision=``: InfluxDB 2 and 3, VictoriaMetrics."""
    V1 = "v1"
    """``POST /write?db=&rp=&precision=``: InfluxDB 1.x (and the 1.x compatibility API)."""


@dataclass
class SinkStats:
    """What a sink has done since it was built.

    Attributes:
        points_written: Lines the server accepted.
        batches: Write requests the server accepted.
        requests: Write requests sent, counting retries and split batches.
        retries: Requests sent again after a retryable failure.
        dead_lettered: Lines given to the dead-letter callback.
        last_error: The last failure seen, or None.
    """

    points_written: int = 0
    batches: int = 0
    requests: int = 0
    retries: int = 0
    dead_lettered: int = 0
    last_error: str | None = None


class WriteResult(NamedTuple):
    """What one :meth:`InfluxSink.write` call did.

    Attributes:
        written: Lines the server accepted.
        dead_lettered: Lines given to the dead-letter callback.
    """

    written: int
    dead_lettered: int


# ------------------------------------------------------------------- answers


class _Verdict(Enum):
    OK = "ok"
    RETRY = "retry"
    BAD_DATA = "bad data"
    TOO_LARGE = "too large"
    CONFIG = "configuration"


def _verdict(status: int) -> _Verdict:
    if 200 <= status < 300:
        return _Verdict.OK
    if status in (408, 429) or status >= 500:
        return _Verdict.RETRY
    if status in (400, 406, 422):
        return _Verdict.BAD_DATA
    if status == 413:
        return _Verdict.TOO_LARGE
    return _Verdict.CONFIG


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Return the seconds a ``Retry-After`` header asks to wait, or None.

    Args:
        value: The header: delay-seconds (``"120"``, decimals accepted) or an HTTP
            date (``"Wed, 21 Oct 2026 07:28:00 GMT"``).
        now: The current time, timezone-aware, for an HTTP date.

    Returns:
        The delay in seconds (0 for a date in the past), or None when the header
        is absent or unreadable.

    >>> parse_retry_after("1", datetime(2026, 11, 22, tzinfo=UTC))
    1.0
    >>> parse_retry_after("Sun, 22 Nov 2026 00:00:30 GMT", datetime(2026, 11, 22, tzinfo=UTC))
    30.0
    >>> parse_retry_after("soon", datetime(2026, 11, 22, tzinfo=UTC)) is None
    True
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, as HTTP dates always are
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    return max(0.0, seconds) if math.isfinite(seconds) else None


def error_message(body: str, reason: str = "") -> tuple[str, list[int]]:
    """Return the message of an error answer and the 1-based bad line numbers it names.

    Understands InfluxDB 2's ``{"code", "message", "line"}``, InfluxDB 1.x's and
    3's ``{"error", "data": [{"line_number", "error_message"}]}``, and plain text
    (VictoriaMetrics).

    Args:
        body: The answer's body.
        reason: The HTTP reason phrase, used when the body is empty.

    Returns:
        The message and the line numbers (often none).

    >>> error_message('{"code": "invalid", "message": "unable to parse", "line": 3}')
    ('unable to parse', [3])
    >>> error_message('{"error": "partial write: field type conflict dropped=1"}')
    ('partial write: field type conflict dropped=1', [])
    >>> error_message("", "Bad Request")
    ('Bad Request', [])
    """
    text = body.strip()
    if not text:
        return reason or "(no message)", []
    try:
        answer: Any = json.loads(text)
    except ValueError:
        return text[:1000], []
    if not isinstance(answer, dict):
        return text[:1000], []
    message = answer.get("message") or answer.get("error") or text[:1000]
    lines: list[int] = []
    if isinstance(answer.get("line"), int):
        lines.append(answer["line"])
    data = answer.get("data")
    if isinstance(data, list):
        details = []
        for item in data:
            if isinstance(item, dict):
                if isinstance(item.get("line_number"), int):
                    lines.append(item["line_number"])
                if item.get("error_message"):
                    details.append(str(item["error_message"]))
        if details:
            message = f"{message}: {'; '.join(details[:5])}"
    return str(message), lines


@dataclass
class _Answer:
    status: int
    message: str
    lines: list[int]
    retry_after: str | None


@dataclass
class _Call:
    """The counts of one write() call."""

    written: int = 0
    dead_lettered: int = 0


@dataclass
class _Batch:
    """What one batch may still spend: split requests, and retrying until a deadline."""

    budget: int
    deadline: float | None = None


# ---------------------------------------------------------------------- sink


class InfluxSink:
    """Writes line-protocol lines to InfluxDB in batches; see the module docstring.

    Built without I/O: the arguments are checked here, :meth:`connect` opens the
    HTTP session and checks that the server answers.

    Args:
        url: The server's base URL, e.g. ``http://influxdb:8086``.
        api: The write endpoint.
        bucket: The bucket (v2 API; required there). VictoriaMetrics ignores it.
        org: The organisation (v2 API; InfluxDB 2 needs it unless the token implies it).
        database: The database (v1 API; required there).
        retention_policy: The retention policy (v1 API), or None for the default.
        token: Sent as ``Authorization: Token ...`` when given.
        username: With ``password``, HTTP basic authentication (InfluxDB 1.x).
        password: See ``username``.
        precision: The unit of the lines' timestamps; must match the encoder's.
        batch_size: The most lines sent in one request.
        max_in_flight: How many batches of one :meth:`write` are sent at once.
        timeout: Seconds one request may take, connection included.
        max_retry_time: Seconds of retrying (from a batch's first failure) after
            which a retryable failure is raised; 0 never retries.
        initial_backoff: The cap of the first backoff, in seconds; it doubles with
            every retry up to ``max_backoff``, and the wait is drawn uniformly
            below the cap (full jitter).
        max_backoff: The largest backoff cap, in seconds.
        max_split_requests: The most extra requests spent isolating the bad lines
            of one batch; lines not yet told apart when it is spent are
            dead-lettered together, the reason saying so.
        dead_letter: Receives each refused line and the reason; may be a coroutine
            function. When None, refused lines are logged as warnings.
        seed: Seeds the jitter, for reproducible tests.
        sleep: Waits a number of seconds (injectable for tests).
        clock: Monotonic seconds (injectable for tests).

    Raises:
        SinkConfigError: If an argument is out of range or the endpoint's
            required names are missing.
    """

    def __init__(
        self,
        url: str,
        *,
        api: WriteApi = WriteApi.V2,
        bucket: str | None = None,
        org: str | None = None,
        database: str | None = None,
        retention_policy: str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        precision: Precision = Precision.NS,
        batch_size: int = 5_000,
        max_in_flight: int = 1,
        timeout: float = 10.0,
        max_retry_time: float = 60.0,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_split_requests: int = 64,
        dead_letter: DeadLetter | None = None,
        seed: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url.rstrip("/")
        try:
            self.api = WriteApi(api)
            self.precision = Precision(precision)
        except ValueError as exc:
            msg = f"InfluxSink: {exc}"
            raise SinkConfigError(msg) from None
        self.bucket = bucket
        self.org = org
        self.database = database
        self.retention_policy = retention_policy
        self.token = token
        self.username = username
        self.password = password
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.max_retry_time = max_retry_time
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_split_requests = max_split_requests
        self.dead_letter = dead_letter
        self.seed = seed
        self.sleep = sleep
        self.clock = clock
        self._check()
        self._base = URL(self.url)
        self._write_url = self._endpoint()
        self._auth_headers: dict[str, str] = {}
        if token is not None:
            self._auth_headers["Authorization"] = f"Token {token}"
        elif username is not None and password is not None:
            basic = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            self._auth_headers["Authorization"] = f"Basic {basic}"
        self._rng = random.Random(seed)  # noqa: S311 -- jitter, not security
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._stats = SinkStats()

    def _check(self) -> None:
        problems = []
        try:
            base: URL | None = URL(self.url)
        except ValueError:
            base = None
        if base is None or base.scheme not in ("http", "https") or not base.host:
            problems.append(f"url {self.url!r}: must be an http:// or https:// URL with a host")
        for name, least in (("batch_size", 1), ("max_in_flight", 1), ("max_split_requests", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                problems.append(f"{name} {value!r}: must be an integer >= {least}")
        for name in ("timeout", "initial_backoff", "max_backoff"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                problems.append(f"{name} {value!r}: must be a finite number > 0")
        if not (
            isinstance(self.max_retry_time, int | float)
            and math.isfinite(self.max_retry_time)
            and self.max_retry_time >= 0
        ):
            problems.append(f"max_retry_time {self.max_retry_time!r}: must be a number >= 0")
        if not problems and self.max_backoff < self.initial_backoff:
            problems.append(
                f"max_backoff {self.max_backoff!r}: must be >= initial_backoff "
                f"{self.initial_backoff!r}"
            )
        if (self.username is None) != (self.password is None):
            problems.append("username and password: give both or neither")
        if self.token is not None and self.username is not None:
            problems.append("token and username: give one way of authenticating, not both")
        if self.api is WriteApi.V2:
            if not self.bucket:
                problems.append("bucket: required by the v2 write API")
            if self.database or self.retention_policy:
                problems.append("database and retention_policy: v1 only; use bucket with v2")
        else:
            if not self.database:
                problems.append("database: required by the v1 write API")
            if self.bucket or self.org:
                problems.append("bucket and org: v2 only; use database with v1")
        if problems:
            msg = "InfluxSink: " + "; ".join(problems)
            raise SinkConfigError(msg)

    def _endpoint(self) -> URL:
        """The write URL with its query: where to, and the timestamps' unit."""
        if self.api is WriteApi.V2:
            params = {"bucket": self.bucket or "", "precision": self.precision.value}
            if self.org:
                params["org"] = self.org
            return (self._base / "api/v2/write").with_query(params)
        params = {"db": self.database or "", "precision": self.precision.v1_name}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        return (self._base / "write").with_query(params)

    def __repr__(self) -> str:
        target = f"bucket={self.bucket!r}" if self.api is WriteApi.V2 else f"db={self.database!r}"
        return (
            f"InfluxSink(url={self.url!r}, api={self.api.value!r}, {target}, "
            f"precision={self.precision.value!r}, batch_size={self.batch_size})"
        )

    @property
    def stats(self) -> SinkStats:
        """A copy of the counters (see :class:`SinkStats`)."""
        return replace(self._stats)

    # --------------------------------------------------------------- lifecycle

    async def connect(self) -> None:
        """Open the HTTP session and check that the server answers ``/ping`` (or ``/health``).

        Calling it again while connected does nothing. On failure the session is
        closed again, so ``connect`` may simply be called once more.

        Raises:
            SinkError: ``retryable=True`` if the server is unreachable or answers
                5xx; ``retryable=False`` if it refuses the credentials, or after
                :meth:`close`.
        """
        if self._closed:
            msg = f"{self!r} is closed; build a new sink"
            raise SinkError(msg, retryable=False)
        if self._session is not None and not self._session.closed:
            return
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout), headers=self._auth_headers
        )
        try:
            await self._ping(self._session)
        except BaseException:
            await self._drop_session()
            raise

    async def _ping(self, session: aiohttp.ClientSession) -> None:
        for path in ("ping", "health"):
            url = self._base / path
            try:
                async with session.get(url) as response:
                    status = response.status
                    raw = await response.content.read(MAX_ERROR_BODY)
            except (aiohttp.ClientError, TimeoutError) as exc:
                msg = f"cannot reach {url}: {_describe(exc)}"
                self._stats.last_error = msg
                raise SinkError(msg, retryable=True) from exc
            text = raw.decode("utf-8", "replace")
            if 200 <= status < 300:
                return
            if status != 404:
                message, _ = error_message(text)
                msg = f"{url} answered HTTP {status}: {message}"
                self._stats.last_error = msg
                raise SinkError(msg, retryable=_verdict(status) is _Verdict.RETRY, status=status)
        msg = f"{self.url} has neither /ping nor /health: is it an InfluxDB-compatible server?"
        self._stats.last_error = msg
        raise SinkError(msg, retryable=False, status=404)

    async def close(self) -> None:
        """Close the HTTP session. Always safe: before connect, twice, after a failure.

        A :meth:`write` still running when the session closes fails with a
        retryable :class:`SinkError` (its input is not lost: the caller writes it
        again).
        """
        self._closed = True
        await self._drop_session()

    async def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ write

    async def write(self, lines: Iterable[str]) -> WriteResult:
        """Write lines of line protocol, ``batch_size`` lines per request.

        Returns once every line is written or dead-lettered. Lines are sent as
        they are (build them with :mod:`stream.sinks.lineprotocol`); a line that
        holds a newline is dead-lettered without being sent, and empty lines are
        skipped.

        Args:
            lines: The lines, without newlines; any iterable, consumed lazily.

        Returns:
            How many lines were written and dead-lettered by this call.

        Raises:
            SinkError: ``retryable=True`` when the server stayed unavailable for
                ``max_retry_time`` (some batches may be written: writing them all
                again is safe); ``retryable=False`` on a configuration error, or
                if the sink is not connected.
        """
        if self._session is None:
            state = "closed" if self._closed else "not connected: call connect() first"
            msg = f"{self!r} is {state}"
            raise SinkError(msg, retryable=False)
        call = _Call()
        batches = _chunks(lines, self.batch_size)
        if self.max_in_flight == 1:
            for batch in batches:
                await self._write_batch(batch, call)
        else:
            await self._write_concurrently(batches, call)
        return WriteResult(call.written, call.dead_lettered)

    async def _write_concurrently(self, batches: Iterator[list[str]], call: _Call) -> None:
        """Up to ``max_in_flight`` batches at once; the first failure stops new ones."""
        failures: list[BaseException] = []

        async def worker() -> None:
            for batch in batches:  # one shared iterator; next() never awaits
                if failures:
                    return
                try:
                    await self._write_batch(batch, call)
                except BaseException as exc:
                    failures.append(exc)
                    raise

        await asyncio.gather(*(worker() for _ in range(self.max_in_flight)), return_exceptions=True)
        if failures:
            raise failures[0]

    async def _write_batch(self, lines: list[str], call: _Call) -> None:
        body = "\n".join(lines)
        if (
            not body
            or body.count("\n") != len(lines) - 1  # a line holds a newline
            or "\n\n" in body  # an empty line
            or body[0] == "\n"
            or body[-1] == "\n"
            or "\r" in body
        ):
            lines = await self._clean(lines, call)
            if not lines:
                return
            body = "\n".join(lines)
        await self._write_lines(lines, _Batch(self.max_split_requests), call, body)

    async def _clean(self, lines: list[str], call: _Call) -> list[str]:
        clean = []
        for line in lines:
            if "\n" in line or "\r" in line:
                await self._dead_letter(line, "the line holds a newline", call)
            elif line:
                clean.append(line)
        return clean

    async def _write_lines(
        self, lines: list[str], batch: _Batch, call: _Call, body: str | None = None
    ) -> None:
        """Write ``lines``; isolate and dead-letter the bad ones if the server refuses.

        ``batch`` holds what the batch may still spend (shared by its parts);
        ``body`` is the lines already joined, when the caller has it.
        """
        answer = await self._send(lines, batch, body)
        if answer is None:
            call.written += len(lines)
            return
        if len(lines) == 1:
            reason = answer.message
            if answer.status == 413:
                reason = f"the line alone is too large for the server (HTTP 413): {reason}"
            await self._dead_letter(lines[0], reason, call)
            return
        if batch.budget <= 0:
            await self._not_told_apart(lines, answer, call)
            return
        suspects: list[int] = []
        if answer.status != 413:
            hinted = sorted({n - 1 for n in answer.lines if 1 <= n <= len(lines)})
            suspects = hinted[: batch.budget - 1]
        if suspects:
            # Try each hinted line alone (a wrong hint costs one request and
            # loses nothing), then the others together.
            hinted_set = set(suspects)
            parts = [[lines[i]] for i in suspects]
            parts.append([line for i, line in enumerate(lines) if i not in hinted_set])
        else:
            middle = len(lines) // 2
            parts = [lines[:middle], lines[middle:]]
        for part in parts:
            if not part:
                continue
            if batch.budget <= 0:
                await self._not_told_apart(part, answer, call)
                continue
            batch.budget -= 1
            await self._write_lines(part, batch, call)

    async def _not_told_apart(self, lines: list[str], answer: _Answer, call: _Call) -> None:
        """Dead-letter lines of a refused batch once the split budget is spent."""
        reason = (
            f"{answer.message} (HTTP {answer.status}; this line was one of {len(lines)} "
            "not told apart: the batch's split budget was spent)"
        )
        for line in lines:
            await self._dead_letter(line, reason, call)

    async def _dead_letter(self, line: str, reason: str, call: _Call) -> None:
        self._stats.dead_lettered += 1
        call.dead_lettered += 1
        if self.dead_letter is None:
            logger.warning("InfluxDB refused a line (%s): %s", reason, line[:200])
            return
        try:
            result = self.dead_letter(line, reason)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            msg = f"the dead-letter callback failed: {_describe(exc)}"
            self._stats.last_error = msg
            raise SinkError(msg, retryable=True) from exc

    # ------------------------------------------------------------------- HTTP

    async def _send(
        self, lines: list[str], batch: _Batch, text: str | None = None
    ) -> _Answer | None:
        """POST lines (a batch or a part of one), retrying while retrying can help.

        Returns:
            None when written, or the server's answer when it refused the data
            (bad data, too large).

        Raises:
            SinkError: On a configuration error, or when retrying ran out of time.
        """
        body = ("\n".join(lines) if text is None else text).encode()
        attempts = 0
        while True:
            session = self._session
            if session is None or session.closed:
                msg = f"{self!r} was closed during a write"
                raise SinkError(msg, retryable=True)
            self._stats.requests += 1
            attempts += 1
            cause: BaseException | None = None
            status: int | None = None
            retry_after: float | None = None
            try:
                answer = await self._post(session, body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if self._session is not session:
                    msg = f"{self!r} was closed during a write"
                    raise SinkError(msg, retryable=True) from exc
                cause = exc
                failure = f"cannot write to {self._write_url}: {_describe(exc)}"
            else:
                if answer is None:
                    self._stats.batches += 1
                    self._stats.points_written += len(lines)
                    return None
                status = answer.status
                failure = f"{self._write_url} answered HTTP {status}: {answer.message}"
                verdict = _verdict(status)
                if verdict is not _Verdict.RETRY:
                    self._stats.last_error = failure
                    if verdict is _Verdict.CONFIG:
                        raise SinkError(failure, retryable=False, status=status)
                    return answer
                retry_after = parse_retry_after(answer.retry_after, datetime.now(UTC))
            self._stats.last_error = failure
            now = self.clock()
            if batch.deadline is None:
                batch.deadline = now + self.max_retry_time
            delay = retry_after if retry_after is not None else self._backoff(attempts - 1)
            if now + delay > batch.deadline:
                msg = (
                    f"{failure}; gave up after {attempts} attempt(s) "
                    f"(max_retry_time {self.max_retry_time:g} s)"
                )
                raise SinkError(msg, retryable=True, retry_after=delay, status=status) from cause
            if attempts == 1:  # once a batch: a database down says so at once, not per retry
                logger.warning(
                    "write failed, retrying for up to %g s: %s", self.max_retry_time, failure
                )
            logger.debug("retrying in %.3f s: %s", delay, failure)
            self._stats.retries += 1
            await self.sleep(delay)

    async def _post(self, session: aiohttp.ClientSession, body: bytes) -> _Answer | None:
        async with session.post(self._write_url, data=body, headers=_CONTENT_TYPE) as response:
            if 200 <= response.status < 300:
                await response.read()
                return None
            raw = await response.content.read(MAX_ERROR_BODY)
            message, lines = error_message(raw.decode("utf-8", "replace"), response.reason or "")
            header = response.headers.get("X-Influxdb-Error")
            if header and header not in message:
                message = f"{message}; {header}"
            return _Answer(response.status, message, lines, response.headers.get("Retry-After"))

    def _backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(max_backoff, initial_backoff * 2**retry))."""
        cap = min(self.max_backoff, self.initial_backoff * 2.0 ** min(retry, 60))
        return self._rng.uniform(0.0, cap)


def _chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    """Lists of at most ``size`` lines, consuming ``lines`` lazily."""
    if isinstance(lines, Sequence):
        for start in range(0, len(lines), size):
            yield list(lines[start : start + size])
        return
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

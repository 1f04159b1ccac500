"""Delivery of notifications over HTTP: at least once, retried, or dead-lettered with a reason.

:class:`Deliverer` posts each :class:`~rules.routing.Notification` to its receiver
in the receiver's format (:func:`rules.notify.build_request`, re-signed on every
attempt) and returns only when the notification is *settled*: delivered, or handed
to the dead-letter callback with the reason. It never drops one silently.

What happens to an attempt:

* **2xx** (and, for the chat robots, ``errcode``/``code`` 0 in the JSON body):
  delivered.
* **5xx, 408, 429, a timeout, a refused or broken connection**: retried with
  exponential backoff and full jitter (uniform in ``[0, min(max_backoff,
  initial_backoff * 2**retry))``), or after the server's ``Retry-After`` (seconds
  or an HTTP date; Feishu's ``x-ogw-ratelimit-reset`` too), until the receiver's
  ``give_up_after`` has passed since the first attempt; then dead-lettered. A
  receiver that is down for less than ``give_up_after`` gets the notification
  when it is back.
* **any other 4xx** (a wrong URL, a refused signature): dead-lettered at once
  with the server's answer; trying again cannot help.
* **chat robots answer 200 with an error code** in the body; the rate-limit and
  busy codes are retried, every other code is dead-lettered with its message:

  ========  ======================================  ===============================
  platform  retried                                 e.g. dead-lettered
  ========  ======================================  ===============================
  DingTalk  ``errcode`` -1 (busy), 130101 and       310000 (bad signature, keyword
            410100 (sending too fast)               missing, IP not allowed)
  WeCom     ``errcode`` -1 (busy), 45009 (API       93000 (invalid webhook key)
            frequency), 45033 (concurrency)
  Feishu    ``code`` 11232 (tenant rate limit),     19021 (bad signature or stale
            230020 (chat rate limit)                timestamp), 9499 (bad request)
  ========  ======================================  ===============================

Receivers dedupe on the ``X-Urbansense-Notification`` header: an attempt whose
answer was lost is sent again with the same id.

Time: ``clock`` gives Unix seconds (the signatures' timestamps and the give-up
time) and ``sleep`` waits between attempts; tests inject both so that an hour of
retrying takes no time. URLs are never logged (DingTalk's and WeCom's carry their
credentials); receivers are named instead.

>>> from rules.routing import Receiver, ReceiverType
>>> deliverer = Deliverer([Receiver(name="ops", type=ReceiverType.WEBHOOK, url="http://127.0.0.1:9/")])
>>> deliverer
Deliverer(receivers=['ops'])
>>> deliverer.stats
DeliveryStats(delivered=0, dead_lettered=0, attempts=0, retries=0, last_error=None)
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Final, Self

import aiohttp

from rules.notify import OutgoingRequest, build_request
from rules.routing import Notification, Receiver, ReceiverType, RoutingConfig
from stream.sinks import parse_retry_after

__all__ = [
    "RETRY_CODES",
    "DeadLetterCallback",
    "Deliverer",
    "DeliveryResult",
    "DeliveryStats",
    "Outcome",
]

logger = logging.getLogger(__name__)

MAX_ANSWER_BYTES: Final = 64 * 1024
"""How much of an answer's body is read."""

RETRY_CODES: Final[Mapping[ReceiverType, frozenset[int]]] = {
    ReceiverType.DINGTALK: frozenset({-1, 130101, 410100}),
    ReceiverType.WECOM: frozenset({-1, 45009, 45033}),
    ReceiverType.FEISHU: frozenset({11232, 230020}),
}
"""Error codes in a chat robot's answer that mean "busy or too fast: try again later"."""

_RETRY_STATUS: Final = frozenset({408, 429})


class Outcome(StrEnum):
    """How a delivery settled."""

    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class DeliveryResult:
    """How one notification's delivery settled.

    Attributes:
        notification_id: the notification's id.
        receiver: the receiver's name.
        outcome: delivered or dead-lettered.
        attempts: HTTP requests made (1 when the first succeeded).
        status: the last HTTP status, or None when no answer came.
        reason: why it was dead-lettered (the server's answer, the last error);
            empty when delivered.
        elapsed: seconds from the first attempt until settled, by the clock.
    """

    notification_id: str
    receiver: str
    outcome: Outcome
    attempts: int
    status: int | None
    reason: str
    elapsed: float

    @property
    def delivered(self) -> bool:
        """Whether the receiver accepted the notification."""
        return self.outcome is Outcome.DELIVERED


DeadLetterCallback = Callable[[Notification, DeliveryResult], Awaitable[None] | None]
"""Receives each notification given up on, with its result (reason included).

It may be a coroutine function. What it raises, :meth:`Deliverer.deliver` raises, so
a failed write to the dead-letter topic keeps the caller from committing its offset.
"""


@dataclass
class DeliveryStats:
    """What a deliverer has done since it was built.

    Attributes:
        delivered: notifications delivered.
        dead_lettered: notifications given to the dead-letter callback.
        attempts: HTTP requests made.
        retries: requests made again after a retryable failure.
        last_error: the last failure seen, or None.
        dead_lettered_by_receiver: ``dead_lettered`` per receiver name.
    """

    delivered: int = 0
    dead_lettered: int = 0
    attempts: int = 0
    retries: int = 0
    last_error: str | None = None
    dead_lettered_by_receiver: dict[str, int] = field(default_factory=dict, repr=False)


class _Verdict(StrEnum):
    OK = "ok"
    RETRY = "retry"
    FATAL = "fatal"


@dataclass(frozen=True)
class _Answer:
    verdict: _Verdict
    status: int | None
    reason: str
    retry_after: float | None = None


class Deliverer:
    """Posts notifications to their receivers, at least once.

    Building one does no I/O; the HTTP session opens on first use (or on
    ``async with``) and :meth:`close` releases it (always safe to call).

    Args:
        receivers: the receivers, as a :class:`~rules.routing.RoutingConfig`
            (whose ``external_url`` and ``generator_url`` are then used too), a
            mapping of name to receiver, or an iterable of receivers.
        on_dead_letter: called with each notification given up on.
        external_url: the alert board's address, in every message (overrides the
            config's).
        generator_url: the webhook's per-alert link template (overrides the config's).
        initial_backoff: the backoff cap of the first retry, in seconds.
        max_backoff: the largest backoff cap, in seconds.
        clock: Unix seconds; signs requests and measures the give-up time.
        sleep: waits between attempts.
        seed: seeds the jitter, for reproducible tests.
    """

    def __init__(
        self,
        receivers: RoutingConfig | Mapping[str, Receiver] | Iterable[Receiver],
        *,
        on_dead_letter: DeadLetterCallback | None = None,
        external_url: str | None = None,
        generator_url: str | None = None,
        initial_backoff: float = 1.0,
        max_backoff: float = 300.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        seed: int | None = None,
    ) -> None:
        if isinstance(receivers, RoutingConfig):
            self.receivers = receivers.receivers_by_name
            external_url = receivers.external_url if external_url is None else external_url
            generator_url = receivers.generator_url if generator_url is None else generator_url
        elif isinstance(receivers, Mapping):
            self.receivers = dict(receivers)
        else:
            self.receivers = {r.name: r for r in receivers}
        if not (0 < initial_backoff <= max_backoff) or not math.isfinite(max_backoff):
            msg = f"need 0 < initial_backoff <= max_backoff, got {initial_backoff}, {max_backoff}"
            raise ValueError(msg)
        self.on_dead_letter = on_dead_letter
        self.external_url = external_url or ""
        self.generator_url = generator_url or ""
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.clock = clock
        self.sleep = sleep
        self.stats = DeliveryStats()
        self._rng = random.Random(seed)  # noqa: S311 -- jitter, not security
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"Deliverer(receivers={sorted(self.receivers)!r})"

    async def __aenter__(self) -> Self:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        """Close the HTTP session. Safe to call at any time, and twice."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    # ------------------------------------------------------------ delivery

    async def deliver(self, notification: Notification) -> DeliveryResult:
        """Deliver ``notification`` or dead-letter it; return how it settled.

        Returns only once settled, which may take up to the receiver's
        ``give_up_after``. Deliveries to different receivers may run concurrently
        (``asyncio.gather``). Cancelling it leaves the notification unsettled:
        the caller keeps it (does not commit its offset) and delivers it again.

        Raises:
            Exception: only what ``on_dead_letter`` raises.
        """
        receiver = self.receivers.get(notification.receiver)
        start = self.clock()
        if receiver is None:
            reason = f"no receiver named {notification.receiver!r} is configured"
            return await self._dead_letter(notification, 0, None, reason, start)
        deadline = start + receiver.give_up_after.total_seconds()
        attempts = 0
        while True:
            attempts += 1
            if attempts > 1:
                self.stats.retries += 1
            request = build_request(
                receiver,
                notification,
                now=self.clock(),
                external_url=self.external_url,
                generator_url=self.generator_url,
            )
            answer = await self._attempt(receiver, request)
            if answer.verdict is _Verdict.OK:
                self.stats.delivered += 1
                return DeliveryResult(
                    notification.id,
                    receiver.name,
                    Outcome.DELIVERED,
                    attempts,
                    answer.status,
                    "",
                    self.clock() - start,
                )
            self.stats.last_error = f"{receiver.name}: {answer.reason}"
            if answer.verdict is _Verdict.FATAL:
                return await self._dead_letter(
                    notification, attempts, answer.status, answer.reason, start
                )
            remaining = deadline - self.clock()
            if remaining <= 0:
                reason = (
                    f"gave up after {attempts} attempts over {self.clock() - start:.0f} s"
                    f" (give_up_after {receiver.give_up_after}); last: {answer.reason}"
                )
                return await self._dead_letter(notification, attempts, answer.status, reason, start)
            if answer.retry_after is not None:
                wait = answer.retry_after
                if wait > remaining:
                    reason = (
                        f"gave up after {attempts} attempts: the receiver asked to wait"
                        f" {wait:.0f} s, beyond give_up_after; last: {answer.reason}"
                    )
                    return await self._dead_letter(
                        notification, attempts, answer.status, reason, start
                    )
            else:
                wait = min(self._backoff(attempts - 1), remaining)
            logger.warning(
                "notification %s to %s failed (attempt %d): %s; retrying in %.1f s",
                notification.id,
                receiver.name,
                attempts,
                answer.reason,
                wait,
            )
            await self.sleep(wait)

    def _backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(max_backoff, initial_backoff * 2**retry))."""
        cap = min(self.max_backoff, self.initial_backoff * 2 ** min(retry, 62))
        return self._rng.uniform(0, cap)

    async def _dead_letter(
        self,
        notification: Notification,
        attempts: int,
        status: int | None,
        reason: str,
        start: float,
    ) -> DeliveryResult:
        result = DeliveryResult(
            notification.id,
            notification.receiver,
            Outcome.DEAD_LETTERED,
            attempts,
            status,
            reason,
            self.clock() - start,
        )
        self.stats.dead_lettered += 1
        by_receiver = self.stats.dead_lettered_by_receiver
        by_receiver[notification.receiver] = by_receiver.get(notification.receiver, 0) + 1
        self.stats.last_error = f"{notification.receiver}: {reason}"
        logger.error(
            "notification %s to %s dead-lettered after %d attempts: %s",
            notification.id,
            notification.receiver,
            attempts,
            reason,
        )
        if self.on_dead_letter is not None:
            outcome = self.on_dead_letter(notification, result)
            if inspect.isawaitable(outcome):
                await outcome
        return result

    async def _attempt(self, receiver: Receiver, request: OutgoingRequest) -> _Answer:
        self.stats.attempts += 1
        session = self._open()
        timeout = aiohttp.ClientTimeout(total=receiver.timeout.total_seconds())
        try:
            async with session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                body = await response.content.read(MAX_ANSWER_BYTES)
                text = body.decode(errors="replace").strip()
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), datetime.fromtimestamp(self.clock(), UTC)
                )
                if retry_after is None and response.status == 429:
                    retry_after = parse_retry_after(
                        response.headers.get("x-ogw-ratelimit-reset"),
                        datetime.fromtimestamp(self.clock(), UTC),
                    )
                return _judge(receiver.type, response.status, text, retry_after)
        except TimeoutError:
            return _Answer(
                _Verdict.RETRY, None, f"no answer within {receiver.timeout.total_seconds():g} s"
            )
        except aiohttp.ClientError as exc:
            return _Answer(_Verdict.RETRY, None, f"{type(exc).__name__}: {exc}")


def _vendor_code(kind: ReceiverType, text: str) -> tuple[int, str] | None:
    """A chat robot's ``(code, message)`` from its JSON answer, or None."""
    if kind is ReceiverType.WEBHOOK or not text.startswith("{"):
        return None
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    for code_key, message_key in (("errcode", "errmsg"), ("code", "msg"), ("StatusCode", "")):
        code = answer.get(code_key)
        if isinstance(code, int) and not isinstance(code, bool):
            return code, str(answer.get(message_key, "")) if message_key else ""
    return None


def _judge(kind: ReceiverType, status: int, text: str, retry_after: float | None) -> _Answer:
    """Classify an answer: delivered, worth retrying, or refused for good."""
    shown = text[:500] or "(empty body)"
    vendor = _vendor_code(kind, text)
    if vendor is not None and (vendor[0] != 0 or 200 <= status < 300):
        code, message = vendor
        reason = f"HTTP {status}, {kind} code {code}: {message or shown}"
        if code == 0:
            return _Answer(_Verdict.OK, status, "")
        if code in RETRY_CODES.get(kind, frozenset()):
            return _Answer(_Verdict.RETRY, status, reason, retry_after)
        if status >= 500:
            return _Answer(_Verdict.RETRY, status, reason, retry_after)
        return _Answer(_Verdict.FATAL, status, reason)
    reason = f"HTTP {status}: {shown}"
    if 200 <= status < 300:
        return _Answer(_Verdict.OK, status, "")
    if status >= 500 or status in _RETRY_STATUS:
        return _Answer(_Verdict.RETRY, status, reason, retry_after)
    return _Answer(_Verdict.FATAL, status, reason)

"""The demo's webhook receiver: verifies each notification, keeps each alert transition.

:class:`AlertBook` is pure: Alertmanager-shaped bodies in, the transitions they
carry out (an alert that starts firing, an alert that resolves). A group's later
notifications repeat the alerts still firing; those are not new and are dropped.
:class:`WebhookReceiver` is an aiohttp server on a loopback port that checks every
request's ``X-Urbansense-Signature`` with :func:`rules.notify.verify`, records each
body in a JSON-lines file, and hands the transitions to a callback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from rules.notify import SignatureError, verify
from stream.demo.view import AlertEvent

__all__ = ["AlertBook", "WebhookReceiver"]


class AlertBook:
    """Every alert's last state, and the transitions of each body received.

    >>> book = AlertBook()
    >>> body = {"alerts": [{"status": "firing", "fingerprint": "f1",
    ...          "labels": {"alertname": "aqi-heavy", "severity": "warning"},
    ...          "annotations": {"summary": "Heavy"}, "startsAt": "2026-11-28T09:00:00Z"}]}
    >>> now = datetime(2026, 12, 5, tzinfo=UTC)
    >>> [e.status for e in book.add(body, now)], book.add(body, now)
    (['firing'], [])
    >>> resolved = {"alerts": [{**body["alerts"][0], "status": "resolved"}]}
    >>> [e.status for e in book.add(resolved, now)], len(book.events)
    (['resolved'], 2)
    """

    def __init__(self) -> None:
        self.state: dict[str, str] = {}
        self.events: list[AlertEvent] = []

    def add(self, body: Mapping[str, Any], received: datetime) -> list[AlertEvent]:
        """The new transitions in one notification body (also appended to ``events``)."""
        new: list[AlertEvent] = []
        for alert in body.get("alerts", []):
            fingerprint = str(alert.get("fingerprint", ""))
            status = str(alert.get("status", ""))
            if self.state.get(fingerprint) == status:
                continue
            self.state[fingerprint] = status
            labels = alert.get("labels", {})
            annotations = alert.get("annotations", {})
            new.append(
                AlertEvent(
                    received=received,
                    status=status,
                    rule=str(labels.get("alertname", "?")),
                    severity=str(labels.get("severity", "")),
                    summary=str(annotations.get("summary", "")),
                    fingerprint=fingerprint,
                    starts_at=str(alert.get("startsAt", "")),
                )
            )
        self.events.extend(new)
        return new


class WebhookReceiver:
    """A webhook on ``http://127.0.0.1:<port>/hook`` that checks signatures.

    Args:
        port: the loopback port.
        secret: the shared HMAC secret (the routing file's).
        record: the JSON-lines file every verified body is appended to.
        on_events: called with the new transitions of each verified body.
    """

    def __init__(
        self,
        port: int,
        secret: str,
        record: Path,
        on_events: Callable[[list[AlertEvent]], None],
    ) -> None:
        self.port = port
        self.book = AlertBook()
        self.refused = 0
        self.notifications = 0
        self._secret = secret
        self._record = record
        self._on_events = on_events
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Where the worker posts."""
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(
                body, request.headers.get("X-Urbansense-Signature"), self._secret, now=time.time()
            )
            payload = json.loads(body)
        except (SignatureError, ValueError) as exc:
            self.refused += 1
            return web.Response(status=401, text=str(exc))
        self.notifications += 1
        with self._record.open("a", encoding="utf-8") as file:
            file.write(json.dumps(payload, ensure_ascii=False) + "\n")
        events = self.book.add(payload, datetime.now(UTC))
        if events:
            self._on_events(events)
        return web.Response(text="ok")

    async def start(self) -> None:
        """Listen; returns once the port is bound."""
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Stop listening; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

"""Alerts end to end: readings in Kafka -> a stream worker's rules -> a signed webhook.

A real stream worker (``python -m stream.app worker``) on a real Tansu and
VictoriaMetrics runs one rule (PM2.5 above 100, clear below 80) and routes every
alert to a webhook: a real aiohttp server on 127.0.0.1, in a thread of this test,
which checks each request's ``X-Urbansense-Signature`` with
:func:`rules.notify.verify` and records the Alertmanager-shaped bodies.

The pier station reads 40, then 150 for five minutes (the rule fires), then 50 (it
resolves). The worker is SIGKILLed after the firing notification and a new one takes
over before the station recovers. Checked: the receiver got exactly one firing and
one resolved notification for the alert (no notification twice, even across the
kill), every signature verified, and both transitions are ``alert`` points in
VictoriaMetrics.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from rules.notify import SignatureError, verify
from telemetry import Batch, Kind, Reading
from tests.servers._procs import LOOPBACK, ManagedProcess, free_port, log_tail
from tests.servers.stream_worker import create_topics, stream_worker
from tests.servers.tansu import TansuServer
from tests.servers.victoria_metrics import VictoriaMetricsServer
from tests.test_pipeline import PM_RULES
from tests.test_stream_app import produce

pytestmark = pytest.mark.servers

TIMEOUT_S = 60.0
SECRET = secrets.token_hex(16)  # the webhook's HMAC key, made per run
# Four days ago: a span no other test writes at (test_stream_app: two days ago from
# midnight, with no upper bound; test_stream_failover: three days ago).
START = (datetime.now(UTC) - timedelta(days=4)).replace(hour=12, minute=0, second=0, microsecond=0)


class Receiver:
    """A webhook receiver on a loopback port, in a thread; records verified bodies."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bodies: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.refused: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get("X-Urbansense-Signature", "")
        try:
            verify(body, header, SECRET, now=time.time(), tolerance=300)
        except SignatureError as exc:
            self.refused.append(str(exc))
            return web.Response(status=401, text=str(exc))
        self.ids.append(request.headers.get("X-Urbansense-Notification", ""))
        self.bodies.append(json.loads(body))
        return web.Response(text="ok")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, LOOPBACK, self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10), "the webhook receiver did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def statuses(self) -> list[tuple[str, str]]:
        """(status, alertname) of every alert of every notification received."""
        return [(a["status"], a["labels"]["alertname"]) for b in self.bodies for a in b["alerts"]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def pier(seq: int, minute: int, pm25: float) -> Batch:
    reading = Reading(
        sensor_id="aq-pier-pollution",
        kind=Kind.POLLUTION,
        seq=seq,
        ts=START + timedelta(minutes=minute),
        interval_s=60,
        metrics={"pm2_5": pm25},
    )
    return Batch(gateway_id="gw-lakeside-01", readings=(reading,))


def wait_for(check: Callable[[], bool], what: str, proc: ManagedProcess) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {TIMEOUT_S} s; worker log:\n{log_tail(proc.log_path)}")
        time.sleep(0.25)


def test_an_alert_is_notified_once_firing_and_once_resolved_across_a_worker_kill(
    tansu: TansuServer,
    victoria_metrics: VictoriaMetricsServer,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    app_id = f"al-{uuid.uuid4().hex[:8]}"
    (tmp_path / "rules.yaml").write_text(PM_RULES, encoding="utf-8")
    (tmp_path / "routing.yaml").write_text(
        f"""
receivers:
  - {{name: ops, type: webhook, url: "{receiver.url}", secret: {SECRET}}}
route:
  receiver: ops
  group_by: [rule_id, district_id]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 4h
""",
        encoding="utf-8",
    )
    settings = {
        "URBANSENSE_RULES": str(tmp_path / "rules.yaml"),
        "URBANSENSE_ROUTING": str(tmp_path / "routing.yaml"),
    }
    asyncio.run(
        create_topics(tansu, [f"{app_id}.readings", f"{app_id}.status", f"{app_id}.deadletter"], 2)
    )

    def worker(name: str) -> ManagedProcess:
        return stream_worker(
            tansu,
            victoria_metrics,
            tmp_path,
            app_id=app_id,
            name=name,
            partitions=2,
            settings=settings,
        )

    first = worker("first")
    first.start()
    try:
        asyncio.run(produce(tansu, f"{app_id}.readings", [pier(1, 0, 40.0)]))
        asyncio.run(
            produce(tansu, f"{app_id}.readings", [pier(i, i - 1, 150.0) for i in range(2, 7)])
        )
        wait_for(lambda: ("firing", "pm25-high") in receiver.statuses(), "no firing", first)
        time.sleep(2.0)  # let a committed offset and the dispatcher's state land
    finally:
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        first.stop()
    second = worker("second")
    second.start()
    try:
        asyncio.run(produce(tansu, f"{app_id}.readings", [pier(7, 6, 50.0), pier(8, 7, 45.0)]))
        wait_for(lambda: ("resolved", "pm25-high") in receiver.statuses(), "no resolve", second)
        time.sleep(3.0)  # a duplicate would have come by now
    finally:
        second.stop()

    assert receiver.refused == []
    assert receiver.statuses() == [("firing", "pm25-high"), ("resolved", "pm25-high")]
    assert len(set(receiver.ids)) == len(receiver.ids) == 2
    [firing, resolved] = receiver.bodies
    assert firing["version"] == "4"
    assert firing["alerts"][0]["annotations"]["summary"].startswith("PM2.5 150 at ")
    assert resolved["status"] == "resolved"

    victoria_metrics.force_flush()
    states = {
        series["metric"]["state"]
        for series in victoria_metrics.export('{__name__="alert_firing", rule="pm25-high"}')
    }
    assert states == {"firing", "resolved"}

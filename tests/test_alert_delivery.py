"""Delivery (stream.alerts.Deliverer) against a real HTTP receiver on 127.0.0.1.

The receiver is an aiohttp web server started by each test on a free port. It checks
what real receivers check: the generic webhook's ``X-Urbansense-Signature`` with
:func:`rules.notify.verify`, DingTalk's signed URL and Feishu's signed body the way
those platforms compute them (answering with their error codes when they do not
match), and it answers as each test scripts it (500s, a 429 with ``Retry-After``,
an answer slower than the client's timeout, the robots' error codes).

The waits between attempts go through an injected clock and sleep, so an hour of
retrying takes no time; only the timeout test waits, for a fraction of a second.
The end-to-end tests drive a :class:`~rules.routing.Dispatcher` with the same clock.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from pydantic import SecretStr

from rules.notify import NOTIFICATION_HEADER, SIGNATURE_HEADER, SignatureError, verify
from rules.routing import Dispatcher, Notification, RoutingConfig, parse_routing
from stream.alerts import Deliverer, DeliveryResult, Outcome
from telemetry.catalogue import Kind
from telemetry.models import Alert, AlertState, AlertSubject, Severity

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
TIMEOUT = 30.0
# Keys of the test receivers only.
WEBHOOK_SECRET = "webhook-s3cret"  # noqa: S105
DINGTALK_SECRET = "SECdingtalk0123456789"  # noqa: S105
FEISHU_SECRET = "feishu-secret"  # noqa: S105

ResultT = TypeVar("ResultT")


# ================================================================ the receiver


@dataclass
class Reply:
    """What the script answers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    """One request as the server saw it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def notification_id(self) -> str:
        return self.headers[NOTIFICATION_HEADER]


Script = Callable[[int, Received], Reply]
"""Answers the n-th signed request to a path (from 0)."""


def ok(n: int, request: Received) -> Reply:
    if request.path == "/hook":
        return Reply(200, "ok")
    if request.path == "/feishu":
        return Reply(200, {"code": 0, "msg": "success", "data": {}})
    return Reply(200, {"errcode": 0, "errmsg": "ok"})


class FakeTime:
    """A Unix clock and a sleep that advances it at once; ``on_sleep`` runs after each."""

    def __init__(self, start: float = T0.timestamp()) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], Awaitable[None]] | None = None

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            await self.on_sleep()

    @property
    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


class Robot:
    """A real HTTP receiver speaking the webhook, DingTalk, WeCom and Feishu dialects."""

    def __init__(self, fake: FakeTime, script: Script = ok) -> None:
        self.fake = fake
        self.script = script
        self.requests: list[Received] = []
        self.refused: list[str] = []
        self.accepted: dict[str, Received] = {}  # by notification id: what a receiver keeps
        self._counts: dict[str, int] = {}
        # Bound now, so the URL is known; connections are refused until it runs.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _check_signature(self, request: Received) -> tuple[int, Any] | None:
        """The platform's own answer to a bad signature, or None when it verifies."""
        if request.path == "/hook":
            try:
                verify(
                    request.body,
                    request.headers.get(SIGNATURE_HEADER),
                    WEBHOOK_SECRET,
                    now=self.fake.now,
                )
            except SignatureError as exc:
                return 401, str(exc)
        elif request.path == "/ding":
            # DingTalk: timestamp in ms within an hour; sign = b64(hmac(secret, ts\nsecret))
            timestamp = request.query.get("timestamp", "")
            string_to_sign = f"{timestamp}\n{DINGTALK_SECRET}".encode()
            digest = hmac.new(DINGTALK_SECRET.encode(), string_to_sign, hashlib.sha256).digest()
            expected = base64.b64encode(digest).decode()
            fresh = timestamp.isdigit() and abs(int(timestamp) - self.fake.now * 1000) < 3600e3
            if not fresh or not hmac.compare_digest(request.query.get("sign", ""), expected):
                return 200, {"errcode": 310000, "errmsg": "sign not match"}
        elif request.path == "/feishu":
            # Feishu: sign = b64(hmac(key=timestamp\nsecret, msg="")), timestamp in s
            body = request.json
            timestamp = str(body.get("timestamp", ""))
            key = f"{timestamp}\n{FEISHU_SECRET}".encode()
            expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
            fresh = timestamp.isdigit() and abs(int(timestamp) - self.fake.now) < 3600
            if not fresh or not hmac.compare_digest(str(body.get("sign", "")), expected):
                return 200, {"code": 19021, "msg": "sign match fail or timestamp is not valid"}
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            request.path, dict(request.query), dict(request.headers), await request.read()
        )
        self.requests.append(received)
        refusal = self._check_signature(received)
        if refusal is not None:
            self.refused.append(request.path)
            status, body = refusal
            return web.json_response(body, status=status)
        n = self._counts.get(request.path, 0)
        self._counts[request.path] = n + 1
        reply = self.script(n, received)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if 200 <= reply.status < 300 and not (
            isinstance(reply.body, dict) and reply.body.get("errcode", reply.body.get("code"))
        ):
            self.accepted.setdefault(received.notification_id, received)  # dedupe on the id
        if isinstance(reply.body, dict):
            return web.json_response(reply.body, status=reply.status, headers=reply.headers)
        return web.Response(status=reply.status, text=reply.body or "", headers=reply.headers)

    async def start(self) -> None:
        app = web.Application()
        for path in ("/hook", "/ding", "/wecom", "/feishu"):
            app.router.add_post(path, self._handle)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._socket.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Robot]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()


def routing_for(robot: Robot, **webhook: Any) -> RoutingConfig:
    settings = {"timeout": "2s", "give_up_after": "1h"} | webhook
    options = ", ".join(f"{k}: {v}" for k, v in settings.items())
    return parse_routing(f"""
external_url: https://grafana.example/d/alerts
receivers:
  - {{name: ops, type: webhook, url: "{robot.url}/hook", secret: {WEBHOOK_SECRET},
      {options}}}
  - {{name: env, type: dingtalk, url: "{robot.url}/ding?access_token=tok",
      secret: {DINGTALK_SECRET}}}
  - {{name: traffic, type: wecom, url: "{robot.url}/wecom?key=k"}}
  - {{name: scenic, type: feishu, url: "{robot.url}/feishu", secret: {FEISHU_SECRET}}}
route:
  receiver: ops
  group_by: [rule_id, district_id]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
""")


def make_alert(
    site: str = "st-1",
    *,
    state: AlertState = AlertState.FIRING,
    rule_id: str = "aqi-heavy",
) -> Alert:
    return Alert.create(
        rule_id=rule_id,
        subject=AlertSubject(site_id=site, district_id="lakeside"),
        severity=Severity.CRITICAL,
        state=state,
        kind=Kind.POLLUTION,
        metric="aqi",
        value=231.0,
        threshold=200.0,
        starts_at=T0,
        ends_at=T0 + timedelta(minutes=20) if state is AlertState.RESOLVED else None,
        annotations={"summary": f"重度污染 at {site}"},
    )


def notification_for(receiver: str, *alerts: Alert) -> Notification:
    return Notification(
        id=hashlib.sha256(receiver.encode()).hexdigest()[:32],
        receiver=receiver,
        group_key='{}:{rule_id="aqi-heavy"}',
        group_labels={"rule_id": "aqi-heavy"},
        seq=1,
        at=T0,
        alerts=alerts or (make_alert(),),
    )


def run(scenario: Callable[[], Awaitable[ResultT]]) -> ResultT:
    async def bounded() -> ResultT:
        return await asyncio.wait_for(scenario(), TIMEOUT)

    return asyncio.run(bounded())


class DeadLetters:
    def __init__(self) -> None:
        self.items: list[tuple[Notification, DeliveryResult]] = []

    async def __call__(self, notification: Notification, result: DeliveryResult) -> None:
        self.items.append((notification, result))


def deliverer_for(
    config: RoutingConfig, fake: FakeTime, dead: DeadLetters | None = None, **options: Any
) -> Deliverer:
    return Deliverer(
        config,
        on_dead_letter=dead,
        clock=fake.clock,
        sleep=fake.sleep,
        seed=7,
        **({"initial_backoff": 2.0, "max_backoff": 300.0} | options),
    )


# ================================================================ the webhook


def test_a_webhook_arrives_signed_with_its_notification_id_in_alertmanager_shape() -> None:
    fake = FakeTime()
    robot = Robot(fake)
    notification = notification_for("ops", make_alert("st-1"), make_alert("st-2"))

    async def scenario() -> DeliveryResult:
        async with robot.running(), deliverer_for(routing_for(robot), fake) as deliverer:
            return await deliverer.deliver(notification)

    result = run(scenario)
    assert result.outcome is Outcome.DELIVERED
    assert (result.attempts, result.status, result.reason) == (1, 200, "")
    assert robot.refused == []
    [request] = robot.requests
    assert request.notification_id == notification.id
    body = request.json
    assert body["version"] == "4"
    assert body["receiver"] == "ops"
    assert body["externalURL"] == "https://grafana.example/d/alerts"
    assert [a["labels"]["site_id"] for a in body["alerts"]] == ["st-1", "st-2"]


def test_500s_are_retried_with_backoff_and_the_same_notification_id() -> None:
    fake = FakeTime()
    robot = Robot(fake, lambda n, r: Reply(500, "boom") if n < 3 else ok(n, r))

    async def scenario() -> DeliveryResult:
        async with robot.running(), deliverer_for(routing_for(robot), fake) as deliverer:
            result = await deliverer.deliver(notification_for("ops"))
            assert deliverer.stats.retries == 3
            return result

    result = run(scenario)
    assert result.delivered
    assert result.attempts == 4
    assert len(fake.sleeps) == 3
    for retry, slept in enumerate(fake.sleeps):
        assert 0 <= slept < 2.0 * 2**retry  # full jitter under the exponential cap
    assert len({r.notification_id for r in robot.requests}) == 1
    assert robot.refused == []  # re-signed with a fresh timestamp on every attempt
    assert len(robot.accepted) == 1


def test_a_429_waits_what_retry_after_asks() -> None:
    fake = FakeTime()
    robot = Robot(
        fake, lambda n, r: Reply(429, "slow down", {"Retry-After": "7"}) if n == 0 else ok(n, r)
    )

    async def scenario() -> DeliveryResult:
        async with robot.running(), deliverer_for(routing_for(robot), fake) as deliverer:
            return await deliverer.deliver(notification_for("ops"))

    assert run(scenario).attempts == 2
    assert fake.sleeps == [7.0]


def test_an_answer_slower_than_the_timeout_is_retried() -> None:
    fake = FakeTime()
    robot = Robot(fake, lambda n, r: Reply(200, "late", delay=5.0) if n == 0 else ok(n, r))

    async def scenario() -> DeliveryResult:
        config = routing_for(robot, timeout="300ms")
        async with robot.running(), deliverer_for(config, fake) as deliverer:
            return await deliverer.deliver(notification_for("ops"))

    result = run(scenario)
    assert result.delivered
    assert result.attempts == 2
    assert len(robot.requests) == 2


def test_a_receiver_down_for_an_hour_gets_its_notification_when_back() -> None:
    fake = FakeTime()
    robot = Robot(fake)
    start = fake.now

    async def come_back() -> None:
        if fake.now - start >= 3000 and robot._runner is None:
            await robot.start()

    fake.on_sleep = come_back

    async def scenario() -> DeliveryResult:
        config = routing_for(robot, give_up_after="2h")
        try:
            async with deliverer_for(config, fake) as deliverer:
                return await deliverer.deliver(notification_for("ops"))
        finally:
            await robot.stop()

    result = run(scenario)
    assert result.delivered
    assert result.attempts > 5  # refused connections first
    assert 3000 <= result.elapsed <= 3000 + 300  # backoff capped at max_backoff
    assert len(robot.requests) == 1


def test_after_give_up_the_notification_is_dead_lettered_and_counted() -> None:
    fake = FakeTime()
    robot = Robot(fake, lambda n, r: Reply(503, "maintenance"))
    dead = DeadLetters()
    notification = notification_for("ops")

    async def scenario() -> DeliveryResult:
        config = routing_for(robot, give_up_after="10m")
        async with robot.running(), deliverer_for(config, fake, dead) as deliverer:
            result = await deliverer.deliver(notification)
            assert deliverer.stats.dead_lettered == 1
            assert deliverer.stats.dead_lettered_by_receiver == {"ops": 1}
            return result

    result = run(scenario)
    assert result.outcome is Outcome.DEAD_LETTERED
    assert result.status == 503
    assert "gave up after" in result.reason
    assert "HTTP 503: maintenance" in result.reason
    assert result.elapsed <= 600
    assert [(n.id, r) for n, r in dead.items] == [(notification.id, result)]


def test_a_4xx_is_dead_lettered_at_once_with_the_answer() -> None:
    fake = FakeTime()
    robot = Robot(fake, lambda n, r: Reply(404, "no such hook"))
    dead = DeadLetters()

    async def scenario() -> DeliveryResult:
        async with robot.running(), deliverer_for(routing_for(robot), fake, dead) as deliverer:
            return await deliverer.deliver(notification_for("ops"))

    result = run(scenario)
    assert result.outcome is Outcome.DEAD_LETTERED
    assert (result.attempts, result.status) == (1, 404)
    assert result.reason == "HTTP 404: no such hook"
    assert fake.sleeps == []
    assert len(dead.items) == 1


def test_a_wrong_secret_is_refused_by_the_receiver_and_dead_lettered() -> None:
    fake = FakeTime()
    robot = Robot(fake)
    dead = DeadLetters()

    async def scenario() -> DeliveryResult:
        config = routing_for(robot)
        receivers = config.receivers_by_name
        receivers["ops"] = receivers["ops"].model_copy(update={"secret": None})
        deliverer = Deliverer(receivers, on_dead_letter=dead, clock=fake.clock, sleep=fake.sleep)
        async with robot.running(), deliverer:
            return await deliverer.deliver(notification_for("ops"))

    result = run(scenario)
    assert result.status == 401
    assert "no X-Urbansense-Signature header" in result.reason
    assert robot.refused == ["/hook"]


# ================================================================ the chat robots


def test_dingtalk_gets_a_signed_url_and_its_rate_limit_code_is_retried() -> None:
    fake = FakeTime()
    robot = Robot(
        fake,
        lambda n, r: (
            Reply(200, {"errcode": 130101, "errmsg": "send too fast"}) if n == 0 else ok(n, r)
        ),
    )

    async def scenario() -> DeliveryResult:
        async with robot.running(), deliverer_for(routing_for(robot), fake) as deliverer:
            return await deliverer.deliver(notification_for("env"))

    result = run(scenario)
    assert result.delivered
    assert result.attempts == 2
    assert robot.refused == []  # both attempts signed as DingTalk checks it
    request = robot.requests[-1]
    assert request.query["access_token"] == "tok"  # noqa: S105 -- the test robot's token
    assert request.json["msgtype"] == "markdown"
    assert "北京时间" in request.json["markdown"]["text"]


def test_dingtalk_refusing_the_signature_is_dead_lettered_with_its_message() -> None:
    fake = FakeTime()
    robot = Robot(fake)
    dead = DeadLetters()

    async def scenario() -> DeliveryResult:
        config = routing_for(robot)
        receivers = config.receivers_by_name
        receivers["env"] = receivers["env"].model_copy(update={"secret": SecretStr("SECwrong")})
        deliverer = Deliverer(receivers, on_dead_letter=dead, clock=fake.clock, sleep=fake.sleep)
        async with robot.running(), deliverer:
            return await deliverer.deliver(notification_for("env"))

    result = run(scenario)
    assert result.outcome is Outcome.DEAD_LETTERED
    assert result.attempts == 1
    assert "code 310000: sign not match" in result.reason


def test_wecom_frequency_limit_is_retried_and_other_codes_dead_lettered() -> None:
    fake = FakeTime()
    answers = [
        Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"}),
        Reply(200, {"errcode": 0, "errmsg": "ok"}),
        Reply(200, {"errcode": 93000, "errmsg": "invalid webhook url"}),
    ]
    robot = Robot(fake, lambda n, r: answers[n])
    dead = DeadLetters()

    async def scenario() -> tuple[DeliveryResult, DeliveryResult]:
        async with robot.running(), deliverer_for(routing_for(robot), fake, dead) as deliverer:
            first = await deliverer.deliver(notification_for("traffic"))
            second = await deliverer.deliver(notification_for("traffic", make_alert("st-9")))
            return first, second

    first, second = run(scenario)
    assert (first.outcome, first.attempts) == (Outcome.DELIVERED, 2)
    assert (second.outcome, second.attempts) == (Outcome.DEAD_LETTERED, 1)
    assert "code 93000: invalid webhook url" in second.reason
    content = robot.requests[0].json["markdown"]["content"]
    assert len(content.encode()) <= 4096
    assert robot.requests[0].query == {"key": "k"}


def test_feishu_gets_a_signed_card_and_its_rate_limit_code_is_retried() -> None:
    fake = FakeTime()
    robot = Robot(
        fake,
        lambda n, r: (
            Reply(200, {"code": 11232, "msg": "frequency limited"}) if n == 0 else ok(n, r)
        ),
    )

    async def scenario() -> DeliveryResult:
        async with robot.running(), deliverer_for(routing_for(robot), fake) as deliverer:
            return await deliverer.deliver(notification_for("scenic"))

    result = run(scenario)
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 2)
    assert robot.refused == []
    body = robot.requests[-1].json
    assert body["msg_type"] == "interactive"
    assert body["card"]["header"]["template"] == "red"


def test_feishu_with_a_stale_clock_is_dead_lettered() -> None:
    fake = FakeTime()
    robot = Robot(fake)
    dead = DeadLetters()

    async def scenario() -> DeliveryResult:
        # the deliverer's clock is two hours behind the receiver's
        deliverer = Deliverer(
            routing_for(robot), on_dead_letter=dead, clock=lambda: fake.now - 7200, sleep=fake.sleep
        )
        async with robot.running(), deliverer:
            return await deliverer.deliver(notification_for("scenic"))

    result = run(scenario)
    assert result.outcome is Outcome.DEAD_LETTERED
    assert "code 19021" in result.reason


# ================================================================ end to end: dispatcher + delivery


async def step(
    dispatcher: Dispatcher, deliverer: Deliverer, fake: FakeTime, seconds: float, tick: float = 5
) -> list[DeliveryResult]:
    """Let ``seconds`` pass in ticks, delivering whatever falls due."""
    results: list[DeliveryResult] = []
    end = fake.now + seconds
    while fake.now < end:
        for notification in dispatcher.due(fake.datetime):
            results.append(await deliverer.deliver(notification))
        fake.now += tick
    return results


def test_grouping_repeat_and_resolve_reach_the_receiver_as_alertmanager_would() -> None:
    fake = FakeTime()
    robot = Robot(fake)

    async def scenario() -> None:
        config = routing_for(robot)
        dispatcher = Dispatcher(config)
        async with robot.running(), deliverer_for(config, fake) as deliverer:
            for site in ("st-1", "st-2", "st-3"):  # a burst within group_wait
                dispatcher.add(make_alert(site), fake.datetime)
                await step(dispatcher, deliverer, fake, 5)
            await step(dispatcher, deliverer, fake, 60)
            assert len(robot.requests) == 1  # one POST for the three

            dispatcher.add(make_alert("st-4"), fake.datetime)
            await step(dispatcher, deliverer, fake, 300)
            assert len(robot.requests) == 2  # the change, one group_interval later

            await step(dispatcher, deliverer, fake, 3600)
            assert len(robot.requests) == 3  # the repeat

            for site in ("st-1", "st-2", "st-3", "st-4"):
                dispatcher.add(make_alert(site, state=AlertState.RESOLVED), fake.datetime)
            await step(dispatcher, deliverer, fake, 3 * 3600)
            assert len(robot.requests) == 4  # resolved once, then nothing

    run(scenario)
    bodies = [r.json for r in robot.requests]
    assert [len(b["alerts"]) for b in bodies] == [3, 4, 4, 4]
    assert [b["status"] for b in bodies] == ["firing", "firing", "firing", "resolved"]
    assert {a["status"] for a in bodies[-1]["alerts"]} == {"resolved"}
    assert all(
        b["groupLabels"] == {"district_id": "lakeside", "rule_id": "aqi-heavy"} for b in bodies
    )
    assert len({r.notification_id for r in robot.requests}) == 4
    assert robot.refused == []


def test_a_restarted_worker_sends_no_duplicate() -> None:
    fake = FakeTime()
    robot = Robot(fake)

    async def scenario() -> None:
        config = routing_for(robot)
        alerts = [make_alert("st-1"), make_alert("st-2")]
        async with robot.running(), deliverer_for(config, fake) as deliverer:
            first = Dispatcher(config)
            for alert in alerts:
                first.add(alert, fake.datetime)
            await step(first, deliverer, fake, 60)
            assert len(robot.requests) == 1
            saved = first.snapshot()  # what the Faust table holds

            # the worker dies and comes back: state restored, uncommitted records re-read
            second = Dispatcher.restore(config, saved)
            for alert in alerts:
                second.add(alert, fake.datetime)
            await step(second, deliverer, fake, 1800)
            assert len(robot.requests) == 1

    run(scenario)


def test_a_notification_sent_again_after_a_crash_carries_the_same_id() -> None:
    """The worker crashed after delivering but before saving its state; receivers dedupe."""
    fake = FakeTime()
    robot = Robot(fake)

    async def scenario() -> None:
        config = routing_for(robot)
        async with robot.running(), deliverer_for(config, fake) as deliverer:
            dispatcher = Dispatcher(config)
            dispatcher.add(make_alert("st-1"), fake.datetime)
            fake.now += 30
            saved = dispatcher.snapshot()  # the last state the table kept
            moment = fake.datetime
            [notification] = dispatcher.due(moment)
            await deliverer.deliver(notification)
            # crash; the restored dispatcher works the same step out again
            [again] = Dispatcher.restore(config, saved).due(moment)
            await deliverer.deliver(again)

    run(scenario)
    assert len(robot.requests) == 2
    assert robot.requests[0].notification_id == robot.requests[1].notification_id
    assert len(robot.accepted) == 1

r"""What a notification looks like on the wire to each kind of receiver, and how it is signed.

Pure functions: a :class:`~rules.routing.Notification` and the time in, bytes and
headers out. :func:`build_request` is the one entry point a deliverer needs; it is
called again for every attempt, so each attempt carries a fresh signing timestamp.

**Generic webhook** (``type: webhook``): the JSON that Prometheus Alertmanager's
webhook receiver posts, version ``"4"`` (``version``, ``groupKey``,
``truncatedAlerts``, ``status``, ``receiver``, ``groupLabels``, ``commonLabels``,
``commonAnnotations``, ``externalURL``, ``alerts[]`` with ``status``, ``labels``,
``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``, ``fingerprint``;
see https://prometheus.io/docs/alerting/latest/configuration/#webhook_config), so
existing Alertmanager receivers work unchanged. A firing alert's ``endsAt`` is Go's
zero time ``0001-01-01T00:00:00Z``, as Alertmanager sends it.

Headers:

* ``X-Urbansense-Notification: <id>`` — the notification's stable id. A
  notification sent again (a retry whose answer was lost, a replay after a
  restart) carries the same id; receivers dedupe on it.
* ``X-Urbansense-Signature: t=<unix seconds>,v1=<hex>`` — when the receiver has a
  ``secret``: ``v1`` is HMAC-SHA256 with the secret as key over the bytes
  ``<t>.<body>`` (the timestamp in decimal, a full stop, the raw body), in lower-case
  hex, as Stripe signs its webhooks. Verify with :func:`verify`: recompute the
  HMAC over the *raw* body, compare in constant time, and refuse a timestamp older
  (or newer) than a tolerance, so a captured request cannot be replayed later.
  Several ``v1=`` entries may appear while a secret is being rotated.

**DingTalk** (钉钉 custom robot, ``type: dingtalk``): ``{"msgtype": "markdown",
"markdown": {"title", "text"}}``. Signing (加签): ``string_to_sign = timestamp_ms +
"\n" + secret``, HMAC-SHA256 keyed by the secret, Base64, then URL-encoded, sent
as ``&timestamp=<ms>&sign=<sign>`` on the webhook URL; DingTalk refuses a timestamp
more than an hour off (open.dingtalk.com, "自定义机器人安全设置 / 加签"). A robot
accepts 20 messages a minute; grouping keeps well below that.

**WeCom** (企业微信 group robot, ``type: wecom``): ``{"msgtype": "markdown",
"markdown": {"content"}}``, content at most 4096 bytes of UTF-8
(developer.work.weixin.qq.com/document/path/91770, "群机器人配置说明"). No
signature: the key is in the URL, which is the secret to keep.

**Feishu/Lark** (飞书 custom bot, ``type: feishu``): ``{"msg_type":
"interactive", "card": {...}}`` with a header coloured by severity and the text
in ``lark_md``. Signing (签名校验): ``timestamp`` (seconds, as text) and ``sign`` =
Base64(HMAC-SHA256(key = timestamp + "\n" + secret, message = empty)) in the JSON
body (open.feishu.cn, "自定义机器人使用指南"). A request body is at most 20 KB.

The chat robots get the same content: status, severity, rule, subject,
value and threshold, the ``summary`` and ``description`` annotations, start and end
time in Beijing time (UTC+8, ``Asia/Shanghai``, which has had no daylight saving
since 1991) and in UTC. A message over the platform's limit is cut between alerts
with a note of how many were left out.

>>> import json
>>> from datetime import UTC, datetime
>>> from telemetry.models import Alert, AlertState, AlertSubject, Severity
>>> from rules.routing import Notification
>>> t0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
>>> alert = Alert.create(rule_id="aqi-heavy", subject=AlertSubject(site_id="st-1"),
...     severity=Severity.CRITICAL, state=AlertState.FIRING, starts_at=t0,
...     value=231.0, threshold=200.0, annotations={"summary": "AQI 231 at st-1"})
>>> n = Notification(id="0" * 32, receiver="ops", group_key='{}:{rule_id="aqi-heavy"}',
...     group_labels={"rule_id": "aqi-heavy"}, seq=1, at=t0, alerts=(alert,))
>>> payload = webhook_payload(n, external_url="https://grafana.example")
>>> payload["version"], payload["status"], payload["alerts"][0]["endsAt"]
('4', 'firing', '0001-01-01T00:00:00Z')
>>> body = encode_json(payload)
>>> header = sign(body, "s3cret", timestamp=1_795_000_000)
>>> verify(body, header, "s3cret", now=1_795_000_010)
1795000000
>>> verify(body, header, "s3cret", now=1_795_009_999)
Traceback (most recent call last):
...
rules.notify.SignatureError: timestamp 1795000000 is 9999 s away from now (tolerance 300 s)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from rules.routing import Notification, Receiver, ReceiverType, alert_labels
from telemetry.models import Alert, AlertState, Severity

__all__ = [
    "DINGTALK_MAX_BYTES",
    "FEISHU_MAX_BYTES",
    "GO_ZERO_TIME",
    "NOTIFICATION_HEADER",
    "SHANGHAI",
    "SIGNATURE_HEADER",
    "WECOM_MAX_BYTES",
    "OutgoingRequest",
    "SignatureError",
    "build_request",
    "dingtalk_message",
    "dingtalk_sign",
    "dingtalk_signed_url",
    "encode_json",
    "feishu_message",
    "feishu_sign",
    "sign",
    "verify",
    "webhook_payload",
    "wecom_message",
]

SIGNATURE_HEADER: Final = "X-Urbansense-Signature"
"""The header of the generic webhook's signature: ``t=<unix seconds>,v1=<hex>``."""
NOTIFICATION_HEADER: Final = "X-Urbansense-Notification"
"""The header carrying the notification id, for receivers to dedupe on."""
GO_ZERO_TIME: Final = "0001-01-01T00:00:00Z"
"""Alertmanager's ``endsAt`` of a firing alert (Go's zero ``time.Time``)."""
SHANGHAI: Final = timezone(timedelta(hours=8), "Asia/Shanghai")
"""China Standard Time. A fixed offset: China has kept UTC+8 without DST since 1991."""

WECOM_MAX_BYTES: Final = 4096
"""WeCom: a markdown ``content`` is at most 4096 bytes of UTF-8."""
FEISHU_MAX_BYTES: Final = 20_000
"""Feishu: a custom bot's request body is at most 20 KB."""
DINGTALK_MAX_BYTES: Final = 16_000
"""DingTalk publishes no figure for markdown text; 16 000 bytes stays clear of what it takes."""

_USER_AGENT: Final = "urbansense-alerts/0.1"
_MAX_ANNOTATION_CHARS: Final = 600
_SEVERITY_ZH: Final = {Severity.CRITICAL: "严重", Severity.WARNING: "警告", Severity.INFO: "提示"}
_FEISHU_TEMPLATE: Final = {
    Severity.CRITICAL: "red",
    Severity.WARNING: "orange",
    Severity.INFO: "blue",
}


class SignatureError(ValueError):
    """A webhook signature that does not verify; the message says why."""


@dataclass(frozen=True)
class OutgoingRequest:
    """An HTTP POST ready to send.

    Attributes:
        url: where to send it (with DingTalk's signature in the query).
        headers: the headers, ``Content-Type`` included.
        body: the raw body, exactly as signed.
    """

    url: str
    headers: dict[str, str]
    body: bytes


def encode_json(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; Chinese text is kept as it is, not escaped."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


# ---------------------------------------------------------------- generic webhook


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _generator_url(template: str, alert: Alert) -> str:
    return template.replace("{rule_id}", quote(alert.rule_id, safe="")).replace(
        "{fingerprint}", quote(alert.fingerprint, safe="")
    )


def _annotations(alert: Alert) -> dict[str, str]:
    """The alert's annotations, with ``value`` and ``threshold`` added when not already there."""
    annotations = dict(alert.annotations)
    if alert.value is not None:
        annotations.setdefault("value", _number(alert.value))
    if alert.threshold is not None:
        annotations.setdefault("threshold", _number(alert.threshold))
    return annotations


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in maps[1:])}


def webhook_payload(
    notification: Notification,
    *,
    external_url: str = "",
    generator_url: str = "",
    max_alerts: int = 0,
) -> dict[str, Any]:
    """The Alertmanager v4 webhook body of a notification.

    Args:
        notification: what to send.
        external_url: sent as ``externalURL``.
        generator_url: a template for each alert's ``generatorURL``, with
            ``{rule_id}`` and ``{fingerprint}``; empty gives ``""``.
        max_alerts: the most alerts to include (0: all); the number left out is
            ``truncatedAlerts``. Firing alerts come first, so they are kept.

    ``commonLabels`` and ``commonAnnotations`` are those shared by every alert of
    the notification, as Alertmanager computes them (over all alerts, before
    truncation).
    """
    alerts = list(notification.alerts)
    labels = [alert_labels(a) for a in alerts]
    annotations = [_annotations(a) for a in alerts]
    kept = len(alerts) if max_alerts <= 0 else min(max_alerts, len(alerts))
    return {
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": len(alerts) - kept,
        "status": str(notification.status),
        "receiver": notification.receiver,
        "groupLabels": dict(notification.group_labels),
        "commonLabels": _common(labels),
        "commonAnnotations": _common(annotations),
        "externalURL": external_url,
        "alerts": [
            {
                "status": str(alert.state),
                "labels": labels[i],
                "annotations": annotations[i],
                "startsAt": _rfc3339(alert.starts_at),
                "endsAt": _rfc3339(alert.ends_at) if alert.ends_at is not None else GO_ZERO_TIME,
                "generatorURL": _generator_url(generator_url, alert) if generator_url else "",
                "fingerprint": alert.fingerprint,
            }
            for i, alert in enumerate(alerts[:kept])
        ],
    }


def _hmac_hex(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, *, timestamp: int) -> str:
    """The ``X-Urbansense-Signature`` value of ``body``: ``t=<timestamp>,v1=<hex>``.

    >>> sign(b'{}', "k", timestamp=1700000000)
    't=1700000000,v1=...'
    """
    return f"t={timestamp},v1={_hmac_hex(secret, timestamp, body)}"


def verify(
    body: bytes,
    header: str | None,
    secret: str | Sequence[str],
    *,
    now: float,
    tolerance: float = 300.0,
) -> int:
    """Check an ``X-Urbansense-Signature`` header, as a receiver of our webhooks does.

    Args:
        body: the raw request body, byte for byte as received (not re-encoded JSON).
        header: the header's value (None when it was missing).
        secret: the shared secret; several while rotating (any may match).
        now: the receiver's clock, Unix seconds.
        tolerance: the most seconds the signed timestamp may be from ``now``
            either way; older requests are refused as replays. Dedupe replays
            within the tolerance on ``X-Urbansense-Notification``.

    Returns:
        The signed timestamp.

    Raises:
        SignatureError: saying what is wrong (missing, malformed, stale, mismatch).
    """
    if not header:
        msg = f"no {SIGNATURE_HEADER} header"
        raise SignatureError(msg)
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and re.fullmatch(r"\d{1,12}", value):
            timestamp = int(value)
        elif name == "v1" and re.fullmatch(r"[0-9a-f]{64}", value):
            candidates.append(value)
    if timestamp is None or not candidates:
        msg = f"malformed {SIGNATURE_HEADER} header: expected t=<unix seconds>,v1=<64 hex digits>"
        raise SignatureError(msg)
    if abs(now - timestamp) > tolerance:
        msg = (
            f"timestamp {timestamp} is {abs(now - timestamp):.0f} s away from now"
            f" (tolerance {tolerance:.0f} s)"
        )
        raise SignatureError(msg)
    secrets = [secret] if isinstance(secret, str) else list(secret)
    for key in secrets:
        expected = _hmac_hex(key, timestamp, body)
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return timestamp
    msg = "signature does not match the body and secret"
    raise SignatureError(msg)


# ---------------------------------------------------------------- shared chat text


def _number(value: float) -> str:
    return f"{value:.6g}"


def _times(moment: datetime) -> str:
    local = moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    utc = moment.astimezone(UTC).strftime("%H:%M:%S UTC")
    return f"{local} 北京时间 ({utc})"


def _short(text: str, limit: int = _MAX_ANNOTATION_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status_word(state: AlertState) -> str:
    return "告警 FIRING" if state is AlertState.FIRING else "恢复 RESOLVED"


def _title(notification: Notification) -> str:
    firing, resolved = len(notification.firing), len(notification.resolved)
    counts = f"{firing} 条告警" if firing else f"{resolved} 条已恢复"
    if firing and resolved:
        counts += f", {resolved} 条已恢复"
    rules = sorted({a.rule_id for a in notification.alerts})
    what = rules[0] if len(rules) == 1 else f"{len(rules)} 条规则"
    return f"[{_status_word(notification.status)}] {what} · {counts}"


def _alert_block(alert: Alert, newline: str, *, colour: bool = False) -> str:
    severity = f"{_SEVERITY_ZH[alert.severity]} {alert.severity}"
    if colour:  # WeCom's three font colours: info green, comment grey, warning orange-red
        tone = "warning" if alert.state is AlertState.FIRING else "info"
        head = f'<font color="{tone}">**{_status_word(alert.state)}**</font>'
    else:
        head = f"**{_status_word(alert.state)}**"
    lines = [f"{head} · {severity} · 规则 rule: {alert.rule_id}"]
    subject = ", ".join(f"{k}={v}" for k, v in alert.subject.labels().items())
    lines.append(f"对象 subject: {subject}")
    if alert.value is not None or alert.threshold is not None:
        what = "/".join(str(part) for part in (alert.kind, alert.metric) if part)
        metric = f" ({what})" if what else ""
        value = _number(alert.value) if alert.value is not None else "-"
        threshold = _number(alert.threshold) if alert.threshold is not None else "-"
        lines.append(f"数值 value: {value} / 阈值 threshold: {threshold}{metric}")
    if alert.annotations.get("summary"):
        lines.append(f"摘要 summary: {_short(alert.annotations['summary'])}")
    if alert.annotations.get("description"):
        lines.append(f"描述 description: {_short(alert.annotations['description'])}")
    lines.append(f"开始 start: {_times(alert.starts_at)}")
    if alert.ends_at is not None:
        lines.append(f"结束 end: {_times(alert.ends_at)}")
    return newline.join(lines)


def _utf8_len(text: str) -> int:
    return len(text.encode())


def _cut_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character."""
    return text.encode()[:limit].decode(errors="ignore")


def _fit(head: str, blocks: Iterable[str], tail: str, separator: str, limit: int) -> str:
    """``head``, as many ``blocks`` as fit and ``tail``, within ``limit`` bytes.

    When blocks are left out, a note says how many.
    """
    blocks = list(blocks)
    for kept in range(len(blocks), -1, -1):
        parts = [head, *blocks[:kept]]
        if kept < len(blocks):
            parts.append(
                f"…… 另有 {len(blocks) - kept} 条未显示 ({len(blocks) - kept} more not shown)"
            )
        if tail:
            parts.append(tail)
        text = separator.join(parts)
        if _utf8_len(text) <= limit:
            return text
    return _cut_utf8(separator.join([head, tail]) if tail else head, limit)


def _link(external_url: str) -> str:
    return f"[查看详情 details]({external_url})" if external_url else ""


def _chat_text(
    notification: Notification, newline: str, limit: int, external_url: str, *, colour: bool
) -> str:
    head = f"### {_title(notification)}"
    if notification.group_labels:
        head += (
            newline
            + "分组 group: "
            + ", ".join(f"{k}={v}" for k, v in notification.group_labels.items())
        )
    blocks = [_alert_block(a, newline, colour=colour) for a in notification.alerts]
    return _fit(head, blocks, _link(external_url), newline * 2, limit)


# ---------------------------------------------------------------- DingTalk


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    r"""DingTalk's 加签: Base64(HMAC-SHA256(key=secret, msg=f"{timestamp_ms}\n{secret}")).

    Not yet URL-encoded; :func:`dingtalk_signed_url` does that.

    >>> dingtalk_sign("SECabc", 1700000000000)
    '...='
    """
    message = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _with_query(url: str, extra: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in extra]
    query.extend(extra.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """The robot URL with ``timestamp`` and the URL-encoded ``sign`` added to its query.

    >>> dingtalk_signed_url("https://oapi.dingtalk.com/robot/send?access_token=t", "SEC1", 1)
    'https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1&sign=...'
    """
    signature = dingtalk_sign(secret, timestamp_ms)
    return _with_query(url, {"timestamp": str(timestamp_ms), "sign": signature})


def dingtalk_message(
    notification: Notification, *, max_bytes: int = 0, external_url: str = ""
) -> dict[str, Any]:
    """DingTalk's markdown message: ``{"msgtype": "markdown", "markdown": {"title", "text"}}``.

    DingTalk's markdown breaks a line on two spaces and a newline.
    """
    limit = max_bytes or DINGTALK_MAX_BYTES
    text = _chat_text(notification, "  \n", limit, external_url, colour=False)
    return {"msgtype": "markdown", "markdown": {"title": _title(notification), "text": text}}


# ---------------------------------------------------------------- WeCom


def wecom_message(
    notification: Notification, *, max_bytes: int = 0, external_url: str = ""
) -> dict[str, Any]:
    """WeCom's markdown message: ``{"msgtype": "markdown", "markdown": {"content"}}``.

    The content stays within 4096 bytes (or ``max_bytes`` when smaller).
    """
    limit = min(max_bytes or WECOM_MAX_BYTES, WECOM_MAX_BYTES)
    content = _chat_text(notification, "\n", limit, external_url, colour=True)
    return {"msgtype": "markdown", "markdown": {"content": content}}


# ---------------------------------------------------------------- Feishu


def feishu_sign(secret: str, timestamp_s: int) -> str:
    r"""Feishu's 签名校验: Base64(HMAC-SHA256(key=f"{timestamp_s}\n{secret}", msg=b"")).

    >>> feishu_sign("abc", 1700000000)
    '...='
    """
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def feishu_message(
    notification: Notification,
    *,
    secret: str | None = None,
    timestamp_s: int = 0,
    max_bytes: int = 0,
    external_url: str = "",
) -> dict[str, Any]:
    """Feishu's interactive card, with ``timestamp`` and ``sign`` when there is a secret.

    The whole encoded body stays within 20 KB (or ``max_bytes`` when smaller).
    """
    limit = min(max_bytes or FEISHU_MAX_BYTES, FEISHU_MAX_BYTES)
    status = notification.status
    worst = max(notification.alerts, key=lambda a: list(Severity).index(a.severity)).severity
    template = _FEISHU_TEMPLATE[worst] if status is AlertState.FIRING else "green"
    budget = limit - 1024  # the card's frame, the signature and JSON escapes
    while True:
        text = _chat_text(notification, "\n", max(budget, 256), external_url, colour=False)
        payload: dict[str, Any] = {}
        if secret is not None:
            payload |= {"timestamp": str(timestamp_s), "sign": feishu_sign(secret, timestamp_s)}
        payload |= {
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": True},
                "header": {
                    "title": {"tag": "plain_text", "content": _title(notification)},
                    "template": template,
                },
                "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": text}}],
            },
        }
        if len(encode_json(payload)) <= limit or budget <= 256:
            return payload
        budget -= max(512, len(encode_json(payload)) - limit)


# ---------------------------------------------------------------- requests


def build_request(
    receiver: Receiver,
    notification: Notification,
    *,
    now: float,
    external_url: str = "",
    generator_url: str = "",
) -> OutgoingRequest:
    """The HTTP request that delivers ``notification`` to ``receiver`` at time ``now``.

    Args:
        receiver: where to; decides the format and the signature.
        notification: what.
        now: Unix seconds, for the signature's timestamp.
        external_url: link to the alert board, in every format.
        generator_url: per-alert link template of the webhook's ``generatorURL``.
    """
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": _USER_AGENT,
        NOTIFICATION_HEADER: notification.id,
    }
    secret = receiver.secret.get_secret_value() if receiver.secret is not None else None
    url = receiver.url
    payload: dict[str, Any]
    if receiver.type is ReceiverType.WEBHOOK:
        payload = webhook_payload(
            notification,
            external_url=external_url,
            generator_url=generator_url,
            max_alerts=receiver.max_alerts,
        )
        body = encode_json(payload)
        if secret is not None:
            headers[SIGNATURE_HEADER] = sign(body, secret, timestamp=int(now))
        return OutgoingRequest(url, headers, body)
    if receiver.type is ReceiverType.DINGTALK:
        payload = dingtalk_message(
            notification, max_bytes=receiver.max_bytes, external_url=external_url
        )
        if secret is not None:
            url = dingtalk_signed_url(url, secret, int(now * 1000))
    elif receiver.type is ReceiverType.WECOM:
        payload = wecom_message(
            notification, max_bytes=receiver.max_bytes, external_url=external_url
        )
    else:
        payload = feishu_message(
            notification,
            secret=secret,
            timestamp_s=int(now),
            max_bytes=receiver.max_bytes,
            external_url=external_url,
        )
    return OutgoingRequest(url, headers, encode_json(payload))

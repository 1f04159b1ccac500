"""The receivers' payloads and signatures (rules.notify): pure, checked against the formats.

The webhook body is compared key by key with Prometheus Alertmanager's v4 webhook
shape; the DingTalk and Feishu signatures are recomputed here exactly as those
platforms' documentation computes them; size limits are checked on oversize groups.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from rules.notify import (
    FEISHU_MAX_BYTES,
    GO_ZERO_TIME,
    NOTIFICATION_HEADER,
    SIGNATURE_HEADER,
    WECOM_MAX_BYTES,
    SignatureError,
    build_request,
    dingtalk_message,
    dingtalk_sign,
    dingtalk_signed_url,
    encode_json,
    feishu_message,
    feishu_sign,
    sign,
    verify,
    webhook_payload,
    wecom_message,
)
from rules.routing import Notification, Receiver, ReceiverType
from telemetry.catalogue import Kind
from telemetry.models import Alert, AlertState, AlertSubject, Severity

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
NOW = 1_795_000_000


def make_alert(
    site: str = "st-1",
    *,
    rule_id: str = "aqi-heavy",
    state: AlertState = AlertState.FIRING,
    severity: Severity = Severity.CRITICAL,
    description: str = "",
    labels: dict[str, str] | None = None,
) -> Alert:
    annotations = {"summary": f"重度污染 AQI 231 at {site}"}
    if description:
        annotations["description"] = description
    return Alert.create(
        rule_id=rule_id,
        subject=AlertSubject(site_id=site, district_id="lakeside"),
        severity=severity,
        state=state,
        kind=Kind.POLLUTION,
        metric="aqi",
        value=231.0,
        threshold=200.0,
        starts_at=T0,
        ends_at=T0 + timedelta(minutes=45) if state is AlertState.RESOLVED else None,
        labels=labels if labels is not None else {"team": "env"},
        annotations=annotations,
    )


def make_notification(*alerts: Alert, receiver: str = "ops") -> Notification:
    return Notification(
        id="ab" * 16,
        receiver=receiver,
        group_key='{}:{district_id="lakeside"}',
        group_labels={"district_id": "lakeside"},
        seq=1,
        at=T0,
        alerts=alerts or (make_alert(),),
    )


# ================================================================ webhook body


def test_the_webhook_body_has_exactly_alertmanagers_v4_keys() -> None:
    body = webhook_payload(make_notification(), external_url="https://grafana.example")
    assert set(body) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert body["version"] == "4"
    assert body["groupKey"] == '{}:{district_id="lakeside"}'
    assert body["truncatedAlerts"] == 0
    assert body["status"] == "firing"
    assert body["receiver"] == "ops"
    assert body["externalURL"] == "https://grafana.example"
    [alert] = body["alerts"]
    assert set(alert) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert alert["status"] == "firing"
    assert alert["startsAt"] == "2026-11-22T08:00:00Z"
    assert alert["endsAt"] == GO_ZERO_TIME
    assert alert["labels"]["alertname"] == "aqi-heavy"
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["district_id"] == "lakeside"
    assert alert["annotations"]["value"] == "231"
    assert alert["annotations"]["threshold"] == "200"
    assert len(alert["fingerprint"]) == 16


def test_a_resolved_alert_has_its_end_time_and_the_group_resolves_only_when_all_do() -> None:
    resolved = make_alert("st-1", state=AlertState.RESOLVED)
    body = webhook_payload(make_notification(resolved))
    assert body["status"] == "resolved"
    assert body["alerts"][0]["endsAt"] == "2026-11-22T08:45:00Z"
    mixed = webhook_payload(make_notification(make_alert("st-2"), resolved))
    assert mixed["status"] == "firing"
    assert [a["status"] for a in mixed["alerts"]] == ["firing", "resolved"]


def test_common_labels_and_annotations_are_those_every_alert_shares() -> None:
    body = webhook_payload(make_notification(make_alert("st-1"), make_alert("st-2")))
    assert body["commonLabels"]["district_id"] == "lakeside"
    assert body["commonLabels"]["team"] == "env"
    assert "site_id" not in body["commonLabels"]
    assert "summary" not in body["commonAnnotations"]  # differs per site
    assert body["commonAnnotations"]["threshold"] == "200"


def test_max_alerts_truncates_and_counts_what_was_left_out() -> None:
    alerts = tuple(make_alert(f"st-{i}") for i in range(5))
    body = webhook_payload(make_notification(*alerts), max_alerts=2)
    assert len(body["alerts"]) == 2
    assert body["truncatedAlerts"] == 3


def test_generator_url_is_filled_per_alert() -> None:
    alert = make_alert()
    body = webhook_payload(
        make_notification(alert),
        generator_url="https://g.example/d/a?rule={rule_id}&fp={fingerprint}",
    )
    assert body["alerts"][0]["generatorURL"] == (
        f"https://g.example/d/a?rule=aqi-heavy&fp={alert.fingerprint}"
    )


def test_chinese_text_is_sent_as_utf8_not_escaped() -> None:
    body = encode_json(webhook_payload(make_notification()))
    assert "重度污染".encode() in body
    assert json.loads(body)["alerts"][0]["annotations"]["summary"].startswith("重度污染")


# ================================================================ webhook signature


def test_a_signature_verifies_and_names_its_timestamp() -> None:
    body = encode_json(webhook_payload(make_notification()))
    header = sign(body, "s3cret", timestamp=NOW)
    assert header.startswith(f"t={NOW},v1=")
    expected = hmac.new(b"s3cret", f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"
    assert verify(body, header, "s3cret", now=NOW + 299) == NOW


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": b'{"tampered":true}'}, "does not match"),
        ({"secret": "other"}, "does not match"),
        ({"now": NOW + 301}, "away from now"),
        ({"now": NOW - 301}, "away from now"),  # a timestamp from the future
        ({"header": None}, "no X-Urbansense-Signature"),
        ({"header": "v1=abc"}, "malformed"),
        ({"header": f"t={NOW},v1=zz"}, "malformed"),
    ],
)
def test_a_signature_is_refused_with_the_reason(change: dict[str, Any], reason: str) -> None:
    body = encode_json(webhook_payload(make_notification()))
    arguments: dict[str, Any] = {
        "body": body,
        "header": sign(body, "s3cret", timestamp=NOW),
        "secret": "s3cret",
        "now": NOW,
    }
    arguments |= change
    with pytest.raises(SignatureError, match=reason):
        verify(arguments["body"], arguments["header"], arguments["secret"], now=arguments["now"])


def test_during_a_secret_rotation_either_secret_verifies() -> None:
    body = b"{}"
    old = sign(body, "old", timestamp=NOW)
    new_value = sign(body, "new", timestamp=NOW).split("v1=")[1]
    both = f"{old},v1={new_value}"
    assert verify(body, both, ["new"], now=NOW) == NOW
    assert verify(body, old, ["new", "old"], now=NOW) == NOW


def test_the_webhook_request_carries_signature_and_notification_id() -> None:
    receiver = Receiver(
        name="ops",
        type=ReceiverType.WEBHOOK,
        url="https://ops.example/hook",
        secret=SecretStr("s3cret"),
    )
    notification = make_notification()
    request = build_request(receiver, notification, now=NOW + 0.7)
    assert request.url == "https://ops.example/hook"
    assert request.headers[NOTIFICATION_HEADER] == notification.id
    assert request.headers["Content-Type"].startswith("application/json")
    assert verify(request.body, request.headers[SIGNATURE_HEADER], "s3cret", now=NOW) == NOW
    unsigned = build_request(receiver.model_copy(update={"secret": None}), notification, now=NOW)
    assert SIGNATURE_HEADER not in unsigned.headers


# ================================================================ DingTalk


def dingtalk_reference_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk's documented Python sample (加签), unchanged but for the names."""
    secret_enc = secret.encode("utf-8")
    string_to_sign = f"{timestamp_ms}\n{secret}"
    hmac_code = hmac.new(secret_enc, string_to_sign.encode("utf-8"), digestmod=hashlib.sha256)
    return urllib.parse.quote_plus(base64.b64encode(hmac_code.digest()))


def test_dingtalk_signature_is_the_documented_one() -> None:
    secret = "SEC0123456789abcdef"  # noqa: S105 -- a test key
    timestamp_ms = NOW * 1000 + 123
    assert urllib.parse.quote_plus(dingtalk_sign(secret, timestamp_ms)) == (
        dingtalk_reference_sign(secret, str(timestamp_ms))
    )
    url = dingtalk_signed_url(
        "https://oapi.dingtalk.com/robot/send?access_token=tok", secret, timestamp_ms
    )
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query == {
        "access_token": "tok",
        "timestamp": str(timestamp_ms),
        "sign": dingtalk_sign(secret, timestamp_ms),
    }
    raw_sign = url.split("sign=")[1]
    assert raw_sign == dingtalk_reference_sign(secret, str(timestamp_ms))  # URL-encoded once


def test_dingtalk_markdown_names_severity_rule_subject_value_and_both_times() -> None:
    message = dingtalk_message(make_notification(make_alert(description="站点 PM2.5 持续升高")))
    assert message["msgtype"] == "markdown"
    title, text = message["markdown"]["title"], message["markdown"]["text"]
    assert "aqi-heavy" in title
    assert "告警 FIRING" in title
    for expected in (
        "严重 critical",
        "site_id=st-1",
        "数值 value: 231",
        "阈值 threshold: 200",
        "摘要 summary: 重度污染",
        "描述 description: 站点 PM2.5",
        "2026-11-22 16:00:00 北京时间 (08:00:00 UTC)",
    ):
        assert expected in text
    assert "  \n" in text  # DingTalk's markdown line break


def test_a_resolved_chat_message_says_so_with_its_end_time() -> None:
    message = dingtalk_message(make_notification(make_alert(state=AlertState.RESOLVED)))
    text = message["markdown"]["text"]
    assert "恢复 RESOLVED" in message["markdown"]["title"]
    assert "结束 end: 2026-11-22 16:45:00 北京时间 (08:45:00 UTC)" in text


def test_the_dingtalk_request_is_signed_in_its_url() -> None:
    receiver = Receiver(
        name="env",
        type=ReceiverType.DINGTALK,
        url="https://oapi.dingtalk.com/robot/send?access_token=tok",
        secret=SecretStr("SECabc"),
    )
    request = build_request(receiver, make_notification(), now=NOW + 0.5)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
    assert query["timestamp"] == str(NOW * 1000 + 500)
    assert query["sign"] == dingtalk_sign("SECabc", NOW * 1000 + 500)
    assert json.loads(request.body)["msgtype"] == "markdown"


# ================================================================ WeCom


def test_wecom_markdown_stays_within_4096_bytes_and_says_what_was_cut() -> None:
    alerts = tuple(make_alert(f"st-{i}", description="描述" * 200) for i in range(40))
    message = wecom_message(make_notification(*alerts))
    assert message["msgtype"] == "markdown"
    content = message["markdown"]["content"]
    assert len(content.encode()) <= WECOM_MAX_BYTES
    assert "more not shown" in content
    shown = content.count("规则 rule:")
    assert 1 <= shown < 40
    assert f"另有 {40 - shown} 条未显示" in content
    assert '<font color="warning">' in content


def test_a_short_wecom_message_is_complete() -> None:
    content = wecom_message(make_notification(make_alert("st-1"), make_alert("st-2")))["markdown"][
        "content"
    ]
    assert content.count("规则 rule:") == 2
    assert "not shown" not in content


def test_wecom_takes_no_secret() -> None:
    with pytest.raises(ValueError, match="WeCom group robot has no signature"):
        Receiver(
            name="w", type=ReceiverType.WECOM, url="https://qyapi.example/x", secret=SecretStr("s")
        )


# ================================================================ Feishu


def feishu_reference_sign(timestamp: str, secret: str) -> str:
    """Feishu's documented Python sample (签名校验): the key is timestamp + "\\n" + secret."""
    string_to_sign = f"{timestamp}\n{secret}"
    hmac_code = hmac.new(string_to_sign.encode("utf-8"), digestmod=hashlib.sha256).digest()
    return base64.b64encode(hmac_code).decode("utf-8")


def test_feishu_signature_is_the_documented_one() -> None:
    assert feishu_sign("abc", NOW) == feishu_reference_sign(str(NOW), "abc")


def test_feishu_card_is_signed_in_the_body_and_coloured_by_severity() -> None:
    message = feishu_message(
        make_notification(make_alert(severity=Severity.WARNING)),
        secret="abc",  # noqa: S106 -- a test key
        timestamp_s=NOW,
    )
    assert message["timestamp"] == str(NOW)
    assert message["sign"] == feishu_reference_sign(str(NOW), "abc")
    assert message["msg_type"] == "interactive"
    card = message["card"]
    assert card["header"]["template"] == "orange"
    assert "aqi-heavy" in card["header"]["title"]["content"]
    text = card["elements"][0]["text"]
    assert text["tag"] == "lark_md"
    assert "北京时间" in text["content"]
    resolved = feishu_message(make_notification(make_alert(state=AlertState.RESOLVED)))
    assert resolved["card"]["header"]["template"] == "green"
    assert "sign" not in resolved


def test_a_feishu_body_stays_within_20_kb() -> None:
    alerts = tuple(make_alert(f"st-{i}", description="描述" * 300) for i in range(80))
    request = build_request(
        Receiver(name="f", type=ReceiverType.FEISHU, url="https://open.feishu.example/hook/x"),
        make_notification(*alerts),
        now=NOW,
    )
    assert len(request.body) <= FEISHU_MAX_BYTES
    assert "more not shown" in request.body.decode()


def test_a_receiver_max_bytes_lowers_the_limit() -> None:
    alerts = tuple(make_alert(f"st-{i}") for i in range(10))
    message = dingtalk_message(make_notification(*alerts), max_bytes=1500)
    assert len(message["markdown"]["text"].encode()) <= 1500
    assert "not shown" in message["markdown"]["text"]

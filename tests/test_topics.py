"""The topic scheme: build, parse, and refuse what would break MQTT."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry import (
    Channel,
    InvalidIdError,
    Kind,
    TopicError,
    alert_topic,
    alerts_filter,
    parse_topic,
    readings_filter,
    readings_topic,
    status_filter,
    status_topic,
)

valid_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", fullmatch=True)


@given(valid_ids)
def test_gateway_topics_round_trip(gateway_id: str) -> None:
    if gateway_id == "alerts":
        return
    assert parse_topic(readings_topic(gateway_id)).gateway_id == gateway_id
    assert parse_topic(readings_topic(gateway_id)).channel is Channel.READINGS
    assert parse_topic(status_topic(gateway_id)).channel is Channel.STATUS


@pytest.mark.parametrize("kind", [*Kind, "system"])
def test_alert_topics_round_trip(kind: str) -> None:
    topic = alert_topic(kind)
    assert topic == f"urbansense/v1/alerts/{kind}"
    parsed = parse_topic(topic)
    assert (parsed.channel, parsed.alert_kind, parsed.gateway_id) == (Channel.ALERTS, kind, None)


@pytest.mark.parametrize(
    ("gateway_id", "problem"),
    [
        ("gw+1", "MQTT single-level wildcard"),
        ("gw#", "MQTT multi-level wildcard"),
        ("site/gw", "topic level separator"),
        ("gw\x00", "NUL"),
        ("g" * 65, "65 characters long, more than the 64 allowed"),
        ("", "is empty"),
        ("-gw", "must start with a letter or digit"),
        ("gw 1", "only ASCII letters"),
        ("网关1", "only ASCII letters"),
        ("alerts", "reserved topic level"),
    ],
)
def test_bad_gateway_ids_are_refused_with_the_reason(gateway_id: str, problem: str) -> None:
    for build in (readings_topic, status_topic):
        with pytest.raises(InvalidIdError, match="invalid gateway id") as caught:
            build(gateway_id)
        assert problem in str(caught.value)
        assert caught.value.value == gateway_id


@given(st.text(min_size=1, max_size=80))
def test_any_text_is_either_a_valid_id_or_refused(text: str) -> None:
    try:
        topic = readings_topic(text)
    except InvalidIdError:
        return
    assert not set(text) & {"+", "#", "/", "\x00"}
    assert len(text) <= 64
    assert parse_topic(topic).gateway_id == text


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("urbansense/v2/gw-1/readings", "is not under 'urbansense/v1/'"),
        ("urbansense/v1/gw-1/readings/extra", "should have 2 levels"),
        ("urbansense/v1/gw-1", "should have 2 levels"),
        ("urbansense/v1/gw-1/config", "unknown channel 'config'"),
        ("urbansense/v1/gw+/readings", "MQTT single-level wildcard"),
        ("urbansense/v1/alerts/noise", "unknown alert kind 'noise'"),
    ],
)
def test_foreign_topics_do_not_parse(topic: str, message: str) -> None:
    with pytest.raises(TopicError, match=message.replace("+", r"\+")):
        parse_topic(topic)


def test_unknown_alert_kind_is_refused_when_building() -> None:
    with pytest.raises(TopicError, match="unknown alert kind"):
        alert_topic("noise")


def test_subscription_filters() -> None:
    assert readings_filter() == "urbansense/v1/+/readings"
    assert status_filter() == "urbansense/v1/+/status"
    assert alerts_filter() == "urbansense/v1/alerts/#"
    assert status_filter(share_group="bridge-1") == "$share/bridge-1/urbansense/v1/+/status"
    with pytest.raises(InvalidIdError, match="shared subscription group"):
        readings_filter(share_group="a/b")

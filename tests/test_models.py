"""Status and alert messages, and the reading model used directly (not through JSON)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from telemetry import (
    Alert,
    AlertState,
    AlertSubject,
    Codec,
    DecodeError,
    GatewayState,
    GatewayStatus,
    Kind,
    QualityFlag,
    Reading,
    RejectReason,
    Severity,
    alert_fingerprint,
)
from tests.wire import NOW

CODEC = Codec(clock=lambda: NOW)


def firing(**overrides: object) -> Alert:
    fields: dict[str, object] = {
        "severity": Severity.CRITICAL,
        "state": AlertState.FIRING,
        "kind": Kind.POLLUTION,
        "metric": "aqi",
        "value": 236.0,
        "threshold": 200.0,
        "starts_at": NOW,
        "labels": {"district": "lakeside"},
        "annotations": {"summary": "Heavy pollution at Lakeside station (AQI 236)"},
    }
    fields.update(overrides)
    return Alert.create(rule_id="aqi-heavy", subject=AlertSubject(site_id="st-lakeside"), **fields)


def test_status_round_trips_through_the_codec() -> None:
    status = GatewayStatus(
        gateway_id="gw-lakeside-01",
        state=GatewayState.ONLINE,
        ts=NOW,
        agent_version="0.1.0",
        buffer_depth=120,
        dropped_total=0,
        uptime_s=3600.5,
        last_error="modbus timeout on em-01",
    )
    assert CODEC.decode_status(CODEC.encode(status)) == status


def test_last_will_status_is_small() -> None:
    will = GatewayStatus(
        gateway_id="gw-1", state=GatewayState.OFFLINE, ts=NOW, agent_version="0.1.0"
    )
    payload = CODEC.encode(will)
    assert len(payload) < 120
    assert CODEC.decode_status(payload).state is GatewayState.OFFLINE


def test_status_rejections_name_the_field() -> None:
    with pytest.raises(DecodeError) as caught:
        CODEC.decode_status(
            b'{"gateway_id": "gw-1", "state": "sleeping", "ts": "2026-11-22T08:00:00Z",'
            b' "agent_version": "0.1.0", "buffer_depth": -3}'
        )
    found = {(p.reason, p.field) for p in caught.value.problems}
    assert found == {
        (RejectReason.INVALID_VALUE, "state"),
        (RejectReason.OUT_OF_RANGE, "buffer_depth"),
    }


def test_alert_round_trips_and_resolves() -> None:
    alert = firing()
    assert CODEC.decode_alert(CODEC.encode(alert)) == alert
    resolved = alert.model_copy(
        update={"state": AlertState.RESOLVED, "ends_at": NOW + timedelta(hours=2)}
    )
    resolved = Alert.model_validate(resolved.model_dump())
    assert resolved.fingerprint == alert.fingerprint
    assert CODEC.decode_alert(CODEC.encode(resolved)) == resolved


def test_fingerprint_depends_on_rule_and_subject_only() -> None:
    a = firing()
    b = firing(value=300.0, severity=Severity.WARNING, labels={})
    assert a.fingerprint == b.fingerprint
    other_site = alert_fingerprint("aqi-heavy", AlertSubject(site_id="st-hillside"))
    other_rule = alert_fingerprint("aqi-severe", AlertSubject(site_id="st-lakeside"))
    assert len({a.fingerprint, other_site, other_rule}) == 3


def test_fingerprint_is_stable_across_releases() -> None:
    # Changing this value would make every open alert fire again after an upgrade.
    assert alert_fingerprint("aqi-heavy", AlertSubject(site_id="st-lakeside")) == "b86b205a74239122"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"state": AlertState.RESOLVED}, "ends_at", "a resolved alert needs ends_at"),
        ({"ends_at": NOW}, "ends_at", "a firing alert has no ends_at"),
        (
            {"state": AlertState.RESOLVED, "ends_at": NOW - timedelta(minutes=1)},
            "ends_at",
            "is before starts_at",
        ),
        ({"fingerprint": "0" * 16}, "fingerprint", "does not match rule and subject"),
    ],
)
def test_inconsistent_alerts_are_refused(
    change: dict[str, object], field: str, message: str
) -> None:
    data = firing().model_dump(mode="json") | change
    with pytest.raises(DecodeError) as caught:
        CODEC.decode_alert(json.dumps(data, default=str).encode())
    assert caught.value.field == field
    assert message in str(caught.value)


def test_alert_subject_must_name_something() -> None:
    with pytest.raises(ValidationError, match="names at least one of sensor_id"):
        AlertSubject()


def test_reading_converts_any_zone_to_utc_and_refuses_naive_time() -> None:
    ts = datetime(2026, 11, 22, 16, 0, tzinfo=timezone(timedelta(hours=8)))
    reading = Reading(
        sensor_id="aq-1",
        kind=Kind.POLLUTION,
        ts=ts,
        seq=0,
        metrics={"pm2_5": 1.0},
        quality=frozenset({QualityFlag.BACKFILLED}),
    )
    assert reading.ts == datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    assert reading.key == ("aq-1", 0)
    with pytest.raises(ValidationError, match="timezone"):
        Reading(
            sensor_id="aq-1",
            kind=Kind.POLLUTION,
            ts=datetime(2026, 11, 22),  # noqa: DTZ001 - naive on purpose
            seq=0,
            metrics={"pm2_5": 1.0},
        )


def test_models_are_immutable() -> None:
    alert = firing()
    with pytest.raises(ValidationError, match="frozen"):
        alert.value = 1.0  # type: ignore[misc]

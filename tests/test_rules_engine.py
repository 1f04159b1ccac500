"""The rule engine: every lifecycle path, windows, absence, replays, and state round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rules.engine import RuleEngine, Sample
from rules.load import load_default_rules, parse_rules
from rules.model import RuleSet, resolve_index
from telemetry import Alert, AlertState, AlertSubject, Kind, alert_fingerprint
from telemetry.registry import load_example_registry

T0 = datetime(2024, 11, 8, 2, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def rules(body: str, utc_offset_h: float = 8) -> RuleSet:
    return parse_rules(f"version: 1\nutc_offset_h: {utc_offset_h}\nrules:\n{body}")


def pm(minute: float, value: float, sensor: str = "aq-1", **extra: Any) -> Sample:
    fields: dict[str, Any] = {"site": "st-1", "district": "lakeside", **extra}
    return Sample("pollution", "pm2_5", value, at(minute), sensor=sensor, **fields)


def states(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(a.rule_id, a.state.value) for a in alerts]


def run(engine: RuleEngine, samples: list[Sample]) -> list[Alert]:
    """Feed samples one batch each, as a stream would, collecting the transitions."""
    out: list[Alert] = []
    for sample in samples:
        out += engine.evaluate([sample])
    return out


PM_RULE = """\
  - id: pm-high
    severity: warning
    select: {kind: pollution, metric: pm2_5}
    threshold: {above: 75}
    clear: {below: 50}
    for: 10m
    annotations:
      summary: "PM2.5 {value} above {threshold} at {site_name} ({subject})"
"""


# ---------------------------------------------------------------- lifecycle


def test_pending_that_does_not_last_never_fires() -> None:
    engine = RuleEngine(rules(PM_RULE))
    alerts = run(engine, [pm(0, 80), pm(5, 90), pm(9, 60), pm(12, 90), pm(20, 40)])
    assert alerts == []  # 60 is in the hysteresis band: not firing, so pending ends


def test_fires_once_the_condition_held_for_its_duration() -> None:
    engine = RuleEngine(rules(PM_RULE))
    assert run(engine, [pm(0, 80), pm(5, 90)]) == []
    [alert] = run(engine, [pm(10, 85)])
    assert (alert.state, alert.rule_id, alert.value, alert.threshold) == (
        AlertState.FIRING,
        "pm-high",
        85.0,
        75.0,
    )
    assert alert.starts_at == at(0)  # when the condition began to hold
    assert alert.ends_at is None
    assert alert.subject == AlertSubject(sensor_id="aq-1", site_id="st-1", district_id="lakeside")
    assert alert.fingerprint == alert_fingerprint("pm-high", alert.subject)
    assert (alert.kind, alert.metric) == (Kind.POLLUTION, "pm2_5")
    assert alert.annotations["summary"] == (
        "PM2.5 85 above 75 at st-1 (sensor=aq-1 site=st-1 district=lakeside)"
    )
    assert run(engine, [pm(11, 95), pm(12, 99)]) == []  # firing already: no repeat


def test_hysteresis_holds_between_the_bounds_and_resolves_below_clear() -> None:
    engine = RuleEngine(rules(PM_RULE))
    run(engine, [pm(0, 80), pm(10, 80)])
    assert run(engine, [pm(11, 70), pm(12, 55), pm(13, 50)]) == []  # 50 is not below 50
    [resolved] = run(engine, [pm(14, 49)])
    assert resolved.state is AlertState.RESOLVED
    assert (resolved.starts_at, resolved.ends_at, resolved.value) == (at(0), at(14), 49.0)
    assert run(engine, [pm(15, 30), pm(16, 20)]) == []  # resolved once


def test_default_clear_is_the_negated_condition() -> None:
    engine = RuleEngine(
        rules(
            "  - id: r\n    severity: info\n    select: {kind: pollution, metric: pm2_5}\n"
            "    threshold: {above: 75}\n"
        )
    )
    assert states(run(engine, [pm(0, 76)])) == [("r", "firing")]
    assert run(engine, [pm(1, 75.5)]) == []
    assert states(run(engine, [pm(2, 75)])) == [("r", "resolved")]
    assert states(run(engine, [pm(3, 80)])) == [("r", "firing")]  # a new episode


def test_keep_firing_for_needs_the_clear_condition_to_last() -> None:
    engine = RuleEngine(rules(PM_RULE + "    keep_firing_for: 10m\n"))
    run(engine, [pm(0, 80), pm(10, 80)])
    assert run(engine, [pm(11, 40), pm(15, 40)]) == []
    assert run(engine, [pm(16, 90), pm(17, 40), pm(26, 40)]) == []  # 90 restarted the wait
    [resolved] = run(engine, [pm(27, 40)])
    assert resolved.state is AlertState.RESOLVED
    assert resolved.ends_at == at(17)  # when the clear condition began to hold


def test_keep_firing_for_resolves_on_event_time_without_samples() -> None:
    engine = RuleEngine(rules(PM_RULE + "    keep_firing_for: 10m\n"))
    run(engine, [pm(0, 80), pm(10, 80), pm(11, 40)])
    assert engine.check_absence(at(20)) == []
    [resolved] = engine.check_absence(at(21))
    assert (resolved.state, resolved.ends_at) == (AlertState.RESOLVED, at(11))
    assert engine.check_absence(at(30)) == []


# ---------------------------------------------------------------- replays and order


def test_a_replay_never_fires_twice_nor_changes_state() -> None:
    history = [pm(0, 80), pm(10, 85), pm(20, 30)]
    engine = RuleEngine(rules(PM_RULE))
    assert states(run(engine, history)) == [("pm-high", "firing"), ("pm-high", "resolved")]
    before = {key: engine.snapshot(key) for key in engine.state_keys()}
    assert run(engine, history) == []
    assert engine.evaluate(history) == []
    assert {key: engine.snapshot(key) for key in engine.state_keys()} == before
    assert engine.stats.stale >= 4  # the firing values were seen, and refused as old
    # a replay while firing does not resolve or re-fire either
    engine = RuleEngine(rules(PM_RULE))
    run(engine, history[:2])
    assert run(engine, [pm(0, 10), pm(5, 10), pm(10, 85)]) == []
    assert states(run(engine, [pm(21, 30)])) == [("pm-high", "resolved")]


def test_samples_of_one_batch_in_any_order() -> None:
    engine = RuleEngine(rules(PM_RULE))
    alerts = engine.evaluate([pm(10, 85), pm(0, 80), pm(20, 30)])
    assert states(alerts) == [("pm-high", "firing"), ("pm-high", "resolved")]


def test_samples_at_one_time_merge_to_the_worst() -> None:
    """Two directions of a segment, or two metrics of a reading, meet one state."""
    body = (
        "  - id: tpi\n    severity: warning\n    select: {index: tpi}\n"
        "    threshold: {at_least: 8}\n    clear: {below: 6}\n"
    )
    engine = RuleEngine(rules(body))

    def tpi(minute: float, value: float, direction: str) -> Sample:
        return Sample(
            "traffic_index",
            "tpi",
            value,
            at(minute),
            segment="seg-1",
            district="lakeside",
            labels={"direction": direction},
        )

    # one batch: the better direction first, no flap
    assert states(engine.evaluate([tpi(0, 3, "nb"), tpi(0, 9, "sb")])) == [("tpi", "firing")]
    # across batches: a better sample at the same time neither clears nor repeats
    assert engine.evaluate([tpi(1, 9, "sb")]) == []
    assert engine.evaluate([tpi(1, 2, "nb")]) == []
    # a worse sample at the same time escalates (from inactive to firing)
    engine = RuleEngine(rules(body))
    assert engine.evaluate([tpi(0, 3, "nb")]) == []
    assert states(engine.evaluate([tpi(0, 9, "sb")])) == [("tpi", "firing")]


# ---------------------------------------------------------------- conditions


def test_rolling_mean_over_a_window() -> None:
    body = (
        "  - id: pm-mean\n    severity: info\n    select: {kind: pollution, metric: pm2_5}\n"
        "    threshold: {above: 50, aggregate: mean, window: 10m, min_samples: 2}\n"
    )
    engine = RuleEngine(rules(body))
    assert run(engine, [pm(0, 200)]) == []  # one value is not enough
    [alert] = run(engine, [pm(5, 20)])  # mean of 200 and 20
    assert alert.value == pytest.approx(110.0)
    assert run(engine, [pm(9, 20)]) == []  # mean 80
    [resolved] = run(engine, [pm(10, 20)])  # the 200 left the window: mean 20
    assert resolved.state is AlertState.RESOLVED
    assert resolved.value == pytest.approx(20.0)


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [("max", 9.0), ("min", 0.0), ("p95", 9.0), ("p50", 4.0), ("mean", 4.5)],
)
def test_aggregates(aggregate: str, expected: float) -> None:
    body = (
        "  - id: agg\n    severity: info\n    select: {kind: pollution, metric: pm2_5}\n"
        f"    threshold: {{at_least: -1, aggregate: {aggregate}, window: 1h, min_samples: 10}}\n"
    )
    engine = RuleEngine(rules(body))
    [alert] = engine.evaluate([pm(i, float(i)) for i in (5, 3, 0, 9, 1, 8, 2, 7, 4, 6)])
    assert alert.starts_at == at(9)  # the tenth sample, in time order
    assert alert.value == pytest.approx(expected)


def test_rate_of_change_per_minute() -> None:
    body = (
        "  - id: pm-rise\n    severity: warning\n    select: {kind: pollution, metric: pm2_5}\n"
        "    rate_of_change: {above: 5, per: minute, window: 10m}\n    clear: {below: 1}\n"
    )
    engine = RuleEngine(rules(body))
    assert run(engine, [pm(0, 10), pm(5, 30)]) == []  # 4 per minute
    # the window is (now - 10m, now]: the value at minute 0 has left it at minute 10
    [alert] = run(engine, [pm(10, 70)])  # (70 - 30) / 5 min = 8 per minute
    assert alert.value == pytest.approx(8.0)
    assert run(engine, [pm(15, 80)]) == []  # (80 - 70) / 5 = 2: in the band
    [resolved] = run(engine, [pm(20, 81)])  # (81 - 80) / 5 = 0.2
    assert resolved.state is AlertState.RESOLVED


def test_anomaly_score_by_detector_with_its_explanation() -> None:
    body = (
        "  - id: stuck\n    severity: warning\n    select: {}\n"
        "    anomaly: {min_score: 0.5, detector: stuck}\n    clear: {below: 0.2}\n"
        "    annotations: {summary: '{sensor} {metric} stuck at {sample_value}: {explanation}'}\n"
    )
    engine = RuleEngine(rules(body))

    def scored(minute: float, score: float | None, detector: str = "stuck") -> Sample:
        return pm(minute, 12.0, score=score, detector=detector, explanation="same value 40 times")

    assert run(engine, [pm(0, 12.0), scored(1, 0.9, "seasonal"), scored(2, 0.4)]) == []
    [alert] = run(engine, [scored(3, 0.9)])
    assert alert.annotations["summary"] == "aq-1 pm2_5 stuck at 12: same value 40 times"
    assert run(engine, [scored(4, 0.3)]) == []
    assert states(run(engine, [scored(5, 0.1)])) == [("stuck", "resolved")]


def test_during_hours_count_as_clear_outside() -> None:
    body = (
        "  - id: night\n    severity: info\n    select: {index: power_ratio}\n"
        "    threshold: {at_least: 2}\n    during: {from: '22:00', to: '06:00'}\n"
    )
    engine = RuleEngine(rules(body, utc_offset_h=8))

    def ratio(hour_local: int, value: float) -> Sample:
        ts = datetime(2024, 11, 8, hour_local, tzinfo=UTC) - timedelta(hours=8)
        return Sample("energy_use", "power_ratio", value, ts, building="bldg-1", district="d")

    assert run(engine, [ratio(14, 3.0)]) == []  # daytime
    assert states(run(engine, [ratio(23, 3.0)])) == [("night", "firing")]
    morning = Sample(
        "energy_use",
        "power_ratio",
        3.0,
        datetime(2024, 11, 8, 22, tzinfo=UTC),
        building="bldg-1",
        district="d",
    )  # 06:00 local the next morning: day again, the condition counts as clear
    assert states(engine.evaluate([morning])) == [("night", "resolved")]


def test_stale_series_resolve() -> None:
    body = (
        "  - id: hot\n    severity: warning\n"
        "    select: {kind: hotspot, metric: peer_z, labels: {kind: pollution}}\n"
        "    threshold: {at_least: 3.5}\n    stale_after: 12m\n"
    )
    engine = RuleEngine(rules(body))

    def hot(minute: float, z: float, kind: str = "pollution") -> Sample:
        return Sample(
            "hotspot", "peer_z", z, at(minute), site="st-1", district="d", labels={"kind": kind}
        )

    assert run(engine, [hot(0, 9.0, kind="energy")]) == []  # another ranking
    assert states(run(engine, [hot(0, 5.0)])) == [("hot", "firing")]
    assert engine.check_absence(at(11)) == []
    [resolved] = engine.check_absence(at(12))
    assert (resolved.state, resolved.ends_at) == (AlertState.RESOLVED, at(12))


def test_selection_by_subject_ids_and_presence() -> None:
    body = (
        "  - id: seg\n    severity: info\n    select: {index: tpi, subject: segment}\n"
        "    threshold: {at_least: 8}\n"
        "  - id: old-town\n    severity: info\n    select: {index: tpi, district: [old-town]}\n"
        "    threshold: {at_least: 8}\n"
    )
    engine = RuleEngine(rules(body))
    district_tpi = Sample("traffic_index", "tpi", 9.0, at(0), district="lakeside")
    segment_tpi = Sample("traffic_index", "tpi", 9.0, at(0), segment="s1", district="old-town")
    assert engine.evaluate([district_tpi]) == []
    assert states(engine.evaluate([segment_tpi])) == [("seg", "firing"), ("old-town", "firing")]


def test_a_subject_without_ids_is_counted_not_fatal() -> None:
    engine = RuleEngine(rules(PM_RULE))
    assert engine.evaluate([Sample("pollution", "pm2_5", 99.0, at(0))]) == []
    assert engine.evaluate([pm(0, 99.0, sensor="bad/id")]) == []
    assert engine.stats.unusable == 2


# ---------------------------------------------------------------- absence

ABSENCE = """\
  - id: gw-offline
    severity: warning
    absence: {for: 5m, per: gateway}
    annotations: {summary: "{gateway} ({site_name}) silent since {last_seen}"}
"""


def test_absence_fires_once_and_resolves_when_data_returns() -> None:
    engine = RuleEngine(rules(ABSENCE))
    run(engine, [pm(0, 10, gateway="gw-1"), pm(1, 10, sensor="aq-2", gateway="gw-1")])
    assert engine.check_absence(at(6)) == []  # 5 min since 01:00 is not longer than 5 min
    [alert] = engine.check_absence(at(6.5))
    assert alert.subject == AlertSubject(gateway_id="gw-1", district_id="lakeside")
    assert alert.starts_at == at(6)
    assert alert.value == pytest.approx(330.0)
    assert alert.annotations["summary"] == "gw-1 (st-1) silent since 2024-11-08T02:01:00Z"
    assert engine.check_absence(at(30)) == []  # fired once
    assert run(engine, [pm(0.5, 10, gateway="gw-1")]) == []  # older than last seen: a replay
    [resolved] = run(engine, [pm(31, 10, gateway="gw-1")])
    assert (resolved.state, resolved.ends_at) == (AlertState.RESOLVED, at(31))
    assert engine.check_absence(at(35)) == []


def test_absence_from_the_registry_covers_gateways_never_seen() -> None:
    registry = load_example_registry()
    engine = RuleEngine(rules(ABSENCE), registry)
    sensor = registry.sensors[0]
    reading = Sample("pollution", "pm2_5", 10.0, at(0), sensor=sensor.id, gateway=sensor.gateway)
    engine.evaluate([reading])
    assert engine.check_absence(at(1)) == []  # every gateway now counts from here
    silent = {a.subject.gateway_id for a in engine.check_absence(at(6.5))}
    assert silent == {g.id for g in registry.gateways}
    again = Sample("pollution", "pm2_5", 10.0, at(7), sensor=sensor.id, gateway=sensor.gateway)
    [resolved] = engine.evaluate([again])
    assert resolved.subject.gateway_id == sensor.gateway
    assert resolved.subject.district_id == registry.district_of_sensor(sensor.id).id
    site = registry.site(registry.gateway(sensor.gateway).site)
    assert site.name in resolved.annotations["summary"]


def test_absence_by_district_watches_only_the_districts_named() -> None:
    """A worker names the districts whose readings it gets, each at its own event time."""
    registry = load_example_registry()
    engine = RuleEngine(rules(ABSENCE), registry)
    district = {g.id: registry.site(g.site).district for g in registry.gateways}
    assert engine.check_absence({"lakeside": at(1), "old-town": at(0)}) == []
    fired = engine.check_absence({"lakeside": at(6.5), "old-town": at(5)})
    assert {district[a.subject.gateway_id or ""] for a in fired} == {"lakeside"}
    # A district never named is never seeded: another worker watches it.
    other = RuleEngine(rules(ABSENCE), registry)
    other.check_absence({"lakeside": at(1)})
    assert {
        district[a.subject.gateway_id or ""] for a in other.check_absence({"lakeside": at(30)})
    } == {"lakeside"}
    assert other.check_absence({"lakeside": at(60), "old-town": at(60)}) == []  # seeded now
    [late] = other.check_absence({"old-town": at(65.5)})
    assert district[late.subject.gateway_id or ""] == "old-town"


# ---------------------------------------------------------------- state


def test_restore_from_snapshot_continues_pending_and_firing() -> None:
    body = PM_RULE + "    keep_firing_for: 5m\n"
    first = RuleEngine(rules(body))
    run(first, [pm(0, 80), pm(5, 90)])
    touched = first.take_touched()
    assert touched == set(first.state_keys())
    [key] = touched
    assert key.startswith("rules/lakeside/")
    assert RuleEngine.district_of(key) == "lakeside"
    saved = first.snapshot(key)

    second = RuleEngine(rules(body))
    second.restore(key, saved)
    assert run(second, [pm(5, 95)]) == []  # not newer than what the first one saw
    [alert] = run(second, [pm(10, 85)])
    assert alert.starts_at == at(0)
    run(second, [pm(11, 10)])  # clear began; keep_firing_for pending
    saved = second.snapshot(key)

    third = RuleEngine(rules(body))
    third.restore(key, saved)
    assert run(third, [pm(10, 85)]) == []  # a replay of the firing sample: no second firing
    [resolved] = run(third, [pm(16, 10)])
    assert (resolved.state, resolved.ends_at, resolved.fingerprint) == (
        AlertState.RESOLVED,
        at(11),
        alert.fingerprint,
    )


def test_restore_absence_state_keeps_last_seen() -> None:
    first = RuleEngine(rules(ABSENCE))
    run(first, [pm(0, 10, gateway="gw-1")])
    [key] = first.take_touched()
    second = RuleEngine(rules(ABSENCE))
    second.restore(key, first.snapshot(key))
    [alert] = second.check_absence(at(6))
    assert alert.subject.gateway_id == "gw-1"


def test_restore_refuses_bad_bytes_and_ignores_removed_rules() -> None:
    engine = RuleEngine(rules(PM_RULE))
    run(engine, [pm(0, 80)])
    [key] = engine.state_keys()
    saved = engine.snapshot(key)
    with pytest.raises(ValueError, match="cannot restore"):
        engine.restore(key, b"not json")
    with pytest.raises(ValueError, match="cannot restore"):
        engine.restore("rules/other/0123456789abcdef", saved)
    other = RuleEngine(rules(ABSENCE))
    other.restore(key, saved)
    assert other.state_keys() == []
    assert other.stats.orphaned == 1


def test_drop_districts_forgets_their_states() -> None:
    engine = RuleEngine(rules(PM_RULE))
    run(engine, [pm(0, 80), pm(0, 80, sensor="aq-9", district="old-town")])
    assert sorted(RuleEngine.district_of(k) for k in engine.state_keys()) == [
        "lakeside",
        "old-town",
    ]
    engine.drop_districts(["old-town"])
    assert [RuleEngine.district_of(k) for k in engine.state_keys()] == ["lakeside"]


def test_a_sensor_is_awake_while_a_rule_of_it_is_pending_or_firing_wherever_its_state_goes() -> (
    None
):
    """:meth:`RuleEngine.awake` follows the states, restored and dropped ones too."""
    first = RuleEngine(rules(PM_RULE))
    assert not first.stirs("pollution", "pm2_5", None, 70.0, None)
    assert first.stirs("pollution", "pm2_5", None, 80.0, None)
    run(first, [pm(0, 80), pm(0, 80, sensor="aq-9", district="old-town")])
    assert [first.awake(s) for s in ("aq-1", "aq-9", "aq-2")] == [True, True, False]
    run(first, [pm(1, 10, sensor="aq-9", district="old-town")])
    assert not first.awake("aq-9")  # its condition failed: inactive, quiet samples do nothing
    [key] = [k for k in first.state_keys() if RuleEngine.district_of(k) == "lakeside"]
    second = RuleEngine(rules(PM_RULE))
    second.restore(key, first.snapshot(key))
    assert second.awake("aq-1")
    second.drop_districts(["lakeside"])
    assert not second.awake("aq-1")


def test_a_rule_that_keeps_a_window_is_stirred_by_every_sample() -> None:
    engine = RuleEngine(load_default_rules())
    kind, metric = resolve_index("power_ratio") or ("", "")
    assert engine.stirs(kind, metric, None, 0.0, None)  # a 30 min mean
    assert not engine.stirs("energy", "power_w", "seasonal", 10.0, 0.1)  # score below 0.5
    assert engine.stirs("energy", "power_w", "seasonal", 10.0, 0.6)


def test_a_sample_meets_only_the_rules_that_select_it() -> None:
    engine = RuleEngine(load_default_rules())
    engine.evaluate([Sample("ambient", "humidity_pct", 50.0, at(0), sensor="amb-1")])
    engine.evaluate([Sample("scenic", "occupancy", 50.0, at(0), area="park")])
    # the ambient sample meets only the kind-less rules that need no score (gateway offline,
    # which keeps no state for a sample without a gateway); the scenic one none at all
    assert engine.stats.matched == 1
    assert engine.state_keys() == []


# ---------------------------------------------------------------- the default rules


def test_default_rules_scenario() -> None:
    registry = load_example_registry()
    engine = RuleEngine(load_default_rules(), registry)
    area = registry.scenic_areas[0]
    segment = registry.road_segments[0]
    station = next(s for s in registry.sensors if s.kind is Kind.POLLUTION)
    meter = next(s for s in registry.sensors if s.kind is Kind.ENERGY)
    gateway = station.gateway
    fired: list[Alert] = []

    def feed(*samples: Sample) -> None:
        fired.extend(engine.evaluate(samples))

    def occupancy(minute: float, pct: float) -> Sample:
        return Sample(
            "scenic", "occupancy_pct", pct, at(minute), area=area.id, district=area.district
        )

    def tpi(minute: float, value: float) -> Sample:
        return Sample(
            "traffic_index",
            "tpi",
            value,
            at(minute),
            segment=segment.id,
            district=segment.district,
            labels={"scope": "segment"},
        )

    def aqi(minute: float, value: float) -> Sample:
        return Sample(
            "aqi",
            "aqi",
            value,
            at(minute),
            sensor=station.id,
            site=station.site,
            labels={"scope": "station"},
        )

    feed(
        aqi(0, 180),
        occupancy(0, 70),
        tpi(0, 7.5),
        Sample("pollution", "pm2_5", 90.0, at(0), sensor=station.id, gateway=gateway),
    )
    assert fired == []
    # AQI 230 then 320: heavy, then severe too
    feed(aqi(60, 230))
    feed(aqi(120, 320))
    # occupancy climbs through every tier
    feed(occupancy(1, 82), occupancy(2, 91), occupancy(3, 101))
    # congestion: 8.5 for five minutes fires, 7 (the band) holds
    feed(tpi(1, 8.5), tpi(3, 9.0), tpi(6, 8.2), tpi(7, 7.0))
    # a stuck sensor
    feed(
        Sample(
            "pollution",
            "pm2_5",
            90.0,
            at(8),
            sensor=station.id,
            gateway=gateway,
            score=0.8,
            detector="stuck",
            explanation="stuck: 90 for 36 readings",
        )
    )
    # a meter at three times its baseline at 03:00 local (19:00 UTC), for 30 minutes
    night = datetime(2024, 11, 7, 19, 0, tzinfo=UTC)
    for minute in range(0, 45, 5):
        fired.extend(
            engine.evaluate(
                [
                    Sample(
                        "energy_use",
                        "power_ratio",
                        3.0,
                        night + timedelta(minutes=minute),
                        sensor=meter.id,
                        building=meter.building,
                    )
                ]
            )
        )
    rules_fired = sorted({a.rule_id for a in fired if a.state is AlertState.FIRING})
    assert rules_fired == [
        "aqi-heavy",
        "aqi-severe",
        "energy-night-excess",
        "scenic-occupancy-100",
        "scenic-occupancy-80",
        "scenic-occupancy-90",
        "sensor-stuck",
        "traffic-severe-congestion",
    ]
    severe = next(a for a in fired if a.rule_id == "aqi-severe")
    site = registry.site(station.site)
    assert severe.subject.district_id == site.district  # filled in from the registry
    assert severe.annotations["summary"] == (
        f"Severe pollution (严重污染) at {site.name} ({site.name_zh}): AQI 320 (level 6 from 301)"
    )
    congestion = next(a for a in fired if a.rule_id == "traffic-severe-congestion")
    assert congestion.starts_at == at(1)
    assert congestion.labels == {"team": "traffic", "kind": "traffic_index"}
    # the gateway goes quiet: offline after five minutes (the others never reported)
    offline = [a for a in engine.check_absence(at(125)) if a.rule_id == "gateway-offline"]
    assert gateway in {a.subject.gateway_id for a in offline}
    # occupancy falls: each tier clears 5 points below it, after keep_firing_for (5 min)
    before = len(fired)
    feed(occupancy(10, 70))
    assert fired[before:] == []  # not yet: keep_firing_for is 5 minutes
    resolved = [a.rule_id for a in engine.check_absence(at(15))]
    assert sorted(r for r in resolved if r.startswith("scenic")) == [
        "scenic-occupancy-100",
        "scenic-occupancy-80",
        "scenic-occupancy-90",
    ]


def test_wants_and_watchers_say_which_samples_a_rule_may_look_at() -> None:
    """What the stream asks before it builds a sample of each metric of each reading."""
    engine = RuleEngine(load_default_rules())
    assert engine.wants("pollution", "o3", "stuck")  # sensor-stuck
    assert engine.wants("pollution", "o3", "out_of_range")
    assert not engine.wants("pollution", "o3", "neighbours")  # no rule takes its score
    assert not engine.wants("pollution", "o3", None)
    assert engine.wants("energy", "power_w", "neighbours")  # night anomaly: any detector
    assert engine.wants("aqi", "aqi", None)  # a threshold on the index
    # gateway-offline looks at every reading, whatever its metric; not at indices
    offline = engine.watchers("pollution", "o3")
    assert len(offline) == 1
    assert engine.watchers("traffic", "mean_speed_kmh") == offline
    assert engine.watchers("aqi", "aqi") == frozenset()

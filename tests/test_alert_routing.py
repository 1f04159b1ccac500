"""The routing file and the Dispatcher (rules.routing): pure, with time passed in.

The Dispatcher is checked against Alertmanager's semantics: group_wait batches, changes
wait for group_interval, unchanged firing groups repeat after repeat_interval, a resolved
alert is notified once, and a replay (the same alert again, from a re-read record or a
restored snapshot) never notifies twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.routing import (
    Dispatcher,
    Matcher,
    Notification,
    RoutingConfig,
    RoutingError,
    alert_labels,
    load_routing,
    parse_routing,
)
from telemetry.catalogue import Kind
from telemetry.models import Alert, AlertState, AlertSubject, Severity

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)

CONFIG = """
external_url: https://grafana.example/d/alerts
receivers:
  - {name: ops, type: webhook, url: "http://127.0.0.1:9/hook", secret: s3cret}
  - {name: env, type: dingtalk, url: "http://127.0.0.1:9/ding?access_token=t", secret: SECx}
  - {name: traffic, type: wecom, url: "http://127.0.0.1:9/wecom?key=k"}
  - {name: quiet, type: webhook, url: "http://127.0.0.1:9/quiet", send_resolved: false}
route:
  receiver: ops
  group_by: [rule_id, district_id]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - match: {kind: pollution}
      receiver: env
      continue: true
      routes:
        - matchers: ['severity="critical"']
          group_wait: 10s
    - match_re: {district_id: "old-town|harbour"}
      receiver: traffic
    - match: {kind: traffic}
      receiver: traffic
      group_by: ["..."]
"""


def config(text: str = CONFIG) -> RoutingConfig:
    return parse_routing(text, "routing.yaml")


def make_alert(
    site: str = "st-1",
    *,
    rule_id: str = "aqi-heavy",
    kind: Kind = Kind.POLLUTION,
    severity: Severity = Severity.WARNING,
    district: str = "lakeside",
    state: AlertState = AlertState.FIRING,
    starts_at: datetime = T0,
    ends_after: timedelta = timedelta(minutes=30),
    value: float = 231.0,
) -> Alert:
    return Alert.create(
        rule_id=rule_id,
        subject=AlertSubject(site_id=site, district_id=district),
        severity=severity,
        state=state,
        kind=kind,
        value=value,
        starts_at=starts_at,
        ends_at=starts_at + ends_after if state is AlertState.RESOLVED else None,
    )


def resolved(alert: Alert, after: timedelta = timedelta(minutes=30)) -> Alert:
    return alert.model_copy(
        update={"state": AlertState.RESOLVED, "ends_at": alert.starts_at + after}
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def one_receiver(**route: object) -> RoutingConfig:
    options = {"group_by": ["rule_id"], "group_wait": "30s", "group_interval": "5m"} | route
    return RoutingConfig.model_validate(
        {
            "receivers": [{"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9/"}],
            "route": {"receiver": "ops", **options},
        }
    )


def run(
    dispatcher: Dispatcher,
    until: float,
    step: float = 1.0,
    start: float = 0.0,
    events: Sequence[tuple[float, Alert]] = (),
) -> list[tuple[float, Notification]]:
    """Step the clock from ``start`` to ``until``: add each event at its time, call due().

    Returns what due() gave, with when.
    """
    found: list[tuple[float, Notification]] = []
    pending = sorted(events, key=lambda event: event[0])
    t = start
    while t <= until:
        while pending and pending[0][0] <= t:
            dispatcher.add(pending.pop(0)[1], at(t))
        found.extend((t, n) for n in dispatcher.due(at(t)))
        t += step
    assert not pending, "events after the end of the run"
    return found


# ================================================================ the routing file


def test_the_sample_file_loads_with_defaults_and_inheritance(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    loaded = load_routing(path)
    assert loaded == config()
    ops = loaded.receiver("ops")
    assert ops.timeout == timedelta(seconds=10)
    assert ops.give_up_after == timedelta(hours=6)
    assert ops.secret is not None
    assert "s3cret" not in repr(ops)  # secrets never print
    [critical] = loaded.routes_for(
        alert_labels(make_alert(severity=Severity.CRITICAL, district="harbour"))
    )[:1]
    assert critical.receiver == "env"
    assert critical.group_wait == timedelta(seconds=10)
    assert critical.group_interval == timedelta(minutes=5)
    assert critical.group_by == ("rule_id", "district_id")


def test_continue_sends_an_alert_down_several_routes() -> None:
    routes = config().routes_for(alert_labels(make_alert(district="harbour")))
    assert [r.receiver for r in routes] == ["env", "traffic"]
    assert routes[0].key == '{}/{kind="pollution"}'
    assert routes[1].key == '{}/{district_id=~"old-town|harbour"}'


def test_the_first_matching_route_without_continue_stops_the_search() -> None:
    labels = alert_labels(make_alert(kind=Kind.TRAFFIC, rule_id="tpi", district="old-town"))
    assert [r.receiver for r in config().routes_for(labels)] == ["traffic"]
    assert config().routes_for(labels)[0].key == '{}/{district_id=~"old-town|harbour"}'


def test_an_alert_no_route_matches_goes_to_the_default_receiver() -> None:
    labels = alert_labels(make_alert(kind=Kind.ENERGY, rule_id="night-energy"))
    [route] = config().routes_for(labels)
    assert (route.receiver, route.key) == ("ops", "{}")


def test_group_by_dots_groups_by_every_label() -> None:
    labels = alert_labels(make_alert(kind=Kind.TRAFFIC, rule_id="tpi"))
    [route] = config().routes_for(labels)
    assert route.group_labels(labels) == dict(sorted(labels.items()))


def test_group_keys_read_like_alertmanagers() -> None:
    labels = alert_labels(make_alert(kind=Kind.ENERGY, rule_id="night-energy"))
    [route] = config().routes_for(labels)
    assert route.group_key(route.group_labels(labels)) == (
        '{}:{district_id="lakeside", rule_id="night-energy"}'
    )


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ("severity=critical", {"severity": "warning"}, False),
        ('kind!="traffic"', {}, True),
        ('district_id=~"lake.*"', {"district_id": "lakeside"}, True),
        ('district_id=~"lake"', {"district_id": "lakeside"}, False),  # anchored
        ('site_id!~"test-.*"', {"site_id": "test-1"}, False),
    ],
)
def test_matchers_follow_prometheus(text: str, labels: dict[str, str], expected: bool) -> None:
    assert Matcher.parse(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        ("route: {receiver: opps}", "route.receiver", "unknown receiver 'opps' (did you mean"),
        ("route: {receiver: ops, group_wait: soon}", "route.group_wait", "expected a duration"),
        (
            "route: {receiver: ops, routes: [{match: {severity: critcal}}]}",
            "route.routes[0]",
            "unknown severity 'critcal' (did you mean 'critical'?)",
        ),
        (
            "route: {receiver: ops, routes: [{matchers: ['kind=~(']}]}",
            "route.routes[0].matchers",
            "invalid regular expression",
        ),
        ("route: {receiver: ops, group_interval: 0s}", "route.group_interval", "positive"),
        ("route: {receiver: ops, match: {kind: traffic}}", "route.match", "root route"),
        ("route: {group_by: [rule_id]}", "route", "must name a receiver"),
        ("route: {receiver: ops, contine: true}", "route.contine", "unknown key 'contine'"),
    ],
)
def test_errors_name_the_key_and_the_line(change: str, where: str, message: str) -> None:
    text = 'receivers: [{name: ops, type: webhook, url: "http://127.0.0.1:9/"}]\n' + change
    with pytest.raises(RoutingError) as caught:
        parse_routing(text, "routing.yaml")
    [problem] = caught.value.problems
    assert problem.path == where
    assert problem.line == 2
    assert message in problem.message
    assert str(problem).startswith("routing.yaml:2:")


def test_receiver_errors_name_the_receiver_key() -> None:
    text = """
receivers:
  - {name: ops, type: webhook, url: "http://127.0.0.1:9/"}
  - {name: ops, type: telegram, url: "ftp://x", give_up_after: -5m}
route: {receiver: ops}
"""
    with pytest.raises(RoutingError) as caught:
        parse_routing(text, "routing.yaml")
    paths = {p.path for p in caught.value.problems}
    assert {"receivers[1].type", "receivers[1].url", "receivers[1].give_up_after"} <= paths
    assert "receivers[1].name" in paths  # defined twice


def test_a_config_built_in_code_is_checked_too() -> None:
    with pytest.raises(ValueError, match="unknown receiver 'nobody'"):
        RoutingConfig.model_validate(
            {
                "receivers": [{"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9/"}],
                "route": {"receiver": "ops", "routes": [{"receiver": "nobody"}]},
            }
        )


# ================================================================ grouping and timing


def test_group_wait_batches_alerts_into_one_notification() -> None:
    dispatcher = Dispatcher(one_receiver())
    dispatcher.add(make_alert("st-1"), at(0))
    dispatcher.add(make_alert("st-2"), at(12))
    dispatcher.add(make_alert("st-3"), at(29))
    assert dispatcher.next_due() == at(30)
    sent = run(dispatcher, 60)
    assert [(t, len(n.alerts)) for t, n in sent] == [(30, 3)]
    [(_, notification)] = sent
    assert notification.group_labels == {"rule_id": "aqi-heavy"}
    assert notification.seq == 1
    assert notification.status is AlertState.FIRING


def test_groups_by_label_values_and_routes_are_separate() -> None:
    dispatcher = Dispatcher(config())
    dispatcher.add(make_alert("st-1", district="lakeside"), at(0))
    dispatcher.add(make_alert("st-2", district="harbour"), at(0))
    sent = [n for _, n in run(dispatcher, 40)]
    by = sorted((n.receiver, n.group_labels["district_id"], len(n.alerts)) for n in sent)
    assert by == [("env", "harbour", 1), ("env", "lakeside", 1), ("traffic", "harbour", 1)]


def test_a_change_waits_for_group_interval() -> None:
    dispatcher = Dispatcher(one_receiver())
    # st-2 comes after the first notification, at 30 s
    sent = run(dispatcher, 700, step=5, events=[(0, make_alert("st-1")), (40, make_alert("st-2"))])
    assert [(t, sorted(a.subject.site_id or "" for a in n.alerts)) for t, n in sent] == [
        (30, ["st-1"]),
        (330, ["st-1", "st-2"]),
    ]


def test_an_unchanged_firing_group_repeats_after_repeat_interval() -> None:
    dispatcher = Dispatcher(one_receiver(repeat_interval="1h"))
    dispatcher.add(make_alert("st-1"), at(0))
    sent = run(dispatcher, 2 * 3600 + 400, step=10)
    assert [t for t, _ in sent] == [30, 30 + 3600, 30 + 7200]
    assert [n.seq for _, n in sent] == [1, 2, 3]
    assert len({n.id for _, n in sent}) == 3


def test_a_resolved_alert_is_notified_once_then_dropped() -> None:
    dispatcher = Dispatcher(one_receiver(repeat_interval="1h"))
    first, second = make_alert("st-1"), make_alert("st-2")
    events = [(0, first), (0, second), (100, resolved(first))]
    sent = run(dispatcher, 2 * 3600, step=10, events=events)
    assert [(t, [a.state.value for a in n.alerts]) for t, n in sent] == [
        (30, ["firing", "firing"]),
        (330, ["firing", "resolved"]),
        (330 + 3600, ["firing"]),  # the repeat no longer carries the resolved one
    ]
    events = [(2 * 3600 + 10, resolved(second))]
    later = run(dispatcher, 6 * 3600, step=10, start=2 * 3600 + 10, events=events)
    assert [(t, [a.state.value for a in n.alerts]) for t, n in later] == [
        (30 + 24 * 300, ["resolved"])  # the group's next tick
    ]
    assert dispatcher.next_due() is None  # the empty group is gone


def test_an_alert_resolved_before_it_was_notified_is_not_notified_at_all() -> None:
    dispatcher = Dispatcher(one_receiver())
    alert = make_alert()
    dispatcher.add(alert, at(0))
    dispatcher.add(resolved(alert, timedelta(seconds=10)), at(10))
    assert run(dispatcher, 1000) == []
    assert dispatcher.next_due() is None


def test_without_send_resolved_the_resolve_is_not_sent_but_clears_the_group() -> None:
    alert = make_alert(kind=Kind.ENERGY, rule_id="night-energy")
    quiet = config().model_copy(
        update={"route": config().route.model_copy(update={"receiver": "quiet", "routes": ()})}
    )
    dispatcher = Dispatcher(quiet)
    sent = run(dispatcher, 5 * 3600, step=10, events=[(0, alert), (60, resolved(alert))])
    assert [(t, n.receiver, len(n.alerts)) for t, n in sent] == [(30, "quiet", 1)]
    assert dispatcher.next_due() is None


def test_a_new_episode_of_the_same_alert_is_notified_again() -> None:
    dispatcher = Dispatcher(one_receiver())
    alert = make_alert()
    events = [
        (0, alert),
        (60, resolved(alert, timedelta(minutes=1))),
        (400, make_alert(starts_at=at(400))),
    ]
    sent = run(dispatcher, 1000, step=10, events=events)
    assert [(t, [a.state.value for a in n.alerts]) for t, n in sent] == [
        (30, ["firing"]),
        (330, ["resolved"]),
        (430, ["firing"]),  # a new group: group_wait again
    ]


# ================================================================ replays


def test_a_replayed_firing_alert_notifies_nothing_new() -> None:
    dispatcher = Dispatcher(one_receiver(repeat_interval="4h"))
    alert = make_alert()
    dispatcher.add(alert, at(0))
    assert len(run(dispatcher, 40)) == 1
    for t in range(60, 3600, 60):
        dispatcher.add(alert.model_copy(update={"value": 240.0}), at(t))  # re-emitted
    assert run(dispatcher, 3600, start=41) == []


def test_a_replayed_resolve_after_the_group_is_gone_notifies_nothing() -> None:
    dispatcher = Dispatcher(one_receiver())
    alert = make_alert()
    assert len(run(dispatcher, 400, events=[(0, alert), (100, resolved(alert))])) == 2
    dispatcher.add(alert, at(500))  # the old firing record, re-read
    dispatcher.add(resolved(alert), at(500))  # and its resolve
    assert run(dispatcher, 2000, start=401) == []
    assert dispatcher.stats.stale == 2


def test_a_late_firing_copy_never_reopens_a_resolved_alert() -> None:
    dispatcher = Dispatcher(one_receiver())
    alert = make_alert()
    dispatcher.add(alert, at(0))
    assert len(run(dispatcher, 40)) == 1
    dispatcher.add(resolved(alert), at(50))
    dispatcher.add(alert, at(51))  # arrived out of order
    sent = run(dispatcher, 400, start=41)
    assert [[a.state.value for a in n.alerts] for _, n in sent] == [["resolved"]]


def test_a_restored_dispatcher_continues_without_duplicates() -> None:
    cfg = one_receiver(repeat_interval="1h")
    original = Dispatcher(cfg)
    first, second = make_alert("st-1"), make_alert("st-2")
    before = run(original, 100, events=[(0, first), (5, second)])
    snapshot = original.snapshot()

    restored = Dispatcher.restore(cfg, snapshot)
    assert restored.snapshot() == snapshot
    # the worker re-reads its uncommitted records, then new ones come
    events = [(120, first), (120, second), (200, resolved(first))]
    after = run(restored, 4000, step=10, start=110, events=events)
    assert [(t, [a.state.value for a in n.alerts]) for t, n in before + after] == [
        (30, ["firing", "firing"]),
        (330, ["firing", "resolved"]),
        (330 + 3600, ["firing"]),
    ]


def test_the_same_inputs_give_the_same_notification_ids() -> None:
    """What lets a receiver dedupe a notification sent again after a crash."""

    def notifications() -> list[str]:
        dispatcher = Dispatcher(one_receiver())
        alert = make_alert()
        events = [(0, alert), (100, resolved(alert))]
        return [n.id for _, n in run(dispatcher, 400, events=events)]

    assert notifications() == notifications()
    assert len(set(notifications())) == 2


def test_a_bad_snapshot_is_refused() -> None:
    with pytest.raises(ValueError, match="not a dispatcher snapshot"):
        Dispatcher.restore(one_receiver(), b'{"version": 1}')
    with pytest.raises(ValueError, match="version"):
        Dispatcher.restore(one_receiver(), b'{"version": 99}')


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Dispatcher(one_receiver()).add(make_alert(), datetime(2026, 11, 22, 8))  # noqa: DTZ001


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3),  # which site
            st.booleans(),  # resolve it?
            st.integers(min_value=1, max_value=900),  # seconds since the previous event
        ),
        min_size=1,
        max_size=12,
    ),
    st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_replaying_any_input_again_changes_no_notification(
    events: list[tuple[int, bool, int]], replay: list[bool]
) -> None:
    """Feeding some alerts twice (a Kafka replay) gives exactly the same notifications."""

    def feed(twice: bool) -> list[tuple[float, str, tuple[str, ...]]]:
        dispatcher = Dispatcher(one_receiver(repeat_interval="20m"))
        t = 0.0
        starts: dict[int, datetime] = {}
        out: list[tuple[float, str, tuple[str, ...]]] = []
        for index, (site, resolve, gap) in enumerate(events):
            end = t + gap
            while t < end:
                out.extend(
                    (t, n.id, tuple(a.state for a in n.alerts)) for n in dispatcher.due(at(t))
                )
                t += 10
            begun = starts.setdefault(site, at(t))
            alert = make_alert(f"st-{site}", starts_at=begun)
            if resolve:
                alert = resolved(alert, at(t) - begun)
                del starts[site]
            dispatcher.add(alert, at(t))
            if twice and replay[index]:
                dispatcher.add(alert, at(t))
        for _ in range(400):
            out.extend((t, n.id, tuple(a.state for a in n.alerts)) for n in dispatcher.due(at(t)))
            t += 10
        return out

    assert feed(twice=True) == feed(twice=False)

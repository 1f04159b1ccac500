"""Receivers, the route tree and grouping: which alerts reach whom, together, and when.

This is the Alertmanager model, on urbansense's :class:`~telemetry.models.Alert`:

* **receivers** are named destinations: a generic ``webhook`` (the Alertmanager v4
  JSON shape, signed), or a ``dingtalk``, ``wecom`` or ``feishu`` group robot. Each
  has its URL, secret, request timeout and ``give_up_after``, the time after which
  a notification that cannot be delivered goes to the dead-letter topic.
* the **route tree** sends each alert to one or more receivers by its labels
  (:func:`alert_labels`: ``severity``, ``kind``, ``rule_id``/``alertname``,
  ``metric``, the subject's ids such as ``district_id``, and the rule's own labels).
  An alert walks the tree depth first: a route whose matchers all match takes it,
  a matching child takes it from its parent, and the first matching sibling stops
  the search unless it says ``continue: true``. The root matches everything and
  names the default receiver. A child inherits what it does not set.
* **grouping**: alerts of one route with equal values of the route's ``group_by``
  labels form a group and are notified together. The first notification of a new
  group waits ``group_wait`` (so a burst arrives as one message); later changes
  are sent at most every ``group_interval``; a group still firing and unchanged is
  sent again after ``repeat_interval``. A resolved alert is notified once (when
  the receiver has ``send_resolved``) and then dropped.

:class:`Dispatcher` is the pure state machine that does this. Time is passed in
(``add(alert, now)``, ``due(now)``); it keeps no clock and does no I/O, and its
state round-trips through :meth:`Dispatcher.snapshot` / :meth:`Dispatcher.restore`
so that a restarted worker neither loses a group nor notifies twice.

A routing file::

    external_url: https://grafana.city.example/d/alerts
    receivers:
      - name: ops-webhook
        type: webhook
        url: https://ops.city.example/hooks/alertmanager
        secret: change-me            # HMAC-SHA256 key for X-Urbansense-Signature
      - name: env-bureau
        type: dingtalk
        url: https://oapi.dingtalk.com/robot/send?access_token=...
        secret: SEC...               # the robot's 加签 secret
        give_up_after: 2h
    route:
      receiver: ops-webhook          # the default receiver
      group_by: [rule_id, district_id]
      group_wait: 30s
      group_interval: 5m
      repeat_interval: 4h
      routes:
        - match: {kind: pollution}
          receiver: env-bureau
          continue: true             # ...and on down the tree
        - matchers: ['severity="critical"', 'district_id=~"lakeside|old-town"']
          receiver: ops-webhook
          group_wait: 10s

>>> config = parse_routing('''
... receivers:
...   - {name: ops, type: webhook, url: "http://127.0.0.1:9/hook"}
...   - {name: env, type: wecom, url: "http://127.0.0.1:9/wecom"}
... route:
...   receiver: ops
...   group_by: [rule_id]
...   group_wait: 30s
...   routes:
...     - {match: {kind: pollution}, receiver: env}
... ''')
>>> [r.receiver for r in config.routes_for({"kind": "pollution", "rule_id": "aqi"})]
['env']
>>> [r.receiver for r in config.routes_for({"kind": "traffic", "rule_id": "tpi"})]
['ops']
>>> try:
...     parse_routing('''
... receivers: [{name: ops, type: webhook, url: "http://127.0.0.1:9/hook"}]
... route: {receiver: opps, group_wait: 30 seconds}
... ''', "routing.yaml")
... except RoutingError as error:
...     for problem in error.problems:
...         print(problem.line, problem.path, "--", problem.message)
3 route.receiver -- unknown receiver 'opps' (did you mean 'ops'?)
3 route.group_wait -- expected a duration such as 30s, 5m, 1h30m or 2d, got '30 seconds'
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from telemetry.catalogue import Kind
from telemetry.documents import Finding, Locator, known_hint, load_document, parse_document
from telemetry.errors import DocumentError
from telemetry.models import Alert, AlertState, Severity, UtcDatetime

__all__ = [
    "DEFAULT_GROUP_INTERVAL",
    "DEFAULT_GROUP_WAIT",
    "DEFAULT_REPEAT_INTERVAL",
    "Dispatcher",
    "DispatcherStats",
    "Duration",
    "MatchOp",
    "Matcher",
    "Notification",
    "Receiver",
    "ReceiverType",
    "ResolvedRoute",
    "Route",
    "RoutingConfig",
    "RoutingError",
    "alert_labels",
    "load_routing",
    "parse_duration",
    "parse_routing",
]

DEFAULT_GROUP_WAIT: Final = timedelta(seconds=30)
"""Alertmanager's default: how long a new group waits to collect its first alerts."""
DEFAULT_GROUP_INTERVAL: Final = timedelta(minutes=5)
"""Alertmanager's default: the least time between two notifications of a changed group."""
DEFAULT_REPEAT_INTERVAL: Final = timedelta(hours=4)
"""Alertmanager's default: after how long an unchanged firing group is notified again."""

_SKIP_CROSS_CHECK: Final = "urbansense.routing.skip_cross_check"


class RoutingError(DocumentError):
    """A routing file that cannot be used: every problem, each with file, line and key."""


# ---------------------------------------------------------------- durations

_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>ms|[dhms])")
_UNIT_S: Final = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: object) -> object:
    """Read ``90`` (seconds), ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` or ``"500ms"``.

    Anything else is returned unchanged for pydantic to refuse (or to read as ISO 8601).

    >>> parse_duration("1h30m"), parse_duration(45), parse_duration("250ms")
    (datetime.timedelta(seconds=5400), datetime.timedelta(seconds=45), datetime.timedelta(microseconds=250000))
    """  # noqa: E501 - a doctest's output is one line
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and math.isfinite(value):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        parts = list(_DURATION.finditer(text))
        if parts and "".join(part.group(0) for part in parts) == text:
            return timedelta(seconds=sum(float(p["number"]) * _UNIT_S[p["unit"]] for p in parts))
    return value


def _non_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        msg = f"must not be negative, got {value}"
        raise ValueError(msg)
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        msg = f"must be a positive duration, got {value}"
        raise ValueError(msg)
    return value


def _duration(value: object) -> object:
    parsed = parse_duration(value)
    if isinstance(parsed, str) and not parsed.strip().startswith(("P", "-P")):
        msg = f"expected a duration such as 30s, 5m, 1h30m or 2d, got {value!r}"
        raise ValueError(msg)  # ISO 8601 ("PT30S") is left to pydantic
    return parsed


Duration = Annotated[timedelta, BeforeValidator(_duration)]
"""A length of time: seconds, or text like ``30s``, ``5m``, ``1h30m``, ``2d``."""


# ---------------------------------------------------------------- labels


def alert_labels(alert: Alert) -> dict[str, str]:
    """The labels an alert is routed, grouped and shown by.

    The rule's own labels, then the subject's ids (``site_id``, ``district_id``…),
    then the alert's fixed fields, which win over a rule label of the same name:
    ``alertname`` and ``rule_id`` (both the rule id; ``alertname`` is what
    Alertmanager receivers group and title by), ``severity``, and ``kind`` and
    ``metric`` when set.

    >>> from telemetry.models import AlertSubject
    >>> alert = Alert.create(
    ...     rule_id="aqi-heavy", subject=AlertSubject(site_id="st-1", district_id="lakeside"),
    ...     severity=Severity.CRITICAL, state=AlertState.FIRING, kind=Kind.POLLUTION, metric="aqi",
    ...     starts_at=datetime(2026, 11, 22, 8, tzinfo=UTC), labels={"team": "env"},
    ... )
    >>> alert_labels(alert)  # doctest: +NORMALIZE_WHITESPACE
    {'team': 'env', 'site_id': 'st-1', 'district_id': 'lakeside', 'alertname': 'aqi-heavy',
     'rule_id': 'aqi-heavy', 'severity': 'critical', 'kind': 'pollution', 'metric': 'aqi'}
    """
    labels = dict(alert.labels)
    labels.update(alert.subject.labels())
    labels["alertname"] = alert.rule_id
    labels["rule_id"] = alert.rule_id
    labels["severity"] = str(alert.severity)
    if alert.kind is not None:
        labels["kind"] = str(alert.kind)
    if alert.metric is not None:
        labels["metric"] = alert.metric
    return labels


# ---------------------------------------------------------------- matchers

_LABEL_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_MATCHER = re.compile(rf"^\s*(?P<name>{_LABEL_NAME})\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*$")


class MatchOp(StrEnum):
    """How a matcher compares a label's value (Prometheus' four operators)."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


class Matcher(BaseModel):
    """One condition on one label. A missing label has the value ``""``.

    Regular expressions are anchored at both ends, as in Prometheus.

    >>> Matcher.parse('district_id=~"lake.*"').matches({"district_id": "lakeside"})
    True
    >>> Matcher.parse("severity!=info").matches({})
    True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    op: MatchOp
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Read ``name=value``, ``name!="value"``, ``name=~"regex"`` or ``name!~"regex"``."""
        found = _MATCHER.match(text)
        if found is None:
            msg = (
                f"cannot read matcher {text!r}: write it as label=value, label!=value,"
                ' label=~"regex" or label!~"regex"'
            )
            raise ValueError(msg)
        value = found["value"]
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return cls(name=found["name"], op=MatchOp(found["op"]), value=value)

    @model_validator(mode="after")
    def _checked(self) -> Self:
        if not re.fullmatch(_LABEL_NAME, self.name):
            msg = f"{self.name!r} is not a label name"
            raise ValueError(msg)
        if self.op in (MatchOp.RE, MatchOp.NRE):
            try:
                re.compile(self.value)
            except re.error as exc:
                msg = f"invalid regular expression {self.value!r}: {exc}"
                raise ValueError(msg) from exc
        else:
            known = {"severity": [str(s) for s in Severity], "kind": [str(k) for k in Kind]}
            if self.name in known and self.value not in known[self.name]:
                msg = (
                    f"unknown {self.name} {self.value!r}{known_hint(self.value, known[self.name])}"
                )
                raise ValueError(msg)
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher."""
        value = labels.get(self.name, "")
        if self.op is MatchOp.EQ:
            return value == self.value
        if self.op is MatchOp.NE:
            return value != self.value
        found = re.fullmatch(self.value, value) is not None
        return found if self.op is MatchOp.RE else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value, ensure_ascii=False)}"


# ---------------------------------------------------------------- receivers


class ReceiverType(StrEnum):
    """What a receiver speaks."""

    WEBHOOK = "webhook"
    """Prometheus Alertmanager's v4 webhook JSON, signed in ``X-Urbansense-Signature``."""
    DINGTALK = "dingtalk"
    """A DingTalk (钉钉) custom robot: markdown, optionally signed (加签) in the URL."""
    WECOM = "wecom"
    """A WeCom (企业微信) group robot: markdown; its key is in the URL, no signature."""
    FEISHU = "feishu"
    """A Feishu/Lark (飞书) custom bot: an interactive card, optionally signed in the body."""


class Receiver(BaseModel):
    """A named destination of notifications.

    Attributes:
        name: how routes refer to it.
        type: webhook, dingtalk, wecom or feishu.
        url: where to POST (http or https). For WeCom it carries the robot's key;
            for DingTalk the ``access_token``.
        secret: the signing key: HMAC-SHA256 key of the generic webhook, the
            ``SEC…`` 加签 secret of a DingTalk robot, the 签名校验 secret of a Feishu
            bot. Never printed (a :class:`~pydantic.SecretStr`).
        timeout: the limit on one HTTP request, connection included.
        give_up_after: how long delivery is retried before the notification goes
            to the dead-letter topic. A receiver that is down for less than this
            gets its notifications when it comes back.
        send_resolved: whether resolved alerts are notified.
        max_alerts: the most alerts one webhook notification carries (0: all); the
            rest are counted in ``truncatedAlerts``, as Alertmanager does.
        max_bytes: the size limit of a chat robot's message text (0: the platform's
            own limit); longer messages are cut with a note of what was left out.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\s].*$")]
    type: ReceiverType
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    secret: SecretStr | None = None
    timeout: Duration = timedelta(seconds=10)
    give_up_after: Duration = timedelta(hours=6)
    send_resolved: bool = True
    max_alerts: Annotated[int, Field(ge=0)] = 0
    max_bytes: Annotated[int, Field(ge=0)] = 0

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s?#]+", url):
            msg = f"must be an http:// or https:// URL, got {url!r}"
            raise ValueError(msg)
        return url

    @field_validator("timeout", "give_up_after")
    @classmethod
    def _positive_time(cls, value: timedelta) -> timedelta:
        return _positive(value)

    @model_validator(mode="after")
    def _secret_where_used(self) -> Self:
        if self.type is ReceiverType.WECOM and self.secret is not None:
            msg = "a WeCom group robot has no signature; its key goes in the url (?key=...)"
            raise ValueError(msg)
        return self


# ---------------------------------------------------------------- routes


def _matcher_list(value: object) -> object:
    if isinstance(value, list | tuple):
        return [Matcher.parse(v) if isinstance(v, str) else v for v in value]
    return value


class Route(BaseModel):
    """A node of the route tree.

    Attributes:
        receiver: where matching alerts go; inherited from the parent when unset.
        match: labels that must equal these values.
        match_re: labels that must fully match these regular expressions.
        matchers: Prometheus-style matchers: ``severity="critical"``,
            ``kind!="traffic"``, ``district_id=~"lake.*"``, ``site_id!~"test-.*"``.
        continue_: (``continue`` in YAML) after this route matched, go on trying
            its later siblings too.
        group_by: the labels whose values make a group; ``["..."]`` groups by all
            labels (every alert alone); ``[]`` puts all alerts of the route into
            one group. Inherited when unset.
        group_wait: how long a new group waits before its first notification.
        group_interval: the least time between notifications of a changed group.
        repeat_interval: after how long an unchanged, still firing group is
            notified again.
        routes: child routes, tried in order.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    receiver: str | None = None
    match: dict[str, str] = {}
    match_re: dict[str, str] = {}
    matchers: Annotated[tuple[Matcher, ...], BeforeValidator(_matcher_list)] = ()
    continue_: bool = Field(default=False, alias="continue")
    group_by: tuple[str, ...] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    routes: tuple[Route, ...] = ()

    @field_validator("group_wait")
    @classmethod
    def _wait_not_negative(cls, value: timedelta | None) -> timedelta | None:
        return None if value is None else _non_negative(value)

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _interval_positive(cls, value: timedelta | None) -> timedelta | None:
        return None if value is None else _positive(value)

    @field_validator("group_by")
    @classmethod
    def _label_names(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if names is None or names == ("...",):
            return names
        for name in names:
            if not re.fullmatch(_LABEL_NAME, name):
                msg = f"{name!r} is not a label name (use ['...'] alone to group by all labels)"
                raise ValueError(msg)
        if len(set(names)) != len(names):
            msg = "a label is named twice"
            raise ValueError(msg)
        return names

    @model_validator(mode="after")
    def _compiled(self) -> Self:
        for name, value in self.match.items():
            Matcher(name=name, op=MatchOp.EQ, value=value)
        for name, value in self.match_re.items():
            Matcher(name=name, op=MatchOp.RE, value=value)
        return self

    def all_matchers(self) -> tuple[Matcher, ...]:
        """``match``, ``match_re`` and ``matchers`` as one tuple of :class:`Matcher`."""
        return (
            *(Matcher(name=k, op=MatchOp.EQ, value=v) for k, v in sorted(self.match.items())),
            *(Matcher(name=k, op=MatchOp.RE, value=v) for k, v in sorted(self.match_re.items())),
            *self.matchers,
        )

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every matcher of this route accepts ``labels``."""
        return all(m.matches(labels) for m in self.all_matchers())


@dataclass(frozen=True)
class ResolvedRoute:
    """A route with everything inherited filled in: what one matching alert needs.

    Attributes:
        key: identifies the route in group keys, Alertmanager style:
            ``{}/{severity="critical"}``.
        receiver: the receiver's name.
        group_by: the grouping labels (``("...",)``: all).
        group_wait: see :class:`Route`.
        group_interval: see :class:`Route`.
        repeat_interval: see :class:`Route`.
    """

    key: str
    receiver: str
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels of ``labels`` that make the group (sorted by name)."""
        if self.group_by == ("...",):
            return dict(sorted(labels.items()))
        return {name: labels[name] for name in sorted(self.group_by) if name in labels}

    def group_key(self, group_labels: Mapping[str, str]) -> str:
        """``<route key>:{label="value", ...}``, as Alertmanager's ``groupKey``."""
        inner = ", ".join(
            f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(group_labels.items())
        )
        return f"{self.key}:{{{inner}}}"


# ---------------------------------------------------------------- the whole file


class RoutingConfig(BaseModel):
    """A routing file: receivers and the route tree.

    Attributes:
        external_url: the address people open to see alerts (a Grafana board),
            sent as ``externalURL`` in webhooks and linked from robot messages.
        generator_url: a link per alert, with ``{rule_id}`` and ``{fingerprint}``
            filled in (URL-quoted); sent as ``generatorURL``. Empty: none.
        resolved_retention: how long the dispatcher remembers an alert episode it
            has seen resolved, so that a replay of it (a re-read Kafka record, a
            late duplicate) never notifies again. Longer than the longest replay.
        receivers: the named receivers.
        route: the root of the route tree; it matches every alert and must name
            a receiver (the default).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    external_url: Annotated[str, Field(max_length=2048)] = ""
    generator_url: Annotated[str, Field(max_length=2048)] = ""
    resolved_retention: Duration = timedelta(days=5)
    receivers: Annotated[tuple[Receiver, ...], Field(min_length=1)]
    route: Route

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Self:
        if info.context and info.context.get(_SKIP_CROSS_CHECK):
            return self  # parse_routing reports these with their lines
        problems = [finding.message for finding in _cross_check(self.model_dump(by_alias=True))]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def receiver(self, name: str) -> Receiver:
        """The receiver called ``name``; :class:`KeyError` when there is none."""
        for receiver in self.receivers:
            if receiver.name == name:
                return receiver
        raise KeyError(name)

    @property
    def receivers_by_name(self) -> dict[str, Receiver]:
        """Receivers by name, for :class:`stream.alerts.Deliverer`."""
        return {receiver.name: receiver for receiver in self.receivers}

    def routes_for(self, labels: Mapping[str, str]) -> list[ResolvedRoute]:
        """The routes an alert with ``labels`` takes, in tree order (at least one)."""
        root = self.route
        base = ResolvedRoute(
            key="{}",
            receiver=root.receiver or "",
            group_by=root.group_by if root.group_by is not None else (),
            group_wait=root.group_wait if root.group_wait is not None else DEFAULT_GROUP_WAIT,
            group_interval=(
                root.group_interval if root.group_interval is not None else DEFAULT_GROUP_INTERVAL
            ),
            repeat_interval=(
                root.repeat_interval
                if root.repeat_interval is not None
                else DEFAULT_REPEAT_INTERVAL
            ),
        )
        return _walk(root, base, labels)


def _inherit(parent: ResolvedRoute, route: Route, key: str) -> ResolvedRoute:
    return ResolvedRoute(
        key=key,
        receiver=route.receiver or parent.receiver,
        group_by=route.group_by if route.group_by is not None else parent.group_by,
        group_wait=route.group_wait if route.group_wait is not None else parent.group_wait,
        group_interval=(
            route.group_interval if route.group_interval is not None else parent.group_interval
        ),
        repeat_interval=(
            route.repeat_interval if route.repeat_interval is not None else parent.repeat_interval
        ),
    )


def _child_keys(parent_key: str, children: Sequence[Route]) -> list[str]:
    texts = ["{" + ", ".join(str(m) for m in c.all_matchers()) + "}" for c in children]
    return [
        f"{parent_key}/{text}" + (f"#{i}" if texts.count(text) > 1 else "")
        for i, text in enumerate(texts)
    ]


def _walk(route: Route, resolved: ResolvedRoute, labels: Mapping[str, str]) -> list[ResolvedRoute]:
    found: list[ResolvedRoute] = []
    for child, key in zip(route.routes, _child_keys(resolved.key, route.routes), strict=True):
        if not child.matches(labels):
            continue
        found.extend(_walk(child, _inherit(resolved, child, key), labels))
        if not child.continue_:
            break
    return found or [resolved]


def _cross_check(data: Mapping[str, Any], locator: Locator | None = None) -> Iterator[Finding]:
    """Receiver names unique, every route's receiver defined, the root plain."""
    receivers = data.get("receivers")
    names: list[str] = []
    if isinstance(receivers, list | tuple):
        for index, receiver in enumerate(receivers):
            name = receiver.get("name") if isinstance(receiver, Mapping) else None
            if isinstance(name, str):
                if name in names:
                    yield Finding(("receivers", index, "name"), f"receiver {name!r} defined twice")
                names.append(name)
    root = data.get("route")
    if not isinstance(root, Mapping):
        return
    if not root.get("receiver"):
        yield Finding(("route",), "the root route must name a receiver (the default one)")
    for key in ("match", "match_re", "matchers", "continue"):
        if root.get(key):
            yield Finding(("route", key), f"the root route matches every alert; remove {key!r}")

    def visit(route: Mapping[str, Any], loc: tuple[str | int, ...]) -> Iterator[Finding]:
        name = route.get("receiver")
        if isinstance(name, str) and name and name not in names:
            yield Finding((*loc, "receiver"), f"unknown receiver {name!r}{known_hint(name, names)}")
        children = route.get("routes")
        if isinstance(children, list | tuple):
            for index, child in enumerate(children):
                if isinstance(child, Mapping):
                    yield from visit(child, (*loc, "routes", index))

    yield from visit(root, ("route",))


def parse_routing(text: str, source: str = "<string>") -> RoutingConfig:
    """Read a routing file from YAML text.

    Args:
        text: the YAML document.
        source: the name positions are given in, usually the file name.

    Raises:
        RoutingError: listing every problem, each with line, column and key.
    """
    return parse_document(
        text,
        source,
        RoutingConfig,
        what="routing file",
        context={_SKIP_CROSS_CHECK: True},
        cross_check=lambda data, locator: _cross_check(data, locator),
        error=RoutingError,
    )


def load_routing(path: str | os.PathLike[str]) -> RoutingConfig:
    """Read a routing file (UTF-8 YAML); see :func:`parse_routing`.

    Raises:
        RoutingError: when the file cannot be read, or listing every problem in it.
    """
    return load_document(
        path,
        RoutingConfig,
        what="routing file",
        context={_SKIP_CROSS_CHECK: True},
        cross_check=lambda data, locator: _cross_check(data, locator),
        error=RoutingError,
    )


# ---------------------------------------------------------------- notifications


class Notification(BaseModel):
    """One message to one receiver about one group of alerts.

    Attributes:
        id: stable and unique: the same group state gives the same id, so a
            notification sent again (after a crash, by a replay) carries the id of
            the first; receivers dedupe on it (``X-Urbansense-Notification``).
        receiver: the receiver's name.
        group_key: the group, as Alertmanager's ``groupKey``.
        group_labels: the labels that make the group.
        seq: this group's notification count, from 1.
        at: when the dispatcher produced it (the ``now`` of :meth:`Dispatcher.due`).
        alerts: firing alerts first, then resolved ones; each sorted by start
            time and fingerprint.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    seq: Annotated[int, Field(ge=1)]
    at: UtcDatetime
    alerts: Annotated[tuple[Alert, ...], Field(min_length=1)]

    @property
    def firing(self) -> tuple[Alert, ...]:
        """The firing alerts."""
        return tuple(a for a in self.alerts if a.state is AlertState.FIRING)

    @property
    def resolved(self) -> tuple[Alert, ...]:
        """The resolved alerts."""
        return tuple(a for a in self.alerts if a.state is AlertState.RESOLVED)

    @property
    def status(self) -> AlertState:
        """``firing`` while any alert fires, else ``resolved`` (as Alertmanager)."""
        return AlertState.FIRING if self.firing else AlertState.RESOLVED


# ---------------------------------------------------------------- the dispatcher


def _episode(alert: Alert) -> str:
    """An alert episode: the alert from one start until its end."""
    return f"{alert.fingerprint}@{alert.starts_at.isoformat()}"


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        msg = f"now must be timezone-aware (UTC), got naive {now.isoformat()}"
        raise ValueError(msg)
    return now.astimezone(UTC)


@dataclass
class _Group:
    receiver: str
    key: str
    labels: dict[str, str]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    send_resolved: bool
    next_flush: datetime
    alerts: dict[str, Alert] = field(default_factory=dict)


@dataclass
class _Sent:
    """What the last notification of a group said (Alertmanager's notification log)."""

    firing: frozenset[str]
    resolved: frozenset[str]
    at: datetime
    seq: int


@dataclass
class DispatcherStats:
    """Counts since the dispatcher was built (not kept in snapshots).

    Attributes:
        added: alerts given to :meth:`Dispatcher.add`.
        stale: alerts ignored as replays or as older than what is known.
        notifications: notifications produced by :meth:`Dispatcher.due`.
    """

    added: int = 0
    stale: int = 0
    notifications: int = 0


_SNAPSHOT_VERSION: Final = 1


class Dispatcher:
    """Groups alerts per route and says when each receiver is to be notified.

    Pure and deterministic: the caller gives the time, the dispatcher gives
    :class:`Notification` objects and does nothing else. Alertmanager's rules:

    * a new group is notified ``group_wait`` after its first alert;
    * then the group is looked at every ``group_interval``: it is notified when an
      alert started firing since the last notification, or (with
      ``send_resolved``) one resolved, or every alert resolved; an unchanged group
      that still fires is notified again once ``repeat_interval`` has passed;
    * resolved alerts leave the group once looked at, so each is notified once;
      a group left empty is removed;
    * an alert that resolves before its firing was ever notified is not notified
      at all (the receiver never knew of it);
    * an alert equal to one already held, or an episode already seen resolved
      (same fingerprint and start), changes nothing: replays never notify twice.
      A firing alert with the start of one held resolved is late, and ignored.

    Delivery is the caller's: hand each notification to a deliverer, and keep
    :meth:`snapshot` (e.g. in a Faust table) so a restart resumes where it was.

    >>> from telemetry.models import AlertSubject
    >>> config = parse_routing('''
    ... receivers: [{name: ops, type: webhook, url: "http://127.0.0.1:9/"}]
    ... route: {receiver: ops, group_by: [rule_id], group_wait: 30s, group_interval: 5m}
    ... ''')
    >>> t0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    >>> def alert(site, state=AlertState.FIRING):
    ...     ends_at = t0 + timedelta(minutes=20) if state is AlertState.RESOLVED else None
    ...     return Alert.create(rule_id="aqi-heavy", subject=AlertSubject(site_id=site),
    ...                         severity=Severity.CRITICAL, state=state, starts_at=t0,
    ...                         ends_at=ends_at)
    >>> d = Dispatcher(config)
    >>> d.add(alert("st-1"), t0); d.add(alert("st-2"), t0 + timedelta(seconds=10))
    >>> d.due(t0 + timedelta(seconds=29))
    []
    >>> [n] = d.due(t0 + timedelta(seconds=30))
    >>> n.receiver, n.group_labels, len(n.alerts), n.status
    ('ops', {'rule_id': 'aqi-heavy'}, 2, <AlertState.FIRING: 'firing'>)
    >>> d.add(alert("st-1"), t0 + timedelta(minutes=1))  # a replay: nothing new
    >>> d.due(t0 + timedelta(minutes=6))
    []
    >>> d.add(alert("st-1", AlertState.RESOLVED), t0 + timedelta(minutes=20))
    >>> [n] = Dispatcher.restore(config, d.snapshot()).due(t0 + timedelta(minutes=21))
    >>> [a.state.value for a in n.alerts]
    ['firing', 'resolved']
    """

    def __init__(self, config: RoutingConfig) -> None:
        self.config = config
        self._receivers = config.receivers_by_name
        self._groups: dict[tuple[str, str], _Group] = {}
        self._sent: dict[tuple[str, str], _Sent] = {}
        self._resolved: dict[str, tuple[datetime, datetime]] = {}
        self.stats = DispatcherStats()

    def __repr__(self) -> str:
        return (
            f"Dispatcher(groups={len(self._groups)}, "
            f"alerts={sum(len(g.alerts) for g in self._groups.values())})"
        )

    # ------------------------------------------------------------ input

    def add(self, alert: Alert, now: datetime) -> None:
        """Take an alert (firing or resolved) into the groups of every route it matches.

        Args:
            alert: the alert as the rule engine emitted it.
            now: the current time (event or wall time, timezone-aware); a new
                group's first notification is due ``group_wait`` after it.
        """
        now = _aware(now)
        self.stats.added += 1
        seen = self._resolved.get(alert.fingerprint)
        if seen is not None and alert.starts_at <= seen[0]:
            self.stats.stale += 1  # an episode already resolved: a replay or a late copy
            return
        if alert.state is AlertState.RESOLVED:
            self._resolved[alert.fingerprint] = (alert.starts_at, now)
        labels = alert_labels(alert)
        for route in self.config.routes_for(labels):
            group_labels = route.group_labels(labels)
            key = (route.receiver, route.group_key(group_labels))
            group = self._groups.get(key)
            if group is None:
                receiver = self._receivers.get(route.receiver)
                group = _Group(
                    receiver=route.receiver,
                    key=key[1],
                    labels=group_labels,
                    group_wait=route.group_wait,
                    group_interval=route.group_interval,
                    repeat_interval=route.repeat_interval,
                    send_resolved=receiver.send_resolved if receiver is not None else True,
                    next_flush=now + route.group_wait,
                )
                self._groups[key] = group
            held = group.alerts.get(alert.fingerprint)
            if held is None or _newer(alert, held):
                group.alerts[alert.fingerprint] = alert

    # ------------------------------------------------------------ output

    def next_due(self) -> datetime | None:
        """When :meth:`due` will next have something to look at, or None when idle."""
        return min((g.next_flush for g in self._groups.values()), default=None)

    def due(self, now: datetime) -> list[Notification]:
        """The notifications due at ``now``, in order of due time, group key.

        Call it regularly (every second or so, or at :meth:`next_due`). Each call
        moves the groups it looks at on to their next ``group_interval``.
        """
        now = _aware(now)
        notifications: list[Notification] = []
        ready = sorted(
            (g for g in self._groups.values() if g.next_flush <= now),
            key=lambda g: (g.next_flush, g.receiver, g.key),
        )
        for group in ready:
            notification = self._flush(group, now)
            if notification is not None:
                notifications.append(notification)
        self._prune(now)
        self.stats.notifications += len(notifications)
        return notifications

    def _flush(self, group: _Group, now: datetime) -> Notification | None:
        key = (group.receiver, group.key)
        alerts = sorted(group.alerts.values(), key=lambda a: (a.starts_at, a.fingerprint))
        firing = [a for a in alerts if a.state is AlertState.FIRING]
        resolved = [a for a in alerts if a.state is AlertState.RESOLVED]
        firing_set = frozenset(_episode(a) for a in firing)
        resolved_set = frozenset(_episode(a) for a in resolved)
        sent = self._sent.get(key)
        notification: Notification | None = None
        if _needs_update(sent, firing_set, resolved_set, group, now):
            seq = (sent.seq if sent is not None else 0) + 1
            self._sent[key] = _Sent(firing_set, resolved_set, now, seq)
            chosen = firing + (resolved if group.send_resolved else [])
            if chosen:
                notification = Notification(
                    id=_notification_id(group, seq, firing_set, resolved_set),
                    receiver=group.receiver,
                    group_key=group.key,
                    group_labels=group.labels,
                    seq=seq,
                    at=now,
                    alerts=tuple(chosen),
                )
        for alert in resolved:
            del group.alerts[alert.fingerprint]
        if not group.alerts:
            del self._groups[key]
        else:
            periods = math.floor((now - group.next_flush) / group.group_interval) + 1
            group.next_flush += group.group_interval * periods
        return notification

    def _prune(self, now: datetime) -> None:
        horizon = now - self.config.resolved_retention
        for fingerprint in [f for f, (_, at) in self._resolved.items() if at < horizon]:
            del self._resolved[fingerprint]
        for key in [k for k, s in self._sent.items() if s.at < horizon and k not in self._groups]:
            del self._sent[key]

    # ------------------------------------------------------------ state

    def snapshot(self) -> bytes:
        """The whole state as JSON bytes, for a Faust table or a file.

        Restore with :meth:`restore`. Counters (:attr:`stats`) are not kept.
        """
        state = {
            "version": _SNAPSHOT_VERSION,
            "groups": [
                {
                    "receiver": g.receiver,
                    "key": g.key,
                    "labels": g.labels,
                    "group_wait": g.group_wait.total_seconds(),
                    "group_interval": g.group_interval.total_seconds(),
                    "repeat_interval": g.repeat_interval.total_seconds(),
                    "send_resolved": g.send_resolved,
                    "next_flush": g.next_flush.isoformat(),
                    "alerts": [a.model_dump(mode="json") for a in g.alerts.values()],
                }
                for g in self._groups.values()
            ],
            "sent": [
                {
                    "receiver": receiver,
                    "key": key,
                    "firing": sorted(s.firing),
                    "resolved": sorted(s.resolved),
                    "at": s.at.isoformat(),
                    "seq": s.seq,
                }
                for (receiver, key), s in self._sent.items()
            ],
            "resolved": [
                {"fingerprint": f, "starts_at": starts.isoformat(), "at": at.isoformat()}
                for f, (starts, at) in self._resolved.items()
            ],
        }
        return json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def restore(cls, config: RoutingConfig, data: bytes | str) -> Dispatcher:
        """A dispatcher with the state of a :meth:`snapshot`.

        Groups keep the timings they were created with, even if ``config`` changed.

        Raises:
            ValueError: when ``data`` is not a snapshot of this version.
        """
        try:
            state = json.loads(data)
            if state.get("version") != _SNAPSHOT_VERSION:
                msg = f"unknown dispatcher snapshot version {state.get('version')!r}"
                raise ValueError(msg)
            dispatcher = cls(config)
            for g in state["groups"]:
                group = _Group(
                    receiver=g["receiver"],
                    key=g["key"],
                    labels=dict(g["labels"]),
                    group_wait=timedelta(seconds=g["group_wait"]),
                    group_interval=timedelta(seconds=g["group_interval"]),
                    repeat_interval=timedelta(seconds=g["repeat_interval"]),
                    send_resolved=bool(g["send_resolved"]),
                    next_flush=_aware(datetime.fromisoformat(g["next_flush"])),
                )
                for raw in g["alerts"]:
                    alert = Alert.model_validate_json(json.dumps(raw))
                    group.alerts[alert.fingerprint] = alert
                dispatcher._groups[(group.receiver, group.key)] = group
            for s in state["sent"]:
                dispatcher._sent[(s["receiver"], s["key"])] = _Sent(
                    frozenset(s["firing"]),
                    frozenset(s["resolved"]),
                    _aware(datetime.fromisoformat(s["at"])),
                    int(s["seq"]),
                )
            for r in state["resolved"]:
                dispatcher._resolved[r["fingerprint"]] = (
                    _aware(datetime.fromisoformat(r["starts_at"])),
                    _aware(datetime.fromisoformat(r["at"])),
                )
        except (KeyError, TypeError, AttributeError, ValidationError, json.JSONDecodeError) as exc:
            msg = f"not a dispatcher snapshot: {exc}"
            raise ValueError(msg) from exc
        return dispatcher

    def groups(self) -> Iterable[tuple[str, str, int]]:
        """``(receiver, group key, number of alerts)`` of every group held."""
        return [(g.receiver, g.key, len(g.alerts)) for g in self._groups.values()]


def _newer(alert: Alert, held: Alert) -> bool:
    """Whether ``alert`` should replace ``held`` (same fingerprint)."""
    if alert.starts_at != held.starts_at:
        return alert.starts_at > held.starts_at  # a new episode, or a late old one
    # resolved is final for its episode; firing → firing (a fresher value) or → resolved
    return held.state is not AlertState.RESOLVED


def _needs_update(
    sent: _Sent | None,
    firing: frozenset[str],
    resolved: frozenset[str],
    group: _Group,
    now: datetime,
) -> bool:
    """Alertmanager's ``DedupStage.needsUpdate``, on alert episodes."""
    if sent is None:
        return bool(firing)
    if not firing <= sent.firing:
        return True
    if not firing:
        return bool(sent.firing)
    if group.send_resolved and not resolved <= sent.resolved:
        return True
    return sent.at <= now - group.repeat_interval


def _notification_id(
    group: _Group, seq: int, firing: frozenset[str], resolved: frozenset[str]
) -> str:
    text = "\n".join(
        [group.receiver, group.key, str(seq), ",".join(sorted(firing)), ",".join(sorted(resolved))]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]

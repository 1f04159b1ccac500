"""The MQTT topic scheme.

All topics live under ``urbansense/v1/``:

======================================  ===========================================
``urbansense/v1/<gateway_id>/readings``  a gateway's :class:`~telemetry.models.Batch`
``urbansense/v1/<gateway_id>/status``    its retained :class:`~telemetry.models.GatewayStatus`
``urbansense/v1/alerts/<kind>``          alerts about readings of ``<kind>``, or ``system``
======================================  ===========================================

Ids are checked before a topic is built, so a gateway id holding ``+``, ``#``,
``/``, NUL or more than 64 characters never reaches the broker. ``alerts`` is
reserved and cannot be a gateway id.

>>> readings_topic("gw-lakeside-01")
'urbansense/v1/gw-lakeside-01/readings'
>>> parse_topic("urbansense/v1/gw-lakeside-01/status")
Topic(channel=<Channel.STATUS: 'status'>, gateway_id='gw-lakeside-01', alert_kind=None)
>>> readings_filter(share_group="bridge")
'$share/bridge/urbansense/v1/+/readings'
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from telemetry.catalogue import Kind
from telemetry.errors import InvalidIdError, TopicError
from telemetry.ids import check_id

ROOT = "urbansense/v1"
"""Prefix of every urbansense topic; the version changes only with an incompatible scheme."""

ALERTS = "alerts"
"""The level under :data:`ROOT` that holds alert topics; reserved as a gateway id."""

SYSTEM_ALERTS = "system"
"""Alert topic kind for alerts not about a reading kind (a gateway offline)."""


class Channel(StrEnum):
    """What a topic carries."""

    READINGS = "readings"
    STATUS = "status"
    ALERTS = "alerts"


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed urbansense topic.

    Attributes:
        channel: readings, status or alerts.
        gateway_id: the gateway, for readings and status topics.
        alert_kind: the reading kind or ``system``, for alert topics.
    """

    channel: Channel
    gateway_id: str | None = None
    alert_kind: str | None = None


def _gateway(gateway_id: str) -> str:
    check_id(gateway_id, "gateway id")
    if gateway_id == ALERTS:
        raise InvalidIdError("gateway id", gateway_id, f"{ALERTS!r} is a reserved topic level")
    return gateway_id


_ALERT_KINDS = (*(kind.value for kind in Kind), SYSTEM_ALERTS)


def _alert_kind(kind: str) -> str:
    if kind not in _ALERT_KINDS:
        msg = f"unknown alert kind {kind!r}; known: {', '.join(_ALERT_KINDS)}"
        raise TopicError(msg)
    return str(kind)


def readings_topic(gateway_id: str) -> str:
    """The topic a gateway publishes its reading batches on."""
    return f"{ROOT}/{_gateway(gateway_id)}/{Channel.READINGS}"


def status_topic(gateway_id: str) -> str:
    """The topic a gateway publishes its retained status (and last will) on."""
    return f"{ROOT}/{_gateway(gateway_id)}/{Channel.STATUS}"


def alert_topic(kind: Kind | str) -> str:
    """The topic alerts about ``kind`` (or ``system``) are published on."""
    return f"{ROOT}/{ALERTS}/{_alert_kind(kind)}"


def _filter(tail: str, share_group: str | None) -> str:
    topic = f"{ROOT}/{tail}"
    if share_group is None:
        return topic
    check_id(share_group, "shared subscription group")
    return f"$share/{share_group}/{topic}"


def readings_filter(share_group: str | None = None) -> str:
    """Subscription filter for every gateway's readings.

    Args:
        share_group: with MQTT 5 shared subscriptions, the group whose members
            split the messages between them (several bridge processes).
    """
    return _filter(f"+/{Channel.READINGS}", share_group)


def status_filter(share_group: str | None = None) -> str:
    """Subscription filter for every gateway's status."""
    return _filter(f"+/{Channel.STATUS}", share_group)


def alerts_filter() -> str:
    """Subscription filter for every alert topic."""
    return f"{ROOT}/{ALERTS}/#"


def parse_topic(topic: str) -> Topic:
    """Parse an urbansense topic, raising :class:`TopicError` if it is not one.

    >>> parse_topic("urbansense/v1/alerts/pollution").alert_kind
    'pollution'
    >>> parse_topic("other/v1/x/readings")
    Traceback (most recent call last):
    ...
    telemetry.errors.TopicError: topic 'other/v1/x/readings' is not under 'urbansense/v1/'
    """
    prefix = f"{ROOT}/"
    if not topic.startswith(prefix):
        msg = f"topic {topic[:200]!r} is not under {prefix!r}"
        raise TopicError(msg)
    levels = topic[len(prefix) :].split("/")
    if len(levels) != 2:
        msg = f"topic {topic[:200]!r} should have 2 levels after {prefix!r}, has {len(levels)}"
        raise TopicError(msg)
    first, second = levels
    if first == ALERTS:
        return Topic(Channel.ALERTS, alert_kind=_alert_kind(second))
    try:
        gateway_id = _gateway(first)
    except InvalidIdError as error:
        msg = f"topic {topic[:200]!r}: {error}"
        raise TopicError(msg) from error
    if second == Channel.READINGS:
        return Topic(Channel.READINGS, gateway_id=gateway_id)
    if second == Channel.STATUS:
        return Topic(Channel.STATUS, gateway_id=gateway_id)
    msg = f"topic {topic[:200]!r}: unknown channel {second!r}; known: readings, status"
    raise TopicError(msg)

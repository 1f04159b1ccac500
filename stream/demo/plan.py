"""The demo's decisions, as pure functions: which servers, what time, which files.

Nothing here starts a process or reads the clock: the shell (:mod:`stream.demo.run`)
passes in what it found (an executable's path, the time now) and acts on what comes
back, so every choice is tested without a server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = [
    "MqttBroker",
    "Store",
    "StoreChoice",
    "amqtt_config",
    "choose_mqtt",
    "choose_store",
    "lateness_s",
    "mosquitto_config",
    "routing_config",
    "scenario_shift",
    "shift_scenario",
    "worker_environment",
]

_YEAR_OF_WEEKS = timedelta(weeks=52)


class MqttBroker(StrEnum):
    """The MQTT broker the demo runs."""

    MOSQUITTO = "mosquitto"
    """The Debian package's broker, when installed."""
    AMQTT = "amqtt"
    """The pure-Python broker from the Python environment (MQTT 3.1.1 only)."""


class Store(StrEnum):
    """Where the stream's points land."""

    VICTORIA_METRICS = "victoria-metrics"
    """A VictoriaMetrics server, which takes InfluxDB's write API; queried live."""
    FILES = "files"
    """Line-protocol files that ``influx write`` loads later."""


@dataclass(frozen=True, slots=True)
class StoreChoice:
    """The store chosen and why, for the demo to say.

    Attributes:
        store: the store.
        reason: one sentence for the terminal.
    """

    store: Store
    reason: str


def choose_mqtt(requested: str, mosquitto: str | None) -> MqttBroker:
    """The MQTT broker to run: Mosquitto if asked for or found, else amqtt.

    Args:
        requested: ``auto``, ``mosquitto`` or ``amqtt``.
        mosquitto: the Mosquitto executable's path, or None when it is not installed.

    Raises:
        ValueError: Mosquitto was asked for and is not installed.

    >>> choose_mqtt("auto", "/usr/sbin/mosquitto"), choose_mqtt("auto", None)
    (<MqttBroker.MOSQUITTO: 'mosquitto'>, <MqttBroker.AMQTT: 'amqtt'>)
    """
    if requested == "amqtt":
        return MqttBroker.AMQTT
    if mosquitto is not None:
        return MqttBroker.MOSQUITTO
    if requested == "mosquitto":
        msg = "--mqtt mosquitto: mosquitto is not installed (apt-get install mosquitto)"
        raise ValueError(msg)
    return MqttBroker.AMQTT


def choose_store(requested: str, victoria_metrics: str | None) -> StoreChoice:
    """The store to write to: VictoriaMetrics if asked for or found, else files.

    Args:
        requested: ``auto``, ``victoria-metrics`` or ``files``.
        victoria_metrics: the ``victoria-metrics`` executable's path, or None.

    Raises:
        ValueError: VictoriaMetrics was asked for and is not installed.

    >>> choose_store("auto", None).reason
    'victoria-metrics is not installed: points go to line-protocol files'
    """
    if requested == Store.FILES:
        return StoreChoice(Store.FILES, "--store files: points go to line-protocol files")
    if victoria_metrics is not None:
        return StoreChoice(Store.VICTORIA_METRICS, f"VictoriaMetrics found at {victoria_metrics}")
    if requested == Store.VICTORIA_METRICS:
        msg = (
            "--store victoria-metrics: victoria-metrics is not installed "
            "(apt-get install victoria-metrics)"
        )
        raise ValueError(msg)
    return StoreChoice(
        Store.FILES, "victoria-metrics is not installed: points go to line-protocol files"
    )


def scenario_shift(
    start: datetime, end: datetime, now: datetime, period: timedelta = _YEAR_OF_WEEKS
) -> timedelta:
    """How far to move a scenario, in whole ``period``, so that it ends at or before ``now``.

    The stream refuses readings from the future and a database drops points older
    than its retention, so the demo replays a scenario in the most recent span that
    is entirely past. The default period, 52 weeks, keeps every incident on its
    weekday and its local hour, and the season of the year (the simulated air, the
    heating and cooling loads and the tourist seasons follow the date), a day or
    two earlier per year moved.

    >>> from datetime import UTC
    >>> now = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
    >>> start, end = datetime(2024, 11, 7, 16, tzinfo=UTC), datetime(2024, 11, 10, 4, tzinfo=UTC)
    >>> shift = scenario_shift(start, end, now)
    >>> shift.days, (start + shift).date().isoformat(), end + shift <= now
    (728, '2026-11-05', True)
    >>> scenario_shift(start, end, datetime(2026, 11, 7, tzinfo=UTC)).days
    364
    """
    periods = math.floor((now - end) / period)
    return periods * period


def _shifted(value: object, by: timedelta) -> object:
    if isinstance(value, datetime):
        return value + by
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return value
        return (when + by).isoformat()
    return value


def shift_scenario(document: Mapping[str, Any], by: timedelta, base: Path) -> dict[str, Any]:
    """A scenario document with its start and every incident's and fault's start moved.

    Args:
        document: the scenario YAML, loaded (times as datetimes or ISO strings).
        by: how far to move it.
        base: the folder of the original file: a relative registry path is made
            absolute against it, so the moved copy can live anywhere.

    >>> from datetime import UTC
    >>> doc = {"registry": "example", "start": datetime(2024, 11, 8, tzinfo=UTC),
    ...        "incidents": [{"kind": "local_source", "start": "2024-11-08T21:00:00+08:00"}]}
    >>> moved = shift_scenario(doc, timedelta(days=7), Path("/s"))
    >>> moved["start"].isoformat(), moved["incidents"][0]["start"]
    ('2024-11-15T00:00:00+00:00', '2024-11-15T21:00:00+08:00')
    >>> shift_scenario({"registry": "city.yaml"}, timedelta(0), Path("/s"))["registry"]
    '/s/city.yaml'
    """
    out = dict(document)
    out["start"] = _shifted(document.get("start"), by)
    for key in ("incidents", "faults"):
        items = document.get(key) or []
        out[key] = [
            {**item, "start": _shifted(item["start"], by)} if "start" in item else dict(item)
            for item in items
        ]
    registry = document.get("registry")
    if isinstance(registry, str) and registry != "example" and not Path(registry).is_absolute():
        out["registry"] = str(base / registry)
    return out


def lateness_s(speed: float, jitter_s: float = 10.0, floor_s: float = 600.0) -> float:
    """How late (event time) a reading may be and still count, at a simulation speed.

    The stream's watermark is the newest event time less this bound; a reading behind
    it is written but updates no state. At N times real time, the few seconds by
    which one gateway's envelopes may trail another's (batching on the gateway, the
    bridge, the worker's fetches) are N times as much event time, so the bound grows
    with the speed: ``jitter_s`` wall seconds of it, and never below the production
    default. Windows close that much later in event time, a few seconds on the wall.

    >>> lateness_s(1), lateness_s(720)
    (600.0, 7200.0)
    """
    return max(floor_s, jitter_s * speed)


def mosquitto_config(port: int, data_dir: Path, user: str) -> str:
    """A Mosquitto configuration for the demo: one loopback listener, no persistence.

    ``user`` is the account the broker runs as (it drops root privileges to it), the
    demo's own, so that it can write its folder. Queues are unlimited, as in the
    shipped configuration's spirit: no QoS 1 message is dropped.

    >>> print(mosquitto_config(1883, Path("/d"), "root"), end="")
    listener 1883 127.0.0.1
    allow_anonymous true
    persistence false
    max_queued_messages 0
    max_inflight_messages 0
    user root
    log_dest file /d/mosquitto.log
    """
    return (
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_queued_messages 0\n"
        "max_inflight_messages 0\n"
        f"user {user}\n"
        f"log_dest file {data_dir / 'mosquitto.log'}\n"
    )


def amqtt_config(port: int) -> str:
    """An amqtt configuration: anonymous clients on one loopback listener."""
    return (
        "listeners:\n"
        "  default:\n"
        "    type: tcp\n"
        f"    bind: 127.0.0.1:{port}\n"
        "plugins:\n"
        "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
        "    allow_anonymous: true\n"
    )


def routing_config(url: str, secret: str) -> str:
    """Receivers and routes sending every alert at once to the demo's webhook.

    Groups wait a second, not the production 30 s, so an alert shows as it fires.

    >>> "group_wait: 1s" in routing_config("http://127.0.0.1:9/hook", "s")
    True
    """
    return (
        "receivers:\n"
        f'  - {{name: demo, type: webhook, url: "{url}", secret: "{secret}"}}\n'
        "route:\n"
        "  receiver: demo\n"
        "  group_by: [rule_id, district_id]\n"
        "  group_wait: 1s\n"
        "  group_interval: 2s\n"
        "  repeat_interval: 4h\n"
    )


def worker_environment(
    *,
    kafka: str,
    store: Store,
    influx_url: str,
    lines_dir: Path,
    routing: Path,
    datadir: Path,
    app_id: str,
    partitions: int,
    registry: str = "example",
    utc_offset_h: float = 8.0,
    lateness_s: float = 600.0,
    energy_warm_up_h: float = 2.0,
) -> dict[str, str]:
    """The ``URBANSENSE_*`` settings of the demo's worker (the default rule set on).

    >>> env = worker_environment(kafka="127.0.0.1:9", store=Store.FILES, influx_url="",
    ...     lines_dir=Path("/w/lines"), routing=Path("/w/routing.yaml"),
    ...     datadir=Path("/w/worker"), app_id="demo", partitions=4)
    >>> env["URBANSENSE_SINK"], env["URBANSENSE_LINES_DIR"], env["URBANSENSE_RULES"]
    ('files', '/w/lines', 'default')
    """
    env = {
        "URBANSENSE_APP_ID": app_id,
        "URBANSENSE_KAFKA": kafka,
        "URBANSENSE_PARTITIONS": str(partitions),
        "URBANSENSE_RULES": "default",
        "URBANSENSE_ROUTING": str(routing),
        "URBANSENSE_DATADIR": str(datadir),
        "URBANSENSE_SINK": "files" if store is Store.FILES else "influx",
        "URBANSENSE_LINES_DIR": str(lines_dir),
        "URBANSENSE_REGISTRY": registry,
        "URBANSENSE_UTC_OFFSET_H": f"{utc_offset_h:g}",
        "URBANSENSE_LATENESS_S": f"{lateness_s:g}",
        "URBANSENSE_ENERGY_WARM_UP_H": f"{energy_warm_up_h:g}",
    }
    if store is Store.VICTORIA_METRICS:
        env["URBANSENSE_INFLUX_URL"] = influx_url
    return env

"""What the edge-agent tests share: configs for synthetic sensors, a recording subscriber,
and running ``urbansense-agent`` as a real process."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agents.config import AgentConfig, parse_config
from telemetry import (
    Codec,
    GatewayStatus,
    readings_filter,
    readings_topic,
    status_filter,
    status_topic,
)

AGENT_BIN = Path(sys.executable).parent / "urbansense-agent"


def agent_toml(
    queue: Path,
    url: str,
    *,
    gateway_id: str = "gw-test",
    sensors: int = 3,
    sample_interval_s: float = 0.05,
    publish_interval_s: float = 0.2,
    extra_broker: str = "",
    max_bytes: int | None = None,
    heartbeat_s: float = 1.0,
    sensor_options: str = "",
) -> str:
    """A config with ``sensors`` synthetic sensors sampled fast, for tests."""
    lines = [
        f'gateway_id = "{gateway_id}"',
        "[broker]",
        f'url = "{url}"',
        "reconnect_min_s = 0.2",
        "reconnect_max_s = 1.0",
        extra_broker,
        "[buffer]",
        f'path = "{queue}"',
        f"max_bytes = {max_bytes}" if max_bytes else "",
        "[publish]",
        "linger_s = 0.1",
        "max_batch_readings = 50",
        f"heartbeat_s = {heartbeat_s}",
    ]
    kinds = ["pollution", "traffic", "crowd", "energy", "ambient"]
    for index in range(sensors):
        lines += [
            "[[sensors]]",
            f'id = "syn-{index:02d}"',
            'driver = "synthetic"',
            f"sample_interval_s = {sample_interval_s}",
            f"publish_interval_s = {publish_interval_s}",
            "[sensors.options]",
            f'kind = "{kinds[index % len(kinds)]}"',
            f"seed = {index}",
            sensor_options,
        ]
    return "\n".join(lines) + "\n"


def agent_config(queue: Path, url: str, **options: Any) -> AgentConfig:
    """:func:`agent_toml`, validated."""
    return parse_config(agent_toml(queue, url, **options))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` if it does not in time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:g} s waiting for {what}"
            raise AssertionError(msg)
        time.sleep(0.05)


@dataclass
class Collector:
    """A persistent-session QoS 1 subscriber recording one gateway's readings and statuses.

    It reconnects by itself (paho's own loop), so it outlives a broker restart;
    with a persistent session the broker keeps its messages meanwhile.
    """

    host: str
    port: int
    gateway_id: str | None = "gw-test"
    """The gateway whose topics it subscribes to; None for every gateway."""
    client_id: str = "collector"
    username: str | None = None
    password: str | None = None
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5
    arrivals: list[tuple[str, int, bytes]] = field(default_factory=list)
    statuses: list[GatewayStatus] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _subscribed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._codec = Codec()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=self.protocol,
            clean_session=None if self.protocol == mqtt.MQTTv5 else False,
        )
        client.reconnect_delay_set(1, 1)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *args: self._subscribed.set()
        client.on_message = self._on_message
        self.client = client

    def start(self) -> Collector:
        if self.protocol == mqtt.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 3600
            self.client.connect(self.host, self.port, clean_start=False, properties=properties)
        else:
            self.client.connect(self.host, self.port)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, 10, "the collector's SUBACK")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if self.gateway_id is None:  # every gateway
            client.subscribe([(readings_filter(), 1), (status_filter(), 1)])
        else:
            topics = [readings_topic(self.gateway_id), status_topic(self.gateway_id)]
            client.subscribe([(topic, 1) for topic in topics])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            if message.topic.endswith("/status"):
                self.statuses.append(self._codec.decode_status(bytes(message.payload)))
                return
            batch = self._codec.decode_batch(bytes(message.payload))
            for reading in batch.readings:
                self.arrivals.append(
                    (reading.sensor_id, reading.seq, reading.model_dump_json().encode())
                )

    def readings(self) -> list[tuple[str, int, bytes]]:
        with self._lock:
            return list(self.arrivals)

    def seqs(self) -> dict[str, list[int]]:
        """Each sensor's sequence numbers in arrival order, duplicates included."""
        by_sensor: dict[str, list[int]] = defaultdict(list)
        for sensor, seq, _ in self.readings():
            by_sensor[sensor].append(seq)
        return dict(by_sensor)

    def count(self) -> int:
        return len(self.readings())

    def last_status(self) -> GatewayStatus | None:
        with self._lock:
            return self.statuses[-1] if self.statuses else None


def last_seqs(queue: Path) -> dict[str, int]:
    """The last sequence number the queue gave each sensor (read once the agent stopped)."""
    with contextlib.closing(sqlite3.connect(queue)) as db:
        return dict(db.execute("SELECT sensor_id, last_seq FROM sequences"))


def wait_for_every_reading(collector: Collector, queue: Path, timeout: float) -> dict[str, int]:
    """Wait until ``collector`` holds every reading the stopped agent's queue numbered, from
    seq 0 to each sensor's last; return those last seqs."""
    last = last_seqs(queue)
    expected = sum(n + 1 for n in last.values())
    wait_until(
        lambda: len({(s, q) for s, q, _ in collector.readings()}) == expected,
        timeout,
        "every reading at the collector",
    )
    return last


def check_delivery(collector: Collector, last: dict[str, int], first: int = 0) -> None:
    """Every reading from ``first`` to the sensor's last seq arrived; first arrivals in order;
    a duplicate only as an exact re-send of the same reading."""
    payloads: dict[tuple[str, int], bytes] = {}
    for sensor, seq, payload in collector.readings():
        assert payloads.setdefault((sensor, seq), payload) == payload, (sensor, seq)
    seqs = collector.seqs()
    assert set(seqs) == set(last)
    for sensor, arrived in seqs.items():
        firsts = list(dict.fromkeys(arrived))
        assert firsts == sorted(firsts), f"{sensor}: out of order: {firsts}"
        assert firsts[0] >= first, sensor
        assert firsts == list(range(firsts[0], last[sensor] + 1)), f"{sensor}: gaps: {firsts}"


@contextmanager
def collecting(host: str, port: int, **options: Any) -> Iterator[Collector]:
    collector = Collector(host, port, **options).start()
    try:
        yield collector
    finally:
        collector.stop()


@dataclass
class AgentProcess:
    """``urbansense-agent run CONFIG`` as a child process, its log in a file."""

    config: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(AGENT_BIN), "run", str(self.config), "--log-format", "json"],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        return self

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

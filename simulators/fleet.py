"""The fleet runner: many virtual gateways publishing at a target rate, for load tests.

``N`` virtual gateways with ``M`` sensors each publish through the edge agent's own queue
and MQTT publisher (:mod:`simulators.publish`) at an aggregate target of ``rate``
readings per second. The sensors copy the kinds of a registry's sensors in turn
(``fleet-gw-0003-aq-pier-pollution``), and their values come from the ``synthetic``
driver, so that the load is the whole realistic mix of the wire contract at a cost a
single process can sustain.

Each sensor publishes at ``rate / (N * M)`` per second of wall time. Event time starts
at ``start`` and runs ``speed`` times faster than the wall clock; a sensor's readings are
evenly spaced in event time, so none shares a timestamp. While it runs, a progress line
shows the rate, the totals and the lag: readings queued but not yet acknowledged by the
broker, and how far production is behind schedule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from edge_agents.config import BrokerConfig
from simulators.publish import GatewayCounts, VirtualGateways
from simulators.synthetic import SyntheticDriver, SyntheticOptions
from telemetry import Kind, Reading
from telemetry.registry import Registry

__all__ = ["FleetPlan", "FleetReport", "FleetSensor", "run_fleet"]

_TICK_S = 0.05


@dataclass
class FleetSensor:
    """One sensor of the fleet: its id, gateway, driver and next reading's number."""

    id: str
    gateway_id: str
    kind: Kind
    driver: SyntheticDriver
    seq: int = 0
    event_s: float = 0.0
    """The event time of the reading being made, seconds from the fleet's start."""


@dataclass(frozen=True)
class FleetPlan:
    """What to run.

    Attributes:
        gateways: how many virtual gateways (N).
        sensors_per_gateway: sensors on each (M).
        rate: the target aggregate rate, readings per second of wall time.
        start: the event time of the first readings.
        speed: event time runs this many times faster than the wall clock.
        seed: makes the values reproducible.
        duration_s: stop after this many wall seconds; None to run until stopped.
    """

    gateways: int
    sensors_per_gateway: int
    rate: float
    start: datetime
    speed: float = 1.0
    seed: int = 0
    duration_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("gateways", "sensors_per_gateway"):
            value = getattr(self, name)
            if not 1 <= value <= 100_000:
                msg = f"{name} must be within 1..100000, not {value!r}"
                raise ValueError(msg)
        for name in ("rate", "speed"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                msg = f"{name} must be a positive number, not {value!r}"
                raise ValueError(msg)
        if self.duration_s is not None and not self.duration_s > 0:
            msg = f"duration_s must be positive, not {self.duration_s!r}"
            raise ValueError(msg)

    def sensors(self, registry: Registry) -> list[FleetSensor]:
        """The fleet's sensors, copying the kinds of ``registry``'s sensors in turn."""
        templates = registry.sensors
        if not templates:
            msg = "the registry has no sensors to copy"
            raise ValueError(msg)
        out = []
        for g in range(self.gateways):
            gateway_id = f"fleet-gw-{g:04d}"
            for j in range(self.sensors_per_gateway):
                template = templates[j % len(templates)]
                lap = j // len(templates)
                suffix = f"-{lap}" if lap else ""
                kind = template.kind
                options = SyntheticOptions(kind=kind, seed=self.seed * 1_000_003 + g * 10_007 + j)
                sensor = FleetSensor(
                    f"{gateway_id}-{template.id}{suffix}"[:64],
                    gateway_id,
                    kind,
                    SyntheticDriver(options),
                )
                # Counts cover the event time between readings, not the wall time.
                sensor.driver.clock = partial(getattr, sensor, "event_s")
                out.append(sensor)
        return out


@dataclass(frozen=True)
class FleetReport:
    """How a run went.

    Attributes:
        elapsed_s: wall seconds from the first reading to the last acknowledgement.
        counts: the final totals.
        produce_s: wall seconds spent producing (the rest waited for the broker).
    """

    elapsed_s: float
    counts: GatewayCounts
    produce_s: float

    @property
    def acked_rate(self) -> float:
        """Readings acknowledged per second over the run."""
        return self.counts.acked / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _next_reading(sensor: FleetSensor, start: datetime, step: timedelta) -> Reading:
    sensor.event_s = step.total_seconds() * (sensor.seq + 1)
    reading = Reading(
        sensor_id=sensor.id,
        kind=sensor.kind,
        ts=start + step * (sensor.seq + 1),
        seq=sensor.seq,
        interval_s=step.total_seconds(),
        metrics=sensor.driver.read(),
    )
    sensor.seq += 1
    return reading


def run_fleet(
    plan: FleetPlan,
    registry: Registry,
    broker: BrokerConfig,
    *,
    progress: Callable[[float, GatewayCounts, float], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
    drain_timeout_s: float = 60.0,
) -> FleetReport:
    """Publish at the plan's rate until its duration is over or ``stop()`` says so.

    Args:
        plan: what to run.
        registry: whose sensors' kinds the fleet copies.
        broker: where to publish.
        progress: called about once a second with (elapsed wall seconds, totals,
            seconds behind schedule).
        stop: polled every tick; True ends the run (Ctrl-C, say).
        drain_timeout_s: at the end, how long to wait for the broker to acknowledge
            what is queued.
    """
    sensors = plan.sensors(registry)
    gateway_sensors: dict[str, list[str]] = {}
    for sensor in sensors:
        gateway_sensors.setdefault(sensor.gateway_id, []).append(sensor.id)
        sensor.driver.open()
    per_sensor_s = len(sensors) / plan.rate  # wall seconds between a sensor's readings
    step = timedelta(seconds=per_sensor_s * plan.speed)
    produced = 0
    produce_s = 0.0
    cursor = 0
    with VirtualGateways(gateway_sensors, broker) as fleet:
        began = time.monotonic()
        next_report = began + 1.0
        while not stop():
            now = time.monotonic()
            elapsed = now - began
            if plan.duration_s is not None and elapsed >= plan.duration_s:
                break
            due = int(plan.rate * elapsed) - produced
            if due > 0:
                t0 = time.perf_counter()
                batch = []
                for _ in range(due):
                    batch.append(_next_reading(sensors[cursor], plan.start, step))
                    cursor = (cursor + 1) % len(sensors)
                fleet.put(batch)
                produced += due
                produce_s += time.perf_counter() - t0
            if progress is not None and now >= next_report:
                # How late the newest reading was made: its due time against the clock.
                behind = max(0.0, time.monotonic() - began - produced / plan.rate)
                progress(elapsed, fleet.counts(), behind)
                next_report += 1.0
            time.sleep(max(0.0, _TICK_S - (time.monotonic() - now)))
        fleet.wait_drained(drain_timeout_s)
        elapsed = time.monotonic() - began
        counts = fleet.counts()
        if progress is not None:
            progress(elapsed, counts, 0.0)
    return FleetReport(elapsed_s=elapsed, counts=counts, produce_s=produce_s)

"""One sensor's sampling loop: read the driver, pre-aggregate, queue the readings.

Each sensor runs in its own thread, so a slow or hung serial read delays only
that sensor. The loop never touches the network: a closed window becomes a
reading in the on-disk queue (:class:`~edge_agents.buffer.ReadingBuffer`) and
the publisher takes it from there.

Failures are part of the loop. A driver that cannot open, raises, times out or
returns garbage (an unknown metric, a value that is not a finite number or is
outside the metric's physical range) is counted in :class:`SensorStats`,
logged, and retried: after :data:`FAILURES_BEFORE_REOPEN` failed reads in a row
(or one that says retrying cannot help) the driver is closed and reopened after
an exponential backoff with jitter. Nothing a driver does stops the agent or
the other sensors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError

from edge_agents.aggregate import Window, WindowAggregator
from edge_agents.backoff import Backoff
from edge_agents.buffer import QueueStorageError, ReadingBuffer
from edge_agents.config import SensorConfig
from edge_agents.drivers.base import Driver
from edge_agents.errors import DriverError
from telemetry import CATALOGUE, Kind, Reading

__all__ = ["FAILURES_BEFORE_REOPEN", "SensorSampler", "SensorStats", "check_sample", "utc_now"]

FAILURES_BEFORE_REOPEN = 3
"""Failed reads in a row after which the driver is closed and reopened with backoff."""

log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    """The current time, UTC: the agent's default clock."""
    return datetime.now(UTC)


def check_sample(kind: Kind, sample: object) -> dict[str, float]:
    """Check one sample a driver returned against the metric catalogue.

    Args:
        kind: the sensor's kind.
        sample: what ``Driver.read()`` returned.

    Returns:
        The sample as ``{metric: float}``.

    Raises:
        DriverError: the sample is not a non-empty mapping of known metric
            names to finite numbers within their physical range; the message
            names the metric and the value.

    >>> check_sample(Kind.POLLUTION, {"pm2_5": 35})
    {'pm2_5': 35.0}
    >>> check_sample(Kind.POLLUTION, {"pm2_5": float("nan")})
    Traceback (most recent call last):
    ...
    edge_agents.errors.DriverError: garbage from driver: pm2_5: nan is not a finite number
    """
    if not isinstance(sample, Mapping) or not sample:
        msg = f"garbage from driver: expected a mapping of metrics, got {sample!r:.80}"
        raise DriverError(msg)
    known = CATALOGUE[kind]
    checked: dict[str, float] = {}
    for name, value in sample.items():
        spec = known.get(name)
        if spec is None:
            msg = f"garbage from driver: {kind} has no metric {name!r}"
            raise DriverError(msg)
        if isinstance(value, bool) or not isinstance(value, int | float):
            msg = f"garbage from driver: {name}: {value!r:.40} is not a number"
            raise DriverError(msg)
        problem = spec.range_problem(float(value), None)
        if problem is not None:
            msg = f"garbage from driver: {name}: {problem}"
            raise DriverError(msg)
        checked[name] = float(value)
    return checked


@dataclass
class SensorStats:
    """What one sensor's loop has done since the agent started; read by the heartbeat.

    Attributes:
        samples: samples read and accepted.
        readings: readings (closed windows) put in the queue.
        errors: failed opens and reads, garbage included.
        last_error: the most recent failure, or ``None``.
        last_error_at: when it happened (``time.monotonic()``), 0 if never.
    """

    samples: int = 0
    readings: int = 0
    errors: int = 0
    last_error: str | None = None
    last_error_at: float = 0.0


class SensorSampler(threading.Thread):
    """Samples one sensor until ``stop`` is set, then flushes its open window.

    Args:
        sensor: the sensor's configuration.
        driver: the sensor's driver, built but not opened.
        buffer: where readings go.
        stop: set to stop the loop.
        clock: gives the current UTC time stamped on samples.
        backoff: the reopen policy; default 1 s doubling to 60 s.
    """

    def __init__(
        self,
        sensor: SensorConfig,
        driver: Driver[Any],
        buffer: ReadingBuffer,
        stop: threading.Event,
        *,
        clock: Callable[[], datetime] = utc_now,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(name=f"sensor-{sensor.id}", daemon=True)
        self.sensor = sensor
        self.driver = driver
        self.kind = driver.sensor_kind()
        self.buffer = buffer
        self.stop = stop
        self.clock = clock
        self.backoff = backoff or Backoff(initial_s=1.0, max_s=60.0)
        self.stats = SensorStats()
        self._aggregator = WindowAggregator(self.kind, sensor.publish_interval_s)
        self._log = log.bind(sensor_id=sensor.id, driver=sensor.driver)
        self._is_open = False
        self._failed_reads = 0

    def run(self) -> None:
        """The loop: open, sample on schedule, reopen with backoff after failures."""
        interval = self.sensor.sample_interval_s
        try:
            while not self.stop.is_set():
                if not self._is_open and not self._open():
                    self.stop.wait(self.backoff.next_delay())
                    continue
                # Ticks are aligned to the clock (every 5 s at :00, :05, ...), like the
                # windows: sensors sample together and their readings share one queue
                # commit. A read slower than the interval skips ticks instead of bursting.
                if self.stop.wait(interval - time.time() % interval):
                    break
                self._sample()
                self._queue(self._aggregator.close_due(self.clock()))
        finally:
            self._close()
            self._queue(self._flush_partial())

    def _open(self) -> bool:
        try:
            self.driver.open()
        except Exception as error:  # a driver's failure must not end the loop
            self._failed("open", error)
            self._close()
            return False
        self._is_open = True
        self._log.info("sensor open")
        return True

    def _sample(self) -> None:
        try:
            sample = check_sample(self.kind, self.driver.read())
        except Exception as error:  # see _open
            self._failed_reads += 1
            self._failed("read", error)
            retryable = not isinstance(error, DriverError) or error.retryable
            if self._failed_reads >= FAILURES_BEFORE_REOPEN or not retryable:
                self._close()
                self.stop.wait(self.backoff.next_delay())
            return
        if self._failed_reads or self.backoff.failures:
            self._log.info("sensor recovered", failed_reads=self._failed_reads)
        self._failed_reads = 0
        self.backoff.reset()
        self.stats.samples += 1
        self._queue(self._aggregator.add(self.clock(), sample))

    def _failed(self, action: str, error: Exception) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{self.sensor.id}: {action} failed: {error}"
        self.stats.last_error_at = time.monotonic()
        self._log.warning(
            f"sensor {action} failed",
            error=str(error),
            error_type=type(error).__name__,
            errors_total=self.stats.errors,
        )

    def _close(self) -> None:
        if self._is_open:
            self._log.info("sensor closed")
        self._is_open = False
        try:
            self.driver.close()
        except Exception as error:  # close must not raise; if it does, note it
            self._log.warning("driver close raised", error=str(error))

    def _flush_partial(self) -> list[Window]:
        """Close the open window at the last moment it covers, so a restart cannot overwrite it.

        The partial window ends *now* rather than at its aligned end: after a
        restart, the same aligned window is published again with the samples
        taken after the restart, and two readings with the same event time
        would be one point in the time-series store.
        """
        windows = self._aggregator.flush()
        now = self.clock()
        truncated = []
        for window in windows:
            start = window.end - timedelta(seconds=window.interval_s)
            if start < now < window.end:
                window = Window(
                    end=now,
                    interval_s=(now - start).total_seconds(),
                    metrics=window.metrics,
                    stats=window.stats,
                    samples=window.samples,
                )
            truncated.append(window)
        return truncated

    def _queue(self, windows: list[Window]) -> None:
        for window in windows:
            try:
                result = self.buffer.put_sample(self.sensor.id, self._builder(window))
            except ValidationError as error:
                problems = "; ".join(f"{e['msg']}" for e in error.errors(include_url=False))
                self._failed("aggregate", DriverError(problems))
                continue
            except QueueStorageError as error:  # a full or failing disk: the reading is lost
                self._failed("queue", error)
                continue
            self.stats.readings += 1
            if result.dropped:
                self._log.warning(
                    "queue full: oldest readings dropped",
                    dropped=result.dropped,
                    dropped_total=self.buffer.dropped_total(),
                )

    def _builder(self, window: Window) -> Callable[[int], Reading]:
        def build(seq: int) -> Reading:
            return Reading(
                sensor_id=self.sensor.id,
                kind=self.kind,
                ts=window.end,
                seq=seq,
                interval_s=window.interval_s,
                metrics=window.metrics,
                stats=window.stats,
            )

        return build

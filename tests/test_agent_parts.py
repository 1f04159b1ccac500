"""The edge agent's parts without a broker: backoff, sample checks, the sampler's failure
handling, the batch envelope, the status, and the systemd notifier."""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agents.agent import Agent
from edge_agents.backoff import Backoff
from edge_agents.buffer import ReadingBuffer
from edge_agents.config import SensorConfig
from edge_agents.drivers.base import Driver, DriverOptions
from edge_agents.errors import DriverError
from edge_agents.publisher import batch_payload
from edge_agents.sampler import SensorSampler, check_sample
from edge_agents.systemd import Notifier
from simulators.synthetic import SyntheticDriver, SyntheticOptions
from telemetry import Codec, GatewayState, Kind, Reading, to_json
from tests.agent_harness import agent_config, wait_until
from tests.wire import reading

# ---------------------------------------------------------------- backoff


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=2**32))
def test_backoff_delays_stay_under_a_ceiling_that_doubles_up_to_the_maximum(
    failures: int, seed: int
) -> None:
    backoff = Backoff(initial_s=0.5, max_s=30.0, rng=random.Random(seed))
    for n in range(failures):
        ceiling = min(30.0, 0.5 * 2**n)
        assert backoff.ceiling_s() == ceiling
        assert 0.0 <= backoff.next_delay() <= ceiling
    assert backoff.failures == failures
    backoff.reset()
    assert backoff.ceiling_s() == 0.5


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (2.0, 1.0), (1.0, float("inf"))])
def test_backoff_refuses_bounds_that_make_no_sense(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(initial_s=initial, max_s=maximum)


# ---------------------------------------------------------------- samples


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({}, "expected a mapping"),
        ([("pm2_5", 1.0)], "expected a mapping"),
        ({"pm25": 1.0}, "pollution has no metric 'pm25'"),
        ({"pm2_5": "12"}, "pm2_5: '12' is not a number"),
        ({"pm2_5": True}, "pm2_5: True is not a number"),
        ({"pm2_5": float("inf")}, "pm2_5: inf is not a finite number"),
        ({"pm2_5": -3.0}, "pm2_5: -3.0 is outside the physical range"),
    ],
)
def test_garbage_from_a_driver_is_refused_naming_the_metric_and_value(
    sample: object, message: str
) -> None:
    with pytest.raises(DriverError, match=message):
        check_sample(Kind.POLLUTION, sample)


# ---------------------------------------------------------------- the sampler


class _FlakyOptions(DriverOptions):
    script: str = ""


class _FlakyDriver(Driver[_FlakyOptions]):
    """Plays a script, one character per call: o = open fails, r = read raises,
    g = garbage, h = hard failure (not retryable), . = a good sample."""

    Options: ClassVar[type[DriverOptions]] = _FlakyOptions
    kind: ClassVar[Kind | None] = Kind.POLLUTION

    def __init__(self, options: _FlakyOptions) -> None:
        super().__init__(options)
        self.steps: Iterator[str] = iter(options.script)
        self.opens = self.closes = 0

    def open(self) -> None:
        self.opens += 1
        if next(self.steps, ".") == "o":
            raise DriverError("port busy")

    def read(self) -> dict[str, float]:
        step = next(self.steps, ".")
        if step == "r":
            raise DriverError("timeout")
        if step == "h":
            raise DriverError("device gone", retryable=False)
        if step == "g":
            return {"pm2_5": -1.0}
        return {"pm2_5": 20.0}

    def close(self) -> None:
        self.closes += 1


def _run_sampler(tmp_path: Path, driver: Driver[_FlakyOptions], readings: int) -> SensorSampler:
    sensor = SensorConfig(
        id="aq-01", driver="synthetic", sample_interval_s=0.01, publish_interval_s=0.01
    )
    stop = threading.Event()
    with ReadingBuffer(tmp_path / "queue.db", max_bytes=10**7) as buffer:
        sampler = SensorSampler(
            sensor, driver, buffer, stop, backoff=Backoff(initial_s=0.01, max_s=0.02)
        )
        sampler.start()
        try:
            wait_until(lambda: sampler.stats.readings >= readings, 10, f"{readings} readings")
        finally:
            stop.set()
            sampler.join(5)
    assert not sampler.is_alive()
    return sampler


def test_a_failing_driver_is_counted_reopened_with_backoff_and_recovers(tmp_path: Path) -> None:
    # open fails, then opens; 3 failed reads in a row -> closed and reopened; garbage counted;
    # a hard failure -> closed and reopened at once.
    driver = _FlakyDriver(_FlakyOptions(script="o" + "." + "rrg" + "." + "..h" + "." * 5))
    sampler = _run_sampler(tmp_path, driver, readings=5)
    assert sampler.stats.errors == 5
    assert driver.opens == 4
    assert driver.closes == driver.opens  # every open is closed, the failed one too
    assert sampler.stats.last_error is not None
    assert "device gone" in sampler.stats.last_error


def test_the_sampler_publishes_windows_with_stats_and_numbered_readings(tmp_path: Path) -> None:
    driver = SyntheticDriver(SyntheticOptions(kind=Kind.CROWD, seed=1))
    sensor = SensorConfig(
        id="gate-1", driver="synthetic", sample_interval_s=0.01, publish_interval_s=0.05
    )
    stop = threading.Event()
    with ReadingBuffer(tmp_path / "queue.db", max_bytes=10**7) as buffer:
        sampler = SensorSampler(sensor, driver, buffer, stop)
        sampler.start()
        wait_until(lambda: buffer.depth() >= 4, 10, "4 readings")
        stop.set()
        sampler.join(5)
        stored = [entry.reading() for entry in buffer.peek_batch(1000, 10**7)]
    assert [r.seq for r in stored] == list(range(len(stored)))
    assert all(r.kind is Kind.CROWD and r.interval_s is not None for r in stored)
    # count_in_view is a gauge of whole people: its mean stays whole, with min and max.
    assert all(r.metrics["count_in_view"].is_integer() for r in stored)
    assert all("count_in_view" in r.stats and "entries" not in r.stats for r in stored)


def test_a_stop_queues_the_partial_window_ending_now(tmp_path: Path) -> None:
    clock_now = datetime(2026, 11, 22, 8, 0, 10, tzinfo=UTC)
    driver = SyntheticDriver(SyntheticOptions(kind=Kind.POLLUTION))
    sensor = SensorConfig(
        id="aq-01", driver="synthetic", sample_interval_s=0.01, publish_interval_s=60
    )
    stop = threading.Event()
    with ReadingBuffer(tmp_path / "queue.db", max_bytes=10**7) as buffer:
        sampler = SensorSampler(sensor, driver, buffer, stop, clock=lambda: clock_now)
        sampler.start()
        wait_until(lambda: sampler.stats.samples >= 3, 10, "3 samples")
        stop.set()
        sampler.join(5)
        [stored] = [entry.reading() for entry in buffer.peek_batch(10, 10**7)]
    # The window 08:00:00-08:01:00 is cut at 08:00:10, so a restart's window cannot overwrite it.
    assert stored.ts == clock_now
    assert stored.interval_s == 10.0
    assert stored.stats["pm2_5"].count == sampler.stats.samples


# ---------------------------------------------------------------- envelope and status


def test_the_spliced_batch_envelope_decodes_to_the_same_readings() -> None:
    readings = [
        Reading.model_validate_json(json.dumps(reading(seq=n, sensor_id=f"aq-{n % 3}")))
        for n in range(7)
    ]
    sent_at = datetime.now(UTC)
    payload = batch_payload("gw-1", sent_at, [to_json(r) for r in readings])
    batch = Codec().decode_batch(payload)
    assert batch.gateway_id == "gw-1"
    assert batch.sent_at is not None
    assert abs(batch.sent_at - sent_at) < timedelta(microseconds=1)
    assert list(batch.readings) == readings


def test_the_status_reports_queue_sent_errors_and_the_latest_error(tmp_path: Path) -> None:
    agent = Agent(agent_config(tmp_path / "queue.db", "mqtt://127.0.0.1:9", sensors=2))
    assert agent.status(online=True).buffer_depth == 0  # before start: nothing opened
    agent.start()
    try:
        wait_until(lambda: agent.buffer is not None and agent.buffer.depth() > 0, 10, "readings")
        wait_until(lambda: agent.status(True).last_error is not None, 10, "a connection error")
        status = agent.status(online=False)
    finally:
        agent.stop()
    assert status.state is GatewayState.OFFLINE
    assert status.buffer_depth > 0
    assert status.sent_total == 0
    assert status.last_error is not None
    assert "127.0.0.1:9" in status.last_error
    assert status.uptime_s > 0


# ---------------------------------------------------------------- systemd


def test_the_notifier_sends_datagrams_to_the_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"})
        assert notifier.enabled
        assert notifier.watchdog_interval_s() == 15.0
        assert notifier.notify("READY=1")
        assert server.recv(64) == b"READY=1"


def test_a_watchdog_meant_for_another_process_is_ignored() -> None:
    notifier = Notifier(
        {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}
    )
    assert notifier.watchdog_interval_s() is None
    assert not notifier.notify("READY=1")  # the socket does not exist: no error, just False

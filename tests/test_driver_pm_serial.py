"""The SDS011 and PMS5003 serial drivers: pure frame parsing, and reads through a real pty.

The frame builders below are written from the datasheets' frame definitions, not
from the driver code, so a shared misreading of the protocol cannot hide.
The pty tests play the sensor on the master side of ``os.openpty()`` while the
driver opens the slave's tty name with pyserial, as it would ``/dev/ttyUSB0``.
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from edge_agents.drivers import pms5003, sds011
from edge_agents.drivers._serial_frames import (
    BadFrame,
    FrameSpec,
    FrameSynchroniser,
    parse_stream,
)
from edge_agents.drivers.pms5003 import PMS5003Driver, PMS5003Frame, PMS5003Options
from edge_agents.drivers.registry import build_driver
from edge_agents.drivers.sds011 import (
    ReportingMode,
    SDS011Driver,
    SDS011Frame,
    SDS011Options,
)
from edge_agents.errors import DriverError
from telemetry import Kind

# ------------------------------------------------------------------ frame builders


def sds011_frame(
    pm2_5_tenths: int,
    pm10_tenths: int,
    device_id: int = 0x1234,
    *,
    checksum_delta: int = 0,
    tail: int = 0xAB,
) -> bytes:
    """AA C0, PM2.5 lo/hi, PM10 lo/hi, ID1, ID2, sum(bytes 2..7) mod 256, AB."""
    data = bytes(
        [
            pm2_5_tenths % 256,
            pm2_5_tenths // 256,
            pm10_tenths % 256,
            pm10_tenths // 256,
            device_id % 256,
            device_id // 256,
        ]
    )
    checksum = (sum(data) + checksum_delta) % 256
    return bytes([0xAA, 0xC0]) + data + bytes([checksum, tail])


def pms5003_frame(
    atmospheric: tuple[int, int, int],
    cf1: tuple[int, int, int] = (1, 2, 3),
    counts: tuple[int, ...] = (1000, 400, 80, 10, 3, 1),
    *,
    length: int = 28,
    checksum_delta: int = 0,
) -> bytes:
    """42 4D, length (BE), 13 BE words (CF=1 x3, atmospheric x3, counts x6, reserved), sum."""
    words = [*cf1, *atmospheric, *counts, 0]
    body = bytes([0x42, 0x4D]) + length.to_bytes(2, "big")
    body += b"".join(word.to_bytes(2, "big") for word in words)
    assert len(body) == 30
    return body + ((sum(body) + checksum_delta) % 65536).to_bytes(2, "big")


SDS011_QUERY = bytes([0xAA, 0xB4, 0x04] + [0] * 12 + [0xFF, 0xFF, 0x02, 0xAB])
"""The datasheet's query command, verbatim."""


# ------------------------------------------------------------------ SDS011 parsing


def test_sds011_valid_frame() -> None:
    assert sds011.parse_frame(sds011_frame(123, 456, 0xBEEF)) == SDS011Frame(12.3, 45.6, 0xBEEF)


def test_sds011_high_byte_counts_256() -> None:
    frame = sds011.parse_frame(sds011_frame(9999, 19999))
    assert frame == SDS011Frame(999.9, 1999.9, 0x1234)


def test_sds011_bad_checksum() -> None:
    result = sds011.parse_frame(sds011_frame(123, 456, checksum_delta=1))
    assert isinstance(result, BadFrame)
    assert "checksum" in result.reason


def test_sds011_wrong_tail() -> None:
    result = sds011.parse_frame(sds011_frame(123, 456, tail=0xAC))
    assert isinstance(result, BadFrame)
    assert "tail" in result.reason


def test_sds011_truncated() -> None:
    result = sds011.parse_frame(sds011_frame(123, 456)[:9])
    assert isinstance(result, BadFrame)
    assert "length" in result.reason
    assert parse_stream(sds011_frame(123, 456)[:9], sds011.FRAME_SPEC) == []


def test_sds011_garbage_before_a_frame() -> None:
    data = b"\x00\xff\xaa\x13\xab\xc0" + sds011_frame(50, 70)
    assert parse_stream(data, sds011.FRAME_SPEC) == [SDS011Frame(5.0, 7.0, 0x1234)]


def test_sds011_two_frames_concatenated() -> None:
    data = sds011_frame(10, 20) + sds011_frame(30, 40)
    assert parse_stream(data, sds011.FRAME_SPEC) == [
        SDS011Frame(1.0, 2.0, 0x1234),
        SDS011Frame(3.0, 4.0, 0x1234),
    ]


def test_sds011_bad_frame_then_good_one_resynchronises() -> None:
    sync = FrameSynchroniser(sds011.FRAME_SPEC)
    results = sync.feed(sds011_frame(10, 20, checksum_delta=7) + sds011_frame(30, 40))
    assert isinstance(results[0], BadFrame)
    assert results[-1] == SDS011Frame(3.0, 4.0, 0x1234)
    assert sync.bad_total == 1
    assert sync.bad_in_row == 0


def test_sds011_frame_split_across_reads() -> None:
    sync = FrameSynchroniser(sds011.FRAME_SPEC)
    frame = sds011_frame(77, 88)
    found = [result for byte in frame for result in sync.feed(bytes([byte]))]
    assert found == [SDS011Frame(7.7, 8.8, 0x1234)]
    assert sync.pending == 0


def test_sds011_command_frames_match_the_datasheet() -> None:
    assert sds011.QUERY_COMMAND == SDS011_QUERY
    set_query_mode = bytes([0xAA, 0xB4, 0x02, 0x01, 0x01] + [0] * 10 + [0xFF, 0xFF, 0x02, 0xAB])
    assert set_query_mode == sds011.SET_QUERY_MODE_COMMAND


def test_sds011_reply_frames_are_not_data() -> None:
    # The 0xAA 0xC5 reply to a set-mode command is skipped, not decoded.
    reply = bytes([0xAA, 0xC5, 0x02, 0x01, 0x01, 0x00, 0x34, 0x12, 0x4A, 0xAB])
    assert parse_stream(reply + sds011_frame(1, 2), sds011.FRAME_SPEC) == [
        SDS011Frame(0.1, 0.2, 0x1234)
    ]


# ------------------------------------------------------------------ PMS5003 parsing


def test_pms5003_valid_frame_uses_atmospheric_values() -> None:
    result = pms5003.parse_frame(pms5003_frame((7, 11, 19), cf1=(8, 13, 22)))
    assert isinstance(result, PMS5003Frame)
    assert (result.pm1_0, result.pm2_5, result.pm10) == (7, 11, 19)
    assert (result.pm1_0_cf1, result.pm2_5_cf1, result.pm10_cf1) == (8, 13, 22)
    assert result.counts == (1000, 400, 80, 10, 3, 1)
    driver = PMS5003Driver(PMS5003Options(port="/dev/null"))
    assert driver.metrics(result) == {"pm2_5": 11.0, "pm10": 19.0}


def test_pms5003_bad_checksum() -> None:
    result = pms5003.parse_frame(pms5003_frame((1, 2, 3), checksum_delta=1))
    assert isinstance(result, BadFrame)
    assert "checksum" in result.reason


def test_pms5003_wrong_length_field() -> None:
    result = pms5003.parse_frame(pms5003_frame((1, 2, 3), length=20))
    assert isinstance(result, BadFrame)
    assert "length" in result.reason


def test_pms5003_truncated() -> None:
    frame = pms5003_frame((1, 2, 3))
    assert isinstance(pms5003.parse_frame(frame[:31]), BadFrame)
    assert parse_stream(frame[:31], pms5003.FRAME_SPEC) == []


def test_pms5003_garbage_and_two_frames() -> None:
    data = b"BMBM\x00\x1c\x42" + pms5003_frame((1, 2, 3)) + pms5003_frame((4, 5, 6))
    values = [
        r.pm2_5 for r in parse_stream(data, pms5003.FRAME_SPEC) if isinstance(r, PMS5003Frame)
    ]
    assert values == [2, 5]


# ------------------------------------------------------------------ properties

SPECS: tuple[FrameSpec[Any], ...] = (sds011.FRAME_SPEC, pms5003.FRAME_SPEC)


@given(st.binary(max_size=80))
def test_parsers_never_raise_on_arbitrary_bytes(data: bytes) -> None:
    assert isinstance(sds011.parse_frame(data), SDS011Frame | BadFrame)
    assert isinstance(pms5003.parse_frame(data), PMS5003Frame | BadFrame)


@given(st.lists(st.binary(max_size=40), max_size=10), st.sampled_from([0, 1]))
def test_synchroniser_never_raises_and_stays_bounded(chunks: list[bytes], which: int) -> None:
    spec = SPECS[which]
    sync: FrameSynchroniser[Any] = FrameSynchroniser(spec)
    for chunk in chunks:
        for result in sync.feed(chunk):
            assert isinstance(result, SDS011Frame | PMS5003Frame | BadFrame)
        assert sync.pending < spec.length


@given(
    st.binary(max_size=40),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(1, 9),
)
def test_a_frame_after_garbage_is_found(garbage: bytes, pm2_5: int, pm10: int, split: int) -> None:
    sync = FrameSynchroniser(sds011.FRAME_SPEC)
    data = garbage + sds011_frame(pm2_5, pm10) + sds011_frame(pm2_5, pm10)
    cut = len(data) - split
    results = sync.feed(data[:cut]) + sync.feed(data[cut:])
    assert results[-1] == SDS011Frame(pm2_5 / 10, pm10 / 10, 0x1234)


# ------------------------------------------------------------------ options


def test_options_are_validated_without_opening_the_port() -> None:
    driver = build_driver("sds011", {"port": "/dev/ttyUSB-does-not-exist", "mode": "query"})
    assert isinstance(driver, SDS011Driver)
    assert driver.options.mode is ReportingMode.QUERY
    assert driver.options.baudrate == 9600
    assert driver.sensor_kind() is Kind.POLLUTION
    assert isinstance(build_driver("pms5003", {"port": "/dev/ttyAMA0"}), PMS5003Driver)


@pytest.mark.parametrize(
    "options",
    [
        {"port": "/dev/ttyUSB0", "mode": "passive"},
        {"port": "/dev/ttyUSB0", "baud": 9600},
        {"port": "/dev/ttyUSB0", "timeout_s": 0},
        {"port": ""},
        {},
    ],
)
def test_bad_options_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SDS011Options.model_validate(options)


# ------------------------------------------------------------------ through a pty


@dataclass
class Pty:
    """The sensor's end (``master``) and the device name the driver opens."""

    master: int
    name: str

    def send(self, data: bytes) -> None:
        os.write(self.master, data)


@pytest.fixture
def pty() -> Iterator[Pty]:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield Pty(master, os.ttyname(slave))
    finally:
        os.close(master)
        os.close(slave)


def opened_sds011(pty: Pty, **options: object) -> SDS011Driver:
    driver = SDS011Driver(
        SDS011Options.model_validate({"port": pty.name, "timeout_s": 1.0} | options)
    )
    driver.open()
    return driver


def test_pty_normal_frame(pty: Pty) -> None:
    driver = opened_sds011(pty)
    try:
        pty.send(sds011_frame(123, 456))
        assert driver.read() == {"pm2_5": 12.3, "pm10": 45.6}
    finally:
        driver.close()


def test_pty_pms5003_normal_frame(pty: Pty) -> None:
    driver = PMS5003Driver(PMS5003Options(port=pty.name, timeout_s=1.0))
    driver.open()
    try:
        pty.send(b"\x4d\x42\x00" + pms5003_frame((9, 14, 25), cf1=(10, 16, 30)))
        assert driver.read() == {"pm2_5": 14.0, "pm10": 25.0}
    finally:
        driver.close()


def test_pty_garbage_then_frame_while_reading(pty: Pty) -> None:
    driver = opened_sds011(pty)

    def sensor() -> None:
        time.sleep(0.1)
        pty.send(b"\xaa\xaa\x00\xc0\xff" * 3)
        time.sleep(0.05)
        pty.send(sds011_frame(250, 800))

    thread = threading.Thread(target=sensor)
    thread.start()
    try:
        assert driver.read() == {"pm2_5": 25.0, "pm10": 80.0}
    finally:
        thread.join(timeout=2)
        driver.close()


def test_pty_bad_checksum_frame_is_skipped(pty: Pty) -> None:
    driver = opened_sds011(pty)
    try:
        pty.send(sds011_frame(999, 999, checksum_delta=3) + sds011_frame(11, 22))
        assert driver.read() == {"pm2_5": 1.1, "pm10": 2.2}
    finally:
        driver.close()


def test_pty_returns_the_latest_buffered_frame(pty: Pty) -> None:
    driver = opened_sds011(pty)
    try:
        pty.send(sds011_frame(10, 10) + sds011_frame(20, 20) + sds011_frame(30, 30))
        time.sleep(0.05)
        assert driver.read() == {"pm2_5": 3.0, "pm10": 3.0}
    finally:
        driver.close()


def test_pty_stale_input_is_flushed_on_open(pty: Pty) -> None:
    pty.send(sds011_frame(666, 666))
    time.sleep(0.05)
    driver = opened_sds011(pty, timeout_s=0.3)
    try:
        with pytest.raises(DriverError, match="no valid frame"):
            driver.read()  # the frame sent before open() is not reported as new
        pty.send(sds011_frame(42, 43))
        assert driver.read() == {"pm2_5": 4.2, "pm10": 4.3}
    finally:
        driver.close()


def test_pty_too_many_bad_frames_in_a_row(pty: Pty) -> None:
    driver = opened_sds011(pty, max_bad_frames=3, timeout_s=2.0)
    try:
        pty.send(b"".join(sds011_frame(n, n, checksum_delta=1) for n in range(3)))
        started = time.monotonic()
        with pytest.raises(DriverError, match="3 bad frames in a row") as caught:
            driver.read()
        assert time.monotonic() - started < 1.0
        assert pty.name in str(caught.value)
        assert caught.value.retryable
    finally:
        driver.close()


def test_pty_no_data_times_out(pty: Pty) -> None:
    driver = opened_sds011(pty, timeout_s=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(DriverError, match=r"no valid frame within 0\.3 s") as caught:
            driver.read()
        elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < 1.0
        assert pty.name in str(caught.value)
        assert caught.value.retryable
    finally:
        driver.close()


def test_pty_query_mode_asks_for_each_frame(pty: Pty) -> None:
    driver = opened_sds011(pty, mode="query")
    stop = threading.Event()
    answered: list[int] = []

    def sensor() -> None:
        received = b""
        while not stop.is_set():
            ready, _, _ = select.select([pty.master], [], [], 0.02)
            if ready:
                received += os.read(pty.master, 256)
            while SDS011_QUERY in received:
                received = received.split(SDS011_QUERY, 1)[1]
                answered.append(1)
                pty.send(sds011_frame(100 * len(answered), 5))

    thread = threading.Thread(target=sensor)
    thread.start()
    try:
        assert driver.read() == {"pm2_5": 10.0, "pm10": 0.5}
        assert driver.read() == {"pm2_5": 20.0, "pm10": 0.5}
    finally:
        stop.set()
        thread.join(timeout=2)
        driver.close()


def test_missing_port_is_not_retryable() -> None:
    driver = SDS011Driver(SDS011Options(port="/dev/ttyUSB-urbansense-missing"))
    with pytest.raises(DriverError, match="/dev/ttyUSB-urbansense-missing") as caught:
        driver.open()
    assert not caught.value.retryable
    driver.close()


def test_read_before_open_fails() -> None:
    driver = PMS5003Driver(PMS5003Options(port="/dev/ttyUSB-urbansense-missing"))
    with pytest.raises(DriverError, match="before open"):
        driver.read()


def test_close_is_idempotent(pty: Pty) -> None:
    driver = opened_sds011(pty)
    driver.close()
    driver.close()
    unopened = PMS5003Driver(PMS5003Options(port=pty.name))
    unopened.close()


def test_port_failure_while_reading_is_a_driver_error() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    driver = SDS011Driver(SDS011Options(port=os.ttyname(slave), timeout_s=1.0))
    try:
        driver.open()
        os.close(master)  # the sensor's side hangs up: reads on the tty fail with EIO
        with pytest.raises(DriverError, match="serial port failed"):
            driver.read()
    finally:
        driver.close()
        os.close(slave)

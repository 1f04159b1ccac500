"""Tests of the SDM Modbus energy-meter driver: pure decoding, then pymodbus's own server."""

from __future__ import annotations

import asyncio
import math
import os
import select
import struct
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agents.drivers.base import Driver
from edge_agents.drivers.registry import driver_class
from edge_agents.drivers.sdm_modbus import (
    SDM_SINGLE_PHASE,
    ReadBlock,
    RegisterSpec,
    SDMModbusDriver,
    SDMModbusOptions,
    Transport,
    decode_float32,
    decode_registers,
    plan_reads,
)
from edge_agents.errors import DriverError

T = TypeVar("T")

UNIT = 1
KNOWN = {
    "voltage_v": 230.1,
    "current_a": 4.35,
    "power_w": 987.5,
    "power_factor": 0.98,
    "energy_kwh": 12345.6,
}
ADDRESSES = {spec.metric: spec.address for spec in SDM_SINGLE_PHASE}


def float_registers(value: float) -> list[int]:
    """The two registers of a big-endian IEEE-754 float32, built without pymodbus."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low]


def as_float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as the meter stores it."""
    rounded: float = struct.unpack(">f", struct.pack(">f", value))[0]
    return rounded


def register_image(values: dict[str, float]) -> dict[int, int]:
    """The input registers of a meter showing ``values``."""
    image: dict[int, int] = {}
    for metric, value in values.items():
        address = ADDRESSES[metric]
        image[address], image[address + 1] = float_registers(value)
    return image


# ----------------------------------------------------------------- pure decoding


@pytest.mark.parametrize("value", [230.1, 4.35, 987.5, 0.98, 12345.6, -1500.25, 0.0])
def test_decode_float32_round_trips_struct_encoding(value: float) -> None:
    high, low = float_registers(value)
    assert decode_float32(high, low) == as_float32(value)


def test_decode_float32_word_order_is_high_word_first() -> None:
    # 230.1 as float32 is 0x43661999: high word 0x4366 first.
    assert decode_float32(0x4366, 0x1999) == pytest.approx(230.1, rel=1e-6)
    assert decode_float32(0x1999, 0x4366) != pytest.approx(230.1, rel=1e-6)


def test_decode_registers_maps_every_metric() -> None:
    metrics = decode_registers(register_image(KNOWN))
    assert metrics == {metric: as_float32(value) for metric, value in KNOWN.items()}
    for metric, value in KNOWN.items():
        assert metrics[metric] == pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_decode_registers_rejects_non_finite(bad: float) -> None:
    image = register_image({**KNOWN, "power_w": bad})
    with pytest.raises(ValueError, match=r"power_w.*0x000c"):
        decode_registers(image)


def test_decode_registers_reports_a_missing_register() -> None:
    image = register_image(KNOWN)
    del image[0x0049]
    with pytest.raises(ValueError, match=r"0x0049.*energy_kwh"):
        decode_registers(image)


def test_decode_registers_with_another_register_map() -> None:
    other = [RegisterSpec("Total active energy", 0x0156, "energy_kwh")]
    high, low = float_registers(42.5)
    assert decode_registers({0x0156: high, 0x0157: low}, other) == {"energy_kwh": 42.5}


def test_plan_reads_groups_the_sdm_map_into_two_requests() -> None:
    assert plan_reads(SDM_SINGLE_PHASE) == (ReadBlock(0x0000, 0x20), ReadBlock(0x0048, 2))


def test_plan_reads_splits_long_and_sparse_maps() -> None:
    specs = [RegisterSpec(f"v{a}", a, f"m{a}") for a in (0, 2, 100, 104, 300)]
    assert plan_reads(specs) == (ReadBlock(0, 4), ReadBlock(100, 6), ReadBlock(300, 2))
    assert plan_reads(specs[:2], max_count=2) == (ReadBlock(0, 2), ReadBlock(2, 2))
    assert plan_reads([]) == ()


# ----------------------------------------------------------------- options


def test_options_tcp_defaults() -> None:
    opts = SDMModbusOptions.model_validate({"transport": "tcp", "host": "10.0.0.5"})
    assert opts.transport is Transport.TCP
    assert opts.tcp_port == 502
    assert opts.unit_id == 1
    assert opts.timeout_s == 1.0
    assert opts.retries == 1
    assert opts.endpoint == "10.0.0.5:502"


def test_options_rtu_defaults() -> None:
    opts = SDMModbusOptions.model_validate({"transport": "rtu", "port": "/dev/ttyUSB0"})
    assert (opts.baudrate, opts.parity, opts.stopbits) == (9600, "N", 1)
    assert opts.endpoint == "/dev/ttyUSB0"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"transport": "tcp"}, "host"),
        ({"transport": "tcp", "host": "h", "port": "/dev/ttyUSB0"}, "port"),
        ({"transport": "tcp", "host": "h", "port": 70000}, "port"),
        ({"transport": "tcp", "host": "h", "baudrate": 9600}, "baudrate"),
        ({"transport": "rtu"}, "port"),
        ({"transport": "rtu", "port": 502}, "port"),
        ({"transport": "rtu", "port": "/dev/ttyUSB0", "host": "h"}, "host"),
        ({"transport": "udp", "host": "h"}, "transport"),
        ({"transport": "tcp", "host": "h", "unit_id": 0}, "unit_id"),
        ({"transport": "tcp", "host": "h", "unit_id": 248}, "unit_id"),
        ({"transport": "tcp", "host": "h", "timeout_s": 0}, "timeout_s"),
        ({"transport": "rtu", "port": "/dev/ttyUSB0", "parity": "X"}, "parity"),
        ({"transport": "tcp", "host": "h", "slave": 1}, "slave"),
    ],
)
def test_options_errors_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ValidationError, match=key):
        SDMModbusOptions.model_validate(raw)


def test_validation_and_construction_do_no_io() -> None:
    # An unroutable host and a missing device: nothing is contacted until open().
    for raw in (
        {"transport": "tcp", "host": "192.0.2.1"},
        {"transport": "rtu", "port": "/dev/does-not-exist"},
    ):
        driver = SDMModbusDriver(SDMModbusOptions.model_validate(raw))
        driver.close()


def test_registered_as_entry_point() -> None:
    assert driver_class("sdm_modbus") is SDMModbusDriver


def test_read_before_open_raises() -> None:
    driver = SDMModbusDriver(SDMModbusOptions(transport=Transport.TCP, host="127.0.0.1"))
    with pytest.raises(DriverError, match="before open"):
        driver.read()


def test_open_missing_serial_device_is_not_retryable() -> None:
    driver = SDMModbusDriver(
        SDMModbusOptions(transport=Transport.RTU, port="/dev/does-not-exist-sdm", timeout_s=0.2)
    )
    try:
        with pytest.raises(DriverError, match="/dev/does-not-exist-sdm") as info:
            driver.open()
        assert info.value.retryable is False
    finally:
        driver.close()


# ----------------------------------------------------------------- pymodbus's server


def sdm_device(values: dict[str, float], unit: int = UNIT) -> SimDevice:
    """A pymodbus simulated device holding an SDM input-register image of ``values``."""
    image = register_image(values)
    # A real SDM answers for every register in 0x0000..0x001F; unmapped ones read 0.
    low_block = [image.get(address, 0) for address in range(0x0000, 0x0020)]
    energy = [image[0x0048], image[0x0049]]
    return SimDevice(
        id=unit,
        simdata=[
            SimData(0x0000, values=low_block, datatype=DataType.REGISTERS),
            SimData(0x0048, values=energy, datatype=DataType.REGISTERS),
        ],
    )


class ThreadedServer:
    """A pymodbus server running in its own event loop on a background thread."""

    def __init__(self, device: SimDevice, serial_port: str | None = None) -> None:
        self.device = device
        self.serial_port = serial_port
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: ModbusTcpServer | ModbusSerialServer | None = None

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=5)

    async def _start(self) -> None:
        if self.serial_port is None:
            server: ModbusTcpServer | ModbusSerialServer = ModbusTcpServer(
                self.device, address=("127.0.0.1", 0)
            )
        else:
            server = ModbusSerialServer(
                self.device, framer=FramerType.RTU, port=self.serial_port, baudrate=9600
            )
        await server.serve_forever(background=True)
        self.server = server
        if self.serial_port is None:
            listener: Any = server.transport  # an asyncio.Server for a TCP listener
            self.port = int(listener.sockets[0].getsockname()[1])

    def start(self) -> None:
        """Start the loop and the server; the TCP port is then in :attr:`port`."""
        self.thread.start()
        self._call(self._start())

    def set_float(self, address: int, value: float) -> None:
        """Change the float32 held at ``address`` (input registers) while serving."""
        assert self.server is not None
        self._call(self.server.async_setValues(UNIT, 4, address, float_registers(value)))

    def stop(self) -> None:
        """Stop the server and the loop; safe to call twice."""
        if not self.thread.is_alive():
            return
        try:
            if self.server is not None:
                self._call(self.server.shutdown())  # type: ignore[no-untyped-call]  # untyped in pymodbus
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
            self.loop.close()


@pytest.fixture
def tcp_server() -> Iterator[ThreadedServer]:
    """A pymodbus TCP server on 127.0.0.1 serving an SDM meter with unit id 1."""
    server = ThreadedServer(sdm_device(KNOWN))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def tcp_driver(server: ThreadedServer, **overrides: Any) -> SDMModbusDriver:
    raw: dict[str, Any] = {
        "transport": "tcp",
        "host": "127.0.0.1",
        "port": server.port,
        "timeout_s": 0.5,
        "retries": 0,
        **overrides,
    }
    return SDMModbusDriver(SDMModbusOptions.model_validate(raw))


def assert_known(metrics: dict[str, float], **changed: float) -> None:
    expected = {**KNOWN, **changed}
    assert set(metrics) == set(expected)
    for metric, value in expected.items():
        assert metrics[metric] == pytest.approx(value, rel=1e-6), metric


def test_tcp_reads_known_values_and_follows_the_counter(tcp_server: ThreadedServer) -> None:
    driver: Driver[SDMModbusOptions] = tcp_driver(tcp_server)
    try:
        driver.open()
        assert_known(driver.read())
        tcp_server.set_float(0x0048, 12346.1)
        assert_known(driver.read(), energy_kwh=12346.1)
    finally:
        driver.close()
        driver.close()  # idempotent


def test_tcp_server_stopped_read_raises(tcp_server: ThreadedServer) -> None:
    driver = tcp_driver(tcp_server)
    try:
        driver.open()
        assert_known(driver.read())
        tcp_server.stop()
        started = time.monotonic()
        with pytest.raises(DriverError, match=rf"unit 1 at 127\.0\.0\.1:{tcp_server.port}"):
            driver.read()
        assert time.monotonic() - started < 5
        # still failing, not hanging, on the next attempt (it tries to reconnect)
        with pytest.raises(DriverError):
            driver.read()
    finally:
        driver.close()


def test_tcp_open_without_server_raises(tcp_server: ThreadedServer) -> None:
    port = tcp_server.port
    tcp_server.stop()
    driver = tcp_driver(tcp_server, port=port)
    try:
        with pytest.raises(DriverError, match=rf"127\.0\.0\.1:{port}.*cannot connect") as info:
            driver.open()
        assert info.value.retryable is True
    finally:
        driver.close()


def test_tcp_wrong_unit_id_raises(tcp_server: ThreadedServer) -> None:
    driver = tcp_driver(tcp_server, unit_id=7)
    try:
        driver.open()
        started = time.monotonic()
        with pytest.raises(DriverError, match=rf"unit 7 at 127\.0\.0\.1:{tcp_server.port}"):
            driver.read()
        assert time.monotonic() - started < 5
    finally:
        driver.close()


def test_tcp_exception_response_raises() -> None:
    # A meter without the energy register answers ILLEGAL_ADDRESS for 0x0048.
    device = SimDevice(
        id=UNIT,
        simdata=[SimData(0x0000, values=[0] * 0x20, datatype=DataType.REGISTERS)],
    )
    server = ThreadedServer(device)
    try:
        server.start()
        driver = tcp_driver(server)
        try:
            driver.open()
            with pytest.raises(DriverError, match=r"0x0048.*exception 2 \(ILLEGAL_ADDRESS\)"):
                driver.read()
        finally:
            driver.close()
    finally:
        server.stop()


def test_tcp_nan_value_raises(tcp_server: ThreadedServer) -> None:
    driver = tcp_driver(tcp_server)
    try:
        driver.open()
        tcp_server.set_float(0x000C, math.nan)
        with pytest.raises(DriverError, match=r"unit 1 .*power_w.*nan"):
            driver.read()
        tcp_server.set_float(0x000C, 987.5)
        assert_known(driver.read())
    finally:
        driver.close()


# ----------------------------------------------------------------- RTU over pseudo-terminals


@pytest.fixture
def pty_link() -> Iterator[tuple[str, str]]:
    """Two serial device paths joined like a null-modem cable (two pty pairs and a relay)."""
    master_a, slave_a = os.openpty()
    master_b, slave_b = os.openpty()
    paths = (os.ttyname(slave_a), os.ttyname(slave_b))
    stop = threading.Event()

    def relay() -> None:
        peer = {master_a: master_b, master_b: master_a}
        while not stop.is_set():
            ready, _, _ = select.select(list(peer), [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                os.write(peer[fd], data)

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        yield paths
    finally:
        stop.set()
        thread.join(timeout=5)
        for fd in (master_a, slave_a, master_b, slave_b):
            os.close(fd)


def test_rtu_reads_known_values(pty_link: tuple[str, str]) -> None:
    client_path, server_path = pty_link
    assert Path(client_path).exists()
    server = ThreadedServer(sdm_device(KNOWN), serial_port=server_path)
    driver = SDMModbusDriver(
        SDMModbusOptions(transport=Transport.RTU, port=client_path, timeout_s=1.0, retries=1)
    )
    try:
        server.start()
        driver.open()
        assert_known(driver.read())
        server.set_float(0x0048, 12400.0)
        assert_known(driver.read(), energy_kwh=12400.0)
    finally:
        driver.close()
        server.stop()
    # server gone: the next meter read times out, bounded by (retries + 1) * timeout_s
    driver.open()
    try:
        started = time.monotonic()
        with pytest.raises(DriverError, match=rf"unit 1 at {client_path}"):
            driver.read()
        assert time.monotonic() - started < 5
    finally:
        driver.close()

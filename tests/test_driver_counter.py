"""The counter driver against real peers: a TCP server and a pseudo-terminal playing the device."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from edge_agents.drivers import build_driver
from edge_agents.drivers.counter import CounterDriver, CounterOptions
from edge_agents.errors import DriverError
from telemetry import Kind


class Device:
    """A TCP counter device on loopback: the test writes the lines it sends."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.peer: socket.socket | None = None

    def accept(self) -> None:
        self.server.settimeout(5)
        self.peer, _ = self.server.accept()

    def send(self, data: bytes) -> None:
        assert self.peer is not None
        self.peer.sendall(data)
        time.sleep(0.2)  # let the bytes cross loopback before the driver drains

    def close(self) -> None:
        if self.peer is not None:
            self.peer.close()
        self.server.close()


@pytest.fixture
def device() -> Iterator[Device]:
    dev = Device()
    try:
        yield dev
    finally:
        dev.close()


def tcp_driver(device: Device, **options: Any) -> CounterDriver:
    driver = build_driver(
        "counter",
        {"kind": "crowd", "transport": "tcp", "host": "127.0.0.1", "port": device.port} | options,
    )
    assert isinstance(driver, CounterDriver)
    driver.open()
    device.accept()
    return driver


def test_gate_counts_are_summed_between_reads(device: Device) -> None:
    driver = tcp_driver(device)
    try:
        device.send(b'{"entries": 3, "exits": 1}\n{"entries": 2, "exits": 0}\n{"entr')
        assert driver.read() == {"entries": 5.0, "exits": 1.0}
        device.send(b'ies": 4, "exits": 2}\n')  # the line split across two reads
        assert driver.read() == {"entries": 4.0, "exits": 2.0}
        assert driver.read() == {"entries": 0.0, "exits": 0.0}  # a quiet period counts zero
    finally:
        driver.close()
        driver.close()


def test_traffic_gauges_are_averaged_and_counts_summed(device: Device) -> None:
    driver = tcp_driver(device, kind="traffic")
    try:
        device.send(
            b'{"vehicle_count": 2, "mean_speed_kmh": 50.0, "occupancy_pct": 6.0}\n'
            b'{"vehicle_count": 3, "mean_speed_kmh": 40.0, "occupancy_pct": 10.0}\n'
        )
        assert driver.read() == {"vehicle_count": 5.0, "mean_speed_kmh": 45.0, "occupancy_pct": 8.0}
    finally:
        driver.close()


def test_garbage_lines_are_skipped_and_counted(device: Device) -> None:
    driver = tcp_driver(device)
    try:
        device.send(
            b'\x00\xff garbage\n{"entries": -1}\n{"people": 3}\n{"entries": 2, "exits": 1}\n'
        )
        assert driver.read() == {"entries": 2.0, "exits": 1.0}
        assert driver.bad_lines == 3
        device.send(b"not json at all\n")
        with pytest.raises(DriverError, match="1 unreadable line"):
            driver.read()
    finally:
        driver.close()


def test_a_closed_connection_is_a_driver_error(device: Device) -> None:
    driver = tcp_driver(device)
    try:
        assert device.peer is not None
        device.peer.close()
        device.peer = None
        time.sleep(0.2)
        with pytest.raises(DriverError, match="closed the connection"):
            driver.read()
    finally:
        driver.close()


def test_nobody_listening_is_a_driver_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    driver = build_driver(
        "counter", {"kind": "crowd", "transport": "tcp", "host": "127.0.0.1", "port": port}
    )
    with pytest.raises(DriverError, match=f"cannot open counter at tcp://127.0.0.1:{port}"):
        driver.open()
    driver.close()


def test_pulses_from_a_serial_port() -> None:
    controller, device_fd = os.openpty()
    driver = build_driver(
        "counter",
        {
            "kind": "traffic",
            "transport": "serial",
            "device": os.ttyname(device_fd),
            "format": "pulses",
            "pulse_metric": "vehicle_count",
        },
    )
    try:
        driver.open()
        os.write(controller, b"3\n4\n")
        time.sleep(0.2)
        assert driver.read() == {"vehicle_count": 7.0}
        os.write(controller, b"x\n2\n")
        time.sleep(0.2)
        assert driver.read() == {"vehicle_count": 2.0}
    finally:
        driver.close()
        os.close(controller)
        os.close(device_fd)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"kind": "pollution", "transport": "tcp", "host": "h", "port": 1},
            "kind must be traffic or crowd",
        ),
        ({"kind": "crowd", "transport": "tcp", "host": "h"}, "transport 'tcp' needs host and port"),
        ({"kind": "crowd", "transport": "serial"}, "transport 'serial' needs device"),
        ({"kind": "crowd", "transport": "usb"}, "transport"),
        (
            {
                "kind": "traffic",
                "transport": "serial",
                "device": "/dev/x",
                "format": "pulses",
                "pulse_metric": "entries",
            },
            "pulse_metric must be one of vehicle_count for traffic",
        ),
        ({"kind": "crowd", "transport": "tcp", "host": "h", "port": 70000}, "port"),
        ({"kind": "crowd", "transport": "tcp", "host": "h", "port": 1, "baud": 9600}, "baud"),
    ],
)
def test_bad_options_are_refused_without_io(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CounterOptions.model_validate(options)


def test_the_driver_reports_its_kind() -> None:
    driver = build_driver(
        "counter", {"kind": "traffic", "transport": "tcp", "host": "h", "port": 1}
    )
    assert driver.sensor_kind() is Kind.TRAFFIC

"""Event counters for traffic loops and scenic-area gates, over a serial port or TCP.

Many loop controllers and gate counters report as a stream of text lines. This
driver reads them, in one of two formats:

``ndjson``
    One JSON object per line, metric name to value, e.g. a gate counter's
    ``{"entries": 3, "exits": 1}`` or a loop controller's
    ``{"vehicle_count": 2, "mean_speed_kmh": 47.5, "occupancy_pct": 8.0}``.
    Interval counts are summed over the lines received since the last read;
    gauges are averaged.
``pulses``
    One integer per line: the pulses counted since the previous line, for the
    metric named by ``pulse_metric`` (``vehicle_count``, ``entries``…).

``read()`` returns what arrived since the previous ``read()`` without waiting:
a period with no line is a period with no events, so counts read as zero.
Bad lines (not JSON, unknown metric, negative counts) are skipped and counted
in :attr:`CounterDriver.bad_lines`; a read that saw only bad lines raises
:class:`~edge_agents.errors.DriverError`, and so does a TCP peer that closed
the connection.

Sample options (in the agent's TOML config)::

    [[sensors]]
    id = "gate-north-1"
    driver = "counter"
    [sensors.options]
    kind = "crowd"
    transport = "tcp"
    host = "192.0.2.10"
    port = 4001
    format = "ndjson"
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
from enum import StrEnum
from typing import Annotated, Any, Self

import serial  # type: ignore[import-untyped]
from pydantic import Field, model_validator

from edge_agents.drivers.base import Driver, DriverOptions
from edge_agents.errors import DriverError
from telemetry import CATALOGUE, Kind, Semantics

MAX_LINE_BYTES = 4096
"""Longest line accepted; a longer run without a newline is garbage and is discarded."""


class Transport(StrEnum):
    """Where the lines come from."""

    TCP = "tcp"
    SERIAL = "serial"


class LineFormat(StrEnum):
    """How each line is written."""

    NDJSON = "ndjson"
    PULSES = "pulses"


class CounterOptions(DriverOptions):
    """Options of the counter driver.

    Attributes:
        kind: ``traffic`` for loop detectors, ``crowd`` for gate counters.
        transport: ``tcp`` or ``serial``.
        host: the device's address (tcp).
        port: the device's TCP port (tcp).
        device: the serial device, e.g. ``/dev/ttyUSB0`` (serial).
        baudrate: the serial speed (serial).
        format: ``ndjson`` or ``pulses``.
        pulse_metric: the metric that pulses count (pulses format).
        timeout_s: how long to wait for a TCP connection.
    """

    kind: Kind
    transport: Transport
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    device: str | None = None
    baudrate: Annotated[int, Field(gt=0)] = 9600
    format: LineFormat = LineFormat.NDJSON
    pulse_metric: str | None = None
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind not in (Kind.TRAFFIC, Kind.CROWD):
            msg = f"kind must be traffic or crowd for a counter, got {self.kind.value!r}"
            raise ValueError(msg)
        if self.transport is Transport.TCP and (self.host is None or self.port is None):
            msg = f"transport 'tcp' needs host and port (host={self.host!r}, port={self.port!r})"
            raise ValueError(msg)
        if self.transport is Transport.SERIAL and self.device is None:
            msg = "transport 'serial' needs device, e.g. device = '/dev/ttyUSB0'"
            raise ValueError(msg)
        if self.format is LineFormat.PULSES:
            counts = [
                name
                for name, spec in CATALOGUE[self.kind].items()
                if spec.semantics is Semantics.INTERVAL_COUNT
            ]
            if self.pulse_metric not in counts:
                msg = (
                    f"pulse_metric must be one of {', '.join(counts)} for {self.kind.value},"
                    f" got {self.pulse_metric!r}"
                )
                raise ValueError(msg)
        return self


class CounterDriver(Driver[CounterOptions]):
    """Reads event counts (and optional gauges) from a line-oriented counter device."""

    Options = CounterOptions

    def __init__(self, options: CounterOptions) -> None:
        super().__init__(options)
        self.bad_lines = 0
        """Lines skipped as unreadable since the driver was built."""
        self._socket: socket.socket | None = None
        self._serial: Any = None
        self._pending = b""

    def sensor_kind(self) -> Kind:
        """The kind set in the options: traffic or crowd."""
        return self.options.kind

    @property
    def _where(self) -> str:
        if self.options.transport is Transport.TCP:
            return f"tcp://{self.options.host}:{self.options.port}"
        return f"serial {self.options.device}"

    def open(self) -> None:
        """Connect to the device; raises :class:`DriverError` if it cannot."""
        options = self.options
        try:
            if options.transport is Transport.TCP:
                # host and port are set: the options' validator checked them.
                address = (options.host or "", options.port or 0)
                sock = socket.create_connection(address, timeout=options.timeout_s)
                sock.setblocking(False)
                self._socket = sock
            else:
                self._serial = serial.Serial(options.device, options.baudrate, timeout=0)
        except (OSError, serial.SerialException) as error:
            msg = f"cannot open counter at {self._where}: {error}"
            raise DriverError(msg) from error
        self._pending = b""

    def read(self) -> dict[str, float]:
        """Return the events counted (and gauges averaged) since the previous read."""
        lines = self._drain().split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_LINE_BYTES:
            self.bad_lines += 1
            self._pending = b""
        values: list[dict[str, float]] = []
        bad = 0
        for line in lines:
            if not line.strip():
                continue
            parsed = self._parse(line)
            if parsed is None:
                bad += 1
            else:
                values.append(parsed)
        self.bad_lines += bad
        if bad and not values:
            msg = f"counter at {self._where} sent {bad} unreadable line(s) and nothing valid"
            raise DriverError(msg)
        return self._combine(values)

    def close(self) -> None:
        """Close the connection; safe to call more than once."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._serial is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                self._serial.close()
            self._serial = None

    def _drain(self) -> bytes:
        data = self._pending
        try:
            if self._socket is not None:
                while True:
                    try:
                        chunk = self._socket.recv(65536)
                    except BlockingIOError:
                        break
                    if not chunk:
                        msg = f"counter at {self._where} closed the connection"
                        raise DriverError(msg)
                    data += chunk
            elif self._serial is not None:
                data += self._serial.read(self._serial.in_waiting or 1)
            else:
                msg = f"counter at {self._where} is not open"
                raise DriverError(msg)
        except (OSError, serial.SerialException) as error:
            msg = f"reading counter at {self._where} failed: {error}"
            raise DriverError(msg) from error
        return data

    def _parse(self, line: bytes) -> dict[str, float] | None:
        """One line's values, or ``None`` if the line is unreadable."""
        known = CATALOGUE[self.options.kind]
        if self.options.format is LineFormat.PULSES:
            try:
                pulses = int(line.strip())
            except ValueError:
                return None
            metric = self.options.pulse_metric or ""  # set: the options' validator checked it
            return {metric: float(pulses)} if pulses >= 0 else None
        try:
            data = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or not data:
            return None
        values: dict[str, float] = {}
        for name, value in data.items():
            spec = known.get(name)
            if (
                spec is None
                or isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or spec.range_problem(float(value), interval_s=None) is not None
            ):
                return None
            values[name] = float(value)
        return values

    def _combine(self, lines: list[dict[str, float]]) -> dict[str, float]:
        known = CATALOGUE[self.options.kind]
        combined: dict[str, float] = {
            name: 0.0
            for name, spec in known.items()
            if spec.semantics is Semantics.INTERVAL_COUNT
            and (self.options.format is LineFormat.NDJSON or name == self.options.pulse_metric)
        }
        gauges: dict[str, list[float]] = {}
        for values in lines:
            for name, value in values.items():
                if known[name].semantics is Semantics.INTERVAL_COUNT:
                    combined[name] += value
                else:
                    gauges.setdefault(name, []).append(value)
        for name, samples in gauges.items():
            combined[name] = sum(samples) / len(samples)
        return combined

"""Driver for Eastron SDM-style energy meters (SDM120, SDM630 …) over Modbus TCP or RTU.

The meter is read with pymodbus's *synchronous* clients (``ModbusTcpClient`` for
a Modbus TCP gateway, ``ModbusSerialClient`` with the RTU framer for an RS-485
adapter on the Pi). Every value is an IEEE-754 32-bit float held in two
consecutive **input registers** (function code 4), high word first (big-endian
word and byte order), decoded with pymodbus's own
``convert_from_registers(..., data_type=DATATYPE.FLOAT32)``.

Register map (single-phase SDM map, :data:`SDM_SINGLE_PHASE`):

======================  =======  ================  =====  ==========================
Register                Address  Metric            Unit   Notes
======================  =======  ================  =====  ==========================
Voltage                 0x0000   ``voltage_v``     V      phase 1 line to neutral
Current                 0x0006   ``current_a``     A      phase 1
Active power            0x000C   ``power_w``       W      sign follows the flow
Power factor            0x001E   ``power_factor``  —      sign gives lead/lag
Import active energy    0x0048   ``energy_kwh``    kWh    cumulative counter
======================  =======  ================  =====  ==========================

``energy_kwh`` is the *import* active energy (0x0048), not the *total* active
energy (0x0156, import + export): the catalogue's ``energy_kwh`` is a counter
that only grows, and import energy is what a building consumes and is billed
for; total energy would also count what a rooftop PV system exports.

The map is a table of :class:`RegisterSpec` rows, so another meter model is a
different table: :func:`plan_reads` groups its registers into as few Modbus
requests as possible (the map above is read with two requests,
0x0000..0x001F and 0x0048..0x0049, rather than one per value), and
:func:`decode_registers` turns the registers read into metrics — both pure and
tested without a device.

Example ``[sensors.options]`` tables::

    transport = "tcp"       # a Modbus TCP gateway
    host = "192.168.1.50"
    port = 502
    unit_id = 1

    transport = "rtu"       # an RS-485 adapter on the gateway
    port = "/dev/ttyUSB0"
    baudrate = 9600
    parity = "N"
    stopbits = 1
    unit_id = 1
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator
from pymodbus.client import ModbusBaseSyncClient, ModbusSerialClient, ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from edge_agents.drivers.base import Driver, DriverOptions
from edge_agents.errors import DriverError
from telemetry import Kind

# The Modbus standard allows up to 125 registers per read; Eastron meters answer
# at most 40 float parameters (80 registers) per request.
MAX_REGISTERS_PER_READ = 80
"""The most registers :func:`plan_reads` puts in one request."""

MAX_GAP = 16
"""The most unused registers :func:`plan_reads` reads to merge two requests into one."""

_FLOAT32_WORDS = 2
_FLOAT32 = ModbusBaseSyncClient.DATATYPE.FLOAT32
_EXCEPTION_NAMES = {code.value: code.name for code in ExcCodes}

_Client = ModbusTcpClient | ModbusSerialClient


def _close_client(client: _Client) -> None:
    """Close a pymodbus client, whatever it raises."""
    with contextlib.suppress(Exception):
        client.close()  # type: ignore[no-untyped-call]  # pymodbus leaves close() untyped


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """One value of a meter's register map: an IEEE-754 float32 in two input registers.

    Attributes:
        name: the meter's name for the value, e.g. ``"Import active energy"``.
        address: the 0-based address of its first (high-word) input register.
        metric: the catalogue metric it is reported as, e.g. ``"energy_kwh"``.
    """

    name: str
    address: int
    metric: str

    @property
    def end(self) -> int:
        """The address just after the value's last register."""
        return self.address + _FLOAT32_WORDS


SDM_SINGLE_PHASE: tuple[RegisterSpec, ...] = (
    RegisterSpec("Voltage", 0x0000, "voltage_v"),
    RegisterSpec("Current", 0x0006, "current_a"),
    RegisterSpec("Active power", 0x000C, "power_w"),
    RegisterSpec("Power factor", 0x001E, "power_factor"),
    RegisterSpec("Import active energy", 0x0048, "energy_kwh"),
)
"""The single-phase SDM120/SDM630 register map (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read-input-registers request: ``count`` registers from ``address``."""

    address: int
    count: int


def plan_reads(
    register_map: Sequence[RegisterSpec],
    *,
    max_gap: int = MAX_GAP,
    max_count: int = MAX_REGISTERS_PER_READ,
) -> tuple[ReadBlock, ...]:
    """Group a register map into as few contiguous reads as possible.

    Two values share a request when the registers between them number at most
    ``max_gap`` and the request stays within ``max_count`` registers.

    Args:
        register_map: the values to read.
        max_gap: the most unused registers to read to save a request.
        max_count: the most registers in one request.

    Returns:
        The requests, by address.

    >>> plan_reads(SDM_SINGLE_PHASE)
    (ReadBlock(address=0, count=32), ReadBlock(address=72, count=2))
    """
    blocks: list[ReadBlock] = []
    for spec in sorted(register_map, key=lambda s: s.address):
        if blocks:
            last = blocks[-1]
            last_end = last.address + last.count
            if spec.address - last_end <= max_gap and spec.end - last.address <= max_count:
                blocks[-1] = ReadBlock(last.address, max(last_end, spec.end) - last.address)
                continue
        blocks.append(ReadBlock(spec.address, spec.end - spec.address))
    return tuple(blocks)


def decode_float32(high: int, low: int) -> float:
    """Decode an IEEE-754 float32 from its two registers, high word first.

    >>> decode_float32(0x4366, 0x1999)
    230.0999908447265...
    """
    value = ModbusBaseSyncClient.convert_from_registers([high, low], data_type=_FLOAT32)
    if not isinstance(value, float):  # pragma: no cover - FLOAT32 always gives a float
        msg = f"expected a float from registers {high:#06x} {low:#06x}, got {value!r}"
        raise TypeError(msg)
    return value


def decode_registers(
    registers: Mapping[int, int],
    register_map: Sequence[RegisterSpec] = SDM_SINGLE_PHASE,
) -> dict[str, float]:
    """Turn the input registers read from a meter into catalogue metrics.

    Args:
        registers: register values by address (each 0..0xFFFF).
        register_map: which registers hold which metric.

    Returns:
        One value per row of ``register_map``, keyed by its metric.

    Raises:
        ValueError: a register is missing, or a value is NaN or infinite (which
            meters send for a value they cannot measure).

    >>> decode_registers({0: 0x4366, 1: 0x1999}, [RegisterSpec("Voltage", 0, "voltage_v")])
    {'voltage_v': 230.09999...}
    """
    metrics: dict[str, float] = {}
    for spec in register_map:
        try:
            high, low = registers[spec.address], registers[spec.address + 1]
        except KeyError as exc:
            msg = f"register {exc.args[0]:#06x} of {spec.name} ({spec.metric}) was not read"
            raise ValueError(msg) from None
        value = decode_float32(high, low)
        if not math.isfinite(value):
            msg = (
                f"{spec.name} ({spec.metric}) at {spec.address:#06x} is {value}"
                f" (registers {high:#06x} {low:#06x})"
            )
            raise ValueError(msg)
        metrics[spec.metric] = value
    return metrics


class Transport(StrEnum):
    """How the gateway reaches the meter."""

    TCP = "tcp"
    """Modbus TCP, to the meter or an RS-485 gateway on the network."""
    RTU = "rtu"
    """Modbus RTU over a serial port (an RS-485 adapter)."""


_SERIAL_ONLY = ("baudrate", "parity", "stopbits")


class SDMModbusOptions(DriverOptions):
    """Options of :class:`SDMModbusDriver`.

    Attributes:
        transport: ``"tcp"`` or ``"rtu"``.
        host: the Modbus TCP host (``tcp`` only, required).
        port: for ``tcp`` the TCP port (default 502); for ``rtu`` the serial
            device, e.g. ``"/dev/ttyUSB0"`` (required).
        baudrate: the serial speed (``rtu`` only).
        parity: the serial parity, ``"N"``, ``"E"`` or ``"O"`` (``rtu`` only).
        stopbits: the serial stop bits (``rtu`` only).
        unit_id: the meter's Modbus unit (slave) id, 1..247.
        timeout_s: how long to wait for a connection or a response.
        retries: how many times pymodbus resends a request that got no answer,
            so a silent meter fails a read after ``(retries + 1) * timeout_s``.
    """

    transport: Transport
    host: str | None = None
    port: int | str | None = None
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit_id: int = Field(default=1, ge=1, le=247)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=10)

    @model_validator(mode="after")
    def _check_transport(self) -> Self:
        if self.transport is Transport.TCP:
            if not self.host:
                msg = "host is required when transport is 'tcp'"
                raise ValueError(msg)
            if self.port is not None and not (
                isinstance(self.port, int) and 1 <= self.port <= 65535
            ):
                msg = (
                    "port must be a TCP port number 1..65535 for transport 'tcp',"
                    f" not {self.port!r}"
                )
                raise ValueError(msg)
            for key in _SERIAL_ONLY:
                if key in self.model_fields_set:
                    msg = f"{key} is a serial option, not used with transport 'tcp'"
                    raise ValueError(msg)
        else:
            if not isinstance(self.port, str) or not self.port:
                msg = (
                    "port is required when transport is 'rtu' and must be the serial"
                    f" device path (e.g. '/dev/ttyUSB0'), not {self.port!r}"
                )
                raise ValueError(msg)
            if self.host is not None:
                msg = "host is not used with transport 'rtu' (set port to the serial device)"
                raise ValueError(msg)
        return self

    @property
    def tcp_port(self) -> int:
        """The TCP port to connect to (``tcp`` only)."""
        return self.port if isinstance(self.port, int) else 502

    @property
    def endpoint(self) -> str:
        """Where the meter is, for messages: ``host:port`` or the serial device."""
        if self.transport is Transport.TCP:
            return f"{self.host}:{self.tcp_port}"
        return str(self.port)


class SDMModbusDriver(Driver[SDMModbusOptions]):
    """An Eastron SDM-style energy meter read over Modbus TCP or RTU.

    ``read()`` returns ``voltage_v``, ``current_a``, ``power_w``,
    ``power_factor`` and the cumulative ``energy_kwh`` (see the module
    docstring for the register map).

    Args:
        options: the driver's validated options.
    """

    Options = SDMModbusOptions
    kind = Kind.ENERGY

    register_map: ClassVar[tuple[RegisterSpec, ...]] = SDM_SINGLE_PHASE
    """The meter's register map; a subclass for another model replaces it."""

    def __init__(self, options: SDMModbusOptions) -> None:
        super().__init__(options)
        self._client: _Client | None = None
        self._plan = plan_reads(self.register_map)

    @property
    def _where(self) -> str:
        return f"SDM meter unit {self.options.unit_id} at {self.options.endpoint}"

    def _make_client(self) -> _Client:
        opts = self.options
        if opts.transport is Transport.TCP:
            return ModbusTcpClient(
                opts.host or "",
                port=opts.tcp_port,
                timeout=opts.timeout_s,
                retries=opts.retries,
            )
        return ModbusSerialClient(
            str(opts.port),
            framer=FramerType.RTU,
            baudrate=opts.baudrate,
            bytesize=8,
            parity=opts.parity,
            stopbits=opts.stopbits,
            timeout=opts.timeout_s,
            retries=opts.retries,
        )

    def open(self) -> None:
        """Connect to the meter (the TCP connection or the serial port).

        Raises:
            DriverError: the connection cannot be made; not retryable when the
                serial device does not exist.
        """
        self.close()
        client = self._make_client()
        if not client.connect():
            _close_client(client)
            port = self.options.port
            missing = (
                self.options.transport is Transport.RTU
                and isinstance(port, str)
                and port.startswith("/")
                and not os.path.exists(port)
            )
            reason = "the serial device does not exist" if missing else "cannot connect"
            msg = f"{self._where}: {reason}"
            raise DriverError(msg, retryable=not missing)
        self._client = client

    def read(self) -> dict[str, float]:
        """Read the meter's registers and return its metrics.

        Raises:
            DriverError: the driver is not open, the connection failed, the
                meter did not answer in time, answered with a Modbus exception,
                or sent a NaN or infinite value.
        """
        client = self._client
        if client is None:
            msg = f"{self._where}: read() before open()"
            raise DriverError(msg)
        registers: dict[int, int] = {}
        for block in self._plan:
            values = self._read_block(client, block)
            registers.update(enumerate(values, start=block.address))
        try:
            return decode_registers(registers, self.register_map)
        except ValueError as exc:
            msg = f"{self._where}: {exc}"
            raise DriverError(msg) from exc

    def _read_block(self, client: _Client, block: ReadBlock) -> list[int]:
        span = f"input registers {block.address:#06x}+{block.count}"
        try:
            response = client.read_input_registers(
                block.address, count=block.count, device_id=self.options.unit_id
            )
        except (ModbusException, OSError) as exc:
            # Drop the connection so a late answer cannot be taken for the next
            # request's; the next read() reconnects.
            _close_client(client)
            msg = f"{self._where}: reading {span} failed: {exc}"
            raise DriverError(msg) from exc
        if response.isError():
            code = response.exception_code
            name = _EXCEPTION_NAMES.get(code, "unknown")
            msg = f"{self._where}: reading {span}: Modbus exception {code} ({name})"
            raise DriverError(msg)
        values = list(response.registers)
        if len(values) != block.count:
            _close_client(client)
            msg = f"{self._where}: reading {span}: got {len(values)} registers"
            raise DriverError(msg)
        return values

    def close(self) -> None:
        """Close the connection; idempotent, never raises."""
        client, self._client = self._client, None
        if client is not None:
            _close_client(client)

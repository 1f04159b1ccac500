"""Driver for the Nova Fitness SDS011 laser particulate-matter sensor, over a serial port.

Protocol (Laser Dust Sensor Control Protocol V1.3): UART at 9600 baud, 8N1.

Data frame, 10 bytes, sent by the sensor every second in *active* reporting mode
and as the reply to a query in *query* mode::

    byte  0     1     2      3      4     5     6    7    8         9
          0xAA  0xC0  PM2.5  PM2.5  PM10  PM10  ID1  ID2  checksum  0xAB
                      low    high   low   high

    PM2.5 = (high * 256 + low) / 10 µg/m³, likewise PM10
    checksum = (sum of bytes 2..7) mod 256

Command frame, 19 bytes, sent to the sensor::

    byte  0     1     2    3..14          15   16   17        18
          0xAA  0xB4  cmd  data (12 B)    ID1  ID2  checksum  0xAB

    checksum = (sum of bytes 2..16) mod 256; ID 0xFFFF addresses any sensor

* query data:            cmd 0x04, data all zero → a data frame in reply
* set reporting mode:    cmd 0x02, data 0x01 (set), 0x00 active / 0x01 query
  → a 0xAA 0xC5 reply, which the reader skips (it only accepts 0xAA 0xC0).

In active mode (the sensor's factory default) the driver only listens, so it
works with the sensor's RX line unconnected; in query mode it switches the sensor
to query reporting on ``open()`` and sends a query command on every ``read()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from edge_agents.drivers._serial_frames import (
    BadFrame,
    FrameSpec,
    SerialFrameDriver,
    SerialOptions,
    SerialPort,
)
from telemetry import Kind

HEADER = b"\xaa\xc0"
"""The start bytes of a data frame."""
TAIL = 0xAB
"""The last byte of every frame."""
FRAME_LENGTH = 10
"""The length of a data frame, header to tail."""

CMD_SET_REPORTING_MODE = 0x02
CMD_QUERY = 0x04
ANY_DEVICE = 0xFFFF


@dataclass(frozen=True)
class SDS011Frame:
    """One decoded SDS011 data frame.

    Attributes:
        pm2_5: PM2.5 mass concentration, µg/m³.
        pm10: PM10 mass concentration, µg/m³.
        device_id: the sensor's 16-bit ID (ID1 is the low byte).
    """

    pm2_5: float
    pm10: float
    device_id: int


def parse_frame(frame: bytes) -> SDS011Frame | BadFrame:
    """Decode one 10-byte data frame; pure, never raises.

    >>> parse_frame(bytes([0xAA, 0xC0, 0x7B, 0x00, 0xC8, 0x01, 0x12, 0x34, 0x8A, 0xAB]))
    SDS011Frame(pm2_5=12.3, pm10=45.6, device_id=13330)
    >>> parse_frame(bytes([0xAA, 0xC0, 0x7B, 0x00, 0xC8, 0x01, 0x12, 0x34, 0x00, 0xAB]))
    BadFrame(reason='checksum 0x00 != computed 0x8a')

    Args:
        frame: the candidate bytes, starting with the header.

    Returns:
        The decoded values, or the reason the bytes are not a valid frame.
    """
    if len(frame) != FRAME_LENGTH:
        return BadFrame(f"length {len(frame)} != {FRAME_LENGTH}")
    if frame[:2] != HEADER:
        return BadFrame(f"header {frame[:2].hex()} != {HEADER.hex()}")
    if frame[9] != TAIL:
        return BadFrame(f"tail 0x{frame[9]:02x} != 0x{TAIL:02x}")
    computed = sum(frame[2:8]) % 256
    if frame[8] != computed:
        return BadFrame(f"checksum 0x{frame[8]:02x} != computed 0x{computed:02x}")
    return SDS011Frame(
        pm2_5=(frame[3] * 256 + frame[2]) / 10,
        pm10=(frame[5] * 256 + frame[4]) / 10,
        device_id=frame[7] * 256 + frame[6],
    )


FRAME_SPEC: FrameSpec[SDS011Frame] = FrameSpec("SDS011", HEADER, FRAME_LENGTH, parse_frame)
"""How the SDS011's data frames are found in the byte stream."""


def command(cmd: int, data: bytes = b"", device_id: int = ANY_DEVICE) -> bytes:
    """Build a 19-byte command frame; pure.

    >>> command(CMD_QUERY).hex(" ")
    'aa b4 04 00 00 00 00 00 00 00 00 00 00 00 00 ff ff 02 ab'

    Args:
        cmd: the command byte (``0x04`` query, ``0x02`` reporting mode, ...).
        data: up to 12 data bytes, zero-padded.
        device_id: the addressed sensor; ``0xFFFF`` addresses any.

    Raises:
        ValueError: more than 12 data bytes, or a byte value out of range.
    """
    if len(data) > 12:
        msg = f"an SDS011 command carries at most 12 data bytes, not {len(data)}"
        raise ValueError(msg)
    body = bytes([cmd]) + data.ljust(12, b"\x00") + device_id.to_bytes(2, "little")
    return b"\xaa\xb4" + body + bytes([sum(body) % 256, TAIL])


QUERY_COMMAND = command(CMD_QUERY)
"""Ask for one data frame (query mode)."""
SET_QUERY_MODE_COMMAND = command(CMD_SET_REPORTING_MODE, b"\x01\x01")
"""Switch the sensor to query reporting mode."""


class ReportingMode(StrEnum):
    """How the SDS011 reports."""

    ACTIVE = "active"
    """The sensor sends a data frame every second; the driver only listens."""
    QUERY = "query"
    """The sensor sends a data frame only when queried."""


class SDS011Options(SerialOptions):
    """Options of the SDS011 driver.

    Attributes:
        mode: active (listen to the sensor's stream) or query (ask per read).
    """

    mode: ReportingMode = ReportingMode.ACTIVE


class SDS011Driver(SerialFrameDriver[SDS011Options, SDS011Frame]):
    """The Nova Fitness SDS011 on a serial port: PM2.5 and PM10 in µg/m³.

    Args:
        options: the driver's validated options.
    """

    Options: ClassVar[type[SDS011Options]] = SDS011Options
    kind: ClassVar[Kind | None] = Kind.POLLUTION
    frame_spec: ClassVar[FrameSpec[SDS011Frame]] = FRAME_SPEC

    def after_open(self, port: SerialPort) -> None:
        """In query mode, switch the sensor to query reporting."""
        if self.options.mode is ReportingMode.QUERY:
            port.write(SET_QUERY_MODE_COMMAND)
            port.flush()

    def before_read(self, port: SerialPort) -> None:
        """In query mode, drop stale input and send a query command."""
        if self.options.mode is ReportingMode.QUERY:
            port.reset_input_buffer()
            self._sync.reset()
            port.write(QUERY_COMMAND)
            port.flush()

    def metrics(self, frame: SDS011Frame) -> dict[str, float]:
        """``pm2_5`` and ``pm10`` of a frame, as in the metric catalogue."""
        return {"pm2_5": frame.pm2_5, "pm10": frame.pm10}

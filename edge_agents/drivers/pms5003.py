"""Driver for the Plantower PMS5003 particulate-matter sensor, over a serial port.

Protocol (Plantower PMS5003 datasheet, "transport protocol - active mode"): UART
at 9600 baud, 8N1; in active mode (the default after power-up) the sensor sends
a 32-byte frame about every second (up to every 200 ms when values change fast)::

    bytes  0-1    0x42 0x4D                start characters ("BM")
    bytes  2-3    frame length = 28        big-endian: 13 data words + checksum
    bytes  4-29   13 data words, each big-endian unsigned 16-bit:
                   1  PM1.0  µg/m³, CF=1 standard particle
                   2  PM2.5  µg/m³, CF=1 standard particle
                   3  PM10   µg/m³, CF=1 standard particle
                   4  PM1.0  µg/m³, atmospheric environment
                   5  PM2.5  µg/m³, atmospheric environment
                   6  PM10   µg/m³, atmospheric environment
                   7-12  particles > 0.3, 0.5, 1.0, 2.5, 5.0, 10 µm per 0.1 L of air
                   13 reserved
    bytes 30-31   checksum                 big-endian: 16-bit sum of bytes 0-29

The driver reports the **atmospheric environment** values as ``pm2_5`` and
``pm10``: the datasheet notes that the CF=1 "standard particle" values are meant
for use in the factory environment (calibration against standard particles),
while the atmospheric values are the concentrations under ambient conditions,
which is what an outdoor air-quality station measures. (The two agree below
roughly 30 µg/m³ and diverge above it.) The driver only listens, so it works
with the sensor's RX line unconnected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from edge_agents.drivers._serial_frames import BadFrame, FrameSpec, SerialFrameDriver, SerialOptions
from telemetry import Kind

HEADER = b"\x42\x4d"
"""The start bytes of a frame."""
FRAME_LENGTH = 32
"""The whole frame's length, header to checksum."""
LENGTH_FIELD = 28
"""The value of the frame-length field: 13 data words and the checksum."""


@dataclass(frozen=True)
class PMS5003Frame:
    """One decoded PMS5003 frame; concentrations in µg/m³.

    Attributes:
        pm1_0_cf1: PM1.0, CF=1 standard particle (factory calibration).
        pm2_5_cf1: PM2.5, CF=1 standard particle (factory calibration).
        pm10_cf1: PM10, CF=1 standard particle (factory calibration).
        pm1_0: PM1.0 under atmospheric environment.
        pm2_5: PM2.5 under atmospheric environment.
        pm10: PM10 under atmospheric environment.
        counts: particles per 0.1 L of air larger than 0.3, 0.5, 1.0, 2.5, 5.0
            and 10 µm.
    """

    pm1_0_cf1: int
    pm2_5_cf1: int
    pm10_cf1: int
    pm1_0: int
    pm2_5: int
    pm10: int
    counts: tuple[int, int, int, int, int, int]


def parse_frame(frame: bytes) -> PMS5003Frame | BadFrame:
    """Decode one 32-byte frame; pure, never raises.

    >>> words = [5, 12, 20, 5, 11, 19, 900, 300, 60, 8, 2, 1, 0]
    >>> body = b"BM" + (28).to_bytes(2, "big") + b"".join(w.to_bytes(2, "big") for w in words)
    >>> good = body + sum(body).to_bytes(2, "big")
    >>> parse_frame(good).pm2_5, parse_frame(good).pm10
    (11, 19)
    >>> parse_frame(body + bytes(2)).reason
    'checksum 0x0000 != computed 0x0...'

    Args:
        frame: the candidate bytes, starting with the header.

    Returns:
        The decoded values, or the reason the bytes are not a valid frame.
    """
    if len(frame) != FRAME_LENGTH:
        return BadFrame(f"length {len(frame)} != {FRAME_LENGTH}")
    if frame[:2] != HEADER:
        return BadFrame(f"header {frame[:2].hex()} != {HEADER.hex()}")
    length = int.from_bytes(frame[2:4], "big")
    if length != LENGTH_FIELD:
        return BadFrame(f"frame-length field {length} != {LENGTH_FIELD}")
    declared = int.from_bytes(frame[30:32], "big")
    computed = sum(frame[:30]) & 0xFFFF
    if declared != computed:
        return BadFrame(f"checksum 0x{declared:04x} != computed 0x{computed:04x}")
    w = [int.from_bytes(frame[i : i + 2], "big") for i in range(4, 30, 2)]
    return PMS5003Frame(
        pm1_0_cf1=w[0],
        pm2_5_cf1=w[1],
        pm10_cf1=w[2],
        pm1_0=w[3],
        pm2_5=w[4],
        pm10=w[5],
        counts=(w[6], w[7], w[8], w[9], w[10], w[11]),
    )


FRAME_SPEC: FrameSpec[PMS5003Frame] = FrameSpec("PMS5003", HEADER, FRAME_LENGTH, parse_frame)
"""How the PMS5003's frames are found in the byte stream."""


class PMS5003Options(SerialOptions):
    """Options of the PMS5003 driver (the shared serial options)."""


class PMS5003Driver(SerialFrameDriver[PMS5003Options, PMS5003Frame]):
    """The Plantower PMS5003 on a serial port: PM2.5 and PM10 in µg/m³.

    Args:
        options: the driver's validated options.
    """

    Options: ClassVar[type[PMS5003Options]] = PMS5003Options
    kind: ClassVar[Kind | None] = Kind.POLLUTION
    frame_spec: ClassVar[FrameSpec[PMS5003Frame]] = FRAME_SPEC

    def metrics(self, frame: PMS5003Frame) -> dict[str, float]:
        """The atmospheric ``pm2_5`` and ``pm10`` of a frame (see the module docstring)."""
        return {"pm2_5": float(frame.pm2_5), "pm10": float(frame.pm10)}

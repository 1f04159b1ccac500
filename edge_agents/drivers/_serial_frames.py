"""Fixed-length binary frames from a serial sensor: synchronisation, and a shared driver base.

Particulate-matter sensors such as the SDS011 and the PMS5003 stream fixed-length
frames over a UART. A frame starts with known *start bytes* (the header), has a
fixed length and ends with a checksum (and for some sensors a tail byte). A
reader that opens the port mid-stream, or after line noise, sees garbage and
partial frames first, so frames are found by scanning:

1. skip bytes until the header;
2. wait until a whole frame's worth of bytes is buffered;
3. hand the candidate to the sensor's pure ``parse`` function, which returns the
   decoded values or a :class:`BadFrame` with the reason (checksum, tail, length);
4. on a good frame consume it; on a bad one drop only the first header byte and
   scan again, since the real start of a frame may lie inside the rejected
   candidate.

Everything up to :class:`FrameSynchroniser` is pure (bytes in, values or
reasons out) and testable without a port; :func:`read_frames` and
:class:`SerialFrameDriver` are the thin I/O layer over pyserial.
"""

from __future__ import annotations

import contextlib
import errno
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import serial  # type: ignore[import-untyped]
from pydantic import Field, PositiveInt

from edge_agents.drivers.base import Driver, DriverOptions
from edge_agents.errors import DriverError

T = TypeVar("T")


@dataclass(frozen=True)
class BadFrame:
    """A candidate frame that started with the header but failed validation.

    Attributes:
        reason: why it was rejected, e.g. ``checksum 0x12 != computed 0x34``.
    """

    reason: str


@dataclass(frozen=True)
class FrameSpec(Generic[T]):
    """How to find and decode one sensor's frames.

    Attributes:
        name: the sensor's name, for messages (``SDS011``).
        header: the start bytes every frame begins with.
        length: the whole frame's length in bytes, header included.
        parse: a pure function from exactly ``length`` bytes to the decoded
            values or a :class:`BadFrame`; it must not raise.
    """

    name: str
    header: bytes
    length: int
    parse: Callable[[bytes], T | BadFrame]


@dataclass(frozen=True)
class Scan(Generic[T]):
    """The outcome of one :func:`scan` step over a buffer.

    Attributes:
        consumed: how many bytes at the front of the buffer are done with (garbage,
            a whole good frame, or the first byte of a rejected candidate).
        result: the decoded frame, a :class:`BadFrame`, or ``None`` when more
            bytes are needed.
        skipped: how many of the consumed bytes were garbage before a header.
    """

    consumed: int
    result: T | BadFrame | None
    skipped: int


def scan(buffer: bytes, spec: FrameSpec[T]) -> Scan[T]:
    """Find the first frame in ``buffer``; pure, never raises.

    Args:
        buffer: the bytes received and not yet consumed.
        spec: the sensor's frame specification.

    Returns:
        What to consume and what was found. With ``result=None`` the caller keeps
        the unconsumed bytes and waits for more.
    """
    start = buffer.find(spec.header)
    if start < 0:
        # Keep a trailing partial header (e.g. the 0xAA of 0xAA 0xC0) for the next read.
        keep = 0
        for size in range(min(len(spec.header) - 1, len(buffer)), 0, -1):
            if buffer.endswith(spec.header[:size]):
                keep = size
                break
        return Scan(consumed=len(buffer) - keep, result=None, skipped=len(buffer) - keep)
    if len(buffer) - start < spec.length:
        return Scan(consumed=start, result=None, skipped=start)
    result = spec.parse(bytes(buffer[start : start + spec.length]))
    if isinstance(result, BadFrame):
        return Scan(consumed=start + 1, result=result, skipped=start)
    return Scan(consumed=start + spec.length, result=result, skipped=start)


def parse_stream(data: bytes, spec: FrameSpec[T]) -> list[T | BadFrame]:
    """Every good and bad frame in ``data``, in order; a trailing partial frame is ignored."""
    sync = FrameSynchroniser(spec)
    return sync.feed(data)


class FrameSynchroniser(Generic[T]):
    """Buffers received bytes and cuts them into frames; pure, no I/O.

    Args:
        spec: the sensor's frame specification.

    Attributes:
        bad_in_row: bad frames since the last good one.
        bad_total: bad frames since construction.
        skipped_bytes: garbage bytes skipped since construction.
        last_problem: the reason the most recent bad frame was rejected.
    """

    def __init__(self, spec: FrameSpec[T]) -> None:
        self.spec = spec
        self._buffer = bytearray()
        self.bad_in_row = 0
        self.bad_total = 0
        self.skipped_bytes = 0
        self.last_problem: str | None = None

    @property
    def pending(self) -> int:
        """How many received bytes are buffered, waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[T | BadFrame]:
        """Add received bytes; return the good and bad frames they complete, in order."""
        self._buffer += data
        found: list[T | BadFrame] = []
        while True:
            step = scan(bytes(self._buffer), self.spec)
            del self._buffer[: step.consumed]
            self.skipped_bytes += step.skipped
            if step.result is None:
                return found
            if isinstance(step.result, BadFrame):
                self.bad_in_row += 1
                self.bad_total += 1
                self.last_problem = step.result.reason
            else:
                self.bad_in_row = 0
            found.append(step.result)

    def reset(self) -> None:
        """Drop buffered bytes and the run of bad frames (after flushing the port)."""
        self._buffer.clear()
        self.bad_in_row = 0


# ----------------------------------------------------------------------------- I/O


class SerialPort(Protocol):
    """The part of :class:`serial.Serial` the drivers use."""

    @property
    def in_waiting(self) -> int:
        """Bytes received and not yet read."""

    def read(self, size: int = 1) -> bytes:
        """Read up to ``size`` bytes, blocking at most the port's timeout."""

    def write(self, data: bytes) -> int | None:
        """Write ``data``."""

    def flush(self) -> None:
        """Wait until written data is sent."""

    def reset_input_buffer(self) -> None:
        """Discard received, unread bytes."""

    def close(self) -> None:
        """Close the port."""


POLL_S = 0.05
"""How long one blocking read of the port waits, so deadlines are checked often."""


def read_frames(
    port: SerialPort,
    sync: FrameSynchroniser[T],
    *,
    port_name: str,
    timeout_s: float,
    max_bad_frames: int,
) -> T:
    """Read until a good frame arrives; return the latest good frame available.

    All bytes already buffered by the OS are decoded first, and the newest good
    frame among them wins, so a slow reader gets the current value, not a backlog.

    Args:
        port: the open port, with a short read timeout (see :data:`POLL_S`).
        sync: the synchroniser holding this port's partial frames.
        port_name: the device path, for messages.
        timeout_s: how long to wait for a good frame.
        max_bad_frames: how many bad frames in a row make the read fail.

    Raises:
        DriverError: no good frame within ``timeout_s``, or ``max_bad_frames`` bad
            frames in a row.
        serial.SerialException: the port failed; the caller wraps it.
    """
    spec = sync.spec
    deadline = time.monotonic() + timeout_s
    sync.bad_in_row = 0
    latest: T | None = None
    while True:
        chunk = port.read(max(1, port.in_waiting))
        for result in sync.feed(chunk):
            if not isinstance(result, BadFrame):
                latest = result
        now = time.monotonic()
        if latest is not None:
            if port.in_waiting == 0 or now >= deadline:
                return latest
            continue  # more bytes are waiting: a newer frame may be among them
        if sync.bad_in_row >= max_bad_frames:
            msg = (
                f"{spec.name} on {port_name}: {sync.bad_in_row} bad frames in a row"
                f" (last: {sync.last_problem})"
            )
            raise DriverError(msg)
        if now >= deadline:
            bad = f" ({sync.bad_in_row} bad, last: {sync.last_problem})" if sync.bad_in_row else ""
            msg = f"{spec.name} on {port_name}: no valid frame within {timeout_s:g} s{bad}"
            raise DriverError(msg)


class SerialOptions(DriverOptions):
    """Options shared by the serial particulate-matter drivers.

    Attributes:
        port: the serial device, e.g. ``/dev/ttyUSB0`` or ``/dev/serial0``.
        baudrate: the line speed; both sensors use 9600 baud, 8N1.
        timeout_s: how long ``read()`` waits for a valid frame before failing.
        max_bad_frames: how many bad frames in a row make ``read()`` fail early.
    """

    port: str = Field(min_length=1)
    baudrate: PositiveInt = 9600
    timeout_s: float = Field(default=3.0, gt=0, le=300)
    max_bad_frames: PositiveInt = 5


OptionsT = TypeVar("OptionsT", bound=SerialOptions)


class SerialFrameDriver(Driver[OptionsT], Generic[OptionsT, T]):
    """A driver reading fixed-length frames from a serial port (8N1).

    Subclasses set :attr:`frame_spec` and implement :meth:`metrics`.

    Args:
        options: the driver's validated options.
    """

    frame_spec: ClassVar[FrameSpec[Any]]
    """The frames this sensor sends (a ``FrameSpec`` of the subclass's frame type)."""

    def __init__(self, options: OptionsT) -> None:
        super().__init__(options)
        self._port: SerialPort | None = None
        self._sync: FrameSynchroniser[T] = FrameSynchroniser(self.frame_spec)

    def open(self) -> None:
        """Open the port at 8N1 and discard stale buffered input.

        Raises:
            DriverError: the port cannot be opened; not retryable if it does not exist.
        """
        self.close()
        name = self.options.port
        try:
            port: SerialPort = serial.Serial(
                port=name,
                baudrate=self.options.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=POLL_S,
                write_timeout=self.options.timeout_s,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            missing = getattr(exc, "errno", None) in (errno.ENOENT, errno.ENODEV, errno.ENXIO)
            what = "does not exist" if missing else "cannot be opened"
            msg = f"{self.frame_spec.name}: serial port {name} {what}: {exc}"
            raise DriverError(msg, retryable=not missing) from exc
        self._port = port
        try:
            port.reset_input_buffer()
            self._sync.reset()
            self.after_open(port)
        except (serial.SerialException, OSError) as exc:
            self.close()
            msg = f"{self.frame_spec.name}: serial port {name} failed while setting up: {exc}"
            raise DriverError(msg) from exc

    def after_open(self, port: SerialPort) -> None:
        """Configure the sensor after the port opened; nothing by default."""

    def before_read(self, port: SerialPort) -> None:
        """Prompt the sensor for a frame before reading; nothing by default (active mode)."""

    def read(self) -> dict[str, float]:
        """Wait for the latest valid frame and return its metrics.

        Raises:
            DriverError: the driver is not open, the port failed, no valid frame
                arrived within ``timeout_s``, or too many bad frames in a row.
        """
        port = self._port
        name = self.options.port
        if port is None:
            msg = f"{self.frame_spec.name} on {name}: read() before open()"
            raise DriverError(msg)
        try:
            self.before_read(port)
            frame = read_frames(
                port,
                self._sync,
                port_name=name,
                timeout_s=self.options.timeout_s,
                max_bad_frames=self.options.max_bad_frames,
            )
        except (serial.SerialException, OSError) as exc:
            msg = f"{self.frame_spec.name} on {name}: serial port failed: {exc}"
            raise DriverError(msg) from exc
        return self.metrics(frame)

    @abstractmethod
    def metrics(self, frame: T) -> dict[str, float]:
        """The catalogue metrics of one decoded frame."""

    def close(self) -> None:
        """Close the port; idempotent, never raises."""
        port, self._port = self._port, None
        if port is None:
            return
        with contextlib.suppress(Exception):  # close() must never raise
            port.close()

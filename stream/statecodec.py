r"""A small binary codec for the stream's state values: what a table stores per key.

State is written to a changelog on every batch, so it is packed tight: fixed-width
little-endian numbers, texts as a length and UTF-8 bytes. :class:`Packer` writes,
:class:`Unpacker` reads and says where the bytes stop making sense; a caller turns
that into an error that names its key. A record of several fields goes in one call
with a precompiled little-endian :class:`struct.Struct` (:meth:`Packer.record`,
:meth:`Packer.records`, :meth:`Unpacker.record`), which gives the same bytes as its
fields one by one and is much faster for a state packed after every batch.

>>> packer = Packer()
>>> _ = packer.u8(1).text("site/st-aq-pier").f64(35.5).i64(-1).u32(7)
>>> reader = Unpacker(packer.result())
>>> reader.u8(), reader.text(), reader.f64(), reader.i64(), reader.u32()
(1, 'site/st-aq-pier', 35.5, -1, 7)
>>> reader.end()
>>> point = struct.Struct("<Bqd")  # u8, i64, f64
>>> data = Packer().record(point, 3, -5, 0.5).records(point, [(4, 6, 1.5)]).result()
>>> data == Packer().u8(3).i64(-5).f64(0.5).u8(4).i64(6).f64(1.5).result()
True
>>> reader = Unpacker(data)
>>> reader.record(point), reader.record(point)
((3, -5, 0.5), (4, 6, 1.5))
>>> Unpacker(b"\x01").f64()
Traceback (most recent call last):
...
ValueError: 8 bytes wanted at byte 0, 1 left
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from itertools import starmap
from typing import Any, Final

__all__ = ["Packer", "Unpacker"]

_U8: Final = struct.Struct("<B")
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_I64: Final = struct.Struct("<q")
_F64: Final = struct.Struct("<d")


class Packer:
    """Collects fixed-width numbers and texts into one bytes value."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, value: int) -> Packer:
        """An unsigned byte, 0-255."""
        self._parts.append(_U8.pack(value))
        return self

    def u16(self, value: int) -> Packer:
        """An unsigned 16-bit integer."""
        self._parts.append(_U16.pack(value))
        return self

    def u32(self, value: int) -> Packer:
        """An unsigned 32-bit integer."""
        self._parts.append(_U32.pack(value))
        return self

    def i64(self, value: int) -> Packer:
        """A signed 64-bit integer."""
        self._parts.append(_I64.pack(value))
        return self

    def f64(self, value: float) -> Packer:
        """A double; NaN and the infinities round-trip."""
        self._parts.append(_F64.pack(value))
        return self

    def record(self, fmt: struct.Struct, *values: Any) -> Packer:
        """A record of fixed-width fields in one call; ``fmt`` must be little-endian (``<``)."""
        self._parts.append(fmt.pack(*values))
        return self

    def records(self, fmt: struct.Struct, rows: Iterable[tuple[Any, ...]]) -> Packer:
        """Records of the same ``fmt`` one after another: :meth:`record` for each row."""
        self._parts += starmap(fmt.pack, rows)
        return self

    def text(self, value: str) -> Packer:
        """A text of up to 65 535 UTF-8 bytes."""
        data = value.encode()
        self._parts.append(_U16.pack(len(data)))
        self._parts.append(data)
        return self

    def result(self) -> bytes:
        """Everything packed so far."""
        return b"".join(self._parts)


class Unpacker:
    """Reads back what a :class:`Packer` wrote, in the same order.

    Every method raises ``ValueError`` saying at which byte the data ran out or
    stopped being what was expected.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def _take(self, fmt: struct.Struct) -> tuple[object, ...]:
        left = len(self._data) - self._offset
        if left < fmt.size:
            msg = f"{fmt.size} bytes wanted at byte {self._offset}, {left} left"
            raise ValueError(msg)
        values = fmt.unpack_from(self._data, self._offset)
        self._offset += fmt.size
        return values

    def _int(self, fmt: struct.Struct) -> int:
        (value,) = self._take(fmt)
        assert isinstance(value, int)  # noqa: S101 - struct gives ints for integer formats
        return value

    def u8(self) -> int:
        """An unsigned byte."""
        return self._int(_U8)

    def u16(self) -> int:
        """An unsigned 16-bit integer."""
        return self._int(_U16)

    def u32(self) -> int:
        """An unsigned 32-bit integer."""
        return self._int(_U32)

    def i64(self) -> int:
        """A signed 64-bit integer."""
        return self._int(_I64)

    def f64(self) -> float:
        """A double."""
        (value,) = self._take(_F64)
        assert isinstance(value, float)  # noqa: S101 - struct gives floats for "d"
        return value

    def record(self, fmt: struct.Struct) -> tuple[Any, ...]:
        """A record that :meth:`Packer.record` wrote with the same ``fmt``, as its fields."""
        return self._take(fmt)

    def text(self) -> str:
        """A text."""
        size = self.u16()
        start = self._offset
        if len(self._data) - start < size:
            msg = f"a text of {size} bytes at byte {start}, {len(self._data) - start} left"
            raise ValueError(msg)
        self._offset += size
        try:
            return self._data[start : self._offset].decode()
        except UnicodeDecodeError:
            msg = f"the text at byte {start} is not UTF-8"
            raise ValueError(msg) from None

    def end(self) -> None:
        """Check that every byte was read."""
        if self._offset != len(self._data):
            msg = f"{len(self._data) - self._offset} bytes left over after byte {self._offset}"
            raise ValueError(msg)

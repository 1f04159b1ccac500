"""Reading line protocol back: a parser, and a tail over the file sink's directory.

Where the demo has no VictoriaMetrics to ask, its live view reads what the worker's
:class:`~stream.sinks.files.LineFileSink` wrote: :class:`LineTail` follows the
files as they grow (whole lines only) and :func:`parse_line` turns each line back
into a :class:`Point`.

>>> p = parse_line('aqi,district=old-town aqi=212i,primary="pm2_5",level=5i 1700000000000')
>>> p.measurement, p.tags["district"], p.fields["aqi"], p.fields["primary"], p.ts_ms
('aqi', 'old-town', 212, 'pm2_5', 1700000000000)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LineParseError", "LineTail", "Point", "parse_line"]

FieldValue = float | int | bool | str


class LineParseError(ValueError):
    """A line that is not line protocol; the message says where."""


@dataclass(frozen=True, slots=True)
class Point:
    """One point: measurement, tags, fields and its timestamp.

    Attributes:
        measurement: the measurement.
        tags: the tag set.
        fields: the field set (``1i`` as int, ``1.0`` as float, strings unquoted).
        ts_ms: the timestamp as written (the stream writes milliseconds), or None.
    """

    measurement: str
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FieldValue] = field(default_factory=dict)
    ts_ms: int | None = None


def _scan(text: str, start: int, stops: str) -> tuple[str, int]:
    """Unescape from ``start`` up to the first unescaped character of ``stops``."""
    out: list[str] = []
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if c in stops:
            break
        out.append(c)
        i += 1
    return "".join(out), i


def _string(text: str, start: int) -> tuple[str, int]:
    """A quoted field value from its opening quote; returns the value and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    msg = f"unterminated string field at column {start + 1}"
    raise LineParseError(msg)


def _value(raw: str, key: str) -> FieldValue:
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    try:
        if raw.endswith(("i", "u")):
            return int(raw[:-1])
        return float(raw)
    except ValueError:
        msg = f"field {key!r}: {raw!r} is not a number, a boolean or a string"
        raise LineParseError(msg) from None


def parse_line(line: str) -> Point:
    r"""The point one line of line protocol holds.

    Raises:
        LineParseError: the line is not line protocol.

    >>> parse_line(r'my\ m,a\=b=c\,d f="x \"y\", z",g=1.5').fields
    {'f': 'x "y", z', 'g': 1.5}
    >>> parse_line("m f=1i,t=t 5").tags, parse_line("m f=1i,t=t 5").fields
    ({}, {'f': 1, 't': True})
    >>> parse_line("m 1")
    Traceback (most recent call last):
    ...
    stream.demo.lines.LineParseError: field '1': no '=' at column 4
    """
    text = line.rstrip("\n")
    measurement, i = _scan(text, 0, ", ")
    if not measurement:
        msg = "no measurement"
        raise LineParseError(msg)
    tags: dict[str, str] = {}
    while i < len(text) and text[i] == ",":
        key, i = _scan(text, i + 1, "=, ")
        if i >= len(text) or text[i] != "=":
            msg = f"tag {key!r}: no '=' at column {i + 1}"
            raise LineParseError(msg)
        tags[key], i = _scan(text, i + 1, ", ")
    if i >= len(text) or text[i] != " ":
        msg = f"no field set after column {i}"
        raise LineParseError(msg)
    fields: dict[str, FieldValue] = {}
    i += 1
    while True:
        key, i = _scan(text, i, "=, ")
        if i >= len(text) or text[i] != "=":
            msg = f"field {key!r}: no '=' at column {i + 1}"
            raise LineParseError(msg)
        i += 1
        if i < len(text) and text[i] == '"':
            fields[key], i = _string(text, i)
        else:
            end = i
            while end < len(text) and text[end] not in ", ":
                end += 1
            fields[key] = _value(text[i:end], key)
            i = end
        if i < len(text) and text[i] == ",":
            i += 1
            continue
        break
    ts: int | None = None
    rest = text[i:].strip()
    if rest:
        try:
            ts = int(rest)
        except ValueError:
            msg = f"timestamp {rest!r} is not an integer"
            raise LineParseError(msg) from None
    return Point(measurement, tags, fields, ts)


@dataclass
class LineTail:
    """Follows every ``*.lp`` file of a directory, giving each complete line once.

    A line still being written (no line end yet) waits for the next :meth:`read`.

    Attributes:
        directory: the directory the file sink writes.
        offsets: how far each file has been read.
    """

    directory: Path
    offsets: dict[Path, int] = field(default_factory=dict)

    def files(self) -> list[Path]:
        """The line-protocol files there now, by name."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.lp"))

    def read(self) -> Iterator[str]:
        """The lines completed since the last call (without their line ends)."""
        for path in self.files():
            offset = self.offsets.get(path, 0)
            try:
                with path.open("rb") as file:
                    file.seek(offset)
                    data = file.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1
            if end == 0:
                continue
            self.offsets[path] = offset + end
            for raw in data[:end].decode("utf-8", errors="replace").splitlines():
                if raw.strip():
                    yield raw

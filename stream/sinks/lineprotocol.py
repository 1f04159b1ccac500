r"""InfluxDB line protocol, encoded strictly and fast, and the sinks' errors.

One point is one line::

    measurement[,tag_key=tag_value...] field_key=field_value[,...] timestamp

The rules follow the InfluxDB line protocol reference
(https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/):

* A **measurement** escapes commas and spaces; a **tag key**, **tag value** and
  **field key** escape commas, spaces and equals signs.
* A **string field value** is quoted and escapes double quotes and backslashes.
* A **float** is written without a suffix (``12.0``, ``0.5``, ``1e+20``), an
  **integer** with ``i`` (``12i``), a **boolean** as ``true`` / ``false``. Python's
  type decides the field's type and nothing else does, so a field keeps one type as
  long as its producer passes one Python type (write ``float(x)`` for a float field:
  ``35`` and ``35.0`` are different types to InfluxDB).
* **Tags are sorted by key** (byte order), as InfluxDB recommends; fields keep the
  caller's order.

Some input cannot be written portably, and is refused with a
:class:`LineProtocolError` that names the element and the value, never repaired:

* newlines (and, in names and tag values, every other control character);
* NaN and infinities, integers outside the signed 64-bit range, string values
  longer than 64 KiB, empty names, tag values or field sets;
* names starting with ``_`` and the key ``time``, which InfluxDB reserves;
* a backslash in a name or tag value that a parser could read as an escape: one
  at the end, or one followed by a backslash, comma, space or equals sign. Servers
  disagree about those: InfluxDB 1.x keeps ``\\`` as two backslashes, while
  VictoriaMetrics and the v2 reference read it as one. Any other backslash is
  literal everywhere and is written as it is.

Timestamps are integers in nanoseconds since the Unix epoch, written in a
configurable :class:`Precision` (rounded down); the writer must send the same
precision to the server.

>>> print(encode_point(
...     "aq",
...     {"site": "Lake side", "id": "s1"},
...     {"pm2_5": 35.0, "n": 12, "ok": True, "note": 'a "b"'},
...     1_700_000_000_123_456_789,
...     precision=Precision.MS,
... ))
aq,id=s1,site=Lake\ side pm2_5=35.0,n=12i,ok=true,note="a \"b\"" 1700000000123
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple, TypeAlias

__all__ = [
    "MAX_STRING_BYTES",
    "FieldValue",
    "LineEncoder",
    "LinePoint",
    "LineProtocolError",
    "Precision",
    "SinkConfigError",
    "SinkError",
    "encode_batch",
    "encode_point",
    "encode_series",
    "encode_timestamp",
    "escape_field_key",
    "escape_measurement",
    "escape_tag_key",
    "escape_tag_value",
    "quote_string",
    "timestamp_ns",
]


# ------------------------------------------------------------------------ errors
# The root error of the package lives here, in its one module without I/O, so the
# encoder and every sink can share it; ``stream.sinks`` re-exports it.


class SinkError(Exception):
    """The root error of every sink: says whether trying the same data again can help.

    Args:
        message: What went wrong, with the server's own message when there is one.
        retryable: True when the same write may succeed later (server busy or
            unreachable): the caller keeps its input (does not commit its Kafka
            offset) and writes it again. False when it never will as it stands
            (bad configuration, unencodable point).
        retry_after: Seconds the server asked to wait (``Retry-After``) or the
            backoff the sink would have waited next, when known.
        status: The HTTP status that caused the error, when there was one.

    Attributes:
        message: As given.
        retryable: As given.
        retry_after: As given.
        status: As given.

    >>> err = SinkError("HTTP 503: busy", retryable=True, retry_after=2.0, status=503)
    >>> err.retryable, err.retry_after, str(err)
    (True, 2.0, 'HTTP 503: busy')
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class LineProtocolError(SinkError, ValueError):
    """A point that cannot be written as line protocol; never retryable.

    The message names the element (measurement, tag, field, timestamp) and the
    offending value.

    >>> encode_point("m", {}, {"pm2_5": float("nan")}, 0)
    Traceback (most recent call last):
        ...
    stream.sinks.lineprotocol.LineProtocolError: field 'pm2_5': nan is not a finite number
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class SinkConfigError(SinkError, ValueError):
    """A sink was built with a configuration that cannot work; never retryable."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


# --------------------------------------------------------------------- precision


class Precision(StrEnum):
    """The unit of the timestamps written (the ``precision`` of the write request)."""

    S = "s"
    MS = "ms"
    US = "us"
    NS = "ns"

    @property
    def divisor(self) -> int:
        """Nanoseconds per unit.

        >>> Precision.MS.divisor
        1000000
        """
        return _DIVISORS[self]

    @property
    def v1_name(self) -> str:
        """The name InfluxDB 1.x's ``/write`` uses for this precision (``u``, not ``us``).

        >>> Precision.NS.v1_name, Precision.US.v1_name
        ('ns', 'u')
        """
        return _V1_NAMES[self]


_DIVISORS = {
    Precision.S: 1_000_000_000,
    Precision.MS: 1_000_000,
    Precision.US: 1_000,
    Precision.NS: 1,
}
# InfluxDB 1.x reads an unknown precision (such as "us") as nanoseconds, silently.
_V1_NAMES = {Precision.S: "s", Precision.MS: "ms", Precision.US: "u", Precision.NS: "ns"}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_US = 1_000
_NS_PER_S = 1_000_000_000
# InfluxDB's valid timestamp range (its minimum and maximum are reserved).
_MIN_TS_NS = -9_223_372_036_854_775_806
_MAX_TS_NS = 9_223_372_036_854_775_806
_MIN_INT = -(2**63)
_MAX_INT = 2**63 - 1

MAX_STRING_BYTES = 64 * 1024 - 1
"""The longest string field value InfluxDB stores, in UTF-8 bytes."""


def timestamp_ns(when: datetime) -> int:
    """Return an aware datetime as integer nanoseconds since the Unix epoch, exactly.

    Args:
        when: A timezone-aware datetime.

    Returns:
        The nanoseconds (a datetime has microseconds, so the last three digits are 0).

    Raises:
        LineProtocolError: If ``when`` is naive.

    >>> timestamp_ns(datetime(2026, 11, 22, 8, 30, tzinfo=UTC))
    1795336200000000000
    """
    if when.tzinfo is not None:
        try:
            since = when - _EPOCH
        except TypeError:  # its tzinfo gives no offset: naive after all
            pass
        else:
            seconds = since.days * 86_400 + since.seconds
            return seconds * _NS_PER_S + since.microseconds * _NS_PER_US
    msg = f"timestamp {when.isoformat()}: a naive datetime has no defined instant"
    raise LineProtocolError(msg)


# ------------------------------------------------------------------------ escape

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\="})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
# Control characters (C0 and DEL) have no place in names and tag values.
_CONTROL = re.compile("[\x00-\x1f\x7f]")
# A backslash that a parser may read as an escape, where servers disagree.
_AMBIGUOUS_BACKSLASH = re.compile(r"\\(?:[\\, =]|\Z)")
_RESERVED_KEYS = frozenset({"time"})


def _check_name(value: object, what: str, *, reserved: bool, key: object = None) -> str:
    """Validate a measurement, tag key, tag value or field key; return it as str.

    ``what`` names the element in error messages; ``key`` is the tag key of a value.
    """
    if type(value) is str and value and value.isprintable() and "\\" not in value:
        # The common case: nothing to check but the reserved names.
        if reserved and (value[0] == "_" or value in _RESERVED_KEYS):
            msg = f"{what} {value!r}: names starting with '_' and the key 'time' are reserved"
            raise LineProtocolError(msg)
        return value
    if key is not None:
        what = f"tag {key!r} value"
    if not isinstance(value, str):
        msg = f"{what} {value!r}: must be a string, not {type(value).__name__}"
        raise LineProtocolError(msg)
    if not value:
        msg = f"{what}: must not be empty"
        raise LineProtocolError(msg)
    if not value.isprintable() and _CONTROL.search(value) is not None:
        msg = f"{what} {value!r}: newlines and other control characters are not allowed"
        raise LineProtocolError(msg)
    if "\\" in value and _AMBIGUOUS_BACKSLASH.search(value) is not None:
        msg = (
            f"{what} {value!r}: a backslash at the end or before a backslash, comma, "
            "space or equals sign is read differently by different servers"
        )
        raise LineProtocolError(msg)
    if reserved and (value[0] == "_" or value in _RESERVED_KEYS):
        msg = f"{what} {value!r}: names starting with '_' and the key 'time' are reserved"
        raise LineProtocolError(msg)
    return str(value)


def _escape_key(text: str) -> str:
    """Escape commas, spaces and equals signs (translate only when there are some)."""
    if "," in text or " " in text or "=" in text:
        return text.translate(_KEY_ESCAPES)
    return text


def escape_measurement(name: str) -> str:
    r"""Validate a measurement name and escape its commas and spaces.

    Args:
        name: The measurement.

    Returns:
        The escaped name.

    Raises:
        LineProtocolError: If the name cannot be written (see the module's rules).

    >>> print(escape_measurement("air quality,raw=1"))
    air\ quality\,raw=1
    """
    name = _check_name(name, "measurement", reserved=True)
    if "," in name or " " in name:
        return name.translate(_MEASUREMENT_ESCAPES)
    return name


def escape_tag_key(key: str) -> str:
    r"""Validate a tag key and escape its commas, spaces and equals signs.

    Args:
        key: The tag key.

    Returns:
        The escaped key.

    Raises:
        LineProtocolError: If the key cannot be written (see the module's rules).

    >>> print(escape_tag_key("site id"))
    site\ id
    """
    return _escape_key(_check_name(key, "tag key", reserved=True))


def escape_tag_value(value: str, key: str = "?") -> str:
    r"""Validate a tag value and escape its commas, spaces and equals signs.

    Unlike keys, a tag value may start with ``_`` and may be ``time``.

    Args:
        value: The tag value.
        key: Its tag key, for the error message.

    Returns:
        The escaped value.

    Raises:
        LineProtocolError: If the value cannot be written (see the module's rules).

    >>> print(escape_tag_value("Lake side=north, east"))
    Lake\ side\=north\,\ east
    """
    return _escape_key(_check_name(value, "tag value", reserved=False, key=key))


def escape_field_key(key: str) -> str:
    r"""Validate a field key and escape its commas, spaces and equals signs.

    Args:
        key: The field key.

    Returns:
        The escaped key.

    Raises:
        LineProtocolError: If the key cannot be written (see the module's rules).

    >>> print(escape_field_key("pm2.5 (raw)"))
    pm2.5\ (raw)
    """
    return _escape_key(_check_name(key, "field key", reserved=True))


def quote_string(value: str, what: str = "string field") -> str:
    r"""Validate a string field value; return it quoted, with ``"`` and ``\`` escaped.

    Args:
        value: The string.
        what: What it is, for the error message.

    Returns:
        The quoted value.

    Raises:
        LineProtocolError: If it holds a newline or is longer than
            :data:`MAX_STRING_BYTES` in UTF-8.

    >>> print(quote_string('C:\\data "raw"'))
    "C:\\data \"raw\""
    """
    if "\n" in value or "\r" in value:
        msg = f"{what} {value[:80]!r}: newlines are not allowed"
        raise LineProtocolError(msg)
    if len(value) * 4 > MAX_STRING_BYTES and len(value.encode()) > MAX_STRING_BYTES:
        msg = f"{what}: {len(value.encode())} bytes, more than the {MAX_STRING_BYTES} allowed"
        raise LineProtocolError(msg)
    if '"' in value or "\\" in value:
        return '"' + value.translate(_STRING_ESCAPES) + '"'
    return '"' + value + '"'


# ------------------------------------------------------------------------ fields

FieldValue: TypeAlias = float | int | bool | str
"""What a field may hold; its Python type decides its InfluxDB type."""


def _field_value(value: object, key: str) -> str:
    """Encode one field value, its InfluxDB type taken from its Python type."""
    if isinstance(value, float):
        if math.isfinite(value):
            return float.__repr__(value)
        msg = f"field {key!r}: {value!r} is not a finite number"
    elif isinstance(value, bool):
        return "true" if value else "false"
    elif isinstance(value, int):
        if _MIN_INT <= value <= _MAX_INT:
            return int.__repr__(value) + "i"
        msg = f"field {key!r}: {value!r} is outside the signed 64-bit integer range"
    elif isinstance(value, str):
        return quote_string(value, f"field {key!r}")
    else:
        return _field_value_other(value, key)
    raise LineProtocolError(msg)


def _field_value_other(value: object, key: str) -> str:
    """Numbers of other libraries: numpy's booleans, integers and small floats."""
    kind = type(value)
    if kind.__module__ == "numpy" and kind.__name__ in {"bool", "bool_"}:
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return _field_value(int(value), key)
    if isinstance(value, numbers.Real):
        return _field_value(float(value), key)
    msg = f"field {key!r}: {kind.__name__} values cannot be written (value {value!r})"
    raise LineProtocolError(msg)


# ------------------------------------------------------------------------ points


class LinePoint(NamedTuple):
    """One point to encode; any 4-tuple in this order does as well.

    Attributes:
        measurement: The measurement.
        tags: Tag keys to tag values.
        fields: Field keys to values (at least one).
        ts_ns: Nanoseconds since the Unix epoch.
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    ts_ns: int


def _series(measurement: str, tags: Mapping[str, str]) -> str:
    """Validate and encode the series part of a line: measurement and sorted tags."""
    line = escape_measurement(measurement)
    if not tags:
        return line
    try:
        items = sorted(tags.items()) if len(tags) > 1 else list(tags.items())
    except TypeError:
        keys = ", ".join(repr(key) for key in tags)
        msg = f"tag keys {keys}: must all be strings"
        raise LineProtocolError(msg) from None
    parts = [line]
    for key, value in items:
        parts.append(f"{escape_tag_key(key)}={escape_tag_value(value, key)}")
    return ",".join(parts)


def encode_series(measurement: str, tags: Mapping[str, str]) -> str:
    r"""Encode the series of a line: its measurement and tags, as :class:`LineEncoder` does.

    For builders that write many lines of one series: encode the series once, then
    write ``f"{series} {fields} {timestamp}"``.

    Args:
        measurement: The measurement.
        tags: Tag keys to tag values; written sorted by key.

    Returns:
        The escaped measurement and sorted, escaped tags.

    Raises:
        LineProtocolError: If any part cannot be written; the message names it.

    >>> print(encode_series("aq", {"site": "Lake side", "id": "s1"}))
    aq,id=s1,site=Lake\ side
    """
    return _series(measurement, tags)


def _fields(fields: Mapping[str, FieldValue], keys: dict[str, str], max_cached: int) -> str:
    """Validate and encode the field set; ``keys`` remembers ``escaped_key=`` prefixes."""
    if not fields:
        msg = "a point needs at least one field"
        raise LineProtocolError(msg)
    parts: list[str] = []
    append = parts.append
    for name, value in fields.items():
        try:
            prefix = keys[name]
        except (KeyError, TypeError):
            prefix = escape_field_key(name) + "="
            if len(keys) >= max_cached:
                keys.clear()
            if max_cached:
                keys[name] = prefix
        # Inline fast path for the common case, a finite float (inf - inf is nan);
        # repr of an exact float is its shortest round-tripping form.
        if type(value) is float and value - value == 0.0:
            append(prefix + repr(value))
        else:
            append(prefix + _field_value(value, name))
    return ",".join(parts)


def _timestamp(ts_ns: object, divisor: int) -> int:
    """The timestamp in the written unit, rounded down."""
    if type(ts_ns) is int:
        ts = ts_ns
    elif not isinstance(ts_ns, bool) and isinstance(ts_ns, numbers.Integral):
        ts = int(ts_ns)
    else:
        msg = f"timestamp {ts_ns!r}: must be integer nanoseconds, not {type(ts_ns).__name__}"
        raise LineProtocolError(msg)
    if not _MIN_TS_NS <= ts <= _MAX_TS_NS:
        msg = f"timestamp {ts!r}: outside the range InfluxDB stores"
        raise LineProtocolError(msg)
    return ts // divisor


def encode_timestamp(ts_ns: int, precision: Precision = Precision.NS) -> str:
    """Encode the timestamp of a line, as :class:`LineEncoder` does.

    Args:
        ts_ns: Nanoseconds since the Unix epoch.
        precision: The unit it is written in (rounded down).

    Returns:
        The timestamp in that unit.

    Raises:
        LineProtocolError: If it is not an integer, or outside the range InfluxDB stores.

    >>> encode_timestamp(1_700_000_000_123_456_789, Precision.MS)
    '1700000000123'
    """
    if type(ts_ns) is int and _MIN_TS_NS <= ts_ns <= _MAX_TS_NS:
        return str(ts_ns // precision.divisor)
    return str(_timestamp(ts_ns, precision.divisor))


def _encode(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
    ts_ns: int,
    divisor: int,
) -> str:
    """One line, nothing remembered."""
    try:
        series = _series(measurement, tags)
        field_set = _fields(fields, {}, 0)
    except LineProtocolError as exc:
        if exc.message.startswith("a point needs"):
            msg = f"measurement {measurement!r}: {exc.message}"
            raise LineProtocolError(msg) from None
        raise
    return f"{series} {field_set} {_timestamp(ts_ns, divisor)}"


class LineEncoder:
    """Encodes points to lines, remembering the encoded series and field keys it has seen.

    A series (measurement and tag set) and the field keys repeat from point to
    point, so each is validated, escaped and sorted once and then looked up;
    the memory is bounded by ``max_cached`` entries of each kind.

    Args:
        precision: The unit of the timestamps written.
        max_cached: How many series and field keys to remember before starting
            afresh; 0 remembers nothing.

    >>> encoder = LineEncoder(precision=Precision.S)
    >>> print(encoder.encode("traffic", {"road": "A1"}, {"kmh": 48.5}, 1_700_000_000_900_000_000))
    traffic,road=A1 kmh=48.5 1700000000
    """

    def __init__(self, precision: Precision = Precision.NS, max_cached: int = 100_000) -> None:
        if max_cached < 0:
            msg = f"max_cached {max_cached!r}: must be >= 0"
            raise SinkConfigError(msg)
        self.precision = Precision(precision)
        self.max_cached = max_cached
        self._divisor = self.precision.divisor
        self._series: dict[tuple[object, ...], str] = {}
        self._fields: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"LineEncoder(precision={self.precision.value!r}, max_cached={self.max_cached})"

    def encode(
        self,
        measurement: str,
        tags: Mapping[str, str],
        fields: Mapping[str, FieldValue],
        ts_ns: int,
    ) -> str:
        """Encode one point as one line (without the newline).

        Args:
            measurement: The measurement.
            tags: Tag keys to tag values; written sorted by key.
            fields: Field keys to values, at least one; written in this order.
            ts_ns: Nanoseconds since the Unix epoch.

        Returns:
            The line.

        Raises:
            LineProtocolError: If any part cannot be written; the message names it.
        """
        cache = self._series
        try:
            key = (measurement, *tags.items())
            series = cache[key]
        except (KeyError, TypeError, AttributeError):
            series = _series(measurement, tags)
            if len(cache) >= self.max_cached:
                cache.clear()
            if self.max_cached:
                cache[(measurement, *tags.items())] = series
        try:
            field_set = _fields(fields, self._fields, self.max_cached)
        except LineProtocolError as exc:
            if exc.message.startswith("a point needs"):
                msg = f"measurement {measurement!r}: {exc.message}"
                raise LineProtocolError(msg) from None
            raise
        if type(ts_ns) is int and _MIN_TS_NS <= ts_ns <= _MAX_TS_NS:
            return f"{series} {field_set} {ts_ns // self._divisor}"
        return f"{series} {field_set} {_timestamp(ts_ns, self._divisor)}"

    def encode_batch(
        self,
        points: Iterable[tuple[str, Mapping[str, str], Mapping[str, FieldValue], int]],
        on_error: Callable[[int, LineProtocolError], object] | None = None,
    ) -> list[str]:
        """Encode many points, one line each.

        Args:
            points: ``(measurement, tags, fields, ts_ns)`` tuples, e.g. :class:`LinePoint`.
            on_error: Called with the index of a point that cannot be written and
                the error; that point is left out and the rest are encoded. When
                None, the first such point raises.

        Returns:
            The lines, in input order.

        Raises:
            LineProtocolError: If a point cannot be written and ``on_error`` is
                None; the message starts with the point's index.

        >>> bad = []
        >>> LineEncoder().encode_batch(
        ...     [("m", {}, {"v": 1.0}, 1), ("m", {}, {"v": float("inf")}, 2)],
        ...     on_error=lambda i, e: bad.append((i, str(e))),
        ... )
        ['m v=1.0 1']
        >>> bad
        [(1, "field 'v': inf is not a finite number")]
        """
        encode = self.encode
        lines: list[str] = []
        append = lines.append
        for index, (measurement, tags, fields, ts_ns) in enumerate(points):
            try:
                append(encode(measurement, tags, fields, ts_ns))
            except LineProtocolError as exc:
                if on_error is None:
                    msg = f"point {index}: {exc.message}"
                    raise LineProtocolError(msg) from exc
                on_error(index, exc)
        return lines


def encode_point(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
    ts_ns: int,
    *,
    precision: Precision = Precision.NS,
) -> str:
    """Encode one point as one line of line protocol (without the newline).

    Args:
        measurement: The measurement.
        tags: Tag keys to tag values; written sorted by key.
        fields: Field keys to values, at least one; written in this order.
        ts_ns: Nanoseconds since the Unix epoch.
        precision: The unit the timestamp is written in (rounded down).

    Returns:
        The line.

    Raises:
        LineProtocolError: If any part cannot be written; the message names it.

    >>> print(encode_point("energy", {"meter": "m-7"}, {"kwh": 12.0, "phase": 3}, 10**18))
    energy,meter=m-7 kwh=12.0,phase=3i 1000000000000000000
    """
    return _encode(measurement, tags, fields, ts_ns, Precision(precision).divisor)


def encode_batch(
    points: Iterable[tuple[str, Mapping[str, str], Mapping[str, FieldValue], int]],
    *,
    precision: Precision = Precision.NS,
    on_error: Callable[[int, LineProtocolError], object] | None = None,
) -> list[str]:
    """Encode many points, one line each (see :meth:`LineEncoder.encode_batch`).

    Args:
        points: ``(measurement, tags, fields, ts_ns)`` tuples, e.g. :class:`LinePoint`.
        precision: The unit the timestamps are written in (rounded down).
        on_error: Called with the index and error of a point that cannot be
            written, which is then left out; when None, the first one raises.

    Returns:
        The lines, in input order.

    >>> encode_batch([LinePoint("m", {"s": "a"}, {"v": True}, 5 * 10**9)], precision=Precision.S)
    ['m,s=a v=true 5']
    """
    return LineEncoder(precision).encode_batch(points, on_error)

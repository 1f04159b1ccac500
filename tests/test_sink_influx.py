"""The line-protocol encoder and the InfluxDB sink.

The encoder is checked against the line protocol reference with a small parser
written here (``parse_line``), by examples and by hypothesis. The sink is checked
against real servers: VictoriaMetrics and InfluxDB 1.x (fixtures, marked
``servers``), and for the answers those servers cannot be made to give (503,
429 with ``Retry-After``, 401, a partial write with a line number) against a real
aiohttp HTTP server started on 127.0.0.1 by the test, which answers writes as
each test scripts it. Waits between retries go through an injected clock and
sleep, so no test sleeps for a backoff except the one about a refused connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email.utils import format_datetime
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point

from stream.sinks import (
    FieldValue,
    InfluxSink,
    LineEncoder,
    LinePoint,
    LineProtocolError,
    Precision,
    Sink,
    SinkConfigError,
    SinkError,
    WriteApi,
    encode_batch,
    encode_point,
    error_message,
    escape_field_key,
    escape_measurement,
    escape_tag_key,
    escape_tag_value,
    parse_retry_after,
    quote_string,
    timestamp_ns,
)
from stream.sinks.lineprotocol import encode_series, encode_timestamp
from tests.servers._procs import free_port
from tests.servers.influxdb1 import InfluxDB1Server
from tests.servers.victoria_metrics import VictoriaMetricsServer

TIMEOUT = 30.0
T0 = 1_795_000_000_000_000_000  # 2026-11-18, in nanoseconds


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# ============================================================ a reference parser


Parsed = tuple[str, dict[str, str], dict[str, FieldValue], int]


def _scan(text: str, pos: int, stops: str) -> tuple[str, int]:
    """Read an unquoted name up to an unescaped character of ``stops``.

    As the reference says, a backslash escapes a comma, space, equals sign or
    backslash; before any other character it is a literal backslash.
    """
    out = []
    while pos < len(text) and text[pos] not in stops:
        if text[pos] == "\\" and pos + 1 < len(text) and text[pos + 1] in ", =\\":
            out.append(text[pos + 1])
            pos += 2
        else:
            out.append(text[pos])
            pos += 1
    return "".join(out), pos


def _field_value(text: str, pos: int) -> tuple[FieldValue, int]:
    if text[pos] == '"':
        out = []
        pos += 1
        while text[pos] != '"':
            if text[pos] == "\\" and text[pos + 1] in '"\\':
                out.append(text[pos + 1])
                pos += 2
            else:
                out.append(text[pos])
                pos += 1
        return "".join(out), pos + 1
    end = pos
    while end < len(text) and text[end] not in ", ":
        end += 1
    raw = text[pos:end]
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True, end
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False, end
    if raw.endswith("i"):
        return int(raw[:-1]), end
    return float(raw), end  # a number without a suffix is a float


def parse_line(line: str) -> Parsed:
    """Parse one line of line protocol into (measurement, tags, fields, timestamp)."""
    assert "\n" not in line
    measurement, pos = _scan(line, 0, ", ")
    tags: dict[str, str] = {}
    while line[pos] == ",":
        key, pos = _scan(line, pos + 1, "=")
        value, pos = _scan(line, pos + 1, ", ")
        tags[key] = value
    assert line[pos] == " ", line
    fields: dict[str, FieldValue] = {}
    pos += 1
    while True:
        key, pos = _scan(line, pos, "=")
        fields[key], pos = _field_value(line, pos + 1)
        if line[pos] == " ":
            break
        assert line[pos] == ",", line
        pos += 1
    return measurement, tags, fields, int(line[pos + 1 :])


def typed(fields: Mapping[str, FieldValue]) -> dict[str, tuple[type, FieldValue]]:
    """Fields with their types, so that 1 == 1.0 == True do not compare equal."""
    return {key: (type(value), value) for key, value in fields.items()}


# ================================================================ line protocol


def test_the_parser_reads_the_reference_examples() -> None:
    assert parse_line('my\\ meas,t\\=k=v\\,1 f\\ k="a \\"q\\" \\\\ b",n=3i,b=t 17') == (
        "my meas",
        {"t=k": "v,1"},
        {"f k": 'a "q" \\ b', "n": 3, "b": True},
        17,
    )


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("air quality", "air\\ quality"),
        ("a,b", "a\\,b"),
        ("a=b", "a=b"),  # an equals sign needs no escape in a measurement
        ('say "x"', 'say\\ "x"'),
        ("C:\\tmp", "C:\\tmp"),  # a lone backslash is literal
        ("Zürich", "Zürich"),
    ],
)
def test_measurement_escapes_commas_and_spaces(raw: str, escaped: str) -> None:
    assert escape_measurement(raw) == escaped


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("site id", "site\\ id"),
        ("a,b", "a\\,b"),
        ("a=b", "a\\=b"),
        (" ,=", "\\ \\,\\="),
        ('"quoted"', '"quoted"'),
        ("a\\b", "a\\b"),
    ],
)
def test_keys_and_tag_values_escape_commas_spaces_and_equals_signs(raw: str, escaped: str) -> None:
    assert escape_tag_key(raw) == escaped
    assert escape_tag_value(raw) == escaped
    assert escape_field_key(raw) == escaped


@pytest.mark.parametrize(
    ("raw", "quoted"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\data", '"C:\\\\data"'),
        ("ends with \\", '"ends with \\\\"'),
        ("a, b = c", '"a, b = c"'),
        ("tab\there", '"tab\there"'),
    ],
)
def test_string_values_escape_quotes_and_backslashes(raw: str, quoted: str) -> None:
    assert quote_string(raw) == quoted
    line = encode_point("m", {}, {"s": raw}, 1)
    assert parse_line(line)[2] == {"s": raw}


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "named"),
    [
        ("a\nb", {}, {"v": 1.0}, "measurement"),
        ("m", {"k\n": "v"}, {"v": 1.0}, "tag key"),
        ("m", {"site": "a\nb"}, {"v": 1.0}, "tag 'site' value"),
        ("m", {"site": "a\rb"}, {"v": 1.0}, "tag 'site' value"),
        ("m", {"site": "a\x00b"}, {"v": 1.0}, "tag 'site' value"),
        ("m", {}, {"v\n": 1.0}, "field key"),
        ("m", {}, {"note": "two\nlines"}, "field 'note'"),
        ("m", {}, {"note": "cr\r"}, "field 'note'"),
    ],
)
def test_newlines_and_control_characters_are_rejected_naming_the_element(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], named: str
) -> None:
    with pytest.raises(LineProtocolError, match=re.escape(named)):
        encode_point(measurement, tags, fields, 1)


@pytest.mark.parametrize("raw", ["a\\", "a\\\\b", "a\\,b", "a\\ b", "a\\=b", "\\"])
def test_a_backslash_servers_read_differently_is_rejected(raw: str) -> None:
    """InfluxDB 1.x stores ``\\\\`` as two backslashes, VictoriaMetrics as one."""
    with pytest.raises(LineProtocolError, match="backslash"):
        escape_tag_value(raw)
    with pytest.raises(LineProtocolError, match="backslash"):
        escape_measurement("m" + raw)


def test_field_types_follow_python_types() -> None:
    line = encode_point(
        "m",
        {},
        {"i": 1, "f": 1.5, "whole": 12.0, "big": 1e20, "neg": -0.25, "t": True, "s": "s"},
        1,
    )
    assert line == 'm i=1i,f=1.5,whole=12.0,big=1e+20,neg=-0.25,t=true,s="s" 1'
    assert encode_point("m", {}, {"b": False}, 1) == "m b=false 1"


def test_a_whole_float_stays_a_float() -> None:
    """``12.0`` is written with its decimal point, never as ``12i`` (an integer)."""
    line = encode_point("m", {}, {"pm2_5": 12.0, "count": 12}, 1)
    assert line == "m pm2_5=12.0,count=12i 1"
    assert typed(parse_line(line)[2]) == {"pm2_5": (float, 12.0), "count": (int, 12)}


def test_numpy_scalars_keep_their_kind() -> None:
    fields: dict[str, Any] = {
        "f64": np.float64(0.1),
        "f32": np.float32(0.5),
        "i64": np.int64(7),
        "b": np.bool_(True),
    }
    line = encode_point("m", {}, fields, np.int64(5))  # type: ignore[arg-type]
    assert line == "m f64=0.1,f32=0.5,i64=7i,b=true 5"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_nan_and_infinities_are_rejected_naming_the_field(value: float) -> None:
    with pytest.raises(LineProtocolError, match=r"^field 'pm2_5': .* is not a finite number"):
        encode_point("m", {}, {"ok": 1.0, "pm2_5": value}, 1)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_integers_outside_int64_are_rejected(value: int) -> None:
    with pytest.raises(LineProtocolError, match=r"field 'n': .* signed 64-bit"):
        encode_point("m", {}, {"n": value}, 1)
    assert encode_point("m", {}, {"n": value // 2}, 1).endswith(f"n={value // 2}i 1")


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "ts", "named"),
    [
        ("", {}, {"v": 1.0}, 1, "measurement: must not be empty"),
        ("_m", {}, {"v": 1.0}, 1, "measurement '_m'"),
        ("m", {"time": "x"}, {"v": 1.0}, 1, "tag key 'time'"),
        ("m", {"_k": "x"}, {"v": 1.0}, 1, "tag key '_k'"),
        ("m", {"k": ""}, {"v": 1.0}, 1, "tag 'k' value: must not be empty"),
        ("m", {"k": 3}, {"v": 1.0}, 1, "tag 'k' value 3: must be a string"),
        ("m", {}, {}, 1, "measurement 'm': a point needs at least one field"),
        ("m", {}, {"time": 1.0}, 1, "field key 'time'"),
        ("m", {}, {"v": None}, 1, "field 'v': NoneType values cannot be written"),
        ("m", {}, {"v": [1]}, 1, "field 'v': list values cannot be written"),
        ("m", {}, {"v": 1.0}, 1.5, "timestamp 1.5: must be integer nanoseconds"),
        ("m", {}, {"v": 1.0}, True, "timestamp True"),
        ("m", {}, {"v": 1.0}, 2**63, "outside the range"),
    ],
)
def test_unwritable_points_are_rejected_naming_the_element(
    measurement: str, tags: Any, fields: Any, ts: Any, named: str
) -> None:
    with pytest.raises(LineProtocolError, match=re.escape(named)):
        encode_point(measurement, tags, fields, ts)
    with pytest.raises(LineProtocolError, match=re.escape(named)):
        LineEncoder().encode(measurement, tags, fields, ts)


def test_a_long_string_is_rejected() -> None:
    encode_point("m", {}, {"s": "x" * 65_535}, 1)
    with pytest.raises(LineProtocolError, match="65536 bytes"):
        encode_point("m", {}, {"s": "x" * 65_536}, 1)
    with pytest.raises(LineProtocolError, match="65536 bytes"):
        encode_point("m", {}, {"s": "é" * 32_768}, 1)


def test_tags_are_sorted_by_key_and_fields_keep_their_order() -> None:
    line = encode_point(
        "m", {"zone": "z", "Area": "A", "b": "1", "a": "2"}, {"z": 1.0, "a": 2.0}, 1
    )
    assert line == "m,Area=A,a=2,b=1,zone=z z=1.0,a=2.0 1"


@pytest.mark.parametrize(
    ("precision", "written"),
    [
        (Precision.NS, "1700000000123456789"),
        (Precision.US, "1700000000123456"),
        (Precision.MS, "1700000000123"),
        (Precision.S, "1700000000"),
    ],
)
def test_timestamps_are_written_in_the_precision_rounded_down(
    precision: Precision, written: str
) -> None:
    ts = 1_700_000_000_123_456_789
    assert encode_point("m", {}, {"v": 1.0}, ts, precision=precision).endswith(f" {written}")
    # Rounded down, not towards zero: one nanosecond before the epoch is in second -1.
    assert encode_point("m", {}, {"v": 1.0}, -1, precision=precision).endswith(" -1")


def test_timestamp_ns_needs_an_aware_datetime() -> None:
    at = datetime(2026, 11, 22, 8, 30, 0, 123456, tzinfo=UTC)
    assert timestamp_ns(at) == 1_795_336_200_123_456_000
    with pytest.raises(LineProtocolError, match="naive"):
        timestamp_ns(datetime(2026, 11, 22, 8, 30))  # noqa: DTZ001 -- the point of the test

    class NoOffset(tzinfo):
        def utcoffset(self, dt: datetime | None) -> timedelta | None:
            return None

        def dst(self, dt: datetime | None) -> timedelta | None:
            return None

        def tzname(self, dt: datetime | None) -> str | None:
            return None

    with pytest.raises(LineProtocolError, match="naive"):
        timestamp_ns(datetime(2026, 11, 22, 8, 30, tzinfo=NoOffset()))


@given(st.datetimes(timezones=st.just(UTC)), st.integers(-1439, 1439))
def test_timestamp_ns_is_exact_in_any_offset(at: datetime, minutes: int) -> None:
    exact = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    assert timestamp_ns(at) == exact
    assert timestamp_ns(at.astimezone(timezone(timedelta(minutes=minutes)))) == exact


def test_batch_encoding_reports_bad_points_by_index() -> None:
    points = [
        LinePoint("m", {"s": "a"}, {"v": 1.0}, 1),
        LinePoint("m", {"s": "a"}, {"v": math.nan}, 2),
        LinePoint("m", {"s": "b\n"}, {"v": 3.0}, 3),
        LinePoint("m", {"s": "a"}, {"v": 4.0}, 4),
    ]
    with pytest.raises(LineProtocolError, match=r"^point 1: field 'v'"):
        encode_batch(points)
    bad: list[tuple[int, str]] = []
    lines = encode_batch(points, on_error=lambda i, e: bad.append((i, e.message)))
    assert lines == ["m,s=a v=1.0 1", "m,s=a v=4.0 4"]
    assert [i for i, _ in bad] == [1, 2]
    assert "tag 's' value" in bad[1][1]


def test_the_encoder_cache_is_bounded_and_changes_nothing() -> None:
    encoder = LineEncoder(max_cached=3)
    points = [(f"m{i % 5}", {"s": f"s{i % 7}"}, {f"f{i % 4}": float(i)}, i) for i in range(100)]
    assert encoder.encode_batch(points) == [encode_point(*p) for p in points]
    assert len(encoder._series) <= 3
    assert len(encoder._fields) <= 3


# ------------------------------------------------------------------ hypothesis

SPECIALS = st.sampled_from(list(' ,="\\=é水'))
TEXT = st.characters(exclude_categories=["Cc", "Cs"])
AMBIGUOUS = re.compile(r"\\(?:[\\, =]|\Z)")


def portable(text: str) -> bool:
    return AMBIGUOUS.search(text) is None


names = st.text(st.one_of(SPECIALS, TEXT), min_size=1, max_size=12).filter(portable)
keys = names.filter(lambda k: not k.startswith("_") and k != "time")
field_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(st.one_of(SPECIALS, st.characters(exclude_categories=["Cs"])), max_size=20).filter(
        lambda s: "\n" not in s and "\r" not in s
    ),
)
timestamps = st.integers(min_value=-(2**62), max_value=2**62)


@given(
    measurement=keys,
    tags=st.dictionaries(keys, names, max_size=5),
    fields=st.dictionaries(keys, field_values, min_size=1, max_size=6),
    ts=timestamps,
)
def test_every_point_round_trips_through_the_reference_parser(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], ts: int
) -> None:
    line = encode_point(measurement, tags, fields, ts)
    assert "\n" not in line
    parsed_measurement, parsed_tags, parsed_fields, parsed_ts = parse_line(line)
    assert parsed_measurement == measurement
    assert parsed_tags == tags
    assert list(parsed_tags) == sorted(tags)
    assert typed(parsed_fields) == typed(fields)
    assert parsed_ts == ts
    assert LineEncoder().encode(measurement, tags, fields, ts) == line


@given(
    measurement=keys,
    tags=st.dictionaries(keys, names, max_size=5),
    ts=st.integers(min_value=-(2**63), max_value=2**63),
    precision=st.sampled_from(list(Precision)),
)
def test_a_series_and_a_timestamp_encode_as_in_a_line(
    measurement: str, tags: dict[str, str], ts: int, precision: Precision
) -> None:
    if abs(ts) > 2**63 - 2:  # outside what InfluxDB stores
        with pytest.raises(LineProtocolError, match=r"^timestamp"):
            encode_point(measurement, tags, {"v": 1.0}, ts, precision=precision)
        with pytest.raises(LineProtocolError, match=r"^timestamp"):
            encode_timestamp(ts, precision)
        return
    line = encode_point(measurement, tags, {"v": 1.0}, ts, precision=precision)
    assert line == f"{encode_series(measurement, tags)} v=1.0 {encode_timestamp(ts, precision)}"


def test_encoding_a_series_or_a_timestamp_refuses_what_a_line_would() -> None:
    with pytest.raises(LineProtocolError, match="tag 's' value"):
        encode_series("m", {"s": "a\n"})
    with pytest.raises(LineProtocolError, match="integer nanoseconds"):
        encode_timestamp(1.5)  # type: ignore[arg-type]


@given(
    measurement=st.text(min_size=0, max_size=8),
    tags=st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
    fields=st.dictionaries(
        st.text(max_size=6),
        st.one_of(st.floats(), st.integers(), st.text(max_size=6), st.none()),
        max_size=3,
    ),
)
def test_any_input_gives_a_parseable_line_or_a_line_protocol_error(
    measurement: str, tags: dict[str, str], fields: dict[str, Any]
) -> None:
    try:
        line = encode_point(measurement, tags, fields, 1)
    except LineProtocolError:
        return
    assert parse_line(line) == (measurement, tags, fields, 1)


# The influxdb-client Point escapes no backslashes in names: keep them out here.
simple_names = st.text(st.sampled_from("abcXYZ019-_. ,=é"), min_size=1, max_size=8).filter(
    lambda s: not s.startswith("_") and s != "time"
)


@given(
    measurement=simple_names,
    tags=st.dictionaries(simple_names, simple_names, max_size=4),
    fields=st.dictionaries(
        simple_names,
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.booleans(),
            st.text(st.sampled_from('ab "\\,= '), max_size=8),
        ),
        min_size=1,
        max_size=4,
    ),
    ts=st.integers(min_value=0, max_value=2**62),
)
def test_lines_mean_what_influxdb_clients_points_mean(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], ts: int
) -> None:
    """The same point through influxdb-client's ``Point`` parses to the same values.

    (``Point`` writes ``12.0`` as ``12``, which is a float too; the strings differ.)
    """
    ours = parse_line(encode_point(measurement, tags, fields, ts))
    point: Point = Point.from_dict(
        {"measurement": measurement, "tags": tags, "fields": fields, "time": ts}
    )
    theirs = parse_line(point.to_line_protocol())  # type: ignore[no-untyped-call]
    assert ours[:2] == theirs[:2]
    assert typed(ours[2]) == typed(theirs[2])
    assert ours[3] == theirs[3]


# ============================================================ the sink, offline


def test_the_sink_validates_its_configuration_without_io() -> None:
    with pytest.raises(SinkConfigError) as caught:
        InfluxSink(
            "ftp://x",
            batch_size=0,
            timeout=-1,
            max_retry_time=math.inf,
            username="u",
        )
    message = str(caught.value)
    for part in ("url 'ftp://x'", "batch_size 0", "timeout -1", "max_retry_time inf", "bucket"):
        assert part in message
    assert "username and password" in message
    assert not caught.value.retryable
    with pytest.raises(SinkConfigError, match="database: required by the v1 write API"):
        InfluxSink("http://localhost:8086", api=WriteApi.V1)
    with pytest.raises(SinkConfigError, match="v2 only"):
        InfluxSink("http://localhost:8086", api=WriteApi.V1, database="d", bucket="b")
    with pytest.raises(SinkConfigError, match="'minutes' is not a valid Precision"):
        InfluxSink("http://localhost:8086", bucket="b", precision="minutes")  # type: ignore[arg-type]
    with pytest.raises(SinkConfigError, match="max_split_requests -1: must be an integer >= 0"):
        InfluxSink("http://localhost:8086", bucket="b", max_split_requests=-1)


def test_influx_sink_is_a_sink() -> None:
    sink: Sink[Iterable[str]] = InfluxSink("http://localhost:8086", bucket="b")
    assert isinstance(sink, Sink)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("1", 1.0),
        ("2.5", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("Sun, 22 Nov 2026 00:00:30 GMT", 30.0),
        ("Sat, 21 Nov 2026 23:00:00 GMT", 0.0),
        ("later", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, datetime(2026, 11, 22, tzinfo=UTC)) == expected


def test_error_messages_of_each_server_are_understood() -> None:
    v3 = json.dumps(
        {
            "error": "partial write of line protocol occurred",
            "data": [{"original_line": "x", "line_number": 2, "error_message": "bad field"}],
        }
    )
    assert error_message(v3) == ("partial write of line protocol occurred: bad field", [2])
    assert error_message("cannot parse line") == ("cannot parse line", [])
    assert error_message("[1, 2]") == ("[1, 2]", [])


# ====================================================== a scripted HTTP server


@dataclass
class Request:
    """One write request as the scripted server received it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    lines: list[str]
    at: float


@dataclass
class Reply:
    """What the script answers: a status, a body, headers, and the lines it stores."""

    status: int = 204
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    stored: Sequence[str] = ()
    delay: float = 0.0


Script = Callable[[int, list[str]], Reply]
"""Answers the n-th write request (from 0), given its lines."""


def ok(n: int, lines: list[str]) -> Reply:
    return Reply(204, stored=lines)


class ScriptedInflux:
    """A real HTTP server on 127.0.0.1 that answers writes as its script says."""

    def __init__(self, script: Script, ping_status: int = 204) -> None:
        self.script = script
        self.ping_status = ping_status
        self.requests: list[Request] = []
        self.stored: list[str] = []
        # Bound now, so the URL is known before the server runs (and refuses until then).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _write(self, request: web.Request) -> web.Response:
        lines = (await request.text()).split("\n")
        n = len(self.requests)
        self.requests.append(
            Request(
                request.path,
                dict(request.query),
                dict(request.headers),
                lines,
                time.monotonic(),
            )
        )
        reply = self.script(n, lines)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        self.stored.extend(reply.stored)
        content_type = "application/json" if reply.body.startswith("{") else "text/plain"
        return web.Response(
            status=reply.status,
            text=reply.body or None,
            headers=reply.headers,
            content_type=content_type if reply.body else None,
        )

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(status=self.ping_status)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ScriptedInflux]:
        app = web.Application()
        app.router.add_post("/api/v2/write", self._write)
        app.router.add_post("/write", self._write)
        app.router.add_get("/ping", self._ping)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.SockSite(runner, self._socket)
        await site.start()
        try:
            yield self
        finally:
            await runner.cleanup()


class FakeTime:
    """An injected monotonic clock and sleep: sleeping advances the clock at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def sink_for(server: ScriptedInflux, fake: FakeTime | None = None, **kwargs: Any) -> InfluxSink:
    options: dict[str, Any] = {"bucket": "urbansense", "seed": 7, "timeout": 5.0}
    if fake is not None:
        options |= {"sleep": fake.sleep, "clock": fake.clock}
    return InfluxSink(server.url, **(options | kwargs))


def lines_of(n: int, measurement: str = "m") -> list[str]:
    return [f"{measurement},s=s{i % 10} v={i}.5 {T0 + i}" for i in range(n)]


def run(scenario: Callable[[], Any]) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))


# ============================================================ the sink, scripted


def test_503_twice_then_204_writes_the_batch_once_and_counts_two_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines = lines_of(100)
    fake = FakeTime()
    server = ScriptedInflux(lambda n, got: Reply(503, "busy") if n < 2 else ok(n, got))

    async def scenario() -> None:
        async with server.running(), sink_for(server, fake, initial_backoff=0.5) as sink:
            assert await sink.write(lines) == (100, 0)
            stats = sink.stats
            assert (stats.points_written, stats.batches, stats.requests) == (100, 1, 3)
            assert stats.retries == 2
            assert "HTTP 503: busy" in (stats.last_error or "")

    with caplog.at_level(logging.WARNING, logger="stream.sinks.influx"):
        run(scenario)
    assert [r.lines for r in server.requests] == [lines] * 3
    assert server.stored == lines
    # one warning for the batch, not one per retry
    assert [r.getMessage() for r in caplog.records] == [
        f"write failed, retrying for up to 60 s: {server.url}/api/v2/write?bucket=urbansense"
        "&precision=ns answered HTTP 503: busy"
    ]
    assert len(fake.sleeps) == 2
    assert 0 <= fake.sleeps[0] < 0.5
    assert 0 <= fake.sleeps[1] < 1.0


def test_429_with_retry_after_seconds_waits_what_the_server_asked() -> None:
    fake = FakeTime()
    server = ScriptedInflux(
        lambda n, got: Reply(429, "slow down", {"Retry-After": "1"}) if n == 0 else ok(n, got)
    )

    async def scenario() -> None:
        async with server.running(), sink_for(server, fake) as sink:
            await sink.write(lines_of(3))

    run(scenario)
    assert fake.sleeps == [1.0]
    assert len(server.stored) == 3


def test_503_with_retry_after_as_an_http_date_is_honoured() -> None:
    fake = FakeTime()

    def script(n: int, got: list[str]) -> Reply:
        if n == 0:
            when = datetime.now(UTC) + timedelta(seconds=3)
            return Reply(503, "", {"Retry-After": format_datetime(when, usegmt=True)})
        return ok(n, got)

    server = ScriptedInflux(script)

    async def scenario() -> None:
        async with server.running(), sink_for(server, fake) as sink:
            await sink.write(lines_of(3))

    run(scenario)
    assert len(fake.sleeps) == 1
    assert 1.5 < fake.sleeps[0] <= 3.0  # the date has whole seconds


def test_a_retry_after_beyond_the_retry_time_raises_retryable_with_it() -> None:
    fake = FakeTime()
    server = ScriptedInflux(lambda n, got: Reply(429, "quota", {"Retry-After": "120"}))

    async def scenario() -> None:
        async with server.running(), sink_for(server, fake, max_retry_time=60) as sink:
            with pytest.raises(SinkError) as caught:
                await sink.write(lines_of(3))
            assert caught.value.retryable
            assert caught.value.retry_after == 120.0
            assert caught.value.status == 429
            assert "quota" in str(caught.value)

    run(scenario)
    assert fake.sleeps == []
    assert len(server.requests) == 1


def test_the_retry_time_is_spent_per_batch_not_per_request() -> None:
    """While a refused batch is being split, its parts share one retry deadline."""
    fake = FakeTime()
    server = ScriptedInflux(lambda n, got: Reply(400, "bad") if n == 0 else Reply(503, "busy"))

    async def scenario() -> None:
        async with server.running(), sink_for(server, fake, max_retry_time=10.0) as sink:
            with pytest.raises(SinkError, match="HTTP 503") as caught:
                await sink.write(lines_of(8))
            assert caught.value.retryable

    run(scenario)
    assert sum(fake.sleeps) <= 10.0
    assert all(len(r.lines) == 4 for r in server.requests[1:])  # the first half only


def test_a_timeout_is_retried() -> None:
    fake = FakeTime()
    server = ScriptedInflux(lambda n, got: Reply(204, stored=got, delay=5.0 if n == 0 else 0.0))

    async def scenario() -> None:
        async with server.running(), sink_for(server, fake, timeout=0.3) as sink:
            assert await sink.write(lines_of(5)) == (5, 0)
            assert sink.stats.retries == 1
            assert "TimeoutError" in (sink.stats.last_error or "")

    run(scenario)
    assert len(server.requests) == 2


def partial_write(bad: Callable[[str], bool], *, hint: bool, keep_good: bool) -> Script:
    """Refuse the lines for which ``bad`` holds, with a 400 as InfluxDB answers it.

    ``hint`` adds InfluxDB 2's ``line`` (1-based number of the first bad line);
    ``keep_good`` stores the good lines of a refused batch, as InfluxDB 1.x and 3 do.
    """

    def script(n: int, got: list[str]) -> Reply:
        wrong = [i for i, line in enumerate(got) if bad(line)]
        good = [line for line in got if not bad(line)]
        if not wrong:
            return ok(n, got)
        first = got[wrong[0]]
        answer: dict[str, Any] = {
            "code": "invalid",
            "message": f"partial write error ({len(good)} written): "
            f"unable to parse '{first}': invalid field format",
        }
        if hint:
            answer["line"] = wrong[0] + 1
        return Reply(400, json.dumps(answer), stored=good if keep_good else ())

    return script


def test_a_partial_write_with_a_line_number_dead_letters_only_the_bad_line() -> None:
    lines = lines_of(10)
    lines[4] = "m,s=s4 v=oops 4"
    dead: list[tuple[str, str]] = []
    server = ScriptedInflux(partial_write(lambda ln: "oops" in ln, hint=True, keep_good=True))

    async def scenario() -> None:
        async with server.running(), sink_for(server, dead_letter=lambda *a: dead.append(a)) as s:
            assert await s.write(lines) == (9, 1)
            assert s.stats.dead_lettered == 1
            assert s.stats.points_written == 9

    run(scenario)
    reason = (
        "partial write error (0 written): unable to parse 'm,s=s4 v=oops 4': invalid field format"
    )
    assert dead == [("m,s=s4 v=oops 4", reason)]  # the server's answer to the line alone
    assert set(server.stored) == set(lines) - {lines[4]}
    # The whole batch, the hinted line alone, then the other nine.
    assert [len(r.lines) for r in server.requests] == [10, 1, 9]


def test_without_a_line_number_bisection_isolates_the_bad_lines() -> None:
    lines = lines_of(64)
    bad = {10, 50}
    for i in bad:
        lines[i] = f"m,s=s0 v=oops {i}"
    dead: list[tuple[str, str]] = []

    async def dead_letter(line: str, reason: str) -> None:
        await asyncio.sleep(0)
        dead.append((line, reason))

    server = ScriptedInflux(partial_write(lambda ln: "oops" in ln, hint=False, keep_good=False))

    async def scenario() -> None:
        async with server.running(), sink_for(server, dead_letter=dead_letter) as sink:
            assert await sink.write(lines) == (62, 2)

    run(scenario)
    assert sorted(line for line, _ in dead) == sorted(lines[i] for i in bad)
    assert all("unable to parse" in reason for _, reason in dead)
    assert sorted(server.stored) == sorted(line for i, line in enumerate(lines) if i not in bad)
    assert len(server.requests) <= 1 + 2 * 2 * 6  # two bad lines, log2(64) levels


def test_the_split_budget_bounds_the_work_and_loses_no_line() -> None:
    lines = lines_of(32)
    for i in range(0, 32, 2):
        lines[i] = f"m,s=s0 v=oops {i}"
    dead: list[tuple[str, str]] = []
    server = ScriptedInflux(partial_write(lambda ln: "oops" in ln, hint=False, keep_good=False))

    async def scenario() -> None:
        async with (
            server.running(),
            sink_for(server, max_split_requests=6, dead_letter=lambda *a: dead.append(a)) as sink,
        ):
            written, dead_lettered = await sink.write(lines)
            assert written + dead_lettered == 32

    run(scenario)
    assert len(server.requests) <= 1 + 6
    dead_lines = [line for line, _ in dead]
    assert sorted(dead_lines + server.stored) == sorted(lines)
    assert all(not line.startswith("m,s=s0 v=oops") for line in server.stored)
    assert any("split budget was spent" in reason for _, reason in dead)


def test_413_splits_the_batch_until_it_fits() -> None:
    def script(n: int, got: list[str]) -> Reply:
        return Reply(413, "request too large") if len(got) > 10 else ok(n, got)

    server = ScriptedInflux(script)

    async def scenario() -> None:
        async with server.running(), sink_for(server, batch_size=40) as sink:
            assert await sink.write(lines_of(100)) == (100, 0)

    run(scenario)
    assert sorted(server.stored) == sorted(lines_of(100))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, '{"code": "unauthorized", "message": "unauthorized access"}'),
        (403, '{"code": "forbidden", "message": "insufficient permissions for write"}'),
        (404, '{"code": "not found", "message": "bucket \\"nope\\" not found"}'),
    ],
)
def test_auth_and_missing_bucket_raise_non_retryable_at_once(status: int, body: str) -> None:
    fake = FakeTime()
    server = ScriptedInflux(lambda n, got: Reply(status, body))

    async def scenario() -> None:
        async with server.running(), sink_for(server, fake) as sink:
            with pytest.raises(SinkError) as caught:
                await sink.write(lines_of(5))
            assert not caught.value.retryable
            assert caught.value.status == status
            assert json.loads(body)["message"] in str(caught.value)
            assert sink.stats.dead_lettered == 0

    run(scenario)
    assert len(server.requests) == 1
    assert fake.sleeps == []


def test_a_refused_connection_is_retried_until_the_retry_time_then_raises_retryable() -> None:
    """Real sleeps: the test takes about ``max_retry_time``."""
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    async def scenario() -> None:
        sink = InfluxSink(
            url, bucket="b", max_retry_time=0.4, initial_backoff=0.02, max_backoff=0.1
        )
        with pytest.raises(SinkError, match="cannot reach"):
            await sink.connect()
        sink._session = aiohttp.ClientSession()  # write without the ping
        try:
            started = time.monotonic()
            with pytest.raises(SinkError) as caught:
                await sink.write(lines_of(5))
            elapsed = time.monotonic() - started
        finally:
            await sink.close()
        assert caught.value.retryable
        assert isinstance(caught.value.__cause__, aiohttp.ClientConnectionError)
        assert "gave up after" in str(caught.value)
        stats = sink.stats
        assert stats.retries >= 2
        assert stats.requests == stats.retries + 1
        assert stats.points_written == 0
        assert elapsed < 0.4 + 2.0

    run(scenario)


def test_lines_holding_newlines_are_dead_lettered_without_being_sent() -> None:
    dead: list[tuple[str, str]] = []
    server = ScriptedInflux(ok)
    lines = ["m v=1.0 1", "m v=2.0 2\nm v=3.0 3", "", "m v=4.0 4"]

    async def scenario() -> None:
        async with server.running(), sink_for(server, dead_letter=lambda *a: dead.append(a)) as s:
            assert await s.write(lines) == (2, 1)

    run(scenario)
    assert server.stored == ["m v=1.0 1", "m v=4.0 4"]
    assert dead == [("m v=2.0 2\nm v=3.0 3", "the line holds a newline")]


def test_large_inputs_are_chunked_into_batches_lazily() -> None:
    server = ScriptedInflux(ok)

    async def scenario() -> None:
        async with server.running(), sink_for(server) as sink:
            await sink.write(lines_of(12_000))
            await sink.write(line for line in lines_of(7))

    run(scenario)
    assert [len(r.lines) for r in server.requests] == [5_000, 5_000, 2_000, 7]


def test_batches_in_flight_together_all_land() -> None:
    server = ScriptedInflux(lambda n, got: Reply(204, stored=got, delay=0.05))

    async def scenario() -> None:
        async with server.running(), sink_for(server, batch_size=100, max_in_flight=4) as sink:
            assert await sink.write(lines_of(1_000)) == (1_000, 0)
            assert sink.stats.batches == 10

    run(scenario)
    assert sorted(server.stored) == sorted(lines_of(1_000))
    starts = sorted(r.at for r in server.requests)
    assert starts[3] - starts[0] < 0.05  # the first four were sent together


def test_a_failure_with_batches_in_flight_raises_the_sink_error_itself() -> None:
    server = ScriptedInflux(lambda n, got: Reply(401, '{"message": "unauthorized access"}'))

    async def scenario() -> None:
        async with server.running(), sink_for(server, batch_size=10, max_in_flight=3) as sink:
            with pytest.raises(SinkError, match="unauthorized access") as caught:
                await sink.write(lines_of(1_000))
            assert not caught.value.retryable

    run(scenario)
    assert len(server.requests) == 3  # the three in flight; no batch started after


def test_close_during_a_write_fails_the_write_as_retryable() -> None:
    server = ScriptedInflux(lambda n, got: Reply(204, stored=got, delay=2.0))

    async def scenario() -> None:
        async with server.running():
            sink = sink_for(server)
            await sink.connect()
            writing = asyncio.create_task(sink.write(lines_of(5)))
            await asyncio.sleep(0.2)
            await sink.close()
            with pytest.raises(SinkError, match="closed during a write") as caught:
                await writing
            assert caught.value.retryable

    run(scenario)


def test_the_v1_endpoint_gets_db_rp_and_precision_and_credentials() -> None:
    server = ScriptedInflux(ok)

    async def scenario() -> None:
        sink = InfluxSink(
            server.url,
            api=WriteApi.V1,
            database="city",
            retention_policy="autogen",
            username="writer",
            password="secret",  # noqa: S106 -- a test server's password
            precision=Precision.US,
        )
        async with server.running(), sink:
            await sink.write(["m v=1.0 1"])

    run(scenario)
    (request,) = server.requests
    assert request.path == "/write"
    assert request.query == {"db": "city", "rp": "autogen", "precision": "u"}
    assert request.headers["Authorization"].startswith("Basic ")


def test_the_v2_endpoint_gets_bucket_org_precision_and_token() -> None:
    server = ScriptedInflux(ok)

    async def scenario() -> None:
        sink = sink_for(server, org="city", token="t0k3n", precision=Precision.MS)  # noqa: S106
        async with server.running(), sink:
            await sink.write(["m v=1.0 1"])

    run(scenario)
    (request,) = server.requests
    assert request.path == "/api/v2/write"
    assert request.query == {"bucket": "urbansense", "org": "city", "precision": "ms"}
    assert request.headers["Authorization"] == "Token t0k3n"
    assert request.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_connect_and_close_keep_their_promises() -> None:
    server = ScriptedInflux(ok)
    refusing = ScriptedInflux(ok, ping_status=401)

    async def scenario() -> None:
        sink = sink_for(server)
        await sink.close()  # before connect: fine
        with pytest.raises(SinkError, match="closed") as caught:
            await sink.write(["m v=1.0 1"])
        assert not caught.value.retryable

        sink = sink_for(server)
        with pytest.raises(SinkError, match="not connected") as caught:
            await sink.write(["m v=1.0 1"])
        assert not caught.value.retryable
        async with server.running():
            await sink.connect()
            await sink.connect()  # again: nothing happens
            await sink.write(["m v=1.0 1"])
            await sink.close()
            await sink.close()

        async with refusing.running():
            with pytest.raises(SinkError, match="HTTP 401") as caught:
                await sink_for(refusing).connect()
            assert not caught.value.retryable

        with pytest.raises(SinkError, match="cannot reach") as caught:
            await sink_for(server).connect()  # the server is gone
        assert caught.value.retryable

    run(scenario)


def test_a_failing_dead_letter_callback_makes_the_write_retryable() -> None:
    server = ScriptedInflux(partial_write(lambda ln: True, hint=False, keep_good=False))

    def broken(line: str, reason: str) -> None:
        raise OSError("dead-letter topic unavailable")

    async def scenario() -> None:
        async with server.running(), sink_for(server, dead_letter=broken) as sink:
            with pytest.raises(SinkError, match="dead-letter callback failed") as caught:
                await sink.write(["m v=oops 1"])
            assert caught.value.retryable

    run(scenario)


# ======================================================== the sink, real servers


@pytest.mark.servers
def test_20000_points_land_in_victoria_metrics_with_their_values(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    measurement = unique("sink")
    sensors = [f"aq-{i:02d}" for i in range(20)]
    start_ms = (time.time_ns() // 1_000_000 // 1000 - 2_000) * 1000  # whole seconds, recent
    points = [
        LinePoint(
            measurement,
            {"sensor_id": sensor, "kind": "pollution"},
            {"pm2_5": s * 1000 + t * 0.25, "count": t},
            (start_ms + t * 1000) * 1_000_000,
        )
        for t in range(1000)
        for s, sensor in enumerate(sensors)
    ]
    lines = LineEncoder(precision=Precision.MS).encode_batch(points)

    async def scenario() -> None:
        sink = InfluxSink(victoria_metrics.url, bucket="urbansense", precision=Precision.MS)
        async with sink:
            assert await sink.write(lines) == (20_000, 0)
            stats = sink.stats
            assert (stats.points_written, stats.batches, stats.retries) == (20_000, 4, 0)

    run(scenario)

    selector = f'{{__name__=~"{measurement}_(pm2_5|count)"}}'
    deadline = time.monotonic() + TIMEOUT
    series: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        victoria_metrics.force_flush()
        series = victoria_metrics.export(selector)
        if len(series) == 40 and sum(len(s["values"]) for s in series) == 40_000:
            break
        time.sleep(0.2)
    assert len(series) == 40
    assert sum(len(s["values"]) for s in series) == 40_000
    for one in series:
        labels = one["metric"]
        assert labels["kind"] == "pollution"
        s = sensors.index(labels["sensor_id"])
        got = dict(zip(one["timestamps"], one["values"], strict=True))
        for t in range(1000):
            expected = s * 1000 + t * 0.25 if labels["__name__"].endswith("pm2_5") else t
            assert got[start_ms + t * 1000] == expected


@pytest.mark.servers
@pytest.mark.parametrize("precision", list(Precision))
def test_each_precision_lands_at_the_same_instant_in_influxdb1(
    influxdb1: InfluxDB1Server, precision: Precision
) -> None:
    db = unique("prec")
    influxdb1.query(f'CREATE DATABASE "{db}"', method="POST")
    ts = 1_700_000_000_123_456_789

    async def scenario() -> None:
        sink = InfluxSink(influxdb1.url, api=WriteApi.V1, database=db, precision=precision)
        async with sink:
            await sink.write([encode_point("m", {}, {"v": 1.0}, ts, precision=precision)])

    run(scenario)
    answer = influxdb1.query('SELECT "v" FROM "m"', db=db, epoch="ns")
    (time_ns, _), *_ = answer["results"][0]["series"][0]["values"]
    assert time_ns == ts // precision.divisor * precision.divisor


@pytest.mark.servers
def test_influxdb1_partial_write_dead_letters_the_conflict_and_keeps_the_rest(
    influxdb1: InfluxDB1Server,
) -> None:
    """InfluxDB 1.x refuses a field type conflict with 400 "partial write" and no line number."""
    db = unique("partial")
    influxdb1.query(f'CREATE DATABASE "{db}"', method="POST")
    lines = [encode_point("air", {"s": f"s{i % 4}"}, {"pm2_5": i + 0.5}, T0 + i) for i in range(99)]
    conflict = encode_point("air", {"s": "s0"}, {"pm2_5": 7}, T0 + 1000)  # an integer
    lines.insert(60, conflict)
    dead: list[tuple[str, str]] = []

    async def scenario() -> None:
        sink = InfluxSink(
            influxdb1.url, api=WriteApi.V1, database=db, dead_letter=lambda *a: dead.append(a)
        )
        async with sink:
            assert await sink.write(lines) == (99, 1)

        missing = InfluxSink(influxdb1.url, api=WriteApi.V1, database=unique("missing"))
        async with missing:
            with pytest.raises(SinkError, match="database not found") as caught:
                await missing.write(lines[:1])
            assert not caught.value.retryable
            assert caught.value.status == 404

    run(scenario)
    assert [line for line, _ in dead] == [conflict]
    assert "field type conflict" in dead[0][1]
    answer = influxdb1.query('SELECT count("pm2_5") FROM "air"', db=db)
    assert answer["results"][0]["series"][0]["values"][0][1] == 99

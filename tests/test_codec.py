"""The codec's contract: every rejection reason, round trips, and no exception but its own."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry import (
    CATALOGUE,
    Batch,
    Codec,
    CodecLimits,
    DecodeError,
    Kind,
    MetricStats,
    Reading,
    RejectReason,
    Semantics,
)
from tests.wire import NOW, batch, dumps, reading

CODEC = Codec(clock=lambda: NOW)


def traffic(**overrides: Any) -> dict[str, Any]:
    metrics = {"vehicle_count": 12, "mean_speed_kmh": 48.5, "occupancy_pct": 9.0}
    return (
        reading(sensor_id="tr-ring-01-l1", kind="traffic", interval_s=60.0, metrics=metrics)
        | overrides
    )


# (id, payload, reason, field, a fragment of the reported value)
CASES: list[tuple[str, bytes, RejectReason, str, str]] = [
    (
        "truncated json",
        b'{"gateway_id": "gw-1", "readings": [',
        RejectReason.MALFORMED_JSON,
        "",
        "",
    ),
    ("not utf-8", b'{"gateway_id": "\xff\xfe"}', RejectReason.MALFORMED_JSON, "", ""),
    ("empty payload", b"", RejectReason.MALFORMED_JSON, "", ""),
    (
        "oversize",
        dumps(batch(reading(sensor_id="x" * 60)) | {"pad": "y" * 300_000}),
        RejectReason.OVERSIZE,
        "",
        "bytes",
    ),
    ("array, not object", b"[1, 2]", RejectReason.WRONG_TYPE, "", "[1, 2]"),
    (
        "seq in quotes",
        dumps(batch(reading(seq="1"))),
        RejectReason.WRONG_TYPE,
        "readings.0.seq",
        "'1'",
    ),
    (
        "number in quotes",
        dumps(batch(reading(metrics={"pm2_5": "35"}))),
        RejectReason.WRONG_TYPE,
        "readings.0.metrics.pm2_5",
        "'35'",
    ),
    (
        "boolean as number",
        dumps(batch(reading(metrics={"pm2_5": True}))),
        RejectReason.WRONG_TYPE,
        "readings.0.metrics.pm2_5",
        "True",
    ),
    (
        "unix timestamp",
        dumps(batch(reading(ts=1_763_798_400))),
        RejectReason.WRONG_TYPE,
        "readings.0.ts",
        "1763798400",
    ),
    (
        "missing ts",
        dumps(batch({k: v for k, v in reading().items() if k != "ts"})),
        RejectReason.MISSING_FIELD,
        "readings.0.ts",
        "",
    ),
    (
        "unknown field",
        dumps(batch(reading(unit="ug"))),
        RejectReason.UNKNOWN_FIELD,
        "readings.0.unit",
        "'ug'",
    ),
    (
        "schema version 2",
        dumps(batch(schema_version=2)),
        RejectReason.UNSUPPORTED_SCHEMA,
        "schema_version",
        "2",
    ),
    (
        "NaN",
        dumps(batch(reading(metrics={"pm2_5": float("nan")}))),
        RejectReason.NOT_FINITE,
        "readings.0.metrics.pm2_5",
        "nan",
    ),
    (
        "Infinity",
        dumps(batch(reading(metrics={"pm10": float("inf")}))),
        RejectReason.NOT_FINITE,
        "readings.0.metrics.pm10",
        "inf",
    ),
    (
        "-Infinity interval",
        dumps(batch(traffic(interval_s=float("-inf")))),
        RejectReason.NOT_FINITE,
        "readings.0.interval_s",
        "-inf",
    ),
    (
        "overflowing literal",
        b'{"gateway_id": "gw-1", "readings": [{"sensor_id": "a", "kind": "pollution",'
        b' "ts": "2026-11-22T07:00:00Z", "seq": 1, "metrics": {"o3": 1e400}}]}',
        RejectReason.NOT_FINITE,
        "readings.0.metrics.o3",
        "inf",
    ),
    (
        "negative PM2.5",
        dumps(batch(reading(metrics={"pm2_5": -1.0}))),
        RejectReason.OUT_OF_RANGE,
        "readings.0.metrics.pm2_5",
        "-1.0",
    ),
    (
        "humidity over 100",
        dumps(batch(reading(kind="ambient", metrics={"humidity_pct": 130.0}))),
        RejectReason.OUT_OF_RANGE,
        "readings.0.metrics.humidity_pct",
        "130.0",
    ),
    (
        "more vehicles than a lane can carry",
        dumps(batch(traffic(metrics={"vehicle_count": 500}))),
        RejectReason.OUT_OF_RANGE,
        "readings.0.metrics.vehicle_count",
        "500",
    ),
    (
        "negative seq",
        dumps(batch(reading(seq=-1))),
        RejectReason.OUT_OF_RANGE,
        "readings.0.seq",
        "-1",
    ),
    (
        "fractional vehicles",
        dumps(batch(traffic(metrics={"vehicle_count": 3.5}))),
        RejectReason.NOT_INTEGER,
        "readings.0.metrics.vehicle_count",
        "3.5",
    ),
    (
        "unknown kind",
        dumps(batch(reading(kind="noise"))),
        RejectReason.UNKNOWN_KIND,
        "readings.0.kind",
        "'noise'",
    ),
    (
        "unknown metric",
        dumps(batch(reading(metrics={"pm1": 3.0}))),
        RejectReason.UNKNOWN_METRIC,
        "readings.0.metrics.pm1",
        "3.0",
    ),
    (
        "metric of another kind",
        dumps(batch(reading(metrics={"power_w": 3.0}))),
        RejectReason.UNKNOWN_METRIC,
        "readings.0.metrics.power_w",
        "3.0",
    ),
    (
        "counts without interval",
        dumps(batch(traffic(interval_s=None))),
        RejectReason.MISSING_INTERVAL,
        "readings.0.interval_s",
        "",
    ),
    (
        "naive timestamp",
        dumps(batch(reading(ts="2026-11-22T07:59:00"))),
        RejectReason.NAIVE_TIMESTAMP,
        "readings.0.ts",
        "'2026-11-22T07:59:00'",
    ),
    (
        "not a timestamp",
        dumps(batch(reading(ts="yesterday"))),
        RejectReason.INVALID_TIMESTAMP,
        "readings.0.ts",
        "'yesterday'",
    ),
    (
        "an hour in the future",
        dumps(batch(reading(ts="2026-11-22T09:00:00Z"))),
        RejectReason.FUTURE_TIMESTAMP,
        "readings.0.ts",
        "2026-11-22T09:00:00+00:00",
    ),
    (
        "future in another zone",
        dumps(batch(reading(ts="2026-11-22T16:30:00+08:00"))),
        RejectReason.FUTURE_TIMESTAMP,
        "readings.0.ts",
        "2026-11-22T08:30:00+00:00",
    ),
    (
        "duplicate (sensor, seq)",
        dumps(batch(reading(seq=4), reading(seq=5), reading(seq=4))),
        RejectReason.DUPLICATE_READING,
        "readings.2.seq",
        "",
    ),
    (
        "'/' in sensor id",
        dumps(batch(reading(sensor_id="aq/01"))),
        RejectReason.INVALID_ID,
        "readings.0.sensor_id",
        "'aq/01'",
    ),
    (
        "'+' in gateway id",
        dumps(batch(gateway_id="gw+1")),
        RejectReason.INVALID_ID,
        "gateway_id",
        "'gw+1'",
    ),
    (
        "'#' in gateway id",
        dumps(batch(gateway_id="gw#")),
        RejectReason.INVALID_ID,
        "gateway_id",
        "'gw#'",
    ),
    (
        "NUL in sensor id",
        dumps(batch(reading(sensor_id="aq\x00"))),
        RejectReason.INVALID_ID,
        "readings.0.sensor_id",
        "'aq\\x00'",
    ),
    (
        "over-long id",
        dumps(batch(gateway_id="g" * 65)),
        RejectReason.INVALID_ID,
        "gateway_id",
        "ggg",
    ),
    (
        "stats not bracketing the mean",
        dumps(batch(reading(stats={"pm2_5": {"min": 36, "max": 40, "count": 12}}))),
        RejectReason.INVALID_VALUE,
        "readings.0.stats.pm2_5",
        "35.0",
    ),
    (
        "stats min above max",
        dumps(batch(reading(stats={"pm2_5": {"min": 41, "max": 30, "count": 2}}))),
        RejectReason.INVALID_VALUE,
        "readings.0.stats.pm2_5.min",
        "41",
    ),
    (
        "stats of an absent metric",
        dumps(batch(reading(stats={"no2": {"min": 1, "max": 2, "count": 1}}))),
        RejectReason.UNKNOWN_METRIC,
        "readings.0.stats.no2",
        "'no2'",
    ),
    ("no readings", dumps(batch(readings=[])), RejectReason.INVALID_VALUE, "readings", "[]"),
    (
        "unknown quality flag",
        dumps(batch(reading(quality=["great"]))),
        RejectReason.INVALID_VALUE,
        "readings.0.quality.0",
        "'great'",
    ),
]


@pytest.mark.parametrize(
    ("payload", "reason", "field", "value"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_each_rejection_names_its_reason_field_and_value(
    payload: bytes, reason: RejectReason, field: str, value: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        CODEC.decode_batch(payload)
    error = caught.value
    assert (error.reason, error.field) == (reason, field), error.problems
    assert value in error.value
    assert str(error).startswith(f"{reason}")
    if field:
        assert field in str(error)


def test_the_cases_cover_every_reject_reason() -> None:
    assert {case[2] for case in CASES} == set(RejectReason)


def test_every_problem_of_a_payload_is_reported() -> None:
    payload = dumps(batch(reading(seq=-1, metrics={"pm2_5": -5.0}), gateway_id="gw/1"))
    with pytest.raises(DecodeError) as caught:
        CODEC.decode_batch(payload)
    found = {(p.reason, p.field) for p in caught.value.problems}
    assert found == {
        (RejectReason.INVALID_ID, "gateway_id"),
        (RejectReason.OUT_OF_RANGE, "readings.0.seq"),
        (RejectReason.OUT_OF_RANGE, "readings.0.metrics.pm2_5"),
    }
    assert "(and 2 more)" in str(caught.value)


def test_out_of_range_message_says_range_and_unit() -> None:
    with pytest.raises(DecodeError) as caught:
        CODEC.decode_batch(dumps(batch(reading(metrics={"co": 250.0}))))
    assert "outside the physical range [0, 200] mg/m³ of pollution.co" in str(caught.value)


def test_too_many_readings_is_oversize_even_under_the_byte_limit() -> None:
    roomy = Codec(limits=CodecLimits(max_payload_bytes=4 * 1024 * 1024), clock=lambda: NOW)
    with pytest.raises(DecodeError) as caught:
        roomy.decode_batch(dumps(batch(*[reading(seq=i) for i in range(10_001)])))
    assert (caught.value.reason, caught.value.field) == (RejectReason.OVERSIZE, "readings")


def test_skew_within_limit_is_accepted_and_the_limit_is_configurable() -> None:
    payload = dumps(batch(reading(ts="2026-11-22T08:04:00Z")))
    assert CODEC.decode_batch(payload).readings[0].ts == NOW + timedelta(minutes=4)
    strict = Codec(limits=CodecLimits(max_future_skew=timedelta(minutes=1)), clock=lambda: NOW)
    with pytest.raises(DecodeError) as caught:
        strict.decode_batch(payload)
    assert caught.value.reason is RejectReason.FUTURE_TIMESTAMP


def test_timestamps_in_other_zones_become_utc() -> None:
    decoded = CODEC.decode_batch(dumps(batch(reading(ts="2026-11-22T15:59:00+08:00"))))
    assert decoded.readings[0].ts == datetime(2026, 11, 22, 7, 59, tzinfo=UTC)
    assert decoded.readings[0].ts.tzinfo is UTC


def test_encoding_refuses_what_receivers_would_refuse_for_size() -> None:
    small = Codec(limits=CodecLimits(max_payload_bytes=200), clock=lambda: NOW)
    big = CODEC.decode_batch(dumps(batch(*[reading(seq=i) for i in range(10)])))
    with pytest.raises(DecodeError) as caught:
        small.encode(big)
    assert caught.value.reason is RejectReason.OVERSIZE


def test_non_bytes_payload_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="payload must be bytes"):
        CODEC.decode_batch("{}")  # type: ignore[arg-type]


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_payload_bytes must be positive, got 0"):
        CodecLimits(max_payload_bytes=0)


# ------------------------------------------------------------------ properties

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]
)
times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis adds the zone
    max_value=datetime(2026, 11, 21),  # noqa: DTZ001
    timezones=zones,
)


@st.composite
def readings(draw: st.DrawFn, sensor_id: str, seq: int) -> Reading:
    kind = draw(st.sampled_from(list(Kind)))
    specs = CATALOGUE[kind]
    names = draw(st.lists(st.sampled_from(list(specs)), min_size=1, unique=True))
    interval_s = draw(st.sampled_from([1.0, 5.0, 60.0, 300.0]))
    metrics: dict[str, float] = {}
    for name in names:
        spec = specs[name]
        low, high = spec.valid_range(interval_s)
        if spec.integer:
            metrics[name] = float(draw(st.integers(int(low), int(high))))
        else:
            metrics[name] = draw(st.floats(low, high, allow_nan=False, allow_infinity=False))
    counts = any(specs[n].semantics is Semantics.INTERVAL_COUNT for n in names)
    stats = {
        name: MetricStats(
            min=draw(st.floats(specs[name].low, value, allow_nan=False)),
            max=draw(st.floats(value, specs[name].high, allow_nan=False)),
            count=draw(st.integers(1, 720)),
        )
        for name, value in metrics.items()
        if specs[name].semantics is Semantics.GAUGE and draw(st.booleans())
    }
    return Reading(
        stats=stats,
        sensor_id=sensor_id,
        kind=kind,
        ts=draw(times),
        seq=seq,
        interval_s=interval_s if counts or draw(st.booleans()) else None,
        metrics=metrics,
    )


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    keys = draw(
        st.lists(st.tuples(ids, st.integers(0, 2**63 - 1)), min_size=1, max_size=8, unique=True)
    )
    return Batch(
        gateway_id=draw(ids),
        sent_at=draw(st.none() | times),
        readings=tuple(draw(readings(sensor_id, seq)) for sensor_id, seq in keys),
    )


@given(batches())
@settings(max_examples=300)
def test_encode_decode_round_trips(original: Batch) -> None:
    assert CODEC.decode_batch(CODEC.encode(original)) == original


def _decode_or_reject(payload: bytes) -> None:
    """Decode; a DecodeError is the one acceptable failure (it always holds a problem)."""
    with contextlib.suppress(DecodeError):
        CODEC.decode_batch(payload)


@given(st.binary(max_size=2048))
@settings(max_examples=500)
def test_arbitrary_bytes_raise_only_decode_error(payload: bytes) -> None:
    _decode_or_reject(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=300)
def test_arbitrary_json_raises_only_decode_error(value: Any) -> None:
    _decode_or_reject(json.dumps(value).encode())


@given(batches(), st.data())
@settings(max_examples=200)
def test_mutated_valid_payloads_raise_only_decode_error(
    original: Batch, data: st.DataObject
) -> None:
    payload = bytearray(CODEC.encode(original))
    for _ in range(data.draw(st.integers(1, 4))):
        payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    _decode_or_reject(bytes(payload))


@given(batches(), st.sampled_from(sorted({*"+#/\x00"})))
def test_ids_with_topic_wildcards_or_separators_never_decode(original: Batch, bad: str) -> None:
    data = json.loads(CODEC.encode(original))
    data["gateway_id"] = original.gateway_id + bad
    with pytest.raises(DecodeError) as caught:
        CODEC.decode_batch(json.dumps(data).encode())
    assert caught.value.reason is RejectReason.INVALID_ID

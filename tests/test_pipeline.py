"""The stream's pure core: dedupe, event time, rejections, anomaly points and state.

The input is the example city simulated in process (:class:`simulators.engine.City`),
its readings grouped into envelopes per gateway as the edge agents would publish them
(a few readings each), and fed to :class:`stream.pipeline.Pipeline` in batches of
envelopes as the Faust agent would. The lines that come out are read back with the
line-protocol parser of ``tests/test_schema.py`` and held against the schema.

Small hand-made runs of the lakeside air-quality stations show the rest: a resend,
a reading behind the watermark, a sensor the registry does not know, and a worker
taking over a partition from the stored state.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from simulators.engine import City
from simulators.scenario import parse_scenario
from stream.pipeline import Pipeline, PipelineOutput
from stream.schema import reading_point, sensor_tags
from stream.sinks.lineprotocol import LineEncoder, Precision
from telemetry import Batch, GatewayState, GatewayStatus, Kind, Reading
from telemetry.registry import Registry, load_example_registry
from tests.test_schema import check_line, influx_type, parse_line

REGISTRY: Registry = load_example_registry()
GATEWAY_OF = {sensor.id: sensor.gateway for sensor in REGISTRY.sensors}
TAGS = sensor_tags(REGISTRY)
LATENESS = timedelta(minutes=10)
START = datetime(2024, 11, 8, tzinfo=UTC)
PER_ENVELOPE = 4
ENVELOPES_PER_BATCH = 7

PIER = "aq-pier-pollution"
NORTH_BANK = "aq-north-bank-pollution"
LIBRARY = "aq-library-pollution"
LAKESIDE = (PIER, NORTH_BANK, LIBRARY)

CITY = """
version: 1
name: a morning in the example city
seed: 5
start: 2024-11-08T06:00:00+08:00
duration: {duration}
"""

# A clock that runs half an hour ahead for ten minutes drags the watermark forward:
# the rest of the city is behind it until real time catches up.
FAST_CLOCK = """
faults:
  - {kind: clock_skew, sensor: aq-library-ambient, offset: 30m,
     start: 2024-11-08T07:00:00+08:00, duration: 10m}
"""


# ---------------------------------------------------------------- helpers


def simulate(text: str) -> list[Reading]:
    return list(City(parse_scenario(text)).run())


def envelopes(readings: Iterable[Reading], per: int = PER_ENVELOPE) -> list[Batch]:
    """The readings as each gateway publishes them: ``per`` of its readings an envelope."""
    pending: dict[str, list[Reading]] = defaultdict(list)
    out: list[Batch] = []
    for reading in readings:
        gateway = GATEWAY_OF[reading.sensor_id]
        queue = pending[gateway]
        queue.append(reading)
        if len(queue) == per:
            out.append(Batch(gateway_id=gateway, readings=tuple(queue)))
            queue.clear()
    out.extend(Batch(gateway_id=g, readings=tuple(q)) for g, q in pending.items() if q)
    return out


def batches(envs: Sequence[Batch], size: int = ENVELOPES_PER_BATCH) -> list[list[Batch]]:
    return [list(envs[i : i + size]) for i in range(0, len(envs), size)]


def feed(pipeline: Pipeline, envs: Sequence[Batch], size: int = ENVELOPES_PER_BATCH) -> list[str]:
    """Process the envelopes in batches of ``size``, as the agent does; all the lines."""
    lines: list[str] = []
    for batch in batches(envs, size):
        lines += pipeline.process(batch).lines
    return lines


def readings_of(envs: Iterable[Batch]) -> list[Reading]:
    return [r for envelope in envs for r in envelope.readings]


def ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def pm(sensor: str, seq: int, minute: float, value: float = 30.0) -> Reading:
    """A pollution reading of PM2.5 only, ``minute`` minutes after START."""
    return Reading(
        sensor_id=sensor,
        kind=Kind.POLLUTION,
        seq=seq,
        ts=START + timedelta(minutes=minute),
        metrics={"pm2_5": value},
    )


def envelope(*readings: Reading) -> Batch:
    return Batch(gateway_id=GATEWAY_OF[readings[0].sensor_id], readings=readings)


def lakeside_minute(i: int, library: float | None = None) -> list[Batch]:
    """One minute of the three lakeside stations: pier and north bank share a gateway."""
    return [
        envelope(pm(PIER, i, i, 30.0 + i % 3), pm(NORTH_BANK, i, i, 32.0 + i % 2)),
        envelope(pm(LIBRARY, i, i, 31.0 + (i % 4) / 2 if library is None else library)),
    ]


def warmed_lakeside(minutes: int = 40) -> Pipeline:
    """A pipeline that has seen ``minutes`` quiet minutes of the lakeside stations."""
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    for i in range(minutes):
        pipeline.process(lakeside_minute(i))
    return pipeline


def split(data: bytes) -> tuple[int, int, bytes]:
    """A state's version, last seq and the rest (detectors and last values)."""
    return data[0], int.from_bytes(data[1:9], "little", signed=True), data[9:]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def quiet() -> list[Batch]:
    """Three hours of the example city, nothing going wrong: about 5000 readings."""
    return envelopes(simulate(CITY.format(duration="3h")))


@pytest.fixture(scope="module")
def fast_clock() -> list[Batch]:
    """Two hours of the city with one station's clock running ahead for a while."""
    return envelopes(simulate(CITY.format(duration="2h") + FAST_CLOCK))


# ---------------------------------------------------------------- every reading


def on_time(readings: Iterable[Reading], lateness: timedelta) -> list[Reading]:
    """The readings not behind the newest event time seen before them, less the lateness."""
    newest: datetime | None = None
    kept: list[Reading] = []
    for reading in readings:
        if newest is None or reading.ts >= newest - lateness:
            kept.append(reading)
        newest = reading.ts if newest is None else max(newest, reading.ts)
    return kept


@pytest.mark.parametrize("scenario", ["quiet", "fast_clock"])
def test_every_reading_gives_its_raw_point_and_every_on_time_one_an_anomaly_point(
    scenario: str, request: pytest.FixtureRequest
) -> None:
    envs: list[Batch] = request.getfixturevalue(scenario)
    readings = readings_of(envs)
    expected_on_time = on_time(readings, LATENESS)
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    lines = feed(pipeline, envs)

    parsed = [parse_line(line) for line in lines]
    for p in parsed:
        check_line(p)
    raw = [(line, p) for line, p in zip(lines, parsed, strict=True) if p.measurement != "anomaly"]
    anomalies = [p for p in parsed if p.measurement == "anomaly"]

    # One raw point per reading, exactly the point the schema's builder makes.
    encoder = LineEncoder(Precision.MS)
    expected_raw = encoder.encode_batch(reading_point(r, TAGS[r.sensor_id]) for r in readings)
    assert Counter(line for line, _ in raw) == Counter(expected_raw)
    by_key = {(p.tags["sensor"], p.fields["seq"]): p for _, p in raw}
    assert len(by_key) == len(readings)
    for r in readings:
        p = by_key[r.sensor_id, r.seq]
        assert p.measurement == r.kind.value
        assert p.ts == ms(r.ts)
        assert {k: v for k, v in p.fields.items() if k != "seq"} == r.metrics
        assert p.tags == {
            "sensor": r.sensor_id,
            "site": TAGS[r.sensor_id].site,
            "district": TAGS[r.sensor_id].district,
            "gateway": GATEWAY_OF[r.sensor_id],
            **TAGS[r.sensor_id].extra,
        }

    # One anomaly point per on-time reading, with a score for each of its metrics.
    assert Counter((p.tags["sensor"], p.ts) for p in anomalies) == Counter(
        (r.sensor_id, ms(r.ts)) for r in expected_on_time
    )
    metrics_of = {(r.sensor_id, ms(r.ts)): r.metrics for r in expected_on_time}
    for p in anomalies:
        metrics = metrics_of[p.tags["sensor"], p.ts]
        assert {k for k in p.fields if k.startswith("score_")} == {f"score_{m}" for m in metrics}
        assert p.fields["metric"] in metrics
        score = p.fields["score"]
        assert isinstance(score, float)
        assert 0.0 <= score <= 1.0
        assert score == p.fields[f"score_{p.fields['metric']}"]

    late = len(readings) - len(expected_on_time)
    assert pipeline.stats.late == late
    assert (late == 0) == (scenario == "quiet")
    assert pipeline.stats.readings == len(readings)
    assert pipeline.stats.envelopes == len(envs)
    assert pipeline.stats.points == len(lines) == len(readings) + len(expected_on_time)
    assert pipeline.stats.duplicates == pipeline.stats.rejected == 0


# ---------------------------------------------------------------- dedupe


def test_a_resent_batch_gives_no_new_lines_and_counts_as_duplicates(quiet: list[Batch]) -> None:
    envs = quiet[:70]
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    first = feed(pipeline, envs)
    assert first
    before = {s.id: pipeline.snapshot(s.id) for s in REGISTRY.sensors}
    stats_before = (pipeline.stats.points, pipeline.stats.late)

    again: list[PipelineOutput] = [pipeline.process(batch) for batch in batches(envs)]

    assert [line for out in again for line in out.lines] == []
    assert all(not out.touched and not out.rejected for out in again)
    assert pipeline.stats.duplicates == len(readings_of(envs))
    assert (pipeline.stats.points, pipeline.stats.late) == stats_before
    assert {s.id: pipeline.snapshot(s.id) for s in REGISTRY.sensors} == before


def test_an_overlapping_resend_writes_only_what_is_new(quiet: list[Batch]) -> None:
    """A gateway's store-and-forward sends again what it was not sure had arrived."""
    straight = Pipeline(REGISTRY, lateness=LATENESS)
    feed(straight, quiet[:40])
    expected = straight.process(quiet[40:60]).lines

    resent = Pipeline(REGISTRY, lateness=LATENESS)
    feed(resent, quiet[:40])
    got = resent.process(quiet[25:60])
    assert got.lines == expected
    assert resent.stats.duplicates == len(readings_of(quiet[25:40]))
    assert got.touched == {r.sensor_id for r in readings_of(quiet[40:60])}


def test_a_reading_with_a_lower_seq_than_the_last_is_dropped() -> None:
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    assert len(pipeline.process([envelope(pm(PIER, 5, 0))]).lines) == 2
    assert pipeline.process([envelope(pm(PIER, 3, 1, 31.0))]).lines == []
    assert pipeline.process([envelope(pm(PIER, 5, 2, 32.0))]).lines == []  # the same seq
    assert pipeline.stats.duplicates == 2
    # In one envelope, in the wrong order: the first is taken, the older one dropped.
    out = pipeline.process([envelope(pm(PIER, 8, 3), pm(PIER, 7, 4))])
    assert [parse_line(line).fields.get("seq") for line in out.lines] == [8, None]
    assert pipeline.stats.duplicates == 3
    assert split(pipeline.snapshot(PIER))[1] == 8
    # Other sensors keep their own sequence numbers.
    assert len(pipeline.process([envelope(pm(NORTH_BANK, 0, 5))]).lines) == 2


# ---------------------------------------------------------------- event time


def test_a_reading_behind_the_watermark_is_written_raw_but_changes_no_detector() -> None:
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    for i in range(30):
        pipeline.process([envelope(pm(PIER, i, i, 30.0 + i % 3))])
    # The newest event time is minute 29, so the watermark is minute 19.
    assert pipeline.watermark == START + timedelta(minutes=19)
    before = split(pipeline.snapshot(PIER))

    out = pipeline.process([envelope(pm(PIER, 30, 18.5, 400.0))])

    assert len(out.lines) == 1
    raw = parse_line(out.lines[0])
    assert (raw.measurement, raw.fields, raw.ts) == (
        "pollution",
        {"pm2_5": 400.0, "seq": 30},
        ms(START + timedelta(minutes=18.5)),
    )
    assert out.touched == {PIER}
    assert pipeline.stats.late == 1
    after = split(pipeline.snapshot(PIER))
    assert after[2] == before[2]  # detectors and last values: untouched
    assert after[1] == 30  # but the seq is taken, so a resend of it is a duplicate
    assert pipeline.process([envelope(pm(PIER, 30, 18.5, 400.0))]).lines == []
    assert pipeline.stats.duplicates == 1
    assert pipeline.watermark == START + timedelta(minutes=19)


def test_a_reading_exactly_at_the_watermark_is_on_time() -> None:
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    pipeline.process([envelope(pm(PIER, 0, 20))])
    out = pipeline.process([envelope(pm(NORTH_BANK, 0, 10))])
    assert [parse_line(line).measurement for line in out.lines] == ["pollution", "anomaly"]
    assert pipeline.stats.late == 0


# ---------------------------------------------------------------- rejections


def test_an_unknown_sensor_and_a_kind_the_registry_contradicts_are_rejected() -> None:
    loaded: list[str] = []

    def load(sensor: str) -> bytes | None:
        loaded.append(sensor)
        return None

    pipeline = Pipeline(REGISTRY, lateness=LATENESS, load=load)
    stranger = pm("aq-nowhere-pollution", 0, 0)
    impostor = Reading(
        sensor_id=PIER, kind=Kind.AMBIENT, seq=0, ts=START, metrics={"temperature_c": 12.0}
    )
    good = pm(NORTH_BANK, 0, 0)
    batch = Batch(gateway_id="gw-lakeside-01", readings=(stranger, impostor, good))

    out = pipeline.process([batch])

    assert [(r.gateway_id, r.reading) for r in out.rejected] == [
        ("gw-lakeside-01", stranger),
        ("gw-lakeside-01", impostor),
    ]
    assert "'aq-nowhere-pollution'" in out.rejected[0].reason
    assert "unknown" in out.rejected[0].reason
    assert f"{PIER!r}" in out.rejected[1].reason
    assert "pollution" in out.rejected[1].reason
    assert "ambient" in out.rejected[1].reason
    assert {parse_line(line).tags["sensor"] for line in out.lines} == {NORTH_BANK}
    assert len(out.lines) == 2
    assert out.touched == {NORTH_BANK}
    assert pipeline.stats.rejected == 2
    assert "aq-nowhere-pollution" not in loaded
    # A rejected reading takes no sequence number: the real one with the same seq is new.
    assert len(pipeline.process([envelope(pm(PIER, 0, 1))]).lines) == 2


# ---------------------------------------------------------------- state


def test_a_worker_taking_over_a_partition_writes_what_the_last_one_would_have(
    quiet: list[Batch],
) -> None:
    half = len(quiet) // 2
    first, second = quiet[:half], quiet[half:]
    a = Pipeline(REGISTRY, lateness=LATENESS)
    touched: set[str] = set()
    for batch in batches(first):
        touched |= a.process(batch).touched
    assert touched == set(GATEWAY_OF)
    store = {sensor: a.snapshot(sensor) for sensor in touched}

    loaded: list[str] = []

    def load(sensor: str) -> bytes | None:
        loaded.append(sensor)
        return store.get(sensor)

    b = Pipeline(REGISTRY, lateness=LATENESS, load=load)
    # The last batch before the handover comes again (its offsets were not committed).
    replay = b.process(batches(first)[-1])
    assert replay.lines == []
    assert b.stats.duplicates == len(readings_of(batches(first)[-1]))

    a_lines = feed(a, second)
    b_lines = feed(b, second)
    assert len(a_lines) == 2 * len(readings_of(second))
    assert b_lines == a_lines
    assert Counter(loaded) == Counter(set(loaded))  # each sensor asked for once
    assert set(loaded) == set(GATEWAY_OF)
    for sensor in GATEWAY_OF:
        assert b.snapshot(sensor) == a.snapshot(sensor), sensor


def test_after_a_takeover_a_station_is_still_scored_against_its_neighbours() -> None:
    a = warmed_lakeside()
    store = {sensor: a.snapshot(sensor) for sensor in LAKESIDE}
    b = Pipeline(REGISTRY, lateness=LATENESS, load=store.get)
    # A local source next to the library station, alone in the first batch after it.
    smoke = lakeside_minute(40, library=300.0)[1]
    a_lines = a.process([smoke]).lines
    score = parse_line(a_lines[1]).fields["score"]
    assert isinstance(score, float)
    assert score > 0.5
    assert b.process([smoke]).lines == a_lines


def test_after_a_takeover_a_late_reading_is_still_late() -> None:
    a = warmed_lakeside(30)
    store = {sensor: a.snapshot(sensor) for sensor in LAKESIDE}
    b = Pipeline(REGISTRY, lateness=LATENESS, load=store.get)
    stale = [envelope(pm(PIER, 30, 5, 120.0))]  # 24 minutes behind the newest reading
    a_lines = a.process(stale).lines
    assert len(a_lines) == 1
    assert a.stats.late == 1
    assert b.process(stale).lines == a_lines


def test_a_snapshot_restores_to_an_equal_state() -> None:
    a = warmed_lakeside(30)
    b = Pipeline(REGISTRY, lateness=LATENESS)
    for sensor in LAKESIDE:
        b.restore(sensor, a.snapshot(sensor))
    for sensor in LAKESIDE:
        assert b.snapshot(sensor) == a.snapshot(sensor)
    # A sensor never seen has a state too, with no last seq.
    assert split(a.snapshot("aq-drum-tower-pollution"))[:2] == (1, -1)


def _wrong_version(good: bytes) -> bytes:
    return bytes([2]) + good[1:]


def _too_long(good: bytes) -> bytes:
    return good + b"\0"


def _one_byte_short(good: bytes) -> bytes:
    return good[:-1]


def _header_only(good: bytes) -> bytes:
    return good[:9]


def _shorter_than_a_header(good: bytes) -> bytes:
    return good[:5]


def _empty(good: bytes) -> bytes:
    return b""


@pytest.mark.parametrize(
    "damage",
    [
        _wrong_version,
        _too_long,
        _one_byte_short,
        _header_only,
        _shorter_than_a_header,
        _empty,
    ],
)
def test_restoring_bytes_of_the_wrong_version_or_length_names_the_sensor(
    damage: Callable[[bytes], bytes],
) -> None:
    bad = damage(warmed_lakeside(5).snapshot(PIER))
    with pytest.raises(ValueError, match=f"sensor {PIER!r}"):
        Pipeline(REGISTRY).restore(PIER, bad)


def test_a_refused_restore_leaves_the_state_as_it_was() -> None:
    pipeline = warmed_lakeside(30)
    before = pipeline.snapshot(PIER)
    other = Pipeline(REGISTRY).snapshot(PIER)  # a fresh sensor's state, plus a stray byte
    with pytest.raises(ValueError, match=f"sensor {PIER!r}"):
        pipeline.restore(PIER, other + b"\0")
    assert pipeline.snapshot(PIER) == before


# ---------------------------------------------------------------- gateways


def test_status_lines_place_a_known_gateway_and_mark_an_unknown_one() -> None:
    pipeline = Pipeline(REGISTRY)
    statuses = [
        GatewayStatus(
            gateway_id="gw-oldtown-01",
            state=GatewayState.ONLINE,
            ts=START,
            agent_version="0.1.0",
            buffer_depth=12,
            sent_total=3400,
            uptime_s=3600,
        ),
        GatewayStatus(
            gateway_id="gw-elsewhere-09",
            state=GatewayState.OFFLINE,
            ts=START + timedelta(seconds=1),
            agent_version="0.1.0",
        ),
    ]
    known, unknown = (parse_line(line) for line in pipeline.status_lines(statuses))
    for p in (known, unknown):
        assert check_line(p).name == "gateway"
        assert {influx_type(v) for k, v in p.fields.items() if k != "uptime_s"} == {"integer"}
    assert known.tags == {
        "gateway": "gw-oldtown-01",
        "site": "st-aq-drum-tower",
        "district": "old-town",
    }
    assert known.fields == {
        "online": 1,
        "buffer_depth": 12,
        "sent_total": 3400,
        "dropped_total": 0,
        "sensor_errors_total": 0,
        "uptime_s": 3600.0,
    }
    assert known.ts == ms(START)
    assert unknown.tags == {"gateway": "gw-elsewhere-09", "site": "unknown", "district": "unknown"}
    assert unknown.fields["online"] == 0
    assert unknown.ts == ms(START) + 1000
    assert pipeline.status_lines([]) == []

"""The stream's pure core: dedupe, event time, rejections, anomaly points, indices and state.

The input is the example city simulated in process (:class:`simulators.engine.City`),
its readings grouped into envelopes per gateway as the edge agents would publish them
(a few readings each), and fed to :class:`stream.pipeline.Pipeline` in batches of
envelopes as the Faust agent would. The lines that come out are read back with the
line-protocol parser of ``tests/test_schema.py`` and held against the schema.

A busy Friday morning (an accident on the East Ring, a crowd overfilling Lakeside Park,
a meter's register reset, a fire next to the library station) is held against the
simulator's ground truth and against the index functions applied to the readings
directly: windowed aggregates, hourly AQI, congestion, occupancy tiers, consumption and
hotspots.

Small hand-made runs of the lakeside air-quality stations show the rest: a resend,
a reading behind the watermark, a sensor the registry does not know, and a worker
taking over a partition from the stored state.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from rules.engine import RuleEngine
from rules.load import load_default_rules, parse_rules
from simulators.engine import City, TruthEntry
from simulators.scenario import parse_scenario
from stream.aggregate import HOUR, MINUTE, window_end
from stream.indices.aqi import hourly_aqi
from stream.indices.scenic import tier_of
from stream.pipeline import SEQ_WINDOW, Pipeline, PipelineOutput
from stream.schema import reading_point, sensor_tags
from stream.sinks.lineprotocol import LineEncoder, Precision
from telemetry import Batch, GatewayState, GatewayStatus, Kind, Reading
from telemetry.registry import (
    Registry,
    example_registry_path,
    load_example_registry,
    parse_registry,
)
from tests.test_schema import Parsed, check_line, influx_type, parse_line

REGISTRY: Registry = load_example_registry()
KINDS = {kind.value for kind in Kind}
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


def sensors(keys: Iterable[str]) -> set[str]:
    """The sensor ids among state keys."""
    return {key for key in keys if key in GATEWAY_OF}


def stored(pipeline: Pipeline) -> dict[str, bytes]:
    """Every key's state, as a table would hold it."""
    return {key: pipeline.snapshot(key) for key in pipeline.state_keys()}


def split(data: bytes) -> tuple[int, int, bytes]:
    """A state's version, last seq and the rest (detectors and last values)."""
    return data[0], int.from_bytes(data[1:9], "little", signed=True), data[9:]


def unseen_and_detectors(data: bytes) -> tuple[int, bytes]:
    """A sensor state's unseen-seq bits, and what follows them (detectors, last values)."""
    size = int.from_bytes(data[17:19], "little")
    return int.from_bytes(data[19 : 19 + size], "little"), data[19 + size :]


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
    """The readings not behind the newest event time seen before them in their district,
    less the lateness (each district keeps its own event time)."""
    newest: dict[str, datetime] = {}
    kept: list[Reading] = []
    for reading in readings:
        district = TAGS[reading.sensor_id].district
        seen = newest.get(district)
        if seen is None or reading.ts >= seen - lateness:
            kept.append(reading)
        newest[district] = reading.ts if seen is None else max(seen, reading.ts)
    return kept


@pytest.mark.parametrize("scenario", ["quiet", "fast_clock"])
def test_every_reading_gives_its_raw_point_and_every_on_time_one_an_anomaly_point(
    scenario: str, request: pytest.FixtureRequest
) -> None:
    envs: list[Batch] = request.getfixturevalue(scenario)
    readings = readings_of(envs)
    # the pipeline takes each batch's readings in event-time order
    expected_on_time = on_time(
        [r for b in batches(envs) for r in sorted(readings_of(b), key=lambda r: r.ts)], LATENESS
    )
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    lines = feed(pipeline, envs)

    parsed = [parse_line(line) for line in lines]
    for p in parsed:
        check_line(p)
    raw = [(line, p) for line, p in zip(lines, parsed, strict=True) if p.measurement in KINDS]
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
    assert len(raw) + len(anomalies) == len(readings) + len(expected_on_time)
    assert pipeline.stats.points == len(lines)
    assert pipeline.stats.duplicates == pipeline.stats.rejected == 0


# ---------------------------------------------------------------- dedupe


def test_a_resent_batch_gives_no_new_lines_and_counts_as_duplicates(quiet: list[Batch]) -> None:
    envs = quiet[:70]
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    first = feed(pipeline, envs)
    assert first
    before = {key: pipeline.snapshot(key) for key in pipeline.state_keys()}
    stats_before = (pipeline.stats.points, pipeline.stats.late)

    again: list[PipelineOutput] = [pipeline.process(batch) for batch in batches(envs)]

    assert [line for out in again for line in out.lines] == []
    assert all(not out.touched and not out.rejected for out in again)
    assert pipeline.stats.duplicates == len(readings_of(envs))
    assert (pipeline.stats.points, pipeline.stats.late) == stats_before
    assert {key: pipeline.snapshot(key) for key in pipeline.state_keys()} == before


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
    assert sensors(got.touched) == {r.sensor_id for r in readings_of(quiet[40:60])}


def test_a_reading_with_a_seq_already_seen_is_dropped() -> None:
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    assert len(pipeline.process([envelope(pm(PIER, 5, 0))]).lines) == 2
    assert pipeline.process([envelope(pm(PIER, 5, 2, 32.0))]).lines == []  # the same seq
    assert len(pipeline.process([envelope(pm(PIER, 6, 3))]).lines) == 2
    assert pipeline.process([envelope(pm(PIER, 5, 2, 32.0))]).lines == []  # seen, below
    assert pipeline.stats.duplicates == 2
    assert split(pipeline.snapshot(PIER))[1] == 6
    # Other sensors keep their own sequence numbers.
    assert len(pipeline.process([envelope(pm(NORTH_BANK, 0, 5))]).lines) == 2


def test_an_unseen_reading_below_the_last_seq_is_written_raw_once_and_changes_no_state() -> None:
    """Records Faust skipped, read again after newer ones of the same sensors."""
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    for seq in (0, 1, 2, 5, 6):  # 3 and 4 skipped
        pipeline.process([envelope(pm(PIER, seq, seq / 10))])
    unseen, detectors = unseen_and_detectors(pipeline.snapshot(PIER))
    assert unseen == 0b110  # 4 and 3, below the last seq 6

    out = pipeline.process([envelope(pm(PIER, 4, 0.4, 400.0), pm(PIER, 3, 0.3, 300.0))])

    assert [parse_line(line).fields for line in out.lines] == [
        {"pm2_5": 400.0, "seq": 4},
        {"pm2_5": 300.0, "seq": 3},
    ]  # raw, in arrival order, no anomaly scores: the detectors have moved on
    assert (pipeline.stats.behind, pipeline.stats.late, pipeline.stats.duplicates) == (2, 2, 0)
    assert split(pipeline.snapshot(PIER))[1] == 6
    assert unseen_and_detectors(pipeline.snapshot(PIER)) == (0, detectors)
    assert out.touched == {PIER}
    # Once seen, they are resends like any other.
    assert pipeline.process([envelope(pm(PIER, 3, 0.3), pm(PIER, 4, 0.4))]).lines == []
    assert pipeline.stats.duplicates == 2


def test_the_unseen_seqs_survive_a_restore_and_go_out_of_the_window() -> None:
    first = Pipeline(REGISTRY, lateness=LATENESS)
    first.process([envelope(pm(PIER, 100, 0))])  # a sensor's first reading: nothing seen below
    first.process([envelope(pm(PIER, 103, 1))])
    second = Pipeline(REGISTRY, lateness=LATENESS)
    second.restore(PIER, first.snapshot(PIER))

    out = second.process([envelope(pm(PIER, seq, 0.5)) for seq in (102, 101, 99, 0)])

    assert [parse_line(line).fields["seq"] for line in out.lines] == [102, 101, 99, 0]
    assert second.process([envelope(pm(PIER, 102, 0.5))]).lines == []
    second.process([envelope(pm(PIER, 103 + SEQ_WINDOW, 2))])
    assert second.process([envelope(pm(PIER, 98, 0.5))]).lines == []  # too far below to tell
    assert second.stats.duplicates == 2
    assert second.snapshot(PIER) == first_restored(second.snapshot(PIER))


def first_restored(state: bytes) -> bytes:
    """A state snapshotted again after a restore into a new pipeline."""
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    pipeline.restore(PIER, state)
    return pipeline.snapshot(PIER)


def test_a_state_of_version_1_restores_with_no_unseen_seqs() -> None:
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    pipeline.process([envelope(pm(PIER, 5, 0))])
    state = pipeline.snapshot(PIER)
    assert (state[0], unseen_and_detectors(state)[0]) == (2, 0b11111)  # seqs 4 to 0
    old = bytes([1]) + state[1:17] + unseen_and_detectors(state)[1]

    restored = Pipeline(REGISTRY, lateness=LATENESS)
    restored.restore(PIER, old)

    assert restored.process([envelope(pm(PIER, 4, 0))]).lines == []


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


def test_a_batch_with_one_gateways_backlog_before_anothers_finds_neither_late() -> None:
    """A backlog drained a partition at a time: gw-lakeside-01's 30 minutes, then -02's.

    In arrival order the library's first 20 minutes would be more than the lateness
    behind the pier's newest; in event-time order none is.
    """
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    pier = [envelope(pm(PIER, i, i)) for i in range(30)]
    library = [envelope(pm(LIBRARY, i, i)) for i in range(30)]
    out = pipeline.process([*pier, *library])
    assert pipeline.stats.late == 0
    anomaly_sensors = Counter(
        parse_line(line).tags["sensor"] for line in out.lines if line.startswith("anomaly,")
    )
    assert anomaly_sensors == {PIER: 30, LIBRARY: 30}  # every reading scored: on time


def test_a_reading_exactly_at_the_watermark_is_on_time() -> None:
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    pipeline.process([envelope(pm(PIER, 0, 20))])
    out = pipeline.process([envelope(pm(NORTH_BANK, 0, 10))])
    assert [parse_line(line).measurement for line in out.lines] == ["pollution", "anomaly"]
    assert pipeline.stats.late == 0


DRUM_TOWER = "aq-drum-tower-pollution"  # old-town; the lakeside stations are elsewhere


def agg_1m_ends(lines: Iterable[str], sensor: str) -> list[int]:
    """The ends (ms) of a sensor's closed one-minute windows among the lines."""
    return [
        p.ts
        for p in map(parse_line, lines)
        if p.measurement == "agg_1m" and p.tags.get("sensor") == sensor
    ]


def test_each_district_keeps_its_own_event_time() -> None:
    """A worker draining a backlog reads one district ahead of another: neither is late."""
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    ahead = pipeline.process([envelope(pm(PIER, i, i)) for i in range(60)])  # lakeside: 1 h
    assert pipeline.watermark_of("lakeside") == START + timedelta(minutes=49)
    assert pipeline.watermark_of("old-town") is None
    assert agg_1m_ends(ahead.lines, PIER)  # lakeside's own minutes close

    behind = pipeline.process([envelope(pm(DRUM_TOWER, i, i)) for i in range(15)])

    assert pipeline.stats.late == 0  # old-town's first quarter hour is on time
    assert pipeline.watermark_of("old-town") == START + timedelta(minutes=4)
    assert pipeline.watermark == START + timedelta(minutes=49)  # the newest district's
    # Old-town's windows close by its own time: the minutes ending before its watermark.
    assert agg_1m_ends(behind.lines, DRUM_TOWER) == [
        ms(START + timedelta(minutes=m)) for m in range(4)
    ]
    assert agg_1m_ends(behind.lines, PIER) == []


def test_a_silent_district_follows_the_newest_watermark_so_its_windows_close() -> None:
    pipeline = Pipeline(REGISTRY, lateness=LATENESS, idle_after=timedelta(seconds=60))
    pipeline.process([envelope(pm(DRUM_TOWER, 0, 0.5))], now=1000.0)  # then it falls silent
    pipeline.process([envelope(pm(PIER, i, i)) for i in range(20)], now=1030.0)
    assert pipeline.watermark_of("old-town") == START - timedelta(minutes=9.5)  # not idle yet

    out = pipeline.process([envelope(pm(PIER, 20, 20))], now=1061.0)  # 61 s of silence

    assert pipeline.watermark_of("old-town") == START + timedelta(minutes=10)
    assert agg_1m_ends(out.lines, DRUM_TOWER) == [ms(START + timedelta(minutes=1))]
    # Without a clock (a replay), event time alone decides: old-town stays put.
    replay = Pipeline(REGISTRY, lateness=LATENESS, idle_after=timedelta(seconds=60))
    replay.process([envelope(pm(DRUM_TOWER, 0, 0.5))])
    replay.process([envelope(pm(PIER, i, i)) for i in range(21)])
    assert replay.watermark_of("old-town") == START - timedelta(minutes=9.5)


def test_a_district_keeps_its_watermark_in_its_state_and_gets_it_back() -> None:
    first = Pipeline(REGISTRY, lateness=LATENESS)
    first.process([envelope(pm(PIER, i, i)) for i in range(30)])
    first.process([envelope(pm(DRUM_TOWER, 0, 5))])
    second = Pipeline(REGISTRY, lateness=LATENESS, load=stored(first).get)
    second.process([envelope(pm(DRUM_TOWER, 1, 6))])  # old-town only: its keys are loaded
    assert second.watermark_of("old-town") == START - timedelta(minutes=4)
    assert second.watermark_of("lakeside") is None  # not loaded: not its readings


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
    assert out.touched == {NORTH_BANK, "site/st-aq-north-bank"}
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
    assert sensors(touched) == set(GATEWAY_OF)
    store = {key: a.snapshot(key) for key in touched}

    loaded: list[str] = []

    def load(key: str) -> bytes | None:
        loaded.append(key)
        return store.get(key)

    b = Pipeline(REGISTRY, lateness=LATENESS, load=load)
    # The last batch before the handover comes again (its offsets were not committed).
    replay = b.process(batches(first)[-1])
    assert replay.lines == []
    assert b.stats.duplicates == len(readings_of(batches(first)[-1]))

    a_lines = feed(a, second)
    b_lines = feed(b, second)
    raw_and_scores = [line for line in a_lines if line.split(",", 1)[0] in {*KINDS, "anomaly"}]
    assert len(raw_and_scores) == 2 * len(readings_of(second))
    assert b_lines == a_lines
    # Each key is asked for at most twice: once as a neighbour's, and once more when its
    # own readings arrive (it may have changed in between on the worker that owned it).
    assert max(Counter(loaded).values()) <= 2
    assert set(loaded) == set(b.state_keys())
    assert stored(b) == stored(a)


def test_after_a_takeover_a_station_is_still_scored_against_its_neighbours() -> None:
    a = warmed_lakeside()
    b = Pipeline(REGISTRY, lateness=LATENESS, load=stored(a).get)
    # A local source next to the library station, alone in the first batch after it.
    smoke = lakeside_minute(40, library=300.0)[1]
    a_lines = a.process([smoke]).lines
    score = parse_line(a_lines[1]).fields["score"]
    assert isinstance(score, float)
    assert score > 0.5
    assert b.process([smoke]).lines == a_lines


def test_after_a_takeover_a_late_reading_is_still_late() -> None:
    a = warmed_lakeside(30)
    b = Pipeline(REGISTRY, lateness=LATENESS, load=stored(a).get)
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
    assert split(a.snapshot("aq-drum-tower-pollution"))[:2] == (2, -1)
    # All keys at once (what a step stores) give what each gives alone.
    keys = [*LAKESIDE, *a.state_keys()[-3:], "aq-drum-tower-pollution"]
    assert a.snapshots(keys) == {key: a.snapshot(key) for key in keys}


def _wrong_version(good: bytes) -> bytes:
    return bytes([good[0] + 1]) + good[1:]  # the next version, whatever this one is


def _too_long(good: bytes) -> bytes:
    return good + b"\0"


def _one_byte_short(good: bytes) -> bytes:
    return good[:-1]


def _unseen_past_the_window(good: bytes) -> bytes:
    return good[:17] + (SEQ_WINDOW // 8 + 1).to_bytes(2, "little") + good[19:]


def _unseen_cut_short(good: bytes) -> bytes:
    return good[:17] + (3).to_bytes(2, "little") + b"\1"


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
        _unseen_past_the_window,
        _unseen_cut_short,
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


# ---------------------------------------------------------------- a busy morning

BUSY_START = datetime(2024, 11, 7, 22, 0, tzinfo=UTC)  # Friday 06:00 in Beijing
ACCIDENT = (BUSY_START + timedelta(minutes=90), BUSY_START + timedelta(minutes=135))
FIRE = (BUSY_START + timedelta(minutes=120), BUSY_START + timedelta(minutes=210))
RESET = BUSY_START + timedelta(minutes=75)
BUSY = """
version: 1
name: a busy Friday morning in the example city
seed: 7
start: 2024-11-08T06:00:00+08:00
duration: 4h30m
incidents:
  - {kind: traffic_accident, segment: seg-ring-east-k3, direction: northbound,
     start: 2024-11-08T07:30:00+08:00, duration: 45m, capacity_remaining: 0.25}
  - {kind: crowd_surge, area: lakeside-park, start: 2024-11-08T06:00:00+08:00,
     duration: 3h, peak_pct: 105, ramp: 30m}
  - {kind: local_source, sensor: aq-library-pollution, start: 2024-11-08T08:00:00+08:00,
     duration: 90m, factor: 6}
faults:
  - {kind: counter_reset, sensor: em-lakeview-mall-main, start: 2024-11-08T07:15:00+08:00}
"""


@dataclass(frozen=True)
class Run:
    """A busy morning through one pipeline, and what a table held at a handover midway.

    Attributes:
        readings: every reading, in the order the simulator gave them.
        truth: the simulator's ground truth.
        envs: the readings as envelopes.
        points: every line written, parsed.
        handover: how many batches came before the handover.
        store: each key's state as the agent would have stored it by then.
        after: the lines written after the handover.
        pipeline: the pipeline, after the whole morning.
    """

    readings: list[Reading]
    truth: list[TruthEntry]
    envs: list[Batch]
    points: list[Parsed]
    handover: int
    store: dict[str, bytes]
    after: list[str]
    pipeline: Pipeline


@pytest.fixture(scope="module")
def busy() -> Run:
    """Four and a half hours of the busy morning: about 7500 readings."""
    city = City(parse_scenario(BUSY))
    readings = list(city.run())
    envs = envelopes(readings)
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    steps = batches(envs)
    handover = len(steps) // 2
    store: dict[str, bytes] = {}
    lines: list[str] = []
    after: list[str] = []
    for i, batch in enumerate(steps):
        out = pipeline.process(batch)
        lines += out.lines
        if i < handover:
            store.update((key, pipeline.snapshot(key)) for key in out.touched)
        else:
            after += out.lines
    return Run(
        readings,
        city.truth,
        envs,
        [parse_line(line) for line in lines],
        handover,
        store,
        after,
        pipeline,
    )


def of(points: Iterable[Parsed], measurement: str, **tags: str) -> list[Parsed]:
    """The points of a measurement whose tags include ``tags``, in the order written."""
    return [
        p
        for p in points
        if p.measurement == measurement and all(p.tags.get(k) == v for k, v in tags.items())
    ]


def at(p: Parsed) -> datetime:
    return datetime.fromtimestamp(p.ts / 1000, UTC)


def closed(end: int, pipeline: Pipeline) -> bool:
    """Whether a window ending at ``end`` (epoch s) is behind the pipeline's watermark."""
    assert pipeline.watermark is not None
    return end < pipeline.watermark.timestamp()


def number(p: Parsed, name: str) -> float:
    value = p.fields[name]
    assert isinstance(value, int | float), (name, value)
    return float(value)


def test_every_line_of_a_busy_morning_keeps_to_the_schema(busy: Run) -> None:
    assert busy.pipeline.stats.late == busy.pipeline.stats.rejected == 0
    for p in busy.points:
        check_line(p)
    tags = Counter(
        (p.measurement, p.tags.get("scope", ""), tuple(sorted(p.tags)))
        for p in busy.points
        if p.measurement not in KINDS | {"anomaly"}
    )
    agg = ("district", "kind", "metric", "scope", "site")
    assert {key[:2]: key[2] for key in tags} == {
        ("agg_1m", "sensor"): tuple(sorted((*agg, "sensor"))),
        ("agg_1m", "site"): agg,
        ("agg_1h", "sensor"): tuple(sorted((*agg, "sensor"))),
        ("agg_1h", "site"): agg,
        ("aqi", "station"): ("district", "scope", "sensor", "site", "standard"),
        ("aqi", "district"): ("district", "scope", "standard"),
        ("traffic_index", "segment"): ("direction", "district", "road_class", "scope", "segment"),
        ("traffic_index", "district"): ("district", "scope"),
        ("scenic", ""): ("area", "district"),
        ("energy_use", ""): ("building", "district", "sensor", "site"),
        ("hotspot", ""): ("district", "kind", "site"),
    }
    assert len(tags) == len({key[:2] for key in tags})  # one tag set per measurement and scope


def _windows(
    readings: Iterable[Reading],
) -> dict[tuple[str, str, str, str, int], list[tuple[float, float, float]]]:
    """Per (size, scope, sensor or site, kind.metric, end): each reading's value, min, max."""
    site_of = {s.id: s.site for s in REGISTRY.sensors}
    out: dict[tuple[str, str, str, str, int], list[tuple[float, float, float]]] = defaultdict(list)
    for r in readings:
        for name, value in r.metrics.items():
            stats = r.stats.get(name)
            sample = (value, stats.min, stats.max) if stats else (value, value, value)
            for size in (MINUTE, HOUR):
                end = window_end(r.ts, size)
                metric = f"{r.kind.value}.{name}"
                out[size.name, "sensor", r.sensor_id, metric, end].append(sample)
                out[size.name, "site", site_of[r.sensor_id], metric, end].append(sample)
    return out


def test_aggregates_count_every_reading_of_their_window(busy: Run) -> None:
    expected = {
        key: samples
        for key, samples in _windows(busy.readings).items()
        if closed(key[-1], busy.pipeline)
    }
    got: dict[tuple[str, str, str, str, int], Parsed] = {}
    for p in busy.points:
        if p.measurement.startswith("agg_"):
            who = p.tags["sensor"] if p.tags["scope"] == "sensor" else p.tags["site"]
            key = (
                p.measurement[4:],
                p.tags["scope"],
                who,
                f"{p.tags['kind']}.{p.tags['metric']}",
                p.ts // 1000,
            )
            assert key not in got, key  # each window once
            got[key] = p
    assert set(got) == set(expected)
    assert {key[:2] for key in got} == {
        (size, scope) for size in ("1m", "1h") for scope in ("sensor", "site")
    }
    for key, samples in expected.items():
        p = got[key]
        values = [v for v, _, _ in samples]
        assert p.fields["count"] == len(samples), key
        assert number(p, "sum") == pytest.approx(math.fsum(values), rel=1e-12, abs=1e-9), key
        assert number(p, "mean") == pytest.approx(statistics.fmean(values), rel=1e-12), key
        assert p.fields["min"] == min(low for _, low, _ in samples), key
        assert p.fields["max"] == max(high for _, _, high in samples), key
    # A lane's vehicles per hour: the hourly sum of its one-minute counts.
    hourly = [
        p
        for key, p in got.items()
        if key[:2] == ("1h", "sensor") and key[3] == "traffic.vehicle_count"
    ]
    assert hourly
    assert all(p.fields["count"] == 60 for p in hourly)


def _hour_means(readings: Iterable[Reading]) -> dict[tuple[str, int], dict[str, float]]:
    values: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in readings:
        if r.kind is Kind.POLLUTION:
            for name, value in r.metrics.items():
                values[r.sensor_id, window_end(r.ts, HOUR)][name].append(value)
    return {key: {m: statistics.fmean(v) for m, v in by.items()} for key, by in values.items()}


def test_every_station_gets_the_hj633_aqi_of_its_hours_means_every_hour(busy: Run) -> None:
    means = {
        key: hour
        for key, hour in _hour_means(busy.readings).items()
        if closed(key[1], busy.pipeline)
    }
    stations = of(busy.points, "aqi", scope="station")
    assert len(means) == len(stations) == 4 * 4  # four stations, four hours
    worst: dict[tuple[str, int], int] = defaultdict(int)
    for p in stations:
        end = p.ts // 1000
        assert end % 3600 == 0
        expected = hourly_aqi(means[p.tags["sensor"], end])
        assert expected.aqi is not None
        assert expected.level is not None
        assert p.fields["aqi"] == expected.aqi
        assert p.fields["level"] == expected.level.number
        assert p.fields["primary"] == expected.primary_names
        assert {k: v for k, v in p.fields.items() if k.startswith("iaqi_")} == {
            f"iaqi_{pollutant.value}": index for pollutant, index in expected.iaqi.items()
        }
        assert p.tags["standard"] == "hj633"
        district = REGISTRY.site(p.tags["site"]).district
        assert p.tags["district"] == district
        worst[district, end] = max(worst[district, end], expected.aqi)
    districts = of(busy.points, "aqi", scope="district")
    assert {(p.tags["district"], p.ts // 1000): p.fields["aqi"] for p in districts} == worst
    assert {p.fields["stations"] for p in of(districts, "aqi", district="lakeside")} == {3}


def test_an_hour_needs_45_minutes_of_a_pollutant_and_so2_above_800_is_left_out() -> None:
    """HJ 663's validity rule, and HJ 633's SO2 note (no 24-hour mean is kept)."""

    def minute(i: int, **metrics: float) -> list[Batch]:
        reading = Reading(
            sensor_id=PIER,
            kind=Kind.POLLUTION,
            seq=i,
            ts=START + timedelta(minutes=i),
            interval_s=60.0,
            metrics=metrics,
            stats={},
        )
        return [envelope(reading)]

    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    lines: list[str] = []
    for i in range(1, 191):
        if i <= 60:  # the first hour: PM2.5 all of it, NO2 its last 40 minutes only
            metrics = {"pm2_5": 80.0, **({"no2": 300.0} if i > 20 else {})}
        elif i <= 120:  # the second: SO2 above 800 µg/m³
            metrics = {"pm2_5": 20.0, "so2": 900.0}
        else:
            metrics = {"pm2_5": 20.0}
        lines += pipeline.process(minute(i, **metrics)).lines
    first, second = of([parse_line(line) for line in lines], "aqi", scope="station")
    assert at(first) == START + timedelta(hours=1)
    assert first.fields == {"aqi": 107, "level": 3, "primary": "细颗粒物(PM2.5)", "iaqi_pm2_5": 107}
    assert at(second) == START + timedelta(hours=2)
    assert {k: v for k, v in second.fields.items() if k.startswith("iaqi_")} == {"iaqi_pm2_5": 29}


def test_an_accident_drives_its_segments_tpi_up_and_its_districts_with_it(busy: Run) -> None:
    start, end = ACCIDENT
    ring = "seg-ring-east-k3"
    north = of(busy.points, "traffic_index", segment=ring, direction="northbound")
    south = of(busy.points, "traffic_index", segment=ring, direction="southbound")
    district = of(busy.points, "traffic_index", scope="district", district="lakeside")
    minutes = {p.ts for p in north}
    assert len(minutes) == len(north)  # one point a minute
    assert {p.ts for p in district} == minutes

    def tpi(points: list[Parsed], since: datetime, until: datetime) -> list[float]:
        return [number(p, "tpi") for p in points if since < at(p) <= until]

    before = start - timedelta(minutes=30)
    blocked = start + timedelta(minutes=5)  # the queue has reached the detectors
    reopening = end - timedelta(minutes=2)  # the lanes reopen over two minutes
    assert max(tpi(north, before, start)) < 4.0  # smooth or basically smooth
    assert min(tpi(north, blocked, reopening)) >= 8.0  # severely congested
    assert {p.fields["grade"] for p in north if blocked < at(p) <= reopening} == {5}
    assert max(tpi(south, blocked, end)) < 4.0  # the other direction flows
    assert statistics.fmean(tpi(district, blocked, end)) > 2 + statistics.fmean(
        tpi(district, before, start)
    )
    cleared = next(e for e in busy.truth if e.kind == "traffic_accident").end
    assert max(tpi(north, cleared + timedelta(minutes=5), cleared + timedelta(minutes=30))) < 4.0


def test_scenic_tiers_cross_when_the_ground_truth_says(busy: Run) -> None:
    park = of(busy.points, "scenic", area="lakeside-park")
    assert park
    for p in park:
        assert number(p, "occupancy") >= 0
        assert p.fields["tier"] == tier_of(number(p, "occupancy_pct"))
    end = BUSY_START + timedelta(hours=4, minutes=30)
    crossings = [e for e in busy.truth if e.kind.startswith("occupancy_over_")]
    assert {e.kind for e in crossings} == {f"occupancy_over_{t}pct" for t in (80, 90, 100)}
    cleared = 0
    for entry in crossings:
        tier = int(entry.kind.removeprefix("occupancy_over_").removesuffix("pct"))
        reached = next(at(p) for p in park if number(p, "tier") >= tier)
        assert abs(reached - entry.start) <= timedelta(minutes=3), entry
        if entry.end < end:
            left = next(at(p) for p in park if at(p) > reached and number(p, "tier") < tier)
            assert abs(left - entry.end) <= timedelta(minutes=3), entry
            cleared += 1
    assert cleared >= 1  # the surge ebbs below 100 % within the morning


def test_consumption_is_never_negative_and_a_counter_reset_is_named(busy: Run) -> None:
    uses = of(busy.points, "energy_use")
    assert {p.tags["sensor"] for p in uses} == {s.id for s in REGISTRY.sensors_of_kind(Kind.ENERGY)}
    assert all(number(p, "consumption_kwh") >= 0 for p in uses)
    registers: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for r in busy.readings:
        if "energy_kwh" in r.metrics:
            registers[r.sensor_id].append((r.ts, r.metrics["energy_kwh"]))
    for sensor, values in registers.items():
        mine = of(uses, "energy_use", sensor=sensor)
        events = Counter(p.fields["event"] for p in mine)
        total = math.fsum(number(p, "consumption_kwh") for p in mine)
        if sensor == "em-lakeview-mall-main":
            [reset] = [p for p in mine if p.fields["event"] == "reset"]
            assert abs(at(reset) - RESET) <= timedelta(minutes=2)
            assert events == {"first": 1, "reset": 1, "normal": len(mine) - 2}
            i = next(i for i, (ts, _) in enumerate(values) if ts == at(reset))
            expected = values[i - 1][1] - values[0][1] + values[-1][1]
        else:
            assert events == {"first": 1, "normal": len(mine) - 1}, sensor
            expected = values[-1][1] - values[0][1]
        assert total == pytest.approx(expected, rel=1e-9), sensor
        assert len(mine) == len(values)


def test_hotspots_name_the_station_next_to_a_fire_every_five_minutes(busy: Run) -> None:
    spots = of(busy.points, "hotspot")
    assert spots
    assert all(p.ts % 300_000 == 0 for p in spots)
    assert {p.tags["kind"] for p in spots} == {"pollution"}  # too few buildings for peers
    start, end = FIRE
    marks = range(int((start + timedelta(minutes=15)).timestamp()), int(end.timestamp()) + 1, 300)
    top = {p.ts // 1000: p.tags["site"] for p in spots if p.fields["rank"] == 1}
    assert all(top.get(mark) == "st-aq-library" for mark in marks), top
    for p in spots:
        assert number(p, "score") >= 2.0
        assert p.fields["metric"] == "pollution.pm2_5"


def test_a_worker_taking_over_mid_morning_continues_every_index_identically(busy: Run) -> None:
    loaded: list[str] = []

    def load(key: str) -> bytes | None:
        loaded.append(key)
        return busy.store.get(key)

    assert {k.split("/")[0] for k in busy.store if "/" in k} == {
        "site",
        "segment",
        "area",
        "building",
    }
    b = Pipeline(REGISTRY, lateness=LATENESS, load=load)
    steps = batches(busy.envs)
    assert b.process(steps[busy.handover - 1]).lines == []  # the uncommitted batch again
    lines = [line for batch in steps[busy.handover :] for line in b.process(batch).lines]
    assert lines == busy.after
    assert max(Counter(loaded).values()) <= 2  # as a neighbour's, then its own
    assert stored(b) == stored(busy.pipeline)


def test_a_reading_later_than_the_lateness_bound_changes_no_aggregate() -> None:
    pipeline = warmed_lakeside(30)  # the watermark is at minute 19
    site = "site/st-aq-pier"
    before = pipeline.snapshot(site)

    too_late = pipeline.process([envelope(pm(PIER, 30, 18.5, 400.0))])
    assert [parse_line(line).measurement for line in too_late.lines] == ["pollution"]
    assert too_late.touched == {PIER}
    assert pipeline.snapshot(site) == before

    # Within the bound, a late reading still counts in its (still open) window.
    in_time = pipeline.process([envelope(pm(PIER, 31, 24.5, 100.0))])
    assert site in in_time.touched
    lines = [
        parse_line(line)
        for i in range(32, 40)
        for line in pipeline.process([envelope(pm(PIER, i, i - 2))]).lines
    ]
    pier = {p.ts: p for p in of(lines, "agg_1m", sensor=PIER, metric="pm2_5")}
    assert sorted(pier) == [ms(START + timedelta(minutes=m)) for m in range(19, 27)]
    window = pier[ms(START + timedelta(minutes=25))]
    assert (window.fields["count"], window.fields["max"]) == (2, 100.0)
    missed = pier[ms(START + timedelta(minutes=19))]  # where the reading at 18.5 belonged
    assert (missed.fields["count"], missed.fields["max"]) == (1, 30.0 + 19 % 3)
    assert all(p.fields["count"] == 1 for p in pier.values() if p is not window)


@pytest.mark.parametrize(
    "key",
    [
        "site/st-tr-ring-east",
        "segment/seg-ring-east-k3/northbound",
        "area/lakeside-park",
        "building/bld-lakeview-mall",
    ],
)
@pytest.mark.parametrize("damage", [_wrong_version, _too_long, _one_byte_short, _empty])
def test_a_shared_key_restores_exactly_and_refuses_damaged_bytes_by_name(
    key: str, damage: Callable[[bytes], bytes], busy: Run
) -> None:
    good = busy.store[key]
    pipeline = Pipeline(REGISTRY, lateness=LATENESS)
    pipeline.restore(key, good)
    assert pipeline.snapshot(key) == good
    bad = good[:8] + damage(good[8:])  # past the watermark: the state itself
    with pytest.raises(ValueError, match=f"key {key!r}"):
        pipeline.restore(key, bad)
    assert pipeline.snapshot(key) == good
    with pytest.raises(ValueError, match=f"key {key!r}"):
        pipeline.restore(key, good[:5])
    with pytest.raises(KeyError):
        pipeline.snapshot("site/st-nowhere")


# ---------------------------------------------------------------- routing by district


def _border_registry() -> Registry:
    """The example city with the old town's gateway also serving a lakeside station."""
    text = example_registry_path().read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    for sensor in data["sensors"]:
        if sensor["id"] == "aq-pier-pollution":
            sensor["gateway"] = "gw-oldtown-01"
    return parse_registry(yaml.safe_dump(data, allow_unicode=True))


def _reading(sensor: str, kind: Kind, seq: int = 1) -> Reading:
    return Reading(
        sensor_id=sensor,
        kind=kind,
        seq=seq,
        ts=datetime(2024, 11, 8, tzinfo=UTC),
        metrics={"pm2_5": 30.0},
    )


def test_a_one_district_gateway_routes_whole_and_a_border_gateway_is_split() -> None:
    pipeline = Pipeline(_border_registry())
    assert pipeline.route_key("gw-lakeside-01") == "lakeside"
    assert pipeline.route_key("gw-oldtown-01") is None  # serves two districts
    assert pipeline.route_key("gw-nowhere") == "gw-nowhere"
    envelope = Batch(
        gateway_id="gw-oldtown-01",
        readings=(
            _reading("aq-pier-pollution", Kind.POLLUTION),
            _reading("aq-drum-tower-pollution", Kind.POLLUTION),
            _reading("aq-ghost", Kind.POLLUTION),
        ),
    )
    parts = pipeline.route(envelope)
    assert {d: [r.sensor_id for r in b.readings] for d, b in parts.items()} == {
        "lakeside": ["aq-pier-pollution"],
        "old-town": ["aq-drum-tower-pollution", "aq-ghost"],  # unknown: the gateway's district
    }
    assert all(b.gateway_id == "gw-oldtown-01" for b in parts.values())


def test_every_state_key_is_kept_with_the_readings_that_feed_it() -> None:
    registry = load_example_registry()
    pipeline = Pipeline(registry)
    district = {s.id: registry.district_of_sensor(s.id).id for s in registry.sensors}
    for key in pipeline.state_keys():
        feeders = [s for s in district if key == s or key in pipeline._city.keys_of(s)]
        assert feeders, key
        assert pipeline.district_of(key) == district[min(feeders)], key


def test_dropping_a_district_forgets_its_state_and_reloads_it_on_next_sight() -> None:
    loads: list[str] = []
    stored: dict[str, bytes] = {}

    def load(key: str) -> bytes | None:
        loads.append(key)
        return stored.get(key)

    pipeline = Pipeline(load_example_registry(), load=load)
    pipeline.process(
        [
            Batch(
                gateway_id="gw-oldtown-01",
                readings=(_reading("aq-drum-tower-pollution", Kind.POLLUTION),),
            )
        ]
    )
    stored = {k: pipeline.snapshot(k) for k in pipeline.state_keys()}
    loads.clear()
    pipeline.drop_districts(["old-town"])
    out = pipeline.process(
        [
            Batch(
                gateway_id="gw-oldtown-01",
                readings=(_reading("aq-drum-tower-pollution", Kind.POLLUTION),),
            )
        ]
    )
    assert "aq-drum-tower-pollution" in loads
    assert pipeline.stats.duplicates == 1  # the reloaded seq knows it
    assert not out.lines


# ---------------------------------------------------------------- rules


PM_RULES = """
version: 1
rules:
  - id: pm25-high
    severity: warning
    select: {kind: pollution, metric: pm2_5}
    threshold: {above: 100}
    clear: {below: 80}
    annotations: {summary: "PM2.5 {value} at {site}"}
"""


def _pm(seq: int, minute: int, value: float) -> Batch:
    return Batch(
        gateway_id="gw-lakeside-01",
        readings=(
            Reading(
                sensor_id="aq-pier-pollution",
                kind=Kind.POLLUTION,
                seq=seq,
                ts=datetime(2024, 11, 8, tzinfo=UTC) + timedelta(minutes=minute),
                metrics={"pm2_5": value},
            ),
        ),
    )


def test_a_worker_reports_offline_gateways_only_of_the_districts_it_reads() -> None:
    """Another worker reads old-town: its gateway is that worker's to watch, not this one's."""
    pipeline = Pipeline(REGISTRY, rules=RuleEngine(load_default_rules(), REGISTRY))
    alerts = [a for i in range(20) for a in pipeline.process([envelope(pm(PIER, i, i))]).alerts]
    offline = {a.subject.gateway_id for a in alerts if a.rule_id == "gateway-offline"}
    assert offline == {"gw-lakeside-02", "gw-ring-01"}  # silent lakeside gateways, not old-town's


def test_rules_fire_once_are_written_and_their_state_moves_with_its_district() -> None:
    registry = load_example_registry()
    stored: dict[str, bytes] = {}

    def scan(prefix: str) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in stored.items() if k.startswith(prefix)]

    first = Pipeline(registry, rules=RuleEngine(parse_rules(PM_RULES)), scan=scan)
    fired = first.process([_pm(1, 0, 40.0), _pm(2, 1, 150.0)])
    assert [(a.rule_id, a.state.value) for a in fired.alerts] == [("pm25-high", "firing")]
    [line] = [x for x in fired.lines if x.startswith("alert,")]
    assert "state=firing" in line
    assert 'summary="PM2.5 150 at ' in line
    assert first.process([_pm(2, 1, 150.0), _pm(3, 2, 90.0)]).alerts == []  # resend, band
    rule_keys = [k for k in fired.touched if k.startswith("rules/")]
    assert [first.district_of(k) for k in rule_keys] == ["lakeside"]
    stored = {k: first.snapshot(k) for k in first.state_keys()}

    # Another worker takes the district over: the alert resolves there, once.
    second = Pipeline(registry, rules=RuleEngine(parse_rules(PM_RULES)), scan=scan, load=stored.get)
    resolved = second.process([_pm(4, 3, 50.0), _pm(5, 4, 40.0)])
    assert [(a.rule_id, a.state.value) for a in resolved.alerts] == [("pm25-high", "resolved")]
    first.drop_districts(["lakeside"])
    assert first.rules is not None
    assert first.rules.state_keys() == []


PENDING_RULES = PM_RULES.replace("    clear: {below: 80}\n", "    for: 10m\n")


@pytest.mark.parametrize(
    "steps",
    [
        # one step, the breaking reading first: held back as quiet, taken when 0 stirs
        [[_pm(1, 5, 50.0), _pm(2, 0, 150.0)], [_pm(3, 11, 150.0)]],
        # the breaking reading a step of its own: taken since the sensor is pending
        [[_pm(1, 0, 150.0)], [_pm(2, 5, 50.0)], [_pm(3, 11, 150.0)]],
    ],
)
def test_a_quiet_reading_reaches_a_rule_that_its_sensor_is_pending_on(
    steps: list[list[Batch]],
) -> None:
    """A value that fires nothing still breaks a pending condition of its sensor.

    PM2.5 above 100 at minute 0, 50 at minute 5, above 100 again at 11: the condition
    held for 10 minutes at no time, so the rule (``for: 10m``) never fires -- whether
    the quiet reading came in the same step as the one that stirred the rule (and
    before it), or in a step of its own while the rule was pending.
    """
    rules = RuleEngine(parse_rules(PENDING_RULES))
    pipeline = Pipeline(load_example_registry(), rules=rules)
    alerts = [a for step in steps for a in pipeline.process(step).alerts]
    assert alerts == []
    assert rules.awake("aq-pier-pollution")  # pending since minute 11
    assert rules.stats.samples == 3


NIGHT = """
version: 1
name: a faulty night in the example city
seed: 5
start: 2024-11-08T21:00:00+08:00
duration: 5h
incidents:
  - {kind: energy_leak, building: bld-lakeview-mall, extra_kw: 400,
     start: 2024-11-08T23:00:00+08:00, duration: 2h}
faults:
  - {kind: stuck, sensor: aq-pier-pollution, metric: o3,
     start: 2024-11-08T22:00:00+08:00, duration: 1h}
  - {kind: spikes, sensor: aq-library-pollution, probability: 0.3, factor: 400,
     start: 2024-11-08T23:00:00+08:00, duration: 1h}
"""
RING = [s.id for s in REGISTRY.sensors if s.gateway == "gw-ring-01"]
NIGHT += "".join(
    f"  - {{kind: dead, sensor: {sensor}, start: 2024-11-09T00:00:00+08:00, duration: 30m}}\n"
    for sensor in RING
)


class EverySample(RuleEngine):
    """The default rules, given every metric of every reading as a sample."""

    def wants(self, kind: str, metric: str, detector: str | None) -> bool:
        return True

    def stirs(
        self, kind: str, metric: str, detector: str | None, value: float, score: float | None
    ) -> bool:
        return True


@pytest.mark.parametrize("size", [ENVELOPES_PER_BATCH, 100])
def test_rules_see_only_the_samples_they_may_look_at_and_alert_as_if_they_saw_all(
    size: int,
) -> None:
    """A reading's metrics become rule samples only where a rule may look at them.

    The same night, with a stuck station, a spiking one (its neighbours see it), a
    gateway silent for half an hour and a leaking mall, goes through the default
    rules twice: once as the pipeline builds samples, once with every metric of every
    reading a sample. The alerts are the same (on a value, on a detector's score, on
    absence), from fewer than half the samples. In steps of 100 envelopes, a step
    holds up to 20 readings of a sensor; the absence rules get two readings of each
    gateway, and the anomaly rules only the readings of sensors they may act on.
    """
    envs = envelopes(City(parse_scenario(NIGHT)).run())
    alerts, samples = [], []
    for engine in (
        RuleEngine(load_default_rules(), REGISTRY),
        EverySample(load_default_rules(), REGISTRY),
    ):
        pipeline = Pipeline(REGISTRY, rules=engine)
        alerts.append([a for batch in batches(envs, size) for a in pipeline.process(batch).alerts])
        samples.append(engine.stats.samples)
    chosen, every = alerts
    assert chosen == every
    fired = Counter(a.rule_id for a in every if a.state.value == "firing")
    assert {"sensor-stuck", "gateway-offline", "aqi-heavy"} <= set(fired), fired
    assert samples[0] < samples[1] / 2


def test_a_district_whose_watermark_stands_still_is_not_searched_for_due_windows() -> None:
    """Skipping such a district each step closes exactly the windows a full search does.

    A morning in steps of two envelopes, with a takeover halfway (state restored into a
    new pipeline): once as the pipeline runs, once searching every district each step.
    """
    envs = envelopes(City(parse_scenario(BUSY.replace("4h30m", "2h"))).run())
    runs = []
    for search_all in (False, True):
        lines: list[str] = []
        pipeline = Pipeline(REGISTRY, lateness=LATENESS)
        steps = batches(envs, 2)
        for i, step in enumerate(steps):
            if i == len(steps) // 2:
                stored = {k: pipeline.snapshot(k) for k in pipeline.state_keys()}
                pipeline = Pipeline(REGISTRY, lateness=LATENESS, load=stored.get)
            if search_all:
                pipeline._city._closed_at.clear()
            lines += pipeline.process(step).lines
        runs.append(lines)
    skipping, searching = runs
    assert skipping == searching
    assert sum(line.startswith("agg_1h,") for line in skipping) > 0

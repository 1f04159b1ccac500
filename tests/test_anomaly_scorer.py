"""The reading scorer: every metric of every sensor, neighbours, silence and state.

Readings are built by hand with seeded numpy at 5-minute intervals, so each test knows
exactly what it fed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from stream.anomaly.base import Observation, build
from stream.anomaly.combine import Combiner
from stream.anomaly.scorer import MetricScore, ReadingScorer, neighbours_from_registry
from telemetry import Kind, Reading
from telemetry.registry import load_example_registry

START = datetime(2024, 11, 4, tzinfo=UTC)
"""A Monday, midnight UTC."""
STEP = timedelta(minutes=5)

LAKESIDE = ["aq-pier-pollution", "aq-library-pollution", "aq-north-bank-pollution"]
"""The pollution stations of the example registry's lakeside district."""


def at(step: int) -> datetime:
    return START + step * STEP


def city_step(rng: np.random.Generator, step: int, *, skip: Iterable[str] = ()) -> list[Reading]:
    """One 5-minute step of a small city: three pollution stations, weather, a meter,
    a traffic lane and a gate counter; a sensor in ``skip`` sends nothing."""
    ts = at(step)
    day = np.sin(2 * np.pi * step / 288)
    level = 35.0 + 10.0 * day
    readings = [
        Reading(
            sensor_id=sensor,
            kind=Kind.POLLUTION,
            seq=step,
            ts=ts,
            metrics={
                "pm2_5": round(level * (1 + 0.05 * j) + rng.normal(0, 1.0), 1),
                "no2": round(40.0 + rng.normal(0, 3.0), 1),
            },
        )
        for j, sensor in enumerate(LAKESIDE)
    ]
    readings += [
        Reading(
            sensor_id="aq-pier-ambient",
            kind=Kind.AMBIENT,
            seq=step,
            ts=ts,
            metrics={
                "temperature_c": round(15.0 + 5.0 * day + rng.normal(0, 0.2), 2),
                "humidity_pct": round(60.0 - 10.0 * day + rng.normal(0, 1.0), 1),
            },
        ),
        Reading(
            sensor_id="em-lakeview-mall-main",
            kind=Kind.ENERGY,
            seq=step,
            ts=ts,
            metrics={
                "power_w": round(50_000.0 + 20_000.0 * day + rng.normal(0, 800.0), 0),
                "voltage_v": round(230.0 + rng.normal(0, 1.0), 1),
            },
        ),
        Reading(
            sensor_id="tr-ring-nb-1",
            kind=Kind.TRAFFIC,
            seq=step,
            ts=ts,
            interval_s=300.0,
            metrics={
                "vehicle_count": float(rng.poisson(40 + 20 * (1 + day))),
                "mean_speed_kmh": round(55.0 + rng.normal(0, 3.0), 1),
            },
        ),
        Reading(
            sensor_id="cr-canal-west",
            kind=Kind.CROWD,
            seq=step,
            ts=ts,
            interval_s=300.0,
            metrics={
                "entries": float(rng.poisson(30)),
                "exits": float(rng.poisson(30)),
            },
        ),
    ]
    return [r for r in readings if r.sensor_id not in set(skip)]


def city(steps: int, seed: int = 1, **skips: range) -> list[list[Reading]]:
    """``steps`` steps of :func:`city_step`; ``skips`` maps a sensor (with ``_`` for ``-``)
    to the steps in which it sends nothing."""
    rng = np.random.default_rng(seed)
    quiet = {name.replace("_", "-"): steps_off for name, steps_off in skips.items()}
    return [
        city_step(rng, i, skip=[s for s, off in quiet.items() if i in off]) for i in range(steps)
    ]


def flat(steps: Sequence[Sequence[Reading]]) -> list[Reading]:
    return [r for step in steps for r in step]


def expected_rows(readings: Iterable[Reading]) -> list[tuple[str, Kind, str, datetime, float]]:
    return [(r.sensor_id, r.kind, m, r.ts, v) for r in readings for m, v in r.metrics.items()]


def rows(scores: Iterable[MetricScore]) -> list[tuple[str, Kind, str, datetime, float]]:
    return [(s.sensor_id, s.kind, s.metric, s.ts, s.value) for s in scores]


# ---------------------------------------------------------------- one result per metric


def test_one_score_per_metric_of_each_reading_in_input_order() -> None:
    scorer = ReadingScorer()
    steps = city(40)
    for step in steps:
        # Shuffled kinds within a batch: the results follow the input, not the groups.
        batch = step[::-1]
        scores = scorer.score(batch)
        assert rows(scores) == expected_rows(batch)
        assert all(0.0 <= s.score <= 1.0 and s.raw >= 0.0 for s in scores)
        for s in scores:
            combiner = scorer.combiners[s.kind, s.metric]
            assert s.detector in {d.name for d in combiner.detectors}
    assert set(scorer.combiners) == {(r.kind, m) for r in flat(steps) for m in r.metrics}


def test_a_sensor_twice_in_one_batch_is_scored_in_order() -> None:
    steps = city(30)
    batched = ReadingScorer()
    readings = flat(steps)
    scores = batched.score(readings)
    assert rows(scores) == expected_rows(readings)
    # Without neighbours, a batch of many steps scores like the steps one by one.
    again = ReadingScorer()
    assert [s.score for s in scores] == [s.score for step in steps for s in again.score(step)]


def test_score_in_batches_equals_score_all_over_the_stream() -> None:
    neighbours = neighbours_from_registry(load_example_registry())
    steps = city(200, seed=2, tr_ring_nb_1=range(100, 110), cr_canal_west=range(150, 200, 3))
    batched = ReadingScorer(neighbours=neighbours)
    by_batch = [s for step in steps for s in batched.score(step)]
    streamed = list(ReadingScorer(neighbours=neighbours).score_all(flat(steps)))
    assert len(streamed) == len(by_batch) == len(expected_rows(flat(steps)))
    assert streamed == by_batch
    assert any(s.score > 0.0 for s in streamed)


# ---------------------------------------------------------------- neighbours


def test_neighbours_from_the_registry_are_the_same_kind_in_the_same_district() -> None:
    registry = load_example_registry()
    neighbours = neighbours_from_registry(registry)
    assert set(neighbours) == {s.id for s in registry.sensors}
    assert sorted(neighbours["aq-pier-pollution"]) == sorted(LAKESIDE[1:])
    # The ambient sensor at the same station is another kind; old town is another district.
    assert "aq-pier-ambient" not in neighbours["aq-pier-pollution"]
    assert "aq-drum-tower-pollution" not in neighbours["aq-pier-pollution"]
    assert neighbours["aq-drum-tower-pollution"] == []
    district = {site.id: site.district for site in registry.sites}
    kind_of = {s.id: s for s in registry.sensors}
    for sensor, others in neighbours.items():
        me = kind_of[sensor]
        assert sensor not in others
        for other in others:
            assert kind_of[other].kind == me.kind
            assert district[kind_of[other].site] == district[me.site]


def test_a_local_offset_at_one_station_is_flagged_by_its_neighbours_and_theirs_are_not() -> None:
    scorer = ReadingScorer(neighbours=neighbours_from_registry(load_example_registry()))
    rng = np.random.default_rng(5)
    onset, length, steps = 400, 24, 500
    scores: dict[str, list[MetricScore]] = {sensor: [] for sensor in LAKESIDE}
    for i in range(steps):
        level = 35.0 + 10.0 * np.sin(2 * np.pi * i / 288) + 0.02 * i  # the district's air
        batch = []
        for j, sensor in enumerate(LAKESIDE):
            value = level * (1 + 0.05 * j) + rng.normal(0, 1.0)  # each station's own bias
            if sensor == "aq-pier-pollution" and onset <= i < onset + length:
                value += 30.0  # a local source next to the pier
            batch.append(
                Reading(
                    sensor_id=sensor,
                    kind=Kind.POLLUTION,
                    seq=i,
                    ts=at(i),
                    metrics={"pm2_5": round(value, 1)},
                )
            )
        for s in scorer.score(batch):
            scores[s.sensor_id].append(s)

    pier = scores["aq-pier-pollution"]
    assert max(s.score for s in pier[50:onset]) < 0.5, "a false alarm before the offset"
    flagged = [s for s in pier[onset : onset + length] if s.score >= 0.5]
    assert flagged
    assert flagged[0].ts == at(onset)
    assert all(s.detector == "neighbours" for s in flagged)
    for sensor in LAKESIDE[1:]:
        assert max(s.score for s in scores[sensor][50:]) < 0.5, sensor


# ---------------------------------------------------------------- silence


def test_overdue_reports_a_sensor_that_stopped_sending() -> None:
    scorer = ReadingScorer()
    steps = city(60, em_lakeview_mall_main=range(40, 60))
    for step in steps[:40]:
        scorer.score(step)
    assert scorer.overdue(at(39) + timedelta(seconds=60)) == []  # everyone is on time
    for step in steps[40:]:
        scorer.score(step)
    assert {s.sensor_id for s in scorer.overdue(at(59) + timedelta(seconds=60))} == {
        "em-lakeview-mall-main"
    }
    now = at(59) + STEP
    late = scorer.overdue(now)
    silent_s = (now - at(39)).total_seconds()
    assert {(s.sensor_id, s.kind, s.metric) for s in late} == {
        ("em-lakeview-mall-main", Kind.ENERGY, "power_w"),
        ("em-lakeview-mall-main", Kind.ENERGY, "voltage_v"),
    }
    for s in late:
        assert s.detector == "silence"
        assert s.ts == now
        assert s.value == pytest.approx(silent_s)
        assert 0.5 <= s.score <= 1.0
    # Overdue asks; it does not learn.
    assert rows(scorer.overdue(now)) == rows(late)


def test_score_all_with_silence_checks_yields_the_overdue_sensor() -> None:
    steps = city(60, tr_ring_nb_1=range(30, 60))
    readings = flat(steps)
    results = list(ReadingScorer().score_all(readings, check_silence_s=300))
    sent: dict[str, set[datetime]] = {}
    for r in readings:
        sent.setdefault(r.sensor_id, set()).add(r.ts)
    silence = [s for s in results if s.ts not in sent[s.sensor_id]]
    assert silence
    assert {(s.sensor_id, s.metric) for s in silence} == {
        ("tr-ring-nb-1", "vehicle_count"),
        ("tr-ring-nb-1", "mean_speed_kmh"),
    }
    assert all(s.detector == "silence" and s.score >= 0.5 for s in silence)
    for s in silence:
        assert s.value == pytest.approx((s.ts - at(29)).total_seconds())
    # Every reading's metrics are still there, in order, among the silence findings.
    scored = [s for s in results if s not in silence]
    assert rows(scored) == expected_rows(readings)
    # Without checks the stream is scored the same (overdue asks, it does not learn),
    # with no findings of its own.
    plain = list(ReadingScorer().score_all(readings))
    assert plain == scored


# ---------------------------------------------------------------- state


def transplant(scorer: ReadingScorer, keys: Mapping[tuple[Kind, str], set[str]]) -> ReadingScorer:
    """A fresh scorer of the same config holding every combiner's state of ``scorer``."""
    fresh = ReadingScorer(scorer.config, scorer.neighbours)
    fresh.latest.update(scorer.latest)
    for (kind, metric), combiner in scorer.combiners.items():
        for key in sorted(keys[kind, metric]):
            fresh.combiner(kind, metric).restore(combiner.snapshot(key), key)
    return fresh


def series_keys(readings: Iterable[Reading]) -> dict[tuple[Kind, str], set[str]]:
    keys: dict[tuple[Kind, str], set[str]] = {}
    for r in readings:
        for metric in r.metrics:
            keys.setdefault((r.kind, metric), set()).add(r.sensor_id)
    return keys


def with_anomalies(steps: list[list[Reading]], first: int) -> list[list[Reading]]:
    """Jumps and spikes from step ``first`` on, so the scores after it are not all quiet."""
    out = []
    for i, step in enumerate(steps):
        changed = []
        for r in step:
            if i >= first and r.sensor_id == "aq-pier-pollution":
                r = r.model_copy(
                    update={"metrics": {**r.metrics, "pm2_5": r.metrics["pm2_5"] + 25}}
                )
            if i >= first and r.sensor_id == "em-lakeview-mall-main" and i % 7 == 0:
                r = r.model_copy(update={"metrics": {**r.metrics, "power_w": 250_000.0}})
            if i >= first and r.sensor_id == "aq-pier-ambient":
                r = r.model_copy(update={"metrics": {**r.metrics, "humidity_pct": 55.0}})
            changed.append(r)
        out.append(changed)
    return out


def test_snapshot_and_restore_of_every_combiner_continues_with_identical_scores() -> None:
    steps = with_anomalies(city(260, seed=4), first=200)
    cut = 200
    keys = series_keys(flat(steps))
    original = ReadingScorer()
    for step in steps[:cut]:
        original.score(step)
    restored = transplant(original, keys)
    after_original = [s for step in steps[cut:] for s in original.score(step)]
    after_restored = [s for step in steps[cut:] for s in restored.score(step)]
    assert after_restored == after_original
    assert any(s.score >= 0.5 for s in after_original), "nothing to tell the states apart"
    assert {s.detector for s in after_original} - {"silence"}
    for (kind, metric), combiner in original.combiners.items():
        for key in keys[kind, metric]:
            assert restored.combiners[kind, metric].snapshot(key) == combiner.snapshot(key)


def test_snapshot_and_restore_with_neighbours_continues_with_identical_scores() -> None:
    neighbours = neighbours_from_registry(load_example_registry())
    steps = with_anomalies(city(260, seed=4), first=210)
    cut = 200
    keys = series_keys(flat(steps))
    original = ReadingScorer(neighbours=neighbours)
    for step in steps[:cut]:
        original.score(step)
    restored = transplant(original, keys)
    after_original = [s for step in steps[cut:] for s in original.score(step)]
    after_restored = [s for step in steps[cut:] for s in restored.score(step)]
    assert after_restored == after_original


# ---------------------------------------------------------------- the combiner's hold


def test_a_held_reading_of_an_episode_scores_below_the_alert_level() -> None:
    combiner = Combiner([build("out_of_range", {"low": 0.0, "high": 10.0})], cooldown=5)
    scores = [
        combiner.process_one(Observation(60.0 * i, value), "s").score
        for i, value in enumerate([5.0, 1000.0, 900.0, 900.0])
    ]
    assert scores[1] >= 0.5  # the episode's alert
    assert scores[2] < 0.5
    assert scores[3] < 0.5


def test_a_held_reading_of_a_moderate_episode_scores_below_the_alert_level() -> None:
    bounded = Combiner([build("out_of_range", {"low": 0.0, "high": 10.0})], cooldown=5)
    scores = [
        bounded.process_one(Observation(60.0 * i, value), "s").score
        for i, value in enumerate([5.0, 30.0, 25.0, 40.0])
    ]
    assert scores[1] >= 0.5
    assert scores[2] < 0.5  # held: lower than the episode's peak
    assert scores[3] >= 0.5  # worse than the peak: a new alert

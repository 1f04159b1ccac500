"""Aggregation at the edge and in the stream.

At the edge, pre-aggregation: gauges averaged with their spread, counts summed,
counters kept last. In the stream, windowed aggregates that roll sensors' closed
minutes up into hours and the site: the same windows, in the same order, as if every
reading had gone into each of its windows.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agents.aggregate import WindowAggregator
from stream.aggregate import HOUR, MINUTE, SIZES, Closed, SiteAggregates, window_end
from telemetry import Kind, MetricStats, Reading, all_metrics

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def test_five_second_samples_make_one_minute_readings() -> None:
    agg = WindowAggregator(Kind.POLLUTION, window_s=60)
    closed = []
    for i in range(12 * 3):  # three minutes of 5 s samples
        closed += agg.add(T0 + timedelta(seconds=5 * i), {"pm2_5": float(i), "pm10": 2.0 * i})
    closed += agg.flush()
    assert [w.end for w in closed] == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
    first = closed[0]
    assert first.samples == 12
    assert first.metrics == {"pm2_5": 5.5, "pm10": 11.0}
    assert (first.stats["pm2_5"].min, first.stats["pm2_5"].max, first.stats["pm2_5"].count) == (
        0,
        11,
        12,
    )


def test_counts_are_summed_and_cumulative_counters_keep_the_last_value() -> None:
    crowd = WindowAggregator(Kind.CROWD, window_s=300)
    for i in range(60):
        crowd.add(T0 + timedelta(seconds=5 * i), {"entries": 2, "exits": 1})
    [window] = crowd.flush()
    assert window.metrics == {"entries": 120.0, "exits": 60.0}
    assert window.stats == {}

    meter = WindowAggregator(Kind.ENERGY, window_s=60)
    for i in range(6):
        meter.add(T0 + timedelta(seconds=10 * i), {"energy_kwh": 1000.0 + i, "power_w": 500.0})
    [window] = meter.flush()
    assert window.metrics == {"energy_kwh": 1005.0, "power_w": 500.0}
    assert set(window.stats) == {"power_w"}


def test_windows_align_to_utc_and_a_quiet_window_emits_nothing() -> None:
    agg = WindowAggregator(Kind.TRAFFIC, window_s=60)
    assert agg.add(T0 + timedelta(seconds=59), {"vehicle_count": 1}) == []
    # Nothing arrives for three minutes: only the window with data is published.
    [window] = agg.add(T0 + timedelta(minutes=3, seconds=1), {"vehicle_count": 2})
    assert window.end == T0 + timedelta(minutes=1)
    assert window.metrics == {"vehicle_count": 1.0}


def test_close_due_publishes_without_waiting_for_the_next_sample() -> None:
    agg = WindowAggregator(Kind.POLLUTION, window_s=60)
    agg.add(T0 + timedelta(seconds=10), {"pm2_5": 3.0})
    assert agg.close_due(T0 + timedelta(seconds=59)) == []
    [window] = agg.close_due(T0 + timedelta(seconds=60))
    assert window.metrics == {"pm2_5": 3.0}
    assert agg.close_due(T0 + timedelta(minutes=5)) == []


def test_a_clock_step_back_folds_into_the_open_window() -> None:
    agg = WindowAggregator(Kind.POLLUTION, window_s=60)
    agg.add(T0 + timedelta(minutes=1, seconds=10), {"pm2_5": 10.0})
    assert agg.add(T0 + timedelta(seconds=30), {"pm2_5": 20.0}) == []
    [window] = agg.flush()
    assert window.end == T0 + timedelta(minutes=2)
    assert window.metrics == {"pm2_5": 15.0}


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="window_s must be a finite number of seconds > 0, got 0"):
        WindowAggregator(Kind.POLLUTION, window_s=0)
    agg = WindowAggregator(Kind.POLLUTION, window_s=60)
    with pytest.raises(ValueError, match="has no timezone"):
        agg.add(datetime(2026, 11, 22), {"pm2_5": 1.0})  # noqa: DTZ001 - naive on purpose


@given(st.lists(st.floats(0, 2000, allow_nan=False), min_size=1, max_size=200))
def test_every_window_makes_a_valid_reading(values: list[float]) -> None:
    agg = WindowAggregator(Kind.POLLUTION, window_s=60)
    windows = []
    for i, value in enumerate(values):
        windows += agg.add(T0 + timedelta(seconds=7 * i), {"pm2_5": value})
    windows += agg.flush()
    assert sum(w.samples for w in windows) == len(values)
    for seq, window in enumerate(windows):
        Reading(
            sensor_id="aq-1",
            kind=Kind.POLLUTION,
            ts=window.end,
            seq=seq,
            interval_s=window.interval_s,
            metrics=window.metrics,
            stats=window.stats,
        )


# ---------------------------------------------------------------- stream windows

_ORDER = {spec.key: i for i, spec in enumerate(all_metrics())}


def _fleet_readings(seed: int) -> list[Reading]:
    """Three sensors of two kinds over two and a half hours with gaps, in event-time order."""
    rng = random.Random(seed)
    readings = []
    for n, (sensor, kind) in enumerate(
        [("aq-b", Kind.POLLUTION), ("aq-a", Kind.POLLUTION), ("amb-1", Kind.AMBIENT)]
    ):
        for i in range(150):
            ts = T0 + timedelta(seconds=60 * i + 17 * n * (i % 4))  # some on the hour
            if T0 + timedelta(minutes=58) < ts <= T0 + timedelta(hours=1) or rng.random() < 0.2:
                continue  # no minute ends at 09:00; gaps elsewhere
            if kind is Kind.POLLUTION:
                pm = rng.uniform(1.0, 300.0)
                metrics = {"pm2_5": pm, "pm10": rng.uniform(0.0, 500.0)}
                stats = {"pm2_5": MetricStats(min=pm - 1.0, max=pm + 0.5, count=12)}
            else:
                metrics, stats = {"temperature_c": rng.uniform(-5.0, 30.0)}, {}
            readings.append(
                Reading(
                    sensor_id=sensor,
                    kind=kind,
                    ts=ts,
                    seq=i,
                    interval_s=60,
                    metrics=metrics,
                    stats=stats,
                )
            )
    return sorted(readings, key=lambda r: r.ts)


def _every_reading_in_every_window(
    readings: list[Reading],
) -> list[tuple[str, int, str | None, str, list[tuple[float, float, float]]]]:
    """The windows as if each reading went into all four of its own: closing order."""
    windows: dict[tuple[int, int, str, str], list[tuple[float, float, float]]] = defaultdict(list)
    for r in readings:
        for name, value in r.metrics.items():
            stats = r.stats.get(name)
            sample = (value, stats.min, stats.max) if stats else (value, value, value)
            for i, size in enumerate(SIZES):
                for who in (r.sensor_id, "~site"):  # the site sorts after its sensors
                    windows[window_end(r.ts, size), i, who, f"{r.kind.value}.{name}"].append(sample)
    return [
        (SIZES[i].name, end, None if who == "~site" else who, metric, samples)
        for (end, i, who, metric), samples in sorted(
            windows.items(), key=lambda item: (*item[0][:3], _ORDER[item[0][3]])
        )
    ]


@pytest.mark.parametrize(("seed", "largest"), [(1, 3), (2, 40), (3, 200), (4, 0)])
def test_rolled_up_windows_close_as_if_every_reading_was_in_each(seed: int, largest: int) -> None:
    """Batches of 1 to ``largest`` readings (0: all at once), and a takeover after each."""
    readings = _fleet_readings(seed)
    rng = random.Random(seed)
    site = SiteAggregates()
    closed: list[Closed] = []
    start = 0
    while start < len(readings):
        batch = readings[start : start + (rng.randint(1, largest) if largest else 10**6)]
        start += len(batch)
        for r in batch:
            site.add(r)
        for end in sorted(site.due(batch[-1].ts)):  # as CityIndices.close does
            closed += site.close(end)
        data = site.pack()
        site = SiteAggregates.unpack(data)  # as after a takeover
        assert site.pack() == data
    for end in sorted(site.due(readings[-1].ts + timedelta(hours=2))):
        closed += site.close(end)
    assert site.due(readings[-1].ts + timedelta(days=1)) == set()

    expected = _every_reading_in_every_window(readings)
    assert [(c.size.name, c.end, c.sensor, c.metric) for c in closed] == [
        key[:4] for key in expected
    ]
    for c, (*_, samples) in zip(closed, expected, strict=True):
        values = [v for v, _, _ in samples]
        m = c.moments
        assert (m.count, m.span_s) == (len(samples), 60.0 * len(samples))
        assert (m.low, m.high) == (min(s[1] for s in samples), max(s[2] for s in samples))
        assert m.total == pytest.approx(math.fsum(values), rel=1e-13)  # the order of sums
    last = max(c.end for c in closed if c.size is MINUTE and c.sensor == "aq-a")
    end, mean = site.latest["aq-a"]["pollution.pm2_5"]
    [minute] = [
        c
        for c in closed
        if (c.size, c.end, c.sensor, c.metric) == (MINUTE, last, "aq-a", "pollution.pm2_5")
    ]
    assert (end, mean) == (last, minute.moments.mean)
    nine = int((T0 + timedelta(hours=1)).timestamp())
    assert {c.size for c in closed if c.end == nine} == {HOUR}  # closed with no minute ending


def test_an_hour_is_due_with_the_minutes_that_roll_into_it() -> None:
    site = SiteAggregates()
    site.add(
        Reading(
            sensor_id="aq-a",
            kind=Kind.POLLUTION,
            seq=0,
            ts=T0 + timedelta(minutes=59),
            interval_s=60,
            metrics={"pm2_5": 3.0},
        )
    )
    hour = int((T0 + timedelta(hours=1)).timestamp())
    assert site.due(T0 + timedelta(minutes=59, seconds=30)) == {hour - 60}
    # Nothing has rolled into the 09:00 hour yet, but it will when 08:59 closes.
    assert site.due(T0 + timedelta(hours=1, seconds=1)) == {hour - 60, hour}
    assert [(c.size, c.sensor) for c in site.close(hour - 60)] == [
        (MINUTE, "aq-a"),
        (MINUTE, None),
    ]
    assert [(c.size, c.sensor, c.moments.count) for c in site.close(hour)] == [
        (HOUR, "aq-a", 1),
        (HOUR, None, 1),
    ]


def test_a_state_of_another_version_or_cut_short_is_refused_saying_where() -> None:
    site = SiteAggregates()
    site.add(
        Reading(
            sensor_id="aq-a",
            kind=Kind.POLLUTION,
            seq=0,
            ts=T0,
            interval_s=60,
            metrics={"pm2_5": 3.0},
        )
    )
    data = site.pack()
    with pytest.raises(ValueError, match=r"state version 1, expected 2"):
        SiteAggregates.unpack(b"\x01" + data[1:])
    with pytest.raises(ValueError, match=r"37 bytes wanted at byte \d+, 36 left"):
        SiteAggregates.unpack(data[:-9])  # into the moments record, before four counts
    with pytest.raises(ValueError, match="1 bytes left over"):
        SiteAggregates.unpack(data + b"\0")

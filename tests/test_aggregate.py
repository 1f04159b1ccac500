"""Pre-aggregation: gauges averaged with their spread, counts summed, counters kept last."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agents.aggregate import WindowAggregator
from telemetry import Kind, Reading

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

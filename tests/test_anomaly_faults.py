"""Sensor-fault detectors: stuck values, silence, out-of-range values and impossible jumps."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np
import pytest

from stream.anomaly.base import AnomalyError, Detector, Expectation, Observation, build
from stream.anomaly.faults import Jump, OutOfRange, Silence, StuckValue

# ---------------------------------------------------------------- helpers


def feed(d: Detector, values: Sequence[float], *, step: float = 60.0, key: Hashable = None) -> None:
    """Learn ``values`` as one series, one reading every ``step`` seconds from 0."""
    for i, v in enumerate(values):
        d.learn_one(Observation(step * i, v), key)


def scores(
    d: Detector, values: Sequence[float], *, step: float = 60.0, key: Hashable = None
) -> list[float]:
    """Score then learn each of ``values``, one reading every ``step`` seconds from 0."""
    out = []
    for i, v in enumerate(values):
        obs = Observation(step * i, v)
        out.append(d.score_one(obs, key))
        d.learn_one(obs, key)
    return out


Stream = tuple[list[Hashable], np.ndarray, np.ndarray]


def fault_stream(n: int = 600, seed: int = 7) -> Stream:
    """Interleaved readings of four series with stuck runs, gaps, late readings, spikes."""
    rng = np.random.default_rng(seed)
    series: list[Hashable] = ["a", "b", ("c", 1), 4]
    keys = [series[i] for i in rng.integers(0, len(series), n)]
    clock = dict.fromkeys(series, 1.7e9)
    level = dict.fromkeys(series, 20.0)
    ts, xs = np.empty(n), np.empty(n)
    for i, key in enumerate(keys):
        u = rng.random()
        gap = 5000.0 if u < 0.02 else 600.0 if u < 0.06 else 60.0 + rng.normal(0, 3)
        clock[key] += gap
        ts[i] = clock[key] - (200.0 if rng.random() < 0.03 else 0.0)  # some late readings
        if rng.random() > 0.3:  # else: stuck at the previous value
            level[key] = round(level[key] + rng.normal(0, 0.5), 1)
        xs[i] = level[key] + (rng.choice([-1, 1]) * 50 if rng.random() < 0.03 else 0.0)
    return keys, ts, xs


def per_event(d: Detector, stream: Stream) -> np.ndarray:
    keys, ts, xs = stream
    out = np.empty(len(keys))
    for i, key in enumerate(keys):
        obs = Observation(float(ts[i]), float(xs[i]))
        out[i] = d.score_one(obs, key)
        d.learn_one(obs, key)
    return out


def batched(d: Detector, stream: Stream, sizes: Sequence[int] = (1, 7, 64, 200)) -> np.ndarray:
    keys, ts, xs = stream
    out, start, i = [], 0, 0
    while start < len(keys):
        stop = start + sizes[i % len(sizes)]
        out.append(d.process(d.rows_of(keys[start:stop]), ts[start:stop], xs[start:stop]))
        start, i = stop, i + 1
    return np.concatenate(out)


DETECTORS: dict[str, Callable[[], Detector]] = {
    "stuck": lambda: StuckValue(min_run=4, tolerance=0.05, ignore_values=(0.0,)),
    "silence": lambda: Silence(grace_period=3),
    "out_of_range": lambda: OutOfRange(low=0.0, high=40.0),
    "jump": lambda: Jump(max_rate_per_s=0.05, max_gap_s=1800.0),
}


# ---------------------------------------------------------------- every detector


@pytest.mark.parametrize("name", DETECTORS)
def test_per_event_path_equals_batched_path(name: str) -> None:
    stream = fault_stream()
    one = per_event(DETECTORS[name](), stream)
    many = batched(DETECTORS[name](), stream)
    np.testing.assert_array_equal(one, many)
    assert (one >= 1.0).any(), "the stream should make every detector fire"
    assert (one >= 0).all()


@pytest.mark.parametrize("name", DETECTORS)
def test_snapshot_restore_gives_identical_subsequent_scores(name: str) -> None:
    keys, ts, xs = fault_stream()
    half = len(keys) // 2
    d = DETECTORS[name]()
    per_event(d, (keys[:half], ts[:half], xs[:half]))
    restored = d.clone()
    for key in set(keys):
        restored.restore(d.snapshot(key), key)
    rest = (keys[half:], ts[half:], xs[half:])
    np.testing.assert_array_equal(per_event(d, rest), per_event(restored, rest))


@pytest.mark.parametrize("name", DETECTORS)
def test_clone_repr_and_build_by_name(name: str) -> None:
    d = DETECTORS[name]()
    assert repr(d).startswith(type(d).__name__ + "(")
    assert build(name, d.params()).params() == d.params()
    assert d.clone().series == 0


@pytest.mark.parametrize(
    ("name", "size"), [("stuck", 12), ("silence", 16), ("out_of_range", 0), ("jump", 12)]
)
def test_state_bytes_per_series(name: str, size: int) -> None:
    d = DETECTORS[name]()
    assert d.state_size() == size
    assert len(d.snapshot("x")) == size


def test_restore_refuses_state_of_another_size() -> None:
    with pytest.raises(AnomalyError, match="stuck: state of 3 bytes"):
        StuckValue().restore(b"abc", "x")


# ---------------------------------------------------------------- stuck


def test_stuck_run_scores_run_over_min_run_and_fires_at_min_run() -> None:
    got = scores(StuckValue(min_run=5), [1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 4.0])
    assert got == pytest.approx([0, 0, 0, 0.4, 0.6, 0.8, 1.0, 1.2, 0])


def test_stuck_tolerance_is_measured_from_the_run_anchor() -> None:
    d = StuckValue(min_run=3, tolerance=0.05)
    assert scores(d, [20.0, 20.03, 19.96, 20.04]) == pytest.approx([0, 2 / 3, 1, 4 / 3])
    # a slow drift in steps below the tolerance is not a stuck sensor
    assert scores(StuckValue(min_run=3, tolerance=0.05), [0.0, 0.04, 0.08, 0.12]) == [
        0,
        pytest.approx(2 / 3),
        0,
        pytest.approx(2 / 3),
    ]


def test_stuck_runs_at_ignored_values_score_zero() -> None:
    d = StuckValue(min_run=3, ignore_values=(0.0,))
    night = scores(d, [0.0] * 20)
    assert night == [0.0] * 20
    assert scores(d, [0.0, 7.0, 7.0, 7.0]) == pytest.approx([0, 0, 2 / 3, 1.0])


def test_stuck_keeps_series_apart() -> None:
    d = StuckValue(min_run=2)
    d.learn_one(Observation(0.0, 5.0), "a")
    assert d.score_one(Observation(60.0, 5.0), "a") == 1.0
    assert d.score_one(Observation(60.0, 5.0), "b") == 0.0


def test_stuck_has_no_expectation() -> None:
    assert StuckValue().expect_one(Observation(0.0, 1.0)) is None


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"min_run": 1}, "min_run must be at least 2, not 1"),
        ({"tolerance": -0.1}, "tolerance must be a finite number >= 0, not -0.1"),
        ({"ignore_values": [float("nan")]}, "ignore_values must be finite numbers, not [nan]"),
    ],
)
def test_stuck_rejects_bad_parameters(params: dict[str, object], words: str) -> None:
    with pytest.raises(AnomalyError, match=f"stuck: {words}".replace("[", r"\[")):
        build("stuck", params)


def test_stuck_from_config_keeps_ignore_values_as_a_tuple() -> None:
    d = build("stuck", {"ignore_values": [0]})
    assert repr(d) == "StuckValue(min_run=10, tolerance=0.0, ignore_values=(0.0,))"


# ---------------------------------------------------------------- silence


def test_silence_scores_gap_over_factor_times_typical_interval() -> None:
    d = Silence(factor=3.0, grace_period=3)
    feed(d, [1.0] * 10)  # every 60 s, last at 540 s
    assert d.score_one(Observation(600.0, 1.0)) == pytest.approx(60 / 180)
    assert d.score_one(Observation(540.0 + 180.0, 1.0)) == pytest.approx(1.0)
    assert d.score_one(Observation(540.0 + 900.0, 1.0)) == pytest.approx(5.0)


def test_silence_scores_zero_in_grace_period_and_for_late_or_duplicate_readings() -> None:
    d = Silence(grace_period=3)
    assert scores(d, [1.0] * 4) == [0.0] * 4  # three intervals learned only after the 4th
    assert d.score_one(Observation(180.0, 1.0)) == 0.0  # duplicate
    assert d.score_one(Observation(100.0, 1.0)) == 0.0  # late
    d.learn_one(Observation(100.0, 1.0))  # a late reading does not move the clock back
    assert d.score_one(Observation(240.0, 1.0)) == pytest.approx(60 / 180)


def test_silence_one_outage_barely_moves_the_typical_interval() -> None:
    d = Silence(factor=3.0, alpha=0.1, clip=2.0, grace_period=3)
    feed(d, [1.0] * 21)  # 20 intervals of 60 s, last at 1200 s
    d.learn_one(Observation(1200.0 + 3600.0, 1.0))  # an hour of outage
    after = d.score_one(Observation(4800.0 + 60.0, 1.0))
    assert after == pytest.approx(60 / (3 * 60 * 2**0.1))  # typical grew by 2 ** alpha only


def test_silence_follows_a_lasting_change_of_reporting_rate() -> None:
    d = Silence(grace_period=3)
    feed(d, [1.0] * 20)
    for i in range(1, 41):
        d.learn_one(Observation(19 * 60.0 + 300.0 * i, 1.0))
    assert d.score_one(Observation(19 * 60.0 + 300.0 * 41, 1.0)) < 0.4


def test_overdue_flags_series_that_stopped_sending() -> None:
    d = Silence(factor=3.0, grace_period=3)
    for i in range(10):
        d.learn_one(Observation(60.0 * i, 1.0), "steady")
        d.learn_one(Observation(60.0 * i, 1.0), ("gate", 2))
    for i in range(10, 20):
        d.learn_one(Observation(60.0 * i, 1.0), "steady")
    d.learn_one(Observation(0.0, 1.0), "new")
    d.learn_one(Observation(60.0, 1.0), "new")  # one interval: still in its grace period
    d.learn_one(Observation(0.0, 1.0), "dead")
    for i in range(1, 10):
        d.learn_one(Observation(30.0 * i, 1.0), "dead")  # every 30 s, last at 270 s

    now = 19 * 60.0 + 120.0  # the steady series is 120 s late: normal
    keys, silent, ratio = d.overdue(now)
    assert keys == ["dead", ("gate", 2)]  # most overdue first
    np.testing.assert_allclose(silent, [now - 270.0, now - 540.0])
    np.testing.assert_allclose(ratio, [(now - 270.0) / 90.0, (now - 540.0) / 180.0])
    # the ratio is the score the series' next reading would get
    assert ratio[1] == pytest.approx(d.score_one(Observation(now, 1.0), ("gate", 2)))


def test_overdue_of_nothing_is_empty() -> None:
    assert Silence().overdue(1.7e9).keys == []
    d = Silence(grace_period=1)
    feed(d, [1.0, 1.0])
    assert d.overdue(60.0 + 100.0).keys == []


def test_silence_rejects_bad_parameters() -> None:
    with pytest.raises(AnomalyError, match=r"silence: clip must be greater than 1, not 0\.5"):
        Silence(clip=0.5)
    with pytest.raises(AnomalyError, match="silence: alpha must be in"):
        Silence(alpha=0.0)


# ---------------------------------------------------------------- out of range


def test_out_of_range_from_the_catalogue() -> None:
    d = OutOfRange.for_metric("pollution", "pm2_5")
    assert (d.low, d.high) == (0.0, 2000.0)
    got = [d.score_one(Observation(0.0, v)) for v in (12.5, 0.0, 2000.0, -200.0, 2200.0)]
    assert got == pytest.approx([0, 0, 0, 1.1, 1.1])
    assert d.state_size() == 0
    assert d.expect_one(Observation(0.0, 5.0)) == Expectation(1000.0, 0.0, 2000.0)


def test_out_of_range_of_an_interval_count_depends_on_the_interval() -> None:
    d = OutOfRange.for_metric("traffic", "vehicle_count", interval_s=60)
    assert d.score_one(Observation(0.0, 61.0)) == 0.0
    assert d.score_one(Observation(0.0, 62.0)) == pytest.approx(1 + 1 / 61)


def test_out_of_range_with_one_side_open() -> None:
    assert OutOfRange(low=0.0).score_one(Observation(0.0, -3.0)) == 4.0
    assert OutOfRange(low=0.0).score_one(Observation(0.0, 1e12)) == 0.0
    assert OutOfRange(high=100.0).score_one(Observation(0.0, 150.0)) == 1.5
    assert OutOfRange(high=100.0).expect_one(Observation(0.0, 0.0)) == Expectation(
        100.0, -np.inf, 100.0
    )
    unbounded = OutOfRange()
    assert unbounded.score_one(Observation(0.0, -1e300)) == 0.0
    assert unbounded.expect_one(Observation(0.0, 0.0)) is None


def test_out_of_range_rejects_bad_bounds_and_unknown_metrics() -> None:
    with pytest.raises(AnomalyError, match=r"out_of_range: low=5\.0 must be below high=5\.0"):
        OutOfRange(low=5.0, high=5.0)
    with pytest.raises(AnomalyError, match="out_of_range: high must be a finite number"):
        OutOfRange(high=float("inf"))
    with pytest.raises(AnomalyError, match="out_of_range: pollution has no metric 'pm1'"):
        OutOfRange.for_metric("pollution", "pm1")


# ---------------------------------------------------------------- jump


def test_jump_scores_rate_over_max_rate() -> None:
    d = Jump(max_rate_per_s=0.1)
    assert scores(d, [20.0, 20.5, 32.5, 32.5]) == pytest.approx([0, 0.5 / 6, 2.0, 0])


def test_jump_after_a_long_gap_is_not_compared() -> None:
    d = Jump(max_rate_per_s=0.1, max_gap_s=600.0)
    d.learn_one(Observation(0.0, 20.0))
    assert d.score_one(Observation(601.0, 90.0)) == 0.0
    assert d.score_one(Observation(600.0, 90.0)) == pytest.approx(70 / 600 / 0.1)
    d.learn_one(Observation(601.0, 90.0))  # the reset: 90 is the new reference
    assert d.score_one(Observation(661.0, 90.0)) == 0.0
    assert d.score_one(Observation(661.0, 20.0)) > 1


def test_jump_time_step_is_at_least_min_dt() -> None:
    d = Jump(max_rate_per_s=0.1, min_dt_s=1.0)
    d.learn_one(Observation(0.0, 20.0))
    assert d.score_one(Observation(0.1, 20.05)) == pytest.approx(0.5)  # not 5
    assert d.score_one(Observation(0.0, 20.05)) == pytest.approx(0.5)  # same timestamp


def test_jump_ignores_late_readings() -> None:
    d = Jump(max_rate_per_s=0.1)
    d.learn_one(Observation(600.0, 20.0))
    assert d.score_one(Observation(0.0, 90.0)) == 0.0
    d.learn_one(Observation(0.0, 90.0))
    assert d.score_one(Observation(660.0, 20.0)) == 0.0


def test_jump_expectation_is_previous_plus_or_minus_what_the_rate_allows() -> None:
    d = Jump(max_rate_per_s=0.1, max_gap_s=600.0)
    first = d.expect_one(Observation(0.0, 1.0))  # nothing to compare with: an open band
    assert first is not None
    assert np.isnan(first.expected)
    assert (first.low, first.high) == (-np.inf, np.inf)
    d.learn_one(Observation(0.0, 20.0))
    assert d.expect_one(Observation(60.0, 0.0)) == Expectation(20.0, 14.0, 26.0)
    far = d.expect_one(Observation(6000.0, 0.0))
    assert far is not None
    assert (far.low, far.high) == (-np.inf, np.inf)


def test_jump_for_metric_uses_the_documented_rates() -> None:
    assert Jump.for_metric("ambient", "temperature_c").max_rate_per_s == 0.1
    assert Jump.for_metric("pollution", "pm2_5").max_rate_per_s == 50.0
    with pytest.raises(AnomalyError, match=r"jump: no plausible rate .* energy\.power_w"):
        Jump.for_metric("energy", "power_w")
    with pytest.raises(AnomalyError, match="jump: unknown kind 'weather'"):
        Jump.for_metric("weather", "temperature_c")


def test_jump_needs_its_rate() -> None:
    with pytest.raises(AnomalyError, match="max_rate_per_s"):
        build("jump")
    with pytest.raises(AnomalyError, match="jump: max_rate_per_s must be a positive number"):
        Jump(max_rate_per_s=0.0)
    with pytest.raises(AnomalyError, match="jump: max_gap_s must be at least min_dt_s"):
        Jump(max_rate_per_s=1.0, max_gap_s=0.5)

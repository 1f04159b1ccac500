"""Spatial consensus: a sensor against its neighbours, its learned bias, local vs regional."""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pytest

from stream.anomaly.base import AnomalyError, Observation, build
from stream.anomaly.spatial import NeighbourConsensus, classify, pad_neighbours

RNG_SEED = 11


def around(
    rng: np.random.Generator, level: float, k: int = 4, noise: float = 1.0
) -> tuple[float, ...]:
    """``k`` neighbour readings scattered around ``level``."""
    return tuple(float(v) for v in level + rng.normal(0, noise, k))


def train(
    d: NeighbourConsensus,
    key: Hashable = None,
    *,
    n: int = 200,
    level: float = 40.0,
    factor: float = 1.0,
    seed: int = RNG_SEED,
) -> None:
    """A station reading ``factor`` x its neighbours' level, with noise, every minute."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        here = level + rng.normal(0, 2)  # the district's level drifts a little
        x = factor * here + rng.normal(0, 0.5)
        d.learn_one(Observation(60.0 * i, x, around(rng, here)), key)


Stream = tuple[list[Hashable], np.ndarray, np.ndarray, list[tuple[float, ...]]]


def spatial_stream(n: int = 800, seed: int = 3) -> Stream:
    """Interleaved series with ragged neighbour counts, NaN neighbours, spikes and episodes."""
    rng = np.random.default_rng(seed)
    series: list[Hashable] = ["a", "b", ("c", 2), 7, "few"]
    width = {"a": 5, "b": 3, ("c", 2): 2, 7: 4, "few": 1}
    keys = [series[i] for i in rng.integers(0, len(series), n)]
    ts, xs, nbs = np.empty(n), np.empty(n), []
    for i, key in enumerate(keys):
        ts[i] = 60.0 * i
        level = 40.0 + (80.0 if 500 <= i < 560 else 0.0) + rng.normal(0, 2)  # an episode
        nb = list(around(rng, level, width[key]))
        if rng.random() < 0.1:
            nb[0] = float("nan")  # a neighbour that has not reported
        spike = 60.0 if rng.random() < 0.03 else 0.0
        xs[i] = level * (1.1 if key == "b" else 1.0) + spike + rng.normal(0, 0.5)
        nbs.append(tuple(nb))
    return keys, ts, xs, nbs


def per_event(d: NeighbourConsensus, stream: Stream) -> np.ndarray:
    keys, ts, xs, nbs = stream
    out = np.empty(len(keys))
    for i, key in enumerate(keys):
        obs = Observation(float(ts[i]), float(xs[i]), nbs[i])
        out[i] = d.score_one(obs, key)
        d.learn_one(obs, key)
    return out


def batched(
    d: NeighbourConsensus, stream: Stream, sizes: tuple[int, ...] = (1, 9, 100, 300)
) -> np.ndarray:
    keys, ts, xs, nbs = stream
    out, start, i = [], 0, 0
    while start < len(keys):
        stop = start + sizes[i % len(sizes)]
        rows = d.rows_of(keys[start:stop])
        nb = pad_neighbours(nbs[start:stop])
        out.append(d.process(rows, ts[start:stop], xs[start:stop], nb))
        start, i = stop, i + 1
    return np.concatenate(out)


# ---------------------------------------------------------------- the protocol


def test_per_event_path_equals_batched_path() -> None:
    stream = spatial_stream()
    one = per_event(NeighbourConsensus(), stream)
    many = batched(NeighbourConsensus(), stream)
    np.testing.assert_array_equal(one, many)
    assert (one >= 4.0).any()
    assert (one >= 0).all()


def test_snapshot_restore_gives_identical_subsequent_scores() -> None:
    keys, ts, xs, nbs = spatial_stream()
    half = len(keys) // 2
    d = NeighbourConsensus()
    per_event(d, (keys[:half], ts[:half], xs[:half], nbs[:half]))
    restored = d.clone()
    for key in set(keys):
        restored.restore(d.snapshot(key), key)
    rest = (keys[half:], ts[half:], xs[half:], nbs[half:])
    np.testing.assert_array_equal(per_event(d, rest), per_event(restored, rest))


def test_state_bytes_clone_and_build() -> None:
    d = NeighbourConsensus(min_neighbours=3)
    assert d.state_size() == 20
    assert build("neighbours", d.params()).params() == d.params()
    assert repr(d).startswith("NeighbourConsensus(min_neighbours=3, ")
    assert d.alert_level == d.alert_z == 4.0


def test_rejects_bad_parameters() -> None:
    with pytest.raises(AnomalyError, match="neighbours: min_neighbours must be at least 1, not 0"):
        NeighbourConsensus(min_neighbours=0)
    with pytest.raises(AnomalyError, match=r"neighbours: alpha must be in \(0, 1\], not 1\.5"):
        NeighbourConsensus(alpha=1.5)


def test_process_needs_the_neighbours() -> None:
    d = NeighbourConsensus()
    rows = d.rows_of(["a", "b"])
    with pytest.raises(AnomalyError, match="needs the neighbours' values"):
        d.process(rows, np.zeros(2), np.zeros(2))
    with pytest.raises(AnomalyError, match=r"expected a 2 x k array of values, not shape \(2,\)"):
        d.process(rows, np.zeros(2), np.zeros(2), np.zeros(2))


# ---------------------------------------------------------------- scores


def test_scores_zero_during_the_grace_period() -> None:
    d = NeighbourConsensus(grace_period=10)
    train(d, n=9)
    outlier = Observation(600.0, 500.0, (40.0, 41.0, 39.0))
    assert d.score_one(outlier) == 0.0
    assert d.classify_one(outlier) == "normal"
    d.learn_one(Observation(600.0, 40.0, (40.0, 41.0, 39.0)))
    assert d.score_one(outlier) > 100


def test_a_station_with_a_constant_bias_is_not_anomalous() -> None:
    d = NeighbourConsensus()
    train(d, "high", factor=1.1, level=50.0)  # always reads 10 % above its neighbours
    train(d, "true", factor=1.0, level=50.0)
    reading = Observation(12_000.0, 55.0, (49.0, 50.0, 51.0, 50.5))
    assert d.score_one(reading, "high") < 1.0
    assert d.score_one(reading, "true") > 4.0
    expected = d.expect_one(reading, "high")
    assert expected is not None
    assert expected.expected == pytest.approx(55.25, abs=0.5)  # the median, 50.25, plus ~5
    assert expected.low < 55.0 < expected.high


def test_scale_is_floored_by_the_neighbours_spread() -> None:
    d = NeighbourConsensus()
    train(d)
    calm = Observation(12_000.0, 60.0, (39.0, 40.0, 41.0, 40.0))
    scattered = Observation(12_000.0, 60.0, (25.0, 35.0, 45.0, 55.0))  # MAD 10
    assert d.score_one(calm) > 4.0
    assert d.score_one(scattered) == pytest.approx(20 / (1.4826 * 10), rel=0.05)


def test_nan_padded_neighbours_count_only_their_values() -> None:
    d = NeighbourConsensus()
    train(d)
    x = Observation(12_000.0, 60.0, (40.0, 41.0, 39.0))
    padded = Observation(12_000.0, 60.0, (40.0, float("nan"), 41.0, 39.0, float("nan")))
    assert d.score_one(padded) == d.score_one(x) > 4.0
    rows = d.rows_of([None, None])
    nb = pad_neighbours([(40.0, 41.0, 39.0), (40.0, float("nan"), 41.0, 39.0)])
    scores = d.process(rows, np.full(2, 12_000.0), np.full(2, 60.0), nb, learn=False)
    assert scores[0] == scores[1] == d.score_one(x)


def test_too_few_neighbours_score_zero_and_teach_nothing() -> None:
    d = NeighbourConsensus(min_neighbours=2)
    train(d)
    before = d.snapshot()
    for nb in [(), (40.0,), (40.0, float("nan"))]:
        x = Observation(12_000.0, 500.0, nb)
        assert d.score_one(x) == 0.0
        assert d.classify_one(x) == "normal"
        d.learn_one(x)
    assert d.snapshot() == before
    expected = d.expect_one(Observation(12_000.0, 0.0, (40.0,)))
    assert expected is not None
    assert (expected.low, expected.high) == (-np.inf, np.inf)


def test_pad_neighbours_pads_ragged_lists_with_nan() -> None:
    out = pad_neighbours([(1.0,), (1.0, 2.0, 3.0), ()])
    assert out.shape == (3, 3)
    assert np.isnan(out[0, 1:]).all()
    assert np.isnan(out[2]).all()
    assert pad_neighbours([]).shape == (0, 0)


# ---------------------------------------------------------------- local vs regional


def test_local_source_versus_regional_episode() -> None:
    d = NeighbourConsensus()
    train(d, "station")
    rng = np.random.default_rng(5)
    normal = Observation(12_000.0, 41.0, around(rng, 40.0))
    local = Observation(12_000.0, 95.0, around(rng, 40.0))  # a fire next to the station
    regional = Observation(12_000.0, 121.0, around(rng, 120.0))  # dust over the district
    deficit = Observation(12_000.0, 40.0, around(rng, 120.0))  # the station misses it
    assert d.classify_one(normal, "station") == "normal"
    assert d.classify_one(local, "station") == "local"
    assert d.classify_one(regional, "station") == "regional"
    assert d.classify_one(deficit, "station") == "local"
    assert d.score_one(regional, "station") < d.alert_level <= d.score_one(local, "station")


def test_classify_batch_matches_classify_one() -> None:
    keys, ts, xs, nbs = spatial_stream()
    d = NeighbourConsensus()
    per_event(d, (keys[:500], ts[:500], xs[:500], nbs[:500]))
    rest = slice(480, 600)  # repeated series, some in an episode
    labels = d.classify_batch(d.rows_of(keys[rest]), xs[rest], pad_neighbours(nbs[rest]))
    one = [
        d.classify_one(Observation(t, x, nb), key)
        for key, t, x, nb in zip(keys[rest], ts[rest], xs[rest], nbs[rest], strict=True)
    ]
    assert labels.tolist() == one
    assert {"normal", "local", "regional"} <= set(one)


def test_pure_classify_is_the_detectors_rule() -> None:
    d = NeighbourConsensus()
    train(d, "s")
    bias, spread, baseline, baseline_spread = np.frombuffer(d.snapshot("s")[:16], np.float32)
    rng = np.random.default_rng(9)
    seen = set()
    for _ in range(200):
        level = rng.choice([40.0, 48.0, 120.0])
        x = float(level + rng.choice([0.0, 10.0, 60.0]) * rng.choice([-1, 1]))
        nb = around(rng, level, int(rng.integers(0, 5)))
        got = classify(
            x,
            nb,
            float(baseline),
            baseline_spread=float(baseline_spread),
            bias=float(bias),
            spread=float(spread),
        )
        assert got == d.classify_one(Observation(12_000.0, x, nb), "s")
        seen.add(got)
    assert seen == {"normal", "local", "regional"}


@pytest.mark.parametrize(
    ("value", "neighbours", "expected"),
    [
        (80.0, [30.0, 32.0, 29.0], "local"),
        (10.0, [30.0, 32.0, 29.0], "local"),
        (80.0, [78.0, 85.0, 82.0], "regional"),
        (31.0, [30.0, 32.0, 29.0], "normal"),
        (21.0, [20.0, 21.0, 22.0], "normal"),  # a clean day is no episode
        (80.0, [30.0], "normal"),  # one neighbour is no consensus
        (80.0, [30.0, float("nan")], "normal"),
        (80.0, [], "normal"),
    ],
)
def test_pure_classify(value: float, neighbours: list[float], expected: str) -> None:
    assert classify(value, neighbours, 30.0, baseline_spread=5.0) == expected


def test_pure_classify_accounts_for_the_bias() -> None:
    assert classify(80.0, [70.0, 71.0, 69.0], 70.0, baseline_spread=5.0) == "local"
    assert classify(80.0, [70.0, 71.0, 69.0], 70.0, baseline_spread=5.0, bias=10.0) == "normal"

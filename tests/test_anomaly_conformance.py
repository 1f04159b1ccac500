"""Conformance suite: every registered anomaly detector keeps the protocol's promises.

As river's ``river/checks/`` do for its estimators, the same checks run over every
detector in :data:`stream.anomaly.REGISTRY` (names starting with ``_`` are private
helpers), so a new detector is checked as soon as it is registered:

1. its parameters round-trip: constructor, ``repr`` and :func:`~stream.anomaly.build`;
2. ``clone`` gives an equal detector with no state, sharing none with the original;
3. a series' state round-trips through ``snapshot`` and ``restore`` under another key,
   is ``state_size`` bytes, and state of the wrong size is refused;
4. it is deterministic;
5. ``process`` on batches interleaving several series, with repeats (and ragged,
   NaN-padded neighbours), gives exactly what ``score_one`` then ``learn_one`` give
   observation by observation;
6. its scores are finite and ``>= 0``, also on constant, huge, negative and
   out-of-order input, and its alert level is positive;
7. on a simulated series with anomalies of the kind it is for injected at known
   indices (:mod:`tests.anomaly_series`), its ROC-AUC beats chance by a margin;

and a :class:`~stream.anomaly.combine.Combiner` of detectors round-trips its state
and calibrates its scores into ``[0, 1]``.

:data:`CASES` gives each detector its parameters, its labelled series and the ROC-AUC
it must beat. A detector not listed there is checked with its defaults on the generic
series (PM2.5 spikes, with the district's neighbours); one that cannot be built
without arguments fails every check, naming :data:`CASES`, and one whose anomalies
are of another kind (gaps, a physical range) fails the ROC-AUC check, naming it too.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import stream.anomaly
from stream.anomaly import REGISTRY, AnomalyError, Detector, build
from stream.anomaly.combine import Combiner
from telemetry.catalogue import metric_spec
from tests import anomaly_series as series
from tests.anomaly_series import FloatArray, LabelledSeries


def _import_detector_modules() -> None:
    """Import every module of :mod:`stream.anomaly` that registers a detector.

    The package front should import them all (checked by
    :func:`test_the_package_front_registers_every_detector`); importing them here
    as well means a detector is checked even before the front imports it.
    """
    for module in pkgutil.iter_modules(stream.anomaly.__path__):
        path = Path(stream.anomaly.__path__[0]) / f"{module.name}.py"
        if path.is_file() and "\n@register\n" in path.read_text(encoding="utf-8"):
            importlib.import_module(f"stream.anomaly.{module.name}")


_import_detector_modules()

DETECTORS = sorted(name for name in REGISTRY if not name.startswith("_"))
"""Every public registered detector, by name: what each check is parametrised over."""
SEED = 0
"""The seed of every labelled series the checks use."""


# ---------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """How one detector is checked.

    Attributes:
        series: a builder of labelled series, by seed, with anomalies of the kind the
            detector is for.
        params: the constructor arguments (the defaults where not given).
        min_auc: the ROC-AUC on ``series(SEED)`` that the detector must exceed.
    """

    series: Callable[[int], LabelledSeries]
    params: Mapping[str, Any] = field(default_factory=dict)
    min_auc: float = 0.6


_PM2_5 = metric_spec("pollution", "pm2_5")

CASES: dict[str, Case] = {
    "rolling_mad": Case(series.spikes, min_auc=0.75),
    "extreme": Case(series.records, min_auc=0.9),
    "cusum": Case(series.level_shifts, min_auc=0.65),
    "seasonal": Case(series.unusual_hours, {"utc_offset_h": 8.0}, min_auc=0.9),
    "stuck": Case(series.stuck_segments, {"min_run": 6}, min_auc=0.9),
    "silence": Case(series.gaps, min_auc=0.9),
    "out_of_range": Case(
        series.out_of_range, {"low": float(_PM2_5.low), "high": float(_PM2_5.high)}, 0.99
    ),
    "jump": Case(series.jumps, {"max_rate_per_s": 0.1}, min_auc=0.9),  # degC per second
    "neighbours": Case(series.local_offsets, min_auc=0.9),
}
"""Per detector: its parameters, its labelled series and the ROC-AUC it must beat."""

GENERIC = Case(series.spikes, min_auc=0.5)
"""The case of a detector not in :data:`CASES`: defaults, PM2.5 spikes, above chance."""


def case_of(name: str) -> Case:
    """The detector's case: its entry in :data:`CASES`, else :data:`GENERIC`.

    Fails the test if the detector is not listed and cannot be built without arguments.
    """
    case = CASES.get(name)
    if case is not None:
        return case
    required = [
        p.name
        for p in inspect.signature(REGISTRY[name]).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if required:
        pytest.fail(
            f"detector {name!r} cannot be built without {', '.join(required)} and has no "
            f"entry in CASES: add one with its parameters and a labelled series of the "
            f"anomalies it is for (tests/anomaly_series.py)"
        )
    return GENERIC


def make(name: str) -> Detector:
    """A fresh detector with its case's parameters."""
    return REGISTRY[name](**case_of(name).params)


def neighbours_for(d: Detector, s: LabelledSeries) -> FloatArray | None:
    """The neighbours' values to pass ``d`` for ``s``: None unless ``d`` reads them."""
    if not d.uses_neighbours:
        return None
    if s.neighbours is None:
        pytest.fail(
            f"detector {d.name!r} reads neighbours, but its series carries none: give it "
            f"a case in CASES whose series has them"
        )
    return s.neighbours


def feed(d: Detector, s: LabelledSeries, key: Hashable = None) -> FloatArray:
    """Score, then learn, every observation of ``s`` as series ``key``; the scores."""
    rows = d.rows_of([key] * len(s))
    return d.process(rows, s.ts, s.x, neighbours_for(d, s))


@functools.cache
def fresh_scores(name: str) -> FloatArray:
    """What a fresh detector scores on its case's series; computed once, read-only."""
    scores = feed(make(name), case_of(name).series(SEED))
    scores.setflags(write=False)
    return scores


def roc_auc(scores: FloatArray, labels: npt.NDArray[np.bool_]) -> float:
    """The area under the ROC curve, rank-based (Mann-Whitney), tied scores averaged.

    The probability that a random positive scores above a random negative, ties
    counting half.
    """
    positives = int(np.count_nonzero(labels))
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        msg = "ROC-AUC needs both positive and negative labels"
        raise ValueError(msg)
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    _, tie, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.bincount(tie, weights=ranks) / counts)[tie]
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def test_roc_auc_is_rank_based_with_ties_averaged() -> None:
    labels = np.array([False, False, True, True])
    assert roc_auc(np.array([0.1, 0.2, 0.3, 0.4]), labels) == 1.0
    assert roc_auc(np.array([0.4, 0.3, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(np.zeros(4), labels) == 0.5
    # Positive 0.3 beats both negatives; positive 0.2 ties one (a half) and beats one.
    assert roc_auc(np.array([0.2, 0.1, 0.3, 0.2]), labels) == pytest.approx(3.5 / 4)
    with pytest.raises(ValueError, match="both"):
        roc_auc(np.zeros(2), np.array([True, True]))


# ---------------------------------------------------------------- the registry and the table
def test_the_package_front_registers_every_detector() -> None:
    """``import stream.anomaly`` alone registers every detector its modules define."""
    code = "import json, stream.anomaly as a; print(json.dumps(sorted(a.REGISTRY)))"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    missing = sorted(set(REGISTRY) - set(json.loads(out)))
    assert not missing, f"stream/anomaly/__init__.py does not import the modules of {missing}"


def test_every_case_names_a_registered_detector_and_a_usable_series() -> None:
    assert set(CASES) <= set(DETECTORS), f"stale CASES: {sorted(set(CASES) - set(DETECTORS))}"
    for name, case in [*CASES.items(), ("(generic)", GENERIC)]:
        s = case.series(SEED)
        judged = s.labels[s.warmup :]
        assert judged.any(), name
        assert not judged.all(), name
        assert not s.labels[: s.warmup].any(), name
        assert np.isfinite(s.x).all(), name
        assert (np.diff(s.ts) > 0).all(), name
        if s.neighbours is not None:
            assert s.neighbours.shape == (len(s), series.NEIGHBOURS), name
            assert np.isfinite(s.neighbours).all(), name


# ---------------------------------------------------------------- 1. parameters
@pytest.mark.parametrize("name", DETECTORS)
def test_params_round_trip(name: str) -> None:
    d = make(name)
    cls = type(d)
    assert cls.name == name
    params = d.params()
    signature = list(inspect.signature(cls).parameters)
    assert list(params) == signature, "params() must name every constructor argument"
    for key, value in case_of(name).params.items():
        assert params[key] == value, f"{key} is not stored as given"
    rebuilt = cls(**params)
    assert rebuilt.params() == params
    assert cls.__name__ in repr(d)
    assert repr(rebuilt) == repr(d)
    built = build(name, params)
    assert type(built) is cls
    assert built.params() == params


# ---------------------------------------------------------------- 2. clone
@pytest.mark.parametrize("name", DETECTORS)
def test_clone_is_equal_fresh_and_independent(name: str) -> None:
    s = case_of(name).series(SEED)
    first, rest = s.part(0, len(s) // 2), s.part(len(s) // 2)
    d = make(name)
    fresh = feed(d, first)
    c = d.clone()
    assert type(c) is type(d)
    assert c.params() == d.params()
    assert c.series == 0
    np.testing.assert_array_equal(feed(c, first), fresh, "the clone kept some state")
    # Both have learned the same; had they shared state, it would have learned it twice.
    np.testing.assert_array_equal(feed(c, rest), feed(d, rest))


# ---------------------------------------------------------------- 3. state
@pytest.mark.parametrize("name", DETECTORS)
def test_state_round_trips_through_bytes(name: str) -> None:
    s = case_of(name).series(SEED)
    cut = 2 * len(s) // 3
    d = make(name)
    feed(d, s.part(0, cut), "a")
    data = d.snapshot("a")
    assert isinstance(data, bytes)
    assert len(data) == d.state_size()
    # Restore into a clone that already holds another series, under a new key.
    other = d.clone()
    feed(other, s.part(0, cut // 2).mapped(lambda v: v + 1.0), "x")
    other.restore(data, "b")
    assert other.snapshot("b") == data
    rest = s.part(cut)
    np.testing.assert_array_equal(feed(other, rest, "b"), feed(d, rest, "a"))
    assert other.snapshot("b") == d.snapshot("a")
    for wrong in (data + b"\0", data[:-1]) if data else (b"\0",):
        with pytest.raises(AnomalyError):
            other.restore(wrong, "b")


# ---------------------------------------------------------------- 4. determinism
@pytest.mark.parametrize("name", DETECTORS)
def test_deterministic(name: str) -> None:
    np.testing.assert_array_equal(feed(make(name), case_of(name).series(SEED)), fresh_scores(name))


# ---------------------------------------------------------------- 5. batched = per event
Order = list[tuple[int, int]]
"""A batch's observations as (series, index) pairs."""


def interleaved(lengths: list[int], rng: np.random.Generator) -> Order:
    """Every observation of every series once, each series in order, the series randomly
    interleaved."""
    owners = np.repeat(np.arange(len(lengths)), lengths)
    rng.shuffle(owners)
    taken = [0] * len(lengths)
    order = []
    for owner in owners.tolist():
        order.append((owner, taken[owner]))
        taken[owner] += 1
    return order


def round_robin(lengths: list[int]) -> Order:
    """Every observation of every series once: the first of each, then the second..."""
    return [(k, i) for i in range(max(lengths)) for k, n in enumerate(lengths) if i < n]


def gather(
    d: Detector, many: list[LabelledSeries], order: Order
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """The event times, values and (if ``d`` reads them) neighbours' values of ``order``."""
    ts = np.array([many[k].ts[i] for k, i in order])
    x = np.array([many[k].x[i] for k, i in order])
    if not d.uses_neighbours:
        return ts, x, None
    rows = []
    for k, i in order:
        nb = neighbours_for(d, many[k])
        assert nb is not None
        rows.append(nb[i])
    return ts, x, np.array(rows)


def scaled(factor: float) -> Callable[[FloatArray], FloatArray]:
    """Values times ``factor``: another series, for :meth:`LabelledSeries.mapped`."""
    return lambda v: v * factor


def ragged(s: LabelledSeries) -> LabelledSeries:
    """``s`` with some neighbours absent (NaN): one in every 3rd row, two in every 6th,
    all in every 50th."""
    if s.neighbours is None:
        return s
    nb = s.neighbours.copy()
    nb[::3, 1] = np.nan
    nb[::6, -1] = np.nan
    nb[::50] = np.nan
    return replace(s, neighbours=nb)


@pytest.mark.parametrize("name", DETECTORS)
def test_batched_equals_per_event(name: str) -> None:
    base = case_of(name).series(SEED)
    keys: list[Hashable] = ["a", ("b", 2), 3, None, "e"]
    many = [base.part(7 * k, 7 * k + 160).mapped(scaled(1.0 + 0.1 * k)) for k in range(5)]
    many[3:] = [ragged(s) for s in many[3:]]
    rng = np.random.default_rng(SEED)
    order = interleaved([len(s) for s in many], rng)

    reference = make(name)
    expected = np.empty(len(order))
    for j, (k, i) in enumerate(order):
        observation = many[k].observation(i)
        expected[j] = reference.score_one(observation, keys[k])
        reference.learn_one(observation, keys[k])

    d = make(name)
    got = np.empty(len(order))
    start = 0
    while start < len(order):  # batches of 1 to 64 observations, most with repeats
        stop = min(start + int(rng.integers(1, 65)), len(order))
        batch = order[start:stop]
        rows = d.rows_of([keys[k] for k, _ in batch])
        got[start:stop] = d.process(rows, *gather(d, many, batch))
        start = stop
    assert expected.any(), "the check needs a detector past its warm-up"
    np.testing.assert_array_equal(got, expected, "in batches of 1 to 64")
    d = make(name)
    whole = d.process(d.rows_of([keys[k] for k, _ in order]), *gather(d, many, order))
    np.testing.assert_array_equal(whole, expected, "in one batch")


# ---------------------------------------------------------------- 6. finite, >= 0
def _jumbled(ts: FloatArray) -> FloatArray:
    """Event times with every 10th repeated and every 50th swapped with the next."""
    ts = ts.copy()
    ts[5::10] = ts[4::10][: len(ts[5::10])]
    late = np.arange(20, len(ts) - 1, 50)
    ts[late], ts[late + 1] = ts[late + 1], ts[late].copy()
    return ts


VARIANTS: dict[str, Callable[[LabelledSeries], LabelledSeries]] = {
    "as simulated": lambda s: s,
    "constant": lambda s: s.mapped(lambda v: np.full_like(v, float(np.median(s.x)))),
    "huge": lambda s: s.mapped(lambda v: v * 1e9),
    "negative": lambda s: s.mapped(lambda v: -v - 100.0),
    "out of order": lambda s: replace(s, ts=_jumbled(s.ts)),
}
"""Hostile versions of a case's series, for the check that scores stay finite and >= 0."""


@pytest.mark.parametrize("name", DETECTORS)
def test_scores_are_finite_and_non_negative(name: str) -> None:
    d = make(name)
    assert np.isfinite(d.alert_level)
    assert d.alert_level > 0
    s = case_of(name).series(SEED)
    many = [variant(s) for variant in VARIANTS.values()]  # one series each, in one batch
    order = round_robin([len(v) for v in many])
    scores = d.process(d.rows_of([k for k, _ in order]), *gather(d, many, order))
    owner = np.array([k for k, _ in order])
    for k, variant in enumerate(VARIANTS):
        mine = scores[owner == k]
        bad = np.flatnonzero(~(np.isfinite(mine) & (mine >= 0)))
        assert not len(bad), f"{name}: scores {mine[bad[:5]]} at {bad[:5]} on {variant} input"


# ---------------------------------------------------------------- 7. ROC-AUC
@pytest.mark.parametrize("name", DETECTORS)
def test_roc_auc_beats_chance_on_its_anomalies(name: str) -> None:
    case = case_of(name)
    s = case.series(SEED)
    scores = fresh_scores(name)
    auc = roc_auc(scores[s.warmup :], s.labels[s.warmup :])
    where = getattr(case.series, "__name__", repr(case.series))
    hint = (
        ""
        if name in CASES
        else "; it is not in CASES, so it ran on the generic spikes: add a case with a "
        "series of the anomalies it is for"
    )
    assert auc > case.min_auc, (
        f"{name}: ROC-AUC {auc:.3f} on {where}({SEED}), not above {case.min_auc}{hint}"
    )


# ---------------------------------------------------------------- 8. the combiner
def test_combiner_state_round_trip_and_calibrated_scores() -> None:
    """A combiner of every registered detector, its episode hold on, on the generic series."""
    s = GENERIC.series(SEED)
    combiner = Combiner([make(name) for name in DETECTORS], cooldown=5)

    def run(c: Combiner, part: LabelledSeries, key: Hashable) -> FloatArray:
        nb = part.neighbours if c.uses_neighbours else None
        score, which, raw = c.process([key] * len(part), part.ts, part.x, nb)
        assert ((which >= 0) & (which < len(DETECTORS))).all()
        assert (np.isfinite(raw) & (raw >= 0)).all()
        return score

    # Cut just after a spike, so the state is mid-episode (the hold counting down).
    cut = int(np.flatnonzero(s.labels)[int(np.count_nonzero(s.labels)) // 2]) + 1
    first = run(combiner, s.part(0, cut), "a")
    assert first[-1] > 0.5, "the cut should follow an alert"
    data = combiner.snapshot("a")
    assert len(data) == combiner.state_size()
    other = combiner.clone()
    run(other, s.part(0, cut // 2).mapped(lambda v: v + 1.0), "x")
    other.restore(data, "b")
    rest = s.part(cut)
    second = run(combiner, rest, "a")
    np.testing.assert_array_equal(run(other, rest, "b"), second)
    assert other.snapshot("b") == combiner.snapshot("a")
    # Many series at once, in any order, as a step stores its touched sensors.
    assert other.snapshots(["x", "b"]) == [other.snapshot("x"), combiner.snapshot("a")]
    assert other.snapshots([]) == []
    scores = np.concatenate([first, second])
    assert (np.isfinite(scores) & (scores >= 0) & (scores <= 1)).all()
    for wrong in (data + b"\0", data[:-1]):
        with pytest.raises(AnomalyError):
            other.restore(wrong, "b")

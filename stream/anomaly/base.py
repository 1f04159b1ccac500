"""The detector protocol: one implementation per detector, per event or batched.

A detector keeps the state of many series (a series is one sensor's metric) in
numpy arrays, one row per series. :meth:`Detector.learn_one` and
:meth:`Detector.score_one` are river's per-observation calls on one series;
:meth:`Detector.process` scores and then learns a batch of observations of many
series at once, row-wise in numpy, in rounds in which each series appears once. Both
paths run the same code, so they give the same scores.

A subclass declares its state (:attr:`Detector.state_fields`: name, shape per
series, dtype, initial value) and implements two methods on arrays of distinct
series: ``_score(rows, ts, x, neighbours)`` and ``_learn(rows, ts, x, neighbours)``
(``neighbours`` is None unless :attr:`Detector.uses_neighbours`). A detector whose two
read the same state may also override ``_score_learn``, both in one step, which a batch
runs once per round; it must give what ``_score`` and then ``_learn`` would (the
conformance tests check that). A detector without state scores a batch in one call.
Everything else (series slots, batching, state bytes, cloning) lives here.

Scores are ``>= 0``, higher is more anomalous, and ``0`` during a warm-up. Their unit
is the detector's own (a robust z, a CUSUM statistic, seconds of silence); each
detector names the score at which it considers a reading anomalous
(:attr:`Detector.alert_level`), and :mod:`stream.anomaly.combine` maps scores to a
calibrated ``[0, 1]`` with it.

>>> from stream.anomaly.robust import RollingMedianMAD
>>> d = RollingMedianMAD(window=20, grace_period=10)
>>> for i in range(30):
...     d.learn_one(Observation(ts=60.0 * i, value=10.0 + (i % 3)))
>>> round(d.score_one(Observation(ts=1800.0, value=11.0)), 2)
0.0
>>> d.score_one(Observation(ts=1800.0, value=40.0)) > 10
True
>>> restored = d.clone()
>>> restored.restore(d.snapshot())
>>> restored.score_one(Observation(ts=1800.0, value=40.0)) == d.score_one(
...     Observation(ts=1800.0, value=40.0))
True
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

__all__ = [
    "REGISTRY",
    "AnomalyError",
    "Detector",
    "Expectation",
    "Observation",
    "StateField",
    "build",
    "check",
    "register",
    "split_rounds",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]
UInt8Array = npt.NDArray[np.uint8]


class AnomalyError(ValueError):
    """A detector configuration or state that cannot be used; the message names what."""


def check(ok: bool, message: str) -> None:
    """Raise :class:`AnomalyError` with ``message`` unless ``ok``: a constructor's checks."""
    if not ok:
        raise AnomalyError(message)


@dataclass(frozen=True, slots=True)
class Observation:
    """One observation of one series.

    Attributes:
        ts: event time, seconds since the Unix epoch (UTC).
        value: the metric's value.
        neighbours: the latest values of the same metric at the series' neighbours
            (same district and kind), for the spatial detector; empty otherwise.
    """

    ts: float
    value: float
    neighbours: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a detector expected of an observation, for explanations.

    Attributes:
        expected: the value it expected (a median, a seasonal mean).
        low: the lower end of the band it considers normal.
        high: the upper end of that band.
    """

    expected: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class StateField:
    """One array of a detector's state: its shape per series, dtype and initial value."""

    name: str
    shape: tuple[int, ...] = ()
    dtype: str = "float64"
    initial: float = 0.0


@dataclass(slots=True)
class _Batch:
    rows: IntArray
    ts: FloatArray
    x: FloatArray
    neighbours: FloatArray | None = field(default=None)


class Detector(ABC):
    """A streaming anomaly detector over many series; see the module docstring.

    Constructor arguments are the whole configuration and are stored under the same
    names, so :meth:`params` rebuilds an equal detector and :func:`build` makes one
    from config by name.
    """

    name: ClassVar[str]
    """The name config uses for this detector."""
    alert_level: float = 1.0
    """The score from which a reading counts as anomalous (the combiner's 0.5)."""
    state_fields: tuple[StateField, ...] = ()
    """The per-series state arrays; a subclass sets them before ``super().__init__()``."""
    uses_neighbours: ClassVar[bool] = False
    """Whether :meth:`_score` reads :attr:`Observation.neighbours`."""

    def __init__(self) -> None:
        self._slots: dict[Hashable, int] = {}
        self._capacity = 0
        self._state: dict[str, np.ndarray[Any, Any]] = {}
        self._grow(1)

    # ------------------------------------------------------------ configuration
    def params(self) -> dict[str, Any]:
        """The constructor arguments, by name: ``type(d)(**d.params())`` equals ``d``."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def clone(self) -> Self:
        """A fresh detector with the same parameters and no state."""
        return type(self)(**self.params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------ series slots
    def _grow(self, capacity: int) -> None:
        for f in self.state_fields:
            new = np.full((capacity, *f.shape), f.initial, dtype=f.dtype)
            old = self._state.get(f.name)
            if old is not None:
                new[: len(old)] = old
            self._state[f.name] = new
        self._capacity = capacity

    def rows_of(self, keys: Sequence[Hashable]) -> IntArray:
        """The state rows of these series, allocating rows for new ones."""
        slots = self._slots
        get = slots.get
        found = [get(key) for key in keys]
        if None in found:
            for i, key in enumerate(keys):
                if found[i] is None:
                    found[i] = slots.setdefault(key, len(slots))
        self.fit()
        return np.array(found, dtype=np.intp)

    def fit(self) -> None:
        """Grow the state arrays to every allocated series (slots may be shared)."""
        if len(self._slots) > self._capacity:
            self._grow(max(2 * self._capacity, len(self._slots)))

    def share_series(self, other: Detector) -> None:
        """Keep series in the same rows as ``other``, so one :meth:`rows_of` serves both.

        A combiner's detectors see the same series; sharing saves a lookup per detector.

        Raises:
            AnomalyError: this detector already holds series.
        """
        if self._slots:
            msg = f"{self.name}: cannot share series slots once it holds series"
            raise AnomalyError(msg)
        self._slots = other._slots
        self.fit()

    @property
    def series(self) -> int:
        """How many series this detector holds state for."""
        return len(self._slots)

    # ------------------------------------------------------------ state bytes
    def state_size(self) -> int:
        """Bytes of state per series, as :meth:`snapshot` returns them."""
        return sum(
            int(np.prod(f.shape, dtype=np.int64)) * np.dtype(f.dtype).itemsize
            for f in self.state_fields
        )

    def snapshot(self, key: Hashable = None) -> bytes:
        """One series' state as bytes, for a changelog-backed table."""
        return self.snapshot_rows(self.rows_of([key])).tobytes()

    def snapshot_rows(self, rows: IntArray) -> UInt8Array:
        """The state of the series in ``rows``, one row of bytes each (as :meth:`snapshot`).

        Many series at once: a step stores the state of every sensor it touched.
        """
        state = self._state
        parts = [
            state[f.name][rows].reshape(len(rows), math.prod(f.shape)).view(np.uint8)
            for f in self.state_fields
        ]
        return np.concatenate(parts, axis=1) if parts else np.empty((len(rows), 0), np.uint8)

    def restore(self, data: bytes, key: Hashable = None) -> None:
        """Put back a series' state that :meth:`snapshot` returned."""
        if len(data) != self.state_size():
            msg = (
                f"{self.name}: state of {len(data)} bytes does not fit this detector, "
                f"which keeps {self.state_size()} bytes per series"
            )
            raise AnomalyError(msg)
        row = self.rows_of([key])[0]
        offset = 0
        for f in self.state_fields:
            target = self._state[f.name][row : row + 1]
            size = target.nbytes
            target[...] = np.frombuffer(data, dtype=f.dtype, count=target.size, offset=offset)
            offset += size

    # ------------------------------------------------------------ per observation
    def _one(self, x: Observation, key: Hashable) -> _Batch:
        neighbours = None
        if self.uses_neighbours:
            neighbours = np.asarray([x.neighbours], dtype=np.float64).reshape(1, -1)
        return _Batch(
            self.rows_of([key]),
            np.asarray([x.ts], dtype=np.float64),
            np.asarray([x.value], dtype=np.float64),
            neighbours,
        )

    def score_one(self, x: Observation, key: Hashable = None) -> float:
        """How anomalous ``x`` is for series ``key`` (``>= 0``); the state is unchanged."""
        b = self._one(x, key)
        return float(self._score(b.rows, b.ts, b.x, b.neighbours)[0])

    def learn_one(self, x: Observation, key: Hashable = None) -> None:
        """Update series ``key`` with ``x``."""
        b = self._one(x, key)
        self._learn(b.rows, b.ts, b.x, b.neighbours)

    def expect_one(self, x: Observation, key: Hashable = None) -> Expectation | None:
        """What the detector expected at ``x`` (for explanations), or None if nothing."""
        b = self._one(x, key)
        band = self._expect(b.rows, b.ts, b.neighbours)
        if band is None:
            return None
        expected, low, high = (float(a[0]) for a in band)
        return Expectation(expected, low, high)

    # ------------------------------------------------------------ batches
    def process(
        self,
        rows: IntArray,
        ts: FloatArray,
        x: FloatArray,
        neighbours: FloatArray | None = None,
        *,
        learn: bool = True,
        rounds: Sequence[IntArray] | None = None,
    ) -> FloatArray:
        """Score, then learn, a batch of observations of many series, in order.

        ``rows`` come from :meth:`rows_of`; a series may appear several times, and its
        observations are taken in the order given. Scores are what :meth:`score_one`
        would have given before each :meth:`learn_one`. ``rounds`` is what
        :func:`split_rounds` gives for ``rows``, for a caller that runs several detectors over
        the same series.
        """
        if not self.state_fields:  # nothing learned: order does not matter
            return self._score(rows, ts, x, neighbours)
        if rounds is None:
            rounds = split_rounds(rows)
        if len(rounds) == 1:  # every series once: the round is the whole batch, in order
            step = self._score_learn if learn else self._score
            return step(rows, ts, x, neighbours)
        scores = np.empty(len(rows), dtype=np.float64)
        for idx in rounds:
            r, t, v = rows[idx], ts[idx], x[idx]
            nb = None if neighbours is None else neighbours[idx]
            if learn:
                scores[idx] = self._score_learn(r, t, v, nb)
            else:
                scores[idx] = self._score(r, t, v, nb)
        return scores

    # ------------------------------------------------------------ what subclasses write
    @abstractmethod
    def _score(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        """Scores of one observation each of distinct series; must not change state."""

    @abstractmethod
    def _learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> None:
        """Learn one observation each of distinct series (``neighbours`` as for ``_score``)."""

    def _score_learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        """:meth:`_score`, then :meth:`_learn`: a detector whose two share work overrides it.

        A batch runs one such step per round, so whatever both read of the state (a
        bucket's mean, the neighbours' picture) is worth working out once.
        """
        scores = self._score(rows, ts, x, neighbours)
        self._learn(rows, ts, x, neighbours)
        return scores

    def _expect(
        self, rows: IntArray, ts: FloatArray, neighbours: FloatArray | None
    ) -> tuple[FloatArray, FloatArray, FloatArray] | None:
        """Expected value and normal band per series, where the detector has one."""
        return None


def split_rounds(rows: IntArray) -> list[IntArray]:
    """Split a batch into rounds in which each series appears at most once, in order.

    Each round holds positions in ``rows``, ascending; a series' ``n``-th observation is
    in round ``n``.

    >>> [r.tolist() for r in split_rounds(np.array([7, 3, 7, 7, 3]))]
    [[0, 1], [2, 4], [3]]
    """
    n = len(rows)
    if n <= 1 or len(set(rows.tolist())) == n:  # no series repeats: one round
        return [np.arange(n)]
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.concatenate(([True], sorted_rows[1:] != sorted_rows[:-1]))
    group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    rank = np.empty(n, dtype=np.intp)
    rank[order] = np.arange(n) - group_start
    by_round = np.argsort(rank, kind="stable")  # positions ascending within a round
    return np.split(by_round, np.cumsum(np.bincount(rank))[:-1])


REGISTRY: dict[str, type[Detector]] = {}
"""Every detector class, by :attr:`Detector.name`."""


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: make a detector buildable by name from config."""
    if cls.name in REGISTRY:
        msg = f"two detectors are named {cls.name!r}"
        raise AnomalyError(msg)
    REGISTRY[cls.name] = cls
    return cls


def _checked(cls: type[Detector], params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters converted to the constructor's annotated types; errors name them."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        fields: dict[str, Any] = {
            p.name: (
                Any if p.annotation is inspect.Parameter.empty else p.annotation,
                ... if p.default is inspect.Parameter.empty else p.default,
            )
            for p in inspect.signature(cls.__init__, eval_str=True).parameters.values()
            if p.name != "self"
        }
        adapter = _ADAPTERS[cls] = create_model(
            f"{cls.__name__}Params", __config__=ConfigDict(extra="forbid"), **fields
        )
    try:
        checked = adapter.model_validate(dict(params))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']} (got {e['input']!r})"
            for e in exc.errors()
        )
        msg = f"detector {cls.name!r}: {problems}"
        raise AnomalyError(msg) from None
    return {k: getattr(checked, k) for k in params}


_ADAPTERS: dict[type[Detector], type[BaseModel]] = {}


def build(name: str, params: Mapping[str, Any] | None = None) -> Detector:
    """Build a registered detector from its name and parameters.

    Parameters are checked against the constructor's types first, so a mistake in a
    config file is named with its value.

    >>> build("rolling_mad", {"window": 30})
    RollingMedianMAD(window=30, ...)
    >>> build("rolling_mad", {"window": "long"})
    Traceback (most recent call last):
    ...
    stream.anomaly.base.AnomalyError: detector 'rolling_mad': window: ... (got 'long')
    >>> build("median")
    Traceback (most recent call last):
    ...
    stream.anomaly.base.AnomalyError: unknown detector 'median'; known: ...
    """
    cls = REGISTRY.get(name)
    if cls is None:
        msg = f"unknown detector {name!r}; known: {', '.join(sorted(REGISTRY))}"
        raise AnomalyError(msg)
    return cls(**_checked(cls, params or {}))

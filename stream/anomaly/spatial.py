"""Spatial consensus: a sensor against the robust consensus of its neighbours.

A sensor's neighbours are the sensors of the same kind in its district; each
observation carries their latest values of the same metric
(:attr:`~stream.anomaly.base.Observation.neighbours`). Their median is the
consensus. A station may read systematically off it (siting, calibration), so each
series learns an exponentially weighted (EW) bias against the consensus and an EW
typical absolute residual around that bias. A reading scores::

    |x - bias - median(neighbours)| / scale
    scale = max(1.2533 x EW residual, 1.4826 x MAD(neighbours), floor)

where ``floor = min_scale + relative_floor x |median|``: robust standard deviations
away from what the neighbours say this station should read. Each series also keeps an
EW baseline of its neighbourhood's median and that median's EW absolute deviation,
so :meth:`NeighbourConsensus.classify_one` (and the pure :func:`classify`) can tell
what the picture means:

- ``local``: the station departs from its neighbours (score at the alert level): a
  local source (a fire, roadworks, a generator) or a faulty sensor;
- ``regional``: the station agrees with its neighbours, and their median is well
  above its own baseline: an episode over the whole district (a dust storm, stagnant
  air);
- ``normal``: neither.

Neighbour counts are ragged: a batch carries them as a rows x k array padded with
NaN (:func:`pad_neighbours`). A series with fewer than ``min_neighbours`` values
scores 0 and learns nothing from that reading.

Learning needs the neighbours, so ``_learn`` takes them like ``_score`` does (this
requires :class:`~stream.anomaly.base.Detector` to pass them on).

>>> from stream.anomaly.base import Observation
>>> d = NeighbourConsensus(grace_period=5)
>>> for i in range(30):  # this station reads 5 above its neighbours, always
...     level = 40.0 + i % 3
...     d.learn_one(Observation(60.0 * i, level + 5.0, (level - 1, level, level + 1)))
>>> round(d.score_one(Observation(1800.0, 46.0, (40.0, 41.0, 42.0))), 2)  # its bias: normal
0.0
>>> d.score_one(Observation(1800.0, 90.0, (40.0, 41.0, 42.0))) > 4  # alone and high
True
>>> d.classify_one(Observation(1800.0, 90.0, (40.0, 41.0, 42.0)))
'local'
>>> d.classify_one(Observation(1800.0, 125.0, (119.0, 120.0, 121.0)))  # all high
'regional'
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import ClassVar, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from stream.anomaly.base import (
    AnomalyError,
    Detector,
    FloatArray,
    IntArray,
    Observation,
    StateField,
    register,
)

__all__ = ["PATTERNS", "NeighbourConsensus", "SpatialPattern", "classify", "pad_neighbours"]

SpatialPattern = Literal["normal", "local", "regional"]
"""What a reading means next to its neighbours; see the module docstring."""
PATTERNS: tuple[SpatialPattern, ...] = ("normal", "local", "regional")
"""The patterns, indexed by the codes the vectorised classification uses."""

BoolArray = npt.NDArray[np.bool_]

_MAD_TO_SIGMA = 1.4826
_MEAN_ABS_TO_SIGMA = 1.2533  # sqrt(pi / 2): mean absolute deviation to sigma, for a normal
_INT32_MAX = np.iinfo(np.int32).max


def pad_neighbours(values: Sequence[Sequence[float]]) -> FloatArray:
    """Ragged lists of neighbour values as a rows x k array, padded with NaN.

    >>> pad_neighbours([(1.0, 2.0, 3.0), (4.0,), ()])
    array([[ 1.,  2.,  3.],
           [ 4., nan, nan],
           [nan, nan, nan]])
    """
    width = max((len(v) for v in values), default=0)
    out = np.full((len(values), width), np.nan)
    for i, v in enumerate(values):
        out[i, : len(v)] = v
    return out


def _row_median(a: FloatArray, count: IntArray) -> FloatArray:
    """The median of each row's ``count`` non-NaN values (NaN sorts last); NaN if none."""
    if a.shape[1] == 0:
        return np.full(len(a), np.nan)
    s = np.sort(a, axis=1)
    i = np.arange(len(a))
    lo = np.maximum((count - 1) // 2, 0)
    hi = np.maximum(count // 2, 0)
    median: FloatArray = (s[i, lo] + s[i, hi]) / 2
    return median


class _Picture(NamedTuple):
    """A reading's neighbourhood, vectorised: what scores and classes are made of."""

    enough: BoolArray
    """Whether a row has at least ``min_neighbours`` neighbour values."""
    median: FloatArray
    """The neighbours' median (NaN without neighbours)."""
    scale: FloatArray
    """The consensus scale, a robust standard deviation of the station's residual."""
    baseline_scale: FloatArray
    """The scale of the neighbourhood median's departures from its baseline."""


def _picture(
    neighbours: FloatArray,
    spread: FloatArray,
    baseline: FloatArray,
    baseline_spread: FloatArray,
    *,
    min_neighbours: int,
    min_scale: float,
    relative_floor: float,
) -> _Picture:
    """The consensus of each row's neighbours, and the scales to judge a reading by."""
    count = np.count_nonzero(~np.isnan(neighbours), axis=1)
    median = _row_median(neighbours, count)
    mad = _row_median(np.abs(neighbours - median[:, None]), count)
    enough = count >= min_neighbours
    floor = min_scale + relative_floor * np.abs(np.where(enough, median, 0.0))
    scale = np.maximum(
        np.maximum(_MEAN_ABS_TO_SIGMA * spread, _MAD_TO_SIGMA * np.where(enough, mad, 0.0)),
        floor,
    )
    baseline_scale = np.maximum(
        _MEAN_ABS_TO_SIGMA * baseline_spread, min_scale + relative_floor * np.abs(baseline)
    )
    return _Picture(enough, median, scale, baseline_scale)


def _codes(
    x: FloatArray,
    picture: _Picture,
    bias: FloatArray,
    baseline: FloatArray,
    *,
    alert_z: float,
    regional_z: float,
) -> npt.NDArray[np.intp]:
    """Indices into :data:`PATTERNS`: local before regional, normal without neighbours."""
    median = np.where(picture.enough, picture.median, 0.0)
    local = np.abs(x - bias - median) / picture.scale >= alert_z
    regional = (median - baseline) / picture.baseline_scale >= regional_z
    code = np.where(local, 1, np.where(regional, 2, 0))
    return np.where(picture.enough & np.isfinite(x), code, 0)


def classify(
    value: float,
    neighbours: Sequence[float],
    baseline: float,
    *,
    baseline_spread: float,
    bias: float = 0.0,
    spread: float = 0.0,
    alert_z: float = 4.0,
    regional_z: float = 3.0,
    min_neighbours: int = 2,
    min_scale: float = 1e-6,
    relative_floor: float = 0.01,
) -> SpatialPattern:
    """What one reading means next to its neighbours: ``local``, ``regional`` or ``normal``.

    The rule :class:`NeighbourConsensus` applies with its learned state, as a pure
    function of that state:

    - ``local`` if ``|value - bias - median(neighbours)| / scale >= alert_z``: the
      station departs from its neighbours (in either direction);
    - else ``regional`` if ``(median - baseline) / baseline_scale >= regional_z``: the
      station agrees with neighbours that are all well above their usual level;
    - else ``normal``, and also with fewer than ``min_neighbours`` neighbour values.

    Here ``scale`` is ``max(1.2533 x spread, 1.4826 x MAD(neighbours), floor)`` and
    ``baseline_scale`` is ``max(1.2533 x baseline_spread, floor)``, each ``floor`` being
    ``min_scale + relative_floor x |median or baseline|``.

    Args:
        value: the station's reading.
        neighbours: its neighbours' latest values; NaN values are ignored.
        baseline: the usual level of the neighbourhood median.
        baseline_spread: the mean absolute deviation of the neighbourhood median
            from ``baseline``.
        bias: the station's usual offset from the neighbours' median.
        spread: the station's mean absolute residual around ``bias``.
        alert_z: robust z from which the station departs from its neighbours.
        regional_z: z from which the neighbourhood median is well above its baseline.
        min_neighbours: the fewest neighbour values that make a consensus.
        min_scale: the smallest scale, in the metric's unit.
        relative_floor: the smallest scale as a fraction of the level.

    Returns:
        ``"local"``, ``"regional"`` or ``"normal"``.

    >>> classify(80.0, [30.0, 32.0, 29.0], baseline=30.0, baseline_spread=5.0)
    'local'
    >>> classify(80.0, [78.0, 85.0, 82.0], baseline=30.0, baseline_spread=5.0)
    'regional'
    >>> classify(31.0, [30.0, 32.0, 29.0], baseline=30.0, baseline_spread=5.0)
    'normal'
    """
    one = np.ones(1)
    picture = _picture(
        np.asarray([neighbours], dtype=np.float64).reshape(1, -1),
        spread * one,
        baseline * one,
        baseline_spread * one,
        min_neighbours=min_neighbours,
        min_scale=min_scale,
        relative_floor=relative_floor,
    )
    code = _codes(
        value * one, picture, bias * one, baseline * one, alert_z=alert_z, regional_z=regional_z
    )
    return PATTERNS[int(code[0])]


def _scored(x: FloatArray, bias: FloatArray, p: _Picture, warm: BoolArray) -> FloatArray:
    """How far ``x`` lies from its neighbours' median plus its own bias, in their scale.

    0 where there are too few neighbours, the series is still warming up, or ``x`` is
    not a number.
    """
    ok = p.enough & warm & np.isfinite(x)
    return np.abs(np.where(ok, x - bias - p.median, 0.0)) / p.scale


@register
class NeighbourConsensus(Detector):
    """Distance from the neighbours' median, after the station's learned bias, in robust sigmas.

    See the module docstring for the score and the classification. The bias and the
    typical residual are learned with weight ``alpha``, the neighbourhood baseline
    with ``baseline_alpha`` (slower, so that an episode of a few hours stands out from
    it); during the grace period they are plain means. After it, a departure is
    clipped at ``alert_z`` (``regional_z`` for the baseline) scales before it is
    learned, so an anomaly barely moves what it is measured against. A proportional
    bias (a station reading 10 % high) is learned as the additive bias it amounts to
    at the current level.

    Args:
        min_neighbours: the fewest neighbour values that make a consensus.
        alpha: the weight of a new reading in the bias and typical residual.
        baseline_alpha: the weight of a new neighbourhood median in its baseline.
        grace_period: readings with a consensus before the first non-zero score.
        min_scale: the smallest scale, in the metric's unit.
        relative_floor: the smallest scale as a fraction of the neighbours' median.
        alert_z: the robust z from which a reading is anomalous (``alert_level``).
        regional_z: the z from which the neighbourhood median is a regional episode.
    """

    name: ClassVar[str] = "neighbours"
    uses_neighbours: ClassVar[bool] = True

    def __init__(
        self,
        min_neighbours: int = 2,
        alpha: float = 0.05,
        baseline_alpha: float = 0.01,
        grace_period: int = 20,
        min_scale: float = 1e-6,
        relative_floor: float = 0.01,
        alert_z: float = 4.0,
        regional_z: float = 3.0,
    ) -> None:
        checks = (
            (min_neighbours >= 1, "min_neighbours", min_neighbours, "at least 1"),
            (0 < alpha <= 1, "alpha", alpha, "in (0, 1]"),
            (0 < baseline_alpha <= 1, "baseline_alpha", baseline_alpha, "in (0, 1]"),
            (grace_period >= 1, "grace_period", grace_period, "at least 1"),
            (0 < min_scale < math.inf, "min_scale", min_scale, "a positive number"),
            (0 <= relative_floor < math.inf, "relative_floor", relative_floor, "finite, >= 0"),
            (0 < alert_z < math.inf, "alert_z", alert_z, "a positive number"),
            (0 < regional_z < math.inf, "regional_z", regional_z, "a positive number"),
        )
        for ok, label, value, rule in checks:
            if not ok:
                msg = f"neighbours: {label} must be {rule}, not {value!r}"
                raise AnomalyError(msg)
        self.min_neighbours = min_neighbours
        self.alpha = alpha
        self.baseline_alpha = baseline_alpha
        self.grace_period = grace_period
        self.min_scale = min_scale
        self.relative_floor = relative_floor
        self.alert_z = alert_z
        self.regional_z = regional_z
        self.alert_level = alert_z
        self.state_fields = (
            StateField("bias", (), "float32", 0.0),
            StateField("spread", (), "float32", 0.0),
            StateField("baseline", (), "float32", 0.0),
            StateField("baseline_spread", (), "float32", 0.0),
            StateField("n", (), "int32", 0),
        )
        super().__init__()

    # ------------------------------------------------------------ the picture
    def _neighbours(self, rows: IntArray, neighbours: FloatArray | None) -> FloatArray:
        """The neighbours as a rows x k float array, or an error naming what is wrong."""
        if neighbours is None:
            msg = (
                "neighbours: this detector needs the neighbours' values (a rows x k array, "
                "NaN-padded), and none were passed"
            )
            raise AnomalyError(msg)
        nb = np.asarray(neighbours, dtype=np.float64)
        if nb.ndim != 2 or len(nb) != len(rows):
            msg = f"neighbours: expected a {len(rows)} x k array of values, not shape {nb.shape}"
            raise AnomalyError(msg)
        return nb

    def _state_of(self, rows: IntArray) -> dict[str, FloatArray]:
        """The learned state of these rows, as float64."""
        return {
            name: self._state[name][rows].astype(np.float64)
            for name in ("bias", "spread", "baseline", "baseline_spread")
        }

    def _picture(
        self,
        rows: IntArray,
        neighbours: FloatArray | None,
        state: dict[str, FloatArray] | None = None,
    ) -> _Picture:
        s = self._state_of(rows) if state is None else state
        return _picture(
            self._neighbours(rows, neighbours),
            s["spread"],
            s["baseline"],
            s["baseline_spread"],
            min_neighbours=self.min_neighbours,
            min_scale=self.min_scale,
            relative_floor=self.relative_floor,
        )

    def _warm(self, rows: IntArray) -> BoolArray:
        warm: BoolArray = self._state["n"][rows] >= self.grace_period
        return warm

    # ------------------------------------------------------------ the protocol
    def _score(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        bias = self._state["bias"][rows].astype(np.float64)
        return _scored(x, bias, self._picture(rows, neighbours), self._warm(rows))

    def _learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None = None
    ) -> None:
        self._score_learn(rows, ts, x, neighbours)

    def _score_learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        s = self._state_of(rows)
        p = self._picture(rows, neighbours, s)
        n = self._state["n"][rows].astype(np.intp)
        learn = p.enough & np.isfinite(x)
        warm = n >= self.grace_period
        score = _scored(x, s["bias"], p, warm)
        # Before the first reading a mean has nothing to deviate from: spreads start at 0.
        first = np.maximum(n, 1)
        weight = np.maximum(self.alpha, 1.0 / (n + 1))
        spread_weight = np.where(n > 0, np.maximum(self.alpha, 1.0 / first), 0.0)
        base_weight = np.maximum(self.baseline_alpha, 1.0 / (n + 1))
        base_spread_weight = np.where(n > 0, np.maximum(self.baseline_alpha, 1.0 / first), 0.0)

        limit = np.where(warm, self.alert_z * p.scale, np.inf)
        residual = np.clip(np.where(learn, x - p.median, 0.0) - s["bias"], -limit, limit)
        limit = np.where(warm, self.regional_z * p.baseline_scale, np.inf)
        departure = np.clip(np.where(learn, p.median, 0.0) - s["baseline"], -limit, limit)

        updates = {
            "bias": s["bias"] + weight * residual,
            "spread": s["spread"] + spread_weight * (np.abs(residual) - s["spread"]),
            "baseline": s["baseline"] + base_weight * departure,
            "baseline_spread": s["baseline_spread"]
            + base_spread_weight * (np.abs(departure) - s["baseline_spread"]),
        }
        for name, value in updates.items():
            self._state[name][rows] = np.where(learn, value, s[name])
        self._state["n"][rows] = np.where(learn, np.minimum(n + 1, _INT32_MAX), n)
        return score

    def _expect(
        self, rows: IntArray, ts: FloatArray, neighbours: FloatArray | None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The neighbours' median plus the bias, ± ``alert_z`` scales; open without them."""
        p = self._picture(rows, neighbours)
        ok = p.enough & self._warm(rows)
        expected = p.median + self._state["bias"][rows].astype(np.float64)
        reach = self.alert_z * p.scale
        return (
            np.where(ok, expected, np.nan),
            np.where(ok, expected - reach, -np.inf),
            np.where(ok, expected + reach, np.inf),
        )

    # ------------------------------------------------------------ classification
    def _classes(
        self, rows: IntArray, x: FloatArray, neighbours: FloatArray | None
    ) -> npt.NDArray[np.intp]:
        """Indices into :data:`PATTERNS`; ``normal`` during the grace period."""
        p = self._picture(rows, neighbours)
        s = self._state_of(rows)
        code = _codes(
            x, p, s["bias"], s["baseline"], alert_z=self.alert_z, regional_z=self.regional_z
        )
        return np.where(self._warm(rows), code, 0)

    def classify_batch(
        self, rows: IntArray, x: FloatArray, neighbours: FloatArray | None
    ) -> npt.NDArray[np.str_]:
        """What each reading means next to its neighbours (see :func:`classify`).

        Vectorised; the state is unchanged, and a series may appear several times
        (each reading is judged against the current state). A series still in its
        grace period is ``normal``.

        Args:
            rows: the series' rows, from :meth:`rows_of`.
            x: the readings.
            neighbours: their neighbours' values, rows x k, NaN-padded.

        Returns:
            ``"local"``, ``"regional"`` or ``"normal"`` per reading.
        """
        labels: npt.NDArray[np.str_] = np.asarray(PATTERNS)[self._classes(rows, x, neighbours)]
        return labels

    def classify_one(self, x: Observation, key: Hashable = None) -> SpatialPattern:
        """What ``x`` means next to its neighbours, for series ``key``; see :func:`classify`."""
        nb = np.asarray([x.neighbours], dtype=np.float64).reshape(1, -1)
        code = self._classes(self.rows_of([key]), np.asarray([x.value]), nb)
        return PATTERNS[int(code[0])]

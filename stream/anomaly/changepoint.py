"""Change-point detector: a two-sided CUSUM for level shifts, optionally seasonal.

A shift that is small against the noise but lasting — a haze episode building up, a
meter left running at night, a drifting sensor — is invisible reading by reading and
obvious in a cumulative sum. Each reading is standardised against a baseline (an
exponentially weighted mean and mean absolute deviation, per local hour bucket when
``period`` is set, so the daily cycle is not a shift); the upper and lower sums grow
by the part of each standardised residual beyond ``drift`` and fall back to 0 when
the series returns. The score is the larger sum; at ``threshold`` the change is
declared, the sums restart and the baseline of the hour jumps to the new level, so
one shift is reported once.

>>> from stream.anomaly.base import Observation
>>> d = Cusum(grace_period=10)
>>> for i in range(50):
...     d.learn_one(Observation(60.0 * i, 10.0 + (i % 2)))
>>> scores = []
>>> for i in range(50, 60):
...     x = Observation(60.0 * i, 11.5 + (i % 2))
...     scores.append(d.score_one(x))
...     d.learn_one(x)
>>> scores[0] < d.threshold <= max(scores)  # one reading is not a shift; ten are
True
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from stream.anomaly.base import (
    BoolArray,
    Detector,
    FloatArray,
    IntArray,
    StateField,
    check,
    register,
)
from stream.anomaly.seasonal import BUCKETS, UINT16_MAX, Period, bucket_of, scale_floor

__all__ = ["Cusum"]


@register
class Cusum(Detector):
    """Two-sided CUSUM of standardised residuals against a slow, optionally seasonal, baseline.

    Args:
        period: None for one baseline, or a seasonal period (``day``, ``day_weekend``,
            ``week``) for a baseline per local hour bucket.
        utc_offset_h: the local time zone's offset from UTC, for the buckets.
        alpha: weight of a new observation in the baseline once it is warm.
        drift: the allowance ``k``: standardised residuals below it do not accumulate.
        threshold: the sum ``h`` at which a change is declared (the alert level).
        grace_period: observations a baseline (bucket) needs before residuals count.
        clip: residuals are clipped at this many deviations before the baseline learns.
        min_scale: the smallest deviation, in the metric's unit.
        relative_floor: the smallest deviation as a fraction of ``|mean|``.
        poisson: the series counts events: the deviation is at least the Poisson spread.
    """

    name: ClassVar[str] = "cusum"

    def __init__(
        self,
        period: Period | None = None,
        utc_offset_h: float = 0.0,
        alpha: float = 0.02,
        drift: float = 0.5,
        threshold: float = 8.0,
        grace_period: int = 30,
        clip: float = 3.0,
        min_scale: float = 1e-6,
        relative_floor: float = 0.01,
        poisson: bool = False,
    ) -> None:
        check(
            period is None or period in BUCKETS,
            f"cusum: period must be None or one of {', '.join(BUCKETS)}, not {period!r}",
        )
        check(0 < alpha <= 1, f"cusum: alpha must be in (0, 1], not {alpha!r}")
        check(threshold > 0, f"cusum: threshold must be positive, not {threshold!r}")
        self.period = period
        self.utc_offset_h = utc_offset_h
        self.alpha = alpha
        self.drift = drift
        self.threshold = threshold
        self.grace_period = grace_period
        self.clip = clip
        self.min_scale = min_scale
        self.relative_floor = relative_floor
        self.poisson = poisson
        self.alert_level = threshold
        buckets = 1 if period is None else BUCKETS[period]
        self.state_fields = (
            StateField("mean", (buckets,), "float32", 0.0),
            StateField("dev", (buckets,), "float32", 0.0),
            StateField("n", (buckets,), "uint16", 0),
            StateField("up", (), "float32", 0.0),
            StateField("down", (), "float32", 0.0),
        )
        super().__init__()

    def _baseline(
        self, rows: IntArray, ts: FloatArray
    ) -> tuple[IntArray, FloatArray, FloatArray, IntArray]:
        if self.period is None:
            b = np.zeros(len(rows), dtype=np.intp)
        else:
            b = bucket_of(ts, self.period, self.utc_offset_h)
        mean = self._state["mean"][rows, b].astype(np.float64)
        dev = self._state["dev"][rows, b].astype(np.float64)
        scale = np.maximum(
            1.25 * dev, scale_floor(mean, self.min_scale, self.relative_floor, self.poisson)
        )
        return b, mean, scale, self._state["n"][rows, b].astype(np.intp)

    def _sums(
        self, rows: IntArray, x: FloatArray, mean: FloatArray, scale: FloatArray, warm: BoolArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        z = np.where(warm, (x - mean) / scale, 0.0)
        up = np.where(warm, np.maximum(0.0, self._state["up"][rows] + z - self.drift), 0.0)
        down = np.where(warm, np.maximum(0.0, self._state["down"][rows] - z - self.drift), 0.0)
        return z, up, down

    def _score(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        _, mean, scale, n = self._baseline(rows, ts)
        _, up, down = self._sums(rows, x, mean, scale, n >= self.grace_period)
        return np.maximum(up, down)

    def _learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> None:
        self._score_learn(rows, ts, x, neighbours)

    def _score_learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        s = self._state
        b, mean, scale, n = self._baseline(rows, ts)
        warm = n >= self.grace_period
        z, up, down = self._sums(rows, x, mean, scale, warm)
        score = np.maximum(up, down)
        weight = np.where(warm, self.alpha, 1.0 / (n + 1.0))
        residual = np.where(warm, np.clip(z, -self.clip, self.clip) * scale, x - mean)
        dev = s["dev"][rows, b]
        fired = score >= self.threshold
        s["mean"][rows, b] = np.where(fired, x, mean + weight * residual)
        s["dev"][rows, b] = np.where(n == 0, 0.0, dev + weight * (np.abs(residual) - dev))
        s["n"][rows, b] = np.minimum(n + 1, UINT16_MAX)
        s["up"][rows] = np.where(fired, 0.0, up)
        s["down"][rows] = np.where(fired, 0.0, down)
        return score

    def _expect(
        self, rows: IntArray, ts: FloatArray, neighbours: FloatArray | None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        _, mean, scale, _ = self._baseline(rows, ts)
        return mean, mean - self.drift * scale, mean + self.drift * scale

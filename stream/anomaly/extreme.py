"""Extreme-value detector: a reading beyond anything the series did for a long while.

The history (``blocks`` x ``block`` observations) is kept as the maximum and minimum
of each block, so it costs a few hundred bytes instead of thousands of values. A
reading at the edge of the history's range scores 1; beyond it, 1 plus the excess in
units of a typical block's range; inside it, less than 1 by the same measure. The
alert level is ``1 + margin``: a new record by a hundredth of a typical block's range.
Records are the most common sign of trouble in city data: the highest
PM2.5 in two days, a speed lower than any seen, a meter drawing more than ever.

>>> from stream.anomaly.base import Observation
>>> d = ExtremeValue(block=10, blocks=4)
>>> for i in range(40):
...     d.learn_one(Observation(60.0 * i, float(i % 10)))
>>> d.score_one(Observation(2400.0, 9.0))
1.0
>>> d.score_one(Observation(2400.0, 18.0))
2.0
>>> d.score_one(Observation(2400.0, 4.5))
0.5
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from stream.anomaly.base import (
    Detector,
    FloatArray,
    IntArray,
    StateField,
    check,
    register,
)

__all__ = ["ExtremeValue"]


@register
class ExtremeValue(Detector):
    """Distance beyond the range of the last ``blocks`` x ``block`` observations.

    Args:
        block: observations per block of history.
        blocks: blocks of history kept; the first score comes after ``min_blocks``.
        min_blocks: completed blocks before the first non-zero score.
        min_scale: the smallest scale (a block's typical range), in the metric's unit.
        margin: how far beyond the range, in typical block ranges, a reading must go
            to be anomalous: the alert level is ``1 + margin``, so a reading that only
            equals the record (a count back at 0, clean air at its usual floor) is not.
    """

    name: ClassVar[str] = "extreme"

    def __init__(
        self,
        block: int = 100,
        blocks: int = 20,
        min_blocks: int = 1,
        min_scale: float = 1e-9,
        margin: float = 0.01,
    ) -> None:
        check(block >= 2, f"extreme: block must be at least 2, not {block!r}")
        check(
            1 <= min_blocks <= blocks,
            f"extreme: min_blocks must be in [1, blocks={blocks}], not {min_blocks!r}",
        )
        check(margin >= 0, f"extreme: margin must be >= 0, not {margin!r}")
        self.block = block
        self.blocks = blocks
        self.min_blocks = min_blocks
        self.min_scale = min_scale
        self.margin = margin
        self.alert_level = 1.0 + margin
        self.state_fields = (
            StateField("hi", (blocks,), "float32", np.nan),
            StateField("lo", (blocks,), "float32", np.nan),
            StateField("cur_hi", (), "float32", -np.inf),
            StateField("cur_lo", (), "float32", np.inf),
            # Summaries of the completed blocks, refreshed when a block completes.
            StateField("hist_hi", (), "float32", -np.inf),
            StateField("hist_lo", (), "float32", np.inf),
            StateField("scale", (), "float32", min_scale),
            StateField("n", (), "int64", 0),
        )
        super().__init__()

    def _range(self, rows: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        s = self._state
        hi = np.maximum(s["hist_hi"][rows], s["cur_hi"][rows]).astype(np.float64)
        lo = np.minimum(s["hist_lo"][rows], s["cur_lo"][rows]).astype(np.float64)
        return hi, lo, s["scale"][rows].astype(np.float64)

    def _score(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        hi, lo, scale = self._range(rows)
        score = np.maximum(1.0 + (x - hi) / scale, 1.0 + (lo - x) / scale)
        ready = self._state["n"][rows] >= self.min_blocks * self.block
        return np.where(ready, np.maximum(score, 0.0), 0.0)

    def _learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> None:
        s = self._state
        s["cur_hi"][rows] = np.maximum(s["cur_hi"][rows], x)
        s["cur_lo"][rows] = np.minimum(s["cur_lo"][rows], x)
        n = s["n"][rows] + 1
        s["n"][rows] = n
        done = rows[n % self.block == 0]
        if len(done):
            slot = (s["n"][done] // self.block - 1) % self.blocks
            s["hi"][done, slot] = s["cur_hi"][done]
            s["lo"][done, slot] = s["cur_lo"][done]
            s["cur_hi"][done] = -np.inf
            s["cur_lo"][done] = np.inf
            hi_b, lo_b = s["hi"][done], s["lo"][done]
            filled = ~np.isnan(hi_b)
            s["hist_hi"][done] = np.max(np.where(filled, hi_b, -np.inf), axis=1)
            s["hist_lo"][done] = np.min(np.where(filled, lo_b, np.inf), axis=1)
            # The scale: the median range of the completed blocks (the lower middle one).
            spans = np.sort(np.where(filled, hi_b - lo_b, np.inf), axis=1)
            middle = spans[np.arange(len(done)), (filled.sum(axis=1) - 1) // 2]
            s["scale"][done] = np.maximum(middle, self.min_scale)

    def _expect(
        self, rows: IntArray, ts: FloatArray, neighbours: FloatArray | None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        hi, lo, _ = self._range(rows)
        with np.errstate(invalid="ignore"):  # no data yet: -inf + inf
            return (hi + lo) / 2, lo, hi

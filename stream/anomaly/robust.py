"""Robust rolling detector: distance from the rolling median in rolling MADs.

The median and the median absolute deviation (MAD) of the last ``window``
observations are what a series normally does; a reading's score is how many robust
standard deviations (``1.4826 x MAD``) it lies from the median. Both statistics
ignore up to half the window being outliers, so a burst of anomalies does not hide
itself by inflating the spread, as it would with a mean and standard deviation.

A floor on the scale (``min_scale`` plus ``relative_floor`` of the median) keeps a
series that has been perfectly flat from scoring every tiny change as infinite.

>>> from stream.anomaly.base import Observation
>>> d = RollingMedianMAD(window=10, grace_period=5)
>>> for i, v in enumerate([5, 6, 5, 7, 6, 5, 6, 7, 5, 6]):
...     d.learn_one(Observation(60.0 * i, v))
>>> round(d.score_one(Observation(600.0, 12.0)), 1)
4.0
>>> d.expect_one(Observation(600.0, 12.0))
Expectation(expected=6.0, low=0.06..., high=11.93...)
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

__all__ = ["RollingMedianMAD"]

_MAD_TO_SIGMA = 1.4826


@register
class RollingMedianMAD(Detector):
    """Robust z-score against the median and MAD of the last ``window`` observations.

    Args:
        window: observations in the rolling window.
        grace_period: observations before the first non-zero score.
        min_scale: the smallest robust standard deviation, in the metric's unit.
        relative_floor: the smallest robust standard deviation as a fraction of
            ``|median|``.
        alert_z: the robust z from which a reading is anomalous.
    """

    name: ClassVar[str] = "rolling_mad"

    def __init__(
        self,
        window: int = 60,
        grace_period: int = 20,
        min_scale: float = 1e-6,
        relative_floor: float = 0.01,
        alert_z: float = 4.0,
    ) -> None:
        check(window >= 3, f"rolling_mad: window must be at least 3, not {window!r}")
        check(
            1 <= grace_period <= window,
            f"rolling_mad: grace_period must be in [1, window={window}], not {grace_period!r}",
        )
        self.window = window
        self.grace_period = grace_period
        self.min_scale = min_scale
        self.relative_floor = relative_floor
        self.alert_z = alert_z
        self.alert_level = alert_z
        self.state_fields = (
            StateField("buf", (window,), "float32", np.nan),
            StateField("n", (), "int64", 0),
        )
        super().__init__()

    def _stats(self, rows: IntArray) -> tuple[FloatArray, FloatArray]:
        buf = self._state["buf"][rows].astype(np.float64)
        n = self._state["n"][rows]
        if (n >= self.window).all():
            med = np.median(buf, axis=1)
            mad = np.median(np.abs(buf - med[:, None]), axis=1)
        else:
            buf[n == 0] = 0.0  # a series with no data yet: no all-NaN rows
            med = np.nanmedian(buf, axis=1)
            mad = np.nanmedian(np.abs(buf - med[:, None]), axis=1)
        scale = np.maximum(_MAD_TO_SIGMA * mad, self.min_scale + self.relative_floor * np.abs(med))
        return med, scale

    def _score(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        med, scale = self._stats(rows)
        z = np.abs(x - med) / scale
        return np.where(self._state["n"][rows] >= self.grace_period, z, 0.0)

    def _learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> None:
        n = self._state["n"][rows]
        self._state["buf"][rows, n % self.window] = x
        self._state["n"][rows] = n + 1

    def _expect(
        self, rows: IntArray, ts: FloatArray, neighbours: FloatArray | None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        med, scale = self._stats(rows)
        return med, med - self.alert_z * scale, med + self.alert_z * scale

"""Seasonal baseline learned online: what this hour of this kind of day usually brings.

Each series keeps, per bucket of local time (hour of day on weekdays and weekends, or
hour of week), an exponentially weighted mean and mean absolute deviation. A reading
scores its distance from its bucket's mean in deviations, so the morning rush, the
park's opening hours and an office's working day are normal, and the same value at
3 a.m. on a Tuesday is not. Residuals are clipped at ``clip`` deviations before they
are learned, so an anomaly barely moves the baseline it is measured against.

A bucket scores 0 until it has seen ``grace_period`` observations: a week-long cycle
needs a few weeks of data before its buckets speak.

>>> from stream.anomaly.base import Observation
>>> d = SeasonalBaseline(period="day", grace_period=3)
>>> for day in range(5):
...     for hour in range(24):
...         ts = 86400.0 * day + 3600.0 * hour
...         d.learn_one(Observation(ts, 100.0 if 7 <= hour <= 9 else 10.0 + day % 2))
>>> d.score_one(Observation(5 * 86400.0 + 8 * 3600.0, 100.0))  # the rush hour: normal
0.0
>>> d.score_one(Observation(5 * 86400.0 + 3 * 3600.0, 100.0)) > 10  # the same at 3 a.m.
True
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal

import numpy as np

from stream.anomaly.base import (
    Detector,
    FloatArray,
    IntArray,
    StateField,
    check,
    register,
)

__all__ = ["BUCKETS", "Period", "SeasonalBaseline", "bucket_of", "scale_floor"]

Period = Literal["day", "day_weekend", "week"]
BUCKETS: dict[str, int] = {"day": 24, "day_weekend": 48, "week": 168}
"""How many buckets each period has."""
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)
UINT16_MAX: Final = int(np.iinfo(np.uint16).max)
"""Where a bucket's count stops (its state is a uint16)."""


def scale_floor(
    mean: FloatArray, min_scale: float, relative_floor: float, poisson: bool
) -> FloatArray:
    """The smallest scale a baseline may have around ``mean``.

    ``min_scale`` plus ``relative_floor`` of ``|mean|``; for counts (``poisson``) also
    the Poisson spread ``sqrt(|mean| + 1)``, so a gate that counts 3 visitors at night
    where it usually counts 0 is not a thousand deviations away.

    >>> scale_floor(np.array([0.0, 100.0]), 0.0, 0.01, poisson=True).round(2)
    array([ 1.  , 11.05])
    """
    floor = min_scale + relative_floor * np.abs(mean)
    if poisson:
        floor = floor + np.sqrt(np.abs(mean) + 1.0)
    return floor


def bucket_of(ts: FloatArray, period: Period, utc_offset_h: float) -> IntArray:
    """The bucket of each event time: its local hour of the day, weekday/weekend day or week.

    >>> bucket_of(np.array([0.0, 2 * 86400.0 + 3600.0]), "day_weekend", utc_offset_h=8)
    array([ 8, 33])
    """
    hours = np.floor((ts + utc_offset_h * 3600.0) / 3600.0).astype(np.int64)
    hour_of_day = hours % 24
    if period == "day":
        return hour_of_day.astype(np.intp)
    weekday = (hours // 24 + _EPOCH_WEEKDAY) % 7
    if period == "week":
        return (weekday * 24 + hour_of_day).astype(np.intp)
    return ((weekday >= 5) * 24 + hour_of_day).astype(np.intp)


@register
class SeasonalBaseline(Detector):
    """Distance from the bucket's learned mean, in learned mean absolute deviations.

    Args:
        period: ``day`` (24 hourly buckets), ``day_weekend`` (24 for weekdays and 24
            for weekends) or ``week`` (168 hourly buckets).
        utc_offset_h: the local time zone's offset from UTC in hours (8 for China),
            so buckets follow local hours.
        alpha: the weight of a new observation once a bucket is warm; its first
            ``1 / alpha`` observations are averaged equally.
        grace_period: observations a bucket needs before it scores.
        clip: residuals are clipped at this many deviations before being learned.
        min_scale: the smallest deviation, in the metric's unit.
        relative_floor: the smallest deviation as a fraction of ``|mean|``.
        poisson: the series counts events (visitors, vehicles): the deviation is at
            least the Poisson spread of the mean.
        alert_z: the score from which a reading is anomalous.
    """

    name: ClassVar[str] = "seasonal"

    def __init__(
        self,
        period: Period = "day_weekend",
        utc_offset_h: float = 0.0,
        alpha: float = 0.1,
        grace_period: int = 3,
        clip: float = 3.0,
        min_scale: float = 1e-6,
        relative_floor: float = 0.02,
        poisson: bool = False,
        alert_z: float = 4.0,
    ) -> None:
        check(
            period in BUCKETS,
            f"seasonal: period must be one of {', '.join(BUCKETS)}, not {period!r}",
        )
        check(0 < alpha <= 1, f"seasonal: alpha must be in (0, 1], not {alpha!r}")
        check(alert_z > 0, f"seasonal: alert_z must be positive, not {alert_z!r}")
        self.period = period
        self.utc_offset_h = utc_offset_h
        self.alpha = alpha
        self.grace_period = grace_period
        self.clip = clip
        self.min_scale = min_scale
        self.relative_floor = relative_floor
        self.poisson = poisson
        self.alert_z = alert_z
        self.alert_level = alert_z
        buckets = BUCKETS[period]
        self.state_fields = (
            StateField("mean", (buckets,), "float32", 0.0),
            StateField("dev", (buckets,), "float32", 0.0),
            StateField("n", (buckets,), "uint16", 0),
        )
        super().__init__()

    def _bucket_stats(
        self, rows: IntArray, ts: FloatArray
    ) -> tuple[IntArray, FloatArray, FloatArray, IntArray]:
        b = bucket_of(ts, self.period, self.utc_offset_h)
        mean = self._state["mean"][rows, b].astype(np.float64)
        dev = self._state["dev"][rows, b].astype(np.float64)
        scale = np.maximum(
            dev, scale_floor(mean, self.min_scale, self.relative_floor, self.poisson)
        )
        return b, mean, scale, self._state["n"][rows, b].astype(np.intp)

    def _score(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        _, mean, scale, n = self._bucket_stats(rows, ts)
        return self._z(x, mean, scale, n)

    def _z(self, x: FloatArray, mean: FloatArray, scale: FloatArray, n: IntArray) -> FloatArray:
        """``|x - mean| / scale``, 0 while the bucket is in its grace period."""
        return np.where(n >= self.grace_period, np.abs(x - mean) / scale, 0.0)

    def _learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> None:
        self._score_learn(rows, ts, x, neighbours)

    def _score_learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        b, mean, scale, n = self._bucket_stats(rows, ts)
        score = self._z(x, mean, scale, n)
        weight = np.maximum(1.0 / (n + 1.0), self.alpha)
        residual = x - mean
        clipped = np.where(
            n >= self.grace_period,
            np.clip(residual, -self.clip * scale, self.clip * scale),
            residual,
        )
        new_mean = mean + weight * clipped
        # The first observation sets the mean; the deviation starts from the second.
        dev = self._state["dev"][rows, b].astype(np.float64)
        new_dev = np.where(n == 0, 0.0, dev + weight * (np.abs(clipped) - dev))
        self._state["mean"][rows, b] = new_mean
        self._state["dev"][rows, b] = new_dev
        self._state["n"][rows, b] = np.minimum(n + 1, UINT16_MAX)
        return score

    def _expect(
        self, rows: IntArray, ts: FloatArray, neighbours: FloatArray | None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        _, mean, scale, _ = self._bucket_stats(rows, ts)
        return mean, mean - self.alert_z * scale, mean + self.alert_z * scale

"""The combiner: several detectors on one series, one calibrated score and a reason.

Each detector's score is divided by its alert level and mapped to ``[0, 1]`` by
``1 - 0.5 ** (ratio ** sharpness)``: a score at the alert level gives 0.5, twice the
level 0.94 (with the default sharpness 2), half of it 0.16. The combined score is the
largest of these; the detector behind it is named in the explanation, with the value
it expected, its normal band and by how much the reading left it.

After a series crosses 0.5, its episode is under way: for ``cooldown`` observations
its score is halved (and kept below 0.5) unless the reading is more anomalous than the
episode's peak so far, so a long incident raises one alert and a worse turn of it another,
instead of paging someone at every reading.

>>> from stream.anomaly.base import Observation
>>> from stream.anomaly.robust import RollingMedianMAD
>>> c = Combiner([RollingMedianMAD(window=20, grace_period=10)])
>>> for i in range(30):
...     _ = c.process_one(Observation(60.0 * i, 10.0 + i % 3), "pm-1")
>>> v = c.process_one(Observation(1800.0, 30.0), "pm-1")
>>> round(v.score, 2), v.detector
(1.0, 'rolling_mad')
>>> print(v.explanation)
rolling_mad: 30 is 13.07 above the expected band [5.07, 16.93] around 11 (score 12.8, alert level 4)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from stream.anomaly.base import (
    AnomalyError,
    BoolArray,
    Detector,
    Expectation,
    FloatArray,
    IntArray,
    Observation,
    StateField,
    split_rounds,
)

__all__ = ["Combiner", "Verdict", "calibrate"]

_HELD_MAX = float(np.nextafter(0.5, 0.0))
"""A held score stays below the alert level even when the calibration saturates at 1."""


def calibrate(score: FloatArray, alert_level: float, sharpness: float = 2.0) -> FloatArray:
    """Map raw scores to ``[0, 1]`` so that the alert level gives 0.5.

    >>> calibrate(np.array([0.0, 2.0, 4.0, 8.0]), alert_level=4.0).round(3)
    array([0.   , 0.159, 0.5  , 0.938])
    """
    ratio = np.maximum(score, 0.0) / alert_level
    return 1.0 - np.power(0.5, np.power(ratio, sharpness))


@dataclass(frozen=True, slots=True)
class Verdict:
    """The combined judgement of one observation.

    Attributes:
        score: calibrated anomaly score in ``[0, 1]``; 0.5 is the alert level.
        detector: the detector behind the score.
        raw: that detector's own score.
        alert_level: that detector's alert level.
        expectation: what that detector expected, when it has an expectation.
        value: the observed value.
    """

    score: float
    detector: str
    raw: float
    alert_level: float
    expectation: Expectation | None
    value: float

    @property
    def explanation(self) -> str:
        """One line: which detector, what it expected and by how much the reading left it."""
        head = f"{self.detector}: {self.value:.4g}"
        tail = f"(score {self.raw:.3g}, alert level {self.alert_level:.3g})"
        e = self.expectation
        if e is None:
            return f"{head} {tail}"
        band = f"the expected band [{e.low:.4g}, {e.high:.4g}] around {e.expected:.4g}"
        if self.value > e.high:
            where = f"{self.value - e.high:.4g} above {band}"
        elif self.value < e.low:
            where = f"{e.low - self.value:.4g} below {band}"
        else:
            where = f"inside {band}"
        return f"{head} is {where} {tail}"


class Combiner:
    """Runs detectors side by side on the same series and combines their scores.

    Args:
        detectors: the detectors, each holding its own state for every series.
        sharpness: the exponent of :func:`calibrate`.
        cooldown: observations after an alert during which a lower peak is held
            below 0.5; 0 turns the hold off.
    """

    def __init__(
        self, detectors: Sequence[Detector], sharpness: float = 2.0, cooldown: int = 0
    ) -> None:
        if not detectors:
            msg = "a combiner needs at least one detector"
            raise AnomalyError(msg)
        if cooldown < 0:
            msg = f"cooldown must be >= 0, not {cooldown!r}"
            raise AnomalyError(msg)
        self.detectors = list(detectors)
        self.sharpness = sharpness
        self.cooldown = cooldown
        self._hold = _Hold(cooldown)
        self._shared = all(d.series == 0 for d in self.detectors)
        if self._shared:  # one rows_of per batch serves every detector
            for d in (*self.detectors[1:], self._hold):
                d.share_series(self.detectors[0])

    def __repr__(self) -> str:
        return (
            f"Combiner({self.detectors!r}, sharpness={self.sharpness!r}, "
            f"cooldown={self.cooldown!r})"
        )

    def clone(self) -> Combiner:
        """A fresh combiner with the same configuration and no state."""
        return Combiner([d.clone() for d in self.detectors], self.sharpness, self.cooldown)

    @property
    def uses_neighbours(self) -> bool:
        """Whether a detector needs :attr:`Observation.neighbours`."""
        return any(d.uses_neighbours for d in self.detectors)

    # ------------------------------------------------------------ state
    def state_size(self) -> int:
        """Bytes of state per series, over every detector."""
        return sum(d.state_size() for d in self.detectors) + self._hold.state_size()

    def snapshot(self, key: Hashable = None) -> bytes:
        """One series' state of every detector, as bytes."""
        return self.snapshots([key])[0]

    def snapshots(self, keys: Sequence[Hashable]) -> list[bytes]:
        """What :meth:`snapshot` gives for each of ``keys``, in one pass over the arrays."""
        shared = self._shared_rows(keys)
        table = np.concatenate(
            [d.snapshot_rows(self._rows(d, keys, shared)) for d in (*self.detectors, self._hold)],
            axis=1,
        )
        size = table.shape[1]
        blob = table.tobytes()
        return [blob[i : i + size] for i in range(0, len(blob), size)]

    def _shared_rows(self, keys: Sequence[Hashable]) -> IntArray | None:
        """The state rows of ``keys`` when every detector keeps them in the same rows."""
        return self.detectors[0].rows_of(keys) if self._shared else None

    @staticmethod
    def _rows(d: Detector, keys: Sequence[Hashable], shared: IntArray | None) -> IntArray:
        """``d``'s state rows of ``keys``: the shared ones (its arrays grown to fit), or its own."""
        if shared is None:
            return d.rows_of(keys)
        d.fit()
        return shared

    def restore(self, data: bytes, key: Hashable = None) -> None:
        """Put back what :meth:`snapshot` returned."""
        if len(data) != self.state_size():
            msg = f"state of {len(data)} bytes does not fit this combiner ({self.state_size()})"
            raise AnomalyError(msg)
        offset = 0
        for d in (*self.detectors, self._hold):
            size = d.state_size()
            d.restore(data[offset : offset + size], key)
            offset += size

    # ------------------------------------------------------------ scoring
    def calibrate(self, raw: FloatArray, detector: Detector) -> FloatArray:
        """One of this combiner's detectors' raw scores, calibrated to ``[0, 1]``."""
        return calibrate(raw, detector.alert_level, self.sharpness)

    def process(
        self,
        keys: Sequence[Hashable],
        ts: FloatArray,
        x: FloatArray,
        neighbours: FloatArray | None = None,
    ) -> tuple[FloatArray, IntArray, FloatArray]:
        """Score, then learn, a batch of observations of many series, in order.

        Returns:
            The calibrated scores, the index of the detector behind each, and that
            detector's raw score.
        """
        calibrated = np.empty((len(self.detectors), len(keys)))
        raw = np.empty_like(calibrated)
        shared = self._shared_rows(keys)
        # Every detector sees the same series in the same order: one split into rounds.
        rounds = split_rounds(self.detectors[0].rows_of(keys) if shared is None else shared)
        for i, d in enumerate(self.detectors):
            rows = self._rows(d, keys, shared)
            nb = neighbours if d.uses_neighbours else None
            raw[i] = d.process(rows, ts, x, nb, rounds=rounds)
            calibrated[i] = calibrate(raw[i], d.alert_level, self.sharpness)
        which = np.argmax(calibrated, axis=0)
        cols = np.arange(len(keys))
        score = calibrated[which, cols]
        if self.cooldown:
            levels = np.asarray([d.alert_level for d in self.detectors])
            ratio = raw[which, cols] / levels[which]
            rows = self._rows(self._hold, keys, shared)
            held = self._hold.process(rows, ts, ratio, rounds=rounds)
            score = np.where(held > 0, np.minimum(score / 2, _HELD_MAX), score)
        return score, which, raw[which, cols]

    def process_one(self, x: Observation, key: Hashable = None) -> Verdict:
        """Score, then learn, one observation, and explain the score."""
        expectations = [d.expect_one(x, key) for d in self.detectors]
        nb = np.asarray([x.neighbours], dtype=np.float64) if self.uses_neighbours else None
        score, which, raw = self.process(
            [key], np.asarray([x.ts]), np.asarray([x.value], dtype=np.float64), nb
        )
        i = int(which[0])
        return Verdict(
            score=float(score[0]),
            detector=self.detectors[i].name,
            raw=float(raw[0]),
            alert_level=self.detectors[i].alert_level,
            expectation=expectations[i],
            value=x.value,
        )


class _Hold(Detector):
    """The combiner's episode hold: the peak ratio of the current episode and its countdown.

    Scores 1.0 for an observation to hold (inside an episode and not above its peak),
    0.0 otherwise; learning starts, extends or counts down the episode.
    """

    name = "_hold"

    def __init__(self, cooldown: int = 0) -> None:
        self.cooldown = cooldown
        self.state_fields = (
            StateField("peak", (), "float32", 0.0),
            StateField("left", (), "int32", 0),
        )
        super().__init__()

    def _held(self, rows: IntArray, ratio: FloatArray) -> BoolArray:
        in_episode: BoolArray = self._state["left"][rows] > 0
        return in_episode & (ratio <= self._state["peak"][rows])

    def _score(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        return self._held(rows, x).astype(np.float64)

    def _learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> None:
        self._score_learn(rows, ts, x, neighbours)

    def _score_learn(
        self, rows: IntArray, ts: FloatArray, x: FloatArray, neighbours: FloatArray | None
    ) -> FloatArray:
        held = self._held(rows, x)
        start = (x >= 1.0) & ~held
        left = self._state["left"][rows]
        self._state["peak"][rows] = np.where(start, x, self._state["peak"][rows])
        self._state["left"][rows] = np.where(start, self.cooldown, np.maximum(left - 1, 0))
        return held.astype(np.float64)

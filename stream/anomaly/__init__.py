"""Streaming anomaly detectors: pure Python and numpy, no Faust.

A detector learns and scores one observation at a time (``learn_one`` /
``score_one``, river's protocol) or a batch of observations of many series at once
(``process``); both paths share one implementation. A score is ``>= 0`` and higher
is more anomalous; each detector names its own alert level. Every detector's state
per series is a fixed number of bytes (``snapshot`` / ``restore``), so the stream
keeps it in a changelog-backed table and a restarted worker continues where it
stopped.
"""

from stream.anomaly.base import (
    REGISTRY,
    AnomalyError,
    Detector,
    Expectation,
    Observation,
    StateField,
    build,
    register,
)
from stream.anomaly.changepoint import Cusum
from stream.anomaly.combine import Combiner, Verdict, calibrate
from stream.anomaly.config import DEFAULT_CONFIG, AnomalyConfig, DetectorSpec, Profile, load_config
from stream.anomaly.extreme import ExtremeValue
from stream.anomaly.faults import Jump, OutOfRange, Silence, StuckValue
from stream.anomaly.robust import RollingMedianMAD
from stream.anomaly.scorer import MetricScore, ReadingScorer
from stream.anomaly.seasonal import SeasonalBaseline
from stream.anomaly.spatial import NeighbourConsensus, classify

__all__ = [
    "DEFAULT_CONFIG",
    "REGISTRY",
    "AnomalyConfig",
    "AnomalyError",
    "Combiner",
    "Cusum",
    "Detector",
    "DetectorSpec",
    "Expectation",
    "ExtremeValue",
    "Jump",
    "MetricScore",
    "NeighbourConsensus",
    "Observation",
    "OutOfRange",
    "Profile",
    "ReadingScorer",
    "RollingMedianMAD",
    "SeasonalBaseline",
    "Silence",
    "StateField",
    "StuckValue",
    "Verdict",
    "build",
    "calibrate",
    "classify",
    "load_config",
    "register",
]

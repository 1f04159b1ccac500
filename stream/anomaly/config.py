"""Which detectors run on which series: chosen by name in config, per kind and metric.

A :class:`Profile` lists detectors by name with their parameters, and the combiner's
settings. :class:`AnomalyConfig` holds a generic default profile, a profile per kind,
and per-metric profiles inside a kind; :meth:`AnomalyConfig.profile_for` picks the
most specific one. Shipped defaults (:data:`DEFAULT_CONFIG`) cover every kind of the
metric catalogue; a YAML file overrides what it names (:func:`load_config`):

.. code-block:: yaml

    utc_offset_h: 8          # the city's local time, for seasonal buckets
    default:                 # any series without a more specific profile
      detectors:
        - {name: extreme}
        - {name: seasonal, params: {alert_z: 24}}
      cooldown: 30
    kinds:
      traffic:
        detectors: [{name: seasonal, params: {period: day_weekend}}, {name: stuck}]
        metrics:
          occupancy_pct: {detectors: [{name: rolling_mad, params: {window: 30}}]}

Two conveniences: a detector with local hours (``seasonal``, ``cusum``) and without its
own ``utc_offset_h`` takes the config's, and ``range_check: true`` (the default for
kinds) adds an ``out_of_range`` detector with the metric's physical range from the
catalogue.

>>> config = DEFAULT_CONFIG
>>> [d.name for d in config.profile_for(None, None).detectors]
['extreme', 'seasonal']
>>> combiner = config.combiner_for("pollution", "pm2_5")
>>> [d.name for d in combiner.detectors]
['neighbours', 'cusum', 'stuck', 'silence', 'out_of_range']
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The detector modules register their classes on import; config builds them by name.
from stream.anomaly import changepoint, extreme, faults, robust, seasonal, spatial
from stream.anomaly.base import REGISTRY, AnomalyError, Detector, build
from stream.anomaly.combine import Combiner
from telemetry.catalogue import Kind, metric_spec
from telemetry.documents import load_document, parse_document

_DETECTOR_MODULES = (changepoint, extreme, faults, robust, seasonal, spatial)

__all__ = ["DEFAULT_CONFIG", "AnomalyConfig", "DetectorSpec", "Profile", "load_config"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorSpec(_Model):
    """One detector by name, with its parameters (the constructor's arguments)."""

    name: str
    params: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in REGISTRY:
            msg = f"unknown detector {name!r}; known: {', '.join(sorted(REGISTRY))}"
            raise ValueError(msg)
        return name

    @model_validator(mode="after")
    def _buildable(self) -> Self:
        try:
            build(self.name, self.params)
        except AnomalyError as exc:
            raise ValueError(str(exc)) from None
        return self

    def build(self, utc_offset_h: float) -> Detector:
        """The detector, with the city's UTC offset where it takes one and has none."""
        params = dict(self.params)
        if "utc_offset_h" in inspect.signature(REGISTRY[self.name]).parameters:
            params.setdefault("utc_offset_h", utc_offset_h)
        return build(self.name, params)


class Profile(_Model):
    """The detectors of one kind of series and how their scores combine.

    Attributes:
        detectors: the detectors, by name.
        sharpness: the combiner's calibration exponent.
        cooldown: observations after an alert during which a lower peak is held.
        range_check: add an ``out_of_range`` detector with the metric's physical range.
    """

    detectors: list[DetectorSpec] = Field(min_length=1)
    sharpness: float = Field(default=2.0, gt=0)
    cooldown: int = Field(default=30, ge=0)
    range_check: bool = False


class KindProfile(Profile):
    """A kind's profile, with per-metric profiles that replace it for those metrics."""

    range_check: bool = True
    metrics: dict[str, Profile] = {}


_GENERIC = Profile(
    detectors=[
        DetectorSpec(name="extreme"),
        DetectorSpec(name="seasonal", params={"alert_z": 24.0}),
    ],
    cooldown=30,
)


class AnomalyConfig(_Model):
    """Detector profiles: a generic default, per kind, and per metric within a kind.

    Attributes:
        utc_offset_h: the city's offset from UTC, in hours, for seasonal buckets.
        default: the profile of series without a more specific one.
        kinds: per-kind profiles.
    """

    utc_offset_h: float = Field(default=8.0, ge=-14, le=14)
    default: Profile = _GENERIC
    kinds: dict[Kind, KindProfile] = {}

    def profile_for(self, kind: Kind | str | None, metric: str | None) -> Profile:
        """The most specific profile for a kind's metric (either may be None)."""
        if kind is None:
            return self.default
        kind_profile = self.kinds.get(Kind(kind))
        if kind_profile is None:
            return self.default
        if metric is not None and metric in kind_profile.metrics:
            by_metric = kind_profile.metrics[metric]
            if "range_check" in by_metric.model_fields_set:
                return by_metric
            return by_metric.model_copy(update={"range_check": kind_profile.range_check})
        return kind_profile

    def combiner_for(self, kind: Kind | str | None, metric: str | None) -> Combiner:
        """A fresh combiner of the profile for a kind's metric."""
        profile = self.profile_for(kind, metric)
        detectors = [spec.build(self.utc_offset_h) for spec in profile.detectors]
        if profile.range_check and kind is not None and metric is not None:
            spec = metric_spec(kind, metric)
            detectors.append(build("out_of_range", {"low": spec.low, "high": spec.high}))
        return Combiner(detectors, sharpness=profile.sharpness, cooldown=profile.cooldown)

    def merged(self, other: AnomalyConfig) -> AnomalyConfig:
        """This config with what ``other`` sets explicitly put over it."""
        update: dict[str, Any] = {k: getattr(other, k) for k in other.model_fields_set}
        if "kinds" in update:
            update["kinds"] = {**self.kinds, **other.kinds}
        return self.model_copy(update=update)


def _d(name: str, **params: Any) -> DetectorSpec:
    return DetectorSpec(name=name, params=params)


_SILENCE = _d("silence", factor=1.5)


def _pollutant(neighbour_z: float) -> Profile:
    """A pollutant's profile: its spread between stations sets the spatial alert level."""
    return Profile(
        detectors=[
            _d("neighbours", alpha=0.005, alert_z=neighbour_z),
            _d("cusum", period="day_weekend", alpha=0.05, threshold=2000.0),
            _d("stuck", min_run=36),
            _SILENCE,
        ]
    )


DEFAULT_CONFIG = AnomalyConfig(
    kinds={
        # Weather moves every station of a region together, for days: a sensor is judged
        # against its neighbours first, and a level shift only when it lasts.
        Kind.POLLUTION: KindProfile(
            detectors=_pollutant(8.0).detectors,
            metrics={
                "pm2_5": _pollutant(7.0),
                "pm10": _pollutant(24.0),
                "co": _pollutant(5.5),
                "no2": _pollutant(6.0),
                "so2": _pollutant(14.0),
                "o3": _pollutant(12.0),
            },
        ),
        Kind.AMBIENT: KindProfile(
            detectors=[_d("stuck", min_run=36), _SILENCE],
            metrics={
                "temperature_c": Profile(
                    detectors=[_d("stuck", min_run=36), _d("jump", max_rate_per_s=0.1), _SILENCE]
                ),
            },
        ),
        Kind.ENERGY: KindProfile(
            detectors=[_d("seasonal", alpha=0.05, alert_z=16.0), _SILENCE],
            metrics={"energy_kwh": Profile(detectors=[_d("stuck", min_run=36), _SILENCE])},
        ),
        Kind.TRAFFIC: KindProfile(
            detectors=[_d("seasonal", alpha=0.05, alert_z=10.0), _SILENCE],
        ),
        Kind.CROWD: KindProfile(
            detectors=[_d("seasonal", alpha=0.05, poisson=True, alert_z=10.0), _SILENCE],
            metrics={
                # Closing time empties a park in bursts that vary from day to day.
                "exits": Profile(
                    detectors=[_d("seasonal", alpha=0.05, poisson=True, alert_z=22.0), _SILENCE]
                ),
            },
        ),
    }
)
"""The shipped detector profiles: the generic default was tuned on the NAB dev files,
the kinds on simulated weeks of the example city."""


def parse_config(text: str, source: str = "<string>") -> AnomalyConfig:
    """Parse an anomaly config from YAML, over :data:`DEFAULT_CONFIG`."""
    return DEFAULT_CONFIG.merged(parse_document(text, source, AnomalyConfig, what="anomaly config"))


def load_config(path: str | os.PathLike[str] | None) -> AnomalyConfig:
    """Load an anomaly config file over :data:`DEFAULT_CONFIG` (None: the defaults)."""
    if path is None:
        return DEFAULT_CONFIG
    return DEFAULT_CONFIG.merged(load_document(path, AnomalyConfig, what="anomaly config"))

"""Hotspots: the sites of a district whose pollution or energy use stands out, ranked.

The environment bureau wants to see early where PM2.5 (or the AQI) or a building's
energy use stands out. Every few minutes the caller passes the latest value of one
metric at every site (a station's PM2.5, a building's W/m² or its ratio to baseline)
to :func:`rank_hotspots`, a pure function, and gets per district a top-N list.

A site is scored two ways, both robust z-scores (higher: more above the norm):

* **against its district** (``peer_z``): ``(x - median) / scale``, with the median of
  the district's sites (itself included) and ``scale = 1.4826 x MAD`` -- the spread a
  normal distribution with that MAD would have -- so one or two extreme sites neither
  move the centre nor inflate the spread. It needs ``min_peers`` sites reporting.
* **against its own baseline** (``self_z``): ``(x - baseline) / scale``, when the
  caller gives the site's usual value (a seasonal baseline) and, optionally, its usual
  spread. A regional episode raises every station's ``self_z`` but nobody's ``peer_z``;
  a local source raises both at one station.

Each scale is at least ``min_scale + relative_floor x |centre|``, so identical
values do not make a tiny difference infinite. A site's ``score`` is the larger of
its z-scores; it is a hotspot when the score reaches ``threshold``, and the list holds
the ``top_n`` highest, ties by site id. Values older than ``max_age`` are left out.

>>> from datetime import UTC, datetime
>>> now = datetime(2024, 10, 8, 6, tzinfo=UTC)
>>> pm = [SiteValue("pier", "lakeside", 180.0, now), SiteValue("library", "lakeside", 40.0, now),
...       SiteValue("north-bank", "lakeside", 35.0, now, baseline=20.0, baseline_scale=5.0)]
>>> [ranking] = rank_hotspots(pm, metric="pollution.pm2_5", now=now)
>>> ranking.median, ranking.scale  # median 40, MAD 5
(40.0, 7.413)
>>> [(h.rank, h.site_id, round(h.score, 1), h.reason) for h in ranking.hotspots]
[(1, 'pier', 18.9, 'district'), (2, 'north-bank', 3.0, 'baseline')]
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

__all__ = [
    "MAD_TO_SIGMA",
    "DistrictRanking",
    "Hotspot",
    "HotspotConfig",
    "HotspotError",
    "SiteValue",
    "intensity_w_m2",
    "rank_hotspots",
    "robust_scale",
]


class HotspotError(ValueError):
    """A hotspot input or setting that cannot be used; the message names the field and the value."""


MAD_TO_SIGMA: Final = 1.4826
"""A normal distribution's standard deviation over its median absolute deviation."""


@dataclass(frozen=True, slots=True)
class SiteValue:
    """The latest value of one metric at one site.

    Attributes:
        site_id: the site (a station, a building).
        district_id: its district.
        value: the metric's latest value.
        ts: its event time (aware).
        baseline: the site's usual value now, if known.
        baseline_scale: the site's usual spread around it, if known.
    """

    site_id: str
    district_id: str
    value: float
    ts: datetime
    baseline: float | None = None
    baseline_scale: float | None = None

    def __post_init__(self) -> None:
        for name in ("value", "baseline", "baseline_scale"):
            number = getattr(self, name)
            if number is not None and not math.isfinite(number):
                msg = f"{name} of site {self.site_id} must be finite, not {number!r}"
                raise HotspotError(msg)
        if self.ts.tzinfo is None:
            msg = f"ts {self.ts.isoformat()} of site {self.site_id} has no time zone"
            raise HotspotError(msg)


@dataclass(frozen=True, slots=True)
class HotspotConfig:
    """How hotspots are found and listed.

    Attributes:
        top_n: the most hotspots listed per district.
        threshold: the score from which a site is a hotspot (2: about the top 2 % of a
            normal spread).
        min_peers: the sites a district needs reporting for ``peer_z``.
        min_scale: the smallest scale, in the metric's unit.
        relative_floor: the smallest scale as a fraction of ``|centre|``.
        max_age: values older than this before ``now`` are left out; None keeps all.
    """

    top_n: int = 5
    threshold: float = 2.0
    min_peers: int = 3
    min_scale: float = 1e-3
    relative_floor: float = 0.05
    max_age: timedelta | None = timedelta(minutes=15)

    def __post_init__(self) -> None:
        if self.top_n < 1:
            msg = f"top_n must be at least 1, not {self.top_n!r}"
            raise HotspotError(msg)
        if self.min_peers < 2:
            msg = f"min_peers must be at least 2, not {self.min_peers!r}"
            raise HotspotError(msg)
        if not (math.isfinite(self.min_scale) and self.min_scale > 0):
            msg = f"min_scale must be above zero, not {self.min_scale!r}"
            raise HotspotError(msg)
        if not (math.isfinite(self.relative_floor) and self.relative_floor >= 0):
            msg = f"relative_floor must not be negative, not {self.relative_floor!r}"
            raise HotspotError(msg)


@dataclass(frozen=True, slots=True)
class Hotspot:
    """One site that stands out.

    Attributes:
        rank: 1 for the highest score in its district.
        site_id: the site.
        value: its value.
        peer_z: its robust z against its district; None with too few sites.
        self_z: its z against its own baseline; None without one.
        score: the larger of the two.
        reason: ``district``, ``baseline`` or ``both``: which z reached the threshold.
    """

    rank: int
    site_id: str
    value: float
    peer_z: float | None
    self_z: float | None
    score: float
    reason: str


@dataclass(frozen=True, slots=True)
class DistrictRanking:
    """One district's hotspots of one metric.

    Attributes:
        district_id: the district.
        metric: what was ranked, as the caller named it (``pollution.pm2_5``).
        ts: the time of the ranking (``now``).
        sites: how many sites had a current value.
        median: the district's median; None with fewer than ``min_peers`` sites.
        scale: the robust scale of ``peer_z``; None likewise.
        hotspots: the top sites at or above the threshold, highest first.
    """

    district_id: str
    metric: str
    ts: datetime
    sites: int
    median: float | None
    scale: float | None
    hotspots: tuple[Hotspot, ...]


def robust_scale(values: list[float], config: HotspotConfig) -> tuple[float, float]:
    """The median of ``values`` and their floored robust scale ``1.4826 x MAD``.

    >>> robust_scale([1.0, 2.0, 3.0, 100.0], HotspotConfig(relative_floor=0.0))
    (2.5, 1.4826)
    """
    centre = statistics.median(values)
    mad = statistics.median(abs(v - centre) for v in values)
    return centre, _floored(MAD_TO_SIGMA * mad, centre, config)


def _floored(scale: float, centre: float, config: HotspotConfig) -> float:
    return max(scale, config.min_scale + config.relative_floor * abs(centre))


def intensity_w_m2(power_w: float, floor_area_m2: float) -> float:
    """A building's power per square metre of floor, for comparing buildings of any size.

    >>> intensity_w_m2(1_200_000.0, 48_000.0)
    25.0
    """
    if not (math.isfinite(floor_area_m2) and floor_area_m2 > 0):
        msg = f"floor_area_m2 must be above zero, not {floor_area_m2!r}"
        raise HotspotError(msg)
    return power_w / floor_area_m2


def rank_hotspots(
    values: Iterable[SiteValue],
    *,
    metric: str,
    now: datetime,
    config: HotspotConfig | None = None,
) -> list[DistrictRanking]:
    """Rank each district's sites by how far they stand out; one ranking per district.

    Args:
        values: the latest value per site (of several per site, the newest counts).
        metric: the name of what is ranked, carried into the result.
        now: the time of the ranking (aware); values older than ``max_age`` are left out.
        config: thresholds and floors; the defaults when None.

    Returns:
        A ranking for every district with a current value, by district id; a district
        where nothing stands out has an empty ``hotspots``.
    """
    config = config or HotspotConfig()
    if now.tzinfo is None:
        msg = f"now {now.isoformat()} has no time zone"
        raise HotspotError(msg)
    oldest = now - config.max_age if config.max_age is not None else None
    latest: dict[str, SiteValue] = {}
    for value in values:
        if oldest is not None and value.ts < oldest:
            continue
        known = latest.get(value.site_id)
        if known is None or value.ts >= known.ts:
            latest[value.site_id] = value
    districts: dict[str, list[SiteValue]] = {}
    for value in latest.values():
        districts.setdefault(value.district_id, []).append(value)
    return [
        _rank(district, districts[district], metric, now, config) for district in sorted(districts)
    ]


def _rank(
    district: str, sites: list[SiteValue], metric: str, now: datetime, config: HotspotConfig
) -> DistrictRanking:
    median = scale = None
    if len(sites) >= config.min_peers:
        median, scale = robust_scale([s.value for s in sites], config)
    scored: list[tuple[float, str, Hotspot]] = []
    for site in sites:
        peer_z = (site.value - median) / scale if median is not None and scale is not None else None
        self_z = None
        if site.baseline is not None:
            spread = _floored(site.baseline_scale or 0.0, site.baseline, config)
            self_z = (site.value - site.baseline) / spread
        zs = [z for z in (peer_z, self_z) if z is not None]
        if not zs or max(zs) < config.threshold:
            continue
        by_peers = peer_z is not None and peer_z >= config.threshold
        by_self = self_z is not None and self_z >= config.threshold
        reason = "both" if by_peers and by_self else "district" if by_peers else "baseline"
        hotspot = Hotspot(0, site.site_id, site.value, peer_z, self_z, max(zs), reason)
        scored.append((-hotspot.score, site.site_id, hotspot))
    scored.sort(key=lambda item: (item[0], item[1]))
    top = tuple(
        Hotspot(rank, h.site_id, h.value, h.peer_z, h.self_z, h.score, h.reason)
        for rank, (_, _, h) in enumerate(scored[: config.top_n], start=1)
    )
    return DistrictRanking(district, metric, now, len(sites), median, scale, top)

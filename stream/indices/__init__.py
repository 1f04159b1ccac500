"""City indices: the numbers a city publishes, computed from its sensors' measurements.

An index module is a functional core: plain data in, frozen dataclasses out, no
I/O, no Faust and no clock, and every problem with the input raised as a
``ValueError`` subclass that names the quantity and the value. State that spans
readings (an area's occupancy, a register's last value, a baseline) is a small
dataclass the caller keeps, so the stream can hold it in a table. The stream
agents, the CLI and the dashboards only wire them.

* :mod:`stream.indices.aqi` -- the air quality index: China's HJ 633-2012
  (:func:`hourly_aqi` as CNEMC publishes it every hour, :func:`daily_aqi` from daily
  means, with helpers for ozone's 8-hour means) and, as an option, the US EPA AQI
  with the 2024 PM2.5 breakpoints (:func:`epa_aqi`).
* :mod:`stream.indices.aqi_csv` -- the thin shell behind ``urbansense aqi``.
* :mod:`stream.indices.traffic` -- per road segment and district: speed ratio to free
  flow, travel-time index, the GB/T 33171-2016 congestion grade and a 0-10 traffic
  performance index (:func:`segment_index`, :func:`district_index`).
* :mod:`stream.indices.scenic` -- a scenic area's occupancy from its gates' entries and
  exits, in event time, never negative, reset at opening; percent of instantaneous
  capacity, the LB/T 034 warning tier, daily visitors (:func:`apply_occupancy`).
* :mod:`stream.indices.energy` -- consumption from cumulative kWh registers (a decrease
  is a reset or a rollover, never negative consumption) and power against an hour-of-
  week baseline (:func:`consume`, :func:`update_baseline`).
* :mod:`stream.indices.hotspots` -- per district and kind, the sites that stand out
  against their district and their own baseline (:func:`rank_hotspots`).
"""

from __future__ import annotations

from stream.indices.aqi import (
    AqiError,
    AqiLevel,
    AqiResult,
    Pollutant,
    aqi_level,
    daily_aqi,
    epa_aqi,
    hourly_aqi,
)
from stream.indices.energy import (
    Consumption,
    EnergyError,
    PowerBaseline,
    RegisterConfig,
    RegisterState,
    consume,
    update_baseline,
)
from stream.indices.hotspots import Hotspot, HotspotConfig, HotspotError, SiteValue, rank_hotspots
from stream.indices.scenic import (
    OccupancyState,
    OccupancyTier,
    OccupancyUpdate,
    ScenicConfig,
    ScenicError,
)
from stream.indices.scenic import apply as apply_occupancy
from stream.indices.traffic import (
    CongestionGrade,
    DistrictIndex,
    SegmentIndex,
    TrafficError,
    district_index,
    segment_index,
)

__all__ = [
    "AqiError",
    "AqiLevel",
    "AqiResult",
    "CongestionGrade",
    "Consumption",
    "DistrictIndex",
    "EnergyError",
    "Hotspot",
    "HotspotConfig",
    "HotspotError",
    "OccupancyState",
    "OccupancyTier",
    "OccupancyUpdate",
    "Pollutant",
    "PowerBaseline",
    "RegisterConfig",
    "RegisterState",
    "ScenicConfig",
    "ScenicError",
    "SegmentIndex",
    "SiteValue",
    "TrafficError",
    "apply_occupancy",
    "aqi_level",
    "consume",
    "daily_aqi",
    "district_index",
    "epa_aqi",
    "hourly_aqi",
    "rank_hotspots",
    "segment_index",
    "update_baseline",
]

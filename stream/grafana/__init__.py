"""Grafana boards as code: built with Grafana's foundation SDK, checked against the sink.

Seven boards read what the stream writes to InfluxDB (:mod:`stream.schema`), in
InfluxQL, so InfluxDB 1.x, 2.x (through a DBRP mapping) and 3.x all answer them:

==================  =======================  ============================================
file                uid                      what it shows
==================  =======================  ============================================
city-overview       urbansense-overview      district AQI, scenic occupancy, congestion,
                                             building power, current alerts; maps of
                                             stations by AQI level, scenic areas by
                                             occupancy, segments by congestion; anomalies
air-quality         urbansense-air-quality   AQI per station and district, primary
                                             pollutant, IAQI, each pollutant, hotspots
traffic             urbansense-traffic       TPI per district and segment, speed, vehicles
scenic-areas        urbansense-scenic        occupancy against the 80/90/100 % tiers,
                                             visitors inside, visitors per day
energy              urbansense-energy        power against baseline, consumption, register
                                             events, hotspots
gateways            urbansense-gateways      online/offline, buffer depth, dropped
                                             readings, readings scored by kind
alerts              urbansense-alerts        every alert transition
==================  =======================  ============================================

Every board has the template variables ``datasource`` and ``district`` (and ``site``,
``kind`` or ``severity`` where they apply) and shows alerts as annotations.

* :func:`build_boards` gives the boards' JSON; :func:`write_boards` writes the files
  (``deploy/grafana/dashboards``) after :func:`check_boards` found every measurement,
  field and tag of every query in :data:`stream.schema.MEASUREMENTS`.
* :func:`push_boards` uploads them to a running Grafana, idempotently.
* ``urbansense grafana generate|push`` (:func:`add_parser`) does both from the shell.

>>> from telemetry.registry import load_example_registry
>>> boards = build_boards(BoardSettings(load_example_registry()))
>>> sorted(boards)[:3], check_boards(boards)
(['air-quality.json', 'alerts.json', 'city-overview.json'], [])
"""

from __future__ import annotations

from stream.grafana.boards import BOARDS, BoardSettings, BoardSpec
from stream.grafana.check import check_query
from stream.grafana.cli import add_parser
from stream.grafana.common import DATASOURCE_UID
from stream.grafana.generate import (
    BoardError,
    board_queries,
    build_boards,
    check_boards,
    render,
    write_boards,
)
from stream.grafana.influxql import InfluxQuery, InfluxTarget, references
from stream.grafana.push import Pushed, PushError, connect, push_boards

__all__ = [
    "BOARDS",
    "DATASOURCE_UID",
    "BoardError",
    "BoardSettings",
    "BoardSpec",
    "InfluxQuery",
    "InfluxTarget",
    "PushError",
    "Pushed",
    "add_parser",
    "board_queries",
    "build_boards",
    "check_boards",
    "check_query",
    "connect",
    "push_boards",
    "references",
    "render",
    "write_boards",
]

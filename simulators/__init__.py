"""Simulated sensors, registered as edge-agent drivers, with scenarios and ground truth.

May import ``telemetry`` and ``edge_agents``. The parts:

* device models as drivers: :mod:`simulators.air_quality` (air-quality station and its
  weather), :mod:`simulators.energy` (a building's meter), :mod:`simulators.traffic`
  (one lane's detector), :mod:`simulators.scenic` (a scenic area's gate counters), and
  :mod:`simulators.synthetic` (any kind, for load and failure tests);
* :mod:`simulators.scenario` (the YAML scenario: a city, a span, incidents and faults)
  and :mod:`simulators.engine` (runs it and writes the ground truth);
* :mod:`simulators.replay` (CSV replay by a column spec), :mod:`simulators.fleet` and
  :mod:`simulators.publish` (virtual gateways publishing through the edge agent's
  code), and :mod:`simulators.cli` (``urbansense-sim``).
"""

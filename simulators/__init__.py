"""Simulated sensors, registered as edge-agent drivers, with scenarios and ground truth.

May import ``telemetry`` and ``edge_agents``. The simulators arrive with a later issue.
"""

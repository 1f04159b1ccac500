"""Threshold rules and the alert state machine: pure Python, no I/O.

May import ``telemetry`` only. The rule engine arrives with a later issue.
"""

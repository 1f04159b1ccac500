"""The errors of the wire contract.

Every error that ``telemetry`` raises derives from :class:`TelemetryError`, so a
caller at a boundary (the MQTT bridge, the edge agent) can catch one type.
The subclasses carry what the caller needs to act on: the field, the value and
the reason of each problem.
"""

from __future__ import annotations


class TelemetryError(Exception):
    """Root of every error raised by the ``telemetry`` package."""


class InvalidIdError(TelemetryError, ValueError):
    """An identifier (gateway, sensor, site…) that cannot be used on the wire.

    Attributes:
        what: which kind of id it was meant to be, e.g. ``"gateway id"``.
        value: the refused value.
        problem: why it was refused, in words.
    """

    def __init__(self, what: str, value: str, problem: str) -> None:
        self.what = what
        self.value = value
        self.problem = problem
        super().__init__(f"invalid {what} {value!r}: {problem}")


class TopicError(TelemetryError, ValueError):
    """A topic that does not follow the urbansense topic scheme."""


class UnknownMetricError(TelemetryError, KeyError):
    """A (kind, metric) pair that the metric catalogue does not define."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown metric"

"""The errors of the edge agent; every one derives from :class:`EdgeAgentError`."""

from __future__ import annotations


class EdgeAgentError(Exception):
    """Root of every error raised by the ``edge_agents`` package."""


class DriverError(EdgeAgentError):
    """A driver could not open its device or take a sample.

    The agent counts it, logs it and retries the sensor with backoff; the other
    sensors keep running.

    Attributes:
        sensor_id: the sensor whose driver failed, when known.
        retryable: whether trying again can help (a timeout, a bad checksum) or
            not (the configured port does not exist).
    """

    def __init__(
        self, message: str, *, sensor_id: str | None = None, retryable: bool = True
    ) -> None:
        self.sensor_id = sensor_id
        self.retryable = retryable
        super().__init__(message)


class UnknownDriverError(EdgeAgentError, LookupError):
    """No driver plug-in is registered under the configured name."""

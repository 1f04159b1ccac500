"""The driver plug-in interface: how the agent talks to one sensor.

A driver is built from validated options without any I/O, then ``open()`` →
``read()`` … ``read()`` → ``close()``:

* ``Options`` is a pydantic model of the driver's configuration; the agent
  validates the ``[sensors.options]`` table of its TOML config against it at
  start, so a typo is reported with its key and value before any port opens.
* ``open()`` acquires the device (opens the serial port, connects the Modbus
  client). It may raise :class:`~edge_agents.errors.DriverError`.
* ``read()`` blocks until one sample is available or the driver's own timeout
  passes, and returns the metrics of that sample, named as in the metric
  catalogue (:mod:`telemetry.catalogue`) for the driver's ``kind``. It raises
  ``DriverError`` on a timeout, a bad frame or garbage; the agent counts the
  failure, and after repeated failures closes and reopens the driver with
  backoff.
* ``close()`` releases the device. The agent calls it once after every
  ``open()`` that returned, and also after one that raised, so it must be
  idempotent and must not raise.

Drivers for interval counts (vehicles, gate entries) return the events counted
since the previous ``read()``; the agent sums them when it pre-aggregates.

Drivers are registered as entry points in the group ``urbansense.drivers``
(see :mod:`edge_agents.drivers.registry`), so a simulator or a third party adds
one without the agent importing it::

    [project.entry-points."urbansense.drivers"]
    sds011 = "edge_agents.drivers.sds011:SDS011Driver"
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from telemetry import Kind


class DriverOptions(BaseModel):
    """Base of every driver's options: strict about unknown keys, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


OptionsT = TypeVar("OptionsT", bound=DriverOptions)


class Driver(ABC, Generic[OptionsT]):
    """One sensor device, read one sample at a time.

    Subclasses set :attr:`Options` and :attr:`kind` (or override :meth:`sensor_kind`
    when the kind depends on the options), and implement the three methods.

    Args:
        options: the driver's validated options.
    """

    Options: ClassVar[type[DriverOptions]] = DriverOptions
    """The pydantic model of this driver's options."""

    kind: ClassVar[Kind | None] = None
    """The kind of readings this driver produces, if fixed."""

    def __init__(self, options: OptionsT) -> None:
        self.options = options

    def sensor_kind(self) -> Kind:
        """The kind of readings this driver produces with its options."""
        if self.kind is None:
            msg = f"{type(self).__name__} must set `kind` or override sensor_kind()"
            raise NotImplementedError(msg)
        return self.kind

    @abstractmethod
    def open(self) -> None:
        """Acquire the device; raise :class:`~edge_agents.errors.DriverError` if it cannot be."""

    @abstractmethod
    def read(self) -> dict[str, float]:
        """Block for one sample and return its metrics; raise ``DriverError`` on failure."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; idempotent, never raises."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"

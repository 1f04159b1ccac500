"""Driver plug-ins: how the edge agent reads one sensor.

The contract (see :mod:`edge_agents.drivers.base`): a driver is built from
validated options without I/O, then ``open()``, ``read()`` as often as the
sampling interval says, and ``close()``, which always runs and never raises.
``read()`` returns one sample's metrics, named as in the metric catalogue, or
raises :class:`~edge_agents.errors.DriverError`; the agent counts failures and
retries with backoff while the other sensors keep running.

Drivers are found by name through the entry-point group ``urbansense.drivers``
(:func:`build_driver`), so simulators and third parties add drivers without
the agent importing them.
"""

from edge_agents.drivers.base import Driver, DriverOptions
from edge_agents.drivers.registry import (
    ENTRY_POINT_GROUP,
    available_drivers,
    build_driver,
    driver_class,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Driver",
    "DriverOptions",
    "available_drivers",
    "build_driver",
    "driver_class",
]

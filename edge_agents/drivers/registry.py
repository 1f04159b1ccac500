"""Finding driver plug-ins by name, through Python entry points.

Drivers register in the entry-point group ``urbansense.drivers``; the agent
looks them up by the ``driver`` name of each sensor in its config, so it never
imports simulators or third-party code directly.

>>> "sds011" in available_drivers()
True
>>> driver_class("no-such-driver")
Traceback (most recent call last):
...
edge_agents.errors.UnknownDriverError: unknown driver 'no-such-driver'; installed: ...
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from edge_agents.drivers.base import Driver
from edge_agents.errors import UnknownDriverError

ENTRY_POINT_GROUP = "urbansense.drivers"


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_drivers() -> list[str]:
    """The names of every installed driver, sorted."""
    return sorted(_entry_points())


def driver_class(name: str) -> type[Driver[Any]]:
    """Load the driver class registered as ``name``."""
    found = _entry_points().get(name)
    if found is None:
        installed = ", ".join(available_drivers()) or "none"
        msg = f"unknown driver {name!r}; installed: {installed}"
        raise UnknownDriverError(msg)
    loaded = found.load()
    if not (isinstance(loaded, type) and issubclass(loaded, Driver)):
        msg = f"entry point {name!r} ({found.value}) is not a Driver subclass"
        raise UnknownDriverError(msg)
    return loaded


def build_driver(name: str, options: Mapping[str, Any]) -> Driver[Any]:
    """Validate ``options`` against the driver's model and build it, without I/O.

    Raises:
        UnknownDriverError: no driver is registered as ``name``.
        pydantic.ValidationError: the options do not fit the driver's model;
            each error names the key and the value.
    """
    cls = driver_class(name)
    return cls(cls.Options.model_validate(dict(options)))

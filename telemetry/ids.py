"""Identifiers that travel on the wire and inside MQTT topics.

Gateway, sensor, site, district, area, segment, building and rule ids share one
rule: 1 to 64 characters of ASCII letters, digits and ``. _ : -``, starting with
a letter or digit. That keeps them safe inside MQTT topics (no ``+``, ``#``,
``/`` or NUL), as InfluxDB tag values, and in file names.

>>> check_id("gw-lakeside-01", "gateway id")
'gw-lakeside-01'
>>> check_id("gw/01", "gateway id")
Traceback (most recent call last):
...
telemetry.errors.InvalidIdError: invalid gateway id 'gw/01': contains '/', which MQTT reserves...
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from telemetry.errors import InvalidIdError

MAX_ID_LENGTH = 64
"""Longest id accepted, in characters."""

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_RESERVED_CHARS = {
    "+": "contains '+', the MQTT single-level wildcard",
    "#": "contains '#', the MQTT multi-level wildcard",
    "/": "contains '/', which MQTT reserves as the topic level separator",
    "\x00": "contains NUL, which MQTT forbids in topics",
}


@lru_cache(maxsize=1 << 16)
def id_problem(value: str) -> str | None:
    """Say why ``value`` is not a valid id, or return ``None`` when it is.

    Remembers the last 65,536 answers: the same sensor and gateway ids come again and
    again in every envelope.

    >>> id_problem("aq-01") is None
    True
    >>> id_problem("")
    'is empty'
    """
    if not value:
        return "is empty"
    for char, problem in _RESERVED_CHARS.items():
        if char in value:
            return problem
    if len(value) > MAX_ID_LENGTH:
        return f"is {len(value)} characters long, more than the {MAX_ID_LENGTH} allowed"
    if not _ID_RE.fullmatch(value):
        return "must start with a letter or digit and hold only ASCII letters, digits and '._:-'"
    return None


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a valid id, else raise :class:`InvalidIdError`."""
    problem = id_problem(value)
    if problem is not None:
        raise InvalidIdError(what, value, problem)
    return value


def _validate_id(value: str) -> str:
    problem = id_problem(value)
    if problem is not None:
        raise PydanticCustomError("invalid_id", "invalid id: {problem}", {"problem": problem})
    return value


Identifier = Annotated[str, AfterValidator(_validate_id)]
"""A string field holding an id; pydantic reports a bad one as ``invalid_id``."""

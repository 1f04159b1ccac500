r"""Hold every board query against the measurement table the sink writes.

A board that names a measurement, field or tag the stream does not write shows an empty
panel and nobody notices until the day it is needed; :func:`check_query` makes that a
build failure instead (``tests/test_grafana.py`` runs it over every board, and
``urbansense grafana generate`` refuses to write boards that fail it).

>>> check_query('SELECT mean("pm25") FROM "pollution" WHERE $timeFilter')
["pollution has no field 'pm25' (selected)"]
>>> check_query('SELECT mean("primary") FROM "aqi" GROUP BY "site"')
['aqi.primary is a string field: mean() gives nothing']
>>> check_query('SELECT last("aqi") FROM "aqi" WHERE "scope" = \'station\' GROUP BY "site"')
[]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from stream.grafana.influxql import InfluxQLError, Reference, references
from stream.schema import MEASUREMENTS, MeasurementSpec

__all__ = ["STRING_FUNCTIONS", "check_query", "check_references"]

STRING_FUNCTIONS = frozenset({"last", "first", "count", "distinct", "mode"})
"""The InfluxQL functions that take a string field; every other one needs a number."""

_BY_NAME: Mapping[str, MeasurementSpec] = {m.name: m for m in MEASUREMENTS}


def check_references(refs: Iterable[Reference]) -> list[str]:
    """What in ``refs`` the sink does not write; empty when everything exists."""
    problems: list[str] = []
    for ref in refs:
        spec = _BY_NAME.get(ref.measurement)
        if spec is None:
            problems.append(f"no measurement {ref.measurement!r}")
            continue
        fields = {f.name: f for f in spec.fields}
        tags = set(spec.tags)
        name = ref.name
        if ref.role == "select":
            if name in tags and ref.function is None:
                continue  # a tag shown next to the fields of a raw select
            field = fields.get(name)
            if field is None:
                what = "a tag, not a field" if name in tags else "no field"
                problems.append(f"{spec.name} has {what} {name!r} (selected)")
            elif field.type == "string" and ref.function not in (None, *STRING_FUNCTIONS):
                problems.append(
                    f"{spec.name}.{name} is a string field: {ref.function}() gives nothing"
                )
        elif ref.role == "where":
            if name != "time" and name not in tags and name not in fields:
                problems.append(f"{spec.name} has no tag or field {name!r} (in WHERE)")
        elif name not in tags:
            place = "GROUP BY" if ref.role == "group" else "SHOW TAG VALUES"
            problems.append(f"{spec.name} has no tag {name!r} (in {place})")
    return problems


def check_query(query: str) -> list[str]:
    """What the query names that the sink does not write, or why it cannot be read."""
    try:
        refs = references(query)
    except InfluxQLError as exc:
        return [str(exc)]
    if not refs:
        return [f"names no measurement: {query!r}"]
    problems = check_references(refs)
    selects = [r for r in refs if r.role == "select"]
    if (
        not problems
        and refs[0].role == "select"
        and not any(
            r.name in {f.name for f in _BY_NAME[r.measurement].fields}
            for r in selects
            if r.measurement in _BY_NAME
        )
    ):
        problems.append(f"selects no field: {query!r}")
    return problems

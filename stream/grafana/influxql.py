r"""InfluxQL queries of the boards: the target Grafana sends, and what a query names.

Grafana's foundation SDK has no InfluxDB query type, so :class:`InfluxQuery` is one, in
the SDK's own manner (a ``Dataquery`` with ``to_json``, built by a builder). Every
query is raw InfluxQL, which InfluxDB 1.x, 2.x (through a DBRP mapping) and 3.x answer.

:func:`references` reads a query back: which measurement each statement reads and which
identifiers it names where, so that a test (and ``urbansense grafana generate``) can
hold every board against :data:`stream.schema.MEASUREMENTS`. The boards keep to a
strict style that makes this reading exact: every identifier is double-quoted, one
measurement per statement (no subqueries, no regular expressions in ``FROM``).

>>> q = ('SELECT last("aqi") AS "AQI" FROM "aqi" WHERE "scope" = \'station\' '
...      'AND "district" =~ /^$district$/ AND $timeFilter GROUP BY "site"')
>>> [(r.measurement, r.role, r.name, r.function) for r in references(q)]
[('aqi', 'select', 'aqi', 'last'), ('aqi', 'where', 'scope', None),
 ('aqi', 'where', 'district', None), ('aqi', 'group', 'site', None)]
>>> InfluxQuery(q, ref_id="A", alias="$tag_site").to_json()["rawQuery"]
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dm

__all__ = [
    "InfluxQLError",
    "InfluxQuery",
    "InfluxTarget",
    "Reference",
    "ResultFormat",
    "references",
]


class InfluxQLError(ValueError):
    """A board's query outside the style :func:`references` reads; the message quotes it."""


class ResultFormat(StrEnum):
    """How Grafana shapes an InfluxQL answer: a series per group, or one table."""

    TIME_SERIES = "time_series"
    TABLE = "table"


class InfluxQuery(cogvariants.Dataquery):
    """One raw InfluxQL target of a panel, as Grafana's InfluxDB data source stores it.

    Args:
        query: The InfluxQL statement(s).
        ref_id: The target's id within its panel.
        result_format: Series per group (graphs) or a table (tables, stats, maps).
        alias: Grafana's series name pattern (``$tag_site``), if any.
        datasource: The data source; None for the panel's.
        hide: Whether Grafana leaves the target's answer out of the panel.
    """

    def __init__(
        self,
        query: str,
        *,
        ref_id: str = "A",
        result_format: ResultFormat = ResultFormat.TIME_SERIES,
        alias: str | None = None,
        datasource: dm.DataSourceRef | None = None,
        hide: bool | None = None,
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.result_format = result_format
        self.alias = alias
        self.datasource = datasource
        self.hide = hide

    def __repr__(self) -> str:
        return f"InfluxQuery({self.query!r}, ref_id={self.ref_id!r})"

    def to_json(self) -> dict[str, object]:
        """The target as the dashboard JSON holds it."""
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format.value,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.datasource is not None:
            payload["datasource"] = self.datasource.to_json()
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload


class InfluxTarget(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builds an :class:`InfluxQuery` for a panel's ``with_target``.

    >>> target = InfluxTarget('SELECT last("aqi") FROM "aqi"').ref_id("B").table().build()
    >>> target.to_json()
    {'refId': 'B', 'query': 'SELECT last("aqi") FROM "aqi"', 'rawQuery': True,
     'resultFormat': 'table'}
    """

    def __init__(self, query: str) -> None:
        self._internal = InfluxQuery(query)

    def build(self) -> InfluxQuery:
        """The target."""
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        """Name the target within its panel."""
        self._internal.ref_id = ref_id
        return self

    def table(self) -> Self:
        """Answer as one table (a row per group) rather than series."""
        self._internal.result_format = ResultFormat.TABLE
        return self

    def alias(self, alias: str) -> Self:
        """Name the series, e.g. ``$tag_site``."""
        self._internal.alias = alias
        return self

    def datasource(self, datasource: dm.DataSourceRef) -> Self:
        """Query this data source rather than the panel's."""
        self._internal.datasource = datasource
        return self


# ---------------------------------------------------------------- reading queries back

Role = Literal["select", "where", "group", "show_key", "show_where"]


@dataclass(frozen=True, slots=True)
class Reference:
    """One identifier a statement names, where, and the function applied to it.

    Attributes:
        measurement: the measurement the statement reads.
        role: ``select`` (a value read), ``where`` (a condition), ``group`` (a GROUP BY
            tag), ``show_key`` (the key of ``SHOW TAG VALUES``), ``show_where``.
        name: the identifier (a field or tag key).
        function: in ``select``, the function applied directly to it (``mean``), if any.
        statement: the statement it was found in.
    """

    measurement: str
    role: Role
    name: str
    function: str | None
    statement: str = ""

    def __repr__(self) -> str:
        return f"Reference({self.measurement!r}, {self.role!r}, {self.name!r}, {self.function!r})"


_TOKEN = re.compile(
    r"""
      (?P<ident>"(?:[^"\\]|\\.)*")
    | (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<regex>/(?:[^/\\]|\\.)+/)
    | (?P<var>\$[A-Za-z_][A-Za-z0-9_]*|\$\{[^}]+\})
    | (?P<number>\d+(?:\.\d+)?(?:[a-z]+)?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>=~|!~|!=|<>|<=|>=|::|[-+*/%=<>(),;])
    | (?P<space>\s+)
    """,
    re.VERBOSE,
)

_KEYWORDS = frozenset(
    {
        "SELECT", "FROM", "WHERE", "GROUP", "BY", "AS", "AND", "OR", "ORDER", "DESC",
        "ASC", "LIMIT", "SLIMIT", "OFFSET", "FILL", "TZ", "SHOW", "TAG", "VALUES",
        "WITH", "KEY", "TIME", "NONE", "NULL", "PREVIOUS", "LINEAR", "TRUE", "FALSE",
    }
)  # fmt: skip
_CLAUSES = ("FROM", "WHERE", "GROUP", "ORDER", "LIMIT", "SLIMIT", "OFFSET")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str


def _tokens(statement: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    previous: _Token | None = None
    while pos < len(statement):
        m = _TOKEN.match(statement, pos)
        if m is None:
            msg = f"cannot read {statement[pos : pos + 20]!r} in {statement!r}"
            raise InfluxQLError(msg)
        kind = m.lastgroup or ""
        text = m.group()
        pos = m.end()
        if kind == "space":
            continue
        # "/" after a value is division, not the start of a regular expression.
        if kind == "regex" and previous is not None and _is_value_end(previous):
            out.append(_Token("op", "/"))
            pos = m.start() + 1
            previous = out[-1]
            continue
        token = _Token(kind, text)
        out.append(token)
        previous = token
    return out


def _is_value_end(token: _Token) -> bool:
    return token.kind in ("ident", "number", "var") or token.text == ")"


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('\\"', '"')


def _split_statements(query: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    for token in _tokens(query):
        if token.kind == "op" and token.text == ";":
            parts.append(" ".join(current))
            current = []
        else:
            current.append(token.text)
    if current:
        parts.append(" ".join(current))
    return [p for p in parts if p]


def references(query: str) -> list[Reference]:
    """Every measurement and identifier the query's statements name.

    Raises:
        InfluxQLError: A statement outside the boards' style: a bare (unquoted)
            identifier, a subquery or regular expression in ``FROM``, a statement
            other than ``SELECT`` and ``SHOW TAG VALUES``.
    """
    found: list[Reference] = []
    for statement in _split_statements(query):
        tokens = _tokens(statement)
        head = tokens[0].text.upper() if tokens else ""
        if head == "SELECT":
            found += _select(statement, tokens)
        elif head == "SHOW":
            found += _show(statement, tokens)
        else:
            msg = f"only SELECT and SHOW TAG VALUES statements are read, not {statement!r}"
            raise InfluxQLError(msg)
    return found


def _clauses(statement: str, tokens: list[_Token]) -> dict[str, list[_Token]]:
    clauses: dict[str, list[_Token]] = {"SELECT": []}
    current = "SELECT"
    for token in tokens[1:]:
        upper = token.text.upper()
        if token.kind == "word" and upper in _CLAUSES:
            if upper == "GROUP" or upper == "ORDER":
                current = upper
                clauses[current] = []
                continue
            current = upper
            clauses[current] = []
            continue
        if token.kind == "word" and upper == "BY" and current in ("GROUP", "ORDER"):
            continue
        clauses[current].append(token)
    if "FROM" not in clauses:
        msg = f"no FROM in {statement!r}"
        raise InfluxQLError(msg)
    return clauses


def _measurement(statement: str, tokens: list[_Token]) -> str:
    if len(tokens) != 1 or tokens[0].kind != "ident":
        msg = f"FROM must name one double-quoted measurement in {statement!r}"
        raise InfluxQLError(msg)
    return _unquote(tokens[0].text)


def _check_words(statement: str, tokens: list[_Token], functions: bool) -> None:
    for i, token in enumerate(tokens):
        if token.kind != "word" or token.text.upper() in _KEYWORDS:
            continue
        is_call = i + 1 < len(tokens) and tokens[i + 1].text == "("
        if not (functions and is_call):
            msg = f"bare identifier {token.text!r} in {statement!r}: quote it"
            raise InfluxQLError(msg)


def _select(statement: str, tokens: list[_Token]) -> list[Reference]:
    clauses = _clauses(statement, tokens)
    measurement = _measurement(statement, clauses["FROM"])
    out: list[Reference] = []
    select = clauses["SELECT"]
    _check_words(statement, select, functions=True)
    for i, token in enumerate(select):
        if token.kind != "ident":
            continue
        if i > 0 and select[i - 1].text.upper() == "AS":
            continue  # an alias names an output column, not a field
        function = None
        if i >= 2 and select[i - 1].text == "(" and select[i - 2].kind == "word":
            function = select[i - 2].text.lower()
        out.append(Reference(measurement, "select", _unquote(token.text), function, statement))
    where = clauses.get("WHERE", [])
    _check_words(statement, where, functions=False)
    out += [
        Reference(measurement, "where", _unquote(t.text), None, statement)
        for t in where
        if t.kind == "ident"
    ]
    group = clauses.get("GROUP", [])
    _check_words(statement, group, functions=True)
    depth = 0
    for token in group:
        depth += token.text == "("
        depth -= token.text == ")"
        if token.kind == "ident" and depth == 0:
            out.append(Reference(measurement, "group", _unquote(token.text), None, statement))
    return out


def _show(statement: str, tokens: list[_Token]) -> list[Reference]:
    words = [t.text.upper() for t in tokens[:3]]
    if words != ["SHOW", "TAG", "VALUES"]:
        msg = f"only SHOW TAG VALUES is read, not {statement!r}"
        raise InfluxQLError(msg)
    rest = tokens[3:]
    upper = [t.text.upper() for t in rest]
    try:
        start, with_at = upper.index("FROM"), upper.index("WITH")
    except ValueError:
        msg = f"SHOW TAG VALUES needs FROM and WITH KEY = in {statement!r}"
        raise InfluxQLError(msg) from None
    measurement = _measurement(statement, rest[start + 1 : with_at])
    key = rest[with_at + 3] if len(rest) > with_at + 3 else None
    if upper[with_at + 1 : with_at + 3] != ["KEY", "="] or key is None or key.kind != "ident":
        msg = f'SHOW TAG VALUES needs WITH KEY = "key" in {statement!r}'
        raise InfluxQLError(msg)
    out = [Reference(measurement, "show_key", _unquote(key.text), None, statement)]
    where = rest[with_at + 4 :]
    _check_words(statement, where, functions=False)
    out += [
        Reference(measurement, "show_where", _unquote(t.text), None, statement)
        for t in where
        if t.kind == "ident"
    ]
    return out

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


class DocumentProblem:
    """One problem found in a YAML document (a registry, a scenario, a rule file), with where.

    Attributes:
        source: the file (or other source) the document came from.
        path: the YAML path of the offending item, e.g. ``sensors[3].site``; empty
            for a problem of the whole file (a YAML syntax error, an empty file).
        line: 1-based line in the source, or ``None`` when unknown.
        column: 1-based column in the source, or ``None`` when unknown.
        message: what is wrong, in words.
        value: the offending value, when there is one.
    """

    __slots__ = ("column", "line", "message", "path", "source", "value")

    def __init__(
        self,
        *,
        source: str,
        path: str,
        line: int | None,
        column: int | None,
        message: str,
        value: object = None,
    ) -> None:
        self.source = source
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        self.value = value

    @property
    def where(self) -> str:
        """The position as ``source:line:column``, or just ``source`` when unknown."""
        if self.line is None:
            return self.source
        return f"{self.source}:{self.line}:{self.column or 1}"

    def _key(self) -> tuple[object, ...]:
        return (self.source, self.path, self.line, self.column, self.message, self.value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DocumentProblem):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.source, self.path, self.line, self.column, self.message))

    def __repr__(self) -> str:
        return (
            f"DocumentProblem(source={self.source!r}, path={self.path!r}, line={self.line!r},"
            f" column={self.column!r}, message={self.message!r}, value={self.value!r})"
        )

    def __str__(self) -> str:
        if self.path:
            return f"{self.where}: {self.path}: {self.message}"
        return f"{self.where}: {self.message}"


class DocumentError(TelemetryError, ValueError):
    """A YAML document that cannot be loaded: every problem found, each with its place.

    ``str()`` gives one problem a line, as ``file:line:column: path: message``.

    Attributes:
        problems: every problem found, in file order.
    """

    def __init__(self, problems: list[DocumentProblem] | tuple[DocumentProblem, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


class RegistryError(DocumentError):
    """A site registry that cannot be loaded; see :class:`DocumentError`."""


class UnknownIdError(TelemetryError, KeyError):
    """A lookup in the site registry for an id it does not hold.

    Attributes:
        what: which kind of id was looked up, e.g. ``"sensor"``.
        value: the id that was not found.
    """

    def __init__(self, what: str, value: str, hint: str = "") -> None:
        self.what = what
        self.value = value
        message = f"unknown {what} {value!r}{hint}"
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown id"

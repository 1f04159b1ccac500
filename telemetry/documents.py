r"""YAML documents validated by pydantic, with every problem pointed at its line and key.

The site registry, scenario files and rule files are YAML that people write by hand. A
mistake in one is reported the way a compiler would: every problem at once, each with
the file, line, column, YAML path and what is wrong in words, e.g.
``city.yaml:7:41: sites[1].district: unknown district 'lakside' (did you mean 'lakeside'?)``.

:func:`parse_document` does the common part: read the YAML (refusing duplicate keys,
which YAML would silently drop), validate it with a pydantic model and translate
pydantic's errors. A caller with checks between entries adds its own :class:`Finding`
objects and positions them with a :class:`Locator`.

>>> from pydantic import BaseModel, ConfigDict
>>> class Span(BaseModel):
...     model_config = ConfigDict(extra="forbid")
...     start: int
...     end: int
>>> parse_document("start: 1\nend: 2\n", "span.yaml", Span)
Span(start=1, end=2)
>>> try:
...     parse_document("start: 1\nende: 2\n", "span.yaml", Span)
... except DocumentError as error:
...     print(error)
span.yaml:1:1: end: missing required key 'end'
span.yaml:2:1: ende: unknown key 'ende' (did you mean 'end'?)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Final, NamedTuple, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from telemetry.errors import DocumentError, DocumentProblem

__all__ = [
    "DocumentError",
    "DocumentProblem",
    "Finding",
    "Loc",
    "Locator",
    "format_loc",
    "in_file_order",
    "known_hint",
    "load_document",
    "parse_document",
    "pydantic_findings",
    "read_yaml",
]

_MAX_KNOWN_SHOWN: Final = 8
_ModelT = TypeVar("_ModelT", bound=BaseModel)


def parse_document(
    text: str,
    source: str,
    model: type[_ModelT],
    *,
    what: str = "document",
    context: Mapping[str, Any] | None = None,
    cross_check: Callable[[Any, Locator], Iterable[Finding]] | None = None,
    error: type[DocumentError] = DocumentError,
) -> _ModelT:
    """Read YAML text and validate it with ``model``; raise every problem at once.

    Args:
        text: the YAML document.
        source: the name positions are given in, usually the file name.
        model: the pydantic model of the whole document.
        what: what the document is, for messages ("registry", "scenario").
        context: passed to pydantic's validation.
        cross_check: further checks on the raw data (run even when pydantic found
            problems, so that one run reports everything).
        error: the :class:`DocumentError` subclass to raise.

    Raises:
        DocumentError: (``error``) listing every problem in file order.
    """
    root, data, problems = read_yaml(text, source, what)
    if root is None:
        raise error(problems)
    locator = Locator(root, source)
    document: _ModelT | None = None
    try:
        document = model.model_validate(data, context=context)
    except ValidationError as exc:
        problems.extend(locator.problem(f) for f in pydantic_findings(exc, locator, model))
    if cross_check is not None and isinstance(data, Mapping):
        problems.extend(locator.problem(f) for f in cross_check(data, locator))
    if problems or document is None:
        raise error(in_file_order(problems))
    return document


def load_document(
    path: str | os.PathLike[str],
    model: type[_ModelT],
    **options: Any,
) -> _ModelT:
    """:func:`parse_document` on a UTF-8 file; an unreadable file is a problem too."""
    source = os.fspath(path)
    error: type[DocumentError] = options.get("error", DocumentError)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = DocumentProblem(
            source=source, path="", line=None, column=None, message=f"cannot read: {exc}"
        )
        raise error([problem]) from exc
    return parse_document(text, source, model, **options)


Loc = tuple[str | int, ...]
"""A place in a document: keys and list indexes from the root, e.g. ``("sensors", 3, "site")``."""


class Finding(NamedTuple):
    """A problem at a place in the document, before its position in the file is known."""

    loc: Loc
    message: str
    value: object = None
    at_key: bool = False
    """Point at the key of ``loc`` rather than at its value."""


def format_loc(loc: Loc) -> str:
    """Render a location as a YAML path: ``sensors[3].site``."""
    text = ""
    for step in loc:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader where PyYAML was built with it (about ten times faster), else PyYAML's."""


def read_yaml(
    text: str, source: str, what: str = "document"
) -> tuple[Node | None, object, list[DocumentProblem]]:
    """Compose and construct the document; syntax errors and duplicate keys become problems."""
    loader = _LOADER(text)
    try:
        root: Node | None = loader.get_single_node()
        if root is None:
            message = f"the {what} is empty"
            problem = DocumentProblem(source=source, path="", line=1, column=1, message=message)
            return None, None, [problem]
        problems = _duplicate_keys(root, source)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        return None, None, [_syntax_problem(exc, source)]
    except yaml.YAMLError as exc:
        problem = DocumentProblem(
            source=source, path="", line=None, column=None, message=f"invalid YAML: {exc}"
        )
        return None, None, [problem]
    finally:
        loader.dispose()
    return root, data, problems


def _syntax_problem(exc: yaml.MarkedYAMLError, source: str) -> DocumentProblem:
    mark = exc.problem_mark or exc.context_mark
    problem = (exc.problem or "").removeprefix("but ")
    message = f"invalid YAML: {problem or exc.context or 'syntax error'}"
    if exc.context and problem:
        started = f" at line {exc.context_mark.line + 1}" if exc.context_mark else ""
        message += f" ({exc.context}{started})"
    return DocumentProblem(
        source=source,
        path="",
        line=mark.line + 1 if mark else None,
        column=mark.column + 1 if mark else None,
        message=message,
    )


def _duplicate_keys(root: Node, source: str) -> list[DocumentProblem]:
    """Keys given twice in one mapping: YAML would silently keep the last one."""
    problems: list[DocumentProblem] = []
    seen_nodes: set[int] = set()

    def walk(node: Node, loc: Loc) -> None:
        if id(node) in seen_nodes:
            return
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[str, ScalarNode] = {}
            for key, value in node.value:
                if not isinstance(key, ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                if key.value in first:
                    line = first[key.value].start_mark.line + 1
                    problems.append(
                        DocumentProblem(
                            source=source,
                            path=format_loc((*loc, key.value)),
                            line=key.start_mark.line + 1,
                            column=key.start_mark.column + 1,
                            message=(
                                f"key {key.value!r} is given twice in this mapping (first at"
                                f" line {line}); YAML would keep only the last value"
                            ),
                        )
                    )
                else:
                    first[key.value] = key
                walk(value, (*loc, key.value))
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*loc, index))

    walk(root, ())
    return problems


class Locator:
    """Maps a location (a pydantic ``loc`` or a cross-check path) to a node's position."""

    def __init__(self, root: Node, source: str) -> None:
        self.root = root
        self.source = source

    def _resolve(self, loc: Loc) -> tuple[Node | None, Node, bool]:
        """The deepest node along ``loc``, the key naming it, and whether all of it was found."""
        node, key_node = self.root, None
        for step in loc:
            if isinstance(node, MappingNode):
                for key, value in reversed(node.value):  # YAML keeps the last of duplicates
                    if isinstance(key, ScalarNode) and key.value == str(step):
                        key_node, node = key, value
                        break
                else:
                    return key_node, node, False
            elif (
                isinstance(node, SequenceNode)
                and isinstance(step, int)
                and 0 <= step < len(node.value)
            ):
                key_node, node = None, node.value[step]
            else:
                return key_node, node, False
        return key_node, node, True

    def tag_steps(self, loc: Loc) -> set[int]:
        """Which steps of a pydantic ``loc`` name a tagged union's member, not a key.

        Pydantic puts the tag of a discriminated union in the location
        (``incidents.0.crowd_surge.duration``); the file has no such key.
        """
        steps: set[int] = set()
        node: Node = self.root
        for index, step in enumerate(loc):
            if isinstance(node, MappingNode):
                keys = {k.value: v for k, v in node.value if isinstance(k, ScalarNode)}
                if step in keys:
                    node = keys[step]
                    continue
                values = {v.value for v in keys.values() if isinstance(v, ScalarNode)}
                if step in values:
                    steps.add(index)
                    continue
                break
            if isinstance(node, SequenceNode) and isinstance(step, int) and step < len(node.value):
                node = node.value[step]
                continue
            break
        return steps

    def position(self, loc: Loc, *, at_key: bool = False) -> tuple[int, int]:
        """The 1-based line and column of ``loc``.

        A value that is a mapping or a list is pointed at by its key; a missing
        key by the mapping that lacks it; ``at_key`` points at the key itself.
        """
        key_node, node, complete = self._resolve(loc)
        target = node
        if key_node is not None and (
            (at_key and complete) or isinstance(node, (MappingNode, SequenceNode))
        ):
            target = key_node
        return target.start_mark.line + 1, target.start_mark.column + 1

    def scalar_text(self, loc: Loc) -> str | None:
        """The text of the scalar at ``loc`` as written in the file."""
        _, node, complete = self._resolve(loc)
        return node.value if complete and isinstance(node, ScalarNode) else None

    def describe(self, loc: Loc) -> str:
        """A location for a message: ``sensors[1], line 40``."""
        return f"{format_loc(loc)}, line {self.position(loc)[0]}"

    def problem(self, finding: Finding) -> DocumentProblem:
        """The problem of a finding, with its position in the file."""
        line, column = self.position(finding.loc, at_key=finding.at_key)
        return DocumentProblem(
            source=self.source,
            path=format_loc(finding.loc),
            line=line,
            column=column,
            message=finding.message,
            value=finding.value,
        )


def in_file_order(problems: list[DocumentProblem]) -> list[DocumentProblem]:
    """Problems without repeats, sorted by their position in the file."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line or 0, p.column or 0))


# ---------------------------------------------------------------- pydantic errors


def _describe(value: object) -> str:
    """Name a YAML value's type for a message."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence):
        return "a list"
    return type(value).__name__


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc``, found by walking field types."""
    annotation: Any = root
    for step in loc:
        if isinstance(step, int):
            args = [a for a in get_args(annotation) if a is not Ellipsis]
            if get_origin(annotation) not in (tuple, list) or len(args) != 1:
                return None
            annotation = args[0]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(step)
            if field is None:
                return None
            annotation = field.annotation
        else:
            return None
        if get_origin(annotation) in (Union, UnionType):
            options = [a for a in get_args(annotation) if a is not NoneType]
            annotation = options[0] if len(options) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def pydantic_findings(
    error: ValidationError, locator: Locator, root: type[BaseModel]
) -> list[Finding]:
    """The findings of a pydantic error, in words a person editing the YAML understands."""
    findings: list[Finding] = []
    details = error.errors(include_url=False)
    failed_within = {tuple(d["loc"][:n]) for d in details for n in range(len(d["loc"]))}
    for detail in details:
        loc: Loc = tuple(detail["loc"])
        kind, value = detail["type"], detail["input"]
        if kind == "too_short" and loc in failed_within:
            continue  # pydantic counts only the items that validated; the items' errors say why
        ctx = detail.get("ctx") or {}
        at_key = False
        tagged = locator.tag_steps(loc)
        model_loc = loc
        loc = tuple(step for i, step in enumerate(loc) if i not in tagged)
        if kind == "union_tag_invalid":
            tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
            field = str(ctx.get("discriminator", "kind")).strip("'")
            loc, value = (*loc, field), ctx.get("tag")
            message = f"unknown {field} {value!r}{known_hint(str(value), tags)}"
        elif kind == "value_error" and "error" in ctx:
            message = str(ctx["error"])
        elif kind == "missing":
            message, value = f"missing required key {loc[-1]!r}", None
        elif kind == "extra_forbidden":
            model = _model_at(root, model_loc[:-1])
            hint = known_hint(str(loc[-1]), model.model_fields) if model else ""
            message = f"unknown key {loc[-1]!r}{hint}"
            at_key = True
        elif kind == "invalid_key":
            message, at_key = f"a key must be text, not {_describe(value)}", True
        elif kind in ("string_type", "string_sub_type") and not isinstance(
            value, Mapping | list | NoneType
        ):
            written = locator.scalar_text(loc) or str(value)
            message = f"expected text, got {_describe(value)}; write it in quotes: '{written}'"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            message = f"expected a mapping of keys to values, got {_describe(value)}"
        elif kind in ("tuple_type", "list_type"):
            message = f"expected a list, got {_describe(value)}"
        elif kind in ("too_short", "too_long") and "actual_length" in ctx:
            bound = ctx.get("min_length" if kind == "too_short" else "max_length")
            least = "at least" if kind == "too_short" else "at most"
            message = f"needs {least} {bound} items, has {ctx['actual_length']}"
        elif kind == "enum" and "expected" in ctx:
            message = f"{value!r} is not one of {ctx['expected']}"
        elif detail["msg"].startswith("Input should") and isinstance(value, str | int | float):
            message = f"{value!r} should{detail['msg'].removeprefix('Input should')}"
        else:
            msg = detail["msg"]
            message = msg[:1].lower() + msg[1:]
        findings.append(Finding(loc, message, value, at_key))
    return findings


def known_hint(value: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)``, or `` (known: a, b)``, or `` (none defined)``."""
    names = list(known)
    if not names:
        return " (none defined)"
    close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    shown = ", ".join(names[:_MAX_KNOWN_SHOWN])
    more = len(names) - _MAX_KNOWN_SHOWN
    return f" (known: {shown}{f', and {more} more' if more > 0 else ''})"

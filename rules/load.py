r"""Reading rule files: YAML validated by :class:`~rules.model.RuleSet`, every problem placed.

This is the only module of :mod:`rules` that does I/O, and only to read rule files.
A broken file raises :class:`RuleFileError` listing every problem at once, each as
``file:line:column: rule 'id' (#n): key: message`` -- the rule by its id (when it has
a readable one) and its 1-based position in the file, the key as a YAML path within
the rule. YAML positions and pydantic's messages come from :mod:`telemetry.documents`,
shared with the site registry and the anomaly config.

>>> try:
...     parse_rules('''
... version: 1
... rules:
...   - id: aqi-heavy
...     severity: warning
...     select: {index: aqi}
...     threshold: {at_least: 201}
...     for: 5 minutes
... ''', "city.yaml")
... except RuleFileError as error:
...     print(error)
city.yaml:8:10: rule 'aqi-heavy' (#1): for: invalid duration '5 minutes' (e.g. 30s, 5m, 1h30m, 1d)
>>> len(load_default_rules().rules) > 5
True
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Final

from rules.model import SKIP_DUPLICATE_CHECK, RuleSet
from telemetry.documents import Finding, Locator, parse_document, read_yaml
from telemetry.errors import DocumentError, DocumentProblem

__all__ = [
    "RuleFileError",
    "RuleProblem",
    "default_rules_path",
    "load_default_rules",
    "load_rule_files",
    "load_rules",
    "parse_rules",
]

_RULE_PATH: Final = re.compile(r"rules\[(\d+)\](?:\.(.*)|(\[.*))?")


class RuleProblem(DocumentProblem):
    """A problem in a rule file, placed at its rule and key.

    Attributes:
        rule_index: the rule's 0-based position in the file's ``rules``, or None for a
            problem outside the rules (``version``, a YAML syntax error).
        rule_id: the rule's id as written, or None when it has no usable one.
        key: the YAML path within the rule, e.g. ``select.metric``; empty for the
            rule as a whole.
    """

    __slots__ = ("key", "rule_id", "rule_index")

    def __init__(
        self,
        problem: DocumentProblem,
        *,
        rule_index: int | None,
        rule_id: str | None,
        key: str,
    ) -> None:
        super().__init__(
            source=problem.source,
            path=problem.path,
            line=problem.line,
            column=problem.column,
            message=problem.message,
            value=problem.value,
        )
        self.rule_index = rule_index
        self.rule_id = rule_id
        self.key = key

    @property
    def rule(self) -> str:
        """The rule as messages name it: ``rule 'aqi-heavy' (#2)`` or ``rule #2``."""
        if self.rule_index is None:
            return ""
        number = f"#{self.rule_index + 1}"
        return f"rule {self.rule_id!r} ({number})" if self.rule_id else f"rule {number}"

    def __str__(self) -> str:
        if self.rule_index is None:
            return super().__str__()
        key = f"{self.key}: " if self.key else ""
        return f"{self.where}: {self.rule}: {key}{self.message}"


class RuleFileError(DocumentError):
    """A rule file that cannot be used; :attr:`problems` are :class:`RuleProblem` objects."""

    problems: tuple[RuleProblem, ...]

    def __init__(self, problems: Sequence[RuleProblem]) -> None:
        super().__init__(list(problems))


def _rule_id(data: object, index: int) -> str | None:
    if isinstance(data, Mapping):
        rules = data.get("rules")
        if isinstance(rules, list) and 0 <= index < len(rules):
            rule = rules[index]
            if isinstance(rule, Mapping):
                rule_id = rule.get("id")
                if isinstance(rule_id, str | int) and not isinstance(rule_id, bool):
                    return str(rule_id)
    return None


def _placed(problem: DocumentProblem, data: object) -> RuleProblem:
    match = _RULE_PATH.fullmatch(problem.path)
    if match is None:
        return RuleProblem(problem, rule_index=None, rule_id=None, key=problem.path)
    index = int(match.group(1))
    key = match.group(2) or match.group(3) or ""
    return RuleProblem(problem, rule_index=index, rule_id=_rule_id(data, index), key=key)


def _duplicates(data: Any, locator: Locator) -> list[Finding]:
    """Rule ids given twice, each pointed at the later one."""
    findings: list[Finding] = []
    rules = data.get("rules")
    if not isinstance(rules, list):
        return findings
    first: dict[str, int] = {}
    for index, rule in enumerate(rules):
        rule_id = rule.get("id") if isinstance(rule, Mapping) else None
        if not isinstance(rule_id, str):
            continue
        if rule_id in first:
            line = locator.position(("rules", first[rule_id]))[0]
            message = (
                f"duplicate rule id {rule_id!r} (first at rule #{first[rule_id] + 1}, line {line})"
            )
            findings.append(Finding(("rules", index, "id"), message, rule_id))
        else:
            first[rule_id] = index
    return findings


def parse_rules(text: str, source: str = "<string>") -> RuleSet:
    """Parse a rule file's YAML text.

    Raises:
        RuleFileError: listing every problem, each with file, line, rule and key.
    """
    raw: list[object] = [None]

    def cross_check(data: Any, locator: Locator) -> list[Finding]:
        raw[0] = data
        return _duplicates(data, locator)

    try:
        return parse_document(
            text,
            source,
            RuleSet,
            what="rule file",
            context={SKIP_DUPLICATE_CHECK: True},
            cross_check=cross_check,
        )
    except DocumentError as exc:
        raise RuleFileError([_placed(p, raw[0]) for p in exc.problems]) from None


def _read(path: str | os.PathLike[str] | Traversable) -> tuple[str, str]:
    """The file's name for messages and its text."""
    reader: Traversable
    if isinstance(path, str | os.PathLike):
        source, reader = os.fspath(path), Path(path)
    else:
        source, reader = str(path), path
    try:
        return source, reader.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = DocumentProblem(
            source=source, path="", line=None, column=None, message=f"cannot read: {exc}"
        )
        raise RuleFileError([RuleProblem(problem, rule_index=None, rule_id=None, key="")]) from exc


def load_rules(path: str | os.PathLike[str] | Traversable) -> RuleSet:
    """Load one rule file (UTF-8 YAML).

    Raises:
        RuleFileError: the file cannot be read, or has problems (all of them listed).
    """
    return parse_rules(*reversed(_read(path)))


def load_rule_files(paths: Iterable[str | os.PathLike[str]]) -> RuleSet:
    """Load several rule files as one rule set; ids must be unique across them.

    Every file is checked, so one call reports the problems of all of them.

    Raises:
        RuleFileError: every problem of every file, and each id defined in two files
            (pointed at its second definition).
    """
    problems: list[RuleProblem] = []
    merged: RuleSet | None = None
    where: dict[str, str] = {}
    for path in paths:
        try:
            source, text = _read(path)
            rule_set = parse_rules(text, source)
        except RuleFileError as exc:
            problems.extend(exc.problems)
            continue
        for index, rule in enumerate(rule_set.rules):
            if rule.id not in where:
                where[rule.id] = source
                continue
            line, column = _position(text, ("rules", index, "id"))
            problem = DocumentProblem(
                source=source,
                path=f"rules[{index}].id",
                line=line,
                column=column,
                message=f"rule id {rule.id!r} is already defined in {where[rule.id]}",
                value=rule.id,
            )
            problems.append(RuleProblem(problem, rule_index=index, rule_id=rule.id, key="id"))
        if not problems:
            merged = rule_set if merged is None else merged.merged(rule_set)
    if problems:
        raise RuleFileError(problems)
    return merged if merged is not None else RuleSet(version=1)


def _position(text: str, loc: tuple[str | int, ...]) -> tuple[int | None, int | None]:
    """The line and column of a place in a valid YAML text."""
    root, _, _ = read_yaml(text, "")
    if root is None:
        return None, None
    return Locator(root, "").position(loc)


def default_rules_path() -> Traversable:
    """The shipped default rule set, ``rules/default.yaml`` (package data)."""
    return files("rules").joinpath("default.yaml")


def load_default_rules() -> RuleSet:
    """The shipped default rule set; see ``rules/default.yaml``."""
    return load_rules(default_rules_path())

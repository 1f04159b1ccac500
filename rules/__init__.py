r"""Threshold rules and the alert state machine: pure Python, no I/O but reading rule files.

Operators write rules in YAML; the stream evaluates them on what it computes and
emits :class:`telemetry.Alert` transitions (firing, resolved), each with a
fingerprint (rule id and subject) so that a replay never notifies twice.

* :mod:`rules.model` -- the rule file as pydantic models: :class:`RuleSet`,
  :class:`Rule`, its :class:`Selector` and conditions (:class:`Threshold` on a value
  or rolling aggregate, :class:`RateOfChange`, :class:`AnomalyCondition`,
  :class:`Absence`), durations (``5m``, ``1h30m``) and annotation templates.
* :mod:`rules.load` -- reading rule files: :func:`load_rules`, :func:`parse_rules`,
  :func:`load_rule_files`; every problem is a :class:`RuleProblem` naming the file,
  line, rule and key. :func:`load_default_rules` gives the shipped
  ``rules/default.yaml``.
* :mod:`rules.engine` -- :class:`RuleEngine` evaluates :class:`Sample`\\ s (inactive
  -> pending -> firing -> resolved, in event time), checks absences, and keeps its
  state per key (``rules/<district>/<fingerprint>``) as bytes for the stream's
  changelog tables.

May import ``telemetry`` (and pydantic, PyYAML and the standard library) only; an
import-linter contract in ``pyproject.toml`` enforces it. Routing and receivers live
beside it: :mod:`rules.routing` (receivers, the route tree, grouping) and
:mod:`rules.notify` (each receiver's message format and signature); the senders are in
:mod:`stream.alerts`.

>>> from datetime import UTC, datetime
>>> engine = RuleEngine(load_default_rules())
>>> at = datetime(2024, 1, 8, 9, tzinfo=UTC)
>>> alerts = engine.evaluate([Sample("aqi", "aqi", 320.0, at, district="lakeside")])
>>> [(a.rule_id, a.severity.value, a.state.value) for a in alerts]
[('aqi-heavy', 'warning', 'firing'), ('aqi-severe', 'critical', 'firing')]
>>> print(alerts[1].annotations["summary"])
Severe pollution (严重污染) at lakeside: AQI 320 (level 6 from 301)
"""

from rules.engine import EngineStats, RuleEngine, Sample, state_key
from rules.load import (
    RuleFileError,
    RuleProblem,
    default_rules_path,
    load_default_rules,
    load_rule_files,
    load_rules,
    parse_rules,
)
from rules.model import (
    INDEX_ALIASES,
    INDEX_FIELDS,
    TEMPLATE_FIELDS,
    Absence,
    Aggregate,
    AnomalyCondition,
    Comparison,
    During,
    RateOfChange,
    Rule,
    RuleSet,
    Selector,
    SubjectLabel,
    Threshold,
    format_duration,
    parse_duration,
)

__all__ = [
    "INDEX_ALIASES",
    "INDEX_FIELDS",
    "TEMPLATE_FIELDS",
    "Absence",
    "Aggregate",
    "AnomalyCondition",
    "Comparison",
    "During",
    "EngineStats",
    "RateOfChange",
    "Rule",
    "RuleEngine",
    "RuleFileError",
    "RuleProblem",
    "RuleSet",
    "Sample",
    "Selector",
    "SubjectLabel",
    "Threshold",
    "default_rules_path",
    "format_duration",
    "load_default_rules",
    "load_rule_files",
    "load_rules",
    "parse_duration",
    "parse_rules",
    "state_key",
]

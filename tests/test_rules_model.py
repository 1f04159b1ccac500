"""The rule-file model and loader: durations, templates, and errors that name file, rule and key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from rules.load import (
    RuleFileError,
    RuleProblem,
    load_default_rules,
    load_rule_files,
    load_rules,
    parse_rules,
)
from rules.model import (
    INDEX_ALIASES,
    INDEX_FIELDS,
    Comparison,
    Rule,
    RuleSet,
    format_duration,
    parse_duration,
    template_problem,
)
from stream.schema import MEASUREMENTS

HEAD = "version: 1\nrules:\n"


def problems_of(text: str, source: str = "city.yaml") -> list[RuleProblem]:
    with pytest.raises(RuleFileError) as caught:
        parse_rules(text, source)
    return list(caught.value.problems)


def only_problem(text: str) -> RuleProblem:
    [problem] = problems_of(text)
    return problem


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("0", timedelta(0)),
        (0, timedelta(0)),
    ],
)
def test_durations_parse(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["5 minutes", "5", "m", "", "1m30h", "-5m", "1.5h", 300, True])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_durations_round_trip() -> None:
    for text in ("0s", "45s", "5m", "1h30m", "1d", "2d3h"):
        assert format_duration(parse_duration(text)) == text


# ---------------------------------------------------------------- templates


def test_templates_are_checked() -> None:
    assert template_problem("AQI {value:.0f} at {site_name} ({explanation})") is None
    assert template_problem("no fields, {{literal braces}}") is None
    assert "did you mean 'value'" in (template_problem("{valeu}") or "")
    assert "invalid format" in (template_problem("{site_name:.1f}") or "")
    assert "invalid template" in (template_problem("unclosed {value") or "")
    assert template_problem("{value.real}") is not None
    assert template_problem("{}") is not None


# ---------------------------------------------------------------- errors name file, rule, key


def test_error_names_file_line_rule_and_key() -> None:
    problem = only_problem(
        HEAD + "  - id: aqi-ok\n    severity: info\n    select: {index: aqi}\n"
        "    threshold: {above: 1}\n"
        "  - id: aqi-heavy\n    severity: warning\n    select: {index: aqi}\n"
        "    threshold: {at_least: 201}\n    for: 5 minutes\n"
    )
    assert (problem.source, problem.rule_id, problem.rule_index, problem.key) == (
        "city.yaml",
        "aqi-heavy",
        1,
        "for",
    )
    assert problem.line == 11
    assert str(problem) == (
        "city.yaml:11:10: rule 'aqi-heavy' (#2): for: invalid duration '5 minutes'"
        " (e.g. 30s, 5m, 1h30m, 1d)"
    )


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        HEAD + "  - id: a\n    severity: urgent\n    select: {kind: pollution, metric: pm25}\n"
        "    threshold: {above: 1}\n"
        "  - id: b\n    severity: info\n    select: {index: aqi}\n"
        "    threshold: {above: 1, below: 3}\n"
        "    annotations: {summary: 'AQI {valeu}'}\n"
    )
    found = [(p.rule_id, p.key) for p in problems]
    assert found == [
        ("a", "severity"),
        ("a", "select.metric"),
        ("b", "threshold"),
        ("b", "annotations.summary"),
    ]
    messages = [p.message for p in problems]
    assert "'urgent' is not one of" in messages[0]
    assert "pollution has no metric 'pm25'" in messages[1]
    assert "give exactly one of above, at_least, below, at_most" in messages[2]
    assert "did you mean 'value'" in messages[3]


def test_rule_without_id_is_named_by_position() -> None:
    problem = only_problem(HEAD + "  - severity: info\n    absence: {for: 5m}\n")
    assert (problem.rule_id, problem.rule_index, problem.key) == (None, 0, "id")
    assert "rule #1: id: missing required key 'id'" in str(problem)


def test_duplicate_ids_point_at_the_second() -> None:
    problem = only_problem(
        HEAD
        + "  - id: a\n    severity: info\n    absence: {for: 5m}\n"
        + "  - id: a\n    severity: info\n    absence: {for: 9m}\n"
    )
    assert (problem.rule_index, problem.key, problem.line) == (1, "id", 6)
    assert "duplicate rule id 'a' (first at rule #1, line 3)" in problem.message


def test_unknown_key_is_named_with_a_hint() -> None:
    problem = only_problem(
        HEAD + "  - id: a\n    severity: info\n    absence: {for: 5m}\n    labes: {}\n"
    )
    assert problem.key == "labes"
    assert "did you mean 'labels'" in problem.message


def test_problem_outside_rules_has_no_rule() -> None:
    problem = only_problem("version: 2\nrules: []\n")
    assert problem.rule_index is None
    assert str(problem).startswith("city.yaml:1:10: version:")


def test_yaml_syntax_error_is_placed() -> None:
    problem = only_problem(HEAD + "  - id: a\n    severity: [info\n")
    assert problem.rule_index is None
    assert "invalid YAML" in problem.message


@pytest.mark.parametrize(
    ("rule", "key", "words"),
    [
        (
            "select: {index: aqi}\n    threshold: {at_least: 201}\n    clear: {below: 250}",
            "clear",
            "overlaps the firing condition",
        ),
        (
            "select: {index: aqi}\n    threshold: {above: 200}\n    clear: {above: 100}",
            "clear",
            "overlaps",
        ),
        ("select: {kind: pollution}\n    threshold: {above: 35}", "threshold", "select a metric"),
        (
            "select: {index: aqi}\n    threshold: {above: 35, aggregate: mean}",
            "threshold",
            "needs a window",
        ),
        (
            "select: {index: aqi}\n    threshold: {above: 35, window: 10m}",
            "threshold",
            "needs an aggregate",
        ),
        ("select: {index: aqi}\n    anomaly: {}", "anomaly", "scores are of readings"),
        ("absence: {for: 5m}\n    for: 5m", "for", "does not apply to an absence rule"),
        ("absence: {for: 5m}\n    clear: {below: 1}", "clear", "does not apply"),
        ("absence: {for: 0s}", "absence.for", "greater than"),
        ("absence: {for: 5m, per: street}", "absence.per", "is not one of"),
        ("select: {index: nope}\n    threshold: {above: 1}", "select.index", "unknown index"),
        (
            "select: {kind: weather, metric: x}\n    threshold: {above: 1}",
            "select.kind",
            "unknown kind",
        ),
        (
            "select: {index: aqi, kind: aqi}\n    threshold: {above: 1}",
            "select.index",
            "either index or kind",
        ),
        (
            "select: {index: aqi}\n    threshold: {above: 1}\n    labels: {severity: x}",
            "labels",
            "set by the engine",
        ),
        (
            "select: {index: aqi}\n    threshold: {above: 1}\n    during: {from: '25:00', to: 6}",
            "during.from",
            "invalid time of day",
        ),
        (
            "select: {kind: energy, metric: power_w}\n    threshold: {above: 1}\n    anomaly: {}",
            "",
            "absence (found threshold and anomaly)",
        ),
        ("select: {index: aqi}", "", "exactly one condition"),
        (
            "select: {kind: energy, metric: power_w}\n    anomaly: {min_score: 2}",
            "anomaly.min_score",
            "less than or equal to 1",
        ),
        (
            "select: {index: aqi}\n    threshold: {above: 1}\n    keep_firing_for: -5m",
            "keep_firing_for",
            "invalid duration",
        ),
    ],
)
def test_rule_checks_name_their_key(rule: str, key: str, words: str) -> None:
    problem = problems_of(HEAD + f"  - id: r1\n    severity: info\n    {rule}\n")[0]
    assert (problem.rule_id, problem.key) == ("r1", key)
    assert words in problem.message


def test_load_rule_files_reports_ids_defined_in_two_files(tmp_path: Path) -> None:
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    rule = "  - id: a\n    severity: info\n    absence: {for: 5m}\n"
    one.write_text(HEAD + rule, encoding="utf-8")
    two.write_text(HEAD + "  - id: b\n    severity: info\n    absence: {for: 5m}\n" + rule)
    with pytest.raises(RuleFileError) as caught:
        load_rule_files([one, two])
    [problem] = caught.value.problems
    assert (problem.source, problem.rule_index, problem.key, problem.line) == (
        str(two),
        1,
        "id",
        6,
    )
    assert f"already defined in {one}" in problem.message


def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")


# ---------------------------------------------------------------- the model


def test_index_resolves_to_kind_and_metric() -> None:
    rule = Rule.model_validate(
        {"id": "t", "severity": "info", "select": {"index": "tpi"}, "threshold": {"above": 8}}
    )
    assert (rule.select.kind, rule.select.metric) == ("traffic_index", "tpi")
    rule = Rule.model_validate(
        {
            "id": "t",
            "severity": "info",
            "select": {"index": "scenic.daily_pct", "site": "st-1"},
            "threshold": {"above": 8},
        }
    )
    assert (rule.select.kind, rule.select.metric, rule.select.site) == (
        "scenic",
        "daily_pct",
        ("st-1",),
    )


def test_default_clear_is_the_negation() -> None:
    for op, bound, inside, outside in (
        ("above", 5.0, 5.0, 5.1),
        ("at_least", 5.0, 4.9, 5.0),
        ("below", 5.0, 5.0, 4.9),
        ("at_most", 5.0, 5.1, 5.0),
    ):
        fire = Comparison.model_validate({op: bound})
        assert fire.negated().holds(inside)
        assert not fire.holds(inside)
        assert not fire.negated().holds(outside)
        assert fire.holds(outside)


def test_ruleset_refuses_duplicate_ids_from_python() -> None:
    rule = {"id": "a", "severity": "info", "absence": {"for": "5m"}}
    with pytest.raises(ValidationError, match="duplicate rule id 'a'"):
        RuleSet.model_validate({"version": 1, "rules": [rule, rule]})


def test_index_fields_are_the_stream_schema_fields() -> None:
    """The rules may not import stream, so the names are kept in step by this test."""
    schema = {m.name: {f.name for f in m.fields} for m in MEASUREMENTS}
    for measurement, fields in INDEX_FIELDS.items():
        assert set(fields) <= schema[measurement], measurement
    for kind, metric in INDEX_ALIASES.values():
        assert metric in INDEX_FIELDS[kind]


def test_default_rules_validate_and_cover_the_issue() -> None:
    rule_set = load_default_rules()
    ids = {rule.id for rule in rule_set.rules}
    assert {
        "aqi-heavy",
        "aqi-severe",
        "pm25-hotspot",
        "scenic-occupancy-80",
        "scenic-occupancy-90",
        "scenic-occupancy-100",
        "traffic-severe-congestion",
        "energy-night-excess",
        "gateway-offline",
        "sensor-stuck",
        "sensor-out-of-range",
    } <= ids
    heavy = rule_set.rule("aqi-heavy")
    assert heavy.firing.holds(201)
    assert not heavy.firing.holds(200)
    assert heavy.clearing.holds(150)
    assert not heavy.clearing.holds(151)
    assert rule_set.rule("aqi-severe").firing.holds(301)
    assert rule_set.rule("traffic-severe-congestion").firing.holds(8.0)

"""Anomaly config: the shipped profiles, YAML over them, and errors pointed at the line.

The shipped defaults are being tuned, so the tests check how profiles relate (a metric's
profile replaces its kind's, the range check comes from the catalogue) rather than the
tuned detector lists themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.anomaly.base import REGISTRY
from stream.anomaly.config import (
    DEFAULT_CONFIG,
    AnomalyConfig,
    DetectorSpec,
    Profile,
    load_config,
    parse_config,
)
from stream.anomaly.faults import OutOfRange
from telemetry.catalogue import CATALOGUE, Kind
from telemetry.documents import DocumentError

LOCAL_HOURS = {"seasonal", "cusum"}
"""The detectors that bucket by local time and take the config's ``utc_offset_h``."""


def names(config: AnomalyConfig, kind: Kind | None, metric: str | None) -> list[str]:
    return [d.name for d in config.combiner_for(kind, metric).detectors]


def spec_names(profile: Profile) -> list[str]:
    return [spec.name for spec in profile.detectors]


def every_series() -> list[tuple[Kind | None, str | None]]:
    series: list[tuple[Kind | None, str | None]] = [(None, None)]
    series += [(kind, metric) for kind, metrics in CATALOGUE.items() for metric in metrics]
    return series


# ---------------------------------------------------------------- the shipped defaults


def test_the_defaults_build_a_combiner_for_every_metric_of_the_catalogue_and_the_generic_one() -> (
    None
):
    for kind, metric in every_series():
        combiner = DEFAULT_CONFIG.combiner_for(kind, metric)
        assert combiner.detectors, (kind, metric)
        assert all(d.name in REGISTRY for d in combiner.detectors)
        # Built fresh each time: no state shared between two combiners of one profile.
        again = DEFAULT_CONFIG.combiner_for(kind, metric)
        assert all(a is not b for a, b in zip(combiner.detectors, again.detectors, strict=True))
    # Every kind of the catalogue has a profile of its own.
    assert set(DEFAULT_CONFIG.kinds) == set(CATALOGUE)
    generic = DEFAULT_CONFIG.profile_for(None, None)
    assert generic is DEFAULT_CONFIG.default
    assert names(DEFAULT_CONFIG, None, None) == spec_names(generic)


def test_a_metric_profile_replaces_its_kinds_profile_and_other_metrics_keep_the_kinds() -> None:
    replaced = 0
    for kind, kind_profile in DEFAULT_CONFIG.kinds.items():
        for metric in CATALOGUE[kind]:
            profile = DEFAULT_CONFIG.profile_for(kind, metric)
            if metric in kind_profile.metrics:
                replaced += 1
                expected = spec_names(kind_profile.metrics[metric])
                assert spec_names(profile) == expected
                assert profile.cooldown == kind_profile.metrics[metric].cooldown
                assert profile.sharpness == kind_profile.metrics[metric].sharpness
            else:
                expected = spec_names(kind_profile)
                assert profile is kind_profile
            assert names(DEFAULT_CONFIG, kind, metric) == [*expected, "out_of_range"]
    assert replaced > 0, "the defaults have no per-metric profile left to check"
    # A metric of no catalogue kind, or no metric at all: the kind's profile.
    assert DEFAULT_CONFIG.profile_for("traffic", None) is DEFAULT_CONFIG.kinds[Kind.TRAFFIC]
    assert (
        DEFAULT_CONFIG.profile_for(Kind.TRAFFIC, "nonsense") is DEFAULT_CONFIG.kinds[Kind.TRAFFIC]
    )


def test_a_metric_profile_from_yaml_applies_to_that_metric_only() -> None:
    config = parse_config(
        """
kinds:
  traffic:
    detectors: [{name: seasonal}, {name: stuck}]
    cooldown: 7
    metrics:
      occupancy_pct: {detectors: [{name: rolling_mad, params: {window: 30}}], cooldown: 3}
"""
    )
    occupancy = config.combiner_for("traffic", "occupancy_pct")
    assert [d.name for d in occupancy.detectors] == ["rolling_mad", "out_of_range"]
    assert occupancy.detectors[0].params()["window"] == 30
    assert occupancy.cooldown == 3
    speed = config.combiner_for("traffic", "mean_speed_kmh")
    assert [d.name for d in speed.detectors] == ["seasonal", "stuck", "out_of_range"]
    assert speed.cooldown == 7


def test_range_check_adds_out_of_range_with_the_catalogues_physical_range() -> None:
    for kind, metrics in CATALOGUE.items():
        for metric, spec in metrics.items():
            last = DEFAULT_CONFIG.combiner_for(kind, metric).detectors[-1]
            assert isinstance(last, OutOfRange), (kind, metric)
            assert (last.low, last.high) == (spec.low, spec.high)
            assert (
                sum(
                    d.name == "out_of_range"
                    for d in DEFAULT_CONFIG.combiner_for(kind, metric).detectors
                )
                == 1
            )
    # The generic profile knows no metric, so no range; nor does a kind without a metric.
    assert "out_of_range" not in names(DEFAULT_CONFIG, None, None)
    assert "out_of_range" not in names(DEFAULT_CONFIG, Kind.ENERGY, None)


def test_range_check_false_on_a_kind_leaves_the_range_out_for_its_metrics_too() -> None:
    config = parse_config(
        """
kinds:
  energy:
    range_check: false
    detectors: [{name: stuck}]
    metrics:
      power_w: {detectors: [{name: extreme}]}
"""
    )
    assert names(config, Kind.ENERGY, "voltage_v") == ["stuck"]
    assert names(config, Kind.ENERGY, "power_w") == ["extreme"]
    # Other kinds keep the shipped range check.
    assert names(config, Kind.TRAFFIC, "occupancy_pct")[-1] == "out_of_range"


def test_range_check_false_on_one_metric_leaves_the_range_out_for_that_metric() -> None:
    config = parse_config(
        """
kinds:
  energy:
    detectors: [{name: stuck}]
    metrics:
      power_w: {detectors: [{name: stuck}], range_check: false}
"""
    )
    assert names(config, Kind.ENERGY, "voltage_v") == ["stuck", "out_of_range"]
    assert names(config, Kind.ENERGY, "power_w") == ["stuck"]


# ---------------------------------------------------------------- YAML over the defaults


def test_a_config_file_overrides_only_what_it_names() -> None:
    config = parse_config(
        """
kinds:
  traffic:
    detectors: [{name: rolling_mad, params: {window: 48}}]
""",
        "anomaly.yaml",
    )
    assert names(config, Kind.TRAFFIC, "mean_speed_kmh") == ["rolling_mad", "out_of_range"]
    assert config.kinds[Kind.TRAFFIC].metrics == {}
    for kind in (Kind.POLLUTION, Kind.AMBIENT, Kind.ENERGY, Kind.CROWD):
        assert config.kinds[kind] == DEFAULT_CONFIG.kinds[kind]
        for metric in CATALOGUE[kind]:
            assert names(config, kind, metric) == names(DEFAULT_CONFIG, kind, metric)
    assert config.default == DEFAULT_CONFIG.default
    assert config.utc_offset_h == DEFAULT_CONFIG.utc_offset_h

    generic = parse_config("default:\n  detectors: [{name: extreme}]\n  cooldown: 0\n")
    assert names(generic, None, None) == ["extreme"]
    assert generic.combiner_for(None, None).cooldown == 0
    assert generic.kinds == DEFAULT_CONFIG.kinds

    assert parse_config("utc_offset_h: -3\n").model_copy(update={"utc_offset_h": 8.0}) == (
        DEFAULT_CONFIG
    )


def test_an_empty_config_file_or_none_is_the_defaults(tmp_path: Path) -> None:
    assert load_config(None) is DEFAULT_CONFIG
    path = tmp_path / "anomaly.yaml"
    path.write_text("utc_offset_h: 8\n", encoding="utf-8")
    assert load_config(path) == DEFAULT_CONFIG
    path.write_text("{}\n", encoding="utf-8")
    assert load_config(str(path)) == DEFAULT_CONFIG


def offsets(config: AnomalyConfig, kind: Kind | None, metric: str | None) -> list[float]:
    """``utc_offset_h`` of the local-hours detectors of a series, with the spec's own."""
    profile = config.profile_for(kind, metric)
    built = config.combiner_for(kind, metric).detectors
    found = []
    for spec, detector in zip(profile.detectors, built, strict=False):
        assert spec.name == detector.name
        if spec.name in LOCAL_HOURS:
            own = spec.params.get("utc_offset_h")
            value = float(detector.params()["utc_offset_h"])
            if own is not None:
                assert value == own
            else:
                found.append(value)
    return found


def test_utc_offset_reaches_seasonal_and_cusum_detectors_without_their_own() -> None:
    config = parse_config("utc_offset_h: 3\n")
    assert config.kinds == DEFAULT_CONFIG.kinds
    reached = [o for kind, metric in every_series() for o in offsets(config, kind, metric)]
    assert reached, "no shipped profile has a seasonal or cusum detector any more"
    assert set(reached) == {3.0}
    shipped = [o for kind, metric in every_series() for o in offsets(DEFAULT_CONFIG, kind, metric)]
    assert set(shipped) == {DEFAULT_CONFIG.utc_offset_h}

    own = parse_config(
        """
utc_offset_h: 3
default:
  detectors:
    - {name: seasonal, params: {utc_offset_h: -5}}
    - {name: cusum}
    - {name: extreme}
"""
    )
    seasonal, cusum, extreme = own.combiner_for(None, None).detectors
    assert seasonal.params()["utc_offset_h"] == -5
    assert cusum.params()["utc_offset_h"] == 3
    assert "utc_offset_h" not in extreme.params()
    # The spec itself is unchanged: building does not write the offset into it.
    assert own.default.detectors[1].params == {}


def test_specs_and_profiles_are_checked_in_python_too() -> None:
    assert (
        DetectorSpec(name="rolling_mad", params={"window": "30"}).build(0.0).params()["window"]
        == 30
    )
    with pytest.raises(ValueError, match="unknown detector 'median'"):
        DetectorSpec(name="median")
    with pytest.raises(ValueError, match="at least 1"):
        Profile(detectors=[])


# ---------------------------------------------------------------- errors


def problem_of(tmp_path: Path, text: str) -> tuple[str, DocumentError]:
    path = tmp_path / "anomaly.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DocumentError) as caught:
        load_config(path)
    return str(path), caught.value


def test_an_unknown_detector_lists_the_known_ones_and_points_at_the_file_and_line(
    tmp_path: Path,
) -> None:
    path, error = problem_of(
        tmp_path,
        """utc_offset_h: 8
default:
  detectors:
    - {name: extreme}
    - {name: median}
""",
    )
    message = str(error)
    assert message.startswith(f"{path}:5:14: default.detectors[1].name: unknown detector 'median'")
    known = message.split("known: ", 1)[1]
    assert known.split(", ") == sorted(REGISTRY)
    [problem] = error.problems
    assert (problem.source, problem.line, problem.path) == (path, 5, "default.detectors[1].name")


@pytest.mark.parametrize(
    ("text", "line", "path", "fragments"),
    [
        pytest.param(
            "kinds:\n  traffic:\n    detectors:\n"
            "      - {name: stuck}\n      - {name: rolling_mad, params: {window: long}}\n",
            5,
            "kinds.traffic.detectors[1]",
            ["'rolling_mad'", "window", "valid integer", "'long'"],
            id="wrong-type",
        ),
        pytest.param(
            "default:\n  detectors:\n    - {name: extreme, params: {windw: 30}}\n",
            3,
            "default.detectors[0]",
            ["'extreme'", "windw", "30"],
            id="unknown-parameter",
        ),
        pytest.param(
            "kinds:\n  ambient:\n    detectors: [{name: stuck}]\n    metrics:\n"
            "      temperature_c:\n        detectors: [{name: jump}]\n",
            6,
            "kinds.ambient.metrics.temperature_c.detectors[0]",
            ["'jump'", "max_rate_per_s", "required"],
            id="missing-parameter",
        ),
        pytest.param(
            "kinds:\n  traffic:\n    detectors: [{name: stuck}]\n    cooldwn: 3\n",
            4,
            "kinds.traffic.cooldwn",
            ["unknown key 'cooldwn'"],
            id="unknown-profile-key",
        ),
        pytest.param(
            "default:\n  detectors: [{name: extreme}]\n  sharpness: 0\n",
            3,
            "default.sharpness",
            ["greater than 0"],
            id="bad-profile-value",
        ),
    ],
)
def test_config_errors_name_the_file_line_and_key(
    tmp_path: Path, text: str, line: int, path: str, fragments: list[str]
) -> None:
    source, error = problem_of(tmp_path, text)
    [problem] = error.problems
    assert (problem.source, problem.line, problem.path) == (source, line, path)
    message = str(error)
    assert message.startswith(f"{source}:{line}:")
    assert f": {path}: " in message
    for fragment in fragments:
        assert fragment in message


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    source, error = problem_of(
        tmp_path,
        """default:
  detectors: [{name: median}]
kinds:
  crowd:
    detectors: [{name: seasonal, params: {period: fortnight}}]
    range_chek: true
""",
    )
    assert [(p.line, p.path) for p in error.problems] == [
        (2, "default.detectors[0].name"),
        (5, "kinds.crowd.detectors[0]"),
        (6, "kinds.crowd.range_chek"),
    ]
    assert "fortnight" in str(error)
    assert all(line.startswith(f"{source}:") for line in str(error).splitlines())


def test_a_file_that_cannot_be_read_is_a_document_error(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")

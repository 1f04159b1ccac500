"""Incident scoring against ground truth: hand-made cases and the simulator's own file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulators.engine import City
from simulators.scenario import load_scenario
from stream.backtest import (
    BacktestError,
    Detection,
    IncidentReport,
    TruthLabel,
    format_incident_report,
    load_ground_truth,
    merge_episodes,
    score_incidents,
)

SCENARIO = Path(__file__).resolve().parents[1] / "simulators" / "examples" / "lakeside-weekend.yaml"
DAY = datetime(2024, 11, 8, tzinfo=UTC)


def at(hh_mm: str, day: int = 0) -> datetime:
    """A time on 2024-11-08 (plus ``day`` days), UTC."""
    hours, minutes = map(int, hh_mm.split(":"))
    return DAY + timedelta(days=day, hours=hours, minutes=minutes)


SENSOR_KIND = {
    "tr-1": "traffic",
    "tr-2": "traffic",
    "tr-9": "traffic",
    "aq-1": "pollution",
    "aq-2": "pollution",
    "em-1": "energy",
}

ACCIDENT = TruthLabel(
    id="incident-1",
    category="incident",
    kind="traffic_accident",
    sensors=("tr-1", "tr-2"),
    metrics=("mean_speed_kmh", "occupancy_pct"),
    start=at("09:30"),
    end=at("11:00"),
)
EPISODE = TruthLabel(
    id="incident-2",
    category="incident",
    kind="pollution_episode",
    sensors=("aq-1",),
    start=at("10:00"),
    end=at("12:00"),
)
LOCAL = TruthLabel(
    id="incident-3",
    category="incident",
    kind="local_source",
    sensor="aq-2",
    sensors=("aq-2",),
    metrics=("pm2_5",),
    start=at("13:00"),
    end=at("16:00"),
)
STUCK = TruthLabel(
    id="fault-1",
    category="fault",
    kind="stuck",
    sensor="em-1",
    metrics=("power_w",),
    start=at("08:00"),
    end=None,
)
LABELS = [ACCIDENT, EPISODE, LOCAL, STUCK]

DETECTIONS = [
    # A hit: three detections less than 15 min apart on one series are one episode.
    Detection(at("09:34"), "tr-1", "mean_speed_kmh", 0.7),
    Detection(at("09:35"), "tr-1", "mean_speed_kmh", 0.9),
    Detection(at("09:48"), "tr-1", "mean_speed_kmh", 0.8),
    # The same series 15 min after its last detection: a new episode, still in the label.
    Detection(at("10:03"), "tr-1", "mean_speed_kmh", 0.6),
    # Another affected sensor and metric: a second matching episode.
    Detection(at("09:50"), "tr-2", "occupancy_pct", 0.6),
    # An accident sensor but a metric the label does not list: a false alarm.
    Detection(at("09:40"), "tr-1", "vehicle_count", 0.6),
    # Before the accident started: a false alarm, though its sensor is affected later.
    Detection(at("09:00"), "tr-2", "mean_speed_kmh", 0.6),
    # A traffic sensor the accident does not touch: a false alarm against traffic.
    Detection(at("14:00"), "tr-9", "mean_speed_kmh", 0.9),
    # The pollution episode ended at 12:00; 20 min later is within the 30 min tolerance ...
    Detection(at("12:20"), "aq-1", "pm2_5", 0.8),
    # ... 25 min after that, a separate episode, 45 min after the end: a false alarm.
    Detection(at("12:45"), "aq-1", "pm2_5", 0.8),
    # The open-ended stuck fault, detected two days after it began.
    Detection(at("08:10", day=2), "em-1", "power_w", 0.5),
    # incident-3 on aq-2 gets no detection at all: a miss.
]


@pytest.fixture
def report() -> IncidentReport:
    return score_incidents(LABELS, DETECTIONS, sensor_kind=SENSOR_KIND)


def test_detections_close_together_merge_into_episodes() -> None:
    episodes = merge_episodes(DETECTIONS, timedelta(minutes=15))
    speed = [e for e in episodes if (e.sensor, e.metric) == ("tr-1", "mean_speed_kmh")]
    assert [(e.start, e.end, e.detections, e.peak_score) for e in speed] == [
        (at("09:34"), at("09:48"), 3, 0.9),
        (at("10:03"), at("10:03"), 1, 0.6),
    ]
    assert len(episodes) == 9
    assert [e.start for e in episodes] == sorted(e.start for e in episodes)
    # A wider gap joins the two; none keeps every detection apart.
    assert len(merge_episodes(DETECTIONS, timedelta(minutes=16))) == 8
    assert len(merge_episodes(DETECTIONS, timedelta(0))) == len(DETECTIONS)
    assert merge_episodes([]) == []


def test_a_hit_counts_with_its_time_to_detect(report: IncidentReport) -> None:
    accident = report.kinds["traffic_accident"]
    assert (accident.labels, accident.detected, accident.recall) == (1, 1, 1.0)
    assert accident.median_ttd_s == accident.max_ttd_s == 4 * 60
    outcome = report.outcomes[0]
    assert outcome.detected
    assert [(e.sensor, e.metric, e.start) for e in outcome.episodes] == [
        ("tr-1", "mean_speed_kmh", at("09:34")),
        ("tr-2", "occupancy_pct", at("09:50")),
        ("tr-1", "mean_speed_kmh", at("10:03")),
    ]


def test_a_miss_counts_against_recall(report: IncidentReport) -> None:
    local = report.kinds["local_source"]
    assert (local.labels, local.detected, local.recall) == (1, 0, 0.0)
    assert (local.median_ttd_s, local.max_ttd_s) == (None, None)
    assert report.outcomes[2].time_to_detect_s is None
    assert report.recall == 0.75


def test_false_alarms_count_against_the_kinds_of_their_sensors(report: IncidentReport) -> None:
    false = {(e.sensor, e.metric, e.start) for e in report.false_episodes}
    assert false == {
        ("tr-1", "vehicle_count", at("09:40")),
        ("tr-2", "mean_speed_kmh", at("09:00")),
        ("tr-9", "mean_speed_kmh", at("14:00")),
        ("aq-1", "pm2_5", at("12:45")),
    }
    accident = report.kinds["traffic_accident"]
    assert (accident.matched_episodes, accident.false_episodes) == (3, 3)
    assert accident.precision == 0.5
    # The pollution kinds share the one false alarm on a pollution sensor.
    assert report.kinds["pollution_episode"].precision == 0.5
    local = report.kinds["local_source"]
    assert (local.matched_episodes, local.false_episodes, local.precision) == (0, 1, 0.0)
    assert report.kinds["stuck"].precision == 1.0
    assert report.precision == 5 / 9


def test_without_sensor_kinds_only_the_labels_own_sensors_count() -> None:
    report = score_incidents(LABELS, DETECTIONS)
    accident = report.kinds["traffic_accident"]
    assert (accident.matched_episodes, accident.false_episodes) == (3, 2)  # not tr-9
    assert report.kinds["local_source"].precision is None  # nothing on aq-2 at all


def test_an_episode_may_start_up_to_tolerance_after_the_end(report: IncidentReport) -> None:
    episode = report.kinds["pollution_episode"]
    assert (episode.detected, episode.max_ttd_s) == (1, 2 * 3600 + 20 * 60)
    strict = score_incidents(LABELS, DETECTIONS, tolerance=timedelta(minutes=10))
    assert strict.kinds["pollution_episode"].detected == 0
    loose = score_incidents(LABELS, DETECTIONS, tolerance=timedelta(hours=1))
    assert loose.kinds["pollution_episode"].matched_episodes == 2


def test_an_open_ended_label_matches_any_later_episode(report: IncidentReport) -> None:
    stuck = report.kinds["stuck"]
    assert (stuck.category, stuck.detected, stuck.max_ttd_s) == ("fault", 1, 2 * 86400 + 600)
    assert list(report.kinds) == [
        "traffic_accident",
        "pollution_episode",
        "local_source",
        "stuck",
    ]


def test_the_report_prints_as_a_table(report: IncidentReport) -> None:
    lines = format_incident_report(report).splitlines()
    assert lines[0].split() == [
        "kind",
        "category",
        "labels",
        "detected",
        "recall",
        "TTD",
        "median",
        "TTD",
        "max",
        "matched",
        "false",
        "precision",
    ]
    assert lines[1].split() == [
        "traffic_accident",
        "incident",
        "1",
        "1",
        "1.00",
        "4m",
        "4m",
        "3",
        "3",
        "0.50",
    ]
    assert lines[3].split()[-5:] == ["-", "-", "0", "1", "0.00"]
    assert lines[4].split()[5:7] == ["48h10m", "48h10m"]
    assert lines[-1].split() == ["all", "4", "3", "0.75", "2h20m", "48h10m", "5", "4", "0.56"]
    empty = format_incident_report(score_incidents([], []))
    assert empty.splitlines()[-1].split() == ["all", "0", "0", "-", "-", "-", "0", "0", "-"]


# ---------------------------------------------------------------- the ground-truth file


def test_load_ground_truth_names_the_line_and_field(tmp_path: Path) -> None:
    good = {
        "id": "fault-1",
        "category": "fault",
        "kind": "dead",
        "sensor": "cr-1",
        "area": None,
        "area_type": None,
        "sensors": ["cr-1"],
        "metrics": ["entries"],
        "start": "2024-11-09T06:00:00Z",
        "end": None,
        "description": "cr-1 is dead",
    }
    path = tmp_path / "ground-truth.jsonl"
    path.write_text(json.dumps(good) + "\n\n")
    (label,) = load_ground_truth(path)
    assert (label.end, label.affected_sensors, label.start.tzinfo is not None) == (
        None,
        ("cr-1",),
        True,
    )

    def fails(line: str, match: str) -> None:
        path.write_text(json.dumps(good) + "\n" + line + "\n")
        with pytest.raises(BacktestError, match=match):
            load_ground_truth(path)

    fails('{"id": "x",', r"ground-truth\.jsonl: line 2: not JSON")
    fails(
        json.dumps({**good, "start": "2024-11-09T06:00:00"}),
        r"line 2: field 'start': Input should have timezone info \(got '2024-11-09T06:00:00'\)",
    )
    fails(json.dumps({**good, "category": "glitch"}), r"line 2: field 'category': .*'glitch'")
    fails(
        json.dumps({**good, "end": "2024-11-09T05:00:00Z"}),
        r"line 2: field 'end': ends before it starts \(2024-11-09T06:00:00\+00:00\)",
    )
    fails(
        json.dumps({k: v for k, v in good.items() if k != "kind"}), "field 'kind': Field required"
    )


def test_a_detection_needs_a_zone() -> None:
    with pytest.raises(BacktestError, match=r"tr-1/mean_speed_kmh: timestamp .* has no zone"):
        Detection(datetime(2024, 11, 8, 9, 30), "tr-1", "mean_speed_kmh", 1.0)  # noqa: DTZ001


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[City, Path]:
    """The example scenario's ground truth, written as ``urbansense-sim run`` writes it."""
    city = City(load_scenario(SCENARIO))
    path = tmp_path_factory.mktemp("sim") / "ground-truth.jsonl"
    path.write_text("".join(f"{entry.to_json()}\n" for entry in city.truth), encoding="utf-8")
    return city, path


def test_the_simulators_ground_truth_loads(simulated: tuple[City, Path]) -> None:
    city, path = simulated
    labels = load_ground_truth(path)
    assert [label.id for label in labels] == [entry.id for entry in city.truth]
    assert {label.category for label in labels} == {"incident", "fault"}
    for label, entry in zip(labels, city.truth, strict=True):
        assert (label.kind, label.start, label.end) == (entry.kind, entry.start, entry.end)
        assert (label.sensors, label.metrics) == (entry.sensors, entry.metrics)
        assert label.affected_sensors, label.id
    accident = next(label for label in labels if label.kind == "traffic_accident")
    assert accident.area_type == "segment"
    assert accident.metrics == ("vehicle_count", "mean_speed_kmh", "occupancy_pct")


def test_a_detector_that_sees_everything_scores_full_marks(simulated: tuple[City, Path]) -> None:
    city, path = simulated
    labels = load_ground_truth(path)
    kinds = {sensor.id: sensor.kind.value for sensor in city.registry.sensors}
    detections = [
        Detection(label.start + timedelta(minutes=5), sensor, metric, 1.0)
        for label in labels
        for sensor in label.affected_sensors
        for metric in label.metrics
    ]
    report = score_incidents(labels, detections, sensor_kind=kinds)
    assert report.recall == 1.0
    assert report.precision == 1.0
    assert all(k.median_ttd_s == 300 for k in report.kinds.values())
    assert "traffic_accident" in format_incident_report(report)

"""NAB scoring: hand-computed cases, properties, NAB's dev data and NAB's published values."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.backtest import (
    NO_DETECTION,
    PROFILES,
    BacktestError,
    ScoredSeries,
    Window,
    format_nab_report,
    label_key,
    load_series,
    load_windows,
    normalize,
    parse_timestamp,
    probation_length,
    row_weights,
    scaled_sigmoid,
    score_at_threshold,
    score_corpus,
    threshold_sweep,
)

NAB_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab-dev"
"""The NAB dev subset (``../shared/data/nab-dev`` from the project root)."""

STANDARD = PROFILES["standard"]
T0 = datetime(2024, 1, 1, tzinfo=UTC)
KEY = "demo/a.csv"


def minutes(n: int) -> list[datetime]:
    """``n`` timestamps one minute apart."""
    return [T0 + timedelta(minutes=i) for i in range(n)]


def series(n: int, detections: Sequence[int] = (), key: str = KEY) -> ScoredSeries:
    """``n`` rows scored 0 but for 1.0 on the ``detections`` rows."""
    scores = np.zeros(n)
    scores[list(detections)] = 1.0
    return ScoredSeries(key, minutes(n), scores)


def raw(s: ScoredSeries, windows: dict[str, list[Window]], profile_name: str = "standard") -> float:
    """The file's raw score when its 1.0 rows are the detections."""
    return score_at_threshold([s], windows, PROFILES[profile_name], 1.0).raw


# 100 rows: rows 0-14 are the probationary period. One window on rows 40-49 (width 10).
TS = minutes(100)
ONE_WINDOW = {KEY: [(TS[40], TS[49])]}


# ---------------------------------------------------------------- definitions


def test_profiles_are_nabs() -> None:
    weights = {p.name: (p.tp_weight, p.fp_weight, p.fn_weight) for p in PROFILES.values()}
    assert weights == {
        "standard": (1.0, 0.11, 1.0),
        "reward_low_FP_rate": (1.0, 0.22, 1.0),
        "reward_low_FN_rate": (1.0, 0.11, 2.0),
    }


@pytest.mark.parametrize(
    ("rows", "probation"),
    [(0, 0), (6, 0), (7, 1), (100, 15), (1127, 169), (4032, 604), (5000, 750), (15842, 750)],
)
def test_probation_is_15_percent_of_rows_at_most_750(rows: int, probation: int) -> None:
    assert probation_length(rows) == probation


def test_scaled_sigmoid_at_nabs_reference_points() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == pytest.approx(-1.0, abs=1e-6)
    assert scaled_sigmoid(3.0001) == -1.0


def test_parse_timestamp_reads_nab_times_as_utc() -> None:
    assert parse_timestamp("2015-09-11 15:34:00.000000") == datetime(
        2015, 9, 11, 15, 34, tzinfo=UTC
    )
    assert parse_timestamp("2015-09-11 15:34:00") == datetime(2015, 9, 11, 15, 34, tzinfo=UTC)
    with pytest.raises(BacktestError, match="'11/09/2015'"):
        parse_timestamp("11/09/2015")


# ---------------------------------------------------------------- hand-computed cases


def test_a_window_detected_on_its_first_row_earns_tp_weight() -> None:
    # The scaled sigmoid there is 2*sigmoid(5)-1 = 0.9866, and NAB v1.1 divides every
    # window score by that value, so the earliest detection earns exactly tp_weight.
    weights = row_weights(series(100), ONE_WINDOW, STANDARD)
    assert weights[40] == pytest.approx(1.0)
    assert weights[40] * scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    for name in PROFILES:
        assert raw(series(100, [40]), ONE_WINDOW, name) == pytest.approx(1.0)


def test_a_later_detection_in_the_window_earns_less() -> None:
    # Row 45: position -(49 - 45 + 1) / 10 = -0.5 in the window.
    expected = scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0)
    assert raw(series(100, [45]), ONE_WINDOW) == pytest.approx(expected)
    # The last row of the window still earns something: position -1/10.
    assert raw(series(100, [49]), ONE_WINDOW) == pytest.approx(
        scaled_sigmoid(-0.1) / scaled_sigmoid(-1.0)
    )


@pytest.mark.parametrize(("name", "cost"), [("standard", 1.0), ("reward_low_FN_rate", 2.0)])
def test_a_missed_window_costs_fn_weight(name: str, cost: float) -> None:
    assert raw(series(100), ONE_WINDOW, name) == -cost


@pytest.mark.parametrize(("name", "cost"), [("standard", 0.11), ("reward_low_FP_rate", 0.22)])
def test_a_false_positive_far_from_windows_costs_fp_weight(name: str, cost: float) -> None:
    # Before any window: the full cost; so too more than 3 widths (of 9 rows) past one.
    assert raw(series(100, [20]), {KEY: []}, name) == pytest.approx(-cost)
    assert raw(series(100, [40, 20]), ONE_WINDOW, name) == pytest.approx(1.0 - cost)
    assert raw(series(100, [40, 49 + 28]), ONE_WINDOW, name) == pytest.approx(1.0 - cost)


def test_a_false_positive_right_after_a_window_costs_less() -> None:
    # Row 50 is 1 row past the window's last row (49); NAB measures in (width - 1) rows.
    cost = -raw(series(100, [40, 50]), ONE_WINDOW) + 1.0
    assert cost == pytest.approx(-0.11 * scaled_sigmoid(1 / 9))
    assert 0 < cost < 0.11 / 3
    # Farther away it costs more, up to the full weight.
    costs = [1.0 - raw(series(100, [40, row]), ONE_WINDOW) for row in (50, 55, 60, 70, 90)]
    assert costs == sorted(costs)
    assert costs[-1] == pytest.approx(0.11)


def test_rows_in_the_probationary_period_are_ignored() -> None:
    # 100 rows: rows 0-14 are on probation. A detection there is no false positive ...
    assert raw(series(100, [3, 14]), {KEY: []}) == 0.0
    assert raw(series(100, [15]), {KEY: []}) == pytest.approx(-0.11)
    # ... a window wholly in it is neither earned nor missed ...
    early = {KEY: [(TS[5], TS[12])]}
    assert raw(series(100), early) == 0.0
    assert raw(series(100, [5]), early) == 0.0
    # ... and a window that straddles it counts only from row 15 on.
    straddling = {KEY: [(TS[10], TS[19])]}
    assert raw(series(100, [10]), straddling) == -1.0
    assert raw(series(100, [15]), straddling) == pytest.approx(
        scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0)
    )
    result = score_at_threshold([series(100, [15])], straddling, STANDARD, 1.0)
    assert (result.files[KEY].tp, result.files[KEY].total) == (1, 85)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    assert raw(series(100, [42, 45, 48]), ONE_WINDOW) == raw(series(100, [42]), ONE_WINDOW)
    file = score_at_threshold([series(100, [42, 45, 48])], ONE_WINDOW, STANDARD, 1.0).files[KEY]
    assert (file.tp, file.fp, file.fn, file.tn) == (3, 0, 7, 75)
    assert (file.windows, file.detected_windows) == (1, 1)


def test_the_corpus_score_is_the_sum_of_its_files() -> None:
    a = series(100, [40, 60], key="c/a.csv")
    b = series(100, [20], key="c/b.csv")
    windows = {"c/a.csv": [(TS[40], TS[49])], "c/b.csv": [(TS[70], TS[79])]}
    both = score_at_threshold([a, b], windows, STANDARD, 1.0)
    assert both.raw == pytest.approx(raw(a, windows) + raw(b, windows))
    assert list(both.files) == ["c/a.csv", "c/b.csv"]
    assert (both.null, both.perfect) == (-2.0, 2.0)


def test_perfect_scores_100_and_null_scores_0() -> None:
    windows = {KEY: [(TS[30], TS[39]), (TS[70], TS[79])]}
    perfect = score_corpus([series(100, [30, 70])], windows)
    null = ScoredSeries(KEY, TS, np.full(100, 0.5))
    for name, result in perfect.items():
        assert result.normalized == pytest.approx(100.0), name
        assert score_corpus([null], windows)[name].normalized == 0.0
        assert score_corpus([series(100)], windows)[name].normalized == 0.0
    assert (perfect["reward_low_FN_rate"].null, perfect["reward_low_FN_rate"].perfect) == (
        -4.0,
        2.0,
    )


def test_the_best_threshold_is_the_highest_among_equal_scores() -> None:
    # Rows 60 and 70 both lie far from the window; the window is detected at 0.9.
    scores = np.zeros(100)
    scores[40], scores[60], scores[70] = 0.9, 0.3, 0.2
    result = score_corpus([ScoredSeries(KEY, TS, scores)], ONE_WINDOW)["standard"]
    assert result.threshold == 0.9
    assert result.raw == pytest.approx(1.0)
    # With no window nothing beats detecting nothing, whatever the scores.
    nothing = score_corpus([ScoredSeries(KEY, TS, scores)], {KEY: []})["standard"]
    assert (nothing.threshold, nothing.raw) == (NO_DETECTION, 0.0)
    assert math.isnan(nothing.normalized)


def test_the_sweep_lists_every_distinct_score_from_the_top() -> None:
    scores = np.zeros(100)
    scores[[40, 41, 60]] = [0.9, 0.9, 0.4]
    sweep = threshold_sweep([ScoredSeries(KEY, TS, scores)], ONE_WINDOW, STANDARD)
    assert sweep.thresholds.tolist() == [NO_DETECTION, 0.9, 0.4, 0.0]
    assert sweep.scores[:2].tolist() == [-1.0, pytest.approx(1.0)]
    assert (sweep.tp.tolist(), sweep.fp.tolist()) == ([0, 2, 2, 10], [0, 0, 1, 75])
    assert (sweep.fn + sweep.tp).tolist() == [10] * 4
    assert sweep.best == 1


def test_normalize() -> None:
    assert normalize(-22.0, -22.0, 22.0) == 0.0
    assert normalize(22.0, -22.0, 22.0) == 100.0
    assert math.isnan(normalize(0.0, 0.0, 0.0))


# ---------------------------------------------------------------- bad input


def test_bad_input_is_answered_with_the_file_and_value() -> None:
    with pytest.raises(BacktestError, match="no such key"):
        score_corpus([series(100)], {"other.csv": []})
    with pytest.raises(BacktestError, match="given twice"):
        score_corpus([series(100), series(100)], {KEY: []})
    off_grid = {KEY: [(TS[40] + timedelta(seconds=30), TS[49])]}
    with pytest.raises(BacktestError, match="window starts at 2024-01-01 00:40:30"):
        score_corpus([series(100)], off_grid)
    with pytest.raises(BacktestError, match="before the window ahead of it ends"):
        score_corpus([series(100)], {KEY: [(TS[40], TS[49]), (TS[45], TS[60])]})
    with pytest.raises(BacktestError, match="one score per row"):
        ScoredSeries(KEY, TS, [0.0] * 99)
    with pytest.raises(BacktestError, match="row 7: score nan"):
        ScoredSeries(KEY, TS, [math.nan if i == 7 else 0.0 for i in range(100)])
    with pytest.raises(BacktestError, match=r"row 0: timestamp .* has no zone"):
        ScoredSeries(KEY, [t.replace(tzinfo=None) for t in TS], [0.0] * 100)
    with pytest.raises(BacktestError, match="row 3: timestamp"):
        ScoredSeries(KEY, [TS[0], TS[1], TS[2], TS[0]], [0.0] * 4)
    with pytest.raises(BacktestError, match=r"no label key 'x/y\.csv'"):
        label_key("data/x/y.csv", ["realTraffic/speed_7578.csv"])


def test_load_windows_names_the_file_key_and_window(tmp_path: Path) -> None:
    path = tmp_path / "windows.json"
    path.write_text(json.dumps({"a/b.csv": [["2015-01-02 00:00:00", "2015-01-01 00:00:00"]]}))
    with pytest.raises(BacktestError, match=r"windows.json: 'a/b.csv' window 0 ends"):
        load_windows(path)
    path.write_text(json.dumps({"a/b.csv": [["2015-01-01 00:00:00"]]}))
    with pytest.raises(BacktestError, match=r"'a/b.csv' window 0: expected \[start, end\]"):
        load_windows(path)
    path.write_text(json.dumps({"a/b.csv": [["yesterday", "2015-01-01 00:00:00"]]}))
    with pytest.raises(BacktestError, match="window 0: 'yesterday' is not a timestamp"):
        load_windows(path)
    path.write_text("{")
    with pytest.raises(BacktestError, match="not JSON"):
        load_windows(path)


# ---------------------------------------------------------------- properties


@st.composite
def corpora(draw: st.DrawFn) -> tuple[list[ScoredSeries], dict[str, list[Window]], list[int]]:
    """1-3 files of 20-300 rows; windows after probation; scores with ties.

    Also returns each window's first row, for a perfect detector.
    """
    files: list[ScoredSeries] = []
    windows: dict[str, list[Window]] = {}
    firsts: list[int] = []
    for number in range(draw(st.integers(1, 3))):
        n = draw(st.integers(20, 300))
        start = probation_length(n)
        cuts = sorted(draw(st.sets(st.integers(start, n - 1), max_size=6)))
        pairs = [(a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if b > a]
        key = f"c/f{number}.csv"
        ts = minutes(n)
        windows[key] = [(ts[a], ts[b]) for a, b in pairs]
        firsts.extend(a + sum(len(f.timestamps) for f in files) for a, _ in pairs)
        levels = draw(st.sampled_from([2, 5, 1000]))
        scores = draw(st.lists(st.integers(0, levels), min_size=n, max_size=n))
        files.append(ScoredSeries(key, ts, [s / levels for s in scores]))
    return files, windows, firsts


@given(corpora())
def test_the_perfect_detector_scores_100(
    corpus: tuple[list[ScoredSeries], dict[str, list[Window]], list[int]],
) -> None:
    files, windows, _ = corpus
    perfect = []
    for f in files:
        scores = np.zeros(len(f.timestamps))
        rows = [f.timestamps.index(start) for start, _ in windows[f.key]]
        scores[rows] = 1.0
        perfect.append(ScoredSeries(f.key, f.timestamps, scores))
    has_windows = any(windows.values())
    for name, result in score_corpus(perfect, windows).items():
        if has_windows:
            assert result.normalized == pytest.approx(100.0), name
        else:
            assert math.isnan(result.normalized)


@given(corpora())
def test_any_detector_scores_between_0_and_100(
    corpus: tuple[list[ScoredSeries], dict[str, list[Window]], list[int]],
) -> None:
    files, windows, _ = corpus
    for result in score_corpus(files, windows).values():
        if not math.isnan(result.normalized):
            # The optimum is never worse than detecting nothing, and never beats perfect.
            assert -1e-9 <= result.normalized <= 100.0 + 1e-9


@given(corpora(), st.sampled_from(list(PROFILES)))
def test_the_best_threshold_beats_every_other(
    corpus: tuple[list[ScoredSeries], dict[str, list[Window]], list[int]], name: str
) -> None:
    files, windows, _ = corpus
    profile = PROFILES[name]
    best = score_corpus(files, windows, [profile])[name]
    sweep = threshold_sweep(files, windows, profile)
    assert best.threshold == sweep.thresholds[sweep.best]
    assert best.raw == pytest.approx(sweep.scores.max(), abs=1e-9)
    # The vectorised sweep agrees with scoring a threshold file by file (some of them,
    # to keep the test quick), and no threshold, in the sweep or not, beats the best.
    step = max(1, sweep.thresholds.size // 30)
    checked = [*sweep.thresholds[::step].tolist(), -1.0, 0.25, 0.5, 2.0]
    for threshold in checked:
        fixed = score_at_threshold(files, windows, profile, threshold)
        assert fixed.raw <= best.raw + 1e-9
        if threshold in sweep.thresholds:
            total = sweep.scores[sweep.thresholds.tolist().index(threshold)]
            assert fixed.raw == pytest.approx(total, abs=1e-9)


# ---------------------------------------------------------------- NAB's data


needs_nab_dev = pytest.mark.skipif(
    not (NAB_DEV / "combined_windows.json").is_file(), reason=f"no NAB dev data at {NAB_DEV}"
)


@needs_nab_dev
def test_the_dev_labels_load() -> None:
    windows = load_windows(NAB_DEV / "combined_windows.json")
    assert len(windows) == 10
    assert sum(len(w) for w in windows.values()) == 22
    assert windows["realTraffic/occupancy_6005.csv"] == [
        (datetime(2015, 9, 14, 17, 45, tzinfo=UTC), datetime(2015, 9, 15, 17, 24, tzinfo=UTC))
    ]
    assert windows["artificialNoAnomaly/art_daily_small_noise.csv"] == []


@needs_nab_dev
def test_a_perfect_detector_on_the_dev_data_scores_100() -> None:
    windows = load_windows(NAB_DEV / "combined_windows.json")
    files = []
    for path in sorted(NAB_DEV.glob("*/*.csv")):
        key = label_key(path, windows)
        timestamps, values = load_series(path)
        assert len(values) == len(timestamps)
        scores = np.zeros(len(timestamps))
        for start, _ in windows[key]:
            scores[timestamps.index(start)] = 1.0
        files.append(ScoredSeries(key, timestamps, scores))
    assert len(files) == 10
    results = score_corpus(files, windows)
    for name, result in results.items():
        assert result.threshold == 1.0
        assert result.perfect == 22.0
        assert result.null == -22.0 * PROFILES[name].fn_weight
        assert result.normalized == pytest.approx(100.0)
    # The null detector (a constant 0.5) scores 0 on the same files.
    null = [ScoredSeries(f.key, f.timestamps, np.full(len(f.timestamps), 0.5)) for f in files]
    assert all(r.normalized == 0.0 for r in score_corpus(null, windows).values())


# NAB's published results of its "numenta" detector for realTraffic/speed_7578.csv
# (numenta/NAB, results/numenta/realTraffic/numenta_speed_7578.csv at commit
# 07671350dc3aa1647674787a5e7a935321845892): the rows whose anomaly_score is at least
# 0.45 (every other row is below 0.45), and the rows whose S(t) columns are not zero,
# with their values for (reward_low_FP_rate, reward_low_FN_rate, standard). NAB writes a
# window's value on its first row and each false positive's cost on its own row.
NUMENTA_SPEED_7578_SCORES = {
    "2015-09-12 00:16:00": 0.544952187004,
    "2015-09-12 08:01:00": 0.466211693323,
    "2015-09-14 17:45:00": 0.52465055532,
    "2015-09-15 05:51:00": 0.485281347782,
    "2015-09-15 06:05:00": 0.58679383224,
    "2015-09-15 14:29:00": 0.466211693323,
    "2015-09-15 14:34:00": 0.565666370505,
    "2015-09-16 14:19:00": 0.544952187004,
    "2015-09-16 14:40:00": 0.485281347782,
    "2015-09-16 17:15:00": 0.544952187004,
    "2015-09-16 17:40:00": 0.466211693323,
    "2015-09-16 17:45:00": 0.608335100359,
    "2015-09-16 17:50:00": 0.485281347782,
}
NUMENTA_SPEED_7578_ST = {
    "2015-09-11 15:34:00": (-1.0, -2.0, -1.0),  # window 1 missed
    "2015-09-12 00:16:00": (-0.21855342899, -0.109276714495, -0.109276714495),  # FP after it
    "2015-09-14 17:45:00": (-0.22, -0.11, -0.11),
    "2015-09-15 06:05:00": (-0.22, -0.11, -0.11),
    "2015-09-15 13:26:00": (0.871604206333,) * 3,  # window 2, detected at 14:34
    "2015-09-16 13:04:00": (0.847084961863,) * 3,  # window 3, detected at 14:19
    "2015-09-16 16:00:00": (0.847084961863,) * 3,  # window 4, detected at 17:15 and 17:45
}
NAB_PROFILE_ORDER = ("reward_low_FP_rate", "reward_low_FN_rate", "standard")


@needs_nab_dev
def test_numenta_on_speed_7578_scores_what_nab_published() -> None:
    windows = load_windows(NAB_DEV / "combined_windows.json")
    timestamps, _ = load_series(NAB_DEV / "realTraffic" / "speed_7578.csv")
    row = {ts: i for i, ts in reversed(list(enumerate(timestamps)))}
    scores = np.zeros(len(timestamps))
    for text, score in NUMENTA_SPEED_7578_SCORES.items():
        scores[row[parse_timestamp(text)]] = score
    files = [ScoredSeries("realTraffic/speed_7578.csv", timestamps, scores)]
    for column, name in enumerate(NAB_PROFILE_ORDER):
        published = [values[column] for values in NUMENTA_SPEED_7578_ST.values()]
        result = score_at_threshold(files, windows, PROFILES[name], 0.5)
        file = result.files["realTraffic/speed_7578.csv"]
        assert file.score == pytest.approx(sum(published), abs=1e-9), name
        assert (file.tp, file.fp, file.windows, file.detected_windows) == (4, 3, 4, 3)
        assert file.total == len(timestamps) - 169
        # Row by row: the false positives' costs and the windows' earliest detections.
        weights = row_weights(files[0], windows, PROFILES[name])
        for fp in ("2015-09-12 00:16:00", "2015-09-14 17:45:00", "2015-09-15 06:05:00"):
            expected = NUMENTA_SPEED_7578_ST[fp][column]
            assert weights[row[parse_timestamp(fp)]] == pytest.approx(expected, abs=1e-11)
        for first, detected in (
            ("2015-09-15 13:26:00", "2015-09-15 14:34:00"),
            ("2015-09-16 13:04:00", "2015-09-16 14:19:00"),
            ("2015-09-16 16:00:00", "2015-09-16 17:15:00"),
        ):
            expected = NUMENTA_SPEED_7578_ST[first][column]
            assert weights[row[parse_timestamp(detected)]] == pytest.approx(expected, abs=1e-11)


def test_the_nab_report_prints_profiles_and_files() -> None:
    a = series(100, [40, 60], key="c/a.csv")
    b = series(100, [20], key="c/b.csv")
    windows = {"c/a.csv": [(TS[40], TS[49])], "c/b.csv": [(TS[70], TS[79])]}
    lines = format_nab_report(score_corpus([a, b], windows)).splitlines()
    assert lines[0].split() == ["profile", "threshold", "raw", "null", "perfect", "NAB", "score"]
    assert lines[1].split()[:2] == ["standard", "1"]
    assert [line.split()[0] for line in lines[1:4]] == list(PROFILES)
    assert lines[4] == ""
    assert lines[5].startswith("file")
    assert lines[6].split()[:4] == ["c/a.csv", "1", "1,", "0.890"]
    assert lines[7].split()[:4] == ["c/b.csv", "1", "0,", "-1.110"]

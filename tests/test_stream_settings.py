"""The stream worker's settings from ``URBANSENSE_*`` variables."""

from __future__ import annotations

import asyncio
from datetime import time, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from stream.app.app import build_app
from stream.app.settings import StreamSettings


def test_defaults_suit_one_worker_and_a_chinese_city() -> None:
    settings = StreamSettings.from_env({})
    config = settings.index_config()
    assert settings.district_topic == "urbansense.readings.by-district"
    assert (config.utc_offset_h, config.default_opens_at, dict(config.scenic_opens_at)) == (
        8.0,
        time(6, 0),
        {},
    )


def test_the_district_topic_follows_the_readings_topic_unless_set() -> None:
    assert StreamSettings(readings_topic="r").district_topic == "r.by-district"
    assert StreamSettings(readings_topic="r", district_topic="d").district_topic == "d"


def test_opening_hours_per_area() -> None:
    config = StreamSettings.from_env(
        {"URBANSENSE_SCENIC_OPENS_AT": "07:00,west-lake=08:30,canal-quarter=05:45"}
    ).index_config()
    assert config.default_opens_at == time(7, 0)
    assert config.scenic_opens_at == {"west-lake": time(8, 30), "canal-quarter": time(5, 45)}


@pytest.mark.parametrize("value", ["6am", "24:00", "06:00,west-lake", "06:00;a=07:00", ""])
def test_a_bad_opening_time_names_the_variable_and_the_value(value: str) -> None:
    with pytest.raises(ValueError, match=r"URBANSENSE_SCENIC_OPENS_AT: .*expected HH:MM") as info:
        StreamSettings.from_env({"URBANSENSE_SCENIC_OPENS_AT": value})
    assert repr(value) in str(info.value)


def test_a_bad_offset_names_the_variable() -> None:
    with pytest.raises(ValueError, match="URBANSENSE_UTC_OFFSET_H"):
        StreamSettings.from_env({"URBANSENSE_UTC_OFFSET_H": "20"})


def test_the_energy_baseline_takes_the_warm_up_and_the_city_s_offset() -> None:
    default = StreamSettings.from_env({}).index_config().baseline
    assert (default.warm_up_h, default.utc_offset_h) == (2.0, 8.0)
    config = StreamSettings.from_env(
        {"URBANSENSE_ENERGY_WARM_UP_H": "1", "URBANSENSE_UTC_OFFSET_H": "5.5"}
    ).index_config()
    assert (config.baseline.warm_up_h, config.baseline.utc_offset_h) == (1.0, 5.5)
    with pytest.raises(ValueError, match="URBANSENSE_ENERGY_WARM_UP_H"):
        StreamSettings.from_env({"URBANSENSE_ENERGY_WARM_UP_H": "-1"})


def test_a_district_s_idle_time_is_a_setting() -> None:
    assert StreamSettings.from_env({}).idle_after_s == 60.0
    assert StreamSettings.from_env({"URBANSENSE_IDLE_AFTER_S": "5"}).idle_after_s == 5.0
    with pytest.raises(ValueError, match="URBANSENSE_IDLE_AFTER_S"):
        StreamSettings.from_env({"URBANSENSE_IDLE_AFTER_S": "0"})


def test_how_often_the_state_is_stored_is_a_setting() -> None:
    assert StreamSettings.from_env({}).state_seconds == 5.0
    assert StreamSettings.from_env({"URBANSENSE_STATE_SECONDS": "2.5"}).state_seconds == 2.5
    with pytest.raises(ValueError, match="URBANSENSE_STATE_SECONDS"):
        StreamSettings.from_env({"URBANSENSE_STATE_SECONDS": "0"})


def test_the_worker_s_pipeline_takes_the_event_time_settings(tmp_path: Path) -> None:
    settings = StreamSettings(
        idle_after_s=5, lateness_s=120, rules="none", datadir=str(tmp_path / "data")
    )
    pipeline = build_app(settings).pipeline
    assert (pipeline.idle_after, pipeline.lateness) == (timedelta(seconds=5), timedelta(minutes=2))


def test_the_worker_s_kafka_consumer_waits_at_most_the_fetch_wait_setting(
    tmp_path: Path,
) -> None:
    """Faust fixes a fetch's wait at 1.5 s, which Tansu holds even when records come."""
    assert StreamSettings.from_env({}).fetch_wait_ms == 100
    with pytest.raises(ValueError, match="URBANSENSE_FETCH_WAIT_MS"):
        StreamSettings.from_env({"URBANSENSE_FETCH_WAIT_MS": "0"})
    settings = StreamSettings(fetch_wait_ms=42, rules="none", datadir=str(tmp_path / "data"))
    app = build_app(settings).app

    async def created() -> int:
        thread = cast(Any, app.consumer)._thread
        consumer = thread._create_worker_consumer(app.transport)
        wait: int = consumer._fetch_max_wait_ms
        return wait

    assert asyncio.run(created()) == 42

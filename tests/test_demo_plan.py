"""The demo's decisions, without a server: brokers, store, the scenario's time shift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from rules.routing import load_routing
from simulators.scenario import load_scenario
from stream.app.settings import StreamSettings
from stream.demo.cli import DEFAULT_SCENARIO, parse_options
from stream.demo.plan import (
    MqttBroker,
    Store,
    choose_mqtt,
    choose_store,
    mosquitto_config,
    routing_config,
    scenario_shift,
    shift_scenario,
    worker_environment,
)
from stream.demo.procs import describe_exit

NOW = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)


def test_mosquitto_when_installed_else_amqtt() -> None:
    assert choose_mqtt("auto", "/usr/sbin/mosquitto") is MqttBroker.MOSQUITTO
    assert choose_mqtt("auto", None) is MqttBroker.AMQTT
    assert choose_mqtt("amqtt", "/usr/sbin/mosquitto") is MqttBroker.AMQTT
    with pytest.raises(ValueError, match="apt-get install mosquitto"):
        choose_mqtt("mosquitto", None)


def test_victoria_metrics_when_installed_else_line_files_and_the_reason_is_said() -> None:
    found = choose_store("auto", "/usr/bin/victoria-metrics")
    assert found.store is Store.VICTORIA_METRICS
    assert "/usr/bin/victoria-metrics" in found.reason
    missing = choose_store("auto", None)
    assert (missing.store, missing.reason) == (
        Store.FILES,
        "victoria-metrics is not installed: points go to line-protocol files",
    )
    assert choose_store("files", "/usr/bin/victoria-metrics").store is Store.FILES
    with pytest.raises(ValueError, match="apt-get install victoria-metrics"):
        choose_store("victoria-metrics", None)


@given(
    start=st.datetimes(
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001 -- hypothesis takes naive bounds
        max_value=datetime(2040, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    hours=st.integers(min_value=1, max_value=24 * 30),
)
def test_a_scenario_moves_by_whole_years_of_weeks_to_end_in_the_past(
    start: datetime, hours: int
) -> None:
    end = start + timedelta(hours=hours)
    shift = scenario_shift(start, end, NOW)
    assert shift % timedelta(weeks=52) == timedelta(0)  # weekday and local hour kept
    assert end + shift <= NOW  # nothing from the future
    assert NOW - (end + shift) < timedelta(weeks=52)  # the most recent such span


def test_the_example_weekend_moved_is_still_a_valid_friday_to_sunday(tmp_path: Path) -> None:
    original = load_scenario(DEFAULT_SCENARIO)
    shift = scenario_shift(original.file.start, original.file.end, NOW)
    document = yaml.safe_load(DEFAULT_SCENARIO.read_text(encoding="utf-8"))
    moved_path = tmp_path / "scenario.yaml"
    moved_path.write_text(
        yaml.safe_dump(shift_scenario(document, shift, DEFAULT_SCENARIO.parent)), encoding="utf-8"
    )
    moved = load_scenario(moved_path)
    assert moved.file.start == original.file.start + shift
    assert moved.file.start.weekday() == original.file.start.weekday()
    assert moved.file.end <= NOW
    assert [i.start - shift for i in moved.file.incidents] == [
        i.start for i in original.file.incidents
    ]
    assert [f.start - shift for f in moved.file.faults] == [f.start for f in original.file.faults]


def test_a_relative_registry_is_kept_reachable_from_the_moved_copy() -> None:
    moved = shift_scenario({"registry": "city.yaml"}, timedelta(0), Path("/scenarios"))
    assert moved["registry"] == "/scenarios/city.yaml"
    assert (
        shift_scenario({"registry": "example"}, timedelta(0), Path("/s"))["registry"] == "example"
    )


def test_the_worker_settings_select_the_store_and_the_webhook() -> None:
    common = {
        "kafka": "127.0.0.1:9092",
        "influx_url": "http://127.0.0.1:8428",
        "lines_dir": Path("/run/lines"),
        "routing": Path("/run/routing.yaml"),
        "datadir": Path("/run/worker"),
        "app_id": "urbansense-demo",
        "partitions": 4,
    }
    to_vm = StreamSettings.from_env(worker_environment(store=Store.VICTORIA_METRICS, **common))  # type: ignore[arg-type]
    assert (to_vm.sink, to_vm.influx_url, to_vm.rules) == (
        "influx",
        "http://127.0.0.1:8428",
        "default",
    )
    to_files = StreamSettings.from_env(worker_environment(store=Store.FILES, **common))  # type: ignore[arg-type]
    assert (to_files.sink, to_files.lines_dir, to_files.routing) == (
        "files",
        "/run/lines",
        "/run/routing.yaml",
    )


def test_the_routing_file_is_valid_and_sends_every_alert_to_the_demo_webhook(
    tmp_path: Path,
) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(routing_config("http://127.0.0.1:8080/hook", "s3cret"), encoding="utf-8")
    routing = load_routing(str(path))
    assert [r.name for r in routing.receivers] == ["demo"]


def test_mosquitto_listens_on_loopback_only() -> None:
    lines = mosquitto_config(18830, Path("/run"), "root").splitlines()
    assert lines[0] == "listener 18830 127.0.0.1"
    assert "persistence false" in lines


def test_options_and_their_defaults() -> None:
    options = parse_options(["--duration", "60", "--speed", "60", "--store", "files"])
    assert (options.duration_s, options.speed, options.store, options.mqtt) == (
        60.0,
        60.0,
        "files",
        "auto",
    )
    default = parse_options([])
    assert (default.speed, default.duration_s, default.scenario) == (4000.0, None, DEFAULT_SCENARIO)
    with pytest.raises(SystemExit):
        parse_options(["--speed", "0"])


def test_exit_statuses_in_words() -> None:
    assert [describe_exit(c) for c in (0, 1, -9)] == [
        "exit status 0",
        "exit status 1",
        "ended by SIGKILL",
    ]

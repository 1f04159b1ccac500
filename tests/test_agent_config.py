"""The agent's TOML configuration: the sample loads; mistakes name their key and value."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest

from edge_agents.cli import main
from edge_agents.config import ConfigError, load_config, parse_config

SAMPLE = files("edge_agents.examples").joinpath("agent.toml")

MINIMAL = """
gateway_id = "gw-1"
[[sensors]]
id = "aq-1"
driver = "sds011"
[sensors.options]
port = "/dev/ttyUSB0"
"""


def test_the_shipped_sample_loads() -> None:
    config = load_config(Path(str(SAMPLE)))
    assert config.gateway_id == "gw-lakeside-pier"
    assert [s.driver for s in config.sensors] == ["sds011", "sdm_modbus", "counter"]
    assert (config.broker.host, config.broker.port) == ("localhost", 1883)


def test_defaults_fill_in_a_minimal_config() -> None:
    config = parse_config(MINIMAL)
    assert config.sensors[0].sample_interval_s == 5.0
    assert config.publish.max_batch_readings == 500
    assert config.buffer.max_bytes is None


def test_secrets_are_masked_in_the_effective_config() -> None:
    config = parse_config(
        MINIMAL.replace(
            'gateway_id = "gw-1"', 'gateway_id = "gw-1"\n[broker]\npassword = "hunter2"'
        )
    )
    assert config.broker.password is not None
    assert config.broker.password.get_secret_value() == "hunter2"
    assert "hunter2" not in str(config.masked())
    assert config.masked()["broker"]["password"] == "*" * 10  # pydantic's SecretStr mask


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('gateway_id = "gw-1"', 'gateway_id = "gw/1"'), "gateway_id: invalid id: contains '/'"),
        (('driver = "sds011"', 'driver = "sds012"'), "unknown driver 'sds012'"),
        (
            ('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\nbaud = 9600'),
            "options.baud: Extra inputs",
        ),
        (
            ('id = "aq-1"', 'id = "aq-1"\nsample_interval_s = 60\npublish_interval_s = 5'),
            "publish_interval_s 5 is shorter than sample_interval_s 60",
        ),
        (
            ('gateway_id = "gw-1"', 'gateway_id = "gw-1"\n[broker]\nurl = "http://x"'),
            "broker.url: Value error, must look like mqtt://host:1883",
        ),
        (
            (
                'gateway_id = "gw-1"',
                'gateway_id = "gw-1"\n[broker.tls]\nca_file = "ca"\ncert_file = "c"',
            ),
            "cert_file and key_file go together",
        ),
        (('gateway_id = "gw-1"', 'gateway_id = "gw-1"\ncolour = "red"'), "colour: Extra inputs"),
        (('gateway_id = "gw-1"', 'gateway_id = "gw-1" = 2'), "not valid TOML"),
    ],
)
def test_mistakes_name_the_key_and_value(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=r"agent\.toml: ") as caught:
        parse_config(MINIMAL.replace(*change), source="agent.toml")
    assert message in str(caught.value)


def test_duplicate_sensor_ids_are_refused() -> None:
    twice = MINIMAL + MINIMAL.split("\n", 2)[2]
    with pytest.raises(
        ConfigError, match=r"sensor id 'aq-1' appears twice: sensors\[0\] and sensors\[1\]"
    ):
        parse_config(twice)


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")


def test_check_prints_the_effective_config_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        MINIMAL.replace('gateway_id = "gw-1"', 'gateway_id = "gw-1"\n[broker]\npassword = "s3cret"')
    )
    assert main(["check", str(config)]) == 0
    out, err = capsys.readouterr()
    effective = json.loads(out)
    assert effective["sensors"][0]["sample_interval_s"] == 5.0
    assert "s3cret" not in out
    assert "is valid (1 sensors)" in err


def test_check_reports_problems_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(MINIMAL.replace('driver = "sds011"', 'driver = "nope"'))
    assert main(["check", str(config)]) == 2
    assert "unknown driver 'nope'" in capsys.readouterr().err

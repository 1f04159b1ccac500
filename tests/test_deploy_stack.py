"""The compose stack: `docker-compose config` accepts it, and it wires what the README says.

No Docker engine runs on the test machines, so the containers are not started; Debian's
``docker-compose`` resolves the file with the example settings (the secrets filled in)
and the test reads the resolved configuration. The bridge's command is parsed by the
bridge's own option parser and the workers' environment by their settings class, so a
renamed option or setting fails here rather than in a deployment.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.app.settings import StreamSettings
from stream.bridge.cli import add_arguments, config_from_args
from tests.servers._procs import REPO_ROOT, require_binary

DEPLOY = REPO_ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
SECRETS = {
    "KAFKA_CLUSTER_ID": "MkU3OEVBNTcwNTJENDM2Qk",
    "INFLUX_ADMIN_PASSWORD": "admin-password",
    "INFLUX_TOKEN": "influx-token",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password",
    "BRIDGE_MQTT_PASSWORD": "bridge-password",
}
SERVICES = {"kafka", "mosquitto", "influxdb", "grafana", "bridge", "worker"}


def _compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("docker-compose", "docker-compose")
    # A clean environment: variables of the test's shell must not fill in the file.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent)}
    return subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(COMPOSE), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _filled_env(tmp_path: Path, **extra: str) -> Path:
    """The example .env with its empty secrets filled in (and ``extra`` settings)."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for key, value in {**SECRETS, **extra}.items():
        text, count = re.subn(rf"(?m)^#? ?{key}=.*$", f"{key}={value}", text)
        assert count == 1, f"{key} is not in .env.example"
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env_file = _filled_env(tmp_path_factory.mktemp("compose"))
    result = _compose(env_file, "config")
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = yaml.safe_load(result.stdout)
    return resolved


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's mounts as container path -> host path (or volume name)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        mounts[target] = source
    return mounts


def _ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A service's published ports as (host address, host port, container port)."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, str):  # docker-compose 1.x: "ip:published:target/tcp"
            ip, published, target = port.split("/")[0].rsplit(":", 2)
        else:  # the compose plugin: a mapping
            ip, published, target = port.get("host_ip", ""), port["published"], port["target"]
        ports.append((ip, str(published), str(target)))
    return ports


def test_the_example_settings_leave_every_secret_to_fill_in(tmp_path: Path) -> None:
    example = tmp_path / ".env"
    example.write_text(ENV_EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    result = _compose(example, "config")
    assert result.returncode != 0
    assert "set KAFKA_CLUSTER_ID in deploy/.env" in result.stderr
    for key in SECRETS:
        assert re.search(rf"(?m)^{key}=$", ENV_EXAMPLE.read_text(encoding="utf-8")), key


def test_the_stack_has_its_services_and_named_volumes(stack: dict[str, Any]) -> None:
    assert set(stack["services"]) == SERVICES
    assert set(stack["volumes"]) == {
        "kafka-data",
        "mosquitto-data",
        "influxdb-data",
        "influxdb-config",
        "grafana-data",
    }


def test_kafka_runs_in_kraft_mode_on_a_volume(stack: dict[str, Any]) -> None:
    kafka = stack["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert env["CLUSTER_ID"] == SECRETS["KAFKA_CLUSTER_ID"]
    assert "zookeeper" not in str(kafka).lower()
    assert _mounts(kafka)[env["KAFKA_LOG_DIRS"]] == "kafka-data"
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "healthcheck" in kafka


def test_mosquitto_runs_the_tls_config_with_the_generated_files(stack: dict[str, Any]) -> None:
    mosquitto = stack["services"]["mosquitto"]
    mounts = _mounts(mosquitto)
    assert mounts["/mosquitto/config/mosquitto.conf"] == str(
        DEPLOY / "mosquitto" / "mosquitto-tls.conf"
    )
    assert mounts["/mosquitto/secrets"] == str(DEPLOY / "secrets" / "broker")
    for name in ("ca.crt", "broker.crt", "broker.key"):
        assert mounts[f"/mosquitto/certs/{name}"] == str(DEPLOY / "secrets" / "tls" / name)
    assert mounts["/mosquitto/data"] == "mosquitto-data"
    # Every file the config names is mounted where it looks.
    config = (DEPLOY / "mosquitto" / "mosquitto-tls.conf").read_text(encoding="utf-8")
    for key in ("cafile", "certfile", "keyfile", "password_file", "acl_file"):
        [path] = re.findall(rf"(?m)^{key} (\S+)$", config)
        assert any(path == t or path.startswith(f"{t}/") for t in mounts), (key, path)
    assert _ports(mosquitto) == [("0.0.0.0", "8883", "8883")]  # noqa: S104 -- gateways connect


def test_influxdb_is_set_up_with_the_token_and_maps_its_bucket_for_influxql(
    stack: dict[str, Any],
) -> None:
    influxdb = stack["services"]["influxdb"]
    assert influxdb["image"].startswith("influxdb:2")
    env = influxdb["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == SECRETS["INFLUX_TOKEN"]
    assert _mounts(influxdb)["/docker-entrypoint-initdb.d"] == str(DEPLOY / "influxdb" / "init")
    init = (DEPLOY / "influxdb" / "init" / "10-dbrp.sh").read_text(encoding="utf-8")
    assert "influx v1 dbrp create" in init


def test_grafana_mounts_the_provisioning_and_the_dashboards(stack: dict[str, Any]) -> None:
    grafana = stack["services"]["grafana"]
    mounts = _mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == str(DEPLOY / "grafana" / "provisioning")
    assert mounts["/var/lib/grafana/dashboards"] == str(DEPLOY / "grafana" / "dashboards")
    assert grafana["environment"]["INFLUX_TOKEN"] == SECRETS["INFLUX_TOKEN"]
    # Every variable the provisioning files name is set in Grafana's environment.
    provisioning = DEPLOY / "grafana" / "provisioning"
    for path in sorted(provisioning.rglob("*.y*ml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        settings = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
        for name in re.findall(r"\$\{(\w+)\}", settings):
            assert name in grafana["environment"], (path.name, name)
    providers = (provisioning / "dashboards" / "urbansense.yaml").read_text(encoding="utf-8")
    assert "path: /var/lib/grafana/dashboards" in providers
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GRAFANA_ADMIN_PASSWORD"]


def test_the_bridge_and_the_workers_are_one_image_and_scale(stack: dict[str, Any]) -> None:
    bridge, worker = stack["services"]["bridge"], stack["services"]["worker"]
    assert bridge["image"] == worker["image"]
    for service in (bridge, worker):
        assert Path(service["build"]["context"]) == REPO_ROOT
        assert (REPO_ROOT / service["build"]["dockerfile"]).is_file()
        # --scale needs no fixed name and no host port.
        assert "container_name" not in service
        assert "ports" not in service
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_the_bridges_command_is_valid_and_each_instance_has_its_own_session(
    stack: dict[str, Any],
) -> None:
    bridge = stack["services"]["bridge"]
    shell, flag, script = bridge["command"]
    assert (shell, flag) == ("sh", "-c")
    # The resolved file escapes `$` as `$$`; the shell then sees $(hostname).
    words = shlex.split(script.replace("$$", "$"))
    # What the shell makes of it in the second replica.
    name_script = "$(python /usr/local/lib/urbansense/instance_name.py)"
    assert any(name_script in w for w in words)
    words = [w.replace(name_script, "deploy-bridge-2") for w in words]
    assert words[:3] == ["exec", "urbansense", "bridge"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(words[3:])
    assert args.client_id == "urbansense-bridge-deploy-bridge-2"
    config = config_from_args(args, environ=bridge["environment"])
    assert config.share_group == "urbansense-bridge"
    assert config.mqtt.url.startswith("mqtts://mosquitto:8883")
    assert config.mqtt.username == "urbansense-bridge"
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == SECRETS["BRIDGE_MQTT_PASSWORD"]
    assert _mounts(bridge)[str(args.mqtt_ca_file)] == str(DEPLOY / "secrets" / "tls" / "ca.crt")


def test_the_workers_environment_is_valid_stream_settings(stack: dict[str, Any]) -> None:
    worker = stack["services"]["worker"]
    assert worker["command"] == [
        "python",
        "-m",
        "stream.app",
        "worker",
        "--without-web",
        "--loglevel",
        "info",
    ]
    settings = StreamSettings.from_env(worker["environment"])
    assert settings.kafka == "kafka:9092"
    assert (settings.influx_url, settings.influx_api) == ("http://influxdb:8086", "v1")
    assert settings.influx_token == SECRETS["INFLUX_TOKEN"]
    mounts = _mounts(worker)
    assert mounts[settings.registry] == str(REPO_ROOT / "telemetry" / "examples" / "registry.yaml")


def test_settings_from_env_reach_the_services(tmp_path: Path) -> None:
    env_file = _filled_env(tmp_path, KAFKA_PARTITIONS="24", GRAFANA_BIND="192.0.2.7")
    result = _compose(env_file, "config")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == "24"
    assert services["worker"]["environment"]["URBANSENSE_PARTITIONS"] == "24"
    assert "--create-topics 24" in services["bridge"]["command"][2]
    assert _ports(services["grafana"]) == [("192.0.2.7", "3000", "3000")]


def test_only_the_brokers_port_is_open_beyond_the_host_by_default(stack: dict[str, Any]) -> None:
    for name in ("kafka", "influxdb", "grafana"):
        assert {ip for ip, _, _ in _ports(stack["services"][name])} == {"127.0.0.1"}, name


def test_the_dockerfile_copies_every_package_and_the_context_leaves_secrets_out() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    for package in packages:
        assert f"COPY {package} {package}" in dockerfile, package
    assert "'.[edge,stream]'" in dockerfile  # the bridge and workers log with structlog
    assert (
        "COPY deploy/bridge/instance_name.py /usr/local/lib/urbansense/instance_name.py"
        in dockerfile
    )
    ignore = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore  # everything is left out unless listed
    # Of deploy/, only the bridge's naming script goes in: never secrets/ or .env.
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert [line for line in rules if "deploy" in line] == ["!deploy/bridge/instance_name.py"]
    assert {f"!{p}/" for p in packages} <= set(ignore)


def test_the_deploy_shell_scripts_parse_and_pass_shellcheck() -> None:
    shellcheck = require_binary("shellcheck", "shellcheck")
    scripts = [DEPLOY / "mosquitto" / "make-certs.sh", DEPLOY / "influxdb" / "init" / "10-dbrp.sh"]
    for script in scripts:
        assert os.access(script, os.X_OK), f"{script} is not executable"
        subprocess.run(["sh", "-n", str(script)], check=True, timeout=30)
    result = subprocess.run(
        [shellcheck, "--shell=sh", *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_git_ignores_the_generated_secrets_and_the_env_file() -> None:
    """Read as git reads deploy/.gitignore (anchored patterns), without needing git."""
    patterns = {
        line
        for line in (DEPLOY / ".gitignore").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    assert patterns == {"/secrets/", "/.env"}

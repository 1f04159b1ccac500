"""The agent's configuration: one TOML file, validated at start without I/O.

Every error names the key and the value, e.g.
``sensors[2].publish_interval_s: 3.0 is shorter than sample_interval_s 5.0``.
Driver options are validated against the driver's own options model, found by
name through the driver registry, so a typo in a serial port option is caught
before any port opens.

See ``edge_agents/examples/agent.toml`` for a documented sample.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_agents.drivers.registry import driver_class
from edge_agents.errors import EdgeAgentError, UnknownDriverError
from telemetry import Identifier


class ConfigError(EdgeAgentError, ValueError):
    """A configuration file that cannot be used; the message lists every problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttVersion(StrEnum):
    """Which MQTT protocol version the agent speaks first."""

    V5 = "5"
    V311 = "3.1.1"


class TlsConfig(_Section):
    """TLS towards the broker: CA certificate, optional client certificate and key."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            msg = "cert_file and key_file go together: set both or neither"
            raise ValueError(msg)
        return self


class BrokerConfig(_Section):
    """How to reach the MQTT broker."""

    url: str = "mqtt://localhost:1883"
    protocol: MqttVersion = MqttVersion.V5
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsConfig | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 60
    reconnect_min_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    """Ceiling of the first reconnect delay; it doubles after each failure."""
    reconnect_max_s: Annotated[float, Field(gt=0, le=3600)] = 120.0
    """Largest reconnect delay ceiling; each delay is drawn at random below the ceiling."""

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            msg = f"must look like mqtt://host:1883 or mqtts://host:8883, got {url!r}"
            raise ValueError(msg)
        return url

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.reconnect_min_s > self.reconnect_max_s:
            msg = (
                f"reconnect_min_s {self.reconnect_min_s:g} is above"
                f" reconnect_max_s {self.reconnect_max_s:g}"
            )
            raise ValueError(msg)
        if self.tls is not None and not self.url.startswith("mqtts://"):
            msg = f"[broker.tls] is set but the url {self.url!r} is not mqtts://"
            raise ValueError(msg)
        return self

    @property
    def host(self) -> str:
        """The broker's host name."""
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """The broker's port (1883, or 8883 for ``mqtts``, unless given)."""
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)


class BufferConfig(_Section):
    """The on-disk store-and-forward queue."""

    path: Path = Path("/var/lib/urbansense-agent/buffer.sqlite3")
    max_bytes: Annotated[int, Field(gt=0)] | None = None
    """None sizes the queue for 36 hours offline at the configured rates."""


class PublishConfig(_Section):
    """How readings are batched onto the readings topic."""

    max_batch_readings: Annotated[int, Field(ge=1, le=10_000)] = 500
    linger_s: Annotated[float, Field(ge=0, le=60)] = 1.0
    heartbeat_s: Annotated[float, Field(ge=1, le=3600)] = 60.0


class SensorConfig(_Section):
    """One sensor: its id, its driver and the driver's options, and its rates."""

    id: Identifier
    driver: Annotated[str, Field(min_length=1)]
    sample_interval_s: Annotated[float, Field(gt=0, le=86_400)] = 5.0
    publish_interval_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    options: dict[str, Any] = {}

    @model_validator(mode="after")
    def _rates_and_options(self) -> Self:
        if self.publish_interval_s < self.sample_interval_s:
            msg = (
                f"publish_interval_s {self.publish_interval_s:g} is shorter than"
                f" sample_interval_s {self.sample_interval_s:g}"
            )
            raise ValueError(msg)
        try:
            options_model = driver_class(self.driver).Options
        except UnknownDriverError as error:
            raise ValueError(str(error)) from None
        try:
            options_model.model_validate(self.options)
        except ValidationError as error:
            problems = "; ".join(
                f"options.{_where(e['loc']) or '(all)'}: {e['msg']} (value: {e['input']!r})"
                for e in error.errors(include_url=False)
            )
            msg = f"driver {self.driver!r} refuses its options: {problems}"
            raise ValueError(msg) from None
        return self


class AgentConfig(_Section):
    """The whole agent configuration."""

    gateway_id: Identifier
    broker: BrokerConfig = BrokerConfig()
    buffer: BufferConfig = BufferConfig()
    publish: PublishConfig = PublishConfig()
    sensors: Annotated[list[SensorConfig], Field(min_length=1)]

    @field_validator("sensors")
    @classmethod
    def _unique_ids(cls, sensors: list[SensorConfig]) -> list[SensorConfig]:
        seen: dict[str, int] = {}
        for index, sensor in enumerate(sensors):
            first = seen.setdefault(sensor.id, index)
            if first != index:
                msg = (
                    f"sensor id {sensor.id!r} appears twice: sensors[{first}] and sensors[{index}]"
                )
                raise ValueError(msg)
        return sensors

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data, secrets shown as ``********``."""
        return self.model_dump(mode="json")


def _where(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse_config(text: str, source: str = "<string>") -> AgentConfig:
    """Validate TOML text as an agent config; raise :class:`ConfigError` listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        msg = f"{source}: not valid TOML: {error}"
        raise ConfigError(msg) from None
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as error:
        lines = [
            f"{source}: {_where(e['loc']) or '(top level)'}: {e['msg']}"
            + ("" if e["type"] == "missing" else f" (value: {e['input']!r})")
            for e in error.errors(include_url=False)
        ]
        raise ConfigError("\n".join(lines)) from None


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate the TOML file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        msg = f"cannot read config {path}: {error.strerror}"
        raise ConfigError(msg) from None
    return parse_config(text, source=str(path))

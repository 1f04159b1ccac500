"""The bridge's settings: one pydantic model, validated when built, no I/O.

Every field has a default that suits one bridge process next to a Mosquitto
broker and a Kafka cluster on the same network; the command line
(:mod:`stream.bridge.cli`) overrides the few an operator changes.

>>> config = BridgeConfig(
...     mqtt=BrokerConfig(url="mqtt://broker.lan:1883"),
...     client_id="bridge-a",
...     kafka=KafkaConfig(bootstrap_servers="kafka-1:9092,kafka-2:9092"),
... )
>>> for subscription in config.subscriptions():
...     print(subscription)
$share/urbansense-bridge/urbansense/v1/+/readings
$share/urbansense-bridge/urbansense/v1/+/status
>>> config.topics.readings, config.topics.status, config.topics.dead_letter
('urbansense.readings', 'urbansense.status', 'urbansense.deadletter')
>>> BridgeConfig(max_inflight=0)
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for BridgeConfig
max_inflight
  Input should be greater than or equal to 1 ...
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agents.config import BrokerConfig
from telemetry import CodecLimits, Identifier, readings_filter, status_filter

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_SHARE_GROUP",
    "BridgeConfig",
    "BrokerConfig",
    "KafkaConfig",
    "KafkaTopics",
]

DEFAULT_CLIENT_ID = "urbansense-bridge"
"""The MQTT client id when none is given. Give each bridge process its own, stable one."""

DEFAULT_SHARE_GROUP = "urbansense-bridge"
"""The MQTT 5 shared-subscription group the bridge processes split the messages in."""

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_BOOTSTRAP_RE = re.compile(r"[^\s,:]+:\d{1,5}")

_DEAD_LETTER_OVERHEAD = 64 * 1024
"""Room in a dead-letter record for everything but the payload: problems, topic, times."""

KafkaTopicName = Annotated[str, Field(pattern=_TOPIC_RE.pattern)]
"""A legal Kafka topic name: 1 to 249 ASCII letters, digits and ``. _ -``."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaTopics(_Section):
    """Where the bridge writes.

    Attributes:
        readings: gateways' batch envelopes, one record per envelope, keyed by
            gateway id.
        status: gateways' status messages, keyed by gateway id.
        dead_letter: rejected payloads as JSON records (see
            :class:`stream.bridge.route.DeadLetter`).
    """

    readings: KafkaTopicName = "urbansense.readings"
    status: KafkaTopicName = "urbansense.status"
    dead_letter: KafkaTopicName = "urbansense.deadletter"


class KafkaConfig(_Section):
    """How the bridge produces to Kafka.

    The producer asks for ``acks=all`` and leaves idempotence off (Tansu
    refuses idempotent producers; the bridge is at-least-once anyway).

    Attributes:
        bootstrap_servers: ``host:port``, or several separated by commas.
        linger_ms: how long the producer waits to fill a batch. A few
            milliseconds cost little latency and multiply throughput.
        max_batch_bytes: the largest batch per partition; an envelope larger
            than this travels in a batch of its own.
        max_request_bytes: the largest produce request (and so record); must
            not exceed the brokers' ``message.max.bytes``.
        request_timeout_ms: how long a produce request, or the wait for a
            topic's metadata, may take before it counts as failed and is
            retried by the bridge.
        compression: the batches' compression codec; codecs other than gzip
            need their Python package installed.
        create_topics_partitions: when set, the bridge creates any of its
            topics that do not exist, with this many partitions, each time it
            connects to Kafka. Leave unset where topics are provisioned (or
            auto-created) by the cluster.
        create_topics_replication: the replication factor of topics it creates.
    """

    bootstrap_servers: str = "localhost:9092"
    linger_ms: Annotated[int, Field(ge=0, le=10_000)] = 10
    max_batch_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 512 * 1024
    max_request_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    request_timeout_ms: Annotated[int, Field(ge=1000, le=600_000)] = 30_000
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    create_topics_partitions: Annotated[int, Field(ge=1, le=10_000)] | None = None
    create_topics_replication: Annotated[int, Field(ge=1, le=100)] = 1

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        servers = [part.strip() for part in value.split(",")]
        bad = [s for s in servers if not _BOOTSTRAP_RE.fullmatch(s)]
        if bad:
            msg = f"must be host:port[,host:port...], got {value!r}"
            raise ValueError(msg)
        return ",".join(servers)


class BridgeConfig(_Section):
    """The whole bridge configuration.

    Attributes:
        mqtt: the broker: URL, protocol, credentials, TLS, keepalive and the
            reconnect delays (the agent's own :class:`BrokerConfig`).
        client_id: the MQTT client id, which names the persistent session.
            Each bridge process needs its own, and the same one again after a
            restart: the broker keeps the unacknowledged messages in that
            session.
        share_group: the MQTT 5 shared-subscription group; processes in one
            group split the messages. None subscribes plainly (every process
            then gets every message).
        session_expiry_s: how long the broker keeps the session (and queues
            messages for it) while the bridge is away; MQTT 5 only.
        max_inflight: the most MQTT messages received and not yet
            acknowledged; sent to the broker as the MQTT 5 receive maximum, so
            the broker holds the rest. It bounds the bridge's memory.
        kafka: the producer settings.
        topics: the Kafka topic names.
        max_payload_bytes: the largest payload accepted; larger ones go to the
            dead-letter topic as ``oversize``.
        max_future_skew_s: how far in the future a reading's time may be.
        dead_letter_max_raw_bytes: at most this many bytes of a rejected
            payload are kept in its dead-letter record (the record says when
            it was cut).
        drain_timeout_s: on stop, how long to wait for records in flight to
            be acknowledged by Kafka (and then on MQTT).
        stats_interval_s: how often the counters are logged.
    """

    mqtt: BrokerConfig = BrokerConfig()
    client_id: Identifier = DEFAULT_CLIENT_ID
    share_group: Identifier | None = DEFAULT_SHARE_GROUP
    session_expiry_s: Annotated[int, Field(ge=0, le=2**32 - 1)] = 7 * 86_400
    max_inflight: Annotated[int, Field(ge=1, le=65_535)] = 1000
    kafka: KafkaConfig = KafkaConfig()
    topics: KafkaTopics = KafkaTopics()
    max_payload_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = (
        CodecLimits().max_payload_bytes
    )
    max_future_skew_s: Annotated[float, Field(ge=0, le=86_400)] = (
        CodecLimits().max_future_skew.total_seconds()
    )
    dead_letter_max_raw_bytes: Annotated[int, Field(ge=0, le=16 * 1024 * 1024)] = 256 * 1024
    drain_timeout_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    stats_interval_s: Annotated[float, Field(gt=0, le=86_400)] = 30.0

    @model_validator(mode="after")
    def _records_fit_in_a_request(self) -> Self:
        largest_letter = self.dead_letter_max_raw_bytes * 4 // 3 + _DEAD_LETTER_OVERHEAD
        largest = max(self.max_payload_bytes, largest_letter)
        if largest > self.kafka.max_request_bytes:
            msg = (
                f"a record can be {largest} bytes (max_payload_bytes {self.max_payload_bytes},"
                f" dead_letter_max_raw_bytes {self.dead_letter_max_raw_bytes} in base64), more"
                f" than kafka.max_request_bytes {self.kafka.max_request_bytes}: Kafka would"
                " refuse it for ever"
            )
            raise ValueError(msg)
        return self

    def subscriptions(self) -> list[str]:
        """The topic filters the bridge subscribes to, with QoS 1."""
        return [readings_filter(self.share_group), status_filter(self.share_group)]

    def codec_limits(self) -> CodecLimits:
        """The codec limits these settings ask for."""
        return CodecLimits(
            max_payload_bytes=self.max_payload_bytes,
            max_future_skew=timedelta(seconds=self.max_future_skew_s),
        )

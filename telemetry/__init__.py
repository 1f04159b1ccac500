"""The wire contract every part of urbansense shares.

Gateways, simulators, the bridge and the stream all speak through these names:

* the metric catalogue — :class:`Kind`, :class:`MetricSpec`, :data:`CATALOGUE`:
  for each kind of sensor its metrics, units and physically valid ranges;
* the messages — :class:`Reading`, :class:`Batch` (a gateway's envelope),
  :class:`GatewayStatus` and :class:`Alert`, as strict pydantic models;
* the topic scheme — ``urbansense/v1/<gateway_id>/readings`` and friends;
* the codec — JSON with size limits, giving a valid message or a
  :class:`DecodeError` whose problems name the reason, the field and the value;
* ids — one rule for every id that reaches a topic or a tag;
* the site registry — :class:`Registry`, loaded from YAML by
  :func:`load_registry`: districts, sites, gateways, sensors, scenic areas,
  road segments and buildings, with every problem reported at its line.

This package imports pydantic and the standard library only, so it runs on a
gateway as well as in the stream cluster.
"""

from telemetry.catalogue import CATALOGUE, Kind, MetricSpec, Semantics, all_metrics, metric_spec
from telemetry.codec import Codec, CodecLimits, DecodeError, Problem, RejectReason, to_json
from telemetry.errors import (
    DocumentProblem,
    InvalidIdError,
    RegistryError,
    TelemetryError,
    TopicError,
    UnknownIdError,
    UnknownMetricError,
)
from telemetry.ids import MAX_ID_LENGTH, Identifier, check_id, id_problem
from telemetry.models import (
    MAX_READINGS_PER_BATCH,
    SCHEMA_VERSION,
    Alert,
    AlertState,
    AlertSubject,
    Batch,
    GatewayState,
    GatewayStatus,
    MetricStats,
    QualityFlag,
    Reading,
    Severity,
    alert_fingerprint,
)
from telemetry.registry import (
    Registry,
    load_example_registry,
    load_registry,
    parse_registry,
)
from telemetry.topics import (
    Channel,
    Topic,
    alert_topic,
    alerts_filter,
    parse_topic,
    readings_filter,
    readings_topic,
    status_filter,
    status_topic,
)

__all__ = [
    "CATALOGUE",
    "MAX_ID_LENGTH",
    "MAX_READINGS_PER_BATCH",
    "SCHEMA_VERSION",
    "Alert",
    "AlertState",
    "AlertSubject",
    "Batch",
    "Channel",
    "Codec",
    "CodecLimits",
    "DecodeError",
    "DocumentProblem",
    "GatewayState",
    "GatewayStatus",
    "Identifier",
    "InvalidIdError",
    "Kind",
    "MetricSpec",
    "MetricStats",
    "Problem",
    "QualityFlag",
    "Reading",
    "Registry",
    "RegistryError",
    "RejectReason",
    "Semantics",
    "Severity",
    "TelemetryError",
    "Topic",
    "TopicError",
    "UnknownIdError",
    "UnknownMetricError",
    "alert_fingerprint",
    "alert_topic",
    "alerts_filter",
    "all_metrics",
    "check_id",
    "id_problem",
    "load_example_registry",
    "load_registry",
    "metric_spec",
    "parse_registry",
    "parse_topic",
    "readings_filter",
    "readings_topic",
    "status_filter",
    "status_topic",
    "to_json",
]

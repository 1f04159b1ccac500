"""Builds the stream's Faust app from its settings: topics, tables, pipeline, sink, agents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import faust

from rules.engine import RuleEngine
from rules.load import load_default_rules, load_rule_files
from rules.routing import load_routing
from stream.anomaly.config import load_config
from stream.app.agents import Agents, define_agents
from stream.app.settings import StreamSettings
from stream.app.tables import Tables, define_tables
from stream.app.topics import Topics, define_topics
from stream.app.transport import StreamFaustApp
from stream.pipeline import Pipeline
from stream.sinks.files import LineFileSink
from stream.sinks.influx import InfluxSink, WriteApi
from stream.sinks.lineprotocol import Precision
from telemetry.registry import Registry, load_example_registry, load_registry

__all__ = ["StreamApp", "build_app"]


@dataclass(frozen=True, slots=True)
class StreamApp:
    """The Faust app and what it is made of."""

    app: faust.App
    topics: Topics
    tables: Tables
    agents: Agents
    pipeline: Pipeline
    sink: InfluxSink | LineFileSink


def _registry(source: str) -> Registry:
    return load_example_registry() if source == "example" else load_registry(source)


def _rules(source: str, registry: Registry) -> RuleEngine | None:
    if source == "none":
        return None
    rules = load_default_rules() if source == "default" else load_rule_files(source.split(","))
    return RuleEngine(rules, registry)


def _sink(settings: StreamSettings) -> InfluxSink | LineFileSink:
    """The sink the settings choose: the database, or line-protocol files."""
    if settings.sink == "files":
        return LineFileSink(settings.lines_dir, precision=Precision.MS)
    return InfluxSink(
        settings.influx_url,
        api=WriteApi(settings.influx_api),
        bucket=settings.influx_bucket if settings.influx_api == "v2" else None,
        database=settings.influx_bucket if settings.influx_api == "v1" else None,
        token=settings.influx_token,
        precision=Precision.MS,
    )


def build_app(settings: StreamSettings) -> StreamApp:
    """Build the app; nothing connects until the worker starts."""
    app = StreamFaustApp(
        settings.app_id,
        fetch_wait_ms=settings.fetch_wait_ms,
        broker=f"kafka://{settings.kafka}",
        store="memory://",
        datadir=settings.datadir,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        # Tansu answers a new group's first JoinGroup after half the session timeout;
        # Apache Kafka is indifferent to a short one.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        # Tansu refuses idempotent producers; the stream is at-least-once by design.
        producer_acks=-1,
    )
    topics = define_topics(app, settings)
    tables = define_tables(app, settings)
    state = tables.state
    registry = _registry(settings.registry)

    def scan(prefix: str) -> list[tuple[str, bytes]]:
        return [(k.decode(), v) for k, v in state.with_prefix(prefix.encode())]

    pipeline = Pipeline(
        registry,
        load_config(settings.anomaly_config),
        lateness=timedelta(seconds=settings.lateness_s),
        idle_after=timedelta(seconds=settings.idle_after_s),
        load=lambda sensor: state.get(sensor.encode()),
        precision=Precision.MS,
        indices=settings.index_config(),
        rules=_rules(settings.rules, registry),
        scan=scan,
    )
    sink = _sink(settings)
    routing = None if settings.routing is None else load_routing(settings.routing)
    # The agents call only connect, write and close, the contract both sinks keep
    # (stream.sinks.Sink); their annotation names the InfluxDB sink.
    agents = define_agents(app, settings, topics, tables, pipeline, sink, routing)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_sink(app: faust.App, **kwargs: object) -> None:
        await sink.close()

    return StreamApp(app, topics, tables, agents, pipeline, sink)

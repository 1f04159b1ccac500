"""A minimal Faust app for the smoke test: one agent that echoes one topic into another.

Run it as ``python -m tests.servers.faust_echo worker --without-web``; its settings come
from ``URBANSENSE_FAUST_*`` environment variables (see :func:`main`), so importing this
module starts nothing.
"""

from __future__ import annotations

import os

import faust

ECHO_PREFIX = b"echo:"
"""The agent writes each value it reads with this prefix, keeping the key."""


def build_app(app_id: str, broker: str, source: str, sink: str, datadir: str) -> faust.App:
    """Build a Faust app with one agent that copies ``source`` to ``sink``.

    Args:
        app_id: The app id, which is also the consumer group.
        broker: The broker URL, e.g. ``kafka://127.0.0.1:9092``.
        source: The topic the agent reads.
        sink: The topic the agent writes; each value gets :data:`ECHO_PREFIX`.
        datadir: The app's data directory.

    Returns:
        The app, not started.
    """
    app = faust.App(
        app_id,
        broker=broker,
        store="memory://",
        datadir=datadir,
        web_enabled=False,
        topic_partitions=1,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        # Tansu answers a new consumer group's first JoinGroup after half the session
        # timeout; Faust's default of 60 s would make every start wait 30 s.
        broker_session_timeout=2.0,
        broker_heartbeat_interval=0.5,
    )
    source_topic = app.topic(source, key_serializer="raw", value_serializer="raw")
    sink_topic = app.topic(sink, key_serializer="raw", value_serializer="raw")

    @app.agent(source_topic)
    async def echo(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await sink_topic.send(key=event.key, value=ECHO_PREFIX + event.value)

    return app


def main() -> None:
    """Build the app from ``URBANSENSE_FAUST_*`` variables and run Faust's command line."""
    env = os.environ
    app = build_app(
        app_id=env["URBANSENSE_FAUST_APP_ID"],
        broker=env["URBANSENSE_FAUST_BROKER"],
        source=env["URBANSENSE_FAUST_SOURCE"],
        sink=env["URBANSENSE_FAUST_SINK"],
        datadir=env["URBANSENSE_FAUST_DATADIR"],
    )
    app.main()


if __name__ == "__main__":
    main()

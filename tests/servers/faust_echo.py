"""A minimal Faust app for the smoke test: one agent that echoes one topic into another.

Run it as ``python -m tests.servers.faust_echo worker --without-web``; its settings come
from ``URBANSENSE_FAUST_*`` environment variables (see :func:`main`), so importing this
module starts nothing.

Given offsets to skip, the agent drops the records at those offsets the first time it
gets them, without acking them, as Faust itself sometimes does with records it read
past; the stream's offset watch (:func:`stream.app.agents.watch_offsets`) runs beside
it, so a test sees whether the skipped records are read again.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import cast

import faust
import structlog

from stream.app.agents import watch_offsets
from stream.app.transport import StreamFaustApp

ECHO_PREFIX = b"echo:"
"""The agent writes each value it reads with this prefix, keeping the key."""


def build_app(
    app_id: str,
    broker: str,
    source: str,
    sink: str,
    datadir: str,
    skip: Collection[int] = (),
    watch_s: float | None = None,
) -> faust.App:
    """Build a Faust app with one agent that copies ``source`` to ``sink``.

    Args:
        app_id: The app id, which is also the consumer group.
        broker: The broker URL, e.g. ``kafka://127.0.0.1:9092``.
        source: The topic the agent reads.
        sink: The topic the agent writes; each value gets :data:`ECHO_PREFIX`.
        datadir: The app's data directory.
        skip: Offsets whose records the agent drops, unacked, the first time.
        watch_s: If given, the offset watch runs with this limit.

    Returns:
        The app, not started.
    """
    app = StreamFaustApp(  # the stream's own Faust app class, with its transport
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

    to_skip = set(skip)

    @app.agent(source_topic)
    async def echo(stream: faust.StreamT[bytes]) -> None:
        async for event in cast("faust.Stream[bytes]", stream).noack().events():
            if event.message.offset in to_skip:
                to_skip.discard(event.message.offset)
                continue  # never echoed, never acked: lost, unless read again
            await sink_topic.send(key=event.key, value=ECHO_PREFIX + event.value)
            event.ack()

    if watch_s is not None:
        limit_s = watch_s

        @app.task  # type: ignore[untyped-decorator]
        async def watch() -> None:
            await watch_offsets(app, {source}, structlog.get_logger("faust_echo"), limit_s)

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
        skip=[int(o) for o in env.get("URBANSENSE_FAUST_SKIP", "").split(",") if o],
        watch_s=float(env["URBANSENSE_FAUST_WATCH_S"])
        if "URBANSENSE_FAUST_WATCH_S" in env
        else None,
    )
    app.main()


if __name__ == "__main__":
    main()

"""The Kafka topics the stream reads and writes; keys and values are raw bytes.

The bridge writes each gateway envelope as one record keyed by gateway id, so a
sensor's readings stay in order on one partition; the stream decodes them itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from stream.app.settings import StreamSettings

__all__ = ["Topics", "define_topics"]


@dataclass(frozen=True, slots=True)
class Topics:
    """The stream's topics."""

    readings: faust.TopicT
    status: faust.TopicT
    deadletter: faust.TopicT


def define_topics(app: faust.App, settings: StreamSettings) -> Topics:
    """Declare the topics on the app (created with the app's partition count)."""

    def raw(name: str) -> faust.TopicT:
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    return Topics(
        readings=raw(settings.readings_topic),
        status=raw(settings.status_topic),
        deadletter=raw(settings.deadletter_topic),
    )

"""The Kafka topics the stream reads and writes; keys and values are raw bytes.

The bridge writes each gateway envelope as one record keyed by gateway id, so a
sensor's readings stay in order on one partition; the stream decodes them itself.
The worker's ``route`` agent forwards each envelope, bytes unchanged, to
``by_district`` keyed by its gateway's district, so that everything a district's
state depends on (its sites, scenic areas, road segments, buildings, and the
neighbours every sensor is compared with) arrives on one partition, in order.
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
    by_district: faust.TopicT
    status: faust.TopicT
    deadletter: faust.TopicT
    alerts: faust.TopicT


def define_topics(app: faust.App, settings: StreamSettings) -> Topics:
    """Declare the topics on the app (created with the app's partition count)."""

    def raw(name: str, *, internal: bool = False, partitions: int | None = None) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            internal=internal,
            partitions=partitions,
        )

    return Topics(
        readings=raw(settings.readings_topic),
        by_district=raw(settings.district_topic, internal=True, partitions=settings.partitions),
        status=raw(settings.status_topic),
        deadletter=raw(settings.deadletter_topic),
        alerts=raw(settings.alerts_topic, internal=True, partitions=1),
    )

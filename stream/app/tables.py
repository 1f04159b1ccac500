"""The stream's state: changelog-backed tables, so a worker that takes over continues.

``sensor_state`` holds, per sensor id, the bytes of
:meth:`stream.pipeline.Pipeline.snapshot` (last sequence number, detectors, last
values). It is written from inside the batched agent, so it uses Faust's
partitioner with bytes keys: each write lands in the changelog partition of the
readings partition being processed, which is the partition the sensor's gateway
maps to, and a worker assigned that partition recovers exactly those sensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from stream.app.settings import StreamSettings

__all__ = ["Tables", "define_tables"]


@dataclass(frozen=True, slots=True)
class Tables:
    """The stream's tables."""

    sensor_state: faust.types.TableT[bytes, bytes]


def define_tables(app: faust.App, settings: StreamSettings) -> Tables:
    """Declare the tables on the app."""
    sensor_state = app.Table(
        "sensor_state",
        key_type=bytes,  # bytes keys and values: raw serializers, in the changelog too
        value_type=bytes,
        partitions=settings.partitions,
        use_partitioner=True,
        help="per sensor: last seq, detector state and last values",
    )
    return Tables(sensor_state=sensor_state)

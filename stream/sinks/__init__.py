"""Sinks: where the stream's readings, aggregates and alerts leave it.

Every sink has three calls, in the manner of telegraf's outputs
(``Connect``, ``Write``, ``Close``):

``await sink.connect()``
    Opens what the sink needs (an HTTP session, a connection) and checks that the
    other side answers. Building a sink only validates its arguments and does no
    I/O; a bad argument raises :class:`SinkConfigError` there. Calling
    ``connect`` again while connected does nothing; after a failed ``connect``
    it may simply be called again.

``await sink.write(batch)``
    Returns only when every item of the batch is written or has been handed to
    the sink's dead-letter callback with a reason (an item the destination
    refuses for good, like a malformed point, is never retried forever and never
    silently dropped). It raises :class:`SinkError` otherwise, whose
    ``retryable`` says what the caller should do:

    * ``retryable=True`` (destination busy or unreachable for longer than the
      sink's retry time): keep the batch (do not commit the Kafka offset) and
      write it again later, after ``retry_after`` seconds when given. Part of the
      batch may already be written; writing it again is safe because every
      sink is idempotent (an InfluxDB point is identified by measurement, tags
      and timestamp, so a replay overwrites and never doubles).
    * ``retryable=False`` (bad credentials, a missing bucket, a sink used after
      ``close``): the same call will keep failing until someone changes the
      configuration.

``await sink.close()``
    Releases what ``connect`` opened. It is always safe to call: before
    ``connect``, twice, after a failure. Callers call it in a ``finally`` (or use
    ``async with sink:``, which connects and always closes), so it always runs.
    A ``write`` still in progress when ``close`` runs fails with a retryable
    error.

Two sinks keep it: :class:`InfluxSink` (InfluxDB's v1 and v2 write endpoints, and
what else speaks them) and :class:`LineFileSink` (line-protocol files that ``influx
write`` loads later, where no database runs).

Every error of the package is a :class:`SinkError`; :class:`LineProtocolError`
(an unencodable point) and :class:`SinkConfigError` are never retryable.

>>> from stream.sinks import InfluxSink, LineEncoder, Precision
>>> encoder = LineEncoder(precision=Precision.S)
>>> lines = encoder.encode_batch([("aq", {"id": "s1"}, {"pm2_5": 35.0}, 1_700_000_000 * 10**9)])
>>> lines
['aq,id=s1 pm2_5=35.0 1700000000']
>>> sink = InfluxSink("http://127.0.0.1:8428", bucket="urbansense", precision=Precision.S)
>>> isinstance(sink, Sink)
True
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

from stream.sinks.files import LineFileSink
from stream.sinks.influx import (
    DeadLetter,
    InfluxSink,
    SinkStats,
    WriteApi,
    WriteResult,
    error_message,
    parse_retry_after,
)
from stream.sinks.lineprotocol import (
    FieldValue,
    LineEncoder,
    LinePoint,
    LineProtocolError,
    Precision,
    SinkConfigError,
    SinkError,
    encode_batch,
    encode_point,
    escape_field_key,
    escape_measurement,
    escape_tag_key,
    escape_tag_value,
    quote_string,
    timestamp_ns,
)

__all__ = [
    "DeadLetter",
    "FieldValue",
    "InfluxSink",
    "LineEncoder",
    "LineFileSink",
    "LinePoint",
    "LineProtocolError",
    "Precision",
    "Sink",
    "SinkConfigError",
    "SinkError",
    "SinkStats",
    "WriteApi",
    "WriteResult",
    "encode_batch",
    "encode_point",
    "error_message",
    "escape_field_key",
    "escape_measurement",
    "escape_tag_key",
    "escape_tag_value",
    "parse_retry_after",
    "quote_string",
    "timestamp_ns",
]

BatchT_contra = TypeVar("BatchT_contra", contravariant=True)


@runtime_checkable
class Sink(Protocol[BatchT_contra]):
    """The contract every sink keeps; see the package docstring for the guarantees."""

    async def connect(self) -> None:
        """Open what the sink needs and check that the destination answers."""

    async def write(self, batch: BatchT_contra, /) -> object:
        """Write every item, or dead-letter it; raise :class:`SinkError` otherwise."""

    async def close(self) -> None:
        """Release what ``connect`` opened; always safe to call."""

"""Everything the stream decides about a batch of gateway envelopes, without any I/O.

The Faust agent reads envelopes from Kafka, hands a batch of them to
:meth:`Pipeline.process`, writes the lines it returns to InfluxDB, and only then
stores the touched sensors' state (:meth:`Pipeline.snapshot`) in its table and lets
its offsets be committed. What happens to each reading, in order:

1. **Known sensor**: a sensor the site registry does not know is rejected with a
   reason (the agent sends it to the dead-letter topic), never guessed at.
2. **Dedupe**: each sensor's last sequence number is state; a reading whose ``seq``
   is not above it is a resend (the gateway's store-and-forward, or a replay after a
   worker crash) and is dropped, counted.
3. **Event time**: the watermark is the newest event time seen less the allowed
   lateness. A reading older than the watermark is written as a raw reading but
   does not touch any state (detectors, baselines), and is counted as late.
4. **Anomalies**: the on-time readings are scored by the detectors of their kind
   (:class:`~stream.anomaly.ReadingScorer`), in one batched call.
5. **Points**: the raw reading and its anomaly scores, as line protocol.

A sensor's state (last seq, every metric's detector state and last value) is one
bytes value: :meth:`Pipeline.snapshot` and :meth:`Pipeline.restore`. A pipeline
given a ``load`` function asks it for a sensor's stored state the first time the
sensor appears, so a worker that takes over a partition continues where the last
one stopped.

>>> from datetime import UTC, datetime, timedelta
>>> from telemetry import Batch, Kind, Reading
>>> from telemetry.registry import load_example_registry
>>> pipeline = Pipeline(load_example_registry())
>>> start = datetime(2024, 11, 8, tzinfo=UTC)
>>> envelope = Batch(gateway_id="gw-lakeside-01", readings=(
...     Reading(sensor_id="aq-pier-pollution", kind=Kind.POLLUTION, seq=1, ts=start,
...             metrics={"pm2_5": 35.0}),))
>>> out = pipeline.process([envelope, envelope])  # the second is a resend
>>> len(out.lines), pipeline.stats.duplicates  # the reading and its anomaly scores
(2, 1)
>>> print(out.lines[0])
pollution,district=lakeside,gateway=gw-lakeside-01,sensor=aq-pier-pollution,site=st-aq-pier
    pm2_5=35.0,seq=1i 1731024000000
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from stream.anomaly.config import DEFAULT_CONFIG, AnomalyConfig
from stream.anomaly.scorer import ReadingScorer, neighbours_from_registry
from stream.schema import SensorTags, anomaly_point, gateway_point, reading_point, sensor_tags
from stream.sinks.lineprotocol import LineEncoder, LinePoint, Precision
from telemetry import CATALOGUE, Batch, GatewayStatus, Reading
from telemetry.registry import Registry

__all__ = ["Pipeline", "PipelineOutput", "PipelineStats", "Rejected"]

_STATE_VERSION = 1
_HEADER = struct.Struct("<Bqd")  # version, last seq, watermark (epoch s; NaN: none)
_METRIC = struct.Struct("<dI")  # last value (NaN: none), detector state bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """A reading the stream does not take, with the reason, for the dead-letter topic."""

    gateway_id: str
    reading: Reading
    reason: str


@dataclass(slots=True)
class PipelineStats:
    """Running counts of what the pipeline did, for logs and metrics."""

    envelopes: int = 0
    readings: int = 0
    duplicates: int = 0
    late: int = 0
    rejected: int = 0
    points: int = 0


@dataclass(slots=True)
class PipelineOutput:
    """What one batch gave: lines to write, readings to dead-letter, sensors touched."""

    lines: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)


class Pipeline:
    """The stream's decisions for envelopes of readings; see the module docstring.

    Args:
        registry: the site registry: which sensors exist, and where.
        anomaly: the detector profiles.
        lateness: how far behind the newest event time a reading may be and still
            update state.
        load: returns a sensor's stored state (what :meth:`snapshot` gave), or None.
        precision: the timestamp precision of the lines.
    """

    def __init__(
        self,
        registry: Registry,
        anomaly: AnomalyConfig = DEFAULT_CONFIG,
        *,
        lateness: timedelta = timedelta(minutes=10),
        load: Callable[[str], bytes | None] | None = None,
        precision: Precision = Precision.MS,
    ) -> None:
        self.registry = registry
        self.lateness = lateness
        self.stats = PipelineStats()
        self.watermark: datetime | None = None
        self._load = load
        self._kinds = {s.id: s.kind for s in registry.sensors}
        self._tags: dict[str, SensorTags] = sensor_tags(registry)
        self._gateways = {g.id: g.site for g in registry.gateways}
        self._districts = {s.id: s.district for s in registry.sites}
        self._neighbours = neighbours_from_registry(registry)
        self._scorer = ReadingScorer(anomaly, self._neighbours)
        self._last_seq: dict[str, int] = {}
        self._loaded: set[str] = set()
        self._encoder = LineEncoder(precision)

    # ------------------------------------------------------------ state
    def snapshot(self, sensor_id: str) -> bytes:
        """One sensor's whole state: its last seq, the watermark, each metric's detectors.

        Each metric's last value is kept too (its neighbours' consensus needs it).
        """
        kind = self._kinds[sensor_id]
        watermark = math.nan if self.watermark is None else self.watermark.timestamp()
        parts = [_HEADER.pack(_STATE_VERSION, self._last_seq.get(sensor_id, -1), watermark)]
        for metric in CATALOGUE[kind]:
            state = self._scorer.combiner(kind, metric).snapshot(sensor_id)
            latest = self._scorer.latest.get((metric, sensor_id), math.nan)
            parts.append(_METRIC.pack(latest, len(state)))
            parts.append(state)
        return b"".join(parts)

    def restore(self, sensor_id: str, data: bytes) -> None:
        """Put back a sensor's state that :meth:`snapshot` returned.

        The bytes are checked whole before anything changes; the watermark moves
        forward to the stored one if that is newer.

        Raises:
            ValueError: the bytes are not a state of this sensor's kind and detectors;
                the message names the sensor. The sensor's state is left as it was.
        """
        kind = self._kinds[sensor_id]
        try:
            version, last_seq, watermark = _HEADER.unpack_from(data, 0)
            if version != _STATE_VERSION:
                msg = f"state version {version}, expected {_STATE_VERSION}"
                raise ValueError(msg)
            offset = _HEADER.size
            metrics: list[tuple[str, float, bytes]] = []
            for metric in CATALOGUE[kind]:
                latest, size = _METRIC.unpack_from(data, offset)
                offset += _METRIC.size
                expected = self._scorer.combiner(kind, metric).state_size()
                state = data[offset : offset + size]
                if size != expected or len(state) != size:
                    msg = f"{metric}: {len(state)} bytes of detector state, expected {expected}"
                    raise ValueError(msg)
                metrics.append((metric, latest, state))
                offset += size
            if offset != len(data):
                msg = f"{len(data) - offset} bytes of state left over"
                raise ValueError(msg)
        except (struct.error, ValueError) as exc:
            msg = f"sensor {sensor_id!r}: cannot restore its state: {exc}"
            raise ValueError(msg) from None
        for metric, latest, state in metrics:
            self._scorer.combiner(kind, metric).restore(state, sensor_id)
            if math.isnan(latest):
                self._scorer.latest.pop((metric, sensor_id), None)
            else:
                self._scorer.latest[metric, sensor_id] = latest
        if last_seq >= 0:
            self._last_seq[sensor_id] = last_seq
        if not math.isnan(watermark):
            stored = datetime.fromtimestamp(watermark, UTC)
            if self.watermark is None or stored > self.watermark:
                self.watermark = stored

    def _known(self, sensor_id: str) -> bool:
        """Whether the sensor is in the registry, loading its stored state on first sight.

        The first time a sensor is seen its neighbours' stored states are loaded too,
        where this worker can see them, so that the spatial detectors have their
        consensus at once.
        """
        if sensor_id not in self._kinds:
            return False
        if self._load is not None and sensor_id not in self._loaded:
            for sensor in (sensor_id, *self._neighbours.get(sensor_id, ())):
                if sensor not in self._loaded:
                    self._loaded.add(sensor)
                    data = self._load(sensor)
                    if data is not None:
                        self.restore(sensor, data)
        return True

    # ------------------------------------------------------------ processing
    def process(self, envelopes: Iterable[Batch]) -> PipelineOutput:
        """Dedupe, order by event time, score and encode a batch of envelopes."""
        out = PipelineOutput()
        on_time: list[Reading] = []
        points: list[LinePoint] = []
        for envelope in envelopes:
            self.stats.envelopes += 1
            for reading in envelope.readings:
                self.stats.readings += 1
                sensor = reading.sensor_id
                if not self._known(sensor):
                    out.rejected.append(
                        Rejected(envelope.gateway_id, reading, f"unknown sensor {sensor!r}")
                    )
                    continue
                if self._kinds[sensor] != reading.kind:
                    reason = (
                        f"sensor {sensor!r} is a {self._kinds[sensor]} sensor in the registry, "
                        f"not {reading.kind}"
                    )
                    out.rejected.append(Rejected(envelope.gateway_id, reading, reason))
                    continue
                if reading.seq <= self._last_seq.get(sensor, -1):
                    self.stats.duplicates += 1
                    continue
                self._last_seq[sensor] = reading.seq
                out.touched.add(sensor)
                points.append(reading_point(reading, self._tags[sensor]))
                if self._late(reading.ts):
                    self.stats.late += 1
                else:
                    on_time.append(reading)
        self.stats.rejected += len(out.rejected)
        points.extend(self._anomaly_points(on_time))
        out.lines = self._encoder.encode_batch(points)
        self.stats.points += len(out.lines)
        return out

    def _late(self, ts: datetime) -> bool:
        """Whether ``ts`` is behind the watermark; advances the watermark."""
        newest = ts - self.lateness
        if self.watermark is None or newest > self.watermark:
            self.watermark = newest
            return False
        return ts < self.watermark

    def _anomaly_points(self, readings: Sequence[Reading]) -> list[LinePoint]:
        scores = self._scorer.score(readings)
        points: list[LinePoint] = []
        i = 0
        for reading in readings:
            n = len(reading.metrics)
            mine = [(s.metric, s.score, s.detector, s.raw) for s in scores[i : i + n]]
            i += n
            district = self._tags[reading.sensor_id].district
            points.append(anomaly_point(reading, district, mine))
        return points

    def status_lines(self, statuses: Iterable[GatewayStatus]) -> list[str]:
        """Gateway status messages as lines.

        A gateway the registry does not know has its site and district written as
        ``unknown``.
        """
        points = []
        for status in statuses:
            site = self._gateways.get(status.gateway_id, "unknown")
            points.append(gateway_point(status, site, self._districts.get(site, "unknown")))
        return self._encoder.encode_batch(points)

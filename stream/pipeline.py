"""Everything the stream decides about a batch of gateway envelopes, without any I/O.

The Faust agent reads envelopes from Kafka, hands a batch of them to
:meth:`Pipeline.process`, writes the lines it returns to InfluxDB, and only then
stores the state of every key the batch touched (:meth:`Pipeline.snapshot`) in its
table and lets its offsets be committed. What happens to each reading, in order:

1. **Known sensor**: a sensor the site registry does not know is rejected with a
   reason (the agent sends it to the dead-letter topic), never guessed at.
2. **Dedupe**: each sensor's last sequence number is state, and so are the seqs
   of the last :data:`SEQ_WINDOW` below it that have not been seen. A reading whose
   ``seq`` is neither above the last one nor one of those unseen is a resend (the
   gateway's store-and-forward, or a replay after a worker crash) and is dropped,
   counted. An unseen one below the last seq (a record Faust skipped and the worker
   read again, see :mod:`stream.app.agents`) is written as a raw reading, but its
   sensor's state has moved on: it is taken as late (see 3), and counted as
   ``behind`` too.
3. **Event time**, per district: a district's watermark is the newest event time
   of its readings less the allowed lateness. A reading older than its district's
   watermark is written as a raw reading but does not touch any state (detectors,
   windows, indices), and is counted as late. Each district keeps its own, as it
   keeps its own state, so a worker that reads one district's partition ahead of
   another's (draining a backlog) never finds the other's readings late. Within a
   batch the fresh readings are taken in event-time order, so a batch that holds
   one gateway's minutes before another's of the same district finds neither late.
   A district silent for ``idle_after`` (by the worker's clock) follows the newest
   watermark, so that its last windows close.
4. **Anomalies**: the on-time readings are scored by the detectors of their kind
   (:class:`~stream.anomaly.ReadingScorer`), in one batched call.
5. **City indices** (:class:`~stream.cityindex.CityIndices`): a gate reading moves
   its scenic area's occupancy, a meter reading gives the energy consumed; every
   on-time reading is added to its sensor's and site's 1-minute and 1-hour windows,
   a traffic reading also to its segment's lane window.
6. **Closed windows**: once its district's watermark has passed a window's end (so
   every reading within the lateness bound is in it), the window closes, oldest
   first: aggregates, hourly AQI per station and district, congestion per segment
   and district, and every five minutes the districts' hotspots.
7. **Points**: all of it as line protocol (:mod:`stream.schema`).

State
-----
State is kept per key, each one bytes value: :meth:`Pipeline.snapshot` and
:meth:`Pipeline.restore`. A sensor's own state (last seq, its district's watermark,
each metric's detector state and last value) is under the sensor's id. State that
spans sensors is under keys of its own -- ``site/<id>``, ``segment/<id>/<direction>``,
``area/<id>``, ``building/<id>`` (see :mod:`stream.cityindex`) -- each with its
district's watermark. :attr:`PipelineOutput.touched` lists every key a batch changed.

A pipeline given a ``load`` function asks it for a key's stored state the first time
the key is needed, so a worker that takes over a partition continues where the last
one stopped: a sensor's state (and its spatial neighbours') when the sensor is first
seen, and then every cross-sensor key of the districts its readings feed, all of a
district together, so that district figures are computed from all of its sites as
before. Restoring a state never moves the watermark back, so a reading the last
worker would have found late is late here too, and never reopens a window it closed.

All of a district's keys must be on one worker, with all of its readings: the
worker re-keys envelopes by their gateway's district (:meth:`Pipeline.route_key`,
:mod:`stream.app.topics`) before they reach a pipeline, and stores each key in its
district's changelog partition (:meth:`Pipeline.district_of`). When another worker
takes districts over, :meth:`Pipeline.drop_districts` forgets them here.

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
>>> later = Batch(gateway_id="gw-lakeside-01", readings=(
...     Reading(sensor_id="aq-pier-pollution", kind=Kind.POLLUTION, seq=2,
...             ts=start + timedelta(minutes=11), metrics={"pm2_5": 40.0}),))
>>> out = pipeline.process([later])  # the watermark passes the first reading's minute
>>> print(out.lines[2])
agg_1m,district=lakeside,kind=pollution,metric=pm2_5,scope=sensor,sensor=aq-pier-pollution,site=st-aq-pier
    mean=35.0,min=35.0,max=35.0,sum=35.0,count=1i 1731024000000
>>> sorted(out.touched)
['aq-pier-pollution', 'site/st-aq-pier']
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from rules.engine import RuleEngine, Sample
from stream.anomaly.config import DEFAULT_CONFIG, AnomalyConfig
from stream.anomaly.scorer import FlatScore, ReadingScorer, neighbours_from_registry
from stream.cityindex import CityIndices, IndexConfig
from stream.schema import (
    SensorTags,
    alert_point,
    anomaly_line,
    gateway_point,
    reading_line,
    sensor_tags,
)
from stream.sinks.lineprotocol import LineEncoder, LinePoint, Precision
from telemetry import CATALOGUE, Alert, Batch, GatewayStatus, Kind, Reading
from telemetry.registry import Registry

__all__ = ["Pipeline", "PipelineOutput", "PipelineStats", "Rejected"]

SEQ_WINDOW = 1024
"""How many seqs below a sensor's last one its state tells apart as seen or unseen."""
_WINDOW_MASK = (1 << SEQ_WINDOW) - 1
_STATE_VERSION = 2
_HEADER = struct.Struct("<Bqd")  # version, last seq, watermark (epoch s; NaN: none)
_UNSEEN = struct.Struct("<H")  # v2: bytes of the unseen-seq bits that follow
_METRIC = struct.Struct("<dI")  # last value (NaN: none), detector state bytes
_WATERMARK = struct.Struct("<d")  # before a cross-sensor key's state (epoch s; NaN: none)


_ABSENCE_EVERY = timedelta(minutes=1)
_RULES = "rules/"  # the prefix of the rule engine's state keys
_NO_RULES: frozenset[int] = frozenset()
_SUBJECT_TAGS = ("sensor", "gateway", "site", "area", "segment", "building", "district")


def _unseen_bytes(bits: int) -> bytes:
    """A sensor's unseen-seq bits as stored: their length, then the bytes."""
    data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    return _UNSEEN.pack(len(data)) + data


def _event_time(accepted: tuple[Reading, str]) -> datetime:
    return accepted[0].ts


def _index_samples(rules: RuleEngine, point: LinePoint) -> list[Sample]:
    """The numeric fields of an index point that some rule selects, as samples."""
    measurement, tags, fields, ts_ns = point
    wanted = [
        (name, float(value))
        for name, value in fields.items()
        if not isinstance(value, (str, bool)) and rules.selects(measurement, name)
    ]
    if not wanted:
        return []
    labels = {k: v for k, v in tags.items() if k not in _SUBJECT_TAGS}
    ts = datetime.fromtimestamp(ts_ns / 1e9, UTC)
    get = tags.get
    return [
        Sample(
            measurement,
            name,
            value,
            ts,
            sensor=get("sensor"),
            gateway=get("gateway"),
            site=get("site"),
            area=get("area"),
            segment=get("segment"),
            building=get("building"),
            district=get("district"),
            labels=labels,
        )
        for name, value in wanted
    ]


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
    behind: int = 0
    """Readings below their sensor's last seq, not seen before: written raw, also late."""
    rejected: int = 0
    points: int = 0
    unrated: int = 0
    """On-time readings an index could not use (a gate camera's count, a lane without speed)."""


@dataclass(slots=True)
class PipelineOutput:
    """What one batch gave: lines, dead letters, state keys touched, alert transitions."""

    lines: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    alerts: list[Alert] = field(default_factory=list)


class Pipeline:
    """The stream's decisions for envelopes of readings; see the module docstring.

    Args:
        registry: the site registry: which sensors exist, and where.
        anomaly: the detector profiles.
        lateness: how far behind its district's newest event time a reading may be and
            still update state (and so how long a window stays open after its end).
        idle_after: how long (by the ``now`` given to :meth:`process`) a district may
            send nothing before its watermark follows the newest district's, so that
            its last windows close.
        load: returns a key's stored state (what :meth:`snapshot` gave), or None.
        precision: the timestamp precision of the lines.
        indices: how the city indices are computed.
        rules: the alert rules to evaluate over readings, scores and indices, if any.
        scan: every stored ``(key, state)`` whose key starts with a prefix: how a
            district's rule states are found (their keys are alert fingerprints).
    """

    def __init__(
        self,
        registry: Registry,
        anomaly: AnomalyConfig = DEFAULT_CONFIG,
        *,
        lateness: timedelta = timedelta(minutes=10),
        idle_after: timedelta = timedelta(minutes=1),
        load: Callable[[str], bytes | None] | None = None,
        precision: Precision = Precision.MS,
        indices: IndexConfig | None = None,
        rules: RuleEngine | None = None,
        scan: Callable[[str], Iterable[tuple[str, bytes]]] | None = None,
    ) -> None:
        self.registry = registry
        self.lateness = lateness
        self.idle_after = idle_after
        self.stats = PipelineStats()
        self._marks: dict[str, datetime] = {}  # per district: its watermark
        self._heard: dict[str, float] = {}  # per district with readings here: when last (s)
        self._load = load
        self._kinds = {s.id: s.kind for s in registry.sensors}
        self._tags: dict[str, SensorTags] = sensor_tags(registry)
        self._gateways = {g.id: g.site for g in registry.gateways}
        self._districts = {s.id: s.district for s in registry.sites}
        self._neighbours = neighbours_from_registry(registry)
        self._scorer = ReadingScorer(anomaly, self._neighbours)
        self._city = CityIndices(registry, indices, precision)
        self._last_seq: dict[str, int] = {}
        # per sensor with any: bit i set when seq last - 1 - i has not been seen
        self._unseen: dict[str, int] = {}
        self._seen: set[str] = set()
        self._loaded: set[str] = set()
        self._loaded_districts: set[str] = set()
        self._encoder = LineEncoder(precision)
        self.rules = rules
        self._scan = scan
        self._rules_loaded: set[str] = set()
        self._absence_checked: datetime | None = None
        self._gateway_districts: dict[str, set[str]] = {}
        for s in registry.sensors:
            self._gateway_districts.setdefault(s.gateway, set()).add(self._tags[s.id].district)

    # ------------------------------------------------------------ state
    def state_keys(self) -> list[str]:
        """Every key this pipeline keeps state under: sensors, shared keys, rule states."""
        rules = [] if self.rules is None else sorted(self.rules.state_keys())
        return [*self._kinds, *sorted(self._city.all_keys()), *rules]

    def snapshot(self, key: str) -> bytes:
        """One key's whole state, as bytes: :meth:`snapshots` of that key alone."""
        return self.snapshots([key])[key]

    def snapshots(self, keys: Iterable[str]) -> dict[str, bytes]:
        """Each key's whole state, as bytes: what a step stores of the keys it touched.

        A sensor's (``key`` a sensor id): its last seq and the unseen seqs below it,
        its district's watermark, each metric's detectors and last value (its
        neighbours' consensus needs it). A cross-sensor key's (``site/...`` and the
        others of :mod:`stream.cityindex`): its district's watermark and the key's
        state. A key never touched has an empty state. The sensors of a kind are
        snapshotted together, one pass over each detector's arrays.

        Raises:
            KeyError: neither a registry sensor nor a cross-sensor key of the registry.
        """
        states: dict[str, bytes] = {}
        sensors: dict[Kind, list[str]] = {}
        for key in keys:
            if self.rules is not None and key.startswith(_RULES):
                states[key] = self.rules.snapshot(key)
            elif self._city.is_key(key):
                mark = self._mark_s(self._city.home_of_key(key))
                states[key] = _WATERMARK.pack(mark) + self._city.snapshot(key)
            else:
                sensors.setdefault(self._kinds[key], []).append(key)
        last_seq = self._last_seq.get
        unseen = self._unseen.get
        latest = self._scorer.latest.get
        tags = self._tags
        for kind, ids in sensors.items():
            parts = [
                [
                    _HEADER.pack(
                        _STATE_VERSION, last_seq(sensor, -1), self._mark_s(tags[sensor].district)
                    ),
                    _unseen_bytes(unseen(sensor, 0)),
                ]
                for sensor in ids
            ]
            for metric in CATALOGUE[kind]:
                detectors = self._scorer.combiner(kind, metric).snapshots(ids)
                for sensor, own, state in zip(ids, parts, detectors, strict=True):
                    own.append(_METRIC.pack(latest((metric, sensor), math.nan), len(state)))
                    own.append(state)
            states.update(zip(ids, map(b"".join, parts), strict=True))
        return states

    def restore(self, key: str, data: bytes) -> None:
        """Put back a key's state that :meth:`snapshot` returned.

        The bytes are checked whole before anything changes; the watermark moves
        forward to the stored one if that is newer.

        Raises:
            KeyError: neither a registry sensor nor a cross-sensor key of the registry.
            ValueError: the bytes are not a state of this key (for a sensor: of its kind
                and detectors); the message names the sensor or the key. The key's
                state is left as it was.
        """
        if self.rules is not None and key.startswith(_RULES):
            self.rules.restore(key, data)
            return
        if self._city.is_key(key):
            self._restore_shared(key, data)
            return
        sensor_id = key
        kind = self._kinds[sensor_id]
        try:
            version, last_seq, watermark = _HEADER.unpack_from(data, 0)
            offset = _HEADER.size
            unseen = 0  # a version 1 state did not keep them
            if version == _STATE_VERSION:
                (size,) = _UNSEEN.unpack_from(data, offset)
                offset += _UNSEEN.size
                if size > SEQ_WINDOW // 8 or offset + size > len(data):
                    msg = (
                        f"{size} bytes of unseen seqs (at most {SEQ_WINDOW // 8})"
                        f" in {len(data) - offset} bytes"
                    )
                    raise ValueError(msg)
                unseen = int.from_bytes(data[offset : offset + size], "little")
                offset += size
            elif version != 1:
                msg = f"state version {version}, expected {_STATE_VERSION} (or 1)"
                raise ValueError(msg)
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
        if unseen:
            self._unseen[sensor_id] = unseen
        else:
            self._unseen.pop(sensor_id, None)
        self._advance(watermark, self._tags[sensor_id].district)

    def _restore_shared(self, key: str, data: bytes) -> None:
        """Restore a cross-sensor key: the watermark it was written at, then its state."""
        district = self._city.home_of_key(key)  # KeyError for a key the registry lacks
        try:
            (watermark,) = _WATERMARK.unpack_from(data, 0)
            self._city.restore(key, data[_WATERMARK.size :])
        except (struct.error, ValueError) as exc:
            msg = f"key {key!r}: cannot restore its state: {exc}"
            raise ValueError(msg) from None
        self._advance(watermark, district)

    # ------------------------------------------------------------ event time
    @property
    def watermark(self) -> datetime | None:
        """The newest district's watermark (see :meth:`watermark_of`); None before any."""
        return max(self._marks.values(), default=None)

    def watermark_of(self, district: str) -> datetime | None:
        """A district's watermark: its newest event time less the lateness.

        Each district keeps its own event time, as its state does: a worker draining a
        backlog reads its partitions at different paces, and one district read ahead
        must not make another's readings late.
        """
        return self._marks.get(district)

    def _mark_s(self, district: str) -> float:
        """A district's watermark in epoch seconds, NaN if none, as states store it."""
        mark = self._marks.get(district)
        return math.nan if mark is None else mark.timestamp()

    def _advance(self, watermark: float, district: str) -> None:
        """Move a district's watermark forward to a stored one (epoch seconds; NaN: none)."""
        if not math.isnan(watermark):
            stored = datetime.fromtimestamp(watermark, UTC)
            mark = self._marks.get(district)
            if mark is None or stored > mark:
                self._marks[district] = stored

    def _late(self, ts: datetime, district: str) -> bool:
        """Whether ``ts`` is behind its district's watermark; advances the watermark."""
        newest = ts - self.lateness
        mark = self._marks.get(district)
        if mark is None or newest > mark:
            self._marks[district] = newest
            return False
        return ts < mark

    def _follow_idle(self, now: float) -> None:
        """Districts silent for ``idle_after`` take the newest district's watermark."""
        newest = max((self._marks[d] for d in self._heard if d in self._marks), default=None)
        if newest is None:
            return
        limit = now - self.idle_after.total_seconds()
        for district, heard in self._heard.items():
            mark = self._marks.get(district)
            if heard < limit and (mark is None or mark < newest):
                self._marks[district] = newest

    def district_of(self, key: str) -> str:
        """The district a state key is kept with: its readings' route (:meth:`route`).

        A sensor's is its site's district; a cross-sensor key's is that of the first
        sensor (by id) that feeds it, so that one worker holds it with its readings
        even where a road segment or building lies across a district line.

        Raises:
            KeyError: neither a registry sensor nor a cross-sensor key of the registry.
        """
        if key.startswith(_RULES):
            return RuleEngine.district_of(key)
        if self._city.is_key(key):
            return self._city.home_of_key(key)
        return self._tags[key].district

    def route(self, envelope: Batch) -> dict[str, Batch]:
        """An envelope split by the district its readings are kept with, for re-keying.

        A reading of a sensor the registry does not know goes with its gateway's
        district (or, for an unknown gateway, its id): it is refused downstream.
        """
        fallback = self._home(envelope.gateway_id)
        parts: dict[str, list[Reading]] = {}
        tags = self._tags
        for reading in envelope.readings:
            where = tags.get(reading.sensor_id)
            parts.setdefault(fallback if where is None else where.district, []).append(reading)
        if len(parts) == 1:
            return {next(iter(parts)): envelope}
        return {
            district: envelope.model_copy(update={"readings": tuple(readings)})
            for district, readings in parts.items()
        }

    def route_key(self, gateway_id: str) -> str | None:
        """The one district a gateway's readings are kept with, or None if they span several.

        An unknown gateway is routed by its own id: its readings are refused downstream.
        """
        districts = self._gateway_districts.get(gateway_id)
        if districts is None:
            return self._home(gateway_id)
        return next(iter(districts)) if len(districts) == 1 else None

    def _home(self, gateway_id: str) -> str:
        """The district of a gateway's site; an unknown gateway's own id."""
        return self._districts.get(self._gateways.get(gateway_id, ""), gateway_id)

    def drop_districts(self, districts: Iterable[str]) -> None:
        """Forget what this pipeline holds of some districts: another worker took them.

        Their sensors' and cross-sensor keys' state is read again (``load``) the next
        time one of their readings comes here, so nothing stale is used or written.
        """
        gone = set(districts)
        for sensor, tags in self._tags.items():
            if tags.district in gone:
                self._seen.discard(sensor)
                self._loaded.discard(sensor)
                self._last_seq.pop(sensor, None)
                self._unseen.pop(sensor, None)
        self._loaded_districts -= gone
        self._rules_loaded -= gone
        for district in gone:
            self._marks.pop(district, None)
            self._heard.pop(district, None)
        if self.rules is not None:
            self.rules.drop_districts(gone)
        for key in self._city.all_keys():
            if self.district_of(key) in gone:
                self._loaded.discard(key)
                self._city.drop(key)

    def _known(self, sensor_id: str) -> bool:
        """Whether the sensor is in the registry, loading stored state on first sight.

        The first time a sensor is seen, its stored state and its neighbours' are
        loaded, where this worker can see them, so that the spatial detectors have
        their consensus at once; and so is every cross-sensor key of each district its
        readings feed (see the module docstring).
        """
        if sensor_id not in self._kinds:
            return False
        if self._load is not None and sensor_id not in self._seen:
            self._seen.add(sensor_id)
            # Its state may have been read as a neighbour's while another worker owned
            # it, and be stale since: read it again now that its readings come here.
            self._loaded.discard(sensor_id)
            for sensor in (sensor_id, *self._neighbours.get(sensor_id, ())):
                self._fetch(sensor)
            self._fetch_rules(self._tags[sensor_id].district)
            for key in self._city.keys_of(sensor_id):
                district = self._city.district_of_key(key)
                if district not in self._loaded_districts:
                    self._loaded_districts.add(district)
                    for shared in self._city.keys_of_district(district):
                        self._fetch(shared)
        return True

    def _fetch_rules(self, district: str) -> None:
        """Load every stored rule state of a district, once (they are found by prefix)."""
        if self.rules is None or self._scan is None or district in self._rules_loaded:
            return
        self._rules_loaded.add(district)
        for key, data in self._scan(f"{_RULES}{district}/"):
            self.rules.restore(key, data)

    def _fetch(self, key: str) -> None:
        """Load a key's stored state, once."""
        if self._load is not None and key not in self._loaded:
            self._loaded.add(key)
            data = self._load(key)
            if data is not None:
                self.restore(key, data)

    # ------------------------------------------------------------ processing
    def process(self, envelopes: Iterable[Batch], now: float | None = None) -> PipelineOutput:
        """Dedupe, order by event time, score, index, aggregate and encode a batch.

        ``now`` (epoch seconds, the worker's clock) is when the batch arrived: with
        it, a district that has sent nothing for ``idle_after`` follows the newest
        district's watermark. Without it (replays, tests), event time alone decides.
        """
        out = PipelineOutput()
        fresh = self._accept(envelopes, out, now)
        if now is not None:
            self._follow_idle(now)
        # fresh: [(reading, on time?)] -- registry sensors, unseen seqs, by event time
        on_time = [reading for reading, in_time in fresh if in_time]
        scores = self._scorer.score_flat(on_time)
        # scores: one per metric of each on-time reading, in order; the detectors learned
        points = self._city.add(on_time, out.touched)
        # points: scenic per gate reading, energy_use per meter reading; windows fed
        aggregates: list[str] = []
        closed = self._city.close(self._marks, out.touched, aggregates)
        # aggregates: agg_1m and agg_1h lines of the windows the watermark passed;
        # closed: aqi, traffic_index and hotspot points of the same windows
        precision = self._encoder.precision
        lines = [reading_line(r, self._tags[r.sensor_id], precision) for r, _ in fresh]
        # lines: every fresh reading, raw (a late one too)
        lines += self._anomaly_lines(on_time, scores)
        # + an anomaly line per on-time reading
        lines += self._encoder.encode_batch(points)
        lines += aggregates
        lines += self._encoder.encode_batch(closed)
        if self.rules is not None:
            out.alerts = self._evaluate(self.rules, on_time, scores, [*points, *closed])
            lines += self._encoder.encode_batch([alert_point(a) for a in out.alerts])
            out.touched |= self.rules.take_touched()
        out.lines = lines
        self.stats.unrated = self._city.unrated
        self.stats.points += len(out.lines)
        return out

    def _accept(
        self, envelopes: Iterable[Batch], out: PipelineOutput, now: float | None
    ) -> list[tuple[Reading, bool]]:
        """The fresh readings of the envelopes in event-time order, each with whether it is on time.

        Refused readings go to ``out.rejected``, and resends are dropped, in arrival
        order (a sensor's seq decides, whatever its clock says); a fresh reading's
        sensor is touched, and its district heard from at ``now``. A fresh reading
        below its sensor's last seq is never on time.
        """
        accepted: list[tuple[Reading, str]] = []  # (reading, its district)
        behind: list[Reading] = []  # fresh, below their sensor's last seq
        tags = self._tags
        heard = self._heard
        last_seq = self._last_seq
        unseen = self._unseen
        for envelope in envelopes:
            self.stats.envelopes += 1
            for reading in envelope.readings:
                self.stats.readings += 1
                refusal = self._refusal(reading)
                if refusal is not None:
                    out.rejected.append(Rejected(envelope.gateway_id, reading, refusal))
                    continue
                sensor = reading.sensor_id
                seq = reading.seq
                last = last_seq.get(sensor, -1)
                if seq > last:
                    if seq != last + 1 or sensor in unseen:
                        self._move_on(sensor, last, seq)
                    last_seq[sensor] = seq
                    is_behind = False
                elif self._first_sight(sensor, last - seq):
                    is_behind = True
                else:
                    self.stats.duplicates += 1
                    continue
                out.touched.add(sensor)
                district = tags[sensor].district
                if now is not None:
                    heard[district] = now
                elif district not in heard:
                    heard[district] = -math.inf
                if is_behind:
                    behind.append(reading)
                else:
                    accepted.append((reading, district))
        self.stats.rejected += len(out.rejected)
        # Event-time order (stable: equal times keep their arrival order), so that a
        # batch holding one gateway's minutes before another's of the same district
        # (a backlog drained a partition at a time) finds neither late.
        accepted.sort(key=_event_time)
        fresh: list[tuple[Reading, bool]] = []
        for reading, district in accepted:
            late = self._late(reading.ts, district)
            self.stats.late += late
            fresh.append((reading, not late))
        fresh += [(reading, False) for reading in behind]
        self.stats.behind += len(behind)
        self.stats.late += len(behind)
        return fresh

    def _move_on(self, sensor: str, last: int, seq: int) -> None:
        """Note a sensor's new last seq: the seqs between ``last`` and it are unseen.

        A sensor's first reading (``last`` -1) leaves every seq below it unseen.
        """
        if last < 0:
            bits = _WINDOW_MASK >> max(SEQ_WINDOW - seq, 0)
        else:
            step = seq - last
            if step > SEQ_WINDOW:
                bits = _WINDOW_MASK
            else:
                bits = (self._unseen.get(sensor, 0) << step) | ((1 << (step - 1)) - 1)
                bits &= _WINDOW_MASK
        if bits:
            self._unseen[sensor] = bits
        else:
            self._unseen.pop(sensor, None)

    def _first_sight(self, sensor: str, below: int) -> bool:
        """Whether the seq ``below`` under a sensor's last one is unseen; it is seen now."""
        bits = self._unseen.get(sensor, 0)
        bit = 1 << (below - 1) if 0 < below <= SEQ_WINDOW else 0
        if not bits & bit:
            return False
        bits &= ~bit
        if bits:
            self._unseen[sensor] = bits
        else:
            del self._unseen[sensor]
        return True

    def _refusal(self, reading: Reading) -> str | None:
        """Why the stream does not take a reading, or None if it does."""
        sensor = reading.sensor_id
        if not self._known(sensor):
            return f"unknown sensor {sensor!r}"
        if self._kinds[sensor] != reading.kind:
            return (
                f"sensor {sensor!r} is a {self._kinds[sensor]} sensor in the registry, "
                f"not {reading.kind}"
            )
        return None

    def _evaluate(
        self,
        rules: RuleEngine,
        readings: Sequence[Reading],
        scores: Sequence[FlatScore],
        points: Sequence[LinePoint],
    ) -> list[Alert]:
        """The rules over a batch's on-time readings (with their scores) and index points.

        Of a reading's metrics, only those some rule may look at become samples
        (:meth:`~rules.engine.RuleEngine.wants`), and of those only the ones of sensors
        that :meth:`~rules.engine.RuleEngine.stirs` in this batch or that are
        :meth:`~rules.engine.RuleEngine.awake` (the others change nothing). The absence
        rules, which only note that a subject reported, get one metric of each
        reading: of those, the batch's first and last per subject they tell apart
        (:meth:`~rules.engine.RuleEngine.watched`) are enough (the first resolves an
        absence, the last is when the subject was last heard). Absence rules are
        checked once per minute of event time.
        """
        samples: list[Sample] = []
        wants, watchers, stirs, awake = rules.wants, rules.watchers, rules.stirs, rules.awake
        watched = rules.watched
        tags = self._tags

        def sample_of(seen: tuple[Reading, str, float, float, str]) -> Sample:
            reading, metric, value, score, detector = seen
            where = tags[reading.sensor_id]
            return Sample(
                reading.kind.value,
                metric,
                float(value),
                reading.ts,
                reading.sensor_id,
                where.gateway,
                where.site,
                None,
                None,
                None,
                where.district,
                where.extra,
                score,
                detector,
            )

        # Of the metrics only absence rules look at: each watched subject's first and last.
        ends: dict[
            tuple[frozenset[int], object], tuple[tuple[Reading, str, float, float, str], ...]
        ] = {}
        stirred: set[str] = set()  # sensors some rule may act on in this batch
        quiet: list[tuple[Reading, str, float, float, str]] = []  # the other sensors' wanted
        i = 0
        for reading in readings:
            kind = reading.kind.value
            sensor = reading.sensor_id
            covered = _NO_RULES  # the absence rules that have a sample of this reading
            for metric, value in reading.metrics.items():
                _, score, detector, _ = scores[i]
                i += 1
                watching = watchers(kind, metric)
                wanted = wants(kind, metric, detector)
                if not wanted and watching <= covered:
                    continue
                seen = (reading, metric, value, score, detector)
                if wanted:
                    if (
                        sensor in stirred
                        or stirs(kind, metric, detector, value, score)
                        or awake(sensor)
                    ):
                        stirred.add(sensor)
                        samples.append(sample_of(seen))
                        covered |= watching
                        continue
                    quiet.append(seen)
                    if watching <= covered:
                        continue
                covered |= watching
                where = tags[sensor]
                ids = (sensor, where.gateway, where.site, None, None, None, where.district)
                key = (watching, watched(kind, metric, ids))
                held = ends.get(key)
                if held is None:
                    ends[key] = (seen,)
                elif reading.ts < held[0][0].ts:
                    ends[key] = (seen, held[-1])
                elif reading.ts >= held[-1][0].ts:
                    ends[key] = (held[0], seen)
        samples += [sample_of(seen) for seen in quiet if seen[0].sensor_id in stirred]
        samples += [sample_of(seen) for pair in ends.values() for seen in pair]
        for point in points:
            samples += _index_samples(rules, point)
        alerts = rules.evaluate(samples)
        mark = self.watermark
        if mark is not None and (
            self._absence_checked is None or mark - self._absence_checked >= _ABSENCE_EVERY
        ):
            self._absence_checked = mark
            # Only the districts whose readings come here: another worker watches the rest.
            marks = {d: self._marks[d] for d in self._heard if d in self._marks}
            alerts += rules.check_absence(marks)
        return alerts

    def _anomaly_lines(self, readings: Sequence[Reading], scores: Sequence[FlatScore]) -> list[str]:
        """An anomaly line per reading, from its metrics' scores (the next ``n`` of them)."""
        precision = self._encoder.precision
        tags = self._tags
        lines: list[str] = []
        i = 0
        for reading in readings:
            n = len(reading.metrics)
            lines.append(
                anomaly_line(reading, tags[reading.sensor_id], scores[i : i + n], precision)
            )
            i += n
        return lines

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

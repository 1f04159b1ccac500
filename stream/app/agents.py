"""The stream's agents: short pipelines over the pure core in :mod:`stream.pipeline`.

``route``: take a batch of gateway envelopes from the readings topic (keyed by
gateway) and forward each, bytes unchanged, to the ``by_district`` topic keyed by its
gateway's district (:meth:`~stream.pipeline.Pipeline.route_key`); the envelope of a
gateway whose sensors lie in several districts is split, one per district
(:meth:`~stream.pipeline.Pipeline.route`). The batch's offsets move on only once
Kafka has every forwarded record.

``readings``: take a batch of envelopes from ``by_district``; decode them (a payload
the codec refuses goes to the dead-letter topic); let the pipeline dedupe, order,
score and encode them; write the lines to the time-series database, retrying until
it has them. Every ``state_seconds`` the agent stores the state keys the steps since
touched in the table, each in the changelog partition of its district (at once
when a rebalance or a shutdown stops the flow), and only then acks those steps'
events, so their offsets move on. A crash anywhere replays what was not stored, and
the replay is harmless (duplicates are dropped by seq, points overwrite themselves).
Storing every few seconds (5 by default) instead of after each step snapshots a
sensor once for all its readings of those seconds.

``status``: gateway status messages become ``gateway`` points.

``notify`` (with a routing file): alert transitions, which ``readings`` sends to the
one-partition alerts topic, are grouped and delivered to their receivers
(:func:`_define_notify`).

When a rebalance gives partitions of ``by_district`` to another worker, the pipeline forgets the
districts that were on them (:meth:`~stream.pipeline.Pipeline.drop_districts`), so it
never writes points or state for a district another worker now owns.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Collection, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import faust
import structlog

from rules.routing import Dispatcher, Notification, RoutingConfig
from stream.alerts import Deliverer, DeliveryResult
from stream.app.settings import StreamSettings
from stream.app.tables import Tables
from stream.app.topics import Topics
from stream.app.transport import recordless, start_offset
from stream.pipeline import Pipeline, Rejected
from stream.sinks import Sink, SinkError
from telemetry import Batch
from telemetry.codec import Codec, DecodeError

__all__ = ["Agents", "define_agents", "watch_offsets", "write_until_done"]

_RETRY_PAUSE_S = 5.0
_STATE_CHECK_S = 0.1
"""How often the readings agent looks whether its state is due to be stored."""
_EXIT_FAILED = 70  # EX_SOFTWARE: a step failed; the worker ends as if killed


async def write_until_done(
    sink: Sink[list[str]], lines: list[str], log: structlog.BoundLogger
) -> None:
    """Write lines, waiting and trying again while the database cannot take them.

    A retryable failure (the database down, overloaded) holds the agent here, so the
    batch's offsets are not committed; a configuration error is raised.
    """
    while True:
        try:
            await sink.write(lines)
            return
        except SinkError as exc:
            if not exc.retryable:
                raise
            pause = exc.retry_after or _RETRY_PAUSE_S
            log.warning("sink unavailable, holding the batch", error=str(exc), pause_s=pause)
            await asyncio.sleep(pause)


_OFFSET_STALL_S = 30.0
"""How long a partition's offset may stand still, with work waiting, before the worker says so."""


@dataclass
class OffsetWatch:
    """Finds partitions whose watched offset has stood still for ``limit_s``.

    The readings agent keeps two: one over each partition's lowest acked offset that
    Faust has not committed, one over the last offset Faust read of each partition
    with records past it. Faust commits a partition's acked offsets only from its
    committed offset on, without a hole, so an offset it never sees acked (a known
    trouble after a takeover) holds every later one back, silently; and a partition
    that is never fetched again after a rebalance holds its records back the same
    way. Each partition is reported once per offset it stands at, unless it is
    forgotten (:meth:`forget`): then again after another ``limit_s``.

    >>> watch = OffsetWatch(limit_s=30)
    >>> watch.observe(0.0, {"t/2": 140}), watch.observe(31.0, {"t/2": 140})
    ([], ['t/2'])
    >>> watch.observe(62.0, {"t/2": 140}), watch.observe(63.0, {})
    ([], [])
    """

    limit_s: float = _OFFSET_STALL_S
    _since: dict[str, tuple[int, float, bool]] = field(default_factory=dict, init=False, repr=False)

    def observe(self, now: float, offsets: dict[str, int]) -> list[str]:
        """Each watched partition's offset at ``now``; the ones that stood still too long."""
        stalled: list[str] = []
        since: dict[str, tuple[int, float, bool]] = {}
        for partition, offset in offsets.items():
            seen, at, told = self._since.get(partition, (offset, now, False))
            if seen != offset:
                seen, at, told = offset, now, False
            if not told and now - at >= self.limit_s:
                stalled.append(partition)
                told = True
            since[partition] = (seen, at, told)
        self._since = since
        return stalled

    def forget(self, partition: str) -> None:
        """Start a partition's wait again: reported once more if it stands still."""
        self._since.pop(partition, None)


def _waiting_offsets(consumer: Any) -> dict[str, dict[str, Any]]:
    """Faust's bookkeeping of each partition with acked offsets it has not committed.

    Reads Faust's private consumer state. ``skipped`` lists, as ``(first, last)``
    ranges, the offsets from ``start`` (the committed one, or before the first commit
    the first read) up to the lowest acked that no agent holds (:func:`_skipped_offsets`).
    ``tp`` is Faust's partition, to seek it back to ``start``.
    """
    found: dict[str, dict[str, Any]] = {}
    held = _held_offsets(consumer)
    for tp, acked in list(getattr(consumer, "_acked", {}).items()):
        if acked:
            gaps = getattr(consumer, "_gap", {}).get(tp) or ()
            start = start_offset(consumer, tp)
            lowest = min(acked)
            found[f"{tp.topic}/{tp.partition}"] = {
                "tp": tp,
                "lowest": lowest,
                "highest": max(acked),
                "acked": len(acked),
                "committed": getattr(consumer, "_committed_offset", {}).get(tp),
                "start": start,
                "read": getattr(consumer, "_read_offset", {}).get(tp),
                "gaps": [(g.begin, g.end) for g in sorted(gaps)][:5],
                "skipped": []
                if start is None
                else _skipped_offsets(held.get(tp, set()), gaps, start, lowest),
            }
    return found


def _held_offsets(consumer: Any) -> dict[Any, set[int]]:
    """Per partition, the offsets of the messages Faust gave to agents and has not seen acked."""
    held: dict[Any, set[int]] = {}
    for message in list(getattr(consumer, "_unacked_messages", ())):
        if not message.acked:
            held.setdefault(message.tp, set()).add(message.offset)
    return held


def _skipped_offsets(
    held: Collection[int], gaps: Any, start: int, lowest: int
) -> list[tuple[int, int]]:
    """The offsets from ``start`` up to ``lowest`` (excluded) that no agent holds.

    ``start`` is the committed offset (before the group's first commit, the first one
    read: :func:`~stream.app.transport.start_offset`).

    Each such offset is neither in flight (in ``held``: given to an agent and not yet
    acked) nor without a record (:func:`~stream.app.transport.recordless`, by Faust's
    ``gaps``): Faust read past its record and no agent ever got it, so it is neither
    processed nor ever acked, and nothing of the partition is committed again. As
    ``(first, last)`` ranges, in order.

    >>> _skipped_offsets({89}, None, 88, 93)
    [(88, 88), (90, 92)]
    """
    ranges: list[tuple[int, int]] = []
    for offset in range(start, lowest):
        if offset in held or recordless(gaps, start, offset):
            continue
        if ranges and ranges[-1][1] == offset - 1:
            ranges[-1] = (ranges[-1][0], offset)
        else:
            ranges.append((offset, offset))
    return ranges


def _unread_offsets(consumer: Any, topics: Collection[str]) -> dict[str, dict[str, Any]]:
    """Each assigned partition of ``topics`` with records past the last offset Faust read.

    ``read`` is Faust's read offset (-1: nothing yet), ``highwater`` the end the last
    fetch saw, ``paused`` whether Faust holds the partition, ``committed`` Faust's
    committed offset and ``held`` how many of its messages agents hold unacked (an
    agent held up, or records not delivered). A partition committed up to its end
    waits for nothing, whatever the read offset (after a takeover Faust may keep the
    one its last fetch left). For a log line only.
    """
    found: dict[str, dict[str, Any]] = {}
    read_offsets = getattr(consumer, "_read_offset", {})
    committed = getattr(consumer, "_committed_offset", {})
    paused: Collection[Any] = getattr(consumer, "_paused_partitions", ())
    held = _held_offsets(consumer)
    for tp in consumer.assignment():
        if tp.topic not in topics:
            continue
        try:
            highwater = consumer.highwater(tp)  # None until a fetch saw the partition's end
        except AssertionError:  # revoked since: aiokafka asserts the assignment
            highwater = None
        read = read_offsets.get(tp)
        read = -1 if read is None else read
        done = committed.get(tp)  # records before it need no reading (another worker's)
        if highwater is not None and highwater - 1 > max(read, -1 if done is None else done - 1):
            found[f"{tp.topic}/{tp.partition}"] = {
                "read": read,
                "highwater": highwater,
                "paused": tp in paused,
                "committed": done,
                "held": len(held.get(tp, ())),
            }
    return found


async def watch_offsets(
    app: faust.App,
    streamed: Collection[str],
    log: structlog.BoundLogger,
    limit_s: float = _OFFSET_STALL_S,
) -> None:
    """Say when a partition's commits or reads stand still; read skipped records again.

    Every ``limit_s / 6`` seconds, Faust's consumer is looked at (see
    :class:`OffsetWatch`). A partition whose lowest acked offset has waited
    ``limit_s`` is logged; if offsets below it were skipped (:func:`_skipped_offsets`:
    read, but no agent ever got them), the partition is sought back to its committed
    offset (before its first commit, the first offset read), so that they are read
    again. Everything after them is read again too, which the stream takes as resends.
    A partition of the ``streamed`` topics whose records wait unread for ``limit_s``
    is logged.
    """
    commits, reads = OffsetWatch(limit_s), OffsetWatch(limit_s)
    while True:
        await asyncio.sleep(limit_s / 6)
        try:
            waiting = _waiting_offsets(app.consumer)
            unread = _unread_offsets(app.consumer, streamed)
        except Exception:  # a Faust that keeps its books otherwise: stop watching
            log.warning("cannot read Faust's offsets; commits and reads unwatched", exc_info=True)
            return
        now = time.monotonic()
        for name in commits.observe(now, {name: w["lowest"] for name, w in waiting.items()}):
            found = waiting[name]
            tp = found.pop("tp")
            if not found["skipped"]:
                log.warning("acked offsets not committed", partition=name, **found)
                continue
            log.warning("offsets skipped, reading them again", partition=name, **found)
            commits.forget(name)  # look again, in case records read before the seek skip them
            try:
                if tp in app.consumer.assignment():
                    await app.consumer.seek_wait({tp: found["start"]})
            except Exception:  # revoked meanwhile: its next owner reads it from there
                log.warning("cannot seek a partition", partition=name, exc_info=True)
        for name in reads.observe(now, {name: u["read"] for name, u in unread.items()}):
            log.warning("records waiting, partition not read", partition=name, **unread[name])


def _dead_letter(reason: str, source: str, payload: bytes) -> bytes:
    return json.dumps(
        {"reason": reason, "source": source, "raw": base64.b64encode(payload).decode("ascii")}
    ).encode()


def _rejected(r: Rejected) -> bytes:
    return _dead_letter(r.reason, f"gateway {r.gateway_id}", r.reading.model_dump_json().encode())


def _batches(
    stream: faust.StreamT[bytes], size: int, within: float
) -> AsyncIterator[Sequence[faust.EventT[Any]]]:
    """Up to ``size`` events at a time, waiting at most ``within`` seconds to fill one."""
    events: AsyncIterator[Sequence[faust.EventT[Any]]] = cast(
        "faust.Stream[bytes]", stream
    ).take_events(size, within=within)
    return events


@dataclass(frozen=True, slots=True)
class Agents:
    """The stream's agents."""

    route: faust.types.AgentT[Any]
    readings: faust.types.AgentT[Any]
    status: faust.types.AgentT[Any]
    notify: faust.types.AgentT[Any] | None


def define_agents(
    app: faust.App,
    settings: StreamSettings,
    topics: Topics,
    tables: Tables,
    pipeline: Pipeline,
    sink: Sink[list[str]],
    routing: RoutingConfig | None = None,
) -> Agents:
    """Register the agents on the app (``notify`` only with a routing config)."""
    codec = Codec()
    log: structlog.BoundLogger = structlog.get_logger("urbansense.stream")

    async def decoded(
        events: Sequence[faust.EventT[Any]], decode: str
    ) -> AsyncIterator[tuple[faust.EventT[Any], Batch]]:
        for event in events:
            try:
                yield event, codec.decode_batch(event.value)
            except DecodeError as exc:
                await topics.deadletter.send(
                    key=event.key, value=_dead_letter(str(exc), decode, event.value)
                )

    partition_of: dict[str, int] = {}
    """District -> the partition of ``by_district`` its readings come on."""

    def routed(event: faust.EventT[Any]) -> list[tuple[bytes, bytes]]:
        """(district key, envelope bytes) to forward; a one-district gateway's bytes unchanged."""
        district = pipeline.route_key(event.key.decode()) if event.key else None
        if district is not None:
            return [(district.encode(), event.value)]
        try:  # a gateway whose sensors lie in several districts: split its envelope
            envelope = codec.decode_batch(event.value)
        except DecodeError:  # the readings agent dead-letters it
            return [((event.key or b""), event.value)]
        return [(d.encode(), codec.encode(part)) for d, part in pipeline.route(envelope).items()]

    @app.agent(topics.readings)
    async def route(stream: faust.StreamT[bytes]) -> None:
        # Forwarding is cheap: short batches, so that routing adds little latency.
        async for events in _batches(stream, settings.batch, 0.05):
            sent = [
                await topics.by_district.send(key=key, value=value)
                for event in events
                for key, value in routed(event)
            ]
            await asyncio.gather(*sent)  # Kafka has them: these offsets may be committed

    lock = asyncio.Lock()  # a step, or storing the state: one at a time
    touched: set[str] = set()  # state keys changed since the state was last stored
    held: list[faust.EventT[Any]] = []  # the events those changes came from, not yet acked

    async def store_state() -> None:
        """Store every touched key in its district's partition; then ack their events."""
        records: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, state in pipeline.snapshots(touched).items():
            partition = partition_of.get(pipeline.district_of(key))
            if partition is None:  # never: every key is routed with its readings
                log.error("no partition for a state key; not stored", key=key)
                continue
            records.setdefault(partition, []).append((key.encode(), state))
        seals = await tables.state.store(records)
        log.info(
            "state stored",
            keys={p: len(r) for p, r in records.items()},
            seal_offsets=seals,
            events=len(held),
        )
        touched.clear()
        for event in held:
            event.ack()
        held.clear()

    @app.agent(topics.by_district)
    async def readings(stream: faust.StreamT[bytes]) -> None:
        await sink.connect()
        keeper = asyncio.create_task(fatal(keep_state()))
        streamed = {
            t.get_topic_name() for t in (topics.readings, topics.by_district, topics.status)
        }
        watcher = asyncio.create_task(watch_offsets(app, streamed, log))
        try:
            async for events in _batches(stream, settings.batch, settings.batch_seconds):
                async with lock:
                    await fatal(step(events))
        finally:
            keeper.cancel()
            watcher.cancel()

    async def fatal(work: Coroutine[Any, Any, None]) -> None:
        """Run a step or the keeper; if it fails, end the worker at once, as if killed.

        The pipeline's memory is then ahead of what was written and stored, so nothing
        more may be stored or acked: a new worker starts again from the stored state
        and the committed offsets (the same as after a SIGKILL, which loses nothing).
        A graceful stop would wait for the held events forever.
        """
        try:
            await work
        except Exception:
            log.critical("step failed; the worker stops without storing", exc_info=True)
            logging.shutdown()
            os._exit(_EXIT_FAILED)

    async def keep_state() -> None:
        """Store the touched state every ``state_seconds``; at once when the flow stops.

        A rebalance or a shutdown stops the flow, then waits until every event taken
        is acked.
        """
        stored_at = time.monotonic()
        while True:
            await asyncio.sleep(min(settings.state_seconds, _STATE_CHECK_S))
            async with lock:
                due = time.monotonic() - stored_at >= settings.state_seconds
                if held and (due or not app.flow_control.is_active()):
                    await store_state()
                    stored_at = time.monotonic()

    async def step(events: Sequence[faust.EventT[Any]]) -> None:
        for event in events:
            event.message.incref()  # acked by store_state, not at the end of the step
            if event.key:
                partition_of[event.key.decode()] = event.message.partition
        held.extend(events)
        envelopes = [batch async for _, batch in decoded(events, settings.readings_topic)]
        refused = len(events) - len(envelopes)
        out = pipeline.process(envelopes, now=time.time())
        # out.lines: raw readings, anomaly scores, closed windows and indices
        for rejected in out.rejected:
            await topics.deadletter.send(
                key=rejected.gateway_id.encode(), value=_rejected(rejected)
            )
        await write_until_done(sink, out.lines, log)
        sent = [
            await topics.alerts.send(key=a.fingerprint.encode(), value=codec.encode(a))
            for a in out.alerts
        ]
        await asyncio.gather(*sent)  # the alerts are in Kafka before the state moves on
        touched.update(out.touched)
        log.info(
            "batch written",
            envelopes=len(envelopes),
            refused_envelopes=refused,
            lines=len(out.lines),
            rejected=len(out.rejected),
            duplicates=pipeline.stats.duplicates,
            late=pipeline.stats.late,
            behind=pipeline.stats.behind,
            alerts=len(out.alerts),
        )

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def forget(app: faust.App, assigned: set[faust.types.TP], **kwargs: object) -> None:
        # Faust revokes every partition at a rebalance and hands most back: only the
        # districts whose partition went to another worker are forgotten. (Their
        # state was stored before: the revocation waits until every event is acked.)
        kept = {tp.partition for tp in assigned if tp.topic == settings.district_topic}
        lost = sorted(d for d, p in partition_of.items() if p not in kept)
        for district in lost:
            del partition_of[district]
        pipeline.drop_districts(lost)
        if lost:
            log.info("districts handed over", districts=lost)

    @app.agent(topics.status)
    async def status(stream: faust.StreamT[bytes]) -> None:
        await sink.connect()
        async for events in _batches(stream, settings.batch, settings.batch_seconds):
            statuses = []
            for event in events:
                try:
                    statuses.append(codec.decode_status(event.value))
                except DecodeError as exc:
                    await topics.deadletter.send(
                        key=event.key,
                        value=_dead_letter(str(exc), settings.status_topic, event.value),
                    )
            await write_until_done(sink, pipeline.status_lines(statuses), log)

    notify = None if routing is None else _define_notify(app, topics, tables, routing, log)
    return Agents(route=route, readings=readings, status=status, notify=notify)


_DISPATCHER = b"dispatcher"
_TICK_S = 1.0


def _define_notify(
    app: faust.App,
    topics: Topics,
    tables: Tables,
    routing: RoutingConfig,
    log: structlog.BoundLogger,
) -> faust.types.AgentT[Any]:
    """The ``notify`` agent: alert transitions into groups, groups to their receivers.

    The alerts topic has one partition, so one worker groups every alert. Each step
    adds the new transitions to the :class:`~rules.routing.Dispatcher`, delivers what
    is due (each notification settles: delivered or dead-lettered) and only then
    stores the dispatcher's state, so offsets never pass an alert whose notification
    is unsettled. A timer delivers what falls due between alerts (group waits,
    repeats), on the wall clock. A new owner restores the state: groups pending when
    the last owner stopped are sent, nothing sent is sent again (and a notification
    re-sent after a crash carries the same id, for receivers to drop).
    """
    lock = asyncio.Lock()
    owns = False  # whether this worker holds the alerts partition
    held: Dispatcher | None = None  # read from the table on first use

    async def dead_letter(notification: Notification, result: DeliveryResult) -> None:
        log.error(
            "notification dead-lettered",
            receiver=result.receiver,
            notification=result.notification_id,
            reason=result.reason,
        )
        await topics.deadletter.send(
            key=notification.receiver.encode(),
            value=_dead_letter(
                result.reason,
                f"receiver {result.receiver}",
                notification.model_dump_json().encode(),
            ),
        )

    deliverer = Deliverer(routing, on_dead_letter=dead_letter)

    def dispatcher() -> Dispatcher:
        nonlocal held
        if held is None:
            stored = tables.notify.get(_DISPATCHER)
            held = Dispatcher(routing) if stored is None else Dispatcher.restore(routing, stored)
        return held

    async def flush(current: Dispatcher) -> None:
        due = current.due(datetime.now(UTC))
        # Side by side: a receiver that is down holds the step, not the others' messages.
        await asyncio.gather(*(deliverer.deliver(notification) for notification in due))
        tables.notify.put(_DISPATCHER, current.snapshot(), partition=0)
        if due:
            log.info("notified", notifications=len(due), **asdict(deliverer.stats))

    @app.agent(topics.alerts)
    async def notify(stream: faust.StreamT[bytes]) -> None:
        codec = Codec()
        async for events in _batches(stream, 100, 0.2):
            async with lock:
                current = dispatcher()
                now = datetime.now(UTC)
                for event in events:
                    current.add(codec.decode_alert(event.value), now)
                await flush(current)

    @app.timer(_TICK_S)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        if owns:
            async with lock:
                await flush(dispatcher())

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def assigned(app: faust.App, assigned: set[faust.types.TP], **kwargs: object) -> None:
        nonlocal owns, held
        now_owns = any(tp.topic == topics.alerts.get_topic_name() for tp in assigned)
        if not now_owns or not owns:
            held = None  # read again from the table when (again) the owner
        owns = now_owns

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close(app: faust.App, **kwargs: object) -> None:
        await deliverer.close()

    return notify

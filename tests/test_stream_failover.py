"""Failover: two stream workers share the partitions; one is SIGKILLed, the other takes over.

Two real ``python -m stream.app worker --without-web`` processes with the same app id
(one consumer group) and their own data directories read a four-partition readings
topic on a real Tansu and write to a real VictoriaMetrics. Each worker's ``route``
agent re-keys the envelopes of its readings partitions by district onto the
``by-district`` topic, whose partitions (and the state changelog's) are shared out too.
A simulated city's two hours go through them as gateway envelopes (one per gateway per
minute):

1. Once both workers hold partitions, the worker that owns the old town's
   ``by-district`` partition is the one to be killed (the victim); the other is the
   survivor. The victim's gateways are those of the districts on the victim's
   partitions (the lakeside too, if the assignor gave it both).
2. Minutes 0-40 of every gateway, paced; the test waits until every offset of both
   topics is committed (so the victim's state is in the changelog).
3. Minutes 40-48 of the survivor's gateways only: the victim's gateways are offline.
4. The victim is SIGKILLed. Production goes on while nobody owns its partitions:
   every gateway re-sends its envelopes of minutes 30-40 (a gateway's store-and-forward
   after a reconnect), then the victim's gateways catch up with minutes 40-48.
5. Once the survivor has taken over all four partitions, written the backlog and
   committed every offset of both topics (nothing newer comes to move the commits
   on), minutes 48-120 of every gateway, paced.

Then, with every offset committed:

* nothing is lost: the distinct (sensor, timestamp) of the raw points (``<kind>_seq``)
  are exactly the readings sent;
* nothing is rewritten: VictoriaMetrics keeps every sample it is sent (unlike InfluxDB,
  which overwrites a point), so a resent reading the survivor failed to recognise
  would show as a second sample; there must be none -- the resends reached the
  survivor's new partitions before any newer reading of their sensors, so only the
  victim's state from the changelog could have told the survivor they were old;
* the survivor's log shows it took over the four partitions, wrote batches after the
  kill, and counted at least the resent readings as duplicates;
* state carried over: every point of every district (raw readings, anomaly scores and
  so the detectors' state, scenic-area occupancy, windows, indices) is exactly what
  one pure :class:`~stream.pipeline.Pipeline` makes of the same envelopes in the same
  order.

The production is paced (0.15 s per minute of event time) and the survivor's gateways
are held while it takes over, so that no worker sees one partition run more than the
allowed lateness (10 minutes) ahead of another: a late reading is written raw but does
not update state, and the comparison with the reference would then be meaningless.
Every wait is bounded; a failure shows both workers' log tails.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import pytest
from aiokafka import (  # type: ignore[import-untyped,unused-ignore]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)
from aiokafka.partitioner import (  # type: ignore[import-untyped,unused-ignore]
    DefaultPartitioner,
)

from simulators.engine import City
from simulators.scenario import parse_scenario
from stream.pipeline import Pipeline
from telemetry import Batch, Reading
from telemetry.registry import load_example_registry
from tests.servers._procs import ManagedProcess, log_tail
from tests.servers.stream_worker import create_topics, stream_worker
from tests.servers.tansu import TansuServer
from tests.servers.victoria_metrics import VictoriaMetricsServer
from tests.test_sink_influx import parse_line

pytestmark = pytest.mark.servers

TIMEOUT_S = 60.0
"""The bound on each wait."""
PARTITIONS = 4
MINUTES = 120
FIRST_END = 40
"""Minutes 0-40 of every gateway go before the kill."""
OFFLINE_END = 48
"""Minutes 40-48: the survivor's gateways only; the victim's are offline."""
RESEND_FROM = 30
"""After the kill, every gateway re-sends its envelopes of minutes 30-40."""
PACE_S = 0.15
"""Wall seconds per minute of event time while producing."""
# Three days ago at 06:00 UTC: recent enough for VictoriaMetrics' retention and the
# codec's clock checks, and a span no other test writes at (test_stream_app writes two
# days ago, from midnight).
START = (datetime.now(UTC) - timedelta(days=3)).replace(hour=6, minute=0, second=0, microsecond=0)
SCENARIO = f"""
version: 1
name: two hours for two workers
registry: example
seed: 23
start: {START.isoformat()}
duration: {MINUTES}m
"""
OLD_TOWN = "old-town"
KINDS = ("pollution", "ambient", "energy", "traffic", "crowd")
ASSIGNED = "Setting newly assigned partitions"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ---------------------------------------------------------------- the stream


@dataclass(frozen=True)
class Envelope:
    """One gateway's readings of one minute of event time."""

    minute: int
    batch: Batch

    @property
    def gateway(self) -> str:
        return self.batch.gateway_id


def city_envelopes() -> list[Envelope]:
    """The scenario's readings as the gateways publish them, by minute then gateway."""
    gateway = {s.id: s.gateway for s in load_example_registry().sensors}
    grouped: dict[tuple[int, str], list[Reading]] = defaultdict(list)
    for r in City(parse_scenario(SCENARIO)).run():
        grouped[int((r.ts - START).total_seconds() // 60), gateway[r.sensor_id]].append(r)
    return [
        Envelope(minute, Batch(gateway_id=gw, readings=tuple(rs)))
        for (minute, gw), rs in sorted(grouped.items())
    ]


def keys(envelopes: Iterable[Envelope]) -> set[tuple[str, int]]:
    """(sensor, timestamp in ms) of every reading of the envelopes."""
    return {
        (r.sensor_id, int(r.ts.timestamp() * 1000)) for e in envelopes for r in e.batch.readings
    }


def select(
    envelopes: Sequence[Envelope], gateways: Iterable[str], first: int, end: int
) -> list[Envelope]:
    """The envelopes of ``gateways`` of minutes ``first`` to ``end`` (excluded)."""
    wanted = set(gateways)
    return [e for e in envelopes if e.gateway in wanted and first <= e.minute < end]


# ---------------------------------------------------------------- Kafka


@dataclass
class Producer:
    """Produces envelopes keyed by gateway, and knows each partition's end."""

    tansu: TansuServer
    topic: str
    ends: dict[int, int] = field(default_factory=dict)

    def send(self, envelopes: Sequence[Envelope], pace_s: float = 0.0) -> None:
        """Send in order, sleeping ``pace_s`` whenever the minute changes."""
        asyncio.run(asyncio.wait_for(self._send(envelopes, pace_s), TIMEOUT_S))

    async def _send(self, envelopes: Sequence[Envelope], pace_s: float) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.tansu.bootstrap_servers, acks="all")
        await producer.start()
        try:
            minute = None
            for e in envelopes:
                if pace_s and minute is not None and e.minute != minute:
                    await asyncio.sleep(pace_s)
                minute = e.minute
                meta = await producer.send_and_wait(
                    self.topic,
                    key=e.gateway.encode(),
                    value=e.batch.model_dump_json().encode(),
                )
                self.ends[meta.partition] = max(self.ends.get(meta.partition, 0), meta.offset + 1)
        finally:
            await producer.stop()


def offsets(tansu: TansuServer, group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """The group's committed offset (-1: none) and the end of each partition of ``topic``.

    The ends are read from the records (:func:`true_ends`).
    """

    async def fetch() -> tuple[dict[int, int], dict[int, int]]:
        # A consumer of the group that only reads offsets: assigned, never joining.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=tansu.bootstrap_servers, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            done = {tp.partition: await consumer.committed(tp) for tp in tps}
            return (
                {p: -1 if offset is None else offset for p, offset in done.items()},
                await true_ends(consumer, tps),
            )
        finally:
            await consumer.stop()

    return asyncio.run(asyncio.wait_for(fetch(), 30))


async def true_ends(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[int, int]:
    """Each partition's end: the offset after its last record, read from the record itself.

    Tansu answers a request for the end offset with the first offset of the partition's
    last record batch, plus one; a worker's producer batches its records, so the end it
    gives may fall short by all but one record of the last batch.
    """
    ends: dict[int, int] = {}
    for tp, reported in (await consumer.end_offsets(tps)).items():
        ends[tp.partition] = reported
        if reported > 0:
            consumer.seek(tp, reported - 1)
            records = (await consumer.getmany(tp, timeout_ms=5_000)).get(tp, [])
            ends[tp.partition] = max([reported, *(r.offset + 1 for r in records)])
    return ends


def district_partition(district: str) -> int:
    """The ``by-district`` partition of a district, as the worker's producer picks it."""
    partitions = list(range(PARTITIONS))
    return int(DefaultPartitioner()(district.encode(), partitions, partitions))


# ---------------------------------------------------------------- workers


@dataclass
class Worker:
    """One stream worker process and what its log says."""

    name: str
    proc: ManagedProcess

    @property
    def log_path(self) -> Path:
        return self.proc.log_path

    def log(self, since: int = 0) -> str:
        """The log from byte ``since`` on, without terminal colours."""
        with self.log_path.open("rb") as f:
            f.seek(since)
            return _ANSI.sub("", f.read().decode("utf-8", errors="replace"))

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def assignments(self, topic: str, since: int = 0) -> list[set[int]]:
        """The partitions of ``topic`` of every assignment Faust logged, in order."""
        found = []
        for chunk in self.log(since).split(ASSIGNED)[1:]:
            table = chunk.split("for group", 1)[0]
            match = re.search(rf"\|\s*{re.escape(topic)}\s*\|\s*\{{([^}}]*)\}}", table)
            found.append(set() if match is None else partition_set(match.group(1)))
        return found

    def batches(self, since: int = 0) -> list[dict[str, int]]:
        """The counts of every ``batch written`` line."""
        return [
            {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", line)}
            for line in self.log(since).splitlines()
            if "batch written" in line
        ]


def partition_set(text: str) -> set[int]:
    """``0-1, 3`` (Faust's way of writing a partition set) as a set.

    >>> sorted(partition_set("0-1, 3"))
    [0, 1, 3]
    """
    out: set[int] = set()
    for part in text.split(","):
        if part.strip():
            first, _, last = part.strip().partition("-")
            out.update(range(int(first), int(last or first) + 1))
    return out


def worker(
    name: str, tansu: TansuServer, vm: VictoriaMetricsServer, root: Path, app_id: str
) -> Worker:
    proc = stream_worker(tansu, vm, root, app_id=app_id, name=name, partitions=PARTITIONS)
    return Worker(name, proc)


# ---------------------------------------------------------------- VictoriaMetrics

Series = tuple[str, frozenset[tuple[str, str]]]
"""A VictoriaMetrics series: its name and its labels."""
Samples = dict[tuple[Series, int], list[float]]
"""The values stored for each (series, timestamp in ms)."""


def vm_samples(vm: VictoriaMetricsServer, selector: str) -> Samples:
    """Every sample of the selected series in the scenario's span (and the hour after)."""
    vm.force_flush()
    since = int(START.timestamp() * 1000)
    until = int((START + timedelta(minutes=MINUTES + 60)).timestamp() * 1000)
    out: Samples = defaultdict(list)
    for s in vm.export(selector):
        labels = dict(s["metric"])
        name = labels.pop("__name__")
        labels.pop("db", None)  # the bucket, which VictoriaMetrics adds as a label
        series = (name, frozenset(labels.items()))
        for ts, value in zip(s["timestamps"], s["values"], strict=True):
            if since <= ts < until:
                out[series, ts].append(float(value))
    return out


def raw_samples(vm: VictoriaMetricsServer) -> Samples:
    """The ``<kind>_seq`` samples: one per reading written."""
    return vm_samples(vm, '{__name__=~"(' + "|".join(KINDS) + ')_seq"}')


def sensor_ts(samples: Samples) -> Counter[tuple[str, int]]:
    """How many samples each (sensor, timestamp) has."""
    return Counter(
        {(dict(series[1])["sensor"], ts): len(values) for (series, ts), values in samples.items()}
    )


def reference_samples(lines: Iterable[str], district: str) -> Samples:
    """The lines of one district as VictoriaMetrics stores them: a series per field.

    VictoriaMetrics keeps a string field as a sample of 0 (the text is dropped), so a
    string field is compared by its presence only.
    """
    out: Samples = defaultdict(list)
    for line in lines:
        measurement, tags, fields, ts = parse_line(line)
        if tags.get("district") != district:
            continue
        labels = frozenset(tags.items())
        for name, value in fields.items():
            number = 0.0 if isinstance(value, str) else float(value)
            out[(f"{measurement}_{name}", labels), ts].append(number)
    return out


def differences(got: Samples, expected: Samples) -> list[str]:
    """Where two sample sets differ (values compared to VictoriaMetrics' precision)."""

    def same(a: list[float], b: list[float]) -> bool:
        return len(a) == len(b) and all(
            math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
            for x, y in zip(sorted(a), sorted(b), strict=True)
        )

    out = []
    for key in sorted(set(got) | set(expected), key=lambda k: (k[1], k[0][0], sorted(k[0][1]))):
        if not same(got.get(key, []), expected.get(key, [])):
            (name, labels), ts = key
            when = datetime.fromtimestamp(ts / 1000, UTC).strftime("%H:%M:%S")
            out.append(
                f"{name}{dict(sorted(labels))} at {when}: stored {got.get(key)},"
                f" expected {expected.get(key)}"
            )
    return out


# ---------------------------------------------------------------- the test


def wait_for(
    check: Callable[[], bool],
    what: str,
    fail: Callable[[str], NoReturn],
    detail: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            fail(f"{what} within {TIMEOUT_S:g} s{detail()}")
        time.sleep(0.25)


def lacking(vm: VictoriaMetricsServer, expected: set[tuple[str, int]]) -> str:
    """What of ``expected`` VictoriaMetrics lacks, for a failure message."""
    absent = sorted(expected - set(sensor_ts(raw_samples(vm))))
    when = [(s, datetime.fromtimestamp(ts / 1000, UTC).isoformat()) for s, ts in absent[:5]]
    return f": {len(absent)} of {len(expected)} readings missing, e.g. {when}"


def wait_landed(
    vm: VictoriaMetricsServer,
    expected: set[tuple[str, int]],
    what: str,
    fail: Callable[[str], NoReturn],
    detail: Callable[[], str] = lambda: "",
) -> None:
    """Wait until every one of ``expected`` is among VictoriaMetrics' raw readings."""
    wait_for(
        lambda: set(sensor_ts(raw_samples(vm))) >= expected,
        what,
        fail,
        lambda: lacking(vm, expected) + detail(),
    )


def test_a_killed_workers_partitions_and_state_move_to_the_survivor_and_nothing_is_lost(
    tansu: TansuServer, victoria_metrics: VictoriaMetricsServer, tmp_path: Path
) -> None:
    vm = victoria_metrics
    envelopes = city_envelopes()
    registry = load_example_registry()
    district_of_site = {s.id: s.district for s in registry.sites}
    districts = {g.id: district_of_site[g.site] for g in registry.gateways}
    app_id = f"fo-{uuid.uuid4().hex[:8]}"
    topic = f"{app_id}.readings"
    by_district = f"{app_id}.readings.by-district"
    asyncio.run(
        create_topics(tansu, [topic, f"{app_id}.status", f"{app_id}.deadletter"], PARTITIONS)
    )
    first_worker = worker("first", tansu, vm, tmp_path, app_id)
    second_worker = worker("second", tansu, vm, tmp_path, app_id)
    workers = (first_worker, second_worker)

    def fail(what: str) -> NoReturn:
        tails = "\n".join(
            f"--- {w.name} ({w.log_path}):\n{log_tail(w.log_path, 60)}" for w in workers
        )
        pytest.fail(f"{what}\n{tails}", pytrace=False)

    first_worker.proc.start()
    try:
        second_worker.proc.start()

        # -- both in the group: the partitions of both topics are shared
        def shared() -> bool:
            for name in (topic, by_district):
                held = [w.assignments(name) for w in workers]
                if not all(held) or held[0][-1] | held[1][-1] != set(range(PARTITIONS)):
                    return False
                if held[0][-1] & held[1][-1] or not held[0][-1] or not held[1][-1]:
                    return False
            # ... and both have recovered since, so that both route from the start
            return all("Worker ready" in w.log().rsplit(ASSIGNED, 1)[-1] for w in workers)

        wait_for(shared, "the two workers did not share the partitions", fail)
        old_town = district_partition(OLD_TOWN)
        victim, survivor = sorted(
            workers, key=lambda w: old_town not in w.assignments(by_district)[-1]
        )
        victims = sorted(victim.assignments(by_district)[-1])
        victim_gateways = sorted(
            g for g, d in districts.items() if district_partition(d) in victims
        )
        survivor_gateways = sorted(set(districts) - set(victim_gateways))
        producer = Producer(tansu, topic)

        def settled() -> bool:
            done, _ = offsets(tansu, app_id, topic)
            routed, ends = offsets(tansu, app_id, by_district)
            return all(done[p] >= end for p, end in producer.ends.items()) and all(
                routed[p] >= end for p, end in ends.items() if end > 0
            )

        def commits() -> str:
            """Each partition's committed offset and end, for a failure message."""
            done, _ = offsets(tansu, app_id, topic)
            routed, ends = offsets(tansu, app_id, by_district)
            return (
                f"; {topic} committed {done}, produced up to {producer.ends};"
                f" {by_district} committed {routed}, ends {ends}"
            )

        # -- minutes 0-40, every gateway: both workers write, and commit
        first = select(envelopes, districts, 0, FIRST_END)
        producer.send(first, PACE_S)
        wait_landed(vm, keys(first), "minutes 0-40 did not land", fail)
        wait_for(settled, "the workers did not commit minutes 0-40", fail, commits)
        if not any(b.get("envelopes", 0) > 0 for b in victim.batches()):
            fail("the victim wrote no batch of minutes 0-40")

        # -- minutes 40-48, the survivor's gateways only; then SIGKILL the victim
        offline = select(envelopes, survivor_gateways, FIRST_END, OFFLINE_END)
        producer.send(offline, PACE_S)
        mark = survivor.log_size()
        before = survivor.batches()
        assert victim.proc.pid is not None
        os.kill(victim.proc.pid, signal.SIGKILL)

        # -- meanwhile: every gateway re-sends minutes 30-40; the victim's catch up to 48
        resent = select(envelopes, districts, RESEND_FROM, FIRST_END)
        catch_up = select(envelopes, victim_gateways, FIRST_END, OFFLINE_END)
        producer.send(resent + catch_up)
        wait_for(
            lambda: set(range(PARTITIONS)) in survivor.assignments(by_district, mark),
            "the survivor did not take over the four partitions",
            fail,
        )
        # Let it catch up first, so that no batch mixes minutes 40-48 with newer ones;
        # and commit it, with no newer records to move the commits on.
        backlog = keys([*first, *offline, *catch_up])
        wait_landed(vm, backlog, "the survivor did not write the victim's backlog", fail, commits)
        wait_for(settled, "the survivor did not commit the victim's backlog", fail, commits)

        # -- minutes 48-120, every gateway
        rest = select(envelopes, districts, OFFLINE_END, envelopes[-1].minute + 1)
        producer.send(rest, PACE_S)
        expected = keys(envelopes)
        wait_landed(vm, expected, "not every reading landed", fail)
        wait_for(settled, "the survivor did not commit every offset", fail, commits)
        time.sleep(1.0)  # a point written twice would have landed by now

        problems: list[str] = []
        # -- nothing lost, nothing rewritten
        stored = sensor_ts(raw_samples(vm))
        lost, extra = expected - set(stored), set(stored) - expected
        if lost or extra:
            problems.append(
                f"{len(lost)} readings missing ({sorted(lost)[:3]}...),"
                f" {len(extra)} unexpected ({sorted(extra)[:3]}...)"
            )
        doubled = {k: n for k, n in stored.items() if n > 1}
        resent_keys = keys(resent)
        if doubled:
            by_sensor = Counter(sensor for sensor, _ in doubled)
            problems.append(
                f"VictoriaMetrics holds {sum(doubled.values()) - len(doubled)} duplicate raw"
                f" samples of {len(doubled)} readings ({len(set(doubled) & resent_keys)} of"
                f" them resent after the kill); by sensor: {dict(sorted(by_sensor.items()))}"
            )

        # -- the survivor took over and recognised the resends
        after = survivor.batches(mark)
        duplicates = (after[-1]["duplicates"] if after else 0) - (
            before[-1]["duplicates"] if before else 0
        )
        if not any(b.get("envelopes", 0) > 0 for b in after):
            problems.append("the survivor wrote no batch after the kill")
        elif duplicates < len(resent_keys):
            problems.append(
                f"the survivor counted {duplicates} duplicates after the kill,"
                f" fewer than the {len(resent_keys)} readings resent"
            )
        problems += [f"the {w.name} logged a traceback" for w in workers if "Traceback" in w.log()]

        # -- state carried over: every district as one pipeline sees it
        reference = Pipeline(registry)
        lines: list[str] = []
        for part in (first, offline, resent, catch_up, rest):
            for e in part:
                lines += reference.process([e.batch]).lines
        compared = 0
        for district in sorted(set(districts.values())):
            expected_district = reference_samples(lines, district)
            compared += len(expected_district)
            wrong = differences(vm_samples(vm, f'{{district="{district}"}}'), expected_district)
            if wrong:
                names = Counter(line.split("{", 1)[0] for line in wrong)
                problems.append(
                    f"{len(wrong)} of {len(expected_district)} {district} samples differ from"
                    f" one pipeline's; by series: {dict(names.most_common())}:\n  "
                    + "\n  ".join(wrong[:20])
                )
        if problems:
            late = {
                w.name: max((b.get("late", 0) for b in w.batches()), default=0) for w in workers
            }
            fail(
                "\n".join(
                    [
                        *problems,
                        f"late readings (they update no state): {late}",
                        f"the victim ({victim.name}) held by-district partitions {victims};"
                        f" the old town is on {old_town}",
                    ]
                )
            )
        print(
            f"{len(expected)} readings landed once each; the survivor took over partitions"
            f" {victims} and counted {duplicates} duplicates ({len(resent_keys)} resent);"
            f" {compared} samples of every district as one pipeline makes them"
        )
    finally:
        for w in workers:
            w.proc.stop()

"""``urbansense-sim``: run a scenario, replay a CSV, or load a broker with a fleet.

``urbansense-sim run SCENARIO``
    Simulates the scenario's city and writes ``readings.jsonl`` (one reading per line,
    the wire format) and ``ground-truth.jsonl`` (every injected incident and fault) into
    ``--out``; with ``--broker`` the readings are published by one virtual gateway per
    registry gateway instead, through the edge agent's queue and MQTT publisher.
``urbansense-sim replay CSV --spec SPEC``
    Turns the rows of a CSV into readings by a column spec (a file, or ``prsa``,
    ``cnemc``, ``nab`` for the shipped ones) and writes them to ``--out`` (``-`` for
    standard output) or publishes them with ``--broker``.
``urbansense-sim fleet --gateways N --sensors-per-gateway M --rate R --broker URL``
    Publishes synthetic readings from N x M sensors at R readings per second in total,
    for load tests; reports the rate the broker acknowledged.

Common options: ``--seed`` (reproducible values; replay has no randomness and ignores
it), ``--speed`` (simulated seconds per wall second; 0, the default for ``run`` and
``replay``, is as fast as possible), ``--until`` (stop at this simulated time: ISO 8601,
or a duration such as ``6h`` after the start). A progress line on standard error shows
the simulated time, the rate and, when publishing, what the broker has acknowledged.

Exit status: 0 done (or stopped with Ctrl-C), 1 a broker that did not take everything
within the drain timeout, 2 bad input (the message names the file, line and field).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO, Any

import structlog

from edge_agents.config import BrokerConfig
from edge_agents.logs import LogFormat, configure_logging
from simulators.engine import City
from simulators.fleet import FleetPlan, run_fleet
from simulators.publish import GatewayCounts, VirtualGateways
from simulators.replay import ReplayError, ReplayStats, load_spec, replay
from simulators.scenario import load_scenario, parse_duration
from telemetry import Reading, to_json
from telemetry.documents import DocumentError
from telemetry.registry import load_example_registry, load_registry

__all__ = ["main"]

_DRAIN_TIMEOUT_S = 120.0


class _Stop:
    """Set by SIGINT or SIGTERM: the run ends at the next step, cleanly."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


class _Progress:
    """One status line a second on standard error (rewritten in place on a terminal)."""

    def __init__(self, stream: IO[str] = sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.next_at = self.started + 1.0

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def show(self, text: str, *, final: bool = False) -> None:
        self.next_at = time.monotonic() + 1.0
        if self.tty and not final:
            self.stream.write(f"\r\x1b[K{text}")
        else:
            self.stream.write(f"{chr(13) if self.tty else ''}{text}\n")
        self.stream.flush()


def _until(text: str | None, start: datetime) -> datetime | None:
    """``--until`` as a time: ISO 8601 with a zone, or a duration after ``start``."""
    if text is None:
        return None
    duration = parse_duration(text)
    if isinstance(duration, timedelta):
        return start + duration
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        msg = f"--until {text!r} is neither a time (2024-10-01T08:00:00+08:00) nor a duration (6h)"
        raise ValueError(msg) from None
    if ts.tzinfo is None:
        msg = f"--until {text!r} has no zone; add one, e.g. +08:00 or Z"
        raise ValueError(msg)
    return ts


def _rate_line(
    elapsed: float, sim: datetime | None, made: int, counts: GatewayCounts | None
) -> str:
    rate = made / elapsed if elapsed > 0 else 0.0
    parts = [f"{elapsed:6.1f}s"]
    if sim is not None:
        parts.append(f"sim {sim.astimezone(UTC):%Y-%m-%d %H:%M}Z")
    parts.append(f"readings {made:,} ({rate:,.0f}/s)")
    if counts is not None:
        parts.append(
            f"acked {counts.acked:,}  queued {counts.depth:,}  gateways up {counts.connected}"
        )
    return "  ".join(parts)


def _pace(readings: Iterable[Reading], speed: float, stop: _Stop) -> Iterator[Reading]:
    """Readings no faster than ``speed`` simulated seconds per wall second (0: no limit)."""
    began: float | None = None
    first: datetime | None = None
    for reading in readings:
        if stop.requested:
            return
        if speed > 0:
            if first is None:
                first, began = reading.ts, time.monotonic()
            due = (reading.ts - first).total_seconds() / speed
            wait = (began or 0.0) + due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        yield reading


def _deliver(
    readings: Iterable[Reading],
    *,
    out: IO[str] | None,
    gateways: VirtualGateways | None,
    progress: _Progress,
    until: datetime | None = None,
) -> int:
    """Write or publish readings, showing progress; return how many."""
    made = 0
    last: datetime | None = None
    pending: list[Reading] = []
    for reading in readings:
        if until is not None and reading.ts > until:
            continue
        made += 1
        last = reading.ts
        if out is not None:
            out.write(to_json(reading).decode())
            out.write("\n")
        if gateways is not None:
            pending.append(reading)
            if len(pending) >= 500:
                gateways.put(pending)
                pending.clear()
        if progress.due():
            counts = gateways.counts() if gateways else None
            progress.show(_rate_line(time.monotonic() - progress.started, last, made, counts))
    if gateways is not None and pending:
        gateways.put(pending)
    return made


def _finish(
    gateways: VirtualGateways | None, made: int, progress: _Progress, sim: datetime | None
) -> int:
    counts = None
    drained = True
    if gateways is not None:
        drained = gateways.wait_drained(_DRAIN_TIMEOUT_S)
        counts = gateways.counts()
    progress.show(_rate_line(time.monotonic() - progress.started, sim, made, counts), final=True)
    if not drained:
        print(
            f"urbansense-sim: the broker did not acknowledge {counts.depth if counts else 0:,}"
            f" readings within {_DRAIN_TIMEOUT_S:.0f} s",
            file=sys.stderr,
        )
        return 1
    return 0


def _broker(args: argparse.Namespace) -> BrokerConfig | None:
    if not args.broker:
        return None
    options: dict[str, Any] = {"url": args.broker, "reconnect_min_s": 0.5, "reconnect_max_s": 5.0}
    if args.username:
        options["username"] = args.username
        options["password"] = args.password
    return BrokerConfig(**options)


def _cmd_run(args: argparse.Namespace, stop: _Stop) -> int:
    scenario = load_scenario(args.scenario)
    if args.seed is not None:
        scenario = scenario.with_seed(args.seed)
    until = _until(args.until, scenario.file.start)
    if until is not None:
        scenario = scenario.until(until)
    city = City(scenario)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    truth = folder / "ground-truth.jsonl"
    truth.write_text("".join(f"{entry.to_json()}\n" for entry in city.truth), encoding="utf-8")
    broker = _broker(args)
    progress = _Progress()
    print(
        f"urbansense-sim: {scenario.file.name}: {len(city.sensor_ids)} sensors,"
        f" {scenario.file.start.isoformat()} + {scenario.file.duration};"
        f" ground truth ({len(city.truth)} entries) in {truth}",
        file=sys.stderr,
    )
    with ExitStack() as stack:
        gateways = None
        out = None
        if broker is not None:
            gateway_sensors = {
                g.id: [s.id for s in scenario.registry.sensors_of_gateway(g.id)]
                for g in scenario.registry.gateways
            }
            gateways = stack.enter_context(VirtualGateways(gateway_sensors, broker))
        else:
            out = stack.enter_context((folder / "readings.jsonl").open("w", encoding="utf-8"))
        made = _deliver(
            _pace(city.run(), args.speed, stop), out=out, gateways=gateways, progress=progress
        )
        status = _finish(gateways, made, progress, city.clock.now)
    where = broker.url if broker else str(folder / "readings.jsonl")
    print(f"urbansense-sim: {made:,} readings to {where}", file=sys.stderr)
    return status


def _cmd_replay(args: argparse.Namespace, stop: _Stop) -> int:
    spec = load_spec(args.spec)
    broker = _broker(args)
    progress = _Progress()
    stats = ReplayStats()
    with ExitStack() as stack:
        source = stack.enter_context(Path(args.csv).open(encoding="utf-8-sig", newline=""))
        readings = list(replay(spec, source, stats))
        start = min((r.ts for r in readings), default=datetime.now(UTC))
        until = _until(args.until, start)
        gateways = None
        out: IO[str] | None = None
        if broker is not None:
            gateways = stack.enter_context(
                VirtualGateways({spec.gateway: sorted(stats.sensors)}, broker)
            )
        elif args.out == "-":
            out = sys.stdout
        else:
            out = stack.enter_context(Path(args.out).open("w", encoding="utf-8"))
        made = _deliver(
            _pace(readings, args.speed, stop),
            out=out,
            gateways=gateways,
            progress=progress,
            until=until,
        )
        status = _finish(gateways, made, progress, None)
    print(
        f"urbansense-sim: {stats.rows:,} rows, {made:,} readings of {len(stats.sensors)} sensors"
        f" ({stats.empty_rows:,} rows had no value)",
        file=sys.stderr,
    )
    return status


def _cmd_fleet(args: argparse.Namespace, stop: _Stop) -> int:
    broker = _broker(args)
    if broker is None:
        print("urbansense-sim: fleet needs --broker URL", file=sys.stderr)
        return 2
    registry = load_registry(args.registry) if args.registry else load_example_registry()
    start = datetime.now(UTC).replace(microsecond=0)
    until = _until(args.until, start)
    duration_s = (until - start).total_seconds() / args.speed if until else None
    plan = FleetPlan(
        gateways=args.gateways,
        sensors_per_gateway=args.sensors_per_gateway,
        rate=args.rate,
        start=start,
        speed=args.speed,
        seed=args.seed or 0,
        duration_s=duration_s,
    )
    progress = _Progress()

    def show(elapsed: float, counts: GatewayCounts, behind: float) -> None:
        rate = counts.acked / elapsed if elapsed > 0 else 0.0
        progress.show(
            f"{elapsed:6.1f}s  queued {counts.queued:,}  acked {counts.acked:,} ({rate:,.0f}/s)"
            f"  lag {counts.depth:,} readings, {behind:.1f} s behind schedule"
            f"  gateways up {counts.connected}/{plan.gateways}"
        )

    report = run_fleet(plan, registry, broker, progress=show, stop=lambda: stop.requested)
    if progress.tty:
        print(file=sys.stderr)  # end the progress line
    print(
        f"urbansense-sim: {report.counts.acked:,} readings acknowledged"
        f" in {report.elapsed_s:.1f} s: {report.acked_rate:,.0f} readings/s"
        f" (target {plan.rate:,.0f})",
        file=sys.stderr,
    )
    return 0 if report.counts.depth == 0 else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="urbansense-sim", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser, *, speed: float) -> None:
        sub.add_argument("--seed", type=int, help="makes the values reproducible")
        sub.add_argument(
            "--speed",
            type=float,
            default=speed,
            help=f"simulated seconds per wall second; 0 is as fast as possible (default {speed:g})",
        )
        sub.add_argument(
            "--until", help="stop at this simulated time (ISO 8601) or after this long (6h)"
        )
        sub.add_argument("--broker", help="publish to this MQTT broker, e.g. mqtt://127.0.0.1:1883")
        sub.add_argument("--username", help="MQTT user name")
        sub.add_argument("--password", help="MQTT password")
        sub.add_argument(
            "--log-level", choices=["debug", "info", "warning", "error"], default="warning"
        )

    run = commands.add_parser("run", help="simulate a scenario; write readings and ground truth")
    run.add_argument("scenario", help="the scenario YAML file")
    run.add_argument(
        "--out", default="sim-out", help="folder for readings.jsonl and ground-truth.jsonl"
    )
    common(run, speed=0)

    rep = commands.add_parser("replay", help="replay a CSV of readings through a column spec")
    rep.add_argument("csv", help="the CSV file")
    rep.add_argument("--spec", required=True, help="a spec YAML file, or prsa, cnemc, nab")
    rep.add_argument("--out", default="-", help="JSON lines of readings; - for standard output")
    common(rep, speed=0)

    fleet = commands.add_parser(
        "fleet", help="publish from N gateways x M sensors at a target rate"
    )
    fleet.add_argument("--gateways", type=int, required=True, help="virtual gateways (N)")
    fleet.add_argument("--sensors-per-gateway", type=int, required=True, help="sensors on each (M)")
    fleet.add_argument(
        "--rate", type=float, required=True, help="target readings per second, in total"
    )
    fleet.add_argument("--registry", help="whose sensor kinds to copy; the example city by default")
    common(fleet, speed=1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    configure_logging(LogFormat.TEXT, level=args.log_level)
    stop = _Stop()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    commands: dict[str, Callable[[argparse.Namespace, _Stop], int]] = {
        "run": _cmd_run,
        "replay": _cmd_replay,
        "fleet": _cmd_fleet,
    }
    try:
        return commands[args.command](args, stop)
    except (DocumentError, ReplayError, ValueError, OSError) as error:
        structlog.get_logger(__name__).debug("failed", exc_info=True)
        print(f"urbansense-sim: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

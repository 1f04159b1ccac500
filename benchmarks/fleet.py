"""Fleet runner throughput: readings per second one process gets acknowledged by Mosquitto.

Starts Mosquitto on 127.0.0.1 (a free port, no persistence; stopped at the end), then runs
the fleet runner in this process -- N virtual gateways x M synthetic sensors, each gateway
with the edge agent's own disk queue (SQLite, synchronous=NORMAL) and MQTT publisher
(batched QoS 1 envelopes of up to 500 readings) -- at a target aggregate rate for a fixed
time, and prints:

* the rate the broker acknowledged while the fleet was producing (readings acknowledged
  by the end of production over the production time), and over the whole run including
  the drain of what was still queued;
* the largest lag seen (readings queued but not yet acknowledged) and how far production
  fell behind its schedule;
No CPU figure: on the machine these figures come from, the kernel's CPU accounting of
a process with a hundred busy threads was not credible (it reported more CPU seconds
than the machine's cores could give in the wall time).

Everything is on 127.0.0.1 and bounded in time.

    .venv/bin/python benchmarks/fleet.py [--rate 25000] [--gateways 100]
        [--sensors-per-gateway 250] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from broker import mosquitto

from edge_agents.config import BrokerConfig
from simulators.fleet import FleetPlan, run_fleet
from simulators.publish import GatewayCounts
from telemetry.registry import load_example_registry


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=25_000)
    parser.add_argument("--gateways", type=int, default=100)
    parser.add_argument("--sensors-per-gateway", type=int, default=250)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    plan = FleetPlan(
        gateways=args.gateways,
        sensors_per_gateway=args.sensors_per_gateway,
        rate=args.rate,
        start=datetime.now(UTC).replace(microsecond=0),
        duration_s=args.seconds,
    )
    samples: list[tuple[float, GatewayCounts, float]] = []

    def record(elapsed: float, counts: GatewayCounts, behind: float) -> None:
        samples.append((elapsed, counts, behind))

    with tempfile.TemporaryDirectory() as folder, mosquitto(Path(folder)) as port:
        report = run_fleet(
            plan,
            load_example_registry(),
            BrokerConfig(url=f"mqtt://127.0.0.1:{port}"),
            progress=record,
        )
    producing = [s for s in samples if s[0] <= args.seconds + 0.5]
    at_end = producing[-1] if producing else samples[-1]
    steady = at_end[1].acked / at_end[0] if at_end[0] else 0.0
    print(f"machine: {os.cpu_count()} CPUs; Mosquitto on 127.0.0.1, no persistence")
    print(
        f"fleet: {plan.gateways} gateways x {plan.sensors_per_gateway} sensors"
        f" = {plan.gateways * plan.sensors_per_gateway:,} sensors, target {plan.rate:,.0f}"
        f" readings/s for {args.seconds:g} s"
    )
    print(
        f"acknowledged while producing: {steady:,.0f} readings/s"
        f" ({at_end[1].acked:,} in {at_end[0]:.1f} s)"
    )
    print(
        f"acknowledged over the whole run: {report.acked_rate:,.0f} readings/s"
        f" ({report.counts.acked:,} in {report.elapsed_s:.1f} s, drain included;"
        f" queued {report.counts.queued:,}, dropped {report.counts.dropped})"
    )
    print(
        f"largest lag: {max(s[1].depth for s in samples):,} readings queued;"
        f" largest delay behind schedule {max(s[2] for s in samples):.2f} s"
    )


if __name__ == "__main__":
    main()

"""Codec throughput: how many readings per second one core decodes and encodes.

Prints readings/s and bytes per reading for batches of typical sizes, built
from real hourly concentrations of the Beijing Dongsi station
(``../shared/data/beijing-prsa``) when that folder is beside the project, else
from fixed values.

    .venv/bin/python benchmarks/codec.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import csv
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from telemetry import Batch, Codec, Kind, Reading

PRSA = (
    Path(__file__).resolve().parents[2]
    / "shared/data/beijing-prsa/PRSA_Data_Dongsi_20130301-20170228.csv"
)


def concentrations(limit: int) -> list[dict[str, float]]:
    """Up to ``limit`` complete hourly rows of Dongsi, in catalogue units (CO in mg/m³)."""
    if not PRSA.exists():
        return [{"pm2_5": 35.0, "pm10": 61.0, "no2": 42.0, "so2": 7.0, "o3": 88.0, "co": 0.6}]
    rows: list[dict[str, float]] = []
    with PRSA.open(newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                values = {
                    "pm2_5": float(row["PM2.5"]),
                    "pm10": float(row["PM10"]),
                    "no2": float(row["NO2"]),
                    "so2": float(row["SO2"]),
                    "o3": float(row["O3"]),
                    "co": float(row["CO"]) / 1000,
                }
            except ValueError:  # "NA" in the source
                continue
            rows.append(values)
            if len(rows) >= limit:
                break
    return rows


def make_batch(size: int, rows: list[dict[str, float]]) -> Batch:
    start = datetime(2026, 11, 22, tzinfo=UTC)
    readings = tuple(
        Reading(
            sensor_id=f"aq-{i % 50:02d}",
            kind=Kind.POLLUTION,
            ts=start + timedelta(minutes=i // 50),
            seq=i,
            metrics=rows[i % len(rows)],
        )
        for i in range(size)
    )
    return Batch(gateway_id="gw-bench-01", readings=readings)


def rate(action: object, seconds: float) -> float:
    """Calls per second of ``action`` over about ``seconds``."""
    assert callable(action)
    calls, began = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        action()
        calls += 1
    return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    rows = concentrations(5000)
    codec = Codec(clock=lambda: datetime(2026, 11, 23, tzinfo=UTC))
    source = "Beijing Dongsi hourly data" if PRSA.exists() else "fixed values"
    print(f"codec throughput, pollution readings with 6 metrics from {source}")
    print(f"{'batch':>6} {'bytes/reading':>14} {'decode readings/s':>18} {'encode readings/s':>18}")
    for size in (1, 10, 100, 1000):
        batch = make_batch(size, rows)
        payload = codec.encode(batch)
        decode = rate(lambda p=payload: codec.decode_batch(p), args.seconds) * size
        encode = rate(lambda b=batch: codec.encode(b), args.seconds) * size
        print(f"{size:>6} {len(payload) / size:>14.0f} {decode:>18,.0f} {encode:>18,.0f}")


if __name__ == "__main__":
    main()

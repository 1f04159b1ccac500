"""Store-and-forward queue throughput: puts/s and acks/s with synchronous=FULL and NORMAL.

Prints, for each setting, single-reading puts per second (one fsync'd transaction
each with FULL), batched puts (``put_many`` of 50), acks per second (batches of
100, as the publisher acks them) and the bytes on disk per queued reading.

Run it on the gateway's own storage: a tmpfs or a laptop NVMe says little about
an SD card.

    .venv/bin/python benchmarks/buffer.py [--dir /var/lib/urbansense] [--puts 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_agents.buffer import ReadingBuffer, Synchronous
from telemetry import Kind, Reading

T0 = datetime(2026, 11, 22, tzinfo=UTC)
METRICS = {"pm2_5": 35.0, "pm10": 61.0, "no2": 42.0, "so2": 7.0, "o3": 88.0, "co": 0.6}


def build(sensor_id: str, i: int) -> Reading:
    return Reading(
        sensor_id=sensor_id,
        kind=Kind.POLLUTION,
        seq=i,
        ts=T0 + timedelta(seconds=i),
        metrics={name: value + i % 7 for name, value in METRICS.items()},
    )


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def run(folder: Path, synchronous: Synchronous, puts: int) -> None:
    path = folder / f"bench-{synchronous.value.lower()}.db"
    readings = [build(f"aq-{i % 10:02d}", i) for i in range(puts)]
    with ReadingBuffer(path, max_bytes=1 << 34, synchronous=synchronous) as queue:
        start = time.perf_counter()
        for reading in readings:
            queue.put(reading)
        single = puts / (time.perf_counter() - start)

        batched = [build(f"aq-b{i % 10:02d}", i) for i in range(puts)]
        start = time.perf_counter()
        for first in range(0, puts, 50):
            queue.put_many(batched[first : first + 50])
        many = puts / (time.perf_counter() - start)

        depth = queue.depth()
        payload = queue.size_bytes()
        start = time.perf_counter()
        acked = 0
        while entries := queue.peek_batch(100, 1 << 20):
            acked += queue.ack(e.id for e in entries)
        acks = acked / (time.perf_counter() - start)
    # A fresh queue holding only ``puts`` readings, closed so the WAL is checkpointed.
    fresh = folder / f"size-{synchronous.value.lower()}.db"
    with ReadingBuffer(fresh, max_bytes=1 << 34, synchronous=synchronous) as queue:
        for first in range(0, puts, 50):
            queue.put_many(readings[first : first + 50])
        on_disk_payload = queue.size_bytes()
    on_disk = disk_bytes(fresh)
    print(
        f"synchronous={synchronous.value:6}  put: {single:8.0f}/s  put_many(50): {many:8.0f}"
        f" readings/s  peek+ack(100): {acks:8.0f}/s  payload {payload / depth:.0f} B/reading,"
        f" on disk {on_disk / puts:.0f} B/reading"
        f" ({on_disk / on_disk_payload:.2f}x payload)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="folder for the database files")
    parser.add_argument("--puts", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for synchronous in (Synchronous.FULL, Synchronous.NORMAL):
            run(Path(folder), synchronous, args.puts)


if __name__ == "__main__":
    main()

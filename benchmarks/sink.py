"""InfluxDB sink throughput: points per second encoded, and encoded and written.

Encodes pollution points (3 tags, 6 float fields) to line protocol with
``stream.sinks.LineEncoder`` and, for comparison, with influxdb-client's
``Point``; then encodes and writes them with ``InfluxSink`` to a VictoriaMetrics
started here on 127.0.0.1 (its data in a temporary directory, stopped at the end)
and checks that every point arrived.

    .venv/bin/python benchmarks/sink.py [--points 200000] [--batch-size 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from broker import free_port, terminate
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from stream.sinks import InfluxSink, LineEncoder, LinePoint, Precision, encode_point

VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with NO_PROXY.open(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


@contextmanager
def victoria_metrics(folder: Path) -> Iterator[str]:
    """A VictoriaMetrics on 127.0.0.1 for the duration; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = folder / "victoria-metrics.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                VICTORIA_METRICS,
                f"-storageDataPath={folder / 'data'}",
                f"-httpListenAddr=127.0.0.1:{port}",
                "-search.latencyOffset=0s",
                "-memory.allowedPercent=20",
            ],
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                msg = f"victoria-metrics exited with {process.returncode}:\n{log_path.read_text()}"
                raise RuntimeError(msg)
            try:
                if http_get(f"{url}/health", timeout=1) == b"OK":
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
        yield url
    finally:
        terminate(process)


def make_points(count: int, first_ms: int) -> list[LinePoint]:
    """``count`` points of 50 sensors, one per sensor per second from ``first_ms``."""
    districts = ("north", "east", "south", "west", "centre")
    points = []
    for i in range(count):
        sensor = i % 50
        second, step = divmod(i, 50)
        points.append(
            LinePoint(
                "air_quality",
                {
                    "sensor_id": f"aq-{sensor:02d}",
                    "kind": "pollution",
                    "district": districts[sensor % 5],
                },
                {
                    "pm2_5": 35.0 + (i % 97) * 0.25,
                    "pm10": 61.5 + (i % 13),
                    "no2": 42.25,
                    "so2": 7.0 + step * 0.001,
                    "o3": 88.0,
                    "co": 0.6,
                },
                (first_ms + second * 1000) * 1_000_000,
            )
        )
    return points


def per_second(count: int, action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return count / (time.perf_counter() - began)


def point_lines(points: list[LinePoint]) -> list[str]:
    """influxdb-client's way: a Point per reading, then its line."""
    lines = []
    for p in points:
        point: Point = Point.from_dict(
            {"measurement": p.measurement, "tags": p.tags, "fields": p.fields, "time": p.ts_ns},
            # Its stubs type the precision as the class, its values are strings.
            write_precision=WritePrecision.MS,  # type: ignore[arg-type]
        )
        lines.append(point.to_line_protocol())  # type: ignore[no-untyped-call]
    return lines


async def encode_and_write(
    url: str, points: list[LinePoint], batch_size: int, in_flight: int
) -> tuple[float, int]:
    """Points/s of encoding batch by batch and writing each; and points written."""
    sink = InfluxSink(
        url, bucket="bench", precision=Precision.MS, batch_size=batch_size, max_in_flight=in_flight
    )
    encoder = LineEncoder(precision=Precision.MS)
    async with sink:
        began = time.perf_counter()
        # One write() per chunk of in_flight batches, as a consumer loop would call it.
        chunk = batch_size * in_flight
        for start in range(0, len(points), chunk):
            await sink.write(encoder.encode_batch(points[start : start + chunk]))
        elapsed = time.perf_counter() - began
        return len(points) / elapsed, sink.stats.points_written


async def write_only(url: str, lines: list[str], batch_size: int) -> float:
    """Points/s of writing lines encoded beforehand, one batch at a time."""
    async with InfluxSink(
        url, bucket="bench", precision=Precision.MS, batch_size=batch_size
    ) as sink:
        began = time.perf_counter()
        await sink.write(lines)
        return len(lines) / (time.perf_counter() - began)


async def client_write_only(url: str, lines: list[str], batch_size: int) -> float:
    """The same through influxdb-client's async write API (for comparison)."""
    # VictoriaMetrics ignores the token, but influxdb-client requires one.
    async with InfluxDBClientAsync(url=url, token="unused", org="bench") as client:
        write_api = client.write_api()
        began = time.perf_counter()
        for start in range(0, len(lines), batch_size):
            await write_api.write(
                bucket="bench",
                record=lines[start : start + batch_size],
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]
            )
        return len(lines) / (time.perf_counter() - began)


def samples_stored(url: str, expected: int, timeout: float = 60.0) -> int:
    """The samples of air_quality_pm2_5 VictoriaMetrics can return, once it has them all."""
    query = urllib.parse.urlencode(
        {"query": "sum(count_over_time(air_quality_pm2_5[1d]))", "time": str(time.time() + 60)}
    )
    deadline, count = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        http_get(f"{url}/internal/force_flush")
        answer = json.loads(http_get(f"{url}/api/v1/query?{query}"))
        result = answer["data"]["result"]
        count = int(float(result[0]["value"][1])) if result else 0
        if count >= expected:
            break
        time.sleep(0.5)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000, help="points per measurement")
    parser.add_argument("--batch-size", type=int, default=5_000, help="lines per request")
    args = parser.parse_args()
    count = args.points

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"python {sys.version.split()[0]}"
    )
    print(f"{count:,} points: 3 tags, 6 float fields (air_quality, 50 sensors)")
    # Recent timestamps, so VictoriaMetrics' retention keeps them; two runs never overlap.
    first_ms = (time.time_ns() // 1_000_000) - (count // 50 + 10) * 1000
    points = make_points(count, first_ms)

    print("\nencoding only (one core)")
    encoder = LineEncoder(precision=Precision.MS)
    rows = [
        ("LineEncoder.encode_batch", count, lambda: encoder.encode_batch(points)),
        (
            "encode_point per point (no cache)",
            count,
            lambda: [encode_point(*p, precision=Precision.MS) for p in points],
        ),
        (
            "influxdb-client Point.to_line_protocol",
            min(count, 50_000),
            lambda: point_lines(points[:50_000]),
        ),
    ]
    for name, n, action in rows:
        print(f"  {name:<40} {per_second(n, action):>12,.0f} points/s")

    print(f"\nencoding + writing to VictoriaMetrics (loopback), batches of {args.batch_size:,}")
    span_ms = (count // 50 + 10) * 1000
    with (
        tempfile.TemporaryDirectory(prefix="urbansense-bench-sink-") as folder,
        victoria_metrics(Path(folder)) as url,
    ):
        written_total = 0
        for run, in_flight in enumerate((1, 2, 4), start=1):
            # A time range of its own per run, so runs never overwrite each other.
            run_points = make_points(count, first_ms - run * span_ms)
            speed, written = asyncio.run(
                encode_and_write(url, run_points, args.batch_size, in_flight)
            )
            written_total += written
            label = f"InfluxSink, {in_flight} batch(es) in flight"
            print(f"  {label:<40} {speed:>12,.0f} points/s  ({written:,} written)")

        print(f"\nwriting lines encoded beforehand, batches of {args.batch_size:,}")
        lines = LineEncoder(precision=Precision.MS).encode_batch(
            make_points(count, first_ms - 4 * span_ms)
        )
        speed = asyncio.run(write_only(url, lines, args.batch_size))
        print(f"  {'InfluxSink.write':<40} {speed:>12,.0f} points/s")
        lines = LineEncoder(precision=Precision.MS).encode_batch(
            make_points(count, first_ms - 5 * span_ms)
        )
        speed = asyncio.run(client_write_only(url, lines, args.batch_size))
        print(f"  {'influxdb-client async write_api':<40} {speed:>12,.0f} points/s")
        written_total += 2 * count

        stored = samples_stored(url, written_total)
        print(f"\nVictoriaMetrics holds {stored:,} pm2_5 samples of {written_total:,} written")


if __name__ == "__main__":
    main()

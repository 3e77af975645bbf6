"""Load test of `erasekit serve`: N concurrent clients against a local server on loopback.

Starts the server as a subprocess (the weight-free method by default), sends bounded batches of real removal
requests (a real photo and a mask, multipart, ``?format=image``) from 1, 4 and 8 concurrent httpx clients, and
prints one row per concurrency level: requests/s, p50/p95 latency, successes, 503s (queue full; the clients
wait ``Retry-After`` and retry, as a polite client does, unless --no-retry), other errors and the server's
peak resident memory (the kernel's high-water mark, VmHWM, so short peaks are not missed).

    python benchmarks/server_load.py                   # defaults: patchmatch, 256 px photo, 24 requests/level
    python benchmarks/server_load.py --clients 1,2,4,8,16 --requests 40 --size 512 --method telea

Bounded in count (--requests per level) and time (--deadline-s over everything).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from skimage import data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photo_and_mask(size: int) -> tuple[bytes, bytes]:
    photo = Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC)
    mask = np.zeros((size, size), np.uint8)
    # The space shuttle on the right of the astronaut photo (same relative box at any size).
    mask[int(0.01 * size) : int(0.56 * size), int(0.76 * size) : int(0.92 * size)] = 255
    out = []
    for image in (photo, Image.fromarray(mask)):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out[0], out[1]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size so far (Linux VmHWM), in MiB; falls back to the current RSS."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


@dataclass
class Level:
    clients: int
    latencies: list[float]
    ok: int
    busy: int
    errors: int
    wall: float
    peak_mb: float


async def run_level(
    url: str,
    clients: int,
    total: int,
    photo: bytes,
    mask: bytes,
    method: str,
    deadline: float,
    pid: int,
    retry_busy: bool,
) -> Level:
    latencies: list[float] = []
    counts = {"ok": 0, "busy": 0, "errors": 0}
    next_index = iter(range(total))
    files = {"image": ("astronaut.png", photo, "image/png"), "mask": ("mask.png", mask, "image/png")}

    async def client(http: httpx.AsyncClient) -> None:
        for _ in next_index:
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            while True:
                try:
                    response = await http.post(
                        "/api/v1/remove",
                        params={"format": "image"},
                        files=files,
                        data={"method": method, "seed": "0"},
                    )
                except httpx.HTTPError:
                    counts["errors"] += 1
                    break
                if response.status_code == 503 and retry_busy and time.monotonic() < deadline:
                    # A well-behaved client: wait as long as the server asks, then try again (latency keeps
                    # running).
                    counts["busy"] += 1
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                    continue
                if response.status_code == 200 and response.headers["content-type"] == "image/png":
                    counts["ok"] += 1
                    latencies.append(time.perf_counter() - start)
                elif response.status_code == 503:
                    counts["busy"] += 1
                else:
                    counts["errors"] += 1
                break

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(300.0), limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    return Level(clients, latencies, counts["ok"], counts["busy"], counts["errors"], wall, peak_rss_mb(pid))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", default="patchmatch")
    parser.add_argument("--clients", default="1,4,8", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=24, help="requests per level")
    parser.add_argument("--size", type=int, default=256, help="photo side in pixels")
    parser.add_argument(
        "--queue-size", type=int, default=16, help="server queue bound (--queue-size of serve)"
    )
    parser.add_argument(
        "--no-retry",
        dest="retry_busy",
        action="store_false",
        help="count a 503 as final instead of waiting Retry-After and retrying",
    )
    parser.add_argument(
        "--deadline-s", type=float, default=600.0, help="stop sending after this many seconds"
    )
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.clients.split(",")]

    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "erasekit", "serve", "--port", str(port), "--method", args.method,
         "--queue-size", str(args.queue_size), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        start_deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                print(server.stderr.read(), file=sys.stderr)
                return 1
            try:
                if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > start_deadline:
                print("server did not start within 120 s", file=sys.stderr)
                return 1
            time.sleep(0.2)
        idle_mb = peak_rss_mb(server.pid)
        photo, mask = photo_and_mask(args.size)
        deadline = time.monotonic() + args.deadline_s
        results = [
            asyncio.run(
                run_level(
                    url, n, args.requests, photo, mask, args.method, deadline, server.pid, args.retry_busy
                )
            )
            for n in levels
        ]
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()

    print(
        f"\nerasekit serve load test: method={args.method}, photo {args.size}×{args.size} PNG, "
        f"{args.requests} requests per level, server queue {args.queue_size}, {os.cpu_count()} CPU(s); "
        f"server RSS after start-up {idle_mb:.0f} MiB\n"
    )
    header = (
        f"| {'clients':>7} | {'ok':>4} | {'503':>4} | {'errors':>6} | {'req/s':>6} | {'p50 s':>6} "
        f"| {'p95 s':>6} | {'peak RSS MiB':>12} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for r in results:
        rate = r.ok / r.wall if r.wall > 0 else float("nan")
        print(
            f"| {r.clients:>7} | {r.ok:>4} | {r.busy:>4} | {r.errors:>6} | {rate:>6.2f} | "
            f"{percentile(r.latencies, 50):>6.2f} | {percentile(r.latencies, 95):>6.2f} | "
            f"{r.peak_mb:>12.0f} |"
        )
    return 0 if all(r.errors == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

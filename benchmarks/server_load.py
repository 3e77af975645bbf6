"""Load test of `erasekit serve`: N concurrent clients against a local server on loopback.

Starts the server as a subprocess (the weight-free method by default), sends bounded batches of real removal
requests (a real photo and a mask, multipart, ``?format=image``) from 1, 4 and 8 concurrent httpx clients, and
prints one row per concurrency level: requests/s, p50/p95 latency, successes, 503s (queue full; the clients
wait ``Retry-After`` and retry, as a polite client does, unless --no-retry), other errors and the server's
peak resident memory (the kernel's high-water mark, VmHWM, so short peaks are not missed).

    python benchmarks/server_load.py                   # defaults: patchmatch, 256 px photo, 24 requests/level
    python benchmarks/server_load.py --clients 1,2,4,8,16 --requests 40 --size 512 --method telea

Bounded in count (--requests per level) and time (--deadline-s over everything).

``--attack`` runs issue 18's attack mix instead, on the server's defaults: 16 clients × 4 normal Telea
requests (256 px) while, at the same time, dilation bombs (a flat 2048² PNG, a 64 px mask, ``dilate=512``),
steps bombs (``steps=100000``), slow uploads (8 bodies declaring 8 MiB, sent at 4 KiB/s) and cross-site
posts (``Origin`` of another site) arrive. It prints p50/p95 of the normal requests (503s are retried after
Retry-After, capped at 10 s), the peak RSS of the server and of the server plus its child processes, and
the status codes each kind got; any 5xx other than 503 is counted. Everything stays on 127.0.0.1 and ends
by --deadline-s.

    python benchmarks/server_load.py --attack --deadline-s 240
    (cd /work/main && python /path/to/benchmarks/server_load.py --attack)   # the same mix against other code
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
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


# ------------------------------------------------------------------------------------------------------------
# The attack mix (issue 18)
# ------------------------------------------------------------------------------------------------------------
def flat_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (120, 130, 140)).save(buffer, format="PNG")
    return buffer.getvalue()


def square_mask(side: int, box: int) -> bytes:
    mask = np.zeros((side, side), np.uint8)
    mask[side // 2 - box // 2 : side // 2 + box // 2, side // 2 - box // 2 : side // 2 + box // 2] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return buffer.getvalue()


class Sampler:
    """Peak RSS of the server and of the server plus its children (sampled every 0.2 s: children come
    and go), next to the kernel's high-water mark for the server itself."""

    def __init__(self, pid: int):
        import psutil

        self.process = psutil.Process(pid)
        self.peak_total_mb = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        import psutil

        while not stop.is_set():
            total = 0
            try:
                for p in [self.process, *self.process.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            except psutil.Error:
                return
            self.peak_total_mb = max(self.peak_total_mb, total / 2**20)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)


async def attack_mix(url: str, pid: int, deadline: float, normal_clients: int, normal_each: int) -> dict:
    statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    latencies: list[float] = []
    photo, mask = photo_and_mask(256)
    normal_files = {"image": ("astronaut.png", photo, "image/png"), "mask": ("mask.png", mask, "image/png")}
    bomb_files = {"image": ("flat.png", flat_png(2048), "image/png"),
                  "mask": ("mask.png", square_mask(2048, 64), "image/png")}

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    async def post(http: httpx.AsyncClient, kind: str, files: dict, data: dict, headers=None) -> int:
        try:
            response = await http.post("/api/v1/remove", params={"format": "image"}, files=files, data=data,
                                       headers=headers or {}, timeout=left())
        except httpx.HTTPError as exc:
            statuses[kind][type(exc).__name__] += 1
            return 0
        statuses[kind][response.status_code] += 1
        return response.status_code

    async def normal(http: httpx.AsyncClient) -> None:
        await asyncio.sleep(1.0)  # the attacks are under way first
        for _ in range(normal_each):
            start = time.perf_counter()
            while time.monotonic() < deadline:
                try:
                    response = await http.post("/api/v1/remove", params={"format": "image"},
                                               files=normal_files, data={"method": "telea"}, timeout=left())
                except httpx.HTTPError as exc:
                    statuses["normal"][type(exc).__name__] += 1
                    break
                statuses["normal"][response.status_code] += 1
                if response.status_code == 503:
                    await asyncio.sleep(min(10.0, float(response.headers.get("retry-after", "1"))))
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                break

    async def dilation_bombs(http: httpx.AsyncClient) -> None:
        for _ in range(2):
            await post(http, "dilation bomb", bomb_files, {"method": "telea", "dilate": "512"})

    async def steps_bombs(http: httpx.AsyncClient) -> None:
        for _ in range(2):
            await post(http, "steps bomb", normal_files, {"method": "sd2-inpaint",
                                                           "options": '{"steps": 100000}'})

    async def cross_site(http: httpx.AsyncClient) -> None:
        # What a page on another site can send (a no-cors form post); retried while the server is busy.
        headers = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
        for _ in range(4):
            while await post(http, "cross-site post", normal_files, {"method": "telea"}, headers) == 503:
                await asyncio.sleep(1)
                if time.monotonic() > deadline:
                    return

    async def slow_upload() -> None:
        host, port = url.removeprefix("http://").split(":")
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            statuses["slow upload"][type(exc).__name__] += 1
            return
        # A valid multipart start, then the image's bytes at a trickle.
        writer.write(f"POST /api/v1/remove HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {8 * 2**20}\r\n\r\n"
                     '--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
                     "Content-Type: image/png\r\n\r\n".encode())
        status: object = "no answer (client gave up)"
        end = min(deadline, time.monotonic() + 40)
        try:
            while time.monotonic() < end:
                writer.write(b"x" * 4096)
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    line = await asyncio.wait_for(reader.readline(), 1.0)
                    status = int(line.split()[1]) if line else "closed"
                    break
        except (OSError, IndexError, ValueError) as exc:
            status = type(exc).__name__
        writer.close()
        statuses["slow upload"][status] += 1

    sampler = Sampler(pid)
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=url, limits=limits) as http:
        sampling = asyncio.create_task(sampler.run(stop))
        started = time.perf_counter()
        await asyncio.gather(
            *(dilation_bombs(http) for _ in range(2)), *(steps_bombs(http) for _ in range(2)),
            cross_site(http), *(slow_upload() for _ in range(8)),
            *(normal(http) for _ in range(normal_clients)),
        )
        wall = time.perf_counter() - started
        stop.set()
        await sampling
    return {"statuses": statuses, "latencies": latencies, "wall": wall, "peak_server_mb": peak_rss_mb(pid),
            "peak_total_mb": sampler.peak_total_mb}


def report_attack(out: dict, normal_total: int, label: str) -> None:
    lat = out["latencies"]
    five = sum(n for counts in out["statuses"].values() for code, n in counts.items()
               if isinstance(code, int) and code >= 500 and code != 503)
    print(f"\nerasekit serve under attack ({label}); {os.cpu_count()} CPU(s)\n")
    print("| normal ok | p50 s | p95 s | wall s | peak RSS server MiB | peak RSS server+children MiB | "
          "5xx (not 503) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {len(lat)} / {normal_total} | {percentile(lat, 50):.2f} | {percentile(lat, 95):.2f} | "
          f"{out['wall']:.1f} | {out['peak_server_mb']:.0f} | {out['peak_total_mb']:.0f} | {five} |")
    print("\n| request kind | answers (status: count) |\n|---|---|")
    for kind, counts in out["statuses"].items():
        print(f"| {kind} | {', '.join(f'{k}: {v}' for k, v in sorted(counts.items(), key=str))} |")


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
    parser.add_argument("--attack", action="store_true", help="run the attack mix (module docstring)")
    parser.add_argument("--label", default="", help="a name for this run in the attack table's title")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra argument for `erasekit serve` (repeatable)")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.clients.split(",")]
    if args.attack:
        args.method = "telea"

    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "erasekit", "serve", "--port", str(port), "--method", args.method,
         *([] if args.attack else ["--queue-size", str(args.queue_size)]), "--log-level", "warning",
         *args.server_arg],
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
        deadline = time.monotonic() + args.deadline_s
        if args.attack:
            out = asyncio.run(attack_mix(url, server.pid, deadline, 16, 4))
            import erasekit

            report_attack(out, 64, f"{args.label or 'code at ' + str(Path(erasekit.__file__).parent)}; "
                          f"server RSS after start-up {idle_mb:.0f} MiB")
            return 0
        photo, mask = photo_and_mask(args.size)
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

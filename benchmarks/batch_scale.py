"""Batch throughput: the local executor against Ray Data with 1 and 2 actors, and what a GPU cluster would
need.

``erasekit batch`` over ``--images`` crops of scikit-image's real colour photos (``--size`` px, a centred mask
each), method ``--method`` (default telea: weight-free, so the rows measure the executors, not a model). Every
run writes into a fresh folder; the Ray runs share one local Ray instance (started once, its start-up time
reported beside the table, not in the rows) and must produce the same bytes as the local run.

The driver's report writes are timestamped (the benchmark wraps the report writer), so an executor's fixed
cost (Ray: actor start-up and model load per run) separates from its cost per image. Columns: images/s over
the whole run, start-up included; ``start-up s`` = time to the first record; ``interval ms/image`` = (last
record − first record) / (n − 1), the steady-state time per image; ``work ms`` is the mean per-image read +
remove + write time the records report; ``overhead/image ms`` is what the executor adds per image per worker:
``workers × interval − work``.

Projection for N GPU actors: each actor spends ``t_gpu + o_ray`` per image (``o_ray`` = the Ray 1-actor
overhead measured here), so N actors give ``N / (t_gpu + o_ray)`` images/s, until the driver, which decides
skips and appends one synced report line per image (``o_driver`` = the local executor's overhead per image),
caps it at ``1 / o_driver``. ``--gpu-seconds`` is an assumed per-image model time on a GPU (not measured
here).

    PYTHONPATH=src python benchmarks/batch_scale.py --images 24 --size 160
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _write_set(root: Path, count: int, size: int) -> tuple[Path, Path]:
    import skimage.data
    from PIL import Image

    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    mask = np.zeros((size, size), np.uint8)
    mask[size // 3 : 2 * size // 3, size // 4 : 3 * size // 4] = 255
    made = 0
    while made < count:
        name = PHOTOS[made % len(PHOTOS)]
        photo = getattr(skimage.data, name)()
        step = made // len(PHOTOS)
        top = (step * 37) % (photo.shape[0] - size)
        left = (step * 53) % (photo.shape[1] - size)
        Image.fromarray(np.ascontiguousarray(photo[top : top + size, left : left + size])).save(
            images / f"{name}_{made:04d}.png"
        )
        Image.fromarray(mask).save(masks / f"{name}_{made:04d}.png")
        made += 1
    return images, masks


def _run(images: Path, masks: Path, out: Path, method: str, executor: str, workers: int) -> dict:
    from erasekit import batch

    stamps: list[float] = []
    write = batch._ReportWriter.write

    def stamped(self, record):
        write(self, record)
        stamps.append(time.perf_counter())

    batch._ReportWriter.write = stamped  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        summary = batch.run_batch(
            [images], masks, out, method=method, progress=False, executor=executor, workers=workers
        )
        wall = time.perf_counter() - t0
    finally:
        batch._ReportWriter.write = write  # type: ignore[method-assign]
    if summary.exit_code:
        sys.exit(f"{executor} run failed: {[r.message for r in summary.records if r.status == 'failed'][:3]}")
    n = len(summary.records)
    interval = (stamps[-1] - stamps[0]) / (n - 1)
    work = statistics.fmean(r.timings["total"] for r in summary.records)
    return {
        "wall": wall,
        "n": n,
        "work": work,
        "interval": interval,
        "startup": stamps[0] - t0,
        "overhead": workers * interval - work,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--method", default="telea")
    parser.add_argument(
        "--gpu-seconds",
        type=float,
        default=0.6,
        help="assumed model time per image on one GPU, for the projection",
    )
    parser.add_argument("--gpus", default="8,32,128", help="cluster sizes to project")
    args = parser.parse_args()

    import ray

    import erasekit

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images, masks = _write_set(root, args.images, args.size)
        rows = [("local", 1, _run(images, masks, root / "local", args.method, "local", 1))]
        src = str(Path(erasekit.__file__).resolve().parents[1])  # actors import this checkout
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_init = time.perf_counter() - t0
        try:
            for workers in (1, 2):
                rows.append(
                    (
                        f"ray, {workers} actor{'s' * (workers > 1)}",
                        workers,
                        _run(images, masks, root / f"ray{workers}", args.method, "ray", workers),
                    )
                )
        finally:
            ray.shutdown()
        reference = {p.name: p.read_bytes() for p in (root / "local").glob("*.png")}
        same = all(
            {p.name: p.read_bytes() for p in (root / f"ray{w}").glob("*.png")} == reference for w in (1, 2)
        )

    local = rows[0][2]
    print(
        f"# batch_scale: {args.images} images of {args.size}² px, {args.method}, {os.cpu_count()} CPUs; "
        f"ray.init {ray_init:.1f} s (not in the rows); Ray outputs byte-identical to local: {same}\n"
    )
    print(
        "| executor | images/s | × local | start-up s | interval ms/image | work ms/image | "
        "overhead/image ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, _, r in rows:
        rate = r["n"] / r["wall"]
        print(
            f"| {name} | {rate:.2f} | {rate / (local['n'] / local['wall']):.2f} | {r['startup']:.1f} | "
            f"{1000 * r['interval']:.1f} | {1000 * r['work']:.1f} | {1000 * r['overhead']:.1f} |"
        )
    o_ray, o_driver = rows[1][2]["overhead"], local["overhead"]
    t = args.gpu_seconds
    print(
        f"\nStart-up per Ray run (actors + model load): {rows[1][2]['startup']:.1f} s with 1 actor, "
        f"{rows[2][2]['startup']:.1f} s with 2; paid once per run, not per image."
    )
    print(
        f"\nRay adds {1000 * (o_ray - o_driver):.1f} ms per image over the local executor "
        f"({1000 * o_ray:.1f} − {1000 * o_driver:.1f})."
    )
    print(
        f"\nProjection, N GPU actors at an assumed t_gpu = {t} s/image: per actor t_gpu + o_ray = {t} + "
        f"{o_ray:.3f} = {t + o_ray:.3f} s/image; driver cap 1 / o_driver = 1 / {o_driver:.4f} = "
        f"{1 / o_driver:.1f} images/s.\n"
    )
    print("| GPU actors N | N / (t_gpu + o_ray) images/s | capped | hours per million images |")
    print("| --- | --- | --- | --- |")
    for n in (int(g) for g in args.gpus.split(",")):
        raw = n / (t + o_ray)
        rate = min(raw, 1 / o_driver)
        print(f"| {n} | {n} / {t + o_ray:.3f} = {raw:.1f} | {rate:.1f} | {1e6 / rate / 3600:.1f} |")


if __name__ == "__main__":
    main()

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

Object store: with ``moto[server]`` and ``s3fs`` installed, the same images and masks are also put in a local
S3 server (moto on 127.0.0.1, reached through ``AWS_ENDPOINT_URL`` as a MinIO would be) and read from their
``s3://`` prefixes, by the local executor and by one Ray actor; ``read ms/image`` (fetch + decode of image and
mask, from the records) shows what fetching through s3fs adds per image against reading the same files from
a folder. moto on localhost has no network latency: a real bucket adds its round trips (tens of ms per GET,
overlapped across actors). ``--no-s3`` leaves these rows out.

Projection for N GPU actors: each actor spends ``t_gpu + o_ray`` per image (``o_ray`` = the Ray 1-actor
overhead measured here), so N actors give ``N / (t_gpu + o_ray)`` images/s, until the driver, which decides
skips and appends one synced report line per image (``o_driver`` = the local executor's overhead per image),
caps it at ``1 / o_driver``. ``--gpu-seconds`` is an assumed per-image model time on a GPU (not measured
here).

    PYTHONPATH=src python benchmarks/batch_scale.py --images 24 --size 160
    PYTHONPATH=src python benchmarks/batch_scale.py --quick        # 12 images of 96², under 2 minutes
"""

from __future__ import annotations

import argparse
import contextlib
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


def _run(images: Path | str, masks: Path | str, out: Path, method: str, executor: str, workers: int) -> dict:
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
    read = statistics.fmean(r.timings["read"] for r in summary.records)
    return {
        "read": read,
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
    parser.add_argument("--quick", action="store_true", help="12 images of 96² (under 2 minutes)")
    parser.add_argument("--no-s3", dest="s3", action="store_false", help="leave out the s3:// (moto) rows")
    args = parser.parse_args()
    if args.quick:
        args.images, args.size = 12, 96

    import ray

    import erasekit
    from erasekit.testing.objstore import local_s3, local_s3_unavailable, upload

    if args.s3 and (reason := local_s3_unavailable()) is not None:
        print(f"# no s3 rows: {reason}")
        args.s3 = False
    with tempfile.TemporaryDirectory() as tmp, (local_s3() if args.s3 else contextlib.nullcontext()):
        root = Path(tmp)
        images, masks = _write_set(root, args.images, args.size)
        rows = [("local", 1, _run(images, masks, root / "local", args.method, "local", 1))]
        outs = {"local": root / "local"}
        if args.s3:  # before ray.init: the local Ray's workers inherit AWS_ENDPOINT_URL
            upload(images, "s3://batch-scale/images/")
            upload(masks, "s3://batch-scale/masks/")
            s3_in, s3_masks = "s3://batch-scale/images/", "s3://batch-scale/masks/"
            rows.append(("local, s3 (moto)", 1,
                         _run(s3_in, s3_masks, root / "local-s3", args.method, "local", 1)))
            outs["local-s3"] = root / "local-s3"
        src = str(Path(erasekit.__file__).resolve().parents[1])  # actors import this checkout
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_init = time.perf_counter() - t0
        try:
            for workers in (1, 2):
                name = f"ray, {workers} actor{'s' * (workers > 1)}"
                rows.append((name, workers, _run(images, masks, root / f"ray{workers}", args.method, "ray",
                                                 workers)))
                outs[name] = root / f"ray{workers}"
            if args.s3:
                rows.append(("ray, 1 actor, s3 (moto)", 1,
                             _run(s3_in, s3_masks, root / "ray-s3", args.method, "ray", 1)))
                outs["ray-s3"] = root / "ray-s3"
        finally:
            ray.shutdown()
        reference = {p.name: p.read_bytes() for p in (root / "local").glob("*.png")}
        same = all({p.name: p.read_bytes() for p in out.glob("*.png")} == reference for out in outs.values())

    local = rows[0][2]
    print(
        f"# batch_scale: {args.images} images of {args.size}² px, {args.method}, {os.cpu_count()} CPUs; "
        f"ray.init {ray_init:.1f} s (not in the rows); every row's outputs byte-identical to local: {same}\n"
    )
    print(
        "| executor | images/s | × local | start-up s | interval ms/image | work ms/image | read ms/image | "
        "overhead/image ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, _, r in rows:
        rate = r["n"] / r["wall"]
        print(
            f"| {name} | {rate:.2f} | {rate / (local['n'] / local['wall']):.2f} | {r['startup']:.1f} | "
            f"{1000 * r['interval']:.1f} | {1000 * r['work']:.1f} | {1000 * r['read']:.1f} | "
            f"{1000 * r['overhead']:.1f} |"
        )
    by_name = {name: r for name, _, r in rows}
    one, two = by_name["ray, 1 actor"], by_name["ray, 2 actors"]
    o_ray, o_driver = one["overhead"], local["overhead"]
    t = args.gpu_seconds
    print(
        f"\nStart-up per Ray run (actors + model load): {one['startup']:.1f} s with 1 actor, "
        f"{two['startup']:.1f} s with 2; paid once per run, not per image."
    )
    if args.s3:
        s3_local, s3_ray = by_name["local, s3 (moto)"], by_name["ray, 1 actor, s3 (moto)"]
        ms = {k: 1000 * v for k, v in (("s3", s3_local["read"]), ("file", local["read"]),
                                        ("s3_ray", s3_ray["read"]), ("file_ray", one["read"]))}
        print(
            f"\nReading through s3fs (moto, localhost) adds {ms['s3'] - ms['file']:.1f} ms per image to the "
            f"read in this process ({ms['s3']:.1f} − {ms['file']:.1f}) and "
            f"{ms['s3_ray'] - ms['file_ray']:.1f} ms in a Ray actor ({ms['s3_ray']:.1f} − "
            f"{ms['file_ray']:.1f}); the driver's listings add "
            f"{s3_local['startup'] - local['startup']:+.2f} s of start-up."
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

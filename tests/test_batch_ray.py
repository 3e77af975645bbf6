"""``erasekit batch --executor ray``: the same bytes as the local executor on real photos, the same report,
and
a Ray batch killed mid-run (SIGKILL of the driver) and re-run loses nothing.

One local Ray instance serves the whole module (``ray.init`` takes tens of seconds here); the tests skip when
Ray is not installed (it comes with the ``cluster`` extra)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

import erasekit
from erasekit.batch import REPORT_NAME, read_report, run_batch

ray = pytest.importorskip("ray")

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server (None when moto/s3fs are missing), started before Ray so that the workers inherit
    its ``AWS_ENDPOINT_URL`` as cluster nodes inherit theirs."""
    from erasekit.testing.objstore import local_s3, local_s3_unavailable

    if local_s3_unavailable() is not None:
        yield None
        return
    with local_s3() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def ray_session(s3_endpoint):
    """One local Ray instance for the module; workers import this checkout's erasekit."""
    src = str(Path(erasekit.__file__).resolve().parents[1])
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *([before] if before else [])])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    if before is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = before


def _photo_set(folder: Path, count: int, size: int = 96) -> tuple[Path, Path]:
    """``count`` crops of scikit-image's colour photos with a centred square mask each."""
    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    crops = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        for i, (top, left) in enumerate(((0, 0), (-size, -size), (0, -size), (-size, 0))):
            rows = slice(0, size) if top == 0 else slice(-size, None)
            cols = slice(0, size) if left == 0 else slice(-size, None)
            crops.append((f"{name}_{i}", np.ascontiguousarray(photo[rows, cols])))
    mask = np.zeros((size, size), np.uint8)
    mask[size // 3 : 2 * size // 3, size // 4 : 3 * size // 4] = 255
    for name, pixels in crops[:count]:
        Image.fromarray(pixels).save(images / f"{name}.png")
        Image.fromarray(mask).save(masks / f"{name}.png")
    return images, masks


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_ray_batch_equals_local_byte_for_byte(ray_session, tmp_path):
    images, masks = _photo_set(tmp_path, 6)
    (masks / "coffee_0.png").unlink()  # one failure: recorded by both executors alike, the run goes on
    local = run_batch([images], masks, tmp_path / "local", method="telea+poisson", progress=False)
    remote = run_batch(
        [images], masks, tmp_path / "ray", method="telea+poisson", progress=False, executor="ray", workers=2
    )
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "local") and len(_outputs(tmp_path / "ray")) == 5
    strip = ("run", "finished_at", "timings", "output", "image", "mask")
    rows = [
        [{k: v for k, v in vars(r).items() if k not in strip} for r in read_report(s.report_path)]
        for s in (local, remote)
    ]
    assert rows[0] == rows[1]
    assert [r.status for r in remote.records].count(
        "failed"
    ) == 1 and remote.exit_code == local.exit_code == 5
    assert {r.chain for r in remote.records if r.status == "ok"} == {"telea+poisson"}


def test_ray_batch_from_s3_prefixes_equals_local_batch(s3_endpoint, ray_session, tmp_path):
    """The driver lists the two prefixes; the actors fetch each image and mask from S3 themselves."""
    from erasekit.testing.objstore import local_s3_unavailable, upload

    if s3_endpoint is None:
        pytest.skip(f"S3 tests {local_s3_unavailable()}")
    images, masks = _photo_set(tmp_path, 6)
    (masks / "coffee_1.png").unlink()  # a missing mask: recorded, the run goes on
    upload(images, "s3://erasekit-ray/photos/")
    upload(masks, "s3://erasekit-ray/masks/")
    remote = run_batch(["s3://erasekit-ray/photos/"], "s3://erasekit-ray/masks/", tmp_path / "ray",
                       method="telea+poisson", progress=False, executor="ray", workers=2)
    local = run_batch([images], masks, tmp_path / "local", method="telea+poisson", progress=False)
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "local") and len(_outputs(tmp_path / "ray")) == 5
    assert [(Path(r.image).name, r.status, r.error) for r in remote.records] == [
        (Path(r.image).name, r.status, r.error) for r in local.records
    ]
    assert all(r.mask.startswith("s3://erasekit-ray/masks/") for r in remote.records if r.status == "ok")


def test_killed_ray_batch_reruns_without_losing_anything(ray_session, tmp_path):
    images, masks = _photo_set(tmp_path, 10)
    out = tmp_path / "ray"
    env = {**os.environ, "RAY_ADDRESS": ray_session}
    cmd = [
        sys.executable,
        "-m",
        "erasekit",
        "batch",
        str(images),
        "-m",
        str(masks),
        "-o",
        str(out),
        "--method",
        "telea",
        "--executor",
        "ray",
        "--workers",
        "1",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and len(list(out.glob("*.png"))) < 2:
        time.sleep(0.02)
    assert proc.poll() is None, (
        f"the batch ended before it could be killed: {proc.stderr.read().decode()[-400:]}"
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written_before = set(_outputs(out))
    assert 0 < len(written_before) < 10
    summary = run_batch([images], masks, out, method="telea", progress=False, executor="ray", workers=1)
    assert summary.exit_code == 0
    statuses = {Path(r.image).name: r.status for r in read_report(out / REPORT_NAME)}
    assert len(statuses) == 10 and set(statuses.values()) <= {"ok", "skipped"}
    assert {n for n, s in statuses.items() if s == "skipped"} >= written_before
    reference = run_batch([images], masks, tmp_path / "local", method="telea", progress=False)
    assert reference.exit_code == 0
    assert _outputs(out) == _outputs(tmp_path / "local")  # every image complete, the same bytes
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_bench_on_ray_writes_the_local_outputs(ray_session, tmp_path):
    from erasekit.data.synthetic import generate_synthetic_dataset
    from erasekit.eval.runner import BenchConfig, run_benchmark

    dataset = generate_synthetic_dataset(tmp_path / "ds", 3, size=64, seed=0)
    common = {
        "dataset": str(dataset),
        "methods": ["telea+poisson"],
        "mask": "object",
        "metrics": ["psnr"],
        "warmup": 0,
        "progress": False,
    }
    local = run_benchmark(BenchConfig(out=str(tmp_path / "local"), **common))
    remote = run_benchmark(BenchConfig(out=str(tmp_path / "ray"), executor="ray", workers=1, **common))
    assert [r["cached"] for r in remote.rows] == [False] * 3
    for row_local, row_ray in zip(local.rows, remote.rows):
        assert row_ray["psnr"] == row_local["psnr"] and row_ray["method"] == "telea+poisson"
    folder = Path("outputs") / "telea+poisson" / "object"
    for png in (tmp_path / "local" / folder).glob("*.png"):
        assert (tmp_path / "ray" / folder / png.name).read_bytes() == png.read_bytes()
    again = run_benchmark(BenchConfig(out=str(tmp_path / "ray"), executor="ray", workers=1, **common))
    assert all(r["cached"] for r in again.rows)  # nothing recomputed, on Ray or here


def test_bench_on_ray_reads_a_dataset_prefix(s3_endpoint, ray_session, tmp_path):
    """``bench --executor ray --dataset s3://...``: the driver copies the dataset into the results folder
    once (the readers are path-based), the actors read that copy; the scores equal a local run's."""
    from erasekit.data.synthetic import generate_synthetic_dataset
    from erasekit.eval.runner import BenchConfig, run_benchmark
    from erasekit.testing.objstore import local_s3_unavailable, upload

    if s3_endpoint is None:
        pytest.skip(f"S3 tests {local_s3_unavailable()}")
    dataset = generate_synthetic_dataset(tmp_path / "ds", 2, size=48, seed=1)
    upload(dataset, "s3://erasekit-ray-bench/scenes/")
    common = {"methods": ["telea"], "mask": "object", "metrics": ["psnr"], "warmup": 0, "progress": False}
    local = run_benchmark(BenchConfig(dataset=str(dataset), out=str(tmp_path / "local"), **common))
    remote = run_benchmark(BenchConfig(dataset="s3://erasekit-ray-bench/scenes/", out=str(tmp_path / "ray"),
                                       executor="ray", workers=1, **common))
    assert [r["cached"] for r in remote.rows] == [False, False]
    assert [r["psnr"] for r in remote.rows] == [r["psnr"] for r in local.rows]

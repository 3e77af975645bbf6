"""``erasekit batch`` and ``bench`` reading object-store prefixes (issue 17 item 4): the same bytes as from a
folder, one listing per prefix, failures recorded, resume after SIGKILL, clear exit-2 errors.

``memory://`` (fsspec's in-process store) serves the fast tests; the S3 tests speak the real S3 protocol to
moto's server on 127.0.0.1 through s3fs (:mod:`erasekit.testing.objstore`), and skip when those packages are
missing. The Ray executor reading S3 is tested in ``tests/test_batch_ray.py``."""

from __future__ import annotations

import glob
import itertools
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

from erasekit import InvalidInputError
from erasekit.batch import MaskIndex, collect_sources, find_mask, image_extensions, read_report, run_batch
from erasekit.cli import main
from erasekit.testing.objstore import local_s3, local_s3_unavailable, upload

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
_unique = itertools.count()


def _photo_set(folder: Path, count: int, size: int = 64, hole: int = 16, ext: str = ".jpg"
               ) -> tuple[Path, Path]:
    """``count`` crops of scikit-image's real colour photos (JPEG by default: the output must reuse the
    source's quantisation tables, read from bytes here) and a centred square mask each."""
    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    mask = np.zeros((size, size), np.uint8)
    start = (size - hole) // 2
    mask[start : start + hole, start : start + hole] = 255
    crops = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        crops.append((f"{name}_a", photo[:size, :size]))
        crops.append((f"{name}_b", photo[-size:, -size:]))
    for name, pixels in crops[:count]:
        Image.fromarray(np.ascontiguousarray(pixels)).save(images / f"{name}{ext}", quality=90)
        Image.fromarray(mask).save(masks / f"{name}.png")
    return images, masks


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".jpg", ".png")}


def _report_rows(path: Path) -> list[dict]:
    """Report records without what names places or times (paths differ between the two sources)."""
    keep = ("status", "method", "chain", "error", "exit_code", "unchanged")
    return [{k: getattr(r, k) for k in keep} | {"name": Path(r.image).name} for r in read_report(path)]


# ---- the mask rules, from one listing ----------------------------------------------------------------------
def _rules_by_glob(image_name: str, folder: Path) -> str | None:
    """The batch's mask rules written another way, as a reference: a stat per .png candidate, then a glob per
    suffix over the folder (what erasekit did per image before it listed the folder once)."""
    stem = Path(image_name).stem
    candidates = [folder / f"{stem}{suffix}.png" for suffix in ("", "_mask")]
    for suffix in ("", "_mask"):
        others = sorted(folder.glob(f"{glob.escape(stem + suffix)}.*"))
        candidates += [p for p in others if p.suffix.lower() in image_extensions() - {".png"}]
    return next((p.name for p in candidates if p.is_file()), None)


def test_mask_index_chooses_what_the_glob_rules_choose(tmp_path):
    """The name-only rules (one listing) agree with the folder rules (a glob and a stat per candidate)."""
    masks = tmp_path / "masks"
    masks.mkdir()
    for name in ("a.png", "a_mask.png", "b_mask.png", "c.jpg", "c_mask.png", "d.webp", "d.bmp", "d.txt",
                 "e.v2.png", "e.tif", "f.PNG", "g[1].png", "g1.png", "h_mask.jpg", "h_mask.gif", "k.x.png"):
        (masks / name).write_bytes(b"")
    index = MaskIndex("memory://bucket/masks", os.listdir(masks))
    for image in ("a.jpg", "b.jpg", "c.png", "d.jpg", "e.v2.jpg", "e.jpg", "f.jpg", "g[1].jpg", "h.jpg",
                  "k.jpg", "z.jpg"):
        expected = _rules_by_glob(image, masks)
        if expected is not None:  # the local folder's listing chooses the same
            assert find_mask(tmp_path / "photos" / image, masks).name == expected
        try:
            got = index.find(f"memory://bucket/photos/{image}").rsplit("/", 1)[1]
        except InvalidInputError as exc:
            assert "no mask for" in str(exc)
            got = None
        assert got == expected, image
    # Inputs and masks in one prefix: the image itself never counts as its mask.
    same = MaskIndex("memory://bucket/all", {"p.png", "p_mask.png", "q.png"})
    assert same.find("memory://bucket/all/p.png") == "memory://bucket/all/p_mask.png"
    with pytest.raises(InvalidInputError, match="no mask for 'q.png'"):
        same.find("memory://bucket/all/q.png")


# ---- memory:// (in process) --------------------------------------------------------------------------------
@pytest.fixture
def memory_prefix():
    import fsspec

    url = f"memory://erasekit-test-{os.getpid()}-{next(_unique)}"
    yield url
    fsspec.filesystem("memory").rm(url.removeprefix("memory:/"), recursive=True)


def test_memory_prefix_batch_equals_folder_batch_and_records_failures(tmp_path, memory_prefix):
    images, masks = _photo_set(tmp_path, 5)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(images / "orphan.jpg")  # no mask
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # an unreadable object
    (masks / "broken.png").write_bytes((masks / "coffee_a.png").read_bytes())
    upload(images, f"{memory_prefix}/photos")
    upload(masks, f"{memory_prefix}/masks")

    folder = run_batch([images], masks, tmp_path / "from-folder", method="telea+poisson", progress=False)
    url = run_batch([f"{memory_prefix}/photos/"], f"{memory_prefix}/masks", tmp_path / "from-url",
                    method="telea+poisson", progress=False)
    assert _outputs(tmp_path / "from-url") == _outputs(tmp_path / "from-folder")
    assert len(_outputs(tmp_path / "from-url")) == 5
    assert _report_rows(url.report_path) == _report_rows(folder.report_path)
    failed = {Path(r.image).name: r for r in url.records if r.status == "failed"}
    assert set(failed) == {"broken.jpg", "orphan.jpg"} and url.exit_code == folder.exit_code == 5
    assert "no mask for 'orphan.jpg'" in (failed["orphan.jpg"].message or "")
    assert failed["broken.jpg"].error == "InvalidInputError"
    ok = [r for r in url.records if r.status == "ok"]
    assert all(r.image.startswith(memory_prefix) and r.mask.startswith(memory_prefix) for r in ok)

    # A glob over the prefix finds the same objects; a re-run from the URL skips what is done.
    assert collect_sources([f"{memory_prefix}/photos/*.jpg"]) == collect_sources([f"{memory_prefix}/photos"])
    again = run_batch([f"{memory_prefix}/photos/*.jpg"], f"{memory_prefix}/masks", tmp_path / "from-url",
                      method="telea+poisson", progress=False)
    assert again.counts == {"ok": 0, "skipped": 5, "failed": 2}


def test_an_object_over_the_byte_limit_is_exit_4_without_being_downloaded_whole(memory_prefix, monkeypatch):
    from erasekit import objstore
    from erasekit.types import ResourceLimitError

    url = f"{memory_prefix}/big.png"
    fs, path = objstore.filesystem(url)
    fs.pipe_file(path, bytes(5000))
    asked = []
    real_cat = type(fs).cat_file

    def ranged(self, path, start=None, end=None, **kw):
        asked.append((start, end))
        return real_cat(self, path, start=start, end=end, **kw)

    monkeypatch.setattr(type(fs), "cat_file", ranged)
    monkeypatch.setenv(objstore.MAX_OBJECT_BYTES_ENV, "4096")
    with pytest.raises(ResourceLimitError, match="larger than 4096 bytes; raise ERASEKIT_MAX_OBJECT_BYTES"):
        objstore.read_bytes(url, "image")
    assert asked == [(0, 4097)]  # one byte past the limit is all that is fetched
    monkeypatch.setenv(objstore.MAX_OBJECT_BYTES_ENV, "5000")
    assert objstore.read_bytes(url) == bytes(5000)
    monkeypatch.setenv(objstore.MAX_OBJECT_BYTES_ENV, "lots")
    with pytest.raises(InvalidInputError, match="whole number of bytes"):
        objstore.read_bytes(url)


def test_url_problems_are_exit_2_before_any_work(tmp_path, memory_prefix, capsys):
    images, masks = _photo_set(tmp_path, 1)
    upload(images, f"{memory_prefix}/photos")
    upload(masks, f"{memory_prefix}/masks")
    photos, mask_url = f"{memory_prefix}/photos", f"{memory_prefix}/masks"

    def run(*args: str) -> tuple[int, str]:
        code = main(["batch", *args, "--method", "telea", "--no-progress"])
        return code, " ".join(capsys.readouterr().err.split())

    code, err = run(photos, "-m", mask_url, "-o", "s3://bucket/cleaned")
    assert code == 2 and "must be a local or mounted folder" in err and "lock file" in err
    code, err = run(photos, "-m", f"{memory_prefix}/no-such-masks", "-o", str(tmp_path / "out"))
    assert code == 2 and "mask folder" in err and "does not exist" in err
    code, err = run("nosuchscheme://bucket/photos", "-m", mask_url, "-o", str(tmp_path / "out"))
    assert code == 2 and "nosuchscheme://" in err
    assert not (tmp_path / "out").exists()
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        code, err = run("gs://bucket/photos/", "-m", mask_url, "-o", str(tmp_path / "out"))
        assert code == 2 and "needs the gcsfs package: pip install gcsfs" in err


# ---- S3, through moto's server -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3():
    reason = local_s3_unavailable()
    if reason is not None:
        pytest.skip(f"S3 tests {reason}")
    with local_s3() as endpoint:
        yield endpoint


def _count_s3_requests(monkeypatch) -> list[str]:
    """From now on, the S3 API call names s3fs makes (list_objects_v2, get_object, ...), in order."""
    import s3fs

    calls: list[str] = []
    real = s3fs.S3FileSystem._call_s3

    async def counted(self, method, *args, **kwargs):
        calls.append(method)
        return await real(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counted)
    return calls


def test_s3_batch_equals_folder_batch_with_one_listing_per_prefix(s3, tmp_path, monkeypatch):
    images, masks = _photo_set(tmp_path, 6)
    upload(images, "s3://erasekit-in/photos/")
    upload(masks, "s3://erasekit-in/masks/")
    calls = _count_s3_requests(monkeypatch)
    url = run_batch(["s3://erasekit-in/photos/"], "s3://erasekit-in/masks/", tmp_path / "from-s3",
                    method="telea", progress=False)
    monkeypatch.undo()
    folder = run_batch([images], masks, tmp_path / "from-folder", method="telea", progress=False)
    assert url.counts == folder.counts == {"ok": 6, "skipped": 0, "failed": 0}
    assert _outputs(tmp_path / "from-s3") == _outputs(tmp_path / "from-folder")
    # One GET per image and per mask; the listings do not grow with the number of images.
    assert calls.count("get_object") == 12
    assert calls.count("list_objects_v2") <= 3 and calls.count("head_object") <= 1


def test_s3_batch_killed_and_rerun_loses_nothing(s3, tmp_path):
    images, masks = _photo_set(tmp_path, 8, size=112, hole=28, ext=".png")
    upload(images, "s3://erasekit-kill/photos/")
    upload(masks, "s3://erasekit-kill/masks/")
    out, clean = tmp_path / "out", tmp_path / "clean"
    command = [sys.executable, "-m", "erasekit", "batch", "s3://erasekit-kill/photos/", "--masks",
               "s3://erasekit-kill/masks/", "-o", str(out), "--method", "patchmatch", "--seed", "3",
               "--no-progress"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # AWS_* inherited
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*.png")):
            assert proc.poll() is None, f"the batch ended early: {proc.stderr.read().decode()[-400:]}"
            assert time.monotonic() < deadline, "no output after 120 s"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    done_at_kill = {p.name for p in out.glob("*.png")}
    assert 1 <= len(done_at_kill) < 8, "the kill must land mid-run for this test to mean anything"

    resumed = run_batch(["s3://erasekit-kill/photos/"], "s3://erasekit-kill/masks/", out,
                        method="patchmatch", seed=3, progress=False)
    assert resumed.counts["failed"] == 0
    assert {Path(r.image).name for r in resumed.records if r.status == "skipped"} == done_at_kill
    run_batch([images], masks, clean, method="patchmatch", seed=3, progress=False)
    assert _outputs(out) == _outputs(clean) and len(_outputs(out)) == 8
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_bench_reads_a_dataset_prefix(s3, tmp_path):
    from erasekit.data.synthetic import generate_synthetic_dataset
    from erasekit.eval.runner import BenchConfig, run_benchmark

    dataset = generate_synthetic_dataset(tmp_path / "ds", 3, size=48, seed=0)
    upload(dataset, "s3://erasekit-bench/scenes")
    common = {"methods": ["telea"], "mask": "object", "metrics": ["psnr"], "warmup": 0, "progress": False}
    local = run_benchmark(BenchConfig(dataset=str(dataset), out=str(tmp_path / "local"), **common))
    remote = run_benchmark(BenchConfig(dataset="s3://erasekit-bench/scenes", out=str(tmp_path / "s3"),
                                       **common))
    assert [r["psnr"] for r in remote.rows] == [r["psnr"] for r in local.rows] and len(remote.rows) == 3
    copy = tmp_path / "s3" / "dataset"
    assert sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file()) == sorted(
        p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file()
    )


def test_s3_mask_listing_pages_once_for_many_masks(s3, monkeypatch):
    """1,001 masks: one listing in two pages (S3 returns at most 1,000 keys a request), and every image's
    mask is then found without another request."""
    from erasekit.objstore import filesystem

    fs, _ = filesystem("s3://erasekit-many/")
    fs.mkdir("erasekit-many")
    fs.pipe({f"erasekit-many/masks/img{i:04d}.png": b"" for i in range(1001)})
    calls = _count_s3_requests(monkeypatch)
    index = MaskIndex.listed("s3://erasekit-many/masks/")
    found = [index.find(f"s3://erasekit-many/photos/img{i:04d}.jpg") for i in range(1001)]
    assert calls == ["list_objects_v2", "list_objects_v2"]
    assert found[1000] == "s3://erasekit-many/masks/img1000.png" and len(set(found)) == 1001

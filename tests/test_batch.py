"""Batch removal: mask matching, failures recorded while the batch goes on, resume after SIGKILL, exit
codes."""

from __future__ import annotations

import fcntl
import json
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

from erasekit import ErasekitError, InvalidInputError
from erasekit.batch import (
    LOCK_NAME,
    PARTIAL_FAILURE_EXIT_CODE,
    REPORT_NAME,
    clean_stale_temps,
    collect_images,
    find_mask,
    read_report,
    run_batch,
)
from erasekit.cli import main

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _crops(count: int, size: int) -> list[tuple[str, np.ndarray]]:
    """``count`` different real-photo crops of ``size``×``size`` (two corners of each bundled colour
    photo)."""
    crops = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        crops.append((f"{name}_a", np.ascontiguousarray(photo[:size, :size])))
        crops.append((f"{name}_b", np.ascontiguousarray(photo[-size:, -size:])))
    return crops[:count]


def _mask(size: int, hole: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    start = (size - hole) // 2
    mask[start : start + hole, start : start + hole] = 255
    return mask


def _write_set(folder: Path, count: int, size: int, hole: int, *, ext: str = ".png") -> tuple[Path, Path]:
    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for name, pixels in _crops(count, size):
        Image.fromarray(pixels).save(images / f"{name}{ext}")
        Image.fromarray(_mask(size, hole)).save(masks / f"{name}.png")
    return images, masks


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()  # a truncated file fails here
        return np.asarray(image.convert("RGB"))


# ---- finding images and masks ------------------------------------------------------------------------------
def test_a_batch_lists_the_mask_folder_once_not_once_per_image(tmp_path, monkeypatch):
    """A folder of a million masks must not be scanned a million times: one os.scandir of the mask folder,
    no glob in it, whatever the number of images; the masks found are the per-image rules' choice."""
    import os

    images, masks = _write_set(tmp_path, 8, 32, 8)
    scans = []
    real_scandir = os.scandir

    def counting_scandir(path="."):
        scans.append(Path(path).resolve())
        return real_scandir(path)

    real_glob = Path.glob

    def glob_elsewhere(self, pattern, **kw):
        assert self.resolve() != masks.resolve(), f"globbed the mask folder for {pattern}"
        return real_glob(self, pattern, **kw)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    monkeypatch.setattr(Path, "glob", glob_elsewhere)
    summary = run_batch([images], masks, tmp_path / "out", method="telea", progress=False)
    assert summary.exit_code == 0 and len(summary.by_status("ok")) == 8
    assert scans.count(masks.resolve()) == 1
    records = read_report(tmp_path / "out" / "batch_report.jsonl")
    assert all(Path(r.mask).name == Path(r.image).stem + ".png" for r in records)


def test_collect_images_from_files_folders_and_globs(tmp_path):
    images, _ = _write_set(tmp_path, 4, 32, 8)
    (images / "notes.txt").write_text("not an image")
    (images / ".photo.png.0123456789ab.tmp").write_bytes(b"half")
    in_folder = collect_images([images])
    assert [p.name for p in in_folder] == sorted(p.name for p in images.glob("*.png"))
    by_glob = collect_images([str(images / "astronaut_*.png"), images / "coffee_a.png", images])
    assert [p.name for p in by_glob[:3]] == ["astronaut_a.png", "astronaut_b.png", "coffee_a.png"]
    assert len(by_glob) == 4  # the folder adds only what was not listed yet
    missing = collect_images([tmp_path / "gone.jpg", str(tmp_path / "none_*.jpg")])
    assert [p.name for p in missing] == ["gone.jpg", "none_*.jpg"]  # kept, so the batch records them


def test_find_mask_rules(tmp_path):
    image = tmp_path / "in" / "photo.jpg"
    image.parent.mkdir()
    image.write_bytes(b"")
    masks = tmp_path / "masks"
    masks.mkdir()
    with pytest.raises(InvalidInputError, match="no mask for 'photo.jpg'.*photo_mask.png"):
        find_mask(image, masks)
    (masks / "photo_mask.bmp").write_bytes(b"")
    assert find_mask(image, masks).name == "photo_mask.bmp"
    (masks / "photo.webp").write_bytes(b"")
    assert find_mask(image, masks).name == "photo.webp"
    (masks / "photo_mask.png").write_bytes(b"")
    assert find_mask(image, masks).name == "photo_mask.png"
    (masks / "photo.png").write_bytes(b"")
    assert find_mask(image, masks).name == "photo.png"
    # Masks beside the images: the image itself is never its own mask.
    beside = tmp_path / "in" / "photo_mask.png"
    beside.write_bytes(b"")
    (tmp_path / "in" / "photo.png").write_bytes(b"")
    assert find_mask(tmp_path / "in" / "photo.png", tmp_path / "in") == beside


def test_clean_stale_temps_removes_only_atomic_write_leftovers(tmp_path):
    leftover = tmp_path / ".photo.png.0123456789ab.tmp"
    leftover.write_bytes(b"half a png")
    keep = [tmp_path / "photo.png", tmp_path / ".hidden", tmp_path / "notes.tmp"]
    for path in keep:
        path.write_bytes(b"x")
    assert clean_stale_temps(tmp_path) == [leftover]
    assert not leftover.exists() and all(p.exists() for p in keep)


# ---- failures are recorded, the batch goes on --------------------------------------------------------------
def test_failures_are_recorded_and_the_batch_goes_on(tmp_path):
    images, masks = _write_set(tmp_path, 4, 64, 16)
    corrupt = images / "broken.png"
    corrupt.write_bytes((images / "astronaut_a.png").read_bytes()[:300])
    Image.fromarray(_mask(64, 16)).save(masks / "broken.png")
    Image.fromarray(_crops(1, 64)[0][1]).save(images / "orphan.png")  # no mask
    Image.fromarray(_crops(1, 64)[0][1]).save(images / "wrongsize.png")
    Image.fromarray(_mask(40, 10)).save(masks / "wrongsize_mask.png")
    out = tmp_path / "out"

    summary = run_batch([images], masks, out, method="telea", progress=False)

    by_name = {Path(r.image).name: r for r in summary.records}
    assert len(by_name) == 7
    assert {n for n, r in by_name.items() if r.status == "ok"} == {
        "astronaut_a.png",
        "astronaut_b.png",
        "coffee_a.png",
        "coffee_b.png",
    }
    assert by_name["broken.png"].error == "InvalidInputError" and "corrupt" in by_name["broken.png"].message
    assert "no mask for 'orphan.png'" in by_name["orphan.png"].message
    assert "40×40" in by_name["wrongsize.png"].message and "64×64" in by_name["wrongsize.png"].message
    for record in by_name.values():
        assert (record.status == "ok") == Path(record.output).exists()
    assert summary.counts == {"ok": 4, "skipped": 0, "failed": 3}
    assert summary.exit_code == PARTIAL_FAILURE_EXIT_CODE
    # The report has one record per image, in processing order, with error class, exit code and timings.
    report = read_report(out / REPORT_NAME)
    assert [r.image for r in report] == [r.image for r in summary.records]
    assert all(r.exit_code == 2 for r in report if r.status == "failed")
    assert all(r.timings["total"] >= r.timings["remove"] > 0 for r in report if r.status == "ok")
    # Outputs change only inside the mask.
    inside = _mask(64, 16) > 0
    for name in ("astronaut_a.png", "coffee_b.png"):
        before, after = _pixels(images / name), _pixels(out / name)
        np.testing.assert_array_equal(after[~inside], before[~inside])
        assert not np.array_equal(after[inside], before[inside])


def test_cli_batch_prints_a_summary_and_exits_5_on_partial_failure(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    images, masks = _write_set(tmp_path, 2, 48, 12)
    Image.fromarray(_crops(1, 48)[0][1]).save(images / "orphan.png")
    code = main(
        ["batch", str(images), "--masks", str(masks), "-o", str(tmp_path / "out"), "--method", "ns",
         "--no-progress"]
    )
    assert code == PARTIAL_FAILURE_EXIT_CODE
    err = capsys.readouterr().err
    assert "batch summary" in err and "failures" in err and "orphan.png" in err


def test_cli_batch_passes_method_options_and_rejects_unknown_ones(tmp_path):
    images, masks = _write_set(tmp_path, 2, 48, 12)
    code = main(
        ["batch", str(images), "--masks", str(masks), "-o", str(tmp_path / "small"), "--method", "telea",
         "-O", "radius=1", "--no-progress"]
    )
    assert code == 0
    code = main(
        ["batch", str(images), "--masks", str(masks), "-o", str(tmp_path / "large"), "--method", "telea",
         "-O", "radius=9", "--no-progress"]
    )
    assert code == 0
    name = min(p.name for p in images.iterdir())
    assert not np.array_equal(_pixels(tmp_path / "small" / name), _pixels(tmp_path / "large" / name))
    bad = main(
        ["batch", str(images), "--masks", str(masks), "-o", str(tmp_path / "bad"), "--method", "telea", "-O",
         "bogus=1", "--no-progress"]
    )
    assert bad == 2  # refused before any image is processed
    assert not any((tmp_path / "bad").glob("*.png"))


def test_every_image_failing_the_same_way_gives_that_error_code(tmp_path):
    images, _ = _write_set(tmp_path, 3, 32, 8)
    empty_masks = tmp_path / "no_masks"
    empty_masks.mkdir()
    summary = run_batch([images], empty_masks, tmp_path / "out", method="telea", progress=False)
    assert summary.counts["failed"] == 3 and summary.exit_code == 2
    assert (
        main(
            ["batch", str(images), "--masks", str(empty_masks), "-o", str(tmp_path / "out"), "--no-progress"]
        )
        == 2
    )


def test_problems_that_stop_the_whole_batch_raise_before_any_work(tmp_path):
    images, masks = _write_set(tmp_path, 1, 32, 8)
    out = tmp_path / "out"
    with pytest.raises(InvalidInputError, match="mask folder"):
        run_batch([images], tmp_path / "nope", out, progress=False)
    with pytest.raises(InvalidInputError, match="no images"):
        run_batch([], masks, out, progress=False)
    with pytest.raises(InvalidInputError, match="does not take option"):
        run_batch([images], masks, out, method="telea", options={"device": "cuda"}, progress=False)
    assert not out.exists()


def test_output_folder_equal_to_input_folder_never_overwrites_inputs(tmp_path):
    images, masks = _write_set(tmp_path, 2, 32, 8)
    before = {p: p.read_bytes() for p in images.iterdir()}
    # Refused before any work (issue 19): no image is touched and no report or lock lands among the photos.
    with pytest.raises(InvalidInputError, match="holds 2 of the input photos.*--in-place"):
        run_batch([images], masks, images, method="telea", skip_existing=False, progress=False)
    assert {p: p.read_bytes() for p in images.iterdir()} == before


def test_a_second_batch_into_the_same_folder_is_refused(tmp_path):
    images, masks = _write_set(tmp_path, 1, 32, 8)
    out = tmp_path / "out"
    out.mkdir()
    with open(out / LOCK_NAME, "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(ErasekitError, match="another erasekit batch"):
            run_batch([images], masks, out, method="telea", progress=False)


def test_overwrite_redoes_and_skip_existing_skips(tmp_path):
    images, masks = _write_set(tmp_path, 2, 32, 8)
    out = tmp_path / "out"
    run_batch([images], masks, out, method="telea", progress=False)
    again = run_batch([images], masks, out, method="telea", progress=False)
    assert again.counts == {"ok": 0, "skipped": 2, "failed": 0} and again.exit_code == 0
    redo = run_batch([images], masks, out, method="telea", skip_existing=False, progress=False)
    assert redo.counts == {"ok": 2, "skipped": 0, "failed": 0}
    assert len(read_report(out / REPORT_NAME)) == 2  # the report describes the latest run


# ---- resume after the process is killed --------------------------------------------------------------------
def test_resume_after_sigkill_loses_and_corrupts_nothing(tmp_path):
    images, masks = _write_set(tmp_path, 8, 112, 28)
    out, clean = tmp_path / "out", tmp_path / "clean"
    command = [sys.executable, "-m", "erasekit", "batch", str(images), "--masks", str(masks), "-o", str(out),
               "--method", "patchmatch", "--seed", "3", "--no-progress"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(p.suffix == ".png" for p in out.glob("*.png")):
            assert proc.poll() is None, "the batch ended before writing its first output"
            assert time.monotonic() < deadline, "no output after 120 s"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done_at_kill = sorted(p.name for p in out.glob("*.png"))
    assert 1 <= len(done_at_kill) < 8, "the kill must land mid-run for this test to mean anything"
    # Whatever the kill interrupted, a write in flight also leaves a temp file like this one behind.
    (out / ".rocket_b.png.00000000abcd.tmp").write_bytes(b"\x89PNG half")
    # The killed run's report holds whole lines only for the images it finished.
    assert all(r.status == "ok" for r in read_report(out / REPORT_NAME))

    resumed = run_batch([images], masks, out, method="patchmatch", seed=3, progress=False)
    assert resumed.counts["failed"] == 0
    assert {Path(r.image).name for r in resumed.records if r.status == "skipped"} == set(done_at_kill)
    assert resumed.stale_temps_removed >= 1
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))

    run_batch([images], masks, clean, method="patchmatch", seed=3, progress=False)
    names = sorted(p.name for p in images.iterdir())
    assert sorted(p.name for p in out.glob("*.png")) == names
    for name in names:
        np.testing.assert_array_equal(_pixels(out / name), _pixels(clean / name), err_msg=name)

    # Idempotent: a third run skips everything and touches no output.
    stamps = {name: (out / name).stat().st_mtime_ns for name in names}
    third = run_batch([images], masks, out, method="patchmatch", seed=3, progress=False)
    assert third.counts == {"ok": 0, "skipped": 8, "failed": 0} and third.exit_code == 0
    assert {name: (out / name).stat().st_mtime_ns for name in names} == stamps
    assert [json.loads(line)["status"] for line in (out / REPORT_NAME).read_text().splitlines()] == [
        "skipped"
    ] * 8


def test_outputs_keep_the_input_format_and_masks_may_use_the_mask_suffix(tmp_path):
    images, masks = _write_set(tmp_path, 2, 48, 12, ext=".jpg")
    for mask in masks.iterdir():  # photo.jpg <- photo_mask.png
        mask.rename(mask.with_name(f"{mask.stem}_mask.png"))
    summary = run_batch([str(images / "*.jpg")], masks, tmp_path / "out", method="telea", progress=False)
    assert summary.counts["ok"] == 2
    for record in summary.records:
        assert Path(record.mask).name.endswith("_mask.png")
        with Image.open(record.output) as written:
            assert written.format == "JPEG" and written.size == (48, 48)


def test_batch_options_are_typed_once_and_out_of_range_is_exit_2_before_any_image(tmp_path, capsys):
    images, masks = _write_set(tmp_path, 2, 48, 12)
    typed = run_batch(
        [images], masks, tmp_path / "typed", method="telea", options={"radius": 3}, progress=False
    )
    text = run_batch(
        [images], masks, tmp_path / "text", method="telea", options={"radius": "3"}, progress=False
    )
    assert typed.exit_code == text.exit_code == 0
    for name in sorted(p.name for p in images.iterdir()):
        assert np.array_equal(_pixels(tmp_path / "typed" / name), _pixels(tmp_path / "text" / name))
    capsys.readouterr()
    code = main(
        ["batch", str(images), "--masks", str(masks), "-o", str(tmp_path / "bad"), "--method", "telea", "-O",
         "radius=65", "--no-progress"]
    )
    assert code == 2
    assert "telea option radius must be an integer in [1, 64], got '65'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before the output folder is even created

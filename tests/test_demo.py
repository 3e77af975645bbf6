"""The demo: bundled photos, the masks we drew, the files it writes and what changed in them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import erasekit
from erasekit import InvalidInputError, masks
from erasekit.demo import DEMO_DILATE, demo_photos, mask_overlay, run_demo, select_photos


def _read(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_every_demo_mask_lies_inside_its_photo_and_marks_a_real_object():
    photos = demo_photos()
    assert [p.name for p in photos] == ["astronaut", "coffee", "rocket", "camera"]
    for photo in photos:
        image = photo.pixels()
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        h, w = image.shape[:2]
        for obj in photo.objects:
            for polygon in obj.polygons:
                xs, ys = zip(*polygon)
                assert 0 <= min(xs) and max(xs) < w and 0 <= min(ys) and max(ys) < h, (photo.name, obj.name)
        mask = photo.mask((h, w))
        assert 0.005 < mask.mean() < 0.2, photo.name  # an object, not a speck and not half the photo
        # The object differs from its surroundings: otherwise the mask would not be on it.
        ring = (masks.dilate(mask, 12) > 0) & ~(mask > 0)
        inside_mean, ring_mean = image[mask > 0].mean(axis=0), image[ring].mean(axis=0)
        assert np.abs(inside_mean - ring_mean).max() > 8, photo.name


def test_run_demo_writes_the_files_and_changes_only_the_masked_regions(tmp_path):
    seen = []
    records = run_demo(tmp_path, method="telea", report=seen.append)
    names = [p.name for p in demo_photos()]
    assert [r.photo for r in records] == names == [r.photo for r in seen]
    for record in records:
        files = {kind: path.name for kind, path in record.files.items()}
        assert files == {kind: f"{record.photo}_{kind}.png" for kind in ("input", "mask", "result")}
        before, after = _read(record.files["input"]), _read(record.files["result"])
        written_mask = np.asarray(Image.open(record.files["mask"])) > 0
        photo = select_photos([record.photo])[0]
        np.testing.assert_array_equal(before, photo.pixels())
        np.testing.assert_array_equal(written_mask, photo.mask(before.shape[:2]) > 0)
        region = masks.dilate(written_mask.astype(np.float32), DEMO_DILATE) > 0
        np.testing.assert_array_equal(after[~region], before[~region])
        changed = np.abs(after[region].astype(int) - before[region]).mean()
        assert changed > 10, record.photo  # the object is gone, not just touched
        assert record.method == "telea" and record.seconds > 0
    sheet = _read(tmp_path / "comparison.png")
    assert sheet.shape[0] > 300 * len(records) and sheet.shape[1] > 3 * 300
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["photo"] for s in summary] == names and all(s["method"] == "telea" for s in summary)
    assert not list(tmp_path.glob(".*.tmp"))


def test_default_method_is_the_weight_free_patchmatch_on_a_subset(tmp_path):
    (record,) = run_demo(tmp_path, photos=["camera"])
    assert record.method == "patchmatch"
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "camera_input.png", "camera_mask.png", "camera_result.png", "comparison.png"]


def test_unknown_photo_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidInputError, match="unknown demo photo.*choose from astronaut"):
        run_demo(tmp_path, photos=["moon"])


def test_mask_overlay_tints_only_the_mask():
    image = np.full((20, 30, 3), 100, np.uint8)
    mask = np.zeros((20, 30), np.float32)
    mask[5:15, 10:20] = 1
    overlay = mask_overlay(image, mask)
    assert (overlay[7:13, 12:18, 0] > 150).all()  # tinted red inside
    outline = masks.dilate(mask, 1) > 0
    np.testing.assert_array_equal(overlay[~outline], image[~outline])


def test_coffee_keeps_the_cup_out_of_patchmatchs_sampling_area_and_touches_nothing_else(tmp_path):
    """The spoon's handle lies along the cup's white rim: PatchMatch copied the rim into it as a white block.
    The photo's keep_out polygon (the cup) takes the rim out of the sampling area, so no filled pixel is
    porcelain-white, while the same fill without it has a block of them."""
    (record,) = run_demo(tmp_path, photos=["coffee"])
    assert record.method == "patchmatch"
    photo = select_photos(["coffee"])[0]
    before, after = _read(record.files["input"]), _read(record.files["result"])
    region = masks.dilate(photo.mask(before.shape[:2]), DEMO_DILATE) > 0
    np.testing.assert_array_equal(after[~region], before[~region])

    def porcelain(pixels: np.ndarray) -> int:  # bright, unsaturated pixels inside the filled region
        rgb = pixels[region].astype(int)
        return int(((rgb.min(axis=1) > 170) & (rgb.max(axis=1) - rgb.min(axis=1) < 40)).sum())

    plain = erasekit.remove(before, photo.mask(before.shape[:2]), method="patchmatch", seed=0,
                            dilate=DEMO_DILATE, hd_strategy="original").image
    assert porcelain(plain) > 300  # the white block the keep-out exists for
    assert porcelain(after) * 50 < porcelain(plain)  # a few specular highlights of the saucer at most

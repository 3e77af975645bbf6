"""EraDiff's pair builder (arXiv:2503.07026 Sec. 4.1): x_ori is kept exactly outside the pasted mask, the
paste lands on the background, transforms against numpy, resume equals an uninterrupted run, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("cv2")

from erasekit import io
from erasekit.cli import main
from erasekit.data.eradiff_pairs import (
    MaskFolderPrimary,
    PairConfig,
    build_eradiff_pairs,
    make_segmenter,
    transformed_object,
)
from erasekit.data.paired import PairedDataset
from erasekit.types import InvalidInputError


def photo(seed: int, height: int = 64, width: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """A smooth textured background with one coloured ellipse in the middle (the primary object)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    base = rng.integers(60, 200, 3)
    image = base + 30 * np.sin(xx[..., None] / (5 + seed) + yy[..., None] / 7 + rng.random(3) * 6)
    cy, cx = height / 2 + rng.integers(-4, 5), width / 2 + rng.integers(-4, 5)
    obj = ((yy - cy) / 12) ** 2 + ((xx - cx) / 16) ** 2 <= 1
    image[obj] = rng.integers(0, 256, 3)
    return np.clip(image, 0, 255).astype(np.uint8), obj


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    truth = {}
    for i in range(3):
        image, obj = photo(i)
        io.write_image(root / "images" / f"p{i}.png", image)
        io.write_mask(root / "masks" / f"p{i}.png", obj.astype(np.float32))
        truth[f"p{i}.png"] = (image, obj)
    return root, truth


def check_pairs(out, truth, *, same_image: bool):
    dataset = PairedDataset(out)
    assert len(dataset) > 0
    for record, sample in zip(dataset.records, dataset, strict=True):
        meta = record.meta
        x_ori, source_obj = truth[meta["target"]][0], truth[meta["source"]][1]
        mask = sample.object_mask > 0.5
        assert mask.any() and np.array_equal(sample.background, x_ori)
        assert np.array_equal(sample.image[~mask], x_ori[~mask])  # exactly x_ori outside the pasted mask
        assert (sample.image[mask] != x_ori[mask]).any()
        assert np.array_equal(sample.effect_mask, sample.object_mask)
        if same_image:
            assert meta["source"] == meta["target"]
        else:
            assert meta["source"] != meta["target"]
        assert not (mask & truth[meta["target"]][1]).any()  # on the background region (max_overlap 0)
        assert mask.sum() <= 1.2 * source_obj.sum() * meta["scale"] ** 2 + 4 * (source_obj.sum() ** 0.5)


@pytest.mark.parametrize(("segmenter", "target"),
                         [("grabcut", "same"), ("masks", "same"), ("masks", "other")])
def test_pairs_keep_x_ori_outside_the_pasted_mask(photos, tmp_path, segmenter, target):
    root, truth = photos
    spec = f"masks:{root / 'masks'}" if segmenter == "masks" else "grabcut"
    stats = build_eradiff_pairs([root / "images"], tmp_path / "out", segmenter=make_segmenter(spec),
                                config=PairConfig(copies=2, target=target), seed=3, progress=False,
                                debug_sheets=True)
    assert stats.written + sum(stats.skipped.values()) == 6 and stats.written >= 4
    check_pairs(tmp_path / "out", truth, same_image=target == "same")
    sheets = sorted((tmp_path / "out" / "debug").glob("*.png"))
    assert len(sheets) == stats.written
    assert io.read_image(sheets[0]).pixels.shape == (64, 4 * 80 + 3 * 4, 3)


def test_resume_equals_an_uninterrupted_run(photos, tmp_path):
    root, _ = photos
    config = PairConfig(copies=2, target="either")
    segmenter = MaskFolderPrimary(root / "masks")
    build_eradiff_pairs([root / "images"], tmp_path / "full", segmenter=segmenter, config=config, seed=1,
                        progress=False)

    class Crashing:  # fails on the third photo, after the first two photos' pairs are written
        name = "masks"

        def primary(self, image, path):
            if path.name == "p2.png":
                raise RuntimeError("crash")
            return segmenter.primary(image, path)

    with pytest.raises(RuntimeError, match="crash"):
        build_eradiff_pairs([root / "images"], tmp_path / "resumed", segmenter=Crashing(), config=config,
                            seed=1, progress=False)
    stats = build_eradiff_pairs([root / "images"], tmp_path / "resumed", segmenter=segmenter, config=config,
                                seed=1, progress=False)
    assert stats.existing >= 3
    full = (tmp_path / "full" / "manifest.jsonl").read_text().splitlines()
    resumed = (tmp_path / "resumed" / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in full] == [json.loads(line) for line in resumed]
    for path in (tmp_path / "full").rglob("*.png"):
        assert path.read_bytes() == (tmp_path / "resumed" / path.relative_to(tmp_path / "full")).read_bytes()


def test_transforms_against_numpy():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    mask = np.zeros((30, 40), bool)
    mask[5:20, 8:33] = True
    mask[5, 8] = False
    crop, alpha_crop = image[5:20, 8:33].astype(np.float32), mask[5:20, 8:33].astype(np.float32)
    rgb, alpha = transformed_object(image, mask, angle=0.0, scale=1.0, flip=False)
    assert np.array_equal(alpha, alpha_crop) and np.allclose(rgb[alpha > 0], crop[alpha_crop > 0], atol=1e-3)
    rgb, alpha = transformed_object(image, mask, angle=0.0, scale=1.0, flip=True)
    assert np.array_equal(alpha, alpha_crop[:, ::-1])
    rgb, alpha = transformed_object(image, mask, angle=90.0, scale=1.0, flip=False)  # counter-clockwise
    assert np.array_equal(alpha, np.rot90(alpha_crop))
    assert np.allclose(rgb[alpha > 0], np.rot90(crop)[alpha > 0], atol=1e-3)
    _, half = transformed_object(image, mask, angle=0.0, scale=0.5, flip=False)
    assert abs(float(half.sum()) - 0.25 * float(alpha_crop.sum())) < 0.1 * float(alpha_crop.sum())


def test_cli_end_to_end_and_bad_input(photos, tmp_path):
    root, truth = photos
    out = tmp_path / "pairs"
    argv = ["data", "eradiff-pairs", str(root / "images"), "-o", str(out), "--segmenter",
            f"masks:{root / 'masks'}", "--seed", "0", "--max-rotation", "10", "--debug-sheets"]
    assert main(argv) == 0
    check_pairs(out, truth, same_image=True)
    assert main(argv) == 0  # a re-run resumes: nothing new
    assert len(PairedDataset(out)) == len(list((out / "debug").glob("*.png")))
    assert main(["data", "eradiff-pairs", str(root / "images"), "-o", str(out), "--segmenter",
                 f"masks:{tmp_path / 'nowhere'}"]) == 2
    with pytest.raises(InvalidInputError, match="scale"):
        PairConfig(scale=(0.0, 1.0))
    with pytest.raises(InvalidInputError, match="no such image"):
        build_eradiff_pairs([tmp_path / "nowhere.png"], out, segmenter=MaskFolderPrimary(root / "masks"))

"""Synthetic effect scenes: determinism, exact background outside the effect mask, physically sensible
effects."""

from __future__ import annotations

import json

import numpy as np
import pytest

from erasekit.data import PairedDataset
from erasekit.data.synthetic import (
    SceneConfig,
    generate_synthetic_dataset,
    make_scene,
    scene_rng,
    write_synthetic_triplets,
)

SCENES = [make_scene(scene_rng(0, i), SceneConfig(size=64)) for i in range(24)]


def test_same_seed_same_scene_and_different_seeds_differ():
    a = make_scene(scene_rng(5, 3), SceneConfig(size=48))
    b = make_scene(scene_rng(5, 3), SceneConfig(size=48))
    c = make_scene(scene_rng(6, 3), SceneConfig(size=48))
    for key in ("shot", "background", "object_mask", "effect_mask"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.shot, c.shot)


@pytest.mark.parametrize("scene", SCENES, ids=lambda s: s.meta["effects"])
def test_shot_equals_background_outside_effect_mask(scene):
    outside = scene.effect_mask == 0
    np.testing.assert_array_equal(scene.shot[outside], scene.background[outside])
    assert np.all(scene.effect_mask >= scene.object_mask)  # object ⊆ effect
    # every pixel the scene changed is in the effect mask, and the object pixels differ from nothing we assume
    changed = np.any(scene.shot != scene.background, axis=2)
    assert np.all(scene.effect_mask[changed] == 1)
    assert scene.phase2 == (scene.effect_ratio >= 0.25)


def test_shadow_pixels_are_darker():
    shadowed = [s for s in SCENES if s.meta["effects"] in ("shadow", "both")]
    assert shadowed
    for s in shadowed:
        region = (s.shadow_alpha > 0) & (s.reflection_alpha == 0) & (s.object_mask == 0)
        assert region.any()
        shot, bg = s.shot[region].astype(int), s.background[region].astype(int)
        assert np.all(shot <= bg)  # multiplicative darkening never brightens
        assert (shot.sum(axis=1) < bg.sum(axis=1)).mean() > 0.5  # and most of them visibly darker


def test_reflection_is_a_mirror_below_the_object():
    reflected = [s for s in SCENES if s.meta["effects"] in ("reflection", "both")]
    assert reflected
    for s in reflected:
        ys = np.nonzero(s.reflection_alpha.any(axis=1))[0]
        assert len(ys) > 0 and ys.min() > s.object_box.bottom - 1  # entirely on the floor below the base
        region = s.reflection_alpha > 0
        assert np.any(s.shot[region] != s.background[region])
        # mirrored footprint: the first reflected row is the object's last row
        base = s.object_box.bottom - 1
        np.testing.assert_array_equal(s.reflection_alpha[base + 1] > 0, s.object_mask[base] > 0)


def test_none_effect_scene_has_effect_mask_equal_object():
    cfg = SceneConfig(size=48, effects={"none": 1.0})
    s = make_scene(scene_rng(0, 0), cfg)
    np.testing.assert_array_equal(s.effect_mask, s.object_mask)
    assert not s.phase2


def test_dataset_bytes_are_reproducible_and_resumable(tmp_path):
    a = generate_synthetic_dataset(tmp_path / "a", 4, size=48, seed=7)
    b = tmp_path / "b"
    generate_synthetic_dataset(b, 2, size=48, seed=7)
    generate_synthetic_dataset(b, 4, size=48, seed=7)  # resumes: adds 2 and 3
    for rel in (
        "manifest.jsonl",
        "images/000003.png",
        "backgrounds/000001.png",
        "effect_masks/000002.png",
        "object_masks/000000.png",
    ):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    ds = PairedDataset(a)
    assert len(ds) == 4
    sample = ds[2]
    truth = make_scene(scene_rng(7, 2), SceneConfig(size=48))
    np.testing.assert_array_equal(sample.image, truth.shot)
    np.testing.assert_array_equal(sample.effect_mask, truth.effect_mask)
    assert sample.phase2 == truth.phase2 and sample.meta["instruction"].startswith("Remove the ")


def test_triplets_have_add_and_remove_orders(tmp_path):
    manifest = write_synthetic_triplets(tmp_path, 2, size=48, seed=1)
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert [x["id"] for x in lines] == [
        "scene00000-add",
        "scene00000-remove",
        "scene00001-add",
        "scene00001-remove",
    ]
    add, remove = lines[0], lines[1]
    assert add["instruction"].startswith("Add a ") and remove["instruction"].startswith("Remove the ")
    assert add["original"] == remove["edited"] and add["edited"] == remove["original"]
    assert (tmp_path / add["truth"]["effect_mask"]).is_file()


def test_cli_synth_writes_a_paired_dataset(tmp_path):
    from erasekit.cli import main

    assert main(["synth", "-o", str(tmp_path / "ds"), "-n", "2", "--size", "32", "--seed", "4"]) == 0
    ds = PairedDataset(tmp_path / "ds")
    truth = make_scene(scene_rng(4, 1), SceneConfig(size=32))
    np.testing.assert_array_equal(ds[1].background, truth.background)
    assert (
        main(["synth", "-o", str(tmp_path / "ds"), "-n", "2", "--size", "8"]) == 2
    )  # too small: clear error

"""Paired dataset format: round trip, validation errors, crash-safe resume, resize rules, consistent
augmentation, readers for CORNE and RORD-style folders, Phase II conditioning sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from erasekit import io
from erasekit.data import (
    FLUX_RESIZE,
    SDXL_RESIZE,
    PairedAugment,
    PairedDataset,
    PairedDatasetWriter,
    ResizeRule,
)
from erasekit.data.loader import PairedTorchDataset, collate_paired
from erasekit.data.readers import effect_ratio, import_samples, iter_corne, iter_rord
from erasekit.types import InvalidInputError


def _sample(rng, h=24, w=32):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    background = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    obj = np.zeros((h, w), np.float32)
    obj[5:12, 8:16] = 1
    eff = obj.copy()
    eff[12:18, 8:20] = 1
    return image, background, obj, eff


def _write(root, n=3, seed=0):
    rng = np.random.default_rng(seed)
    truth = {}
    with PairedDatasetWriter(root) as writer:
        for i in range(n):
            image, background, obj, eff = _sample(rng)
            writer.add(f"s{i}", image, background, obj, eff, phase2=bool(i % 2), meta={"source": "test"})
            truth[f"s{i}"] = (image, background, obj, eff)
    return truth


def test_round_trip_is_exact(tmp_path):
    truth = _write(tmp_path)
    ds = PairedDataset(tmp_path)
    assert len(ds) == 3 and ds.ids == ["s0", "s1", "s2"]
    for sample in ds:
        image, background, obj, eff = truth[sample.id]
        np.testing.assert_array_equal(sample.image, image)
        np.testing.assert_array_equal(sample.background, background)
        np.testing.assert_array_equal(sample.object_mask, obj)
        np.testing.assert_array_equal(sample.effect_mask, eff)
        assert sample.object_mask.dtype == np.float32 and sample.meta == {"source": "test"}
    assert ds["s1"].phase2 is True and ds[0].phase2 is False
    assert ds.phase2_ids() == ["s1"]
    ds.validate()
    # paths in the manifest are relative
    line = json.loads((tmp_path / "manifest.jsonl").read_text().splitlines()[0])
    assert line["image"] == "images/s0.png" and line["effect_mask"] == "effect_masks/s0.png"


def test_writer_resumes_and_refuses_duplicates(tmp_path):
    _write(tmp_path, n=2)
    writer = PairedDatasetWriter(tmp_path)
    assert "s0" in writer and "s1" in writer and len(writer) == 2
    image, background, obj, eff = _sample(np.random.default_rng(1))
    with pytest.raises(InvalidInputError, match="already"):
        writer.add("s0", image, background, obj, eff, phase2=False)


def test_interrupted_append_is_ignored_and_repaired(tmp_path):
    _write(tmp_path, n=2)
    manifest = tmp_path / "manifest.jsonl"
    with open(manifest, "a") as handle:
        handle.write('{"id": "s2", "image": "ima')  # a crash in the middle of an append
    with pytest.warns(UserWarning, match="incomplete"):
        assert len(PairedDataset(tmp_path)) == 2
    writer = PairedDatasetWriter(tmp_path)
    assert "s2" not in writer
    image, background, obj, eff = _sample(np.random.default_rng(2))
    writer.add("s2", image, background, obj, eff, phase2=True)
    assert PairedDataset(tmp_path).ids == ["s0", "s1", "s2"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("effect_mask"), "missing field"),
        (lambda r: r.update(image="images/nope.png"), "does not exist"),
        (lambda r: r.update(image="/etc/passwd"), "inside the dataset"),
        (lambda r: r.update(phase2="yes"), "phase2"),
        (lambda r: r.update(id="../x"), "file name"),
    ],
)
def test_manifest_errors_are_clear(tmp_path, mutate, message):
    _write(tmp_path, n=1)
    manifest = tmp_path / "manifest.jsonl"
    record = json.loads(manifest.read_text())
    mutate(record)
    manifest.write_text(json.dumps(record) + "\n")
    with pytest.raises(InvalidInputError, match=message):
        PairedDataset(tmp_path)


def test_bad_json_duplicate_and_missing_manifest(tmp_path):
    with pytest.raises(InvalidInputError, match="not a paired dataset"):
        PairedDataset(tmp_path)
    _write(tmp_path, n=1)
    manifest = tmp_path / "manifest.jsonl"
    line = manifest.read_text()
    manifest.write_text(line + line)
    with pytest.raises(InvalidInputError, match="duplicate id 's0'"):
        PairedDataset(tmp_path)
    manifest.write_text(line + "{not json\n")
    with pytest.raises(InvalidInputError, match="line 2: not valid JSON"):
        PairedDataset(tmp_path)


def test_size_mismatch_is_reported(tmp_path):
    _write(tmp_path, n=1)
    io.write_mask(tmp_path / "effect_masks" / "s0.png", np.zeros((10, 10), np.float32))
    ds = PairedDataset(tmp_path)
    with pytest.raises(InvalidInputError, match="sizes differ"):
        ds.validate()
    with pytest.raises(InvalidInputError, match="does not match image size"):
        ds[0]


def test_jpeg_mask_rejected(tmp_path):
    _write(tmp_path, n=1)
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(tmp_path / "effect_masks" / "bad.jpg")
    manifest = tmp_path / "manifest.jsonl"
    record = json.loads(manifest.read_text())
    record["effect_mask"] = "effect_masks/bad.jpg"
    manifest.write_text(json.dumps(record) + "\n")
    with pytest.raises(InvalidInputError, match="8-bit PNG"):
        PairedDataset(tmp_path).validate()


@pytest.mark.parametrize(
    "rule, hw, expected",
    [
        (SDXL_RESIZE, (300, 451), (512, 784)),  # 451·512/300 = 769.7 → up to 784
        (SDXL_RESIZE, (1024, 768), (688, 512)),  # 1024·512/768 = 682.7 → 688
        (SDXL_RESIZE, (512, 512), (512, 512)),
        (SDXL_RESIZE, (300, 181), (848, 512)),  # int(300·512/181) = 848, not ceil(848.6) → 864
        (FLUX_RESIZE, (1500, 2000), (1504, 2000)),  # FLUX trains at the native size, rounded up to 16
        (FLUX_RESIZE, (300, 451), (304, 464)),
    ],
)
def test_resize_rules(rule, hw, expected):
    assert rule.size(*hw) == expected
    h, w = rule.size(*hw)
    assert h % 16 == 0 and w % 16 == 0


def test_custom_rule_and_bad_rule():
    assert ResizeRule(side="long", target=64, multiple=8, rounding="down").size(100, 50) == (64, 32)
    with pytest.raises(InvalidInputError):
        ResizeRule(side="diag", target=64)


def test_augmentation_is_consistent_and_seeded(tmp_path):
    _write(tmp_path, n=1)
    ds = PairedDataset(tmp_path)
    # Make every array the same picture (in different encodings) so alignment is checkable after the
    # transform.
    base = ds[0]
    marker = np.zeros((24, 32), np.float32)
    marker[3:9, 2:7] = 1
    sample = type(base)(
        base.id,
        (marker[..., None] * 255).repeat(3, 2).astype(np.uint8),
        (marker[..., None] * 200).repeat(3, 2).astype(np.uint8),
        marker.copy(),
        marker.copy(),
        False,
        {},
    )
    aug = PairedAugment(flip_p=0.5, crop_scale=(0.6, 0.9), keep_object=True)
    flips = set()
    for seed in range(12):
        out = aug(sample, np.random.default_rng(seed))
        ref = out.object_mask > 0
        np.testing.assert_array_equal(out.image[..., 0] > 0, ref)
        np.testing.assert_array_equal(out.background[..., 1] > 0, ref)
        np.testing.assert_array_equal(out.effect_mask > 0, ref)
        assert ref.sum() == marker.sum()  # keep_object: the crop never cuts the object
        flips.add(bool(np.argmax(ref.any(axis=0)) > out.image.shape[1] / 2))
        again = aug(sample, np.random.default_rng(seed))
        np.testing.assert_array_equal(again.image, out.image)
    assert flips == {True, False}


def test_torch_dataset_shapes_ranges_and_determinism(tmp_path):
    _write(tmp_path, n=3)
    rule = ResizeRule(side="short", target=32, multiple=16, rounding="up")
    tds = PairedTorchDataset(tmp_path, resize=rule, augment=PairedAugment(crop_scale=(0.7, 1.0)), seed=3)
    a, b = tds[1], tds[1]
    assert a["image"].shape[0] == 3 and a["image"].shape[1] % 16 == 0 and a["image"].shape[2] % 16 == 0
    assert a["image"].min() >= -1 and a["image"].max() <= 1
    assert set(a["effect_mask"].unique().tolist()) <= {0.0, 1.0}
    assert all((a[k] == b[k]).all() for k in ("image", "background", "object_mask", "effect_mask"))
    tds.set_epoch(1)
    tds2 = PairedTorchDataset(tmp_path, resize=rule, augment=None, phase2_only=True)
    assert len(tds2) == 1 and bool(tds2[0]["phase2"])
    plain = PairedTorchDataset(tmp_path, resize=ResizeRule(side="short", target=48))
    batch = collate_paired([plain[0], plain[2]])
    assert batch["image"].shape == (2, 3, 48, 64) and batch["id"] == ["s0", "s2"]


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_corne_reader(tmp_path):
    rng = np.random.default_rng(0)
    for stem in ("000000", "000001"):
        image, background, obj, eff = _sample(rng)
        _save(tmp_path / "shot" / f"{stem}.png", image)
        _save(tmp_path / "bg" / f"{stem}.png", background)
        _save(tmp_path / "masks" / f"mask_{stem}.png", (eff * 255).astype(np.uint8))
    _save(tmp_path / "mask_sam" / "000001.png", (obj * 255).astype(np.uint8))
    (tmp_path / "prompts.json").write_text(json.dumps({"000000": "Add a cup"}))
    samples = list(iter_corne(tmp_path))
    assert [s.id for s in samples] == ["000000", "000001"]
    assert samples[0].meta["instruction"] == "Add a cup" and not samples[0].phase2
    np.testing.assert_array_equal(samples[0].object_mask, samples[0].effect_mask)
    assert samples[1].phase2 == (effect_ratio(samples[1].effect_mask, samples[1].object_mask) >= 0.25)
    assert import_samples(iter(samples), tmp_path / "out") == 2
    assert import_samples(iter(samples), tmp_path / "out") == 0  # resumable
    assert len(PairedDataset(tmp_path / "out")) == 2


def test_rord_reader_and_missing_pair(tmp_path):
    rng = np.random.default_rng(0)
    image, background, obj, _ = _sample(rng)
    _save(tmp_path / "img" / "a.jpg", image)
    _save(tmp_path / "gt" / "a.jpg", background)
    _save(tmp_path / "multi_mask" / "a.png", (obj * 255).astype(np.uint8))
    (sample,) = list(iter_rord(tmp_path))
    np.testing.assert_array_equal(sample.effect_mask, obj)
    assert sample.phase2 is False
    _save(tmp_path / "img" / "b.jpg", image)
    with pytest.raises(InvalidInputError, match="'b' has no background or mask"):
        list(iter_rord(tmp_path))


# ---- Phase II incomplete-mask conditioning -----------------------------------------------------------------
def test_conditioning_mode_frequencies_match_the_authors():
    from erasekit.methods.osor.train.conditioning import IncompleteMaskSampler

    sampler = IncompleteMaskSampler(seed=0)
    n = 20000
    draws = [sampler.sample_mode() for _ in range(n)]
    expected = {"shrink": 0.35, "expand": 0.2, "holes": 0.1, "shift": 0.05, "object_core": 0.3}
    for mode, p in expected.items():
        assert abs(draws.count(mode) / n - p) < 0.015, mode  # > 4 binomial standard deviations


def _relation(out, effect, obj):
    if np.array_equal(out, obj):
        return "object_core"
    inside = np.all(out <= effect)
    if inside and out.sum() < effect.sum():
        return "smaller"
    if np.all(out >= effect) and out.sum() > effect.sum():
        return "expand"
    return "shift"


def test_a_batch_shares_one_mode():
    from erasekit.methods.osor.train.conditioning import IncompleteMaskSampler

    expected_relation = {
        "shrink": "smaller",
        "holes": "smaller",
        "expand": "expand",
        "shift": "shift",
        "object_core": "object_core",
    }
    effects, objects = [], []
    for k in range(4):  # large enough that the authors' holes (seed p = 0.0005) always land
        e = np.zeros((400, 400), np.float32)
        e[80 + k : 300, 60 : 320 - k] = 1
        o = np.zeros_like(e)
        o[120:200, 100:200] = 1
        effects.append(e)
        objects.append(o)
    sampler = IncompleteMaskSampler(seed=1)
    seen = set()
    for _ in range(60):
        mode, masks = sampler.condition(effects, objects)
        seen.add(mode)
        assert {_relation(m, e, o) for m, e, o in zip(masks, effects, objects)} == {expected_relation[mode]}
    assert seen == set(expected_relation)
    # a sample without an object-core mask is shrunk when the batch draws object_core; the others keep it
    core_only = IncompleteMaskSampler(probabilities={"object_core": 1.0}, seed=1)
    mode, masks = core_only.condition(effects, objects[:3] + [None])
    assert mode == "object_core"
    relations = [_relation(m, e, o) for m, e, o in zip(masks, effects, objects)]
    assert relations == ["object_core"] * 3 + ["smaller"]


def test_conditioning_on_torch_batches(tmp_path):
    from erasekit.methods.osor.train.conditioning import IncompleteMaskSampler

    _write(tmp_path, n=2)
    plain = PairedTorchDataset(tmp_path)
    batch = collate_paired([plain[0], plain[1]])
    mode, cond = IncompleteMaskSampler(probabilities={"object_core": 1.0}, seed=0).condition_batch(batch)
    assert mode == "object_core" and cond.shape == batch["object_mask"].shape
    assert bool((cond == batch["object_mask"]).all())
    with pytest.raises(InvalidInputError, match="unknown conditioning mode"):
        IncompleteMaskSampler(probabilities={"blur": 1.0})


def test_conditioning_with_an_external_generator_is_reproducible():
    from erasekit.methods.osor.train.conditioning import IncompleteMaskSampler

    effect = [np.pad(np.ones((10, 12), np.float32), 6)]
    sampler = IncompleteMaskSampler(seed=0)
    a = [sampler.condition(effect, rng=np.random.default_rng([3, k])) for k in range(6)]
    b = [sampler.condition(effect, rng=np.random.default_rng([3, k])) for k in range(6)]
    assert [m for m, _ in a] == [m for m, _ in b]
    assert all(np.array_equal(x[1][0], y[1][0]) for x, y in zip(a, b))

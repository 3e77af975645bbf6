"""Soft mask values survive the paired dataset, OSOR's training batches and the benchmark (OSOR fidelity
issue, item 11: the authors read masks ``/255`` and resize them NEAREST); everything else keeps binary masks.

References: Pillow's own decode of the stored files and its NEAREST resize, ``io.read_mask`` (the binary rule
every reader applied before) and ``io.write_mask`` of that binary mask (what the writer stored before).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from erasekit import io
from erasekit.data import PairedDataset, PairedDatasetWriter
from erasekit.data.loader import PairedTorchDataset, collate_paired
from erasekit.data.paired import binary_view, read_soft_mask
from erasekit.data.readers import import_samples, iter_corne, iter_rord
from erasekit.types import InvalidInputError

H, W = 64, 96


def _soft_masks() -> tuple[np.ndarray, np.ndarray]:
    """uint8 masks: an object core with an anti-aliased ramp (1..254) and an effect region of faint values."""
    effect = np.zeros((H, W), np.uint8)
    effect[8:56, 16:80] = 90  # a soft shadow
    effect[16:40, 24:56] = 255
    effect[16:40, 56:72] = np.linspace(254, 1, 16).round().astype(np.uint8)  # anti-aliased edge
    effect[60, 4] = 1  # the smallest 8-bit value, far from the rest
    obj = np.where(effect == 255, effect, 0).astype(np.uint8)
    obj[40, 30] = 37
    return obj, effect


def _images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (H, W, 3), dtype=np.uint8), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))


def _decoded(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "L"
        return np.asarray(image)


@pytest.fixture(scope="module")
def soft_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("soft-paired")
    obj, effect = _soft_masks()
    with PairedDatasetWriter(root) as writer:
        writer.add("a", *_images(0), obj, effect, phase2=True, meta={"instruction": "Remove the mug"})
    return root, obj, effect


# ---- writing ----------------------------------------------------------------------------------------------
def test_the_writer_stores_soft_masks_losslessly(soft_dataset, tmp_path):
    root, obj, effect = soft_dataset
    record = PairedDataset(root).records[0]
    assert np.array_equal(_decoded(root / record.object_mask), obj)
    assert np.array_equal(_decoded(root / record.effect_mask), effect)
    # floats k/255 store as k; a nonzero value too small for 8 bits stays nonzero (1), so no pixel is lost
    tiny = np.zeros((H, W), np.float32)
    tiny[3, 3], tiny[5, 5], tiny[7, 7] = 1e-4, 0.5 / 255 - 1e-6, 1.0
    with PairedDatasetWriter(tmp_path / "f") as writer:
        rec = writer.add("f", *_images(), effect.astype(np.float32) / np.float32(255), tiny, phase2=False)
    assert np.array_equal(_decoded(tmp_path / "f" / rec.object_mask), effect)
    stored = _decoded(tmp_path / "f" / rec.effect_mask)
    assert (stored[3, 3], stored[5, 5], stored[7, 7]) == (1, 1, 255) and np.count_nonzero(stored) == 3


def test_a_binary_mask_is_written_byte_for_byte_as_before(tmp_path):
    _, effect = _soft_masks()
    masks = {"float": (effect > 0).astype(np.float32), "bool": effect > 0,
             "labels": (effect > 0).astype(np.uint8), "uint8": np.where(effect > 0, 255, 0).astype(np.uint8)}
    io.write_mask(tmp_path / "before.png", (effect > 0).astype(np.float32))  # what the writer wrote before
    before = (tmp_path / "before.png").read_bytes()
    with PairedDatasetWriter(tmp_path / "d") as writer:
        for name, mask in masks.items():
            rec = writer.add(name, *_images(), mask, mask, phase2=False)
            assert (tmp_path / "d" / rec.effect_mask).read_bytes() == before, name


def test_importing_binary_mask_files_gives_the_same_files_as_before(tmp_path):
    """CORNE with binary PNG masks and RORD with a JPEG mask: every stored mask is ``io.write_mask`` of
    ``io.read_mask`` of the source (the import path before this change), byte for byte."""
    obj, effect = _soft_masks()
    image, background = _images()
    corne, rord = tmp_path / "corne", tmp_path / "rord"
    for folder in ("shot", "bg", "masks", "mask_sam"):
        (corne / folder).mkdir(parents=True)
    for folder in ("img", "gt", "mask"):
        (rord / folder).mkdir(parents=True)
    for folder in (corne, rord):
        Image.fromarray(image).save(folder / ("shot" if folder == corne else "img") / "s1.png")
        Image.fromarray(background).save(folder / ("bg" if folder == corne else "gt") / "s1.png")
    Image.fromarray(np.where(effect > 0, 255, 0).astype(np.uint8)).save(corne / "masks" / "mask_s1.png")
    Image.fromarray(np.where(obj > 0, 255, 0).astype(np.uint8)).save(corne / "mask_sam" / "s1.png")
    Image.fromarray(effect).save(rord / "mask" / "s1.jpg", quality=85)  # JPEG: the >= 128 rule applies
    sources = {corne: (corne / "masks" / "mask_s1.png", corne / "mask_sam" / "s1.png"),
               rord: (rord / "mask" / "s1.jpg", rord / "mask" / "s1.jpg")}
    for folder, reader in ((corne, iter_corne), (rord, iter_rord)):
        out = tmp_path / f"out-{folder.name}"
        assert import_samples(reader(folder), out) == 1
        record = PairedDataset(out).records[0]
        effect_src, object_src = sources[folder]
        for stored, source in ((record.effect_mask, effect_src), (record.object_mask, object_src)):
            io.write_mask(tmp_path / "expected.png", io.read_mask(source))
            assert (out / stored).read_bytes() == (tmp_path / "expected.png").read_bytes(), (folder, stored)


def test_importing_a_soft_mask_keeps_its_values(tmp_path):
    _, effect = _soft_masks()
    image, background = _images()
    for folder in ("img", "gt", "mask"):
        (tmp_path / "rord" / folder).mkdir(parents=True)
    Image.fromarray(image).save(tmp_path / "rord" / "img" / "s.png")
    Image.fromarray(background).save(tmp_path / "rord" / "gt" / "s.png")
    Image.fromarray(effect).save(tmp_path / "rord" / "mask" / "s.png")
    import_samples(iter_rord(tmp_path / "rord"), tmp_path / "out")
    record = PairedDataset(tmp_path / "out").records[0]
    assert np.array_equal(_decoded(tmp_path / "out" / record.effect_mask), effect)


# ---- reading: one binarisation rule -----------------------------------------------------------------------
def _mask_files(folder) -> dict[str, object]:
    _, effect = _soft_masks()
    files = {}
    Image.fromarray(effect).save(files.setdefault("png8", folder / "m8.png"))
    Image.fromarray((effect.astype(np.int64) * 257 - (effect > 0) * 200).astype(np.uint16)).save(
        files.setdefault("png16", folder / "m16.png"))
    la = np.stack([np.full_like(effect, 255), effect], axis=-1)
    Image.fromarray(la, "LA").save(files.setdefault("alpha", folder / "la.png"))
    Image.fromarray((effect > 0).astype(np.uint8)).save(files.setdefault("labels", folder / "labels.png"))
    Image.fromarray(effect).save(files.setdefault("jpeg", folder / "m.jpg"), quality=80)
    return files


@pytest.mark.parametrize("shape", [None, (48, 80)])
def test_the_binary_view_equals_read_mask_for_every_kind_of_mask_file(tmp_path, shape):
    for kind, path in _mask_files(tmp_path).items():
        resize = shape is not None
        soft = read_soft_mask(path, shape=shape, resize=resize)
        assert np.array_equal(binary_view(soft), io.read_mask(path, shape=shape, resize=resize)), kind
        assert soft.dtype == np.float32 and 0 <= soft.min() and soft.max() <= 1
    # the 8-bit values / 255 exactly (Pillow's decode, float32 division as the authors' tensor.float() / 255)
    effect = _soft_masks()[1]
    assert np.array_equal(read_soft_mask(tmp_path / "m8.png"), effect.astype(np.float32) / np.float32(255))


def test_the_paired_views(soft_dataset):
    root, _, effect = soft_dataset
    record = PairedDataset(root).records[0]
    binary = PairedDataset(root)["a"]
    soft = PairedDataset(root, masks="soft")["a"]
    assert np.array_equal(binary.effect_mask, io.read_mask(root / record.effect_mask))  # as before
    assert np.array_equal(binary.object_mask, io.read_mask(root / record.object_mask))
    assert np.array_equal(soft.effect_mask, effect.astype(np.float32) / np.float32(255))
    assert np.array_equal(PairedDataset(root).load(record, masks="soft").object_mask, soft.object_mask)
    with pytest.raises(InvalidInputError, match="mask view"):
        PairedDataset(root, masks="grey")  # type: ignore[arg-type]


# ---- training batches -------------------------------------------------------------------------------------
def _nearest(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pillow's NEAREST resize of the stored 8-bit mask, then / 255 (the authors' dataset.py order)."""
    small = Image.fromarray(values).resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(small).astype(np.float32) / np.float32(255)


def test_osor_training_batches_carry_the_soft_values_resized_nearest(soft_dataset):
    from erasekit.methods.osor.train.config import OsorTrainConfig
    from erasekit.methods.osor.train.trainer import OsorTrainer

    root, obj, effect = soft_dataset
    config = OsorTrainConfig(backbone="sdxl", phase=1, model="m", output_dir="o",
                             data={"path": str(root), "resolution": 32}).resolved()
    dataset = OsorTrainer.dataset(SimpleNamespace(config=config))  # type: ignore[arg-type]
    batch = collate_paired([dataset[0]])
    height, width = batch["effect_mask"].shape[-2:]
    assert (height, width) != (H, W)  # the training rule resized it
    for key, stored in (("effect_mask", effect), ("object_mask", obj)):
        expected = torch.from_numpy(_nearest(stored, height, width))
        assert torch.equal(batch[key][0, 0], expected), key
    values = batch["effect_mask"]
    assert ((values > 0) & (values < 1)).any()  # soft values survived the resize
    # The binary view (the EraDiff trainer's default) sees the same pixels, binarised as before.
    binary = collate_paired([PairedTorchDataset(root, resize=dataset.resize)[0]])
    assert torch.equal(binary["effect_mask"], (values > 0).float())
    before = io.read_mask(root / "effect_masks" / "a.png").astype(np.uint8) * 255
    reference = np.asarray(Image.fromarray(before).resize((width, height), Image.Resampling.NEAREST)) > 0
    assert torch.equal(binary["effect_mask"][0, 0], torch.from_numpy(reference.astype(np.float32)))


def test_phase2_conditioning_binarises_soft_masks_at_128_as_the_authors(soft_dataset):
    from erasekit.methods.osor.train.conditioning import IncompleteMaskSampler

    root, _, effect = soft_dataset
    batch = collate_paired([PairedTorchDataset(root, masks="soft")[0]])
    hard = effect > 128  # the authors' _to_numpy; the soft shadow (90) is outside it
    assert np.count_nonzero(effect) > 2 * np.count_nonzero(hard)
    sampler = IncompleteMaskSampler(probabilities={"expand": 1.0}, seed=0)
    _, grown = sampler.condition_batch(batch, rng=np.random.default_rng(0))
    assert (grown[0, 0].numpy()[hard] == 1).all()  # expand ⊇ the > 128 mask
    sampler = IncompleteMaskSampler(probabilities={"shrink": 1.0}, seed=0)
    _, shrunk = sampler.condition_batch(batch, rng=np.random.default_rng(0))
    kept = shrunk[0, 0].numpy() > 0
    assert not (kept & ~hard).any() and 0 < kept.sum() <= 0.7 * hard.sum()  # 50-70 % of the > 128 mask
    assert set(torch.unique(torch.cat([grown, shrunk])).tolist()) == {0.0, 1.0}
    sampler = IncompleteMaskSampler(probabilities={"object_core": 1.0}, seed=0)
    _, core = sampler.condition_batch(batch, rng=np.random.default_rng(0))
    assert torch.equal(core, batch["object_mask"])  # the object core is passed as it is, soft values kept


# ---- PixPerfect's real pairs and the benchmark ------------------------------------------------------------
class _Recording:
    """A loaded remover whose calls are recorded, with the request each method got."""

    def __init__(self, remover, name: str, seen: list):
        self.remover, self.name, self.seen = remover, name, seen
        self.consumes_soft_mask = remover.consumes_soft_mask

    def __call__(self, request):
        self.seen.append((self.name, request))
        return self.remover(request)


def _record_requests(monkeypatch) -> list:
    from erasekit import registry

    seen: list = []
    original = registry.load_remover
    monkeypatch.setattr(registry, "load_remover",
                        lambda name, **o: _Recording(original(name, **o), name, seen))
    return seen


def test_pixperfect_real_pairs_see_the_binary_masks(soft_dataset, tmp_path, monkeypatch):
    from erasekit.refiners.pixperfect.train.real_pairs import produce_real_pairs

    root, _, effect = soft_dataset
    seen = _record_requests(monkeypatch)
    assert produce_real_pairs(root, tmp_path / "pairs", "telea", mask="effect", progress=False) == 1
    [(_, request)] = seen
    assert request.soft_mask is None
    assert np.array_equal(request.mask, io.read_mask(root / "effect_masks" / "a.png"))
    assert np.array_equal(_decoded(tmp_path / "pairs" / "a_mask.png"), np.where(effect > 0, 255, 0))


def test_bench_conditions_osor_on_the_soft_values_and_gives_others_the_binary_mask(
    soft_dataset, tmp_path, monkeypatch, osor_conditioning
):
    from erasekit.eval.datasets import EvalRecord, open_dataset
    from erasekit.eval.runner import BenchConfig, cache_key, run_benchmark
    from erasekit.testing import write_tiny_weights

    root, _, effect = soft_dataset
    seen = _record_requests(monkeypatch)
    weights = write_tiny_weights("osor-sdxl", tmp_path / "weights")
    cfg = BenchConfig(dataset=str(root), out=str(tmp_path / "out"), methods=["osor-sdxl", "telea"],
                      mask="effect", metrics=["psnr"], warmup=0, progress=False,
                      load_options={"osor-sdxl": weights}, call_options={"osor-sdxl": {"blend": "mask"}})
    run_benchmark(cfg)
    requests = dict(seen)
    soft = effect.astype(np.float32) / np.float32(255)
    binary = io.read_mask(root / "effect_masks" / "a.png")
    assert np.array_equal(requests["osor-sdxl"].soft_mask, soft)
    assert np.array_equal(requests["osor-sdxl"].mask, binary)
    assert requests["telea"].soft_mask is None and np.array_equal(requests["telea"].mask, binary)
    [cond] = osor_conditioning  # the UNet saw the max-pooled soft mask (the authors' rule), not the binary
    expected = F.max_pool2d(torch.from_numpy(soft)[None, None], H // cond.shape[-2])
    assert torch.equal(cond, expected)
    assert not torch.equal(cond, F.max_pool2d(torch.from_numpy(binary)[None, None], H // cond.shape[-2]))
    # Cache keys: a method without soft conditioning keys on the binary mask alone, as before.
    record = open_dataset(root)["a"]
    assert record.effect_soft is not None
    plain = EvalRecord(record.id, record.image, record.background, record.object_mask, record.effect_mask,
                       record.label)
    key = cache_key("telea", {}, {}, 0, "effect", "fp", record)
    assert key == cache_key("telea", {}, {}, 0, "effect", "fp", plain)
    assert cache_key("osor-sdxl", {}, {}, 0, "effect", "fp", record, soft=True) != cache_key(
        "osor-sdxl", {}, {}, 0, "effect", "fp", record)
    assert cache_key("osor-sdxl", {}, {}, 0, "effect", "fp", plain, soft=True) == cache_key(
        "osor-sdxl", {}, {}, 0, "effect", "fp", plain)


# ---- bad files --------------------------------------------------------------------------------------------
def test_bad_mask_files_and_arrays_give_a_clear_error_and_lose_nothing(soft_dataset, tmp_path):
    root, obj, effect = soft_dataset
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    data = (copy / "effect_masks" / "a.png").read_bytes()
    (copy / "effect_masks" / "a.png").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(InvalidInputError, match="effect.mask"):
        PairedDataset(copy, masks="soft")["a"]
    Image.fromarray(effect).convert("RGB").save(copy / "effect_masks" / "a.png", format="JPEG")
    with pytest.raises(InvalidInputError, match="8-bit PNG"):
        PairedDataset(copy, masks="soft")["a"]
    manifest = (root / "manifest.jsonl").read_bytes()
    with PairedDatasetWriter(tmp_path / "w") as writer:
        bad = effect.astype(np.float32)
        bad[0, 0] = np.nan
        with pytest.raises(InvalidInputError, match="finite"):
            writer.add("b", *_images(), obj, bad, phase2=False)
        with pytest.raises(InvalidInputError, match="shape"):
            writer.add("b", *_images(), obj, np.zeros((H, W, 2), np.float32), phase2=False)
        assert "b" not in writer
    assert not list((tmp_path / "w").glob("*/b.*"))
    assert (root / "manifest.jsonl").read_bytes() == manifest

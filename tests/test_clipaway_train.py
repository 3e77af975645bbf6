"""``erasekit train clipaway-mlp`` (arXiv:2406.09368, Algorithm 1) on tiny encoders: the loss falls, a
resumed run equals an uninterrupted one, the embeddings are computed once (and again only when an input
changes), the targets are the image encoder's ``image_embeds`` of the CLIPImageProcessor-preprocessed image,
and the written file loads strictly in the released layout and in ``clipaway`` through ``mlp=``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

from erasekit.methods.clipaway.train.config import load_config, packaged_config
from erasekit.methods.clipaway.train.trainer import train_clipaway_mlp
from erasekit.types import InvalidInputError


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> Path:
    from erasekit.testing.clipaway import write_tiny_clipaway_weights

    return write_tiny_clipaway_weights(tmp_path_factory.mktemp("ckpts"))


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    """A COCO-like layout: ROOT/train2017/<id>.jpg plus a non-image annotations file, 24 small photos."""
    from PIL import Image

    root = tmp_path_factory.mktemp("coco")
    (root / "train2017").mkdir()
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train2017.json").write_text("{}")
    rng = np.random.default_rng(0)
    for i in range(24):
        h, w = int(rng.integers(30, 60)), int(rng.integers(30, 60))
        base = rng.integers(0, 255, 3)
        image = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "train2017" / f"{i:012d}.jpg", quality=95)
    return root


def _config(ckpts: Path, coco: Path, out: Path, **extra):
    overrides = {"data": {"path": str(coco), "image_size": 32}, "encoders": {"weights": str(ckpts)},
                 "output_dir": str(out), "device": "cpu", "log_every": 1, "encode_batch_size": 5,
                 "shard_size": 10, **extra}
    return load_config(packaged_config("clipaway_mlp"), overrides)


def _metrics(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_packaged_config_is_the_authors_settings():
    cfg = load_config(packaged_config("clipaway_mlp"))
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.batch_size) == (1e-5, 1e-4, 8)
    assert (cfg.data.image_size, cfg.mlp.hidden_layers, cfg.max_steps) == (512, 6, 300_000)


def test_loss_falls_and_the_result_loads_strictly_and_in_clipaway(ckpts, coco, tmp_path):
    from safetensors.torch import load_file

    import erasekit
    from erasekit.methods.clipaway.mlp import ClipAwayMLP, load_mlp
    from erasekit.testing.clipaway import TINY_ALPHA_CLIP, TINY_IP_DIM
    from erasekit.types import RemovalRequest

    result = train_clipaway_mlp(_config(ckpts, coco, tmp_path / "run", max_steps=40,
                                        optim={"lr": 3e-3}), progress=False)
    losses = [m["loss"] for m in _metrics(result.metrics_path)]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])

    weights = result.weights_dir / "model.safetensors"
    state = load_file(str(weights))
    expected = ClipAwayMLP(TINY_ALPHA_CLIP.output_dim, TINY_IP_DIM)
    assert set(state) == set(expected.state_dict())  # the released Sequential keys, nothing else
    mlp = load_mlp(weights)  # strict
    assert (mlp.in_dim, mlp.out_dim) == (TINY_ALPHA_CLIP.output_dim, TINY_IP_DIM)

    from erasekit.testing.pipelines import write_tiny_pipeline

    model = write_tiny_pipeline("sd15-inpaint", tmp_path / "sd15-inpaint")
    remover = erasekit.load_remover("clipaway", model=str(model), weights=str(ckpts), mlp=str(weights),
                                    device="cpu", progress_bar=False)
    assert remover.files.mlp == weights
    torch.testing.assert_close(remover.embedder.mlp.state_dict(), mlp.state_dict(), rtol=0, atol=0)
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[20:40, 20:40] = 1
    out = remover(RemovalRequest(image, mask, seed=1, options={"steps": 2, "mask_dilation": 0}))
    assert out.image.shape == image.shape


def test_resume_equals_an_uninterrupted_run(ckpts, coco, tmp_path):
    from safetensors.torch import load_file

    cache = tmp_path / "cache"  # shared: the second and third runs read the first one's embeddings
    whole = train_clipaway_mlp(_config(ckpts, coco, tmp_path / "whole", max_steps=6, checkpoint_every=3,
                                       cache_dir=str(cache), optim={"lr": 1e-3}), progress=False)
    first = train_clipaway_mlp(_config(ckpts, coco, tmp_path / "split", max_steps=3, checkpoint_every=3,
                                       cache_dir=str(cache), optim={"lr": 1e-3}), progress=False)
    assert first.resumed_from == 0
    second = train_clipaway_mlp(_config(ckpts, coco, tmp_path / "split", max_steps=6, checkpoint_every=3,
                                        cache_dir=str(cache), optim={"lr": 1e-3}), progress=False)
    assert second.resumed_from == 3
    a = load_file(str(whole.weights_dir / "model.safetensors"))
    b = load_file(str(second.weights_dir / "model.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _metrics(whole.metrics_path) == _metrics(second.metrics_path)


def test_embeddings_are_cached_once_and_keyed_by_inputs(ckpts, coco, tmp_path, monkeypatch):
    from PIL import Image

    from erasekit.methods.clipaway.train import features, trainer

    encoded: list[int] = []
    real_build = features.FeatureCache.build

    def counting_build(self, *args, **kwargs):
        n = real_build(self, *args, **kwargs)
        encoded.append(n)
        return n

    monkeypatch.setattr(features.FeatureCache, "build", counting_build)
    cache = tmp_path / "cache"
    cfg = _config(ckpts, coco, tmp_path / "a", max_steps=1, cache_dir=str(cache))
    train_clipaway_mlp(cfg, progress=False)
    assert encoded == [24]
    assert len(list(next(cache.iterdir()).glob("shard-*.safetensors"))) == 3  # 10 + 10 + 4 images
    train_clipaway_mlp(_config(ckpts, coco, tmp_path / "b", max_steps=1, cache_dir=str(cache)),
                       progress=False)
    assert encoded == [24, 0]  # a second run encodes nothing

    # A killed caching run leaves whole shards: only the missing one is computed again.
    key_dir = next(cache.iterdir())
    (key_dir / "shard-00001.safetensors").unlink()
    train_clipaway_mlp(_config(ckpts, coco, tmp_path / "c", max_steps=1, cache_dir=str(cache)),
                       progress=False)
    assert encoded[-1] == 10

    # Another image size or another image list is another cache.
    train_clipaway_mlp(_config(ckpts, coco, tmp_path / "d", max_steps=1, cache_dir=str(cache),
                               data={"path": str(coco), "image_size": 40}), progress=False)
    assert encoded[-1] == 24 and len(list(cache.iterdir())) == 2
    extra = coco.parent / "coco-extra"
    (extra / "train2017").mkdir(parents=True)
    for p in sorted((coco / "train2017").glob("*.jpg"))[:8]:
        Image.open(p).save(extra / "train2017" / p.name)
    train_clipaway_mlp(_config(ckpts, extra, tmp_path / "e", max_steps=1, cache_dir=str(cache),
                               batch_size=4), progress=False)
    assert encoded[-1] == 8 and len(list(cache.iterdir())) == 3
    assert trainer.batch_indices(0, 8, 4, 0) != trainer.batch_indices(1, 8, 4, 0)


def test_cached_targets_are_the_image_encoders_embeds_of_the_processed_image(ckpts, coco, tmp_path):
    """Targets = CLIPVisionModelWithProjection(CLIPImageProcessor(image)).image_embeds; inputs = AlphaCLIP
    with an all-ones alpha normalised to (1 − 0.5)/0.26. Written from transformers and the description."""
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

    from erasekit.methods.clipaway.alpha_clip import load_alpha_clip
    from erasekit.methods.clipaway.weights import IMAGE_ENCODER_LAYOUT, LAYOUT

    cache = tmp_path / "cache"
    train_clipaway_mlp(_config(ckpts, coco, tmp_path / "run", max_steps=1, cache_dir=str(cache)),
                       progress=False)
    shard = load_file(str(next(cache.iterdir()) / "shard-00000.safetensors"))
    first = min((coco / "train2017").glob("*.jpg"))
    image = Image.open(first).convert("RGB").resize((32, 32), Image.Resampling.BICUBIC)

    encoder = CLIPVisionModelWithProjection.from_pretrained(str(ckpts / IMAGE_ENCODER_LAYOUT)).eval()
    processor = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    with torch.no_grad():
        pixels = processor(images=[image], return_tensors="pt").pixel_values
        target = encoder(pixel_values=pixels).image_embeds
    torch.testing.assert_close(shard["target"][0], target[0], rtol=1e-5, atol=1e-6)

    alpha_clip = load_alpha_clip(ckpts / LAYOUT["alpha_clip"])
    square = CLIPImageProcessorPil(size={"height": 28, "width": 28}, do_center_crop=False)
    ones = torch.full((1, 1, 28, 28), (1 - 0.5) / 0.26)
    with torch.no_grad():
        expected = alpha_clip(square(images=[image], return_tensors="pt").pixel_values, ones)
    torch.testing.assert_close(shard["alpha_clip"][0], expected[0], rtol=1e-5, atol=1e-6)


def test_bad_training_input_is_a_one_line_error(ckpts, tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        train_clipaway_mlp(_config(ckpts, tmp_path / "nowhere", tmp_path / "out", max_steps=1),
                           progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no .jpg"):
        train_clipaway_mlp(_config(ckpts, tmp_path / "empty", tmp_path / "out", max_steps=1),
                           progress=False)
    with pytest.raises(InvalidInputError, match="optim.lr"):
        load_config(packaged_config("clipaway_mlp"), {"optim": {"lr": -1}})


def test_cli_train_clipaway_mlp(ckpts, coco, tmp_path):
    from erasekit.cli import main

    out = tmp_path / "cli"
    assert main(["train", "clipaway-mlp", "--set", f"data.path={coco}", "--set", "data.image_size=32",
                 "--set", f"encoders.weights={ckpts}", "--set", "device=cpu", "-o", str(out),
                 "--max-steps", "2", "--no-progress"]) == 0
    assert (out / "CLIPAway" / "model.safetensors").is_file()

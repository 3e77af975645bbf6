"""The diffusion remover base and backbone loading: per-image noise, the prompt cache, the per-call lock,
progress reporting, and one load path (with the same keyword load options) for every diffusion method."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from erasekit.backbones.loading import BackboneOptions, load_backbone
from erasekit.diffusion.remover import (
    DiffusionRemover,
    PromptEmbeddingCache,
    per_image_generators,
    per_image_noise,
    step_reporter,
)
from erasekit.types import InvalidInputError, RemovalRequest


# ------------------------------------------------------------------------------------------------------------
# Per-image noise
# ------------------------------------------------------------------------------------------------------------
def test_each_image_noise_depends_on_its_seed_only_whatever_the_batch():
    shape = (3, 4, 5, 6)
    batch = per_image_noise(shape, [11, 12, 13])
    for i, seed in enumerate((11, 12, 13)):
        expected = torch.randn((1, 4, 5, 6), generator=torch.Generator("cpu").manual_seed(seed))
        assert torch.equal(batch[i:i + 1], expected)
    alone = per_image_noise((1, 4, 5, 6), [12])
    reordered = per_image_noise(shape, [12, 99, 11])
    assert torch.equal(alone[0], batch[1]) and torch.equal(reordered[0], batch[1])
    assert torch.equal(reordered[2], batch[0])


def test_noise_is_drawn_in_float32_then_cast_and_seed_count_must_match():
    half = per_image_noise((2, 3, 4, 4), [0, 1], dtype=torch.float16)
    full = per_image_noise((2, 3, 4, 4), [0, 1])
    assert half.dtype == torch.float16 and torch.equal(half, full.to(torch.float16))
    with pytest.raises(ValueError, match="2 seeds for a batch of 3"):
        per_image_noise((3, 1, 2, 2), [0, 1])


def test_generators_are_fresh_cpu_generators_per_seed():
    gens = per_image_generators([7, 7, 8])
    assert all(g.device.type == "cpu" for g in gens) and len({id(g) for g in gens}) == 3
    draws = [torch.randn(4, generator=g) for g in gens]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


# ------------------------------------------------------------------------------------------------------------
# Prompt embeddings
# ------------------------------------------------------------------------------------------------------------
def test_prompt_cache_encodes_each_key_once_even_when_threads_race():
    cache = PromptEmbeddingCache()
    calls: list[str] = []

    def encode(prompt: str):
        def run():
            calls.append(prompt)
            time.sleep(0.02)  # long enough for every thread to ask while the first one encodes
            return {"prompt_embeds": torch.full((1, 2), float(len(prompt)))}
        return run

    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(("sdxl", "a b"), encode("a b"))))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["a b"] and all(r is results[0] for r in results)
    assert ("sdxl", "a b") in cache and ("sdxl", "c") not in cache
    other = cache.get(("sdxl", "c"), encode("c"))
    assert calls == ["a b", "c"] and other["prompt_embeds"][0, 0] == 1.0


# ------------------------------------------------------------------------------------------------------------
# The remover base: lock and progress
# ------------------------------------------------------------------------------------------------------------
class _RecordingPipeline:
    """A stand-in pipeline that records how many calls overlap and runs diffusers' step-end callback."""

    def __init__(self, steps: int = 3):
        self.steps, self.num_timesteps = steps, steps
        self.active = self.most_active = 0
        self.bar: dict = {}
        self._count = threading.Lock()

    def set_progress_bar_config(self, **config):
        self.bar = config

    def __call__(self, *, value: float, callback_on_step_end=None):
        with self._count:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(0.01)
        for step in range(self.steps):
            if callback_on_step_end is not None:
                callback_on_step_end(self, step, 1000 - step, {})
        with self._count:
            self.active -= 1
        return SimpleNamespace(images=[value])


class _Doubler(DiffusionRemover):
    name = "doubler"
    preset_name = "sd15-inpaint"

    def inpaint(self, image, mask, request):
        out = self.run_pipeline(progress=self.progress, value=2.0)
        return (image * 0 + int(out.images[0])).astype(np.uint8), None


def test_calls_on_one_remover_never_overlap_in_the_pipeline():
    pipe = _RecordingPipeline()
    remover = _Doubler(pipeline=pipe, progress_bar=False)
    assert not remover.loaded_pipeline and remover.model == "sd15-inpaint"
    threads = [threading.Thread(target=remover.run_pipeline, kwargs={"value": 1.0}) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pipe.most_active == 1
    assert pipe.bar == {"disable": True, "desc": "doubler", "leave": False}


def test_progress_is_reported_after_each_denoising_step():
    remover = _Doubler(pipeline=_RecordingPipeline(steps=3))
    seen: list[tuple[int, int]] = []
    image = np.zeros((8, 8, 3), np.uint8)
    mask = np.zeros((8, 8), np.float32)
    mask[2:4, 2:4] = 1
    remover.progress = lambda i, n: seen.append((i, n))
    result = remover(RemovalRequest(image, mask))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert result.image[3, 3, 0] == 2 and result.image[0, 0, 0] == 0  # pasted back outside the mask
    kwargs = {"latents": 1}
    assert step_reporter(lambda i, n: None)(SimpleNamespace(num_timesteps=4), 0, 999, kwargs) is kwargs


# ------------------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------------------
def test_load_backbone_reads_a_folder_or_another_preset_into_the_methods_class(tiny, offline_hub,
                                                                              monkeypatch):
    pipe = load_backbone("sdxl-inpaint", BackboneOptions(model=tiny("sdxl-inpaint"), device="cpu"))
    assert type(pipe).__name__ == "StableDiffusionXLInpaintPipeline" and pipe.dtype == torch.float32
    # Another preset's name resolves offline (here from $ERASEKIT_MODELS_DIR) into this method's class.
    monkeypatch.setenv("ERASEKIT_MODELS_DIR", str(tiny("sd2-inpaint").parent))
    other = load_backbone("sd15-inpaint", BackboneOptions(model="sd2-inpaint", dtype="fp32"))
    assert type(other).__name__ == "StableDiffusionInpaintPipeline"
    assert other.unet.config.use_linear_projection  # SD 2's UNet, not SD 1.5's


def test_backbone_options_validate_placement_like_the_placement_options():
    assert BackboneOptions().offload == "none" and BackboneOptions(model="x").model == "x"
    with pytest.raises(InvalidInputError, match="offload"):
        BackboneOptions(offload="sometimes")
    with pytest.raises(TypeError):
        BackboneOptions("sd15-inpaint")  # keyword only: the fields are the methods' keyword load options


@pytest.mark.parametrize("method", ["sd15-inpaint", "sd2-inpaint", "sdxl-inpaint", "flux-fill", "osor-sdxl",
                                    "osor-flux"])
def test_every_diffusion_method_takes_the_same_backbone_load_options(method):
    from erasekit.registry import get_method, load_options

    shared = {"model", "device", "dtype", "allow_download", "offload", "attention_slicing", "vae_tiling",
              "pipeline"}
    assert shared <= load_options(get_method(method))

"""Fast paths as load options (erasekit.backbones.fast): each keeps the output within the tolerance that
docs/speed.md states of the eager float32 path, on tiny models on the CPU. Speed is measured by
benchmarks/gpu_suite.py, never here."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from erasekit.backbones import fast
from erasekit.backbones.fast import FastPaths, apply_fast_paths, configure_vae
from erasekit.methods.osor.remover import REMOVERS
from erasekit.testing import tiny_pipeline
from erasekit.testing.osor import TINY_BACKBONE, write_tiny_osor_weights
from erasekit.types import InvalidInputError, RemovalRequest

# Stated tolerances (docs/speed.md): fp32 fast paths change only the order of float sums.
FP32_ATOL = 1e-5
BF16_MAX_LEVELS, BF16_MEAN_LEVELS = 32, 4.0  # tiny random VAEs amplify rounding


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fast")
    return {f: write_tiny_osor_weights(f, folder / f"{f}.pth", phase=2) for f in ("sdxl", "flux")}


def _remover(family, weights, dtype=torch.float32, **kwargs):
    pipe = copy.deepcopy(tiny_pipeline(TINY_BACKBONE[family])).to(dtype)
    return REMOVERS[family](pipeline=pipe, weights=weights[family], **kwargs)


def _inputs():
    from erasekit.convert import image_to_tensor, mask_to_tensor

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    mask = np.zeros((32, 48), np.float32)
    mask[8:20, 12:30] = 1
    return image, mask, image_to_tensor(image), mask_to_tensor(mask)


def _images(remover) -> torch.Tensor:
    _, _, images, masks = _inputs()
    return remover.engine.run(images, masks, [0]).images.float()


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_channels_last_and_fused_qkv_stay_within_fp32_tolerance(weights, family):
    eager = _images(_remover(family, weights))
    quick = _remover(family, weights, channels_last=True, fuse_qkv=True)
    unet_or_transformer = quick.engine.denoiser
    fused = [m for m in unet_or_transformer.modules() if getattr(m, "fused_projections", False)]
    assert fused, "fuse_qkv fused no attention layer"
    if family == "sdxl":  # the FLUX transformer has no convolutions and keeps its layout
        assert unet_or_transformer.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert quick.engine.vae.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(_images(quick), eager, rtol=0, atol=FP32_ATOL)


def test_fuse_qkv_is_refused_with_unmerged_lora(weights):
    with pytest.raises(InvalidInputError, match="merge_lora=true"):
        _remover("sdxl", weights, merge_lora=False, fuse_qkv=True)


def test_compile_traces_the_adapters_and_matches_eager(weights):
    remover = _remover("flux", weights, merge_lora=False)  # the tiny transformer traces fastest
    eager = _images(remover)
    # The in-place Module.compile keeps names, so the unmerged LoRA stays visible; the eager backend runs the
    # traced graph without a C++ compiler (the inductor default is what users get: docs/speed.md).
    apply_fast_paths(remover.pipe, FastPaths(compile=True, compile_backend="eager"))
    assert any(".lora_A." in name for name, _ in remover.engine.denoiser.named_parameters())
    torch.testing.assert_close(_images(remover), eager, rtol=0, atol=FP32_ATOL)


def test_option_values_are_validated_and_read_from_text():
    assert FastPaths(compile="true").compile is True
    assert FastPaths(compile="max-autotune").compile == "max-autotune"
    assert (
        FastPaths(vae_tiling="auto").vae_tiling == "auto" and FastPaths(vae_tiling="no").vae_tiling is False
    )
    with pytest.raises(InvalidInputError, match="compile must be"):
        FastPaths(compile="fastest")
    with pytest.raises(InvalidInputError, match="vae_tiling must be"):
        FastPaths(vae_tiling="sometimes")


def test_vae_tiling_auto_keeps_images_up_to_the_threshold_whole_and_tiles_beyond(monkeypatch):
    vae = copy.deepcopy(tiny_pipeline("sdxl-inpaint").vae)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = vae.decode(latents).sample
    configure_vae(vae, "auto")
    assert vae.use_slicing and vae.tile_sample_min_size == fast.VAE_TILE_SIDE
    torch.testing.assert_close(vae.decode(latents).sample, plain, rtol=0, atol=FP32_ATOL)  # 64 px: whole
    calls = []
    vae.decoder.register_forward_hook(lambda *a: calls.append(1))
    vae.tile_sample_min_size, vae.tile_latent_min_size = 32, 4  # a 4K input, scaled down to the tiny VAE
    tiled = vae.decode(latents).sample
    assert tiled.shape == plain.shape and torch.isfinite(tiled).all()
    assert len(calls) > 2  # several tiles per image (two images, sliced)


def test_baseline_pipelines_take_the_fast_paths_as_load_options(tmp_path):
    import erasekit
    from erasekit.testing import write_tiny_weights

    options = write_tiny_weights("sd15-inpaint", tmp_path)
    image, mask, _, _ = _inputs()
    plain = erasekit.load_remover("sd15-inpaint", **options)
    quick = erasekit.load_remover("sd15-inpaint", **options, channels_last=True, fuse_qkv=True)
    a = plain(RemovalRequest(image, mask, seed=0, options={"steps": 2})).image.astype(int)
    b = quick(RemovalRequest(image, mask, seed=0, options={"steps": 2})).image.astype(int)
    assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_bf16_default_stays_within_the_stated_levels_of_fp32(weights, family):
    fp32 = _remover(family, weights)
    bf16 = _remover(family, weights, torch.bfloat16)
    image, mask, _, _ = _inputs()
    a = fp32(RemovalRequest(image, mask, seed=0)).image.astype(int)
    b = bf16(RemovalRequest(image, mask, seed=0)).image.astype(int)
    delta = np.abs(a - b)
    assert delta.max() <= BF16_MAX_LEVELS and delta.mean() <= BF16_MEAN_LEVELS


# ---- the other diffusion methods: the same load options, applied once their own weights are in -------------
METHOD_CALLS = {  # method -> (per-call options, needs a mask, prompt): the quickest real call of each
    "eradiff": ({"steps": 2}, True, None),  # SRA on every self-attention layer (its default rule)
    "clipaway": ({"steps": 2}, True, None),
    "magicremover": ({"steps": 2, "inner_steps": 1, "target": "dog", "resolution": 64}, False,
                     "a photo of a dog"),
}


@pytest.fixture(scope="module")
def method_weights(tmp_path_factory):
    from erasekit.testing import write_tiny_weights

    root = tmp_path_factory.mktemp("methods")
    return {m: write_tiny_weights(m, root / m) for m in METHOD_CALLS}


def _method_image(remover, method):
    options, masked, prompt = METHOD_CALLS[method]
    image, mask, _, _ = _inputs()
    options = {k: v for k, v in options.items() if k != "resolution"}
    request = RemovalRequest(image, mask if masked else None, seed=0, prompt=prompt, options=options)
    return remover(request).image.astype(int)


def _load_method(method, method_weights, **fast_options):
    import erasekit

    extra = {"resolution": 64} if method == "magicremover" else {}
    return erasekit.load_remover(method, **method_weights[method], device="cpu", progress_bar=False, **extra,
                                 **fast_options)


@pytest.mark.parametrize("method", ["eradiff", "magicremover", "clipaway"])
def test_methods_take_the_fast_paths_and_stay_within_one_level_of_eager(method_weights, method):
    """channels_last (+ fuse_qkv where accepted) as load options, then compile (eager backend, as above): the
    method's own attention processors, weights and adapters still run, within 1 level of eager fp32."""
    eager = _method_image(_load_method(method, method_weights), method)
    fuse = method != "clipaway"  # refused there: see the next test
    quick = _load_method(method, method_weights, channels_last=True, fuse_qkv=fuse, vae_tiling="auto")
    unet = quick.pipe.unet
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert any(getattr(m, "fused_projections", False) for m in unet.modules()) == fuse
    assert np.abs(_method_image(quick, method) - eager).max() <= 1
    apply_fast_paths(quick.pipe, FastPaths(compile=True, compile_backend="eager"))
    assert np.abs(_method_image(quick, method) - eager).max() <= 1


def test_compile_is_a_load_option_of_every_method(method_weights):
    for method in METHOD_CALLS:  # Module.compile is lazy: nothing is traced until the first call
        remover = _load_method(method, method_weights, compile=True)
        assert remover.fast_paths.compile is True and remover.pipe.unet._compiled_call_impl is not None


def test_clipaway_refuses_fuse_qkv_before_loading(method_weights):
    # diffusers' fusion installs FusedAttnProcessor2_0 on every layer, which would drop the IP-Adapter's.
    with pytest.raises(InvalidInputError, match="clipaway does not support fuse_qkv"):
        _load_method("clipaway", method_weights, fuse_qkv=True)


def test_eradiff_fuses_after_its_weights(method_weights):
    remover = _load_method("eradiff", method_weights, fuse_qkv=True)
    attn = next(m for m in remover.pipe.unet.modules() if getattr(m, "fused_projections", False)
                and hasattr(m, "to_qkv"))
    expected = torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight])
    # the trained weights, not the stock ones (fused first, the strict weight load would also fail on to_qkv)
    assert torch.equal(attn.to_qkv.weight, expected)

"""OSOR's inference numerics as the authors run them (Zhouqm-Git/osor, ``scripts/inference*.py``), on tiny
backbones in bf16 on the CPU: SDXL's x̂0 and blend in float32, FLUX's noising with exact coefficients, LoRA
unmerged (bf16 adapters for SDXL, float32 for FLUX), soft-mask conditioning with a binary paste region, the
FLUX working sizes per phase and the VAE input layout.

References are independent of erasekit's code: diffusers' ``DDPMScheduler.step`` called as the authors call it
(1-D timestep tensor), the authors' expressions evaluated by torch's own type promotion, float64 arithmetic,
and the authors' size formulas transcribed from their scripts.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from erasekit.backbones import latents as L
from erasekit.diffusion.remover import per_image_noise
from erasekit.methods.osor import flux_working_size
from erasekit.methods.osor.remover import REMOVERS
from erasekit.testing import tiny_pipeline
from erasekit.testing.osor import TINY_BACKBONE, write_tiny_osor_weights
from erasekit.types import RemovalRequest

BF16 = torch.bfloat16


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("osor-numerics")
    return {
        (family, phase): write_tiny_osor_weights(family, folder / f"{family}_phase{phase}.pth", phase=phase)
        for family in ("sdxl", "flux")
        for phase in (1, 2)
    }


def _remover(family: str, weights_path, dtype=torch.float32, **kwargs):
    pipe = copy.deepcopy(tiny_pipeline(TINY_BACKBONE[family])).to(dtype)
    return REMOVERS[family](pipeline=pipe, weights=weights_path, **kwargs)


def _inputs(h: int = 32, w: int = 48):
    from erasekit.convert import image_to_tensor, mask_to_tensor

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.float32)
    mask[8:20, 12:30] = 1
    return image, mask, image_to_tensor(image), mask_to_tensor(mask)


def _record(module):
    """Keyword inputs and outputs of ``module``'s forward calls."""
    inputs: list[dict] = []
    outputs: list = []
    module.register_forward_pre_hook(lambda m, a, kw: inputs.append({"args": a, **kw}), with_kwargs=True)
    module.register_forward_hook(lambda m, a, kw, out: outputs.append(out), with_kwargs=True)
    return inputs, outputs


# ------------------------------------------------------------------------------------------------------------
# Item 15: SDXL x̂0 and the blend in float32
# ------------------------------------------------------------------------------------------------------------
def test_sdxl_bf16_x0_and_blend_are_float32_as_ddpm_step_with_a_1d_timestep(weights):
    from diffusers import DDPMScheduler

    remover = _remover("sdxl", weights[("sdxl", 2)], BF16)
    engine = remover.engine
    unet_in, unet_out = _record(engine.denoiser)
    decoded_latents: list[torch.Tensor] = []
    vae_decode = engine.vae.decode
    engine.vae.decode = lambda z, **kw: (decoded_latents.append(z), vae_decode(z, **kw))[1]
    _, _, images, masks = _inputs()
    out = engine.run(images, masks, [0])

    eps_and_logits = unet_out[0][0]
    assert eps_and_logits.dtype == BF16
    eps, logits = eps_and_logits[:, :4], eps_and_logits[:, 4:]
    z_t = unet_in[0]["sample"][:, :4]
    # The authors: DDPMScheduler.step(eps, torch.full((bs,), t), z).pred_original_sample.
    scheduler = DDPMScheduler.from_config(remover.pipe.scheduler.config)
    expected_x0 = scheduler.step(eps, torch.full((1,), 400, dtype=torch.long), z_t).pred_original_sample
    assert expected_x0.dtype == out.x0.dtype == torch.float32
    assert torch.equal(out.x0, expected_x0)
    # The old bf16 arithmetic (a 0-d ᾱ_t) gives other numbers: the test can tell them apart.
    acp = scheduler.alphas_cumprod[400]
    assert not torch.equal(((z_t - (1 - acp) ** 0.5 * eps) / acp**0.5).float(), expected_x0)

    # The authors' blend: z_out * alpha + z_lq * (1 - alpha) with alpha = sigmoid(bf16 logits), by torch's
    # promotion rules (fp32 · bf16 -> fp32; the second product stays bf16).
    alpha = torch.sigmoid(logits)
    expected_z = expected_x0 * alpha + out.z_lq * (1 - alpha)
    assert out.z_out.dtype == torch.float32 and torch.equal(out.z_out, expected_z)
    # The VAE decodes z_out.to(bf16) / scaling_factor, as in the authors' scripts.
    assert torch.equal(decoded_latents[-1], out.z_out.to(BF16) / engine.vae.config.scaling_factor)


# ------------------------------------------------------------------------------------------------------------
# Item 16: FLUX noising with exact coefficients
# ------------------------------------------------------------------------------------------------------------
def test_flow_noise_in_bf16_uses_exact_coefficients_against_a_float64_reference():
    from erasekit.backbones import schedule as S

    gen = torch.Generator().manual_seed(0)
    z = (torch.randn(4, 256, 64, generator=gen) * 2).to(BF16)
    noise = torch.randn(4, 256, 64, generator=gen).to(BF16)
    reference = 0.6 * z.double() + 0.4 * noise.double()
    exact = S.flow_noise(z, noise, 0.4)
    rounded = S.flow_noise(z, noise, torch.full((4,), 0.4))  # the coefficients rounded to bf16 first
    assert exact.dtype == BF16
    assert torch.equal(exact, (1 - 0.4) * z + 0.4 * noise)  # the authors' expression
    error_exact = (exact.double() - reference).abs()
    error_rounded = (rounded.double() - reference).abs()
    # Three bf16 roundings (two products, one sum): within 2^-7 of the terms' magnitude.
    bound = 2.0**-7 * (0.6 * z.double().abs() + 0.4 * noise.double().abs()) + 1e-30
    assert bool((error_exact <= bound).all())
    assert error_exact.mean() < error_rounded.mean()
    assert (rounded - exact).abs().max() > 0


def test_flux_bf16_engine_noises_with_exact_coefficients(weights):
    remover = _remover("flux", weights[("flux", 2)], BF16)
    engine = remover.engine
    inputs, _ = _record(engine.denoiser)
    _, _, images, masks = _inputs()
    out = engine.run(images, masks, [0])
    z_t_packed = inputs[0]["hidden_states"][..., :64]
    noise = per_image_noise(out.z_lq.shape, [0], device=torch.device("cpu"), dtype=BF16)
    z, n = L.pack_latents(out.z_lq), L.pack_latents(noise)
    assert torch.equal(z_t_packed, (1 - 0.4) * z + 0.4 * n)
    reference = 0.6 * z.double() + 0.4 * n.double()
    bound = 2.0**-7 * (0.6 * z.double().abs() + 0.4 * n.double().abs()) + 1e-30
    assert bool(((z_t_packed.double() - reference).abs() <= bound).all())
    # x̂0 = z_t - t·v with t the bf16 timestep tensor the transformer got (the authors' expression).
    t = inputs[0]["timestep"]
    assert t.dtype == BF16


# ------------------------------------------------------------------------------------------------------------
# Item 17: LoRA kept unmerged by default
# ------------------------------------------------------------------------------------------------------------
def _lora_parameters(model) -> dict[str, torch.Tensor]:
    return {name: p for name, p in model.named_parameters() if ".lora_A." in name or ".lora_B." in name}


@pytest.mark.parametrize(("family", "adapter_dtype"), [("sdxl", BF16), ("flux", torch.float32)])
def test_bf16_keeps_lora_unmerged_with_the_authors_adapter_dtype(weights, family, adapter_dtype):
    from peft.tuners.tuners_utils import BaseTunerLayer

    from erasekit.methods.osor.weights import load_osor_weights

    remover = _remover(family, weights[(family, 2)], BF16)
    denoiser = remover.engine.denoiser
    lora = _lora_parameters(denoiser)
    assert lora and {p.dtype for p in lora.values()} == {adapter_dtype}
    assert any(isinstance(m, BaseTunerLayer) for m in denoiser.modules())
    assert remover.load_report is not None and not remover.load_report.merged
    if adapter_dtype == torch.float32:  # cast before loading: the file's float32 values arrive unrounded
        file_weights = load_osor_weights(weights[(family, 2)])
        key = next(iter(file_weights.lora))
        module, part = key.rsplit(".", 2)[0], key.rsplit(".", 2)[1]
        loaded = next(p for n, p in lora.items() if n.startswith(module + f".{part}."))
        assert torch.equal(loaded, file_weights.lora[key])

    merged = _remover(family, weights[(family, 2)], BF16, merge_lora=True)
    assert not _lora_parameters(merged.engine.denoiser) and merged.load_report.merged
    image, mask, _, _ = _inputs()
    a = remover(RemovalRequest(image, mask, seed=0)).image
    b = merged(RemovalRequest(image, mask, seed=0)).image
    assert not np.array_equal(a, b)  # in bf16 merging is a different computation (docs/osor.md measures it)


def test_fp32_merges_by_default_and_matches_unmerged_within_a_level(weights):
    auto = _remover("sdxl", weights[("sdxl", 2)])
    unmerged = _remover("sdxl", weights[("sdxl", 2)], merge_lora=False)
    assert auto.load_report.merged and not unmerged.load_report.merged
    image, mask, _, _ = _inputs()
    a = auto(RemovalRequest(image, mask, seed=0)).image.astype(int)
    b = unmerged(RemovalRequest(image, mask, seed=0)).image.astype(int)
    assert np.abs(a - b).max() <= 1


# ------------------------------------------------------------------------------------------------------------
# Item 18: soft-mask conditioning, binary paste region
# ------------------------------------------------------------------------------------------------------------
def _soft(mask: np.ndarray) -> np.ndarray:
    soft = mask * 0.75
    soft[0, 0] = 3 / 255  # JPEG-like noise far from the object
    return soft.astype(np.float32)


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_soft_mask_conditions_the_denoiser_and_the_paste_region_stays_binary(weights, family):
    remover = _remover(family, weights[(family, 1)])  # Phase I: the hard latent blend (Eq. 6)
    inputs, _ = _record(remover.engine.denoiser)
    image, mask, _, _ = _inputs()
    soft = _soft(mask)
    result = remover(RemovalRequest(image, soft, seed=0))
    soft_t = torch.from_numpy(soft)[None, None]
    if family == "sdxl":
        assert torch.equal(inputs[-1]["sample"][:, 4:5], F.max_pool2d(soft_t, 8))
    else:
        assert torch.equal(inputs[-1]["hidden_states"][..., 128:], L.fill_mask_tokens(soft_t))
    # The paste region is binary: every latent cell a masked pixel touches, including the 3/255 corner.
    cells = F.max_pool2d(torch.from_numpy((soft > 0).astype(np.float32))[None, None], 8)
    region = F.interpolate(cells, scale_factor=8, mode="nearest")[0, 0].numpy()
    assert set(np.unique(result.alpha)) == {0.0, 1.0}
    assert np.array_equal(result.alpha, region)
    assert np.array_equal(result.image[region == 0], image[region == 0])

    binary = remover(RemovalRequest(image, soft, seed=0, options={"soft_mask": False}))
    if family == "sdxl":
        assert torch.equal(inputs[-1]["sample"][:, 4:5], F.max_pool2d((soft_t > 0).float(), 8))
    assert not np.array_equal(binary.image, result.image)


# ------------------------------------------------------------------------------------------------------------
# Item 19: FLUX working size per phase
# ------------------------------------------------------------------------------------------------------------
def _authors_phase1(width: int, height: int) -> tuple[int, int]:  # osor-fluxfill/scripts/inference.py
    return (width + 15) // 16 * 16, (height + 15) // 16 * 16


def _authors_phase2(width: int, height: int, max_length: int = 1024) -> tuple[int, int]:
    # osor-fluxfill/scripts/inference_enhance.py
    if max(width, height) > max_length:
        scale = max_length / float(max(width, height))
        width, height = max(1, int(width * scale)), max(1, int(height * scale))
    return max(16, (width // 16) * 16), max(16, (height // 16) * 16)


@pytest.mark.parametrize(("h", "w"), [(181, 300), (1500, 2001), (2048, 17), (9, 9), (1024, 1024), (1100, 90)])
def test_flux_working_size_follows_the_authors_phase1_and_phase2_scripts(weights, h, w):
    assert flux_working_size(h, w, None)[::-1] == _authors_phase1(w, h)
    assert flux_working_size(h, w)[::-1] == _authors_phase2(w, h)


def test_flux_remover_picks_the_working_size_of_its_weights_phase(weights):
    phase1 = _remover("flux", weights[("flux", 1)])
    phase2 = _remover("flux", weights[("flux", 2)])
    assert phase1.working_size(1500, 2001) == (1504, 2016)
    assert phase2.working_size(1500, 2001) == flux_working_size(1500, 2001)


# ------------------------------------------------------------------------------------------------------------
# Item 20: the VAE input layout
# ------------------------------------------------------------------------------------------------------------
def test_vae_input_is_channels_last_on_purpose_and_contiguous_is_the_authors_option(weights):
    remover = _remover("sdxl", weights[("sdxl", 2)])
    encoder_in, _ = _record(remover.engine.vae.encoder)
    _, _, images, masks = _inputs()
    a = remover.engine.run(images, masks, [0])
    remover.engine.input_layout = "contiguous"
    b = remover.engine.run(images, masks, [0])
    first, second = encoder_in[0]["args"][0], encoder_in[1]["args"][0]
    assert first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous()
    assert second.is_contiguous()
    assert torch.equal(first, second)  # same values, another memory layout
    assert (a.images - b.images).abs().max() <= 2 / 255

"""OSOR on tiny SDXL-Inpainting / FLUX Fill backbones: the recipe's exact conditioning, Eq. 5/6/13, the alpha
head, determinism, batches, weights and the CLI. Expected values are computed independently with diffusers'
own components (DDPMScheduler, FlowMatchEulerDiscreteScheduler, FluxFillPipeline helpers, encode_prompt)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from erasekit.methods.osor import flux_working_size, sdxl_working_size
from erasekit.methods.osor.alpha_head import add_alpha_head, alpha_head_parameter_count, has_alpha_head
from erasekit.methods.osor.recipe import PROMPT
from erasekit.testing import tiny_pipeline, write_tiny_pipeline
from erasekit.testing.osor import tiny_osor_remover, write_tiny_osor_weights
from erasekit.types import InvalidInputError, RemovalRequest

TINY = {"sdxl": "sdxl-inpaint", "flux": "flux-fill"}


def _remover(family: str, **kwargs):
    return tiny_osor_remover(
        family, **kwargs
    )  # a private copy of the tiny backbone (OSOR edits its denoiser)


def _scene(h: int = 32, w: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.float32)
    mask[h // 4 : h // 2, w // 4 : w // 2] = 1
    return image, mask


def _tensors(image, mask):
    from erasekit.convert import image_to_tensor, mask_to_tensor

    return image_to_tensor(image), mask_to_tensor(mask)


def _capture(module):
    """Record the keyword arguments and the output of every forward call of ``module``."""
    calls: list[dict] = []
    outputs: list[torch.Tensor] = []
    pre = module.register_forward_pre_hook(lambda m, a, kw: calls.append(dict(kw)), with_kwargs=True)
    post = module.register_forward_hook(lambda m, a, kw, out: outputs.append(out[0]), with_kwargs=True)
    return calls, outputs, (pre, post)


@pytest.fixture(scope="module")
def sdxl_weights(tmp_path_factory):
    return write_tiny_osor_weights("sdxl", tmp_path_factory.mktemp("osor") / "tiny_sdxl_phase2.pth", phase=2)


# ------------------------------------------------------------------------------------------------------------
# The recipe, tensor by tensor
# ------------------------------------------------------------------------------------------------------------
def test_sdxl_unet_receives_the_recipe_and_x0_is_the_ddpm_estimate():
    from diffusers import DDPMScheduler

    remover = _remover("sdxl")
    pipe, unet = remover.pipe, remover.pipe.unet
    image, mask = _scene()
    images, masks = _tensors(image, mask)
    calls, outputs, hooks = _capture(unet)
    out = remover.engine.run(images, masks, [7])
    for h in hooks:
        h.remove()
    assert len(calls) == 1
    got = calls[0]

    # Independent reference: diffusers' VAE, DDPMScheduler and SDXL encode_prompt.
    z_lq = pipe.vae.encode(images).latent_dist.mode() * pipe.vae.config.scaling_factor
    noise = torch.randn((1, 4, 4, 6), generator=torch.Generator("cpu").manual_seed(7))
    ddpm = DDPMScheduler.from_config(pipe.scheduler.config)
    t = torch.tensor([400])
    z_t = ddpm.add_noise(z_lq, noise, t)
    expected_sample = torch.cat([z_t, F.max_pool2d(masks, 8), z_lq], dim=1)  # cat[z_t, maxpool8(m), z̄]
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(PROMPT, device="cpu", do_classifier_free_guidance=False)

    torch.testing.assert_close(got["sample"], expected_sample, rtol=0, atol=1e-6)
    assert got["sample"].shape == (1, 9, 4, 6)
    assert torch.equal(got["timestep"], torch.tensor([400]))
    torch.testing.assert_close(got["encoder_hidden_states"], embeds, rtol=0, atol=0)
    torch.testing.assert_close(got["added_cond_kwargs"]["text_embeds"], pooled, rtol=0, atol=0)
    assert got["added_cond_kwargs"]["time_ids"].tolist() == [[32, 48, 0, 0, 32, 48]]

    # Eq. 5: x̂0 is the scheduler's own one-step estimate from the UNet's epsilon channels.
    eps = outputs[0][:, :4]
    ref_x0 = ddpm.step(eps, 400, z_t, generator=torch.Generator().manual_seed(0)).pred_original_sample
    torch.testing.assert_close(out.x0, ref_x0, rtol=0, atol=1e-5)
    # Eq. 12–13: α̂ = σ(5th channel), z_out = α̂·x̂0 + (1-α̂)·z̄.
    alpha = torch.sigmoid(outputs[0][:, 4:])
    torch.testing.assert_close(out.alpha, alpha)
    torch.testing.assert_close(out.z_out, alpha * out.x0 + (1 - alpha) * out.z_lq, rtol=0, atol=1e-6)


def test_flux_transformer_receives_fill_layout_and_x0_is_the_euler_estimate():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxFillPipeline

    remover = _remover("flux")
    pipe, transformer = remover.pipe, remover.pipe.transformer
    image, mask = _scene()
    images, masks = _tensors(image, mask)
    calls, outputs, hooks = _capture(transformer)
    out = remover.engine.run(images, masks, [3])
    for h in hooks:
        h.remove()
    got = calls[0]

    vae = pipe.vae
    raw = vae.encode(images).latent_dist.mode()
    z = (raw - vae.config.shift_factor) * vae.config.scaling_factor
    torch.testing.assert_close(out.z_lq, z, rtol=0, atol=0)  # z̄ = (E(x) - shift)·scale, the full image
    noise = torch.randn((1, 16, 4, 6), generator=torch.Generator("cpu").manual_seed(3))
    packed_noise = FluxFillPipeline._pack_latents(noise, 1, 16, 4, 6)
    # FLUX Fill's own conditioning with the FULL image as the "masked image" (its latents passed directly).
    mask_tokens, shot_tokens = pipe.prepare_mask_latents(
        masks, raw, 1, 16, 1, 32, 48, torch.float32, "cpu", None
    )
    sched = FlowMatchEulerDiscreteScheduler.from_config(
        pipe.scheduler.config, use_dynamic_shifting=False, shift=1.0
    )  # "no resolution shift"
    sched.set_timesteps(sigmas=[0.4])
    z_t = sched.scale_noise(shot_tokens, sched.timesteps[:1], packed_noise)  # (1-s)·z + s·ε
    torch.testing.assert_close(
        got["hidden_states"], torch.cat([z_t, shot_tokens, mask_tokens], dim=2), rtol=0, atol=1e-6
    )
    assert got["hidden_states"].shape == (1, 6, 64 + 64 + 256)
    assert torch.equal(got["timestep"], torch.full((1,), 0.4))  # the transformer multiplies by 1000
    assert torch.equal(got["guidance"], torch.full((1,), 30.0))
    with torch.no_grad():
        embeds, pooled, text_ids = pipe.encode_prompt(PROMPT, PROMPT, device="cpu")
    torch.testing.assert_close(got["encoder_hidden_states"], embeds)
    torch.testing.assert_close(got["pooled_projections"], pooled)
    assert torch.equal(got["txt_ids"], text_ids)
    assert torch.equal(
        got["img_ids"], FluxFillPipeline._prepare_latent_image_ids(1, 2, 3, "cpu", torch.float32)
    )

    v = outputs[0][..., :64]
    x0_tokens = sched.step(v, sched.timesteps[0], z_t).prev_sample  # Euler step from s to 0 = z_s - s·v
    torch.testing.assert_close(
        out.x0, FluxFillPipeline._unpack_latents(x0_tokens, 32, 48, 8), rtol=0, atol=1e-6
    )
    alpha = torch.sigmoid(FluxFillPipeline._unpack_latents(outputs[0][..., 64:], 32, 48, 8))
    assert out.alpha.shape == (1, 1, 4, 6)  # 4 packed logits -> one alpha channel at latent resolution
    torch.testing.assert_close(out.alpha, alpha)
    torch.testing.assert_close(out.z_out, alpha * out.x0 + (1 - alpha) * out.z_lq, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_hard_blend_eq6_keeps_latents_outside_the_pooled_mask(family):
    remover = _remover(family)
    image, mask = _scene()
    images, masks = _tensors(image, mask)
    out = remover.engine.run(images, masks, [0], blend="mask")
    m = F.max_pool2d(masks, 8)
    torch.testing.assert_close(out.z_out, m * out.x0 + (1 - m) * out.z_lq, rtol=0, atol=0)
    outside = (m == 0).expand_as(out.z_out)
    assert outside.any() and torch.equal(out.z_out[outside], out.z_lq[outside])


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_zero_alpha_keeps_input_latents_and_pixels_outside_the_mask(family):
    remover = _remover(family)
    head = remover.engine.denoiser.conv_out if family == "sdxl" else remover.engine.denoiser.proj_out
    native = 4 if family == "sdxl" else 64
    with torch.no_grad():  # alpha logits -> -200 everywhere: σ = 0 exactly in float32
        head.weight[native:] = 0
        head.bias[native:] = -200
    image, mask = _scene(37, 53)
    out = remover.engine.run(*_tensors(*_scene()), [0])
    assert torch.equal(out.z_out, out.z_lq)
    result = remover(RemovalRequest(image, mask, seed=0))
    assert result.image.shape == image.shape
    assert np.array_equal(result.image[mask == 0], image[mask == 0])
    assert not np.array_equal(result.image[mask == 1], image[mask == 1])


def test_paste_back_off_returns_the_decoded_image_everywhere():
    """paste_back=False is the authors' setting: the VAE round trip shows outside mask ∪ alpha too."""
    remover = _remover("sdxl")
    head = remover.engine.denoiser.conv_out
    with torch.no_grad():  # α = 0 everywhere, so the default paste region is the mask alone
        head.weight[4:] = 0
        head.bias[4:] = -200
    image, mask = _scene(37, 53)
    pasted = remover(RemovalRequest(image, mask, seed=0))
    raw = remover(RemovalRequest(image, mask, seed=0, options={"paste_back": False}))
    assert np.array_equal(pasted.image[mask == 0], image[mask == 0])
    assert not np.array_equal(raw.image[mask == 0], image[mask == 0])
    assert np.array_equal(raw.image[mask == 1], pasted.image[mask == 1])


# ------------------------------------------------------------------------------------------------------------
# Alpha head
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_fresh_alpha_head_leaves_native_outputs_unchanged_and_round_trips(family, tmp_path):
    model = copy.deepcopy(
        tiny_pipeline(TINY[family]).unet if family == "sdxl" else tiny_pipeline(TINY[family]).transformer
    ).eval()
    gen = torch.Generator().manual_seed(0)
    if family == "sdxl":
        kwargs = {
            "sample": torch.randn(1, 9, 4, 6, generator=gen),
            "timestep": torch.tensor([400]),
            "encoder_hidden_states": torch.randn(1, 77, 64, generator=gen),
            "added_cond_kwargs": {
                "text_embeds": torch.randn(1, 32, generator=gen),
                "time_ids": torch.tensor([[32.0, 48, 0, 0, 32, 48]]),
            },
        }
    else:
        kwargs = {
            "hidden_states": torch.randn(1, 6, 384, generator=gen),
            "timestep": torch.tensor([0.4]),
            "encoder_hidden_states": torch.randn(1, 8, 32, generator=gen),
            "pooled_projections": torch.randn(1, 32, generator=gen),
            "guidance": torch.tensor([30.0]),
            "txt_ids": torch.zeros(8, 3),
            "img_ids": torch.zeros(6, 3),
        }
    with torch.no_grad():
        before = model(**kwargs, return_dict=False)[0]
        added = alpha_head_parameter_count(model)
        n_params = sum(p.numel() for p in model.parameters())
        add_alpha_head(model)
        after = model(**kwargs, return_dict=False)[0]
    assert has_alpha_head(model) and model.config.out_channels == (5 if family == "sdxl" else 68)
    assert sum(p.numel() for p in model.parameters()) - n_params == added
    native = after[:, :4] if family == "sdxl" else after[..., :64]
    torch.testing.assert_close(native, before, rtol=0, atol=1e-6)
    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    assert has_alpha_head(reloaded)
    # The weights round-trip exactly. The output is compared within 1e-5: diffusers 0.42 reloads some tensors
    # in another memory layout, and the CPU kernels then sum in another order.
    saved, loaded = model.state_dict(), reloaded.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[key], loaded[key]) for key in saved)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**kwargs, return_dict=False)[0], after, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# Determinism, sizes, batching
# ------------------------------------------------------------------------------------------------------------
def test_same_seed_same_output_across_removers_and_different_seed_differs():
    image, mask = _scene(40, 56)
    first = _remover("sdxl")
    a = first(RemovalRequest(image, mask, seed=5))
    b = _remover("sdxl")(RemovalRequest(image, mask, seed=5))
    c = first(RemovalRequest(image, mask, seed=6))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.alpha, b.alpha)
    assert not np.array_equal(a.image, c.image)


def test_working_sizes_follow_the_authors_rules():
    assert sdxl_working_size(1000, 1500) == (512, 768)  # short side 512
    assert sdxl_working_size(1500, 1001) == (768, 512)  # int(1500·512/1001) = 767 -> 768
    assert sdxl_working_size(300, 401) == (304, 416)  # small images: only rounded up to 16
    assert flux_working_size(2000, 3000) == (672, 1024)  # long side 1024, floored to 16
    assert flux_working_size(100, 37) == (96, 32)
    assert flux_working_size(5, 7) == (16, 16)


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_an_image_in_a_batch_gets_its_own_noise_and_output(family):
    """Each image's ε comes from its own seed: in a batch of three it is the noise a lone run of it draws,
    and its output is that run's up to the float rounding of batched kernels."""
    remover = _remover(family)
    images, masks = zip(*(_tensors(*_scene(seed=i)) for i in range(3)))
    batch = remover.engine.run(torch.cat(images), torch.cat(masks), [4, 5, 6])
    alone = remover.engine.run(images[1], masks[1], [5])
    # z_t = noised z̄: equal latents and equal noise give equal z_t
    torch.testing.assert_close(batch.z_t[1:2], alone.z_t, rtol=0, atol=1e-5)
    torch.testing.assert_close(batch.images[1:2], alone.images, rtol=0, atol=1e-4)
    assert not torch.allclose(batch.z_t[0], batch.z_t[2])


def test_options_are_validated_and_prompt_is_encoded_once():
    remover = _remover("sdxl")
    image, mask = _scene()
    for bad in ({"timestep": 1000}, {"timestep": 40.5}, {"blend": "soft"}, {"guidance": 3.0}, {"steps": 4}):
        with pytest.raises(InvalidInputError):
            remover(RemovalRequest(image, mask, options=bad))
    flux_bad = ({"timestep": 1.5}, {"timestep": 0}, {"timestep": "x"}, {"guidance": -1}, {"blend": "alpha "})
    flux = _remover("flux")
    for bad in flux_bad:
        with pytest.raises(InvalidInputError):
            flux(RemovalRequest(image, mask, options=bad))
    calls = []
    original = flux.pipe.encode_prompt
    flux.pipe.encode_prompt = lambda *a, **k: calls.append(1) or original(*a, **k)
    first = flux(RemovalRequest(image, mask, seed=0, options={"timestep": 400}))  # t=400 reads as s=0.4
    second = flux(RemovalRequest(image, mask, seed=0, options={"timestep": 0.4}))
    assert np.array_equal(first.image, second.image) and len(calls) == 1  # encoded once, then cached
    flux.engine.release_text_encoders()
    assert flux.pipe.text_encoder is None and flux.pipe.text_encoder_2 is None
    assert np.array_equal(flux(RemovalRequest(image, mask, seed=0)).image, first.image)
    assert not np.array_equal(
        flux(RemovalRequest(image, mask, seed=0, options={"timestep": 0.7})).image, first.image
    )


# ------------------------------------------------------------------------------------------------------------
# CLI and API
# ------------------------------------------------------------------------------------------------------------
def test_cli_remove_with_weights_timestep_and_alpha(sdxl_weights, tmp_path):
    from PIL import Image

    from erasekit.cli import main

    model = write_tiny_pipeline("sdxl-inpaint", tmp_path / "tiny-sdxl")
    image, mask = _scene(40, 56)
    Image.fromarray(image).save(tmp_path / "in.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    args = ["remove", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "--method", "osor-sdxl",
            "--model", str(model), "--weights", str(sdxl_weights), "--timestep", "300", "--seed", "1",
            "--save-alpha", str(tmp_path / "alpha.png"), "-o", str(tmp_path / "out.png")]
    assert main(args) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    alpha = np.asarray(Image.open(tmp_path / "alpha.png"))
    assert out.shape == image.shape and alpha.shape == mask.shape and alpha.max() > 0
    assert (
        main(
            ["alpha-overlay", str(tmp_path / "in.png"), str(tmp_path / "alpha.png"), "--mask",
             str(tmp_path / "mask.png"), "-o", str(tmp_path / "overlay.png")]
        )
        == 0
    )
    assert np.asarray(Image.open(tmp_path / "overlay.png")).shape == image.shape
    assert main(["osor-convert", str(sdxl_weights), str(tmp_path / "converted")]) == 0
    assert (tmp_path / "converted" / "osor_config.json").is_file()
    missing = args[:-2] + ["-o", str(tmp_path / "x.png")]
    missing[missing.index("--weights") + 1] = str(tmp_path / "nope.pth")
    assert main(missing) == 3  # MissingWeightsError


def test_cli_paste_back_text_is_read_as_a_boolean(sdxl_weights, tmp_path):
    """-O paste_back=False / =no / =0 all turn paste-back off (JSON parsing once read "no" as a truthy
    string)."""
    from PIL import Image

    import erasekit
    from erasekit.cli import main

    model = write_tiny_pipeline("sdxl-inpaint", tmp_path / "tiny-sdxl")
    image, mask = _scene(40, 56)
    Image.fromarray(image).save(tmp_path / "in.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "mask.png")

    def run(*extra: str) -> np.ndarray:
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}.png"
        assert (
            main(
                ["remove", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "--method",
                 "osor-sdxl", "--model", str(model), "--weights", str(sdxl_weights), "--seed", "1", *extra,
                 "-o", str(out)]
            )
            == 0
        )
        return np.asarray(Image.open(out))

    off = [run("-O", f"paste_back={text}") for text in ("False", "no", "0", "OFF")]
    on = [run("-O", f"paste_back={text}") for text in ("True", "yes")] + [run()]
    api = erasekit.remove(
        image, mask, method="osor-sdxl", model=str(model), weights=str(sdxl_weights), seed=1, paste_back=False
    ).image
    assert all(np.array_equal(o, api) for o in off)
    assert all(np.array_equal(o, on[-1]) for o in on)
    assert not np.array_equal(off[0], on[0])  # outside mask ∪ alpha, paste-back keeps the input's pixels


def test_alpha_overlay_marks_alpha_and_outlines_the_mask():
    from erasekit.methods.osor.viz import alpha_overlay

    image = np.full((20, 30, 3), 128, np.uint8)
    alpha = np.zeros((20, 30), np.float32)
    alpha[5:15, 5:25] = 1.0
    mask = np.zeros((20, 30), np.float32)
    mask[8:12, 8:12] = 1
    out = alpha_overlay(image, alpha, mask, thickness=1)
    assert np.array_equal(out[0, 0], image[0, 0])  # alpha 0, off the outline: untouched
    assert not np.array_equal(out[6, 20], image[6, 20])  # alpha 1: coloured
    assert np.array_equal(out[8, 8], [255, 255, 255])  # the mask's outline
    with pytest.raises(InvalidInputError):
        alpha_overlay(image, alpha[:10])

"""erasekit.diffusion.loop and .inversion: the hooked loop equals diffusers' pipelines; DDIM inversion round
trips."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from PIL import Image

from erasekit.diffusion import inversion, loop
from erasekit.diffusion.attention import (
    AttentionStore,
    ExplicitAttnProcessor,
    LayerSelector,
    installed_processors,
)
from erasekit.testing import tiny_pipeline

STEPS = 3
PROMPT = "a photo of a dog"


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


@pytest.fixture(scope="module")
def photo_and_mask():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 20:44] = 255
    return photo, Image.fromarray(mask)


def smooth_photo() -> Image.Image:
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    return Image.fromarray((np.stack([xx, yy, 0.5 * (xx + yy)], -1) * 255).astype(np.uint8))


# ----------------------------------------------------------------------------------------------------------
# With no hooks the loop is the diffusers pipeline
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("guidance_scale", [7.5, 1.0])
def test_text_to_image_equals_stable_diffusion_pipeline(guidance_scale):
    pipe = tiny_pipeline("sd15")
    kwargs = {"num_inference_steps": STEPS, "guidance_scale": guidance_scale}
    expected = pipe(PROMPT, generator=generator(), output_type="latent", **kwargs).images
    got = loop.text_to_image(pipe, PROMPT, generator=generator(), **kwargs)
    assert torch.equal(got, expected)
    images = pipe(PROMPT, generator=generator(), output_type="np", **kwargs).images
    assert np.array_equal(loop.decode(pipe, got, output_type="np"), images)


def test_inpaint_equals_stable_diffusion_inpaint_pipeline(photo_and_mask):
    pipe = tiny_pipeline("sd2-inpaint")
    photo, mask = photo_and_mask
    kwargs = {"num_inference_steps": STEPS, "guidance_scale": 7.5, "negative_prompt": "blurry"}
    expected = pipe(PROMPT, image=photo, mask_image=mask, generator=generator(), output_type="latent",
                    **kwargs).images
    got = loop.inpaint(pipe, PROMPT, photo, mask, generator=generator(), **kwargs)
    assert torch.equal(got, expected)
    images = pipe(PROMPT, image=photo, mask_image=mask, generator=generator(), output_type="np",
                  **kwargs).images
    assert np.array_equal(loop.decode(pipe, got, output_type="np"), images)


def test_the_loop_leaves_the_pipeline_scheduler_alone():
    pipe = tiny_pipeline("sd15")
    before = pipe.scheduler.num_inference_steps
    loop.text_to_image(pipe, PROMPT, num_inference_steps=STEPS + 1, generator=generator())
    assert pipe.scheduler.num_inference_steps == before


def test_bad_inputs_are_clear_errors(photo_and_mask):
    pipe = tiny_pipeline("sd15")
    with pytest.raises(ValueError, match="9-channel"):
        loop.inpaint(pipe, PROMPT, *photo_and_mask, num_inference_steps=STEPS)  # type: ignore[arg-type]
    embeddings = loop.encode_prompt(pipe, PROMPT, guided=False)
    scheduler = loop.fresh_scheduler(pipe)
    scheduler.set_timesteps(STEPS)
    with pytest.raises(ValueError, match="negative embeddings"):
        loop.denoise(pipe.unet, scheduler, torch.zeros(1, 4, 8, 8), embeddings, guidance_scale=7.5)


# ----------------------------------------------------------------------------------------------------------
# Hooks
# ----------------------------------------------------------------------------------------------------------
class Recorder(loop.StepHook):
    def __init__(self):
        self.events: list[tuple[str, int, int, tuple]] = []

    def before_model(self, state):
        self.events.append(("before_model", state.step, int(state.timestep), tuple(state.model_input.shape)))

    def on_noise_pred(self, state):
        self.events.append(("on_noise_pred", state.step, int(state.timestep), tuple(state.noise_pred.shape)))

    def after_step(self, state):
        self.events.append(("after_step", state.step, int(state.timestep), tuple(state.latents.shape)))


def test_hooks_see_every_step_in_order_and_observing_changes_nothing(photo_and_mask):
    pipe = tiny_pipeline("sd2-inpaint")
    recorder = Recorder()
    plain = loop.inpaint(pipe, PROMPT, *photo_and_mask, num_inference_steps=STEPS, generator=generator())
    hooked = loop.inpaint(pipe, PROMPT, *photo_and_mask, num_inference_steps=STEPS, generator=generator(),
                          hooks=[recorder])
    assert torch.equal(hooked, plain)
    scheduler = loop.fresh_scheduler(pipe)
    scheduler.set_timesteps(STEPS)
    expected = []
    for step, t in enumerate(scheduler.timesteps.tolist()):
        expected += [("before_model", step, t, (2, 9, 8, 8)),  # the inpainting hook ran first: 9 channels
                     ("on_noise_pred", step, t, (1, 4, 8, 8)), ("after_step", step, t, (1, 4, 8, 8))]
    assert recorder.events == expected


class Reguide(loop.StepHook):
    """Recomputes classifier-free guidance with another scale from the UNet's raw output."""

    def __init__(self, scale):
        self.scale = scale

    def on_noise_pred(self, state):
        uncond, text = state.model_output.chunk(2)
        state.noise_pred = uncond + self.scale * (text - uncond)


def test_a_noise_prediction_hook_edits_guidance():
    pipe = tiny_pipeline("sd15")
    edited = loop.text_to_image(pipe, PROMPT, num_inference_steps=STEPS, guidance_scale=7.5,
                                generator=generator(), hooks=[Reguide(3.0)])
    expected = loop.text_to_image(pipe, PROMPT, num_inference_steps=STEPS, guidance_scale=3.0,
                                  generator=generator())
    assert torch.equal(edited, expected)
    assert not torch.equal(edited, loop.text_to_image(pipe, PROMPT, num_inference_steps=STEPS,
                                                      generator=generator()))


class PinFirstStep(loop.StepHook):
    """Sets z after step 0 to a constant and keeps the latents step 1 starts from."""

    def __init__(self, value):
        self.value = value
        self.seen: torch.Tensor | None = None

    def before_model(self, state):
        if state.step == 1:
            self.seen = state.latents

    def after_step(self, state):
        if state.step == 0:
            state.latents = torch.full_like(state.latents, self.value)


def test_an_after_step_hook_edits_the_latents_the_next_step_starts_from():
    pipe = tiny_pipeline("sd15")
    hook = PinFirstStep(0.25)
    ddim = inversion.ddim_schedulers(pipe.scheduler.config)[0]  # stateless steps (PNDM keeps a history)
    got = loop.text_to_image(pipe, PROMPT, num_inference_steps=STEPS, generator=generator(), scheduler=ddim,
                             hooks=[hook])
    assert hook.seen is not None and torch.equal(hook.seen, torch.full_like(hook.seen, 0.25))
    # the rest of the run is the plain loop from those latents
    scheduler = inversion.ddim_schedulers(pipe.scheduler.config)[0]
    scheduler.set_timesteps(STEPS)
    embeddings = loop.encode_prompt(pipe, PROMPT, guided=True)
    expected = loop.denoise(pipe.unet, scheduler, hook.seen, embeddings, guidance_scale=7.5,
                            timesteps=scheduler.timesteps[1:])
    assert torch.equal(got, expected)


def test_the_attention_store_learns_the_step_from_the_loop():
    pipe = tiny_pipeline("sd15")
    store = AttentionStore(steps={0, 2}, average_heads=True)
    layers = LayerSelector(kind="cross")
    plain = loop.text_to_image(pipe, PROMPT, num_inference_steps=STEPS, generator=generator())
    def recording(name):
        return ExplicitAttnProcessor(name, store=store)

    with installed_processors(pipe.unet, layers, factory=recording):
        recorded = loop.text_to_image(pipe, PROMPT, num_inference_steps=STEPS, generator=generator(),
                                      hooks=[store])
    torch.testing.assert_close(recorded, plain, rtol=1e-5, atol=1e-5)  # explicit softmax vs SDPA, 3 steps
    assert sorted(store.maps) == [0, 2]
    assert all(sorted(maps) == sorted(layers.select(pipe.unet)) for maps in store.maps.values())
    assert store.maps[0][layers.select(pipe.unet)[0]].shape == (2, 16, 77)  # [uncond, cond], 4×4 tokens, text


# ----------------------------------------------------------------------------------------------------------
# DDIM inversion
# ----------------------------------------------------------------------------------------------------------
def round_trip(unet, config, z0, embeddings, steps):
    sampler, inverse = inversion.ddim_schedulers(config)
    inverted = inversion.ddim_inversion(unet, inverse, z0, embeddings, num_inference_steps=steps)
    sampler.set_timesteps(steps)
    return inverted, loop.denoise(unet, sampler, inverted.latents[-1], embeddings, guidance_scale=1.0)


def rms(x: torch.Tensor) -> float:
    return x.pow(2).mean().sqrt().item()


def test_inversion_trajectory_has_every_step():
    pipe = tiny_pipeline("sd15")
    z0 = inversion.image_latents(pipe, smooth_photo())
    embeddings = loop.encode_prompt(pipe, PROMPT, guided=False)
    inverted, _ = round_trip(pipe.unet, pipe.scheduler.config, z0, embeddings, 10)
    assert len(inverted.latents) == 11 and inverted.latents[0] is z0
    assert inverted.timesteps.tolist() == list(range(1, 1000, 100))  # SD's "leading" spacing, steps_offset 1


class ConstantNoise(torch.nn.Module):
    def __init__(self, eps):
        super().__init__()
        self.eps = eps

    def forward(self, sample, timestep, encoder_hidden_states=None, return_dict=True):
        return (self.eps.expand_as(sample),)


class GaussianDenoiser(torch.nn.Module):
    """The exact ε-predictor for data x_0 ~ N(0, I): E[ε | z_t] = √(1 − ᾱ_t)·z_t — a smooth, well-trained
    model."""

    def __init__(self, alphas_cumprod):
        super().__init__()
        self.alphas_cumprod = alphas_cumprod

    def forward(self, sample, timestep, encoder_hidden_states=None, return_dict=True):
        return ((1 - self.alphas_cumprod[int(timestep)]).sqrt() * sample,)


def test_inversion_is_exact_when_the_noise_prediction_does_not_depend_on_the_latent():
    pipe = tiny_pipeline("sd15")
    embeddings = loop.encode_prompt(pipe, PROMPT, guided=False)
    z0, eps = torch.randn(2, 1, 4, 8, 8, generator=generator(3))
    _, reconstructed = round_trip(ConstantNoise(eps), pipe.scheduler.config, z0, embeddings, 50)
    assert (reconstructed - z0).abs().max() < 2e-5  # measured 8e-6: only fp32 rounding is left


def test_inversion_round_trip_error_is_second_order_for_a_smooth_model():
    """The only error is ε_θ(z_{t−Δ}) ≈ ε_θ(z_t); for a smooth model it shrinks fast with the step count."""
    pipe = tiny_pipeline("sd15")
    embeddings = loop.encode_prompt(pipe, PROMPT, guided=False)
    z0 = torch.randn(1, 4, 8, 8, generator=generator(0))
    model = GaussianDenoiser(inversion.ddim_schedulers(pipe.scheduler.config)[0].alphas_cumprod)
    errors = {steps: rms(round_trip(model, pipe.scheduler.config, z0, embeddings, steps)[1] - z0) / rms(z0)
              for steps in (10, 50)}
    assert errors[50] < 1e-3  # measured 8.1e-4 relative RMS (10 steps: 1.9e-2)
    assert errors[10] / errors[50] > 20  # 5× the steps, ≥ 20× less error


def test_inversion_round_trip_on_tiny_sd15():
    """On the random tiny SD1.5 UNet (not a denoiser: ε_θ is far from smooth along the trajectory) the round
    trip is much closer than chance but not close: measured RMS error 1.14 over 50 steps, against 14.6 when
    sampling starts from fresh noise instead of the inverted latent (z_0's own RMS is 0.05)."""
    pipe = tiny_pipeline("sd15")
    z0 = inversion.image_latents(pipe, smooth_photo())
    embeddings = loop.encode_prompt(pipe, PROMPT, guided=False)
    _inverted, reconstructed = round_trip(pipe.unet, pipe.scheduler.config, z0, embeddings, 50)
    sampler, _ = inversion.ddim_schedulers(pipe.scheduler.config)
    sampler.set_timesteps(50)
    from_noise = loop.denoise(pipe.unet, sampler, torch.randn(z0.shape, generator=generator(1)), embeddings,
                              guidance_scale=1.0)
    assert rms(reconstructed - z0) < 1.25
    assert rms(reconstructed - z0) < 0.1 * rms(from_noise - z0)

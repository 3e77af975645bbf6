"""A denoising loop over a diffusers scheduler with per-step hooks, and the text-to-image and inpainting
set-ups that make it reproduce diffusers' ``StableDiffusionPipeline`` / ``StableDiffusionInpaintPipeline``
exactly.

One step reads::

    model_input = scale_model_input(cat[z_t, z_t] if guided else z_t, t)
    hooks.before_model(state)       # extend model_input (the inpainting UNet's 9 channels), swap the text
                                    # embeddings for this step, tell an attention store the step
    output = unet(model_input, t, encoder_hidden_states)
    noise_pred = uncond + w·(text − uncond) if guided else output
    hooks.on_noise_pred(state)      # guidance edits of noise_pred
    z_{t−1} = scheduler.step(noise_pred, t, z_t)
    hooks.after_step(state)         # latent edits of z_{t−1}

Hooks are :class:`StepHook` objects; each gets the mutable :class:`StepState` of the step and edits it in
place. The loop runs under ``torch.no_grad()``; a hook that needs gradients (attention guidance) opens
``torch.enable_grad()`` itself, as diffusers' guided pipelines (e.g. Attend-and-Excite) do.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

# diffusers' pipelines register their components at run time and its models are called through hooks that mypy
# cannot see, so these are Any here, as elsewhere in erasekit; the names say what is expected.
SDPipeline = Any  # a StableDiffusionPipeline (text to image) or StableDiffusionInpaintPipeline
Scheduler = Any   # a diffusers scheduler: set_timesteps, timesteps, init_noise_sigma, scale_model_input, step
UNet = Any        # a UNet2DConditionModel
Generator = torch.Generator | list[torch.Generator] | None


@dataclass
class PromptEmbeddings:
    """Text embeddings of the prompt and, for classifier-free guidance, of the negative (or empty) prompt."""

    positive: torch.Tensor
    negative: torch.Tensor | None = None

    def for_unet(self, guided: bool) -> torch.Tensor:
        """The UNet's ``encoder_hidden_states``: ``[negative; positive]`` under guidance, diffusers' order."""
        if not guided:
            return self.positive
        if self.negative is None:
            raise ValueError("classifier-free guidance (guidance_scale > 1) needs negative embeddings")
        return torch.cat([self.negative, self.positive])


@dataclass
class StepState:
    """What one denoising step works on; hooks edit it in place. ``encoder_hidden_states`` starts each step as
    the prompt embeddings (an edit lasts one step); ``latents`` is z_t until the scheduler step, then
    z_{t−1}."""

    step: int
    timestep: torch.Tensor
    latents: torch.Tensor
    model_input: torch.Tensor
    encoder_hidden_states: torch.Tensor
    guidance_scale: float
    model_output: torch.Tensor | None = None  # the UNet's raw output (both halves under guidance)
    noise_pred: torch.Tensor | None = None    # the (guided) prediction the scheduler steps with


class StepHook:
    """A per-step hook of :func:`denoise`. Override any of the three; the defaults do nothing."""

    def before_model(self, state: StepState) -> None:
        """Before the UNet call: edit ``model_input`` or ``encoder_hidden_states``."""

    def on_noise_pred(self, state: StepState) -> None:
        """After guidance: edit ``noise_pred``."""

    def after_step(self, state: StepState) -> None:
        """After the scheduler step: edit ``latents`` (now z_{t−1})."""


@torch.no_grad()
def denoise(unet: UNet, scheduler: Scheduler, latents: torch.Tensor,
            embeddings: PromptEmbeddings, *, guidance_scale: float, hooks: Sequence[StepHook] = (),
            timesteps: torch.Tensor | None = None, step_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
    """Run ``scheduler``'s steps (``timesteps``, by default all of ``scheduler.timesteps``: call
    ``set_timesteps`` first) from ``latents``; return the final latents. Guidance is on when ``guidance_scale
    > 1``, as in diffusers. ``step_kwargs`` go to ``scheduler.step`` (see :func:`step_kwargs`)."""
    guided = guidance_scale > 1.0
    context = embeddings.for_unet(guided)
    for step, t in enumerate(scheduler.timesteps if timesteps is None else timesteps):
        model_input = scheduler.scale_model_input(torch.cat([latents] * 2) if guided else latents, t)
        state = StepState(step, t, latents, model_input, context, guidance_scale)
        for hook in hooks:
            hook.before_model(state)
        state.model_output = unet(state.model_input, t, encoder_hidden_states=state.encoder_hidden_states,
                                  return_dict=False)[0]
        state.noise_pred = state.model_output
        if guided:
            uncond, text = state.model_output.chunk(2)
            state.noise_pred = uncond + guidance_scale * (text - uncond)
        for hook in hooks:
            hook.on_noise_pred(state)
        state.latents = scheduler.step(state.noise_pred, t, state.latents, **(step_kwargs or {}),
                                       return_dict=False)[0]
        for hook in hooks:
            hook.after_step(state)
        latents = state.latents
    return latents


def step_kwargs(scheduler: Scheduler, generator: Generator = None, eta: float = 0.0) -> dict[str, Any]:
    """``eta`` and ``generator`` for the schedulers whose ``step`` takes them (DDIM, DDPM…), as the pipelines'
    ``prepare_extra_step_kwargs`` does, but for any scheduler rather than the pipeline's own."""
    accepted = inspect.signature(scheduler.step).parameters
    kwargs: dict[str, Any] = {"eta": eta, "generator": generator}
    return {name: value for name, value in kwargs.items() if name in accepted}


def fresh_scheduler(pipe: SDPipeline) -> Scheduler:
    """A new scheduler from the pipeline's config, so a loop never changes the state of ``pipe.scheduler``."""
    return type(pipe.scheduler).from_config(pipe.scheduler.config)


def encode_prompt(pipe: SDPipeline, prompt: str | list[str], negative_prompt: str | list[str] | None = None,
                  *, guided: bool) -> PromptEmbeddings:
    """The prompt (and, when ``guided``, the negative prompt) through the pipeline's own ``encode_prompt``."""
    with torch.no_grad():
        positive, negative = pipe.encode_prompt(prompt, pipe._execution_device, 1, guided, negative_prompt)
    return PromptEmbeddings(positive, negative if guided else None)


class InpaintingInput(StepHook):
    """The inpainting UNet's input: cat[latents, mask, masked_image_latents] on channels (4 + 1 + 4 = 9).
    ``mask`` and ``masked_image_latents`` are already doubled for guidance, as the UNet batch is."""

    def __init__(self, mask: torch.Tensor, masked_image_latents: torch.Tensor):
        self.mask = mask
        self.masked_image_latents = masked_image_latents

    @classmethod
    @torch.no_grad()
    def from_pipeline(cls, pipe: SDPipeline, image: Image.Image, mask_image: Image.Image, *, batch_size: int,
                      height: int, width: int, dtype: torch.dtype, generator: Generator,
                      guided: bool) -> InpaintingInput:
        """Preprocess ``image`` and ``mask_image`` and encode the masked image with the pipeline's own
        helpers. The VAE samples with ``generator``: call this after drawing the initial noise, as the
        pipeline does."""
        init_image = pipe.image_processor.preprocess(image, height=height, width=width).float()
        mask = pipe.mask_processor.preprocess(mask_image, height=height, width=width)
        masked_image = init_image * (mask < 0.5)  # the pipeline's rule: pixels with mask ≥ ½ are hidden
        mask, masked_latents = pipe.prepare_mask_latents(mask, masked_image, batch_size, height, width, dtype,
                                                         pipe._execution_device, generator, guided)
        return cls(mask, masked_latents)

    def before_model(self, state: StepState) -> None:
        state.model_input = torch.cat([state.model_input, self.mask, self.masked_image_latents], dim=1)


def _initial_noise(pipe: SDPipeline, scheduler: Scheduler, embeddings: PromptEmbeddings, height: int,
                   width: int, generator: Generator) -> torch.Tensor:
    """Gaussian noise scaled by the scheduler's initial sigma (call after ``set_timesteps``: Euler's depends
    on it), drawn like the pipelines' ``prepare_latents``."""
    shape = (embeddings.positive.shape[0], pipe.vae.config.latent_channels,
             height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    noise = randn_tensor(shape, generator=generator, device=pipe._execution_device,
                         dtype=embeddings.positive.dtype)
    return noise * scheduler.init_noise_sigma


def _default_size(pipe: SDPipeline, height: int | None, width: int | None) -> tuple[int, int]:
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return height or size, width or size


@torch.no_grad()
def text_to_image(pipe: SDPipeline, prompt: str | list[str], *, num_inference_steps: int = 50,
                  guidance_scale: float = 7.5, negative_prompt: str | list[str] | None = None,
                  height: int | None = None, width: int | None = None, generator: Generator = None,
                  eta: float = 0.0, scheduler: Scheduler | None = None,
                  hooks: Sequence[StepHook] = ()) -> torch.Tensor:
    """Text-to-image latents; with no hooks equal to ``pipe(..., output_type="latent")``'s. ``scheduler``
    defaults to a fresh copy of the pipeline's (``pipe`` is never changed)."""
    scheduler = scheduler or fresh_scheduler(pipe)
    height, width = _default_size(pipe, height, width)
    embeddings = encode_prompt(pipe, prompt, negative_prompt, guided=guidance_scale > 1.0)
    scheduler.set_timesteps(num_inference_steps, device=pipe._execution_device)
    latents = _initial_noise(pipe, scheduler, embeddings, height, width, generator)
    return denoise(pipe.unet, scheduler, latents, embeddings, guidance_scale=guidance_scale, hooks=hooks,
                   step_kwargs=step_kwargs(scheduler, generator, eta))


@torch.no_grad()
def inpaint(pipe: SDPipeline, prompt: str | list[str], image: Image.Image, mask_image: Image.Image, *,
            num_inference_steps: int = 50, guidance_scale: float = 7.5,
            negative_prompt: str | list[str] | None = None, height: int | None = None,
            width: int | None = None, generator: Generator = None, eta: float = 0.0,
            scheduler: Scheduler | None = None, hooks: Sequence[StepHook] = ()) -> torch.Tensor:
    """Inpainting latents from pure noise (strength 1) with a 9-channel UNet (SD1.5-/SD2-Inpainting); with
    no hooks equal to ``pipe(..., output_type="latent")``'s. The :class:`InpaintingInput` hook runs first."""
    if pipe.unet.config.in_channels != 9:
        raise ValueError("inpaint needs a 9-channel inpainting UNet; this one takes "
                         f"{pipe.unet.config.in_channels} channels")
    scheduler = scheduler or fresh_scheduler(pipe)
    height, width = _default_size(pipe, height, width)
    guided = guidance_scale > 1.0
    embeddings = encode_prompt(pipe, prompt, negative_prompt, guided=guided)
    scheduler.set_timesteps(num_inference_steps, device=pipe._execution_device)
    latents = _initial_noise(pipe, scheduler, embeddings, height, width, generator)
    conditioning = InpaintingInput.from_pipeline(
        pipe, image, mask_image, batch_size=latents.shape[0], height=height, width=width, dtype=latents.dtype,
        generator=generator, guided=guided)
    return denoise(pipe.unet, scheduler, latents, embeddings, guidance_scale=guidance_scale,
                   hooks=(conditioning, *hooks), step_kwargs=step_kwargs(scheduler, generator, eta))


@torch.no_grad()
def decode(pipe: SDPipeline, latents: torch.Tensor, output_type: str = "pil") -> Any:
    """Latents to images through the VAE and the pipeline's image processor, as the pipelines decode."""
    image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(image, output_type=output_type,
                                            do_denormalize=[True] * image.shape[0])

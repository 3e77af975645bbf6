"""DDIM inversion: run the deterministic DDIM update backwards (z_0 → z_T) and keep every step's latent.

It is :func:`~erasekit.diffusion.loop.denoise` driven by diffusers' ``DDIMInverseScheduler``, whose step is
the DDIM update (arXiv:2010.02502, Eq. 12) with t and t−Δ exchanged: at inverse timestep t it evaluates
ε_θ(z_{t−Δ}, t) and moves z_{t−Δ} to z_t — the approximation ε_θ(z_{t−Δ}) ≈ ε_θ(z_t) that prompt-to-prompt's
null-text inversion (arXiv:2211.09794, Sec. 3) makes too. Its timesteps are the DDIM sampler's in ascending
order, and its first step starts from the noise level the sampler's last step ends at (both read
``set_alpha_to_one``), so inversion followed by DDIM sampling with the same embeddings is the identity up to
that approximation. The library's semantics fit, so nothing is written by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler
from PIL import Image

from .loop import PromptEmbeddings, Scheduler, SDPipeline, StepHook, StepState, UNet, denoise


def ddim_schedulers(config: Any) -> tuple[DDIMScheduler, DDIMInverseScheduler]:
    """A DDIM sampler and its inverse from any SD scheduler config (SD 1.5 ships PNDM's). ``clip_sample`` is
    off: latents are not confined to [−1, 1], and DDIM's default (on) applies whenever the config does not
    say."""
    return (DDIMScheduler.from_config(config, clip_sample=False),
            DDIMInverseScheduler.from_config(config, clip_sample=False))


@torch.no_grad()
def image_latents(pipe: SDPipeline, image: Image.Image | torch.Tensor) -> torch.Tensor:
    """z_0 of ``image``: the VAE posterior's mode (deterministic, unlike a sample) times the scaling
    factor."""
    pixels = pipe.image_processor.preprocess(image).to(pipe._execution_device, pipe.vae.dtype)
    return pipe.vae.encode(pixels).latent_dist.mode() * pipe.vae.config.scaling_factor


@dataclass
class Inversion:
    """``latents[0]`` is z_0 and ``latents[k]`` the latent at ``timesteps[k − 1]``, so ``latents[-1]`` is z_T.
    Sampling step i (timestep ``timesteps[-1 − i]``) of the matching DDIM sampler maps ``latents[-1 − i]``
    back to ``latents[-2 − i]``: the target null-text optimisation fits at that step."""

    latents: list[torch.Tensor]
    timesteps: torch.Tensor


class _Trajectory(StepHook):
    def __init__(self, start: torch.Tensor):
        self.latents = [start]

    def after_step(self, state: StepState) -> None:
        self.latents.append(state.latents)


def ddim_inversion(unet: UNet, scheduler: Scheduler, latents: torch.Tensor, embeddings: PromptEmbeddings, *,
                   num_inference_steps: int = 50, guidance_scale: float = 1.0,
                   hooks: Sequence[StepHook] = ()) -> Inversion:
    """Invert ``latents`` (z_0) over ``num_inference_steps`` DDIM steps; the trajectory of every step.
    ``guidance_scale`` 1 uses the conditional embedding only (MagicRemover Sec. 3.2, as null-text
    inversion)."""
    scheduler.set_timesteps(num_inference_steps, device=latents.device)
    trajectory = _Trajectory(latents)
    denoise(unet, scheduler, latents, embeddings, guidance_scale=guidance_scale, hooks=(*hooks, trajectory))
    return Inversion(trajectory.latents, scheduler.timesteps)

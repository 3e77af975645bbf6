"""Chain-Rectifying Optimization, the equations (arXiv:2503.07026 Sec. 4.1, Eq. 6–9, Algorithm 1).

Time indexing: t ∈ {0, 1, …, T} with ᾱ_0 = 1 (the clean image) and ᾱ_t = ``alphas_cumprod[t − 1]`` of the
diffusers scheduler for t ≥ 1; the UNet is called with diffusers' timestep ``t − 1``. This is DDPM's 1-based
convention (Algorithm 1 draws t ~ U{1..T}) and makes Eq. 6's requirement exact: λ_0 = 1 − ᾱ_0 = 0, so
x̃_0 = x_ori, and a target at t − γ = 0 is the clean background latent.

Everything is in latent space: x_ori and x_obj are VAE latents (scaled), mixed after encoding. Mixing pixels
and encoding the mix would need one VAE pass per timestep pair; the VAE is not linear, so the two differ, and
the paper does not say which it does — latents are what Eq. 7 noises, so they are mixed there.
"""

from __future__ import annotations

import torch


def alphas_bar_with_clean(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """ᾱ_0..ᾱ_T: ``[1, alphas_cumprod…]`` (float64 for the table; see the module docstring)."""
    return torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod.double()])


def mixup_lambda(alpha_bar: torch.Tensor, *, mixup: bool = True, constant: float = 0.0) -> torch.Tensor:
    """λ_t: 1 − ᾱ_t (Sec. 5.1: "the increasing sequence λ follows 1 − ᾱ"), or ``constant`` for every t
    ("w/o mix-up", Table 3: λ_t held constant)."""
    return 1.0 - alpha_bar if mixup else torch.full_like(alpha_bar, constant)


def mixed_image(x_ori: torch.Tensor, x_obj: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Eq. 6: x̃_t = (1 − λ_t)·x_ori + λ_t·x_obj (``lam`` per sample, broadcast over C, H, W)."""
    lam = _per_sample(lam, x_ori)
    return (1.0 - lam) * x_ori + lam * x_obj


def noised(x_mix: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Eq. 7: x_t = √ᾱ_t·x̃_t + √(1 − ᾱ_t)·ε."""
    a = _per_sample(alpha_bar, x_mix)
    return a.sqrt() * x_mix + (1.0 - a).sqrt() * noise


def ddim_jump(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor,
              alpha_bar_s: torch.Tensor) -> torch.Tensor:
    """Eq. 8: the deterministic DDIM step (η = 0) from t to s = t − γ with the predicted ε:
    √ᾱ_s·(x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t + √(1 − ᾱ_s)·ε."""
    a_t, a_s = _per_sample(alpha_bar_t, x_t), _per_sample(alpha_bar_s, x_t)
    x0 = (x_t - (1.0 - a_t).sqrt() * eps) / a_t.sqrt()
    return a_s.sqrt() * x0 + (1.0 - a_s).sqrt() * eps


def chain_states(x_ori: torch.Tensor, x_obj: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                 s: torch.Tensor, alpha_bar: torch.Tensor, *, mixup: bool = True,
                 constant: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t^mix and x_s^mix (Eq. 6–7) with one ε for both, as Algorithm 1 draws one ε per sample."""
    lam = mixup_lambda(alpha_bar, mixup=mixup, constant=constant)
    x_t = noised(mixed_image(x_ori, x_obj, lam[t]), alpha_bar[t], noise)
    x_s = noised(mixed_image(x_ori, x_obj, lam[s]), alpha_bar[s], noise)
    return x_t, x_s


def cro_loss(target: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """Eq. 9: ‖x_{t−γ}^mix − x̂_{t−γ}^mix‖² averaged over every element (the mean, as diffusers' training
    scripts average their ε-MSE; a constant factor only rescales the learning rate)."""
    return torch.nn.functional.mse_loss(prediction.float(), target.float())


def sample_timesteps(batch: int, num_train_timesteps: int, gamma_max: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """t ~ U{1..T}; γ ~ U{1..min(γ_m, t)} so that s = t − γ ≥ 0 (the paper: "the time intervals … did not
    exceed γ_m = 100"). Returns (t, s) as int64."""
    t = torch.randint(1, num_train_timesteps + 1, (batch,), generator=generator)
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    gamma = 1 + (u * torch.clamp(t, max=gamma_max).double()).floor().long()
    return t, t - gamma


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    values = values.to(device=like.device, dtype=like.dtype)
    return values.reshape(-1, *([1] * (like.ndim - 1))) if values.ndim else values


__all__ = ["alphas_bar_with_clean", "chain_states", "cro_loss", "ddim_jump", "mixed_image", "mixup_lambda",
           "noised", "sample_timesteps"]

"""Attention guidance and classifier optimisation (MagicRemover arXiv:2310.02848, Eq. 7–9, 11–12, Algorithm 1,
App. A.4): the formulas, on tensors. :mod:`.sampling` runs them inside the two-branch sampling loop.

Notation: α_t is the scheduler's ᾱ_t (``alphas_cumprod``), as in the paper's Eq. 3; ε̂ is the CFG prediction
(1 + s)ε_θ(z_t, y) − sε_θ(z_t, ∅_t), which is diffusers' ε_u + w(ε_c − ε_u) with w = 1 + s = 7.5.

Open choices, each kept visible here:

* **Eq. 7's scalar** c = min A + λ(max A − min A) is the optimisation *target* and is held constant under
  differentiation (detached), as a target is. Literally, ``g = ‖A − c·A‖₁ = |1 − c|·‖A‖₁``.
* **The sign of the guidance term.** Eq. 8 adds A⊙∇g to ε̂. Under Algorithm 1's split update (x̂_0 from ε̂,
  the direction from ε̂^guid; Eq. 12, line 13) the perturbation δ = ε̂^guid − ε̂ enters z only through the
  direction term, with a positive coefficient: z_t^opt − z_t = √(1 − α_t)·δ. A "+" would move z_t *up* the
  energy and raise the object's attention, against the paper's stated aim (Sec. 3.3: move z_t "towards the
  direction where the response … is zero"). So ε̂^guid = ε̂ − v·Σ_m(Π_n A)⊙∇Σ g, which descends g;
  v (Eq. 5's guidance weight) is 1 by default since Eq. 8 writes none.
* **The optional-mask term** ∇(ẑ_{t−1} − z^inv_{t−1})⊙(1 − M) (Sec. 3.3, App. A.4) is read as the gradient of
  ½‖(ẑ_{t−1} − z^inv_{t−1})⊙(1 − M)‖², with ẑ_{t−1} the unguided DDIM step from z_t, added (unweighted by A)
  to the perturbation, with the same sign rule. App. A.4's alternative, Eq. 13, weights ∇Σg by M instead of
  by the maps (:func:`eq13_guided_noise`), with the same sign rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...diffusion.loop import Scheduler


@dataclass(frozen=True)
class GuidanceSettings:
    """λ of Eq. 7 (App. A.3: lower erases more, and changes more of the background); guidance for
    ``t_low < t < t2``, classifier optimisation (``opt_steps`` updates, Eq. 12) for ``t1 < t < t2``
    (Sec. 4.1); ``weight``: v, the guidance weight."""

    lam: float = 0.8
    t_low: int = 100
    t1: int = 500
    t2: int = 800
    opt_steps: int = 1
    weight: float = 1.0

    def guided(self, t: int) -> bool:
        return self.t_low < t < self.t2

    def optimised(self, t: int) -> bool:
        return self.t1 < t < self.t2


def attention_energy(attention: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 7: g(t, k, λ) = ‖A − [min A + λ(max A − min A)]·A‖₁, the bracket held constant (see above)."""
    low, high = attention.min(), attention.max()
    target = (low + lam * (high - low)).detach()
    return (attention - target * attention).abs().sum()


def guided_noise(noise: torch.Tensor, weight: torch.Tensor, energy_grad: torch.Tensor,
                 scale: float = 1.0) -> torch.Tensor:
    """Eq. 8/9 with the descent sign: ε̂^guid = ε̂ − v·W⊙∇_{z_t}Σg, ``weight`` W = Σ_m Π_n A (h×w, broadcast
    over channels)."""
    return noise - scale * (weight * energy_grad)


def eq13_guided_noise(noise: torch.Tensor, mask: torch.Tensor, energy_grad: torch.Tensor,
                      scale: float = 1.0) -> torch.Tensor:
    """Eq. 13 (App. A.4) with the descent sign: ε̂^guid = ε̂ − v·M⊙∇_{z_t}Σg — the given mask M (1 on the
    object, on the latent grid) replaces Eq. 9's map weighting Σ_m Π_n A; the energy g is still Eq. 7's."""
    return noise - scale * (mask * energy_grad)


def alphas(scheduler: Scheduler, timestep: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ᾱ_t, ᾱ_{t−Δ}) exactly as ``DDIMScheduler.step`` looks them up (its final step uses
    ``final_alpha_cumprod``)."""
    t = int(timestep)
    previous = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    alpha = scheduler.alphas_cumprod[t]
    alpha_prev = scheduler.alphas_cumprod[previous] if previous >= 0 else scheduler.final_alpha_cumprod
    return alpha, alpha_prev


def classifier_update(latents: torch.Tensor, noise: torch.Tensor, guided: torch.Tensor,
                      alpha: torch.Tensor) -> torch.Tensor:
    """Eq. 12: z_t^opt = √α_t·(z_t − √(1 − α_t)·ε̂)/√α_t + √(1 − α_t)·ε̂^guid — z_t moves, t stays."""
    alpha = alpha.to(latents)
    predicted_x0 = (latents - (1 - alpha).sqrt() * noise) / alpha.sqrt()
    return alpha.sqrt() * predicted_x0 + (1 - alpha).sqrt() * guided


def split_ddim_step(latents: torch.Tensor, noise: torch.Tensor, guided: torch.Tensor, alpha: torch.Tensor,
                    alpha_prev: torch.Tensor) -> torch.Tensor:
    """Algorithm 1, line 13: the DDIM step (σ = 0) with "predicted x_0" from ε̂ and the "direction pointing to
    x_t" from ε̂^guid (hand-written: no scheduler splits the two). With ``guided`` = ``noise`` it is
    ``DDIMScheduler.step``."""
    alpha, alpha_prev = alpha.to(latents), alpha_prev.to(latents)
    predicted_x0 = (latents - (1 - alpha).sqrt() * noise) / alpha.sqrt()
    return alpha_prev.sqrt() * predicted_x0 + (1 - alpha_prev).sqrt() * guided


def mask_energy(predicted: torch.Tensor, inverted: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """App. A.4's term as an energy: ½‖(ẑ_{t−1} − z^inv_{t−1})⊙(1 − M)‖², ``keep`` = 1 − M on the latent
    grid."""
    return 0.5 * ((predicted - inverted) * keep).pow(2).sum()

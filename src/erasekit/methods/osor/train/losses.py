"""OSOR training objectives (Sec. 3.3–3.4, App. B.1, B.7).

All adversarial terms work on logits: −log σ(l) = softplus(−l) and −log(1 − σ(l)) = softplus(l), which is the
numerically stable way to write the paper's log D terms. Expectations E[·] are means over the batch and,
inside the patch maps of Eq. 7, over patch positions. Targets w̃_k come from
:class:`erasekit.methods.osor.train.discriminator.PatchTargets`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ....backbones.latents import mask_to_latent


# ------------------------------------------------------------------------------------------------------------
# Adversarial terms
# ------------------------------------------------------------------------------------------------------------
def discriminator_loss(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Eq. 7 without the R1 term: Σ_k E[−log D_k(x_bg)] + E[−(1−w̃_k) log D_k(x̂) − w̃_k log(1 − D_k(x̂))].

    "Real" is 1: the paired background is real everywhere; a generated patch is real in proportion to how
    little of it was synthesised (1 − w̃_k), so preserved context is not punished and boundary patches get
    fractional targets.
    """
    total = real_logits[0].new_zeros((), dtype=torch.float32)
    for real, fake, w in zip(real_logits, fake_logits, targets, strict=True):
        real, fake = real.float(), fake.float()
        total = total + F.softplus(-real).mean() + ((1 - w) * F.softplus(-fake) + w * F.softplus(fake)).mean()
    return total


# The authors clamp every area normaliser from below at this value (src/utils/losses.py: clamp_min(1e-4)).
AREA_CLAMP = 1e-4


def generator_adversarial_loss(
    fake_logits: Sequence[torch.Tensor], targets: Sequence[torch.Tensor], *, clamp: float = AREA_CLAMP
) -> torch.Tensor:
    """Eq. 8: Σ_k E[ Σ_p w̃_k(p)·(−log D_k(x̂)_p) / max(Σ_p w̃_k(p), 1e-4) ].

    Non-saturating, normalised per sample by the occupied area (clamped as the authors do), so the loss scale
    does not depend on mask size.
    """
    total = fake_logits[0].new_zeros((), dtype=torch.float32)
    for fake, w in zip(fake_logits, targets, strict=True):
        per_sample = (w * F.softplus(-fake.float())).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(clamp)
        total = total + per_sample.mean()
    return total


def r1_penalty(
    heads: Sequence[Callable[[torch.Tensor], torch.Tensor]], real_features: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Eq. 16: (1/K) Σ_k E_x[ (1/|f_k|) ‖∇_{f_k} Σ_p h_k(f_k)_p‖² ] on real samples (App. B.7).

    Taken on the head inputs.

    The features are detached from the frozen trunk and made leaves; the graph of the gradient is kept
    (``create_graph``) so the penalty trains the heads. Per sample, 1/|f_k| with |f_k| = C·H·W elements; the
    mean over the batch then equals the mean of the squared gradient over the whole feature tensor.
    """
    terms = []
    for head, feats in zip(heads, real_features, strict=True):
        f = feats.detach().float().requires_grad_(True)
        logits = head(f)
        (grad,) = torch.autograd.grad(logits.sum(), f, create_graph=True)
        terms.append(grad.pow(2).flatten(1).mean(1).mean())
    return torch.stack(terms).mean()


# ------------------------------------------------------------------------------------------------------------
# Reconstruction
# ------------------------------------------------------------------------------------------------------------
def masked_l1(
    prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, *, clamp: float = AREA_CLAMP
) -> torch.Tensor:
    """Eq. 9: E[ ‖w ⊙ (x̂ − x_bg)‖₁ / max(‖w‖₁, 1e-4) ], per sample, then the batch mean.

    As the authors compute it: ``weight`` is the N×1×H×W one-channel mask, so the numerator sums over the
    image channels and the denominator does not; the term is the per-pixel *sum* over the three channels of
    the absolute error inside the region (3× a per-channel mean).
    """
    w = weight.float()
    diff = (w * (prediction.float() - target.float())).abs().flatten(1).sum(1)
    return (diff / w.flatten(1).sum(1).clamp_min(clamp)).mean()


# ------------------------------------------------------------------------------------------------------------
# Alpha supervision (Phase II)
# ------------------------------------------------------------------------------------------------------------
def effect_mask_to_latent(effect_mask: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """m_gt^z: the effect-aware mask max-pooled to the latent grid (a latent cell is in the region if any
    pixel is), the same rule the inference recipe uses for the conditioning mask (the authors' public code,
    Zhouqm-Git/osor)."""
    return mask_to_latent(effect_mask.float(), latent_hw, mode="max")


def dice_loss(probabilities: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0) -> torch.Tensor:
    """Eq. 14's Dice term, 1 − (2 Σ p·m + s) / (Σ p + Σ m + s), as the authors compute it: one Dice over the
    whole flattened batch (not per sample and then averaged)."""
    p = probabilities.float().reshape(-1)
    m = target.float().reshape(-1)
    return 1 - (2 * (p * m).sum() + smooth) / (p.sum() + m.sum() + smooth)


def alpha_loss(
    alpha_logits: torch.Tensor,
    target: torch.Tensor,
    *,
    bce_weight: float,
    dice_weight: float,
    smooth: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Eq. 14: λ_bce·BCE(ℓ_θ, m_gt^z) + λ_dice·Dice(σ(ℓ_θ), m_gt^z). ``target`` is already at latent size.

    Returns the weighted total under ``"alpha"`` and the unweighted parts under ``"bce"`` and ``"dice"``.
    """
    logits = alpha_logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target.float())
    dice = dice_loss(torch.sigmoid(logits), target, smooth=smooth)
    return {"alpha": bce_weight * bce + dice_weight * dice, "bce": bce, "dice": dice}


__all__ = ["AREA_CLAMP", "alpha_loss", "dice_loss", "discriminator_loss", "effect_mask_to_latent",
           "generator_adversarial_loss", "masked_l1", "r1_penalty"]

"""The PixPerfect objective (Sec. 3.1, Eq. 1, 2, 4; App. C).

    L_pixel = w1·‖x_pred − x_gt‖₁ + w2·LPIPS(x_pred, x_gt) + w3·adv_D(x_pred, m)              (Eq. 1)
    L_disc  = w1·‖y_pred − y_gt‖₁ + w2·LPIPS(y_pred, y_gt) + w3·adv_D'(y_pred, m)             (Eq. 2)
    L       = L_pixel + L_disc                                                                (Eq. 4)

with w1 = 64, w2 = 5, w3 = 1 (Sec. 4.1), y = f_θ(x) the discriminative tone map (:mod:`.tone_map`), D a
mask-conditioned discriminator on images and D' a second one on tone-mapped images. The adversarial terms are
StyleGAN2's non-saturating logistic loss; the discriminators add R1 with γ = 1 (App. C). L_disc is switched
off during a warm-up (App. C), which the trainer does through ``use_disc``.

Choices: ‖·‖₁ is the mean absolute error over all pixels of [0, 1] images (the paper does not say mean or sum,
nor whether the loss covers the whole image; it writes x_pred against x_gt, so the whole image); LPIPS takes
[-1, 1] inputs as the metric does; the discriminator is a small StyleGAN2-style residual network (the paper
only says "mask-conditioned").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from .tone_map import DiscriminativeToneMap

PerceptualLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # images in [-1, 1] -> scalar


class MaskConditionedDiscriminator(nn.Module):
    """Residual downsampling discriminator over [image in [-1, 1], mask] -> one logit per sample."""

    def __init__(self, width: int = 32, max_width: int = 256, num_downsamples: int = 4):
        super().__init__()
        channels = [min(width * 2**i, max_width) for i in range(num_downsamples + 1)]
        self.stem = nn.Conv2d(4, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList(_ResidualDown(a, b) for a, b in pairwise(channels))
        self.head = nn.Linear(channels[-1], 1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.stem(torch.cat([image * 2.0 - 1.0, mask], dim=1)), 0.2)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=(2, 3)))[:, 0]  # global average pooling: any input size


class _ResidualDown(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, padding=1)
        self.conv2 = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.leaky_relu(self.conv1(x), 0.2))
        return (F.leaky_relu(y, 0.2) + self.skip(x)) / math.sqrt(2.0)


@dataclass(frozen=True)
class LossWeights:
    l1: float = 64.0  # w1
    perceptual: float = 5.0  # w2
    adversarial: float = 1.0  # w3
    r1_gamma: float = 1.0


def generator_adversarial(logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic generator loss, softplus(−D(fake))."""
    return F.softplus(-logits).mean()


def discriminator_loss(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor, r1_gamma: float
) -> torch.Tensor:
    """softplus(D(fake)) + softplus(−D(real)) + γ/2 · E‖∇_real D(real)‖² (R1, Mescheder et al. 2018)."""
    real = real.detach().requires_grad_(True)
    real_logits = discriminator(real, mask)
    fake_logits = discriminator(fake.detach(), mask)
    (gradient,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    r1 = gradient.pow(2).sum(dim=(1, 2, 3)).mean()
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean() + 0.5 * r1_gamma * r1


def _reconstruction(
    prediction: torch.Tensor, target: torch.Tensor, perceptual: PerceptualLoss
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, LPIPS): the first two terms of Eq. 1 and Eq. 2, before weighting."""
    l1 = (prediction - target).abs().mean()
    lpips = perceptual(prediction * 2.0 - 1.0, target * 2.0 - 1.0)
    return l1, lpips


class PixPerfectLoss(nn.Module):
    """Generator and discriminator losses of Eq. 1, 2 and 4; returns the terms for logging too."""

    def __init__(
        self,
        perceptual: PerceptualLoss,
        discriminator: nn.Module,
        disc_space_discriminator: nn.Module,
        *,
        tone_map: DiscriminativeToneMap | None = None,
        weights: LossWeights | None = None,
    ):
        super().__init__()
        self.perceptual = perceptual
        self.discriminator = discriminator  # D, on pixels
        self.disc_space_discriminator = disc_space_discriminator  # D', on tone-mapped pixels
        self.tone_map = tone_map or DiscriminativeToneMap()
        self.weights = weights or LossWeights()

    def generator_loss(
        self,
        prediction: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        *,
        use_disc: bool = True,
        use_adversarial: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        w = self.weights
        l1, lpips = _reconstruction(prediction, target, self.perceptual)
        terms = {"pixel_l1": l1, "pixel_lpips": lpips}
        total = w.l1 * l1 + w.perceptual * lpips
        if use_adversarial:
            terms["pixel_adv"] = generator_adversarial(self.discriminator(prediction, mask))
            total = total + w.adversarial * terms["pixel_adv"]
        y_pred = y_gt = None
        if use_disc:
            y_pred, y_gt = self.tone_map(prediction, target, mask, generator)
            d_l1, d_lpips = _reconstruction(y_pred, y_gt, self.perceptual)
            terms.update(disc_l1=d_l1, disc_lpips=d_lpips)
            total = total + w.l1 * d_l1 + w.perceptual * d_lpips
            if use_adversarial:
                terms["disc_adv"] = generator_adversarial(self.disc_space_discriminator(y_pred, mask))
                total = total + w.adversarial * terms["disc_adv"]
        terms["total"] = total
        return total, terms

    def discriminator_loss(
        self,
        prediction: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        *,
        use_disc: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        gamma = self.weights.r1_gamma
        loss = discriminator_loss(self.discriminator, target, prediction, mask, gamma)
        if use_disc:
            y_pred, y_gt = self.tone_map(prediction.detach(), target, mask, generator)
            loss = loss + discriminator_loss(self.disc_space_discriminator, y_gt, y_pred, mask, gamma)
        return loss


__all__ = ["LossWeights", "MaskConditionedDiscriminator", "PerceptualLoss", "PixPerfectLoss",
           "discriminator_loss", "generator_adversarial"]

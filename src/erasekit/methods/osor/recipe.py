"""OSOR's paper settings (arXiv:2606.28094), stored once: inference, weights and training read them here.

Per backbone, ``"sdxl"`` (SDXL-Inpainting) and ``"flux"`` (FLUX.1 Fill). Training-only schedules (steps, batch
sizes) live in :mod:`erasekit.methods.osor.train.config`; the Phase II effects ratio τ_eff defines the
dataset's ``phase2`` flag and lives with it in :mod:`erasekit.data.paired`.
"""

from __future__ import annotations

from typing import Literal

Backbone = Literal["sdxl", "flux"]

# The constant prompt e both backbones are conditioned on, at inference and in training (Sec. 3.2).
PROMPT = "Remove the instance of object"

# The one noise level of Eq. 3 (Sec. 4.2.1, Table 3: t = 400): SDXL's integer DDPM timestep t; FLUX's
# flow-matching noise level s = t / 1000, as the authors' FLUX code divides it.
TIMESTEP: dict[str, float] = {"sdxl": 400, "flux": 0.4}

# LoRA rank (App. B.1); lora_alpha = rank in the authors' code.
LORA_RANK: dict[str, int] = {"sdxl": 256, "flux": 64}

# Working resolution: SDXL's short side (App. B.1), FLUX's long-side cap (the authors' scripts).
RESOLUTION: dict[str, int] = {"sdxl": 512, "flux": 1024}

# FLUX Fill's guidance embedding (the model card's value; OSOR keeps it).
FLUX_GUIDANCE = 30.0

# Loss weights λ (App. B.1). Per backbone: l1 = λ_rec (Eq. 9) and perceptual = λ_per (LPIPS); the others are
# shared ("keep the other loss weights unchanged"): adversarial = λ_adv (Eq. 8), r1 = λ_r1 (Eq. 7, 16),
# bce / dice = λ_bce / λ_dice (Eq. 14, Phase II only).
BACKBONE_LOSS_WEIGHTS: dict[str, dict[str, float]] = {
    "sdxl": {"l1": 0.25, "perceptual": 5.0},
    "flux": {"l1": 0.5, "perceptual": 3.0},
}
SHARED_LOSS_WEIGHTS: dict[str, float] = {"adversarial": 0.3, "r1": 60000.0, "bce": 1.0, "dice": 2.0}

__all__ = ["BACKBONE_LOSS_WEIGHTS", "FLUX_GUIDANCE", "LORA_RANK", "PROMPT", "RESOLUTION",
           "SHARED_LOSS_WEIGHTS", "TIMESTEP", "Backbone"]

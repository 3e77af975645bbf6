"""OSOR's paper settings (arXiv:2606.28094), stored once: inference, weights and training read them here.

Per backbone, ``"sdxl"`` (SDXL-Inpainting) and ``"flux"`` (FLUX.1 Fill). Training-only schedules (steps, batch
sizes) live in :mod:`erasekit.methods.osor.train.config`; the Phase II effects ratio τ_eff defines the
dataset's ``phase2`` flag and lives with it in :mod:`erasekit.data.paired`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Backbone = Literal["sdxl", "flux"]

# The constant prompt e both backbones are conditioned on, at inference and in training (Sec. 3.2).
PROMPT = "Remove the instance of object"

# The one noise level of Eq. 3 (Sec. 4.2.1, Table 3: t = 400): SDXL's integer DDPM timestep t; FLUX's
# flow-matching noise level s = t / 1000, as the authors' FLUX code divides it.
TIMESTEP: dict[str, float] = {"sdxl": 400, "flux": 0.4}

# Training noise level per (backbone, phase), from the authors' configs/phase{1,2}.yaml (``model_t``): SDXL
# Phase I trains at t = 600 and Phase II at 400; FLUX trains both at 400 / 1000. Inference always uses
# TIMESTEP, which is what exported weights record.
TRAIN_TIMESTEP: dict[tuple[str, int], float] = {
    ("sdxl", 1): 600, ("sdxl", 2): 400, ("flux", 1): 0.4, ("flux", 2): 0.4,
}

# The authors' training seed (``training.seed`` in every config).
TRAIN_SEED = 42

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



# ------------------------------------------------------------------------------------------------------------
# Working sizes: one rule per backbone, with the parameter that separates the authors' inference and training
# ------------------------------------------------------------------------------------------------------------
def _up16(side: int) -> int:
    return (side + 15) // 16 * 16


def sdxl_working_size(
    height: int, width: int, *, upscale: bool, short_side: int = RESOLUTION["sdxl"]
) -> tuple[int, int]:
    """SDXL's (H, W): the short side scaled to ``short_side``, each scaled side truncated with ``int()``, then
    rounded up to a multiple of 16.

    ``upscale=False`` is the authors' inference rule (``scripts/inference.py``: an image whose short side is
    under ``short_side`` keeps its size, only rounded up); ``upscale=True`` is their training rule
    (``src/data/dataset.py``: such an image is scaled up by ``short_side / min``). Both truncate before
    rounding, so 300×181 (H×W) trains at 848×512, not 864×512.
    """
    short = min(height, width)
    if short < short_side:
        if upscale:
            scale = short_side / short
            height, width = int(height * scale), int(width * scale)
    elif width < height:
        height, width = int(height * short_side / width), short_side
    else:
        height, width = short_side, int(width * short_side / height)
    return _up16(height), _up16(width)


def flux_working_size(
    height: int, width: int, *, max_side: int | None = RESOLUTION["flux"]
) -> tuple[int, int]:
    """FLUX's (H, W). ``max_side=None``: the native size rounded up to a multiple of 16, no cap (the authors'
    training rule, ``src/data/dataset.py``, and their Phase I inference script). An integer: the long side
    capped at ``max_side`` (aspect kept, ``int()`` per side) and both sides floored to a multiple of 16, at
    least 16 (their Phase II ``inference_enhance.py``)."""
    if max_side is None:
        return _up16(height), _up16(width)
    if max(height, width) > max_side:
        scale = max_side / float(max(height, width))
        height, width = max(1, int(height * scale)), max(1, int(width * scale))
    return max(16, height // 16 * 16), max(16, width // 16 * 16)


# ------------------------------------------------------------------------------------------------------------
# Incomplete-mask operators (Phase II, the authors' src/data/augment.py; FLUX's values from osor-fluxfill/)
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskOperatorSettings:
    """Magnitudes of the four incomplete-mask operators (``erasekit.masks.perturb_mask``).

    shrink keeps ``int(area · U(shrink_keep))`` innermost pixels; expand dilates the convex hull with a square
    kernel from ``expand_kernels`` for ``randint(*expand_iterations)`` iterations; holes seed pixels with
    probability ``hole_seed_p``, dilate them by a square kernel from ``hole_kernels`` and keep the original
    mask when less than ``hole_min_keep`` of it would remain; shift moves by dx, dy ~ U{-shift_px..shift_px}.
    Input masks are binarised at ``> binarize_above / 255`` first (the authors' ``> 128`` on 8-bit masks).
    """

    shrink_keep: tuple[float, float] = (0.5, 0.7)
    expand_kernels: tuple[int, ...] = (7, 11, 17)
    expand_iterations: tuple[int, int] = (1, 3)
    hole_seed_p: float = 0.0005
    hole_kernels: tuple[int, ...] = (17, 21, 31)
    hole_min_keep: float = 0.4
    shift_px: int = 35
    binarize_above: int = 128


MASK_OPERATORS: dict[str, MaskOperatorSettings] = {
    "sdxl": MaskOperatorSettings(),
    "flux": MaskOperatorSettings(expand_kernels=(11, 17, 21), hole_kernels=(21, 31, 41), shift_px=50),
}


__all__ = ["BACKBONE_LOSS_WEIGHTS", "FLUX_GUIDANCE", "LORA_RANK", "MASK_OPERATORS", "PROMPT", "RESOLUTION",
           "SHARED_LOSS_WEIGHTS", "TIMESTEP", "TRAIN_SEED", "TRAIN_TIMESTEP", "Backbone",
           "MaskOperatorSettings", "flux_working_size", "sdxl_working_size"]

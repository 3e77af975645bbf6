"""Tiny EraDiff weights: the tiny SD2-Inpaint UNet with seeded perturbed parameters, in erasekit's EraDiff
format (:mod:`erasekit.methods.eradiff.weights`), so a run with them differs from one without."""

from __future__ import annotations

import os
from pathlib import Path


def write_tiny_eradiff_weights(model: str | os.PathLike, folder: str | os.PathLike, *, seed: int = 0,
                               scale: float = 0.05) -> Path:
    """Load the tiny pipeline's UNet from ``model``, add seeded Gaussian noise of relative size ``scale`` to
    every parameter (a stand-in for CRO fine-tuning) and save it as EraDiff weights in ``folder``."""
    import torch
    from diffusers import UNet2DConditionModel

    from ..methods.eradiff.weights import save_weights

    unet = UNet2DConditionModel.from_pretrained(Path(model) / "unet")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in unet.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(noise * scale * (parameter.abs().mean() + 1e-3))
    recipe = {"stand_in": "tiny random perturbation (tests)"}
    return save_weights(unet, folder, base=str(model), recipe=recipe)

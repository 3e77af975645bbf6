"""OSOR — one-step, effect-aware, mask-robust object removal (arXiv:2606.28094).

Everything OSOR-specific lives in this package, readable top to bottom:

``engine``      one forward pass of the adapted backbone: noise the input latent (Eq. 3), predict x̂0 (Eq. 5),
                blend with the alpha map (Eq. 12-13) or the max-pooled mask (Eq. 6), decode. Used by inference
                and training.
``remover``     ``osor-sdxl`` / ``osor-flux``: the remover contract around the engine (working sizes,
                settings, paste region) and their registration.
``alpha_head``  the extra output channel(s) of SDXL's ``conv_out`` / FLUX's ``proj_out`` (Sec. 3.4).
``recipe``      the paper's settings, stored once: prompt, timestep, LoRA rank, resolution, loss weights.
``weights``     the authors' ``*_phase{1,2}.pth`` files and erasekit's folder format: read, convert, apply
                (LoRA + head).
``viz``         the alpha overlay of the paper's Fig. 8.
``train/``      Phase I/II training: config (+ packaged YAML configs), trainer, losses, occupancy-guided
                discriminator, incomplete-mask conditioning.
"""

from __future__ import annotations

from .engine import (
    FluxEngine,
    OsorEngine,
    OsorOutput,
    SDXLEngine,
    composite,
    flux_working_size,
    sdxl_working_size,
)
from .remover import OsorFluxRemover, OsorRemover, OsorSDXLRemover, OsorSettings, register

__all__ = ["FluxEngine", "OsorEngine", "OsorFluxRemover", "OsorOutput", "OsorRemover", "OsorSDXLRemover",
           "OsorSettings", "SDXLEngine", "composite", "flux_working_size", "register", "sdxl_working_size"]

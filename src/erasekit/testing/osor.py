"""Tiny OSOR weight fixtures in both on-disk formats.

Built offline for the tiny backbones of :mod:`erasekit.testing`.

:func:`official_state_dict_for` reproduces how the authors' training code produces its ``*_phase{1,2}.pth``
files: the backbone sits in a wrapper module (``unet`` for SDXL, ``transformer`` for FLUX), peft LoRA with
``lora_alpha = rank`` is injected exactly as they do (diffusers' ``add_adapter`` for the UNet, peft's
``get_peft_model`` for the FLUX transformer), Phase II widens the terminal layer, and the file holds the
trainable parameters under the wrapper's names. The LoRA ``B`` matrices get random values (peft's Gaussian
init leaves them zero) so loaded weights visibly change the output. Nothing here shares code with erasekit's
loader, so a test that loads these files checks the loader against an independent construction::

    from erasekit.testing.osor import write_tiny_osor_weights
    pth = write_tiny_osor_weights("sdxl", "/tmp/osor_sdxl_phase2.pth", phase=2)              # official format
    folder = write_tiny_osor_weights("flux", "/tmp/osor-flux", phase=2, fmt="erasekit")    # erasekit format
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from ..methods.osor.remover import REMOVERS
from ..methods.osor.weights import OFFICIAL_TARGETS, save_erasekit, split_state_dict

# The backbone preset of each OSOR family (its tiny model has the same name).
TINY_BACKBONE = {family: cls.preset_name for family, cls in REMOVERS.items()}


def _denoiser(backbone: str, seed: int):
    from .pipelines import tiny_pipeline

    pipe = tiny_pipeline(TINY_BACKBONE[backbone], seed=seed)
    return copy.deepcopy(pipe.unet if backbone == "sdxl" else pipe.transformer)


def official_state_dict_for(
    backbone: Literal["sdxl", "flux"],
    *,
    phase: int = 2,
    rank: int = 4,
    seed: int = 0,
    model: Any = None,
    lora_std: float = 0.05,
) -> dict[str, Any]:
    """An authors'-layout state dict of random OSOR weights for ``model`` (default: the tiny backbone)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch import nn

    from ..methods.osor.alpha_head import add_alpha_head

    model = copy.deepcopy(model) if model is not None else _denoiser(backbone, seed)
    config = LoraConfig(
        r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(OFFICIAL_TARGETS[backbone])
    )
    wrapper = nn.Module()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if backbone == "sdxl":
            model.add_adapter(config)
            wrapper.unet = model
            inner = model
        else:
            wrapper.transformer = get_peft_model(model, config)
            inner = wrapper.transformer.base_model.model
        if phase == 2:
            add_alpha_head(inner, seed=seed + 1)
        generator = torch.Generator().manual_seed(seed + 2)
        head = inner.conv_out if backbone == "sdxl" else inner.proj_out
        with torch.no_grad():
            for name, param in wrapper.named_parameters():
                if ".lora_B." in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * lora_std)
            # A trained head differs from the pretrained one; perturb it so loading it is observable too.
            head.weight.add_(torch.randn(head.weight.shape, generator=generator) * 0.01)
        head.requires_grad_(True)
    return {name: p.detach().clone() for name, p in wrapper.named_parameters() if p.requires_grad}


def write_tiny_osor_weights(
    backbone: Literal["sdxl", "flux"],
    path: str | Path,
    *,
    phase: int = 2,
    fmt: Literal["official", "erasekit"] = "official",
    rank: int = 4,
    seed: int = 0,
    model: Any = None,
) -> Path:
    """Write random tiny OSOR weights: a ``.pth`` file (official) or a folder (erasekit). Returns the path."""
    import torch

    state = official_state_dict_for(backbone, phase=phase, rank=rank, seed=seed, model=model)
    path = Path(path)
    if fmt == "official":
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
        return path
    weights = split_state_dict(state, backbone, source=f"tiny-{backbone}-phase{phase}")
    return save_erasekit(weights, path)


def tiny_osor_remover(
    backbone: Literal["sdxl", "flux"], *, weights: Any = "none", seed: int = 0, **kwargs: Any
):
    """An ``osor-sdxl`` / ``osor-flux`` remover on a private copy of the tiny backbone.

    The copy is private because OSOR edits its denoiser. ``weights="none"`` gives the bare tiny backbone with
    a fresh alpha head; pass a fixture path for trained-like weights. Other keyword arguments are the
    remover's load options (``prompt``, ``alpha_head``, ``merge_lora``, ``release_text_encoders``);
    ``timestep`` and ``blend`` are per call (``RemovalRequest.options``).
    """
    from .pipelines import tiny_pipeline

    pipeline = copy.deepcopy(tiny_pipeline(TINY_BACKBONE[backbone], seed=seed))
    return REMOVERS[backbone](pipeline=pipeline, weights=weights, **kwargs)


__all__ = ["TINY_BACKBONE", "official_state_dict_for", "tiny_osor_remover", "write_tiny_osor_weights"]

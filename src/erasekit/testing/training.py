"""Tiny stand-ins for the training-only weights, so the trainer runs offline through its real loading paths.

:func:`write_tiny_openclip_convnext` writes a randomly initialised open_clip ConvNeXt vision tower in
open_clip's on-disk layout (timm key names under ``visual.trunk.``, ``open_clip_model.safetensors``), which
the discriminator loads exactly as it loads the real ``convnext_xxlarge`` checkpoint. :class:`TinyPerceptual`
is a small fixed random conv feature distance for the perceptual slot (honestly *not* LPIPS) for tests and the
toy benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..methods.osor.train.discriminator import OPENCLIP_WEIGHT_FILES


def tiny_openclip_convnext_state(
    dims: Sequence[int] = (8, 16, 24, 32), depths: Sequence[int] = (1, 1, 1, 1), *, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A random ConvNeXt tower state dict with open_clip/timm key names (weights ~ N(0, 0.2²), norms ~ 1)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2, offset=0.0):
        return torch.randn(*shape, generator=g) * scale + offset

    p = "visual.trunk."
    sd = {
        p + "stem.0.weight": r(dims[0], 3, 4, 4),
        p + "stem.0.bias": r(dims[0], scale=0.02),
        p + "stem.1.weight": r(dims[0], scale=0.05, offset=1.0),
        p + "stem.1.bias": r(dims[0], scale=0.02),
        p + "head.norm.weight": torch.ones(dims[-1]),
        p + "head.norm.bias": torch.zeros(dims[-1]),
    }
    for s, (dim, depth) in enumerate(zip(dims, depths)):
        q = f"{p}stages.{s}."
        if s:
            sd[q + "downsample.0.weight"] = r(dims[s - 1], scale=0.05, offset=1.0)
            sd[q + "downsample.0.bias"] = r(dims[s - 1], scale=0.02)
            sd[q + "downsample.1.weight"] = r(dim, dims[s - 1], 2, 2, scale=(dims[s - 1] * 4) ** -0.5)
            sd[q + "downsample.1.bias"] = r(dim, scale=0.02)
        for b in range(depth):
            k = f"{q}blocks.{b}."
            sd.update(
                {
                    k + "conv_dw.weight": r(dim, 1, 7, 7, scale=0.15),
                    k + "conv_dw.bias": r(dim, scale=0.02),
                    k + "norm.weight": r(dim, scale=0.05, offset=1.0),
                    k + "norm.bias": r(dim, scale=0.02),
                    k + "mlp.fc1.weight": r(4 * dim, dim, scale=dim**-0.5),
                    k + "mlp.fc1.bias": torch.zeros(4 * dim),
                    k + "mlp.fc2.weight": r(dim, 4 * dim, scale=(4 * dim) ** -0.5),
                    k + "mlp.fc2.bias": torch.zeros(dim),
                    k + "gamma": torch.full((dim,), 0.5),
                }
            )
    return sd


def write_tiny_openclip_convnext(folder: str | Path, **kwargs) -> Path:
    """Write :func:`tiny_openclip_convnext_state` as ``folder/open_clip_model.safetensors``.

    Returns the folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tiny_openclip_convnext_state(**kwargs), str(folder / OPENCLIP_WEIGHT_FILES[0]))
    return folder


class TinyPerceptual(nn.Module):
    """A fixed random two-layer conv feature L2 distance (not LPIPS): fills the perceptual slot where no LPIPS
    weights exist (tests, the toy benchmark)."""

    def __init__(self, seed: int = 0, width: int = 8):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = nn.Sequential(
                nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, stride=2, padding=1)
            )
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.net(x) - self.net(y)).pow(2).mean()


__all__ = ["TinyPerceptual", "tiny_openclip_convnext_state", "write_tiny_openclip_convnext"]

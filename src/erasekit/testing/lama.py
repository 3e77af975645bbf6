"""Tiny LaMa weights: a TorchScript module with big-lama.pt's call contract, for tests and benchmarks.

``big-lama.pt`` (IOPaint, simple-lama) is a TorchScript module ``forward(image, mask)``: image float 1×3×H×W
in [0, 1], mask float 1×1×H×W in {0, 1}, H and W multiples of 8; it fills ``image·(1 − mask)`` concatenated
with the mask and returns 1×3×H×W in [0, 1], the prediction composited into the known pixels. The tiny one
does the same with three stride-2 convolutions and three transposed ones, so an input whose sides are not a
multiple of 8 fails, as the real network's downsampling does.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


class TinyLaMa(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv2d(4, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(width, width, 3, 2, 1), nn.ReLU(),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(width, width, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(width, width, 4, 2, 1),
            nn.ReLU(), nn.ConvTranspose2d(width, 3, 4, 2, 1), nn.Sigmoid(),
        )

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        masked = torch.cat([image * (1 - mask), mask], dim=1)
        predicted = self.up(self.down(masked))
        return mask * predicted + (1 - mask) * image


def write_tiny_lama_weights(folder: str | Path, seed: int = 0) -> Path:
    """Write ``folder/big-lama.pt`` (TorchScript) and return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = TinyLaMa().eval()
    path = folder / "big-lama.pt"
    with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format big-lama.pt ships in
        warnings.filterwarnings("ignore", r".*torch\.jit.*deprecated", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), str(path))
    return path


__all__ = ["TinyLaMa", "write_tiny_lama_weights"]

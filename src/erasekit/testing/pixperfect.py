"""Tiny PixPerfect weights in the real on-disk layout (safetensors + JSON config), built offline."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..refiners.pixperfect.network import PixPerfectConfig, PixPerfectGenerator
from ..refiners.pixperfect.weights import save_weights


def tiny_config() -> PixPerfectConfig:
    """The test-size network (a few thousand parameters)."""
    return PixPerfectConfig(width=4, max_width=16, num_downsamples=3, ffc_blocks=1, style_dim=16)


def write_tiny_pixperfect_weights(folder: str | os.PathLike, *, seed: int = 0) -> Path:
    """Random tiny-width weights, saved as the refiner loads real ones; returns the folder."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = PixPerfectGenerator(tiny_config())
    return save_weights(generator, folder)


__all__ = ["tiny_config", "write_tiny_pixperfect_weights"]

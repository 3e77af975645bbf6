"""Settings of ``erasekit train pixperfect``: a YAML file (``configs/pixperfect.yaml`` holds the paper's) with
``--set KEY=VALUE`` overrides, checked strictly (an unknown or mistyped key is an error, not ignored)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ....training.config import read_config
from ....types import InvalidInputError
from ..losses import LossWeights
from ..network import PixPerfectConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LossConfig(_Strict):
    l1: float = 64.0
    perceptual: float = 5.0
    adversarial: float = 1.0
    r1_gamma: float = 1.0

    def weights(self) -> LossWeights:
        return LossWeights(self.l1, self.perceptual, self.adversarial, self.r1_gamma)


class RealPairsConfig(_Strict):
    """Real (x_gen, x_gt) pairs mixed into training (:mod:`.real_pairs`); off at fraction 0 (the paper's)."""

    fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0  # share of batch items that are real pairs
    dir: str | None = None  # where the pairs are; default OUTPUT_DIR/real_pairs
    dataset: str | None = None  # produce pairs from this paired dataset first (resumable)
    layout: str = "auto"
    method: str | None = None  # any registered method
    load: dict[str, Any] = {}
    options: dict[str, Any] = {}
    mask: Literal["object", "effect"] = "object"
    limit: int | None = None


class PixPerfectTrainConfig(_Strict):
    data_dir: str | None = None
    output_dir: str = "runs/pixperfect"
    crop: int = 512
    batch_size: int = 8
    max_steps: int = 500_000
    warmup_steps: int = 20_000
    lr: float = 5e-4
    betas: tuple[float, float] = (0.0, 0.99)
    loss: LossConfig = LossConfig()
    tone_degree: int = 5
    input_noise: float = 0.02
    perceptual: Literal["auto", "lpips", "stand-in"] = "auto"
    vae: str | None = None
    inpainter: Literal["telea", "patchmatch"] = "telea"
    network: dict[str, Any] = {}
    discriminator_width: int = 64
    checkpoint_every: int = 5000
    seed: int = 0
    real_pairs: RealPairsConfig = RealPairsConfig()

    def network_config(self) -> PixPerfectConfig:
        return PixPerfectConfig.from_dict(self.network)


def packaged_config(name: str = "pixperfect") -> Path:
    path = Path(__file__).parent / "configs" / f"{name}.yaml"
    if not path.is_file():
        raise InvalidInputError(f"no packaged PixPerfect config {name!r}; the packaged one is 'pixperfect'")
    return path


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> PixPerfectTrainConfig:
    """Read a YAML config, apply ``overrides`` and validate (one-line errors)."""
    return read_config(path, PixPerfectTrainConfig, overrides)

"""EraDiff CRO training configuration: pydantic models loaded from YAML (``erasekit train eradiff
--config``).

The packaged ``configs/sd2.yaml`` (name ``eradiff_sd2``) holds the paper's settings (arXiv:2503.07026
Sec. 5.1: Adam, lr 3e-6, λ_t = 1 − ᾱ_t, γ_m = 100) and says which of its values are ours.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ....training.config import MixedPrecision, packaged_file, read_config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """A paired dataset (:mod:`erasekit.data.paired`): ``image`` is x_obj (with the pasted object),
    ``background`` is x_ori, ``object_mask`` the pasted object's mask (the inpainting condition)."""

    path: str
    resolution: int | None = Field(None, description="short side resized to this, rounded up to a "
                                                      "multiple of 8")


class CroConfig(_Strict):
    gamma_max: int = Field(100, ge=1, description="γ_m: the largest jump t → t−γ (Sec. 5.1)")
    mixup: bool = Field(True, description="λ_t = 1 − ᾱ_t; false: λ_t held at constant_lambda (Table 3)")
    constant_lambda: float = Field(0.0, ge=0.0, le=1.0, description="λ for every t when mixup is false")
    sra: bool = Field(False, description="Self-Rectifying Attention in the training forward (the paper is "
                                         "silent; off by default)")


class OptimConfig(_Strict):
    lr: float = Field(3e-6, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0


class LoraConfig(_Strict):
    rank: int = Field(64, ge=1)
    alpha: int | None = None
    target_modules: list[str] = ["to_q", "to_k", "to_v", "to_out.0"]


class EraDiffTrainConfig(_Strict):
    model: str = "sd2-inpaint"
    data: DataConfig
    output_dir: str = "runs/eradiff"
    prompt: str = ""
    max_steps: int = Field(20000, ge=1)
    batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    seed: int = 0
    cro: CroConfig = Field(default_factory=lambda: CroConfig.model_validate({}))
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig.model_validate({}))
    lora: LoraConfig | None = None
    mixed_precision: MixedPrecision = "no"
    gradient_checkpointing: bool = False
    ema_decay: float | None = Field(None, gt=0, lt=1)
    checkpoint_every: int = Field(1000, ge=1)
    log_every: int = Field(50, ge=1)
    device: str | None = None


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> EraDiffTrainConfig:
    """Read a YAML config, merge ``overrides`` (nested dict) and validate; errors are one-line
    :class:`InvalidInputError`s."""
    return read_config(path, EraDiffTrainConfig, overrides)


def packaged_config(name: str) -> Path:
    """A config shipped with erasekit: ``eradiff_sd2`` (the ``eradiff_`` prefix is optional)."""
    return packaged_file("erasekit.methods.eradiff.train", name, "eradiff_")


__all__ = ["CroConfig", "DataConfig", "EraDiffTrainConfig", "LoraConfig", "OptimConfig", "load_config",
           "packaged_config"]

"""OSOR training configuration: pydantic models loadable from YAML; defaults are the paper's (App. B.1, B.6).

``erasekit train osor --config FILE.yaml [--set key.sub=value ...]``. The packaged configs
(``erasekit/methods/osor/train/configs/{sdxl,flux}_phase{1,2}.yaml``, named ``osor_sdxl_phase1`` ...) spell
out every paper setting; fields left out of a YAML file take the per-backbone/per-phase defaults resolved in
:meth:`OsorTrainConfig.resolved`:

=====================  =====================  =====================
setting                SDXL-Inpainting        FLUX Fill
=====================  =====================  =====================
LoRA rank (= alpha)    256 (+convs, proj)     64
L1 / LPIPS weight      0.25 / 5               0.5 / 3
adversarial / R1       0.3 / 60000            0.3 / 60000
BCE / Dice (Phase II)  1 / 2                  1 / 2
noise level            t = 600 (I), 400 (II)  s = 0.4
resize rule            short side 512, int(), ↑16 (upscales)   native size ↑16
global batch           16 (8 GPUs × 2)        16 (8 GPUs × 2)
learning rate G / D    1e-5 / 1e-5            1e-5 / 1e-5
steps                  15K (I), 5K (II)       15K (I), 5K (II)
seed                   42                     42
=====================  =====================  =====================

What the paper leaves open is taken from the authors' code (Zhouqm-Git/osor, ``configs/phase*.yaml`` and
``src/engine/train_phase*.py``): ``torch.optim.AdamW`` with β = (0.9, 0.999), ε = 1e-8 and its default weight
decay 0.01; the generator's gradients clipped at 1.0, the discriminator's not; generator and discriminator
stepping on alternate batches; the VAE in the mixed-precision dtype with its posterior sampled. erasekit's
former choices stay available as named options (``schedule: joint``, ``vae_posterior: mode``, ``vae_dtype:
fp32``, ``discriminator.blur: erasekit``, ``discriminator.targets: exact_occupancy``), each measured in
docs/osor.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ....training.config import MixedPrecision, packaged_file, read_config
from ....types import InvalidInputError
from ..recipe import (
    BACKBONE_LOSS_WEIGHTS,
    LORA_RANK,
    PROMPT,
    RESOLUTION,
    SHARED_LOSS_WEIGHTS,
    TRAIN_SEED,
    TRAIN_TIMESTEP,
    Backbone,
)

PAPER_STEPS = {1: 15000, 2: 5000}
# The authors' configs: batch_size 2 per GPU on 8 GPUs for both backbones (the paper's text says 4 × 4 for
# SDXL; the global batch is 16 either way).
PAPER_PER_DEVICE_BATCH = {"sdxl": 2, "flux": 2}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """A paired dataset folder (``manifest.jsonl``, see :mod:`erasekit.data.paired`)."""

    path: str
    resolution: int | None = Field(
        None,
        description="SDXL: the short side (512); FLUX: a long-side cap (default none: the native size, as "
        "the authors train)",
    )
    flip_p: float = Field(0.0, description="horizontal flips (the authors use none)")
    crop_scale: tuple[float, float] = Field((1.0, 1.0), description="random crops (the authors use none)")
    phase2_only: bool | None = Field(
        None, description="train only on the effect-heavy subset (default: Phase II)"
    )
    num_workers: int = 0


class LoraSettings(_Strict):
    rank: int | None = None  # 256 SDXL / 64 FLUX
    alpha: float | None = None  # lora_alpha = rank
    init: Literal["gaussian", "default"] = "gaussian"
    target_modules: list[str] | None = None  # default: the authors' targets (erasekit.methods.osor.weights)


class OptimConfig(_Strict):
    lr_generator: float = 1e-5
    lr_discriminator: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01  # torch AdamW's default, which the authors keep
    max_grad_norm: float | None = 1.0  # the generator's only, as the authors clip


class DiscriminatorConfig(_Strict):
    trunk: str = "laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup"
    norm_eps: float = 1e-5  # timm's convnext_xxlarge LayerNorm eps
    hidden: int = 512
    # Table 3: OG (paper; torch area pooling as the authors), exact_occupancy (erasekit's exact coverage), HM,
    # SM
    targets: Literal["occupancy", "exact_occupancy", "hard", "soft"] = "occupancy"
    sigma: float = 1.0  # SM bandwidth in grid cells
    blur: Literal["authors", "erasekit"] = "authors"  # 5-tap reflect BlurPool | erasekit's 4-tap replicate
    init_from_phase1: bool = Field(
        default=True, description="Phase II: heads from init_weights/discriminator_heads.safetensors"
    )


class LossConfig(_Strict):
    """The λ's of Eqs. 7-10 and 14, by default the paper's (:mod:`erasekit.methods.osor.recipe`)."""

    l1: float | None = None  # per backbone: 0.25 SDXL / 0.5 FLUX
    perceptual: float | None = None  # per backbone: 5 SDXL / 3 FLUX
    adversarial: float = SHARED_LOSS_WEIGHTS["adversarial"]
    r1: float = SHARED_LOSS_WEIGHTS["r1"]
    bce: float = SHARED_LOSS_WEIGHTS["bce"]
    dice: float = SHARED_LOSS_WEIGHTS["dice"]
    lpips_trunk: str | None = None  # torchvision vgg16-397923af.pth (default: searched locally)
    lpips_heads: str | None = None  # lpips v0.1 vgg.pth (default: searched locally)


class OsorTrainConfig(_Strict):
    backbone: Backbone
    phase: Literal[1, 2]
    model: str = Field(description="diffusers checkpoint: a local folder, a preset name or a Hub id")
    output_dir: str
    data: DataConfig
    init_weights: str | None = Field(None, description="Phase II: the Phase I checkpoint to start from")
    lora: LoraSettings = LoraSettings()
    optim: OptimConfig = OptimConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    loss: LossConfig = LossConfig()
    max_steps: int | None = None  # 15K Phase I, 5K Phase II
    global_batch_size: int = 16
    per_device_batch_size: int | None = None  # 4 SDXL / 2 FLUX; accumulation fills the rest
    mixed_precision: MixedPrecision = "bf16"
    timestep: float | None = None  # t = 600 (SDXL Phase I) / 400 (Phase II); s = 0.4 (FLUX)
    prompt: str = PROMPT
    seed: int = TRAIN_SEED
    schedule: Literal["alternate", "joint"] = Field(
        "alternate",
        description="alternate: G on even batches, D on odd ones with x̂ recomputed (the authors'); joint: "
        "both on one batch, D on the G step's x̂ (erasekit's former loop)",
    )
    vae_dtype: Literal["compute", "fp32"] = Field(
        "compute", description="the VAE in the mixed-precision dtype (the authors') or float32"
    )
    vae_posterior: Literal["sample", "mode"] = Field(
        "sample", description="encode with a posterior sample (the authors') or its mode"
    )
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    report_to: list[str] = Field(default_factory=list, description="accelerate trackers, e.g. [tensorboard]")
    gradient_checkpointing: bool = True
    allow_download: bool = False
    device: str | None = None  # None: accelerate's choice; "cpu" forces CPU

    @model_validator(mode="after")
    def _check(self) -> OsorTrainConfig:
        if self.global_batch_size < 1 or (
            self.per_device_batch_size is not None and self.per_device_batch_size < 1
        ):
            raise ValueError("batch sizes must be >= 1")
        if self.log_every < 1 or self.checkpoint_every < 1:
            raise ValueError("log_every and checkpoint_every must be >= 1")
        return self

    def resolved(self) -> OsorTrainConfig:
        """A copy with every per-backbone/per-phase default filled in (what the trainer runs and records)."""
        b = self.backbone
        data = self.data.model_copy(
            update={
                "resolution": self.data.resolution or (RESOLUTION[b] if b == "sdxl" else None),
                "phase2_only": self.phase == 2 if self.data.phase2_only is None else self.data.phase2_only,
            }
        )
        rank = self.lora.rank or LORA_RANK[b]
        lora = self.lora.model_copy(update={"rank": rank, "alpha": self.lora.alpha or float(rank)})
        loss = self.loss.model_copy(
            update={k: v for k, v in BACKBONE_LOSS_WEIGHTS[b].items() if getattr(self.loss, k) is None}
        )
        return self.model_copy(
            update={
                "data": data,
                "lora": lora,
                "loss": loss,
                "max_steps": self.max_steps or PAPER_STEPS[self.phase],
                "per_device_batch_size": self.per_device_batch_size
                or min(PAPER_PER_DEVICE_BATCH[b], self.global_batch_size),
                "timestep": self.timestep if self.timestep is not None
                else float(TRAIN_TIMESTEP[b, self.phase]),
            }
        )

    def accumulation_steps(self, num_processes: int) -> int:
        """Gradient-accumulation steps so that per-device batch × processes × steps = the global batch."""
        per_step = (self.per_device_batch_size or 1) * num_processes
        if self.global_batch_size % per_step:
            raise InvalidInputError(
                f"global batch {self.global_batch_size} is not a multiple of per-device batch "
                f"{self.per_device_batch_size} × {num_processes} processes"
            )
        return self.global_batch_size // per_step


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> OsorTrainConfig:
    """Read a YAML config, apply ``overrides`` and validate. Errors are one-line :class:`InvalidInputError`s.

    Relative ``data.path`` / ``model`` / ``init_weights`` are taken relative to the config file's folder when
    they exist there (a config beside its data), else relative to the working directory, like
    ``output_dir``."""
    config = read_config(path, OsorTrainConfig, overrides)
    return _relative_to(config, Path(path).expanduser().parent)


def _relative_to(config: OsorTrainConfig, folder: Path) -> OsorTrainConfig:
    def fix(value: str | None) -> str | None:
        if value is None or Path(value).expanduser().is_absolute():
            return value
        candidate = folder / value
        return str(candidate) if candidate.exists() else value

    data = config.data.model_copy(update={"path": fix(config.data.path)})
    return config.model_copy(
        update={"data": data, "model": fix(config.model), "init_weights": fix(config.init_weights)}
    )


def packaged_config(name: str) -> Path:
    """Path of a config shipped with erasekit: ``osor_sdxl_phase1`` ... (the ``osor_`` prefix is optional)."""
    return packaged_file("erasekit.methods.osor.train", name, "osor_")


__all__ = ["DataConfig", "DiscriminatorConfig", "LoraSettings", "LossConfig", "OptimConfig",
           "OsorTrainConfig", "load_config", "packaged_config"]

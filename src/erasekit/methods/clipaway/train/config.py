"""CLIPAway MLP training configuration: pydantic models loaded from YAML (``erasekit train clipaway-mlp
--config``).

The packaged ``configs/mlp.yaml`` (name ``clipaway_mlp``) holds the authors' settings (arXiv:2406.09368
App. A.2 and their ``config/training_config.yaml``: MSE, Adam, lr 1e-5, weight decay 1e-4, batch 8, COCO
train2017 at 512×512, 300k steps ≈ their 20 epochs).
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
    """Any folder of images, searched recursively (``.jpg``, ``.jpeg``, ``.png``): COCO's ``train2017/`` or
    its parent works as is. Every image is resized to ``image_size``² first, as the authors' dataset does."""

    path: str
    image_size: int = Field(512, ge=14)
    limit: int | None = Field(None, ge=1, description="use the first N images (sorted by path)")


class EncodersConfig(_Strict):
    """The two frozen encoders. Null paths resolve like the ``clipaway`` method's files: ``weights`` (a folder
    in the authors' ``ckpts/`` layout), ``$ERASEKIT_MODELS_DIR/clipaway``, and for the image encoder also
    ``$ERASEKIT_MODELS_DIR/h94/IP-Adapter/models/image_encoder`` and the Hugging Face cache."""

    weights: str | None = None
    alpha_clip: str | None = Field(None, description="AlphaCLIP clip_l14_grit+mim_fultune_6xe.pth")
    image_encoder: str | None = Field(None, description="IP-Adapter's image_encoder folder (ViT-H/14)")
    allow_download: bool = False


class MlpConfig(_Strict):
    hidden_layers: int = Field(6, ge=1, description="Table 2's [Linear, LayerNorm, GELU] triples")
    init: str | None = Field(None, description="start from this model.safetensors (the authors' "
                                               "mlp_projection_layer_ckpt_path)")


class OptimConfig(_Strict):
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(1e-4, ge=0, description="Adam's L2 term (torch.optim.Adam, not AdamW)")
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


class ClipAwayMlpTrainConfig(_Strict):
    data: DataConfig
    encoders: EncodersConfig = Field(default_factory=lambda: EncodersConfig.model_validate({}))
    mlp: MlpConfig = Field(default_factory=lambda: MlpConfig.model_validate({}))
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig.model_validate({}))
    output_dir: str = "runs/clipaway-mlp"
    cache_dir: str | None = Field(None, description="where the encoders' embeddings are cached; null: "
                                                    "OUTPUT/cache")
    max_steps: int = Field(300_000, ge=1)
    batch_size: int = Field(8, ge=1, description="per process")
    seed: int = 0
    encode_batch_size: int = Field(32, ge=1, description="images per encoder call while caching")
    shard_size: int = Field(4096, ge=1, description="images per cache shard (the unit of resumable caching)")
    checkpoint_every: int = Field(1000, ge=1)
    log_every: int = Field(50, ge=1)
    mixed_precision: MixedPrecision = "no"
    device: str | None = None


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> ClipAwayMlpTrainConfig:
    """Read a YAML config, merge ``overrides`` (nested dict) and validate; errors are one-line
    :class:`InvalidInputError`s."""
    return read_config(path, ClipAwayMlpTrainConfig, overrides)


def packaged_config(name: str) -> Path:
    """A config shipped with erasekit: ``clipaway_mlp`` (the ``clipaway_`` prefix is optional)."""
    return packaged_file("erasekit.methods.clipaway.train", name, "clipaway_")


__all__ = ["ClipAwayMlpTrainConfig", "DataConfig", "EncodersConfig", "MlpConfig", "OptimConfig",
           "load_config", "packaged_config"]

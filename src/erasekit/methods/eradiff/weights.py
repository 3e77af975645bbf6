"""EraDiff UNet weights in erasekit's format: a folder with the full fine-tuned UNet and the recipe.

No EraDiff weights are public (arXiv:2503.07026 ships none), so the format is ours::

    WEIGHTS/
      eradiff.json          {"format": "erasekit-eradiff", "version": 1, "base": ..., "recipe": {...}}
      unet.safetensors      the full UNet2DConditionModel state dict, diffusers' parameter names

Full UNet rather than a LoRA: the paper fine-tunes SD2-Inpaint with Adam at 3e-6 (Sec. 5.1), a full fine-tune
setting; a run trained with our LoRA option is merged into the UNet before export, so there is one format.
The state dict is loaded *into* the pipeline's UNet (``load_state_dict``), so the pipeline's placement,
dtype and offload hooks stay as they were.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...types import InvalidInputError, MissingWeightsError

FORMAT = "erasekit-eradiff"
VERSION = 1
CONFIG_NAME = "eradiff.json"
UNET_NAME = "unet.safetensors"


@dataclass(frozen=True)
class EraDiffWeights:
    folder: Path
    base: str | None
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def unet_path(self) -> Path:
        return self.folder / UNET_NAME


def read_weights(folder: str | os.PathLike) -> EraDiffWeights:
    """Read and check ``eradiff.json``; the UNet file must exist next to it."""
    folder = Path(folder).expanduser()
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise MissingWeightsError(f"no EraDiff weights at {folder}: {CONFIG_NAME} is missing "
                                  "(train them with `erasekit train eradiff --config eradiff_sd2`)")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{config_path} is not valid JSON: {exc}") from None
    if config.get("format") != FORMAT or config.get("version") != VERSION:
        raise InvalidInputError(f"{config_path}: expected format {FORMAT!r} version {VERSION}, got "
                                f"{config.get('format')!r} version {config.get('version')!r}")
    if not (folder / UNET_NAME).is_file():
        raise MissingWeightsError(f"EraDiff weights {folder}: {UNET_NAME} is missing")
    return EraDiffWeights(folder=folder, base=config.get("base"), recipe=dict(config.get("recipe", {})))


def save_weights(unet: Any, folder: str | os.PathLike, *, base: str | None, recipe: dict[str, Any]) -> Path:
    """Write ``unet``'s full state dict and the recipe JSON into ``folder`` (created)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in unet.state_dict().items()}
    save_file(state, str(folder / UNET_NAME))
    config = {"format": FORMAT, "version": VERSION, "base": base, "recipe": recipe}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def apply_weights(unet: Any, weights: EraDiffWeights) -> None:
    """Load the EraDiff UNet state dict into ``unet`` in place (strict: every key must match)."""
    from safetensors.torch import load_file

    state = load_file(str(weights.unet_path))
    try:
        unet.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InvalidInputError(f"EraDiff weights {weights.folder} do not fit this UNet: "
                                f"{str(exc).splitlines()[0]}") from None


__all__ = ["CONFIG_NAME", "FORMAT", "UNET_NAME", "VERSION", "EraDiffWeights", "apply_weights", "read_weights",
           "save_weights"]

"""LaMa (Suvorov et al., WACV 2022, arXiv:2109.07161): large-mask inpainting with Fourier convolutions, the
GAN baseline EraDiff and MagicRemover compare against and IOPaint's default model.

erasekit runs the TorchScript export ``big-lama.pt`` that IOPaint and simple-lama distribute (the FFC network
of the authors' Big LaMa checkpoint, traced with its composition step), with IOPaint's processing
(``iopaint/model/lama.py`` and ``InpaintModel._pad_forward``):

* the image and the mask are padded at the bottom and right to a multiple of 8 with ``numpy.pad`` mode
  ``"symmetric"`` (IOPaint's ``pad_img_to_modulo``), and the output is cropped back to the top-left H×W;
* inputs: image float32 1×3×H×W in [0, 1] (RGB), mask float32 1×1×H×W, 1 where the mask is > 0;
* ``model(image, mask)`` returns 1×3×H×W in [0, 1]; output = clip(x·255, 0, 255) cast to uint8 (IOPaint
  truncates; it does not round).

The remover base pastes back outside the mask, so pixels there are the input's bit for bit.

Weights resolve, in order, from the ``weights`` load option (the file, or a folder holding ``big-lama.pt``),
``$ERASEKIT_MODELS_DIR/lama/big-lama.pt`` (or ``$ERASEKIT_MODELS_DIR/big-lama.pt``) and IOPaint's cache, the
torch hub checkpoint folder (``$TORCH_HOME/hub/checkpoints/big-lama.pt``, default ``~/.cache/torch``).
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..backbones.presets import MODELS_DIR_ENV, models_dir
from ..hd import HDStrategy, SizeConstraints
from ..options import OptionSet
from ..registry import MethodSpec, WeightRequirement, register_method
from ..types import InvalidInputError, MissingWeightsError, RemovalRequest
from .base import Remover

WEIGHTS_FILE = "big-lama.pt"
PAD_MULTIPLE = 8  # IOPaint's LaMa.pad_mod
# Where IOPaint downloads it (iopaint/model/lama.py, LAMA_MODEL_URL).
WEIGHTS_URL = "https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt"


def torch_hub_checkpoints() -> Path:
    """``torch.hub.get_dir()/checkpoints`` without importing torch (IOPaint's download folder)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def candidate_paths() -> list[Path]:
    root = models_dir()
    local = [root / "lama" / WEIGHTS_FILE, root / WEIGHTS_FILE] if root is not None else []
    return [*local, torch_hub_checkpoints() / WEIGHTS_FILE]


def locate_weights(path: str | os.PathLike | None = None) -> Path | None:
    if path is not None:
        p = Path(path).expanduser()
        p = p / WEIGHTS_FILE if p.is_dir() else p
        return p if p.is_file() else None
    return next((p for p in candidate_paths() if p.is_file()), None)


def _missing_message(path: str | os.PathLike | None) -> str:
    where = str(path) if path is not None else ", ".join(str(p) for p in candidate_paths())
    return (
        f"LaMa weights not found ({where}); download {WEIGHTS_FILE} (TorchScript, as IOPaint and simple-lama "
        f"use) from {WEIGHTS_URL} into ${MODELS_DIR_ENV}/lama/ or pass --weights PATH"
    )


def pad_to_multiple(array: np.ndarray, multiple: int = PAD_MULTIPLE) -> np.ndarray:
    """IOPaint's ``pad_img_to_modulo``: pad bottom/right to a multiple, ``numpy.pad`` mode 'symmetric'."""
    height, width = array.shape[:2]
    pad = [(0, -height % multiple), (0, -width % multiple)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, mode="symmetric")


class LaMaRemover(Remover):
    """Big LaMa (TorchScript) with IOPaint's pre- and post-processing; deterministic (no sampling)."""

    name: ClassVar[str] = "lama"
    constraints: ClassVar[SizeConstraints] = SizeConstraints()  # any size: padding is done here, as IOPaint
    # IOPaint runs LaMa on a crop around the mask when the image is large ("crop" HD strategy); LaMa was
    # trained at 256 px and its FFC receptive field is the whole input, so whole-image inference is right.
    default_hd_strategy: ClassVar[HDStrategy] = HDStrategy(name="original")
    call_options: OptionSet = OptionSet()

    def __init__(self, weights: str | None = None, device: str = "cpu"):
        import torch

        if weights is not None and not isinstance(weights, str | os.PathLike):
            raise InvalidInputError(f"lama weights must be a path, got {weights!r}")
        found = locate_weights(weights)
        if found is None:
            raise MissingWeightsError(_missing_message(weights))
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated, but it is what big-lama.pt is
                warnings.filterwarnings("ignore", r".*torch\.jit.*deprecated", DeprecationWarning)
                self.model = torch.jit.load(str(found), map_location=device).eval()
        except (RuntimeError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InvalidInputError(f"{found} is not a TorchScript LaMa model: {first}") from None
        self.weights, self.device = str(found), device
        self._lock = threading.Lock()  # one forward at a time: a TorchScript module is shared state

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights": self.weights, "pad_multiple": PAD_MULTIPLE}

    def inpaint(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest):
        import torch

        height, width = image.shape[:2]
        padded_image = pad_to_multiple(image)
        padded_mask = pad_to_multiple(np.asarray(mask))
        x = torch.from_numpy(np.ascontiguousarray(padded_image.transpose(2, 0, 1), dtype=np.float32) / 255.0)
        m = torch.from_numpy((padded_mask > 0).astype(np.float32))
        with self._lock, torch.no_grad():
            out = self.model(x[None].to(self.device), m[None, None].to(self.device))
        result = out[0].permute(1, 2, 0).float().cpu().numpy()
        result = np.clip(result * 255, 0, 255).astype(np.uint8)  # IOPaint truncates
        return np.ascontiguousarray(result[:height, :width]), None


def weights_location() -> str | None:
    found = locate_weights()
    return str(found) if found is not None else None


def register() -> None:
    register_method(
        MethodSpec(
            name="lama",
            description="LaMa large-mask inpainting (Big LaMa TorchScript, IOPaint's default); fast on CPU",
            factory=LaMaRemover,
            weights=(
                WeightRequirement(
                    WEIGHTS_FILE,
                    "Big LaMa TorchScript (IOPaint / simple-lama)",
                    weights_location,
                    fetch_hint=f"download {WEIGHTS_URL} into ${MODELS_DIR_ENV}/lama/",
                ),
            ),
            auto_priority=5,  # above PatchMatch (0), below every diffusion method
            family="gan",
            paper="Suvorov et al., WACV 2022 (arXiv:2109.07161)",
        )
    )


__all__ = ["LaMaRemover", "candidate_paths", "locate_weights", "pad_to_multiple", "register"]

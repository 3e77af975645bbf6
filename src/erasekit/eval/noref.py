"""No-reference image quality: MUSIQ (Ke et al., ICCV 2021) and MANIQA (Yang et al., CVPRW 2022), the
columns of PixPerfect's Table 3, through pyiqa (``pyiqa.create_metric``), the library that packages both.

pyiqa imports torchvision at import time (``pyiqa/archs/arch_util.py``) and declares it a dependency, and
torchvision cannot be installed beside the CPU torch on the machines this project is built on. So pyiqa is
not an erasekit dependency: where it imports, these metrics run; where it does not, :func:`load_noref`
raises :class:`~erasekit.types.MissingWeightsError` with the reason, and the benchmark reports the metric as
unavailable, as it does for a metric whose weights are missing.

Offline: pyiqa downloads its checkpoints on first use. erasekit never lets it: the checkpoint must be given
(``--weights musiq=PATH``) or already sit in pyiqa's cache (``~/.cache/torch/hub/pyiqa/``, the file names
below); otherwise the metric is unavailable with that path in the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..types import MissingWeightsError
from .metrics import Metric, Sample

# metric -> (pyiqa metric name, pyiqa's checkpoint file name for its default KonIQ variant)
NOREF_METRICS: dict[str, tuple[str, str]] = {
    "musiq": ("musiq", "musiq_koniq_ckpt-e95806b9.pth"),
    "maniqa": ("maniqa", "ckpt_koniq10k.pt"),
}


def pyiqa_cache() -> Path:
    """pyiqa's default checkpoint folder (``DEFAULT_CACHE_DIR`` in ``pyiqa.utils.download_util``)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "hub" / "pyiqa"


def import_pyiqa() -> Any:
    """The pyiqa module, or MissingWeightsError saying why it cannot be used here."""
    try:
        import pyiqa
    except ImportError as exc:  # ModuleNotFoundError for pyiqa itself or for torchvision inside it
        missing = getattr(exc, "name", None) or str(exc)
        why = (
            "pyiqa imports torchvision, which is not installed"
            if missing and missing.startswith("torchvision")
            else f"pyiqa cannot be imported ({exc})"
        )
        raise MissingWeightsError(
            f"{why}; MUSIQ/MANIQA need `pip install pyiqa` (with torchvision)"
        ) from None
    return pyiqa


def load_noref(name: str, path: str | os.PathLike | None = None, *, device: str = "cpu") -> Any:
    """The pyiqa metric ``name`` (musiq or maniqa) with a local checkpoint; never downloads."""
    pyiqa_name, file_name = NOREF_METRICS[name]
    pyiqa = import_pyiqa()
    checkpoint = Path(path).expanduser() if path is not None else pyiqa_cache() / file_name
    if not checkpoint.is_file():
        raise MissingWeightsError(
            f"{name.upper()} checkpoint not found at {checkpoint}; put pyiqa's {file_name} there "
            f"or pass --weights {name}=PATH"
        )
    return pyiqa.create_metric(
        pyiqa_name, device=device, pretrained_model_path=str(checkpoint), as_loss=False
    )


class NoReferenceMetric(Metric):
    """Mean of a pyiqa no-reference score over the outputs (input: float RGB N×3×H×W in [0, 1])."""

    needs_target = False

    def __init__(self, name: str, model: Any, device: str = "cpu"):
        self.name, self.model, self.device = name, model, device

    def update(self, s: Sample) -> dict[str, float]:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(s.output, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        with torch.no_grad():
            score = self.model(x.to(self.device))
        return {self.name: float(torch.as_tensor(score).reshape(-1)[0])}

    def settings(self) -> dict:
        return {"library": "pyiqa", "metric": NOREF_METRICS[self.name][0], "variant": "KonIQ-10k checkpoint"}


__all__ = ["NOREF_METRICS", "NoReferenceMetric", "import_pyiqa", "load_noref", "pyiqa_cache"]

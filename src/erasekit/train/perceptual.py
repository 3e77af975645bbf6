"""The perceptual term L_per = LPIPS-VGG(x̂, x_bg) of Eq. 10 (App. B.1: "LPIPS [48]", VGG variant as in the authors'
training code).

Why a network here: the ``lpips`` package builds its VGG16 trunk from ``torchvision.models``, and torchvision cannot
be installed beside our CPU torch build, so ``import lpips`` fails. The in-house LPIPS of :mod:`erasekit.eval` is the
AlexNet metric (v0.1, evaluation); training uses the VGG16 variant. This module writes VGG16's ``features`` with
torchvision's exact indices so the published ``vgg16-397923af.pth`` loads unchanged, and the lpips v0.1 linear
heads with the lpips package's key names (``lin{0..4}.model.1.weight``; torchmetrics bundles the same ``vgg.pth``).

The trainer takes any ``perceptual_loss(prediction, target) -> scalar`` callable; :func:`load_lpips_vgg` is the
default and raises :class:`MissingWeightsError` (naming the files and where to put them) when weights are absent.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from ..types import MissingWeightsError

WEIGHTS_DIR_ENV = "ERASEKIT_WEIGHTS_DIR"
VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
LPIPS_VGG_FILE = "vgg.pth"
# Installed packages that ship the lpips v0.1 VGG heads (found without importing them: lpips imports torchvision).
_HEAD_PACKAGE_FILES = (("torchmetrics", "functional/image/lpips_models/vgg.pth"), ("lpips", "weights/v0.1/vgg.pth"))

# torchvision's VGG16 "D" configuration: conv widths, "M" = 2×2 max pool.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16Trunk(nn.Module):
    """torchvision's ``vgg16().features`` (same indices); returns relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""

    TAPS = (4, 9, 16, 23, 30)            # slice ends, as in lpips' vgg16 wrapper
    CHANNELS = (64, 128, 256, 512, 512)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                channels = v
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps, start = [], 0
        for end in self.TAPS:
            for layer in self.features[start:end]:
                x = layer(x)
            taps.append(x)
            start = end
        return taps


class _LinearHead(nn.Module):
    """lpips' ``NetLinLayer``: dropout then a 1×1 conv to one channel (keys ``model.1.weight``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPSVGG(nn.Module):
    """LPIPS v0.1 with the VGG16 trunk; frozen, differentiable in its inputs. ``forward`` returns the batch mean
    (a loss); :meth:`distance` one value per pair. Inputs N×3×H×W in [-1, 1]."""

    SHIFT = (-0.030, -0.088, -0.188)   # lpips ScalingLayer
    SCALE = (0.458, 0.448, 0.450)
    EPS = 1e-10

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1), persistent=False)
        self.net = VGG16Trunk()
        for i, ch in enumerate(VGG16Trunk.CHANNELS):
            self.add_module(f"lin{i}", _LinearHead(ch))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPSVGG:  # frozen: dropout stays off
        return super().train(False)

    def load_weights(self, trunk_state: dict, heads_state: dict) -> LPIPSVGG:
        self.net.load_state_dict({k: v for k, v in trunk_state.items() if k.startswith("features.")}, strict=True)
        heads = {k: v for k, v in heads_state.items() if k.startswith("lin")}
        missing = {f"lin{i}.model.1.weight" for i in range(5)} - set(heads)
        if missing:
            raise KeyError(f"LPIPS heads lack {sorted(missing)}")
        self.load_state_dict(heads, strict=False)
        return self

    @staticmethod
    def _unit(f: torch.Tensor) -> torch.Tensor:
        return f / (torch.sqrt(torch.sum(f ** 2, dim=1, keepdim=True)) + LPIPSVGG.EPS)

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale = self.shift.to(x.dtype), self.scale.to(x.dtype)
        fx, fy = self.net((x - shift) / scale), self.net((y - shift) / scale)
        total = 0.0
        for i, (a, b) in enumerate(zip(fx, fy)):
            total = total + getattr(self, f"lin{i}")((self._unit(a) - self._unit(b)) ** 2).mean(dim=(2, 3))
        return total.flatten()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distance(x, y).mean()


def _package_file(package: str, relative: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / relative).is_file():
            return Path(location) / relative
    return None


def _find(explicit: str | os.PathLike | None, filename: str, package_files=()) -> Path | None:
    if explicit is not None:
        path = Path(explicit).expanduser()
        return path if path.is_file() else None
    candidates = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        candidates.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser() / filename)
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / filename)
    candidates += [p for p in (_package_file(pkg, rel) for pkg, rel in package_files) if p is not None]
    return next((p for p in candidates if p.is_file()), None)


def load_lpips_vgg(trunk: str | os.PathLike | None = None, heads: str | os.PathLike | None = None) -> LPIPSVGG:
    """LPIPS-VGG from local files: ``trunk`` torchvision's ``vgg16-397923af.pth``, ``heads`` lpips' v0.1 ``vgg.pth``.

    Without explicit paths: ``$ERASEKIT_WEIGHTS_DIR/<file>``, torch hub's ``checkpoints/``, then the copies bundled in
    installed packages (heads only).
    """
    trunk_path = _find(trunk, VGG16_FILE)
    heads_path = _find(heads, LPIPS_VGG_FILE, _HEAD_PACKAGE_FILES)
    if trunk_path is None:
        raise MissingWeightsError(f"LPIPS-VGG needs torchvision's VGG16 weights: download {VGG16_URL} to "
                                  f"${WEIGHTS_DIR_ENV}/{VGG16_FILE} or {Path(torch.hub.get_dir()) / 'checkpoints'}/")
    if heads_path is None:
        raise MissingWeightsError(f"LPIPS-VGG needs the lpips v0.1 heads ({LPIPS_VGG_FILE}): pip install torchmetrics "
                                  f"or put the file at ${WEIGHTS_DIR_ENV}/{LPIPS_VGG_FILE}")
    try:
        return LPIPSVGG().load_weights(torch.load(trunk_path, map_location="cpu", weights_only=True),
                                       torch.load(heads_path, map_location="cpu", weights_only=True))
    except (KeyError, RuntimeError, OSError) as exc:
        raise MissingWeightsError(f"LPIPS-VGG weights at {trunk_path} / {heads_path} do not fit: "
                                  f"{str(exc).splitlines()[0]}") from None


__all__ = ["LPIPSVGG", "VGG16Trunk", "load_lpips_vgg"]

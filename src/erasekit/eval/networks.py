"""The feature networks written here: LPIPS v0.1 and the TF-Inception used by FID.

LPIPS uses AlexNet for the metric and VGG16 for training.

Why in-house: the reference implementations (the ``lpips`` package, torch-fidelity, pytorch-fid) build their
networks from ``torchvision.models``, and torchvision has no wheel that installs beside the CPU torch build we
pin (its wheels need a CUDA torch or a newer torch). torch-fidelity is worse than absent: once installed,
torchmetrics imports it at ``import torchmetrics`` time and that import fails without torchvision. So the two
networks are written here with the exact module names of the reference state dicts, so the published weight
files load unchanged:

* AlexNet / VGG16 trunks: torchvision's ``features.*`` indices (``alexnet-owt-7be5be79.pth``,
  ``vgg16-397923af.pth``);
* LPIPS heads: the lpips package's ``lin{0..4}.model.1.weight`` layout (``weights/v0.1/alex.pth`` /
``vgg.pth``);
* FID Inception: the ``pt_inception-2015-12-05`` layout (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch1x1...``),
  with the TensorFlow graph's quirks (average pools that ignore padding, a max pool in the last block, the TF
  1.x bilinear resize to 299 and the ``(x - 128) / 128`` scaling).

Tests compare LPIPS with the real ``lpips`` package on the same weights (through a torchvision shim).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# ------------------------------------------------------------------------------------------------------------
# LPIPS v0.1 with the AlexNet trunk (Zhang et al., CVPR 2018)
# ------------------------------------------------------------------------------------------------------------
class TappedTrunk(nn.Module):
    """A torchvision-style ``features`` stack that returns the activations at the slice ends ``TAPS`` (whose
    channel counts are ``CHANNELS``): the trunk interface :class:`LPIPS` reads."""

    TAPS: tuple[int, ...]
    CHANNELS: tuple[int, ...]
    features: nn.Sequential

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps, start = [], 0
        layers = list(self.features)
        for end in self.TAPS:
            for layer in layers[start:end]:
                x = layer(x)
            taps.append(x)
            start = end
        return taps


class AlexNetTrunk(TappedTrunk):
    """torchvision's AlexNet ``features`` with the same indices; returns the five ReLU outputs LPIPS taps."""

    # Slice ends after relu1, relu2, relu3, relu4, relu5 (indices into ``features``).
    TAPS = (2, 5, 8, 10, 12)
    CHANNELS = (64, 192, 384, 256, 256)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )


class _LinearHead(nn.Module):
    """A 1×1 conv to one channel behind a dropout, named like the lpips package (``model.1.weight``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, stride=1, padding=0, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# torchvision's VGG16 "D" configuration: conv widths, "M" = 2×2 max pool.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16Trunk(TappedTrunk):
    """torchvision's ``vgg16().features`` (same indices, so ``vgg16-397923af.pth`` loads unchanged); returns
    relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 — the LPIPS-VGG taps (OSOR's perceptual training loss)."""

    TAPS = (4, 9, 16, 23, 30)
    CHANNELS = (64, 128, 256, 512, 512)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for v in _VGG16:
            if isinstance(v, int):
                layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                channels = v
            else:  # "M"
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS v0.1 over a trunk that returns its tap activations (:class:`AlexNetTrunk` for the metric,
    :class:`VGG16Trunk` for training). Frozen (dropout stays off), differentiable in its inputs.
    Inputs N×3×H×W in [-1, 1]; output N (one distance per pair).

    d(x, y) = Σ_l mean_hw( w_l · (f̂_l(x) − f̂_l(y))² ), f̂ = channel-unit-normalised activations of layer l
    of the trunk applied to the input shifted/scaled by the v0.1 ScalingLayer constants.
    """

    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)
    EPS = 1e-10  # the lpips package's normalize_tensor epsilon

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, trunk: TappedTrunk) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(self.SHIFT)[None, :, None, None], persistent=False)
        self.register_buffer("scale", torch.tensor(self.SCALE)[None, :, None, None], persistent=False)
        self.net = trunk
        for i, ch in enumerate(trunk.CHANNELS):
            self.add_module(f"lin{i}", _LinearHead(ch))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:  # a fixed metric: dropout never turns on
        return super().train(False)

    def load_weights(self, trunk_state: dict, heads_state: dict) -> LPIPS:
        """Load torchvision trunk weights (``features.*`` used, classifier ignored) and lpips v0.1 heads."""
        trunk = {k: v for k, v in trunk_state.items() if k.startswith("features.")}
        self.net.load_state_dict(trunk, strict=True)
        heads = {k: v for k, v in heads_state.items() if k.startswith("lin")}
        missing = {f"lin{i}.model.1.weight" for i in range(len(self.net.CHANNELS))} - set(heads)
        if missing:
            raise KeyError(f"LPIPS heads file lacks {sorted(missing)}")
        self.load_state_dict(heads, strict=False)
        return self

    def _normalize(self, f: torch.Tensor) -> torch.Tensor:
        return f / (torch.sqrt(torch.sum(f**2, dim=1, keepdim=True)) + self.EPS)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale = self.shift.to(x.dtype), self.scale.to(x.dtype)
        fx = self.net((x - shift) / scale)
        fy = self.net((y - shift) / scale)
        total = torch.zeros((), dtype=x.dtype, device=x.device)
        for i, (a, b) in enumerate(zip(fx, fy)):
            diff = (self._normalize(a) - self._normalize(b)) ** 2
            total = total + getattr(self, f"lin{i}")(diff).mean(dim=(2, 3), keepdim=True)
        return total.flatten()


class LPIPSAlex(LPIPS):
    """LPIPS v0.1 with the AlexNet trunk: the evaluation metric."""

    def __init__(self) -> None:
        super().__init__(AlexNetTrunk())


class LPIPSVGG(LPIPS):
    """LPIPS v0.1 with the VGG16 trunk: OSOR's perceptual training loss (App. B.1)."""

    def __init__(self) -> None:
        super().__init__(VGG16Trunk())


# ------------------------------------------------------------------------------------------------------------
# FID Inception (TF graph 2015-12-05, pt_inception layout)
# ------------------------------------------------------------------------------------------------------------
def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1.x ``resize_bilinear(align_corners=False)``.

    Source coordinate = dst · (in/out), no half-pixel offset, right/bottom neighbour clamped. The original FID
    graph resizes this way; torch's ``interpolate`` uses half-pixel centres and would shift every feature
    slightly, so it cannot be used.
    """

    out_h, out_w = size
    in_h, in_w = x.shape[-2:]

    def axis(n_in: int, n_out: int):
        src = torch.arange(n_out, dtype=torch.float64, device=x.device) * (n_in / n_out)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        w = (src - lo.to(torch.float64)).to(x.dtype)
        return lo, hi, w

    y0, y1, wy = axis(in_h, out_h)
    x0, x1, wx = axis(in_w, out_w)
    top = x[..., y0, :]
    bottom = x[..., y1, :]
    rows = top + (bottom - top) * wy[:, None]
    left = rows[..., x0]
    right = rows[..., x1]
    return left + (right - left) * wx


class _Conv(nn.Module):
    """Conv (no bias) + BatchNorm(eps=1e-3) + ReLU; names ``conv``/``bn`` as in the weight file."""

    def __init__(self, cin: int, cout: int, **kw) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool leaves padded zeros out of the mean.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, kernel_size=1)
        self.branch5x5_1 = _Conv(cin, 48, kernel_size=1)
        self.branch5x5_2 = _Conv(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = _Conv(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, kernel_size=3, padding=1)
        self.branch_pool = _Conv(cin, pool_features, kernel_size=1)

    def forward(self, x):
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg_pool_tf(x)),
            ],
            1,
        )


class _BlockB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = _Conv(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            1,
        )


class _BlockC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, kernel_size=1)
        self.branch7x7_1 = _Conv(cin, c7, kernel_size=1)
        self.branch7x7_2 = _Conv(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = _Conv(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, 192, kernel_size=1)

    def forward(self, x):
        dbl = x
        for i in range(1, 6):
            dbl = getattr(self, f"branch7x7dbl_{i}")(dbl)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                dbl,
                self.branch_pool(_avg_pool_tf(x)),
            ],
            1,
        )


class _BlockD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(cin, 192, kernel_size=1)
        self.branch3x3_2 = _Conv(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = _Conv(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b = x
        for i in range(1, 5):
            b = getattr(self, f"branch7x7x3_{i}")(b)
        return torch.cat(
            [self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, kernel_size=3, stride=2)], 1
        )


class _BlockE(nn.Module):
    """``pool="avg"`` for Mixed_7b; the TF graph's Mixed_7c uses a max pool in the pool branch."""

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _Conv(cin, 320, kernel_size=1)
        self.branch3x3_1 = _Conv(cin, 384, kernel_size=1)
        self.branch3x3_2a = _Conv(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = _Conv(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, kernel_size=1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = (
            _avg_pool_tf(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        )
        return torch.cat(
            [self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3), self.branch3x3dbl_3a(d3),
             self.branch3x3dbl_3b(d3), self.branch_pool(pooled)],
            1,
        )


class FIDInceptionV3(nn.Module):
    """The FID feature network: uint8 N×3×H×W in, 2048-d pool features out (float32).

    Preprocessing is part of the network, as in the TF graph: TF 1.x bilinear resize to 299×299 (no
    antialias), then ``(x − 128) / 128``.
    """

    INPUT_SIZE = 299
    num_features = 2048  # torchmetrics reads this instead of running a dummy image

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, kernel_size=3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, "avg")
        self.Mixed_7c = _BlockE(2048, "max")
        self.fc = nn.Linear(2048, 1008)  # logits of the TF graph; kept so the weight file loads strictly
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, state: dict) -> FIDInceptionV3:
        result = self.load_state_dict(state, strict=False)
        # Old BatchNorm files carry no num_batches_tracked; anything else missing or extra is a wrong file.
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            raise KeyError(
                f"not an FID Inception checkpoint (missing {missing[:3]}, unexpected "
                f"{result.unexpected_keys[:3]})"
            )
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError("FIDInceptionV3 expects uint8 N×3×H×W images")
        x = resize_bilinear_tf1(images.to(torch.float32), (self.INPUT_SIZE, self.INPUT_SIZE))
        x = (x - 128.0) / 128.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in (
            "Mixed_5b",
            "Mixed_5c",
            "Mixed_5d",
            "Mixed_6a",
            "Mixed_6b",
            "Mixed_6c",
            "Mixed_6d",
            "Mixed_6e",
            "Mixed_7a",
            "Mixed_7b",
            "Mixed_7c",
        ):
            x = getattr(self, name)(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

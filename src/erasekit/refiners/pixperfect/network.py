"""The PixPerfect refiner network G(x_gen, m) -> x_pred (PixPerfect, NeurIPS 2025, Sec. 3 and App. C).

PixPerfect builds on CM-GAN (Zheng et al., ECCV 2022, "Cascaded Modulation GAN"), with its bottleneck fully
connected layer replaced by global average pooling, which makes the network fully convolutional (App. C).
Neither paper's code is public: everything here is written from the two papers, and every choice they leave
open is marked "choice:" and listed in docs/pixperfect.md. Written by hand because no library (diffusers,
timm, kornia) provides Fourier convolutions or StyleGAN2 modulated convolutions.

Layout, top to bottom:

* encoder: a 3×3 stem over [x_gen in [-1, 1], m] and ``num_downsamples`` stride-2 stages, each keeping its
output
  as a skip feature; at the bottom ``ffc_blocks`` Fourier-convolution residual blocks (LaMa, Suvorov et al.
  2022), whose spectral branch sees the whole image at once;
* global code: global average pooling of the bottleneck, then a two-layer MLP (App. C: GAP instead of CM-GAN's
  flatten + fully connected layer, so any input size works);
* decoder: one :class:`CascadedModulationBlock` per scale. A global stream is modulated by the global code
  (StyleGAN2 weight modulation + demodulation); a spatial stream is modulated by the global code *and* by
  per-pixel scale/shift maps predicted from the global stream and the encoder skip (CM-GAN's cascade: global
  context first, then spatial detail);
* output: a modulated 1×1 conv to RGB added to the input (choice: a residual refiner; an untrained network
starts
  near the identity, which is what a refiner of nearly right images should do).

Inputs of any size: the image is padded (replicate) to a multiple of ``2**num_downsamples`` and the output
cropped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...types import InvalidInputError


@dataclass(frozen=True)
class PixPerfectConfig:
    """Architecture hyper-parameters; saved as JSON next to the weights (see :mod:`.weights`).

    The default has about 41M parameters, the size App. C gives for the pruned PixPerfect model
    (:func:`count_parameters`; docs/pixperfect.md has the count). Tests use ``width=4``.
    """

    width: int = 64  # channels at full resolution; each stage doubles them up to max_width
    max_width: int = 512
    num_downsamples: int = 4
    ffc_blocks: int = 3
    global_ratio: float = 0.75  # share of FFC channels in the spectral (global) branch, LaMa's default
    style_dim: int = 512

    def __post_init__(self) -> None:
        for name in ("width", "max_width", "num_downsamples", "ffc_blocks", "style_dim"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (0 if name == "ffc_blocks" else 1)
            ):
                raise InvalidInputError(
                    f"PixPerfect config: {name} must be a positive integer, got {value!r}"
                )
        if not 0.0 < self.global_ratio < 1.0:
            raise InvalidInputError(
                f"PixPerfect config: global_ratio must be in (0, 1), got {self.global_ratio!r}"
            )

    def channels(self) -> list[int]:
        """Channels at each resolution, full resolution first."""
        return [min(self.width * 2**i, self.max_width) for i in range(self.num_downsamples + 1)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PixPerfectConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidInputError(f"PixPerfect config has unknown field(s): {', '.join(sorted(unknown))}")
        return cls(**data)


# ---- StyleGAN2 building blocks -----------------------------------------------------------------------------
class EqualLinear(nn.Module):
    """Linear layer with StyleGAN's equalised learning rate (weights ~ N(0, 1), scaled at run time)."""

    def __init__(self, cin: int, cout: int, *, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
        self.scale = 1.0 / math.sqrt(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (Karras et al., CVPR 2020, Sec. 2.2): the weights are scaled per input
    channel by a style from the global code, then (``demodulate``) normalised per output channel so the output
    has unit variance for unit-variance input. Run as one grouped convolution over the batch."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        style_dim: int,
        *,
        demodulate: bool = True,
        weight_gain: float = 1.0,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel) * weight_gain)
        self.affine = EqualLinear(style_dim, cin, bias_init=1.0)  # styles start at 1: plain convolution
        self.scale = 1.0 / math.sqrt(cin * kernel * kernel)
        self.demodulate = demodulate
        self.padding = kernel // 2

    def modulated_weight(self, code: torch.Tensor) -> torch.Tensor:
        """B×cout×cin×k×k weights for a B×style_dim code."""
        style = self.affine(code)
        weight = self.weight[None] * self.scale * style[:, None, :, None, None]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        return weight

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        batch, cin, height, width = x.shape
        weight = self.modulated_weight(code)
        out = F.conv2d(
            x.reshape(1, batch * cin, height, width),
            weight.reshape(-1, cin, *weight.shape[3:]),
            padding=self.padding,
            groups=batch,
        )
        return out.reshape(batch, -1, height, width)


def _act(x: torch.Tensor) -> torch.Tensor:
    # StyleGAN2's leaky ReLU with its √2 gain, which keeps activations at unit variance through the layers.
    return F.leaky_relu(x, 0.2) * math.sqrt(2.0)


# ---- encoder -----------------------------------------------------------------------------------------------
class FourierUnit(nn.Module):
    """LaMa's Fourier unit: a 1×1 convolution over the real and imaginary parts of the 2-D real FFT, so every
    output pixel depends on the whole image (an image-wide receptive field in one layer)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, 2 * channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        spectrum = torch.fft.rfft2(x.float(), norm="ortho")
        stacked = torch.cat([spectrum.real, spectrum.imag], dim=1)
        real, imag = _act(self.conv(stacked.to(x.dtype))).float().chunk(2, dim=1)
        return torch.fft.irfft2(torch.complex(real, imag), s=(height, width), norm="ortho").to(x.dtype)


class SpectralTransform(nn.Module):
    """LaMa's global path: 1×1 reduce, Fourier unit with a residual, 1×1 expand. Choice: no batch norm
    (a StyleGAN-family generator has none, and the refiner runs on single images at inference)."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = max(channels // 2, 1)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.fourier = FourierUnit(hidden)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = _act(self.reduce(x))
        return self.expand(hidden + self.fourier(hidden))


class FFC(nn.Module):
    """Fast Fourier convolution (Chi et al., NeurIPS 2020): local (3×3) and global (spectral) channel groups
    exchanging information through four paths: local→local, local→global, global→local, global→global."""

    def __init__(self, channels: int, global_ratio: float):
        super().__init__()
        self.global_channels = min(max(round(channels * global_ratio), 1), channels - 1)
        local_channels = channels - self.global_channels
        self.local_to_local = nn.Conv2d(local_channels, local_channels, 3, padding=1, padding_mode="reflect")
        self.global_to_local = nn.Conv2d(
            self.global_channels, local_channels, 3, padding=1, padding_mode="reflect"
        )
        self.local_to_global = nn.Conv2d(
            local_channels, self.global_channels, 3, padding=1, padding_mode="reflect"
        )
        self.global_to_global = SpectralTransform(self.global_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local, glob = x[:, : -self.global_channels], x[:, -self.global_channels :]
        out_local = self.local_to_local(local) + self.global_to_local(glob)
        out_global = self.local_to_global(local) + self.global_to_global(glob)
        return torch.cat([out_local, out_global], dim=1)


class FFCResidualBlock(nn.Module):
    """Two FFC layers with a residual connection (LaMa's FFCResnetBlock, without batch norm)."""

    def __init__(self, channels: int, global_ratio: float):
        super().__init__()
        self.first = FFC(channels, global_ratio)
        self.second = FFC(channels, global_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.second(_act(self.first(x)))


class EncoderStage(nn.Module):
    """Stride-2 3×3 conv then a 3×3 conv: halves the resolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.down = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.conv = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _act(self.conv(_act(self.down(x))))


# ---- decoder -----------------------------------------------------------------------------------------------
class CascadedModulationBlock(nn.Module):
    """One decoder scale of CM-GAN's cascaded modulation (Zheng et al. 2022, Sec. 3.2), as read
    from that paper.

    global stream:  X' = act(ModConv_g(up(X)) + skip)                  (global modulation, demodulated)
    spatial code:   A, B = APN([X', skip])                              (per-pixel scale and shift)
    spatial stream: Z' = act(DemodConv_g(up(Z) · A) + B)                (spatial modulation of the input, then
    the
                                                                         globally modulated, demodulated conv)

    Choice: ``A`` is predicted as 1 + a so an untrained block is a plain modulated conv; the spatial stream's
    demodulation is StyleGAN2's (it assumes unit-variance input, which the √2-gain activations keep roughly
    true), where CM-GAN's "spatial-aware demodulation" is only described in words; upsampling is bilinear
    (StyleGAN2 uses a transposed conv with an FIR filter).
    """

    def __init__(self, cin: int, cout: int, skip_channels: int, style_dim: int):
        super().__init__()
        self.global_conv = ModulatedConv2d(cin, cout, 3, style_dim)
        self.skip_proj = nn.Conv2d(skip_channels, cout, 1)
        self.spatial_code = nn.Sequential(
            nn.Conv2d(cout + skip_channels, cout, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(cout, cin + cout, 3, padding=1),
        )
        self.spatial_conv = ModulatedConv2d(cin, cout, 3, style_dim)
        self.cin = cin

    def forward(
        self, x: torch.Tensor, z: torch.Tensor, skip: torch.Tensor, code: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        size = skip.shape[-2:]
        x = _act(
            self.global_conv(F.interpolate(x, size=size, mode="bilinear", align_corners=False), code)
            + self.skip_proj(skip)
        )
        scale_shift = self.spatial_code(torch.cat([x, skip], dim=1))
        scale, shift = 1.0 + scale_shift[:, : self.cin], scale_shift[:, self.cin :]
        z_up = F.interpolate(z, size=size, mode="bilinear", align_corners=False)
        z = _act(self.spatial_conv(z_up * scale, code) + shift)
        return x, z


class PixPerfectGenerator(nn.Module):
    """G(x_gen, m): x_gen B×3×H×W in [0, 1], m B×1×H×W in [0, 1] -> x_pred B×3×H×W in [0, 1], any H and W."""

    def __init__(self, config: PixPerfectConfig | None = None):
        super().__init__()
        self.config = config = config or PixPerfectConfig()
        channels = config.channels()
        self.stem = nn.Conv2d(4, channels[0], 3, padding=1)
        self.encoder = nn.ModuleList(EncoderStage(a, b) for a, b in pairwise(channels))
        self.bottleneck = nn.Sequential(
            *(FFCResidualBlock(channels[-1], config.global_ratio) for _ in range(config.ffc_blocks))
        )
        self.global_code = nn.Sequential(
            EqualLinear(channels[-1], config.style_dim),
            nn.LeakyReLU(0.2),
            EqualLinear(config.style_dim, config.style_dim),
        )
        ups = list(reversed(channels))
        self.decoder = nn.ModuleList(
            CascadedModulationBlock(a, b, b, config.style_dim) for a, b in pairwise(ups)
        )
        # Choice: small initial RGB weights, so an untrained refiner changes its input only slightly.
        self.to_rgb = ModulatedConv2d(channels[0], 3, 1, config.style_dim, demodulate=False, weight_gain=0.1)

    @property
    def multiple(self) -> int:
        return 2**self.config.num_downsamples

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        x_in = torch.cat([image * 2.0 - 1.0, mask], dim=1)
        if pad_h or pad_w:
            x_in = F.pad(x_in, (0, pad_w, 0, pad_h), mode="replicate")
        features = [_act(self.stem(x_in))]
        for stage in self.encoder:
            features.append(stage(features[-1]))
        bottom = self.bottleneck(features[-1])
        code = self.global_code(
            bottom.mean(dim=(2, 3))
        )  # App. C: global average pooling, not a flattening FC
        x = z = bottom
        for block, skip in zip(self.decoder, reversed(features[:-1])):
            x, z = block(x, z, skip, code)
        delta = self.to_rgb(z, code)[..., :height, :width] * 0.5  # [-1, 1] units -> [0, 1] units
        return (image + delta).clamp(0.0, 1.0)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["FFC", "CascadedModulationBlock", "FFCResidualBlock", "ModulatedConv2d", "PixPerfectConfig",
           "PixPerfectGenerator", "count_parameters"]

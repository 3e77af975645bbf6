"""OSOR's occupancy-guided multi-scale discriminator (Sec. 3.3, App. B.6, Fig. 10–11).

A frozen CLIP ConvNeXt trunk φ gives four feature maps f_k (strides 4, 8, 16, 32); four trainable heads h_k
map them to patch logits at strides 8, 16, 32, 64. D_k(x) = σ(h_k(f_k)); the losses (``losses.py``) work on
the logits.

The trunk. The paper uses OpenCLIP's ``convnext_xxlarge`` vision tower (``laion2b_s34b_b82k_augreg_soup``).
open_clip builds that tower with timm, and both open_clip and timm import torchvision, which has no build for
our torch here, so neither can be imported. The ConvNeXt architecture itself is in transformers
(``ConvNextModel``, the same blocks: 7×7 depthwise conv, LayerNorm, MLP ×4, layer scale), so we load the
open_clip checkpoint into it with a key converter (:func:`convert_openclip_convnext`). The converter reads the
architecture (depths, widths) off the tensor shapes, so any open_clip/timm ConvNeXt checkpoint works, and the
tiny trunk in the tests goes through the same path.

The heads: SN-Conv3×3 (C_k→512) → LeakyReLU(0.2) → BlurPool(5 taps, reflect, stride 2) → SN-Conv1×1 (512→1),
as the authors' ``src/models/discriminator.py``.

Patch targets w̃_k (Fig. 4, Table 3): ``occupancy`` (torch area pooling, the authors'), ``exact_occupancy``
(erasekit's exact fractional coverage), ``hard`` (nearest) and ``soft`` (Gaussian). The grid constructions
are in :mod:`erasekit.masks`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from kornia.enhance import Normalize
from kornia.filters.kernels import get_pascal_kernel_2d
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from .... import masks as M
from ....types import InvalidInputError, MissingWeightsError

if TYPE_CHECKING:
    from transformers import ConvNextModel

TargetMode = Literal["occupancy", "exact_occupancy", "hard", "soft"]
TARGET_MODES: tuple[str, ...] = ("occupancy", "exact_occupancy", "hard", "soft")

# The paper's trunk: OpenCLIP convnext_xxlarge (arXiv:2606.28094 App. B.6, stages of 384–3072 channels)
# with the laion2b_s34b_b82k_augreg_soup weights the authors' public code (Zhouqm-Git/osor) uses; on the Hub
# as below.
DEFAULT_TRUNK = "laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup"
# File names open_clip uses for its weights on the Hub (newer uploads are safetensors).
OPENCLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# timm builds convnext_xxlarge with LayerNorm eps 1e-5 (every other ConvNeXt uses 1e-6). The eps is not stored
# in the checkpoint, so it is part of the trunk's description.
XXLARGE_NORM_EPS = 1e-5
OPENCLIP_TRUNK_PREFIX = "visual.trunk."


# ------------------------------------------------------------------------------------------------------------
# open_clip / timm ConvNeXt -> transformers ConvNextModel
# ------------------------------------------------------------------------------------------------------------
_BLOCK_KEYS = {  # timm block parameter -> transformers ConvNextLayer parameter
    "conv_dw.weight": "dwconv.weight",
    "conv_dw.bias": "dwconv.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
    "mlp.fc1.weight": "pwconv1.weight",
    "mlp.fc1.bias": "pwconv1.bias",
    "mlp.fc2.weight": "pwconv2.weight",
    "mlp.fc2.bias": "pwconv2.bias",
    "gamma": "layer_scale_parameter",
}
_FIXED_KEYS = {
    "stem.0.weight": "embeddings.patch_embeddings.weight",
    "stem.0.bias": "embeddings.patch_embeddings.bias",
    "stem.1.weight": "embeddings.layernorm.weight",
    "stem.1.bias": "embeddings.layernorm.bias",
    "head.norm.weight": "layernorm.weight",
    "head.norm.bias": "layernorm.bias",
}
_BLOCK_RE = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.(.+)$")
_DOWN_RE = re.compile(r"^stages\.(\d+)\.downsample\.([01])\.(weight|bias)$")


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    trunk = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not trunk and "stem.0.weight" in state:  # a bare timm ConvNeXt state dict
        trunk = dict(state)
    if "stem.0.weight" not in trunk:
        raise InvalidInputError(f"not an open_clip/timm ConvNeXt checkpoint: no '{prefix}stem.0.weight' key")
    return trunk


def convert_openclip_convnext(
    state: dict[str, torch.Tensor], *, prefix: str = OPENCLIP_TRUNK_PREFIX, norm_eps: float = 1e-6
):
    """An open_clip ConvNeXt tower state dict -> (ConvNextConfig, transformers ``ConvNextModel`` state dict).

    The tower's keys are timm key names under ``visual.trunk.``. Text tower and projection keys are ignored.
    """
    from transformers import ConvNextConfig

    trunk = _strip_prefix(state, prefix)
    depths: dict[int, int] = {}
    widths: dict[int, int] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in trunk.items():
        if key in _FIXED_KEYS:
            out[_FIXED_KEYS[key]] = value
        elif match := _BLOCK_RE.match(key):
            stage, block, rest = int(match[1]), int(match[2]), match[3]
            if rest not in _BLOCK_KEYS:
                raise InvalidInputError(
                    f"unsupported ConvNeXt block parameter {key!r} (only the timm "
                    "linear-MLP block layout, as in open_clip's towers, is supported)"
                )
            depths[stage] = max(depths.get(stage, 0), block + 1)
            if rest == "conv_dw.weight":
                widths[stage] = int(value.shape[0])
            out[f"encoder.stages.{stage}.layers.{block}.{_BLOCK_KEYS[rest]}"] = value
        elif match := _DOWN_RE.match(key):
            out[f"encoder.stages.{match[1]}.downsampling_layer.{match[2]}.{match[3]}"] = value
        # anything else (head.fc, norm_pre, text tower) is not part of the feature trunk
    stages = sorted(depths)
    if stages != list(range(len(stages))) or not stages:
        raise InvalidInputError(f"ConvNeXt checkpoint has an unexpected stage layout: stages {stages}")
    patch = int(trunk["stem.0.weight"].shape[-1])
    config = ConvNextConfig(
        num_channels=int(trunk["stem.0.weight"].shape[1]),
        patch_size=patch,
        num_stages=len(stages),
        hidden_sizes=[widths[s] for s in stages],
        depths=[depths[s] for s in stages],
        hidden_act="gelu",
        layer_scale_init_value=1e-6 if any("layer_scale" in k for k in out) else 0.0,
        drop_path_rate=0.0,
        layer_norm_eps=norm_eps,
    )
    return config, out


def _set_layernorm_eps(model: nn.Module, eps: float) -> None:
    # transformers hard-codes eps=1e-6 in ConvNeXt's LayerNorms; convnext_xxlarge was trained with 1e-5.
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = eps


def convnext_from_openclip_state(
    state: dict[str, torch.Tensor], *, norm_eps: float = 1e-6, prefix: str = OPENCLIP_TRUNK_PREFIX
) -> ConvNextModel:
    """Build a transformers ``ConvNextModel`` holding an open_clip ConvNeXt tower's weights.

    Strict: every trunk weight must be present.
    """
    from transformers import ConvNextModel

    config, converted = convert_openclip_convnext(state, prefix=prefix, norm_eps=norm_eps)
    model = ConvNextModel(config)
    _set_layernorm_eps(model, norm_eps)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    missing = [k for k in missing if not k.startswith("layernorm.")]  # the pooled-output norm is unused here
    if missing or unexpected:
        raise InvalidInputError(
            f"ConvNeXt checkpoint does not match its inferred architecture: missing {missing[:3]}"
            f", unexpected {unexpected[:3]}"
        )
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def resolve_trunk_file(source: str | os.PathLike, *, allow_download: bool = False) -> Path:
    """A local open_clip weights file for ``source``: a file, a folder holding one, or a Hub id.

    A Hub id is looked up in the local cache only, unless ``allow_download``.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in OPENCLIP_WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise MissingWeightsError(f"no open_clip weights ({' or '.join(OPENCLIP_WEIGHT_FILES)}) in {path}")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    for name in OPENCLIP_WEIGHT_FILES:
        try:
            return Path(hf_hub_download(str(source), name, local_files_only=not allow_download))
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
            continue
    raise MissingWeightsError(
        f"discriminator trunk {source!r} is not on this machine; fetch it with "
        f"`hf download {source} {OPENCLIP_WEIGHT_FILES[0]}` or pass a local file"
    )


class ConvNextTrunk(nn.Module):
    """Frozen CLIP ConvNeXt φ: images in [-1, 1] -> the four stage outputs f_1..f_4 (App. B.6).

    Inputs are normalised with OpenAI CLIP's mean/std, which open_clip's ConvNeXt towers were trained with
    (App. B.6: "mapped to the CLIP image space")."""

    def __init__(
        self,
        convnext: ConvNextModel,
        *,
        mean: Sequence[float] = OPENAI_CLIP_MEAN,
        std: Sequence[float] = OPENAI_CLIP_STD,
    ):
        super().__init__()
        self.convnext = convnext
        self.normalize = Normalize(torch.tensor(mean), torch.tensor(std))
        self.requires_grad_(False)
        self.eval()

    @property
    def channels(self) -> list[int]:
        widths = self.convnext.config.hidden_sizes
        assert widths is not None, "ConvNextModel builds its stages from hidden_sizes"
        return list(widths)

    def train(
        self, mode: bool = True
    ) -> ConvNextTrunk:  # frozen: stays in eval mode whatever the parent does
        return super().train(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        stride = self.convnext.config.patch_size * 2 ** (len(self.convnext.encoder.stages) - 1)
        if min(images.shape[-2:]) < stride:
            raise InvalidInputError(
                f"the discriminator trunk needs images of at least {stride}×{stride} pixels, "
                f"got {images.shape[-1]}×{images.shape[-2]}"
            )
        x = self.normalize((images + 1.0) * 0.5)
        h = self.convnext.embeddings(x)
        features = []
        for stage in self.convnext.encoder.stages:  # stage outputs at strides 4, 8, 16, 32
            h = stage(h)
            features.append(h)
        return features

    @classmethod
    def from_openclip(
        cls,
        source: str | os.PathLike = DEFAULT_TRUNK,
        *,
        norm_eps: float = XXLARGE_NORM_EPS,
        allow_download: bool = False,
    ) -> ConvNextTrunk:
        state = _read_state_dict(resolve_trunk_file(source, allow_download=allow_download))
        return cls(convnext_from_openclip_state(state, norm_eps=norm_eps))


# ------------------------------------------------------------------------------------------------------------
# Heads
# ------------------------------------------------------------------------------------------------------------
BlurKind = Literal["authors", "erasekit"]
BLUR_KINDS: tuple[str, ...] = ("authors", "erasekit")


class BlurPool2d(nn.Module):
    """Anti-aliased downsampling (Zhang 2019): a fixed binomial low-pass, then stride.

    ``kind="authors"`` (default) is the BlurPool the authors import from ``vision_aided_loss``
    (``filt_size=5, pad_type="reflect"``): the 5-tap kernel [1,4,6,4,1]²/256, reflect padding of 2 on every
    side, output ceil(H/2) × ceil(W/2). Reflect padding needs each side > 2; the smaller maps only toy-sized
    images reach (a 64-px image's last stage is 2×2) are padded by replication instead, so a constant map
    stays constant. ``kind="erasekit"`` is erasekit's former head: 4 taps [1,3,3,1]²/64 with replicate padding
    (1, 2).
    The kernels are kornia's normalised Pascal kernels; the padding and the strided depthwise conv are written
    here because kornia's ``BlurPool2D`` zero-pads, which darkens the map's border.
    """

    kernel: torch.Tensor  # a non-persistent buffer, registered in __init__

    def __init__(self, channels: int, *, kind: BlurKind = "authors", stride: int = 2):
        super().__init__()
        if kind not in BLUR_KINDS:
            raise InvalidInputError(f"unknown BlurPool kind {kind!r}; choose from {', '.join(BLUR_KINDS)}")
        taps = 5 if kind == "authors" else 4
        kernel = get_pascal_kernel_2d(taps, norm=True)
        self.register_buffer("kernel", kernel.expand(channels, 1, taps, taps).contiguous(), persistent=False)
        self.kind, self.stride, self.channels = kind, stride, channels
        self.pad = ((taps - 1) // 2, taps // 2) * 2  # left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reflect = self.kind == "authors" and min(x.shape[-2:]) > max(self.pad)
        x = F.pad(x, self.pad, mode="reflect" if reflect else "replicate")
        return F.conv2d(x, self.kernel.to(x.dtype), stride=self.stride, groups=self.channels)


class PatchHead(nn.Module):
    """h_k: SN-Conv3×3 (C_k→hidden) → LeakyReLU 0.2 → BlurPool stride 2 → SN-Conv1×1 (hidden→1) (Fig. 11).

    Returns B×H_k/2×W_k/2 logits (the channel dimension removed)."""

    def __init__(self, in_channels: int, hidden: int = 512, *, blur: BlurKind = "authors"):
        super().__init__()
        self.conv = spectral_norm(nn.Conv2d(in_channels, hidden, 3, padding=1))
        self.act = nn.LeakyReLU(0.2)
        self.blur = BlurPool2d(hidden, kind=blur)
        self.out = spectral_norm(nn.Conv2d(hidden, 1, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.blur(self.act(self.conv(features))))[:, 0]


class OccupancyDiscriminator(nn.Module):
    """Frozen trunk + one trainable :class:`PatchHead` per trunk stage."""

    def __init__(self, trunk: ConvNextTrunk, *, hidden: int = 512, blur: BlurKind = "authors"):
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleList(PatchHead(c, hidden, blur=blur) for c in trunk.channels)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.trunk(images)

    def head_logits(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [head(f) for head, f in zip(self.heads, features)]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Patch logits at four scales (strides 8, 16, 32, 64)."""
        return self.head_logits(self.features(images))


# ------------------------------------------------------------------------------------------------------------
# Patch targets w̃_k
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatchTargets:
    """How a pixel mask becomes per-scale targets (Fig. 4).

    ``occupancy`` (OG, default): the authors' ``F.interpolate(mask, mode="area")``, torch's adaptive average
    pooling; ``exact_occupancy``: erasekit's exact fractional coverage of each cell (the two agree when the
    grid divides the image and differ slightly at cell edges when it does not); ``hard`` (HM, nearest);
    ``soft`` (SM, Gaussian with ``sigma`` in grid cells).
    """

    mode: TargetMode = "occupancy"
    sigma: float = 1.0

    def __post_init__(self):
        if self.mode not in TARGET_MODES:
            raise InvalidInputError(
                f"unknown patch-target mode {self.mode!r}; choose from {', '.join(TARGET_MODES)}"
            )

    def grid(self, mask: np.ndarray, grid_hw: tuple[int, int]) -> np.ndarray:
        if self.mode == "occupancy":
            t = torch.from_numpy(np.ascontiguousarray(mask, np.float32))[None, None]
            return F.interpolate(t, size=grid_hw, mode="area")[0, 0].numpy()
        if self.mode == "exact_occupancy":
            return M.occupancy_grid(mask, grid_hw)
        if self.mode == "hard":
            return M.nearest_grid(mask, grid_hw)
        return M.gaussian_grid(mask, grid_hw, sigma=self.sigma)

    def __call__(self, mask: torch.Tensor, grid_sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """N×1×H×W (or N×H×W) mask in [0, 1] -> one N×h_k×w_k target per grid size."""
        if self.mode == "occupancy":  # batched on the mask's device, as the authors compute it
            m = mask.detach().float()
            m = m if m.ndim == 4 else m[:, None]
            return [F.interpolate(m, size=(h, w), mode="area")[:, 0] for h, w in grid_sizes]
        arr = mask.detach().float().cpu().numpy()
        arr = arr[:, 0] if arr.ndim == 4 else arr
        return [
            torch.from_numpy(np.stack([self.grid(sample, (h, w)) for sample in arr])).to(
                device=mask.device, dtype=torch.float32
            )
            for h, w in grid_sizes
        ]


__all__ = ["BLUR_KINDS", "DEFAULT_TRUNK", "TARGET_MODES", "XXLARGE_NORM_EPS", "BlurPool2d", "ConvNextTrunk",
           "OccupancyDiscriminator", "PatchHead", "PatchTargets", "convert_openclip_convnext",
           "convnext_from_openclip_state", "resolve_trunk_file"]

"""Loading the metric feature networks from local files, and the preprocessing each metric prescribes.

Every loader takes an optional explicit path and otherwise resolves through :mod:`erasekit.eval.weights`; a
missing file raises :class:`~erasekit.types.MissingWeightsError`, which the benchmark reports as "unavailable:
<reason>". Hugging Face models are read with ``local_files_only=True``. Preprocessing follows each metric's
reference code; CLIP images go through transformers' PIL-backend ``CLIPImageProcessorPil`` (the default
backend needs torchvision, and would resample differently).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..types import MissingWeightsError
from . import weights as W
from .networks import FIDInceptionV3, LPIPSAlex

PathLike = str | os.PathLike | None


def _torch_load(path) -> dict:
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise MissingWeightsError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


@dataclass
class Loaded:
    """A loaded network with the weight records that produced it (for reports and cache keys)."""

    model: Any
    weights: list[W.ResolvedWeight]
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        return "+".join(w.fingerprint for w in self.weights)


def load_lpips(trunk: PathLike = None, heads: PathLike = None, *, device: str = "cpu") -> Loaded:
    """LPIPS v0.1 (AlexNet). ``trunk``: torchvision's alexnet-owt file; ``heads``: lpips' v0.1 alex.pth."""
    rt, rh = W.resolve("alexnet", trunk), W.resolve("lpips-alex-v0.1", heads)
    try:
        net = LPIPSAlex().load_weights(_torch_load(rt.path), _torch_load(rh.path))
    except (KeyError, RuntimeError) as exc:
        raise MissingWeightsError(f"LPIPS weights do not fit the AlexNet/v0.1 layout: {exc}") from None
    return Loaded(net.to(device), [rt, rh], {"net": "alex", "version": "0.1", "input": "RGB in [-1, 1]"})


def load_fid_inception(path: PathLike = None, *, device: str = "cpu") -> Loaded:
    r = W.resolve("inception-fid", path)
    try:
        net = FIDInceptionV3().load_weights(_torch_load(r.path))
    except (KeyError, RuntimeError) as exc:
        raise MissingWeightsError(f"{r.path}: {exc}") from None
    return Loaded(net.to(device), [r], fid_settings())


def fid_settings() -> dict[str, Any]:
    """What every report states about the FID features."""
    return {"network": "TF Inception-v3 2015-12-05 (pt_inception layout), pool3 2048-d",
            "resize": "TF1.x-compatible bilinear to 299x299 (align_corners=False, no half-pixel offset)",
            "antialias": False, "input": "uint8 RGB, scaled (x-128)/128 after resizing"}


def _hf_folder(key: str, path: PathLike) -> W.ResolvedWeight:
    return W.resolve(key, path)


def load_clip(key: str, path: PathLike = None, *, device: str = "cpu", with_text: bool = False) -> Loaded:
    """A CLIP model from a local Hugging Face folder.

    The vision tower with projection, or the full model (+tokenizer).
    """

    r = _hf_folder(key, path)
    try:
        import transformers

        model: transformers.CLIPModel | transformers.CLIPVisionModelWithProjection
        if with_text:
            model = transformers.CLIPModel.from_pretrained(r.path, local_files_only=True)
            tokenizer = transformers.CLIPTokenizer.from_pretrained(r.path, local_files_only=True)
        else:
            model = transformers.CLIPVisionModelWithProjection.from_pretrained(r.path, local_files_only=True)
            tokenizer = None
    except (OSError, ValueError) as exc:
        raise MissingWeightsError(
            f"{r.path} is not a usable CLIP folder: {str(exc).splitlines()[0]}"
        ) from None
    model = model.eval().requires_grad_(False).to(device)
    vision = model.config.vision_config if with_text else model.config
    assert isinstance(vision, transformers.CLIPVisionConfig)  # CLIPConfig builds its vision sub-config
    return Loaded(model, [r], {"model": key, "image_size": vision.image_size}, {"tokenizer": tokenizer})


def load_dinov2(path: PathLike = None, *, device: str = "cpu") -> Loaded:
    r = _hf_folder("dinov2-giant", path)
    try:
        from transformers import Dinov2Model

        model = Dinov2Model.from_pretrained(r.path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise MissingWeightsError(
            f"{r.path} is not a usable DINOv2 folder: {str(exc).splitlines()[0]}"
        ) from None
    return Loaded(model.eval().requires_grad_(False).to(device), [r], {"model": "dinov2"})


def load_sam(path: PathLike = None, *, device: str = "cpu") -> Loaded:
    r = _hf_folder("sam-vit-huge", path)
    try:
        from transformers import SamModel
        from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

        model = SamModel.from_pretrained(r.path, local_files_only=True)
        processor = (
            SamImageProcessorPil.from_pretrained(r.path, local_files_only=True)
            if (r.path / "preprocessor_config.json").is_file()
            else SamImageProcessorPil()
        )
    except (OSError, ValueError) as exc:
        raise MissingWeightsError(
            f"{r.path} is not a usable SAM folder: {str(exc).splitlines()[0]}"
        ) from None
    return Loaded(
        model.eval().requires_grad_(False).to(device), [r], {"model": "sam"}, {"processor": processor}
    )


# ------------------------------------------------------------------------------------------------------------
# Preprocessing
# ------------------------------------------------------------------------------------------------------------
def to_uint8_tensor(
    images: np.ndarray | list[np.ndarray], device: str | torch.device = "cpu"
) -> torch.Tensor:
    """uint8 H×W×3 (or a list of same-size images) -> uint8 N×3×H×W."""
    batch = np.stack(images) if isinstance(images, list) else (images[None] if images.ndim == 3 else images)
    batch = np.ascontiguousarray(batch)
    if not batch.flags.writeable:  # arrays from PIL are read-only; torch wants to own writable memory
        batch = batch.copy()
    return torch.from_numpy(batch).permute(0, 3, 1, 2).to(device)


@functools.cache
def clip_image_processor(size: int):
    """OpenAI CLIP's preprocessing at ``size`` px, as transformers implements it without torchvision
    (``CLIPImageProcessorPil``): PIL bicubic resize of the short side to ``size``, the long side truncated to
    an integer as torchvision's ``Resize`` in OpenAI's code does, centre crop size×size, [0, 1], CLIP
    mean/std."""
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def clip_cmmd_pixels(images: list[np.ndarray], size: int, device="cpu") -> torch.Tensor:
    """CMMD's preprocessing, as its reference code (Jayasumana et al. 2024, ``embedding.py``) does it: the
    whole image in [0, 1] resized to size×size by torch's bicubic interpolation (no crop, no antialias), then
    the CLIP image processor with resizing, cropping and rescaling off: only its mean/std normalisation."""
    resized = []
    for img in images:
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=False)
        resized.append(x[0].permute(1, 2, 0).numpy())
    processed = clip_image_processor(size)(
        images=resized,
        do_resize=False,
        do_center_crop=False,
        do_rescale=False,
        input_data_format="channels_last",
        return_tensors="pt",
    )
    return processed["pixel_values"].to(device)


def clip_eval_pixels(crops: list[np.ndarray], size: int, device="cpu") -> torch.Tensor:
    """OpenAI CLIP's own preprocessing (as used by Inst-Inpaint) of uint8 H×W×3 crops, through
    :func:`clip_image_processor`. The channel axis is given explicitly: a crop 1 or 3 pixels high would
    otherwise be read as channels-first."""
    processed = clip_image_processor(size)(
        images=list(crops), input_data_format="channels_last", return_tensors="pt"
    )
    return processed["pixel_values"].to(device)

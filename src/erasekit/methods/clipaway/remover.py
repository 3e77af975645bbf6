"""The ``clipaway`` remover: SD1.5-Inpainting with IP-Adapter, conditioned on CLIPAway's background embedding
(arXiv:2406.09368, Sec. 3.2 and App. A.2).

diffusers runs the sampling unchanged: ``StableDiffusionInpaintPipeline`` with IP-Adapter SD1.5 loaded by
``load_ip_adapter(..., image_encoder_folder=None)`` (CLIPAway brings its own image embedding, so IP-Adapter's
ViT-H encoder is never loaded) and called with ``ip_adapter_image_embeds`` from :class:`.ClipAwayEmbedder`.

Defaults are the authors': prompt ``""``, their negative prompt, guidance 7.5, 50 steps, the checkpoint's own
scheduler, strength 1, IP-Adapter scale 1, the mask dilated by a 5×5 square 5 times (both the inpainted region
and the foreground alpha, as their ``dilate.py`` does to the masks before inference), seed 42 when a request
gives none, noise from a CPU generator. They sample at 512×512; other sizes go through the HD strategy within
SD1.5's working range.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any, ClassVar

import numpy as np

from ... import masks as M
from ...hd import SizeConstraints
from ...options import Option, OptionSet, Range
from ...types import InvalidInputError, RemovalRequest
from ..baselines import DiffusersInpaintRemover, sampling_options
from .weights import ClipAwayFiles, resolve_files

AUTHORS_NEGATIVE_PROMPT = "monochrome, lowres, bad anatomy, worst quality, low quality"
AUTHORS_SEED = 42


class ClipAwayRemover(DiffusersInpaintRemover):
    """CLIPAway on an SD1.5 inpainting checkpoint (``--model``: any SD1.5-inpainting base).

    Load options: the backbone's (``model``, ``device``, ``dtype``, placement, ``pipeline``) plus where the
    CLIPAway files are: a ``weights`` folder in the authors' ``ckpts/`` layout, or each file by path
    (``alpha_clip``, ``mlp``, ``ip_adapter``); see :mod:`.weights`."""

    name: ClassVar[str] = "clipaway"
    preset_name: ClassVar[str] = "sd15-inpaint"
    constraints: ClassVar[SizeConstraints] = SizeConstraints(size_multiple=8, min_side=64, max_side=768)
    default_prompt: ClassVar[str] = ""
    call_options: OptionSet = sampling_options(steps=50, guidance=7.5, strength=1.0).replace(
        negative_prompt={"default": AUTHORS_NEGATIVE_PROMPT}) | OptionSet(
        Option("ip_scale", float, default=1.0, range=Range(0, 10),
               help="IP-Adapter scale: weight of the background embedding against the text prompt"),
        Option("mask_dilation", int, default=5, range=Range(0, 100),
               help="iterations of the authors' 5×5 mask dilation (0: the mask as given)"),
    )

    def __init__(self, model: str | os.PathLike | None = None, weights: str | os.PathLike | None = None,
                 alpha_clip: str | os.PathLike | None = None, mlp: str | os.PathLike | None = None,
                 ip_adapter: str | os.PathLike | None = None, device: str | None = None,
                 dtype: str | None = None, allow_download: bool = False, offload: str = "none",
                 attention_slicing: bool | str | int = False, vae_tiling: bool = False, pipeline: Any = None,
                 progress_bar: bool = True):
        # The CLIPAway files first: a missing one fails before gigabytes of backbone load.
        self.files: ClipAwayFiles = resolve_files(weights, alpha_clip=alpha_clip, mlp=mlp,
                                                  ip_adapter=ip_adapter, allow_download=allow_download)
        super().__init__(model=model, device=device, dtype=dtype, allow_download=allow_download,
                         offload=offload, attention_slicing=attention_slicing, vae_tiling=vae_tiling,
                         pipeline=pipeline, progress_bar=progress_bar)
        # Re-entrant: the IP scale is set and the pipeline run under one hold of the per-call lock.
        self.lock = threading.RLock()  # type: ignore[assignment]
        self.pipe.load_ip_adapter(str(self.files.ip_adapter.parent), subfolder="",
                                  weight_name=self.files.ip_adapter.name, image_encoder_folder=None)
        self.embedder = self._load_embedder()

    def _load_embedder(self):
        from .alpha_clip import load_alpha_clip
        from .embedding import ClipAwayEmbedder
        from .mlp import load_mlp

        device = self.pipe._execution_device  # where the UNet runs, also with CPU offload
        # The remover dilates the mask itself (prepare_mask), so the embedder takes it as given.
        return ClipAwayEmbedder(load_alpha_clip(self.files.alpha_clip, device=device),
                                load_mlp(self.files.mlp, device=device), dilation_iterations=0)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "ip_scale": self.call_options["ip_scale"].default,
                "alpha_clip": str(self.files.alpha_clip), "mlp": str(self.files.mlp),
                "ip_adapter": str(self.files.ip_adapter)}

    # ---- per call ------------------------------------------------------------------------------------------
    def prepare_mask(self, request: RemovalRequest) -> np.ndarray | None:
        """The authors' dilation (5×5 square, ``mask_dilation`` iterations) after the request's own: it widens
        the inpainted region, the foreground alpha and the paste-back region alike, as in their pipeline."""
        from .embedding import foreground_alpha

        mask = super().prepare_mask(request)
        if mask is None:
            raise InvalidInputError("clipaway needs a mask")
        return foreground_alpha(mask, request.options["mask_dilation"])

    def pipeline_kwargs(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest) -> dict[str, Any]:
        """The exact diffusers arguments: the baseline's plus the IP-Adapter embeddings of this image."""
        if request.seed is None:
            request = dataclasses.replace(request, seed=AUTHORS_SEED)
        kwargs = super().pipeline_kwargs(image, mask, request)
        embeds = self.embedder.ip_adapter_image_embeds([image], [M.binarize(mask, 0.5)])
        kwargs["ip_adapter_image_embeds"] = [e.to(dtype=self.pipe.unet.dtype) for e in embeds]
        return kwargs

    def inpaint(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest):
        kwargs = self.pipeline_kwargs(image, mask, request)
        progress = request.options["progress"] if request.options["progress"] is not None else self.progress
        with self.lock:
            self.pipe.set_ip_adapter_scale(request.options["ip_scale"])
            out = self.run_pipeline(progress=progress, **kwargs).images[0]
        # diffusers' own uint8 conversion (PIL output) so the pixels equal a direct pipeline call.
        return np.asarray(out.convert("RGB"), dtype=np.uint8), None


def _located(kind: str) -> str | None:
    from .weights import locate

    found = locate(kind)
    return None if found is None else str(found)


def register() -> None:
    """Register ``clipaway`` (called once by :mod:`erasekit.methods`)."""
    import functools

    from ...registry import MethodSpec, WeightRequirement, register_method
    from ..baselines import backbone_requirement
    from .weights import LAYOUT

    def requirement(kind: str, description: str, hub_id: str | None, hint: str) -> WeightRequirement:
        return WeightRequirement(name=f"clipaway-{kind.replace('_', '-')}", description=description,
                                 locate=functools.partial(_located, kind),
                                 hub_id=hub_id, fetch_hint=hint)

    drive = "the authors' Google Drive (see docs/clipaway.md)"
    register_method(MethodSpec(
        name=ClipAwayRemover.name, factory=ClipAwayRemover, auto_priority=15, family="diffusion",
        description="CLIPAway: AlphaCLIP background embedding (Eq. 2) through IP-Adapter on SD1.5-Inpainting",
        paper="Ekin et al., CLIPAway, NeurIPS 2024 (arXiv:2406.09368)",
        weights=(
            backbone_requirement(ClipAwayRemover.preset_name),
            requirement("alpha_clip", f"AlphaCLIP ViT-L/14 ({LAYOUT['alpha_clip']})", None,
                        f"$ERASEKIT_MODELS_DIR/clipaway/{LAYOUT['alpha_clip']} from {drive}"),
            requirement("mlp", f"CLIPAway MLP ({LAYOUT['mlp']})", None,
                        f"$ERASEKIT_MODELS_DIR/clipaway/{LAYOUT['mlp']} from {drive}"),
            requirement("ip_adapter", f"IP-Adapter SD1.5 ({LAYOUT['ip_adapter']})", "h94/IP-Adapter",
                        "hf download h94/IP-Adapter models/ip-adapter_sd15.bin"),
        ),
    ))


__all__ = ["AUTHORS_NEGATIVE_PROMPT", "AUTHORS_SEED", "ClipAwayRemover", "register"]

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

import contextlib
import contextvars
import dataclasses
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from ... import masks as M
from ...hd import SizeConstraints
from ...options import Option, OptionSet, Range
from ...types import InvalidInputError, RemovalRequest, RemovalResult
from ..baselines import DiffusersInpaintRemover, sampling_options
from .weights import ClipAwayFiles, resolve_files

AUTHORS_NEGATIVE_PROMPT = "monochrome, lowres, bad anatomy, worst quality, low quality"
AUTHORS_SEED = 42


@dataclasses.dataclass
class _InpaintCall:
    """One ``inpaint`` call as :meth:`ClipAwayRemover.remove_many` records it."""

    image: np.ndarray
    mask: np.ndarray
    request: RemovalRequest


# What ``inpaint`` does in this context (thread): None runs the pipeline; a list records the call (first pass
# of remove_many); a deque hands out the batched outputs in call order (second pass).
_BATCHING: contextvars.ContextVar[list[_InpaintCall] | deque[np.ndarray] | None] = contextvars.ContextVar(
    "clipaway_batching", default=None)
# Per-call options that do not change the pipeline call and so do not split a batch.
_NOT_BATCH_SETTINGS = frozenset({"progress"})


class ClipAwayRemover(DiffusersInpaintRemover):
    """CLIPAway on an SD1.5 inpainting checkpoint (``--model``: any SD1.5-inpainting base).

    Load options: the backbone's (``model``, ``device``, ``dtype``, placement, ``pipeline``) plus where the
    CLIPAway files are: a ``weights`` folder in the authors' ``ckpts/`` layout, or each file by path
    (``alpha_clip``, ``mlp``, ``ip_adapter``); see :mod:`.weights`."""

    name: ClassVar[str] = "clipaway"
    preset_name: ClassVar[str] = "sd15-inpaint"
    constraints: ClassVar[SizeConstraints] = SizeConstraints(size_multiple=8, min_side=64, max_side=768)
    default_prompt: ClassVar[str] = ""
    defer_fast_paths: ClassVar[bool] = True  # applied once the IP-Adapter is loaded (see __init__)
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
                 attention_slicing: bool | str | int = False, vae_tiling: bool | str = False,
                 pipeline: Any = None, progress_bar: bool = True, compile: bool | str = False,
                 channels_last: bool = False, fuse_qkv: bool = False):
        if fuse_qkv:  # diffusers' fusion swaps in FusedAttnProcessor2_0 everywhere, dropping the IP-Adapter's
            raise InvalidInputError("clipaway does not support fuse_qkv: fusing would replace the IP-Adapter "
                                    "attention processors that carry its embedding")
        # The CLIPAway files first: a missing one fails before gigabytes of backbone load.
        self.files: ClipAwayFiles = resolve_files(weights, alpha_clip=alpha_clip, mlp=mlp,
                                                  ip_adapter=ip_adapter, allow_download=allow_download)
        super().__init__(model=model, device=device, dtype=dtype, allow_download=allow_download,
                         offload=offload, attention_slicing=attention_slicing, vae_tiling=vae_tiling,
                         pipeline=pipeline, progress_bar=progress_bar, compile=compile,
                         channels_last=channels_last)
        # Re-entrant: the IP scale is set and the pipeline run under one hold of the per-call lock.
        self.lock = threading.RLock()  # type: ignore[assignment]
        self.pipe.load_ip_adapter(str(self.files.ip_adapter.parent), subfolder="",
                                  weight_name=self.files.ip_adapter.name, image_encoder_folder=None)
        self.embedder = self._load_embedder()
        self.apply_fast_paths()  # after the IP-Adapter's processors and projection are in

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
        batching = _BATCHING.get()
        if isinstance(batching, list):  # remove_many's first pass: record, the output is discarded
            batching.append(_InpaintCall(image, mask, request))
            return image.copy(), None
        if isinstance(batching, deque):  # its second pass: the batched output of this very call
            out = batching.popleft()
            if out.shape != image.shape:
                raise RuntimeError("remove_many replayed its calls out of order")
            return out, None
        kwargs = self.pipeline_kwargs(image, mask, request)
        progress = request.options["progress"] if request.options["progress"] is not None else self.progress
        with self.lock:
            self.pipe.set_ip_adapter_scale(request.options["ip_scale"])
            out = self.run_pipeline(progress=progress, **kwargs).images[0]
        # diffusers' own uint8 conversion (PIL output) so the pixels equal a direct pipeline call.
        return np.asarray(out.convert("RGB"), dtype=np.uint8), None

    # ---- several images per pipeline call ------------------------------------------------------------------
    def remove_many(self, requests: Sequence[RemovalRequest], *, batch_size: int = 4) -> list[RemovalResult]:
        """``[self(r) for r in requests]``, sampling up to ``batch_size`` images in one diffusers call.

        Calls of one size, prompt and settings (all but the seed) share a pipeline call; everything else —
        HD strategy, dilation, paste-back, refiners, metadata — is :meth:`__call__`'s own, run twice: once to
        record the ``inpaint`` calls, once to hand each its batched output. Each image keeps its own seed
        (CPU generator) and its own IP-Adapter rows, so each result equals its one-by-one result (tested).
        """
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
        calls: list[_InpaintCall] = []
        with self.lock:
            token = _BATCHING.set(calls)
            try:
                for request in requests:  # the refiners run in the second pass only
                    self(dataclasses.replace(request, refine=None))
            finally:
                _BATCHING.reset(token)
            outputs = deque(self._run_batched(calls, batch_size))
            token = _BATCHING.set(outputs)
            try:
                return [self(request) for request in requests]
            finally:
                _BATCHING.reset(token)

    def _run_batched(self, calls: list[_InpaintCall], batch_size: int) -> list[np.ndarray]:
        """The output of every recorded call, in order, from as few pipeline calls as the groups allow."""
        groups: dict[Any, list[int]] = {}
        for index, call in enumerate(calls):
            settings = tuple(sorted((k, v) for k, v in call.request.options.items()
                                    if k not in _NOT_BATCH_SETTINGS))
            groups.setdefault((call.image.shape, call.request.prompt, settings), []).append(index)
        outputs: list[np.ndarray | None] = [None] * len(calls)
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                for index, out in zip(chunk, self._pipeline_batch([calls[i] for i in chunk]), strict=True):
                    outputs[index] = out
        return [out for out in outputs if out is not None]

    def _pipeline_batch(self, calls: list[_InpaintCall]) -> list[np.ndarray]:
        """One diffusers call for calls of one size and settings, each image with its own IP-Adapter rows:
        image i's negative row at i and its Eq. 2 row at B + i, matching the latents' [unconditional;
        conditional] halves.

        diffusers (0.42) cannot take per-image rows: its ``prepare_ip_adapter_image_embeds`` repeats the given
        embeddings ``batch_size × num_images_per_prompt`` times, so B images' B rows become B² and the
        attention processor's reshape then hands each latent row the IP tokens of B images (measured: up to
        94 levels off on the tiny model). :func:`_per_image_ip_rows` makes that step return the rows as
        given, for this call only."""
        import torch

        per_call = [self.pipeline_kwargs(c.image, c.mask, c.request) for c in calls]
        kwargs = dict(per_call[0])
        for key in ("prompt", "negative_prompt", "image", "mask_image"):
            if key in kwargs:
                kwargs[key] = [k[key] for k in per_call]
        kwargs["generator"] = [g for k in per_call for g in k["generator"]]
        halves = [k["ip_adapter_image_embeds"][0].chunk(2) for k in per_call]
        kwargs["ip_adapter_image_embeds"] = [torch.cat([h[0] for h in halves] + [h[1] for h in halves])]
        callbacks = [c.request.options["progress"] for c in calls]
        callbacks = [c for c in callbacks if c is not None]
        progress = _fan_out(callbacks) if callbacks else self.progress
        with self.lock, _per_image_ip_rows(self.pipe, kwargs["ip_adapter_image_embeds"]):
            self.pipe.set_ip_adapter_scale(calls[0].request.options["ip_scale"])
            images = self.run_pipeline(progress=progress, **kwargs).images
        return [np.asarray(image.convert("RGB"), dtype=np.uint8) for image in images]


@contextlib.contextmanager
def _per_image_ip_rows(pipe: Any, rows: list[Any]) -> Iterator[None]:
    """Within the block, ``pipe.prepare_ip_adapter_image_embeds`` returns ``rows`` (moved to the device)
    instead of repeating them per prompt; an instance attribute shadows the method and is removed after."""
    expected = rows[0].shape[0] // 2

    def prepare(ip_adapter_image: Any, ip_adapter_image_embeds: Any, device: Any, num_images: int,
                do_classifier_free_guidance: bool) -> list[Any]:
        if not do_classifier_free_guidance or num_images != expected:
            raise RuntimeError(f"per-image IP-Adapter rows need guidance and {expected} images, got "
                               f"{num_images} (guidance {do_classifier_free_guidance})")
        return [r.to(device=device) for r in rows]

    pipe.prepare_ip_adapter_image_embeds = prepare
    try:
        yield
    finally:
        del pipe.prepare_ip_adapter_image_embeds


def _fan_out(callbacks: list[Callable[[int, int], None]]) -> Callable[[int, int], None]:
    def progress(step: int, total: int) -> None:
        for callback in callbacks:
            callback(step, total)

    return progress


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
                                 hub_id=hub_id, fetch_hint=hint, supplied_by=(kind,))

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

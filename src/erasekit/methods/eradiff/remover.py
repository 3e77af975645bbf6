"""The ``eradiff`` remover: SD2-Inpainting sampled by diffusers' own inpainting pipeline with Self-Rectifying
Attention installed on the UNet's self-attention layers for the call (arXiv:2503.07026, Sec. 4.2), optionally
with the Chain-Rectifying-Optimization-trained UNet (Sec. 4.1; :mod:`.train`).

Without EraDiff weights it runs SRA on the stock SD2-Inpaint UNet: the "w/o CRO" row of the paper's
Table 3, reported as such in ``describe()`` (and so in every result's metadata). ``-O rule=none`` installs
nothing and is exactly the ``sd2-inpaint`` baseline.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ...hd import SizeConstraints
from ...options import Option, OptionSet
from ...types import InvalidInputError, RemovalRequest
from ..baselines import DiffusersInpaintRemover, sampling_options
from .rules import GRID_RULES, IMPLS, RULES
from .weights import EraDiffWeights, apply_weights, read_weights

if TYPE_CHECKING:
    from ...diffusion.attention import LayerSelector

_INDEX_RANGE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_layers(text: str) -> LayerSelector:
    """``layers`` option → self-attention selector: ``all``; block prefixes (``up``, ``down,mid``,
    ``up_blocks.1``); or indices among all self-attention layers in forward order (``7-15``, ``0,3,5-6``).
    Attentive Eraser's SD2.1 layers are ``7-15``."""
    from ...diffusion.attention import LayerSelector

    text = text.strip().replace(" ", "")
    if text == "all":
        return LayerSelector(kind="self")
    if _INDEX_RANGE.match(text):
        indices: set[int] = set()
        for part in text.split(","):
            low, _, high = part.partition("-")
            indices.update(range(int(low), int(high or low) + 1))
        return LayerSelector(kind="self", indices=frozenset(indices))
    return LayerSelector(kind="self", blocks=tuple(p for p in text.split(",") if p))


class EraDiffRemover(DiffusersInpaintRemover):
    """EraDiff on SD2-Inpainting. Load options: the diffusion base's plus ``weights`` (an EraDiff weights
    folder, :mod:`.weights`; None: the stock UNet, "w/o CRO")."""

    name: ClassVar[str] = "eradiff"
    preset_name: ClassVar[str] = "sd2-inpaint"
    constraints: ClassVar[SizeConstraints] = SizeConstraints(size_multiple=8, min_side=64, max_side=768)
    # fuse_qkv copies Q/K/V into one matrix: applied once the EraDiff weights are in (see __init__).
    defer_fast_paths: ClassVar[bool] = True
    # Sampling defaults are the SD2-Inpaint baseline's (the paper gives no sampler settings; Table 1 compares
    # against SD2-Inpaint). strength 1 (sampling from pure noise in the mask): Sec. 5.4's 0.6 is described as
    # "an extremely challenging condition" built to leak the object into the start latent, an analysis
    # setting rather than the one the tables report; `-O strength=0.6` reproduces it.
    call_options: OptionSet = sampling_options(steps=50, guidance=7.5, strength=1.0) | OptionSet(
        Option("rule", str, default="sra", choices=RULES,
               help="sra: masked queries may not attend to masked keys (Eq. 10-11); key_mask: every query is "
                    "blocked from masked keys (Attentive Eraser); none: stock attention"),
        Option("layers", str, default="all",
               help="self-attention layers the rule applies to: all; blocks (up, down,mid, up_blocks.1); "
                    "or indices in forward order (7-15)"),
        # Default "any" (max-pooling): a token that holds any object pixel carries object features, and
        # letting masked queries attend to it is the leak SRA closes; "half" treats boundary tokens as
        # background.
        Option("grid", str, default="any", choices=GRID_RULES,
               help="mask to token grid: any masked pixel marks the token (max-pool), or half its area"),
        # The three compute the same attention (tests: within 1e-6, gradients included). "split" is the
        # default: fastest per layer at SD2's shapes in benchmarks/eradiff_speed.py (CPU, docs/eradiff.md),
        # no N×N tensor to build or keep, and flash-eligible on a GPU.
        Option("impl", str, default="split", choices=IMPLS,
               help="how the rule runs: bias (cached additive 0/-inf), bool (boolean SDPA mask) or split "
                    "(mask-free: masked queries over the gathered background keys, flash-eligible)"),
    )

    def __init__(self, model: str | os.PathLike | None = None, weights: str | os.PathLike | None = None,
                 device: str | None = None, dtype: str | None = None, allow_download: bool = False,
                 offload: str = "none", attention_slicing: bool | str | int = False,
                 vae_tiling: bool | str = False, pipeline: Any = None, progress_bar: bool = True,
                 compile: bool | str = False, channels_last: bool = False, fuse_qkv: bool = False):
        """``weights``: an EraDiff weights folder (``eradiff.json`` + ``unet.safetensors``); loaded into the
        pipeline's UNet in place. Other options: :class:`~erasekit.diffusion.remover.DiffusionRemover`'s.

        The fast paths (``compile``, ``channels_last``, ``fuse_qkv``) apply after the weights. With
        ``fuse_qkv`` the layers SRA rectifies run its processor on the unfused ``to_q``/``to_k``/``to_v``
        (same weights, same output); the others keep the fused projection."""
        self.eradiff_weights: EraDiffWeights | None = None if weights is None else read_weights(weights)
        super().__init__(model, device=device, dtype=dtype, allow_download=allow_download, offload=offload,
                         attention_slicing=attention_slicing, vae_tiling=vae_tiling, pipeline=pipeline,
                         progress_bar=progress_bar, compile=compile, channels_last=channels_last,
                         fuse_qkv=fuse_qkv)
        if self.eradiff_weights is not None:
            apply_weights(self.pipe.unet, self.eradiff_weights)
        self.apply_fast_paths()

    def describe(self) -> dict[str, Any]:
        w = self.eradiff_weights
        return {**super().describe(), "weights": None if w is None else str(w.folder),
                "cro": w is not None, "variant": "EraDiff" if w is not None else "w/o CRO"}

    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        resolved = super().resolve_options(options)
        try:
            parse_layers(resolved["layers"]).select(self.pipe.unet)
        except ValueError as exc:
            raise InvalidInputError(f"method {self.name!r} option layers: {exc}") from None
        return resolved

    def inpaint(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest):
        s = request.options
        if s["rule"] == "none":
            return super().inpaint(image, mask, request)
        import torch

        from ...diffusion.attention import installed_processors
        from .attention import MaskedSelfAttentionRule, processor_factory

        rule = MaskedSelfAttentionRule(torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)),
                                       rule=s["rule"], grid=s["grid"], vae_factor=self.pipe.vae_scale_factor,
                                       impl=s["impl"])
        kwargs = self.pipeline_kwargs(image, mask, request)
        progress = s["progress"] if s["progress"] is not None else self.progress
        if progress is not None:
            from ...diffusion.remover import step_reporter

            kwargs["callback_on_step_end"] = step_reporter(progress)
        # The lock covers install, sampling and restore: processors are per-UNet state, like the scheduler's.
        with self.lock, installed_processors(self.pipe.unet, parse_layers(s["layers"]),
                                             factory=processor_factory(rule)):
            self.pipe.set_progress_bar_config(disable=not self.progress_bar, desc=self.name, leave=False)
            out = self.pipe(**kwargs).images[0]
        return np.asarray(out.convert("RGB"), dtype=np.uint8), None


def register() -> None:
    """Register ``eradiff`` (called once by :mod:`erasekit.methods.builtin`)."""
    from ...registry import MethodSpec, register_method
    from ..baselines import backbone_requirement

    register_method(MethodSpec(
        name=EraDiffRemover.name, factory=EraDiffRemover,
        description="EraDiff: SD2-Inpainting with Self-Rectifying Attention (+ CRO-trained UNet via "
                    "--weights; without them the paper's 'w/o CRO' ablation)",
        # EraDiff weights are optional (none are public), so only the backbone is required; "auto" never picks
        # it because without trained weights it is an ablation, not the method.
        weights=(backbone_requirement(EraDiffRemover.preset_name),), auto_priority=None, family="diffusion",
        paper="Liu et al., Erase Diffusion, arXiv:2503.07026 (2025)",
    ))


__all__ = ["EraDiffRemover", "parse_layers", "register"]

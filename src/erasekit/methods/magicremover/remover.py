"""The ``magicremover`` remover: remove what a text prompt names, without a mask, on SD1.5 text-to-image
(arXiv:2310.02848)::

    erasekit.remove(image, prompt="a photo of a dog", target="dog")
    erasekit remove photo.jpg --prompt "a photo of a dog" --target dog -o out.png

One call: resize to the working size (512×512, Sec. 4.1), encode, align (DDIM inversion + null-text
optimisation, cached), sample both branches (Algorithm 1), decode, resize back. ``result.alpha`` is the
normalised cross-attention map of what was removed (reconstruction branch, steps with t < t2); paste-back goes
through ``alpha ≥ paste_threshold`` (united with the mask, if one is given) so every other pixel stays
bit-identical; ``paste_back=false`` returns the decoded image everywhere, the paper's setting. The method is
deterministic (DDIM with σ = 0 and no noise drawn): the seed does not change the result.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ...diffusion.remover import DiffusionRemover
from ...hd import SizeConstraints
from ...options import Option, OptionSet, Range
from ...types import InvalidInputError, RemovalRequest

if TYPE_CHECKING:  # torch and diffusers load at first use, so that listing methods stays fast
    from .guidance import GuidanceSettings
    from .inversion import InversionSettings

WORKING_SIZE = 512  # Sec. 4.1: inputs are resized to 512×512

_TIMESTEP = Range(0, 1000)


class MagicRemover(DiffusionRemover):
    """MagicRemover on SD1.5. Build once, call many times; calls are serialised by the base's lock."""

    name: ClassVar[str] = "magicremover"
    preset_name: ClassVar[str] = "sd15"
    requires_mask: ClassVar[bool] = False
    takes_prompt: ClassVar[bool] = True
    edits_outside_mask: ClassVar[bool] = True
    constraints: ClassVar[SizeConstraints] = SizeConstraints()  # the working size is set inside inpaint
    call_options: OptionSet = OptionSet(
        Option("target", str, nullable=True,
               help="what to remove: words of the prompt, spaces within an object (their maps multiply, "
                    "Eq. 9), commas between objects (summed); null: the prompt less stop-words"),
        Option("lam", float, default=0.8, range=Range(0, 1),
               help="λ of Eq. 7: lower erases more (and changes more background; App. A.3)"),
        Option("steps", int, default=50, range=Range(1, 1000), help="DDIM steps of inversion and sampling"),
        Option("guidance", float, default=7.5, range=Range(1, 100),
               help="classifier-free guidance w = 1 + s of inversion and sampling"),
        Option("inversion", str, default="null-text", choices=("null-text", "negative-prompt"),
               help="null-text: optimise ∅_t (Eq. 6); negative-prompt: ∅_t = the prompt, no optimisation"),
        Option("inner_steps", int, default=10, range=Range(1, 1000),
               help="Adam steps per sampling step of null-text optimisation (prompt-to-prompt's 10; the "
                    "paper says about 100)"),
        Option("t_low", int, default=100, range=_TIMESTEP, help="guidance acts for t_low < t < t2"),
        Option("t1", int, default=500, range=_TIMESTEP, help="classifier optimisation for t1 < t < t2"),
        Option("t2", int, default=800, range=_TIMESTEP, help="upper end of guidance and optimisation"),
        Option("opt_steps", int, default=1, range=Range(0, 100),
               help="classifier-optimisation updates of z_t per step in (t1, t2) (Eq. 12)"),
        Option("guidance_weight", float, default=1.0, range=Range(0, 1e4),
               help="v: the weight of the attention-guidance term (Eq. 5/8)"),
        Option("kv_injection", bool, default=True,
               help="the editing branch's self-attention reads the reconstruction's K/V (Eq. 10)"),
        Option("mask_rule", str, default="term", choices=("term", "eq13"),
               help="with a mask (App. A.4): term adds ∇(ẑ_{t−1} − z^inv_{t−1})⊙(1 − M) to Eq. 9; eq13 "
                    "weights the guidance by M instead of the maps (Eq. 13)"),
        Option("paste_back", bool, default=True,
               help="paste through alpha ≥ paste_threshold so the rest stays bit-identical; false returns "
                    "the decoded image everywhere (the paper's setting)"),
        Option("paste_threshold", float, default=0.3, range=Range(0, 1),
               help="the alpha level above which decoded pixels are pasted"),
        Option("progress", Callable, nullable=True, python_only=True,
               help="progress(step, total) over all stages (inversion, null-text, sampling)"),
        Option("stage_progress", Callable, nullable=True, python_only=True,
               help="stage_progress(stage, step, total), stage one of inversion, null-text, sampling"))

    def __init__(self, model: str | os.PathLike | None = None, device: str | None = None,
                 dtype: str | None = None, allow_download: bool = False, offload: str = "none",
                 attention_slicing: bool | str | int = False, vae_tiling: bool | str = False,
                 pipeline: Any = None, progress_bar: bool = True, resolution: int = WORKING_SIZE,
                 cache_dir: str | os.PathLike | None = None, compile: bool | str = False,
                 channels_last: bool = False, fuse_qkv: bool = False):
        """The backbone options are the diffusion base's, fast paths included (its per-call processors use
        the unfused ``to_q``/``to_k``/``to_v``, so ``fuse_qkv`` leaves outputs as they are).
        ``resolution``: the square working size (the paper's 512; tests use less).
        ``cache_dir``: also keep aligned inversions on disk (safetensors)."""
        if resolution < 64 or resolution % 8:
            raise InvalidInputError(f"resolution must be a multiple of 8 of at least 64, got {resolution}")
        super().__init__(model, device=device, dtype=dtype, allow_download=allow_download, offload=offload,
                         attention_slicing=attention_slicing, vae_tiling=vae_tiling, pipeline=pipeline,
                         progress_bar=progress_bar, compile=compile, channels_last=channels_last,
                         fuse_qkv=fuse_qkv)
        if self.pipe.unet.config.in_channels != 4:
            raise InvalidInputError("magicremover needs a text-to-image UNet (4 input channels), not an "
                                    "inpainting one")
        from .inversion import InversionCache

        self.resolution = resolution
        self.cache = InversionCache(None if cache_dir is None else Path(cache_dir))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "resolution": self.resolution,
                "cache_dir": None if self.cache.folder is None else str(self.cache.folder)}

    # ---- per-call settings ---------------------------------------------------------------------------------
    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        resolved = super().resolve_options(options)
        if not resolved["t_low"] <= resolved["t2"] or not resolved["t1"] <= resolved["t2"]:
            raise InvalidInputError(f"magicremover needs t_low ≤ t2 and t1 ≤ t2, got "
                                    f"t_low={resolved['t_low']}, t1={resolved['t1']}, t2={resolved['t2']}")
        return resolved

    @staticmethod
    def guidance_settings(options: Mapping[str, Any]) -> GuidanceSettings:
        from .guidance import GuidanceSettings

        return GuidanceSettings(lam=options["lam"], t_low=options["t_low"], t1=options["t1"],
                                t2=options["t2"], opt_steps=options["opt_steps"],
                                weight=options["guidance_weight"])

    @staticmethod
    def inversion_settings(options: Mapping[str, Any]) -> InversionSettings:
        from .inversion import InversionSettings

        return InversionSettings(steps=options["steps"], guidance=options["guidance"],
                                 mode=options["inversion"], inner_steps=options["inner_steps"])

    def paste_region(self, mask: np.ndarray, alpha: np.ndarray | None, request: RemovalRequest) -> np.ndarray:
        if not request.options["paste_back"]:
            return np.ones_like(mask)
        if alpha is None:
            return mask
        region = (alpha >= request.options["paste_threshold"]).astype(np.float32)
        return np.maximum(mask, region)

    # ---- the work ------------------------------------------------------------------------------------------
    def inpaint(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest):
        from PIL import Image

        if request.prompt is None or not request.prompt.strip():
            raise InvalidInputError("magicremover needs a prompt describing the image, e.g. --prompt "
                                    "'a photo of a dog' --target dog")
        h, w = mask.shape
        size = self.resolution
        work = image if (h, w) == (size, size) else \
            np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))
        work_mask = None
        if mask.any():  # a mask was given (App. A.4)
            mask_image = Image.fromarray((mask > 0).astype(np.uint8) * 255).resize((size, size),
                                                                                   Image.Resampling.NEAREST)
            work_mask = (np.asarray(mask_image) > 0).astype(np.float32)
        with self.lock:
            pixels, alpha = self._remove(work, work_mask, request.prompt, request.options)
        if (h, w) != (size, size):
            pixels = np.asarray(Image.fromarray(pixels).resize((w, h), Image.Resampling.BICUBIC))
            alpha = np.asarray(Image.fromarray(alpha, mode="F").resize((w, h), Image.Resampling.BILINEAR))
        return np.ascontiguousarray(pixels), np.clip(alpha, 0.0, 1.0).astype(np.float32)

    def _remove(self, image: np.ndarray, mask: np.ndarray | None, prompt: str,
                options: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        import torch
        import torch.nn.functional as F
        from PIL import Image

        from ...diffusion.inversion import ddim_schedulers, image_latents
        from ...diffusion.loop import decode, encode_prompt
        from .attention_maps import parse_target
        from .inversion import cache_key, invert
        from .sampling import TwoBranchSampler

        pipe = self.pipe
        target = parse_target(pipe.tokenizer, prompt, options["target"])  # a wrong target fails first
        report = self._reporter(options)
        inv_settings = self.inversion_settings(options)
        embeddings = encode_prompt(pipe, prompt, "", guided=True)  # ∅ starts as the empty prompt's embedding
        sampler, inverse = ddim_schedulers(pipe.scheduler.config)  # typed Any below: diffusers' stubs
        sampler_any: Any = sampler
        unet = pipe.unet
        key = cache_key(f"{self.model}|{pipe.device}|{pipe.dtype}", image, prompt, inv_settings)

        def align():
            latents = image_latents(pipe, Image.fromarray(image))
            return invert(unet, sampler, inverse, latents, embeddings, inv_settings, progress=report)

        aligned = self.cache.get(key, align, device=pipe.device)
        sampler_any.set_timesteps(inv_settings.steps, device=pipe.device)
        keep = None
        if mask is not None:
            grid = aligned.start.shape[-2:]
            # A latent cell is masked where any of its pixels is (max pooling to the latent grid).
            masked = F.adaptive_max_pool2d(torch.from_numpy(mask)[None, None], grid).to(aligned.start)
            keep = 1.0 - masked
        two_branch = TwoBranchSampler(unet, sampler, embeddings.positive, target,
                                      self.guidance_settings(options), guidance_scale=inv_settings.guidance,
                                      inject_kv=options["kv_injection"], keep=keep,
                                      mask_rule=options["mask_rule"])
        result = two_branch.run(aligned, progress=lambda step, total: report("sampling", step, total))
        [decoded] = decode(pipe, result.edited, output_type="pil")
        alpha = F.interpolate(result.removal_map[None, None].float(), size=image.shape[:2], mode="bilinear",
                              align_corners=False)[0, 0].clamp(0, 1).cpu().numpy()
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8), alpha

    def _reporter(self, options: Mapping[str, Any]) -> Callable[[str, int, int], None]:
        """progress(step, total) over the three stages and stage_progress(stage, step, total) from one
        per-stage report."""
        overall: Callable[[int, int], None] | None = options["progress"] or self.progress
        per_stage: Callable[[str, int, int], None] | None = options["stage_progress"]
        steps = options["steps"]
        totals = {"inversion": steps, "null-text": steps if options["inversion"] == "null-text" else 0,
                  "sampling": steps}
        offsets = {"inversion": 0, "null-text": steps, "sampling": steps + totals["null-text"]}
        grand_total = sum(totals.values())

        def report(stage: str, step: int, total: int) -> None:
            if per_stage is not None:
                per_stage(stage, step, total)
            if overall is not None:
                overall(offsets[stage] + step, grand_total)

        return report


def register() -> None:
    """Register ``magicremover`` (called once by :mod:`erasekit.methods`)."""
    from ...registry import MethodSpec, register_method
    from ..baselines import backbone_requirement

    register_method(MethodSpec(
        name=MagicRemover.name,
        description="MagicRemover: remove what a text prompt names, no mask (null-text inversion + "
                    "attention guidance on SD1.5)",
        factory=MagicRemover, weights=(backbone_requirement(MagicRemover.preset_name),),
        # The one mask-free method: auto picks it for a request without a mask when SD1.5 is present.
        auto_priority=10, requires_mask=False, family="diffusion", paper="Yang et al., arXiv:2310.02848"))

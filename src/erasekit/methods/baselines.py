"""Multi-step diffusion inpainting baselines: SD 1.5 / SD 2 / SDXL inpainting and FLUX.1 Fill.

These are the comparison methods of OSOR's tables. Each remover wraps diffusers' own pipeline
(``StableDiffusionInpaintPipeline``, ``StableDiffusionXLInpaintPipeline``, ``FluxFillPipeline``) and calls it
with the image at its working size; the sampling loop is diffusers', unchanged. What erasekit adds is shared
with every other method through the :class:`~erasekit.methods.base.Remover` base: mask checks and dilation,
the HD strategy, paste-back (pixels outside the mask stay bit-identical) and metadata.

Defaults are removal-friendly: a prompt asking for background, a negative prompt naming what must not appear,
and each model card's recommended steps/guidance/strength, declared as each class's ``call_options``. A
per-call
option overrides any of them::

    remover = erasekit.load_remover("sdxl-inpaint", model="/models/sdxl-inpaint", device="cuda")
    result = remover(RemovalRequest(image, mask, seed=0, options={"steps": 20, "progress": print}))

Progress: diffusers' own tqdm bar over the denoising steps (``progress_bar=False`` hides it), and an optional
``progress(step, total)`` callable — set ``remover.progress`` or pass ``options["progress"]`` per call — which
the web server uses to stream progress. It is called after each denoising step.

With a tiny checkpoint and a seed the result equals calling the diffusers pipeline directly with the same
arguments (tests check this for every family).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from ..backbones.presets import PRESETS, locate_preset
from ..diffusion.remover import DiffusionRemover
from ..hd import SizeConstraints
from ..options import Option, OptionSet, Range
from ..registry import MethodSpec, WeightRequirement, register_method
from ..types import InvalidInputError, RemovalRequest

REMOVAL_PROMPT = (
    "empty background, seamless continuation of the surrounding scene, natural lighting, high quality"
)
REMOVAL_NEGATIVE_PROMPT = (
    "object, person, animal, text, watermark, logo, frame, shadow, reflection, duplicate, "
    "blurry, distorted, artifacts, low quality"
)


def sampling_options(
    *, steps: int, guidance: float, strength: float, negative_prompt: bool = True
) -> OptionSet:
    """The per-call options of a diffusers inpainting pipeline, with one model card's defaults."""
    options = [
        # Every backbone here is trained on 1000 timesteps; diffusers' schedulers cannot sample more distinct
        # steps than that (DDPM/DDIM refuse), so 1000 is the most steps that mean anything.
        Option("steps", int, default=steps, range=Range(1, 1000), help="denoising steps"),
        # Classifier-free guidance past ~20 saturates SD's colours; FLUX Fill's distilled guidance embedding
        # is used at 30. 100 leaves room for both and still catches a slipped decimal point (750 for 7.5).
        Option("guidance", float, default=guidance, range=Range(0, 100), help="guidance scale"),
        Option(
            "strength",
            float,
            default=strength,
            range=Range(0, 1, low_inclusive=False),
            help="how far the masked region is noised: 1 starts from pure noise",
        ),
    ]
    if negative_prompt:
        options.append(
            Option(
                "negative_prompt",
                str,
                default=REMOVAL_NEGATIVE_PROMPT,
                nullable=True,
                help="what must not appear in the fill (null: none)",
            )
        )
    options.append(
        Option(
            "progress",
            Callable,
            nullable=True,
            python_only=True,
            help="a callable progress(step, total), called after each denoising step",
        )
    )
    return OptionSet(*options)


class DiffusersInpaintRemover(DiffusionRemover):
    """A remover that runs one of diffusers' inpainting pipelines. Subclasses name the preset and declare
    their ``call_options`` with the model card's defaults (:func:`sampling_options`).

    Load options (backbone, device, placement, ``pipeline``, ``progress_bar``) are the diffusion base's."""

    takes_prompt: ClassVar[bool] = True
    default_prompt: ClassVar[str] = REMOVAL_PROMPT  # used when a request gives no prompt

    def describe(self) -> dict[str, Any]:
        return dict(self._description)

    @functools.cached_property
    def _description(self) -> dict[str, Any]:
        # Computed once: pipe.device / pipe.dtype walk every module, which costs milliseconds on each call.
        d = self.call_options.defaults()
        return {
            **super().describe(),
            "hub_id": self.preset.hub_id,
            "pipeline": type(self.pipe).__name__,
            "device": str(self.pipe.device),
            "dtype": str(self.pipe.dtype).replace("torch.", ""),
            "steps": d["steps"],
            "guidance": d["guidance"],
            "strength": d["strength"],
        }

    # ---- per-call settings ---------------------------------------------------------------------------------
    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        resolved = super().resolve_options(options)
        if int(resolved["steps"] * resolved["strength"]) < 1:  # diffusers runs int(steps × strength) steps
            raise InvalidInputError(
                f"steps × strength leaves no denoising step ({resolved['steps']} × "
                f"{resolved['strength']}); raise steps or strength"
            )
        return resolved

    def pipeline_kwargs(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest) -> dict[str, Any]:
        """The exact arguments this remover passes to the diffusers pipeline (also used by tests and
        benchmarks), for ``request`` as :meth:`inpaint` gets it (see
        :meth:`~erasekit.methods.base.Remover.resolve_request`)."""
        from PIL import Image

        from ..convert import mask_to_uint8

        s = request.options
        prompt = request.prompt if request.prompt is not None else self.default_prompt
        h, w = mask.shape
        # One CPU generator per image: the same noise on every device (diffusers moves it to the device).
        generator = None if request.seed is None else self.generators([request.seed])
        kwargs: dict[str, Any] = {
            "prompt": prompt,
            "image": Image.fromarray(image),
            "mask_image": Image.fromarray(mask_to_uint8(mask)),
            "height": h,
            "width": w,
            "num_inference_steps": s["steps"],
            "guidance_scale": s["guidance"],
            "strength": s["strength"],
            "generator": generator,
            "output_type": "pil",
        }
        if s.get("negative_prompt") is not None:
            kwargs["negative_prompt"] = s["negative_prompt"]
        return kwargs

    # ---- the work ------------------------------------------------------------------------------------------
    def inpaint(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest):
        kwargs = self.pipeline_kwargs(image, mask, request)
        progress = request.options["progress"] if request.options["progress"] is not None else self.progress
        out = self.run_pipeline(progress=progress, **kwargs).images[0]
        # diffusers' own uint8 conversion (PIL output) so the pixels equal a direct pipeline call.
        return np.asarray(out.convert("RGB"), dtype=np.uint8), None


# ------------------------------------------------------------------------------------------------------------
# The four baselines. Defaults follow each model card's recommended settings.
# ------------------------------------------------------------------------------------------------------------
class SD15InpaintRemover(DiffusersInpaintRemover):
    name: ClassVar[str] = "sd15-inpaint"
    preset_name: ClassVar[str] = "sd15-inpaint"
    constraints: ClassVar[SizeConstraints] = SizeConstraints(size_multiple=8, min_side=64, max_side=768)
    call_options: OptionSet = sampling_options(steps=50, guidance=7.5, strength=1.0)


class SD2InpaintRemover(DiffusersInpaintRemover):
    name: ClassVar[str] = "sd2-inpaint"
    preset_name: ClassVar[str] = "sd2-inpaint"
    constraints: ClassVar[SizeConstraints] = SizeConstraints(size_multiple=8, min_side=64, max_side=768)
    call_options: OptionSet = sampling_options(steps=50, guidance=7.5, strength=1.0)


class SDXLInpaintRemover(DiffusersInpaintRemover):
    name: ClassVar[str] = "sdxl-inpaint"
    preset_name: ClassVar[str] = "sdxl-inpaint"
    constraints: ClassVar[SizeConstraints] = SizeConstraints(size_multiple=8, min_side=64, max_side=1536)
    # strength just below 1 keeps a trace of the input latent, as the model card recommends (0.99).
    call_options: OptionSet = sampling_options(steps=30, guidance=8.0, strength=0.99)


class FluxFillRemover(DiffusersInpaintRemover):
    name: ClassVar[str] = "flux-fill"
    preset_name: ClassVar[str] = "flux-fill"
    # 16 = the VAE's 8 × FLUX's 2×2 packing.
    constraints: ClassVar[SizeConstraints] = SizeConstraints(size_multiple=16, min_side=64, max_side=2048)
    # FLUX Fill is guidance-distilled: guidance 30 goes into its guidance embedding; it has no negative
    # prompt.
    call_options: OptionSet = sampling_options(steps=50, guidance=30.0, strength=1.0, negative_prompt=False)


BASELINES: tuple[type[DiffusersInpaintRemover], ...] = (
    SD15InpaintRemover,
    SD2InpaintRemover,
    SDXLInpaintRemover,
    FluxFillRemover,
)
# auto picks the strongest baseline whose weights are here; all rank above the weight-free methods.
_AUTO_PRIORITY = {"sd15-inpaint": 10, "sd2-inpaint": 20, "sdxl-inpaint": 30, "flux-fill": 40}
_DESCRIPTIONS = {
    "sd15-inpaint": "Stable Diffusion 1.5 inpainting, multi-step (diffusers pipeline)",
    "sd2-inpaint": "Stable Diffusion 2 inpainting, multi-step (diffusers pipeline)",
    "sdxl-inpaint": "SDXL inpainting 0.1, multi-step (diffusers pipeline; OSOR's SDXL baseline)",
    "flux-fill": "FLUX.1 Fill dev, multi-step (diffusers pipeline; OSOR's FLUX baseline)",
}
_PAPERS = {
    "sd15-inpaint": "Rombach et al., CVPR 2022",
    "sd2-inpaint": "Rombach et al., CVPR 2022",
    "sdxl-inpaint": "Podell et al., ICLR 2024",
    "flux-fill": "Black Forest Labs, FLUX.1 Tools 2024",
}


def backbone_requirement(preset_name: str) -> WeightRequirement:
    """The WeightRequirement for a backbone preset (shared by every method built on that backbone)."""
    preset = PRESETS[preset_name]
    return WeightRequirement(
        name=preset.name,
        description=preset.description,
        locate=functools.partial(locate_preset, preset.name),
        hub_id=preset.hub_id,
        fetch_hint=f"erasekit download {preset.name}",
    )


def register() -> None:
    """Register the four baselines (called once by :mod:`erasekit.methods`)."""
    for cls in BASELINES:
        register_method(
            MethodSpec(
                name=cls.name,
                description=_DESCRIPTIONS[cls.name],
                factory=cls,
                weights=(backbone_requirement(cls.preset_name),),
                auto_priority=_AUTO_PRIORITY[cls.name],
                family="diffusion",
                paper=_PAPERS[cls.name],
            )
        )


__all__ = ["BASELINES", "REMOVAL_NEGATIVE_PROMPT", "REMOVAL_PROMPT", "DiffusersInpaintRemover",
           "FluxFillRemover", "SD2InpaintRemover", "SD15InpaintRemover", "SDXLInpaintRemover",
           "backbone_requirement", "register", "sampling_options"]

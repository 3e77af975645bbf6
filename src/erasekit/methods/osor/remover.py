"""The OSOR removers (``osor-sdxl``, ``osor-flux``): the remover contract around the one-step engine of
:mod:`erasekit.methods.osor.engine` (arXiv:2606.28094, Sec. 3.2-3.4).
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np

from ... import masks as M
from ...diffusion.remover import DiffusionRemover
from ...hd import SizeConstraints
from ...options import Option, OptionSet, Range
from ...types import MissingWeightsError, RemovalRequest
from .alpha_head import add_alpha_head, has_alpha_head
from .engine import (
    BLENDS,
    NO_WEIGHTS,
    Blend,
    FluxEngine,
    OsorEngine,
    SDXLEngine,
    flux_working_size,
    sdxl_working_size,
)
from .recipe import FLUX_GUIDANCE, PROMPT, RESOLUTION, Backbone
from .weights import (
    LoadReport,
    OsorWeights,
    apply_osor_weights,
    fetch_hint,
    load_osor_weights,
    locate_weights,
)


# ------------------------------------------------------------------------------------------------------------
# The removers
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OsorSettings:
    timestep: float
    blend: Blend
    guidance: float | None = None


# Options both backbones take; each remover adds its own timestep (and FLUX its guidance).
_BLEND = Option(
    "blend",
    str,
    choices=BLENDS,
    default_note="alpha when the weights have the alpha head, else mask",
    help="alpha: blend latents by the predicted alpha (Eq. 13; needs Phase II weights); "
    "mask: the hard max-pooled mask (Eq. 6)",
)
_SOFT_MASK = Option(
    "soft_mask",
    bool,
    default=True,
    help="condition on the mask's soft values in [0, 1] as the authors do (max-pooled for SDXL, "
    "unshuffled for FLUX); false binarises every nonzero pixel first. The pasted-back region is the "
    "binary mask (∪ alpha) either way",
)
_PASTE_BACK = Option(
    "paste_back",
    bool,
    default=True,
    help="paste through mask ∪ alpha so every other pixel stays bit-identical; false "
    "returns the decoded image everywhere, as the authors' scripts do",
)


class OsorRemover(DiffusionRemover):
    """OSOR on one backbone. Build once (loads the backbone and weights), call many times; thread-safe."""

    family: ClassVar[Backbone]
    preset_name: ClassVar[str]
    engine_cls: ClassVar[type[OsorEngine]]
    defer_fast_paths: ClassVar[bool] = True  # applied once the OSOR weights are in (see __init__)
    edits_outside_mask: ClassVar[bool] = True  # the alpha map extends the paste region (shadows, reflections)
    consumes_soft_mask: ClassVar[bool] = True  # conditions on soft mask values, as the authors (/255)
    constraints: ClassVar[SizeConstraints] = SizeConstraints()  # the paper's resizing happens inside inpaint

    def paste_region(self, mask: np.ndarray, alpha: np.ndarray | None, request: RemovalRequest) -> np.ndarray:
        """``paste_back=False`` (per call) returns the decoded image everywhere, as the authors' scripts do;
        the default pastes through mask ∪ alpha so everything else stays bit-identical."""
        if not request.options["paste_back"]:
            return np.ones_like(mask)
        return super().paste_region(mask, alpha, request)

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        weights: str | os.PathLike | None = None,
        device: str | None = None,
        dtype: str | None = None,
        allow_download: bool = False,
        offload: str = "none",
        attention_slicing: bool | str | int = False,
        vae_tiling: bool | str = False,
        pipeline: Any = None,
        prompt: str = PROMPT,
        alpha_head: bool = True,
        merge_lora: bool | None = None,
        release_text_encoders: bool | None = None,
        compile: bool | str = False,
        channels_last: bool = False,
        fuse_qkv: bool = False,
    ):
        """``model`` … ``pipeline``: the backbone, as for every diffusion method (see
        :class:`~erasekit.diffusion.remover.DiffusionRemover`); a given ``pipeline``'s denoiser is modified in
        place. ``weights``: OSOR weights (authors' ``.pth`` or an erasekit folder); default: the released
        Phase II file found locally; ``"none"``: no OSOR weights (the bare backbone, with a fresh alpha head
        if ``alpha_head``) — for plumbing checks and benchmarks only. ``release_text_encoders``: drop them
        after caching the prompt (default: yes when this remover loaded the pipeline).

        ``merge_lora``: True folds the LoRA into the base weights (no adapter cost; in bf16 the outputs move,
        see docs/osor.md, "Inference numerics"); False keeps the adapters unmerged, as the authors do (bf16
        adapters for SDXL, float32 for FLUX). None (default): unmerged in bf16/fp16, merged in float32, where
        the two agree up to the order of float sums (measured: at most 1 level in a few pixels) and merging
        keeps erasekit's fp32 CPU outputs pixel for pixel.

        ``timestep``, ``blend`` (and FLUX's ``guidance``) are per-call options (``RemovalRequest.options``);
        their defaults are the weights' training timestep (paper: t = 400 / s = 0.4), ``alpha`` blending when
        the model
        has the alpha head (else ``mask``), and guidance 30."""
        self.osor_weights: OsorWeights | None = self._read_weights(weights)  # before loading: fail fast
        super().__init__(
            model,
            device=device,
            dtype=dtype,
            allow_download=allow_download,
            offload=offload,
            attention_slicing=attention_slicing,
            vae_tiling=vae_tiling,
            pipeline=pipeline,
            compile=compile,
            channels_last=channels_last,
            fuse_qkv=fuse_qkv,
        )
        self.engine = self.engine_cls(self.pipe, prompt=prompt)
        denoiser = self.engine.denoiser
        self.load_report: LoadReport | None = None
        if self.osor_weights is not None:
            if merge_lora is None:
                import torch

                merge_lora = self.engine.dtype == torch.float32
            self.load_report = apply_osor_weights(denoiser, self.osor_weights, merge=bool(merge_lora))
        elif alpha_head:
            add_alpha_head(denoiser)
        denoiser.eval()
        self.apply_fast_paths()  # after the weights: compile traces the adapters, fuse_qkv needs merged LoRA
        self.call_options = self.bind_options(self.osor_weights.timestep if self.osor_weights else None)
        if release_text_encoders is None:
            release_text_encoders = self.loaded_pipeline
        if release_text_encoders:
            self.engine.release_text_encoders()

    # ---- construction --------------------------------------------------------------------------------------
    def _read_weights(self, weights) -> OsorWeights | None:
        if weights is not None and str(weights).lower() == NO_WEIGHTS:
            return None
        if weights is None:
            found = locate_weights(self.family, 2)
            if found is None:
                raise MissingWeightsError(
                    f"OSOR {self.family} weights are not on this machine; fetch them with: "
                    f"{fetch_hint(self.family)} (then pass --weights PATH or put the file "
                    f"under $ERASEKIT_MODELS_DIR/osor/)"
                )
            weights = found
        return load_osor_weights(weights, self.family)

    def describe(self) -> dict[str, Any]:
        w = self.osor_weights
        return {
            **super().describe(),
            "weights": (w.source if w else NO_WEIGHTS),
            "phase": (w.phase if w else None),
            "alpha_head": has_alpha_head(self.engine.denoiser),
            "timestep": self.defaults.timestep,
            "blend": self.defaults.blend,
            "prompt": self.engine.prompt,
            "weights_report": self.load_report.summary() if self.load_report else None,
            "lora_merged": self.load_report.merged if self.load_report else None,
            "device": str(self.engine.device),
            "dtype": str(self.engine.dtype).replace("torch.", ""),
        }

    # ---- settings ------------------------------------------------------------------------------------------
    def bind_options(self, weights_timestep: float | None) -> OptionSet:
        """The declaration with the defaults the loaded model decides: the weights' training timestep (else
        the paper's) and the blend its alpha head allows."""
        return self.declared_options().with_defaults(
            owner=self.name,
            timestep=self.engine.check_timestep(weights_timestep),
            blend=self.engine.default_blend,
        )

    def declared_options(self) -> OptionSet:
        """The class's declaration, narrowed to what the loaded model allows."""
        return type(self).call_options

    @property
    def defaults(self) -> OsorSettings:
        return self._as_settings(self.call_options.defaults())

    def settings(self, request: RemovalRequest) -> OsorSettings:
        """This request's settings (its options as :meth:`inpaint` gets them: validated and complete)."""
        return self._as_settings(request.options)

    @staticmethod
    def _as_settings(options: Mapping[str, Any]) -> OsorSettings:
        return OsorSettings(options["timestep"], options["blend"], options.get("guidance"))

    @abstractmethod
    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The paper's working size for an input of this size (multiples of 16)."""

    @property
    def phase(self) -> int:
        """The training phase of the loaded weights (without weights: 2 with the alpha head, else 1)."""
        if self.osor_weights is not None:
            return self.osor_weights.phase
        return 2 if has_alpha_head(self.engine.denoiser) else 1

    def soft_conditioning(self, request: RemovalRequest, mask: np.ndarray) -> np.ndarray | None:
        """What the denoiser is conditioned on, at full size: the soft mask, as the authors' ``/255`` mask.

        The soft values are ``request.soft_mask`` (a mask file's values, :func:`erasekit.io.read_mask_pair`)
        or else a float ``request.mask`` itself. ``mask`` is the binary mask the base prepared (and fills and
        pastes back); with ``dilate``, the ring dilation added conditions as 1 (it is part of what is
        removed) and the soft values hold everywhere else. The base's HD strategy crops and pads the result as
        the binary mask; where it scales the input (``resize``), the method conditions on the binary mask.
        ``soft_mask=false``: None, the binary mask conditions (every nonzero pixel, then dilation)."""
        if not request.options["soft_mask"] or request.mask is None:
            return None
        source = request.soft_mask if request.soft_mask is not None else request.mask
        values = np.clip(np.asarray(source, dtype=np.float32), 0.0, 1.0)
        if request.dilate:
            ring = (mask > 0) & (M.binarize(np.asarray(request.mask, dtype=np.float32), 0.0) == 0)
            values = np.where(ring, np.float32(1.0), values)
        return values

    # ---- the work ------------------------------------------------------------------------------------
    def inpaint(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest):
        """Resize to the paper's working size, run the one step, resize back: (pixels, paste weight)."""
        return self._remove(image, mask, mask, request)

    def inpaint_soft(self, image: np.ndarray, mask: np.ndarray, soft: np.ndarray, request: RemovalRequest):
        """:meth:`inpaint` conditioned on the soft mask; the paste weight still comes from the binary one."""
        return self._remove(image, mask, soft, request)

    def _remove(self, image: np.ndarray, mask: np.ndarray, condition: np.ndarray, request: RemovalRequest):
        import torch.nn.functional as F
        from PIL import Image

        from ...backbones import latents as L
        from ...convert import image_to_tensor, mask_to_tensor, tensor_to_image

        settings = self.settings(request)
        seed = 0 if request.seed is None else int(request.seed)
        h, w = mask.shape
        wh, ww = self.working_size(h, w)
        work_image, work_mask, work_condition = image, mask, condition
        if (wh, ww) != (h, w):
            work_image = np.asarray(Image.fromarray(image).resize((ww, wh), Image.Resampling.BICUBIC))

            def nearest(values: np.ndarray) -> np.ndarray:
                # Nearest on a float ("F") image keeps the values (soft or binary) exactly: no 8-bit rounding.
                as_float = Image.fromarray(np.asarray(values, dtype=np.float32))
                return np.asarray(as_float.resize((ww, wh), Image.Resampling.NEAREST), dtype=np.float32)

            work_mask = nearest(mask)
            work_condition = work_mask if condition is mask else nearest(condition)
        images = image_to_tensor(np.stack([work_image]))  # a copy: torch.from_numpy warns on read-only arrays
        with self.lock:
            out = self.engine.run(
                images,
                mask_to_tensor(work_condition),
                [seed],
                timestep=settings.timestep,
                blend=settings.blend,
                **({"guidance": settings.guidance} if settings.guidance is not None else {}),
            )
        [pixels] = tensor_to_image(out.images)
        # The paste weight at pixel resolution: α̂ upsampled bilinearly (as the authors do), the hard latent
        # mask nearest (it is exactly the region Eq. 6 replaced).
        # The pooled soft conditioning is soft (and nonzero where JPEG noise below the binary rule is); the
        # region pasted back stays binary: every latent cell that a pixel of the binary mask touches.
        mode = "bilinear" if settings.blend == "alpha" else "nearest"
        if settings.blend == "alpha":
            latent_weight = out.weight
        else:
            latent_hw = (int(out.weight.shape[-2]), int(out.weight.shape[-1]))
            pooled = L.mask_to_latent(mask_to_tensor(work_mask), latent_hw, "max")
            latent_weight = (pooled > 0).float()
        weight = F.interpolate(latent_weight, size=(wh, ww), mode=mode).clamp(0, 1).cpu().numpy()[0, 0]
        if (wh, ww) != (h, w):
            pixels = np.asarray(Image.fromarray(pixels).resize((w, h), Image.Resampling.BICUBIC))
            weight_image = Image.fromarray(weight.astype(np.float32), mode="F")
            weight = np.asarray(weight_image.resize((w, h), Image.Resampling.BILINEAR))
        return np.ascontiguousarray(pixels), np.clip(weight, 0.0, 1.0).astype(np.float32)


class OsorSDXLRemover(OsorRemover):
    name: ClassVar[str] = "osor-sdxl"
    family: ClassVar[Backbone] = "sdxl"
    preset_name: ClassVar[str] = "sdxl-inpaint"
    engine_cls: ClassVar[type[OsorEngine]] = SDXLEngine
    call_options: OptionSet = OptionSet(
        # SDXL's DDPM schedule has 1000 training timesteps; the loaded scheduler narrows this if it has fewer.
        Option(
            "timestep",
            int,
            range=Range(0, 999),
            default_note="the weights' training timestep (paper: t = 400)",
            help="DDPM timestep t of the one denoising step (Sec. 3.2)",
        ),
        _BLEND,
        _SOFT_MASK,
        _PASTE_BACK,
    )

    def declared_options(self) -> OptionSet:
        n = cast(SDXLEngine, self.engine).scheduler.config.num_train_timesteps
        return type(self).call_options.replace(timestep={"range": Range(0, n - 1)})

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        return sdxl_working_size(height, width)


class OsorFluxRemover(OsorRemover):
    name: ClassVar[str] = "osor-flux"
    family: ClassVar[Backbone] = "flux"
    preset_name: ClassVar[str] = "flux-fill"
    engine_cls: ClassVar[type[OsorEngine]] = FluxEngine
    call_options: OptionSet = OptionSet(
        # The declaration bounds the value; the engine reads an integer in [1, 999] as the authors' t / 1000.
        Option(
            "timestep",
            float,
            range=Range(0, 1000, low_inclusive=False, high_inclusive=False),
            default_note="the weights' training timestep (paper: s = 0.4)",
            help="flow-matching noise level s in (0, 1) of the one step (Sec. 3.2); an integer in "
            "[1, 999] is the authors' t and means s = t / 1000",
        ),
        _BLEND,
        _SOFT_MASK,
        _PASTE_BACK,
        Option(
            "guidance",
            float,
            default=FLUX_GUIDANCE,
            range=Range(0, 100),
            help="FLUX Fill's guidance embedding",
        ),
    )

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """Phase II: long side capped at 1024, floored to 16; Phase I: native size rounded up to 16, no cap
        (the authors' two FLUX inference scripts)."""
        return flux_working_size(height, width, RESOLUTION["flux"] if self.phase == 2 else None)


# One remover class per OSOR backbone: its preset and engine (the trainer and the fixtures look them up here).
REMOVERS: dict[str, type[OsorRemover]] = {cls.family: cls for cls in (OsorSDXLRemover, OsorFluxRemover)}


# ------------------------------------------------------------------------------------------------------------
# Registration
# ------------------------------------------------------------------------------------------------------------
def _weights_requirement(family: Backbone) -> Any:
    import functools

    from ...registry import WeightRequirement
    from .weights import HUB_FILES, HUB_REPO

    return WeightRequirement(
        name=f"osor-{family}-weights",
        description=f"OSOR {family} Phase II LoRA + alpha head ({HUB_FILES[(family, 2)]})",
        locate=functools.partial(locate_weights, family, 2),
        hub_id=HUB_REPO,
        fetch_hint=fetch_hint(family),
    )


def register() -> None:
    """Register ``osor-sdxl`` and ``osor-flux`` (called once by :mod:`erasekit.methods`)."""
    from ...registry import MethodSpec, register_method
    from ..baselines import backbone_requirement

    paper = "Zhou et al., OSOR: One-Step Object Removal (2025)"
    for cls, description, priority in (
        (OsorSDXLRemover, "OSOR one-step effect-aware removal on SDXL-Inpainting (alpha head, t=400)", 50),
        (OsorFluxRemover, "OSOR one-step effect-aware removal on FLUX.1 Fill (alpha head, s=0.4)", 60),
    ):
        register_method(
            MethodSpec(
                name=cls.name,
                description=description,
                factory=cls,
                weights=(backbone_requirement(cls.preset_name), _weights_requirement(cls.family)),
                auto_priority=priority,
                family="diffusion",
                paper=paper,
            )
        )

"""The OSOR removers (``osor-sdxl``, ``osor-flux``): the remover contract around the one-step engine of
:mod:`erasekit.methods.osor.engine` (arXiv:2606.28094, Sec. 3.2-3.4).
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np

from ...backbones.device import PlacementOptions
from ...backbones.presets import PRESETS, load_pipeline
from ...hd import SizeConstraints
from ...options import Option, OptionSet, Range
from ...types import InvalidInputError, MissingWeightsError, RemovalRequest, RemovalResult
from ..base import Remover
from .alpha_head import add_alpha_head, has_alpha_head
from .engine import (
    BLENDS,
    DEFAULT_PROMPT,
    FLUX_GUIDANCE,
    NO_WEIGHTS,
    Blend,
    FluxEngine,
    OsorEngine,
    SDXLEngine,
    flux_working_size,
    sdxl_working_size,
)
from .weights import (
    LoadReport,
    OsorWeights,
    apply_osor_weights,
    fetch_hint,
    load_osor_weights,
    locate_weights,
)


# --------------------------------------------------------------------------------------------------------------------
# The removers
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OsorSettings:
    timestep: float
    blend: Blend
    guidance: float | None = None


@dataclass
class _Job:
    image: np.ndarray
    mask: np.ndarray
    settings: OsorSettings
    seed: int
    work_hw: tuple[int, int] = (0, 0)
    work_image: np.ndarray | None = None
    work_mask: np.ndarray | None = None


# Options both backbones take; each remover adds its own timestep (and FLUX its guidance).
_BLEND = Option("blend", str, choices=BLENDS,
                default_note="alpha when the weights have the alpha head, else mask",
                help="alpha: blend latents by the predicted alpha (Eq. 13; needs Phase II weights); "
                     "mask: the hard max-pooled mask (Eq. 6)")
_PASTE_BACK = Option("paste_back", bool, default=True,
                     help="paste through mask ∪ alpha so every other pixel stays bit-identical; false "
                          "returns the decoded image everywhere, as the authors' scripts do")


class OsorRemover(Remover):
    """OSOR on one backbone. Build once (loads the backbone and weights), call many times; thread-safe."""

    family: ClassVar[str]
    preset_name: ClassVar[str]
    engine_cls: ClassVar[type[OsorEngine]]
    edits_outside_mask: ClassVar[bool] = True  # the alpha map extends the paste region (shadows, reflections)
    constraints: ClassVar[SizeConstraints] = SizeConstraints()  # the paper's resizing happens inside inpaint

    def paste_region(self, mask: np.ndarray, alpha: np.ndarray | None, request: RemovalRequest) -> np.ndarray:
        """``paste_back=False`` (per call) returns the decoded image everywhere, as the authors' scripts do;
        the default pastes through mask ∪ alpha so everything else stays bit-identical."""
        if not request.options["paste_back"]:
            return np.ones_like(mask)
        return super().paste_region(mask, alpha, request)

    def __init__(self, model: str | Path | None = None, weights: str | Path | None = None, device: str | None = None,
                 dtype: str | None = None, allow_download: bool = False, offload: str = "none",
                 attention_slicing: bool | str | int = False, vae_tiling: bool = False, pipeline: Any = None,
                 prompt: str = DEFAULT_PROMPT, alpha_head: bool = True, batch_size: int = 4,
                 merge_lora: bool = True, release_text_encoders: bool | None = None):
        """``model``: backbone preset, local diffusers folder or Hub id (default: this method's preset).
        ``weights``: OSOR weights (authors' ``.pth`` or an erasekit folder); default: the released Phase II file
        found locally; ``"none"``: no OSOR weights (the bare backbone, with a fresh alpha head if ``alpha_head``) —
        for plumbing checks and benchmarks only. ``pipeline``: an already loaded diffusers pipeline (its denoiser
        is modified in place). ``batch_size``: images per forward pass in :meth:`inpaint_batch`. ``release_text_encoders``: drop them after caching the prompt (default:
        yes when this remover loaded the pipeline).

        ``timestep``, ``blend`` (and FLUX's ``guidance``) are per-call options (``RemovalRequest.options``); their
        defaults are the weights' training timestep (paper: t = 400 / s = 0.4), ``alpha`` blending when the model
        has the alpha head (else ``mask``), and guidance 30."""
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        self.osor_weights: OsorWeights | None = self._read_weights(weights)
        if pipeline is None:
            pipeline = self._load(model, device=device, dtype=dtype, allow_download=allow_download,
                                  placement=PlacementOptions(offload=offload,  # type: ignore[arg-type]
                                                             attention_slicing=attention_slicing,
                                                             vae_tiling=vae_tiling))
            release_text_encoders = True if release_text_encoders is None else release_text_encoders
        self.pipe = pipeline
        self.model = str(model) if model is not None else self.preset_name
        self.engine = self.engine_cls(pipeline, prompt=prompt)
        denoiser = self.engine.denoiser
        self.load_report: LoadReport | None = None
        if self.osor_weights is not None:
            self.load_report = apply_osor_weights(denoiser, self.osor_weights, merge=merge_lora)
        elif alpha_head:
            add_alpha_head(denoiser)
        denoiser.eval()
        self.batch_size = batch_size
        self.call_options = self.bind_options(self.osor_weights.timestep if self.osor_weights else None)
        if release_text_encoders:
            self.engine.release_text_encoders()
        self._lock = threading.Lock()
        self._local = threading.local()

    # ---- construction --------------------------------------------------------------------------------------
    def _read_weights(self, weights) -> OsorWeights | None:
        if weights is not None and str(weights).lower() == NO_WEIGHTS:
            return None
        if weights is None:
            found = locate_weights(self.family, 2)  # type: ignore[arg-type]
            if found is None:
                raise MissingWeightsError(f"OSOR {self.family} weights are not on this machine; fetch them with: "
                                          f"{fetch_hint(self.family)} (then pass --weights PATH or put the file "  # type: ignore[arg-type]
                                          f"under $ERASEKIT_MODELS_DIR/osor/)")
            weights = found
        return load_osor_weights(weights, self.family)  # type: ignore[arg-type]

    def _load(self, model, *, device, dtype, allow_download, placement):
        import diffusers

        preset = PRESETS[self.preset_name]
        cls = getattr(diffusers, preset.pipeline_class)
        if model is None or str(model) in PRESETS or not Path(str(model)).expanduser().exists():
            return load_pipeline(model or preset, device=device, dtype=dtype, allow_download=allow_download,
                                 pipeline_cls=cls, placement=placement)
        return load_pipeline(preset, path=model, device=device, dtype=dtype, pipeline_cls=cls, placement=placement)

    def describe(self) -> dict[str, Any]:
        w = self.osor_weights
        return {**super().describe(), "backbone": self.preset_name, "model": self.model,
                "weights": (w.source if w else NO_WEIGHTS), "phase": (w.phase if w else None),
                "alpha_head": has_alpha_head(self.engine.denoiser), "timestep": self.defaults.timestep,
                "blend": self.defaults.blend, "prompt": self.engine.prompt,
                "weights_report": self.load_report.summary() if self.load_report else None,
                "device": str(self.engine.device), "dtype": str(self.engine.dtype).replace("torch.", "")}

    # ---- settings ----------------------------------------------------------------------------------------------
    def bind_options(self, weights_timestep: float | None) -> OptionSet:
        """The declaration with the defaults the loaded model decides: the weights' training timestep (else
        the paper's) and the blend its alpha head allows."""
        return self.declared_options().with_defaults(owner=self.name,
                                                     timestep=self.engine.check_timestep(weights_timestep),
                                                     blend=self.engine.default_blend)

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

    # ---- single requests (the Remover contract) --------------------------------------------------------------
    def inpaint(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest):
        mode = getattr(self._local, "mode", None)
        job = _Job(image, mask, self.settings(request), 0 if request.seed is None else int(request.seed))
        if mode == "collect":  # first pass of inpaint_batch: record what the shared HD strategy asks for
            self._local.jobs.append(job)
            return image, np.zeros(mask.shape, np.float32)
        if mode == "replay":  # second pass: hand back the batched results in the same order
            return self._local.results.popleft()
        return self._run_jobs([job])[0]

    # ---- many requests in batches --------------------------------------------------------------------------
    def inpaint_batch(self, requests: Sequence[RemovalRequest]) -> list[RemovalResult]:
        """Process several requests with batched forward passes (``batch_size`` images each, padded to a common
        size). Each result equals what ``self(request)`` gives, up to the padding's effect on border context; HD
        strategy, paste-back and empty-mask handling are the base's, unchanged."""
        self._local.mode, self._local.jobs = "collect", []
        try:
            for request in requests:
                self(request)
            jobs = self._local.jobs
        finally:
            self._local.mode = None
        results = self._run_jobs(jobs)
        self._local.mode, self._local.results = "replay", deque(results)
        try:
            return [self(request) for request in requests]
        finally:
            self._local.mode = None

    def _prepare(self, job: _Job) -> None:
        from PIL import Image

        h, w = job.mask.shape
        job.work_hw = self.working_size(h, w)
        wh, ww = job.work_hw
        if (wh, ww) == (h, w):
            job.work_image, job.work_mask = job.image, job.mask
        else:
            job.work_image = np.asarray(Image.fromarray(job.image).resize((ww, wh), Image.BICUBIC))
            mask_u8 = Image.fromarray((job.mask > 0).astype(np.uint8) * 255)
            job.work_mask = (np.asarray(mask_u8.resize((ww, wh), Image.NEAREST)) > 0).astype(np.float32)

    def _run_jobs(self, jobs: list[_Job]) -> list[tuple[np.ndarray, np.ndarray]]:
        for job in jobs:
            self._prepare(job)
        order = sorted(range(len(jobs)), key=lambda i: (repr(jobs[i].settings), jobs[i].work_hw))
        results: list[Any] = [None] * len(jobs)
        start = 0
        while start < len(order):
            first = jobs[order[start]].settings
            chunk = [order[start]]
            while (len(chunk) < self.batch_size and start + len(chunk) < len(order)
                   and jobs[order[start + len(chunk)]].settings == first):
                chunk.append(order[start + len(chunk)])
            for index, result in zip(chunk, self._run_chunk([jobs[i] for i in chunk])):
                results[index] = result
            start += len(chunk)
        return results

    def _run_chunk(self, jobs: list[_Job]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One forward pass: pad to the chunk's common working size, run, crop, resize back to each input."""
        import torch.nn.functional as F
        from PIL import Image

        from ...convert import image_to_tensor, mask_to_tensor, tensor_to_image

        ph = max(j.work_hw[0] for j in jobs)
        pw = max(j.work_hw[1] for j in jobs)
        images, masks = [], []
        for j in jobs:
            pad = ((0, ph - j.work_hw[0]), (0, pw - j.work_hw[1]))
            if pad == ((0, 0), (0, 0)):
                images.append(j.work_image)
                masks.append(j.work_mask)
            else:  # edge padding: the border context continues instead of a black frame
                images.append(np.pad(j.work_image, pad + ((0, 0),), mode="edge"))
                masks.append(np.pad(j.work_mask, pad))
        settings = jobs[0].settings
        with self._lock:
            out = self.engine.run(image_to_tensor(np.stack(images)), mask_to_tensor(np.stack(masks)),
                                  [j.seed for j in jobs], timestep=settings.timestep, blend=settings.blend,
                                  **({"guidance": settings.guidance} if settings.guidance is not None else {}))
        self.last_timings = out.timings
        pixels = tensor_to_image(out.images)
        # The paste weight at pixel resolution: α̂ upsampled bilinearly (as the authors do), the hard latent mask
        # nearest (it is exactly the region Eq. 6 replaced).
        mode = "bilinear" if settings.blend == "alpha" else "nearest"
        weight = F.interpolate(out.weight, size=(ph, pw), mode=mode).clamp(0, 1).cpu().numpy()[:, 0]
        results = []
        for j, px, wt in zip(jobs, pixels, weight):
            wh, ww = j.work_hw
            px, wt = px[:wh, :ww], wt[:wh, :ww]
            h, w = j.mask.shape
            if (wh, ww) != (h, w):
                px = np.asarray(Image.fromarray(px).resize((w, h), Image.BICUBIC))
                wt = np.asarray(Image.fromarray(wt.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
            results.append((np.ascontiguousarray(px), np.clip(wt, 0.0, 1.0).astype(np.float32)))
        return results


class OsorSDXLRemover(OsorRemover):
    name: ClassVar[str] = "osor-sdxl"
    family: ClassVar[str] = "sdxl"
    preset_name: ClassVar[str] = "sdxl-inpaint"
    engine_cls: ClassVar[type[OsorEngine]] = SDXLEngine
    call_options: OptionSet = OptionSet(
        # SDXL's DDPM schedule has 1000 training timesteps; the loaded scheduler narrows this if it has fewer.
        Option("timestep", int, range=Range(0, 999),
               default_note="the weights' training timestep (paper: t = 400)",
               help="DDPM timestep t of the one denoising step (Sec. 3.2)"),
        _BLEND, _PASTE_BACK)

    def declared_options(self) -> OptionSet:
        n = cast(SDXLEngine, self.engine).scheduler.config.num_train_timesteps
        return type(self).call_options.replace(timestep={"range": Range(0, n - 1)})

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        return sdxl_working_size(height, width)


class OsorFluxRemover(OsorRemover):
    name: ClassVar[str] = "osor-flux"
    family: ClassVar[str] = "flux"
    preset_name: ClassVar[str] = "flux-fill"
    engine_cls: ClassVar[type[OsorEngine]] = FluxEngine
    call_options: OptionSet = OptionSet(
        # The declaration bounds the value; the engine reads an integer in [1, 999] as the authors' t / 1000.
        Option("timestep", float, range=Range(0, 1000, low_inclusive=False, high_inclusive=False),
               default_note="the weights' training timestep (paper: s = 0.4)",
               help="flow-matching noise level s in (0, 1) of the one step (Sec. 3.2); an integer in "
                    "[1, 999] is the authors' t and means s = t / 1000"),
        _BLEND, _PASTE_BACK,
        Option("guidance", float, default=FLUX_GUIDANCE, range=Range(0, 100),
               help="FLUX Fill's guidance embedding"))

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        return flux_working_size(height, width)


# --------------------------------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------------------------------
def _weights_requirement(family: str) -> Any:
    import functools

    from ...registry import WeightRequirement
    from .weights import HUB_FILES, HUB_REPO

    return WeightRequirement(
        name=f"osor-{family}-weights", description=f"OSOR {family} Phase II LoRA + alpha head ({HUB_FILES[(family, 2)]})",
        locate=functools.partial(locate_weights, family, 2), hub_id=HUB_REPO, fetch_hint=fetch_hint(family))  # type: ignore[arg-type]


def register() -> None:
    """Register ``osor-sdxl`` and ``osor-flux`` (called once by :mod:`erasekit.methods`)."""
    from ...registry import MethodSpec, register_method
    from ..baselines import backbone_requirement

    paper = "Zhou et al., OSOR: One-Step Object Removal (2025)"
    for cls, description, priority in (
        (OsorSDXLRemover, "OSOR one-step effect-aware removal on SDXL-Inpainting (alpha head, t=400)", 50),
        (OsorFluxRemover, "OSOR one-step effect-aware removal on FLUX.1 Fill (alpha head, s=0.4)", 60),
    ):
        register_method(MethodSpec(
            name=cls.name, description=description, factory=cls,
            weights=(backbone_requirement(cls.preset_name), _weights_requirement(cls.family)),
            auto_priority=priority, family="diffusion", paper=paper,
        ))

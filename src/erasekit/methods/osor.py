"""OSOR: one-step, effect-aware object removal on SDXL-Inpainting (``osor-sdxl``) and FLUX Fill (``osor-flux``).

One forward pass of the adapted backbone restores the latent of the whole image (Sec. 3.2); the alpha head says
where to use it (Sec. 3.4, App. B.5). The recipe follows the authors' public inference code exactly:

SDXL-Inpainting (epsilon prediction)
    ``z̄ = E(x)`` of the full, unmasked image; ``z_t = DDPMScheduler.add_noise(z̄, ε, t)`` with t = 400 (Eq. 3);
    UNet input ``cat[z_t, maxpool8(m), z̄]``; the fixed prompt's two CLIP embeddings and pooled embedding;
    ``time_ids = [H, W, 0, 0, H, W]``; ``x̂0`` = the DDPM scheduler's ``pred_original_sample`` (Eq. 5, clipped
    exactly when the scheduler config says ``clip_sample``).
FLUX Fill (flow / velocity prediction)
    ``z_s = (1-s)·z̄ + s·ε`` with s = 0.4 (Eq. 3), no resolution shift; transformer input is FLUX Fill's own layout
    ``cat[pack(z_s), pack(z̄), pack(unshuffle8(m))]`` along channels (64 + 64 + 256); timestep s (the transformer
    multiplies it by 1000), guidance embedding 30; ``x̂0 = z_s - s·v`` (Eq. 5).
Both
    ``α̂ = σ(ℓ)`` from the alpha head (Eq. 12) and ``z_out = α̂·x̂0 + (1-α̂)·z̄`` (Eq. 13) — or, with Phase I
    weights / ``blend="mask"``, ``z_out = m_z·x̂0 + (1-m_z)·z̄`` with the max-pooled mask (Eq. 6) — then decode.
    The prompt "Remove the instance of object" is encoded once per backbone and cached.

Working size (authors' scripts): SDXL scales the short side to 512 (smaller images are kept) and rounds both sides
up to a multiple of 16; FLUX caps the long side at 1024 and floors both sides to a multiple of 16. Images are resized
with PIL (bicubic; masks nearest), the output is resized back to the input size, and the remover base pastes it onto
the input through ``max(mask, α̂)`` (``edits_outside_mask``), so the effect region the alpha found is replaced too
and everything else stays bit-identical. Larger images also go through the shared HD strategies first.

Determinism: the only randomness is ε, drawn per image as
``torch.randn(latent.shape, generator=torch.Generator("cpu").manual_seed(seed))`` at the unpacked latent shape
(1×C×h×w) and moved to the device, so a seed gives the same noise on every machine and whatever else is in the
batch. ``seed=None`` means seed 0. The VAE posterior's mode is used (the authors sample it; the mode is
deterministic and is the sample's expectation).
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from ..backbones import latents as L
from ..backbones import schedule as S
from ..backbones.device import PlacementOptions
from ..backbones.presets import PRESETS, load_pipeline
from ..hd import SizeConstraints
from ..types import InvalidInputError, MissingWeightsError, RemovalRequest, RemovalResult
from .alpha_head import add_alpha_head, alpha_from_logits, has_alpha_head, split_output
from .base import Remover
from .osor_weights import (
    DEFAULT_TIMESTEP,
    LoadReport,
    OsorWeights,
    apply_osor_weights,
    fetch_hint,
    load_osor_weights,
    locate_weights,
)

if TYPE_CHECKING:
    import torch

DEFAULT_PROMPT = "Remove the instance of object"
Blend = Literal["alpha", "mask"]
BLENDS: tuple[str, ...] = ("alpha", "mask")
NO_WEIGHTS = "none"


# --------------------------------------------------------------------------------------------------------------------
# Working sizes (the authors' inference scripts)
# --------------------------------------------------------------------------------------------------------------------
def sdxl_working_size(height: int, width: int, resolution: int = 512) -> tuple[int, int]:
    """Short side scaled to ``resolution`` (never up), then both sides rounded up to a multiple of 16."""
    if min(height, width) >= resolution:
        if width < height:
            height, width = int(height * resolution / width), resolution
        else:
            height, width = resolution, int(width * resolution / height)
    return -(-height // 16) * 16, -(-width // 16) * 16


def flux_working_size(height: int, width: int, max_side: int = 1024) -> tuple[int, int]:
    """Long side capped at ``max_side`` (aspect kept), then both sides floored to a multiple of 16 (at least 16)."""
    if max(height, width) > max_side:
        scale = max_side / float(max(height, width))
        height, width = max(1, int(height * scale)), max(1, int(width * scale))
    return max(16, height // 16 * 16), max(16, width // 16 * 16)


# --------------------------------------------------------------------------------------------------------------------
# The latent maths shared by both backbones
# --------------------------------------------------------------------------------------------------------------------
def composite(x0: torch.Tensor, z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``weight·x̂0 + (1-weight)·z̄``: Eq. 13 with the alpha map, Eq. 6 with the max-pooled mask."""
    weight = weight.to(x0.dtype)
    return weight * x0 + (1 - weight) * z


def seeded_noise(shape: Sequence[int], seeds: Sequence[int], *, device=None, dtype=None) -> torch.Tensor:
    """ε for a batch: one ``torch.randn(1×C×h×w, generator=Generator("cpu").manual_seed(seed))`` per image."""
    import torch

    per_image = (1, *shape[1:])
    noise = [torch.randn(per_image, generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds]
    return torch.cat(noise).to(device=device, dtype=dtype)


@dataclass
class OsorOutput:
    """One batch through OSOR. Images N×3×H×W in [-1, 1]; latents N×C×h×w (FLUX: unpacked).

    ``weight`` is the latent blend weight actually used: α̂ (Eq. 13) or the max-pooled mask (Eq. 6);
    ``alpha`` is α̂ whenever the backbone has the alpha head (also under ``blend="mask"``), else None.
    """

    images: torch.Tensor
    weight: torch.Tensor
    alpha: torch.Tensor | None
    x0: torch.Tensor
    z_lq: torch.Tensor
    z_t: torch.Tensor
    z_out: torch.Tensor
    timings: dict[str, float] = field(default_factory=dict)
    logits: torch.Tensor | None = None  # the alpha head's raw logits (the Eq. 14 losses want them, not α̂)


_PROMPT_CACHE: dict[tuple, dict[str, torch.Tensor]] = {}
_PROMPT_LOCK = threading.Lock()


class OsorEngine(ABC):
    """The one-step restoration on a loaded diffusers pipeline: tensors in, tensors out, no resizing."""

    family: ClassVar[str]

    def __init__(self, pipe: Any, *, prompt: str = DEFAULT_PROMPT):
        self.pipe = pipe
        self.prompt = prompt
        self.vae = pipe.vae
        self._placed: tuple[Any, tuple[torch.device, torch.dtype]] | None = None  # see _placement()

    @property
    @abstractmethod
    def denoiser(self) -> Any: ...

    @property
    def device(self) -> torch.device:
        """Where inputs go. With CPU offload the denoiser sits on the CPU between calls, so this is the pipeline's
        execution device."""
        return self._placement()[0]

    @property
    def dtype(self) -> torch.dtype:
        return self._placement()[1]

    def _placement(self) -> tuple[torch.device, torch.dtype]:
        # diffusers finds both by walking every module (on a CPU, about as long as a tiny model's forward pass),
        # so the answer is kept until the denoiser's weights move or change type.
        anchor = next(self.denoiser.parameters())
        where = (anchor.device, anchor.dtype)
        if self._placed is None or self._placed[0] != where:
            device = getattr(self.pipe, "_execution_device", None) or anchor.device
            self._placed = (where, (device, self.denoiser.dtype))
        return self._placed[1]

    # ---- the fixed prompt, encoded once per backbone ------------------------------------------------------------
    def prompt_embeddings(self) -> dict[str, torch.Tensor]:
        """The fixed prompt's embeddings (batch 1), computed with the pipeline's own ``encode_prompt`` and cached
        per (backbone, prompt, device, dtype) for the life of the process."""
        key = (self.family, getattr(self.pipe, "name_or_path", None) or id(self.denoiser), self.prompt,
               str(self.device), str(self.dtype))
        with _PROMPT_LOCK:
            if key not in _PROMPT_CACHE:
                if getattr(self.pipe, "text_encoder", None) is None:
                    raise InvalidInputError("the backbone's text encoders were released before the OSOR prompt was "
                                            "encoded; load the pipeline with its text encoders")
                import torch

                for name in ("text_encoder", "text_encoder_2"):  # no dropout in the fixed embedding
                    if getattr(self.pipe, name, None) is not None:
                        getattr(self.pipe, name).eval()
                with torch.no_grad():
                    _PROMPT_CACHE[key] = {k: v.to(self.dtype) for k, v in self._encode_prompt().items()}
            return _PROMPT_CACHE[key]

    def release_text_encoders(self) -> None:
        """Drop the text encoders once the prompt is cached (the prompt never changes; T5-XXL alone is ~9 GB)."""
        self.prompt_embeddings()
        for name in ("text_encoder", "text_encoder_2"):
            if getattr(self.pipe, name, None) is not None:
                setattr(self.pipe, name, None)

    @abstractmethod
    def _encode_prompt(self) -> dict[str, torch.Tensor]: ...

    # ---- the one step ------------------------------------------------------------------------------------------
    @abstractmethod
    def check_timestep(self, value: float | None) -> float:
        """Validate/normalise a timestep option (None -> the paper's default)."""

    @abstractmethod
    def denoise(self, z_lq: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor,
                timestep: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Eq. 3–5 (and 12): returns (z_t, x̂0, alpha logits or None), latents unpacked N×C×h×w."""

    def run(self, images: torch.Tensor, masks: torch.Tensor, seeds: Sequence[int], *,
            timestep: float | None = None, blend: Blend | None = None, **denoise_options: Any) -> OsorOutput:
        """Remove ``masks`` (N×1×H×W, {0,1}) from ``images`` (N×3×H×W in [-1, 1]); H, W multiples of 16.

        ``denoise_options`` go to :meth:`denoise` (FLUX: ``guidance``)."""
        import torch

        timestep = self.check_timestep(timestep)
        blend = blend or ("alpha" if has_alpha_head(self.denoiser) else "mask")
        if blend == "alpha" and not has_alpha_head(self.denoiser):
            raise InvalidInputError("blend='alpha' needs the alpha head (Phase II weights); use blend='mask'")
        if blend not in BLENDS:
            raise InvalidInputError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
        device, dtype = self._placement()
        with torch.no_grad():
            return self.forward(images.to(device=device, dtype=dtype), masks.to(device=device, dtype=dtype),
                                lambda shape: seeded_noise(shape, seeds, device=device, dtype=dtype),
                                timestep=timestep, blend=blend, **denoise_options)

    def forward(self, images: torch.Tensor, masks: torch.Tensor, make_noise: Callable[[torch.Size], torch.Tensor],
                *, timestep: float, blend: Blend, **denoise_options: Any) -> OsorOutput:
        """The one-step restoration on prepared tensors (validated timestep and blend, the engine's device/dtype).

        Differentiable through the denoiser and the VAE decoder, so the trainer's generator step is this very
        code; :meth:`run` wraps it in ``no_grad``. The frozen VAE encoder never needs gradients.
        ``make_noise(latent_shape)`` draws ε."""
        import torch

        device = images.device
        timings: dict[str, float] = {}
        start = _tick(device)
        with torch.no_grad():
            z_lq = L.encode(self.vae, images)
        timings["vae_encode"] = _tick(device) - start
        noise = make_noise(z_lq.shape).to(device=device, dtype=z_lq.dtype)
        start = _tick(device)
        z_t, x0, logits = self.denoise(z_lq, noise, masks, timestep, **denoise_options)
        timings["denoiser"] = _tick(device) - start
        alpha = alpha_from_logits(logits) if logits is not None else None                # Eq. 12
        weight = alpha if blend == "alpha" else L.mask_to_latent(masks, z_lq.shape[-2:], "max")
        z_out = composite(x0, z_lq, weight)  # Eq. 13 (alpha) / Eq. 6 (mask)
        start = _tick(device)
        decoded = L.decode(self.vae, z_out)
        timings["vae_decode"] = _tick(device) - start
        return OsorOutput(decoded, weight.float(), alpha, x0, z_lq, z_t, z_out, timings, logits)


def _tick(device) -> float:
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        torch.cuda.synchronize(device)
    return time.perf_counter()


class SDXLEngine(OsorEngine):
    """OSOR on SDXL-Inpainting: a 9-channel UNet, epsilon prediction, DDPM noising at integer t."""

    family = "sdxl"

    def __init__(self, pipe: Any, *, prompt: str = DEFAULT_PROMPT):
        from diffusers import DDPMScheduler

        super().__init__(pipe, prompt=prompt)
        cfg = pipe.unet.config
        if cfg.in_channels != 9 or cfg.addition_embed_type != "text_time":
            raise InvalidInputError(f"osor-sdxl needs an SDXL inpainting UNet (9 input channels: z_t, mask, z̄, and "
                                    f"SDXL's text_time conditioning); this one has {cfg.in_channels} input channels "
                                    f"and addition_embed_type={cfg.addition_embed_type!r}")
        # The authors build a DDPMScheduler from the checkpoint's scheduler config; from_config does the same.
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    @property
    def denoiser(self):
        return self.pipe.unet

    def _encode_prompt(self):
        prompt_embeds, _, pooled, _ = self.pipe.encode_prompt(
            self.prompt, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False)
        return {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled}

    def check_timestep(self, value):
        t = DEFAULT_TIMESTEP["sdxl"] if value is None else value
        n = self.scheduler.config.num_train_timesteps
        if isinstance(t, bool) or not float(t).is_integer() or not 0 <= int(t) < n:
            raise InvalidInputError(f"osor-sdxl timestep must be an integer in [0, {n - 1}], got {value!r}")
        return int(t)

    def conditioning(self, z_t, z_lq, mask, timestep) -> dict[str, Any]:
        """The UNet call's arguments: ``cat[z_t, maxpool8(m), z̄]``, t, prompt embeddings, ``[H, W, 0, 0, H, W]``."""
        import torch

        n = z_lq.shape[0]
        height, width = mask.shape[-2:]
        embeds = self.prompt_embeddings()
        mask_latent = L.mask_to_latent(mask, z_lq.shape[-2:], "max").to(z_lq.dtype)
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=z_lq.dtype,
                                device=z_lq.device).repeat(n, 1)
        return {
            "sample": torch.cat([z_t, mask_latent, z_lq], dim=1),
            "timestep": torch.full((n,), timestep, dtype=torch.long, device=z_lq.device),
            "encoder_hidden_states": embeds["prompt_embeds"].expand(n, -1, -1),
            "added_cond_kwargs": {"text_embeds": embeds["pooled_prompt_embeds"].expand(n, -1), "time_ids": time_ids},
        }

    def denoise(self, z_lq, noise, mask, timestep):
        import torch

        steps = torch.full((z_lq.shape[0],), timestep, dtype=torch.long, device=z_lq.device)
        z_t = S.add_noise(self.scheduler, z_lq, noise, steps)  # Eq. 3
        out = self.denoiser(**self.conditioning(z_t, z_lq, mask, timestep), return_dict=False)[0]  # Eq. 4
        eps, logits = split_output(out, "sdxl")
        cfg = self.scheduler.config
        clip = cfg.clip_sample_range if getattr(cfg, "clip_sample", False) else None
        x0 = S.predict_x0(eps, z_t, timestep, "epsilon", schedule=self.scheduler, clip_sample_range=clip)  # Eq. 5
        return z_t, x0, logits


class FluxEngine(OsorEngine):
    """OSOR on FLUX Fill: packed tokens, flow matching at noise level s, guidance embedding."""

    family = "flux"

    def __init__(self, pipe: Any, *, prompt: str = DEFAULT_PROMPT, guidance: float = 30.0):
        super().__init__(pipe, prompt=prompt)
        channels = pipe.transformer.config.in_channels
        if channels != 384:
            raise InvalidInputError(f"osor-flux needs FLUX.1 Fill (384 input channels: 64 latent + 64 image + 256 "
                                    f"mask); this transformer has {channels}")
        self.guidance = guidance

    @property
    def denoiser(self):
        return self.pipe.transformer

    def _encode_prompt(self):
        prompt_embeds, pooled, text_ids = self.pipe.encode_prompt(
            prompt=self.prompt, prompt_2=self.prompt, device=self.device, num_images_per_prompt=1,
            max_sequence_length=512)
        return {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled, "text_ids": text_ids}

    def check_timestep(self, value):
        """s in (0, 1); values in [1, 1000) are read as the authors' integer t and divided by 1000."""
        s = DEFAULT_TIMESTEP["flux"] if value is None else value
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            raise InvalidInputError(f"osor-flux timestep must be a number, got {value!r}")
        if 1 <= s < 1000 and float(s).is_integer():  # the authors' CLI takes t = 400 and divides by 1000
            s = s / 1000.0
        if not 0 < s < 1:
            raise InvalidInputError(f"osor-flux timestep must be a noise level in (0, 1) (or t in [1, 999]), "
                                    f"got {value!r}")
        return float(s)

    def conditioning(self, z_t_packed, z_lq, mask, s, guidance: float | None = None) -> dict[str, Any]:
        """The transformer call's arguments in FLUX Fill's layout (packed z_s, packed z̄, packed 8×8-unshuffled m)."""
        import torch
        from diffusers import FluxFillPipeline

        n, _, h, w = z_lq.shape
        embeds = self.prompt_embeddings()
        mask_tokens = L.fill_mask_tokens(mask, L.vae_scale_factor(self.vae)).to(z_lq.dtype)
        kwargs = {
            "hidden_states": torch.cat([z_t_packed, L.pack_latents(z_lq), mask_tokens], dim=2),
            # diffusers' transformer multiplies timestep (and guidance) by 1000.
            "timestep": torch.full((n,), s, dtype=z_lq.dtype, device=z_lq.device),
            "pooled_projections": embeds["pooled_prompt_embeds"].expand(n, -1),
            "encoder_hidden_states": embeds["prompt_embeds"].expand(n, -1, -1),
            "txt_ids": embeds["text_ids"],
            "img_ids": FluxFillPipeline._prepare_latent_image_ids(n, h // 2, w // 2, z_lq.device, z_lq.dtype),
            "guidance": None,
        }
        if self.denoiser.config.guidance_embeds:
            g = self.guidance if guidance is None else guidance
            kwargs["guidance"] = torch.full((n,), g, dtype=torch.float32, device=z_lq.device)
        return kwargs

    def denoise(self, z_lq, noise, mask, timestep, guidance: float | None = None):
        hw = tuple(z_lq.shape[-2:])
        z_t = S.flow_noise(L.pack_latents(z_lq), L.pack_latents(noise), timestep)  # Eq. 3, no resolution shift
        out = self.denoiser(**self.conditioning(z_t, z_lq, mask, timestep, guidance), return_dict=False)[0]
        v, logits = split_output(out, "flux")
        x0 = S.predict_x0(v, z_t, timestep, "flow")  # Eq. 5: z_s - s·v
        return (L.unpack_latents(z_t, hw), L.unpack_latents(x0, hw),
                None if logits is None else L.unpack_latents(logits, hw))


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


class OsorRemover(Remover):
    """OSOR on one backbone. Build once (loads the backbone and weights), call many times; thread-safe."""

    family: ClassVar[str]
    preset_name: ClassVar[str]
    engine_cls: ClassVar[type[OsorEngine]]
    edits_outside_mask: ClassVar[bool] = True  # the alpha map extends the paste region (shadows, reflections)
    constraints: ClassVar[SizeConstraints] = SizeConstraints()  # the paper's resizing happens inside inpaint
    option_names: ClassVar[frozenset[str]] = frozenset({"timestep", "blend", "paste_back"})

    def paste_region(self, mask: np.ndarray, alpha: np.ndarray | None, request: RemovalRequest) -> np.ndarray:
        """``paste_back=False`` (per call) returns the decoded image everywhere, as the authors' scripts do;
        the default pastes through mask ∪ alpha so everything else stays bit-identical."""
        if not request.options.get("paste_back", True):
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
        self.defaults = self._settings({"timestep": self.osor_weights.timestep if self.osor_weights else None})
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
    def _settings(self, options: dict[str, Any]) -> OsorSettings:
        blend = options.get("blend")
        if blend is None:
            blend = "alpha" if has_alpha_head(self.engine.denoiser) else "mask"
        if blend not in BLENDS:
            raise InvalidInputError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
        if blend == "alpha" and not has_alpha_head(self.engine.denoiser):
            raise InvalidInputError("blend='alpha' needs the alpha head (Phase II weights); this model has none "
                                    "(Phase I weights or alpha_head=False) — use blend='mask'")
        try:
            timestep = self.engine.check_timestep(options.get("timestep"))
        except (TypeError, ValueError):
            raise InvalidInputError(f"bad timestep {options.get('timestep')!r}") from None
        guidance = options.get("guidance")
        if guidance is not None:
            if self.family != "flux":
                raise InvalidInputError("guidance applies to osor-flux only (SDXL's OSOR runs without guidance)")
            try:
                guidance = float(guidance)
            except (TypeError, ValueError):
                raise InvalidInputError(f"guidance must be a number, got {guidance!r}") from None
            if not math.isfinite(guidance) or guidance < 0:
                raise InvalidInputError(f"guidance must be >= 0, got {guidance}")
        return OsorSettings(timestep, blend, guidance)

    def settings(self, request: RemovalRequest) -> OsorSettings:
        """This request's settings: its options over the remover's defaults, validated."""
        merged = {"timestep": self.defaults.timestep, "blend": self.defaults.blend,
                  "guidance": self.defaults.guidance}
        merged.update({k: v for k, v in request.options.items() if v is not None})
        return self._settings(merged)

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

        from ..convert import image_to_tensor, mask_to_tensor, tensor_to_image

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

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        return sdxl_working_size(height, width)


class OsorFluxRemover(OsorRemover):
    name: ClassVar[str] = "osor-flux"
    family: ClassVar[str] = "flux"
    preset_name: ClassVar[str] = "flux-fill"
    engine_cls: ClassVar[type[OsorEngine]] = FluxEngine
    option_names: ClassVar[frozenset[str]] = OsorRemover.option_names | {"guidance"}

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        return flux_working_size(height, width)


# --------------------------------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------------------------------
def _weights_requirement(family: str) -> Any:
    import functools

    from ..registry import WeightRequirement
    from .osor_weights import HUB_FILES, HUB_REPO

    return WeightRequirement(
        name=f"osor-{family}-weights", description=f"OSOR {family} Phase II LoRA + alpha head ({HUB_FILES[(family, 2)]})",
        locate=functools.partial(locate_weights, family, 2), hub_id=HUB_REPO, fetch_hint=fetch_hint(family))  # type: ignore[arg-type]


def register() -> None:
    """Register ``osor-sdxl`` and ``osor-flux`` (called once by :mod:`erasekit.methods`)."""
    from ..registry import MethodSpec, register_method
    from .baselines import backbone_requirement

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

"""OSOR: one-step, effect-aware object removal.

Backbones: SDXL-Inpainting (``osor-sdxl``) and FLUX Fill (``osor-flux``).

One forward pass of the adapted backbone restores the latent of the whole image (Sec. 3.2); the alpha head
says where to use it (Sec. 3.4, App. B.5). The recipe follows the authors' public inference code exactly:

SDXL-Inpainting (epsilon prediction)
    ``z̄ = E(x)`` of the full, unmasked image; ``z_t = DDPMScheduler.add_noise(z̄, ε, t)`` with t = 400 (Eq.
    3); UNet input ``cat[z_t, maxpool8(m), z̄]``; the fixed prompt's two CLIP embeddings and pooled embedding;
    ``time_ids = [H, W, 0, 0, H, W]``; ``x̂0`` = the DDPM scheduler's ``pred_original_sample`` (Eq. 5, clipped
    exactly when the scheduler config says ``clip_sample``).
FLUX Fill (flow / velocity prediction)
    ``z_s = (1-s)·z̄ + s·ε`` with s = 0.4 (Eq. 3), no resolution shift; transformer input is FLUX Fill's own
    layout ``cat[pack(z_s), pack(z̄), pack(unshuffle8(m))]`` along channels (64 + 64 + 256); timestep s (the
    transformer multiplies it by 1000), guidance embedding 30; ``x̂0 = z_s - s·v`` (Eq. 5).
Both
    ``α̂ = σ(ℓ)`` from the alpha head (Eq. 12) and ``z_out = α̂·x̂0 + (1-α̂)·z̄`` (Eq. 13) — or, with Phase I
    weights / ``blend="mask"``, ``z_out = m_z·x̂0 + (1-m_z)·z̄`` with the max-pooled mask (Eq. 6) — then
    decode. The prompt "Remove the instance of object" is encoded once per backbone and cached.

Working size (authors' scripts): SDXL scales the short side to 512 (smaller images are kept) and rounds both
sides up to a multiple of 16; FLUX caps the long side at 1024 and floors both sides to a multiple of 16.
Images are resized with PIL (bicubic; masks nearest), the output is resized back to the input size, and the
remover base pastes it onto the input through ``max(mask, α̂)`` (``edits_outside_mask``), so the effect region
the alpha found is replaced too and everything else stays bit-identical. Larger images also go through the
shared HD strategies first.

Determinism: the only randomness is ε, drawn per image at the unpacked latent shape (1×C×h×w) by diffusers'
``randn_tensor`` from one ``torch.Generator("cpu").manual_seed(seed)`` per image
(:func:`~erasekit.diffusion.remover.per_image_noise`) and moved to the device, so a seed gives the same noise
on every machine and whatever else is in the batch. ``seed=None`` means seed 0. The VAE posterior's mode is
used (the authors sample it; the mode is deterministic and is the sample's expectation).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ...backbones import latents as L
from ...backbones import schedule as S
from ...diffusion.remover import PromptEmbeddingCache, per_image_noise
from ...types import InvalidInputError
from . import recipe
from .alpha_head import alpha_from_logits, has_alpha_head, split_output
from .recipe import FLUX_GUIDANCE, PROMPT, RESOLUTION, TIMESTEP

if TYPE_CHECKING:
    import torch

Blend = Literal["alpha", "mask"]
InputLayout = Literal["channels_last", "contiguous"]
BLENDS: tuple[str, ...] = ("alpha", "mask")
NO_WEIGHTS = "none"


# ------------------------------------------------------------------------------------------------------------
# Working sizes (the authors' inference scripts)
# ------------------------------------------------------------------------------------------------------------
def sdxl_working_size(height: int, width: int, resolution: int = RESOLUTION["sdxl"]) -> tuple[int, int]:
    """The inference rule: short side scaled to ``resolution`` (never up), rounded up to a multiple of 16
    (:func:`.recipe.sdxl_working_size` with ``upscale=False``)."""
    return recipe.sdxl_working_size(height, width, upscale=False, short_side=resolution)


def flux_working_size(
    height: int, width: int, max_side: int | None = RESOLUTION["flux"]
) -> tuple[int, int]:
    """Phase II (``max_side`` given): long side capped, floored to 16; Phase I (``None``): native size rounded
    up to 16 (:func:`.recipe.flux_working_size`)."""
    return recipe.flux_working_size(height, width, max_side=max_side)


# ------------------------------------------------------------------------------------------------------------
# The latent maths shared by both backbones
# ------------------------------------------------------------------------------------------------------------
def composite(x0: torch.Tensor, z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x̂0·weight + z̄·(1-weight)``: Eq. 13 with the alpha map, Eq. 6 with the max-pooled mask.

    Written as the authors write it and left to torch's type promotion, so the dtypes decide the precision
    exactly as in their scripts: an fp32 x̂0 (SDXL, see :meth:`SDXLEngine.denoise`) makes the first product
    and the sum fp32 while ``z̄·(1-weight)`` stays in the model dtype; in fp32 everything is fp32.
    """
    return x0 * weight + z * (1 - weight)


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


# Shared by every engine in the process: a second remover on the same backbone (or one whose pipeline's text
# encoders were already released) finds the fixed prompt encoded.
_PROMPT_EMBEDDINGS = PromptEmbeddingCache()


class OsorEngine(ABC):
    """The one-step restoration on a loaded diffusers pipeline: tensors in, tensors out, no resizing."""

    family: ClassVar[str]

    def __init__(self, pipe: Any, *, prompt: str = PROMPT):
        self.pipe = pipe
        self.prompt = prompt
        self.input_layout: InputLayout = "channels_last"  # see run(); "contiguous" is the authors' layout
        self.vae = pipe.vae
        self._placed: tuple[Any, tuple[torch.device, torch.dtype]] | None = None  # see _placement()

    @property
    @abstractmethod
    def denoiser(self) -> Any: ...

    @property
    def device(self) -> torch.device:
        """Where inputs go.

        With CPU offload the denoiser sits on the CPU between calls, so this is the pipeline's execution
        device.
        """
        return self._placement()[0]

    @property
    def dtype(self) -> torch.dtype:
        return self._placement()[1]

    def _placement(self) -> tuple[torch.device, torch.dtype]:
        # diffusers finds both by walking every module (on a CPU, about as long as a tiny model's forward
        # pass), so the answer is kept until the denoiser's weights move or change type.
        anchor = next(self.denoiser.parameters())
        where = (anchor.device, anchor.dtype)
        if self._placed is None or self._placed[0] != where:
            device = getattr(self.pipe, "_execution_device", None) or anchor.device
            self._placed = (where, (device, self.denoiser.dtype))
        return self._placed[1]

    # ---- the fixed prompt, encoded once per backbone -------------------------------------------------------
    def prompt_embeddings(self) -> dict[str, torch.Tensor]:
        """The fixed prompt's embeddings (batch 1), computed with the pipeline's own ``encode_prompt``.

        Cached per (backbone, prompt, device, dtype) for the life of the process.
        """
        key = (
            self.family,
            getattr(self.pipe, "name_or_path", None) or id(self.denoiser),
            self.prompt,
            str(self.device),
            str(self.dtype),
        )
        return _PROMPT_EMBEDDINGS.get(key, self._encode_fixed_prompt)

    def _encode_fixed_prompt(self) -> dict[str, torch.Tensor]:
        if getattr(self.pipe, "text_encoder", None) is None:
            raise InvalidInputError(
                "the backbone's text encoders were released before the OSOR prompt was "
                "encoded; load the pipeline with its text encoders"
            )
        import torch

        for name in ("text_encoder", "text_encoder_2"):  # no dropout in the fixed embedding
            if getattr(self.pipe, name, None) is not None:
                getattr(self.pipe, name).eval()
        with torch.no_grad():
            return {k: v.to(self.dtype) for k, v in self._encode_prompt().items()}

    def release_text_encoders(self) -> None:
        """Drop the text encoders once the prompt is cached.

        The prompt never changes; T5-XXL alone is ~9 GB.
        """
        self.prompt_embeddings()
        for name in ("text_encoder", "text_encoder_2"):
            if getattr(self.pipe, name, None) is not None:
                setattr(self.pipe, name, None)

    @abstractmethod
    def _encode_prompt(self) -> dict[str, torch.Tensor]: ...

    # ---- the one step --------------------------------------------------------------------------------------
    @abstractmethod
    def check_timestep(self, value: float | None) -> float:
        """Validate/normalise a timestep option (None -> the paper's default)."""

    @abstractmethod
    def denoise(
        self, z_lq: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor, timestep: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Eq. 3–5 (and 12): returns (z_t, x̂0, alpha logits or None), latents unpacked N×C×h×w."""

    @property
    def default_blend(self) -> Blend:
        """``alpha`` (Eq. 13) where the model has the alpha head, else the hard latent mask (Eq. 6)."""
        return "alpha" if has_alpha_head(self.denoiser) else "mask"

    def run(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        seeds: Sequence[int],
        *,
        timestep: float | None = None,
        blend: Blend | None = None,
        **denoise_options: Any,
    ) -> OsorOutput:
        """Remove ``masks`` (N×1×H×W in [0, 1]; soft values condition as they are) from ``images`` (N×3×H×W in
        [-1, 1]); H, W multiples of 16.

        ``denoise_options`` go to :meth:`denoise` (FLUX: ``guidance``)."""
        import torch

        timestep = self.check_timestep(timestep)
        blend = blend or self.default_blend
        if blend == "alpha" and not has_alpha_head(self.denoiser):
            raise InvalidInputError(
                "blend='alpha' needs the alpha head (Phase II weights); this model has none "
                "(Phase I weights or alpha_head=False): use blend='mask'"
            )
        if blend not in BLENDS:
            raise InvalidInputError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
        device, dtype = self._placement()
        # The VAE gets its input channels_last, on purpose (item 20 of the OSOR fidelity issue): that is the
        # layout erasekit.convert hands over (an NCHW view of the decoded HWC photo), and cuDNN's fastest conv
        # layout. The authors' to_tensor gives a contiguous tensor; the two differ only in the order of the
        # first convolution's sums (measured: at most 1 level, in 0-0.02 % of pixels; docs/osor.md).
        layout = torch.channels_last if self.input_layout == "channels_last" else torch.contiguous_format
        with torch.no_grad():
            return self.forward(
                images.to(device=device, dtype=dtype).contiguous(memory_format=layout),
                masks.to(device=device, dtype=dtype),
                lambda shape: per_image_noise(shape, seeds, device=device, dtype=dtype),
                timestep=timestep,
                blend=blend,
                **denoise_options,
            )

    def forward(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        make_noise: Callable[[torch.Size], torch.Tensor],
        *,
        timestep: float,
        blend: Blend,
        **denoise_options: Any,
    ) -> OsorOutput:
        """The one-step restoration on prepared tensors.

        Prepared: validated timestep and blend, the engine's device/dtype.

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
        alpha = alpha_from_logits(logits) if logits is not None else None  # Eq. 12
        if blend == "alpha":
            assert alpha is not None, "blend='alpha' is only chosen for a model with the alpha head"
            weight = alpha
        else:
            latent_h, latent_w = z_lq.shape[-2:]
            weight = L.mask_to_latent(masks, (latent_h, latent_w), "max")
        # The blend weight in the model dtype: the authors' sigmoid of bf16 logits is bf16 (equal to the fp32
        # sigmoid rounded to bf16), and their pooled mask is cast to the model dtype.
        z_out = composite(x0, z_lq, weight.to(z_lq.dtype))  # Eq. 13 (alpha) / Eq. 6 (mask)
        start = _tick(device)
        # The authors cast the blended latent to the model dtype before the VAE's 1/scaling_factor (their
        # ``vae.decode(z_out.to(weight_dtype) / scaling_factor)``); in fp32 this is a no-op.
        decoded = L.decode(self.vae, z_out.to(z_lq.dtype))
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

    def __init__(self, pipe: Any, *, prompt: str = PROMPT):
        from diffusers import DDPMScheduler

        super().__init__(pipe, prompt=prompt)
        cfg = pipe.unet.config
        if cfg.in_channels != 9 or cfg.addition_embed_type != "text_time":
            raise InvalidInputError(
                f"osor-sdxl needs an SDXL inpainting UNet (9 input channels: z_t, mask, z̄, and "
                f"SDXL's text_time conditioning); this one has {cfg.in_channels} input channels "
                f"and addition_embed_type={cfg.addition_embed_type!r}"
            )
        # The authors build a DDPMScheduler from the checkpoint's scheduler config; from_config does the same.
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    @property
    def denoiser(self):
        return self.pipe.unet

    def _encode_prompt(self):
        prompt_embeds, _, pooled, _ = self.pipe.encode_prompt(
            self.prompt, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled}

    def check_timestep(self, value):
        t = TIMESTEP["sdxl"] if value is None else value
        n = self.scheduler.config.num_train_timesteps
        if isinstance(t, bool) or not float(t).is_integer() or not 0 <= int(t) < n:
            raise InvalidInputError(f"osor-sdxl timestep must be an integer in [0, {n - 1}], got {value!r}")
        return int(t)

    def conditioning(self, z_t, z_lq, mask, timestep) -> dict[str, Any]:
        """The UNet call's arguments.

        ``cat[z_t, maxpool8(m), z̄]``, t, prompt embeddings, ``[H, W, 0, 0, H, W]``.
        """
        import torch

        n = z_lq.shape[0]
        height, width = mask.shape[-2:]
        embeds = self.prompt_embeddings()
        mask_latent = L.mask_to_latent(mask, z_lq.shape[-2:], "max").to(z_lq.dtype)
        time_ids = torch.tensor(
            [[height, width, 0, 0, height, width]], dtype=z_lq.dtype, device=z_lq.device
        ).repeat(n, 1)
        return {
            "sample": torch.cat([z_t, mask_latent, z_lq], dim=1),
            "timestep": torch.full((n,), timestep, dtype=torch.long, device=z_lq.device),
            "encoder_hidden_states": embeds["prompt_embeds"].expand(n, -1, -1),
            "added_cond_kwargs": {
                "text_embeds": embeds["pooled_prompt_embeds"].expand(n, -1),
                "time_ids": time_ids,
            },
        }

    def denoise(self, z_lq, noise, mask, timestep):
        import torch

        steps = torch.full((z_lq.shape[0],), timestep, dtype=torch.long, device=z_lq.device)
        z_t = S.add_noise(self.scheduler, z_lq, noise, steps)  # Eq. 3
        out = self.denoiser(**self.conditioning(z_t, z_lq, mask, timestep), return_dict=False)[0]  # Eq. 4
        eps, logits = split_output(out, "sdxl")
        cfg = self.scheduler.config
        clip = cfg.clip_sample_range if getattr(cfg, "clip_sample", False) else None
        # Eq. 5 in float32: the authors call ``DDPMScheduler.step(eps, timesteps, z_t)`` with a 1-D timestep
        # tensor, so ᾱ_t is a 1-D float32 tensor and torch promotes the bf16 ε and z_t to float32 (a 0-d ᾱ_t
        # would not). Upcasting first is the same arithmetic: bf16 -> fp32 is exact.
        x0 = S.predict_x0(
            eps.float(), z_t.float(), timestep, "epsilon", schedule=self.scheduler, clip_sample_range=clip
        )
        return z_t, x0, logits


class FluxEngine(OsorEngine):
    """OSOR on FLUX Fill: packed tokens, flow matching at noise level s, guidance embedding."""

    family = "flux"

    def __init__(self, pipe: Any, *, prompt: str = PROMPT, guidance: float = FLUX_GUIDANCE):
        super().__init__(pipe, prompt=prompt)
        channels = pipe.transformer.config.in_channels
        if channels != 384:
            raise InvalidInputError(
                f"osor-flux needs FLUX.1 Fill (384 input channels: 64 latent + 64 image + 256 "
                f"mask); this transformer has {channels}"
            )
        self.guidance = guidance

    @property
    def denoiser(self):
        return self.pipe.transformer

    def _encode_prompt(self):
        prompt_embeds, pooled, text_ids = self.pipe.encode_prompt(
            prompt=self.prompt,
            prompt_2=self.prompt,
            device=self.device,
            num_images_per_prompt=1,
            max_sequence_length=512,
        )
        return {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled, "text_ids": text_ids}

    def check_timestep(self, value):
        """s in (0, 1); values in [1, 1000) are read as the authors' integer t and divided by 1000."""
        s = TIMESTEP["flux"] if value is None else value
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            raise InvalidInputError(f"osor-flux timestep must be a number, got {value!r}")
        if 1 <= s < 1000 and float(s).is_integer():  # the authors' CLI takes t = 400 and divides by 1000
            s = s / 1000.0
        if not 0 < s < 1:
            raise InvalidInputError(
                f"osor-flux timestep must be a noise level in (0, 1) (or t in [1, 999]), got {value!r}"
            )
        return float(s)

    def conditioning(self, z_t_packed, z_lq, mask, s, guidance: float | None = None) -> dict[str, Any]:
        """The transformer call's arguments in FLUX Fill's layout.

        Packed z_s, packed z̄, packed 8×8-unshuffled m.
        """
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
        import torch

        hw = tuple(z_lq.shape[-2:])
        # Eq. 3, no resolution shift; ``timestep`` is a Python float, so the coefficients 1-s and s are exact
        # (not rounded to the model dtype), as in the authors' ``(1 - t) * z + t * noise``.
        z_t = S.flow_noise(L.pack_latents(z_lq), L.pack_latents(noise), float(timestep))
        out = self.denoiser(**self.conditioning(z_t, z_lq, mask, timestep, guidance), return_dict=False)[0]
        v, logits = split_output(out, "flux")
        # Eq. 5: z_s - s·v with s as the transformer got it (the authors' ``z_t - t·v`` with their timestep
        # tensor in the model dtype); in fp32 this equals diffusers' Euler step bit for bit.
        s = torch.full((z_t.shape[0], 1, 1), timestep, dtype=z_t.dtype, device=z_t.device)
        x0 = z_t - s * v
        return (
            L.unpack_latents(z_t, hw),
            L.unpack_latents(x0, hw),
            None if logits is None else L.unpack_latents(logits, hw),
        )

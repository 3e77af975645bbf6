"""Real-size speed of every method at the papers' resolutions, prepared for one GPU (bf16, SDPA, compile).

Speed depends on the architecture, not the weights: the released configurations are built with random weights
(``accelerate.init_empty_weights``: parameters on the meta device, then materialised on the GPU in bf16 with a
normal(0, 0.02) init), so nothing is downloaded and the timings are what the released checkpoints cost.

Rows (1024² for SDXL and FLUX, 512² for the SD methods; ratios against baselines measured in the same run):

* OSOR-SDXL one step (LoRA r256 unmerged, the default; and merged) vs SDXL-Inpainting, 50 steps with CFG;
* OSOR-FLUX one step (LoRA r64 unmerged; and merged) vs FLUX.1-Fill, 50 steps (guidance-distilled, no CFG);
* SD2-Inpainting and SD1.5-Inpainting, 50 steps with CFG;
* EraDiff: the SD2-Inpainting UNet with Self-Rectifying Attention (erasekit.methods.eradiff) vs stock;
* CLIPAway: AlphaCLIP ViT-L/14 (fg + bg) + MLP + IP-Adapter image projection vs the SD1.5-Inpainting run;
* MagicRemover per stage, as a cost model: measured SD1.5 UNet calls (forward, CFG forward, forward+backward)
  × the calls each stage makes at the paper's settings;
* PixPerfect: the refiner at its default width, and its share on top of the SD2-Inpainting run.

Each timed row runs eagerly with SDPA and, with ``--compile``, again after ``Module.compile`` of its networks;
the first compiled call is reported as compile time, not in the timing. GPU timing uses CUDA events with the
warm-up call excluded; peak memory is ``torch.cuda.max_memory_allocated`` per row.

``--dry-run`` runs the same code on the CPU with the tiny configurations of ``erasekit.testing`` (fp32,
32 px): it checks the plumbing in CI; its numbers say nothing about real models.

Run on a GPU (about 6-8 minutes on one H100, compile included):
    PYTHONPATH=src python benchmarks/gpu_suite.py --compile
Dry run:
    PYTHONPATH=src python benchmarks/gpu_suite.py --dry-run
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch

# ------------------------------------------------------------------------------------------------------------
# Real configurations (the checkpoints' config.json, architecture fields only)
# ------------------------------------------------------------------------------------------------------------
from osor_speed import FLUX_FILL_TRANSFORMER_CONFIG, SDXL_INPAINT_UNET_CONFIG  # the same folder


def _sd_unet(in_channels: int, cross: int, heads: Any, linear: bool) -> dict:
    return {
        "_class_name": "UNet2DConditionModel",
        "in_channels": in_channels,
        "out_channels": 4,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "sample_size": 64,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "cross_attention_dim": cross,
        "attention_head_dim": heads,
        "use_linear_projection": linear,
    }


def _vae(
    latent: int, scaling: float, shift: float | None = None, quant: bool = True, size: int = 512
) -> dict:
    return {
        "_class_name": "AutoencoderKL",
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": latent,
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "sample_size": size,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "scaling_factor": scaling,
        "shift_factor": shift,
        "use_quant_conv": quant,
        "use_post_quant_conv": quant,
    }


CLIP_L_TEXT = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
CLIP_BIGG_TEXT = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
CLIP_H_TEXT = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "gelu",
    "projection_dim": 1024,
}
T5_XXL = {
    "d_model": 4096,
    "d_ff": 10240,
    "d_kv": 64,
    "num_heads": 64,
    "num_layers": 24,
    "feed_forward_proj": "gated-gelu",
    "vocab_size": 32128,
    "is_encoder_decoder": False,
}

REAL: dict[str, tuple[str, dict]] = {
    "sdxl.unet": ("UNet2DConditionModel", SDXL_INPAINT_UNET_CONFIG),
    "sdxl.vae": ("AutoencoderKL", {**_vae(4, 0.13025, size=1024), "force_upcast": True}),
    "sdxl.text_encoder": ("CLIPTextModel", CLIP_L_TEXT),
    "sdxl.text_encoder_2": ("CLIPTextModelWithProjection", CLIP_BIGG_TEXT),
    "flux.transformer": ("FluxTransformer2DModel", FLUX_FILL_TRANSFORMER_CONFIG),
    "flux.vae": ("AutoencoderKL", _vae(16, 0.3611, 0.1159, quant=False, size=1024)),
    "flux.text_encoder": ("CLIPTextModel", CLIP_L_TEXT),
    "flux.text_encoder_2": ("T5EncoderModel", T5_XXL),
    "sd2.unet": ("UNet2DConditionModel", _sd_unet(9, 1024, [5, 10, 20, 20], True)),
    "sd2.vae": ("AutoencoderKL", _vae(4, 0.18215)),
    "sd2.text_encoder": ("CLIPTextModel", CLIP_H_TEXT),
    "sd15.unet": ("UNet2DConditionModel", _sd_unet(9, 768, 8, False)),
    "sd15.vae": ("AutoencoderKL", _vae(4, 0.18215)),
    "sd15.text_encoder": ("CLIPTextModel", CLIP_L_TEXT),
    "sd15t2i.unet": ("UNet2DConditionModel", _sd_unet(4, 768, 8, False)),
    "sd15t2i.vae": ("AutoencoderKL", _vae(4, 0.18215)),
}
# The tiny checkpoints of erasekit.testing that stand in for each family in the dry run.
TINY_PIPELINE = {
    "sdxl": "sdxl-inpaint",
    "flux": "flux-fill",
    "sd2": "sd2-inpaint",
    "sd15": "sd15-inpaint",
    "sd15t2i": "sd15",
}


@dataclass
class Setup:
    device: torch.device
    dtype: torch.dtype
    dry_run: bool
    steps: int
    compile: bool
    compile_backend: str
    repeats: int
    size_xl: int = 1024
    size_sd: int = 512


def _class(name: str) -> Any:
    import diffusers
    import transformers

    return getattr(diffusers, name, None) or getattr(transformers, name)


def _materialise(model: torch.nn.Module, setup: Setup, seed: int) -> torch.nn.Module:
    """Meta parameters -> random bf16 tensors on the device (buffers were built for real and move along)."""
    from accelerate.utils import set_module_tensor_to_device

    generator = torch.Generator(setup.device).manual_seed(seed)
    for name, param in list(model.named_parameters()):
        value = torch.empty(param.shape, device=setup.device, dtype=setup.dtype).normal_(
            0, 0.02, generator=generator
        )
        set_module_tensor_to_device(model, name, setup.device, value=value)
    return model.to(setup.device).eval().requires_grad_(False)


def build(component: str, setup: Setup, seed: int = 0) -> Any:
    """One network of a released configuration (dry run: of the tiny checkpoint), with random weights."""
    from accelerate import init_empty_weights

    class_name, config = REAL[component]
    if setup.dry_run:
        from erasekit.testing import tiny_pipeline

        family, part = component.split(".")
        tiny = getattr(tiny_pipeline(TINY_PIPELINE[family]), part)
        config = dict(tiny.config) if not hasattr(tiny.config, "to_dict") else tiny.config.to_dict()
    cls = _class(class_name)
    with init_empty_weights():
        if hasattr(cls, "from_config"):  # diffusers
            model = cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
        else:  # transformers
            model = cls(cls.config_class(**{k: v for k, v in config.items() if not k.startswith("_")}))
    return _materialise(model, setup, seed)


# ------------------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Timing:
    ms: float
    peak_mib: float | None
    compile_s: float | None = None
    compiled_ms: float | None = None
    stages: dict[str, float] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], setup: Setup) -> float:
    """Median milliseconds of ``fn`` over ``setup.repeats`` calls after one warm-up (CUDA events on a GPU)."""
    with torch.no_grad():
        fn()  # warm-up: kernels selected, caches filled; not timed
        times = []
        for _ in range(setup.repeats):
            if setup.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize(setup.device)
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


@contextlib.contextmanager
def peak_memory(setup: Setup) -> Iterator[list[float | None]]:
    out: list[float | None] = [None]
    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setup.device)
    yield out
    if setup.device.type == "cuda":
        out[0] = torch.cuda.max_memory_allocated(setup.device) / 2**20


def measure(
    fn: Callable[[], Any],
    setup: Setup,
    compile_modules: list[torch.nn.Module] | None = None,
    stages: dict[str, Callable[[], Any]] | None = None,
) -> Timing:
    """Eager timing (and peak memory), per-stage timings, then the compiled timing with its compile time."""
    with peak_memory(setup) as peak:
        ms = time_call(fn, setup)
    timing = Timing(ms, peak[0], stages={k: time_call(f, setup) for k, f in (stages or {}).items()})
    if setup.compile and compile_modules:
        for module in compile_modules:
            options = {} if setup.compile_backend != "inductor" else {"mode": "max-autotune-no-cudagraphs"}
            module.compile(backend=setup.compile_backend, dynamic=False, **options)
        _sync(setup.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            fn()  # the first compiled call: tracing and code generation
        _sync(setup.device)
        timing.compile_s = time.perf_counter() - t0
        timing.compiled_ms = time_call(fn, setup)
    return timing


def _free(*objects: Any) -> None:
    del objects
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------------------
# Rows
# ------------------------------------------------------------------------------------------------------------
def _image(setup: Setup, size: int, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(setup.device).manual_seed(0)
    image = torch.rand(batch, 3, size, size, device=setup.device, generator=g).to(setup.dtype) * 2 - 1
    mask = torch.zeros(batch, 1, size, size, device=setup.device, dtype=setup.dtype)
    mask[..., size // 4 : size // 2, size // 4 : size // 2] = 1
    return image, mask


def _tokens(setup: Setup, length: int = 77, batch: int = 1) -> torch.Tensor:
    return torch.ones(batch, length, dtype=torch.long, device=setup.device)


def _with_lora(model: Any, family: str, merge: bool) -> Any:
    """Inject OSOR's LoRA (the authors' targets and rank) with random adapters; merged or not."""
    from peft import LoraConfig, inject_adapter_in_model

    from erasekit.methods.osor.recipe import LORA_RANK
    from erasekit.methods.osor.weights import ADAPTER_DTYPE, OFFICIAL_TARGETS

    config = LoraConfig(
        r=LORA_RANK[family],
        lora_alpha=LORA_RANK[family],
        init_lora_weights="gaussian",
        target_modules=list(OFFICIAL_TARGETS[family]),
    )
    inject_adapter_in_model(config, model, adapter_name="osor")
    if ADAPTER_DTYPE[family] == "float32" and not merge:
        from peft.tuners.tuners_utils import cast_adapter_dtype

        cast_adapter_dtype(model, "osor")
    if merge:
        model.fuse_lora()
        model.unload_lora()
    return model.eval().requires_grad_(False)


def osor_rows(family: str, setup: Setup, rows: list[dict]) -> None:
    """OSOR one step through erasekit's engine, LoRA unmerged (default) and merged, at 1024²."""
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

    from erasekit.diffusion.remover import per_image_noise
    from erasekit.methods.osor.alpha_head import add_alpha_head
    from erasekit.methods.osor.engine import FluxEngine, SDXLEngine

    size = setup.size_xl
    denoiser_name = "unet" if family == "sdxl" else "transformer"
    embeds = _prompt_embeddings(family, setup, batch=1)
    vae = build(f"{family}.vae", setup)
    for merge in (False, True):
        denoiser = add_alpha_head(build(f"{family}.{denoiser_name}", setup))
        _with_lora(denoiser, family, merge)
        scheduler = DDPMScheduler() if family == "sdxl" else FlowMatchEulerDiscreteScheduler()
        pipe = SimpleNamespace(
            vae=vae,
            scheduler=scheduler,
            text_encoder=None,
            text_encoder_2=None,
            name_or_path=f"gpu-suite-{family}",
            **{denoiser_name: denoiser},
        )
        engine = SDXLEngine(pipe) if family == "sdxl" else FluxEngine(pipe)
        engine.prompt_embeddings = lambda: embeds  # type: ignore[method-assign]  # the cached fixed prompt
        image, mask = _image(setup, size)
        timestep = engine.check_timestep(None)

        def one_step(engine=engine, image=image, mask=mask, timestep=timestep):
            return engine.forward(
                image,
                mask,
                lambda shape: per_image_noise(shape, [0], device=setup.device, dtype=setup.dtype),
                timestep=timestep,
                blend="alpha",
            )

        z = torch.zeros(
            1, vae.config.latent_channels, size // 8, size // 8, device=setup.device, dtype=setup.dtype
        )
        stages = {
            "vae_encode": lambda image=image: vae.encode(image),
            "vae_decode": lambda z=z: vae.decode(z),
        }
        timing = measure(one_step, setup, [denoiser], stages)
        label = "merged LoRA" if merge else "LoRA unmerged, default"
        rows.append(
            {
                "row": f"osor-{family} 1 step ({label})",
                "size": size,
                "timing": timing,
                "baseline": "sdxl-inpaint-50" if family == "sdxl" else "flux-fill-50",
            }
        )
        del denoiser, pipe, engine, one_step, stages  # before the next variant is built
        _free()
    _free(vae)


def _text_encoders(family: str, setup: Setup) -> Callable[[int], dict[str, torch.Tensor]]:
    """The family's text encoders (random weights); ``encode(batch)`` gives embeddings of the real shapes."""
    if family == "sdxl":
        te1, te2 = build("sdxl.text_encoder", setup), build("sdxl.text_encoder_2", setup)

        def encode_sdxl(batch: int) -> dict[str, torch.Tensor]:
            h1 = te1(_tokens(setup, batch=batch), output_hidden_states=True).hidden_states[-2]
            out2 = te2(_tokens(setup, batch=batch), output_hidden_states=True)
            return {
                "prompt_embeds": torch.cat([h1, out2.hidden_states[-2]], dim=-1),
                "pooled_prompt_embeds": out2.text_embeds,
            }

        return encode_sdxl
    if family == "flux":
        clip, t5 = build("flux.text_encoder", setup), build("flux.text_encoder_2", setup)
        t5_len = 512 if not setup.dry_run else 16

        def encode_flux(batch: int) -> dict[str, torch.Tensor]:
            return {
                "prompt_embeds": t5(_tokens(setup, t5_len, batch)).last_hidden_state,
                "pooled_prompt_embeds": clip(_tokens(setup, batch=batch)).pooler_output,
                "text_ids": torch.zeros(t5_len, 3, device=setup.device, dtype=setup.dtype),
            }

        return encode_flux
    encoder = build(f"{family}.text_encoder", setup)
    return lambda batch: {"prompt_embeds": encoder(_tokens(setup, batch=batch)).last_hidden_state}


def _prompt_embeddings(family: str, setup: Setup, batch: int) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return _text_encoders(family, setup)(batch)


def text_stage(family: str, setup: Setup) -> float:
    """Milliseconds of the family's text encoding for one call (both CFG prompts where there is CFG)."""
    encode = _text_encoders(family, setup)
    ms = time_call(lambda: encode(1 if family == "flux" else 2), setup)
    _free(encode)
    return ms


def unet_sampler(family: str, setup: Setup, *, cfg: bool, size: int) -> tuple[Any, Callable[[], Any], dict]:
    """A multi-step inpainting sampler on the family's UNet: VAE encode (image + masked image), steps × UNet
    (batch 2
    with CFG) + scheduler step, VAE decode; the per-call pieces are returned for the cost models."""
    from diffusers import DDIMScheduler

    unet, vae = build(f"{family}.unet", setup), build(f"{family}.vae", setup)
    batch = 2 if cfg else 1
    latent = size // 8
    cross = unet.config.cross_attention_dim
    text = torch.randn(batch, 77, cross, device=setup.device, dtype=setup.dtype)
    extra: dict[str, Any] = {}
    if family == "sdxl":
        pooled = torch.randn(
            batch,
            1280
            if not setup.dry_run
            else unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim,
            device=setup.device,
            dtype=setup.dtype,
        )
        ids = torch.tensor([[size, size, 0, 0, size, size]] * batch, device=setup.device, dtype=setup.dtype)
        extra = {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": ids}}
    scheduler = DDIMScheduler()
    image, mask = _image(setup, size)
    x = torch.randn(batch, unet.config.in_channels, latent, latent, device=setup.device, dtype=setup.dtype)

    def call():
        return unet(x, 500, encoder_hidden_states=text, **extra).sample

    def sample():
        scheduler.set_timesteps(setup.steps, device=setup.device)
        z_image = vae.encode(image).latent_dist.mode()
        vae.encode(image * (1 - mask)).latent_dist.mode()
        latents = torch.randn_like(z_image)
        for t in scheduler.timesteps:
            channels = [latents] * batch
            model_in = torch.cat(channels)
            if unet.config.in_channels == 9:
                pad = torch.zeros(batch, 5, latent, latent, device=setup.device, dtype=setup.dtype)
                model_in = torch.cat([model_in, pad], dim=1)
            eps = unet(model_in, t, encoder_hidden_states=text, **extra).sample
            if cfg:
                uncond, cond = eps.chunk(2)
                eps = uncond + 7.5 * (cond - uncond)
            latents = scheduler.step(eps, t, latents).prev_sample
        return vae.decode(latents).sample

    return (unet, vae), sample, {"call": call, "x": x, "text": text, "extra": extra}


def baseline_row(family: str, setup: Setup, rows: list[dict], cfg: bool = True) -> dict:
    size = setup.size_xl if family == "sdxl" else setup.size_sd
    (unet, vae), sample, parts = unet_sampler(family, setup, cfg=cfg, size=size)
    stages = {"unet call": parts["call"]}
    timing = measure(sample, setup, [unet], stages)
    timing.stages["text"] = text_stage(family, setup) if family != "sd15t2i" else 0.0
    name = {"sdxl": "sdxl-inpaint", "sd2": "sd2-inpaint", "sd15": "sd15-inpaint"}[family]
    row = {
        "row": f"{name}-{setup.steps} (CFG)",
        "size": size,
        "timing": timing,
        "key": f"{name}-50",
        "parts": parts,
        "modules": (unet, vae),
    }
    rows.append(row)
    return row


def flux_fill_row(setup: Setup, rows: list[dict]) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    from erasekit.backbones import latents as L

    size = setup.size_xl
    transformer, vae = build("flux.transformer", setup), build("flux.vae", setup)
    embeds = _prompt_embeddings("flux", setup, batch=1)
    image, mask = _image(setup, size)
    latent = size // 8
    img_ids = torch.zeros((latent // 2) ** 2, 3, device=setup.device, dtype=setup.dtype)
    guidance = torch.full((1,), 30.0, device=setup.device)
    scheduler = FlowMatchEulerDiscreteScheduler()

    def sample():
        scheduler.set_timesteps(setup.steps, device=setup.device)
        z = L.pack_latents(vae.encode(image * (1 - mask)).latent_dist.mode())
        mask_tokens = L.fill_mask_tokens(mask)
        latents = torch.randn_like(z)
        for t in scheduler.timesteps:
            v = transformer(
                hidden_states=torch.cat([latents, z, mask_tokens], dim=2),
                timestep=(t / 1000).expand(1),
                guidance=guidance,
                pooled_projections=embeds["pooled_prompt_embeds"],
                encoder_hidden_states=embeds["prompt_embeds"],
                txt_ids=embeds["text_ids"],
                img_ids=img_ids,
            ).sample
            latents = scheduler.step(v, t, latents).prev_sample
        return vae.decode(L.unpack_latents(latents, (latent, latent))).sample

    timing = measure(sample, setup, [transformer])
    timing.stages["text"] = text_stage("flux", setup)
    rows.append({"row": f"flux-fill-{setup.steps}", "size": size, "timing": timing, "key": "flux-fill-50"})
    _free(transformer, vae)


def eradiff_row(sd2: dict, setup: Setup, rows: list[dict]) -> None:
    """SRA (erasekit.methods.eradiff) on every self-attention layer of the SD2-Inpainting UNet vs stock."""
    from erasekit.diffusion.attention import LayerSelector, installed_processors
    from erasekit.methods.eradiff.attention import MaskedSelfAttentionRule, processor_factory

    unet = sd2["modules"][0]
    call = sd2["parts"]["call"]
    stock = time_call(call, setup)
    mask = torch.zeros(setup.size_sd, setup.size_sd, device=setup.device)
    mask[setup.size_sd // 4 : setup.size_sd // 2, setup.size_sd // 4 : setup.size_sd // 2] = 1
    rule = MaskedSelfAttentionRule(mask)
    sra_layers = installed_processors(unet, LayerSelector(kind="self"), factory=processor_factory(rule))
    with sra_layers, peak_memory(setup) as peak:
        sra = time_call(call, setup)
    rows.append(
        {
            "row": "eradiff SRA, one UNet call (CFG)",
            "size": setup.size_sd,
            "timing": Timing(sra, peak[0], stages={"stock call": stock}),
            "ratio_to": ("stock", stock),
        }
    )


def clipaway_row(sd15: dict, setup: Setup, rows: list[dict]) -> None:
    """CLIPAway's extra encoders (erasekit.methods.clipaway): AlphaCLIP on fg and bg, MLP, projection."""
    from accelerate import init_empty_weights
    from diffusers.models.embeddings import ImageProjection

    from erasekit.methods.clipaway.alpha_clip import AlphaClipVisionModel, alpha_clip_l14_config
    from erasekit.methods.clipaway.mlp import ClipAwayMLP

    small = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "projection_dim": 16,
        "image_size": 28,
    }
    config = alpha_clip_l14_config(**(small if setup.dry_run else {}))
    with init_empty_weights():
        alpha_clip = AlphaClipVisionModel(config)
        mlp = ClipAwayMLP(config.projection_dim, 64 if setup.dry_run else 1024)
        projection = ImageProjection(
            image_embed_dim=mlp.out_dim,
            cross_attention_dim=sd15["parts"]["text"].shape[-1],
            num_image_text_embeds=4,
        )
    alpha_clip, mlp, projection = (_materialise(m, setup, 1) for m in (alpha_clip, mlp, projection))
    side = config.image_size
    pixels = torch.randn(2, 3, side, side, device=setup.device, dtype=setup.dtype)  # fg and bg in one batch
    alpha = torch.randn(2, 1, side, side, device=setup.device, dtype=setup.dtype)

    def encoders():
        fg, bg = mlp(alpha_clip(pixels, alpha)).chunk(2)
        projected = bg - (bg * fg).sum(-1, keepdim=True) / (fg * fg).sum(-1, keepdim=True) * fg  # Eq. 2
        return projection(torch.cat([mlp(torch.zeros_like(alpha_clip(pixels, alpha)[:1])), projected]))

    with peak_memory(setup) as peak:
        ms = time_call(encoders, setup)
    rows.append(
        {
            "row": "clipaway extra encoders (AlphaCLIP×2 + MLP + IP proj)",
            "size": side,
            "timing": Timing(ms, peak[0]),
            "share_of": ("sd15-inpaint-50", sd15["timing"].ms),
        }
    )
    _free(alpha_clip, mlp, projection)


# MagicRemover at the paper's settings (arXiv:2310.02848, the prompt-to-prompt null-text settings): 50 DDIM
# steps; null-text optimisation, up to 10 inner steps per timestep (forward + backward on the unconditional
# branch) plus one conditional forward; guided sampling runs the reconstruction and the edit branch with CFG;
# attention guidance for 100 < t < t2 = 800 (35 of 50 steps) and classifier optimisation for t1 = 500 < t < t2
# (15 of 50 steps) add a forward + backward each. An upper bound: null-text optimisation stops early.
MAGICREMOVER_CALLS = {
    "ddim inversion": {"forward": 50},
    "null-text optimisation": {"forward": 50, "forward+backward": 500},
    "guided sampling (2 branches × CFG)": {"forward (CFG)": 100},
    "attention guidance (35 steps)": {"forward+backward": 35},
    "classifier optimisation (15 steps)": {"forward+backward": 15},
}


def magicremover_rows(setup: Setup, rows: list[dict]) -> None:
    (unet, vae), _, parts = unet_sampler("sd15t2i", setup, cfg=True, size=setup.size_sd)
    x, text = parts["x"], parts["text"]
    forward_cfg = time_call(lambda: unet(x, 500, encoder_hidden_states=text).sample, setup)
    forward = time_call(lambda: unet(x[:1], 500, encoder_hidden_states=text[:1]).sample, setup)
    unet.requires_grad_(False)

    def forward_backward():
        with torch.enable_grad():
            z = x[:1].clone().requires_grad_(True)
            unet(z, 500, encoder_hidden_states=text[:1]).sample.float().square().mean().backward()

    fb = time_call(forward_backward, setup)
    unit = {"forward": forward, "forward (CFG)": forward_cfg, "forward+backward": fb}
    total = 0.0
    for stage, calls in MAGICREMOVER_CALLS.items():
        ms = sum(unit[kind] * n for kind, n in calls.items())
        total += ms
        rows.append(
            {
                "row": f"magicremover: {stage}",
                "size": setup.size_sd,
                "timing": Timing(ms, None),
                "model": ", ".join(f"{n}×{k}" for k, n in calls.items()),
            }
        )
    rows.append(
        {
            "row": "magicremover total (cost model)",
            "size": setup.size_sd,
            "timing": Timing(total, None),
            "model": f"per call: fwd {forward:.1f}, CFG fwd {forward_cfg:.1f}, fwd+bwd {fb:.1f} ms",
        }
    )
    _free(unet, vae)


def pixperfect_row(sd2: dict, setup: Setup, rows: list[dict]) -> None:
    from accelerate import init_empty_weights

    from erasekit.refiners.pixperfect.network import PixPerfectConfig, PixPerfectGenerator

    with init_empty_weights():
        refiner = PixPerfectGenerator(PixPerfectConfig(width=4) if setup.dry_run else PixPerfectConfig())
    refiner = _materialise(refiner, setup, 2)
    image, mask = _image(setup, setup.size_sd)
    timing = measure(lambda: refiner((image + 1) / 2, mask), setup, [refiner])
    rows.append(
        {
            "row": "pixperfect refiner (default width)",
            "size": setup.size_sd,
            "timing": timing,
            "share_of": ("sd2-inpaint-50", sd2["timing"].ms),
        }
    )
    _free(refiner)


# ------------------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def table(rows: list[dict], setup: Setup) -> str:
    base = {r["key"]: r["timing"] for r in rows if "key" in r}
    header = (
        "| row | px | eager ms | compiled ms | compile s | peak MiB | vs baseline (eager / compiled) | "
        "stages / notes |"
    )
    lines = [header, "|" + "---|" * 8]
    for r in rows:
        t: Timing = r["timing"]
        ratio, note = "", ", ".join(f"{k} {v:.1f}" for k, v in t.stages.items())
        if "baseline" in r and r["baseline"] in base:
            b = base[r["baseline"]]
            ratio = f"speed-up {b.ms / t.ms:.1f}× vs {r['baseline'].replace('-50', f'-{setup.steps}')}"
            if t.compiled_ms and b.compiled_ms:
                ratio += f" / {b.compiled_ms / t.compiled_ms:.1f}×"
        elif "ratio_to" in r:
            ratio = f"{t.ms / r['ratio_to'][1]:.3f}× stock"
        elif "share_of" in r:
            of = r["share_of"][0].replace("-50", f"-{setup.steps}")
            ratio = f"{100 * t.ms / (t.ms + r['share_of'][1]):.1f} % of (it + {of})"
        if "model" in r:
            note = r["model"]
        lines.append(
            f"| {r['row']} | {r['size']} | {t.ms:.1f} | {_fmt(t.compiled_ms)} | {_fmt(t.compile_s)} | "
            f"{_fmt(t.peak_mib, '.0f')} | {ratio} | {note} |"
        )
    return "\n".join(lines)


SECTIONS = (
    "osor-sdxl",
    "sdxl",
    "osor-flux",
    "flux",
    "sd2",
    "eradiff",
    "pixperfect",
    "sd15",
    "clipaway",
    "magicremover",
)


def _release(row: dict) -> None:
    """Drop a baseline row's networks once the rows that reuse them are done (the table keeps its timing)."""
    row.pop("modules", None)
    row.pop("parts", None)
    _free()


def run(setup: Setup, sections: tuple[str, ...] = SECTIONS) -> list[dict]:
    rows: list[dict] = []
    if "sdxl" in sections:
        _release(baseline_row("sdxl", setup, rows))
    if "osor-sdxl" in sections:
        osor_rows("sdxl", setup, rows)
    if "flux" in sections:
        flux_fill_row(setup, rows)
    if "osor-flux" in sections:
        osor_rows("flux", setup, rows)
    if {"sd2", "eradiff", "pixperfect"} & set(sections):
        sd2 = baseline_row("sd2", setup, rows)
        if "eradiff" in sections:
            eradiff_row(sd2, setup, rows)
        if "pixperfect" in sections:
            pixperfect_row(sd2, setup, rows)
        _release(sd2)
    if {"sd15", "clipaway"} & set(sections):
        sd15 = baseline_row("sd15", setup, rows)
        if "clipaway" in sections:
            clipaway_row(sd15, setup, rows)
        _release(sd15)
    if "magicremover" in sections:
        magicremover_rows(setup, rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny configurations on the CPU (CI)")
    parser.add_argument("--compile", action="store_true", help="also time after Module.compile (inductor)")
    parser.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend (dry run: eager)"
    )
    parser.add_argument("--steps", type=int, default=50, help="steps of the multi-step baselines (paper: 50)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed calls per row (median), after 1 warm-up"
    )
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"subset of {','.join(SECTIONS)}")
    args = parser.parse_args(argv)
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.dry_run:
        torch.set_flush_denormal(True)  # random tiny networks decay into denormals, which crawl on a CPU
        setup = Setup(
            torch.device("cpu"),
            torch.float32,
            True,
            args.steps,
            args.compile,
            args.compile_backend,
            args.repeats,
            size_xl=32,
            size_sd=32,
        )
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA GPU here: run with --dry-run, or on a GPU machine")
        torch.backends.cuda.matmul.allow_tf32 = True
        setup = Setup(
            torch.device("cuda"),
            torch.bfloat16,
            False,
            args.steps,
            args.compile,
            args.compile_backend,
            args.repeats,
        )
    started = time.perf_counter()
    rows = run(setup, sections)
    where = (
        torch.cuda.get_device_name() if setup.device.type == "cuda" else "CPU (dry run, tiny configs, fp32)"
    )
    print(
        f"{where}; {str(setup.dtype).replace('torch.', '')}; SDPA; baselines {setup.steps} steps; "
        f"median of {setup.repeats} after 1 warm-up; total {time.perf_counter() - started:.0f} s"
    )
    print(table(rows, setup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

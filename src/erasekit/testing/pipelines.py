"""Tiny, randomly initialised diffusion pipelines of the real architectures, built fully offline.

Tests (and users who want to try the plumbing without downloading gigabytes) build these with the very classes
the real checkpoints use — diffusers' ``UNet2DConditionModel``, ``FluxTransformer2DModel``, ``AutoencoderKL``
and transformers' CLIP/T5 encoders and tokenizers — only with a handful of channels.
:func:`write_tiny_pipeline` saves one with ``save_pretrained`` so the folder has ``model_index.json`` plus
per-component configs and safetensors, exactly the layout of a Hub checkpoint; erasekit's loaders then read it
through the same code path a real checkpoint takes::

    from erasekit.testing import write_tiny_pipeline
    path = write_tiny_pipeline("sdxl-inpaint", "/tmp/tiny-sdxl")
    # erasekit remove photo.png --mask mask.png --method sdxl-inpaint \
    #     --model /tmp/tiny-sdxl --steps 2 -o out.png

What is kept from the real models (so that code written against them works unchanged): the VAE downsamples by
8 (four blocks), SD/SDXL latents have 4 channels and FLUX latents 16, the inpainting UNets take 9 input
channels, SDXL's UNet uses ``addition_embed_type="text_time"`` with two text encoders, FLUX Fill's transformer
takes 384 input channels (64 packed latent + 64 packed masked-image latent + 256 packed 8×8 pixel-unshuffled
mask) with guidance embedding, and each VAE has its real ``scaling_factor`` / ``shift_factor``. Building is
deterministic given ``seed`` and leaves the global torch RNG untouched.

Tokenizers are built from a small vocabulary written here (characters only for CLIP's BPE, characters and a
few words for T5's Unigram model), so nothing touches the network.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import CLIPTokenizer, T5Tokenizer

TINY_NAMES = ("sd15-inpaint", "sd2-inpaint", "sdxl-inpaint", "flux-fill", "sd15", "sd21-base")

# Sizes shared by the tiny models. Text hidden sizes are tiny; the token length of the CLIP tokenizers stays
# 77 like the real ones so prompt handling is exercised unchanged.
_CLIP_HIDDEN = 32
_T5_HIDDEN = 32
_CLIP_MAX_LEN = 77


# ------------------------------------------------------------------------------------------------------------
# Tokenizers from a local vocabulary
# ------------------------------------------------------------------------------------------------------------
# Whole-word tokens for the prompts erasekit uses, so they stay well under 77 tokens like with the real
# vocabulary.
_WORDS = (
    "remove",
    "the",
    "instance",
    "of",
    "object",
    "empty",
    "background",
    "seamless",
    "continuation",
    "surrounding",
    "scene",
    "natural",
    "lighting",
    "high",
    "quality",
    "person",
    "animal",
    "text",
    "watermark",
    "logo",
    "frame",
    "shadow",
    "reflection",
    "duplicate",
    "blurry",
    "distorted",
    "artifacts",
    "low",
    "clean",
    "monochrome",
    "lowres",
    "bad",
    "anatomy",
    "worst",
    "a",
    "photo",
)


def _clip_tokenizer() -> CLIPTokenizer:
    """A CLIPTokenizer (byte-pair encoding) over characters plus merges that spell a few whole words.

    Built in memory from a vocabulary and merge list written here: tiny, offline, the real class and file
    format.
    """
    from transformers import CLIPTokenizer

    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab: dict[str, int] = {}
    for ch in chars:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    for (
        word
    ) in _WORDS:  # merge left to right: "e m" -> "em", "em p" -> "emp", ..., "empt y</w>" -> "empty</w>"
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        left = symbols[0]
        for right in symbols[1:]:
            merged = left + right
            if merged not in vocab:
                vocab[merged] = len(vocab)
                merges.append((left, right))
            left = merged
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    # merges as (left, right) pairs, what the tokenizers BPE model takes; transformers annotates only strings
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=_CLIP_MAX_LEN)  # type: ignore[arg-type]


def _t5_tokenizer() -> T5Tokenizer:
    """A T5 (Unigram) tokenizer over characters plus a few prompt words, built in memory."""
    from transformers import T5Tokenizer

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for word in _WORDS:
        pieces.append(("▁" + word, -3.0))
    for ch in string.ascii_letters + string.digits + string.punctuation:  # T5 is case-sensitive
        pieces.append((ch, -5.0))
        pieces.append(("▁" + ch, -6.0))
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


# ------------------------------------------------------------------------------------------------------------
# Components
# ------------------------------------------------------------------------------------------------------------
def _clip_text_config(vocab_size: int, *, hidden_act: str = "quick_gelu", projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    kwargs: dict[str, Any] = {}
    if projection_dim is not None:
        kwargs["projection_dim"] = projection_dim
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=_CLIP_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=_CLIP_MAX_LEN,
        hidden_act=hidden_act,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        **kwargs,
    )


def _vae(
    *,
    latent_channels: int = 4,
    scaling_factor: float = 0.18215,
    shift_factor: float | None = None,
    quant_convs: bool = True,
):
    """Four blocks so the VAE downsamples by 8 like every real SD/SDXL/FLUX VAE."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=quant_convs,
        use_post_quant_conv=quant_convs,
    )


def _sd_unet(*, in_channels: int, linear_projection: bool = False, **extra: Any):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=extra.pop("cross_attention_dim", _CLIP_HIDDEN),
        attention_head_dim=(2, 4),
        use_linear_projection=linear_projection,
        **extra,
    )


def _sd_components(*, inpaint: bool, sd2: bool) -> dict[str, Any]:
    from diffusers import DDIMScheduler, PNDMScheduler
    from transformers import CLIPTextModel

    tokenizer = _clip_tokenizer()
    # SD 2 uses OpenCLIP ViT-H (gelu, linear projections in the UNet); SD 1.x uses OpenAI CLIP ViT-L
    # (quick_gelu).
    text_encoder = CLIPTextModel(
        _clip_text_config(len(tokenizer), hidden_act="gelu" if sd2 else "quick_gelu")
    )
    unet = _sd_unet(in_channels=9 if inpaint else 4, linear_projection=sd2)
    sched_kwargs = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "steps_offset": 1,
        "num_train_timesteps": 1000,
    }
    # The real checkpoints ship PNDM (SD 1.5) and DDIM (SD 2) scheduler configs.
    scheduler = (
        DDIMScheduler(clip_sample=False, set_alpha_to_one=False, **sched_kwargs)
        if sd2
        else PNDMScheduler(skip_prk_steps=True, **sched_kwargs)
    )
    return {
        "vae": _vae(),
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "unet": unet,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def _sdxl_components() -> dict[str, Any]:
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = _clip_tokenizer()
    tokenizer_2 = _clip_tokenizer()
    text_encoder = CLIPTextModel(_clip_text_config(len(tokenizer)))
    text_encoder_2 = CLIPTextModelWithProjection(
        _clip_text_config(len(tokenizer_2), hidden_act="gelu", projection_dim=_CLIP_HIDDEN)
    )
    time_dim = 8
    unet = _sd_unet(
        in_channels=9,
        linear_projection=True,
        cross_attention_dim=2 * _CLIP_HIDDEN,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        # pooled text embedding + 6 time ids (original size, crop, target size), as in SDXL without aesthetics
        # score
        projection_class_embeddings_input_dim=_CLIP_HIDDEN + 6 * time_dim,
        transformer_layers_per_block=1,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
        num_train_timesteps=1000,
    )
    return {
        "vae": _vae(scaling_factor=0.13025),
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "unet": unet,
        "scheduler": scheduler,
        "requires_aesthetics_score": False,
        "force_zeros_for_empty_prompt": True,
    }


def _flux_fill_components() -> dict[str, Any]:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    tokenizer = _clip_tokenizer()
    tokenizer_2 = _t5_tokenizer()
    text_encoder = CLIPTextModel(_clip_text_config(len(tokenizer)))
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=_T5_HIDDEN,
            d_kv=8,
            d_ff=37,
            num_layers=1,
            num_heads=4,
            feed_forward_proj="gated-gelu",
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    latent_channels = 16
    packed = latent_channels * 4  # 2×2 patches of 16 channels
    packed_mask = 8 * 8 * 4  # the mask pixel-unshuffled 8×8, then packed 2×2
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=2 * packed + packed_mask,
        out_channels=packed,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=_T5_HIDDEN,
        pooled_projection_dim=_CLIP_HIDDEN,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    vae = _vae(latent_channels=latent_channels, scaling_factor=0.3611, shift_factor=0.1159, quant_convs=False)
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "transformer": transformer,
        "scheduler": scheduler,
    }


def _builders() -> dict[str, tuple[str, Callable[[], dict[str, Any]]]]:
    return {
        "sd15-inpaint": ("StableDiffusionInpaintPipeline", lambda: _sd_components(inpaint=True, sd2=False)),
        "sd2-inpaint": ("StableDiffusionInpaintPipeline", lambda: _sd_components(inpaint=True, sd2=True)),
        "sdxl-inpaint": ("StableDiffusionXLInpaintPipeline", _sdxl_components),
        "flux-fill": ("FluxFillPipeline", _flux_fill_components),
        "sd15": ("StableDiffusionPipeline", lambda: _sd_components(inpaint=False, sd2=False)),
        "sd21-base": ("StableDiffusionPipeline", lambda: _sd_components(inpaint=False, sd2=True)),
    }


def build_tiny_pipeline(name: str, *, seed: int = 0):
    """A fresh in-memory tiny pipeline of the architecture ``name``, fp32 on CPU.

    ``name`` is one of :data:`TINY_NAMES`.
    """
    import diffusers
    import torch

    builders = _builders()
    if name not in builders:
        raise ValueError(f"no tiny pipeline named {name!r}; choose one of {', '.join(TINY_NAMES)}")
    cls_name, build = builders[name]
    # Seed a forked RNG: deterministic weights without disturbing the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        components = build()
    pipe = getattr(diffusers, cls_name)(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_tiny_pipeline(name: str, path: str | Path, *, seed: int = 0) -> Path:
    """Build the tiny ``name`` pipeline and save it at ``path`` in the Hub checkpoint layout.

    Returns ``path``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    build_tiny_pipeline(name, seed=seed).save_pretrained(path, safe_serialization=True)
    return path


@functools.cache
def _tiny_pipeline_cached(name: str, seed: int):
    return build_tiny_pipeline(name, seed=seed)


def tiny_pipeline(name: str, *, seed: int = 0):
    """The in-memory tiny pipeline ``name``, built once per process and shared (do not mutate its modules)."""
    return _tiny_pipeline_cached(name, seed)


class TinyCheckpoints:
    """Writes each tiny checkpoint once under ``root`` and hands out its path.

    A per-session cache for tests.
    """

    def __init__(self, root: str | Path, *, seed: int = 0):
        self.root = Path(root)
        self.seed = seed

    def path(self, name: str) -> Path:
        target = self.root / name
        if not (target / "model_index.json").is_file():
            write_tiny_pipeline(name, target, seed=self.seed)
        return target

    __call__ = path


__all__ = ["TINY_NAMES", "TinyCheckpoints", "build_tiny_pipeline", "tiny_pipeline", "write_tiny_pipeline"]

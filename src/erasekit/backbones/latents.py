"""Latent codecs: VAE encode/decode, FLUX 2×2 packing, masks to latents.

The VAE codecs apply each VAE's scaling and shift factors.

Every formula here mirrors what diffusers' own pipelines do, so a method that works in latent space (OSOR's
one-step restoration, EraDiff, ...) sees exactly the latents a diffusers pipeline would, and tests check that
bit for bit:

* SD / SDXL: ``z = scaling_factor · E(x)``, ``x = D(z / scaling_factor)`` (``StableDiffusion*Pipeline``);
  a VAE with ``latents_mean``/``latents_std`` in its config uses ``z = (E(x) - mean) · scaling / std`` (as
  SDXL pipelines do when those fields are present);
* FLUX: ``z = (E(x) - shift_factor) · scaling_factor``, ``x = D(z / scaling_factor + shift_factor)``
  (``FluxFillPipeline.prepare_mask_latents`` and its decode step).

A float16 VAE whose config says ``force_upcast`` (SDXL's) is run in float32 for the call, as the SDXL
pipelines do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch


def vae_scale_factor(vae) -> int:
    """Pixels per latent cell (8 for every SD/SDXL/FLUX VAE), computed as diffusers' pipelines do."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def _latent_stats(vae, like: torch.Tensor):
    """(mean, std) as N×C×1×1 tensors when the VAE config defines them, else (None, None)."""
    import torch

    mean = getattr(vae.config, "latents_mean", None)
    std = getattr(vae.config, "latents_std", None)
    if mean is None or std is None:
        return None, None
    c = len(mean)
    return (
        torch.tensor(mean).view(1, c, 1, 1).to(like.device, like.dtype),
        torch.tensor(std).view(1, c, 1, 1).to(like.device, like.dtype),
    )


@contextlib.contextmanager
def _compute_dtype(vae) -> Iterator[torch.dtype]:
    """Yield the dtype to run ``vae`` in; temporarily upcasts a float16 VAE that asks for it (SDXL)."""
    import torch

    original = vae.dtype
    if original == torch.float16 and getattr(vae.config, "force_upcast", False):
        vae.to(dtype=torch.float32)
        try:
            yield torch.float32
        finally:
            vae.to(dtype=original)
    else:
        yield original


def encode(
    vae, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False
) -> torch.Tensor:
    """NCHW images in [-1, 1] -> scaled (and shifted) latents, in the images' dtype.

    ``sample=False`` takes the mean of the posterior (deterministic); ``sample=True`` draws from it with
    ``generator``, like diffusers' ``retrieve_latents(..., sample_mode="sample")`` in its inpainting
    pipelines.
    """
    out_dtype = images.dtype
    with _compute_dtype(vae) as dtype:
        dist = vae.encode(images.to(device=vae.device, dtype=dtype)).latent_dist
        latents = dist.sample(generator) if sample else dist.mode()
    latents = latents.to(out_dtype)
    cfg = vae.config
    mean, std = _latent_stats(vae, latents)
    if mean is not None:
        return (latents - mean) * cfg.scaling_factor / std
    shift = getattr(cfg, "shift_factor", None)
    if shift is not None:
        return (latents - shift) * cfg.scaling_factor
    return cfg.scaling_factor * latents


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> NCHW images in (roughly) [-1, 1], in the latents' dtype.

    Inverse of :func:`encode`.
    """
    cfg = vae.config
    mean, std = _latent_stats(vae, latents)
    shift = getattr(cfg, "shift_factor", None)
    if mean is not None:
        latents = latents * std / cfg.scaling_factor + mean
    elif shift is not None:
        latents = latents / cfg.scaling_factor + shift
    else:
        latents = latents / cfg.scaling_factor
    out_dtype = latents.dtype
    with _compute_dtype(vae) as dtype:
        images = vae.decode(latents.to(device=vae.device, dtype=dtype), return_dict=False)[0]
    return images.to(out_dtype)


# ------------------------------------------------------------------------------------------------------------
# FLUX packing. diffusers keeps these as private static methods of FluxPipeline; they are re-stated here in
# terms of latent sizes (not pixel sizes) so latent-space methods need no pipeline object. Tests pin them to
# diffusers'.
# ------------------------------------------------------------------------------------------------------------
def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """N×C×H×W -> N×(H/2·W/2)×(4C): 2×2 patches flattened into tokens (FluxPipeline._pack_latents)."""
    n, c, h, w = latents.shape
    if h % 2 or w % 2:
        raise ValueError(f"FLUX packing needs even latent sizes, got {w}×{h}")
    x = latents.view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // 2) * (w // 2), c * 4)


def unpack_latents(packed: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """N×L×(4C) tokens -> N×C×H×W latents of size ``latent_hw`` (FluxPipeline._unpack_latents)."""
    n, length, channels = packed.shape
    h, w = latent_hw
    if length != (h // 2) * (w // 2) or channels % 4:
        raise ValueError(f"cannot unpack {length} tokens of {channels} channels to a {w}×{h} latent")
    x = packed.view(n, h // 2, w // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, channels // 4, h, w)


def fill_mask_tokens(mask: torch.Tensor, vae_scale: int = 8) -> torch.Tensor:
    """FLUX Fill's mask conditioning: a pixel mask N×1×H×W pixel-unshuffled to (s·s) channels, then packed.

    Equals the mask half of ``FluxFillPipeline.prepare_mask_latents`` (the 8×8 unshuffle is written as a view
    and a permute there; ``torch.nn.functional.pixel_unshuffle`` uses the other channel order, hence the
    explicit view).
    """
    n, _, h, w = mask.shape
    lh, lw = h // vae_scale, w // vae_scale
    m = mask[:, 0].reshape(n, lh, vae_scale, lw, vae_scale).permute(0, 2, 4, 1, 3)
    return pack_latents(m.reshape(n, vae_scale * vae_scale, lh, lw))


# ------------------------------------------------------------------------------------------------------------
# Masks to the latent grid
# ------------------------------------------------------------------------------------------------------------
def mask_to_latent(
    mask: torch.Tensor, latent_hw: tuple[int, int], mode: Literal["max", "nearest"] = "max"
) -> torch.Tensor:
    """Pixel mask N×1×H×W -> N×1×h×w on the latent grid.

    ``max``: a latent cell is masked when any pixel it covers is (OSOR's ``maxpool8``; adaptive pooling when
    the size is not an exact multiple). ``nearest``: ``F.interpolate`` nearest, what diffusers' inpainting
    pipelines do.
    """
    import torch.nn.functional as F

    h, w = mask.shape[-2:]
    lh, lw = latent_hw
    if mode == "nearest":
        return F.interpolate(mask, size=(lh, lw))
    if mode != "max":
        raise ValueError(f"mask_to_latent mode must be 'max' or 'nearest', got {mode!r}")
    if h % lh == 0 and w % lw == 0:
        return F.max_pool2d(mask, kernel_size=(h // lh, w // lw))
    return F.adaptive_max_pool2d(mask, (lh, lw))


__all__ = ["decode", "encode", "fill_mask_tokens", "mask_to_latent", "pack_latents", "unpack_latents",
           "vae_scale_factor"]

"""Tiny CLIPAway weight files in the released layouts, built offline for the tiny SD1.5-inpainting backbone.

* :func:`alpha_clip_state_dict` — an AlphaCLIP visual state dict in the authors' (OpenAI's) key layout,
  ``conv1`` / ``conv1_alpha`` / ``transformer.resblocks.i.attn.in_proj`` / ``proj``, written key by key
  from the layout's description (nothing shared with erasekit's key map, so loading it tests that map);
* the MLP as ``model.safetensors`` with the Sequential's index keys, at tiny widths;
* an IP-Adapter ``ip-adapter_sd15.bin`` in h94's layout — ``{"image_proj": {proj, norm}, "ip_adapter":
  {"<i>.to_k_ip.weight", "<i>.to_v_ip.weight"}}`` with ``i`` the index of each cross-attention processor among
  the UNet's attention processors — sized for the tiny UNet of :mod:`erasekit.testing.pipelines`.

:func:`write_tiny_clipaway_weights` writes all three in the authors' ``ckpts/`` folder layout, plus the
training-only IP-Adapter image encoder (:func:`write_tiny_image_encoder`: OpenCLIP ViT-H/14's transformers
layout, ``CLIPVisionModelWithProjection``, at tiny widths) at ``IPAdapter/image_encoder`` for ``erasekit train
clipaway-mlp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class AlphaClipShape:
    """The sizes of an AlphaCLIP ViT (ViT-L/14: 1024 wide, 24 blocks, 14 px patches, 224 px, 768-d out)."""

    width: int
    layers: int
    patch: int
    image_size: int
    output_dim: int


# Tiny widths: AlphaCLIP 128 wide (two 64-wide heads, like the real model's head width), 2 blocks, 28 px input
# (2×2 patches of 14); its 16-d output feeds an MLP into a 24-d "IP-Adapter" space.
TINY_ALPHA_CLIP = AlphaClipShape(width=128, layers=2, patch=14, image_size=28, output_dim=16)
TINY_IP_DIM = 24
IP_TOKENS = 4


def alpha_clip_state_dict(shape: AlphaClipShape = TINY_ALPHA_CLIP, *, seed: int = 0,
                          zero_alpha: bool = False) -> dict[str, Any]:
    """Random AlphaCLIP ViT visual weights in the authors' layout (``model.visual.state_dict()``);
    ``zero_alpha``: an all-zero ``conv1_alpha`` (AlphaCLIP then equals CLIP)."""
    import torch

    width, layers, patch = shape.width, shape.layers, shape.patch

    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int, std: float = 0.02) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * std

    def norm(prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": 1.0 + randn(width, std=0.1), f"{prefix}.bias": randn(width, std=0.1)}

    tokens = (shape.image_size // patch) ** 2 + 1
    state: dict[str, torch.Tensor] = {
        "class_embedding": randn(width, std=width ** -0.5),
        "positional_embedding": randn(tokens, width, std=width ** -0.5),
        "proj": randn(width, shape.output_dim, std=width ** -0.5),
        "conv1.weight": randn(width, 3, patch, patch),
        "conv1_alpha.weight": randn(width, 1, patch, patch) * (0.0 if zero_alpha else 1.0),
        **norm("ln_pre"), **norm("ln_post"),
    }
    for i in range(layers):
        block = f"transformer.resblocks.{i}"
        state.update({
            f"{block}.attn.in_proj.weight": randn(3 * width, width, std=width ** -0.5),
            f"{block}.attn.in_proj.bias": randn(3 * width),
            f"{block}.attn.out_proj.weight": randn(width, width, std=width ** -0.5),
            f"{block}.attn.out_proj.bias": randn(width),
            f"{block}.mlp.c_fc.weight": randn(4 * width, width, std=width ** -0.5),
            f"{block}.mlp.c_fc.bias": randn(4 * width),
            f"{block}.mlp.c_proj.weight": randn(width, 4 * width, std=(4 * width) ** -0.5),
            f"{block}.mlp.c_proj.bias": randn(width),
            **norm(f"{block}.ln_1"), **norm(f"{block}.ln_2"),
        })
    return state


def ip_adapter_state_dict(unet: Any, *, clip_embeddings_dim: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Random IP-Adapter SD1.5 weights for ``unet`` in h94's ``ip-adapter_sd15.bin`` layout (4 tokens)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    channels = list(unet.config.block_out_channels)
    tokens = IP_TOKENS * cross
    image_proj = {"proj.weight": torch.randn(tokens, clip_embeddings_dim, generator=generator) * 0.2,
                  "proj.bias": torch.randn(tokens, generator=generator) * 0.1,
                  "norm.weight": torch.ones(cross), "norm.bias": torch.zeros(cross)}
    ip_layers: dict[str, torch.Tensor] = {}
    for index, name in enumerate(unet.attn_processors):
        if not name.endswith("attn2.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = channels[::-1][int(name.split(".")[1])]
        else:
            hidden = channels[int(name.split(".")[1])]
        for part in ("to_k_ip", "to_v_ip"):
            ip_layers[f"{index}.{part}.weight"] = torch.randn(hidden, cross, generator=generator) * 0.2
    return {"image_proj": image_proj, "ip_adapter": ip_layers}


def write_tiny_image_encoder(folder: str | Path, *, seed: int = 0) -> Path:
    """A random ``CLIPVisionModelWithProjection`` shaped like IP-Adapter's ViT-H/14 image encoder (GELU, patch
    14, 224 px, 1024-d ``image_embeds``) at tiny widths: 28 px input, ``TINY_IP_DIM``-d output; saved with
    ``save_pretrained`` as h94/IP-Adapter's ``models/image_encoder`` is."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, image_size=TINY_ALPHA_CLIP.image_size, patch_size=14,
                              projection_dim=TINY_IP_DIM, hidden_act="gelu", layer_norm_eps=1e-5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPVisionModelWithProjection(config)
    folder = Path(folder)
    model.save_pretrained(str(folder))
    return folder


def write_tiny_clipaway_weights(folder: str | Path, *, unet: Any = None, seed: int = 0) -> Path:
    """Write ``AlphaCLIP/…pth``, ``CLIPAway/model.safetensors`` and ``IPAdapter/ip-adapter_sd15.bin`` under
    ``folder`` (the authors' ``ckpts/`` layout) for the tiny sd15-inpaint UNet (or ``unet``); returns
    ``folder``."""
    import torch
    from safetensors.torch import save_file

    from ..methods.clipaway.mlp import ClipAwayMLP
    from ..methods.clipaway.weights import IMAGE_ENCODER_LAYOUT, LAYOUT
    from .pipelines import tiny_pipeline

    folder = Path(folder)
    paths = {kind: folder / relative for kind, relative in LAYOUT.items()}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(alpha_clip_state_dict(TINY_ALPHA_CLIP, seed=seed), paths["alpha_clip"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlp = ClipAwayMLP(TINY_ALPHA_CLIP.output_dim, TINY_IP_DIM)
    save_file({k: v.contiguous() for k, v in mlp.state_dict().items()}, str(paths["mlp"]))
    unet = unet if unet is not None else tiny_pipeline("sd15-inpaint", seed=seed).unet
    torch.save(ip_adapter_state_dict(unet, clip_embeddings_dim=TINY_IP_DIM, seed=seed), paths["ip_adapter"])
    write_tiny_image_encoder(folder / IMAGE_ENCODER_LAYOUT, seed=seed)
    return folder


__all__ = ["TINY_ALPHA_CLIP", "TINY_IP_DIM", "AlphaClipShape", "alpha_clip_state_dict",
           "ip_adapter_state_dict", "write_tiny_clipaway_weights", "write_tiny_image_encoder"]

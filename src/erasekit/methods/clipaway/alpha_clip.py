"""AlphaCLIP's vision tower (Sun et al., CVPR 2024) on transformers' CLIP, loading the authors' checkpoint.

AlphaCLIP is OpenAI's CLIP ViT with one extra input: an alpha map that says where to look. A second
patch convolution (``conv1_alpha``, 1 input channel, no bias) embeds the alpha patches and its output is
*added* to the RGB patch embedding, before the class token and the positional embedding are attached.
Everything after that is CLIP unchanged, so the model here is transformers'
:class:`~transformers.CLIPVisionModelWithProjection` plus that convolution, summed in by a forward hook on
the patch embedding (sturdier across transformers versions than replacing ``CLIPVisionEmbeddings.forward``).
With a zero alpha convolution the output is CLIP's, bit for bit.

The released ``clip_l14_grit+mim_fultune_6xe.pth`` is AlphaCLIP's ``model.visual.state_dict()`` in OpenAI's
layout (``conv1``, ``transformer.resblocks.i.attn.in_proj`` with fused q/k/v rows, ``proj`` as a matrix
applied on the right). :func:`convert_alpha_clip_state_dict` maps it key by key onto transformers' names,
using every key exactly once; :func:`load_alpha_clip` loads the result strictly.
"""

from __future__ import annotations

import contextvars
import os
import re
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ...types import InvalidInputError

if TYPE_CHECKING:
    from transformers import CLIPVisionConfig

def alpha_clip_l14_config(**overrides: Any) -> CLIPVisionConfig:
    """The ViT-L/14 at 224 px of AlphaCLIP (openai/clip-vit-large-patch14's vision tower, 768-d output).

    ``overrides`` change any field; the tiny test models use small widths with the same structure."""
    from transformers import CLIPVisionConfig

    fields: dict[str, Any] = {
        "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
        "image_size": 224, "patch_size": 14, "projection_dim": 768, "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5, **overrides}
    return CLIPVisionConfig(**fields)


def _side(value: object) -> int:
    if not isinstance(value, int):
        raise InvalidInputError(f"AlphaCLIP takes square images and patches (one int side), got {value!r}")
    return value


class AlphaClipVisionModel(nn.Module):
    """``forward(pixel_values, alpha)`` → ``ln_post(CLS) @ proj`` (B × projection_dim, not normalised).

    ``pixel_values``: B×3×S×S, CLIP-normalised; ``alpha``: B×1×S×S, normalised as AlphaCLIP does
    (``(a - 0.5) / 0.26``, see :mod:`.embedding`).
    """

    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        from transformers import CLIPVisionModelWithProjection

        self.config = config
        self.clip = CLIPVisionModelWithProjection(config)
        self.image_size, self.patch_size = _side(config.image_size), _side(config.patch_size)
        self.conv1_alpha = nn.Conv2d(1, config.hidden_size, kernel_size=self.patch_size,
                                     stride=self.patch_size, bias=False)
        # The alpha of the call in flight; a context variable keeps concurrent calls (threads) apart.
        self._alpha: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar(
            "alpha", default=None)
        self.clip.vision_model.embeddings.patch_embedding.register_forward_hook(self._add_alpha_patches)

    def _add_alpha_patches(self, module: nn.Module, args: Any, patch_embeds: torch.Tensor) -> torch.Tensor:
        alpha = self._alpha.get()
        if alpha is None:
            raise RuntimeError("AlphaCLIP's patch embedding ran without an alpha map: "
                               "call the AlphaCLIP model, not its CLIP part")
        return patch_embeds + self.conv1_alpha(alpha.to(patch_embeds.dtype))

    def forward(self, pixel_values: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        if alpha.ndim != 4 or alpha.shape[1] != 1 or alpha.shape[-2:] != pixel_values.shape[-2:] \
                or alpha.shape[0] != pixel_values.shape[0]:
            raise InvalidInputError(f"alpha must be B×1×H×W matching pixel_values "
                                    f"{tuple(pixel_values.shape)}, got {tuple(alpha.shape)}")
        token = self._alpha.set(alpha)
        try:
            return self.clip(pixel_values=pixel_values).image_embeds
        finally:
            self._alpha.reset(token)


# ------------------------------------------------------------------------------------------------------------
# The authors' checkpoint
# ------------------------------------------------------------------------------------------------------------
_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")
# OpenAI's names inside one residual block -> transformers' names inside ``encoder.layers.i``.
_BLOCK_KEYS = {
    "ln_1.weight": "layer_norm1.weight", "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight", "ln_2.bias": "layer_norm2.bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight", "attn.out_proj.bias": "self_attn.out_proj.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias",
}
_TOP_KEYS = {
    "conv1.weight": "clip.vision_model.embeddings.patch_embedding.weight",
    "class_embedding": "clip.vision_model.embeddings.class_embedding",
    "positional_embedding": "clip.vision_model.embeddings.position_embedding.weight",
    "ln_pre.weight": "clip.vision_model.pre_layrnorm.weight",
    "ln_pre.bias": "clip.vision_model.pre_layrnorm.bias",
    "ln_post.weight": "clip.vision_model.post_layernorm.weight",
    "ln_post.bias": "clip.vision_model.post_layernorm.bias",
    "conv1_alpha.weight": "conv1_alpha.weight",
}


def convert_alpha_clip_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' AlphaCLIP visual state dict in :class:`AlphaClipVisionModel`'s names.

    ``in_proj`` (3·D × D) splits into q, k, v by rows in that order; ``proj`` (D × P, applied as ``x @ proj``)
    becomes ``visual_projection.weight = proj.T``. A key that fits nowhere is an error, never dropped.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key in _TOP_KEYS:
            out[_TOP_KEYS[key]] = value
        elif key == "proj":
            out["clip.visual_projection.weight"] = value.t().contiguous()
        elif (match := _BLOCK.match(key)) is not None:
            layer, name = match.groups()
            prefix = f"clip.vision_model.encoder.layers.{layer}."
            if name in ("attn.in_proj.weight", "attn.in_proj.bias"):
                kind = name.rsplit(".", 1)[1]
                for part, chunk in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
                    out[f"{prefix}self_attn.{part}_proj.{kind}"] = chunk.contiguous()
            elif name in _BLOCK_KEYS:
                out[prefix + _BLOCK_KEYS[name]] = value
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InvalidInputError(f"not an AlphaCLIP visual state dict: unexpected key(s) "
                                f"{', '.join(unknown[:5])}{more}")
    return out


def config_from_state_dict(state: dict[str, torch.Tensor]) -> CLIPVisionConfig:
    """The architecture an authors'-layout state dict describes (widths, depth, patch and image size).

    The head count is not stored in the weights; OpenAI's ViTs use 64-wide heads, so heads = width / 64
    (at least 1)."""
    try:
        width, _, patch, _ = state["conv1.weight"].shape
        tokens = state["positional_embedding"].shape[0]
        projection_dim = state["proj"].shape[1]
        intermediate = state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    except KeyError as exc:
        raise InvalidInputError(f"not an AlphaCLIP visual state dict: no {exc.args[0]!r}") from None
    layers = 1 + max(int(m.group(1)) for k in state if (m := _BLOCK.match(k)))
    grid = round((tokens - 1) ** 0.5)
    return alpha_clip_l14_config(hidden_size=width, intermediate_size=intermediate, num_hidden_layers=layers,
                                 num_attention_heads=max(1, width // 64), image_size=grid * patch,
                                 patch_size=patch, projection_dim=projection_dim)


def load_alpha_clip(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> AlphaClipVisionModel:
    """Load the authors' ``clip_l14_grit+mim_fultune_6xe.pth`` (or any AlphaCLIP ViT visual state dict)
    strictly, in float32, as the authors run it."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise InvalidInputError(f"{path} does not hold a state dict")
    config = config_from_state_dict(state)
    model = AlphaClipVisionModel(config)
    model.load_state_dict(convert_alpha_clip_state_dict(state), strict=True)
    return model.to(device=device, dtype=torch.float32).eval().requires_grad_(False)


__all__ = ["AlphaClipVisionModel", "alpha_clip_l14_config", "config_from_state_dict",
           "convert_alpha_clip_state_dict", "load_alpha_clip"]

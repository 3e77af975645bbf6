"""Self-Rectifying Attention (EraDiff, arXiv:2503.07026 Sec. 4.2, Eq. 10–11) and the rules it is compared
with.

A rule turns the pixel mask into an additive bias on the self-attention scores of every layer:

``sra``       Eq. 10: token pair (i, j) is blocked when both the query i and the key j are masked. Masked
              queries see only the background; background queries see everything (their rows equal standard
              attention).
``key_mask``  Attentive Eraser's rule: every query is blocked from masked keys, with a finite ``finfo.min``
              instead of −inf.
``none``      no bias: the stock processors stay installed.

Eq. 11 writes ``softmax(QKᵀ/√d · m')`` with m' ∈ {−inf, 1}. Taken literally that product is wrong: a
negative score times −inf is +inf, so a blocked key with a negative score would take all the probability. What
the paper means is a mask, i.e. an additive bias of 0 (allowed) or −inf (blocked), built here.

Efficiency ("without any additional computational cost", Sec. 4.2): the bias of one resolution is the same for
every layer, head, step and CFG half, so it is built once per token count for a call and cached on the rule;
each layer then runs one ``scaled_dot_product_attention`` with that (1, 1, N, N) bias broadcast over batch and
heads. ``benchmarks/eradiff_speed.py`` measures it against stock attention.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ...diffusion.attention import ExplicitAttnProcessor
from .rules import GRID_RULES, RULES

RuleName = Literal["sra", "key_mask", "none"]
GridRule = Literal["any", "half"]


def token_grid(height: int, width: int, tokens: int, *, vae_factor: int = 8) -> tuple[int, int, int]:
    """The (rows, cols, pixels per token side) of the self-attention layer with ``tokens`` tokens in a UNet
    run on a ``height``×``width`` image.

    The UNet's first resolution is the latent (``vae_factor`` pixels per token); each down block halves it
    with a stride-2, padding-1 convolution, i.e. ceil(n / 2)."""
    rows, cols, side = math.ceil(height / vae_factor), math.ceil(width / vae_factor), vae_factor
    while rows * cols > tokens:
        rows, cols, side = math.ceil(rows / 2), math.ceil(cols / 2), side * 2
    if rows * cols != tokens:
        raise ValueError(f"{tokens} tokens match no UNet resolution of a {height}×{width} image")
    return rows, cols, side


def mask_to_tokens(mask: torch.Tensor, tokens: int, *, grid: GridRule = "any",
                   vae_factor: int = 8) -> torch.Tensor:
    """The pixel mask ``(batch, H, W)`` as a boolean token mask ``(batch, tokens)`` of one layer.

    ``grid="any"``: a token is masked when any of its pixels is (max-pooling). ``grid="half"``: when at least
    half of its pixels inside the image are. Pixel blocks past the image edge (odd latent sizes) are padded
    with background and do not count towards the area.
    """
    _, height, width = mask.shape
    rows, cols, side = token_grid(height, width, tokens, vae_factor=vae_factor)
    pad = (0, cols * side - width, 0, rows * side - height)
    covered = F.pad((mask[:, None] > 0.5).float(), pad)
    if grid == "any":
        token = F.max_pool2d(covered, side) > 0
    elif grid == "half":
        inside = F.pad(torch.ones_like(mask, dtype=torch.float32)[:, None], pad)
        token = F.avg_pool2d(covered, side) >= 0.5 * F.avg_pool2d(inside, side)
    else:
        raise ValueError(f"grid must be one of {GRID_RULES}, not {grid!r}")
    return token.flatten(1)


def blocked_pairs(token_mask: torch.Tensor, rule: RuleName) -> torch.Tensor:
    """``(batch, 1, N, N)`` boolean: True where query i may not attend to key j.

    ``sra`` (Eq. 10): m_i = 1 and m_j = 1. ``key_mask``: m_j = 1 for every query. A query row with every key
    blocked (a layer where every token is masked) is unblocked: it falls back to standard attention."""
    keys = token_mask[:, None, None, :]
    if rule == "sra":
        blocked = token_mask[:, None, :, None] & keys
    elif rule == "key_mask":
        blocked = keys.expand(-1, -1, token_mask.shape[1], -1)
    else:
        raise ValueError(f"rule {rule!r} builds no bias; rules with a bias are 'sra' and 'key_mask'")
    return blocked & ~blocked.all(dim=-1, keepdim=True)


class MaskedSelfAttentionRule:
    """An :class:`~erasekit.diffusion.attention.AttentionRule` built from one call's pixel mask.

    ``mask``: ``(H, W)`` or ``(batch, H, W)``, 1 = to be removed, at the image size the UNet runs on.
    The bias per (token count, dtype, device) is built on first use and reused by every layer, head and step
    of the call. A UNet batch that is a multiple of the mask batch (``[uncond, cond]`` under guidance) gets
    the mask batch repeated in that order.
    """

    def __init__(self, mask: torch.Tensor, *, rule: RuleName = "sra", grid: GridRule = "any",
                 vae_factor: int = 8):
        if rule not in ("sra", "key_mask"):
            raise ValueError(f"rule must be 'sra' or 'key_mask' (rule 'none' installs nothing), not {rule!r}")
        if grid not in GRID_RULES:
            raise ValueError(f"grid must be one of {GRID_RULES}, not {grid!r}")
        self.mask = mask[None] if mask.ndim == 2 else mask
        self.rule: RuleName = rule
        self.grid: GridRule = grid
        self.vae_factor = vae_factor
        self._cache: dict[tuple[int, torch.dtype, torch.device], torch.Tensor | None] = {}

    def token_mask(self, tokens: int) -> torch.Tensor:
        return mask_to_tokens(self.mask, tokens, grid=self.grid, vae_factor=self.vae_factor)

    def _build(self, tokens: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        blocked = blocked_pairs(self.token_mask(tokens).to(device), self.rule)
        if not blocked.any():  # nothing masked at this resolution: no bias, so SDPA runs exactly as stock
            return None
        blocked_value = -math.inf if self.rule == "sra" else torch.finfo(dtype).min
        return torch.zeros(blocked.shape, dtype=dtype, device=device).masked_fill(blocked, blocked_value)

    def bias(self, layer: str, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor | None:
        """The additive bias ``(batch or 1, 1, N, N)`` for this layer: 0 where allowed, −inf (``sra``) or
        ``finfo.min`` (``key_mask``, as Attentive Eraser does) where blocked; None when this resolution blocks
        nothing (an empty mask, or a layer where every token is masked), so the layer runs stock SDPA."""
        tokens = key.shape[2]
        if query.shape[2] != tokens:
            raise ValueError(f"{layer}: self-attention expected, got {query.shape[2]} queries and "
                             f"{tokens} keys")
        cache_key = (tokens, query.dtype, query.device)
        if cache_key not in self._cache:
            self._cache[cache_key] = self._build(tokens, query.dtype, query.device)
        bias = self._cache[cache_key]
        if bias is None:
            return None
        batch = query.shape[0]
        if bias.shape[0] not in (1, batch):
            if batch % bias.shape[0]:
                raise ValueError(f"{layer}: UNet batch {batch} is no multiple of the mask batch "
                                 f"{bias.shape[0]}")
            bias = bias.repeat(batch // bias.shape[0], 1, 1, 1)
        return bias


class MaskedSelfAttnProcessor(ExplicitAttnProcessor):
    """:class:`~erasekit.diffusion.attention.ExplicitAttnProcessor` with the rule's ready-made bias.

    The base re-checks every call for rows blocked everywhere; here the rule already resolved them when it
    built the cached bias, so each layer only hands the cached tensor to SDPA (no per-call N×N work)."""

    rule: MaskedSelfAttentionRule

    def __init__(self, layer: str, rule: MaskedSelfAttentionRule):
        super().__init__(layer, rule=rule)

    def _bias(self, query: torch.Tensor, key: torch.Tensor,
              attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        bias = self.rule.bias(self.layer, query, key)
        if bias is None or attention_mask is None:
            return attention_mask if bias is None else bias
        return bias + attention_mask


def processor_factory(rule: MaskedSelfAttentionRule) -> Any:
    """``factory(key)`` for :func:`~erasekit.diffusion.attention.installed_processors`."""
    return lambda layer: MaskedSelfAttnProcessor(layer, rule)


__all__ = ["GRID_RULES", "RULES", "GridRule", "MaskedSelfAttentionRule", "MaskedSelfAttnProcessor",
           "RuleName", "blocked_pairs", "mask_to_tokens", "processor_factory", "token_grid"]

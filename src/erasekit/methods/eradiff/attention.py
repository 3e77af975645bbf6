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

Implementations (``impl``), all computing the same numbers:

``bias``   the bias of one resolution is the same for every layer, head, step and CFG half, so it is built
           once per token count for a call and cached on the rule; each layer runs one
           ``scaled_dot_product_attention`` with that (1, 1, N, N) float bias broadcast over batch and heads.
``bool``   the same with a boolean (1, 1, N, N) ``attn_mask`` (True = may attend): a quarter of the memory.
``split``  mask-free: background queries run plain SDPA over every key; masked queries run plain SDPA over
           the gathered background keys and values only (``sra``); for ``key_mask`` every query runs over the
           background keys. No N×N tensor exists, so every SDPA call is flash-eligible on a GPU.

``benchmarks/eradiff_speed.py`` measures the three against stock attention ("without any additional
computational cost", Sec. 4.2).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from ...diffusion.attention import ExplicitAttnProcessor
from .rules import GRID_RULES, IMPLS, RULES

RuleName = Literal["sra", "key_mask", "none"]
GridRule = Literal["any", "half"]
Impl = Literal["bias", "bool", "split"]


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
    What a layer needs (the float bias, the boolean mask, or the split's token indices, per ``impl``) is built
    on first use per (token count, dtype, device) and reused by every layer, head and step of the call. A UNet
    batch that is a multiple of the mask batch (``[uncond, cond]`` under guidance) gets the mask batch
    repeated in that order.
    """

    def __init__(self, mask: torch.Tensor, *, rule: RuleName = "sra", grid: GridRule = "any",
                 vae_factor: int = 8, impl: Impl = "bias"):
        if rule not in ("sra", "key_mask"):
            raise ValueError(f"rule must be 'sra' or 'key_mask' (rule 'none' installs nothing), not {rule!r}")
        if grid not in GRID_RULES:
            raise ValueError(f"grid must be one of {GRID_RULES}, not {grid!r}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, not {impl!r}")
        self.mask = mask[None] if mask.ndim == 2 else mask
        self.rule: RuleName = rule
        self.grid: GridRule = grid
        self.impl: Impl = impl
        self.vae_factor = vae_factor
        self._cache: dict[tuple[str, int, torch.dtype, torch.device], Any] = {}

    def token_mask(self, tokens: int) -> torch.Tensor:
        return mask_to_tokens(self.mask, tokens, grid=self.grid, vae_factor=self.vae_factor)

    def _cached(self, kind: str, tokens: int, dtype: torch.dtype, device: torch.device, build: Any) -> Any:
        key = (kind, tokens, dtype, device)
        if key not in self._cache:
            self._cache[key] = build(tokens, dtype, device)
        return self._cache[key]

    def _blocked(self, tokens: int, device: torch.device) -> torch.Tensor | None:
        blocked = blocked_pairs(self.token_mask(tokens).to(device), self.rule)
        # nothing blocked at this resolution (empty mask, or everything masked): the layer runs stock SDPA
        return blocked if blocked.any() else None

    def _build(self, tokens: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        blocked = self._blocked(tokens, device)
        if blocked is None:
            return None
        blocked_value = -math.inf if self.rule == "sra" else torch.finfo(dtype).min
        return torch.zeros(blocked.shape, dtype=dtype, device=device).masked_fill(blocked, blocked_value)

    def _build_allowed(self, tokens: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        blocked = self._blocked(tokens, device)
        return None if blocked is None else ~blocked

    def _build_split(self, tokens: int, dtype: torch.dtype,
                     device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor] | None] | None:
        """Per mask of the batch: (masked token indices, background token indices), or None where that mask
        blocks nothing at this resolution (no masked token, or no background token: standard attention)."""
        per_mask: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for masked in self.token_mask(tokens).to(device):
            inside, outside = masked.nonzero()[:, 0], (~masked).nonzero()[:, 0]
            per_mask.append((inside, outside) if len(inside) and len(outside) else None)
        return None if all(p is None for p in per_mask) else per_mask

    @staticmethod
    def _check(layer: str, query: torch.Tensor, key: torch.Tensor) -> int:
        tokens = key.shape[2]
        if query.shape[2] != tokens:
            raise ValueError(f"{layer}: self-attention expected, got {query.shape[2]} queries and "
                             f"{tokens} keys")
        return tokens

    @staticmethod
    def _repeat(layer: str, mask: torch.Tensor, batch: int) -> torch.Tensor:
        if mask.shape[0] in (1, batch):
            return mask
        if batch % mask.shape[0]:
            raise ValueError(f"{layer}: UNet batch {batch} is no multiple of the mask batch {mask.shape[0]}")
        return mask.repeat(batch // mask.shape[0], 1, 1, 1)

    def bias(self, layer: str, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor | None:
        """The additive bias ``(batch or 1, 1, N, N)`` for this layer: 0 where allowed, −inf (``sra``) or
        ``finfo.min`` (``key_mask``, as Attentive Eraser does) where blocked; None when this resolution blocks
        nothing (an empty mask, or a layer where every token is masked), so the layer runs stock SDPA."""
        tokens = self._check(layer, query, key)
        bias = self._cached("bias", tokens, query.dtype, query.device, self._build)
        return None if bias is None else self._repeat(layer, bias, query.shape[0])

    def allowed(self, layer: str, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor | None:
        """The boolean ``attn_mask`` ``(batch or 1, 1, N, N)`` (True = may attend) equivalent to
        :meth:`bias`; None when this resolution blocks nothing."""
        tokens = self._check(layer, query, key)
        allowed = self._cached("bool", tokens, torch.bool, query.device, self._build_allowed)
        return None if allowed is None else self._repeat(layer, allowed, query.shape[0])

    def split(self, layer: str, query: torch.Tensor,
              key: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor] | None] | None:
        """The split's token indices per mask of the batch (see :meth:`_build_split`); None when this
        resolution blocks nothing."""
        tokens = self._check(layer, query, key)
        per_mask = self._cached("split", tokens, torch.int64, query.device, self._build_split)
        if per_mask is not None and query.shape[0] % len(per_mask):
            raise ValueError(f"{layer}: UNet batch {query.shape[0]} is no multiple of the mask batch "
                             f"{len(per_mask)}")
        return per_mask


class MaskedSelfAttnProcessor(ExplicitAttnProcessor):
    """:class:`~erasekit.diffusion.attention.ExplicitAttnProcessor` with the rule's ready-made bias
    (``impl="bias"``) or boolean mask (``impl="bool"``).

    The base re-checks every call for rows blocked everywhere; here the rule already resolved them when it
    built the cached tensor, so each layer only hands it to SDPA (no per-call N×N work)."""

    rule: MaskedSelfAttentionRule

    def __init__(self, layer: str, rule: MaskedSelfAttentionRule):
        if rule.impl == "split":
            raise ValueError("impl='split' runs in SplitSelfAttnProcessor")
        super().__init__(layer, rule=rule)

    def _bias(self, query: torch.Tensor, key: torch.Tensor,
              attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        if self.rule.impl == "bool":
            allowed = self.rule.allowed(self.layer, query, key)
            if allowed is None or attention_mask is None:
                return attention_mask if allowed is None else allowed
            additive = torch.zeros(allowed.shape, dtype=query.dtype, device=query.device)
            return additive.masked_fill(~allowed, -math.inf) + attention_mask
        bias = self.rule.bias(self.layer, query, key)
        if bias is None or attention_mask is None:
            return attention_mask if bias is None else bias
        return bias + attention_mask


def split_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, masked: torch.Tensor,
                    background: torch.Tensor, rule: RuleName, scale: float | None = None) -> torch.Tensor:
    """The rule without a mask tensor, for one mask shared by the batch: ``(batch, heads, N, d)`` in and out.

    ``sra``: background queries attend to every key (plain SDPA); masked queries attend to the gathered
    background keys and values only, which is exactly what the −inf bias leaves them (its blocked keys get
    probability exp(−inf) = 0). ``key_mask``: every query attends to the background keys only."""
    key_bg, value_bg = key.index_select(2, background), value.index_select(2, background)
    if rule == "key_mask":
        return F.scaled_dot_product_attention(query, key_bg, value_bg, scale=scale)
    out_bg = F.scaled_dot_product_attention(query.index_select(2, background), key, value, scale=scale)
    out_in = F.scaled_dot_product_attention(query.index_select(2, masked), key_bg, value_bg, scale=scale)
    order = torch.cat([background, masked])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)
    return torch.cat([out_bg, out_in], dim=2).index_select(2, inverse)  # back to token order


class SplitSelfAttnProcessor(ExplicitAttnProcessor):
    """The rule as the exact mask-free split (``impl="split"``, :func:`split_attention`) on a self-attention
    layer: the base's diffusers steps before and after, with :func:`split_attention` as the core."""

    rule: MaskedSelfAttentionRule

    def __init__(self, layer: str, rule: MaskedSelfAttentionRule):
        super().__init__(layer, rule=rule)

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError(f"{self.layer}: impl='split' supports self-attention without a diffusers "
                             "attention mask")
        return super().__call__(attn, hidden_states, None, None, *args, **kwargs)

    def attend(self, attn: Attention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None) -> torch.Tensor:
        per_mask = self.rule.split(self.layer, query, key)
        if per_mask is None:
            return F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
        # UNet row i uses mask i % len(per_mask) (the mask batch repeats for the guidance halves)
        stride = len(per_mask)
        outs = []
        for j, indices in enumerate(per_mask):
            q, k, v = (t[j::stride] if stride > 1 else t for t in (query, key, value))
            outs.append(F.scaled_dot_product_attention(q, k, v, scale=attn.scale) if indices is None
                        else split_attention(q, k, v, *indices, rule=self.rule.rule, scale=attn.scale))
        return outs[0] if stride == 1 else torch.stack(outs, dim=1).flatten(0, 1)


def processor_factory(rule: MaskedSelfAttentionRule) -> Any:
    """``factory(key)`` for :func:`~erasekit.diffusion.attention.installed_processors`: the processor of the
    rule's ``impl``."""
    if rule.impl == "split":
        return lambda layer: SplitSelfAttnProcessor(layer, rule)
    return lambda layer: MaskedSelfAttnProcessor(layer, rule)


__all__ = ["GRID_RULES", "IMPLS", "RULES", "GridRule", "Impl", "MaskedSelfAttentionRule",
           "MaskedSelfAttnProcessor", "RuleName", "SplitSelfAttnProcessor", "blocked_pairs", "mask_to_tokens",
           "processor_factory", "split_attention", "token_grid"]

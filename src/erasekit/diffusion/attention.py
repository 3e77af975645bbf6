"""Attention utilities on diffusers' processor API: choose layers, swap their processors for one call, and an
attention processor that applies an additive bias and records probability maps into a store.

Layer names are diffusers' processor keys, the keys of ``model.attn_processors``: the module path of the
``Attention`` layer plus ``.processor``. In a Stable Diffusion UNet they read ::

    down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor    # self-attention (attn1)
    mid_block.attentions.0.transformer_blocks.0.attn2.processor        # cross-attention to the text (attn2)
    up_blocks.1.attentions.2.transformer_blocks.0.attn1.processor

``down_blocks.i`` / ``mid_block`` / ``up_blocks.i`` name the UNet block, ``attentions.j`` the transformer in
that block, ``attn1`` the self- and ``attn2`` the cross-attention of each transformer block. Nothing here
forks a model: processors are installed with ``set_attn_processor`` and the original processor objects are put
back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from diffusers.models.attention import AttentionMixin
from diffusers.models.attention_processor import Attention

from .loop import StepHook, StepState

# A diffusers attention processor, called as processor(attn, hidden_states, encoder_hidden_states, ...).
Processor = Any

# Forward order of a UNet's blocks. ``attn_processors`` lists them in registration order (down, up, mid), so
# layer indices are counted in this order instead, the order in which the layers run.
_BLOCK_ORDER = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
_BLOCK_ALIASES = {"down": "down_blocks", "mid": "mid_block", "up": "up_blocks"}
_KIND_SUFFIX = {"self": ".attn1.processor", "cross": ".attn2.processor"}


@dataclass(frozen=True)
class LayerSelector:
    """Which attention layers of a model to touch.

    ``kind``: ``"self"`` (``attn1``), ``"cross"`` (``attn2``) or ``"both"`` (every attention layer).
    ``blocks``: key prefixes to keep, ``"down"``/``"mid"``/``"up"`` for whole block groups or any longer
    prefix such as ``"up_blocks.1"``; ``None`` keeps every block. ``indices``: positions among *all* the
    model's layers of ``kind`` in forward order (down, mid, up), so "self-attention layers 7–15" means the
    same layers whatever ``blocks`` says; ``None`` keeps every position.
    """

    kind: Literal["self", "cross", "both"] = "both"
    blocks: tuple[str, ...] | None = None
    indices: Collection[int] | None = None

    def select(self, model: AttentionMixin) -> list[str]:
        """The processor keys this selector picks in ``model``, in forward order. A selector that names a
        block or an index the model does not have, or that picks nothing, is an error."""
        if self.kind not in ("self", "cross", "both"):
            raise ValueError(f"kind must be 'self', 'cross' or 'both', not {self.kind!r}")
        all_keys = list(model.attn_processors)
        keys = sorted(all_keys, key=_forward_rank)  # stable: the order within a block group is kept
        if self.kind != "both":
            keys = [key for key in keys if key.endswith(_KIND_SUFFIX[self.kind])]
        if self.indices is not None:
            unknown = sorted(i for i in self.indices if not 0 <= i < len(keys))
            if unknown:
                raise ValueError(f"layer indices {unknown} out of range: the model has {len(keys)} "
                                 f"{self.kind} attention layers (0..{len(keys) - 1})")
            keys = [key for i, key in enumerate(keys) if i in self.indices]
        if self.blocks is not None:
            prefixes = [_BLOCK_ALIASES.get(block, block) for block in self.blocks]
            missing = [p for p in prefixes if not any(_has_prefix(key, p) for key in all_keys)]
            if missing:
                raise ValueError(f"no attention layers under {missing}; keys look like {all_keys[:1]}")
            keys = [key for key in keys if any(_has_prefix(key, p) for p in prefixes)]
        if not keys:
            raise ValueError(f"{self} selects no attention layer")
        return keys


def _forward_rank(key: str) -> int:
    return _BLOCK_ORDER.get(key.split(".", 1)[0], 0)


def _has_prefix(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


@contextlib.contextmanager
def installed_processors(model: AttentionMixin, layers: LayerSelector, *, processor: Processor | None = None,
                         factory: Callable[[str], Processor] | None = None) -> Iterator[dict[str, Processor]]:
    """Install ``processor`` (one object shared by every chosen layer) or ``factory(key)`` (one per layer) on
    the layers ``layers`` selects, for the body of the ``with``; then put back the very processor objects that
    were there, also when the body raises. Yields the installed processors by key.

    Not re-entrant per model from several threads: callers serialise calls on one model (the remover base's
    lock).
    """
    if (processor is None) == (factory is None):
        raise ValueError("pass exactly one of processor= or factory=")
    originals = model.attn_processors  # a fresh dict of the current objects
    make = factory if factory is not None else (lambda _key: processor)
    installed: dict[str, Processor] = {key: make(key) for key in layers.select(model)}
    model.set_attn_processor({**originals, **installed})  # it pops from the dict it gets: always a fresh one
    try:
        yield installed
    finally:
        model.set_attn_processor(dict(originals))


class AttentionRule(Protocol):
    """Supplies an additive bias on the attention scores of one layer (e.g. EraDiff's 0/−inf mask, Eq. 11).

    ``query`` and ``key`` are ``(batch, heads, tokens, head_dim)``. The bias must broadcast to ``(batch,
    heads, query_tokens, key_tokens)``; ``None`` means no bias for this call. A query row whose every key has
    bias −inf falls back to standard attention (its bias is dropped) instead of producing NaN; a finite bias
    such as ``finfo.min`` counts as allowed and is applied as given.
    """

    def bias(self, layer: str, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor | None: ...


class AttentionStore(StepHook):
    """Attention probabilities per denoising step and layer: ``maps[step][layer]`` is ``(batch, heads, q,
    k)``, or ``(batch, q, k)`` with ``average_heads``. The batch is the UNet's (``[uncond, cond]`` under
    guidance).

    ``layers`` / ``steps``: record only these processor keys / step indices (``None``: all the processors that
    carry this store, every step). ``device``: where maps are kept (CPU by default, to bound accelerator
    memory; ``None`` keeps them where computed). ``detach=False`` keeps the autograd graph, for guidance that
    differentiates a map (e.g. MagicRemover's Eq. 7) — then also pass ``device=None``.

    It learns the step from the denoising loop: pass the store among the loop's hooks (it sets ``step`` before
    each UNet call) or set ``step`` yourself. A layer evaluated twice in one step keeps the later map.
    """

    def __init__(self, *, layers: Collection[str] | None = None, steps: Collection[int] | None = None,
                 average_heads: bool = False, device: str | torch.device | None = "cpu", detach: bool = True):
        self.layers = None if layers is None else frozenset(layers)
        self.steps = None if steps is None else frozenset(steps)
        self.average_heads = average_heads
        self.device = device
        self.detach = detach
        self.step = 0
        self.maps: dict[int, dict[str, torch.Tensor]] = {}

    def before_model(self, state: StepState) -> None:
        self.step = state.step

    def wants(self, layer: str) -> bool:
        """Whether ``layer``'s map at the current step is to be recorded."""
        return ((self.layers is None or layer in self.layers)
                and (self.steps is None or self.step in self.steps))

    def record(self, layer: str, probs: torch.Tensor) -> None:
        if self.average_heads:
            probs = probs.mean(dim=1)
        if self.detach:
            probs = probs.detach()
        if self.device is not None:
            probs = probs.to(self.device)
        self.maps.setdefault(self.step, {})[layer] = probs

    def clear(self) -> None:
        self.maps.clear()
        self.step = 0


class ExplicitAttnProcessor:
    """Diffusers' ``AttnProcessor2_0`` step for step, with an optional :class:`AttentionRule` bias and an
    optional :class:`AttentionStore`.

    The probabilities softmax(QKᵀ·scale + bias) are materialised only when the store records this layer at
    this step; otherwise the same biased attention runs through ``scaled_dot_product_attention``. ``scale`` is
    the layer's ``attn.scale`` (1/√d for every SD model). Scores and softmax are computed in fp32 when
    recording. With neither rule nor store the output equals ``AttnProcessor2_0``'s.
    """

    def __init__(self, layer: str, *, rule: AttentionRule | None = None, store: AttentionStore | None = None):
        self.layer = layer
        self.rule = rule
        self.store = store

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch, key_tokens, _ = context.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, key_tokens, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
                             for t in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        hidden_states = self.attend(attn, query, key, value, attention_mask)

        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)  # linear projection
        hidden_states = attn.to_out[1](hidden_states)  # dropout
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def attend(self, attn: Attention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The attention core on ``(batch, heads, tokens, head_dim)`` tensors. Everything before and after it
        is diffusers' processor; a subclass that attends differently overrides only this."""
        bias = self._bias(query, key, attention_mask)
        if self.store is not None and self.store.wants(self.layer):
            scores = query.float() @ key.float().transpose(-1, -2) * attn.scale
            probs = (scores if bias is None else scores + bias.float()).softmax(dim=-1)
            self.store.record(self.layer, probs)
            return probs.to(value.dtype) @ value
        return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=attn.scale)

    def _bias(self, query: torch.Tensor, key: torch.Tensor,
              attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """The rule's bias, with fully blocked query rows reset to 0 (standard attention), plus diffusers'
        mask."""
        bias = None if self.rule is None else self.rule.bias(self.layer, query, key)
        if bias is not None:
            bias = bias.to(query.dtype)
            blocked_rows = torch.isneginf(bias).all(dim=-1, keepdim=True)
            bias = bias.masked_fill(blocked_rows, 0.0)
        if attention_mask is None:
            return bias
        return attention_mask if bias is None else bias + attention_mask

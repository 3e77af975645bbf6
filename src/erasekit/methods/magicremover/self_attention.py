"""Self-attention guidance (MagicRemover arXiv:2310.02848, Sec. 3.3, Eq. 10): in one batched UNet call the
editing branch's self-attention reads keys and values from the reconstruction branch at the same step,

    Attention(Q_edit, K_rec, V_rec) = softmax(Q_edit K_recᵀ / √d) V_rec.

In a self-attention layer K and V are projections of the layer's own input; passing the input rows of the
branch to read from as ``encoder_hidden_states`` makes any processor compute K_rec and V_rec for the editing
rows and leaves its queries alone. ``sources[i]`` is the batch row whose K/V row i uses (``sources[i] == i``:
its own). The paper names no layer subset, so every self-attention layer takes part (as in the video-editing
works it cites); with the identity map the output is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers.models.attention_processor import Attention

from ...diffusion.attention import Processor


class SharedKVProcessor:
    """Wraps a self-attention processor so that batch row i attends to the keys/values of row ``sources[i]``
    (Eq. 10)."""

    def __init__(self, inner: Processor, sources: Sequence[int]):
        self.inner = inner
        self.sources = list(sources)

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None, *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("K/V injection applies to self-attention layers (attn1), not cross-attention")
        # The swap relies on K/V being projections of the very input the queries see; a layer that
        # normalises that input first (group/spatial norm) or its context differently would break it.
        if attn.group_norm is not None or attn.spatial_norm is not None or attn.norm_cross:
            raise ValueError("K/V injection needs a plain self-attention layer (no group/spatial/cross norm)")
        if hidden_states.ndim != 3 or hidden_states.shape[0] != len(self.sources):
            raise ValueError(f"K/V injection expects a (batch, tokens, channels) input of batch "
                             f"{len(self.sources)}, got {tuple(hidden_states.shape)}")
        return self.inner(attn, hidden_states, hidden_states[self.sources], *args, **kwargs)

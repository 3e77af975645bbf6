"""Which items a training step reads: a pure function of (seed, step), so a resumed run reads exactly what an
uninterrupted one would have read (the EraDiff and CLIPAway trainers)."""

from __future__ import annotations

import torch

from ..types import InvalidInputError


def batch_indices(step: int, n_items: int, batch_size: int, seed: int) -> list[int]:
    """The item indices of step ``step``: epoch e is a permutation drawn from (seed, e); full batches only."""
    per_epoch = n_items // batch_size
    if per_epoch < 1:
        raise InvalidInputError(f"{n_items} training items are fewer than one batch of {batch_size}")
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[position * batch_size:(position + 1) * batch_size].tolist()


__all__ = ["batch_indices"]

"""Autograd scoping for guidance: differentiate through a model with respect to its inputs only."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """``module``'s parameters excluded from autograd for the body — the graph then tracks only the inputs
    that require grad (z_t, ∅_t), so parameters get no gradient and activations of untracked rows are not
    kept — and their ``requires_grad`` flags restored afterwards. Hand-written: torch has no such scope."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)

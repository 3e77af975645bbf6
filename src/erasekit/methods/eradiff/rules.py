"""The names of the attention rules, mask-to-grid rules and implementations, importable without torch (the
method's option declaration lists them; ``erasekit methods --options`` must not import torch)."""

from __future__ import annotations

RULES: tuple[str, ...] = ("sra", "key_mask", "none")
GRID_RULES: tuple[str, ...] = ("any", "half")
# How a rule runs: an additive float bias, a boolean SDPA mask, or the mask-free split (same numbers).
IMPLS: tuple[str, ...] = ("bias", "bool", "split")

__all__ = ["GRID_RULES", "IMPLS", "RULES"]

"""The names of the attention rules and mask-to-grid rules, importable without torch (the method's option
declaration lists them; ``erasekit methods --options`` must not import torch)."""

from __future__ import annotations

RULES: tuple[str, ...] = ("sra", "key_mask", "none")
GRID_RULES: tuple[str, ...] = ("any", "half")

__all__ = ["GRID_RULES", "RULES"]

"""EraDiff — Erase Diffusion: calibrating the diffusion pathway for object removal (arXiv:2503.07026).

``attention``  Self-Rectifying Attention (Eq. 10–11) and the ``key_mask`` / ``none`` rules on the UNet's
               self-attention, installed for one call: as the exact mask-free split, an additive bias or
               a boolean mask (the same numbers).
``remover``    the ``eradiff`` method on SD2-Inpainting (diffusers' inpainting pipeline + the rule's
               processors).
``weights``    erasekit's EraDiff weights folder (full fine-tuned UNet + recipe JSON).
``train/``     Chain-Rectifying Optimization (Eq. 6–9, Algorithm 1) with Accelerate.

Design choices the paper leaves open are listed in docs/eradiff.md.
"""

from __future__ import annotations

from .remover import EraDiffRemover, parse_layers, register

__all__ = ["EraDiffRemover", "parse_layers", "register"]

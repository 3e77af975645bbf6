"""MagicRemover — tuning-free, text-guided object removal on SD1.5 (arXiv:2310.02848). No mask needed.

``inversion``       DDIM inversion + null-text optimisation (Eq. 6) or negative-prompt inversion; the cache.
``attention_maps``  target words → token indices; normalised cross-attention maps; Eq. 9's product and sum.
``guidance``        Eq. 7 energy, Eq. 8–9 guided noise, Eq. 12 classifier update, Algorithm 1's split step.
``self_attention``  Eq. 10: the editing branch's self-attention reads the reconstruction's K/V.
``sampling``        Algorithm 1's two-branch loop, one batched UNet call per evaluation.
``remover``         the ``magicremover`` method and its registration.
"""

from __future__ import annotations

from .remover import MagicRemover, register

__all__ = ["MagicRemover", "register"]

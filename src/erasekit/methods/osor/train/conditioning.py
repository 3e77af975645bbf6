"""Phase II incomplete-mask conditioning: which mask the model sees while it is supervised with the full one.

OSOR Phase II (arXiv:2606.28094 Sec. 3.1 "Effect decomposition for incomplete-mask conditioning", Alg. 2
last step) feeds a *conservative* conditioning mask m_in while the alpha head and the loss use the
effect-aware target m_gt. One mode is drawn per batch (the authors' public code, Zhouqm-Git/osor) with
probabilities shrink 0.35, expand 0.2, holes 0.1, shift 0.05 and object-core 0.3, where object-core means
m_in = m_obj, the SAVP object mask.

The perturbations themselves live in :mod:`erasekit.masks` (``perturb_mask``, ``PERTURBATION_PROBABILITIES``),
with per-backbone magnitudes from :data:`erasekit.methods.osor.recipe.MASK_OPERATORS`; this module only
decides the mode per batch and applies it to every sample. As in the authors' ``src/data/collate.py``, a
sample without an object-core mask falls back to ``shrink`` when the batch draws ``object_core``; the others
keep the draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ....masks import PERTURBATION_PROBABILITIES, perturb_mask
from ....types import InvalidInputError
from ..recipe import MASK_OPERATORS, MaskOperatorSettings

# The mode an item without an object-core mask uses when its batch drew "object_core" (authors' collate.py).
OBJECT_CORE_FALLBACK = "shrink"


@dataclass
class IncompleteMaskSampler:
    """Draws one mode per batch and builds the conditioning masks.

    ``probabilities`` default to the authors' (:data:`erasekit.masks.PERTURBATION_PROBABILITIES`);
    ``operators`` to SDXL's magnitudes. When the batch draws ``object_core``, a sample without an object-core
    mask is shrunk instead (that item alone, as the authors do).
    """

    probabilities: Mapping[str, float] = field(default_factory=lambda: dict(PERTURBATION_PROBABILITIES))
    seed: int | None = None
    operators: MaskOperatorSettings = field(default_factory=lambda: MASK_OPERATORS["sdxl"])
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.probabilities) - set(PERTURBATION_PROBABILITIES)
        if unknown:
            raise InvalidInputError(f"unknown conditioning mode(s) {sorted(unknown)}; "
                                    f"choose from {', '.join(PERTURBATION_PROBABILITIES)}")
        if any(p < 0 for p in self.probabilities.values()) or sum(self.probabilities.values()) <= 0:
            raise InvalidInputError("conditioning probabilities must be >= 0 and not all zero")
        self.rng = np.random.default_rng(self.seed)

    def sample_mode(self, *, rng: np.random.Generator | None = None) -> str:
        """One mode for a batch, drawn with :attr:`probabilities`."""
        modes = [m for m, p in self.probabilities.items() if p > 0]
        p = np.array([self.probabilities[m] for m in modes], np.float64)
        return modes[int((rng or self.rng).choice(len(modes), p=p / p.sum()))]

    def condition(
        self,
        effect_masks: Sequence[np.ndarray],
        object_masks: Sequence[np.ndarray | None] | None = None,
        *,
        rng: np.random.Generator | None = None,
        item_rngs: Sequence[np.random.Generator] | None = None,
    ) -> tuple[str, list[np.ndarray]]:
        """(mode, conditioning masks) for one batch of effect-aware masks m_gt (and object-core masks m_obj).

        ``rng`` (optional) replaces the sampler's own generator for this batch, e.g. one keyed by the training
        step so a resumed run draws the same modes; ``item_rngs`` (optional) give each sample its own
        generator for its perturbation (the trainer keys them by the sample's slot in the global batch)."""
        rng = rng or self.rng
        if len(effect_masks) == 0:
            raise InvalidInputError("cannot condition an empty batch")
        objects = list(object_masks) if object_masks is not None else [None] * len(effect_masks)
        if len(objects) != len(effect_masks):
            raise InvalidInputError("effect and object mask lists differ in length")
        mode = self.sample_mode(rng=rng)
        rngs = list(item_rngs) if item_rngs is not None else [rng] * len(effect_masks)
        out = []
        for m, o, item_rng in zip(effect_masks, objects, rngs, strict=True):
            has_core = o is not None and bool(np.any(np.asarray(o) > 0))
            item_mode = OBJECT_CORE_FALLBACK if mode == "object_core" and not has_core else mode
            out.append(perturb_mask(np.asarray(m, np.float32), item_mode, item_rng, object_core=o,
                                    settings=self.operators))
        return mode, out

    def condition_batch(
        self,
        batch: dict[str, Any],
        *,
        rng: np.random.Generator | None = None,
        item_rngs: Sequence[np.random.Generator] | None = None,
    ) -> tuple[str, Any]:
        """Torch batches from :func:`erasekit.data.loader.collate_paired`.

        Returns (mode, N×1×H×W mask tensor).
        """
        from ....convert import mask_to_tensor, tensor_to_mask

        effect = tensor_to_mask(batch["effect_mask"])
        objects = tensor_to_mask(batch["object_mask"]) if "object_mask" in batch else None
        mode, masks = self.condition(list(effect), list(objects) if objects is not None else None, rng=rng,
                                     item_rngs=item_rngs)
        tensor = mask_to_tensor(np.stack(masks)).to(
            device=batch["effect_mask"].device, dtype=batch["effect_mask"].dtype
        )
        return mode, tensor


__all__ = ["OBJECT_CORE_FALLBACK", "IncompleteMaskSampler"]

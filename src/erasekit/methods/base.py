"""The remover contract and the work every method shares, done once here.

A concrete method implements :meth:`Remover.inpaint` on an input that already satisfies its
:class:`~erasekit.hd.SizeConstraints`. The base does the rest, identically for every method: mask validation and
dilation, the empty-mask shortcut, the HD strategy, the refiners a request names, paste-back, timings and
metadata.

Paste-back rule: pixels outside the paste region are bit-identical to the input. The paste region is the (dilated)
mask, united with the method's alpha when the method edits beyond the mask on purpose (``edits_outside_mask``, e.g.
OSOR's effect-aware alpha removing a shadow).

Refiners (:mod:`erasekit.refiners`) run after the HD strategy and before paste-back, on the full image at
its original size: they see the method's raw output as paste-back will use it and the final paste region,
whatever strategy ran and whatever the method's size constraints (the contract is in
:mod:`erasekit.refiners.base`). Paste-back comes after them, so the rule above holds with any refiner.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from .. import masks as M
from ..hd import HDStrategy, SizeConstraints, paste_back, run_strategy
from ..refiners import apply_refiners, parse_refine
from ..types import InvalidInputError, RemovalRequest, RemovalResult


class Remover(ABC):
    """Base class of all removers. Subclasses set ``name``, ``constraints`` and implement ``inpaint``."""

    name: ClassVar[str] = "remover"
    constraints: ClassVar[SizeConstraints] = SizeConstraints()
    requires_mask: ClassVar[bool] = True
    edits_outside_mask: ClassVar[bool] = False
    default_hd_strategy: ClassVar[HDStrategy] = HDStrategy()
    # Per-call options this method understands; anything else in request.options is rejected, never dropped.
    option_names: ClassVar[frozenset[str]] = frozenset()

    # ---- what a method implements -----------------------------------------------------------------------------
    @abstractmethod
    def inpaint(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest) -> tuple[np.ndarray,
                                                                                            np.ndarray | None]:
        """Fill ``mask`` (binary float32 H×W) in ``image`` (uint8 H×W×3, constraints already met).

        Returns (uint8 H×W×3, alpha float32 H×W or None). The output may differ from the input anywhere; the base
        pastes back. ``request`` carries prompt, seed and per-call options.
        """

    def describe(self) -> dict[str, Any]:
        """A JSON-able description: name, constraints and settings that affect the output."""
        c = self.constraints
        return {"name": self.name, "size_multiple": c.size_multiple, "min_side": c.min_side,
                "max_side": c.max_side, "requires_mask": self.requires_mask}

    def paste_region(self, mask: np.ndarray, alpha: np.ndarray | None, request: RemovalRequest) -> np.ndarray:
        """Where the output replaces the input: the mask, united with the method's alpha when the method edits
        beyond the mask on purpose (or works without a mask). Methods override this to offer other rules."""
        if alpha is not None and (self.edits_outside_mask or request.mask is None):
            return np.maximum(mask, np.clip(alpha, 0.0, 1.0))
        return mask

    # ---- shared work -------------------------------------------------------------------------------------------
    @classmethod
    def check_options(cls, options: Any) -> None:
        """Reject per-call options this method does not understand (they are never silently dropped)."""
        unknown = set(options) - cls.option_names
        if unknown:
            raise InvalidInputError(f"method {cls.name!r} does not take option(s): {', '.join(sorted(unknown))}"
                                    + (f"; it takes: {', '.join(sorted(cls.option_names))}" if cls.option_names
                                       else ""))

    def prepare_mask(self, request: RemovalRequest) -> np.ndarray | None:
        """The binary, dilated mask the method will fill (None for a mask-free request)."""
        if request.mask is None:
            if self.requires_mask:
                raise InvalidInputError(f"method {self.name!r} needs a mask")
            return None
        mask = np.asarray(request.mask, dtype=np.float32)
        if not np.isfinite(mask).all():
            raise InvalidInputError("mask contains NaN or infinite values")
        mask = M.binarize(mask, 0.0)
        return M.dilate(mask, request.dilate) if request.dilate else mask

    def __call__(self, request: RemovalRequest) -> RemovalResult:
        t_start = time.perf_counter()
        self.check_options(request.options)
        refiners = parse_refine(request.refine)  # an unknown refiner fails before the method runs
        mask = self.prepare_mask(request)
        strategy = HDStrategy.parse(request.hd_strategy) if request.hd_strategy is not None \
            else self.default_hd_strategy
        metadata: dict[str, Any] = {
            "method": self.name, "seed": request.seed, "prompt": request.prompt, "dilate": request.dilate,
            "hd_strategy": strategy.name, "options": dict(request.options), "remover": self.describe(),
            "refine": [refiner.describe() for refiner in refiners],
        }
        image = request.image
        if mask is not None:
            if not mask.any():
                metadata["reason"] = "empty mask: nothing to remove"
                return RemovalResult(image=image.copy(), alpha=np.zeros(mask.shape, np.float32), method=self.name,
                                     timings={"total": time.perf_counter() - t_start}, metadata=metadata,
                                     unchanged=True)
            if mask.all():
                raise InvalidInputError("mask covers the whole image: there is no background to fill from")
        t_prep = time.perf_counter()
        work_mask = mask if mask is not None else np.zeros(image.shape[:2], np.float32)
        raw, alpha = run_strategy(image, work_mask, lambda im, m: self.inpaint(im, m, request), strategy,
                                  self.constraints)
        t_run = time.perf_counter()
        region = self.paste_region(work_mask, alpha, request)
        raw, refine_timings = apply_refiners(refiners, image, raw, region)
        t_refined = time.perf_counter()
        out = paste_back(image, raw, region, strategy.feather)
        t_end = time.perf_counter()
        return RemovalResult(
            image=out, alpha=(alpha if alpha is not None else work_mask).astype(np.float32, copy=False),
            method=self.name,
            timings={"prepare": t_prep - t_start, "inpaint": t_run - t_prep, **refine_timings,
                     "paste": t_end - t_refined, "total": t_end - t_start},
            metadata=metadata,
        )

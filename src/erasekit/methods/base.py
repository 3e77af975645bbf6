"""The remover contract and the work every method shares, done once here.

A concrete method implements :meth:`Remover.inpaint` on an input that already satisfies its
:class:`~erasekit.hd.SizeConstraints`. The base does the rest, identically for every method: mask validation
and
dilation, the empty-mask shortcut, the HD strategy, the refiners a request names, paste-back, timings and
metadata.

Per-call options are declared once per method as ``call_options`` (an
:class:`~erasekit.options.OptionSet`); the base validates a request's options against it once and hands
:meth:`Remover.inpaint` typed values with every default filled in. A method whose output does not depend on a
text prompt refuses one (``takes_prompt``).

Paste-back rule: pixels outside the paste region are bit-identical to the input. The paste region is the
(dilated) mask, united with the method's alpha when the method edits beyond the mask on purpose
(``edits_outside_mask``, e.g. OSOR's effect-aware alpha removing a shadow).

Refiners (:mod:`erasekit.refiners`) run after the HD strategy and before paste-back, on the full image at
its original size: they see the method's raw output as paste-back will use it and the final paste region,
whatever strategy ran and whatever the method's size constraints (the contract is in
:mod:`erasekit.refiners.base`). Paste-back comes after them, so the rule above holds with any refiner.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .. import masks as M
from ..hd import HDStrategy, SizeConstraints, paste_back, run_strategy
from ..options import OptionSet
from ..refiners import apply_refiners, parse_refine
from ..types import InvalidInputError, MaskOrPromptError, RemovalRequest, RemovalResult


class Remover(ABC):
    """Base class of all removers. Subclasses set ``name``, ``constraints`` and implement ``inpaint``."""

    name: ClassVar[str] = "remover"
    constraints: ClassVar[SizeConstraints] = SizeConstraints()
    requires_mask: ClassVar[bool] = True
    edits_outside_mask: ClassVar[bool] = False
    default_hd_strategy: ClassVar[HDStrategy] = HDStrategy()
    # Per-call options this method understands; anything else in request.options is rejected, never dropped.
    # A loaded remover may shadow this with an instance attribute that binds weight-dependent defaults.
    call_options: OptionSet = OptionSet()
    # Whether request.prompt reaches the method; a prompt given to a method that ignores it is refused.
    takes_prompt: ClassVar[bool] = False
    # Whether the method conditions on soft mask values (request.soft_mask; OSOR, whose authors read masks
    # /255). Readers (erasekit.remove, batch, server) pass a mask file's soft values only to these methods;
    # every other method sees exactly the binary mask, and all methods fill and paste back the binary one.
    # A field beside the mask, not a soft mask the base binarises: a JPEG's binary rule (>= 128) is not
    # "soft > 0", so that would move every method's paste region and dilation.
    consumes_soft_mask: ClassVar[bool] = False

    # ---- what a method implements --------------------------------------------------------------------------
    @abstractmethod
    def inpaint(
        self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Fill ``mask`` (binary float32 H×W) in ``image`` (uint8 H×W×3, constraints already met).

        Returns (uint8 H×W×3, alpha float32 H×W or None). The output may differ from the input anywhere; the
        base pastes back. ``request`` carries prompt, seed and per-call options (validated, typed and
        complete: every option of ``call_options`` is present).
        """

    def inpaint_soft(
        self, image: np.ndarray, mask: np.ndarray, soft: np.ndarray, request: RemovalRequest
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`inpaint` conditioned on ``soft`` (float32 H×W in [0, 1], cropped and padded as ``mask``),
        for methods with ``consumes_soft_mask``; ``mask`` is still the binary region to fill."""
        return self.inpaint(image, mask, request)

    def soft_conditioning(self, request: RemovalRequest, mask: np.ndarray) -> np.ndarray | None:
        """The full-size soft mask :meth:`inpaint_soft` conditions on, given the prepared binary ``mask``;
        None (the default) runs :meth:`inpaint` on the binary mask."""
        return None

    def describe(self) -> dict[str, Any]:
        """A JSON-able description: name, constraints and settings that affect the output."""
        c = self.constraints
        return {
            "name": self.name,
            "size_multiple": c.size_multiple,
            "min_side": c.min_side,
            "max_side": c.max_side,
            "requires_mask": self.requires_mask,
        }

    def paste_region(self, mask: np.ndarray, alpha: np.ndarray | None, request: RemovalRequest) -> np.ndarray:
        """Where the output replaces the input: the mask, united with the method's alpha when the method edits
        beyond the mask on purpose (or works without a mask). Methods override this to offer other rules."""
        if alpha is not None and (self.edits_outside_mask or request.mask is None):
            return np.maximum(mask, np.clip(alpha, 0.0, 1.0))
        return mask

    # ---- shared work ---------------------------------------------------------------------------------------
    @classmethod
    def check_call(
        cls, options: Mapping[str, Any], *, prompt: str | None = None, from_python: bool = True
    ) -> dict[str, Any]:
        """Check the per-call part of a request against the class's declaration, before any model loads (the
        API, CLI, batch and server call this early): the given options as typed values. ``from_python=False``
        is for text and network input (python-only options such as callables are refused)."""
        cls.check_prompt(prompt)
        return cls.call_options.validate(options, owner=cls.name, from_python=from_python)

    @classmethod
    def check_prompt(cls, prompt: str | None) -> None:
        """Refuse a prompt this method would ignore, as an unknown option is refused."""
        if prompt is not None and not cls.takes_prompt:
            raise InvalidInputError(
                f"method {cls.name!r} takes no prompt (its result does not depend on "
                "one): drop the prompt, or choose a method that takes one "
                "(erasekit methods)"
            )

    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Every declared option for one call: this remover's defaults overridden by ``options`` (validated).
        Methods extend this for checks that span several options."""
        return self.call_options.resolve(options, owner=self.name)

    def resolve_request(self, request: RemovalRequest) -> RemovalRequest:
        """``request`` as :meth:`inpaint` sees it: prompt checked, options validated, typed and complete."""
        self.check_prompt(request.prompt)
        return dataclasses.replace(request, options=self.resolve_options(request.options))

    def prepare_mask(self, request: RemovalRequest) -> np.ndarray | None:
        """The binary, dilated mask the method will fill (None for a mask-free request)."""
        if request.mask is None:
            if self.requires_mask:
                raise MaskOrPromptError(f"method {self.name!r} needs a mask")
            return None
        mask = np.asarray(request.mask, dtype=np.float32)
        if not np.isfinite(mask).all():
            raise InvalidInputError("mask contains NaN or infinite values")
        mask = M.binarize(mask, 0.0)
        return M.dilate(mask, request.dilate) if request.dilate else mask

    def __call__(self, request: RemovalRequest) -> RemovalResult:
        t_start = time.perf_counter()
        given = request.options
        request = self.resolve_request(request)
        refiners = parse_refine(request.refine)  # an unknown refiner fails before the method runs
        mask = self.prepare_mask(request)
        strategy = (
            HDStrategy.parse(request.hd_strategy)
            if request.hd_strategy is not None
            else self.default_hd_strategy
        )
        metadata: dict[str, Any] = {
            "method": self.name,
            "seed": request.seed,
            "prompt": request.prompt,
            "dilate": request.dilate,
            "hd_strategy": strategy.name,
            "options": {k: request.options[k] for k in given},  # the options given, typed
            "remover": self.describe(),
            "refine": [refiner.describe() for refiner in refiners],
            "chain": "+".join([self.name, *(refiner.name for refiner in refiners)]),  # erasekit.chain's name
        }
        image = request.image
        if mask is not None:
            if not mask.any():
                metadata["reason"] = "empty mask: nothing to remove"
                return RemovalResult(
                    image=image.copy(),
                    alpha=np.zeros(mask.shape, np.float32),
                    method=self.name,
                    timings={"total": time.perf_counter() - t_start},
                    metadata=metadata,
                    unchanged=True,
                    mask=request.mask,
                )
            if mask.all():
                raise InvalidInputError("mask covers the whole image: there is no background to fill from")
        t_prep = time.perf_counter()
        work_mask = mask if mask is not None else np.zeros(image.shape[:2], np.float32)
        soft = self.soft_conditioning(request, mask) if mask is not None and self.consumes_soft_mask else None
        if soft is None:
            raw, alpha = run_strategy(
                image, work_mask, lambda im, m: self.inpaint(im, m, request), strategy, self.constraints
            )
        else:  # the strategy crops and pads the soft mask as the binary one; where it scales, it gives None
            raw, alpha = run_strategy(
                image,
                work_mask,
                lambda im, m, s: self.inpaint(im, m, request)
                if s is None
                else self.inpaint_soft(im, m, s, request),
                strategy,
                self.constraints,
                soft=soft,
            )
        t_run = time.perf_counter()
        region = self.paste_region(work_mask, alpha, request)
        raw, refine_timings = apply_refiners(refiners, image, raw, region)
        t_refined = time.perf_counter()
        out = paste_back(image, raw, region, strategy.feather)
        t_end = time.perf_counter()
        return RemovalResult(
            image=out,
            alpha=(alpha if alpha is not None else work_mask).astype(np.float32, copy=False),
            method=self.name,
            timings={
                "prepare": t_prep - t_start,
                "inpaint": t_run - t_prep,
                **refine_timings,
                "paste": t_end - t_refined,
                "total": t_end - t_start,
            },
            metadata=metadata,
            mask=request.mask,
        )

"""Requests, results and the one exception hierarchy shared by every part of erasekit.

Conventions: images at the API edge are ``uint8`` RGB ``H×W×3`` arrays; masks are ``float32`` ``H×W``
arrays in [0, 1] where 1 means "remove". Nothing in this module touches models or files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


# ------------------------------------------------------------------------------------------------------------
# Errors. Each subclass carries the CLI exit code it maps to, so the CLI and the server never guess.
# ------------------------------------------------------------------------------------------------------------
class ErasekitError(Exception):
    """Base of every error erasekit raises on purpose. The message is one line a user can act on."""

    exit_code = 1
    http_status = 500


class InvalidInputError(ErasekitError):
    """The caller gave something we cannot use.

    For example a corrupt file, a mask of the wrong size or an unknown option.
    """

    exit_code = 2
    http_status = 422


class MissingWeightsError(ErasekitError):
    """A method needs weights (or a native library) that are not on this machine."""

    exit_code = 3
    http_status = 503


class ResourceLimitError(InvalidInputError):
    """The input is larger than a configured limit (pixels, bytes); a kind of invalid input."""

    exit_code = 4
    http_status = 413


class UnknownMethodError(InvalidInputError):
    """No method is registered under that name."""


# The one answer to a request that names nothing to remove (CLI exit 2, HTTP 422), said the same way by the
# Python API, the CLI and the server. A prompt works with every method: a masked one segments what it names
# first (erasekit.masking); magicremover needs no mask.
MASK_OR_PROMPT = ("nothing to remove: draw a mask or give a prompt (-m/--mask or --prompt; the `mask` or "
                  "`prompt` field) naming what to remove")


class MaskOrPromptError(InvalidInputError):
    """A request without a mask, and without a prompt some available mask-free method could use."""

    def __init__(self, detail: str | None = None):
        super().__init__(MASK_OR_PROMPT if detail is None else f"{MASK_OR_PROMPT}; {detail}")


# ------------------------------------------------------------------------------------------------------------
# Requests and results
# ------------------------------------------------------------------------------------------------------------
@dataclass
class RemovalRequest:
    """One removal job as a remover sees it.

    ``image`` is uint8 RGB H×W×3, ``mask`` float32 H×W in [0, 1] (1 = remove) or ``None`` for mask-free
    methods. ``dilate`` grows the mask by that many pixels before anything else; ``hd_strategy`` (an
    :class:`erasekit.hd.HDStrategy`) decides how large images are processed; ``refine`` names the refiners
    that run on the method's output before paste-back (``"color-match,poisson"``, a list, or None; read by
    :func:`erasekit.refiners.parse_refine`); ``options`` holds method-specific per-call settings (steps,
    guidance, timestep, ...). ``soft_mask`` (optional, float32 H×W in [0, 1]) holds the mask file's soft
    values (:func:`erasekit.io.read_mask_pair`) for methods that condition on them
    (``Remover.consumes_soft_mask``); ``mask`` stays the mask every method fills and pastes back, and other
    methods never read ``soft_mask``.
    """

    image: np.ndarray
    mask: np.ndarray | None
    prompt: str | None = None
    seed: int | None = None
    dilate: int = 0
    hd_strategy: Any = None  # erasekit.hd.HDStrategy; Any avoids an import cycle
    refine: Any = None  # str | Refiner | a sequence of them; Any avoids an import cycle
    options: dict[str, Any] = field(default_factory=dict)
    soft_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not (
            isinstance(self.image, np.ndarray)
            and self.image.dtype == np.uint8
            and self.image.ndim == 3
            and self.image.shape[2] == 3
        ):
            raise InvalidInputError(
                "image must be a uint8 RGB array of shape H×W×3 (use erasekit.io to convert)"
            )
        if self.mask is not None:
            if not (isinstance(self.mask, np.ndarray) and self.mask.ndim == 2):
                raise InvalidInputError("mask must be a 2-D array (H×W)")
            if self.mask.shape != self.image.shape[:2]:
                raise InvalidInputError(
                    f"mask size {self.mask.shape[1]}×{self.mask.shape[0]} does not match image size "
                    f"{self.image.shape[1]}×{self.image.shape[0]}"
                )
        if self.soft_mask is not None and (
            self.mask is None
            or not isinstance(self.soft_mask, np.ndarray)
            or self.soft_mask.shape != self.mask.shape
        ):
            raise InvalidInputError("soft_mask must be a 2-D array of the mask's size, given with a mask")
        if self.dilate < 0:
            raise InvalidInputError(f"dilate must be >= 0 pixels, got {self.dilate}")


@dataclass
class RemovalResult:
    """What every remover returns.

    ``image``: uint8 RGB H×W×3 at the input's size. ``alpha``: float32 H×W in [0, 1], the region the method
    actually edited (the effect-aware alpha for OSOR, the processed mask for others). ``unchanged`` is True
    when the mask was empty and the input came back as it was. ``timings`` are seconds per stage; ``metadata``
    records the settings that produced the result (method options, seed, strategy, ``chain`` and
    ``mask_source``) so a result can be reproduced.
    """

    image: np.ndarray
    alpha: np.ndarray | None
    method: str
    timings: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    unchanged: bool = False
    mask: np.ndarray | None = None  # the mask the method got (drawn, or from text -> mask), before `dilate`

    def to_pil(self):
        from PIL import Image

        return Image.fromarray(self.image)

    def alpha_pil(self):
        from PIL import Image

        if self.alpha is None:
            return None
        return Image.fromarray(np.clip(np.rint(self.alpha * 255.0), 0, 255).astype(np.uint8))

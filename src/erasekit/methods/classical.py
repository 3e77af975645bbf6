"""Weight-free removers: PatchMatch (the default) and OpenCV's Telea and Navier-Stokes inpainting.

PatchMatch comes compiled from the ``pypatchmatch`` package; Telea and NS from OpenCV. Nothing is reimplemented here:
these classes only adapt the libraries to the remover contract.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from ..convert import mask_to_uint8
from ..hd import SizeConstraints
from ..types import MissingWeightsError, RemovalRequest
from .base import Remover


def patchmatch_library():
    """The pypatchmatch module, or a MissingWeightsError naming the fix when its native library cannot load."""
    try:
        import patchmatch
    except ImportError as exc:
        raise MissingWeightsError(f"the patchmatch method needs the pypatchmatch package ({exc}); "
                                  "run: pip install pypatchmatch") from None
    if not patchmatch.patchmatch_available:
        raise MissingWeightsError("pypatchmatch is installed but its native library failed to load; "
                                  "reinstall it with: pip install --force-reinstall pypatchmatch")
    return patchmatch


def patchmatch_location() -> str | None:
    try:
        lib = patchmatch_library()
    except MissingWeightsError:
        return None
    return f"pypatchmatch {lib.__version__} (native library)"


class PatchMatchRemover(Remover):
    """Exemplar-based fill (Barnes et al. 2009): copies patches from the known region. Seeded, so deterministic."""

    name: ClassVar[str] = "patchmatch"
    constraints: ClassVar[SizeConstraints] = SizeConstraints(min_side=8)
    option_names: ClassVar[frozenset[str]] = frozenset({"patch_size"})

    def __init__(self, patch_size: int = 3):
        if patch_size < 1:
            raise ValueError("patch_size must be >= 1")
        self.patch_size = patch_size
        self._lib = patchmatch_library()

    def describe(self):
        return {**super().describe(), "patch_size": self.patch_size}

    def inpaint(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest):
        patch_size = int(request.options.get("patch_size", self.patch_size))
        # The native library keeps a global seed; set it for every call so results do not depend on call order.
        self._lib.set_random_seed(0 if request.seed is None else int(request.seed))
        out = self._lib.inpaint(np.ascontiguousarray(image), mask_to_uint8(mask), patch_size=patch_size)
        return out, None


class OpenCVRemover(Remover):
    """Diffusion-style fill from the mask border (Telea 2004 fast marching, or Navier-Stokes). Cheap, blurry."""

    constraints: ClassVar[SizeConstraints] = SizeConstraints()
    option_names: ClassVar[frozenset[str]] = frozenset({"radius"})
    flag: ClassVar[int]

    def __init__(self, radius: int = 5):
        if radius < 1:
            raise ValueError("radius must be >= 1")
        self.radius = radius

    def describe(self):
        return {**super().describe(), "radius": self.radius}

    def inpaint(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest):
        radius = float(request.options.get("radius", self.radius))
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        filled = cv2.inpaint(bgr, (mask > 0).astype(np.uint8) * 255, radius, self.flag)
        return cv2.cvtColor(filled, cv2.COLOR_BGR2RGB), None


class TeleaRemover(OpenCVRemover):
    name: ClassVar[str] = "telea"
    flag: ClassVar[int] = cv2.INPAINT_TELEA


class NavierStokesRemover(OpenCVRemover):
    name: ClassVar[str] = "ns"
    flag: ClassVar[int] = cv2.INPAINT_NS

"""Weight-free removers: PatchMatch (the default) and OpenCV's Telea and Navier-Stokes inpainting.

PatchMatch comes compiled from the ``pypatchmatch`` package; Telea and NS from OpenCV. Nothing is
reimplemented here: these classes only adapt the libraries to the remover contract.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import ClassVar

import cv2
import numpy as np

from ..hd import HDStrategy, SizeConstraints
from ..options import Option, OptionSet, Range
from ..registry import MethodSpec, WeightRequirement, register_method
from ..types import InvalidInputError, MissingWeightsError, RemovalRequest
from .base import Remover

# The native PatchMatch library keeps its random seed in one process-wide variable: seeding and inpainting
# must happen together, or two threads (the web server) would each run with the other's seed.
_PATCHMATCH_LOCK = threading.Lock()


def _hole(mask: np.ndarray) -> np.ndarray:
    """uint8 hole map for the libraries: every pixel with a nonzero mask value is filled."""
    return (np.asarray(mask) > 0).astype(np.uint8) * 255


def patchmatch_library():
    """The pypatchmatch module.

    Raises a MissingWeightsError naming the fix when its native library cannot load.
    """
    try:
        import patchmatch
    except ImportError as exc:
        raise MissingWeightsError(
            f"the patchmatch method needs the pypatchmatch package ({exc}); run: pip install pypatchmatch"
        ) from None
    if not patchmatch.patchmatch_available:
        raise MissingWeightsError(
            "pypatchmatch is installed but its native library failed to load; "
            "reinstall it with: pip install --force-reinstall pypatchmatch"
        )
    return patchmatch


def patchmatch_location() -> str | None:
    try:
        lib = patchmatch_library()
    except MissingWeightsError:
        return None
    return f"pypatchmatch {lib.__version__} (native library)"


class PatchMatchRemover(Remover):
    """Exemplar-based fill (Barnes et al. 2009): copies patches from the known region.

    Seeded, so deterministic.
    """

    name: ClassVar[str] = "patchmatch"
    constraints: ClassVar[SizeConstraints] = SizeConstraints(min_side=8)
    # Always work on a crop around each object, whatever the image size: patches then come from the object's
    # surroundings, not from far regions (a whole-image search on the astronaut photo pasted part of her face
    # where the shuttle was). 48 px of context worked on every demo photo; much larger margins pull that
    # structure back in.
    default_hd_strategy: ClassVar[HDStrategy] = HDStrategy(name="crop", crop_trigger=1, crop_margin=48)
    call_options: OptionSet = OptionSet(
        # 3 is the radius pypatchmatch's own examples use ((2·3+1)² = 49-pixel patches). The cost grows with
        # the patch area: at 32 (65×65 patches) a patch is wider than the 48 px context of the crop strategy.
        Option(
            "patch_size",
            int,
            default=3,
            range=Range(1, 32),
            help="patch radius in pixels: patches of (2r+1)² pixels; larger follows larger structures, "
            "slower",
        ),
        # pypatchmatch's `global_mask` (pixels no patch is copied from), offered the way photo editors offer a
        # fill's "sampling area". A function rather than an array because the HD strategy may hand inpaint a
        # crop: it receives the piece being filled, so with the default crop strategy it sees a crop; pass
        # hd_strategy="original" to work in full-image coordinates (what erasekit's demo does).
        Option(
            "sampling_area",
            Callable,
            nullable=True,
            python_only=True,
            help="function (image, hole) -> bool H×W array: the pixels patches may be copied from "
            "(default: every pixel outside the hole)",
        ),
    )

    def __init__(self, patch_size: int = 3):
        """``patch_size``: this remover's default for the per-call option of the same name."""
        self.call_options = type(self).call_options.with_defaults(owner=self.name, patch_size=patch_size)
        self.patch_size: int = self.call_options["patch_size"].default
        self._lib = patchmatch_library()

    def describe(self):
        return {**super().describe(), "patch_size": self.patch_size}

    def inpaint(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest):
        patch_size = request.options["patch_size"]
        hole = _hole(mask)
        excluded = _excluded_sources(request.options["sampling_area"], image, hole)
        # Seed every call (seed None -> 0) so results never depend on call order; see _PATCHMATCH_LOCK.
        with _PATCHMATCH_LOCK:
            self._lib.set_random_seed(0 if request.seed is None else int(request.seed))
            out = self._lib.inpaint(
                np.ascontiguousarray(image), hole, global_mask=excluded, patch_size=patch_size
            )
        return out, None


def _excluded_sources(
    sampling_area: Callable[[np.ndarray, np.ndarray], np.ndarray] | None, image: np.ndarray, hole: np.ndarray
) -> np.ndarray | None:
    """pypatchmatch's ``global_mask`` for a sampling area: 255 where no patch may come from. The library
    also leaves global-mask pixels unfilled, so the hole itself is never part of it."""
    if sampling_area is None:
        return None
    allowed = np.asarray(sampling_area(image, hole > 0))
    if allowed.shape != hole.shape:
        raise InvalidInputError(
            f"patchmatch's sampling_area returned shape {allowed.shape}, expected {hole.shape} (the piece "
            "being filled; pass hd_strategy='original' to get the whole image)"
        )
    allowed = allowed.astype(bool) & (hole == 0)
    if not allowed.any():
        raise InvalidInputError("patchmatch's sampling_area leaves no pixel outside the hole to copy from")
    return np.where(allowed | (hole > 0), 0, 255).astype(np.uint8)


class OpenCVRemover(Remover):
    """Diffusion-style fill from the mask border (Telea 2004 fast marching, or Navier-Stokes).

    Cheap, blurry.
    """

    constraints: ClassVar[SizeConstraints] = SizeConstraints()
    call_options: OptionSet = OptionSet(
        # OpenCV's inpaintRadius: the neighbourhood each filled pixel averages over. The cost grows with its
        # area; 64 px is far beyond the few pixels where the fill is a smooth continuation of the border.
        Option(
            "radius",
            int,
            default=5,
            range=Range(1, 64),
            help="neighbourhood radius in pixels that each filled pixel is computed from",
        ),
    )
    flag: ClassVar[int]

    def __init__(self, radius: int = 5):
        """``radius``: this remover's default for the per-call option of the same name."""
        self.call_options = type(self).call_options.with_defaults(owner=self.name, radius=radius)
        self.radius: int = self.call_options["radius"].default

    def describe(self):
        return {**super().describe(), "radius": self.radius}

    def inpaint(self, image: np.ndarray, mask: np.ndarray, request: RemovalRequest):
        radius = request.options["radius"]
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        filled = cv2.inpaint(bgr, _hole(mask), float(radius), self.flag)
        return cv2.cvtColor(filled, cv2.COLOR_BGR2RGB), None


class TeleaRemover(OpenCVRemover):
    name: ClassVar[str] = "telea"
    flag: ClassVar[int] = cv2.INPAINT_TELEA


class NavierStokesRemover(OpenCVRemover):
    name: ClassVar[str] = "ns"
    flag: ClassVar[int] = cv2.INPAINT_NS


def register() -> None:
    """Register the weight-free methods (called once by :mod:`erasekit.methods`)."""
    register_method(
        MethodSpec(
            name="patchmatch",
            description="PatchMatch exemplar fill (weight-free, the default on a fresh machine)",
            factory=PatchMatchRemover,
            weights=(
                WeightRequirement(
                    "pypatchmatch",
                    "compiled PatchMatch library",
                    patchmatch_location,
                    fetch_hint="pip install pypatchmatch",
                ),
            ),
            auto_priority=0,
            paper="Barnes et al., SIGGRAPH 2009",
        )
    )
    register_method(
        MethodSpec(
            name="telea",
            description="OpenCV fast-marching inpainting (Telea 2004); fastest, blurry on large holes",
            factory=TeleaRemover,
            auto_priority=-2,
            paper="Telea, JGT 2004",
        )
    )
    register_method(
        MethodSpec(
            name="ns",
            description="OpenCV Navier-Stokes inpainting (Bertalmio et al. 2001); smooth fills",
            factory=NavierStokesRemover,
            auto_priority=-1,
            paper="Bertalmio et al., CVPR 2001",
        )
    )

"""``color-match``: the fill's colour statistics matched to the input's ring just outside the region.

Reinhard et al., "Color Transfer between Images", IEEE CG&A 2001: per channel, the fill's mean and standard
deviation are moved to the reference's, ``l' = (l − μ_fill) · σ_ring / σ_fill + μ_ring``. The source
statistics are the method output's inside the region; the reference statistics are the input's in a ring
``ring`` pixels wide around the region — the surroundings the fill must blend into.

Colour space: CIE L*a*b* (D65) through OpenCV's float conversion. Reinhard et al. use Ruderman's lαβ, which
neither OpenCV nor kornia provides; L*a*b* serves the same purpose (an achromatic axis and two opponent-colour
axes, close to decorrelated on natural images, so channels can be matched independently) and is the usual
substitute. OpenCV over kornia because it works on numpy arrays in place: no torch import or tensor round trip
for a CPU-side step.

The correction is applied to the region's box grown by the ring, not only inside the region, so a refiner that
follows in a chain (``color-match,poisson``) sees a fill consistent with its corrected surroundings.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .. import masks as M
from ..types import InvalidInputError
from .base import Refiner
from .registry import RefinerSpec, register_refiner

# σ_ring / σ_fill is capped: a nearly flat fill (Telea over a wide hole) has σ near 0, and the uncapped ratio
# would blow its quantisation noise up into grain. A flat fill (σ = 0) is only shifted.
_MAX_GAIN = 4.0


class ColorMatchRefiner(Refiner):
    """Reinhard-style mean/std colour transfer in L*a*b* from the input's ring onto the fill."""

    name = "color-match"

    def __init__(self, ring: int = 16):
        if isinstance(ring, bool) or not isinstance(ring, int) or ring < 1:
            raise InvalidInputError(f"color-match ring must be a whole number of pixels >= 1, got {ring!r}")
        self.ring = ring

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "ring": self.ring}

    def refine(self, image: np.ndarray, output: np.ndarray, region: np.ndarray) -> np.ndarray:
        inside = region > 0
        x, y, w, h = cv2.boundingRect(inside.view(np.uint8))
        box = M.Box(y, x, y + h, x + w).expand(self.ring, inside.shape)
        ys, xs = box.slices
        inside = inside[ys, xs]
        ring = (M.dilate(inside.astype(np.float32), self.ring) > 0) & ~inside
        if not ring.any():  # the region covers everything: there are no surroundings to match
            return output.copy()
        fill = _to_lab(output[ys, xs])
        reference = _to_lab(image[ys, xs])[ring]
        source = fill[inside]
        mean_fill, std_fill = source.mean(axis=0), source.std(axis=0)
        mean_ring, std_ring = reference.mean(axis=0), reference.std(axis=0)
        gain = np.where(std_fill > 0, np.minimum(std_ring / np.maximum(std_fill, 1e-12), _MAX_GAIN), 1.0)
        matched = (fill - mean_fill) * gain.astype(np.float32) + mean_ring
        refined = output.copy()
        refined[ys, xs] = _to_rgb(matched)
        return refined


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 L*a*b* (L in [0, 100]); OpenCV's float path, not its 8-bit quantised one."""
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _to_rgb(lab: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def register() -> None:
    """Register ``color-match`` (called once by :mod:`erasekit.refiners`)."""
    register_refiner(RefinerSpec(
        name="color-match",
        description="match the fill's colour mean/std (L*a*b*) to its surrounding ring (option ring=PIXELS, "
                    "default 16)",
        factory=ColorMatchRefiner, paper="Reinhard et al., IEEE CG&A 2001",
    ))

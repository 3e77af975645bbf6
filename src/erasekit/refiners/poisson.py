"""``poisson``: Poisson blending of the method output into the input at the seam (``cv2.seamlessClone``).

Poisson image editing (Pérez, Gangnet & Blake, SIGGRAPH 2003, Sec. 3, importing gradients: the source's
gradient is the guidance field, OpenCV's ``NORMAL_CLONE``): inside the region the result keeps the output's
gradients while its values meet the input at the boundary, so a colour offset between the fill and its
surroundings — a diffusion output's drift, a VAE round trip — is spread smoothly over the fill instead of
showing as an edge after paste-back. Where the output already agrees with the input around the region (a
classical fill), the blend leaves it as it is.

What ``cv2.seamlessClone`` requires, and how each is met here (OpenCV
``modules/photo/src/seamless_cloning*.cpp``):

* **It solves over the mask's bounding box with that box's border as the fixed boundary**, and it takes the
  source's gradients only on the mask eroded by three 3×3 iterations (elsewhere the destination's). A mask
  equal to the region would leave the object's own pixels on the box border and its gradients in a 3-pixel
  inner band. So the clone mask is the region grown by 4 pixels (3 for that erosion, 1 so the forward
  differences across the region's edge come from the output): every region pixel is an unknown driven by the
  output's gradients.
* **It zeroes the mask's one-pixel frame**, so a mask touching the array border loses pixels. Each crop is
  padded by ``_PAD`` pixels (the 4 of growth plus that frame). Beyond the image there is no input to blend
  towards, so the padding of *both* images is the output, reflected: at the image border the fill keeps its
  own values.
* **The clone lands centred on the point given**: the centre of the clone mask's bounding box, rounded as
  OpenCV rounds it (``p - size / 2`` in integers), so the blend is not shifted.
* **Several components**: one solve per component box (boxes merged where they would overlap), so two small
  marks in opposite corners of a large photo are two small solves, not one over the whole photo. Each solve
  depends only on its box, so this equals cloning each component alone.
* **An empty region** never reaches :meth:`PoissonRefiner.refine` (the base returns the output as it is);
  OpenCV would return its destination untouched for an empty mask.
"""

from __future__ import annotations

import cv2
import numpy as np

from .. import masks as M
from .base import Refiner
from .registry import RefinerSpec, register_refiner

_CLONE_GROWTH = 4  # OpenCV's 3 erosions of the clone mask + 1 for the forward differences at the edge
_PAD = _CLONE_GROWTH + 1  # + OpenCV's zeroed one-pixel mask frame
_SQUARE_3X3 = np.ones((3, 3), np.uint8)  # the structuring element OpenCV erodes with


class PoissonRefiner(Refiner):
    """Poisson blending (``cv2.seamlessClone``, ``NORMAL_CLONE``) of the output into the input."""

    name = "poisson"

    def refine(self, image: np.ndarray, output: np.ndarray, region: np.ndarray) -> np.ndarray:
        inside = region > 0  # the solve is binary; a soft region is blended softly by paste-back afterwards
        refined = output.copy()
        for box in M.merge_overlapping([b.expand(_PAD, inside.shape) for b in M.component_boxes(inside)]):
            ys, xs = box.slices
            refined[ys, xs] = seamless_clone(image[ys, xs], output[ys, xs], inside[ys, xs])
        return refined


def seamless_clone(image: np.ndarray, output: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``output`` Poisson-blended into ``image`` over the boolean ``inside`` (all three one crop's size)."""
    p = _PAD
    source = cv2.copyMakeBorder(output, p, p, p, p, cv2.BORDER_REFLECT_101)
    target = source.copy()  # beyond the image the boundary values come from the output itself
    target[p:-p, p:-p] = image
    clone = cv2.dilate(np.pad(inside, p).astype(np.uint8) * 255, _SQUARE_3X3, iterations=_CLONE_GROWTH)
    x, y, w, h = cv2.boundingRect(clone)
    blended = cv2.seamlessClone(source, target, clone, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    return blended[p:-p, p:-p]


def register() -> None:
    """Register ``poisson`` (called once by :mod:`erasekit.refiners`)."""
    register_refiner(RefinerSpec(
        name="poisson",
        description="Poisson blending of the fill into its surroundings at the seam (OpenCV seamlessClone)",
        factory=PoissonRefiner, paper="Pérez, Gangnet & Blake, SIGGRAPH 2003",
    ))

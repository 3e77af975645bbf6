"""Mask algebra on float32 H×W masks in [0, 1] (1 = remove).

OpenCV does the morphology and distance transforms; scikit-image labels components. What is written here by hand is
only the glue these libraries do not provide (soft-mask semantics, component boxes with margins).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def binarize(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """1 where ``mask > threshold`` else 0, as float32. A threshold of 0 means "any nonzero value"."""
    return (np.asarray(mask, dtype=np.float32) > threshold).astype(np.float32)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow the mask by ``pixels`` with a disk (soft values are max-filtered, so 1s stay 1s)."""
    if pixels <= 0:
        return np.asarray(mask, dtype=np.float32).copy()
    return cv2.dilate(np.asarray(mask, dtype=np.float32), _disk(pixels), borderType=cv2.BORDER_CONSTANT,
                      borderValue=0)


def erode(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Shrink the mask by ``pixels`` with a disk (pixels beyond the border count as unmasked)."""
    if pixels <= 0:
        return np.asarray(mask, dtype=np.float32).copy()
    return cv2.erode(np.asarray(mask, dtype=np.float32), _disk(pixels), borderType=cv2.BORDER_CONSTANT,
                     borderValue=0)


def feather(mask: np.ndarray, pixels: int, *, inward: bool = True) -> np.ndarray:
    """Soft edge of width ``pixels``.

    ``inward=True`` (the paste-back default) ramps from 0 at the mask border to 1 at ``pixels`` inside, so the soft
    mask never exceeds the hard one: pixels outside the mask are never touched. ``inward=False`` blurs symmetrically
    (a Gaussian with sigma = pixels / 2), which reaches outside the mask.
    """
    hard = binarize(mask, 0.0)
    if pixels <= 0:
        return hard
    if inward:
        inside = cv2.distanceTransform(hard.astype(np.uint8), cv2.DIST_L2, 5)
        return np.clip(inside / float(pixels), 0.0, 1.0).astype(np.float32) * hard
    return cv2.GaussianBlur(hard, (0, 0), sigmaX=pixels / 2.0, borderType=cv2.BORDER_REPLICATE).astype(np.float32)


@dataclass(frozen=True)
class Box:
    """Half-open pixel box ``[top, bottom) × [left, right)``."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def area(self) -> int:
        return max(self.height, 0) * max(self.width, 0)

    def expand(self, margin: int, shape: tuple[int, int]) -> "Box":
        """Grow by ``margin`` on every side, clipped to an image of ``shape`` (H, W)."""
        h, w = shape
        return Box(max(self.top - margin, 0), max(self.left - margin, 0), min(self.bottom + margin, h),
                   min(self.right + margin, w))

    def union(self, other: "Box") -> "Box":
        return Box(min(self.top, other.top), min(self.left, other.left), max(self.bottom, other.bottom),
                   max(self.right, other.right))

    def intersects(self, other: "Box") -> bool:
        return not (self.bottom <= other.top or other.bottom <= self.top or self.right <= other.left
                    or other.right <= self.left)

    def iou(self, other: "Box") -> float:
        inter = Box(max(self.top, other.top), max(self.left, other.left), min(self.bottom, other.bottom),
                    min(self.right, other.right))
        i = inter.area if inter.height > 0 and inter.width > 0 else 0
        u = self.area + other.area - i
        return i / u if u else 0.0

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)


def connected_components(mask: np.ndarray, *, connectivity: int = 2) -> tuple[np.ndarray, int]:
    """Label the nonzero pixels (8-connectivity by default). Returns (labels int32 H×W, count)."""
    from skimage.measure import label

    labels, count = label(binarize(mask, 0.0).astype(bool), connectivity=connectivity, return_num=True)
    return labels.astype(np.int32), int(count)


def component_boxes(mask: np.ndarray) -> list[Box]:
    """Tight boxes of each connected component, largest area first."""
    from skimage.measure import regionprops

    labels, _ = connected_components(mask)
    boxes = [Box(*region.bbox) for region in regionprops(labels)]
    return sorted(boxes, key=lambda b: (-b.area, b.top, b.left))


def merge_overlapping(boxes: list[Box]) -> list[Box]:
    """Union boxes until none overlap (crops that overlap would paste over each other)."""
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        out: list[Box] = []
        for box in merged:
            for i, kept in enumerate(out):
                if kept.intersects(box):
                    out[i] = kept.union(box)
                    changed = True
                    break
            else:
                out.append(box)
        merged = out
    return sorted(merged, key=lambda b: (-b.area, b.top, b.left))


def max_pool_to_grid(mask: np.ndarray, factor: int) -> np.ndarray:
    """Max-pool by ``factor`` (OSOR's mask-to-latent rule): a latent cell is masked if any of its pixels is.

    H and W must be multiples of ``factor``.
    """
    h, w = mask.shape
    if h % factor or w % factor:
        raise ValueError(f"mask size {w}×{h} is not a multiple of {factor}")
    m = np.asarray(mask, dtype=np.float32).reshape(h // factor, factor, w // factor, factor)
    return m.max(axis=(1, 3))

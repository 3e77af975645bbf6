"""Mask algebra on float32 H×W masks in [0, 1] (1 = remove).

OpenCV does the morphology, component labelling, distance transforms, resampling and drawing; scikit-image
gives the disk structuring element; SciPy shifts. What is written here by hand is only the glue these
libraries do not provide (soft-mask semantics, component boxes with margins, the OSOR target grids and the
incomplete-mask perturbation family).

Sections: basics (binarize/dilate/erode/feather) · components and boxes · grids (max-pool to latent, OSOR
occupancy "OG" / nearest "HM" / Gaussian "SM" targets) · drawing (strokes, polygons) · perturbations (OSOR
Phase II).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np


def binarize(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """1 where ``mask > threshold`` else 0, as float32. A threshold of 0 means "any nonzero value"."""
    return (np.asarray(mask, dtype=np.float32) > threshold).astype(np.float32)


def _disk(radius: int) -> np.ndarray:
    """Euclidean disk {x² + y² <= r²} (scikit-image). OpenCV's MORPH_ELLIPSE is not one: at r = 3 it includes
    (1, 3), which is sqrt(10) away, so "dilate by r pixels" would not mean "everything within distance r"."""
    from skimage.morphology import disk

    return disk(int(radius)).astype(np.uint8)


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow the mask by ``pixels`` with a Euclidean disk (soft values are max-filtered, so 1s stay 1s).

    Equal to ``cv2.dilate`` with the disk :func:`_disk` (a pixel is set when some mask pixel lies within
    ``pixels``), but it costs O(pixels of the image) whatever the radius, where the disk filter costs
    O(pixels × radius²): it thresholds a distance transform (:func:`_within`). A radius past the image's
    diagonal covers everything it can, so it is cut there. A soft mask takes one transform per distinct
    level (a flat max-filter commutes with thresholding).
    """
    m = np.asarray(mask, dtype=np.float32)
    if pixels <= 0:
        return m.copy()
    radius = min(int(pixels), math.ceil(math.hypot(*m.shape[:2])))
    levels = np.unique(m[m > 0])
    if levels.size == 0:
        return m.copy()
    if levels.size == 1 and levels[0] == 1.0:
        return _within(m > 0, radius).astype(np.float32)
    out = np.zeros_like(m)
    for level in levels:  # ascending, so each level overwrites the lower ones it covers
        out[_within(m >= level, radius)] = level
    return out


def _within(inside: np.ndarray, radius: int) -> np.ndarray:
    """Pixels whose squared distance to the nearest ``inside`` pixel is at most ``radius²``.

    OpenCV's exact (``DIST_MASK_PRECISE``) transform is float32 and a few 1e-4 off at large distances, so
    the pixels within 0.05 of the radius are decided exactly: their nearest boundary pixel comes from a
    k-d tree (SciPy), and the squared distance is compared in integers.
    """
    distance = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    out = distance <= radius
    near = np.abs(distance - radius) <= 0.05
    if near.any():
        from scipy.spatial import cKDTree

        edge = inside & ~cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8),
                                   borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        points = np.argwhere(edge)
        asked = np.argwhere(near)
        _, nearest = cKDTree(points).query(asked)
        gap = (asked - points[nearest]).astype(np.int64)
        out[asked[:, 0], asked[:, 1]] = (gap**2).sum(axis=1) <= radius * radius
    return out


def erode(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Shrink the mask by ``pixels`` with a disk (pixels beyond the border count as unmasked)."""
    if pixels <= 0:
        return np.asarray(mask, dtype=np.float32).copy()
    return cv2.erode(np.asarray(mask, dtype=np.float32), _disk(pixels), borderType=cv2.BORDER_CONSTANT,
                     borderValue=0)


def feather(mask: np.ndarray, pixels: int, *, inward: bool = True) -> np.ndarray:
    """Soft edge of width ``pixels``.

    ``inward=True`` (the paste-back default) ramps from 0 at the mask border to 1 at ``pixels`` inside, so the
    soft mask never exceeds the hard one: pixels outside the mask are never touched. ``inward=False`` blurs
    symmetrically (a Gaussian with sigma = pixels / 2), which reaches outside the mask.
    """
    hard = binarize(mask, 0.0)
    if pixels <= 0:
        return hard
    if inward:
        inside = cv2.distanceTransform(hard.astype(np.uint8), cv2.DIST_L2, 5)
        return np.clip(inside / float(pixels), 0.0, 1.0).astype(np.float32) * hard
    return cv2.GaussianBlur(hard, (0, 0), sigmaX=pixels / 2.0, borderType=cv2.BORDER_REPLICATE).astype(
        np.float32
    )


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

    def expand(self, margin: int, shape: tuple[int, int]) -> Box:
        """Grow by ``margin`` on every side, clipped to an image of ``shape`` (H, W)."""
        h, w = shape
        return Box(
            max(self.top - margin, 0),
            max(self.left - margin, 0),
            min(self.bottom + margin, h),
            min(self.right + margin, w),
        )

    def union(self, other: Box) -> Box:
        return Box(
            min(self.top, other.top),
            min(self.left, other.left),
            max(self.bottom, other.bottom),
            max(self.right, other.right),
        )

    def intersects(self, other: Box) -> bool:
        return not (
            self.bottom <= other.top
            or other.bottom <= self.top
            or self.right <= other.left
            or other.right <= self.left
        )

    def iou(self, other: Box) -> float:
        inter = Box(
            max(self.top, other.top),
            max(self.left, other.left),
            min(self.bottom, other.bottom),
            min(self.right, other.right),
        )
        i = inter.area if inter.height > 0 and inter.width > 0 else 0
        u = self.area + other.area - i
        return i / u if u else 0.0

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)


def connected_components(mask: np.ndarray, *, connectivity: int = 2) -> tuple[np.ndarray, int]:
    """Label the nonzero pixels (``connectivity=2``: 8-neighbours, the default; ``1``: 4-neighbours).

    Returns (labels int32 H×W, count). OpenCV labels in raster order like scikit-image, with int32 labels from
    the start (scikit-image returns int64: twice the memory on a 4096² mask).
    """
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 or 2, got {connectivity}")
    count, labels = cv2.connectedComponents(
        _nonzero_u8(mask), connectivity=8 if connectivity == 2 else 4, ltype=cv2.CV_32S
    )
    return labels, int(count - 1)


def component_boxes(mask: np.ndarray, *, connectivity: int = 2) -> list[Box]:
    """Tight boxes of each connected component, largest area first."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(
        _nonzero_u8(mask), connectivity=8 if connectivity == 2 else 4, ltype=cv2.CV_32S
    )
    boxes = [Box(int(y), int(x), int(y + h), int(x + w)) for x, y, w, h in stats[1:, :4]]  # row 0: background
    return sorted(boxes, key=lambda b: (-b.area, b.top, b.left))


def _nonzero_u8(mask: np.ndarray) -> np.ndarray:
    return (np.asarray(mask) != 0).view(np.uint8)


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

    Strict: H and W must be multiples of ``factor`` (latent backbones get inputs padded to the multiple, so a
    mismatch here is a bug upstream). :func:`max_pool_to_grid_ceil` accepts any size.
    """
    h, w = mask.shape
    if h % factor or w % factor:
        raise ValueError(f"mask size {w}×{h} is not a multiple of {factor}")
    m = np.asarray(mask, dtype=np.float32).reshape(h // factor, factor, w // factor, factor)
    return m.max(axis=(1, 3))


def max_pool_to_grid_ceil(mask: np.ndarray, factor: int) -> np.ndarray:
    """Max-pool by ``factor`` for any size: the grid is ``ceil(H / factor) × ceil(W / factor)``.

    The last row/column of cells covers the leftover pixels only (the mask is padded with zeros, which never
    win a max), so equal to :func:`max_pool_to_grid` whenever the size divides.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    m = np.asarray(mask, dtype=np.float32)
    h, w = m.shape
    gh, gw = -(-h // factor), -(-w // factor)
    padded = np.pad(m, ((0, gh * factor - h), (0, gw * factor - w)))
    return max_pool_to_grid(padded, factor)


# ---- OSOR discriminator targets (Fig. 4, Eq. 7)
# ------------------------------------------------------------------ The occupancy-guided discriminator needs,
# for each patch-logit location, a target in [0, 1]. The paper compares three constructions (Sec. 3 and App.
# B.6, ablation Table 3): HM (nearest), SM (Gaussian-smoothed) and OG (area pooling, the one OSOR uses as w~_k
# in Eqs. 7-8).


def _check_grid(mask: np.ndarray, grid_hw: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    m = np.asarray(mask, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"mask must be H×W, got shape {m.shape}")
    gh, gw = (int(v) for v in grid_hw)
    h, w = m.shape
    if not (1 <= gh <= h and 1 <= gw <= w):
        raise ValueError(f"grid {gw}×{gh} must be between 1×1 and the mask size {w}×{h}")
    return m, gh, gw


def occupancy_grid(mask: np.ndarray, grid_hw: tuple[int, int]) -> np.ndarray:
    """OSOR "OG" targets: each grid cell holds the exact fraction of its area that the mask covers (Fig. 4).

    Cell ``(i, j)`` spans rows ``[i·H/gh, (i+1)·H/gh)`` and columns ``[j·W/gw, (j+1)·W/gw)`` in continuous
    pixel coordinates, so when the size does not divide, boundary pixels count with their fractional overlap.
    OpenCV's ``INTER_AREA`` downscaling computes exactly this area average
    (``torch.nn.functional.adaptive_avg_pool2d`` does not: it uses whole-pixel bins). ``grid_hw`` must not
    exceed the mask size (OpenCV's area mode is only an area average when shrinking). Soft masks give the
    area-weighted mean of their values.
    """
    m, gh, gw = _check_grid(mask, grid_hw)
    if (gh, gw) == m.shape:
        return m.copy()
    return np.clip(cv2.resize(m, (gw, gh), interpolation=cv2.INTER_AREA), 0.0, 1.0).astype(np.float32)


def nearest_grid(mask: np.ndarray, grid_hw: tuple[int, int]) -> np.ndarray:
    """OSOR "HM" targets: nearest-neighbour downsampling (hard labels for a binary mask).

    Samples pixel ``floor(i · H / gh)``, the same rule as ``torch.nn.functional.interpolate(mode="nearest")``
    and OpenCV's ``INTER_NEAREST``, so these targets match what a PyTorch training loop would compute.
    """
    m, gh, gw = _check_grid(mask, grid_hw)
    return cv2.resize(m, (gw, gh), interpolation=cv2.INTER_NEAREST).astype(np.float32)


def gaussian_grid(mask: np.ndarray, grid_hw: tuple[int, int], sigma: float = 1.0) -> np.ndarray:
    """OSOR "SM" targets: nearest downsampling, then Gaussian smoothing on the grid.

    See Fig. 4 caption and App. B.6. ``sigma`` is in grid cells (default 1.0), so the same sigma blurs over
    more image pixels on coarser grids — the dependence on bandwidth the paper criticises. Beyond the border
    the edge cell is repeated (a mask touching the frame stays 1 there). ``sigma = 0`` returns the HM grid.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    hard = nearest_grid(mask, grid_hw)
    if sigma == 0:
        return hard
    return np.clip(
        cv2.GaussianBlur(hard, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE), 0.0, 1.0
    ).astype(np.float32)


# ---- drawing -----------------------------------------------------------------------------------------------


def _shape_hw(shape: Sequence[int]) -> tuple[int, int]:
    from .types import InvalidInputError

    if len(shape) < 2 or int(shape[0]) < 1 or int(shape[1]) < 1:
        raise InvalidInputError(f"mask shape must be (H, W) with H, W >= 1, got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def _points_xy(points, what: str) -> np.ndarray:
    from .types import InvalidInputError

    try:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be a list of (x, y) points") from None
    if pts.size == 0 or not np.isfinite(pts).all():
        raise InvalidInputError(f"{what} must be a non-empty list of finite (x, y) points")
    return np.rint(pts).astype(np.int32)


def stroke_to_mask(points, radius: float, shape: Sequence[int]) -> np.ndarray:
    """A scribble: the polyline through ``points`` ((x, y) pixel coordinates) drawn with a round brush.

    The one-pixel polyline (OpenCV) dilated by a Euclidean disk of ``radius``: every pixel within ``radius``
    of a drawn line pixel, so caps and joints are round and the brush is never wider than asked (OpenCV's own
    thick lines overshoot by up to a pixel). A single point gives a disk. Points may lie outside the image;
    the stroke is clipped. ``radius = 0`` draws the one-pixel line.
    """
    from .types import InvalidInputError

    h, w = _shape_hw(shape)
    if radius < 0:
        raise InvalidInputError(f"stroke radius must be >= 0, got {radius}")
    pts = _points_xy(points, "stroke")
    r = round(radius)
    # Draw on a canvas padded by r so brush disks centred just outside the image still reach into it.
    canvas = np.zeros((h + 2 * r, w + 2 * r), np.uint8)
    cv2.polylines(
        canvas, [(pts + r).reshape(-1, 1, 2)], isClosed=False, color=1, thickness=1, lineType=cv2.LINE_8
    )
    inside = (pts[:, 0] + r >= 0) & (pts[:, 0] < w + r) & (pts[:, 1] + r >= 0) & (pts[:, 1] < h + r)
    canvas[pts[inside, 1] + r, pts[inside, 0] + r] = 1  # polylines draws nothing for a single vertex
    return dilate(canvas.astype(np.float32), r)[r : r + h, r : r + w].copy()


def polygon_to_mask(polygons, shape: Sequence[int]) -> np.ndarray:
    """Fill each polygon (a list of (x, y) vertices; several polygons give their union) into an H×W mask."""
    from .types import InvalidInputError

    h, w = _shape_hw(shape)
    polys = [polygons] if _is_point_list(polygons) else polygons
    canvas = np.zeros((h, w), np.uint8)
    for poly in polys:
        pts = _points_xy(poly, "polygon")
        if len(pts) < 3:
            raise InvalidInputError(f"a polygon needs at least 3 vertices, got {len(pts)}")
        # One fillPoly call per polygon: a single call with several contours fills overlaps by parity (holes).
        cv2.fillPoly(canvas, [pts.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8)
    return canvas.astype(np.float32)


def _is_point_list(value) -> bool:
    """True for ``[(x, y), ...]`` (one polygon), False for ``[[(x, y), ...], ...]`` (several)."""
    try:
        first = value[0]
        return np.ndim(first) == 1 and len(first) == 2 and np.isscalar(first[0])
    except (TypeError, IndexError, KeyError):
        return False


# ---- incomplete-mask perturbations (OSOR Phase II, Sec. 3.4 "Incomplete-mask conditioning", Fig. 6) --------
# Phase II conditions on a conservative mask m_in derived from the effect-aware target m_gt. One mode is
# sampled per batch with these probabilities (the authors' public code, Zhouqm-Git/osor). "object_core" is not
# a perturbation of m_gt but the SAVP object-core mask m_obj, so it is only possible when the sample has one.
# The four operators are the authors' (src/data/augment.py): each binarises its input at > 128/255 and returns
# a {0, 1} mask. Their defaults are the SDXL magnitudes; FLUX's are in erasekit.methods.osor.recipe.
PERTURBATION_PROBABILITIES: dict[str, float] = {
    "shrink": 0.35,
    "expand": 0.2,
    "holes": 0.1,
    "shift": 0.05,
    "object_core": 0.3,
}


def _hard_uint8(mask: np.ndarray, above: int = 128) -> np.ndarray:
    """The authors' ``(mask8 > 128)`` on a float mask: 0/255 uint8, what OpenCV's morphology expects."""
    eight = np.round(np.clip(np.asarray(mask, np.float32), 0.0, 1.0) * 255.0)
    return (eight > above).astype(np.uint8) * 255


def _as_float(mask8: np.ndarray) -> np.ndarray:
    return (mask8 > 0).astype(np.float32)


def shrink(
    mask: np.ndarray, rng: np.random.Generator, *, keep: tuple[float, float] = (0.5, 0.7), above: int = 128
) -> np.ndarray:
    """Keep the ``int(area · U(keep))`` innermost pixels, ranked by the L2 distance transform.

    As the authors write it: the pixels at or below the k-th smallest distance (k = pixels to remove) go, so
    ties at the cut remove a few more than k. Result ⊆ mask.
    """
    hard = _hard_uint8(mask, above)
    area = int(np.count_nonzero(hard))
    if area == 0:
        return _as_float(hard)
    remove = area - int(area * float(rng.uniform(*keep)))
    if remove <= 0:
        return _as_float(hard)
    dist = cv2.distanceTransform(hard, cv2.DIST_L2, 5)
    threshold = np.partition(dist[hard > 0], remove - 1)[remove - 1]
    return (dist > threshold).astype(np.float32)


def expand(
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    kernels: Sequence[int] = (7, 11, 17),
    iterations: tuple[int, int] = (1, 3),
    above: int = 128,
) -> np.ndarray:
    """The convex hull of each outer contour, filled, then dilated by a square ``k × k`` kernel (k drawn from
    ``kernels``) for ``randint(*iterations)`` iterations (both ends included). Result ⊇ mask."""
    hard = _hard_uint8(mask, above)
    contours, _ = cv2.findContours(hard, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return _as_float(hard)
    hull = np.zeros_like(hard)
    cv2.drawContours(hull, [cv2.convexHull(c) for c in contours], -1, 255, -1)
    k = int(kernels[int(rng.integers(len(kernels)))])
    n = int(rng.integers(iterations[0], iterations[1] + 1))
    return _as_float(cv2.dilate(hull, np.ones((k, k), np.uint8), iterations=n))


def punch_holes(
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    seed_p: float = 0.0005,
    kernels: Sequence[int] = (17, 21, 31),
    min_keep: float = 0.4,
    above: int = 128,
) -> np.ndarray:
    """Holes: every pixel is a seed with probability ``seed_p``; the seeds are dilated by a square kernel
    (drawn from ``kernels``) and cut out of the mask. When less than ``min_keep`` of the mask would remain,
    the mask is returned unchanged. Result ⊆ mask."""
    hard = _hard_uint8(mask, above)
    seeds = (rng.random(hard.shape) < seed_p).astype(np.uint8) * 255
    k = int(kernels[int(rng.integers(len(kernels)))])
    holes = cv2.dilate(seeds, np.ones((k, k), np.uint8), iterations=1)
    out = cv2.bitwise_and(hard, cv2.bitwise_not(holes))
    if np.count_nonzero(out) < np.count_nonzero(hard) * min_keep:
        return _as_float(hard)
    return _as_float(out)


def shift(mask: np.ndarray, rng: np.random.Generator, *, limit: int = 35, above: int = 128) -> np.ndarray:
    """Translate by whole pixels dx, dy ~ U{-limit..limit} each (both ends included), the authors' draw.
    Pixels pushed past the border are dropped, as in their ``cv2.warpAffine`` with a zero border.

    One deliberate difference: a draw that would push *every* mask pixel out of the image is redrawn. The
    authors' code returns an empty conditioning mask there (a degenerate training sample with nothing to
    remove; issue 19 found it as a flaky test), so erasekit samples the same distribution conditioned on
    the mask staying in the image. (0, 0) is always allowed, so the loop ends."""
    hard = _hard_uint8(mask, above)
    ys, xs = np.nonzero(hard)
    height, width = hard.shape
    while True:
        dx = int(rng.integers(-limit, limit + 1))
        dy = int(rng.integers(-limit, limit + 1))
        inside = (ys + dy >= 0) & (ys + dy < height) & (xs + dx >= 0) & (xs + dx < width)
        if ys.size == 0 or inside.any():
            break
    matrix = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    moved = cv2.warpAffine(hard, matrix, (width, height), flags=cv2.INTER_NEAREST, borderValue=0)
    return _as_float(moved)


def _operator_options(settings) -> dict[str, dict]:
    """Keyword arguments per operator from a settings object with the fields of
    :class:`erasekit.methods.osor.recipe.MaskOperatorSettings` (None: the functions' SDXL defaults)."""
    if settings is None:
        return {"shrink": {}, "expand": {}, "holes": {}, "shift": {}}
    above = settings.binarize_above
    return {
        "shrink": {"keep": settings.shrink_keep, "above": above},
        "expand": {"kernels": settings.expand_kernels, "iterations": settings.expand_iterations,
                   "above": above},
        "holes": {"seed_p": settings.hole_seed_p, "kernels": settings.hole_kernels,
                  "min_keep": settings.hole_min_keep, "above": above},
        "shift": {"limit": settings.shift_px, "above": above},
    }


_PERTURBATIONS: dict[str, Callable[..., np.ndarray]] = {
    "shrink": shrink,
    "expand": expand,
    "holes": punch_holes,
    "shift": shift,
}


def perturb_mask(
    mask: np.ndarray,
    mode: str,
    rng: np.random.Generator,
    *,
    object_core: np.ndarray | None = None,
    settings=None,
) -> np.ndarray:
    """Apply one perturbation mode (a key of :data:`PERTURBATION_PROBABILITIES`).

    ``settings``: the operators' magnitudes (:class:`erasekit.methods.osor.recipe.MaskOperatorSettings`;
    default SDXL's). ``"object_core"`` returns ``object_core`` (the SAVP object mask m_obj, soft values kept),
    which must then be given.
    """
    if mode == "object_core":
        if object_core is None:
            raise ValueError("mode 'object_core' needs the sample's object-core mask (object_core=...)")
        core = np.clip(np.asarray(object_core, dtype=np.float32), 0.0, 1.0)
        if core.shape != np.shape(mask):
            raise ValueError(f"object-core mask shape {core.shape} differs from mask shape {np.shape(mask)}")
        return core.copy()
    try:
        fn = _PERTURBATIONS[mode]
    except KeyError:
        raise ValueError(
            f"unknown perturbation mode {mode!r}; choose from {', '.join(PERTURBATION_PROBABILITIES)}"
        ) from None
    return fn(mask, rng, **_operator_options(settings)[mode])


def sample_perturbation_mode(rng: np.random.Generator, *, has_object_core: bool = True) -> str:
    """Draw one mode with :data:`PERTURBATION_PROBABILITIES` (renormalised without ``object_core`` when the
    sample has no object-core mask)."""
    modes = [k for k in PERTURBATION_PROBABILITIES if has_object_core or k != "object_core"]
    p = np.array([PERTURBATION_PROBABILITIES[k] for k in modes], dtype=np.float64)
    return modes[int(rng.choice(len(modes), p=p / p.sum()))]

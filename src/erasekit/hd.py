"""High-resolution strategies shared by every method, applied once in the remover base.

A method states what it can take (:class:`SizeConstraints`: a size multiple, a minimum and a maximum side); a
strategy decides which pixels the method sees:

* ``original`` — the whole image at full resolution (only padded/limited to honour the constraints);
* ``resize``   — the whole image scaled so the long side is at most ``resize_limit``;
* ``crop``     — one crop per (merged) mask component with ``crop_margin`` pixels of context. Images whose
  long side is at most ``crop_trigger`` are processed whole, as with ``original``; so is a request without a
  mask.

Whatever the strategy, the output is pasted back onto the original through the paste region only, so pixels
outside it are bit-identical to the input. ``feather`` softens the paste inside the region.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Literal

import cv2
import numpy as np

from . import masks as M
from .types import InvalidInputError

StrategyName = Literal["original", "resize", "crop"]


@dataclass(frozen=True)
class SizeConstraints:
    """What a method accepts. ``size_multiple``: H and W must be multiples of it (padding is added);
    ``min_side``: smaller inputs are padded up; ``max_side``: larger inputs are scaled down."""

    size_multiple: int = 1
    min_side: int = 1
    max_side: int | None = None


@dataclass(frozen=True)
class HDStrategy:
    name: StrategyName = "crop"
    resize_limit: int = 2048
    crop_trigger: int = 1280
    crop_margin: int = 128
    feather: int = 0

    def __post_init__(self) -> None:
        if self.name not in ("original", "resize", "crop"):
            raise InvalidInputError(f"unknown HD strategy {self.name!r}; choose original, resize or crop")
        for f in ("resize_limit", "crop_trigger", "crop_margin", "feather"):
            value = getattr(self, f)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InvalidInputError(f"HD strategy {f} must be an integer number of pixels, got {value!r}")
        if self.resize_limit < 8 or self.crop_margin < 0 or self.feather < 0 or self.crop_trigger < 1:
            raise InvalidInputError(
                "HD strategy sizes must be positive (resize_limit >= 8, margin/feather >= 0)"
            )

    @classmethod
    def parse(cls, value: HDStrategy | str | dict | None) -> HDStrategy:
        """Build an HDStrategy from any accepted form.

        Accepts an HDStrategy, a name (``"crop"``), ``"resize:1024"`` / ``"crop:64"`` or a dict of fields.
        """
        if value is None:
            return cls()
        if isinstance(value, HDStrategy):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {f.name for f in fields(cls)}
            if unknown:
                raise InvalidInputError(f"unknown HD strategy field(s): {', '.join(sorted(unknown))}")
            return cls(**value)
        name, _, arg = str(value).strip().lower().partition(":")
        base = cls(name=name)  # type: ignore[arg-type]
        if not arg:
            return base
        try:
            number = int(arg)
        except ValueError:
            raise InvalidInputError(f"bad HD strategy {value!r}: expected NAME or NAME:INT") from None
        if name == "resize":
            return replace(base, resize_limit=number)
        if name == "crop":
            return replace(base, crop_margin=number)
        raise InvalidInputError(f"HD strategy {name!r} takes no argument")


# (image uint8 H×W×3, mask float32 H×W) -> (image uint8 H×W×3, alpha float32 H×W or None)
InpaintFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def _resize(array: np.ndarray, size_hw: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    h, w = size_hw
    if array.shape[:2] == (h, w):
        return array
    shrinking = h * w < array.shape[0] * array.shape[1]
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return cv2.resize(array, (w, h), interpolation=interp)


# What runs on each piece: (image, binary mask, soft mask or None) -> (raw output, alpha or None).
_PieceFn = Callable[[np.ndarray, np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray | None]]


def _fit(image: np.ndarray, mask: np.ndarray, soft: np.ndarray | None, c: SizeConstraints, fn: _PieceFn):
    """Run ``fn`` on an input made to satisfy ``c``.

    Scales down past max_side, pads to min_side and the multiple. ``soft`` (the soft mask, or None) is padded
    with zeros like the mask; a scaled input gets None (the method then conditions on the binary mask).
    """
    h, w = mask.shape
    sh, sw = h, w
    m = max(c.size_multiple, 1)
    # Padding to the multiple must not push a side past max_side, so the usable long side is max_side floored
    # to the multiple (when max_side is smaller than one multiple, the multiple wins: it is a hard
    # requirement).
    limit = max((c.max_side // m) * m, m) if c.max_side else None
    if limit and max(h, w) > limit:
        scale = limit / max(h, w)
        sh, sw = min(limit, max(1, round(h * scale))), min(limit, max(1, round(w * scale)))
    img_s = _resize(image, (sh, sw))
    # Conservative downscale: a low-resolution pixel is masked if any pixel it covers is, so thin strokes
    # survive.
    mask_s = M.binarize(_resize(mask, (sh, sw)), 0.0) if (sh, sw) != (h, w) else mask
    ph = max(-(-sh // m) * m, -(-c.min_side // m) * m)
    pw = max(-(-sw // m) * m, -(-c.min_side // m) * m)
    pad = ((0, ph - sh), (0, pw - sw))
    if pad != ((0, 0), (0, 0)):
        mode: Literal["reflect", "edge"] = "reflect" if sh > ph - sh and sw > pw - sw else "edge"
        img_p = np.pad(img_s, pad + ((0, 0),), mode=mode)
        mask_p = np.pad(mask_s, pad, mode="constant")
    else:
        img_p, mask_p = img_s, mask_s
    if soft is not None and (sh, sw) == (h, w):
        soft = np.pad(soft, pad, mode="constant") if pad != ((0, 0), (0, 0)) else soft
    else:
        soft = None
    out, alpha = fn(img_p, mask_p, soft)
    out = out[:sh, :sw]
    alpha = None if alpha is None else alpha[:sh, :sw]
    if (sh, sw) != (h, w):
        out = _resize(out, (h, w))
        alpha = None if alpha is None else np.clip(_resize(alpha, (h, w)), 0, 1).astype(np.float32)
    return out, alpha


def paste_back(
    original: np.ndarray, generated: np.ndarray, region: np.ndarray, feather: int = 0
) -> np.ndarray:
    """Copy ``generated`` into ``original`` where ``region`` > 0 (softly inside it when ``feather`` > 0).

    Pixels where ``region`` is 0 come from ``original`` bit for bit.
    """
    if original.shape != generated.shape or original.shape[:2] != np.shape(region):
        raise ValueError(
            f"paste_back shapes differ: original {original.shape}, generated {generated.shape}, "
            f"region {np.shape(region)}"
        )
    # A soft region (an effect alpha) blends proportionally; feathering only lowers weights inside the region.
    # Work inside the region's bounding box only: on a 4096² photo with a small mask, full-size float
    # temporaries would cost more memory than the method itself (the crop strategy exists to avoid exactly
    # that).
    out = original.copy()
    rows, cols = np.flatnonzero(np.any(region > 0, axis=1)), np.flatnonzero(np.any(region > 0, axis=0))
    if rows.size == 0:
        return out
    box = M.Box(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    if feather:  # the feather ramp needs the region's zeros around it: one pixel of margin is enough
        box = box.expand(1, region.shape)
    ys, xs = box.slices
    weight = np.clip(np.asarray(region[ys, xs], dtype=np.float32), 0.0, 1.0)
    if feather:
        weight = np.minimum(weight, M.feather(region[ys, xs], feather, inward=True))
    # Dense arithmetic over the box (3× faster than gathering the region's pixels); where the weight is 0 the
    # original is kept bit for bit.
    w = weight[..., None]
    orig, gen = original[ys, xs], generated[ys, xs]
    blended = orig.astype(np.float32) * (1.0 - w) + gen.astype(np.float32) * w
    out[ys, xs] = np.where(w > 0, np.clip(np.rint(blended), 0, 255).astype(np.uint8), orig)
    return out


def run_strategy(
    image: np.ndarray,
    mask: np.ndarray,
    fn: Callable[..., tuple[np.ndarray, np.ndarray | None]],
    strategy: HDStrategy,
    constraints: SizeConstraints,
    *,
    soft: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply ``strategy`` and return (raw output, alpha), both at the input's size.

    The raw output is not yet pasted back (the caller decides the paste region); outside the processed crops
    it equals the input. ``fn`` is an :data:`InpaintFn`; with ``soft`` (a soft mask of the mask's size, for
    methods that condition on one) it is called ``fn(image, mask, soft_piece)`` instead, where ``soft_piece``
    is cropped and padded exactly as the mask, or None where the input was scaled (``resize``, ``max_side``).
    """
    piece: _PieceFn = fn if soft is not None else (lambda im, m, _s: fn(im, m))
    h, w = mask.shape
    if strategy.name == "original" or (strategy.name == "crop" and max(h, w) <= strategy.crop_trigger):
        return _fit(image, mask, soft, constraints, piece)
    if strategy.name == "resize":
        limit = strategy.resize_limit
        if constraints.max_side:
            limit = min(limit, constraints.max_side)
        return _fit(image, mask, soft, replace(constraints, max_side=limit), piece)
    # crop: one crop per merged component box
    boxes = M.merge_overlapping([b.expand(strategy.crop_margin, (h, w)) for b in M.component_boxes(mask)])
    if (
        not boxes
    ):  # nothing to crop around (a mask-free, text-guided request): the method sees the whole image
        return _fit(image, mask, soft, constraints, piece)
    out = image.copy()
    alpha_full = None  # allocated only for methods that return an alpha
    for box in boxes:
        ys, xs = box.slices
        crop_soft = None if soft is None else soft[ys, xs]
        crop_out, crop_alpha = _fit(image[ys, xs], mask[ys, xs], crop_soft, constraints, piece)
        out[ys, xs] = crop_out
        if crop_alpha is not None:
            if alpha_full is None:
                alpha_full = np.zeros((h, w), dtype=np.float32)
            alpha_full[ys, xs] = np.maximum(alpha_full[ys, xs], crop_alpha)
    return out, alpha_full

"""Resizing rules and paired augmentation for training samples.

OSOR resizes per backbone (OSOR arXiv:2606.28094 App. B.1 and the authors' public code (Zhouqm-Git/osor)):

* SDXL-Inpainting: the shorter side becomes 512, then each side is rounded **up** to a multiple of 16.
* FLUX Fill: the longer side is capped at 1024 (never upscaled), then each side is **floored** to a multiple
of 16.

Both are :class:`ResizeRule` instances (:data:`SDXL_RESIZE`, :data:`FLUX_RESIZE`), so a new backbone is a new
value, not a new branch. Images resize with Lanczos, masks with nearest neighbour (they stay binary).

:class:`PairedAugment` draws one flip and one crop and applies them to the shot, the background and both
masks, so
the four stay pixel-aligned; its randomness comes only from the ``numpy.random.Generator`` it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from PIL import Image

from ..types import InvalidInputError
from .paired import PairedSample


@dataclass(frozen=True)
class ResizeRule:
    """``side``: which side is fitted ("short" → set to ``target``; "long" → capped at ``target``).
    ``rounding``: "up" or "down" to a multiple of ``multiple``. ``upscale``: whether a smaller image grows."""

    side: Literal["short", "long"]
    target: int
    multiple: int = 16
    rounding: Literal["up", "down"] = "up"
    upscale: bool = True

    def __post_init__(self) -> None:
        if self.side not in ("short", "long") or self.rounding not in ("up", "down"):
            raise InvalidInputError(f"bad resize rule {self}")
        if self.target < self.multiple or self.multiple < 1:
            raise InvalidInputError(f"resize target {self.target} must be >= multiple {self.multiple} >= 1")

    def size(self, height: int, width: int) -> tuple[int, int]:
        """Output (H, W) for an input of (height, width)."""
        reference = min(height, width) if self.side == "short" else max(height, width)
        scale = self.target / reference
        if not self.upscale:
            scale = min(scale, 1.0)
        h, w = height * scale, width * scale
        if self.rounding == "up":
            # Round the scaled size to the nearest pixel first, so 512.0000001 does not become 528.
            return (math.ceil(round(h, 6) / self.multiple) * self.multiple,
                    math.ceil(round(w, 6) / self.multiple) * self.multiple)
        return (max(self.multiple, math.floor(round(h, 6) / self.multiple) * self.multiple),
                max(self.multiple, math.floor(round(w, 6) / self.multiple) * self.multiple))

    def apply(self, sample: PairedSample) -> PairedSample:
        h, w = sample.image.shape[:2]
        out_h, out_w = self.size(h, w)
        if (out_h, out_w) == (h, w):
            return sample
        return replace(sample, image=resize_image(sample.image, out_h, out_w),
                       background=resize_image(sample.background, out_h, out_w),
                       object_mask=resize_mask(sample.object_mask, out_h, out_w),
                       effect_mask=resize_mask(sample.effect_mask, out_h, out_w))


SDXL_RESIZE = ResizeRule(side="short", target=512, multiple=16, rounding="up", upscale=True)
FLUX_RESIZE = ResizeRule(side="long", target=1024, multiple=16, rounding="down", upscale=False)
RESIZE_RULES = {"sdxl": SDXL_RESIZE, "flux": FLUX_RESIZE}


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.array(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    eight = Image.fromarray((np.asarray(mask) > 0.5).astype(np.uint8) * 255, "L")
    return (np.asarray(eight.resize((width, height), Image.Resampling.NEAREST)) > 127).astype(np.float32)


@dataclass(frozen=True)
class PairedAugment:
    """Consistent augmentation of (shot, background, object mask, effect mask).

    ``flip_p``: probability of a horizontal flip. ``crop_scale``: each crop side is a fraction drawn from this
    range of the image side (``(1, 1)`` disables cropping). ``keep_object``: the crop window always contains
    the whole effect-mask box when it fits, so a crop never cuts away the thing to remove.
    """

    flip_p: float = 0.5
    crop_scale: tuple[float, float] = (0.8, 1.0)
    keep_object: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not (0 < lo <= hi <= 1) or not (0 <= self.flip_p <= 1):
            raise InvalidInputError(f"bad augmentation settings {self}")

    def __call__(self, sample: PairedSample, rng: np.random.Generator) -> PairedSample:
        h, w = sample.image.shape[:2]
        flip = bool(rng.random() < self.flip_p)
        lo, hi = self.crop_scale
        ch = max(1, round(h * rng.uniform(lo, hi)))
        cw = max(1, round(w * rng.uniform(lo, hi)))
        top = self._offset(h, ch, rng, np.asarray(sample.effect_mask.any(axis=1)))
        left = self._offset(w, cw, rng, np.asarray(sample.effect_mask.any(axis=0)))
        window = (slice(top, top + ch), slice(left, left + cw))

        def image_op(a: np.ndarray) -> np.ndarray:
            a = a[window]
            return np.ascontiguousarray(a[:, ::-1] if flip else a)

        return replace(sample, image=image_op(sample.image), background=image_op(sample.background),
                       object_mask=image_op(sample.object_mask), effect_mask=image_op(sample.effect_mask))

    def _offset(self, size: int, crop: int, rng: np.random.Generator, occupied: np.ndarray) -> int:
        lo, hi = 0, size - crop
        if self.keep_object and occupied.any():
            idx = np.flatnonzero(occupied)
            first, last = int(idx[0]), int(idx[-1])
            if last - first + 1 <= crop:  # the object's extent fits: keep it inside the window
                lo, hi = max(lo, last + 1 - crop), min(hi, first)
        return int(rng.integers(lo, hi + 1))


__all__ = ["FLUX_RESIZE", "RESIZE_RULES", "SDXL_RESIZE", "PairedAugment", "ResizeRule", "resize_image",
           "resize_mask"]

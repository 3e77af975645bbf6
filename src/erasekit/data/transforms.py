"""Resizing rules and paired augmentation for training samples.

OSOR resizes per backbone with the authors' training rules (their ``src/data/dataset.py``), which
:mod:`erasekit.methods.osor.recipe` holds once, next to the inference rules they share a function with:

* SDXL-Inpainting: the shorter side becomes 512 (smaller images are scaled up), each scaled side is truncated
  with ``int()``, then rounded **up** to a multiple of 16 (:data:`SDXL_RESIZE`).
* FLUX Fill: the native size, each side rounded **up** to a multiple of 16, no cap (:data:`FLUX_RESIZE`).

Both are :class:`BackboneResize` values. :class:`ResizeRule` is the generic rule other trainers use. Images
resize with Lanczos, masks with nearest neighbour, keeping their soft values (the authors' ``/255`` masks).

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
        return _resize_sample(sample, *self.size(*sample.image.shape[:2]))


@dataclass(frozen=True)
class BackboneResize:
    """An OSOR backbone's working size (:func:`erasekit.methods.osor.recipe.sdxl_working_size` /
    ``flux_working_size``). ``target``: SDXL's short side; FLUX's long-side cap (None: no cap). ``upscale``:
    SDXL's training rule scales small images up (True), its inference rule does not."""

    backbone: Literal["sdxl", "flux"]
    target: int | None
    upscale: bool = True

    def size(self, height: int, width: int) -> tuple[int, int]:
        from ..methods.osor import recipe

        if self.backbone == "sdxl":
            return recipe.sdxl_working_size(height, width, upscale=self.upscale,
                                            short_side=self.target or recipe.RESOLUTION["sdxl"])
        return recipe.flux_working_size(height, width, max_side=self.target)

    def apply(self, sample: PairedSample) -> PairedSample:
        return _resize_sample(sample, *self.size(*sample.image.shape[:2]))


def _resize_sample(sample: PairedSample, out_h: int, out_w: int) -> PairedSample:
    if (out_h, out_w) == sample.image.shape[:2]:
        return sample
    return replace(sample, image=resize_image(sample.image, out_h, out_w),
                   background=resize_image(sample.background, out_h, out_w),
                   object_mask=resize_mask(sample.object_mask, out_h, out_w),
                   effect_mask=resize_mask(sample.effect_mask, out_h, out_w))


SDXL_RESIZE = BackboneResize("sdxl", 512)
FLUX_RESIZE = BackboneResize("flux", None)
RESIZE_RULES = {"sdxl": SDXL_RESIZE, "flux": FLUX_RESIZE}


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.array(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize that keeps soft values (the authors resize 8-bit masks NEAREST, then /255)."""
    values = Image.fromarray(np.asarray(mask, dtype=np.float32), "F")
    return np.array(values.resize((width, height), Image.Resampling.NEAREST), dtype=np.float32)


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


__all__ = ["FLUX_RESIZE", "RESIZE_RULES", "SDXL_RESIZE", "BackboneResize", "PairedAugment", "ResizeRule",
           "resize_image", "resize_mask"]

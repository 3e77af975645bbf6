"""The ``pixperfect`` refiner: PixPerfect's network on the refiner contract (:mod:`erasekit.refiners.base`).

What it feeds the network: x_gen is the method's output *pasted back* into the input through the region (the
paper refines the composite, Sec. 3: "following latent decoding and background compositing"), and m is the
region binarised at 0 (the network is trained on binary masks). It works on the region's bounding box grown by
``context`` pixels (the network is fully convolutional, so any box size works) and returns the method output
with that box replaced by the refined composite; the base pastes back, so pixels outside the region stay the
input's.

Options (``refine="pixperfect:pool=4:weights=/models/pp"``):

* ``weights`` — the weights folder (``pixperfect.safetensors`` + ``pixperfect.json``); default
  ``$ERASEKIT_MODELS_DIR/pixperfect``. Missing files are a :class:`~erasekit.types.MissingWeightsError` naming
  them. A path option is what tests and the command line need; a server that must not let clients name
  files should reject requests carrying it.
* ``pool`` — inference-time pooling copies N, 1–16 (1 = no pooling; Sec. 3.3, :mod:`.pooling`).
* ``pool_batch`` — copies refined per forward, 1–16 (default 1: memory does not grow with N; a GPU may be
  faster with several). The pick is the same either way.
* ``seed`` — seeds the pooling jitter (per call: a refiner keeps no state between calls).
* ``context`` — pixels of surroundings around the region's box, 0–1024 (default 64).
"""

from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np

from ...types import InvalidInputError
from ..base import Refiner
from ..registry import RefinerSpec, register_refiner
from .pooling import pool

MAX_POOL = 16


def _integer(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(f"pixperfect {name} must be a whole number in [{low}, {high}], got {value!r}")
    return value


class PixPerfectRefiner(Refiner):
    """PixPerfect (NeurIPS 2025): a learned pixel-space refiner that removes seams and colour mismatch."""

    name = "pixperfect"

    def __init__(
        self, weights: str | None = None, pool: int = 1, seed: int = 0, context: int = 64, pool_batch: int = 1
    ):
        from .weights import load_generator

        if weights is not None and not isinstance(weights, str):
            raise InvalidInputError(f"pixperfect weights must be a folder path, got {weights!r}")
        self.pool = _integer(pool, "pool", 1, MAX_POOL)
        self.pool_batch = _integer(pool_batch, "pool_batch", 1, MAX_POOL)
        self.seed = _integer(seed, "seed", 0, 2**63 - 1)
        self.context = _integer(context, "context", 0, 1024)
        self.weights = weights
        self.generator = load_generator(weights)
        # One forward at a time per refiner: torch modules are safe to share, but a server running several
        # large refinements at once on one CPU only thrashes.
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weights": self.weights,
            "config": self.generator.config.to_dict(),
            "pool": self.pool,
            "pool_batch": self.pool_batch,
            "seed": self.seed,
            "context": self.context,
        }

    def _refine_crop(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self._refine_crops([image], mask)[0]

    def _refine_crops(self, images: list[np.ndarray], mask: np.ndarray) -> list[np.ndarray]:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(np.stack(images))).permute(0, 3, 1, 2)
        m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
        m = m.expand(len(images), -1, -1, -1)
        with self._lock, torch.no_grad():
            out = self.generator(x, m)
        return list(out.permute(0, 2, 3, 1).numpy())

    def refine(self, image: np.ndarray, output: np.ndarray, region: np.ndarray) -> np.ndarray:
        inside = region > 0
        x, y, w, h = cv2.boundingRect(inside.view(np.uint8))
        top, left = max(y - self.context, 0), max(x - self.context, 0)
        bottom, right = min(y + h + self.context, image.shape[0]), min(x + w + self.context, image.shape[1])
        box = (slice(top, bottom), slice(left, right))
        alpha = region[box][..., None]
        composite = (alpha * output[box] + (1.0 - alpha) * image[box]).astype(np.float32) / 255.0
        mask = inside[box].astype(np.float32)
        result = pool(self._refine_crop, composite, mask, self.pool, np.random.default_rng(self.seed),
                      batch=self.pool_batch, refine_many=self._refine_crops)
        refined = output.copy()
        refined[box] = np.clip(np.rint(result.output * 255.0), 0, 255).astype(np.uint8)
        return refined


def register() -> None:
    register_refiner(
        RefinerSpec(
            name="pixperfect",
            description="PixPerfect learned pixel-space refiner (seams, colour and texture mismatch); "
            "needs weights",
            factory=PixPerfectRefiner,
            paper="PixPerfect, NeurIPS 2025",
        )
    )


__all__ = ["PixPerfectRefiner", "register"]

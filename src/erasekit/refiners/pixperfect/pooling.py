"""Inference-time pooling (PixPerfect Sec. 3.3).

N copies of the input are made, colour-jittered inside the mask; each is refined, and the refined output whose
L1 distance to *its own input* is smallest is kept: i* = argmin_i ‖x_gen⁽ⁱ⁾ − G(x_gen⁽ⁱ⁾, m)‖₁. A small
correction means the refiner found that copy already close to consistent, hence close to the truth.

Choices: copy 0 is the input itself, unjittered, so N = 1 is plain refinement and pooling can only add
candidates; the jitter is :func:`.artifacts.color_jitter` (the training colour jitter); the L1 is the mean
over the whole refined crop. Copies are refined ``batch`` at a time (default 1, so memory does not grow with
N; a GPU may prefer several per forward). The copies, their scores and the pick do not depend on ``batch``
(the jitter is drawn for all copies first; tested).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .artifacts import color_jitter

RefineFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (image float32 H×W×3, mask H×W) -> refined
# (images, mask) -> refined images: several copies in one forward
RefineManyFn = Callable[[list[np.ndarray], np.ndarray], list[np.ndarray]]


@dataclass(frozen=True)
class PoolResult:
    output: np.ndarray
    index: int  # which copy won (0 = the unjittered input)
    scores: tuple[float, ...]  # ‖x⁽ⁱ⁾ − G(x⁽ⁱ⁾)‖₁ per copy


def jittered_copies(
    image: np.ndarray, mask: np.ndarray, n: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """The input and n − 1 copies colour-jittered inside ``mask`` (float32 [0, 1] images)."""
    inside = (np.asarray(mask) > 0)[..., None]
    return [image] + [
        np.where(inside, color_jitter(image, rng), image).astype(np.float32) for _ in range(n - 1)
    ]


def pool(
    refine: RefineFn,
    image: np.ndarray,
    mask: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    batch: int = 1,
    refine_many: RefineManyFn | None = None,
) -> PoolResult:
    """Refine ``n`` copies and keep the one its refiner changed least (Sec. 3.3); ``batch`` copies per call
    of ``refine_many`` when it is given and ``batch`` > 1, else one per call of ``refine``."""
    if n < 1:
        raise ValueError(f"pooling needs n >= 1 copies, got {n}")
    if batch < 1:
        raise ValueError(f"pooling batch must be >= 1, got {batch}")
    copies = jittered_copies(image, mask, n, rng)
    best: np.ndarray | None = None
    scores: list[float] = []
    step = batch if refine_many is not None else 1
    for start in range(0, n, step):
        chunk = copies[start : start + step]
        outputs = refine_many(chunk, mask) if refine_many is not None and step > 1 else [
            refine(c, mask) for c in chunk
        ]
        for copy, refined in zip(chunk, outputs, strict=True):
            scores.append(float(np.abs(refined.astype(np.float64) - copy).mean()))
            if best is None or scores[-1] < min(scores[:-1]):
                best = refined
    assert best is not None
    return PoolResult(best, int(np.argmin(scores)), tuple(scores))


__all__ = ["PoolResult", "RefineFn", "RefineManyFn", "jittered_copies", "pool"]

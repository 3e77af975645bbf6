"""The refiner contract: a step after any method that improves its fill before paste-back.

Where it runs (:meth:`erasekit.methods.base.Remover.__call__`): after the HD strategy and before paste-back,
on the full image at its original size. A refiner gets

* ``image`` — the input photo, uint8 RGB H×W×3;
* ``output`` — the method's raw output at the same size (the HD strategy already undone: crops put back, a
  resized output scaled back up), or the previous refiner's output in a chain;
* ``region`` — the paste region, float32 H×W in [0, 1]: where the base will paste ``output`` into ``image``.

and returns a refined output, uint8 RGB H×W×3. Why the full image and not the method's HD crop: the paste
region is final only at this size (the mask united with the method's alpha), the refiner sees exactly the
pixels paste-back will use, and it does not depend on the method's size constraints or on which strategy ran
(a ``resize`` output's softness is a seam a refiner should see). Full size does not mean full cost: refiners
work on the region's box.

What a refiner may assume: ``image`` and ``output`` have the same shape, ``region`` is nonzero somewhere (an
empty region never reaches :meth:`Refiner.refine`), and the pixels it returns outside ``region`` are dropped —
the base pastes back through the region, so the result outside it is bit-identical to the input whatever a
refiner returns.

What it may not assume: that ``region`` is binary (an effect alpha is soft), that ``output`` equals ``image``
outside ``region`` (a diffusion method regenerates its whole crop; a classical fill does not), or that it runs
alone. In a chain the next refiner reads this one's output *outside* the region too, as the fill's
surroundings (Poisson blending takes its guidance from a few pixels around the region), so a refiner that
changes the fill's colours changes its surroundings the same way. Refiners are shared across threads by the
server: ``refine`` must not mutate its inputs or the refiner's own state.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..types import InvalidInputError


class Refiner(ABC):
    """Base class of all refiners. Subclasses set ``name`` and implement ``refine``."""

    name: ClassVar[str] = "refiner"

    @abstractmethod
    def refine(self, image: np.ndarray, output: np.ndarray, region: np.ndarray) -> np.ndarray:
        """The refined output (uint8 H×W×3) for a non-empty ``region``; the inputs are already checked."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able description: the name and every setting that affects the output."""
        return {"name": self.name}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({settings})"

    def __call__(self, image: np.ndarray, output: np.ndarray, region: np.ndarray) -> np.ndarray:
        for what, array in (("image", image), ("output", output)):
            if not (isinstance(array, np.ndarray) and array.dtype == np.uint8 and array.ndim == 3
                    and array.shape[2] == 3):
                raise InvalidInputError(f"refiner {self.name!r}: {what} must be a uint8 RGB array of shape "
                                        "H×W×3")
        if output.shape != image.shape or np.shape(region) != image.shape[:2]:
            raise InvalidInputError(f"refiner {self.name!r}: shapes differ: image {image.shape}, output "
                                    f"{output.shape}, region {np.shape(region)}")
        region = np.asarray(region, dtype=np.float32)
        if not (region > 0).any():
            return output.copy()  # nothing will be pasted: nothing to refine
        refined = self.refine(image, output, region)
        if refined.shape != image.shape or refined.dtype != np.uint8:
            # A broken refiner is a bug, not bad input: say which one.
            raise TypeError(f"refiner {self.name!r} returned {refined.dtype} {refined.shape}, expected uint8 "
                            f"{image.shape}")
        return refined


def apply_refiners(refiners: Sequence[Refiner], image: np.ndarray, output: np.ndarray,
                   region: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Run ``refiners`` in order, each on the previous one's output; returns (output, seconds per refiner).

    Timings are keyed ``refine:NAME`` (a refiner named twice in a chain accumulates).
    """
    timings: dict[str, float] = {}
    for refiner in refiners:
        start = time.perf_counter()
        output = refiner(image, output, region)
        key = f"refine:{refiner.name}"
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - start
    return output, timings

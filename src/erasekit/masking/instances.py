"""Instances a segmenter found, and the rule that turns them into one mask: ``all``, ``largest`` or the N
best.

``instances``:

* ``all`` (default) — the union of every instance above the score threshold ("the spoons" removes them all);
* ``largest`` — the instance with the most pixels (one object when the phrase also matches its parts);
* ``N`` (an integer ≥ 1) — the union of the N highest-scoring instances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..masks import Box
from ..types import InvalidInputError


@dataclass(frozen=True)
class Instance:
    mask: np.ndarray  # bool H×W
    score: float
    box: Box

    def as_dict(self) -> dict[str, object]:
        return {
            "score": round(self.score, 6),
            "box": [self.box.top, self.box.left, self.box.bottom, self.box.right],
            "pixels": int(self.mask.sum()),
        }


def parse_instances(value: str | int | None) -> str | int:
    """``all`` | ``largest`` | a count N ≥ 1 (text or int)."""
    if value is None:
        return "all"
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    else:
        text = str(value).strip().lower()
        if text in ("all", "largest"):
            return text
        try:
            count = int(text)
        except ValueError:
            raise InvalidInputError(
                f"instances must be all, largest or a count N >= 1, got {value!r}"
            ) from None
    if count < 1:
        raise InvalidInputError(f"instances must be all, largest or a count N >= 1, got {value!r}")
    return count


def select(instances: list[Instance], rule: str | int) -> list[Instance]:
    """The instances ``rule`` keeps (see the module docstring), highest score first."""
    ranked = sorted(instances, key=lambda i: -i.score)
    if rule == "all":
        return ranked
    if rule == "largest":
        return [max(ranked, key=lambda i: int(i.mask.sum()))] if ranked else []
    return ranked[: int(rule)]


def union(instances: list[Instance], shape: tuple[int, int]) -> np.ndarray:
    """float32 H×W mask, 1 where any kept instance is."""
    out = np.zeros(shape, bool)
    for instance in instances:
        out |= instance.mask
    return out.astype(np.float32)

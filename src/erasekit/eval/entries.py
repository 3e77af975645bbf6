"""What one benchmark row runs: a method, the refiners after it, and how each sample's request is built.

By default a row is a method alone, named by the method (``--methods telea,patchmatch``). The paper
presets (:mod:`.presets`) need more: a refiner after the method (PixPerfect's "+ PixPerfect" rows), a
per-sample prompt and target for a text-guided method (MagicRemover on COCO: "a photo of a {label}", target
{label}) and a row that withholds the mask (MagicRemover "w/o mask").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..types import RemovalRequest
from .datasets import EvalRecord

if TYPE_CHECKING:
    from ..chain import Chain


@dataclass(frozen=True)
class BenchEntry:
    method: str
    refine: str | None = None  # refiners after the method, in parse_refine's syntax ("pixperfect:pool=4")
    prompt: str | None = None  # the request's prompt; "{label}" becomes the sample's class label
    label_options: tuple[str, ...] = ()  # call options set to the sample's label (MagicRemover's "target")
    withhold_mask: bool = False  # the method gets no mask (mask-free rows); metrics still use the mask

    def request(
        self,
        record: EvalRecord,
        mask: np.ndarray,
        seed: int,
        options: dict[str, Any],
        soft_mask: np.ndarray | None = None,
    ) -> RemovalRequest:
        """``soft_mask``: the mask file's soft values, for methods that condition on them (the runner passes
        them only to those); withheld with the mask."""
        label = record.label or "object"
        options = {**options, **dict.fromkeys(self.label_options, label)}
        prompt = self.prompt.format(label=label) if self.prompt is not None else None
        return RemovalRequest(
            image=record.image,
            mask=None if self.withhold_mask else mask,
            soft_mask=None if self.withhold_mask else soft_mask,
            prompt=prompt,
            seed=seed,
            refine=self.refine,
            options=options,
        )

    @classmethod
    def from_chain(cls, text: str) -> BenchEntry:
        """A ``--methods`` item that is a method or a chain (``"telea+poisson"``, :mod:`erasekit.chain`)."""
        from ..chain import parse_chain

        chain = parse_chain(text)
        return cls(chain.method, refine=",".join(chain.refiners) or None)

    def chain(self) -> Chain:
        """The method and its refiners as an :class:`erasekit.chain.Chain` (recorded in bench reports)."""
        from ..chain import Chain

        refiners = tuple(part.strip() for part in (self.refine or "").split(",") if part.strip())
        return Chain(self.method, refiners)

    def key(self) -> dict[str, Any]:
        """What the cache key records about the row beyond the method."""
        return asdict(self)


__all__ = ["BenchEntry"]

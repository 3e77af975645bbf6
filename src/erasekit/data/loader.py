"""PyTorch view of a paired dataset.

Resize rule, consistent augmentation, tensors through :mod:`erasekit.convert`.

Each item is a dict: ``image`` and ``background`` 3×H×W in [-1, 1], ``object_mask`` and ``effect_mask`` 1×H×W
(in {0, 1} with ``masks="binary"``, the default, which the EraDiff trainer reads; the stored soft values / 255
with ``masks="soft"``, which OSOR's trainer reads, as its authors do; see :mod:`erasekit.data.paired`),
``phase2`` (bool tensor), ``id`` (str). The augmentation generator for item ``i`` in epoch ``e`` is
``numpy.random.default_rng([seed, e, i])``: the same item gets the same crop/flip whatever the worker count or
order, and a new one each epoch (:meth:`PairedTorchDataset.set_epoch`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..convert import image_to_tensor, mask_to_tensor
from ..types import InvalidInputError
from .paired import MaskView, PairedDataset, PairedSample, check_mask_view
from .transforms import BackboneResize, PairedAugment, ResizeRule


class PairedTorchDataset(Dataset):
    """``torch.utils.data.Dataset`` over a :class:`PairedDataset`.

    Order of operations: augment (crop/flip at the source resolution) → resize rule → tensors. ``phase2_only``
    keeps only the effect-heavy subset (Phase II trains on it). ``masks``: the masks' view ("binary" or
    "soft"); crop, flip and the nearest-neighbour resize only move values, so both views see the same pixels.
    """

    def __init__(
        self,
        dataset: PairedDataset | str | os.PathLike,
        *,
        resize: ResizeRule | BackboneResize | None = None,
        augment: PairedAugment | None = None,
        seed: int = 0,
        phase2_only: bool = False,
        masks: MaskView = "binary",
    ):
        self.dataset = dataset if isinstance(dataset, PairedDataset) else PairedDataset(dataset)
        self.masks = check_mask_view(masks)
        self.resize = resize
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self.indices = [i for i, r in enumerate(self.dataset.records) if r.phase2 or not phase2_only]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def sample(self, index: int) -> PairedSample:
        """The transformed sample as arrays (what :meth:`__getitem__` turns into tensors)."""
        source = self.indices[index]
        sample = self.dataset.load(self.dataset.records[source], masks=self.masks)
        if self.augment is not None:
            sample = self.augment(sample, np.random.default_rng([self.seed, self.epoch, source]))
        if self.resize is not None:
            sample = self.resize.apply(sample)
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.sample(index)
        return {
            "id": s.id,
            "image": image_to_tensor(s.image)[0],
            "background": image_to_tensor(s.background)[0],
            "object_mask": mask_to_tensor(s.object_mask)[0],
            "effect_mask": mask_to_tensor(s.effect_mask)[0],
            "phase2": torch.tensor(bool(s.phase2)),
        }


def collate_paired(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items of one size into a batch (different sizes need batch size 1 or size bucketing upstream)."""
    if not items:
        raise InvalidInputError("cannot collate an empty batch")
    shapes = {tuple(item["image"].shape) for item in items}
    if len(shapes) != 1:
        raise InvalidInputError(
            f"batch mixes image sizes {sorted(shapes)}; use batch_size=1 or a fixed-size resize"
        )
    batch: dict[str, Any] = {"id": [item["id"] for item in items]}
    for key in ("image", "background", "object_mask", "effect_mask", "phase2"):
        batch[key] = torch.stack([item[key] for item in items])
    return batch


__all__ = ["PairedTorchDataset", "collate_paired"]

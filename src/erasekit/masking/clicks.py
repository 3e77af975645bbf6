"""Clicks -> mask with SAM 2: the photo is embedded once, each click afterwards runs only the prompt encoder
and the mask decoder (IOPaint's "interactive segmentation", SAM 2's point prompts).

Points are (x, y) in photo pixels with labels 1 (the object) or 0 (not the object). One positive click asks
SAM 2 for its three candidate masks and keeps the one with the best predicted IoU (SAM's advice for an
ambiguous single point); several points ask for one mask. Logits are resized bilinearly to the photo and
thresholded at 0, as :class:`~erasekit.data.savp_models.SamSegmenter` does for boxes. The model is loaded
through that adapter (SAVP's), so the checkpoint rules and missing-weights messages are the same. """

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.savp_models import DEFAULT_SEGMENTER, SamSegmenter
from ..types import InvalidInputError


@dataclass
class Embedding:
    """SAM 2's image features for one photo, reused by every click on it."""

    features: list[Any]  # torch tensors, one per feature level
    shape: tuple[int, int]  # photo H, W
    scale: tuple[float, float]  # photo -> model input coordinates (sx, sy)


class ClickSegmenter:
    name = "sam2-clicks"

    def __init__(self, name_or_path: str = DEFAULT_SEGMENTER, *, device: str | None = None):
        self.sam = SamSegmenter(name_or_path, device=device)
        if self.sam.kind != "sam2":
            raise InvalidInputError(
                f"click selection needs a SAM 2 checkpoint; '{name_or_path}' is {self.sam.kind!r}"
            )

    def embed(self, image: np.ndarray) -> Embedding:
        import torch

        pixels, scale = self.sam.sam2_pixel_values(image)
        with self.sam._lock, torch.no_grad():
            features = self.sam.model.get_image_embeddings(pixels)
        return Embedding(list(features), image.shape[:2], scale)

    def decode(
        self, embedding: Embedding, points: Sequence[Sequence[float]], labels: Sequence[int]
    ) -> np.ndarray:
        """bool H×W mask for the clicks (see the module docstring)."""
        import torch

        if not points or len(points) != len(labels):
            raise InvalidInputError("give at least one click, with one label (1 object, 0 not) per click")
        if any(int(label) not in (0, 1) for label in labels):
            raise InvalidInputError("click labels are 1 (the object) or 0 (not the object)")
        h, w = embedding.shape
        if any(not (0 <= x < w and 0 <= y < h) for x, y in points):
            raise InvalidInputError(f"clicks must lie inside the {w}×{h} photo")
        sx, sy = embedding.scale
        coords = torch.tensor(
            [[[[x * sx, y * sy] for x, y in points]]], dtype=torch.float32, device=self.sam.device
        )
        label_tensor = torch.tensor([[list(map(int, labels))]], dtype=torch.int64, device=self.sam.device)
        multimask = len(points) == 1
        with self.sam._lock, torch.no_grad():
            out = self.sam.model(
                image_embeddings=embedding.features,
                input_points=coords,
                input_labels=label_tensor,
                multimask_output=multimask,
            )
        logits = out.pred_masks[0, 0].float()  # (candidates, h', w')
        best = int(out.iou_scores[0, 0].argmax()) if multimask else 0
        up = torch.nn.functional.interpolate(
            logits[best][None, None], size=(h, w), mode="bilinear", align_corners=False
        )[0, 0]
        return up.cpu().numpy() > 0

    def describe(self) -> dict[str, str]:
        return {"source": "clicks", "segmenter": self.sam.name}

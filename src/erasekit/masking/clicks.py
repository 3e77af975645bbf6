"""Clicks -> mask with SAM or SAM 2: the photo is embedded once, each click afterwards runs only the prompt
encoder and the mask decoder (IOPaint's "interactive segmentation", SAM's point prompts).

Points are (x, y) in photo pixels with labels 1 (the object) or 0 (not the object). One positive click asks
for three candidate masks and keeps the one with the best predicted IoU (SAM's advice for an ambiguous single
point); several points ask for one mask.

The checkpoint's ``config.json`` (``model_type``) picks the family; each family is one small adapter with the
same three steps (embed the photo, decode points, bring the chosen logits back to the photo), so nothing above
this module knows which family it talks to:

* ``sam2`` (``Sam2Model``, e.g. ``facebook/sam2.1-hiera-large``, the default): the preprocessing of
  :meth:`~erasekit.data.savp_models.SamSegmenter.sam2_pixel_values` (the SAM 2 processor needs torchvision);
  logits are resized bilinearly to the photo and thresholded at 0, as SAVP's box path does.
* ``sam`` (``SamModel``: ``facebook/sam-vit-base|large|huge``, SlimSAM's ``Zigeng/SlimSAM-uniform-*``):
  transformers' own ``SamProcessor`` — its image processor for the pixels (longest side resized, padded to the
  square input), its rule for point coordinates (scaled by the resized over the original size, as
  ``SamProcessor`` does for ``input_points``) and ``post_process_masks`` for the mask (upscale, crop the
  padding, resize to the photo, > 0).

Both load through SAVP's :class:`~erasekit.data.savp_models.SamSegmenter`, so the local-only loading, the
missing-weights messages and the refusal of other ``model_type`` values are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..data.savp_models import DEFAULT_SEGMENTER, SamSegmenter
from ..types import InvalidInputError


@dataclass
class Embedding:
    """One photo's image features, reused by every click on it."""

    features: Any  # what the family's image encoder returned (a tensor; SAM 2: one tensor per level)
    shape: tuple[int, int]  # photo H, W
    input_size: tuple[int, int]  # the photo's H, W in the model's input frame (before any padding)


class PointPromptModel(Protocol):
    """One SAM family behind the steps :class:`ClickSegmenter` needs."""

    def embed(self, image: np.ndarray) -> Embedding: ...

    def input_points(self, embedding: Embedding, points: Sequence[Sequence[float]]) -> Any:
        """Photo (x, y) -> the model's ``input_points`` tensor, shaped (1, 1, N, 2)."""
        ...

    def to_photo(self, embedding: Embedding, logits: Any) -> np.ndarray:
        """One low-resolution logit map (h', w') -> bool H×W mask on the photo."""
        ...


class Sam2Points:
    """SAM 2 (``Sam2Model``) point prompts."""

    def __init__(self, sam: SamSegmenter):
        self.sam = sam

    def embed(self, image: np.ndarray) -> Embedding:
        import torch

        pixels, _ = self.sam.sam2_pixel_values(image)
        with self.sam._lock, torch.no_grad():
            features = self.sam.model.get_image_embeddings(pixels)
        h, w = image.shape[:2]
        return Embedding(list(features), (h, w), (int(pixels.shape[-2]), int(pixels.shape[-1])))

    def input_points(self, embedding: Embedding, points: Sequence[Sequence[float]]) -> Any:
        import torch

        (h, w), (th, tw) = embedding.shape, embedding.input_size
        sx, sy = tw / w, th / h
        coords = [[[[x * sx, y * sy] for x, y in points]]]
        return torch.tensor(coords, dtype=torch.float32, device=self.sam.device)

    def to_photo(self, embedding: Embedding, logits: Any) -> np.ndarray:
        import torch

        up = torch.nn.functional.interpolate(
            logits.float()[None, None], size=embedding.shape, mode="bilinear", align_corners=False
        )[0, 0]
        return up.cpu().numpy() > 0


class SamPoints:
    """SAM v1 (``SamModel``, SlimSAM too) point prompts through transformers' ``SamProcessor``."""

    def __init__(self, sam: SamSegmenter):
        self.sam = sam
        self.processor = sam.processor

    def embed(self, image: np.ndarray) -> Embedding:
        import torch
        from PIL import Image

        inputs = self.processor.image_processor(Image.fromarray(image), return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.sam.device)
        with self.sam._lock, torch.no_grad():
            features = self.sam.model.get_image_embeddings(pixels)
        h, w = (int(v) for v in inputs["original_sizes"][0])
        rh, rw = (int(v) for v in inputs["reshaped_input_sizes"][0])
        return Embedding(features, (h, w), (rh, rw))

    def input_points(self, embedding: Embedding, points: Sequence[Sequence[float]]) -> Any:
        import torch

        # SamProcessor's coordinate rule, in its float64: x * new_w / old_w, y * new_h / old_h.
        (h, w), (rh, rw) = embedding.shape, embedding.input_size
        coords = np.asarray(points, dtype=float).reshape(-1, 2).copy()
        coords[:, 0] *= rw / w
        coords[:, 1] *= rh / h
        return torch.from_numpy(coords)[None, None].to(self.sam.device)

    def to_photo(self, embedding: Embedding, logits: Any) -> np.ndarray:
        import torch

        masks = self.processor.post_process_masks(
            logits.float().cpu()[None, None, None],
            torch.tensor([embedding.shape]),
            torch.tensor([embedding.input_size]),
        )
        return masks[0][0, 0].numpy().astype(bool)


# config.json's model_type -> the adapter for that family.
FAMILIES: dict[str, Callable[[SamSegmenter], PointPromptModel]] = {"sam2": Sam2Points, "sam": SamPoints}


class ClickSegmenter:
    """Clicks -> bool mask with any checkpoint :data:`FAMILIES` knows (see the module docstring)."""

    def __init__(self, name_or_path: str = DEFAULT_SEGMENTER, *, device: str | None = None):
        self.sam = SamSegmenter(name_or_path, device=device)  # refuses model types other than sam / sam2
        self.family: PointPromptModel = FAMILIES[self.sam.kind](self.sam)
        self.name = f"{self.sam.kind}-clicks"

    def embed(self, image: np.ndarray) -> Embedding:
        """Run the image encoder once for ``image`` (uint8 H×W×3)."""
        return self.family.embed(image)

    def decode(
        self, embedding: Embedding, points: Sequence[Sequence[float]], labels: Sequence[int]
    ) -> np.ndarray:
        """bool H×W mask for the clicks (see the module docstring): prompt encoder and mask decoder only."""
        import torch

        if not points or len(points) != len(labels):
            raise InvalidInputError("give at least one click, with one label (1 object, 0 not) per click")
        if any(len(point) != 2 for point in points):
            raise InvalidInputError("each click is one (x, y) pair of photo pixels")
        if any(int(label) not in (0, 1) for label in labels):
            raise InvalidInputError("click labels are 1 (the object) or 0 (not the object)")
        h, w = embedding.shape
        if any(not (0 <= x < w and 0 <= y < h) for x, y in points):
            raise InvalidInputError(f"clicks must lie inside the {w}×{h} photo")
        coords = self.family.input_points(embedding, points)
        label_tensor = torch.tensor([[list(map(int, labels))]], dtype=torch.int64, device=self.sam.device)
        multimask = len(points) == 1
        with self.sam._lock, torch.no_grad():
            out = self.sam.model(
                image_embeddings=embedding.features,
                input_points=coords,
                input_labels=label_tensor,
                multimask_output=multimask,
            )
        best = int(out.iou_scores[0, 0].argmax()) if multimask else 0
        return self.family.to_photo(embedding, out.pred_masks[0, 0, best])

    def describe(self) -> dict[str, str]:
        return {"source": "clicks", "segmenter": self.sam.name, "model_type": self.sam.kind}


__all__ = ["FAMILIES", "ClickSegmenter", "Embedding", "PointPromptModel", "Sam2Points", "SamPoints"]

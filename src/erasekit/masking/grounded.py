"""Grounding DINO + SAM 2: boxes for the phrase, then one SAM 2 mask per box (Grounded-SAM 2's recipe).

Both models go through SAVP's adapters (:mod:`erasekit.data.savp_models`): the same local-only loading, the
same missing-weights messages, the same SAM 2 preprocessing where torchvision is absent. An instance's score
is its Grounding DINO box score. The segmenter may also be a SAM v1 checkpoint (``facebook/sam-vit-*``,
SlimSAM): its ``config.json`` picks ``SamModel`` + ``SamProcessor`` (the source keeps its name). """

from __future__ import annotations

import numpy as np

from ..data.savp_models import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, GroundingDinoDetector, SamSegmenter
from .instances import Instance

# Grounded-SAM 2's demo thresholds (IDEA-Research/Grounded-SAM-2): box 0.35, text 0.25.
BOX_THRESHOLD = 0.35
TEXT_THRESHOLD = 0.25


class GroundedSam2:
    """Text prompt -> scored instance masks with Grounding DINO boxes prompting SAM 2."""

    name = "grounding-dino-sam2"

    def __init__(
        self,
        detector: str = DEFAULT_DETECTOR,
        segmenter: str = DEFAULT_SEGMENTER,
        *,
        device: str | None = None,
    ):
        # box_threshold is a floor of 0: the caller's score threshold decides (it has its own default).
        self.detector = GroundingDinoDetector(
            detector, device=device, box_threshold=0.0, text_threshold=TEXT_THRESHOLD
        )
        self.segmenter = SamSegmenter(segmenter, device=device)

    def instances(self, image: np.ndarray, prompt: str, *, threshold: float) -> list[Instance]:
        detections = [d for d in self.detector.detect(image, prompt) if d.score > threshold]
        masks = self.segmenter.segment(image, [d.box for d in detections])
        return [Instance(m, d.score, d.box) for d, m in zip(detections, masks)]

    def describe(self) -> dict[str, str]:
        return {"source": self.name, "detector": self.detector.name, "segmenter": self.segmenter.name}

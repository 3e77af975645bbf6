"""CFD — Context-aware Feature Deviation (OmniPaint, Yu et al. ICCV 2025), a reference-free removal score.

Definition (read from the authors' ``cfd_score/main.py``; lower is better). For a result image I and each
connected component M of the removal mask (scores are averaged over components, then over images):

1. **Context term.** B = the mask's bounding box grown by a third of its width/height on each side (clamped to
the
   image), minus M. d_ctx = 1 − cos(f(I, M), f(I, B)), where f(image, region) is the mean of the L2-normalised
   DINOv2 patch tokens (``last_hidden_state``) of the 16×16 patches the region covers at 224×224,
   L2-normalised.
2. **Hallucination term.** SAM ViT-H automatic masks of I (segment-anything defaults: 32×32 points,
predicted-IoU
   ≥ 0.88, stability ≥ 0.95, box NMS 0.7), largest first, dropping any mask with IoU > 0.8 with, or > 90 %
   inside, a kept one. *Nested* segments lie entirely inside M; *boundary* segments overlap M without being
   inside it and are cut to M. For every nested segment C that has adjacent boundary segments (within a 5×5
   kernel dilated 3 times), their union U is compared with C: each region is cut out on a white background and
   cropped to its box, and d(C) = 1 − cos(f(crop_U, U), f(crop_C, C)). d_hal = Σ_C |C| · d(C) / Σ_C |C| (sum
   over all nested segments).
3. CFD = d_ctx + d_hal.

``reference_quirks=True`` reproduces the reference code where it departs from that description, so numbers
match published tables: the DINOv2 processor's resize-to-256 + centre-crop-224 after the 224×224 resize
(patches then no longer line up with the mask, which is resized over the full 224×224), the patch selector
built as ``[16×16 mask flattened, True]`` and applied to ``[CLS, patch_1 … patch_256]`` (shifted by one
token), grey-level region masks (values 0/255 after bicubic resizing) used as *integer indices* into the
tokens instead of a boolean selection, and the second region mask resized bicubically. With
``reference_quirks=False`` (default) patches and masks are aligned: the crop is resized straight to 224×224,
the mask to 16×16 by nearest neighbour, tokens 1…256 are selected by the boolean mask. Assumption recorded in
the docs: the SAM automatic mask generator here is transformers' SAM with the segment-anything default
thresholds (no multi-crop layers, no small-region removal).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .metrics import Metric, Sample

_PATCHES = 16
_SIZE = 224


# ------------------------------------------------------------------------------------------------------------
# SAM automatic masks (transformers SamModel; NMS written here because torchvision.ops is unavailable)
# ------------------------------------------------------------------------------------------------------------
def _box_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression on (x0, y0, x1, y1) boxes, highest score first (torchvision.ops.nms
    semantics). Written here: torchvision, which provides it, cannot be installed beside our CPU torch."""
    order = torch.argsort(scores, descending=True).tolist()
    b = boxes.double()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep: list[int] = []
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        x0 = torch.maximum(b[i, 0], b[:, 0])
        y0 = torch.maximum(b[i, 1], b[:, 1])
        x1 = torch.minimum(b[i, 2], b[:, 2])
        y1 = torch.minimum(b[i, 3], b[:, 3])
        inter = (x1 - x0).clamp_min(0) * (y1 - y0).clamp_min(0)
        iou = inter / (area[i] + area - inter).clamp_min(1e-12)
        suppressed |= iou > iou_threshold
    return keep


@dataclass(frozen=True)
class SamSettings:
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7


def sam_automatic_masks(
    image: np.ndarray, model, processor, settings: SamSettings = SamSettings(), device: str = "cpu"
) -> list[np.ndarray]:
    """Segment everything with SAM.

    A grid of point prompts through SAM, masks filtered by predicted IoU and stability, then box NMS. Returns
    boolean H×W masks. Uses the transformers SAM processor's own grid/filter helpers.
    """
    from transformers.models.sam.image_processing_pil_sam import _rle_to_mask

    target = processor.size.get("longest_edge", 1024)
    crop_boxes, points, crops, labels = processor.generate_crop_boxes(
        image, target, crop_n_layers=0, points_per_crop=settings.points_per_side
    )
    inputs = processor(images=crops, return_tensors="pt")
    with torch.no_grad():
        embeddings = model.get_image_embeddings(inputs["pixel_values"].to(device))
    all_masks, all_scores, all_boxes = [], [], []
    n = points.shape[1]
    for i in range(0, n, settings.points_per_batch):
        with torch.no_grad():
            out = model(
                image_embeddings=embeddings,
                input_points=points[:, i : i + settings.points_per_batch].to(device),
                input_labels=labels[:, i : i + settings.points_per_batch].to(device),
                multimask_output=True,
            )
        masks = processor.post_process_masks(
            out.pred_masks.cpu(),
            inputs["original_sizes"].tolist(),
            inputs["reshaped_input_sizes"].tolist(),
            binarize=False,
        )
        rles, scores, boxes = processor.filter_masks(
            masks[0],
            out.iou_scores[0].cpu(),
            image.shape[:2],
            crop_boxes[0],
            settings.pred_iou_thresh,
            settings.stability_score_thresh,
            0,
            1,
        )
        all_masks += rles
        all_scores.append(scores)
        all_boxes.append(boxes)
    if not all_masks:
        return []
    scores, boxes = torch.cat(all_scores), torch.cat(all_boxes)
    keep = _box_nms(boxes, scores, settings.box_nms_thresh)
    return [_rle_to_mask(all_masks[i]).astype(bool) for i in keep]


# ------------------------------------------------------------------------------------------------------------
# The score
# ------------------------------------------------------------------------------------------------------------
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def filter_segments(
    segments: list[np.ndarray], iou_threshold: float = 0.8, contain: float = 0.9
) -> list[np.ndarray]:
    """Largest first; drop a segment overlapping a kept one with IoU > 0.8 or lying > 90 % inside it."""
    kept: list[np.ndarray] = []
    for seg in sorted(segments, key=lambda s: -int(s.sum())):
        area = seg.sum()
        if all(
            _iou(seg, k) <= iou_threshold and not (area and np.logical_and(seg, k).sum() / area > contain)
            for k in kept
        ):
            kept.append(seg)
    return kept


def _adjacent(a: np.ndarray, b: np.ndarray) -> bool:
    kernel = np.ones((5, 5), np.uint8)
    da = cv2.dilate(a.astype(np.uint8), kernel, iterations=3).astype(bool)
    db = cv2.dilate(b.astype(np.uint8), kernel, iterations=3).astype(bool)
    return bool(np.any(da & b) or np.any(db & a))


def _cut_out(region: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The region on a white background, cropped to its bounding box (image crop, boolean mask crop)."""
    white = image.copy()
    white[~region] = 255
    ys, xs = np.nonzero(region)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return white[y0:y1, x0:x1], region[y0:y1, x0:x1]


class RegionFeatures:
    """f(image, region): mean of L2-normalised DINOv2 patch tokens over the region, L2-normalised."""

    def __init__(
        self, model, *, reference_quirks: bool = False, device: str = "cpu", processor_size: int = 256
    ):
        self.model, self.quirks, self.device, self.processor_size = (
            model,
            reference_quirks,
            device,
            processor_size,
        )

    def pixels(self, pil: Image.Image) -> torch.Tensor:
        """The DINOv2 input for an image region (1×3×224×224, ImageNet-normalised)."""
        im = pil.resize((_SIZE, _SIZE))  # PIL's default filter (bicubic), as the reference
        if self.quirks:  # BitImageProcessor of dinov2: shortest edge -> 256 (bicubic), centre crop 224
            s = self.processor_size
            im = im.resize((s, s), Image.Resampling.BICUBIC)
            off = (s - _SIZE) // 2
            im = im.crop((off, off, off + _SIZE, off + _SIZE))
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        mean, std = torch.tensor(IMAGENET_DEFAULT_MEAN), torch.tensor(IMAGENET_DEFAULT_STD)
        return (x - mean[None, :, None, None]) / std[None, :, None, None]

    def _tokens(self, pil: Image.Image) -> np.ndarray:
        with torch.no_grad():
            h = self.model(pixel_values=self.pixels(pil).to(self.device)).last_hidden_state
        h = h / h.norm(p=2, dim=-1, keepdim=True)
        return h[0].double().cpu().numpy()

    def _selector(self, mask: Image.Image, *, nearest: bool) -> np.ndarray:
        m = mask.resize((_SIZE, _SIZE), Image.Resampling.NEAREST) if nearest else mask.resize((_SIZE, _SIZE))
        small = np.array(m.resize((_PATCHES, _PATCHES), Image.Resampling.NEAREST)).flatten()
        return np.append(
            small, True
        )  # reference quirk: appended after the patches, applied to [CLS, patches]

    def __call__(self, image: np.ndarray, region: np.ndarray, *, first: bool = True) -> np.ndarray:
        tokens = self._tokens(Image.fromarray(image))
        if self.quirks:
            # Reference: boolean "1"-mode masks select tokens; grey "L"-mode masks (0/255) index them as
            # integers.
            mask = (
                Image.fromarray(region)
                if region.dtype == bool
                else Image.fromarray(region.astype(np.uint8) * 255)
            )
            selector = self._selector(mask, nearest=first)
            feats = tokens[selector] if selector.dtype == bool else tokens[selector.astype(np.int64)]
        else:
            m = Image.fromarray(region.astype(np.uint8) * 255).resize(
                (_PATCHES, _PATCHES), Image.Resampling.NEAREST
            )
            selector = np.asarray(m).flatten() > 127
            feats = tokens[1:][selector] if selector.any() else tokens[1:]
        mean = feats.mean(axis=0)
        return mean / np.linalg.norm(mean)


def _distance(features: RegionFeatures, img1, region1, img2, region2) -> float:
    return float(1.0 - np.dot(features(img1, region1, first=True), features(img2, region2, first=False)))


def cfd_component(
    image: np.ndarray, component: np.ndarray, segments: list[np.ndarray], features: RegionFeatures
) -> dict[str, float]:
    """CFD for one mask component given the (unfiltered) SAM segments of ``image``."""
    H, W = component.shape
    ys, xs = np.nonzero(component)
    left, upper, right, lower = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1  # PIL getbbox
    w, h = right - left, lower - upper
    left, right = max(0, left - w // 3), min(W, right + w // 3)
    upper, lower = max(0, upper - h // 3), min(H, lower + h // 3)
    box = Image.new("1", (W, H), 0)
    ImageDraw.Draw(box).rectangle([left, upper, right, lower], fill=1)  # inclusive corners, as the reference
    ring = np.array(box) ^ component
    d_ctx = _distance(features, image, component, image, ring)

    kept = filter_segments(segments)
    nested = [s for s in kept if np.all(s <= component)]
    boundary = [s & component for s in kept if not np.all(s <= component) and np.any(s & component)]
    areas = [int(s.sum()) for s in nested]
    d_hal = 0.0
    for seg, area in zip(nested, areas):
        merged = np.zeros_like(component)
        for b in boundary:
            if _adjacent(b, seg):
                merged |= b
        if merged.any():
            crop_b, region_b = _cut_out(merged, image)
            crop_c, region_c = _cut_out(seg, image)
            if features.quirks:  # the reference converts these two masks to grey-level images
                region_b, region_c = region_b.astype(np.uint8), region_c.astype(np.uint8)
            d_hal += area * _distance(features, crop_b, region_b, crop_c, region_c) / sum(areas)
    return {"cfd": d_ctx + d_hal, "cfd_context": d_ctx, "cfd_hallucination": d_hal}


def cfd_score(
    image: np.ndarray, mask: np.ndarray, segments: list[np.ndarray], features: RegionFeatures
) -> dict[str, float]:
    """Average of :func:`cfd_component` over the mask's 8-connected components.

    8-connectivity is OpenCV's default, as in the reference.
    """

    binary = (np.asarray(mask) > 0.5).astype(np.uint8)
    n, labels = cv2.connectedComponents(binary)
    parts = [cfd_component(image, labels == i, segments, features) for i in range(1, n)]
    if not parts:
        return {"cfd": float("nan"), "cfd_context": float("nan"), "cfd_hallucination": float("nan")}
    return {k: float(np.mean([p[k] for p in parts])) for k in parts[0]}


class CFDMetric(Metric):
    """CFD of each output (reference-free: the ground truth is not used); the set value is the mean."""

    name = "cfd"
    needs_target = False

    def __init__(
        self,
        dinov2,
        sam_model,
        sam_processor,
        *,
        reference_quirks: bool = False,
        device: str = "cpu",
        fingerprint: str = "none",
        sam_settings: SamSettings = SamSettings(),
    ):
        self.features = RegionFeatures(dinov2, reference_quirks=reference_quirks, device=device)
        self.sam_model, self.sam_processor, self.device = sam_model, sam_processor, device
        self.fingerprint, self.sam_settings, self.quirks = fingerprint, sam_settings, reference_quirks

    def update(self, s: Sample) -> dict[str, float]:
        segments = sam_automatic_masks(
            s.output, self.sam_model, self.sam_processor, self.sam_settings, self.device
        )
        return {"cfd": cfd_score(s.output, s.mask, segments, self.features)["cfd"]}

    def settings(self) -> dict:
        return {
            "features": "DINOv2 last_hidden_state, 224x224, 16x16 patches",
            "segments": "SAM automatic masks",
            "reference_quirks": self.quirks,
            **self.sam_settings.__dict__,
        }

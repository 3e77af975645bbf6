"""SAVP, the semantic-anchored verification pipeline (arXiv:2606.28094 Sec. 3.1, App. A, Alg. 1–2, Table 6).

From an instruction-edit triplet (I_orig, I_edit, p) SAVP either rejects the pair, with a reason and the stage
that rejected it, or returns a removal pair (I_shot, I_gt) with an object-core mask m_obj, an effect-aware
target mask m_gt and the Phase II flag.

Algorithm 1 — semantic-anchored verification
  order      add ⇒ (I_shot, I_gt) = (I_edit, I_orig); remove ⇒ (I_orig, I_edit); anything else: reject.
  heatmap    H = w_L·ΔL_log + w_ab·Δab + w_T·ΔTex on normalised feature differences; m = H > τ_H.
  clean      opening then closing with a disk of radius r_morph; drop components < A_min px; fill holes
             ≤ A_hole.
  audit      dominant components have area ≥ α·(largest area), the rest are noise; reject when more than N_max
             dominant components, or when noise area / mask area > τ_noise.
  semantic   detector boxes on I_shot for p with score ≥ τ_score, top K_sem by score.
  match      dominant boxes largest first; b* = best-IoU semantic box; accept if IoU ≥ τ_iou and
             R = Area(b)/Area(b*) ≤ τ_scale; reject the whole pair if R > τ_scale (collapse); else drop b.
  keep       components of m_diff whose pixel support inside the validated boxes exceeds τ_keep → m_diff^val.
Algorithm 2 — effect-aware masks
  m_obj = ∪ segmenter(I_shot, b_val);  m_fuse = m_obj ∪ m_diff^val (Eq. 1);
  m_gt  = m_fuse grown by distance-transform area growth to r_dilate × its area;
  m_eff = m_fuse \\ m_obj (Eq. 2), r_eff = ‖m_eff‖₁/‖m_fuse‖₁, Phase II if r_eff ≥ τ_eff.

Choices the paper leaves open (made as in the authors' released SAVP code where it is explicit, see
docs/data.md): feature differences are in CIE Lab (scikit-image), each normalised by the 99th percentile of
its positive values and clipped to [0, 1]; ΔL_log uses log(L + 1) so black regions do not explode; components
are 8-connected; the collapse test also applies when the best IoU is below τ_iou (as Algorithm 1's ``else if``
reads); a candidate that overlaps no semantic box is dropped; the segmenter is prompted with the validated
difference boxes b_val. erasekit adds one rejection the paper does not need: an empty object-core mask (the
segmenter found nothing), since such a sample cannot give Phase II its object-core conditioning mask.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from ..masks import Box
from ..types import InvalidInputError
from .paired import PHASE2_THRESHOLD
from .savp_models import Detection, Detector, Segmenter


# ---- Table 6 -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SAVPConfig:
    """SAVP constants; defaults equal OSOR arXiv:2606.28094 Table 6 (names follow the table's symbols)."""

    w_l: float = 0.6  # w_L, weight of the log-luminance difference
    w_ab: float = 0.3  # w_ab, weight of the chromaticity difference
    w_t: float = 0.1  # w_T, weight of the gradient-magnitude (texture) difference
    tau_h: float = 0.07  # τ_H, heatmap threshold
    r_morph: int = 3  # r_morph, opening/closing disk radius
    a_min: int = 2000  # A_min, smallest kept component (pixels)
    a_hole: int = 500  # A_hole, largest filled hole (pixels)
    alpha: float = 0.3  # α, dominant/noise split (area relative to the largest component)
    n_max: int = 4  # N_max, most dominant components allowed
    tau_noise: float = 0.3  # τ_noise, largest allowed noise area ratio
    tau_score: float = 0.3  # τ_score, detector score threshold
    k_sem: int = 3  # K_sem, semantic boxes kept
    tau_iou: float = 0.3  # τ_iou, box IoU to accept a candidate
    tau_scale: float = 2.0  # τ_scale, candidate/semantic box area ratio bound (above: collapse)
    tau_keep: float = 0.5  # τ_keep, component support inside validated boxes
    r_dilate: float = 1.2  # r_dilate, area growth ratio of m_fuse → m_gt
    tau_eff: float = PHASE2_THRESHOLD  # τ_eff, effects ratio for the Phase II subset
    # Not in Table 6 (implementation choices, see the module docstring):
    normalise_percentile: float = 99.0
    segment_prompt: Literal["difference", "semantic"] = "difference"

    def __post_init__(self) -> None:
        if self.segment_prompt not in ("difference", "semantic"):
            raise InvalidInputError(
                f"segment_prompt must be 'difference' or 'semantic', got {self.segment_prompt!r}"
            )
        if self.r_dilate < 1.0 or self.k_sem < 1 or self.a_min < 1 or self.r_morph < 0:
            raise InvalidInputError(f"invalid SAVP constants: {self}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> SAVPConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise InvalidInputError(f"unknown SAVP setting(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SAVPConfig:
        import yaml

        try:
            values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidInputError(f"cannot read SAVP config '{path}': {exc}") from None
        if not isinstance(values, dict):
            raise InvalidInputError(f"SAVP config '{path}' must be a mapping of settings")
        return cls.from_mapping(values)


# ---- results -----------------------------------------------------------------------------------------------
STAGES = ("order", "difference", "semantic", "segmentation")
REASONS = {
    "unsupported_instruction": "order",
    "size_mismatch": "order",
    "empty_difference": "difference",
    "too_many_dominant_components": "difference",
    "noisy_difference": "difference",
    "no_semantic_boxes": "semantic",
    "collapse": "semantic",
    "no_validated_region": "semantic",
    "empty_object_core": "segmentation",
}


@dataclass
class Candidate:
    """One dominant difference box and how matching went."""

    box: Box
    area: int
    best_iou: float = 0.0
    scale_ratio: float | None = None
    semantic_box: Box | None = None
    accepted: bool = False


@dataclass
class SAVPResult:
    accepted: bool
    stage: str | None = None  # stage that rejected the pair (None when accepted)
    reason: str | None = None
    kind: str | None = None  # "add" / "remove"
    shot: np.ndarray | None = None
    gt: np.ndarray | None = None
    heatmap: np.ndarray | None = None
    diff_mask: np.ndarray | None = None
    candidates: list[Candidate] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    validated_boxes: list[Box] = field(default_factory=list)
    diff_val: np.ndarray | None = None
    object_mask: np.ndarray | None = None  # m_obj
    fused_mask: np.ndarray | None = None  # m_fuse (Eq. 1)
    effect_mask: np.ndarray | None = None  # m_gt
    residual_mask: np.ndarray | None = None  # m_eff (Eq. 2)
    effect_ratio: float | None = None
    phase2: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def decision(self) -> dict[str, Any]:
        """The JSON-able summary written to the decision log."""
        out: dict[str, Any] = {
            "accepted": self.accepted,
            "stage": self.stage,
            "reason": self.reason,
            "kind": self.kind,
            "phase2": self.phase2,
        }
        if self.effect_ratio is not None:
            out["effect_ratio"] = round(self.effect_ratio, 4)
        out.update(self.details)
        return out


class Rejected(Exception):
    def __init__(self, reason: str, **details: Any):
        super().__init__(reason)
        self.reason = reason
        self.stage = REASONS[reason]
        self.details = details


# ---- Algorithm 1 -------------------------------------------------------------------------------------------
_ADD = re.compile(r"^\s*(please\s+)?(add|insert|put|place|include|introduce|draw|paste)\b", re.IGNORECASE)
_REMOVE = re.compile(
    r"^\s*(please\s+)?(remove|delete|erase|eliminate|take\s+(away|out|off)|get\s+rid\s+of|"
    r"clear|wipe)\b",
    re.IGNORECASE,
)


def instruction_kind(instruction: str) -> str | None:
    """ "add", "remove" or None, from the instruction's leading verb."""
    if _ADD.match(instruction):
        return "add"
    if _REMOVE.match(instruction):
        return "remove"
    return None


def order_pair(
    original: np.ndarray, edited: np.ndarray, instruction: str
) -> tuple[np.ndarray, np.ndarray, str]:
    """(I_shot, I_gt, kind): add ⇒ (edit, orig), remove ⇒ (orig, edit) (Alg. 1, first step)."""
    kind = instruction_kind(instruction)
    if kind is None:
        raise Rejected("unsupported_instruction")
    if original.shape != edited.shape:
        raise Rejected("size_mismatch", original=list(original.shape[:2]), edited=list(edited.shape[:2]))
    return (edited, original, kind) if kind == "add" else (original, edited, kind)


# Differences below this are floating-point noise (one 8-bit step moves Lab by ~0.3 units or more), not
# change; without the floor the percentile normalisation would blow rounding noise up to 1 on a channel that
# did not change at all.
_NOISE_FLOOR = 0.05


def _normalise(values: np.ndarray, percentile: float) -> np.ndarray:
    values = np.where(values > _NOISE_FLOOR, values, 0.0)
    positive = values[values > 0]
    if positive.size == 0:
        return np.zeros_like(values, dtype=np.float32)
    scale = float(np.percentile(positive, percentile))
    return np.clip(values / max(scale, 1e-6), 0.0, 1.0).astype(np.float32)


def _gradient_magnitude(gray: np.ndarray) -> np.ndarray:
    import cv2

    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return np.hypot(gx, gy)


def difference_heatmap(shot: np.ndarray, gt: np.ndarray, config: SAVPConfig = SAVPConfig()) -> np.ndarray:
    """H = w_L·ΔL_log + w_ab·Δab + w_T·ΔTex (Alg. 1), float32 H×W in [0, 1]."""
    from skimage.color import rgb2gray, rgb2lab

    a = shot.astype(np.float64) / 255.0
    b = gt.astype(np.float64) / 255.0
    lab_a, lab_b = rgb2lab(a), rgb2lab(b)
    d_l = np.abs(np.log1p(lab_a[..., 0]) - np.log1p(lab_b[..., 0]))
    d_ab = np.linalg.norm(lab_a[..., 1:] - lab_b[..., 1:], axis=-1)
    d_t = np.abs(
        _gradient_magnitude(rgb2gray(a).astype(np.float32))
        - _gradient_magnitude(rgb2gray(b).astype(np.float32))
    )
    p = config.normalise_percentile
    heat = (
        config.w_l * _normalise(d_l, p) + config.w_ab * _normalise(d_ab, p) + config.w_t * _normalise(d_t, p)
    )
    return np.clip(heat, 0.0, 1.0).astype(np.float32)


def _label(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected labels and the area of each label (index 0 = background)."""
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
    return labels, np.bincount(labels.ravel())


def clean_difference(raw: np.ndarray, config: SAVPConfig = SAVPConfig()) -> np.ndarray:
    """Opening + closing (disk r_morph), drop components < A_min, fill holes ≤ A_hole → m_diff (bool)."""
    from skimage.morphology import disk, remove_small_holes, remove_small_objects

    mask = np.asarray(raw, bool)
    if config.r_morph > 0:
        selem = disk(config.r_morph).astype(bool)
        mask = ndimage.binary_opening(mask, selem)
        # Closing on a padded canvas, so objects touching the border are not eroded by the implicit zero
        # border.
        pad = config.r_morph
        mask = ndimage.binary_closing(np.pad(mask, pad), selem)[pad:-pad, pad:-pad]
    mask = remove_small_objects(mask, max_size=config.a_min - 1, connectivity=2)  # 8-connected, keeps ≥ A_min
    # Holes are 4-connected background regions (the dual of 8-connected objects). remove_small_holes also
    # fills small background regions that touch the image border; intersecting with binary_fill_holes keeps
    # only the enclosed ones (a border notch is not a hole).
    return remove_small_holes(mask, max_size=config.a_hole, connectivity=1) & ndimage.binary_fill_holes(mask)


@dataclass
class DifferenceAudit:
    labels: np.ndarray
    areas: list[int]  # per component (label i+1)
    dominant: list[int]  # labels of dominant components, largest first
    noise_ratio: float


def audit_components(diff_mask: np.ndarray, config: SAVPConfig = SAVPConfig()) -> DifferenceAudit:
    """Dominant/noise split at α × the largest component's area, and the noise area ratio."""
    labels, counts = _label(diff_mask)
    areas = counts[1:].tolist()
    if not areas:
        return DifferenceAudit(labels, [], [], 0.0)
    largest = max(areas)
    order = sorted(range(1, len(areas) + 1), key=lambda i: -areas[i - 1])
    dominant = [i for i in order if areas[i - 1] >= config.alpha * largest]
    noise = sum(a for i, a in enumerate(areas, start=1) if i not in set(dominant))
    return DifferenceAudit(labels, areas, dominant, noise / float(sum(areas)))


def _component_box(labels: np.ndarray, index: int) -> Box:
    ys, xs = np.nonzero(labels == index)
    return Box(int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)


def semantic_boxes(detections: list[Detection], config: SAVPConfig = SAVPConfig()) -> list[Detection]:
    """Score ≥ τ_score, the K_sem best."""
    kept = sorted((d for d in detections if d.score >= config.tau_score), key=lambda d: -d.score)
    return kept[: config.k_sem]


def match_candidates(
    candidates: list[Candidate], semantic: list[Detection], config: SAVPConfig = SAVPConfig()
) -> list[Candidate]:
    """Largest first: accept (IoU ≥ τ_iou and R ≤ τ_scale), raise collapse (R > τ_scale) or drop."""
    for cand in sorted(candidates, key=lambda c: -c.box.area):
        best = max(semantic, key=lambda d: cand.box.iou(d.box))
        iou = cand.box.iou(best.box)
        cand.best_iou = iou
        if iou <= 0.0:
            continue  # overlaps no semantic box: no b*, drop
        cand.semantic_box = best.box
        cand.scale_ratio = cand.box.area / max(best.box.area, 1)
        if iou >= config.tau_iou and cand.scale_ratio <= config.tau_scale:
            cand.accepted = True
        elif cand.scale_ratio > config.tau_scale:
            raise Rejected("collapse", iou=round(iou, 4), scale_ratio=round(cand.scale_ratio, 4))
    return [c for c in candidates if c.accepted]


def keep_supported(diff_mask: np.ndarray, boxes: list[Box], config: SAVPConfig = SAVPConfig()) -> np.ndarray:
    """m_diff^val: components of m_diff with more than τ_keep of their pixels inside the validated boxes."""
    inside = np.zeros(diff_mask.shape, bool)
    for box in boxes:
        inside[box.slices] = True
    labels, areas = _label(diff_mask)
    support = np.bincount(labels[inside].ravel(), minlength=len(areas)) / np.maximum(areas, 1)
    keep = support > config.tau_keep
    keep[0] = False
    return keep[labels]


# ---- Algorithm 2 -------------------------------------------------------------------------------------------
def grow_area(mask: np.ndarray, ratio: float) -> np.ndarray:
    """Distance-transform area growth: add the nearest outside pixels until the area reaches ``ratio`` × area.

    All pixels at the threshold distance are added (ties are not broken arbitrarily), so the grown area is the
    smallest distance level reaching the target.
    """
    mask = np.asarray(mask, bool)
    area = int(mask.sum())
    extra = int(np.ceil(area * ratio)) - area
    if area == 0 or extra <= 0:
        return mask.copy()
    distance = ndimage.distance_transform_edt(~mask)
    outside = distance[~mask]
    if extra >= outside.size:
        return np.ones_like(mask)
    threshold = np.partition(outside, extra - 1)[extra - 1]
    return mask | (distance <= threshold)


def effect_aware_masks(result: SAVPResult, segmenter: Segmenter, config: SAVPConfig = SAVPConfig()) -> None:
    """Algorithm 2 on a verified result (fills m_obj, m_fuse, m_gt, m_eff, r_eff, phase2)."""
    assert result.shot is not None and result.diff_val is not None, "Algorithm 1 sets the shot and m_diff^val"
    if config.segment_prompt == "difference":
        prompts = result.validated_boxes
    else:
        prompts = [c.semantic_box for c in result.candidates if c.accepted and c.semantic_box is not None]
    proposals = segmenter.segment(result.shot, prompts)
    m_obj = np.zeros(result.shot.shape[:2], bool)
    for proposal in proposals:
        m_obj |= np.asarray(proposal, bool)
    if not m_obj.any():
        raise Rejected("empty_object_core")
    m_fuse = m_obj | result.diff_val  # Eq. 1
    m_eff = m_fuse & ~m_obj  # Eq. 2
    r_eff = float(m_eff.sum()) / float(m_fuse.sum())
    result.object_mask, result.fused_mask, result.residual_mask = m_obj, m_fuse, m_eff
    result.effect_mask = grow_area(m_fuse, config.r_dilate)
    result.effect_ratio = r_eff
    result.phase2 = r_eff >= config.tau_eff


# ---- the pipeline ------------------------------------------------------------------------------------------
class SAVP:
    """Algorithm 1 then Algorithm 2 with a detector and a segmenter (see :mod:`erasekit.data.savp_models`)."""

    def __init__(self, detector: Detector, segmenter: Segmenter, config: SAVPConfig | None = None):
        self.detector = detector
        self.segmenter = segmenter
        self.config = config or SAVPConfig()

    def __call__(self, original: np.ndarray, edited: np.ndarray, instruction: str) -> SAVPResult:
        result = SAVPResult(accepted=False)
        try:
            self._verify(result, original, edited, instruction)
            effect_aware_masks(result, self.segmenter, self.config)
        except Rejected as rejection:
            result.stage, result.reason = rejection.stage, rejection.reason
            result.details.update(rejection.details)
            return result
        result.accepted = True
        assert result.object_mask is not None and result.effect_mask is not None  # set by effect_aware_masks
        result.details.update(
            object_area=int(result.object_mask.sum()), effect_area=int(result.effect_mask.sum())
        )
        return result

    def _verify(self, result: SAVPResult, original: np.ndarray, edited: np.ndarray, instruction: str) -> None:
        cfg = self.config
        result.kind = instruction_kind(instruction)
        shot, gt, _ = order_pair(original, edited, instruction)
        result.shot, result.gt = shot, gt
        result.heatmap = difference_heatmap(shot, gt, cfg)
        result.diff_mask = clean_difference(result.heatmap > cfg.tau_h, cfg)
        audit = audit_components(result.diff_mask, cfg)
        result.details.update(
            components=len(audit.areas), dominant=len(audit.dominant), noise_ratio=round(audit.noise_ratio, 4)
        )
        if not audit.areas:
            raise Rejected("empty_difference")
        if len(audit.dominant) > cfg.n_max:
            raise Rejected("too_many_dominant_components")
        if audit.noise_ratio > cfg.tau_noise:
            raise Rejected("noisy_difference")
        result.candidates = [
            Candidate(_component_box(audit.labels, i), audit.areas[i - 1]) for i in audit.dominant
        ]
        result.detections = semantic_boxes(self.detector.detect(shot, instruction), cfg)
        result.details["semantic_boxes"] = len(result.detections)
        if not result.detections:
            raise Rejected("no_semantic_boxes")
        accepted = match_candidates(result.candidates, result.detections, cfg)
        if not accepted:
            raise Rejected("no_validated_region")
        result.validated_boxes = [c.box for c in accepted]
        result.diff_val = keep_supported(result.diff_mask, result.validated_boxes, cfg)
        if not result.diff_val.any():
            raise Rejected("no_validated_region")


def config_table(config: SAVPConfig) -> list[tuple[str, Any]]:
    return list(asdict(config).items())


__all__ = ["REASONS", "SAVP", "STAGES", "SAVPConfig", "SAVPResult", "audit_components", "clean_difference",
           "difference_heatmap", "effect_aware_masks", "grow_area", "instruction_kind", "keep_supported",
           "match_candidates", "order_pair", "semantic_boxes"]

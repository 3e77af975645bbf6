"""Visual debug sheets for SAVP decisions: one row of panels per sample.

Panels: I_shot | I_gt | heatmap H (inferno) | components of m_diff with candidate boxes (green accepted, red
not) and semantic boxes (cyan) | m_obj (red) over I_shot | m_gt (orange) over I_shot, with the decision
written on top. Panels a rejected sample never reached are grey.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..masks import Box
from .savp import SAVPResult

_GREY = 96
_LABEL_H = 18


def _panel_base(shape: tuple[int, int]) -> np.ndarray:
    return np.full((*shape, 3), _GREY, np.uint8)


def _rect(img: np.ndarray, box: Box, colour: tuple[int, int, int]) -> None:
    cv2.rectangle(img, (box.left, box.top), (max(box.left, box.right - 1), max(box.top, box.bottom - 1)),
                  colour, 1)


def _overlay(image: np.ndarray, mask: np.ndarray | None, colour: tuple[int, int, int]) -> np.ndarray:
    out = image.astype(np.float32).copy()
    if mask is not None:
        m = np.asarray(mask, bool)
        out[m] = 0.45 * out[m] + 0.55 * np.array(colour, np.float32)
    return out.astype(np.uint8)


def _components(result: SAVPResult, shape: tuple[int, int]) -> np.ndarray:
    img = _panel_base(shape)
    if result.diff_mask is None:
        return img
    from scipy import ndimage

    labels, n = ndimage.label(result.diff_mask, structure=np.ones((3, 3), bool))
    palette = np.random.default_rng(0).integers(60, 255, (max(n, 1) + 1, 3)).astype(np.uint8)
    palette[0] = 0
    img = palette[labels]
    for cand in result.candidates:
        _rect(img, cand.box, (0, 255, 0) if cand.accepted else (255, 0, 0))
    for det in result.detections:
        _rect(img, det.box, (0, 255, 255))
    return img


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    bar = np.zeros((_LABEL_H, panel.shape[1], 3), np.uint8)
    cv2.putText(bar, text, (3, _LABEL_H - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, panel], axis=0)


def debug_sheet(result: SAVPResult, original: np.ndarray, edited: np.ndarray, title: str = "") -> np.ndarray:
    """The sheet as uint8 RGB."""
    shape = original.shape[:2]
    shot = result.shot if result.shot is not None else original
    gt = result.gt if result.gt is not None else edited
    heat = _panel_base(shape)
    if result.heatmap is not None:
        heat = cv2.applyColorMap((result.heatmap * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
    obj = (
        _overlay(shot, result.object_mask, (255, 0, 0))
        if result.object_mask is not None
        else _panel_base(shape)
    )
    eff = (
        _overlay(shot, result.effect_mask, (255, 160, 0))
        if result.effect_mask is not None
        else _panel_base(shape)
    )
    panels = [("shot", shot), ("gt", gt), ("heatmap", heat), ("components/boxes", _components(result, shape)),
              ("object core", obj), ("effect-aware", eff)]
    row = np.concatenate([_label(np.ascontiguousarray(p), name) for name, p in panels], axis=1)
    status = (
        "ACCEPTED" + (" phase2" if result.phase2 else "")
        if result.accepted
        else f"REJECTED {result.stage}: {result.reason}"
    )
    header = np.zeros((_LABEL_H + 4, row.shape[1], 3), np.uint8)
    cv2.putText(
        header,
        f"{title}  {status}",
        (4, _LABEL_H - 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (120, 255, 120) if result.accepted else (255, 120, 120),
        1,
        cv2.LINE_AA,
    )
    return np.concatenate([header, row], axis=0)


__all__ = ["debug_sheet"]

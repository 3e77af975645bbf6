"""Alpha-map visualisation in the style of OSOR's Fig. 8: where predicted α̂ reaches beyond the user's mask.

The alpha map is coloured with a matplotlib colormap and laid over the photo with per-pixel opacity
``α̂·strength`` (so untouched background stays visible as it is); the conditioning mask's outline is drawn on
top with OpenCV, which makes the part of α̂ outside the mask — the shadow or reflection the alpha head found —
easy to see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...types import InvalidInputError


def alpha_overlay(
    image: np.ndarray,
    alpha: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    colormap: str = "turbo",
    strength: float = 0.65,
    outline: tuple[int, int, int] = (255, 255, 255),
    thickness: int = 2,
) -> np.ndarray:
    """uint8 H×W×3 photo + float H×W alpha in [0, 1] (+ optional H×W mask) -> uint8 H×W×3 overlay."""
    import cv2
    from matplotlib import colormaps

    image = np.asarray(image)
    alpha = np.clip(np.asarray(alpha, dtype=np.float32), 0.0, 1.0)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInputError("alpha_overlay needs a uint8 RGB image of shape H×W×3")
    if alpha.shape != image.shape[:2]:
        raise InvalidInputError(
            f"alpha size {alpha.shape[::-1]} does not match image size {image.shape[1::-1]}"
        )
    if not 0.0 <= strength <= 1.0:
        raise InvalidInputError(f"strength must be in [0, 1], got {strength}")
    colours = colormaps[colormap](alpha)[..., :3].astype(np.float32) * 255.0
    weight = (alpha * strength)[..., None]
    out = np.clip(np.rint(image.astype(np.float32) * (1.0 - weight) + colours * weight), 0, 255).astype(
        np.uint8
    )
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != image.shape[:2]:
            raise InvalidInputError(
                f"mask size {mask.shape[::-1]} does not match image size {image.shape[1::-1]}"
            )
        contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        out = np.ascontiguousarray(out)
        cv2.drawContours(out, contours, -1, outline, thickness)
    return out


def write_alpha_overlay(
    path: str | Path, image: np.ndarray, alpha: np.ndarray, mask: np.ndarray | None = None, **kwargs
) -> Path:
    """Write :func:`alpha_overlay` to ``path`` (atomically, through :mod:`erasekit.io`)."""
    from ... import io

    return io.write_image(path, alpha_overlay(image, alpha, mask, **kwargs))


__all__ = ["alpha_overlay", "write_alpha_overlay"]

"""The one place where pixels change representation.

API edge: uint8 RGB H×W×3 arrays and float32 H×W masks in [0, 1]. Models: NCHW float tensors in [-1, 1] for
images and N1HW tensors in [0, 1] for masks. Every other module converts through these functions, never ad
hoc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is heavy; import lazily so the classical path starts fast
    import torch


def _shareable(array: np.ndarray, dtype) -> np.ndarray:
    """``array`` as a contiguous array of ``dtype`` that torch may share: a copy when it is read-only (a
    cached or memory-mapped input), since torch cannot share read-only memory."""
    out = np.ascontiguousarray(array, dtype=dtype)
    return out if out.flags.writeable else out.copy()


def image_to_tensor(image: np.ndarray, *, device=None, dtype=None) -> torch.Tensor:
    """uint8 H×W×3 (or N×H×W×3) -> float tensor N×3×H×W in [-1, 1]."""
    import torch

    array = _shareable(image[None] if image.ndim == 3 else image, image.dtype)
    tensor = torch.from_numpy(array).permute(0, 3, 1, 2).float()
    tensor = tensor / 127.5 - 1.0
    return tensor.to(device=device, dtype=dtype or torch.float32)


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """Float tensor N×3×H×W (or 3×H×W) in [-1, 1] -> uint8 N×H×W×3 (or H×W×3), rounded and clipped."""
    squeeze = tensor.ndim == 3
    batch = tensor[None] if squeeze else tensor
    array = ((batch.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(dtype=_uint8()).numpy()
    array = array.transpose(0, 2, 3, 1)
    return array[0] if squeeze else array


def mask_to_tensor(mask: np.ndarray, *, device=None, dtype=None) -> torch.Tensor:
    """float H×W (or N×H×W) in [0, 1] -> tensor N×1×H×W in [0, 1]."""
    import torch

    tensor = torch.from_numpy(_shareable(mask[None] if mask.ndim == 2 else mask, np.float32))[:, None]
    return tensor.to(device=device, dtype=dtype or torch.float32)


def tensor_to_mask(tensor: torch.Tensor) -> np.ndarray:
    """Tensor N×1×H×W (or 1×H×W / H×W) in [0, 1] -> float32 N×H×W (or H×W)."""
    t = tensor.detach().float().cpu().clamp(0, 1)
    if t.ndim == 4:
        return t[:, 0].numpy().astype(np.float32)
    if t.ndim == 3:
        return t[0].numpy().astype(np.float32)
    return t.numpy().astype(np.float32)


def mask_to_uint8(mask: np.ndarray) -> np.ndarray:
    """float mask in [0, 1] -> uint8 0..255 (for saving and for libraries that want 8-bit masks)."""
    return np.clip(np.rint(np.asarray(mask, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def uint8_to_mask(mask: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 [0, 1] (soft values kept)."""
    return np.asarray(mask, dtype=np.float32) / 255.0


def _uint8():
    import torch

    return torch.uint8

"""CLIPAway's embedding step: image + object mask → the IP-Adapter image embedding of the background alone.

arXiv:2406.09368, Sec. 3.2: AlphaCLIP encodes the image twice, once focused on the object (alpha = the
dilated mask) and once on the background (alpha = its complement); the MLP maps both into IP-Adapter's
embedding space, and Eq. 2 removes from the background embedding its component along the foreground one,

    e = bg − (bg · fg / ‖fg‖²) · fg,

so that e is orthogonal to fg (what remains says nothing the foreground embedding says). IP-Adapter's
unconditional image embedding is MLP(0), the MLP's image of an all-zero AlphaCLIP embedding, not zeros.

:class:`ClipAwayEmbedder` is reusable on its own: any SD1.5 inpainting call with IP-Adapter loaded takes its
:meth:`~ClipAwayEmbedder.ip_adapter_image_embeds` as diffusers' ``ip_adapter_image_embeds``::

    embedder = ClipAwayEmbedder(load_alpha_clip(path_pth), load_mlp(path_safetensors))
    embeds = embedder.ip_adapter_image_embeds([image], [mask])
    pipe(prompt="", image=..., mask_image=..., ip_adapter_image_embeds=embeds)

Preprocessing follows the authors: the image goes through CLIP's Resize(S, bicubic) + CenterCrop(S) +
OpenAI mean/std, the alpha through ToTensor → Resize((S, S)) → Normalize(0.5, 0.26) (1 → +1.923,
0 → −1.923). The authors feed 512×512 squares, where the crop is a no-op and both agree. For other aspect
ratios erasekit brings both to the same square frame the same way, a plain resize to S×S, so that every
alpha pixel stays over its image pixel (a centre crop of the image alone would shift it off its alpha).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import nn

from ...types import InvalidInputError

if TYPE_CHECKING:
    from .alpha_clip import AlphaClipVisionModel
    from .mlp import ClipAwayMLP

# AlphaCLIP's alpha normalisation (its mask transform's Normalize(0.5, 0.26)).
ALPHA_MEAN, ALPHA_STD = 0.5, 0.26
# The authors dilate the object masks before inference (their dilate.py: 5×5 ones, 5 iterations).
DILATION_KERNEL, DILATION_ITERATIONS = 5, 5


def foreground_alpha(mask: np.ndarray, iterations: int = DILATION_ITERATIONS) -> np.ndarray:
    """The object mask (H×W, nonzero = object) dilated ``iterations`` times by a 5×5 square with OpenCV, as
    float32 in {0, 1}. ``iterations=0`` keeps the mask as it is."""
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    if iterations > 0:
        kernel = np.ones((DILATION_KERNEL, DILATION_KERNEL), np.uint8)
        return cv2.dilate(binary, kernel, iterations=iterations).astype(np.float32)
    return binary.astype(np.float32)


def square_frame_processor(size: int) -> Any:
    """CLIP's preprocessing with PIL's bicubic resize (what the authors' torchvision transform does on PIL
    images), straight to the S×S frame: for a square input, Resize(S) + CenterCrop(S) is this resize."""
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"height": size, "width": size}, do_center_crop=False)


def clip_pixel_values(processor: Any, images: Sequence[np.ndarray]) -> torch.Tensor:
    """B×3×S×S float32 inputs of uint8 H×W×3 images through a transformers CLIP image processor."""
    from PIL import Image

    pil = [Image.fromarray(np.asarray(image, dtype=np.uint8)) for image in images]
    return processor(images=pil, return_tensors="pt").pixel_values.to(torch.float32)


def alpha_values(alphas: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """B×1×S×S AlphaCLIP alpha inputs: ToTensor → Resize((S, S)) (bilinear, antialiased: torchvision's tensor
    resize) → Normalize(0.5, 0.26)."""
    resized = [torch.nn.functional.interpolate(torch.as_tensor(a, dtype=torch.float32)[None, None],
                                               size=(size, size), mode="bilinear", align_corners=False,
                                               antialias=True) for a in alphas]
    return (torch.cat(resized) - ALPHA_MEAN) / ALPHA_STD


def eq2_projection(bg: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """Eq. 2, row by row: ``bg − (bg·fg / ‖fg‖²)·fg`` for B×D embeddings. A zero ``fg`` row leaves ``bg``."""
    squared_norm = (fg * fg).sum(-1, keepdim=True).clamp_min(torch.finfo(fg.dtype).tiny)
    coefficient = (bg * fg).sum(-1, keepdim=True) / squared_norm
    return bg - coefficient * fg


@dataclass(frozen=True)
class ClipAwayEmbeddings:
    """The embeddings of one batch in IP-Adapter's space (B×D each; ``unconditional`` is 1×D)."""

    foreground: torch.Tensor
    background: torch.Tensor
    projected: torch.Tensor  # Eq. 2's e
    unconditional: torch.Tensor  # MLP(0)

    def ip_adapter_image_embeds(self) -> list[torch.Tensor]:
        """diffusers' ``ip_adapter_image_embeds`` with classifier-free guidance: one adapter, negatives
        first (the pipeline chunks it in two), one image each: ``[cat(uncond × B, e)[:, None, :]]``."""
        uncond = self.unconditional.expand(self.projected.shape[0], -1)
        return [torch.cat([uncond, self.projected])[:, None, :]]


class ClipAwayEmbedder(nn.Module):
    """AlphaCLIP + MLP + Eq. 2. Runs in float32 on the device of its modules (move it with ``.to``)."""

    def __init__(self, alpha_clip: AlphaClipVisionModel, mlp: ClipAwayMLP,
                 dilation_iterations: int = DILATION_ITERATIONS):
        super().__init__()
        if alpha_clip.config.projection_dim != mlp.in_dim:
            raise InvalidInputError(f"AlphaCLIP gives {alpha_clip.config.projection_dim}-d embeddings but "
                                    f"the MLP takes {mlp.in_dim}-d ones")
        self.alpha_clip, self.mlp = alpha_clip, mlp
        self.dilation_iterations = dilation_iterations
        self.size = alpha_clip.image_size
        self.image_processor = square_frame_processor(self.size)

    @property
    def device(self) -> torch.device:
        return next(self.mlp.parameters()).device

    # ---- preprocessing -------------------------------------------------------------------------------------
    def pixel_values(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """B×3×S×S CLIP inputs of uint8 H×W×3 images, each resized to the S×S frame."""
        return clip_pixel_values(self.image_processor, images)

    def alpha_values(self, alphas: Sequence[np.ndarray]) -> torch.Tensor:
        """B×1×S×S normalised AlphaCLIP inputs of H×W alphas in [0, 1], each resized to the S×S frame.

        torchvision's tensor ``Resize`` is bilinear with antialiasing; ``F.interpolate`` with the same
        settings is what it calls, used here directly (erasekit does not depend on torchvision)."""
        return alpha_values(alphas, self.size)

    # ---- the embeddings ------------------------------------------------------------------------------------
    @torch.no_grad()
    def unconditional(self) -> torch.Tensor:
        """IP-Adapter's negative image embedding: MLP(zeros), 1×D."""
        return self.mlp(torch.zeros(1, self.mlp.in_dim, device=self.device))

    @torch.no_grad()
    def embed(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> ClipAwayEmbeddings:
        """Foreground, background, Eq. 2 and unconditional embeddings for each (image, object mask) pair."""
        if len(images) != len(masks) or not images:
            raise InvalidInputError(f"need one mask per image, got {len(images)} images and "
                                    f"{len(masks)} masks")
        for image, mask in zip(images, masks, strict=True):
            image_size, mask_size = np.asarray(image).shape[:2], np.asarray(mask).shape[:2]
            if image_size != mask_size:
                raise InvalidInputError(f"image {image_size} and mask {mask_size} differ in size")
        fg_alpha = [foreground_alpha(mask, self.dilation_iterations) for mask in masks]
        pixels = self.pixel_values(images).to(self.device)
        both = torch.cat([self.alpha_values(fg_alpha), self.alpha_values([1.0 - a for a in fg_alpha])])
        # One AlphaCLIP pass over the batch twice: foreground-focused first, background-focused second.
        clip_embeds = self.alpha_clip(torch.cat([pixels, pixels]), both.to(self.device))
        fg, bg = self.mlp(clip_embeds).chunk(2)
        return ClipAwayEmbeddings(foreground=fg, background=bg, projected=eq2_projection(bg, fg),
                                  unconditional=self.unconditional())

    def ip_adapter_image_embeds(self, images: Sequence[np.ndarray],
                                masks: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """:meth:`embed`'s result as diffusers' ``ip_adapter_image_embeds``."""
        return self.embed(images, masks).ip_adapter_image_embeds()


__all__ = ["ALPHA_MEAN", "ALPHA_STD", "DILATION_ITERATIONS", "DILATION_KERNEL", "ClipAwayEmbedder",
           "ClipAwayEmbeddings", "alpha_values", "clip_pixel_values", "eq2_projection", "foreground_alpha",
           "square_frame_processor"]

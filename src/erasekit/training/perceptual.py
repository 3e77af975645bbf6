"""The perceptual term L_per = LPIPS-VGG(x̂, x_bg) of Eq. 10.

App. B.1 says "LPIPS [48]"; the VGG variant is the one in the authors' training code.

The network is :class:`erasekit.eval.networks.LPIPSVGG` (written in-house there because the ``lpips`` package
needs torchvision, which cannot be installed beside our CPU torch build); its files resolve like every feature
network's, through :func:`erasekit.eval.weights.resolve` (explicit path > ``$ERASEKIT_WEIGHTS_DIR`` > torch
hub cache > copies bundled in installed packages, heads only).

The trainer takes any ``perceptual_loss(prediction, target) -> scalar`` callable; :func:`load_lpips_vgg` is
the default and raises :class:`MissingWeightsError` (naming the files and where to put them) when weights are
absent.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..eval.networks import LPIPS, LPIPSVGG
from ..eval.weights import resolve
from ..types import MissingWeightsError


class LPIPSLoss(nn.Module):
    """The batch-mean LPIPS distance, as a loss; :meth:`distance` keeps one value per pair."""

    def __init__(self, lpips: LPIPS) -> None:
        super().__init__()
        self.lpips = lpips

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.lpips(x, y)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.lpips(x, y).mean()


def load_lpips_vgg(
    trunk: str | os.PathLike | None = None, heads: str | os.PathLike | None = None
) -> LPIPSLoss:
    """LPIPS-VGG from local files.

    ``trunk``: torchvision's ``vgg16-397923af.pth``; ``heads``: lpips' v0.1 ``vgg.pth``.
    """
    trunk_file = resolve("vgg16", trunk).path
    heads_file = resolve("lpips-vgg-v0.1", heads).path
    try:
        net = LPIPSVGG().load_weights(
            torch.load(trunk_file, map_location="cpu", weights_only=True),
            torch.load(heads_file, map_location="cpu", weights_only=True),
        )
    except (KeyError, RuntimeError, OSError) as exc:
        raise MissingWeightsError(
            f"LPIPS-VGG weights at {trunk_file} / {heads_file} do not fit: {str(exc).splitlines()[0]}"
        ) from None
    return LPIPSLoss(net)


__all__ = ["LPIPSLoss", "load_lpips_vgg"]

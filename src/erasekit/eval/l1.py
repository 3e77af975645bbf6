"""L1: the mean absolute error between output and ground truth on [0, 1] pixel values, over every pixel and
channel (PixPerfect's Tables 1, 2 and 4 report it as "L1", values like 0.0604: [0, 1] scale, whole image)."""

from __future__ import annotations

import numpy as np

from .metrics import Metric, Sample, _check_pair


def l1(output: np.ndarray, target: np.ndarray) -> float:
    _check_pair(output, target)
    return float(np.abs(output.astype(np.float64) - target.astype(np.float64)).mean() / 255.0)


class L1Metric(Metric):
    name = "l1"

    def update(self, s: Sample) -> dict[str, float]:
        return {"l1": l1(s.output, s.require_target())}

    def settings(self) -> dict:
        return {"scale": "[0, 1]", "region": "whole image", "reduction": "mean over pixels and channels"}


__all__ = ["L1Metric", "l1"]

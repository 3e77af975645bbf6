"""U-IDS and P-IDS, the Inception Discriminative Scores (CoModGAN, Zhao et al., ICLR 2021, arXiv:2103.10428),
reported by PixPerfect in its Tables 1 and 4.

Both start from the Inception pool3 features of the real and the generated images (the FID network of this
harness) and fit one linear SVM that separates real (label 1) from generated (label 0):

* **U-IDS** (unpaired): the SVM's misclassification rate on the features it was fitted on. 0 = perfectly
  separable, 0.5 = indistinguishable. Higher is better.
* **P-IDS** (paired): the share of pairs (real_i, generated_i) in which the generated image's decision value
  is above its paired real image's. 0.5 = indistinguishable. Higher is better.

Settings, after CoModGAN's ``metrics/inception_discriminative_score.py``: scikit-learn's
``LinearSVC(dual=False)`` with its other defaults (L2 penalty, squared hinge loss, C = 1, tol 1e-4, an
intercept, 1000 iterations), fitted on all real and all generated features; U-IDS = 1 − its accuracy on
those features; P-IDS = mean(decision(generated) > decision(real)) over pairs, strict ``>``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import Metric, Sample

SVM_SETTINGS: dict[str, Any] = {"class": "sklearn.svm.LinearSVC", "dual": False}


def inception_discriminative_scores(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    """(U-IDS, P-IDS) of N×F real and N×F generated features, row i of each being one pair."""
    from sklearn.svm import LinearSVC

    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or real.shape != fake.shape:
        raise ValueError(f"IDS needs paired N×F feature sets, got {real.shape} and {fake.shape}")
    inputs = np.concatenate([real, fake])
    targets = np.concatenate([np.ones(len(real), int), np.zeros(len(fake), int)])
    svm = LinearSVC(**{k: v for k, v in SVM_SETTINGS.items() if k != "class"}).fit(inputs, targets)
    u_ids = 1.0 - float(svm.score(inputs, targets))
    p_ids = float(np.mean(svm.decision_function(fake) > svm.decision_function(real)))
    return u_ids, p_ids


class IDSMetric(Metric):
    """U-IDS and P-IDS over a benchmark run: the output and its ground truth form one pair per sample."""

    name = "ids"

    def __init__(self, extractor: Any, device: str = "cpu", fingerprint: str = "none", batch_size: int = 8):
        self.extractor, self.device, self.fingerprint = extractor, device, fingerprint
        self.batch_size = batch_size
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []

    def update(self, s: Sample) -> dict[str, float]:
        self.pairs.append((np.ascontiguousarray(s.require_target()), np.ascontiguousarray(s.output)))
        return {}

    def _features(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        from .features import to_uint8_tensor

        out = []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                batch = images[start : start + self.batch_size]
                if len({im.shape for im in batch}) > 1:  # mixed sizes: one at a time
                    out += [self.extractor(to_uint8_tensor([im], self.device)).double().cpu() for im in batch]
                else:
                    out.append(self.extractor(to_uint8_tensor(batch, self.device)).double().cpu())
        return torch.cat(out).numpy()

    def compute(self) -> dict[str, float]:
        if len(self.pairs) < 2:
            return {"u_ids": float("nan"), "p_ids": float("nan")}
        real = self._features([r for r, _ in self.pairs])
        fake = self._features([f for _, f in self.pairs])
        u_ids, p_ids = inception_discriminative_scores(real, fake)
        return {"u_ids": u_ids, "p_ids": p_ids}

    def settings(self) -> dict:
        from .features import fid_settings

        return {"features": fid_settings()["network"], "svm": SVM_SETTINGS, "after": "CoModGAN"}


__all__ = ["SVM_SETTINGS", "IDSMetric", "inception_discriminative_scores"]

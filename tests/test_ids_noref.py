"""U-IDS / P-IDS (CoModGAN's Inception Discriminative Scores) and the no-reference metrics (MUSIQ, MANIQA)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from erasekit.eval.ids import IDSMetric, inception_discriminative_scores
from erasekit.eval.metrics import Sample
from erasekit.eval.suite import build_suite


def _mirror_sets(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Real features at +1 (n times) and one outlier at −3; generated ones the mirror image (−1, +3).

    The data are symmetric under x → −x with the labels swapped, and LinearSVC's primal problem (squared
    hinge + L2, strictly convex) has one solution, so the intercept is 0 and the decision is w·x, w > 0.
    Hand computation: the two outliers are misclassified, the rest are not: U-IDS = 2 / (2n + 2).
    """
    real = np.array([[1.0]] * n + [[-3.0]])
    fake = np.array([[-1.0]] * n + [[3.0]])
    return real, fake


def test_u_ids_is_the_hand_computed_error_rate_of_a_mirror_symmetric_set():
    real, fake = _mirror_sets(9)
    u_ids, _ = inception_discriminative_scores(real, fake)
    assert u_ids == pytest.approx(2 / 20)


def test_p_ids_counts_pairs_where_the_generated_score_is_higher():
    # Decision = w·x with w > 0 (see _mirror_sets), so a pair counts exactly where the generated feature is
    # the larger. Pairs after the shuffle: (+1, +3) counts, 8 × (+1, −1) do not, (−3, −1) counts: 2 / 10.
    real, fake = _mirror_sets(9)
    fake = fake[[9, 0, 1, 2, 3, 4, 5, 6, 7, 8]]
    expected = float(np.mean(fake[:, 0] > real[:, 0]))
    assert expected == pytest.approx(2 / 10)
    _, p_ids = inception_discriminative_scores(real, fake)
    assert p_ids == pytest.approx(expected)


def test_separable_sets_score_zero_and_identical_pairs_score_zero_p_ids():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 8)) + 5.0
    fake = rng.normal(size=(40, 8)) - 5.0
    assert inception_discriminative_scores(real, fake) == (0.0, 0.0)
    # Identical paired features: no generated score is strictly above its pair's.
    assert inception_discriminative_scores(real, real.copy())[1] == 0.0


def test_ids_rejects_unpaired_sets():
    with pytest.raises(ValueError, match="paired"):
        inception_discriminative_scores(np.zeros((3, 2)), np.zeros((4, 2)))


class _MeanColour(torch.nn.Module):
    """A stand-in feature network: per-channel means of the uint8 batch (N×3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean(dim=(2, 3))


def test_ids_metric_pairs_each_output_with_its_ground_truth():
    rng = np.random.default_rng(1)
    metric = IDSMetric(_MeanColour(), batch_size=3)
    reals, fakes = [], []
    for i in range(7):
        real = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        fake = np.clip(real.astype(int) + rng.integers(-40, 41), 0, 255).astype(np.uint8)
        metric.update(Sample(str(i), fake, real, np.zeros((16, 16), np.float32), real))
        reals.append(real.reshape(-1, 3).mean(0))
        fakes.append(fake.reshape(-1, 3).mean(0))
    u_ids, p_ids = inception_discriminative_scores(np.array(reals), np.array(fakes))
    assert metric.compute() == pytest.approx({"u_ids": u_ids, "p_ids": p_ids})


def test_ids_is_unavailable_without_inception_weights(tmp_path):
    suite = build_suite(["ids"], weights={"inception-fid": str(tmp_path / "missing.pth")})
    assert suite["ids"].make is None and suite["ids"].unavailable


# ---- no-reference quality (pyiqa) --------------------------------------------------------------------------
def test_musiq_and_maniqa_are_unavailable_with_the_reason_when_pyiqa_cannot_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyiqa", None)  # `import pyiqa` raises ImportError
    suite = build_suite(["musiq", "maniqa"])
    for name in ("musiq", "maniqa"):
        assert suite[name].make is None
        assert "pyiqa" in suite[name].unavailable


def test_noref_reports_a_missing_checkpoint_and_never_downloads(monkeypatch, tmp_path):
    fake = types.ModuleType("pyiqa")
    fake.create_metric = lambda *a, **k: pytest.fail("must not create (and download) without a checkpoint")
    monkeypatch.setitem(sys.modules, "pyiqa", fake)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    suite = build_suite(["musiq"])
    assert suite["musiq"].make is None and "musiq_koniq_ckpt" in suite["musiq"].unavailable


def test_noref_metric_feeds_pyiqa_rgb_in_0_1_and_reads_its_score(monkeypatch, tmp_path):
    seen = {}

    def create_metric(name, device=None, pretrained_model_path=None, as_loss=False):
        seen.update(name=name, path=pretrained_model_path)
        return lambda x: (seen.update(x=x), x.mean(dim=(1, 2, 3)) * 100)[1]

    fake = types.ModuleType("pyiqa")
    fake.create_metric = create_metric
    monkeypatch.setitem(sys.modules, "pyiqa", fake)
    checkpoint = tmp_path / "maniqa.pt"
    checkpoint.write_bytes(b"x")
    suite = build_suite(["maniqa"], weights={"maniqa": str(checkpoint)})
    metric = suite["maniqa"].make()
    image = np.zeros((4, 6, 3), np.uint8)
    image[..., 0] = 255
    values = metric.update(Sample("a", image, None, np.zeros((4, 6), np.float32), image))
    assert seen["name"] == "maniqa" and seen["path"] == str(checkpoint)
    assert seen["x"].shape == (1, 3, 4, 6) and float(seen["x"][0, 0].min()) == 1.0
    assert values == {"maniqa": pytest.approx(100 / 3)}
    assert suite["maniqa"].needs_target is False

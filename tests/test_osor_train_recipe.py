"""OSOR training facts from the authors' code (Zhouqm-Git/osor): working sizes and incomplete-mask operators.

The references below are the authors' formulas typed in their own form (width first, their branches), not
erasekit's code."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from erasekit import masks as M
from erasekit.methods.osor import recipe


def authors_sdxl_train_size(width: int, height: int, target: int = 512) -> tuple[int, int]:
    # osor-sdxlinpainting/src/data/dataset.py, _calculate_target_size
    min_dim = min(width, height)
    if min_dim < target:
        scale = target / min_dim
        w, h = int(width * scale), int(height * scale)
    elif width < height:
        w, h = target, int(height * target / width)
    else:
        h, w = target, int(width * target / height)
    return (w + 15) // 16 * 16, (h + 15) // 16 * 16


def authors_sdxl_inference_size(width: int, height: int, resolution: int = 512) -> tuple[int, int]:
    # osor-sdxlinpainting/scripts/inference.py, _calculate_resize_dimensions
    if min(width, height) < resolution:
        return (width + 15) // 16 * 16, (height + 15) // 16 * 16
    if width < height:
        new_w, new_h = resolution, int(height * resolution / width)
    else:
        new_h, new_w = resolution, int(width * resolution / height)
    return (new_w + 15) // 16 * 16, (new_h + 15) // 16 * 16


def authors_flux_train_size(width: int, height: int) -> tuple[int, int]:
    # osor-fluxfill/src/data/dataset.py: native size, 16x alignment
    return (width + 15) // 16 * 16, (height + 15) // 16 * 16


def _sizes(n: int = 3000):
    rng = np.random.default_rng(0)
    fixed = [(300, 181), (181, 300), (512, 512), (511, 513), (1024, 768), (768, 1024), (17, 4000), (4000, 17)]
    return fixed + [tuple(int(v) for v in rng.integers(8, 3000, 2)) for _ in range(n)]


def test_sdxl_working_size_is_one_function_for_the_authors_training_and_inference_rules():
    assert recipe.sdxl_working_size(300, 181, upscale=True) == (848, 512)  # the 181×300 → 512×848
    for h, w in _sizes():
        tw, th = authors_sdxl_train_size(w, h)
        iw, ih = authors_sdxl_inference_size(w, h)
        assert recipe.sdxl_working_size(h, w, upscale=True) == (th, tw), (h, w)
        assert recipe.sdxl_working_size(h, w, upscale=False) == (ih, iw), (h, w)


def test_inference_rule_equals_the_engines_working_size():
    from erasekit.methods.osor.engine import sdxl_working_size

    for h, w in _sizes(500):
        assert recipe.sdxl_working_size(h, w, upscale=False) == sdxl_working_size(h, w), (h, w)


def test_flux_training_keeps_the_native_size_and_the_dataset_uses_the_recipe():
    from erasekit.data.transforms import FLUX_RESIZE, SDXL_RESIZE

    for h, w in _sizes(500):
        fw, fh = authors_flux_train_size(w, h)
        assert recipe.flux_working_size(h, w, max_side=None) == FLUX_RESIZE.size(h, w) == (fh, fw)
        tw, th = authors_sdxl_train_size(w, h)
        assert SDXL_RESIZE.size(h, w) == (th, tw)


def test_training_masks_keep_soft_values_nearest():
    from erasekit.data.transforms import resize_mask

    m = np.array([[0.0, 0.2], [0.6, 1.0]], np.float32)
    out = resize_mask(m, 4, 4)
    assert set(np.unique(out).tolist()) == {0.0, np.float32(0.2).item(), np.float32(0.6).item(), 1.0}
    np.testing.assert_array_equal(out[::2, ::2], m)


# ---- incomplete-mask operators (src/data/augment.py) ------------------------------------------------------
def _blob(seed: int, size: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.zeros((size, size), np.uint8)
    cx, cy = rng.integers(60, size - 60, 2)
    ax = rng.integers(20, 50, 2)
    cv2.ellipse(m, (int(cx), int(cy)), (int(ax[0]), int(ax[1])), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m.astype(np.float32)


def test_shrink_keeps_50_to_70_percent_of_the_area_from_the_inside():
    shares = []
    for seed in range(200):
        m = _blob(seed)
        out = M.shrink(m, np.random.default_rng(seed))
        assert np.all(out <= m)
        shares.append(out.sum() / m.sum())
        # innermost: every kept pixel is at least as deep as every removed one
        dist = cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 5)
        removed = dist[(m > 0) & (out == 0)]
        assert dist[out > 0].min() > removed.max()
        # int(area·U(0.5, 0.7)) pixels, less at most the pixels tied at the cut's distance (the authors keep
        # only pixels strictly deeper than the k-th smallest distance)
        ties = np.count_nonzero(removed == removed.max())
        assert 0.5 * m.sum() - ties - 1 <= out.sum() <= 0.7 * m.sum(), seed
    shares = np.array(shares)
    assert shares.min() > 0.48 and shares.max() <= 0.7
    assert abs(shares.mean() - 0.6) < 0.015


@pytest.mark.parametrize("backbone,limit", [("sdxl", 35), ("flux", 50)])
def test_shift_stays_within_the_authors_pixel_limit(backbone, limit):
    ops = recipe.MASK_OPERATORS[backbone]
    m = np.zeros((300, 300), np.float32)
    m[120:170, 110:180] = 1
    offsets = []
    for seed in range(400):
        out = M.perturb_mask(m, "shift", np.random.default_rng(seed), settings=ops)
        ys, xs = np.nonzero(out)
        dy, dx = int(ys.min()) - 120, int(xs.min()) - 110
        assert abs(dy) <= limit and abs(dx) <= limit
        assert out.sum() == m.sum()  # inside the frame: a pure translation
        offsets += [dx, dy]
    assert min(offsets) == -limit and max(offsets) == limit  # both ends reachable


@pytest.mark.parametrize("backbone", ["sdxl", "flux"])
def test_holes_keep_at_least_40_percent_and_expand_is_a_dilated_hull(backbone):
    ops = recipe.MASK_OPERATORS[backbone]
    kept, grown = [], []
    for seed in range(150):
        m = _blob(seed, 256)
        holes = M.perturb_mask(m, "holes", np.random.default_rng(seed), settings=ops)
        assert np.all(holes <= m) and holes.sum() >= 0.4 * m.sum()
        kept.append(holes.sum() / m.sum())
        exp = M.perturb_mask(m, "expand", np.random.default_rng(seed), settings=ops)
        assert np.all(exp >= m)
        # the growth beyond the (convex) ellipse is between one smallest-kernel and three largest-kernel radii
        dist_out = cv2.distanceTransform((m == 0).astype(np.uint8), cv2.DIST_C, 3)
        reach = dist_out[exp > 0].max()
        assert min(ops.expand_kernels) // 2 <= reach <= 3 * (max(ops.expand_kernels) // 2) + 1
        grown.append(exp.sum() / m.sum())
    assert min(kept) < 1.0  # holes are punched
    assert np.mean(grown) > 1.0


def test_operators_binarise_above_128():
    m = np.zeros((64, 64), np.float32)
    m[10:50, 10:50] = 129 / 255
    m[20:30, 20:30] = 128 / 255  # not above 128: outside the binarised mask
    out = M.perturb_mask(m, "shift", np.random.default_rng(0), settings=recipe.MASK_OPERATORS["sdxl"])
    assert set(np.unique(out).tolist()) <= {0.0, 1.0}
    assert out.sum() <= 40 * 40 - 100


def test_object_core_falls_back_to_shrink_per_item():
    from erasekit.methods.osor.train.conditioning import IncompleteMaskSampler

    e = _blob(3)
    core = np.zeros_like(e)
    core[np.nonzero(e)[0][0] + 5, np.nonzero(e)[1][0]] = 1
    sampler = IncompleteMaskSampler(probabilities={"object_core": 1.0}, seed=0)
    mode, (a, b) = sampler.condition([e, e], [core, None])
    assert mode == "object_core"
    np.testing.assert_array_equal(a, core)  # this item has its core mask
    assert np.all(b <= e) and 0.49 < b.sum() / e.sum() <= 0.7  # this one alone is shrunk

"""Mask algebra: properties (hypothesis) and exact values against hand computations and reference
libraries."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from erasekit import masks as M
from erasekit.types import InvalidInputError

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def binary_masks(min_side: int = 4, max_side: int = 24):
    return st.tuples(st.integers(min_side, max_side), st.integers(min_side, max_side)).flatmap(
        lambda hw: arrays(np.bool_, hw).map(lambda a: a.astype(np.float32))
    )


def soft_masks(min_side: int = 4, max_side: int = 24):
    return st.tuples(st.integers(min_side, max_side), st.integers(min_side, max_side)).flatmap(
        lambda hw: arrays(np.float32, hw, elements=st.floats(0, 1, width=32))
    )


def blob_masks(min_side: int = 12, max_side: int = 40):
    """Non-empty masks made of a few rectangles (realistic object-like masks for perturbations)."""

    @st.composite
    def build(draw):
        h, w = draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side))
        m = np.zeros((h, w), np.float32)
        for _ in range(draw(st.integers(1, 3))):
            y0, x0 = draw(st.integers(0, h - 2)), draw(st.integers(0, w - 2))
            y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
            m[y0:y1, x0:x1] = 1.0
        return m

    return build()


def assert_mask_contract(out: np.ndarray, shape: tuple[int, int]) -> None:
    assert out.shape == shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


# ---- basics ------------------------------------------------------------------------------------------------
@FAST
@given(soft_masks(), st.integers(1, 4))
def test_dilate_contains_mask_contains_erode(mask, r):
    assert np.all(M.dilate(mask, r) >= mask)
    assert np.all(M.erode(mask, r) <= mask)
    assert_mask_contract(M.dilate(mask, r), mask.shape)


@FAST
@given(soft_masks())
def test_dilate_erode_by_zero_are_identity(mask):
    assert np.array_equal(M.dilate(mask, 0), mask)
    assert np.array_equal(M.erode(mask, 0), mask)
    assert M.dilate(mask, 0) is not mask


@FAST
@given(binary_masks(8, 28), st.integers(1, 3))
def test_closing_contains_mask_away_from_border(mask, r):
    # erode(dilate(m)) ⊇ m for pixels at least r from the border (erode treats outside-the-image as unmasked).
    closed = M.erode(M.dilate(mask, r), r)
    inner = (slice(r, -r), slice(r, -r))
    assert np.all(closed[inner] >= mask[inner])


@FAST
@given(binary_masks(), st.integers(1, 4))
def test_opening_is_contained_in_mask(mask, r):
    assert np.all(M.dilate(M.erode(mask, r), r) <= mask)


@FAST
@given(binary_masks(3, 24), st.integers(1, 5))
def test_dilate_is_exactly_euclidean_distance(mask, r):
    from scipy.ndimage import distance_transform_edt

    if not mask.any():
        assert not M.dilate(mask, r).any()
        return
    within = distance_transform_edt(mask == 0) <= r  # exact Euclidean distance to the nearest mask pixel
    np.testing.assert_array_equal(M.dilate(mask, r), within.astype(np.float32))


@FAST
@given(binary_masks(6, 30), st.integers(1, 4))
def test_feather_inward_never_exceeds_mask_and_is_one_deep_inside(mask, px):
    f = M.feather(mask, px, inward=True)
    assert_mask_contract(f, mask.shape)
    assert np.all(f <= mask)
    deep = M.erode(mask, px + 1) > 0
    # erode() also eats from the image border, which only makes `deep` smaller: the claim still holds.
    assert np.all(f[deep] == 1.0)


def test_feather_outward_reaches_outside_and_zero_is_hard():
    m = np.zeros((20, 20), np.float32)
    m[5:15, 5:15] = 0.7
    assert np.array_equal(M.feather(m, 0), M.binarize(m, 0.0))
    out = M.feather(m, 4, inward=False)
    assert out[4, 10] > 0 and out[0, 0] < out[4, 10]


def test_binarize_threshold():
    m = np.array([[0.0, 0.2, 0.5, 0.9]], np.float32)
    assert M.binarize(m).tolist() == [[0, 0, 0, 1]]
    assert M.binarize(m, 0.0).tolist() == [[0, 1, 1, 1]]


# ---- components and boxes ----------------------------------------------------------------------------------
@FAST
@given(binary_masks(4, 30))
def test_component_boxes_cover_every_pixel_and_merge_is_disjoint(mask):
    boxes = M.component_boxes(mask)
    covered = np.zeros(mask.shape, bool)
    for b in boxes:
        covered[b.slices] = True
    assert np.all(covered[mask > 0])
    merged = M.merge_overlapping([b.expand(2, mask.shape) for b in boxes])
    cover2 = np.zeros(mask.shape, int)
    for b in merged:
        cover2[b.slices] += 1
    assert np.all(cover2[mask > 0] == 1)  # every pixel in exactly one merged box
    for i, a in enumerate(merged):
        for b in merged[i + 1 :]:
            assert not a.intersects(b)


def test_components_count_and_boxes_exact():
    m = np.zeros((10, 12), np.float32)
    m[1:3, 1:4] = 1
    m[6:9, 7:11] = 1
    m[3, 4] = 1  # touches the first blob diagonally: 8-connected
    labels, n = M.connected_components(m)
    assert n == 2 and labels.dtype == np.int32
    assert M.component_boxes(m) == [M.Box(1, 1, 4, 5), M.Box(6, 7, 9, 11)]  # equal areas: top first
    assert M.connected_components(m, connectivity=1)[1] == 3
    assert M.Box(0, 0, 4, 4).iou(M.Box(2, 2, 6, 6)) == pytest.approx(4 / 28)
    assert M.Box(5, 5, 8, 8).expand(10, (10, 12)) == M.Box(0, 0, 10, 12)


# ---- grids -------------------------------------------------------------------------------------------------
def exact_area_reference(mask: np.ndarray, gh: int, gw: int) -> np.ndarray:
    """Occupancy from first principles: overlap length of each cell with each pixel, separably, in float64."""

    def weights(n: int, g: int) -> np.ndarray:
        a = np.zeros((g, n))
        for i in range(g):
            lo, hi = i * n / g, (i + 1) * n / g
            for p in range(n):
                a[i, p] = max(0.0, min(hi, p + 1) - max(lo, p)) / (n / g)
        return a

    return weights(mask.shape[0], gh) @ mask.astype(np.float64) @ weights(mask.shape[1], gw).T


def test_occupancy_grid_hand_computed_non_divisible():
    # 5×5 mask to a 2×2 grid: each cell is 2.5×2.5 pixels (area 6.25).
    m = np.zeros((5, 5), np.float32)
    m[0, 0] = 1  # fully inside cell (0, 0): 1 / 6.25
    m[2, 2] = 1  # the centre pixel is split in four quarters: 0.25 / 6.25 to each cell
    expected = np.array([[1.25, 0.25], [0.25, 0.25]]) / 6.25
    np.testing.assert_allclose(M.occupancy_grid(m, (2, 2)), expected, atol=1e-6)
    # 3×4 mask with the left column set, to a 2×3 grid: cells 1.5 rows × 4/3 columns.
    m2 = np.zeros((3, 4), np.float32)
    m2[:, 0] = 1
    expected2 = np.array([[0.75, 0.0, 0.0], [0.75, 0.0, 0.0]])
    np.testing.assert_allclose(M.occupancy_grid(m2, (2, 3)), expected2, atol=1e-6)


@FAST
@given(soft_masks(4, 30), st.integers(1, 4), st.integers(1, 4))
def test_occupancy_grid_equals_exact_area_average(mask, dh, dw):
    gh, gw = max(1, mask.shape[0] // dh), max(1, mask.shape[1] // dw)
    out = M.occupancy_grid(mask, (gh, gw))
    assert_mask_contract(out, (gh, gw))
    np.testing.assert_allclose(out, exact_area_reference(mask, gh, gw), atol=1e-5)


@FAST
@given(binary_masks(2, 12), st.integers(1, 4))
def test_occupancy_grid_preserves_area_when_size_divides(small, k):
    mask = np.kron(small, np.ones((k, k), np.float32))  # size divisible by the small grid
    big = np.pad(mask, ((0, 0), (0, 0)))
    grid = M.occupancy_grid(big, small.shape)
    assert float(grid.mean()) == pytest.approx(float(big.mean()), abs=1e-6)
    np.testing.assert_array_equal(grid, small)  # a cell fully in or fully out is exactly 0 or 1


def test_occupancy_grid_rejects_upsampling():
    with pytest.raises(ValueError):
        M.occupancy_grid(np.zeros((4, 4), np.float32), (8, 2))


@FAST
@given(soft_masks(4, 30), st.integers(1, 4), st.integers(1, 4))
def test_nearest_grid_matches_torch_nearest(mask, dh, dw):
    gh, gw = max(1, mask.shape[0] // dh), max(1, mask.shape[1] // dw)
    ref = torch.nn.functional.interpolate(torch.from_numpy(mask)[None, None], size=(gh, gw), mode="nearest")
    np.testing.assert_array_equal(M.nearest_grid(mask, (gh, gw)), ref[0, 0].numpy())


def test_gaussian_grid_is_blurred_nearest_grid():
    from scipy.ndimage import gaussian_filter

    m = np.zeros((64, 64), np.float32)
    m[10:40, 20:50] = 1
    hm = M.nearest_grid(m, (8, 8))
    assert set(np.unique(hm)) == {0.0, 1.0}
    sm = M.gaussian_grid(m, (8, 8), sigma=1.0)
    # SciPy's 'nearest' border repeats the edge cell; OpenCV's float kernel spans 4 sigma, like truncate=4.
    np.testing.assert_allclose(sm, gaussian_filter(hm, 1.0, mode="nearest", truncate=4.0), atol=1e-6)
    hm16 = M.nearest_grid(m, (16, 16))
    np.testing.assert_allclose(
        M.gaussian_grid(m, (16, 16), sigma=2.5),
        gaussian_filter(hm16, 2.5, mode="nearest", truncate=4.0),
        atol=1e-6,
    )
    assert np.array_equal(M.gaussian_grid(m, (8, 8), sigma=0), hm)
    assert 0 < sm[0, 2] < 1  # boundary cells become soft
    with pytest.raises(ValueError):
        M.gaussian_grid(m, (8, 8), sigma=-1)


def test_grid_variants_differ_on_boundary_cells_as_in_fig4():
    m = np.zeros((64, 64), np.float32)
    m[:24, :24] = 1  # a boundary at 24 px: cells of 16 px at the 4×4 grid are half covered
    og, hm = M.occupancy_grid(m, (4, 4)), M.nearest_grid(m, (4, 4))
    assert og[1, 1] == pytest.approx(0.25) and og[0, 1] == pytest.approx(0.5) and og[0, 0] == 1
    assert hm[1, 1] == 1.0  # nearest is over-confident on the partially covered cell


def test_max_pool_to_grid_strict_and_ceil():
    m = np.zeros((10, 13), np.float32)
    m[9, 12] = 1
    with pytest.raises(ValueError):
        M.max_pool_to_grid(m, 4)
    ceil = M.max_pool_to_grid_ceil(m, 4)
    assert ceil.shape == (3, 4) and ceil[2, 3] == 1 and ceil.sum() == 1
    even = np.zeros((16, 8), np.float32)
    even[5, 3] = 0.5
    np.testing.assert_array_equal(M.max_pool_to_grid(even, 8), M.max_pool_to_grid_ceil(even, 8))
    assert M.max_pool_to_grid(even, 8).tolist() == [[0.5], [0.0]]


# ---- drawing -----------------------------------------------------------------------------------------------
@FAST
@given(st.lists(st.tuples(st.integers(0, 39), st.integers(0, 29)), min_size=1, max_size=5), st.integers(0, 4))
def test_stroke_contains_its_points_and_stays_near_the_line(points, radius):
    mask = M.stroke_to_mask(points, radius, (30, 40))
    assert_mask_contract(mask, (30, 40))
    for x, y in points:
        assert mask[y, x] == 1
    # Exact distance of every drawn pixel to the polyline (segments in continuous coordinates).
    ys, xs = np.nonzero(mask)
    q = np.stack([xs, ys], 1).astype(float)
    pts = np.asarray(points, float)
    dist = np.linalg.norm(q - pts[0], axis=1)
    for a, b in itertools.pairwise(pts):
        ab = b - a
        t = np.clip(((q - a) @ ab) / max(float(ab @ ab), 1e-12), 0, 1)
        dist = np.minimum(dist, np.linalg.norm(q - (a + t[:, None] * ab), axis=1))
    assert dist.max() <= radius + 0.75  # within the brush, up to the one-pixel line's rasterisation error


def test_stroke_clipping_and_errors():
    m = stroke = M.stroke_to_mask([(-10, 5), (50, 5)], 2, (10, 20))
    assert stroke[3:8, :].all() and not m[0].any()
    with pytest.raises(InvalidInputError):
        M.stroke_to_mask([], 2, (10, 10))
    with pytest.raises(InvalidInputError):
        M.stroke_to_mask([(1, 1)], -1, (10, 10))
    with pytest.raises(InvalidInputError):
        M.stroke_to_mask([(1, float("nan"))], 1, (10, 10))


def test_polygon_union_and_exact_fill():
    square = [(2, 2), (7, 2), (7, 7), (2, 7)]
    m = M.polygon_to_mask(square, (10, 10))
    expected = np.zeros((10, 10), np.float32)
    expected[2:8, 2:8] = 1
    np.testing.assert_array_equal(m, expected)
    # Overlapping polygons give their union (no parity holes).
    other = [(5, 5), (9, 5), (9, 9), (5, 9)]
    both = M.polygon_to_mask([square, other], (10, 10))
    assert both[6, 6] == 1 and both[9, 9] == 1 and both.sum() == 36 + 25 - 9
    with pytest.raises(InvalidInputError):
        M.polygon_to_mask([(0, 0), (1, 1)], (5, 5))


# ---- perturbations (the authors' operators; statistics in tests/test_osor_train_recipe.py) -----------------
@FAST
@given(blob_masks(), st.integers(0, 2**32 - 1), st.sampled_from(["shrink", "expand", "holes", "shift"]))
def test_perturbations_keep_the_mask_contract(mask, seed, mode):
    out = M.perturb_mask(mask, mode, np.random.default_rng(seed))
    assert_mask_contract(out, mask.shape)
    assert set(np.unique(out).tolist()) <= {0.0, 1.0}  # binarised at > 128, as the authors' operators
    if mode == "shrink":
        assert np.all(out <= mask) and out.sum() < mask.sum()
    elif mode == "expand":
        assert np.all(out >= mask)
    elif mode == "holes":
        assert np.all(out <= mask) and out.sum() >= 0.4 * mask.sum()


@FAST
@given(blob_masks(), st.integers(0, 2**32 - 1))
def test_shift_preserves_area_unless_clipped(mask, seed):
    out = M.shift(mask, np.random.default_rng(seed))
    if out.sum() == mask.sum() and out.any():
        # Same content displaced by one whole-pixel offset: find it and verify exactly.
        (y0, x0), (y1, x1) = np.argwhere(mask).min(0), np.argwhere(out).min(0)
        assert np.array_equal(np.roll(mask, (y1 - y0, x1 - x0), axis=(0, 1)), out)
    else:
        assert out.sum() < mask.sum()  # only clipping can change the area


def test_shift_exact_offset_inside_the_frame():
    m = np.zeros((100, 100), np.float32)
    m[40:60, 40:60] = 1.0
    out = M.shift(m, np.random.default_rng(3))
    assert out.sum() == m.sum() and not np.array_equal(out, m)
    assert set(np.unique(out).tolist()) == {0.0, 1.0}  # whole pixels, no interpolation


def test_soft_masks_are_binarised_above_128():
    m = np.zeros((40, 40), np.float32)
    m[10:30, 10:30] = 0.6
    rng = np.random.default_rng(0)
    for mode in ("shrink", "expand", "holes", "shift"):
        out = M.perturb_mask(m, mode, rng)
        assert set(np.unique(out).tolist()) <= {0.0, 1.0}


def test_perturbations_are_seeded_and_empty_masks_pass_through():
    m = np.zeros((32, 32), np.float32)
    m[8:24, 4:20] = 1
    for mode in ("shrink", "expand", "holes", "shift"):
        a = M.perturb_mask(m, mode, np.random.default_rng(7))
        b = M.perturb_mask(m, mode, np.random.default_rng(7))
        assert np.array_equal(a, b)
        empty = np.zeros((8, 8), np.float32)
        assert np.array_equal(M.perturb_mask(empty, mode, np.random.default_rng(0)), empty)


def test_object_core_mode_and_errors():
    m = np.zeros((16, 16), np.float32)
    m[2:14, 2:14] = 1
    core = np.zeros_like(m)
    core[5:9, 5:9] = 1
    assert np.array_equal(M.perturb_mask(m, "object_core", np.random.default_rng(0), object_core=core), core)
    with pytest.raises(ValueError, match="object-core"):
        M.perturb_mask(m, "object_core", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown perturbation"):
        M.perturb_mask(m, "rotate", np.random.default_rng(0))


def test_sample_perturbation_mode_follows_the_probabilities():
    assert sum(M.PERTURBATION_PROBABILITIES.values()) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    n = 5000
    draws = [M.sample_perturbation_mode(rng) for _ in range(n)]
    for mode, p in M.PERTURBATION_PROBABILITIES.items():
        assert draws.count(mode) / n == pytest.approx(p, abs=0.03)
    no_core = [M.sample_perturbation_mode(rng, has_object_core=False) for _ in range(2000)]
    assert "object_core" not in no_core
    assert no_core.count("shrink") / 2000 == pytest.approx(0.35 / 0.7, abs=0.03)


@pytest.mark.parametrize("corner", [(0, 0), (0, 11), (11, 0), (11, 11), (0, 5), (5, 11)])
def test_shift_never_empties_a_tiny_mask_at_the_border(corner):
    """Issue 19: a 1-2 px mask touching the border was pushed out of the image (an empty training mask)."""
    for seed in range(50):
        for size in (1, 2):
            m = np.zeros((12, 12), np.float32)
            y, x = corner
            m[max(0, y - size + 1) : y + 1, max(0, x - size + 1) : x + 1] = 1
            assert M.perturb_mask(m, "shift", np.random.default_rng(seed)).sum() > 0

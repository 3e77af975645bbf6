"""High-resolution strategies: constraints honoured, output at input size, crops only around components,
paste-back exactness, strategy parsing."""

from __future__ import annotations

import numpy as np
import pytest

from erasekit import masks as M
from erasekit.hd import HDStrategy, SizeConstraints, paste_back, run_strategy
from erasekit.types import InvalidInputError


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


class Recorder:
    """An inpaint fn that checks the constraints it is given and paints the mask a fixed colour."""

    def __init__(self, c: SizeConstraints, alpha: bool = False):
        self.c, self.alpha, self.calls = c, alpha, []

    def __call__(self, image: np.ndarray, mask: np.ndarray):
        h, w = mask.shape
        assert image.shape == (h, w, 3) and image.dtype == np.uint8 and mask.dtype == np.float32
        assert h % self.c.size_multiple == 0 and w % self.c.size_multiple == 0
        assert min(h, w) >= self.c.min_side
        if self.c.max_side:
            assert max(h, w) <= self.c.max_side
        assert set(np.unique(mask)) <= {0.0, 1.0}
        self.calls.append((image.copy(), mask.copy()))
        out = image.copy()
        out[mask > 0] = (255, 0, 255)
        return out, (mask.copy() if self.alpha else None)


CONSTRAINTS = [
    SizeConstraints(),
    SizeConstraints(size_multiple=8),
    SizeConstraints(size_multiple=64, min_side=512),
    SizeConstraints(size_multiple=16, max_side=200),
    SizeConstraints(size_multiple=64, max_side=1000),
]


@pytest.mark.parametrize("name", ["original", "resize", "crop"])
@pytest.mark.parametrize(
    "c", CONSTRAINTS, ids=lambda c: f"m{c.size_multiple}-min{c.min_side}-max{c.max_side}"
)
@pytest.mark.parametrize("hw", [(97, 131), (700, 1500)])
def test_every_strategy_honours_constraints_and_returns_input_size(name, c, hw):
    h, w = hw
    image = photo(h, w)
    mask = np.zeros((h, w), np.float32)
    mask[h // 3 : h // 3 + 20, w // 4 : w // 4 + 30] = 1
    mask[h - 15 : h - 5, w - 40 : w - 10] = 1
    fn = Recorder(c, alpha=True)
    strategy = HDStrategy(name=name, resize_limit=600, crop_trigger=512, crop_margin=16)
    out, alpha = run_strategy(image, mask, fn, strategy, c)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert alpha.shape == mask.shape and alpha.dtype == np.float32
    assert 0 <= alpha.min() and alpha.max() <= 1
    assert fn.calls
    # The fill reached every masked pixel (after any down/up-scaling the painted colour dominates inside).
    assert (out[mask > 0].astype(int) - (255, 0, 255)).__abs__().mean() < 60


def test_max_side_with_multiple_never_pads_past_max_side():
    # 1000 is not a multiple of 64: the largest usable side is 960, padding must not reach 1024.
    c = SizeConstraints(size_multiple=64, max_side=1000)
    fn = Recorder(c)
    mask = np.zeros((1000, 1000), np.float32)
    mask[10:20, 10:20] = 1
    run_strategy(photo(1000, 1000), mask, fn, HDStrategy("original"), c)
    assert fn.calls[0][1].shape == (960, 960)


def test_original_pads_to_multiple_and_min_side_then_crops_back():
    c = SizeConstraints(size_multiple=32, min_side=64)
    fn = Recorder(c)
    image = photo(50, 70)
    mask = np.zeros((50, 70), np.float32)
    mask[10:20, 10:20] = 1
    out, alpha = run_strategy(image, mask, fn, HDStrategy("original"), c)
    seen_image, seen_mask = fn.calls[0]
    assert seen_mask.shape == (64, 96)
    assert np.array_equal(seen_image[:50, :70], image)  # the real pixels are not resampled
    assert not seen_mask[50:].any() and not seen_mask[:, 70:].any()  # padding is never masked
    assert alpha is None
    assert np.array_equal(out[mask == 0], image[mask == 0])
    assert (out[mask > 0] == (255, 0, 255)).all()


def test_resize_scales_long_side_to_the_limit_with_a_conservative_mask():
    c = SizeConstraints()
    fn = Recorder(c)
    image = photo(400, 1000)
    mask = np.zeros((400, 1000), np.float32)
    mask[200, 500] = 1  # one pixel must survive the 4× downscale
    run_strategy(image, mask, fn, HDStrategy("resize", resize_limit=250), c)
    _, seen_mask = fn.calls[0]
    assert seen_mask.shape == (100, 250)
    assert seen_mask.sum() >= 1
    # Small images are not upscaled.
    fn2 = Recorder(c)
    run_strategy(
        photo(40, 60),
        np.pad(np.ones((4, 4), np.float32), ((0, 36), (0, 56))),
        fn2,
        HDStrategy("resize", resize_limit=250),
        c,
    )
    assert fn2.calls[0][1].shape == (40, 60)


def test_crop_calls_fn_once_per_merged_component_with_margin():
    c = SizeConstraints()
    fn = Recorder(c)
    h, w = 1500, 2000
    image = photo(h, w)
    mask = np.zeros((h, w), np.float32)
    mask[100:150, 200:260] = 1  # A
    mask[100:140, 300:320] = 1  # B: 40 px from A, merged with it at margin 32
    mask[1200:1230, 1500:1580] = 1  # C: far away
    margin = 32
    out, _ = run_strategy(image, mask, fn, HDStrategy("crop", crop_margin=margin, crop_trigger=1280), c)
    shapes = sorted(call[1].shape for call in fn.calls)
    assert len(fn.calls) == 2
    assert shapes == sorted(
        [(150 - 100 + 2 * margin, 320 - 200 + 2 * margin), (30 + 2 * margin, 80 + 2 * margin)]
    )
    # Each crop is the image itself around the component (no resampling), mask included.
    expected = {
        M.Box(100 - margin, 200 - margin, 150 + margin, 320 + margin),
        M.Box(1200 - margin, 1500 - margin, 1230 + margin, 1580 + margin),
    }
    for (seen_image, seen_mask), box in zip(
        sorted(fn.calls, key=lambda c_: c_[1].shape), sorted(expected, key=lambda b: (b.height, b.width))
    ):
        assert np.array_equal(seen_image, image[box.slices])
        assert np.array_equal(seen_mask, mask[box.slices])
    # Outside the crops, the raw output is the input.
    touched = np.zeros((h, w), bool)
    for box in expected:
        touched[box.slices] = True
    assert np.array_equal(out[~touched], image[~touched])


def test_crop_margin_is_clipped_at_the_border_and_small_images_go_whole():
    c = SizeConstraints()
    fn = Recorder(c)
    mask = np.zeros((1400, 1400), np.float32)
    mask[0:10, 1390:1400] = 1
    run_strategy(photo(1400, 1400), mask, fn, HDStrategy("crop", crop_margin=50), c)
    assert fn.calls[0][1].shape == (60, 60)
    fn2 = Recorder(c)
    run_strategy(
        photo(300, 400), np.pad(np.ones((5, 5), np.float32), ((0, 295), (0, 395))), fn2, HDStrategy("crop"), c
    )
    assert fn2.calls[0][1].shape == (300, 400)


def test_crop_without_mask_components_processes_the_whole_image():
    c = SizeConstraints(max_side=512)
    fn = Recorder(c)
    out, _ = run_strategy(photo(1500, 1600), np.zeros((1500, 1600), np.float32), fn, HDStrategy("crop"), c)
    assert len(fn.calls) == 1 and fn.calls[0][1].shape == (480, 512) and out.shape == (1500, 1600, 3)


def test_crop_alpha_is_placed_where_its_crop_was():
    c = SizeConstraints(size_multiple=8)
    fn = Recorder(c, alpha=True)
    mask = np.zeros((1400, 1500), np.float32)
    mask[300:333, 400:437] = 1
    _, alpha = run_strategy(photo(1400, 1500), mask, fn, HDStrategy("crop", crop_margin=20), c)
    assert np.array_equal(alpha, mask)


# ---- paste_back --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("feather", [0, 3])
def test_paste_back_is_bit_identical_outside_the_region(feather):
    original, generated = photo(40, 50, 1), photo(40, 50, 2)
    region = np.zeros((40, 50), np.float32)
    region[10:30, 5:25] = 1
    region[2:6, 40:48] = 0.4  # soft region
    out = paste_back(original, generated, region, feather=feather)
    assert out.dtype == np.uint8
    assert np.array_equal(out[region == 0], original[region == 0])
    if feather == 0:
        assert np.array_equal(out[region == 1], generated[region == 1])
        expected = np.rint(original[2:6, 40:48] * 0.6 + generated[2:6, 40:48].astype(np.float32) * 0.4)
        assert np.abs(out[2:6, 40:48].astype(int) - expected).max() <= 1


def test_feather_only_lowers_weights_inside_the_region():
    original = np.zeros((40, 40, 3), np.uint8)
    generated = np.full((40, 40, 3), 200, np.uint8)
    region = np.zeros((40, 40), np.float32)
    region[5:35, 5:35] = 1
    hard = paste_back(original, generated, region)
    soft = paste_back(original, generated, region, feather=5)
    assert np.array_equal(soft[region == 0], original[region == 0])
    assert np.all(soft <= hard)  # weights only go down
    assert soft[5, 20, 0] < 200 and soft[5, 20, 0] > 0  # the rim is blended
    assert np.all(soft[12:28, 12:28] == 200)  # deep inside stays fully generated
    expected_weight = M.feather(region, 5)
    assert np.abs(soft[..., 0].astype(float) - np.rint(expected_weight * 200)).max() <= 1


def test_paste_back_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        paste_back(photo(10, 10), photo(10, 12), np.ones((10, 10), np.float32))


# ---- HDStrategy.parse --------------------------------------------------------------------------------------
def test_parse_forms():
    assert HDStrategy.parse(None) == HDStrategy()
    s = HDStrategy("resize", resize_limit=900)
    assert HDStrategy.parse(s) is s
    assert HDStrategy.parse("original").name == "original"
    assert HDStrategy.parse(" Crop ").name == "crop"
    assert HDStrategy.parse("resize:1024") == HDStrategy("resize", resize_limit=1024)
    assert HDStrategy.parse("crop:64") == HDStrategy("crop", crop_margin=64)
    assert HDStrategy.parse({"name": "crop", "feather": 4}) == HDStrategy("crop", feather=4)


@pytest.mark.parametrize(
    "bad",
    ["tile", "resize:big", "original:5", "resize:4", "crop:-1", "", {"name": "crop", "margin": 3},
     {"name": "crop", "feather": "x"}, {"name": "resize", "resize_limit": 1.5}],
)
def test_parse_errors_are_invalid_input(bad):
    with pytest.raises(InvalidInputError):
        HDStrategy.parse(bad)


def _paste_reference(original, generated, region, feather):
    """paste_back written naively over the whole image (the bounding-box version must equal it exactly)."""
    weight = np.clip(region.astype(np.float32), 0, 1)
    if feather:
        weight = np.minimum(weight, M.feather(region, feather, inward=True))
    blended = (
        original.astype(np.float32) * (1 - weight[..., None])
        + generated.astype(np.float32) * weight[..., None]
    )
    return np.where((weight > 0)[..., None], np.clip(np.rint(blended), 0, 255).astype(np.uint8), original)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("feather", [0, 2, 6])
def test_paste_back_equals_the_whole_image_reference(seed, feather):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(8, 60, 2)
    original, generated = photo(h, w, seed), photo(h, w, seed + 100)
    region = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(0, 3)):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        region[y0 : y0 + rng.integers(1, h), x0 : x0 + rng.integers(1, w)] = rng.choice([1.0, 0.5, 0.25])
    assert np.array_equal(
        paste_back(original, generated, region, feather),
        _paste_reference(original, generated, region, feather),
    )

"""Refiners: the contract, the registry, ``poisson`` and ``color-match``, and how the remover base runs them.

References are independent of the implementation: ``cv2.seamlessClone`` called directly, scikit-image's
dilation and L*a*b* conversion, and :func:`erasekit.hd.paste_back` for what the base must produce.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np
import pytest
from skimage import color, data
from skimage.morphology import dilation, disk

import erasekit
from erasekit import masks as M
from erasekit.hd import HDStrategy, paste_back
from erasekit.methods.base import Remover
from erasekit.refiners import (
    Refiner,
    RefinerSpec,
    get_refiner,
    load_refiner,
    parse_refine,
    refiner_names,
    register_refiner,
)
from erasekit.refiners import registry as refiner_registry
from erasekit.refiners.color_match import ColorMatchRefiner
from erasekit.refiners.poisson import PoissonRefiner
from erasekit.types import InvalidInputError, RemovalRequest

BUILT_IN = ("poisson", "color-match")
CHAINS = ("poisson", "color-match", "color-match,poisson", "poisson,color-match")


def _photo(name: str, step: int) -> np.ndarray:
    return np.ascontiguousarray(getattr(data, name)()[::step, ::step])


ASTRONAUT = _photo("astronaut", 4)  # 128×128
CHELSEA = _photo("chelsea", 3)  # 100×151


def _ellipse(shape, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return ((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) <= 1).astype(np.float32)


def _drift(image: np.ndarray, offset=(25, -15, 10)) -> np.ndarray:
    """What a diffusion method's output looks like next to its input: the whole crop shifted in colour."""
    return np.clip(image.astype(int) + np.asarray(offset), 0, 255).astype(np.uint8)


def _clone_reference(image, output, inside: np.ndarray) -> np.ndarray:
    """``cv2.seamlessClone`` called directly on the full image, with the clone mask the refiner documents: the
    region grown by 4 pixels with a square (scikit-image's dilation, not OpenCV's), centred on its box."""
    clone = dilation(inside, np.ones((9, 9), bool)).astype(np.uint8) * 255
    x, y, w, h = cv2.boundingRect(clone)
    return cv2.seamlessClone(output, image, clone, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)


def _seam_step(result: np.ndarray, inside: np.ndarray) -> float:
    """Mean absolute colour step between each region pixel and its 4-neighbours outside the region."""
    steps = []
    for axis in (0, 1):
        for shift in (1, -1):
            neighbour = np.roll(result.astype(float), shift, axis=axis)
            crossing = inside & ~np.roll(inside, shift, axis=axis)
            steps.append(np.abs(result.astype(float) - neighbour)[crossing])
    return float(np.concatenate(steps).mean())


class ShiftingRemover(Remover):
    """A test method whose output is its whole input colour-shifted, as a diffusion crop drifts."""

    name: ClassVar[str] = "shifting"

    def inpaint(self, image, mask, request):
        return _drift(image), None


class Recorder(Refiner):
    """Records what it was given and marks its output, to check order and what the base passes."""

    name = "recorder"

    def __init__(self, log: list, tag: int):
        self.log, self.tag = log, tag

    def refine(self, image, output, region):
        self.log.append((self.tag, image.shape, output.copy(), region.copy()))
        marked = output.copy()
        marked[region > 0] = self.tag
        return marked


# ------------------------------------------------------------------------------------------------------------
# The contract, via the remover base
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("refine", CHAINS)
@pytest.mark.parametrize("method", ["telea", "patchmatch"])
def test_pixels_outside_the_paste_region_are_unchanged_with_every_refiner(method, refine):
    image = ASTRONAUT
    h, w = image.shape[:2]
    border = np.zeros((h, w), np.float32)
    border[h - 14:, :20] = 1  # touches two image edges
    masks = {"ellipse": _ellipse((h, w), 60, 50, 20, 28), "border": border,
             "two": np.maximum(_ellipse((h, w), 20, 20, 8, 8), _ellipse((h, w), 100, 100, 10, 12))}
    for name, mask in masks.items():
        result = erasekit.load_remover(method)(RemovalRequest(image, mask, seed=0, dilate=2, refine=refine))
        region = M.dilate(mask, 2) > 0
        np.testing.assert_array_equal(result.image[~region], image[~region], err_msg=name)
        assert (result.image[region] != image[region]).any(axis=-1).mean() > 0.5, name


def test_no_refiner_is_the_method_alone_and_records_an_empty_chain():
    mask = _ellipse(ASTRONAUT.shape[:2], 60, 50, 20, 28)
    remover = erasekit.load_remover("telea")
    plain = remover(RemovalRequest(ASTRONAUT, mask))
    for refine in (None, "", []):
        again = remover(RemovalRequest(ASTRONAUT, mask, refine=refine))
        np.testing.assert_array_equal(again.image, plain.image)
        assert again.metadata["refine"] == []
        assert not any(key.startswith("refine:") for key in again.timings)


def test_the_base_runs_refiners_on_the_full_image_after_the_hd_strategy_and_before_paste_back():
    image = np.ascontiguousarray(data.coffee()[::2, ::2])  # 200×300: several crops with a small trigger
    mask = np.maximum(_ellipse(image.shape[:2], 50, 60, 12, 15), _ellipse(image.shape[:2], 150, 240, 14, 20))
    crops = HDStrategy(name="crop", crop_trigger=64, crop_margin=16)
    log: list = []
    result = ShiftingRemover()(RemovalRequest(image, mask, hd_strategy=crops, refine=[Recorder(log, 7)]))
    [(_, shape, seen_output, seen_region)] = log
    assert shape == image.shape  # the full image at its original size, not a crop
    np.testing.assert_array_equal(seen_region, mask)  # the paste region
    # The raw output after the strategy: shifted inside the crops, the input elsewhere.
    in_crops = np.zeros(mask.shape, bool)
    for box in M.merge_overlapping([b.expand(16, mask.shape) for b in M.component_boxes(mask)]):
        in_crops[box.slices] = True
    np.testing.assert_array_equal(seen_output[in_crops], _drift(image)[in_crops])
    np.testing.assert_array_equal(seen_output[~in_crops], image[~in_crops])
    # Paste-back came after the refiner: its marks inside the region, the input outside.
    np.testing.assert_array_equal(result.image, paste_back(image, np.where(mask[..., None] > 0, 7, image)
                                                           .astype(np.uint8), mask))


def test_chained_refiners_run_in_order_each_on_the_previous_output():
    mask = _ellipse(ASTRONAUT.shape[:2], 60, 50, 20, 28)
    log: list = []
    result = ShiftingRemover()(RemovalRequest(ASTRONAUT, mask, refine=[Recorder(log, 3), Recorder(log, 9)]))
    assert [entry[0] for entry in log] == [3, 9]
    assert (log[1][2][mask > 0] == 3).all()  # the second saw the first's output
    assert (result.image[mask > 0] == 9).all()


@pytest.mark.parametrize("refine, names", [
    ("color-match,poisson", ["color-match", "poisson"]),
    ("poisson, color-match", ["poisson", "color-match"]),
    (["poisson", "color-match:ring=4"], ["poisson", "color-match"]),
    ("poisson,poisson", ["poisson", "poisson"]),
])
def test_parse_refine_keeps_the_order_given(refine, names):
    assert [r.name for r in parse_refine(refine)] == names


def test_a_chain_equals_the_refiners_applied_one_after_the_other():
    mask = _ellipse(ASTRONAUT.shape[:2], 60, 50, 20, 28)
    image, raw = ASTRONAUT, _drift(ASTRONAUT)
    chained = ShiftingRemover()(RemovalRequest(image, mask, refine="color-match,poisson")).image
    by_hand = PoissonRefiner()(image, ColorMatchRefiner()(image, raw, mask), mask)
    np.testing.assert_array_equal(chained, paste_back(image, by_hand, mask))
    other_order = ShiftingRemover()(RemovalRequest(image, mask, refine="poisson,color-match")).image
    assert not np.array_equal(chained, other_order)


def test_metadata_records_each_refiners_description_and_timings():
    mask = _ellipse(ASTRONAUT.shape[:2], 60, 50, 20, 28)
    result = erasekit.remove(ASTRONAUT, mask, method="telea", refine="color-match:ring=8,poisson")
    assert result.metadata["refine"] == [{"name": "color-match", "ring": 8}, {"name": "poisson"}]
    assert {"refine:color-match", "refine:poisson"} <= set(result.timings)
    assert all(result.timings[k] >= 0 for k in ("refine:color-match", "refine:poisson"))
    stages = ("prepare", "inpaint", "refine:color-match", "refine:poisson", "paste")
    assert sum(result.timings[k] for k in stages) <= result.timings["total"]
    twice = erasekit.remove(ASTRONAUT, mask, method="telea", refine="poisson,poisson")
    assert [r["name"] for r in twice.metadata["refine"]] == ["poisson", "poisson"]
    assert "refine:poisson" in twice.timings  # a refiner named twice accumulates under one key


def test_an_empty_mask_skips_the_refiners_but_records_them():
    result = erasekit.remove(ASTRONAUT, np.zeros(ASTRONAUT.shape[:2], np.float32), method="telea",
                             refine="poisson")
    assert result.unchanged and np.array_equal(result.image, ASTRONAUT)
    assert result.metadata["refine"] == [{"name": "poisson"}]


# ------------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("refine, needle", [
    ("sharpen", "unknown refiner 'sharpen'; known: color-match, pixperfect, poisson"),
    ("color-match,nope", "unknown refiner 'nope'"),
    ("poisson:strength=2", "refiner 'poisson' does not take option(s): strength; it takes: none"),
    ("color-match:width=3", "does not take option(s): width; it takes: ring"),
    ("color-match:ring", "refiner option must be KEY=VALUE"),
    ("color-match:ring=0", "ring must be a whole number of pixels >= 1"),
    ("color-match:ring=2.5", "ring must be a whole number of pixels >= 1"),
    ("color-match:ring=true", "ring must be a whole number of pixels >= 1"),
    ("color-match:ring=[1]", "expected a number, boolean or string"),
    (3, "refine must be a name"),
    ([None], "refine entries must be refiner names or Refiner instances"),
])
def test_bad_refine_values_are_clear_invalid_input_errors(refine, needle):
    with pytest.raises(InvalidInputError) as info:
        parse_refine(refine)
    assert needle in str(info.value)


def test_an_unknown_refiner_fails_before_the_method_runs():
    calls = []

    class Counting(ShiftingRemover):
        def inpaint(self, image, mask, request):
            calls.append(1)
            return super().inpaint(image, mask, request)

    with pytest.raises(InvalidInputError, match="unknown refiner 'nope'"):
        Counting()(RemovalRequest(ASTRONAUT, _ellipse(ASTRONAUT.shape[:2], 60, 50, 20, 28), refine="nope"))
    assert calls == []
    with pytest.raises(InvalidInputError, match="known: color-match, pixperfect, poisson"):
        erasekit.remove(ASTRONAUT, _ellipse(ASTRONAUT.shape[:2], 60, 50, 20, 28), method="telea",
                        refine="nope")


def test_the_refiner_base_checks_its_inputs_and_what_a_refiner_returns():
    region = _ellipse(ASTRONAUT.shape[:2], 60, 50, 20, 28)
    poisson = PoissonRefiner()
    with pytest.raises(InvalidInputError, match="shapes differ"):
        poisson(ASTRONAUT, ASTRONAUT[:-1], region[:-1])
    with pytest.raises(InvalidInputError, match="output must be a uint8 RGB array"):
        poisson(ASTRONAUT, ASTRONAUT.astype(np.float32), region)

    class Broken(Refiner):
        name = "broken"

        def refine(self, image, output, region):
            return output.astype(np.float32)

    with pytest.raises(TypeError, match="refiner 'broken' returned float32"):
        Broken()(ASTRONAUT, ASTRONAUT, region)

    class NeverCalled(Broken):
        def refine(self, image, output, region):
            raise AssertionError("an empty region must not reach refine()")

    raw = _drift(ASTRONAUT)
    out = NeverCalled()(ASTRONAUT, raw, np.zeros(region.shape, np.float32))
    assert np.array_equal(out, raw) and out is not raw


# ------------------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------------------
def test_the_built_in_refiners_are_registered_with_descriptions():
    assert set(BUILT_IN) <= set(refiner_names())
    for name in BUILT_IN:
        spec = get_refiner(name)
        assert spec.description and spec.paper
        assert load_refiner(name).name == name


def test_built_refiners_are_cached_by_name_and_exact_options():
    assert load_refiner("color-match", ring=8) is load_refiner("color-match", ring=8)
    assert load_refiner("color-match", ring=8) is not load_refiner("color-match", ring=9)
    load_refiner("color-match", ring=1)
    with pytest.raises(InvalidInputError):  # True == 1 in a tuple key: it must not be served from ring=1
        load_refiner("color-match", ring=True)


def test_register_refiner_refuses_duplicates_and_a_replacement_is_not_served_from_the_cache():
    class Identity(Refiner):
        name = "test-identity"

        def refine(self, image, output, region):
            return output.copy()

    class Other(Identity):
        pass

    spec = RefinerSpec(name="test-identity", description="test double", factory=Identity)
    try:
        register_refiner(spec)
        with pytest.raises(ValueError, match="already registered"):
            register_refiner(spec)
        assert type(load_refiner("test-identity")) is Identity
        register_refiner(RefinerSpec(name="test-identity", description="test double", factory=Other),
                         replace=True)
        assert type(load_refiner("test-identity")) is Other
    finally:
        refiner_registry._REGISTRY.pop("test-identity", None)  # no public unregister: clean up after the test


# ------------------------------------------------------------------------------------------------------------
# poisson
# ------------------------------------------------------------------------------------------------------------
def test_poisson_equals_cv2_seamless_clone_called_directly():
    region = _ellipse(ASTRONAUT.shape[:2], 64, 60, 22, 30)
    raw = _drift(ASTRONAUT)
    refined = PoissonRefiner()(ASTRONAUT, raw, region)
    expected = _clone_reference(ASTRONAUT, raw, region > 0)
    inside = region > 0
    np.testing.assert_array_equal(refined[inside], expected[inside])


def test_poisson_clones_each_component_as_if_alone():
    first = _ellipse(ASTRONAUT.shape[:2], 25, 25, 10, 12)
    second = _ellipse(ASTRONAUT.shape[:2], 95, 100, 12, 14)
    raw = _drift(ASTRONAUT)
    refined = PoissonRefiner()(ASTRONAUT, raw, np.maximum(first, second))
    for component in (first > 0, second > 0):
        alone = _clone_reference(ASTRONAUT, raw, component)
        np.testing.assert_array_equal(refined[component], alone[component])


def test_poisson_removes_the_seam_a_colour_drift_leaves_after_paste_back():
    # A diffusion-like output: the right content everywhere, shifted in colour. Paste-back alone leaves a step
    # at the region's edge; Poisson blending carries the input's colours into the fill and the step goes.
    region = _ellipse(ASTRONAUT.shape[:2], 64, 60, 22, 30)
    inside = region > 0
    raw = _drift(ASTRONAUT)
    pasted = paste_back(ASTRONAUT, raw, region)
    blended = paste_back(ASTRONAUT, PoissonRefiner()(ASTRONAUT, raw, region), region)
    natural = _seam_step(ASTRONAUT, inside)  # the photo's own edges across that contour
    assert _seam_step(pasted, inside) > natural + 5
    assert _seam_step(blended, inside) < natural + 1
    # and the fill comes back to the true colours, not just a smooth seam
    error = np.abs(blended.astype(int) - ASTRONAUT)[inside].mean()
    assert error < 2 < np.abs(pasted.astype(int) - ASTRONAUT)[inside].mean()


def test_poisson_keeps_the_object_out_at_the_region_edges_and_the_image_border():
    # A black object in a corner, touching two image edges; the method's fill is the true background, drifted.
    # Cloning with the region itself as the mask (and no padding) would leave black on the box border and at
    # the image edge: the refiner's grown, padded clone mask must not.
    truth = ASTRONAUT
    region = np.zeros(truth.shape[:2], np.float32)
    region[:30, :40] = 1
    image = truth.copy()
    image[region > 0] = 0
    raw = _drift(truth)
    refined = PoissonRefiner()(image, raw, region)
    inside = region > 0
    drift_error = np.abs(raw.astype(int) - truth)[inside]
    error = np.abs(refined.astype(int) - truth)[inside]
    # No pixel is further from the truth than the fill's own drift (a black pixel would be up to 240 off): at
    # the image edges, with no input to blend towards, the fill keeps its own values; towards the input it
    # corrects.
    assert error.max() <= drift_error.max() and error.mean() < drift_error.mean() * 0.6
    naive = cv2.seamlessClone(raw, image, (region * 255).astype(np.uint8), (20, 15), cv2.NORMAL_CLONE)
    assert np.abs(naive.astype(int) - truth)[inside].max() > 100  # what the refiner avoids, same inputs


def test_poisson_leaves_a_fill_that_already_agrees_with_its_surroundings():
    region = _ellipse(ASTRONAUT.shape[:2], 64, 60, 22, 30)
    refined = PoissonRefiner()(ASTRONAUT, ASTRONAUT, region)
    assert np.abs(refined.astype(int) - ASTRONAUT)[region > 0].max() <= 1  # the solve's float rounding


# ------------------------------------------------------------------------------------------------------------
# color-match
# ------------------------------------------------------------------------------------------------------------
def _lab_stats(rgb: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lab = color.rgb2lab(rgb)[where]
    return lab.mean(axis=0), lab.std(axis=0)


def test_color_match_moves_the_fills_lab_mean_and_std_to_the_rings():
    # The fill is another part of the photo, colour-shifted; afterwards its L*a*b* statistics (scikit-image's
    # conversion) equal the input's 16-pixel ring's within 0.25 units: what rounding the result to uint8
    # leaves.
    image = CHELSEA
    region = _ellipse(image.shape[:2], 55, 68, 14, 27)
    inside = region > 0
    ring = dilation(inside, disk(16)) & ~inside
    output = image.copy()
    shifted = np.clip(image[::-1, ::-1] * np.array([1.1, 0.9, 0.85]) + [12, 0, -8], 0, 255).astype(np.uint8)
    output[inside] = shifted[inside]
    ring_mean, ring_std = _lab_stats(image, ring)
    before_mean, _before_std = _lab_stats(output, inside)
    assert np.abs(before_mean - ring_mean).max() > 5  # the constructed mismatch is real
    after_mean, after_std = _lab_stats(ColorMatchRefiner()(image, output, region), inside)
    np.testing.assert_allclose(after_mean, ring_mean, atol=0.25)
    np.testing.assert_allclose(after_std, ring_std, atol=0.25)


def test_color_match_corrects_a_colour_shifted_fill_towards_the_truth():
    image = CHELSEA
    region = _ellipse(image.shape[:2], 55, 68, 14, 27)
    inside = region > 0
    shifted = np.clip(image * np.array([1.15, 0.95, 0.8]) + [10, 5, -5], 0, 255).astype(np.uint8)
    output = np.where(inside[..., None], shifted, image).astype(np.uint8)
    refined = ColorMatchRefiner()(image, output, region)
    before = np.abs(color.rgb2lab(output)[inside] - color.rgb2lab(image)[inside]).mean()
    after = np.abs(color.rgb2lab(refined)[inside] - color.rgb2lab(image)[inside]).mean()
    assert after < before / 3


def test_color_match_shifts_a_flat_fill_to_the_rings_mean_colour():
    image = CHELSEA
    region = _ellipse(image.shape[:2], 55, 68, 14, 27)
    inside = region > 0
    output = image.copy()
    output[inside] = (200, 40, 90)  # flat: no spread to scale, only a mean to move
    refined = ColorMatchRefiner(ring=8)(image, output, region)
    assert len(np.unique(refined[inside], axis=0)) == 1
    ring_mean, _ = _lab_stats(image, dilation(inside, disk(8)) & ~inside)
    np.testing.assert_allclose(color.rgb2lab(refined[inside][:1])[0], ring_mean, atol=1.0)


def test_color_match_corrects_the_surroundings_too_so_a_following_refiner_sees_a_consistent_fill():
    image = CHELSEA
    region = _ellipse(image.shape[:2], 55, 68, 14, 27)
    output = _drift(image, (30, 0, -20))
    refined = ColorMatchRefiner(ring=8)(image, output, region)
    box = np.zeros(region.shape, bool)
    ys, xs = np.nonzero(region)
    box[ys.min() - 8:ys.max() + 9, xs.min() - 8:xs.max() + 9] = True
    drift_error = np.abs(output.astype(int) - image)[box].mean()
    assert np.abs(refined.astype(int) - image)[box].mean() < drift_error / 3
    np.testing.assert_array_equal(refined[~box], output[~box])  # beyond the measured box: untouched


def test_color_match_leaves_a_region_without_surroundings_as_it_is():
    raw = _drift(CHELSEA)
    refined = ColorMatchRefiner()(CHELSEA, raw, np.ones(CHELSEA.shape[:2], np.float32))
    np.testing.assert_array_equal(refined, raw)

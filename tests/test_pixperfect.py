"""PixPerfect (NeurIPS 2025): tone map, artifacts, pooling, network, refiner and CLI.

References are independent of the implementation: numpy's ``lstsq`` for the tone-map fit, scikit-image's HSV
conversion for the hue shift, :func:`erasekit.hd.paste_back` for what the base must produce, and a binomial
bound for the Table 5 probabilities.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import color, data

import erasekit
from erasekit.cli import main
from erasekit.hd import paste_back
from erasekit.refiners import load_refiner
from erasekit.refiners.pixperfect import artifacts as A
from erasekit.refiners.pixperfect.network import PixPerfectConfig, PixPerfectGenerator, count_parameters
from erasekit.refiners.pixperfect.pooling import jittered_copies, pool
from erasekit.refiners.pixperfect.tone_map import (
    DiscriminativeToneMap,
    apply_tone_map,
    balanced_sample,
)
from erasekit.refiners.pixperfect.weights import CONFIG_FILE, WEIGHTS_FILE, load_generator
from erasekit.testing import write_tiny_weights
from erasekit.testing.pixperfect import tiny_config
from erasekit.types import InvalidInputError, MissingWeightsError


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    return write_tiny_weights("pixperfect", tmp_path_factory.mktemp("pp"))["weights"]


@pytest.fixture(scope="module")
def tiny_vae():
    from erasekit.testing import tiny_pipeline

    return tiny_pipeline("sd15-inpaint").vae


# ---- tone map (Eq. 2–3) ------------------------------------------------------------------------------------
def test_balanced_sampler_returns_equal_counts_from_each_side():
    mask = torch.zeros(3, 1, 20, 30)
    mask[0, :, :4, :5] = 1  # 20 inside
    mask[1, :, 2:, :] = 1  # 60 outside
    mask[2, :, :, :15] = 1
    index = balanced_sample(mask, 1000, torch.Generator().manual_seed(0))
    assert index.shape == (3, 40)  # n = min(1000, 20 inside of sample 0, 60 outside of sample 1) = 20
    flat = mask.reshape(3, -1)
    for row, idx in zip(flat, index):
        assert row[idx[:20]].eq(1).all() and row[idx[20:]].eq(0).all()
        assert len(set(idx.tolist())) == 40  # without replacement
    with pytest.raises(ValueError, match="both inside and outside"):
        balanced_sample(torch.ones(1, 1, 4, 4), 8)


def test_tone_map_fit_equals_numpy_lstsq_on_the_sampled_pixels():
    rng = np.random.default_rng(0)
    prediction = torch.from_numpy(rng.random((2, 3, 16, 16), dtype=np.float32))
    target = prediction + 0.05 * torch.from_numpy(rng.standard_normal((2, 3, 16, 16)).astype(np.float32))
    target = target.clamp(0, 1)
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:10, 3:12] = 1
    tone = DiscriminativeToneMap(degree=5, samples_per_side=40)
    coefficients = tone.fit(prediction, target, mask, torch.Generator().manual_seed(7))
    # Replay the same draws: β first, then the sample, as documented.
    generator = torch.Generator().manual_seed(7)
    beta = (20.0 + 20.0 * torch.rand(2, 1, 1, generator=generator)).double().numpy()
    index = balanced_sample(mask, 40, generator).numpy()
    for b in range(2):
        for c in range(3):
            x = prediction[b, c].reshape(-1).double().numpy()[index[b]]
            y_gt = target[b, c].reshape(-1).double().numpy()[index[b]]
            y_amp = y_gt + beta[b, 0, 0] * (x - y_gt)
            vander = np.stack([x**d for d in range(1, 6)], axis=1)
            expected = np.linalg.lstsq(vander, y_amp, rcond=None)[0]
            np.testing.assert_allclose(coefficients[b, c].numpy(), expected, rtol=1e-6, atol=1e-6)
    mapped = apply_tone_map(prediction, coefficients)
    p64 = prediction.double()
    manual = sum(coefficients[:, :, d - 1, None, None] * p64**d for d in range(1, 6)).clamp(0, 1).float()
    torch.testing.assert_close(mapped, manual)


def test_gradients_flow_to_the_prediction_but_not_through_the_coefficients():
    prediction = torch.rand(1, 3, 12, 12, requires_grad=True)
    target = torch.rand(1, 3, 12, 12)
    mask = torch.zeros(1, 1, 12, 12)
    mask[..., 3:8, 3:8] = 1
    tone = DiscriminativeToneMap()
    assert not tone.fit(prediction, target, mask).requires_grad
    y_pred, y_gt = tone(prediction, target, mask, torch.Generator().manual_seed(0))
    (y_pred - y_gt).abs().mean().backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    assert not y_gt.requires_grad


def _hue_shifted(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_pred, x_gt, mask): a scikit-image photo at half size and its copy with a 1 % HSV hue rotation in
    a rectangle (rows 60–90 %, columns 10–50 %); the shift is scikit-image's, independent of the code."""
    photo = getattr(data, name)()[::2, ::2].astype(np.float64) / 255.0
    h, w = photo.shape[:2]
    mask = np.zeros((h, w))
    mask[int(0.6 * h) : int(0.9 * h), int(0.1 * w) : int(0.5 * w)] = 1
    hsv = color.rgb2hsv(photo)
    hsv[..., 0] = (hsv[..., 0] + 0.01) % 1.0
    shifted = np.where(mask[..., None] > 0, color.hsv2rgb(hsv), photo)
    return _tensor(shifted), _tensor(photo), torch.from_numpy(mask).float()[None, None]


@pytest.mark.parametrize("photo", ["coffee", "chelsea", "astronaut"])
@pytest.mark.parametrize("beta", [20.0, 40.0])
def test_fit_target_amplifies_a_one_percent_hue_shift_at_least_10x(photo, beta):
    """One curve f fitted on a balanced sample gives f(x_pred) − x_gt ≈ (β + 1)/2 · δ inside the mask
    (docs/pixperfect.md): ≥ 10.5× for β ≥ 20, the "≥ 10×" amplification of the issue."""
    x_pred, x_gt, mask = _hue_shifted(photo)
    coefficients = DiscriminativeToneMap(beta_range=(beta, beta)).fit(
        x_pred, x_gt, mask, torch.Generator().manual_seed(0)
    )
    inside = mask.expand_as(x_pred) > 0
    delta = (x_pred - x_gt)[inside].abs().mean()
    gain = float((apply_tone_map(x_pred, coefficients) - x_gt)[inside].abs().mean() / delta)
    assert gain >= 10.0
    assert gain == pytest.approx((beta + 1) / 2, rel=0.4)


@pytest.mark.parametrize("photo", ["coffee", "chelsea"])
def test_loss_space_difference_is_the_tone_maps_slope_times_the_error(photo):
    """What Eq. 2 compares, y_pred − y_gt = f(x_pred) − f(x_gt), is f′ · δ to first order: the fitted
    slope, not β. The slope comes from differentiating the fitted polynomial (numpy's polyder)."""
    x_pred, x_gt, mask = _hue_shifted(photo)
    tone_map = DiscriminativeToneMap(beta_range=(20.0, 20.0))
    coefficients = tone_map.fit(x_pred, x_gt, mask, torch.Generator().manual_seed(0))
    y_pred, y_gt = tone_map(x_pred, x_gt, mask, torch.Generator().manual_seed(0))
    inside = mask[0, 0] > 0
    delta = (x_pred - x_gt)[0].double()
    slope_times_delta = []
    for c in range(3):
        # numpy's poly1d wants the highest power first and a constant term (0: Eq. 3 has none).
        curve = np.poly1d(np.concatenate([coefficients[0, c].numpy()[::-1], [0.0]]))
        slope = np.polyder(curve)(x_gt[0, c].double().numpy())
        slope_times_delta.append(np.abs(slope * delta[c].numpy())[inside.numpy()])
    predicted = np.mean(slope_times_delta)
    pixel = float(delta.abs()[:, inside].mean())
    loss_space = float((y_pred - y_gt)[0][:, inside].abs().mean())
    assert loss_space == pytest.approx(predicted, rel=0.2)
    assert loss_space < (21 / 2) / 3 * pixel  # far below the fit target's (β + 1)/2 gain


# ---- artifact simulation (Sec. 3.2, App. C, Table 5) -------------------------------------------------------
FOREGROUND = {
    "content_discontinuity": A.content_discontinuity,
    "foreground_color": A.foreground_color,
    "boundary_mixing": A.boundary_mixing,
    "texture_foreground": lambda g, t, m, r: A.texture(g, t, m, r, side="foreground"),
}
BACKGROUND = {
    "background_color": A.background_color,
    "texture_background": lambda g, t, m, r: A.texture(g, t, m, r, side="background"),
}


def _pair_inputs(seed: int):
    rng = np.random.default_rng(seed)
    photo = data.astronaut()[::8, ::8].astype(np.float32) / 255.0
    mask = A.free_form_mask(photo.shape[:2], rng)
    x_gen = np.where(mask[..., None] > 0, A.color_shift(photo, rng), photo).astype(np.float32)
    return photo, x_gen, mask, rng


@pytest.mark.parametrize("name", [*FOREGROUND, *BACKGROUND, "vae"])
def test_each_artifact_module_is_confined_to_its_region(name, tiny_vae):
    for seed in range(6):
        x_gt, x_gen, mask, rng = _pair_inputs(seed)
        inside = mask > 0
        if name == "vae":
            new_gen, new_gt = A.vae_round_trip(x_gen, x_gt, mask, rng, vae=tiny_vae)
        else:
            module = {**FOREGROUND, **BACKGROUND}[name]
            new_gen, new_gt = module(x_gen, x_gt, mask, rng)
        if name in BACKGROUND:
            assert np.array_equal(new_gen[inside], x_gen[inside])  # the fill is untouched
            assert not np.array_equal(new_gen[~inside], x_gen[~inside])
        else:
            assert np.array_equal(new_gen[~inside], x_gen[~inside])
            assert np.array_equal(new_gt, x_gt)
            assert not np.array_equal(new_gen[inside], x_gen[inside])
        # A background module makes x_gen follow the truth outside the mask (what paste-back guarantees).
        if name in BACKGROUND:
            assert np.array_equal(new_gen[~inside], new_gt[~inside])


def test_simulated_pairs_agree_outside_the_mask_and_differ_inside(tiny_vae):
    photo = data.astronaut()[::8, ::8]
    for seed in range(10):
        rng = np.random.default_rng(seed)
        mask = A.free_form_mask(photo.shape[:2], rng)
        pair = A.simulate_artifacts(photo, mask, rng, vae=tiny_vae)
        outside = mask == 0
        assert np.array_equal(pair.x_gen[outside], pair.x_gt[outside])
        assert pair.x_gen.dtype == np.float32 and pair.x_gen.min() >= 0 and pair.x_gen.max() <= 1


def test_simulation_is_seeded():
    photo = data.astronaut()[::8, ::8]
    mask = A.free_form_mask(photo.shape[:2], np.random.default_rng(3))
    a = A.simulate_artifacts(photo, mask, np.random.default_rng(5))
    b = A.simulate_artifacts(photo, mask, np.random.default_rng(5))
    assert a.applied == b.applied and np.array_equal(a.x_gen, b.x_gen) and np.array_equal(a.x_gt, b.x_gt)


def test_each_module_fires_with_its_table5_probability(tiny_vae):
    photo = data.astronaut()[::16, ::16]
    trials = 300
    counts = dict.fromkeys(A.PROBABILITIES, 0)
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        mask = A.free_form_mask(photo.shape[:2], rng)
        for name in A.simulate_artifacts(photo, mask, rng, vae=tiny_vae).applied:
            counts[name] += 1
    assert A.PROBABILITIES == {
        "content_discontinuity": 0.5,
        "background_color": 0.8,
        "foreground_color": 0.8,
        "boundary_mixing": 1.0,
        "texture": 0.5,
        "vae": 0.5,
    }
    for name, p in A.PROBABILITIES.items():
        bound = 4.0 * np.sqrt(trials * p * (1 - p))  # four standard deviations of Binomial(trials, p)
        assert abs(counts[name] - trials * p) <= bound, (name, counts[name])


def test_free_form_masks_cover_their_target_and_leave_surroundings():
    for seed in range(20):
        mask = A.free_form_mask((64, 96), np.random.default_rng(seed))
        assert mask.shape == (64, 96) and set(np.unique(mask)) <= {0.0, 1.0}
        assert 0 < mask.mean() < 1


def test_sample_sheet_has_a_row_per_module(tmp_path, tiny_vae):
    import cv2

    photo = data.astronaut()[::16, ::16]
    sheet = cv2.imread(A.write_sample_sheet(photo, str(tmp_path / "sheet.png"), vae=tiny_vae))
    assert sheet.shape == (photo.shape[0] * (len(A.PROBABILITIES) + 1), photo.shape[1] * 3, 3)


# ---- pooling (Sec. 3.3) ------------------------------------------------------------------------------------
def test_pooling_keeps_the_output_closest_to_its_own_input():
    image = data.astronaut()[::16, ::16].astype(np.float32) / 255.0
    mask = np.zeros(image.shape[:2], np.float32)
    mask[8:20, 8:24] = 1
    target = image * 0.9  # a stand-in refiner that pulls every copy towards a fixed image

    def refine(x: np.ndarray, m: np.ndarray) -> np.ndarray:
        return (0.5 * x + 0.5 * target).astype(np.float32)

    result = pool(refine, image, mask, 6, np.random.default_rng(1))
    copies = jittered_copies(image, mask, 6, np.random.default_rng(1))
    expected = [float(np.abs(refine(c, mask).astype(np.float64) - c).mean()) for c in copies]
    assert result.index == int(np.argmin(expected)) and result.scores == pytest.approx(expected)
    assert np.array_equal(result.output, refine(copies[result.index], mask))
    assert np.array_equal(copies[0], image)  # copy 0 is the input: pool=1 is plain refinement
    assert all(np.array_equal(c[mask == 0], image[mask == 0]) for c in copies)  # jitter only inside


# ---- network -----------------------------------------------------------------------------------------------
def test_default_network_has_about_41m_parameters():
    assert 40e6 <= count_parameters(PixPerfectGenerator(PixPerfectConfig())) <= 42e6


def test_network_is_fully_convolutional_on_a_1000x1500_input():
    generator = PixPerfectGenerator(tiny_config()).eval()
    image, mask = torch.rand(1, 3, 1000, 1500), torch.zeros(1, 1, 1000, 1500)
    mask[..., 300:500, 400:900] = 1
    with torch.no_grad():
        out = generator(image, mask)
    assert out.shape == image.shape and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_global_code_pools_so_odd_sizes_work():
    generator = PixPerfectGenerator(tiny_config()).eval()
    with torch.no_grad():
        for h, w in ((17, 33), (64, 48)):
            assert generator(torch.rand(2, 3, h, w), torch.ones(2, 1, h, w)).shape == (2, 3, h, w)


def test_config_rejects_bad_values():
    with pytest.raises(InvalidInputError, match="width"):
        PixPerfectConfig(width=0)
    with pytest.raises(InvalidInputError, match="unknown"):
        PixPerfectConfig.from_dict({"depth": 3})


# ---- weights and the refiner -------------------------------------------------------------------------------
def test_weights_round_trip(weights):
    from safetensors.torch import load_file

    generator = load_generator(weights)
    state = load_file(f"{weights}/{WEIGHTS_FILE}")
    assert all(torch.equal(generator.state_dict()[k], v) for k, v in state.items())
    assert generator.config == tiny_config()


def test_missing_weights_name_the_files_and_where_they_go(tmp_path, monkeypatch):
    with pytest.raises(MissingWeightsError, match=f"{WEIGHTS_FILE}.*{CONFIG_FILE}|{CONFIG_FILE}"):
        load_refiner("pixperfect", weights=str(tmp_path))
    monkeypatch.delenv("ERASEKIT_MODELS_DIR", raising=False)
    with pytest.raises(MissingWeightsError, match="ERASEKIT_MODELS_DIR/pixperfect"):
        load_generator(None)
    monkeypatch.setenv("ERASEKIT_MODELS_DIR", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=str(tmp_path / "pixperfect")):
        load_generator(None)


@pytest.mark.parametrize("options", [{"pool": 0}, {"pool": 17}, {"pool": 2.5}, {"context": -1}])
def test_refiner_options_are_checked(weights, options):
    with pytest.raises(InvalidInputError, match="pixperfect"):
        load_refiner("pixperfect", weights=weights, **options)


def test_remove_with_pixperfect_keeps_everything_outside_the_region(weights, tmp_path):
    from erasekit import io

    photo = np.ascontiguousarray(data.astronaut()[::8, ::8])
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[20:40, 25:45] = 1
    io.write_image(tmp_path / "in.png", photo)
    io.write_mask(tmp_path / "mask.png", mask)
    code = main(
        ["remove", str(tmp_path / "in.png"), "-m", str(tmp_path / "mask.png"), "-o",
         str(tmp_path / "out.png"), "--method", "telea", "--refine", f"pixperfect:weights={weights}:pool=3"]
    )
    assert code == 0
    out = io.read_image(tmp_path / "out.png").pixels
    assert np.array_equal(out[mask == 0], photo[mask == 0])
    plain = erasekit.remove(photo, mask, method="telea").image
    refined = erasekit.remove(photo, mask, method="telea", refine=f"pixperfect:weights={weights}:pool=3")
    assert np.array_equal(refined.image, out)
    assert not np.array_equal(refined.image, plain)  # the refiner did change the fill
    assert refined.metadata["refine"][0]["pool"] == 3 and "refine:pixperfect" in refined.timings


def test_refiner_feeds_the_network_the_pasted_back_composite(weights):
    photo = np.ascontiguousarray(data.astronaut()[::8, ::8])
    region = np.zeros(photo.shape[:2], np.float32)
    region[10:30, 10:30] = 1
    garbage = np.zeros_like(photo)  # a method output that differs from the photo everywhere
    refiner = load_refiner("pixperfect", weights=weights, context=8)
    composite = paste_back(photo, garbage, region)
    generator = load_generator(weights)
    box = (slice(2, 38), slice(2, 38))
    with torch.no_grad():
        expected = generator(_tensor(composite[box] / 255.0), torch.from_numpy(region[box])[None, None])
    expected_u8 = np.clip(np.rint(expected[0].permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
    refined = refiner(photo, garbage, region)
    assert np.array_equal(refined[box], expected_u8)
    assert np.array_equal(refined[40:], garbage[40:])  # outside the box: the output, for the base to drop


def test_cli_refine_end_to_end(weights, tmp_path):
    from erasekit import io

    photo = np.ascontiguousarray(data.chelsea()[::6, ::6])
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[15:35, 20:50] = 1
    edited = photo.copy()
    edited[mask > 0] = np.clip(edited[mask > 0].astype(int) + 12, 0, 255).astype(np.uint8)
    for name, array in (("orig.png", photo), ("edit.png", edited)):
        io.write_image(tmp_path / name, array)
    io.write_mask(tmp_path / "m.png", mask)
    code = main(
        ["refine", str(tmp_path / "edit.png"), "--original", str(tmp_path / "orig.png"), "--mask",
         str(tmp_path / "m.png"), "-o", str(tmp_path / "out.png"), "--refine",
         f"pixperfect:weights={weights}"]
    )
    assert code == 0
    out = io.read_image(tmp_path / "out.png").pixels
    refiner = load_refiner("pixperfect", weights=weights)
    assert np.array_equal(out, paste_back(photo, refiner(photo, edited, mask), mask))
    assert np.array_equal(out[mask == 0], photo[mask == 0])
    assert (
        main(
            ["refine", str(tmp_path / "edit.png"), "--original", str(tmp_path / "orig.png"), "--mask",
             str(tmp_path / "m.png"), "-o", str(tmp_path / "o2.png"), "--refine",
             f"pixperfect:weights={tmp_path / 'none'}"]
        )
        == 3
    )


# ---- pool_batch and large inputs ---------------------------------------------------------------------------
def test_batched_pooling_picks_the_same_copy_as_one_at_a_time(weights):
    photo = np.ascontiguousarray(data.coffee()[::8, ::8])
    region = np.zeros(photo.shape[:2], np.float32)
    region[20:40, 20:50] = 1
    output = np.clip(photo.astype(int) + 10, 0, 255).astype(np.uint8)
    composite = paste_back(photo, output, region).astype(np.float32) / 255.0
    sequential = load_refiner("pixperfect", weights=weights, pool=5, seed=3)
    batched = load_refiner("pixperfect", weights=weights, pool=5, seed=3, pool_batch=4)
    one = pool(sequential._refine_crop, composite, region, 5, np.random.default_rng(3))
    many = pool(batched._refine_crop, composite, region, 5, np.random.default_rng(3), batch=4,
                refine_many=batched._refine_crops)
    assert one.index == many.index
    assert many.scores == pytest.approx(one.scores, abs=1e-6)
    assert np.allclose(one.output, many.output, atol=1e-5)
    # End to end the two agree within one grey level (float sums may order differently in a batch).
    a = sequential(photo, output, region).astype(int)
    b = batched(photo, output, region).astype(int)
    assert np.abs(a - b).max() <= 1
    assert batched.describe()["pool_batch"] == 4
    with pytest.raises(InvalidInputError, match="pool_batch"):
        load_refiner("pixperfect", weights=weights, pool_batch=0)


def test_refiner_runs_on_a_1000x1500_photo_and_keeps_outside_bit_identical(weights):
    import cv2

    photo = cv2.resize(data.astronaut(), (1500, 1000), interpolation=cv2.INTER_AREA)
    mask = np.zeros((1000, 1500), np.float32)
    mask[400:560, 700:940] = 1
    result = erasekit.remove(photo, mask, method="telea", refine=f"pixperfect:weights={weights}:pool=2")
    assert result.image.shape == photo.shape
    assert np.array_equal(result.image[mask == 0], photo[mask == 0])
    assert not np.array_equal(result.image, erasekit.remove(photo, mask, method="telea").image)

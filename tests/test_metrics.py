"""Metrics equal their reference implementations; missing weights are reported, never faked."""

from __future__ import annotations

import importlib
import math
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import skimage.data
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from transformers import CLIPImageProcessorPil
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
)

from erasekit.eval import features as FT
from erasekit.eval import weights as W
from erasekit.eval.cfd import RegionFeatures, _box_nms, cfd_score, filter_segments, sam_automatic_masks
from erasekit.eval.metrics import (
    SSIM_FLOAT32_TOLERANCE,
    CMMDMetric,
    Sample,
    fid_from_features,
    kid_from_features,
    local_crop_box,
    mask_box,
    mmd_rbf,
    psnr,
    ssim,
)
from erasekit.eval.networks import FIDInceptionV3, LPIPSAlex, resize_bilinear_tf1
from erasekit.eval.suite import build_suite
from erasekit.types import InvalidInputError, MissingWeightsError


def _photos():
    return {
        "astronaut": skimage.data.astronaut()[100:228, 150:310],
        "coffee": skimage.data.coffee()[:160, 200:392],
        "chelsea": skimage.data.chelsea()[50:170, 100:260],
    }


def _degraded(image: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.int16) + rng.integers(-25, 26, image.shape)
    noisy[20:60, 30:90] = noisy[20:60, 30:90][::-1]  # a structural defect, not only noise
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _mask(shape, box=(25, 35, 70, 100)) -> np.ndarray:
    m = np.zeros(shape, np.float32)
    m[box[0] : box[2], box[1] : box[3]] = 1.0
    return m


# ------------------------------------------------------------------------------------------------------------
# PSNR / SSIM vs scikit-image
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_psnr_ssim_equal_scikit_image_on_photos(name):
    target = _photos()[name]
    output = _degraded(target, 1)
    mask = _mask(target.shape[:2])
    inside = mask > 0.5
    assert psnr(output, target) == pytest.approx(
        peak_signal_noise_ratio(target, output, data_range=255), abs=1e-10
    )
    assert psnr(output, target, mask) == pytest.approx(
        peak_signal_noise_ratio(target[inside], output[inside], data_range=255), abs=1e-10
    )
    ref, smap = structural_similarity(
        target,
        output,
        data_range=255,
        channel_axis=2,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    # erasekit's SSIM runs in float32; scikit-image in float64. The difference is float32 rounding only: it
    # stays within SSIM_FLOAT32_TOLERANCE (5e-5; measured up to ~1e-5 on these photos), below the 4th decimal
    # papers report.
    assert abs(ssim(output, target) - ref) <= SSIM_FLOAT32_TOLERANCE
    # Inside the mask: the same SSIM map averaged over the mask (the mask is away from the 5-px border).
    assert abs(ssim(output, target, mask) - smap.mean(axis=2)[inside].mean()) <= SSIM_FLOAT32_TOLERANCE


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_ssim_float32_differs_from_float64_by_rounding_only(name):
    """The same torchmetrics computation in float64 equals scikit-image to 1e-9, so the float32 difference
    above is precision, not a different definition."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    target = _photos()[name]
    output = _degraded(target, 1)
    ref = structural_similarity(target, output, data_range=255, channel_axis=2, gaussian_weights=True,
                                sigma=1.5, use_sample_covariance=False)

    def as_batch(a):
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].double()

    _, full = structural_similarity_index_measure(as_batch(output), as_batch(target), data_range=255.0,
                                                  gaussian_kernel=True, sigma=1.5, kernel_size=11,
                                                  return_full_image=True)
    interior = full[0].mean(dim=0)[5:-5, 5:-5].mean().item()
    assert interior == pytest.approx(ref, abs=1e-9)
    assert 0 < abs(ssim(output, target) - ref) <= SSIM_FLOAT32_TOLERANCE


def test_pixel_metric_edge_cases():
    img = _photos()["coffee"]
    assert psnr(img, img) == math.inf
    assert math.isnan(psnr(img, img, np.zeros(img.shape[:2], np.float32)))
    with pytest.raises(InvalidInputError):
        psnr(img, img[:10])
    with pytest.raises(InvalidInputError):
        ssim(img[:8, :8], img[:8, :8])


# ------------------------------------------------------------------------------------------------------------
# FID / KID / CMMD from features
# ------------------------------------------------------------------------------------------------------------
def test_fid_from_features_equals_direct_scipy_computation():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 12))
    fake = rng.normal(loc=0.3, scale=1.2, size=(50, 12)) + 0.1 * real[:50]
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))
    assert fid_from_features(real, fake) == pytest.approx(expected, rel=1e-6)


def test_kid_equals_hand_computed_unbiased_polynomial_mmd():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(9, 5)), rng.normal(0.5, 1.0, size=(9, 5))
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3
    m = len(x)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    expected = (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )
    mean, _ = kid_from_features(x, y, subsets=1, subset_size=m)  # one subset of all samples: deterministic
    assert mean == pytest.approx(expected, rel=1e-9)


def test_cmmd_equals_hand_computation():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([[1.0, 0.0], [1.0, 0.0]])
    # ‖x1−x2‖² = 2: K_xx mean = (2 + 2e^{−2/200})/4, K_yy = 1, K_xy mean = (2 + 2e^{−0.01})/4.
    e = math.exp(-2.0 / (2 * 10.0**2))
    expected = 1000.0 * ((2 + 2 * e) / 4 + 1.0 - 2 * (2 + 2 * e) / 4)
    assert mmd_rbf(x, y) == pytest.approx(expected, rel=1e-12)
    assert mmd_rbf(x, x) == pytest.approx(0.0, abs=1e-12)


def _tiny_clip_vision(path: Path) -> Path:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    CLIPVisionModelWithProjection(cfg).save_pretrained(path)
    return path


def test_cmmd_metric_through_a_tiny_clip_folder(tmp_path):
    loaded = FT.load_clip("clip-vit-l14-336", _tiny_clip_vision(tmp_path / "clip"))
    assert loaded.weights[0].source == "explicit"
    metric = CMMDMetric(loaded.model, loaded.settings["image_size"])
    photos = list(_photos().values())
    for i, p in enumerate(photos):
        metric.update(Sample(str(i), _degraded(p, i), p, _mask(p.shape[:2]), p))
    # The CMMD reference code's steps (embedding.py): images in [0, 1], torch bicubic resize of the whole
    # image to the crop size, transformers' CLIP image processor with resize/crop/rescale off, the projection.
    processor = CLIPImageProcessorPil(crop_size={"height": 32, "width": 32})

    def emb(img):
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bicubic")
        pixels = processor(
            images=x.permute(0, 2, 3, 1).numpy(),
            do_normalize=True,
            do_center_crop=False,
            do_resize=False,
            do_rescale=False,
            return_tensors="pt",
        )["pixel_values"]
        e = loaded.model(pixel_values=pixels).image_embeds.double()
        return (e / e.norm(dim=-1, keepdim=True))[0].detach().numpy()

    real = np.stack([emb(p) for p in photos])
    fake = np.stack([emb(_degraded(p, i)) for i, p in enumerate(photos)])
    assert metric.compute()["cmmd"] == pytest.approx(mmd_rbf(real, fake), rel=1e-6)


# ------------------------------------------------------------------------------------------------------------
# LPIPS vs the lpips package (and torchmetrics) with the same weights
# ------------------------------------------------------------------------------------------------------------
def _lpips_wheel_heads() -> Path | None:
    """The lpips wheel's own trained linear-layer weights (v0.1, AlexNet), found without importing lpips
    (its __init__ imports torchvision)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "alex.pth"
    return path if path.is_file() else None


def _random_lpips_weights(tmp_path: Path) -> tuple[Path, Path]:
    """A random AlexNet trunk (no ImageNet weights here) in torchvision's key layout, and the linear heads:
    the lpips wheel's own when it is installed, else random ones."""
    g = torch.Generator().manual_seed(0)
    layout = _reference_alexnet().state_dict()
    trunk = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in layout.items()}
    torch.save(trunk, tmp_path / "alexnet.pth")
    wheel = _lpips_wheel_heads()
    if wheel is not None:
        return tmp_path / "alexnet.pth", wheel
    heads = {f"lin{i}.model.1.weight": torch.rand((1, c, 1, 1), generator=g)
             for i, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(heads, tmp_path / "heads.pth")
    return tmp_path / "alexnet.pth", tmp_path / "heads.pth"


def _reference_alexnet() -> torch.nn.Module:
    """AlexNet as torchvision publishes it (``torchvision.models.AlexNet``; Krizhevsky 2014, "One weird
    trick", arXiv:1404.5997), built here from that layer list and not from erasekit: ``features`` then the
    classifier, which LPIPS never runs."""
    nn = torch.nn
    net = nn.Module()
    net.features = nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2),
    )
    return net


def _torchvision_shim(monkeypatch, trunk_path: Path) -> None:
    """A stand-in ``torchvision.models.alexnet`` (torchvision is absent here) returning the test's own AlexNet
    with the trunk weight file, so the reference packages run their code on an independently built network."""

    def alexnet(pretrained=False, weights=None, **_):
        net = _reference_alexnet()
        net.load_state_dict(torch.load(trunk_path))
        return net

    models = types.ModuleType("torchvision.models")
    models.alexnet = alexnet
    models.AlexNet_Weights = types.SimpleNamespace(DEFAULT=None)  # torchmetrics asks for the weights enum
    tv = types.ModuleType("torchvision")
    tv.models = models
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)


def _lpips_pairs():
    photos = _photos()
    return [(p, _degraded(p, i)) for i, p in enumerate(photos.values())]


def _ours(trunk: Path, heads: Path) -> LPIPSAlex:
    return FT.load_lpips(trunk, heads).model


def _to_unit(img) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def test_lpips_equals_lpips_package_with_same_weights(tmp_path, monkeypatch):
    if importlib.util.find_spec("lpips") is None:
        pytest.skip(
            "lpips not installed (pip install --no-deps lpips: it imports torchvision, which we shim)"
        )
    trunk, heads = _random_lpips_weights(tmp_path)
    assert heads == _lpips_wheel_heads()  # the wheel's trained linear layers, not random ones
    _torchvision_shim(monkeypatch, trunk)
    for mod in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, mod)
    import lpips

    ref = lpips.LPIPS(net="alex", version="0.1", pretrained=True, model_path=str(heads), verbose=False).eval()
    ours = _ours(trunk, heads)
    for a, b in _lpips_pairs():
        with torch.no_grad():
            expected = ref(_to_unit(a), _to_unit(b)).item()
            got = ours(_to_unit(a), _to_unit(b)).item()
        assert got == pytest.approx(expected, abs=1e-6)
        assert expected > 0


def test_lpips_equals_torchmetrics_implementation_with_same_weights(tmp_path, monkeypatch):
    import torchmetrics.functional.image.lpips as tml

    trunk, heads = _random_lpips_weights(tmp_path)
    _torchvision_shim(monkeypatch, trunk)
    monkeypatch.setattr(tml, "_TORCHVISION_AVAILABLE", True)
    ref = tml._LPIPS(pretrained=True, net="alex", model_path=str(heads)).eval()
    ours = _ours(trunk, heads)
    for a, b in _lpips_pairs():
        with torch.no_grad():
            # torchmetrics normalises with eps 1e-8 where lpips uses 1e-10: equal to ~1e-6.
            assert ours(_to_unit(a), _to_unit(b)).item() == pytest.approx(
                ref(_to_unit(a), _to_unit(b)).item(), abs=1e-5
            )


# ------------------------------------------------------------------------------------------------------------
# FID network
# ------------------------------------------------------------------------------------------------------------
def test_tf1_bilinear_resize_matches_hand_values():
    x = torch.tensor([[[[0.0, 4.0]]]])  # 1×1×1×2 -> width 4: src = dst·0.5 -> 0, 0.5, 1, 1.5 (clamped)
    out = resize_bilinear_tf1(x, (1, 4))
    assert out.flatten().tolist() == [0.0, 2.0, 4.0, 4.0]


def _random_inception_state() -> dict:
    g = torch.Generator().manual_seed(0)
    state = {}
    for k, v in FIDInceptionV3().state_dict().items():
        if k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        elif v.is_floating_point():
            state[k] = torch.randn(v.shape, generator=g) * 0.1
        else:
            state[k] = v
    return state


def test_fid_inception_loads_the_reference_layout_and_rejects_others(tmp_path):
    state = _random_inception_state()
    # Old checkpoints have no num_batches_tracked buffers: still accepted.
    torch.save(
        {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, tmp_path / "incep.pth"
    )
    loaded = FT.load_fid_inception(tmp_path / "incep.pth")
    feats = loaded.model(torch.from_numpy(_photos()["coffee"]).permute(2, 0, 1)[None].contiguous())
    assert feats.shape == (1, 2048)
    torch.save({"fc.weight": state["fc.weight"]}, tmp_path / "bad.pth")
    with pytest.raises(MissingWeightsError, match="not an FID Inception checkpoint"):
        FT.load_fid_inception(tmp_path / "bad.pth")


def _torch_fidelity_source() -> Path | None:
    """torch-fidelity's package folder, unpacked from its wheel (never installed: on the import path it makes
    `import torchmetrics` fail without torchvision). .ci/run unpacks it into the ignored .refs/;
    $ERASEKIT_TORCH_FIDELITY_SRC names another unpack."""
    root = Path(os.environ.get("ERASEKIT_TORCH_FIDELITY_SRC") or Path(__file__).resolve().parents[1] / ".refs"
                / "torch-fidelity")
    package = root / "torch_fidelity"
    return package if (package / "feature_extractor_inceptionv3.py").is_file() else None


@pytest.mark.skipif(
    _torch_fidelity_source() is None,
    reason="torch-fidelity's wheel is not unpacked in .refs/torch-fidelity (.ci/run does it: pip download "
    "--no-deps torch-fidelity==0.3.0, then unzip), nor at $ERASEKIT_TORCH_FIDELITY_SRC",
)
def test_fid_inception_equals_torch_fidelity(tmp_path, monkeypatch):
    # Load its modules from the unpacked folder without running its package __init__ (which imports
    # torchvision); the network definition is torch-fidelity's own code.
    root = _torch_fidelity_source()
    assert root is not None
    pkg = types.ModuleType("torch_fidelity")
    pkg.__path__ = [str(root)]
    monkeypatch.setitem(sys.modules, "torch_fidelity", pkg)
    ref_mod = importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")
    state = _random_inception_state()
    torch.save(state, tmp_path / "incep.pth")
    ref = ref_mod.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(tmp_path / "incep.pth")
    ).eval()  # as torch-fidelity's own feature extraction (utils.py) runs it: batch norm from running stats
    ours = FT.load_fid_inception(tmp_path / "incep.pth").model
    x = torch.from_numpy(np.stack([_photos()["chelsea"][:100, :150], _photos()["astronaut"][:100, :150]]))
    x = x.permute(0, 3, 1, 2).contiguous()
    assert torch.allclose(ours(x), ref(x)[0], atol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# Weights: resolution, checksums, unavailable
# ------------------------------------------------------------------------------------------------------------
def test_missing_weights_make_metrics_unavailable_with_reason(tmp_path, monkeypatch):
    monkeypatch.setenv(W.WEIGHTS_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        W.resolve("alexnet")
    suite = build_suite(["psnr", "lpips", "fid", "cmmd", "cfd", "clip"])
    assert suite["psnr"].unavailable is None and suite["psnr"].make is not None
    for name in ("lpips", "fid", "cmmd", "cfd", "clip"):
        assert suite[name].make is None
        assert "not found locally" in suite[name].unavailable
    assert "dinov2-giant" in suite["cfd"].unavailable


def test_checksums_are_verified_for_standard_names(tmp_path, monkeypatch):
    monkeypatch.setenv(W.WEIGHTS_DIR_ENV, str(tmp_path))
    (tmp_path / "alexnet-owt-7be5be79.pth").write_bytes(b"not the real file")
    with pytest.raises(MissingWeightsError, match="expected prefix 7be5be79"):
        W.resolve("alexnet")
    # The LPIPS heads ship inside torchmetrics: found there and verified against the full sha256.
    heads = W.resolve("lpips-alex-v0.1")
    assert heads.verified == "sha256" and heads.source.startswith("package:")
    # An explicit path is trusted and fingerprinted.
    explicit = W.resolve("alexnet", tmp_path / "alexnet-owt-7be5be79.pth")
    assert explicit.source == "explicit" and len(explicit.fingerprint) == 16


def test_weights_table_lists_every_file_with_a_checksum_or_pin():
    rows = W.weights_table()
    assert {r["key"] for r in rows} == set(W.METRIC_WEIGHTS)
    assert all(r["sha256"] for r in rows)


# ------------------------------------------------------------------------------------------------------------
# Crops and boxes
# ------------------------------------------------------------------------------------------------------------
def test_local_crop_box_procedure():
    m = np.zeros((200, 300), np.float32)
    m[50:90, 100:120] = 1
    assert local_crop_box(m) == (38, 78, 102, 142)
    m[50:150, 100:120] = 1  # 100×20 box -> side 150 centred on (100, 110), shifted to start at 0
    assert local_crop_box(m) == (25, 35, 175, 185)
    m2 = np.zeros((200, 300), np.float32)
    m2[0:5, 295:300] = 1  # tiny box at the corner: min side 64, shifted inside the image
    assert local_crop_box(m2) == (0, 236, 64, 300)
    assert local_crop_box(np.zeros((100, 50), np.float32)) == (25, 0, 75, 50)
    assert mask_box(m) == (100, 50, 120, 150)


# ------------------------------------------------------------------------------------------------------------
# CFD pieces
# ------------------------------------------------------------------------------------------------------------
def test_box_nms_keeps_best_of_overlapping_boxes():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    scores = torch.tensor([0.8, 0.9, 0.5])
    assert _box_nms(boxes, scores, 0.7) == [1, 2]


def test_filter_segments_drops_duplicates_and_contained():
    big = np.zeros((20, 20), bool)
    big[:, :10] = True
    dup = big.copy()
    dup[0, 0] = False
    inner = np.zeros_like(big)
    inner[2:5, 2:5] = True
    other = ~big
    kept = filter_segments([inner, dup, big, other])
    assert (
        len(kept) == 2
        and any(np.array_equal(k, big) for k in kept)
        and any(np.array_equal(k, other) for k in kept)
    )


def _tiny_dinov2():
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    return Dinov2Model(
        Dinov2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=224,
            patch_size=14,
        )
    ).eval()


def test_region_features_quirks_and_aligned_modes():
    model = _tiny_dinov2()
    img = _photos()["coffee"]
    region = np.zeros(img.shape[:2], bool)
    region[: img.shape[0] // 2] = True  # top half
    from PIL import Image

    # Aligned mode by hand: resize to 224, ImageNet normalisation, patch tokens 1..256 under the 16×16 mask.
    x = np.asarray(Image.fromarray(img).resize((224, 224)), np.float32) / 255
    t = (
        torch.from_numpy(x).permute(2, 0, 1)[None] - torch.tensor(IMAGENET_DEFAULT_MEAN)[:, None, None]
    ) / torch.tensor(IMAGENET_DEFAULT_STD)[:, None, None]
    with torch.no_grad():
        h = model(pixel_values=t).last_hidden_state[0].double().numpy()
    h = h / np.linalg.norm(h, axis=-1, keepdims=True)
    sel = (
        np.asarray(Image.fromarray(region.astype(np.uint8) * 255).resize((16, 16), Image.NEAREST)).flatten()
        > 127
    )
    expected = h[1:][sel].mean(0)
    expected /= np.linalg.norm(expected)
    assert np.allclose(RegionFeatures(model)(img, region), expected, atol=1e-6)
    # Quirk mode differs (processor crop and the one-token shift) — the switch changes the numbers.
    assert not np.allclose(RegionFeatures(model, reference_quirks=True)(img, region), expected, atol=1e-3)


def test_cfd_score_context_and_hallucination_terms():
    model = _tiny_dinov2()
    img = _photos()["chelsea"]
    mask = np.zeros(img.shape[:2], np.float32)
    mask[30:90, 40:120] = 1
    comp = mask > 0.5
    nested = np.zeros_like(comp)
    nested[45:75, 60:100] = True
    boundary = np.zeros_like(comp)
    boundary[20:100, 30:55] = True  # crosses the mask edge, adjacent to the nested segment
    feats = RegionFeatures(model)
    no_segments = cfd_score(img, mask, [], feats)
    assert no_segments["cfd_hallucination"] == 0.0 and no_segments["cfd"] == no_segments["cfd_context"] > 0
    with_segments = cfd_score(img, mask, [nested, boundary], feats)
    assert with_segments["cfd_hallucination"] > 0
    assert with_segments["cfd"] == pytest.approx(
        with_segments["cfd_context"] + with_segments["cfd_hallucination"]
    )
    assert math.isnan(cfd_score(img, np.zeros_like(mask), [], feats)["cfd"])


def test_sam_automatic_masks_run_through_a_tiny_sam(tmp_path):
    from transformers import SamConfig, SamModel
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    from erasekit.eval.cfd import SamSettings

    torch.manual_seed(0)
    cfg = SamConfig(
        vision_config={
            "hidden_size": 32,
            "output_channels": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 128,
            "patch_size": 16,
            "window_size": 4,
            "global_attn_indexes": [1],
            "num_pos_feats": 16,
            "mlp_dim": 64,
        },
        prompt_encoder_config={
            "hidden_size": 32,
            "image_size": 128,
            "patch_size": 16,
            "mask_input_channels": 4,
        },
        mask_decoder_config={
            "hidden_size": 32,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
    )
    SamModel(cfg).save_pretrained(tmp_path / "sam")
    SamImageProcessorPil(size={"longest_edge": 128}, pad_size={"height": 128, "width": 128}).save_pretrained(
        tmp_path / "sam"
    )
    loaded = FT.load_sam(tmp_path / "sam")
    img = _photos()["coffee"]
    # Thresholds at zero keep every prediction, so the whole path (grid, decode, filter, NMS, RLE) is
    # exercised.
    masks = sam_automatic_masks(
        img,
        loaded.model,
        loaded.extra["processor"],
        SamSettings(points_per_side=2, pred_iou_thresh=-1e9, stability_score_thresh=-1e9),
    )
    assert masks and all(m.shape == img.shape[:2] and m.dtype == bool for m in masks)


# ------------------------------------------------------------------------------------------------------------
# CLIP distance / accuracy@k (Inst-Inpaint procedure) through a tiny CLIP folder
# ------------------------------------------------------------------------------------------------------------
def _tiny_clip_full(path: Path) -> Path:
    from transformers import CLIPConfig, CLIPModel

    from erasekit.testing.pipelines import _clip_tokenizer

    tok = _clip_tokenizer()
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "bos_token_id": len(tok) - 2,
            "eos_token_id": len(tok) - 1,
            "pad_token_id": len(tok) - 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_clip_distance_and_accuracy_by_hand(tmp_path):
    from PIL import Image

    from erasekit.eval.datasets import label_from_meta
    from erasekit.eval.metrics import CLIPRemovalMetric, inst_inpaint_crop

    loaded = FT.load_clip("clip-vit-b32", _tiny_clip_full(tmp_path / "clip"), with_text=True)
    classes = ["cat", "dog", "car", "tree", "cup", "lamp"]
    metric = CLIPRemovalMetric(loaded.model, loaded.extra["tokenizer"], classes)
    img = _photos()["chelsea"]
    mask = _mask(img.shape[:2])
    same = metric.update(Sample("a", img, None, mask, img))
    assert same["clip_dist"] == pytest.approx(0.0, abs=1e-6)
    assert same["clip_acc@1"] == same["clip_acc@5"] == 0.0  # nothing changed: the object is "still there"

    out = _degraded(img, 3)
    got = metric.update(Sample("b", out, None, mask, img))
    # By hand: crops, CLIP preprocessing, embeddings, prompts, rankings.
    box = (35, 25, 100, 70)
    crops = [Image.fromarray(inst_inpaint_crop(img, box)), Image.fromarray(inst_inpaint_crop(out, box))]
    processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    with torch.no_grad():
        pixels = processor(images=crops, return_tensors="pt")["pixel_values"]
        e = loaded.model.get_image_features(pixel_values=pixels).pooler_output
        tokens = loaded.extra["tokenizer"](
            [f"a photo of a {c}" for c in classes], padding=True, return_tensors="pt"
        )
        t = loaded.model.get_text_features(**tokens).pooler_output
    e, t = e / e.norm(dim=-1, keepdim=True), t / t.norm(dim=-1, keepdim=True)
    assert got["clip_dist"] == pytest.approx(float(1 - (e[0] * e[1]).sum()), abs=1e-6)
    top1 = int((e[0] @ t.T).argmax())
    ranked = torch.argsort(e[1] @ t.T, descending=True).tolist()
    for k in (1, 3, 5):
        assert got[f"clip_acc@{k}"] == (100.0 if top1 not in ranked[:k] else 0.0)
    assert label_from_meta({"instruction": "Remove the red ball"}) == "red ball"
    assert label_from_meta({"class": "cup"}) == "cup" and label_from_meta({}) is None


@pytest.mark.parametrize("shape", [(67, 101, 3), (101, 67, 3), (3, 50, 3), (1, 7, 3), (224, 224, 3)])
def test_clip_eval_pixels_equal_the_clip_image_processor(shape):
    """Crops of any shape (also 1 or 3 px high, which would look channels-first) give the pixels of
    transformers' CLIP processor on the PIL image."""
    from PIL import Image

    crop = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    expected = processor(images=Image.fromarray(crop), return_tensors="pt")["pixel_values"]
    assert torch.equal(FT.clip_eval_pixels([crop], 224), expected)


def test_clip_eval_pixels_follow_openai_clip_preprocessing():
    """OpenAI's CLIP transform, written from torchvision's definitions: Resize(224, bicubic) makes the short
    side 224 and the long side int(224 · long / short), truncated (101×67 -> 337×224, where rounding would
    give 338); CenterCrop(224) starts at int(round((337 - 224) / 2)) = 56; ToTensor; Normalize(CLIP mean,
    std)."""
    from PIL import Image

    crop = np.random.default_rng(1).integers(0, 256, (67, 101, 3), dtype=np.uint8)
    long_side = int(224 * 101 / 67)
    assert (long_side, round(224 * 101 / 67)) == (337, 338)
    im = Image.fromarray(crop).resize((long_side, 224), Image.BICUBIC)
    left = round((long_side - 224) / 2.0)
    x = torch.from_numpy(np.asarray(im.crop((left, 0, left + 224, 224)), np.float32) / 255).permute(2, 0, 1)
    mean, std = torch.tensor(OPENAI_CLIP_MEAN), torch.tensor(OPENAI_CLIP_STD)
    expected = (x - mean[:, None, None]) / std[:, None, None]
    torch.testing.assert_close(FT.clip_eval_pixels([crop], 224)[0], expected, rtol=0, atol=1e-6)


def test_cfd_quirk_pixels_equal_the_dinov2_image_processor():
    """The reference feeds DINOv2 through its AutoImageProcessor (BitImageProcessor: short side 256 bicubic,
    centre crop 224, ImageNet mean/std) after a 224×224 resize; quirk mode reproduces those pixels."""
    from PIL import Image
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    processor = BitImageProcessorPil(
        size={"shortest_edge": 256},
        crop_size={"height": 224, "width": 224},
        resample=3,
        image_mean=IMAGENET_DEFAULT_MEAN,
        image_std=IMAGENET_DEFAULT_STD,
    )
    img = Image.fromarray(_photos()["astronaut"])
    expected = processor(images=img.resize((224, 224)), return_tensors="pt")["pixel_values"]
    got = RegionFeatures(None, reference_quirks=True).pixels(img)
    assert torch.allclose(got, expected, atol=1e-5)


def test_fetch_hints_name_the_cli_the_installed_huggingface_hub_ships():
    """huggingface_hub ships `hf` (`huggingface-cli` is gone): every Hub weight hint says `hf download`."""
    from importlib.metadata import entry_points

    scripts = {e.name for e in entry_points(group="console_scripts") if e.value.startswith("huggingface_hub")}
    assert "hf" in scripts
    hub_specs = [spec for spec in W.METRIC_WEIGHTS.values() if spec.hub_id]
    assert hub_specs
    for spec in hub_specs:
        assert spec.fetch_hint().startswith(f"hf download {spec.hub_id}")
    package = Path(W.__file__).resolve().parents[1]
    sources = [package / "methods/osor/train/discriminator.py", Path(W.__file__)]
    assert not [str(p) for p in sources if "huggingface-cli" in p.read_text()]


def test_cmmd_estimator_equals_scikit_learn_rbf_kernel_mmd():
    """CMMD's MMD (google-research/cmmd distance.py: biased estimator, Gaussian RBF, σ = 10, ×1000) against
    scikit-learn's RBF kernel, on embeddings shaped like CLIP's (unit vectors)."""
    from sklearn.metrics.pairwise import rbf_kernel

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 24)), rng.normal(0.2, 1.0, size=(30, 24))
    x, y = x / np.linalg.norm(x, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1, keepdims=True)
    gamma = 1.0 / (2 * 10.0**2)
    expected = 1000.0 * (rbf_kernel(x, x, gamma=gamma).mean() + rbf_kernel(y, y, gamma=gamma).mean()
                         - 2 * rbf_kernel(x, y, gamma=gamma).mean())
    assert mmd_rbf(x, y) == pytest.approx(expected, rel=1e-9)
    assert expected > 0

"""OSOR discriminator: exact occupancy targets, the open_clip ConvNeXt trunk in transformers, heads,
freezing."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch.nn.functional as F
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from erasekit.methods.osor.train import discriminator as D
from erasekit.types import InvalidInputError, MissingWeightsError

# A tiny open_clip ConvNeXt tower: timm key names under visual.trunk., two blocks in stage 0, one elsewhere.
DIMS, DEPTHS, EPS = (8, 16, 24, 32), (2, 1, 1, 1), 1e-5


def tiny_openclip_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    sd = {
        "visual.trunk.stem.0.weight": r(DIMS[0], 3, 4, 4),
        "visual.trunk.stem.0.bias": r(DIMS[0]),
        "visual.trunk.stem.1.weight": 1 + r(DIMS[0]),
        "visual.trunk.stem.1.bias": r(DIMS[0]),
        "visual.trunk.head.norm.weight": 1 + r(DIMS[-1]),
        "visual.trunk.head.norm.bias": r(DIMS[-1]),
        # parts of an open_clip checkpoint that are not the feature trunk
        "visual.head.proj.weight": r(12, DIMS[-1]),
        "text.token_embedding.weight": r(10, 12),
        "logit_scale": torch.tensor(4.6),
    }
    for s, (dim, depth) in enumerate(zip(DIMS, DEPTHS)):
        p = f"visual.trunk.stages.{s}."
        if s:
            sd[p + "downsample.0.weight"], sd[p + "downsample.0.bias"] = 1 + r(DIMS[s - 1]), r(DIMS[s - 1])
            sd[p + "downsample.1.weight"], sd[p + "downsample.1.bias"] = r(dim, DIMS[s - 1], 2, 2), r(dim)
        for b in range(depth):
            q = p + f"blocks.{b}."
            sd.update(
                {
                    q + "conv_dw.weight": r(dim, 1, 7, 7),
                    q + "conv_dw.bias": r(dim),
                    q + "norm.weight": 1 + r(dim),
                    q + "norm.bias": r(dim),
                    q + "mlp.fc1.weight": r(4 * dim, dim),
                    q + "mlp.fc1.bias": r(4 * dim),
                    q + "mlp.fc2.weight": r(dim, 4 * dim),
                    q + "mlp.fc2.bias": r(dim),
                    q + "gamma": 0.5 + r(dim),
                }
            )
    return sd


def timm_reference_features(sd: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """timm's ConvNeXt forward written with torch.nn.functional, straight from the timm key names."""
    t = {k[len("visual.trunk.") :]: v for k, v in sd.items() if k.startswith("visual.trunk.")}

    def ln2d(h, w, b):
        return F.layer_norm(h.permute(0, 2, 3, 1), (h.shape[1],), w, b, EPS).permute(0, 3, 1, 2)

    h = F.conv2d(x, t["stem.0.weight"], t["stem.0.bias"], stride=4)
    h = ln2d(h, t["stem.1.weight"], t["stem.1.bias"])
    out = []
    for s, depth in enumerate(DEPTHS):
        p = f"stages.{s}."
        if s:
            h = ln2d(h, t[p + "downsample.0.weight"], t[p + "downsample.0.bias"])
            h = F.conv2d(h, t[p + "downsample.1.weight"], t[p + "downsample.1.bias"], stride=2)
        for b in range(depth):
            q = p + f"blocks.{b}."
            y = F.conv2d(h, t[q + "conv_dw.weight"], t[q + "conv_dw.bias"], padding=3, groups=h.shape[1])
            y = F.layer_norm(
                y.permute(0, 2, 3, 1), (h.shape[1],), t[q + "norm.weight"], t[q + "norm.bias"], EPS
            )
            y = F.linear(
                F.gelu(F.linear(y, t[q + "mlp.fc1.weight"], t[q + "mlp.fc1.bias"])),
                t[q + "mlp.fc2.weight"],
                t[q + "mlp.fc2.bias"],
            )
            h = h + (t[q + "gamma"] * y).permute(0, 3, 1, 2)
        out.append(h)
    return out


@pytest.fixture(scope="module")
def trunk_file(tmp_path_factory):
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("openclip") / "open_clip_model.safetensors"
    save_file(tiny_openclip_state(), str(path))
    return path


# ------------------------------------------------------------------------------------------------------------
# targets
# ------------------------------------------------------------------------------------------------------------
def test_occupancy_targets_are_area_fractions():
    mask = np.zeros((8, 8), np.float32)
    mask[0:3, 0:3] = 1  # 9 of the 16 pixels of the top-left 4×4 patch
    mask[4:8, 6:8] = 1  # half of the bottom-right patch
    for mode in ("occupancy", "exact_occupancy"):  # the two agree when the grid divides the image
        got = D.PatchTargets(mode).grid(mask, (2, 2))
        np.testing.assert_allclose(got, [[9 / 16, 0], [0, 8 / 16]], atol=1e-6)
    # a grid that does not divide the mask: 6 px -> 4 cells of 1.5 px; column 0 covers 2/3 of cell 0 exactly,
    # while the authors' torch area pooling (adaptive average pooling) averages whole pixels 0..1 -> 1/2
    col = np.zeros((6, 6), np.float32)
    col[:, 0] = 1
    np.testing.assert_allclose(
        D.PatchTargets("exact_occupancy").grid(col, (4, 4)), np.tile([2 / 3, 0, 0, 0], (4, 1)), atol=1e-6
    )
    authors = D.PatchTargets().grid(col, (4, 4))
    np.testing.assert_allclose(authors, np.tile([1 / 2, 0, 0, 0], (4, 1)), atol=1e-6)


def test_default_targets_equal_torch_area_interpolation():
    """The authors' F.interpolate(mask, size, mode="area") equals adaptive average pooling, batched."""
    mask = (torch.rand(3, 1, 37, 53, generator=torch.Generator().manual_seed(0)) > 0.6).float()
    sizes = [(9, 13), (5, 7), (2, 3)]
    for got, size in zip(D.PatchTargets()(mask, sizes), sizes):
        torch.testing.assert_close(got, torch.nn.functional.adaptive_avg_pool2d(mask, size)[:, 0])


def test_patch_targets_per_scale_batch_and_modes():
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, 0, :6, :6] = 1
    occ = D.PatchTargets("occupancy")(mask, [(4, 4), (2, 2)])
    assert [t.shape for t in occ] == [(2, 4, 4), (2, 2, 2)]
    assert occ[1][0, 0, 0].item() == pytest.approx(36 / 64)
    assert occ[0][0, 1, 1].item() == pytest.approx(4 / 16) and occ[0][1].sum() == 0
    hard = D.PatchTargets("hard")(mask, [(2, 2)])[0]
    assert set(hard.unique().tolist()) <= {0.0, 1.0} and hard[0, 0, 0] == 1.0
    soft = D.PatchTargets("soft", sigma=1.0)(mask, [(4, 4)])[0]
    assert 0 < soft[0, 2, 2] < 1
    with pytest.raises(InvalidInputError):
        D.PatchTargets("fuzzy")


# ------------------------------------------------------------------------------------------------------------
# trunk
# ------------------------------------------------------------------------------------------------------------
def test_openclip_checkpoint_converts_to_transformers_convnext(trunk_file):
    config, converted = D.convert_openclip_convnext(tiny_openclip_state())
    assert list(config.hidden_sizes) == list(DIMS) and list(config.depths) == list(DEPTHS)
    assert "encoder.stages.0.layers.1.layer_scale_parameter" in converted
    assert not any(k.startswith(("visual", "text")) for k in converted)

    trunk = D.ConvNextTrunk.from_openclip(trunk_file, norm_eps=EPS)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    got = trunk(x)
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    expected = timm_reference_features(tiny_openclip_state(), ((x + 1) / 2 - mean) / std)
    assert [tuple(f.shape[1:]) for f in got] == [(8, 16, 16), (16, 8, 8), (24, 4, 4), (32, 2, 2)]
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_trunk_from_folder_and_missing_hub_weights(trunk_file, tmp_path, monkeypatch):
    assert D.resolve_trunk_file(trunk_file.parent) == trunk_file
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="hf download"):
        D.resolve_trunk_file("laion/not-downloaded-here")
    with pytest.raises(MissingWeightsError):
        D.resolve_trunk_file(tmp_path)  # a folder without open_clip weights
    with pytest.raises(InvalidInputError):
        D.convert_openclip_convnext({"visual.proj": torch.zeros(2)})


# ------------------------------------------------------------------------------------------------------------
# heads and the whole discriminator
# ------------------------------------------------------------------------------------------------------------
def test_blurpool_is_the_authors_five_tap_reflect_filter():
    """vision_aided_loss BlurPool(filt_size=5, pad_type="reflect", stride=2): a [1,4,6,4,1]² / 256 filter
    over a reflect-padded map, sampled every second pixel. Reference: kornia's same-size filter2d with
    reflect borders, subsampled."""
    from kornia.filters import filter2d

    pool = D.BlurPool2d(4)
    taps = torch.tensor([1.0, 4, 6, 4, 1])
    torch.testing.assert_close(pool.kernel[0, 0], torch.outer(taps, taps) / 256)
    x = torch.randn(2, 4, 11, 8, generator=torch.Generator().manual_seed(1))
    reference = filter2d(x, (torch.outer(taps, taps) / 256)[None], border_type="reflect")[..., ::2, ::2]
    torch.testing.assert_close(pool(x), reference)
    assert pool(x).shape == (2, 4, 6, 4)  # ceil(H/2) × ceil(W/2)
    # maps too small for reflect padding (toy images only) fall back to replication: constants stay constant
    tiny = torch.full((1, 4, 2, 2), 1.5)
    torch.testing.assert_close(pool(tiny), torch.full((1, 4, 1, 1), 1.5))


def test_erasekit_blurpool_option_is_a_normalised_binomial_lowpass():
    pool = D.BlurPool2d(3, kind="erasekit")
    k = pool.kernel[0, 0]
    expected = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64
    torch.testing.assert_close(k, expected)
    const = torch.full((1, 3, 7, 5), 2.5)
    out = pool(const)
    assert out.shape == (1, 3, 4, 3)  # ceil(H/2) × ceil(W/2)
    torch.testing.assert_close(out, torch.full_like(out, 2.5))
    assert pool(torch.ones(1, 3, 1, 1)).shape == (1, 3, 1, 1)


def test_blurpool_equals_kornia_away_from_the_border():
    """Same kernel, padding amounts and stride as kornia's blur_pool2d: where no tap reaches the padding the
    outputs are identical; at the border kornia's zero padding darkens a constant map, replicate padding does
    not."""
    from kornia.filters import blur_pool2d

    x = torch.randn(2, 5, 16, 12, generator=torch.Generator().manual_seed(0))
    ours, theirs = D.BlurPool2d(5, kind="erasekit")(x), blur_pool2d(x, 4)
    assert ours.shape == theirs.shape == (2, 5, 8, 6)
    assert torch.equal(ours[..., 1:-1, 1:-1], theirs[..., 1:-1, 1:-1])
    const = torch.ones(1, 5, 8, 8)
    assert torch.equal(D.BlurPool2d(5, kind="erasekit")(const), torch.ones(1, 5, 4, 4))
    assert blur_pool2d(const, 4)[0, 0, 0, 0] < 1


def test_discriminator_scales_and_frozen_trunk(trunk_file):
    disc = D.OccupancyDiscriminator(D.ConvNextTrunk.from_openclip(trunk_file, norm_eps=EPS), hidden=16)
    disc.train()
    assert not disc.trunk.training  # the frozen trunk stays in eval mode
    x = (torch.rand(1, 3, 128, 128) * 2 - 1).requires_grad_(True)
    logits = disc(x)
    assert [tuple(t.shape) for t in logits] == [(1, 16, 16), (1, 8, 8), (1, 4, 4), (1, 2, 2)]  # strides 8..64
    sum(t.sum() for t in logits).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # the generator gets gradients through the trunk
    assert all(p.grad is None for p in disc.trunk.parameters())
    assert all(p.grad is not None for p in disc.heads.parameters())
    # spectral normalisation on both convolutions of every head
    for head in disc.heads:
        assert hasattr(head.conv, "parametrizations") and hasattr(head.out, "parametrizations")

"""Soft mask values from mask files reach OSOR (OSOR fidelity issue, item 18), and nothing else changes.

The authors read a mask file ``/255`` and max-pool it to the latent grid; erasekit's readers binarise. The
soft values travel beside the binary mask (``io.read_mask_pair`` -> ``RemovalRequest.soft_mask``) only to
methods that declare ``consumes_soft_mask``. References: Pillow's own decode of the file ``/255`` and torch's
``max_pool2d``; today's binary rule for JPEG masks (values of 128 and above) written out independently.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from erasekit import io
from erasekit.hd import HDStrategy
from erasekit.methods.osor.remover import REMOVERS
from erasekit.testing import tiny_pipeline
from erasekit.testing.osor import TINY_BACKBONE, write_tiny_osor_weights
from erasekit.types import RemovalRequest

H, W = 64, 96


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A photo and a JPEG mask: a solid object plus faint strokes far from it (values well under 128)."""
    folder = tmp_path_factory.mktemp("soft-mask-files")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(folder / "photo.png")
    mask = np.zeros((H, W), np.uint8)
    mask[16:32, 24:56] = 255
    mask[48:56, 72:88] = 20  # faint: below the binary rule, a soft value for the authors
    Image.fromarray(mask).save(folder / "noisy.jpg", quality=90)
    decoded = np.asarray(Image.open(folder / "noisy.jpg").convert("L"))
    assert decoded[48:56, 72:88].max() > 0 and decoded[40:, 64:].max() < 128  # the premise of these tests
    return folder / "photo.png", folder / "noisy.jpg", decoded


def test_read_mask_pair_keeps_the_binary_rule_and_gives_values_over_255(files):
    _, jpeg, decoded = files
    binary, soft = io.read_mask_pair(jpeg)
    assert np.array_equal(binary, io.read_mask(jpeg))
    assert np.array_equal(binary, (decoded >= 128).astype(np.float32))  # today's JPEG rule
    assert np.array_equal(soft, decoded.astype(np.float32) / np.float32(255))
    assert np.array_equal(io.read_mask(jpeg, soft=True), soft)
    # A {0, 1} label mask stays binary (not 1/255); an alpha mask reads its alpha; a resize samples both
    labels = (decoded >= 128).astype(np.uint8)
    assert np.array_equal(io.read_mask(labels, soft=True), labels.astype(np.float32))
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 3] = decoded
    assert np.array_equal(io.read_mask(rgba, soft=True), soft)
    small_binary, small_soft = io.read_mask_pair(jpeg, shape=(32, 48), resize=True)
    assert np.array_equal(small_binary, io.read_mask(jpeg, shape=(32, 48), resize=True))
    assert np.array_equal(small_soft > 0.5, small_binary > 0)


def _pooled(values: np.ndarray, latent: torch.Tensor) -> torch.Tensor:
    """The authors' rule: the mask /255 (given), max-pooled to the latent grid."""
    kernel = values.shape[0] // latent.shape[-2]
    return F.max_pool2d(torch.from_numpy(np.ascontiguousarray(values, np.float32))[None, None], kernel)


@pytest.mark.slow
def test_cli_osor_conditions_on_the_jpeg_soft_values_and_pastes_the_binary_region(
    files, osor_conditioning, tmp_path
):
    from erasekit.cli import main
    from erasekit.testing import write_tiny_weights

    photo, jpeg, decoded = files
    weights = write_tiny_weights("osor-sdxl", tmp_path / "weights")
    flags = [arg for key, value in weights.items() for arg in (f"--{key}", str(value))]
    run = ["remove", str(photo), "--mask", str(jpeg), "--method", "osor-sdxl", "--seed", "0", *flags,
           "-O", "blend=mask"]
    assert main([*run, "-o", str(tmp_path / "soft.png")]) == 0
    [soft_cond] = osor_conditioning
    assert torch.equal(soft_cond, _pooled(decoded / np.float32(255), soft_cond))
    # Paste-back: the latent cells of the binary mask only; the faint strokes' cells stay bit-identical.
    binary = (decoded >= 128).astype(np.float32)
    cells = _pooled(binary, soft_cond)
    region = F.interpolate(cells, size=(H, W), mode="nearest")[0, 0].numpy() > 0
    out = np.asarray(Image.open(tmp_path / "soft.png").convert("RGB"))
    original = np.asarray(Image.open(photo).convert("RGB"))
    assert np.array_equal(out[~region], original[~region])
    assert not np.array_equal(out[region], original[region])

    assert main([*run, "-O", "soft_mask=false", "-o", str(tmp_path / "binary.png")]) == 0
    assert torch.equal(osor_conditioning[-1], cells)  # today's binarised conditioning
    out_binary = np.asarray(Image.open(tmp_path / "binary.png").convert("RGB"))
    assert np.array_equal(out_binary[~region], original[~region])
    assert not np.array_equal(out_binary, out)


@pytest.mark.parametrize("method", ["telea", "patchmatch"])
def test_other_methods_see_exactly_the_binarised_jpeg(files, method, tmp_path):
    from erasekit.cli import main

    photo, jpeg, decoded = files
    png = tmp_path / "binary.png"
    Image.fromarray(((decoded >= 128) * 255).astype(np.uint8)).save(png)  # today's rule, written out
    for mask, out in ((jpeg, "from_jpeg.png"), (png, "from_png.png")):
        assert main(["remove", str(photo), "--mask", str(mask), "--method", method, "--seed", "0",
                     "-o", str(tmp_path / out)]) == 0
    a = np.asarray(Image.open(tmp_path / "from_jpeg.png"))
    b = np.asarray(Image.open(tmp_path / "from_png.png"))
    assert np.array_equal(a, b)


# ------------------------------------------------------------------------------------------------------------
# Through the base: HD crop and dilation
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def remover(tmp_path_factory):
    path = write_tiny_osor_weights("sdxl", tmp_path_factory.mktemp("w") / "sdxl.pth", phase=1)
    return REMOVERS["sdxl"](pipeline=copy.deepcopy(tiny_pipeline(TINY_BACKBONE["sdxl"])), weights=path)


def _request(**kwargs) -> RemovalRequest:
    image = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), np.float32)
    mask[16:32, 24:56] = 1
    soft = mask * np.float32(0.75)
    soft[10, 18] = 3 / 255  # inside the crop box, outside the mask
    soft[60, 90] = 9 / 255  # outside the crop box
    return RemovalRequest(image, mask, seed=0, soft_mask=soft, **kwargs)


def test_the_crop_strategy_crops_the_soft_mask_as_the_binary_one(remover, osor_conditioning):
    request = _request(hd_strategy=HDStrategy("crop", crop_trigger=32, crop_margin=8))
    remover(request)
    [cond] = osor_conditioning
    assert request.soft_mask is not None
    assert torch.equal(cond, _pooled(request.soft_mask[8:40, 16:64], cond))  # the box: mask ± 8 px
    remover(_request(hd_strategy=HDStrategy("resize", resize_limit=48)))  # scaled: binary conditioning
    assert set(torch.unique(osor_conditioning[-1]).tolist()) <= {0.0, 1.0}


def test_dilation_conditions_the_added_ring_as_one_and_keeps_soft_values_elsewhere(
    remover, osor_conditioning
):
    import cv2

    request = _request(dilate=2)
    remover(request)
    assert request.soft_mask is not None
    dilated = cv2.dilate(request.mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))) > 0
    expected = np.where(dilated & (request.mask == 0), np.float32(1), request.soft_mask)
    assert torch.equal(osor_conditioning[-1], _pooled(expected, osor_conditioning[-1]))


@pytest.mark.parametrize(("method", "gets_soft"), [("osor-sdxl", True), ("telea", False)])
def test_the_server_passes_soft_values_only_to_methods_that_consume_them(files, method, gets_soft):
    from erasekit.server.processing import prepare
    from erasekit.server.schemas import RemoveOptions
    from erasekit.server.settings import ServerSettings
    from erasekit.server.uploads import RemoveInput

    photo, jpeg, decoded = files
    upload = RemoveInput(RemoveOptions(method=method), photo.read_bytes(), jpeg.read_bytes())
    request = prepare(upload, ServerSettings()).request
    assert np.array_equal(request.mask, (decoded >= 128).astype(np.float32))
    if gets_soft:
        assert request.soft_mask is not None
        assert np.array_equal(request.soft_mask, decoded.astype(np.float32) / np.float32(255))
    else:
        assert request.soft_mask is None

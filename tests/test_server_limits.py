"""Issue 18 outside the server: dilation costs O(pixels) whatever the radius and equals the disk dilation;
image reads accept a small allow-list of formats."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage.morphology import disk

from erasekit import io as eio
from erasekit import masks as M
from erasekit.types import InvalidInputError, RemovalRequest


def _disk_dilation(mask: np.ndarray, radius: int) -> np.ndarray:
    """The reference: OpenCV's max filter with scikit-image's Euclidean disk, the implementation before."""
    return cv2.dilate(mask.astype(np.float32), disk(radius).astype(np.uint8),
                      borderType=cv2.BORDER_CONSTANT, borderValue=0)


@pytest.mark.parametrize("seed", range(12))
def test_dilation_equals_the_disk_dilation_on_random_masks_and_radii(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(20, 160, size=2)
    mask = (rng.random((h, w)) < rng.choice([0.0005, 0.005, 0.05])).astype(np.float32)
    mask[rng.integers(0, h), rng.integers(0, w)] = 1.0
    for radius in (1, 2, 3, int(rng.integers(4, 20)), int(rng.integers(20, 90))):
        expected = _disk_dilation(mask, radius)
        np.testing.assert_array_equal(M.dilate(mask, radius), expected, err_msg=f"r={radius}")


def test_soft_masks_are_max_filtered_like_the_disk_dilation():
    rng = np.random.default_rng(7)
    mask = rng.choice(np.array([0.0, 0.25, 0.5, 1.0], np.float32), size=(60, 70), p=[0.97, 0.01, 0.01, 0.01])
    for radius in (1, 4, 11):
        np.testing.assert_array_equal(M.dilate(mask, radius), _disk_dilation(mask, radius))


def test_a_radius_past_the_diagonal_covers_the_image_and_an_empty_mask_stays_empty():
    mask = np.zeros((40, 50), np.float32)
    assert not M.dilate(mask, 10**6).any()
    mask[3, 4] = 1
    assert M.dilate(mask, 10**6).all()
    np.testing.assert_array_equal(M.dilate(mask, 60), _disk_dilation(mask, 60))


def test_large_radii_are_decided_exactly_at_the_rim():
    """Far from the mask OpenCV's float32 distances are a few 1e-4 off; the rim is settled in integers."""
    mask = np.zeros((1, 3000), np.float32)
    mask[0, 0] = 1
    out = M.dilate(mask, 2500)
    assert out[0, 2500] == 1 and out[0, 2501] == 0
    tall = np.zeros((2100, 2100), np.float32)
    tall[0, 0] = 1
    # 1400² + 1400² = 3 920 000 ≤ 1980² = 3 920 400 < 1400² + 1401² = 3 922 801
    rim = M.dilate(tall, 1980)
    assert rim[1400, 1400] == 1 and rim[1400, 1401] == 0 and rim[1401, 1400] == 0


# ---- Item 8: the image format allow-list ------------------------------------------------------------------
def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF"])
def test_photo_formats_are_read_by_default(fmt):
    assert eio.read_image(_encoded(fmt)).format == fmt


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "JPEG2000", "EPS"])
def test_other_formats_are_refused_by_default_with_a_clear_error(fmt, monkeypatch, tmp_path):
    monkeypatch.delenv(eio.EXTRA_FORMATS_ENV, raising=False)
    data = _encoded(fmt) if fmt != "EPS" else b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 20 16\n"
    opened = []
    monkeypatch.setattr(Image.Image, "load", lambda self: opened.append(self.format))
    for source in (data, _write(tmp_path / f"x.{fmt.lower()}", data)):
        with pytest.raises(InvalidInputError, match=f"looks like {fmt}.*{eio.EXTRA_FORMATS_ENV}={fmt}"):
            eio.read_image(source)
        with pytest.raises(InvalidInputError, match="not accepted by default"):
            eio.read_mask(source)
    assert opened == []  # no reader of a refused format ever decoded a byte


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_other_formats_are_read_when_opted_in(monkeypatch):
    assert eio.read_image(_encoded("PPM"), extra_formats=["ppm"]).format == "PPM"
    monkeypatch.setenv(eio.EXTRA_FORMATS_ENV, "ICO, PPM")
    assert eio.read_image(_encoded("ICO")).format == "ICO"
    monkeypatch.setenv(eio.EXTRA_FORMATS_ENV, "all")
    assert eio.read_image(_encoded("JPEG2000")).format == "JPEG2000"


def test_a_huge_dilation_from_the_library_is_a_clear_error_not_memory():
    """`--dilate 100000` used to ask for a 298 GiB disk; the radius is now cut at the image's diagonal."""
    import erasekit

    image = np.full((48, 64, 3), 120, np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[20:24, 30:34] = 255
    with pytest.raises(InvalidInputError, match="whole image"):
        erasekit.remove(image, mask, method="telea", dilate=100000)


def test_refiners_travel_to_a_child_process_as_text_only_when_that_is_exact():
    from erasekit.refiners import parse_refine
    from erasekit.server.isolation import refine_text

    request = RemovalRequest(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32),
                             refine=parse_refine("color-match:ring=8,poisson"))
    text = refine_text(request)
    assert [r.describe() for r in parse_refine(text)] == [r.describe() for r in request.refine]

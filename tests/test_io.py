"""erasekit.io: each reading, validation and writing rule, on real photos from scikit-image where pixels
matter."""

from __future__ import annotations

import io as _io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile, JpegImagePlugin
from skimage import data
from skimage.color import rgb2lab

from erasekit import io
from erasekit.types import ErasekitError, InvalidInputError, ResourceLimitError

ORIENTATION = 0x0112
EXIF_IFD = 0x8769
MAKE, MODEL, DATETIME_ORIGINAL = 0x010F, 0x0110, 0x9003


# ------------------------------------------------------------------------------------------------------------
# Fixtures: real photos, metadata, hand-made files
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _no_env_limit(monkeypatch):
    monkeypatch.delenv(io.MAX_PIXELS_ENV, raising=False)


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    return data.chelsea()  # 300×451 RGB


@pytest.fixture(scope="module")
def coffee_small() -> np.ndarray:
    return data.coffee()[100:164, 200:280]  # 64×80 crop keeps the tests quick


SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # bytes embed the creation time


def srgb_icc() -> bytes:
    return SRGB_ICC


def camera_exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE] = "erasekit-test"
    exif[MODEL] = "Cam 1"
    exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = "2024:05:01 12:00:00"
    if orientation is not None:
        exif[ORIENTATION] = orientation
    return exif


def _pad4(body: bytes) -> bytes:
    return body + b"\0" * (-len(body) % 4)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def cmyk_icc() -> bytes:
    """A tiny but valid ICC v2 CMYK printer profile (lut8 A2B0, CMYK -> Lab), built here because
    Pillow/LittleCMS can only create RGB/Lab/XYZ profiles and no CMYK profile ships with the test
    dependencies."""
    text = b"erasekit test CMYK\0"
    desc = (
        b"desc"
        + bytes(4)
        + struct.pack(">I", len(text))
        + text
        + struct.pack(">IIHB", 0, 0, 0, 0)
        + bytes(67)
    )
    wtpt = b"XYZ " + bytes(4) + _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    cprt = b"text" + bytes(4) + b"public domain\0"
    corners = np.array([[c, m, y, k] for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)], float)
    lab = rgb2lab(((1 - corners[:, :3]) * (1 - corners[:, 3:4]))[None], illuminant="D50")[0]
    clut = np.clip(np.rint(np.stack([lab[:, 0] * 2.55, lab[:, 1] + 128, lab[:, 2] + 128], 1)), 0, 255)
    ramp = bytes(range(256))
    identity = b"".join(_s15(float(i == j)) for i in range(3) for j in range(3))
    a2b0 = (
        b"mft1"
        + bytes(4)
        + bytes([4, 3, 2, 0])
        + identity
        + ramp * 4
        + clut.astype(np.uint8).tobytes()
        + ramp * 3
    )
    tags = [(b"desc", desc), (b"wtpt", wtpt), (b"cprt", cprt), (b"A2B0", a2b0)]
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for signature, tag in tags:
        table += signature + struct.pack(">II", offset + len(body), len(tag))
        body += _pad4(tag)
    header = (
        struct.pack(">I", offset + len(body))
        + bytes(4)
        + struct.pack(">I", 0x02100000)
        + b"prtrCMYKLab "
        + bytes(12)
        + b"acsp"
        + bytes(28)
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
    )
    return header.ljust(128, b"\0") + struct.pack(">I", len(tags)) + table + body


def png_with_size(width: int, height: int) -> bytes:
    """A 1×1 PNG whose IHDR claims width×height (CRC recomputed), like a decompression bomb's header."""
    buffer = _io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    raw = bytearray(buffer.getvalue())
    ihdr = bytearray(raw[12:29])  # b"IHDR" + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    raw[12:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(raw)


def exif_with_thumbnail(thumbnail: bytes) -> bytes:
    """An EXIF block with IFD0 (Make) and IFD1 (a JPEG thumbnail), laid out by hand: Pillow never writes
    IFD1."""

    def ifd(entries, next_offset):
        body = struct.pack(">H", len(entries))
        for tag, kind, count, value in entries:
            body += struct.pack(">HHI", tag, kind, count) + value.ljust(4, b"\0")
        return body + struct.pack(">I", next_offset)

    ifd1_at = 8 + 2 + 12 + 4
    thumbnail_at = ifd1_at + 2 + 2 * 12 + 4
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd([(MAKE, 2, 4, b"abc\0")], ifd1_at)
    tiff += ifd(
        [(0x0201, 4, 1, struct.pack(">I", thumbnail_at)), (0x0202, 4, 1, struct.pack(">I", len(thumbnail)))],
        0,
    )
    return b"Exif\x00\x00" + tiff + thumbnail


def header(path) -> tuple[str, dict]:
    """Format and info of a written file, read without leaving the file open."""
    with Image.open(path) as image:
        return image.format, dict(image.info)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# ------------------------------------------------------------------------------------------------------------
# Reading: sources and EXIF orientation
# ------------------------------------------------------------------------------------------------------------
def test_png_photo_reads_exactly_from_path_bytes_file_pil_and_array(tmp_path, chelsea):
    path = tmp_path / "chelsea.png"
    Image.fromarray(chelsea).save(path)
    with open(path, "rb") as stream:
        sources = (path, str(path), path.read_bytes(), stream, Image.open(path), chelsea)
        for source in sources:
            loaded = io.read_image(source)
            np.testing.assert_array_equal(loaded.pixels, chelsea)
            assert loaded.pixels.dtype == np.uint8 and loaded.pixels.flags.writeable
        assert not stream.closed  # the caller's file object is the caller's to close
    loaded = io.read_image(path)
    assert (loaded.format, loaded.mode, loaded.path, loaded.size) == ("PNG", "RGB", path, (451, 300))
    assert io.read_image(loaded) is loaded


# Orientation tag -> how the stored pixels must be turned to stand upright (EXIF 2.3, tag 0x0112).
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, k=1),
}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_every_exif_orientation_is_applied_and_reset_to_1(tmp_path, coffee_small, orientation):
    path = tmp_path / "photo.png"
    Image.fromarray(coffee_small).save(path, exif=camera_exif(orientation))
    loaded = io.read_image(path)
    np.testing.assert_array_equal(loaded.pixels, UPRIGHT[orientation](coffee_small))
    exif = Image.Exif()
    exif.load(loaded.exif)
    assert exif[ORIENTATION] == 1
    assert (
        exif[MAKE] == "erasekit-test" and exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] == "2024:05:01 12:00:00"
    )


def test_rotated_camera_jpeg_is_upright_and_written_with_orientation_1(tmp_path, chelsea):
    path = tmp_path / "phone.jpg"
    Image.fromarray(chelsea).save(path, quality=90, exif=camera_exif(6))
    stored = np.asarray(Image.open(path).convert("RGB"))  # what the file holds, sideways
    loaded = io.read_image(path)
    assert loaded.pixels.shape == (451, 300, 3)
    np.testing.assert_array_equal(loaded.pixels, np.rot90(stored, k=-1))

    out = io.write_image(tmp_path / "out.jpg", loaded.pixels, like=loaded)
    with Image.open(out) as written:
        assert written.size == (300, 451)
        assert written.getexif()[ORIENTATION] == 1  # a viewer must not turn it a second time
        assert written.getexif()[MAKE] == "erasekit-test"


def test_stale_exif_thumbnail_is_not_carried_over(tmp_path, coffee_small):
    thumbnail = _jpeg_bytes(coffee_small[:8, :8])
    path = tmp_path / "with_thumbnail.jpg"
    Image.fromarray(coffee_small).save(path, exif=exif_with_thumbnail(thumbnail))
    with Image.open(path) as source:
        assert source.getexif().get_ifd(ExifTags.IFD.IFD1)[0x0202] == len(thumbnail)  # the source has one
    loaded = io.read_image(path)
    exif = Image.Exif()
    exif.load(loaded.exif)
    assert exif[MAKE] == "abc" and not exif.get_ifd(ExifTags.IFD.IFD1)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_exif_does_not_make_a_photo_unreadable(coffee_small):
    encoded = _jpeg_bytes(coffee_small, quality=95, exif=b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff")
    loaded = io.read_image(encoded)
    np.testing.assert_array_equal(loaded.pixels, np.asarray(Image.open(_io.BytesIO(encoded))))
    assert loaded.exif is None


def test_mask_gets_the_same_exif_orientation_as_images(tmp_path):
    mask = np.zeros((4, 6), np.uint8)
    mask[0, 0] = 255  # top-left stored pixel
    path = tmp_path / "mask.png"
    Image.fromarray(mask).save(path, exif=camera_exif(6))
    read = io.read_mask(path)
    assert read.shape == (6, 4)
    np.testing.assert_array_equal(read, np.rot90(mask > 0, k=-1).astype(np.float32))


# ------------------------------------------------------------------------------------------------------------
# Reading: mode rules (module docstring table)
# ------------------------------------------------------------------------------------------------------------
def over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """round((c·a + 255·(255 − a)) / 255), computed in exact integer arithmetic."""
    c, a = rgb.astype(np.int64), alpha.astype(np.int64)[..., None]
    return ((2 * (c * a + 255 * (255 - a)) + 255) // 510).astype(np.uint8)


def test_rgba_photo_is_composited_over_white(tmp_path, coffee_small):
    h, w = coffee_small.shape[:2]
    alpha = np.tile(np.linspace(0, 255, w).round().astype(np.uint8), (h, 1))
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([coffee_small, alpha]), "RGBA").save(path)
    loaded = io.read_image(path)
    assert loaded.mode == "RGBA"
    np.testing.assert_array_equal(loaded.pixels, over_white(coffee_small, alpha))
    np.testing.assert_array_equal(loaded.pixels[:, 0], 255)  # fully transparent -> white
    np.testing.assert_array_equal(loaded.pixels[:, -1], coffee_small[:, -1])  # opaque -> unchanged


def test_rgba_small_array_exact_values():
    pixels = np.array([[[200, 100, 0, 0], [200, 100, 0, 255], [200, 100, 0, 128], [0, 0, 0, 64]]], np.uint8)
    expected = [[[255, 255, 255], [200, 100, 0], [227, 177, 127], [191, 191, 191]]]
    np.testing.assert_array_equal(io.read_image(pixels).pixels, expected)
    np.testing.assert_array_equal(io.read_image(Image.fromarray(pixels, "RGBA")).pixels, expected)


def test_la_is_composited_over_white(tmp_path):
    la = np.array([[[0, 0], [0, 255], [100, 128], [20, 200]]], np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    loaded = io.read_image(path)
    grey = over_white(np.repeat(la[..., :1], 3, axis=2), la[..., 1])
    assert loaded.mode == "LA"
    np.testing.assert_array_equal(loaded.pixels, grey)
    np.testing.assert_array_equal(loaded.pixels[0, :, 0], [255, 0, 177, 71])


def test_palette_with_transparency_goes_through_rgba(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    image.putdata([0, 1, 2])
    path = tmp_path / "p.png"
    image.save(path, transparency=1)  # index 1 (green) is transparent
    loaded = io.read_image(path)
    assert loaded.mode == "P"
    np.testing.assert_array_equal(loaded.pixels, [[[255, 0, 0], [255, 255, 255], [0, 0, 255]]])

    opaque = tmp_path / "p_opaque.png"
    image.save(opaque)
    np.testing.assert_array_equal(io.read_image(opaque).pixels, [[[255, 0, 0], [0, 255, 0], [0, 0, 255]]])


def test_rgb_colour_key_transparency_becomes_white(tmp_path):
    pixels = np.array([[[10, 20, 30], [1, 2, 3]]], np.uint8)
    path = tmp_path / "key.png"
    Image.fromarray(pixels).save(path, transparency=(1, 2, 3))
    np.testing.assert_array_equal(io.read_image(path).pixels, [[[10, 20, 30], [255, 255, 255]]])


def test_grey_l_is_replicated(tmp_path, chelsea):
    grey = np.asarray(Image.fromarray(chelsea).convert("L"))
    path = tmp_path / "grey.jpg"
    Image.fromarray(grey).save(path, quality=95)
    stored = np.asarray(Image.open(path))
    loaded = io.read_image(path)
    assert loaded.mode == "L"
    np.testing.assert_array_equal(loaded.pixels, np.dstack([stored] * 3))


def test_sixteen_bit_grey_is_shifted_right_by_8(tmp_path):
    values = np.array([[0, 255, 256, 4660, 65535]], np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # a 16-bit greyscale PNG
    loaded = io.read_image(path)
    assert loaded.mode.startswith("I")
    np.testing.assert_array_equal(loaded.pixels[..., 0], [[0, 0, 1, 18, 255]])
    np.testing.assert_array_equal(loaded.pixels[..., 0], loaded.pixels[..., 2])
    np.testing.assert_array_equal(io.read_image(values).pixels[..., 1], [[0, 0, 1, 18, 255]])


def test_thirty_two_bit_integer_mode_is_clipped_to_16_bits_then_shifted():
    image = Image.fromarray(np.array([[-5, 511, 70000]], np.int32), "I")
    np.testing.assert_array_equal(io.read_image(image).pixels[..., 0], [[0, 1, 255]])


def test_bilevel_becomes_0_and_255(tmp_path):
    path = tmp_path / "bw.png"
    Image.fromarray(np.array([[True, False, True]])).convert("1").save(path)
    loaded = io.read_image(path)
    assert loaded.mode == "1"
    np.testing.assert_array_equal(loaded.pixels[..., 1], [[255, 0, 255]])


def test_float_mode_must_be_in_unit_range():
    ok = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    np.testing.assert_array_equal(io.read_image(ok).pixels[..., 0], [[0, 128, 255]])
    bad = Image.fromarray(np.array([[0.0, 2.0]], np.float32), "F")
    with pytest.raises(InvalidInputError, match=r"within \[0, 1\]"):
        io.read_image(bad)


CMYK_PIXELS = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [10, 20, 30, 40], [200, 100, 50, 250]]], np.uint8)


def test_cmyk_without_profile_uses_pillows_conversion(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(CMYK_PIXELS, "CMYK").save(path, quality=100)
    stored = np.asarray(Image.open(path)).astype(np.int64)
    loaded = io.read_image(path)
    # (255 − c)(255 − k) / 255, rounded: Pillow's profile-less rule.
    expected = ((2 * (255 - stored[..., :3]) * (255 - stored[..., 3:]) + 255) // 510).astype(np.uint8)
    assert loaded.mode == "CMYK" and loaded.icc_profile is None
    np.testing.assert_array_equal(loaded.pixels, expected)
    np.testing.assert_array_equal(
        io.read_image(Image.fromarray(CMYK_PIXELS, "CMYK")).pixels,
        [[[255, 255, 255], [0, 255, 255], [207, 198, 190], [1, 3, 4]]],
    )


def test_cmyk_with_profile_goes_through_the_profile_to_srgb(tmp_path):
    profile = cmyk_icc()
    path = tmp_path / "cmyk_icc.tif"
    Image.fromarray(CMYK_PIXELS, "CMYK").save(path, icc_profile=profile)
    loaded = io.read_image(path)
    reference = ImageCms.profileToProfile(
        Image.fromarray(CMYK_PIXELS, "CMYK"),
        ImageCms.ImageCmsProfile(_io.BytesIO(profile)),
        ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
        outputMode="RGB",
    )
    np.testing.assert_array_equal(loaded.pixels, np.asarray(reference))
    assert not np.array_equal(loaded.pixels, np.asarray(Image.fromarray(CMYK_PIXELS, "CMYK").convert("RGB")))
    # The CMYK profile no longer describes the pixels; they are sRGB now and say so.
    assert ImageCms.ImageCmsProfile(_io.BytesIO(loaded.icc_profile)).profile.xcolor_space.strip() == "RGB"


def test_grey_icc_profile_is_not_attached_to_rgb_pixels(tmp_path):
    fake_grey = bytearray(srgb_icc())
    fake_grey[16:20] = b"GRAY"  # the profile now claims to describe grey data
    path = tmp_path / "grey_icc.png"
    Image.new("L", (2, 2), 7).save(path, icc_profile=bytes(fake_grey))
    assert io.read_image(path).icc_profile is None


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.array([[0, 128]], np.uint8), [[[0, 0, 0], [128, 128, 128]]]),
        (np.array([[[9], [200]]], np.uint8), [[[9, 9, 9], [200, 200, 200]]]),
        (np.array([[True, False]]), [[[255, 255, 255], [0, 0, 0]]]),
        (np.array([[[0.0, 0.5, 1.0]]]), [[[0, 128, 255]]]),
        (np.array([[[0, 512, 65535]]], np.uint16), [[[0, 2, 255]]]),
    ],
)
def test_array_inputs_follow_the_same_rules(array, expected):
    np.testing.assert_array_equal(io.read_image(array).pixels, expected)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((4,), np.uint8), "shape"),
        (np.full((2, 2, 3), 1.5), r"within \[0, 1\]"),
        (np.full((2, 2, 3), np.nan), r"within \[0, 1\]"),
        (np.zeros((2, 2, 3), np.int64), "dtype"),
    ],
)
def test_bad_arrays_are_invalid_input(array, message):
    with pytest.raises(InvalidInputError, match=message):
        io.read_image(array)


# ------------------------------------------------------------------------------------------------------------
# Masks
# ------------------------------------------------------------------------------------------------------------
def test_mask_any_nonzero_value_means_remove(tmp_path):
    values = np.array([[0, 1, 2, 128, 255]], np.uint8)
    path = tmp_path / "m.png"
    Image.fromarray(values).save(path)
    for source in (path, path.read_bytes(), Image.open(path), values, values.astype(bool), values / 255.0):
        mask = io.read_mask(source)
        assert mask.dtype == np.float32
        np.testing.assert_array_equal(mask, [[0, 1, 1, 1, 1]])


def test_signed_and_float_masks_count_negative_values_as_nonzero():
    np.testing.assert_array_equal(io.read_mask(np.array([[0, -3, 7]], np.int16)), [[0, 1, 1]])
    np.testing.assert_array_equal(io.read_mask(np.array([[0.0, -0.25, 1e-6]])), [[0, 1, 1]])
    image = Image.fromarray(np.array([[0, -5, 70000]], np.int32), "I")
    np.testing.assert_array_equal(io.read_mask(image), [[0, 1, 1]])


def test_rgba_mask_uses_alpha(tmp_path):
    rgba = np.zeros((1, 4, 4), np.uint8)
    rgba[..., :3] = [[255, 255, 255], [0, 0, 0], [255, 255, 255], [0, 0, 0]]  # colours say the opposite
    rgba[..., 3] = [0, 255, 40, 0]
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    np.testing.assert_array_equal(io.read_mask(path), [[0, 1, 1, 0]])
    np.testing.assert_array_equal(io.read_mask(rgba), [[0, 1, 1, 0]])
    la = tmp_path / "la.png"
    Image.fromarray(rgba[..., [0, 3]], "LA").save(la)
    np.testing.assert_array_equal(io.read_mask(la), [[0, 1, 1, 0]])


def test_rgba_mask_with_fully_opaque_alpha_reads_the_colours(tmp_path):
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 1, :3] = 255
    rgba[..., 3] = 255
    path = tmp_path / "opaque.png"
    Image.fromarray(rgba, "RGBA").save(path)
    np.testing.assert_array_equal(io.read_mask(path), [[0, 1, 0]])


def test_rgb_mask_uses_the_maximum_over_channels(tmp_path):
    rgb = np.array([[[0, 0, 0], [0, 0, 3], [90, 0, 0], [0, 255, 0]]], np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    np.testing.assert_array_equal(io.read_mask(path), [[0, 1, 1, 1]])


def test_palette_mask_uses_colours_or_transparency(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([0, 0, 0, 255, 255, 255, 9, 9, 9] + [0] * (253 * 3))
    image.putdata([0, 1, 2])
    path = tmp_path / "p.png"
    image.save(path)
    np.testing.assert_array_equal(io.read_mask(path), [[0, 1, 1]])


def test_jpeg_mask_ignores_compression_noise(tmp_path):
    mask = np.zeros((32, 32), np.uint8)
    mask[5:19, 7:23] = 255  # edges off the 8×8 block grid ring with JPEG noise
    path = tmp_path / "m.jpg"
    Image.fromarray(mask).save(path, quality=50)
    assert np.asarray(Image.open(path))[mask == 0].max() > 0  # the noise is really there
    np.testing.assert_array_equal(io.read_mask(path), (mask > 0).astype(np.float32))


def test_mask_size_mismatch_names_both_sizes(tmp_path):
    path = tmp_path / "m.png"
    Image.new("L", (40, 30), 255).save(path)
    with pytest.raises(InvalidInputError) as exc:
        io.read_mask(path, shape=(50, 60))
    assert "mask size 40×30 does not match image size 60×50" in one_line(exc)


def test_mask_resize_is_nearest_and_stays_binary():
    small = np.array([[1, 0, 0], [0, 1, 1]], np.uint8)
    resized = io.read_mask(small * 255, shape=(4, 6), resize=True)
    np.testing.assert_array_equal(resized, np.kron(small, np.ones((2, 2))).astype(np.float32))
    odd = io.read_mask(
        np.random.default_rng(0).integers(0, 256, (13, 17), dtype=np.uint8), shape=(31, 7), resize=True
    )
    assert odd.shape == (31, 7) and set(np.unique(odd)) <= {0.0, 1.0}


def test_bad_mask_arrays_are_invalid_input():
    with pytest.raises(InvalidInputError, match="finite"):
        io.read_mask(np.array([[0.0, np.nan]]))
    with pytest.raises(InvalidInputError, match="shape"):
        io.read_mask(np.zeros((2, 2, 2)))


# ------------------------------------------------------------------------------------------------------------
# Limits
# ------------------------------------------------------------------------------------------------------------
def test_pixel_limit_from_argument(tmp_path, chelsea):
    path = tmp_path / "chelsea.png"
    Image.fromarray(chelsea).save(path)
    with pytest.raises(ResourceLimitError) as exc:
        io.read_image(path, max_pixels=100_000)
    message = one_line(exc)
    assert "451×300 = 135,300 pixels" in message and "100,000" in message
    assert exc.value.exit_code == 4
    assert io.read_image(path, max_pixels=135_300).pixels.shape == (300, 451, 3)
    with pytest.raises(ResourceLimitError):
        io.read_mask(path, max_pixels=100_000)
    with pytest.raises(ResourceLimitError):
        io.read_image(chelsea, max_pixels=100_000)


def test_pixel_limit_from_environment(tmp_path, chelsea, monkeypatch):
    path = tmp_path / "chelsea.png"
    Image.fromarray(chelsea).save(path)
    monkeypatch.setenv(io.MAX_PIXELS_ENV, "100000")
    with pytest.raises(ResourceLimitError, match="100,000"):
        io.read_image(path)
    assert io.read_image(path, max_pixels=200_000).pixels.shape == (300, 451, 3)  # the argument wins
    monkeypatch.setenv(io.MAX_PIXELS_ENV, "0")
    assert io.read_image(path).pixels.shape == (300, 451, 3)  # 0 disables the check
    monkeypatch.setenv(io.MAX_PIXELS_ENV, "lots")
    with pytest.raises(InvalidInputError, match=io.MAX_PIXELS_ENV):
        io.read_image(path)


@pytest.fixture
def no_decoding(monkeypatch):
    """Make any pixel decoding fail loudly: the limit must be enforced from the header alone."""

    def refuse(self):
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_bomb_header_above_the_default_limit_is_refused_before_decoding(tmp_path, no_decoding):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_size(9000, 9000))  # 81 MP claimed by a 70-byte file
    with pytest.raises(ResourceLimitError) as exc:
        io.read_image(path)
    assert "9000×9000" in one_line(exc) and f"{io.DEFAULT_MAX_PIXELS:,}" in str(exc.value)


def test_bomb_header_beyond_pillows_cap_is_a_resource_error(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_with_size(100_000, 100_000))
    with pytest.raises(ResourceLimitError) as exc:
        io.read_image(path, max_pixels=0)
    assert "decompression-bomb" in one_line(exc)


def test_real_compressed_bomb_is_refused(tmp_path, no_decoding):
    path = tmp_path / "blank.png"
    Image.new("1", (10_000, 7_000)).save(path, optimize=True)  # 70 MP of zeros, a few kB on disk
    assert path.stat().st_size < 100_000
    with pytest.raises(ResourceLimitError, match="10000×7000"):
        io.read_image(path)


# ------------------------------------------------------------------------------------------------------------
# Broken inputs: one clear line each
# ------------------------------------------------------------------------------------------------------------
def _jpeg_bytes(pixels: np.ndarray, **options) -> bytes:
    buffer = _io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_truncated_files(tmp_path, chelsea, kind):
    buffer = _io.BytesIO()
    Image.fromarray(chelsea).save(buffer, "JPEG" if kind == "jpeg" else "PNG")
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    for source in (path, path.read_bytes()):
        with pytest.raises(InvalidInputError) as exc:
            io.read_image(source)
        assert "truncated or corrupt" in one_line(exc)
    with pytest.raises(InvalidInputError, match=f"cannot read image '{path}': file is truncated or corrupt"):
        io.read_image(path)
    with pytest.raises(InvalidInputError, match="truncated or corrupt"):
        io.read_mask(path)


@pytest.mark.parametrize("content", [np.random.default_rng(0).bytes(4096), b""], ids=["random", "empty"])
def test_not_an_image(tmp_path, content):
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError) as exc:
        io.read_image(path)
    assert one_line(exc) == f"cannot read image '{path}': not an image file (or a format Pillow cannot read)"


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InvalidInputError) as exc:
        io.read_image(tmp_path / "nope.jpg")
    assert one_line(exc) == f"cannot read image '{tmp_path / 'nope.jpg'}': file not found"
    with pytest.raises(InvalidInputError, match="mask .* file not found"):
        io.read_mask(tmp_path / "nope.png")
    with pytest.raises(InvalidInputError, match="directory"):
        io.read_image(tmp_path)


# ------------------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------------------
def test_write_is_atomic_when_the_encoder_fails(tmp_path, coffee_small, monkeypatch):
    target = tmp_path / "out.png"
    io.write_image(target, coffee_small)
    before = target.read_bytes()

    def broken_encoder(image, fp, filename):
        fp.write(b"\x89PNG half a file")
        raise RuntimeError("encoder crashed")

    monkeypatch.setitem(Image.SAVE, "PNG", broken_encoder)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        io.write_image(target, 255 - coffee_small)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]

    def disk_full(image, fp, filename):
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(Image.SAVE, "PNG", disk_full)
    with pytest.raises(ErasekitError, match="No space left on device"):
        io.write_mask(tmp_path / "new_mask.png", np.ones((2, 2), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_write_creates_folders_and_uses_normal_permissions(tmp_path, coffee_small):
    target = tmp_path / "a" / "b" / "out.png"
    assert io.write_image(target, coffee_small) == target
    np.testing.assert_array_equal(np.asarray(Image.open(target)), coffee_small)
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_jpeg_to_jpeg_keeps_exif_icc_tables_and_size(tmp_path):
    photo = data.astronaut()
    source = tmp_path / "astronaut.jpg"
    Image.fromarray(photo).save(source, quality=90, subsampling=0, exif=camera_exif(), icc_profile=srgb_icc())
    loaded = io.read_image(source)
    out = io.write_image(tmp_path / "clean.jpg", loaded.pixels, like=loaded)
    with Image.open(source) as before, Image.open(out) as after:
        assert after.format == "JPEG"
        assert after.info["icc_profile"] == srgb_icc()
        assert after.getexif()[MODEL] == "Cam 1"
        assert after.getexif().get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] == "2024:05:01 12:00:00"
        assert after.quantization == before.quantization  # the source's quality, not a new guess
        assert JpegImagePlugin.get_sampling(after) == 0  # 4:4:4 kept
    # No bloat: re-encoding the decoded pixels with the source's own tables gives about the same size.
    assert out.stat().st_size <= 1.1 * source.stat().st_size


def test_jpeg_default_and_explicit_quality(tmp_path, coffee_small):
    png = tmp_path / "src.png"
    Image.fromarray(coffee_small).save(png)
    loaded = io.read_image(png)
    out = io.write_image(tmp_path / "out.jpg", loaded.pixels, like=loaded)
    assert out.read_bytes() == _jpeg_bytes(coffee_small, quality=95)  # PNG -> JPEG: quality 95
    assert io.encode_image(coffee_small, "JPEG", quality=60) == _jpeg_bytes(coffee_small, quality=60)
    with pytest.raises(InvalidInputError, match="quality"):
        io.write_image(tmp_path / "bad.jpg", coffee_small, quality=0)


def test_png_round_trip_keeps_exif_and_icc(tmp_path, coffee_small):
    source = tmp_path / "src.png"
    Image.fromarray(coffee_small).save(source, exif=camera_exif(), icc_profile=srgb_icc())
    loaded = io.read_image(source)
    for name in ("out.png", "out.webp", "out.tif", "out.jpg"):
        out = io.write_image(tmp_path / name, loaded.pixels, like=loaded)
        with Image.open(out) as written:
            assert written.info.get("icc_profile") == srgb_icc(), name
            assert written.getexif()[MAKE] == "erasekit-test", name
    np.testing.assert_array_equal(io.read_image(tmp_path / "out.png").pixels, coffee_small)
    np.testing.assert_array_equal(io.read_image(tmp_path / "out.tif").pixels, coffee_small)
    io.write_image(tmp_path / "out.bmp", loaded.pixels, like=loaded)  # a format without metadata still writes
    np.testing.assert_array_equal(io.read_image(tmp_path / "out.bmp").pixels, coffee_small)


def test_format_comes_from_extension_then_format_then_source(tmp_path, coffee_small):
    jpeg = tmp_path / "src.jpg"
    Image.fromarray(coffee_small).save(jpeg, quality=90)
    like = io.read_image(jpeg)
    assert header(io.write_image(tmp_path / "as.png", like.pixels, like=like))[0] == "PNG"
    assert header(io.write_image(tmp_path / "noext", like.pixels, like=like))[0] == "JPEG"
    assert header(io.write_image(tmp_path / "noext2", like.pixels, like=like, format="webp"))[0] == "WEBP"
    assert header(io.write_image(tmp_path / "plain", like.pixels))[0] == "PNG"
    assert header(io.write_image(tmp_path / "x.JPEG", like.pixels, format="jpg"))[0] == "JPEG"
    with pytest.raises(InvalidInputError, match="contradicts"):
        io.write_image(tmp_path / "y.png", like.pixels, format="JPEG")
    with pytest.raises(InvalidInputError) as exc:
        io.write_image(tmp_path / "z.jpgx", like.pixels)
    assert "unknown image extension '.jpgx'" in one_line(exc)
    assert not (tmp_path / "z.jpgx").exists()


def test_tiff_keeps_the_source_compression(tmp_path, coffee_small):
    source = tmp_path / "src.tif"
    Image.fromarray(coffee_small).save(source, compression="tiff_lzw")
    loaded = io.read_image(source)
    assert (
        header(io.write_image(tmp_path / "same.tif", loaded.pixels, like=loaded))[1]["compression"]
        == "tiff_lzw"
    )
    assert (
        header(io.write_image(tmp_path / "new.tif", loaded.pixels))[1]["compression"] == "tiff_adobe_deflate"
    )


def test_encode_image_matches_write_image(tmp_path, coffee_small):
    source = tmp_path / "src.jpg"
    Image.fromarray(coffee_small).save(source, quality=85, exif=camera_exif(), icc_profile=srgb_icc())
    like = io.read_image(source)
    written = io.write_image(tmp_path / "out.jpg", like.pixels, like=like)
    assert io.encode_image(like.pixels, "JPEG", like=like) == written.read_bytes()
    assert io.encode_image(coffee_small) == io.write_image(tmp_path / "o.png", coffee_small).read_bytes()
    with pytest.raises(InvalidInputError, match="uint8"):
        io.encode_image(coffee_small.astype(np.float32))


def test_write_mask_round_trip(tmp_path):
    mask = np.array([[0.0, 0.5, 1.0]], np.float32)
    path = io.write_mask(tmp_path / "m" / "mask.png", mask)
    with Image.open(path) as image:
        assert (image.format, image.mode) == ("PNG", "L")
        np.testing.assert_array_equal(np.asarray(image), [[0, 128, 255]])
    np.testing.assert_array_equal(io.read_mask(path), [[0, 1, 1]])
    with pytest.raises(InvalidInputError, match="PNG"):
        io.write_mask(tmp_path / "mask.jpg", mask)


# ------------------------------------------------------------------------------------------------------------
# The CLI uses all of the above
# ------------------------------------------------------------------------------------------------------------
def squash(text: str) -> str:
    """Drop all whitespace: rich wraps long messages at the terminal width, sometimes eating a space."""
    return "".join(text.split())


def test_cli_remove_keeps_jpeg_exif_and_icc(tmp_path, capsys):
    from erasekit.cli import main

    photo = data.chelsea()[60:188, 120:248]
    source = tmp_path / "photo.jpg"
    Image.fromarray(photo).save(source, quality=90, exif=camera_exif(), icc_profile=srgb_icc())
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[40:80, 50:90] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    out = tmp_path / "out.jpg"
    code = main(
        ["remove", str(source), "--mask", str(tmp_path / "m.png"), "-o", str(out), "--method", "telea"]
    )
    assert code == 0, capsys.readouterr().err
    with Image.open(out) as written, Image.open(source) as before:
        assert written.format == "JPEG"
        assert written.info["icc_profile"] == srgb_icc()
        assert written.getexif()[MAKE] == "erasekit-test"
        assert written.quantization == before.quantization
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "out.jpg", "photo.jpg"]

    (tmp_path / "broken.jpg").write_bytes(source.read_bytes()[:500])
    assert (
        main(
            ["remove", str(tmp_path / "broken.jpg"), "--mask", str(tmp_path / "m.png"), "-o",
             str(tmp_path / "x.jpg")]
        )
        == 2
    )
    Image.new("L", (10, 10)).save(tmp_path / "small_mask.png")
    assert (
        main(
            ["remove", str(source), "--mask", str(tmp_path / "small_mask.png"), "-o", str(tmp_path / "x.jpg")]
        )
        == 2
    )
    err = squash(capsys.readouterr().err)
    assert squash("truncated or corrupt") in err
    assert squash("mask size 10×10 does not match image size 128×128") in err
    assert "Traceback" not in err and not (tmp_path / "x.jpg").exists()


def test_cli_pixel_limit_exits_with_code_4(tmp_path, capsys, monkeypatch):
    from erasekit.cli import main

    (tmp_path / "bomb.png").write_bytes(png_with_size(9000, 9000))
    Image.new("L", (50, 50)).save(tmp_path / "m.png")
    assert (
        main(
            ["remove", str(tmp_path / "bomb.png"), "--mask", str(tmp_path / "m.png"), "-o",
             str(tmp_path / "x.png")]
        )
        == 4
    )
    monkeypatch.setenv(io.MAX_PIXELS_ENV, "1000")
    assert (
        main(
            ["remove", str(tmp_path / "m.png"), "--mask", str(tmp_path / "m.png"), "-o",
             str(tmp_path / "x.png")]
        )
        == 4
    )
    err = squash(capsys.readouterr().err)
    assert squash("9000×9000 = 81,000,000 pixels") in err
    assert squash("50×50 = 2,500 pixels, above the limit of 1,000") in err
    assert "Traceback" not in err and not (tmp_path / "x.png").exists()

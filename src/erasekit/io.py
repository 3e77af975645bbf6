"""Reading, validating and writing images and masks.

Everything that crosses the file boundary goes through here, so the rest of erasekit only sees uint8 RGB H×W×3
arrays and float32 H×W masks in {0, 1}. Pillow does the decoding, EXIF orientation, colour management
(LittleCMS) and encoding; this module holds the rules that say which Pillow call applies to which input.

Images (:func:`read_image`)
    Sources: a path (str or Path), ``bytes``, a binary file object, a ``PIL.Image.Image`` or a numpy array.
    PNG, JPEG, WebP, TIFF, BMP and GIF (HEIF/AVIF with a plugin); other Pillow formats only when opted in
    (``extra_formats=``, ``$ERASEKIT_EXTRA_FORMATS``). For animations and multi-page files the first frame is
    used. EXIF orientation is applied to the pixels and the kept EXIF block says ``Orientation = 1`` from then
    on (its embedded thumbnail is dropped: it would still show the removed object).
    Modes become RGB by these rules:

    ======================  ==============================================================================
    RGB                     unchanged
    RGBA, LA, PA, RGBa, La  composited over white: ``round((c·a + 255·(255 − a)) / 255)`` — what a viewer
                            shows on a white page. (Dropping alpha would expose whatever colour hides under
                            transparent pixels, often black.)
    P                       through RGBA (then as above) when it has transparency, else straight to RGB
    any mode with a         the colour key becomes alpha (as for P), then composited over white
    ``transparency`` key
    L                       the grey value replicated into R, G and B
    1                       0 → 0, 1 → 255, then as L
    I;16 (any byte order)   16-bit grey scaled to 8 bits by ``v >> 8``, then as L
    I                       Pillow's 32-bit integer mode, used for 16-bit PNG/TIFF grey: clipped to
                            [0, 65535], then as I;16
    F                       32-bit float: values must lie in [0, 1]; ``round(v · 255)``, then as L
    CMYK                    through the embedded ICC profile to sRGB (LittleCMS, perceptual intent) when
                            there is one; otherwise Pillow's naive ``(255 − c)(255 − k) / 255`` per channel
    YCbCr, LAB, HSV, ...    Pillow's ``convert("RGB")``
    ======================  ==============================================================================

    An ICC profile is kept only if it describes RGB data (so it still matches the pixels we return): a CMYK
    profile is used for the conversion above and replaced by sRGB; a grey profile is dropped.

    Numpy arrays follow the same table by shape and dtype: uint8 H×W (L), H×W×1, H×W×3 (RGB), H×W×4 (RGBA);
    bool H×W (1); uint16 (I;16 rule, ``>> 8``); float arrays must be finite and in [0, 1] (``round(v ·
    255)``).

Masks (:func:`read_mask`)
    Any nonzero value means "remove". Which channel is read: RGBA / LA / PA masks and P masks with
    transparency use their alpha channel — unless that alpha is fully opaque everywhere (a black-and-white
    mask saved with a useless alpha channel, which would otherwise mean "remove everything"), then the colour
    channels are used. RGB masks use the maximum over R, G and B, so any coloured stroke counts. JPEG masks
    count values of 128 and above instead of any nonzero value, because JPEG noise turns black into small
    nonzero values. EXIF orientation is applied to masks exactly as to images. A mask of another size than the
    image is an error naming both sizes unless the caller asks for a nearest-neighbour resize. Bool, integer
    and float arrays are accepted (nonzero = remove; H×W×4 arrays follow the alpha rule). ``soft=True`` /
    :func:`read_mask_pair` also give the same channel's values in [0, 1] (for methods that condition on soft
    masks).

Limits
    A pixel limit guards against decompression bombs. It is checked on the header, before any pixel is
    decoded. Default 8192 × 8192 = 67,108,864 pixels; override per call (``max_pixels=``) or for the process
    with the environment variable ``ERASEKIT_MAX_PIXELS`` (0 disables erasekit's check). Pillow keeps its own
    hard cap (twice ``PIL.Image.MAX_IMAGE_PIXELS``, about 179 MP); raise that too for larger images.

Writing (:func:`write_image`, :func:`write_mask`, :func:`encode_image`)
    Atomic: the file is written to a temporary name in the target folder, flushed to disk and renamed over the
    target, so readers (and a resumed batch) never see half a file; the temporary file is removed on failure.
    The format comes from the extension; without one, from ``format=``, else the source's format, else PNG.
    EXIF and ICC from the source (``like=``) are kept for JPEG, PNG, WebP and TIFF. JPEG → JPEG reuses the
    source's quantisation tables and chroma subsampling (what Pillow calls ``quality="keep"``), so the output
    is about the size and quality of the input; other JPEG output uses quality 95. ``quality=`` applies to the
    lossy formats (JPEG, WebP) and is ignored by lossless ones.
"""

from __future__ import annotations

import contextlib
import functools
import io as _io
import os
import struct
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageCms, ImageOps, JpegImagePlugin, UnidentifiedImageError

from .types import InvalidInputError, ResourceLimitError

DEFAULT_MAX_PIXELS = 8192 * 8192
MAX_PIXELS_ENV = "ERASEKIT_MAX_PIXELS"
# Formats read by default: the photo formats. Pillow has readers for many more (EPS runs Ghostscript, ICO,
# TGA, PPM, JPEG 2000, ...); each is more parser surface for an upload to reach, so they are opt-in, per call
# (``extra_formats=``) or for the process (``$ERASEKIT_EXTRA_FORMATS``, comma-separated names, or "all").
# HEIF and AVIF count when a Pillow plugin for them is installed (pillow-heif; Pillow >= 11.3 for AVIF).
ACCEPTED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "TIFF", "BMP", "DIB", "GIF", "HEIF", "AVIF")
EXTRA_FORMATS_ENV = "ERASEKIT_EXTRA_FORMATS"

ImageSource = str | os.PathLike | bytes | bytearray | BinaryIO | Image.Image | np.ndarray

_ORIENTATION = 0x0112
_WHITE = (255, 255, 255)
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_METADATA_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF"}
_LOSSY_MASK_FORMATS = {"JPEG", "MPO"}
_DEFAULT_QUALITY = 95
# TIFF compressions we can re-use as they are; anything else (JPEG-in-TIFF, fax codecs) falls back to deflate.
_TIFF_COMPRESSIONS = {"raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits"}
_FORMAT_ALIASES = {"JPG": "JPEG", "MPO": "JPEG", "TIF": "TIFF"}


@dataclass
class JpegSettings:
    """How the source JPEG was encoded, so a JPEG → JPEG write can reuse it (Pillow's ``quality="keep"``)."""

    qtables: dict[int, list[int]]
    subsampling: int  # Pillow's code: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0
    progressive: bool = False


@dataclass
class LoadedImage:
    """A decoded image and what is needed to write a result the way the source was written.

    ``pixels``: uint8 RGB H×W×3 with EXIF orientation applied. ``format``: Pillow's format name ("JPEG",
    "PNG", ...) or None for arrays. ``exif``: the raw EXIF block with Orientation reset to 1, or None.
    ``icc_profile``: an RGB ICC profile matching ``pixels``, or None. ``mode``: the source's Pillow mode
    before conversion. ``path``: where it was read from, if a path. ``jpeg``: the source's JPEG encoder
    settings, if a colour JPEG. ``compression``: the source's compression as Pillow names it (TIFF), reused
    when writing the same format.
    """

    pixels: np.ndarray
    format: str | None = None
    exif: bytes | None = None
    icc_profile: bytes | None = None
    mode: str = "RGB"
    path: Path | None = None
    jpeg: JpegSettings | None = None
    compression: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), Pillow's order."""
        return self.pixels.shape[1], self.pixels.shape[0]


# ------------------------------------------------------------------------------------------------------------
# Limits
# ------------------------------------------------------------------------------------------------------------
def pixel_limit(max_pixels: int | None = None) -> int | None:
    """The limit in force: the argument, else ``$ERASEKIT_MAX_PIXELS``, else the default.

    None means no limit.
    """
    if max_pixels is None:
        raw = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
        if not raw:
            return DEFAULT_MAX_PIXELS
        try:
            max_pixels = int(raw)
        except ValueError:
            raise InvalidInputError(
                f"{MAX_PIXELS_ENV} must be a whole number of pixels, got {raw!r}"
            ) from None
    if max_pixels < 0:
        raise InvalidInputError(f"max_pixels must be >= 0 (0 disables the limit), got {max_pixels}")
    return max_pixels or None


def _check_pixels(width: int, height: int, limit: int | None, what: str) -> None:
    if limit is not None and width * height > limit:
        raise ResourceLimitError(
            f"{what} is {width}×{height} = {width * height:,} pixels, above the limit of {limit:,} pixels "
            f"(raise it with max_pixels= or {MAX_PIXELS_ENV})"
        )


# ------------------------------------------------------------------------------------------------------------
# Opening files without decoding them
# ------------------------------------------------------------------------------------------------------------
def _describe(source: Any, kind: str) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"{kind} '{os.fspath(source)}'"
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return f"{kind} '{name}'"
    return f"{kind} ({type(source).__name__} input)"


def _bomb(what: str) -> ResourceLimitError:
    return ResourceLimitError(
        f"{what} is larger than Pillow's decompression-bomb cap of {2 * (Image.MAX_IMAGE_PIXELS or 0):,} "
        f"pixels; raise erasekit's limit with {MAX_PIXELS_ENV} (or max_pixels=) and Pillow's with "
        f"PIL.Image.MAX_IMAGE_PIXELS to read it"
    )


def _decode(image: Image.Image, what: str) -> Image.Image:
    try:
        image.load()  # decode now, so a truncated file fails here with a clear message, not later
    except Image.DecompressionBombError:
        raise _bomb(what) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise InvalidInputError(f"cannot read {what}: file is truncated or corrupt ({exc})") from None
    return image


def _head(source: Any) -> bytes:
    """The first bytes of a source that Image.open could not identify (a path, or a seekable file)."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                return f.read(64)
        source.seek(0)
        return source.read(64)
    except (OSError, AttributeError, ValueError):
        return b""


@contextmanager
def _decoded(
    source: Any, what: str, limit: int | None, extra_formats: Sequence[str] | None = None
) -> Iterator[Image.Image]:
    """A decoded Pillow image from any non-array source, size-checked first.

    Closed afterwards if we opened it.
    """
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, limit, what)
        yield _decode(source, what)
        return
    image = _open(source, what, limit, extra_formats)
    try:
        yield image
    finally:
        if isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
            image.close()  # a caller's file object stays open: it is theirs


def readable_formats(extra_formats: Sequence[str] | None = None) -> list[str] | None:
    """The Pillow formats a read may open: the accepted ones, those the caller or the environment adds, and
    only those with a registered reader. None means every format Pillow has (``"all"``)."""
    if extra_formats is None:
        extra_formats = os.environ.get(EXTRA_FORMATS_ENV, "").split(",")
    extra = list(extra_formats)
    names = {name.strip().upper() for name in extra if name.strip()}
    if "ALL" in names:
        return None
    Image.init()
    return [name for name in (*ACCEPTED_FORMATS, *sorted(names)) if name in Image.OPEN]


def _refused_format(head: bytes) -> str | None:
    """The name of a format Pillow knows but the allow-list left out, judged by its plugins' header checks
    only (no reader runs)."""
    for name, (_, accept) in Image.OPEN.items():
        if accept is not None and name not in ACCEPTED_FORMATS:
            with contextlib.suppress(Exception):
                if accept(head):
                    return name
    return None


def _open(
    source: Any, what: str, limit: int | None, extra_formats: Sequence[str] | None = None
) -> Image.Image:
    """Open lazily (header only), check the pixel limit, then decode.

    Every failure is one InvalidInputError.
    """
    owned = not hasattr(source, "read")
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = _io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InvalidInputError(f"cannot read {what}: file not found")
        if path.is_dir():
            raise InvalidInputError(f"cannot read {what}: it is a directory, not an image file")
    formats = readable_formats(extra_formats)
    try:
        # We check the size ourselves below with the erasekit limit; Pillow's softer warning would only add
        # noise. (catch_warnings is process-wide; the worst a concurrent thread can see is that warning
        # silenced too.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source, formats=formats)
    except Image.DecompressionBombError:
        raise _bomb(what) from None
    except UnidentifiedImageError:
        refused = _refused_format(_head(source)) if formats is not None else None
        if refused is not None:
            raise InvalidInputError(
                f"cannot read {what}: it looks like {refused}, a format not accepted by default (accepted: "
                "PNG, JPEG, WebP, TIFF, BMP, GIF, HEIF/AVIF with a plugin); "
                f"opt in with {EXTRA_FORMATS_ENV}={refused}"
            ) from None
        raise InvalidInputError(
            f"cannot read {what}: not an image file (or a format Pillow cannot read)"
        ) from None
    except PermissionError:
        raise InvalidInputError(f"cannot read {what}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"cannot read {what}: file is truncated or corrupt ({exc})") from None
    try:
        _check_pixels(image.width, image.height, limit, what)
        return _decode(image, what)
    except BaseException:
        if owned:
            image.close()
        raise


# ------------------------------------------------------------------------------------------------------------
# Mode conversion (see the module docstring's table)
# ------------------------------------------------------------------------------------------------------------
def _profile_space(icc: bytes | None) -> str | None:
    """The colour space an ICC profile describes ("RGB", "CMYK", "GRAY", ...), or None if it is unreadable."""
    if not icc:
        return None
    try:
        return ImageCms.ImageCmsProfile(_io.BytesIO(icc)).profile.xcolor_space.strip()
    except (ImageCms.PyCMSError, OSError, TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=1)
def _srgb_bytes() -> bytes:
    """LittleCMS's sRGB profile.

    Cached: its header holds the creation time, so one process writes one profile.
    """
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _flatten_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    # Pillow's paste with an L mask rounds exactly as round((c·a + bg·(255 − a)) / 255).
    flat = Image.new("RGB", rgba.size, _WHITE)
    flat.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    return flat


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    return (np.clip(values, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)


def _unit_float_to_eight(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.size and (not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > 1.0):
        raise InvalidInputError(f"{what}: float pixel values must be finite and within [0, 1]")
    return np.rint(values * 255.0).astype(np.uint8)


def _image_to_rgb(image: Image.Image, what: str) -> tuple[np.ndarray, bytes | None]:
    """Pillow image (any mode) -> uint8 RGB array and the ICC profile that still describes it."""
    icc = image.info.get("icc_profile") or None
    mode = image.mode
    if mode == "CMYK":
        if icc is not None and _profile_space(icc) == "CMYK":
            try:
                rgb = ImageCms.profileToProfile(
                    image,
                    ImageCms.ImageCmsProfile(_io.BytesIO(icc)),
                    ImageCms.createProfile("sRGB"),
                    renderingIntent=ImageCms.Intent.PERCEPTUAL,
                    outputMode="RGB",
                )
                return np.asarray(rgb, dtype=np.uint8).copy(), _srgb_bytes()
            except ImageCms.PyCMSError:
                pass  # a broken profile: fall back to the naive conversion below
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy(), None
    keep_icc = icc if _profile_space(icc) == "RGB" else None
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgb = _flatten_on_white(image)
    elif mode == "1":
        rgb = image.convert("L").convert("RGB")
    elif mode.startswith("I;16") or mode == "I":
        grey = _sixteen_to_eight(np.asarray(image))
        return np.repeat(grey[..., None], 3, axis=2), None
    elif mode == "F":
        grey = _unit_float_to_eight(np.asarray(image), what)
        return np.repeat(grey[..., None], 3, axis=2), None
    elif mode == "RGB":
        rgb = image
    else:
        try:
            rgb = image.convert("RGB")
        except ValueError:
            raise InvalidInputError(f"cannot read {what}: unsupported image mode {mode!r}") from None
    return np.array(rgb, dtype=np.uint8), keep_icc


def _array_to_image(array: np.ndarray, what: str) -> tuple[Image.Image | None, np.ndarray | None, str]:
    """Numpy input -> (a Pillow image for the shared rules, or a ready RGB array) and its mode.

    The mode is the Pillow mode the array corresponds to.
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InvalidInputError(f"{what}: expected an H×W, H×W×3 or H×W×4 array, got shape {a.shape}")
    if a.dtype == np.bool_:
        a, mode = a.astype(np.uint8) * 255, "1"
    elif a.dtype == np.uint8:
        mode = "L" if a.ndim == 2 else ("RGB" if a.shape[2] == 3 else "RGBA")
    elif a.dtype == np.uint16:
        a, mode = _sixteen_to_eight(a), "I;16"
    elif np.issubdtype(a.dtype, np.floating):
        a, mode = _unit_float_to_eight(a, what), "F"
    else:
        raise InvalidInputError(
            f"{what}: unsupported array dtype {a.dtype} (use uint8, uint16, bool or float)"
        )
    if a.ndim == 2:
        return None, np.repeat(a[..., None], 3, axis=2), mode
    if a.shape[2] == 3:
        return None, np.ascontiguousarray(a), mode
    return Image.fromarray(np.ascontiguousarray(a), "RGBA"), None, mode


def _upright(image: Image.Image) -> tuple[Image.Image, bytes | None]:
    """Apply EXIF orientation (Pillow's exif_transpose); return the upright image and the EXIF block to keep.

    A damaged EXIF block must not make a readable photo unreadable: the pixels are then used as stored and the
    block is dropped.
    """
    try:
        return ImageOps.exif_transpose(image), _oriented_exif(image)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error):
        return image, None


def _oriented_exif(image: Image.Image) -> bytes | None:
    """The source's EXIF block for the edited pixels: Orientation reset to 1 (the pixels are upright now).

    It is re-serialised by Pillow, which writes IFD0 with the Exif, GPS and Interop sub-IFDs but not IFD1, the
    embedded thumbnail — good riddance here, since that thumbnail would still show the object we removed.
    """
    if not image.info.get("exif"):
        return None
    exif = image.getexif()
    if not exif:
        return None  # unreadable: Pillow parsed nothing worth keeping
    if _ORIENTATION in exif:
        exif[_ORIENTATION] = 1
    return exif.tobytes()


def _jpeg_settings(image: Image.Image) -> JpegSettings | None:
    if not isinstance(image, JpegImagePlugin.JpegImageFile) or image.layers != 3:
        return None
    qtables = getattr(image, "quantization", None)
    subsampling = JpegImagePlugin.get_sampling(image)
    if not qtables or subsampling < 0:
        return None
    progressive = bool(image.info.get("progressive") or image.info.get("progression"))
    return JpegSettings({k: list(v) for k, v in qtables.items()}, subsampling, progressive)


# ------------------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------------------
def read_image(
    source: ImageSource | LoadedImage,
    *,
    max_pixels: int | None = None,
    extra_formats: Sequence[str] | None = None,
) -> LoadedImage:
    """Read any supported image source into a :class:`LoadedImage` (rules in the module docstring).

    Files in formats outside :data:`ACCEPTED_FORMATS` are refused unless named in ``extra_formats`` (or
    ``$ERASEKIT_EXTRA_FORMATS``; ``"all"`` accepts every format Pillow reads).
    """
    if isinstance(source, LoadedImage):
        return source
    what = _describe(source, "image")
    limit = pixel_limit(max_pixels)
    if isinstance(source, np.ndarray):
        image, pixels, mode = _array_to_image(source, what)
        _check_pixels(source.shape[1], source.shape[0], limit, what)
        if pixels is None:
            assert image is not None  # _array_to_image returns either the pixels or an image to convert
            pixels, _ = _image_to_rgb(image, what)
        return LoadedImage(pixels=pixels, format=None, mode=mode)
    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    with _decoded(source, what, limit, extra_formats) as image:
        upright, exif = _upright(image)
        pixels, icc = _image_to_rgb(upright, what)
        compression = image.info.get("compression") if image.format == "TIFF" else None
        return LoadedImage(
            pixels=pixels,
            format=image.format,
            exif=exif,
            icc_profile=icc,
            mode=image.mode,
            path=path,
            jpeg=_jpeg_settings(image),
            compression=compression,
        )


def _mask_channel(channels: np.ndarray, has_alpha: bool) -> np.ndarray:
    """H×W or H×W×C values -> the H×W values that say "remove": alpha if it carries information, else the
    maximum over the colours (their magnitudes)."""
    if has_alpha:
        alpha = channels[..., -1]
        opaque = 1.0 if np.issubdtype(alpha.dtype, np.floating) else np.iinfo(alpha.dtype).max
        if not np.all(alpha == opaque):
            return alpha
        channels = channels[..., :-1]  # a fully opaque alpha says nothing about the mask: read the colours
    if channels.dtype.kind in "if":
        channels = np.abs(channels)  # "nonzero" includes negative values of signed and float masks
    if channels.ndim == 3:
        channels = channels.max(axis=-1)
    return channels


def _soft_values(values: np.ndarray) -> np.ndarray:
    """The mask channel as float32 in [0, 1]: 8-bit values / 255 (the OSOR authors' ``/255``), 16-bit ones
    (uint16, Pillow's 32-bit ``I`` for 16-bit grey) / 65535, floats clipped to [0, 1]. An integer mask whose
    largest value is 1 is a label map ({0, 1}, bool): it stays binary rather than becoming 1/255."""
    if values.dtype.kind == "f":
        return np.clip(values, 0.0, 1.0).astype(np.float32)
    if values.size and values.max() == 1:
        scale = 1.0
    else:
        scale = 65535.0 if values.dtype in (np.uint16, np.int32) else 255.0
    # float32 division, as the authors' ``tensor.float() / 255``
    return np.clip(values.astype(np.float32) / np.float32(scale), 0.0, 1.0)


def _mask_from_image(image: Image.Image, what: str) -> np.ndarray:
    mode = image.mode
    if mode == "P" or "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in _ALPHA_MODES:
        image = image.convert("RGBA")
        return _mask_channel(np.asarray(image), True)
    if mode == "CMYK":
        image = image.convert("RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode not in ("RGB", "L", "F", "I") and not mode.startswith("I;16"):
        try:
            image = image.convert("RGB")
        except ValueError:
            raise InvalidInputError(f"cannot read {what}: unsupported image mode {mode!r}") from None
    values = np.asarray(image)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise InvalidInputError(f"{what}: mask values must be finite")
    return _mask_channel(values, False)


def _mask_from_array(array: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InvalidInputError(f"{what}: expected an H×W, H×W×3 or H×W×4 array, got shape {a.shape}")
    if not (a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise InvalidInputError(f"{what}: unsupported array dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise InvalidInputError(f"{what}: mask values must be finite")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    return _mask_channel(a, a.ndim == 3 and a.shape[2] == 4)


def read_mask(
    source: ImageSource,
    *,
    shape: tuple[int, int] | None = None,
    resize: bool = False,
    max_pixels: int | None = None,
    extra_formats: Sequence[str] | None = None,
    soft: bool = False,
) -> np.ndarray:
    """Read a mask as float32 H×W in {0, 1} (1 = remove); rules in the module docstring.

    ``shape`` is the image's (H, W). A mask of another size raises :class:`InvalidInputError` naming both
    sizes, unless ``resize=True``, which resizes it with nearest-neighbour sampling (so it stays binary).
    ``soft=True`` returns the same channel's values in [0, 1] instead (see :func:`read_mask_pair`).
    """
    binary, values = _read_mask(source, shape, resize, max_pixels, extra_formats, soft)
    return values if values is not None else binary


def read_mask_pair(
    source: ImageSource,
    *,
    shape: tuple[int, int] | None = None,
    resize: bool = False,
    max_pixels: int | None = None,
    extra_formats: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One decode, two readings: (binary mask as :func:`read_mask` returns it, soft values float32 in [0, 1]).

    The soft values come from the same channel (alpha rule included) scaled to [0, 1] (8-bit / 255, 16-bit
    / 65535, floats clipped; an integer {0, 1} label mask stays binary), without any threshold: JPEG noise
    below the binary rule's 128 stays as its small value. Methods that condition on soft masks (OSOR, whose
    authors read masks ``/255``) use them; the binary mask is the one every method fills and pastes back.
    A resize samples both with the same nearest-neighbour grid.
    """
    binary, values = _read_mask(source, shape, resize, max_pixels, extra_formats, True)
    assert values is not None
    return binary, values


def _read_mask(
    source: ImageSource,
    shape: tuple[int, int] | None,
    resize: bool,
    max_pixels: int | None,
    extra_formats: Sequence[str] | None,
    soft: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    what = _describe(source, "mask")
    limit = pixel_limit(max_pixels)
    if isinstance(source, np.ndarray):
        values = _mask_from_array(source, what)
        threshold = 0
        _check_pixels(values.shape[1], values.shape[0], limit, what)
    else:
        with _decoded(source, what, limit, extra_formats) as image:
            threshold = 127 if image.format in _LOSSY_MASK_FORMATS else 0
            values = _mask_from_image(_upright(image)[0], what)
    binary = values > threshold
    soft_values = _soft_values(values) if soft else None
    if shape is not None and binary.shape != tuple(shape[:2]):
        height, width = shape[:2]
        if not resize:
            raise InvalidInputError(
                f"mask size {binary.shape[1]}×{binary.shape[0]} does not match image size {width}×{height} "
                f"(pass resize_mask=True / --resize-mask to resize it)"
            )
        eight = Image.fromarray(binary.astype(np.uint8) * 255, "L")
        resized = eight.resize((width, height), Image.Resampling.NEAREST)
        binary = np.asarray(resized) > 0
        if soft_values is not None:  # nearest on a float ("F") image samples the same pixels, values exact
            as_float = Image.fromarray(soft_values)
            soft_values = np.asarray(as_float.resize((width, height), Image.Resampling.NEAREST))
    if soft_values is not None:
        soft_values = np.ascontiguousarray(soft_values, dtype=np.float32)
    return binary.astype(np.float32), soft_values


# ------------------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------------------
def _normalise_format(name: str) -> str:
    upper = name.strip().lstrip(".").upper()
    upper = _FORMAT_ALIASES.get(upper, upper)
    if upper in Image.SAVE:
        return upper
    by_extension = Image.registered_extensions().get("." + upper.lower())
    if by_extension and by_extension in Image.SAVE:
        return _FORMAT_ALIASES.get(by_extension, by_extension)
    raise InvalidInputError(f"unknown image format {name!r}")


def output_format(
    path: str | os.PathLike | None, format: str | None = None, like: LoadedImage | None = None
) -> str:
    """The format a write uses: the extension's; without one ``format``, else the source's, else PNG."""
    if path is not None and (suffix := Path(path).suffix.lower()):
        by_extension = Image.registered_extensions().get(suffix)
        if by_extension is None or by_extension not in Image.SAVE:
            raise InvalidInputError(
                f"unknown image extension '{suffix}' for '{os.fspath(path)}' "
                "(use .png, .jpg, .webp, .tif, ...)"
            )
        chosen = _FORMAT_ALIASES.get(by_extension, by_extension)
        if format is not None and _normalise_format(format) != chosen:
            raise InvalidInputError(
                f"format {format!r} contradicts the extension '{suffix}' of '{os.fspath(path)}'"
            )
        return chosen
    if format is not None:
        return _normalise_format(format)
    if like is not None and like.format:
        try:
            return _normalise_format(like.format)
        except InvalidInputError:
            pass  # a format Pillow reads but cannot write (PSD, ...): fall back to PNG
    return "PNG"


def _save_options(fmt: str, like: LoadedImage | None, quality: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if quality is not None and not (1 <= int(quality) <= 100):
        raise InvalidInputError(f"quality must be between 1 and 100, got {quality}")
    if like is not None and fmt in _METADATA_FORMATS:
        if like.exif:
            options["exif"] = like.exif
        if like.icc_profile:
            options["icc_profile"] = like.icc_profile
    if fmt == "JPEG":
        source = like.jpeg if like is not None else None
        if quality is None and source is not None:
            # Pillow's quality="keep", from the remembered settings: same tables, same subsampling, same size.
            options.update(
                qtables=source.qtables, subsampling=source.subsampling, progressive=source.progressive
            )
        else:
            options["quality"] = int(quality) if quality is not None else _DEFAULT_QUALITY
            if source is not None:
                options["subsampling"] = source.subsampling
    elif fmt == "WEBP":
        options["quality"] = int(quality) if quality is not None else _DEFAULT_QUALITY
    elif fmt == "TIFF":
        kept = like.compression if like is not None and like.format == "TIFF" else None
        options["compression"] = kept if kept in _TIFF_COMPRESSIONS else "tiff_adobe_deflate"
        if options.get("exif") and _has_sub_ifds(options["exif"]):
            # Pillow's libtiff writer (every compressed TIFF) fails on the EXIF sub-IFD pointers; its own
            # writer handles them but only uncompressed. Keeping the camera metadata wins over file size here.
            options["compression"] = "raw"
    return options


def _has_sub_ifds(exif_bytes: bytes) -> bool:
    exif = Image.Exif()
    exif.load(exif_bytes)
    return any(tag in exif for tag in (0x8769, 0x8825))  # Exif IFD, GPS IFD


def _as_pil(pixels: Any, what: str) -> Image.Image:
    if isinstance(pixels, LoadedImage):
        pixels = pixels.pixels
    if isinstance(pixels, Image.Image):
        return pixels if pixels.mode == "RGB" else pixels.convert("RGB")
    array = np.asarray(pixels)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise InvalidInputError(
            f"{what}: expected uint8 RGB H×W×3 (or H×W grey) pixels, got {array.dtype} "
            f"array of shape {array.shape}"
        )
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def _encode(image: Image.Image, stream: BinaryIO, fmt: str, options: dict[str, Any], what: str) -> None:
    try:
        image.save(stream, format=fmt, **options)
    except (ValueError, KeyError) as exc:
        raise InvalidInputError(f"cannot encode {what} as {fmt}: {exc}") from None


def _atomic_write(path: Path, write: Any) -> Path:
    """Write through ``write(stream)`` atomically and durably (:mod:`erasekit.atomic`); erasekit errors."""
    from .atomic import atomic_write

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"cannot create folder '{path.parent}': {exc.strerror or exc}") from None
    if path.is_dir():
        raise InvalidInputError(f"cannot write '{path}': it is a directory")
    try:
        return atomic_write(path, write)
    except OSError as exc:  # an unwritable place the user named (-o /proc/x.png): bad input, exit 2
        if isinstance(exc, FileExistsError):  # 16 random temporary names were all taken
            raise InvalidInputError(f"cannot create a temporary file beside '{path}'") from None
        raise InvalidInputError(f"cannot write '{path}': {exc.strerror or exc}") from exc


def write_image(
    path: str | os.PathLike,
    pixels: Any,
    *,
    like: LoadedImage | None = None,
    format: str | None = None,
    quality: int | None = None,
) -> Path:
    """Write uint8 RGB pixels to ``path`` atomically.

    Keeps the source's format details and metadata (``like``).
    """
    path = Path(path)
    fmt = output_format(path, format, like)
    options = _save_options(fmt, like, quality)
    image = _as_pil(pixels, f"image for '{path}'")
    return _atomic_write(path, lambda stream: _encode(image, stream, fmt, options, f"'{path}'"))


def encode_image(
    pixels: Any,
    format: str = "PNG",
    like: LoadedImage | None = None,
    quality: int | None = None,
    png_compress_level: int | None = None,
) -> bytes:
    """The bytes :func:`write_image` would write, for sending over the network.

    ``png_compress_level`` (0-9) trades PNG size for speed; a server answering interactively wants 1.
    """
    fmt = _normalise_format(format)
    options = _save_options(fmt, like, quality)
    if fmt == "PNG" and png_compress_level is not None:
        if not 0 <= int(png_compress_level) <= 9:
            raise InvalidInputError(f"png_compress_level must be between 0 and 9, got {png_compress_level}")
        options["compress_level"] = int(png_compress_level)
    buffer = _io.BytesIO()
    _encode(_as_pil(pixels, "image"), buffer, fmt, options, "image")
    return buffer.getvalue()


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a float mask in [0, 1] (or bool) as an 8-bit greyscale PNG, atomically.

    Values map to 0..255; soft values are kept.
    """
    path = Path(path)
    if path.suffix and path.suffix.lower() != ".png":
        raise InvalidInputError(f"masks are written as PNG; '{path}' has the extension '{path.suffix}'")
    array = np.asarray(mask)
    if array.ndim != 2:
        raise InvalidInputError(f"mask for '{path}' must be H×W, got shape {array.shape}")
    if array.dtype == np.uint8:
        eight = array
    else:
        from .convert import mask_to_uint8

        eight = mask_to_uint8(array.astype(np.float32))
    image = Image.fromarray(np.ascontiguousarray(eight), "L")
    return _atomic_write(path, lambda stream: _encode(image, stream, "PNG", {}, f"'{path}'"))


__all__ = ["ACCEPTED_FORMATS", "DEFAULT_MAX_PIXELS", "EXTRA_FORMATS_ENV", "MAX_PIXELS_ENV", "JpegSettings",
           "LoadedImage", "encode_image", "output_format", "pixel_limit", "read_image", "read_mask",
           "read_mask_pair",
           "readable_formats", "write_image", "write_mask"]

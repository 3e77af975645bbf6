"""SAM 2 preprocessing without torchvision equals transformers' own Sam2ImageProcessor, bit for bit.

transformers' SAM 2 image processor exists only as a torchvision backend, and torchvision has no CPU build for
this torch, so erasekit preprocesses SAM 2 inputs itself (:meth:`erasekit.data.savp_models.SamSegmenter.
sam2_pixel_values`). The reference here is the real thing: transformers' processor running on torchvision's
own Python code, unpacked from the torchvision wheel that pairs with the installed torch (.ci/run downloads it
into the ignored ``.refs/``), in a child process. Its compiled ``_C.so`` links CUDA libraries and is not
loaded; the child only declares the two operator names torchvision's import registers fake kernels for
(``nms``, ``qnms``), which preprocessing never calls. Resizing, rescaling and normalising are torchvision's
and transformers' code, not a copy of erasekit's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from erasekit.data.savp_models import SamSegmenter
from erasekit.testing.segment import write_tiny_sam2

_UNPACKED = Path(__file__).resolve().parents[1] / ".refs" / "torchvision"
REFS = Path(os.environ.get("ERASEKIT_TORCHVISION_SRC") or _UNPACKED)


def _torchvision_source() -> Path | None:
    """The unpacked torchvision wheel, when it pairs with the installed torch (its METADATA pins torch)."""
    import torch

    metadata = next(REFS.glob("torchvision-*.dist-info/METADATA"), None)
    if metadata is None or not (REFS / "torchvision" / "transforms").is_dir():
        return None
    wanted = torch.__version__.split("+")[0]
    return REFS if f"Requires-Dist: torch (=={wanted})" in metadata.read_text() else None


_CHILD = r"""
import sys
import numpy as np
import torch

lib = torch.library.Library("torchvision", "DEF")  # see the module docstring
lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
import torchvision
from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor

folder, inputs, outputs = sys.argv[1:4]
processor = Sam2ImageProcessor.from_pretrained(folder, local_files_only=True)
photos = np.load(inputs)
np.savez(outputs, **{name: processor(images=photos[name], return_tensors="pt")["pixel_values"][0].numpy()
                     for name in photos.files}, version=np.array(torchvision.__version__))
"""


def _photos() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "astronaut": data.astronaut(),  # 512² -> the model's square: a plain downscale
        "coffee": data.coffee(),  # 400×600: both sides change, by different factors
        "chelsea_small": data.chelsea()[::5, ::5],  # 61×90: an upscale
        # sharp noise at 1500×2250: aliasing would show here first, if the resize had no antialias
        "noise_large": rng.integers(0, 256, (1500, 2250, 3), dtype=np.uint8),
    }


@pytest.mark.skipif(
    _torchvision_source() is None,
    reason="torchvision's wheel for the installed torch is not unpacked in .refs/torchvision (.ci/run does "
    "it: pip download --no-deps torchvision==0.28.0, then unzip), nor at $ERASEKIT_TORCHVISION_SRC",
)
def test_sam2_pixel_values_equal_transformers_sam2_image_processor(tmp_path):
    folder = write_tiny_sam2(tmp_path / "sam2")  # with preprocessor_config.json, as the Hub's checkpoints
    photos = _photos()
    np.savez(tmp_path / "in.npz", **photos)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_torchvision_source()), *sys.path])}
    command = [sys.executable, "-c", _CHILD, str(folder), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")]
    subprocess.run(command, check=True, env=env, timeout=300)
    reference = np.load(tmp_path / "out.npz")
    assert str(reference["version"]).startswith("0.")  # torchvision's own code ran

    segmenter = SamSegmenter(str(folder), device="cpu")
    for name, photo in photos.items():
        pixels, (sx, sy) = segmenter.sam2_pixel_values(photo)
        expected = reference[name]
        assert pixels.shape[1:] == expected.shape, name
        np.testing.assert_array_equal(pixels[0].numpy(), expected, err_msg=name)
        h, w = photo.shape[:2]
        assert (sx, sy) == (expected.shape[2] / w, expected.shape[1] / h)


def test_sam2_resize_is_antialiased_not_plain_bilinear(tmp_path):
    """Without torchvision at hand: a 1-pixel checkerboard shrunk 4× is flat grey when antialiased (what
    torchvision does), not the aliased pattern plain bilinear sampling returns (the border rows and columns,
    where the filter is cut off, aside)."""
    segmenter = SamSegmenter(str(write_tiny_sam2(tmp_path / "sam2")), device="cpu")
    size = segmenter._size[0]
    board = ((np.indices((4 * size, 4 * size)).sum(axis=0) % 2) * 255).astype(np.uint8)
    pixels, _ = segmenter.sam2_pixel_values(np.dstack([board] * 3))
    grey = (np.full((1, 1, 3), 128, np.float32) / 255 - segmenter._mean) / segmenter._std
    inner = pixels[0].numpy().transpose(1, 2, 0)[1:-1, 1:-1]
    np.testing.assert_allclose(inner, np.broadcast_to(grey, inner.shape), atol=1 / 255 / 0.224)

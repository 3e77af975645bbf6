"""Golden outputs: the exact pixels ``erasekit remove`` writes for every method on fixed inputs.

Weight-free methods run on the demo photos with the demo masks; diffusion methods run on a downscaled demo
photo with the tiny checkpoints of :mod:`erasekit.testing` and fixed seeds; refiners run after telea.

Two kinds of pin:

- Outputs computed without a neural network (OpenCV, PatchMatch, the classical refiners) are pinned by the
  SHA-256 of their pixels (and their shape and mean, to make a failure readable): a refactor that changes any
  pixel fails here.
- Outputs of a network are pinned by their pixels, stored as PNGs in ``tests/golden/``, and compared within
  ``NEURAL_MAX_LEVELS`` grey levels per pixel. A library upgrade that reorders a float sum (diffusers 0.42
  moved the tiny OSOR-FLUX and MagicRemover outputs) must not fail the suite, while a real change of behaviour
  moves pixels by far more than that.

A change that is *meant* to change pixels regenerates the file on purpose and says why in its commit::

    ERASEKIT_REGEN_GOLDEN=1 pytest tests/test_golden.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "golden" / "remove_pixels.json"
GOLDEN_PIXELS = Path(__file__).parent / "golden"
NEURAL_MAX_LEVELS = 2
REGEN = os.environ.get("ERASEKIT_REGEN_GOLDEN") == "1"

WEIGHT_FREE = ("patchmatch", "telea", "ns")
DEMO_PHOTOS = ("astronaut", "coffee", "rocket", "camera")
# (method, extra CLI arguments); two denoising steps keep the multi-step methods quick. Weights come from
# erasekit.testing.write_tiny_weights, the same entry point users and the other tests take.
DIFFUSION = (
    ("sd15-inpaint", ["--steps", "2"]),
    ("sd2-inpaint", ["--steps", "2"]),
    ("sdxl-inpaint", ["--steps", "2"]),
    ("flux-fill", ["--steps", "2"]),
    ("osor-sdxl", []),
    ("osor-flux", []),
    ("clipaway", ["--steps", "2"]),
    ("lama", []),  # not diffusion: LaMa on its tiny TorchScript weights
)
REFINERS = ("poisson", "color-match", "pixperfect")


def _fingerprint(path: Path) -> dict:
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB"))
    return {"sha256": hashlib.sha256(pixels.tobytes()).hexdigest(), "shape": list(pixels.shape),
            "mean": round(float(pixels.mean()), 4)}


@pytest.fixture(scope="module")
def golden():
    stored = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    seen: dict = {}
    yield stored, seen
    if REGEN:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps({**stored, **seen}, indent=1, sort_keys=True) + "\n")


def _check(golden, key: str, path: Path) -> None:
    stored, seen = golden
    seen[key] = _fingerprint(path)
    if REGEN:
        return
    assert key in stored, f"no golden output for {key}; regenerate with ERASEKIT_REGEN_GOLDEN=1"
    assert seen[key] == stored[key], f"{key}: pixels changed"


def _check_pixels(key: str, path: Path) -> None:
    """Compare a network's output with its stored PNG, within NEURAL_MAX_LEVELS per pixel."""
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB"))
    stored = GOLDEN_PIXELS / f"{key.replace('/', '__')}.png"
    if REGEN:
        Image.fromarray(pixels).save(stored)
        return
    assert stored.is_file(), f"no golden output for {key}; regenerate with ERASEKIT_REGEN_GOLDEN=1"
    expected = np.asarray(Image.open(stored).convert("RGB"))
    assert pixels.shape == expected.shape, f"{key}: shape {pixels.shape} != {expected.shape}"
    worst = int(np.abs(pixels.astype(np.int16) - expected.astype(np.int16)).max())
    assert worst <= NEURAL_MAX_LEVELS, f"{key}: pixels moved by up to {worst} levels"


def _demo_inputs(name: str, folder: Path) -> tuple[Path, Path]:
    from PIL import Image

    from erasekit.demo import demo_photos

    photo = next(p for p in demo_photos() if p.name == name)
    pixels = photo.pixels()
    mask = photo.mask(pixels.shape[:2])
    Image.fromarray(pixels).save(folder / f"{name}.png")
    Image.fromarray((mask > 0).astype(np.uint8) * 255).save(folder / f"{name}_mask.png")
    return folder / f"{name}.png", folder / f"{name}_mask.png"


@pytest.mark.parametrize("photo", DEMO_PHOTOS)
@pytest.mark.parametrize("method", WEIGHT_FREE)
def test_weight_free_methods_on_the_demo_photos(golden, method, photo, tmp_path):
    from erasekit.cli import main

    image, mask = _demo_inputs(photo, tmp_path)
    out = tmp_path / "out.png"
    assert main(["remove", str(image), "--mask", str(mask), "--method", method, "--dilate", "4",
                 "--seed", "0", "-o", str(out)]) == 0
    _check(golden, f"{method}/{photo}", out)


@pytest.fixture(scope="module")
def small_photo(tmp_path_factory):
    """The astronaut photo and its mask at 64×64 (nearest for the mask, so it stays binary)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("golden-input")
    image, mask = _demo_inputs("astronaut", folder)
    Image.open(image).resize((64, 64), Image.BICUBIC).save(image)
    Image.open(mask).resize((64, 64), Image.NEAREST).save(mask)
    return image, mask


def _weight_args(options: dict) -> list[str]:
    """Load options from write_tiny_weights as CLI flags."""
    return [arg for key, value in options.items() for arg in (f"--{key}", str(value))]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "extra"), DIFFUSION, ids=[d[0] for d in DIFFUSION])
def test_diffusion_methods_on_tiny_checkpoints(golden, small_photo, method, extra, tmp_path):
    from erasekit.cli import main
    from erasekit.testing import write_tiny_weights

    image, mask = small_photo
    out = tmp_path / "out.png"
    weights = _weight_args(write_tiny_weights(method, tmp_path / "weights"))
    assert main(["remove", str(image), "--mask", str(mask), "--method", method, "--seed", "0", *weights,
                 *extra, "-o", str(out)]) == 0
    _check_pixels(method, out)


@pytest.mark.slow
def test_magicremover_without_a_mask_on_tiny_checkpoints(golden, small_photo, tmp_path):
    from erasekit.cli import main
    from erasekit.testing import write_tiny_weights

    image, _ = small_photo
    out = tmp_path / "out.png"
    weights = _weight_args(write_tiny_weights("magicremover", tmp_path / "weights"))
    assert main(["remove", str(image), "--method", "magicremover", "--prompt", "a photo of a person",
                 "--target", "person", "--seed", "0", *weights, "-O", "resolution=64", "-O", "steps=3",
                 "-O", "inner_steps=2", "-o", str(out)]) == 0
    _check_pixels("magicremover", out)


@pytest.mark.parametrize("refiner", REFINERS)
def test_refiners_after_telea_on_a_demo_photo(golden, small_photo, refiner, tmp_path):
    from erasekit.cli import main
    from erasekit.testing import write_tiny_weights

    image, mask = small_photo
    out = tmp_path / "out.png"
    spec = refiner
    if refiner == "pixperfect":
        spec = f"pixperfect:weights={write_tiny_weights('pixperfect', tmp_path / 'weights')['weights']}"
    assert main(["remove", str(image), "--mask", str(mask), "--method", "telea", "--refine", spec,
                 "-o", str(out)]) == 0
    if refiner == "pixperfect":
        _check_pixels(f"refine/{refiner}", out)
    else:
        _check(golden, f"refine/{refiner}", out)

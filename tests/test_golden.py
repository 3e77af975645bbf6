"""Golden outputs: the exact pixels ``erasekit remove`` writes for every method on fixed inputs.

Weight-free methods run on the demo photos with the demo masks; diffusion methods run on a downscaled demo
photo with the tiny checkpoints of :mod:`erasekit.testing` and fixed seeds; refiners run after telea. Each
output is pinned by the SHA-256 of its pixels (and its shape and mean, to make a failure readable). A refactor
that changes any pixel fails here.

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
    _check(golden, method, out)


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
    _check(golden, "magicremover", out)


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
    _check(golden, f"refine/{refiner}", out)

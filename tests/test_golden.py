"""Golden outputs: the exact pixels ``erasekit remove`` writes for every method on fixed inputs.

Weight-free methods run on the demo photos with the demo masks; diffusion methods run on a downscaled demo photo
with the tiny checkpoints of :mod:`erasekit.testing` and fixed seeds. Each output is pinned by the SHA-256 of its
pixels (and its shape and mean, to make a failure readable). A refactor that changes any pixel fails here.

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
# (method, tiny backbone, extra CLI arguments); two denoising steps keep the multi-step baselines quick.
DIFFUSION = (
    ("sd15-inpaint", "sd15-inpaint", ["--steps", "2"]),
    ("sd2-inpaint", "sd2-inpaint", ["--steps", "2"]),
    ("sdxl-inpaint", "sdxl-inpaint", ["--steps", "2"]),
    ("flux-fill", "flux-fill", ["--steps", "2"]),
    ("osor-sdxl", "sdxl-inpaint", []),
    ("osor-flux", "flux-fill", []),
)


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


@pytest.mark.slow
@pytest.mark.parametrize(("method", "backbone", "extra"), DIFFUSION, ids=[d[0] for d in DIFFUSION])
def test_diffusion_methods_on_tiny_checkpoints(golden, small_photo, tiny, method, backbone, extra, tmp_path):
    from erasekit.cli import main

    args = ["--model", str(tiny(backbone))]
    if method.startswith("osor-"):
        from erasekit.testing.osor import write_tiny_osor_weights

        family = method.removeprefix("osor-")
        weights = write_tiny_osor_weights(family, tmp_path / f"tiny_{family}_phase2.pth", phase=2)
        args += ["--weights", str(weights)]
    image, mask = small_photo
    out = tmp_path / "out.png"
    assert main(["remove", str(image), "--mask", str(mask), "--method", method, "--seed", "0", *args, *extra,
                 "-o", str(out)]) == 0
    _check(golden, method, out)

"""Synthetic effect scenes: real photo crops with inserted objects that cast shadows and mirror reflections.

Each scene is a quadruple (shot, background, object mask, effect mask) with exact ground truth, used as test
data for training, for SAVP and for a small honest benchmark. It is *not* a photorealistic renderer; it has
the two properties the methods care about: effects that extend beyond the object, and a background that is
untouched everywhere else.

How a scene is made (all randomness from one ``numpy.random.Generator``, so a seed gives identical bytes):

1. **Background**: a random square crop of a photo bundled in the scikit-image wheel (``skimage.data``; no
   download), resized to ``size × size`` with area interpolation.
2. **Object**: an ellipse, polygon or star-shaped blob, drawn hard-edged with OpenCV, coloured with a random
hue,
   Lambert-like shading from a random light direction and a sinusoidal texture.
3. **Shadow** (multiplicative): the object's silhouette squashed towards its base and sheared sideways (a cast
   shadow on the ground), blurred with a Gaussian (soft penumbra), scaled by a strength; the background is
   multiplied by ``1 - alpha``.
4. **Reflection** (mirror): the object flipped about its base line onto the "floor" below it, darkened and
   alpha-blended with a strength that fades linearly with distance from the base.
5. The object is pasted on top.

**Effect-mask threshold.** Shadow and reflection alphas below :attr:`SceneConfig.alpha_floor` (default 0.05)
are set to 0, so a penumbra ends instead of fading into one-grey-level changes across the image. The effect
mask is then exactly ``object ∪ {pixels whose value changed}``: outside it the shot equals the background bit
for bit.

``phase2`` uses Eq. 2 of OSOR (arXiv:2606.28094): ‖m_eff‖₁ / ‖m_fuse‖₁ ≥ 0.25 with m_fuse the effect mask
and m_eff = m_fuse \\ m_obj.
"""

from __future__ import annotations

import colorsys
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import io
from ..atomic import write_text
from ..masks import Box
from ..types import InvalidInputError
from .paired import PHASE2_THRESHOLD, PairedDatasetWriter

# Photos (not synthetic test patterns) from skimage.data that load without pooch downloads.
BACKGROUND_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "stereo_motorcycle",
    "brick",
    "grass",
    "gravel",
    "camera",
    "coins",
    "moon",
)
EFFECT_PROBABILITIES = {"shadow": 0.35, "reflection": 0.25, "both": 0.3, "none": 0.1}
_SHAPES = ("ellipse", "polygon", "blob")
_HUE_NAMES = (
    (15, "red"),
    (40, "orange"),
    (70, "yellow"),
    (160, "green"),
    (200, "cyan"),
    (260, "blue"),
    (300, "purple"),
    (340, "pink"),
    (360, "red"),
)
_SHAPE_NAMES = {"ellipse": "ball", "polygon": "box", "blob": "toy"}


@cache
def _photo(name: str) -> np.ndarray:
    import skimage.data

    array = getattr(skimage.data, name)()
    if isinstance(array, tuple):  # stereo pairs
        array = array[0]
    return io.read_image(np.asarray(array)).pixels


@dataclass(frozen=True)
class SceneConfig:
    """Ranges (low, high) are sampled uniformly per scene; lengths are fractions of ``size``."""

    size: int = 64
    object_radius: tuple[float, float] = (0.12, 0.2)
    crop_fraction: tuple[float, float] = (0.35, 0.9)
    shadow_strength: tuple[float, float] = (0.4, 0.7)
    shadow_squash: tuple[float, float] = (0.2, 0.45)
    shadow_shear: tuple[float, float] = (0.5, 1.3)
    shadow_blur: tuple[float, float] = (0.01, 0.03)
    reflection_strength: tuple[float, float] = (0.35, 0.6)
    reflection_length: tuple[float, float] = (0.5, 1.0)  # fade length as a fraction of the object height
    alpha_floor: float = 0.05
    effects: dict[str, float] = field(default_factory=lambda: dict(EFFECT_PROBABILITIES))
    photos: tuple[str, ...] = BACKGROUND_PHOTOS

    def __post_init__(self) -> None:
        if self.size < 16:
            raise InvalidInputError(f"synthetic scenes need size >= 16 pixels, got {self.size}")


@dataclass
class SyntheticScene:
    shot: np.ndarray  # uint8 H×W×3, background + effects + object
    background: np.ndarray  # uint8 H×W×3, the clean target
    object_mask: np.ndarray  # float32 {0, 1}
    effect_mask: np.ndarray  # float32 {0, 1}: object ∪ changed pixels
    shadow_alpha: np.ndarray  # float32 [0, 1] (0 where there is no shadow)
    reflection_alpha: np.ndarray  # float32 [0, 1]
    object_box: Box
    meta: dict[str, Any]

    @property
    def effect_ratio(self) -> float:
        """Eq. 2: ‖m_fuse \\ m_obj‖₁ / ‖m_fuse‖₁."""
        fuse = self.effect_mask > 0
        return float((fuse & ~(self.object_mask > 0)).sum()) / max(int(fuse.sum()), 1)

    @property
    def phase2(self) -> bool:
        return self.effect_ratio >= PHASE2_THRESHOLD

    @property
    def instruction_noun(self) -> str:
        return f"{self.meta['colour']} {_SHAPE_NAMES[self.meta['shape']]}"


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _background(rng: np.random.Generator, cfg: SceneConfig) -> tuple[np.ndarray, dict]:
    name = cfg.photos[int(rng.integers(len(cfg.photos)))]
    photo = _photo(name)
    h, w = photo.shape[:2]
    side = max(cfg.size, int(min(h, w) * _uniform(rng, cfg.crop_fraction)))
    side = min(side, h, w)
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo[top : top + side, left : left + side]
    out = cv2.resize(crop, (cfg.size, cfg.size), interpolation=cv2.INTER_AREA)
    return out, {"photo": name, "crop": [top, left, side]}


def _object_mask(rng: np.random.Generator, cfg: SceneConfig) -> tuple[np.ndarray, str]:
    s = cfg.size
    r = _uniform(rng, cfg.object_radius) * s
    cx = _uniform(rng, (r + 2, s - r - 2))
    cy = _uniform(rng, (r + 2, max(r + 2.5, 0.55 * s)))  # upper part: leave floor below for the reflection
    kind = _SHAPES[int(rng.integers(len(_SHAPES)))]
    mask = np.zeros((s, s), np.uint8)
    if kind == "ellipse":
        axes = (max(2, round(r * _uniform(rng, (0.6, 1.0)))), max(2, round(r * _uniform(rng, (0.6, 1.0)))))
        cv2.ellipse(mask, (round(cx), round(cy)), axes, _uniform(rng, (0, 180)), 0, 360, 1, thickness=-1)
    else:
        n = int(rng.integers(5, 9)) if kind == "polygon" else 48
        angles = (
            np.sort(rng.uniform(0, 2 * np.pi, n))
            if kind == "polygon"
            else np.linspace(0, 2 * np.pi, n, endpoint=False)
        )
        if kind == "polygon":
            radii = r * rng.uniform(0.6, 1.0, n)
        else:
            a2, a3 = rng.uniform(0.05, 0.25, 2)
            p2, p3 = rng.uniform(0, 2 * np.pi, 2)
            radii = r * 0.8 * (1 + a2 * np.sin(2 * angles + p2) + a3 * np.sin(3 * angles + p3))
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool), kind


def _object_colours(rng: np.random.Generator, mask: np.ndarray) -> tuple[np.ndarray, str]:
    s = mask.shape[0]
    hue = _uniform(rng, (0, 360))
    base = np.array(colorsys.hsv_to_rgb(hue / 360, _uniform(rng, (0.5, 0.95)), _uniform(rng, (0.6, 1.0))))
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32)
    ty, tx = np.nonzero(mask)
    cy, cx = ty.mean(), tx.mean()
    rad = max(float(np.hypot(ty - cy, tx - cx).max()), 1.0)
    light = rng.normal(size=2)
    light /= np.linalg.norm(light) + 1e-9
    shading = 0.75 + 0.25 * ((xs - cx) * light[0] + (ys - cy) * light[1]) / rad
    theta, freq = _uniform(rng, (0, np.pi)), _uniform(rng, (0.3, 0.9))
    texture = 1.0 + 0.12 * np.sin(freq * (xs * np.cos(theta) + ys * np.sin(theta)))
    rgb = 255.0 * base[None, None, :] * (shading * texture)[..., None]
    name = next(n for limit, n in _HUE_NAMES if hue < limit)
    return np.clip(rgb, 0, 255).astype(np.float32), name


def _cut(alpha: np.ndarray, floor: float) -> np.ndarray:
    return np.where(alpha >= floor, alpha, 0.0).astype(np.float32)


def _shadow_alpha(rng: np.random.Generator, mask: np.ndarray, base: int, cfg: SceneConfig) -> np.ndarray:
    s = cfg.size
    squash = _uniform(rng, cfg.shadow_squash)
    shear = _uniform(rng, cfg.shadow_shear) * float(rng.choice((-1.0, 1.0)))
    # Points (x, y) of the silhouette map to (x + shear·(base - y), base - squash·(base - y)): flattened onto
    # the ground behind the object, leaning sideways away from the light.
    matrix = np.array([[1.0, -shear, shear * base], [0.0, squash, (1.0 - squash) * base]], np.float32)
    warped = cv2.warpAffine(
        mask.astype(np.float32),
        matrix,
        (s, s),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    sigma = max(0.6, _uniform(rng, cfg.shadow_blur) * s)
    soft = cv2.GaussianBlur(warped, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_CONSTANT)
    return _cut(np.clip(soft, 0, 1) * _uniform(rng, cfg.shadow_strength), cfg.alpha_floor)


def _reflection(
    rng: np.random.Generator, mask: np.ndarray, colours: np.ndarray, base: int, cfg: SceneConfig
) -> tuple[np.ndarray, np.ndarray]:
    s = cfg.size
    rows = np.arange(s)
    source = 2 * base + 1 - rows  # row y below the base shows the object's row 2·base + 1 - y (mirror)
    valid = (rows > base) & (source >= 0) & (source < s)
    flipped_mask = np.zeros_like(mask)
    flipped_rgb = np.zeros_like(colours)
    flipped_mask[valid] = mask[source[valid]]
    flipped_rgb[valid] = colours[source[valid]] * 0.8  # a reflection is darker than the object
    height = int(np.ptp(np.nonzero(mask.any(axis=1))[0])) + 1
    fade = max(1.0, _uniform(rng, cfg.reflection_length) * height)
    ramp = np.clip(1.0 - (rows - base - 1) / fade, 0.0, 1.0)[:, None]
    alpha = flipped_mask * ramp * _uniform(rng, cfg.reflection_strength)
    return _cut(alpha, cfg.alpha_floor), flipped_rgb


def make_scene(rng: np.random.Generator, config: SceneConfig | None = None) -> SyntheticScene:
    """One scene from ``rng`` (see the module docstring for the recipe)."""
    cfg = config or SceneConfig()
    background, meta = _background(rng, cfg)
    mask, kind = _object_mask(rng, cfg)
    colours, colour_name = _object_colours(rng, mask)
    base = int(np.nonzero(mask.any(axis=1))[0].max())
    names = list(cfg.effects)
    p = np.array([cfg.effects[k] for k in names], np.float64)
    effects = names[int(rng.choice(len(names), p=p / p.sum()))]

    shot: np.ndarray = background.astype(np.float32)
    zeros = np.zeros(mask.shape, np.float32)
    shadow = _shadow_alpha(rng, mask, base, cfg) if effects in ("shadow", "both") else zeros
    shot = shot * (1.0 - shadow[..., None])  # multiplicative darkening
    if effects in ("reflection", "both"):
        reflection, mirrored = _reflection(rng, mask, colours, base, cfg)
        shot = shot * (1.0 - reflection[..., None]) + mirrored * reflection[..., None]
    else:
        reflection = zeros
    shot[mask] = colours[mask]
    shot_u8 = np.clip(np.rint(shot), 0, 255).astype(np.uint8)

    object_mask = mask.astype(np.float32)
    changed = np.any(shot_u8 != background, axis=2)
    effect_mask = (mask | changed).astype(np.float32)
    ys, xs = np.nonzero(mask)
    box = Box(int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
    meta.update(
        {
            "shape": kind,
            "colour": colour_name,
            "effects": effects,
            "object_box": [box.top, box.left, box.bottom, box.right],
        }
    )
    return SyntheticScene(
        shot_u8,
        background,
        object_mask,
        effect_mask,
        np.where(mask, 0, shadow).astype(np.float32),
        np.where(mask, 0, reflection).astype(np.float32),
        box,
        meta,
    )


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """Scene ``index`` of a seeded set has its own stream.

    So scene i does not depend on how many come before.
    """
    return np.random.default_rng([int(seed), int(index)])


def iter_scenes(
    n: int, *, seed: int = 0, config: SceneConfig | None = None, start: int = 0
) -> Iterator[tuple[int, SyntheticScene]]:
    """Scenes ``start .. start + n - 1`` of the set defined by ``seed`` and ``config``."""
    cfg = config or SceneConfig()
    for i in range(start, start + n):
        yield i, make_scene(scene_rng(seed, i), cfg)


def generate_synthetic_dataset(
    out_dir: str | os.PathLike,
    n: int,
    size: int = 64,
    seed: int = 0,
    *,
    config: SceneConfig | None = None,
    progress: bool = False,
) -> Path:
    """Write ``n`` scenes as a paired dataset (ids ``000000``...).

    Resumable: existing ids are skipped, and since scene i depends only on (seed, i) a resumed run writes the
    same bytes an uninterrupted one would.
    """

    if n < 0:
        raise InvalidInputError(f"n must be >= 0, got {n}")
    writer = PairedDatasetWriter(out_dir)
    indices: Iterable[int] = range(n)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="synthetic scenes", unit="scene")
    cfg = config or SceneConfig(size=size)
    for i in indices:
        sample_id = f"{i:06d}"
        if sample_id in writer:
            continue
        scene = make_scene(scene_rng(seed, i), cfg)
        meta = {
            "source": "synthetic",
            "instruction": f"Remove the {scene.instruction_noun}",
            "seed": seed,
            "index": i,
            **scene.meta,
        }
        writer.add(
            sample_id,
            scene.shot,
            scene.background,
            scene.object_mask,
            scene.effect_mask,
            phase2=scene.phase2,
            meta=meta,
        )
    return Path(out_dir)


def write_synthetic_triplets(
    out_dir: str | os.PathLike,
    n_scenes: int,
    size: int = 256,
    seed: int = 0,
    *,
    config: SceneConfig | None = None,
) -> Path:
    """Instruction-edit triplets for SAVP from synthetic scenes: per scene an "add" triplet (original = clean,
    edited = shot) and a "remove" triplet (original = shot, edited = clean). Returns
    ``out_dir/triplets.jsonl``.

    Each line also carries ``truth`` (object/effect mask paths, object box) for benchmarks; SAVP ignores it.
    """
    out = Path(out_dir)
    cfg = config or SceneConfig(size=size)
    lines = []
    for i in range(n_scenes):
        scene = make_scene(scene_rng(seed, i), cfg)
        sid = f"scene{i:05d}"
        shot = io.write_image(out / "scenes" / f"{sid}_shot.png", scene.shot)
        clean = io.write_image(out / "scenes" / f"{sid}_clean.png", scene.background)
        io.write_mask(out / "truth" / f"{sid}_object.png", scene.object_mask)
        io.write_mask(out / "truth" / f"{sid}_effect.png", scene.effect_mask)
        truth = {
            "object_mask": f"truth/{sid}_object.png",
            "effect_mask": f"truth/{sid}_effect.png",
            "object_box": scene.meta["object_box"],
            "effects": scene.meta["effects"],
        }
        noun = scene.instruction_noun
        lines.append(
            {
                "id": f"{sid}-add",
                "original": clean.relative_to(out).as_posix(),
                "edited": shot.relative_to(out).as_posix(),
                "instruction": f"Add a {noun}",
                "truth": truth,
            }
        )
        lines.append(
            {
                "id": f"{sid}-remove",
                "original": shot.relative_to(out).as_posix(),
                "edited": clean.relative_to(out).as_posix(),
                "instruction": f"Remove the {noun}",
                "truth": truth,
            }
        )
    manifest = out / "triplets.jsonl"
    text = "".join(json.dumps(line) + "\n" for line in lines)
    write_text(manifest, text)  # readers never see a half-written manifest
    return manifest


__all__ = ["BACKGROUND_PHOTOS", "SceneConfig", "SyntheticScene", "generate_synthetic_dataset", "iter_scenes",
           "make_scene", "scene_rng", "write_synthetic_triplets"]

"""EraDiff's training pairs (arXiv:2503.07026 Sec. 4.1, "Dynamic Latent States").

"A trained matting model is employed to segment the primary object [in x_ori]. We then apply various image
transformation techniques, including rotation and scaling, to modify the segmented objects. These transformed
objects are randomly pasted onto the background region, resulting in a new synthesized image, x_obj."

One sample, all of its randomness drawn from ``(seed, image index, copy index)``:

1. segment the primary object of the source image (a :class:`PrimarySegmenter`);
2. cut it out (its mask is the alpha), flip it horizontally with probability ``flip_prob``, rotate it by
   U(−``max_rotation``, ``max_rotation``) degrees and scale it by U(``scale``) (one ``cv2.warpAffine``,
   bilinear, so the alpha gets soft edges);
3. paste it at a random place on the target image (the source itself, ``target="same"`` as the paper
   describes; or another image of the set) where it overlaps the target's own primary object by at most
   ``max_overlap`` of its area, alpha-compositing: x_obj = α·object + (1 − α)·x_ori;
4. write (image = x_obj, background = x_ori, object_mask = effect_mask = α > 0) into the paired-dataset
   format (:mod:`erasekit.data.paired`). Every pixel the paste touched is in the mask, so x_obj equals x_ori
   exactly outside it.

Segmenters: ``sam2`` (or a path/Hub id of a SAM2/SAM checkpoint) prompts SAVP's
:class:`~erasekit.data.savp_models.SamSegmenter` with a centred box; ``grabcut`` is OpenCV's GrabCut in the
same box, a weight-free classical stand-in; ``masks:DIR`` reads ``DIR/<image stem>.png`` (given masks, e.g.
OpenImages' segmentation masks, which the paper trains on). The "primary object" of a photo is what the
centred box prompt selects, reduced to its largest connected component; a photo whose object covers less than
``min_area`` or more than ``max_area`` of it is skipped.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from ..masks import Box
from ..types import InvalidInputError

Target = Literal["same", "other", "either"]


@dataclass(frozen=True)
class PairConfig:
    """The pair builder's settings. The paper gives none of these numbers (Sec. 4.1 names rotation and
    scaling only); see docs/eradiff.md."""

    copies: int = 1  # pairs per source image, each with its own draw
    target: Target = "same"  # paste onto the source image, another image of the set, or either (50/50)
    max_rotation: float = 30.0  # degrees, U(−r, r)
    scale: tuple[float, float] = (0.5, 1.0)  # U(low, high), relative to the segmented object
    flip_prob: float = 0.5  # horizontal flip
    max_overlap: float = 0.0  # of the pasted area on the target's own primary object ("background region")
    min_area: float = 0.01  # of the image: smaller objects are skipped
    max_area: float = 0.5  # of the image: larger ones leave no background to paste on
    attempts: int = 50  # placements (and transforms) tried before the sample is skipped
    box_margin: float = 0.1  # the centred prompt box leaves this fraction of each side out

    def __post_init__(self) -> None:
        if self.copies < 1 or self.attempts < 1:
            raise InvalidInputError("copies and attempts must be at least 1")
        if self.target not in ("same", "other", "either"):
            raise InvalidInputError(f"target must be same, other or either, not {self.target!r}")
        low, high = self.scale
        if not 0 < low <= high:
            raise InvalidInputError(f"scale must be 0 < low <= high, got {self.scale}")
        if not (0 <= self.flip_prob <= 1 and 0 <= self.max_overlap <= 1 and 0 <= self.box_margin < 0.5
                and 0 <= self.min_area < self.max_area <= 1):
            raise InvalidInputError("flip_prob, max_overlap in [0, 1]; box_margin in [0, 0.5); "
                                    "0 <= min_area < max_area <= 1")


# ------------------------------------------------------------------------------------------------------------
# Segmenting the primary object
# ------------------------------------------------------------------------------------------------------------
class PrimarySegmenter(Protocol):
    name: str

    def primary(self, image: np.ndarray, path: Path) -> np.ndarray:
        """A bool H×W mask of the photo's primary object (possibly empty)."""
        ...


@dataclass
class BoxPromptedPrimary:
    """A box-prompted segmenter (SAVP's ``Segmenter``: SAM2, SAM or GrabCut) prompted with one centred box."""

    segmenter: Any
    name: str
    box_margin: float = 0.1

    def primary(self, image: np.ndarray, path: Path) -> np.ndarray:
        h, w = image.shape[:2]
        dy, dx = round(h * self.box_margin), round(w * self.box_margin)
        return np.asarray(self.segmenter.segment(image, [Box(dy, dx, h - dy, w - dx)])[0], bool)


@dataclass
class MaskFolderPrimary:
    """Given masks: ``folder/<image stem>.png`` (any mask :func:`erasekit.io.read_mask` reads)."""

    folder: Path
    name: str = "masks"

    def primary(self, image: np.ndarray, path: Path) -> np.ndarray:
        from .. import io

        candidates = sorted(self.folder.glob(f"{path.stem}.*"))
        if not candidates:
            raise InvalidInputError(f"no mask for {path.name} in {self.folder} (expected {path.stem}.png)")
        return io.read_mask(candidates[0], shape=image.shape[:2]) > 0.5


def make_segmenter(spec: str, *, device: str | None = None, box_margin: float = 0.1) -> PrimarySegmenter:
    """``sam2`` (SAVP's default SAM2 checkpoint) | a SAM2/SAM folder or cached Hub id | ``grabcut`` |
    ``masks:DIR``."""
    from .savp_models import DEFAULT_SEGMENTER, GrabCutSegmenter, SamSegmenter

    if spec.startswith("masks:"):
        folder = Path(spec.removeprefix("masks:"))
        if not folder.is_dir():
            raise InvalidInputError(f"mask folder {folder} does not exist")
        return MaskFolderPrimary(folder)
    if spec == "grabcut":
        return BoxPromptedPrimary(GrabCutSegmenter(), "grabcut", box_margin)
    name = DEFAULT_SEGMENTER if spec == "sam2" else spec
    return BoxPromptedPrimary(SamSegmenter(name, device=device), name, box_margin)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a bool mask (empty stays empty)."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask, bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


# ------------------------------------------------------------------------------------------------------------
# Transforming and pasting
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    angle: float
    scale: float
    flip: bool
    top: int
    left: int
    source: str
    target: str


def transformed_object(image: np.ndarray, mask: np.ndarray, *, angle: float, scale: float,
                       flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """The object cut out of ``image`` by ``mask``, flipped, rotated by ``angle`` degrees (counter-clockwise)
    and scaled about its centre, on a canvas that just holds it: (RGB float32, alpha float32 in [0, 1])."""
    import cv2

    ys, xs = np.nonzero(mask)
    crop = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    rgb, alpha = image[crop].astype(np.float32), mask[crop].astype(np.float32)
    if flip:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    h, w = alpha.shape
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    # 1e-6: cos 90° is 6e-17, not 0, and must not add a column
    out_w = max(1, math.ceil(w * cos + h * sin - 1e-6))
    out_h = max(1, math.ceil(w * sin + h * cos - 1e-6))
    matrix[0, 2] += (out_w - 1) / 2 - (w - 1) / 2
    matrix[1, 2] += (out_h - 1) / 2 - (h - 1) / 2
    def warp(values: np.ndarray) -> np.ndarray:
        warped = cv2.warpAffine(np.ascontiguousarray(values), matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return np.asarray(warped)

    # premultiplied colour, so the object's edge does not pick up the cut-away background
    premultiplied = warp(rgb * alpha[..., None])
    alpha_out = np.clip(warp(alpha), 0.0, 1.0)
    alpha_out[alpha_out < 1e-3] = 0.0  # interpolation dust: no mask pixel for an invisible change
    colour = premultiplied / np.maximum(alpha_out, 1e-6)[..., None]
    return np.clip(colour, 0, 255), alpha_out


def paste(target: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, top: int,
          left: int) -> tuple[np.ndarray, np.ndarray]:
    """(x_obj, mask): ``rgb`` alpha-composited onto ``target`` at (top, left); mask = α > 0. Pixels with
    α = 0 are copied from ``target`` untouched."""
    h, w = alpha.shape
    region = (slice(top, top + h), slice(left, left + w))
    out = target.copy()
    a = alpha[..., None]
    blended = np.rint(a * rgb + (1.0 - a) * target[region].astype(np.float32)).astype(np.uint8)
    inside = alpha > 0
    out[region][inside] = blended[inside]
    mask = np.zeros(target.shape[:2], np.float32)
    mask[region] = inside
    return out, mask


def place(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, target: np.ndarray,
          target_object: np.ndarray, config: PairConfig, source: str,
          target_name: str) -> tuple[np.ndarray, np.ndarray, Placement] | None:
    """Draw transforms and positions until the pasted object fits inside ``target`` and covers at most
    ``max_overlap`` of its area of ``target_object``; None after ``config.attempts`` tries."""
    height, width = target.shape[:2]
    for _ in range(config.attempts):
        angle = float(rng.uniform(-config.max_rotation, config.max_rotation))
        scale = float(rng.uniform(*config.scale))
        flip = bool(rng.random() < config.flip_prob)
        rgb, alpha = transformed_object(image, mask, angle=angle, scale=scale, flip=flip)
        h, w = alpha.shape
        if h > height or w > width or not (alpha > 0).any():
            continue
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        pasted = alpha > 0
        overlap = target_object[top:top + h, left:left + w][pasted].sum() / pasted.sum()
        if overlap <= config.max_overlap:
            x_obj, pasted_mask = paste(target, rgb, alpha, top, left)
            return x_obj, pasted_mask, Placement(angle, scale, flip, top, left, source, target_name)
    return None


# ------------------------------------------------------------------------------------------------------------
# The dataset
# ------------------------------------------------------------------------------------------------------------
@dataclass
class PairStats:
    written: int = 0
    existing: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def sample_rng(seed: int, image_index: int, copy: int) -> np.random.Generator:
    return np.random.default_rng([seed, image_index, copy])


def debug_sheet(x_ori: np.ndarray, x_obj: np.ndarray, mask: np.ndarray,
                source_mask: np.ndarray) -> np.ndarray:
    """x_ori | x_obj | x_obj with the pasted mask in red | the segmented source object (white)."""
    overlay = x_obj.astype(np.float32)
    overlay[mask > 0] = 0.5 * overlay[mask > 0] + 0.5 * np.array([255, 0, 0], np.float32)
    source = np.repeat((source_mask > 0)[..., None] * 255, 3, axis=2)
    if source.shape != x_ori.shape:  # the object came from another image: show it at its own size, padded
        canvas = np.zeros_like(x_ori)
        h, w = min(source.shape[0], x_ori.shape[0]), min(source.shape[1], x_ori.shape[1])
        canvas[:h, :w] = source[:h, :w]
        source = canvas
    gap = np.full((x_ori.shape[0], 4, 3), 128, np.uint8)
    panels = [x_ori, gap, x_obj, gap, overlay.astype(np.uint8), gap, source.astype(np.uint8)]
    return np.concatenate(panels, axis=1)


def build_eradiff_pairs(images: Sequence[str | os.PathLike], output: str | os.PathLike, *,
                        segmenter: PrimarySegmenter, config: PairConfig | None = None, seed: int = 0,
                        debug_sheets: bool = False, progress: bool = True) -> PairStats:
    """Write ``config.copies`` pairs per source image into the paired dataset ``output`` (created or
    resumed: ids already in its manifest are skipped, and every draw depends only on (seed, image index,
    copy), so a resumed run writes what an uninterrupted one would)."""
    from tqdm.auto import tqdm

    from .. import io
    from ..batch import collect_images
    from .paired import PairedDatasetWriter

    config = config or PairConfig()
    paths = collect_images(images)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InvalidInputError(f"no such image: {missing[0]}")
    if not paths:
        raise InvalidInputError("no images given")
    if config.target == "other" and len(paths) < 2:
        raise InvalidInputError("target 'other' needs at least two images")
    writer = PairedDatasetWriter(output)
    stats = PairStats()
    objects: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # image index -> (pixels, primary object)

    def load(index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in objects:
            pixels = io.read_image(paths[index]).pixels
            found = largest_component(segmenter.primary(pixels, paths[index]))
            objects.clear()  # keep at most the source and one target in memory
            objects[index] = (pixels, found)
        return objects[index]

    work = [(i, k) for i in range(len(paths)) for k in range(config.copies)]
    for i, k in tqdm(work, desc="eradiff pairs", disable=not progress, unit="pair"):
        sample_id = f"{i:06d}_{k:02d}"
        if sample_id in writer:
            stats.existing += 1
            continue
        rng = sample_rng(seed, i, k)
        other = config.target == "other" or (config.target == "either" and len(paths) > 1
                                              and rng.random() < 0.5)
        j = i
        if other:
            j = int(rng.integers(0, len(paths) - 1))
            j += j >= i  # any image but the source
        image, obj = load(i)
        image, obj = image.copy(), obj.copy()
        area = obj.mean()
        if not config.min_area <= area <= config.max_area:
            stats.skip("object too small" if area < config.min_area else "object too large")
            continue
        target, target_object = (image, obj) if j == i else load(j)
        placed = place(rng, image, obj, target, target_object, config, paths[i].name, paths[j].name)
        if placed is None:
            stats.skip("no background place")
            continue
        x_obj, mask, placement = placed
        if debug_sheets:
            io.write_image(Path(output) / "debug" / f"{sample_id}.png", debug_sheet(target, x_obj, mask, obj))
        writer.add(sample_id, x_obj, target, mask, mask, phase2=False,
                   meta={"source": "eradiff-pairs", "segmenter": segmenter.name, "seed": seed,
                         **asdict(placement)})
        stats.written += 1
    return stats


__all__ = ["BoxPromptedPrimary", "MaskFolderPrimary", "PairConfig", "PairStats", "Placement",
           "PrimarySegmenter", "build_eradiff_pairs", "debug_sheet", "largest_component", "make_segmenter",
           "paste", "place", "sample_rng", "transformed_object"]

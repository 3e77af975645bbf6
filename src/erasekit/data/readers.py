"""Readers for published paired-removal layouts, converted into erasekit's paired format.

We could not read the datasets themselves offline, so the layouts below are what the authors' public code and
READMEs describe; each assumption is written down so a mismatch is easy to spot.

**CORNE** (OSOR; Zhouqm-Git/osor, ``SAVP/README.md`` and the training loaders)::

    ROOT/shot/<stem>.(png|jpg)        I_shot
    ROOT/bg/<stem>.(png|jpg)          I_gt
    ROOT/masks/mask_<stem>.png        m_gt (effect-aware); also accepted: output/masks/, <stem>.png names
    ROOT/mask_sam/<stem>.png          m_obj (object core), written for the effect-heavy subset only
    ROOT/prompts.json                 {"<stem>": "<instruction>"} (optional)

Assumptions: a sample is the set of stems present in ``shot`` and ``bg``; a stem without an effect mask is an
error. Without an object-core mask the object mask is the effect mask and ``phase2`` is false (nothing tells
the object from its effects). With one, ``phase2`` is the Eq. 2 ratio ‖m_gt \\ m_obj‖₁ / ‖m_gt‖₁ ≥ 0.25
computed on m_gt — the paper computes it on the pre-expansion fused mask, which CORNE does not ship, so the
1.2× growth makes our ratio slightly larger than the authors' on borderline samples.

**RORD-style** folders (real object removal pairs from videos)::

    ROOT/<img|image|images|input>/<stem>.(jpg|png)
    ROOT/<gt|bg|background|backgrounds>/<stem>.(jpg|png)
    ROOT/<mask|masks|multi_mask>/<stem>.png

Assumptions: shot, background and mask share a stem; the mask covers the removed object (RORD does not
separate effects), so it is both the object and the effect mask and ``phase2`` is false.

Both readers keep the masks' soft values (:func:`erasekit.data.paired.read_soft_mask`: the file's values / 255
inside its binary mask), so an import stores anti-aliased or matte masks as they are, and a binary mask file
imports byte for byte as before. ``phase2`` is computed on the binary view (nonzero pixels).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .. import io
from ..types import InvalidInputError
from .paired import PHASE2_THRESHOLD, PairedDatasetWriter, PairedSample, read_soft_mask

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _files_by_stem(folder: Path, *, prefix: str = "") -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            stem = path.stem[len(prefix):] if prefix and path.stem.startswith(prefix) else path.stem
            out.setdefault(stem, path)
    return out


def _first_dir(root: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise InvalidInputError(f"'{root}' has no {what} folder (looked for {', '.join(names)})")


def effect_ratio(effect_mask: np.ndarray, object_mask: np.ndarray) -> float:
    """Eq. 2 effects ratio ‖m_eff‖₁ / ‖m_fuse‖₁ with m_eff = m_fuse \\ m_obj, on the masks' binary views
    (nonzero pixels, :func:`erasekit.data.paired.binary_view`; soft masks count where they are nonzero)."""
    fuse = np.asarray(effect_mask) > 0
    total = int(fuse.sum())
    if total == 0:
        return 0.0
    return float((fuse & ~(np.asarray(object_mask) > 0)).sum()) / total


def _sample(stem: str, shot: Path, bg: Path, effect: Path, obj: Path | None, meta: dict) -> PairedSample:
    image = io.read_image(shot).pixels
    background = io.read_image(bg).pixels
    if background.shape != image.shape:
        raise InvalidInputError(f"sample {stem!r}: '{bg.name}' and '{shot.name}' differ in size")
    effect_mask = read_soft_mask(effect, shape=image.shape[:2])
    if obj is None:
        object_mask, phase2 = effect_mask.copy(), False
    else:
        object_mask = read_soft_mask(obj, shape=image.shape[:2])
        phase2 = effect_ratio(effect_mask, object_mask) >= PHASE2_THRESHOLD
    return PairedSample(stem, image, background, object_mask, effect_mask, phase2, meta)


def iter_corne(root: str | os.PathLike) -> Iterator[PairedSample]:
    """Samples of a CORNE-layout folder (see the module docstring)."""
    root = Path(root)
    shots = _files_by_stem(_first_dir(root, ("shot",), "shot"))
    bgs = _files_by_stem(_first_dir(root, ("bg",), "bg"))
    mask_dir = _first_dir(root, ("masks", "output/masks"), "masks")
    effects = {**_files_by_stem(mask_dir), **_files_by_stem(mask_dir, prefix="mask_")}
    objects: dict[str, Path] = {}
    if (root / "mask_sam").is_dir():
        objects = {**_files_by_stem(root / "mask_sam"), **_files_by_stem(root / "mask_sam", prefix="mask_")}
    prompts = {}
    if (root / "prompts.json").is_file():
        try:
            prompts = json.loads((root / "prompts.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"'{root / 'prompts.json'}' is not valid JSON ({exc.msg})") from None
    for stem in sorted(set(shots) & set(bgs)):
        if stem not in effects:
            raise InvalidInputError(f"CORNE sample {stem!r} has no effect mask in '{mask_dir}'")
        meta = {"source": "corne"}
        if stem in prompts:
            meta["instruction"] = str(prompts[stem])
        yield _sample(stem, shots[stem], bgs[stem], effects[stem], objects.get(stem), meta)


def iter_rord(root: str | os.PathLike) -> Iterator[PairedSample]:
    """Samples of a RORD-style folder (see the module docstring)."""
    root = Path(root)
    shots = _files_by_stem(_first_dir(root, ("img", "image", "images", "input"), "image"))
    bgs = _files_by_stem(_first_dir(root, ("gt", "bg", "background", "backgrounds"), "background"))
    masks = _files_by_stem(_first_dir(root, ("mask", "masks", "multi_mask"), "mask"))
    for stem in sorted(shots):
        if stem not in bgs or stem not in masks:
            missing = [what for what, table in (("background", bgs), ("mask", masks)) if stem not in table]
            raise InvalidInputError(f"RORD sample {stem!r} has no {' or '.join(missing)} file")
        yield _sample(stem, shots[stem], bgs[stem], masks[stem], None, {"source": "rord"})


def import_samples(samples: Iterator[PairedSample], out_dir: str | os.PathLike) -> int:
    """Write samples into a paired dataset (skipping ids already there). Returns how many were added."""
    added = 0
    writer = PairedDatasetWriter(out_dir)
    for s in samples:
        if s.id in writer:
            continue
        writer.add(s.id, s.image, s.background, s.object_mask, s.effect_mask, phase2=s.phase2, meta=s.meta)
        added += 1
    return added


READERS = {"corne": iter_corne, "rord": iter_rord}

__all__ = ["READERS", "effect_ratio", "import_samples", "iter_corne", "iter_rord"]

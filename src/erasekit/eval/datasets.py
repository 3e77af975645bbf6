"""Benchmark datasets: erasekit's paired format plus adapters for the published removal benchmarks' layouts.

Everything becomes a sequence of :class:`EvalRecord` (input image, ground-truth background or None, object
mask, effect-aware mask, optional class label). Supported layouts (``--layout auto`` picks by what the folder
contains):

``paired``  erasekit's paired format (``manifest.jsonl``; :mod:`erasekit.data.paired`) — the synthetic effect
            scenes (``erasekit.data.synthetic.generate_synthetic_dataset``) are written in it.
``corne``   CORNE / CORNE-Val (OSOR): ``shot/``, ``bg/``, ``masks/mask_<stem>.png`` (effect-aware),
            ``mask_sam/`` (object core) — read by :func:`erasekit.data.readers.iter_corne`.
``rord``    RORD / RORD-Val: ``img|image|images|input/``, ``gt|bg|background/``, ``mask|masks|multi_mask/`` —
            :func:`erasekit.data.readers.iter_rord`; one mask serves as object and effect mask.
``removalbench``  RemovalBench (OmniEraser): ``input|image|images/``, ``mask|masks/`` (object masks),
            ``gt|target|background/``. Assumed layout (the benchmark ships as plain folders of same-stem
            files).
``omnipaint``  OmniPaint-Bench (removal split): ``images|input/``, ``masks|mask/``, ``gt|background|target/``.
            Assumed layout, as for RemovalBench. Both have object masks only: the effect mask equals the
            object mask (the papers evaluate them "under object-only masks", OSOR Table 4).
``coco``, ``coco-dilate5``, ``openimages``  instance-segmentation sets whose reference is the source photo
            (:mod:`erasekit.eval.adapters`).
``inpainting``  MISATO / Places2-style hole filling: ``images/`` and ``masks/`` of the same stems; the
            ground truth is the image itself.

Labels (for CLIP acc@k) come from ``meta.label`` / ``meta.class`` or an instruction "Remove the <label>".

Masks: a record's ``object_mask`` / ``effect_mask`` are binary {0, 1}, what every method fills and every
metric scores, equal to what these readers always gave. Records read from mask files also keep the files' soft
values (``object_soft`` / ``effect_soft``, :func:`erasekit.data.paired.read_soft_mask`: 8-bit values / 255;
JPEG masks stay binary); the benchmark hands them, as ``RemovalRequest.soft_mask``, only to methods that
condition on soft masks (OSOR, whose authors read masks ``/255``). COCO's polygon masks are binary by
construction and carry none.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .. import io
from ..data.paired import read_soft_mask
from ..types import InvalidInputError

LAYOUTS = ("auto", "paired", "corne", "rord", "removalbench", "omnipaint", "coco", "coco-dilate5",
           "openimages", "inpainting")
_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class EvalRecord:
    id: str
    image: np.ndarray
    background: np.ndarray | None
    object_mask: np.ndarray
    effect_mask: np.ndarray
    label: str | None = None
    # The mask files' soft values in [0, 1], nonzero exactly where the binary masks are 1 (None: the file's
    # values are binary, the binary mask is all there is).
    object_soft: np.ndarray | None = None
    effect_soft: np.ndarray | None = None

    @classmethod
    def from_soft(
        cls,
        sample_id: str,
        image: np.ndarray,
        background: np.ndarray | None,
        object_soft: np.ndarray,
        effect_soft: np.ndarray,
        label: str | None = None,
    ) -> EvalRecord:
        """A record from soft masks (:func:`erasekit.data.paired.read_soft_mask` values); the binary masks are
        their binary views. A soft mask that is binary already is not kept twice (its soft field is None)."""
        from ..data.paired import binary_view

        object_mask, effect_mask = binary_view(object_soft), binary_view(effect_soft)
        return cls(sample_id, image, background, object_mask, effect_mask, label,
                   None if np.array_equal(object_soft, object_mask) else object_soft,
                   None if np.array_equal(effect_soft, effect_mask) else effect_soft)

    def mask(self, kind: str) -> np.ndarray:
        """The binary mask of ``kind`` ("object" or "effect")."""
        _check_kind(kind)
        return self.object_mask if kind == "object" else self.effect_mask

    def soft_mask(self, kind: str) -> np.ndarray | None:
        """The soft values of ``kind``'s mask file, or None when the record has only binary masks."""
        _check_kind(kind)
        return self.object_soft if kind == "object" else self.effect_soft


def _check_kind(kind: str) -> None:
    if kind not in ("object", "effect"):
        raise InvalidInputError(f"mask kind must be 'object' or 'effect', got {kind!r}")


def label_from_meta(meta: dict) -> str | None:
    for key in ("label", "class", "category"):
        if isinstance(meta.get(key), str) and meta[key].strip():
            return meta[key].strip()
    instruction = meta.get("instruction")
    if isinstance(instruction, str) and instruction.lower().startswith("remove the "):
        return instruction[len("remove the "):].strip().rstrip(".") or None
    return None


class EvalDataset:
    """Ids plus a loader per id (records are read on demand, one at a time)."""

    def __init__(self, name: str, root: Path, loaders: dict[str, Callable[[], EvalRecord]]):
        self.name, self.root, self._loaders = name, root, loaders

    @property
    def ids(self) -> list[str]:
        return list(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def __getitem__(self, sample_id: str) -> EvalRecord:
        return self._loaders[sample_id]()

    def __iter__(self) -> Iterator[EvalRecord]:
        for sample_id in self._loaders:
            yield self[sample_id]

    def subset(self, limit: int | None) -> EvalDataset:
        if limit is None:
            return self
        return EvalDataset(self.name, self.root, dict(list(self._loaders.items())[:limit]))


def _from_samples(name: str, root: Path, samples) -> EvalDataset:
    # Published-layout readers yield loaded samples; keep them (benchmark sets are a few hundred images).
    # The readers' masks are soft (erasekit.data.readers).
    records = {s.id: EvalRecord.from_soft(s.id, s.image, s.background, s.object_mask, s.effect_mask,
                                         label_from_meta(s.meta)) for s in samples}
    return EvalDataset(name, root, {k: partial(records.__getitem__, k) for k in records})


def _paired(root: Path) -> EvalDataset:
    from ..data.paired import PairedDataset

    ds = PairedDataset(root, masks="soft")

    def load(sample_id: str) -> EvalRecord:
        s = ds[sample_id]
        return EvalRecord.from_soft(s.id, s.image, s.background, s.object_mask, s.effect_mask,
                                    label_from_meta(s.meta))

    return EvalDataset("paired", root, {i: partial(load, i) for i in ds.ids})


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in _SUFFIXES}


def _find_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


def _require_dir(root: Path, names: tuple[str, ...], what: str) -> Path:
    found = _find_dir(root, names)
    if found is None:
        raise InvalidInputError(f"'{root}' has no {what} folder (looked for {', '.join(names)})")
    return found


def _folder_triplets(name: str, root: Path, images: tuple[str, ...], masks: tuple[str, ...],
                     targets: tuple[str, ...]) -> EvalDataset:
    image_files = _files(_require_dir(root, images, "image"))
    mask_files = _files(_require_dir(root, masks, "mask"))
    target_dir = _find_dir(root, targets)
    target_files = _files(target_dir) if target_dir else {}
    missing = sorted(set(image_files) - set(mask_files))
    if missing:
        raise InvalidInputError(f"{name}: image {missing[0]!r} has no mask in '{root}'")

    def load(stem: str) -> EvalRecord:
        image = io.read_image(image_files[stem]).pixels
        soft = read_soft_mask(mask_files[stem], shape=image.shape[:2], resize=True)
        target = io.read_image(target_files[stem]).pixels if stem in target_files else None
        if target is not None and target.shape != image.shape:
            raise InvalidInputError(f"{name} sample {stem!r}: ground truth and input differ in size")
        return EvalRecord.from_soft(stem, image, target, soft, soft.copy())

    return EvalDataset(name, root, {s: partial(load, s) for s in image_files})


def detect_layout(root: Path) -> str:
    if (root / "manifest.jsonl").is_file():
        return "paired"
    if any((root / "annotations").glob("instances_*.json")):
        return "coco"
    if any(root.glob("*annotations-object-segmentation.csv")):
        return "openimages"
    if (root / "shot").is_dir() and (root / "bg").is_dir():
        return "corne"
    if any((root / n).is_dir() for n in ("img", "multi_mask")):
        return "rord"
    if (root / "input").is_dir() or (root / "images").is_dir():
        return "removalbench"
    raise InvalidInputError(f"cannot tell the layout of '{root}'; pass --layout ({', '.join(LAYOUTS[1:])})")


def open_dataset(root: str | os.PathLike, layout: str = "auto") -> EvalDataset:
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"dataset folder '{root}' does not exist")
    if layout not in LAYOUTS:
        raise InvalidInputError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "paired":
        return _paired(root)
    if layout == "corne":
        from ..data.readers import iter_corne

        return _from_samples("corne", root, iter_corne(root))
    if layout == "rord":
        from ..data.readers import iter_rord

        return _from_samples("rord", root, iter_rord(root))
    if layout in ("coco", "coco-dilate5", "openimages"):
        from .adapters import open_coco, open_openimages

        if layout == "openimages":
            return open_openimages(root)
        return open_coco(root, dilate=5 if layout == "coco-dilate5" else 0)
    if layout == "inpainting":
        images = ("images", "image")
        return _folder_triplets("inpainting", root, images, ("masks", "mask"), images)
    if layout == "removalbench":
        return _folder_triplets("removalbench", root, ("input", "image", "images"), ("mask", "masks"),
                                ("gt", "target", "background"))
    return _folder_triplets("omnipaint", root, ("images", "input"), ("masks", "mask"),
                            ("gt", "background", "target"))

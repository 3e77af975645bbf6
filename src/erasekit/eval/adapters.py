"""Dataset adapters for the benchmarks without a clean background: COCO val2017 (CLIPAway, MagicRemover) and
OpenImages V5 (EraDiff). Both are instance-segmentation sets: each object instance becomes one sample whose
mask is the instance mask, and whose "ground truth" is the **source photo itself** — these papers compare the
distribution of outputs with the distribution of source images (FID, CMMD, Local FID), and CLIP distance /
accuracy compare the output with the source crop. Metrics that assume a clean background (PSNR, SSIM, LPIPS)
then measure distance to the photo *with* the object; the papers that use these sets report LPIPS that way
(EraDiff) or not at all.

COCO (``--layout coco`` / ``coco-dilate5``)::

    ROOT/annotations/instances_val2017.json   (any instances_*.json)
    ROOT/val2017/*.jpg                        (or images/)

Polygon instances only (``iscrowd`` RLE regions are skipped), rasterised with ``cv2.fillPoly``; the label is
the category name. ``coco-dilate5`` dilates each mask with a 5×5 kernel, as CLIPAway's evaluation does
(Sec. 4.2: "We dilate the masks with a kernel size of 5"); MagicRemover states no dilation.

OpenImages V5 segmentation (``--layout openimages``)::

    ROOT/*-annotations-object-segmentation.csv   (MaskPath, ImageID, LabelName, ...)
    ROOT/*masks*/<MaskPath>                      (binary PNGs, any size: resized to the image, nearest)
    ROOT/validation/<ImageID>.jpg                (or images/, test/, train/)
    ROOT/class-descriptions-boxable.csv          (optional: LabelName -> class name)
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from .. import io
from ..data.paired import read_soft_mask
from ..types import InvalidInputError
from .datasets import EvalDataset, EvalRecord

_IMAGE_DIRS = ("val2017", "images", "validation", "test", "train")


def _image_dir(root: Path) -> Path:
    for name in _IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    raise InvalidInputError(f"'{root}' has no image folder (looked for {', '.join(_IMAGE_DIRS)})")


def _coco_mask(segmentation: list[list[float]], height: int, width: int, dilate: int) -> np.ndarray:
    filled = np.zeros((height, width), np.uint8)
    polygons = [np.round(np.asarray(p, np.float64).reshape(-1, 2)).astype(np.int32) for p in segmentation]
    cv2.fillPoly(filled, polygons, 1)
    if dilate > 1:
        filled = np.asarray(cv2.dilate(filled, np.ones((dilate, dilate), np.uint8)), np.uint8)
    return filled.astype(np.float32)


def open_coco(root: Path, *, dilate: int = 0) -> EvalDataset:
    candidates = sorted((root / "annotations").glob("instances_*.json"))
    if not candidates:
        raise InvalidInputError(f"'{root}' has no annotations/instances_*.json (COCO layout)")
    data = json.loads(candidates[0].read_text())
    images = {im["id"]: im for im in data["images"]}
    names = {c["id"]: c["name"] for c in data["categories"]}
    folder = _image_dir(root)

    def load(ann: dict) -> EvalRecord:
        info = images[ann["image_id"]]
        image = io.read_image(folder / info["file_name"]).pixels
        mask = _coco_mask(ann["segmentation"], image.shape[0], image.shape[1], dilate)
        sample_id = f"{ann['image_id']:012d}_{ann['id']}"
        return EvalRecord(sample_id, image, image, mask, mask.copy(), names.get(ann["category_id"]))

    loaders: dict[str, Callable[[], EvalRecord]] = {
        f"{ann['image_id']:012d}_{ann['id']}": partial(load, ann)
        for ann in sorted(data["annotations"], key=lambda a: (a["image_id"], a["id"]))
        if not ann.get("iscrowd") and isinstance(ann.get("segmentation"), list) and ann["segmentation"]
    }
    return EvalDataset("coco-dilate5" if dilate == 5 else "coco", root, loaders)


def open_openimages(root: Path) -> EvalDataset:
    tables = sorted(root.glob("*annotations-object-segmentation.csv"))
    if not tables:
        raise InvalidInputError(f"'{root}' has no *-annotations-object-segmentation.csv (OpenImages layout)")
    mask_dirs = [p for p in sorted(root.iterdir()) if p.is_dir() and "mask" in p.name]
    if not mask_dirs:
        raise InvalidInputError(f"'{root}' has no masks folder (a folder whose name contains 'mask')")
    classes: dict[str, str] = {}
    descriptions = root / "class-descriptions-boxable.csv"
    if descriptions.is_file():
        with open(descriptions, newline="") as fh:
            classes = {row[0]: row[1] for row in csv.reader(fh) if len(row) >= 2}
    folder = _image_dir(root)
    with open(tables[0], newline="") as fh:
        rows = list(csv.DictReader(fh))

    def mask_file(name: str) -> Path:
        for d in mask_dirs:
            if (d / name).is_file():
                return d / name
        raise InvalidInputError(f"OpenImages mask {name} not found under {', '.join(map(str, mask_dirs))}")

    def load(row: dict) -> EvalRecord:
        image = io.read_image(folder / f"{row['ImageID']}.jpg").pixels
        soft = read_soft_mask(mask_file(row["MaskPath"]), shape=image.shape[:2], resize=True)
        label = classes.get(row["LabelName"], row["LabelName"])
        return EvalRecord.from_soft(Path(row["MaskPath"]).stem, image, image, soft, soft.copy(), label)

    loaders: dict[str, Callable[[], EvalRecord]] = {Path(r["MaskPath"]).stem: partial(load, r) for r in rows}
    return EvalDataset("openimages", root, loaders)


__all__ = ["open_coco", "open_openimages"]

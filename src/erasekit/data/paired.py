"""The paired removal dataset.

Shots, clean backgrounds, object-core and effect-aware masks, one JSONL manifest.

Layout (every path in the manifest is relative to the dataset folder)::

    DATASET/
      manifest.jsonl          one JSON object per line, one line per sample
      images/<id>.png         the shot I_shot (PNG or JPEG)
      backgrounds/<id>.png    the paired clean target I_gt
      object_masks/<id>.png   m_obj, the tight object-core mask (8-bit PNG, 255 = object)
      effect_masks/<id>.png   m_gt, the effect-aware mask: object ∪ shadow ∪ reflection ∪ traces

A record::

    {"id": "000017", "image": "images/000017.png", "background": "backgrounds/000017.png",
     "object_mask": "object_masks/000017.png", "effect_mask": "effect_masks/000017.png",
     "phase2": true, "meta": {"source": "savp", "instruction": "Remove the red mug"}}

``phase2`` marks the effect-heavy subset OSOR's Phase II trains on (arXiv:2606.28094 Eq. 2 and Table 6:
‖m_eff‖₁ / ‖m_fuse‖₁ ≥ 0.25).

Masks keep soft values. A mask file holds the 8-bit mask as given (an anti-aliased edge, an alpha matte); a
binary {0, 1} mask is stored as 0/255, byte for byte what earlier versions wrote. Reading gives one of two
views, and this is the only place a paired mask is binarised:

* ``"soft"``: the stored values / 255 as float32 (the OSOR authors' ``/255``, Zhouqm-Git/osor
  ``src/data/dataset.py``). OSOR's trainer and OSOR's benchmark conditioning read it.
* ``"binary"`` (the default): :func:`binary_view`, nonzero = 1, which is :func:`erasekit.io.read_mask`'s rule
  for PNG masks, so this view equals what every reader gave before. The EraDiff trainer, PixPerfect's real
  pairs, every other method in ``bench`` and all metrics use it.

The writer keeps the invariant the binary view relies on: a stored value is nonzero exactly where the given
mask is (a value too small for 8 bits is stored as 1, not dropped).

Writing is crash-safe: each file goes through :func:`erasekit.io.write_image` / :func:`erasekit.io.write_mask`
(temp file + rename) and only then is the manifest line appended and fsynced, so a record never names a file
that is not complete. A last line without its newline is an append interrupted by a crash; readers skip it and
the writer cuts it off before appending. The writer knows which ids exist, so a re-run skips them (resumable).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from PIL import Image

from .. import io, jsonl
from ..convert import mask_to_uint8
from ..types import InvalidInputError

MANIFEST_NAME = "manifest.jsonl"
REQUIRED_FIELDS = ("id", "image", "background", "object_mask", "effect_mask", "phase2")
PATH_FIELDS = ("image", "background", "object_mask", "effect_mask")
IMAGE_FORMATS = {"PNG", "JPEG"}
# τ_eff: a sample is effect-heavy (``phase2``, OSOR's Phase II subset) when its effects ratio
# r_eff = ‖m_eff‖₁ / ‖m_fuse‖₁ (m_eff of Eq. 2) is at least this (arXiv:2606.28094, App. A.1 Alg. 2, Table 6).
PHASE2_THRESHOLD = 0.25
# Ids become file names: keep them portable and free of path separators.
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FOLDERS = {
    "image": "images",
    "background": "backgrounds",
    "object_mask": "object_masks",
    "effect_mask": "effect_masks",
}


@dataclass(frozen=True)
class PairedRecord:
    """One manifest line, paths relative to the dataset folder."""

    id: str
    image: str
    background: str
    object_mask: str
    effect_mask: str
    phase2: bool
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        payload = {
            "id": self.id,
            "image": self.image,
            "background": self.background,
            "object_mask": self.object_mask,
            "effect_mask": self.effect_mask,
            "phase2": self.phase2,
        }
        if self.meta:
            payload["meta"] = self.meta
        return json.dumps(payload, ensure_ascii=False, sort_keys=False)


MaskView = Literal["binary", "soft"]
MASK_VIEWS: tuple[MaskView, ...] = ("binary", "soft")


def binary_view(mask: np.ndarray) -> np.ndarray:
    """A dataset mask's binary reading, float32 {0, 1}: nonzero = remove (:func:`erasekit.io.read_mask`'s rule
    for PNG masks; of :func:`read_soft_mask` values, exactly ``io.read_mask`` of the same file)."""
    return (np.asarray(mask) > 0).astype(np.float32)


def read_soft_mask(
    path: str | os.PathLike, *, shape: tuple[int, int] | None = None, resize: bool = False
) -> np.ndarray:
    """A dataset mask file's soft values, float32 in [0, 1]: :func:`erasekit.io.read_mask_pair`'s values
    (8-bit / 255, 16-bit / 65535, the alpha rule), so :func:`binary_view` of them is ``io.read_mask`` of the
    file.

    A JPEG mask (benchmark folders may hold them) reads as its binary mask (``io.read_mask``'s >= 128 rule):
    its other values are compression noise, not soft values, and a dataset imported from JPEG masks stays what
    it was. (Inference, ``erasekit remove``, hands OSOR a JPEG mask's raw values, as the authors read any
    file.)"""
    binary, soft = io.read_mask_pair(path, shape=shape, resize=resize)
    if _is_lossy(path):
        return binary
    # For the other formats the binary rule is "nonzero", so this keeps every value; it states the invariant.
    return np.where(binary > 0, soft, np.float32(0.0)).astype(np.float32)


def _is_lossy(path: str | os.PathLike) -> bool:
    try:
        with Image.open(path) as image:
            return image.format in io._LOSSY_MASK_FORMATS  # the formats io.read_mask thresholds at 128
    except (OSError, Image.DecompressionBombError):
        return False  # io.read_mask_pair has read it; a format Pillow cannot reopen is not JPEG


def mask_to_stored(mask: np.ndarray, what: str = "mask") -> np.ndarray:
    """The uint8 H×W a mask is stored as: its soft values (the array rules of :func:`erasekit.io.read_mask`:
    floats clipped to [0, 1], uint8 / 255, a {0, 1} label array or bool as 0/255) · 255, rounded; a nonzero
    value that rounds to 0 is stored as 1, so the binary view keeps every pixel the mask marks."""
    soft = io.read_mask(np.asarray(mask), soft=True)
    eight = mask_to_uint8(soft)
    return np.where((soft > 0) & (eight == 0), np.uint8(1), eight)


def check_mask_view(masks: str) -> MaskView:
    if masks not in MASK_VIEWS:
        raise InvalidInputError(f"mask view must be one of {', '.join(MASK_VIEWS)}, got {masks!r}")
    return masks


@dataclass
class PairedSample:
    """One loaded sample: uint8 RGB H×W×3 images and float32 H×W masks of the same size (in {0, 1} for the
    binary view, in [0, 1] for the soft one)."""

    id: str
    image: np.ndarray
    background: np.ndarray
    object_mask: np.ndarray
    effect_mask: np.ndarray
    phase2: bool
    meta: dict[str, Any] = field(default_factory=dict)


def check_id(sample_id: Any) -> str:
    if not isinstance(sample_id, str) or not _ID_PATTERN.match(sample_id):
        raise InvalidInputError(
            f"sample id {sample_id!r} is not usable as a file name "
            "(letters, digits, '.', '_', '-'; at most 128)"
        )
    return sample_id


def _parse_record(raw: Any, where: str, root: Path) -> PairedRecord:
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in raw]
    if missing:
        raise InvalidInputError(f"{where}: missing field(s) {', '.join(missing)}")
    check_id(raw["id"])
    for key in PATH_FIELDS:
        value = raw[key]
        if not isinstance(value, str) or not value:
            raise InvalidInputError(f"{where}: field {key!r} must be a relative path string")
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise InvalidInputError(
                f"{where}: field {key!r} must be a path inside the dataset folder, got {value!r}"
            )
        if not (root / value).is_file():
            raise InvalidInputError(f"{where}: {key} file '{value}' does not exist in {root}")
    if not isinstance(raw["phase2"], bool):
        raise InvalidInputError(f"{where}: field 'phase2' must be true or false")
    meta = raw.get("meta", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        raise InvalidInputError(f"{where}: field 'meta' must be an object")
    return PairedRecord(
        raw["id"],
        raw["image"],
        raw["background"],
        raw["object_mask"],
        raw["effect_mask"],
        raw["phase2"],
        dict(meta),
    )


def read_manifest(root: str | os.PathLike, *, check_files: bool = True) -> list[PairedRecord]:
    """Parse and validate ``root/manifest.jsonl``.

    Checks JSON per line, required fields, unique ids and that the files are present.
    """
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise InvalidInputError(f"'{root}' is not a paired dataset: {MANIFEST_NAME} not found")
    records: list[PairedRecord] = []
    seen: dict[str, int] = {}
    for number, raw in jsonl.read_lines(path):
        where = f"{path.name} line {number}"
        record = _parse_record(raw, where, root) if check_files else _parse_record_unchecked(raw, where, root)
        if record.id in seen:
            raise InvalidInputError(f"{where}: duplicate id {record.id!r} (first on line {seen[record.id]})")
        seen[record.id] = number
        records.append(record)
    return records


def _parse_record_unchecked(raw: Any, where: str, root: Path) -> PairedRecord:
    # The writer only needs ids; a missing file there is reported when the dataset is read.
    if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
        raise InvalidInputError(f"{where}: expected a JSON object with a string 'id'")
    return PairedRecord(
        raw["id"],
        str(raw.get("image", "")),
        str(raw.get("background", "")),
        str(raw.get("object_mask", "")),
        str(raw.get("effect_mask", "")),
        bool(raw.get("phase2", False)),
        dict(raw.get("meta") or {}),
    )


def _header_size(path: Path, what: str) -> tuple[int, int]:
    """(H, W) and format from the file header, without decoding pixels."""
    try:
        with Image.open(path) as image:
            fmt, (width, height) = image.format, image.size
    except (OSError, Image.DecompressionBombError) as exc:
        raise InvalidInputError(f"cannot read {what} '{path}': {exc}") from None
    if fmt not in IMAGE_FORMATS:
        raise InvalidInputError(f"{what} '{path}' is {fmt}; paired datasets hold PNG or JPEG files")
    if what.endswith("mask") and fmt != "PNG":
        raise InvalidInputError(
            f"{what} '{path}' must be an 8-bit PNG (JPEG compression corrupts mask edges)"
        )
    return height, width


class PairedDataset:
    """Read a paired dataset folder. ``len``, integer indexing, iteration and lookup by id.

    The manifest and the presence of every file are checked when the dataset is opened; image sizes are
    checked when a sample is loaded (or all at once with :meth:`validate`). ``masks``: which view of the mask
    files samples carry (module docstring); :meth:`load` can ask for the other one.
    """

    def __init__(self, root: str | os.PathLike, *, masks: MaskView = "binary"):
        self.root = Path(root)
        self.masks = check_mask_view(masks)
        self.records = read_manifest(self.root)
        self._by_id = {r.id: i for i, r in enumerate(self.records)}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int | str) -> PairedSample:
        if isinstance(index, str):
            if index not in self._by_id:
                raise KeyError(index)
            index = self._by_id[index]
        return self.load(self.records[index])

    def __iter__(self) -> Iterator[PairedSample]:
        for record in self.records:
            yield self.load(record)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def load(self, record: PairedRecord, *, masks: MaskView | None = None) -> PairedSample:
        view = self.masks if masks is None else check_mask_view(masks)
        image = io.read_image(self.root / record.image).pixels
        background = io.read_image(self.root / record.background).pixels
        if background.shape != image.shape:
            raise InvalidInputError(
                f"sample {record.id!r}: background is {background.shape[1]}×{background.shape[0]} "
                f"but the image is {image.shape[1]}×{image.shape[0]}"
            )
        arrays: dict[str, np.ndarray] = {}
        for key in ("object_mask", "effect_mask"):
            path = self.root / getattr(record, key)
            _header_size(path, key.replace("_", " "))
            try:
                soft = read_soft_mask(path, shape=image.shape[:2])
            except InvalidInputError as exc:
                raise InvalidInputError(f"sample {record.id!r}, {key}: {exc}") from None
            arrays[key] = soft if view == "soft" else binary_view(soft)
        return PairedSample(
            record.id,
            image,
            background,
            arrays["object_mask"],
            arrays["effect_mask"],
            record.phase2,
            dict(record.meta),
        )

    def validate(self) -> None:
        """Check every file's format and that all four files of each sample have the same size.

        Reads headers only.
        """

        for record in self.records:
            sizes = {
                key: _header_size(self.root / getattr(record, key), key.replace("_", " "))
                for key in PATH_FIELDS
            }
            if len(set(sizes.values())) != 1:
                listing = ", ".join(f"{k} {w}×{h}" for k, (h, w) in sizes.items())
                raise InvalidInputError(f"sample {record.id!r}: sizes differ ({listing})")

    def phase2_ids(self) -> list[str]:
        return [r.id for r in self.records if r.phase2]


class PairedDatasetWriter:
    """Append samples to a paired dataset folder (created if missing). Resumable: ``id in writer`` tells
    whether a sample is already complete, and :meth:`add` refuses duplicates."""

    def __init__(self, root: str | os.PathLike, *, image_format: str = "png"):
        self.root = Path(root)
        fmt = image_format.lower().lstrip(".")
        if fmt not in ("png", "jpg", "jpeg"):
            raise InvalidInputError(f"image_format must be png or jpg, got {image_format!r}")
        self.image_suffix = ".jpg" if fmt in ("jpg", "jpeg") else ".png"
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest = self.root / MANIFEST_NAME
        self.manifest.touch(exist_ok=True)  # an empty dataset is still a dataset (a run may accept nothing)
        jsonl.repair_torn_tail(self.manifest)
        self._ids = {r.id for r in read_manifest(self.root, check_files=False)}

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> set[str]:
        return set(self._ids)

    def add(
        self,
        sample_id: str,
        image: np.ndarray,
        background: np.ndarray,
        object_mask: np.ndarray,
        effect_mask: np.ndarray,
        *,
        phase2: bool,
        meta: Mapping[str, Any] | None = None,
    ) -> PairedRecord:
        check_id(sample_id)
        if sample_id in self._ids:
            raise InvalidInputError(f"sample id {sample_id!r} is already in {self.manifest}")
        image = io.read_image(image).pixels
        background = io.read_image(background).pixels
        if image.shape != background.shape:
            raise InvalidInputError(
                f"sample {sample_id!r}: image and background sizes differ "
                f"({image.shape[1]}×{image.shape[0]} vs {background.shape[1]}×{background.shape[0]})"
            )
        for name, mask in (("object_mask", object_mask), ("effect_mask", effect_mask)):
            if np.shape(mask) != image.shape[:2]:
                raise InvalidInputError(
                    f"sample {sample_id!r}: {name} shape {np.shape(mask)} differs from the "
                    f"image's {image.shape[:2]}"
                )
        paths = {
            "image": f"{_FOLDERS['image']}/{sample_id}{self.image_suffix}",
            "background": f"{_FOLDERS['background']}/{sample_id}{self.image_suffix}",
            "object_mask": f"{_FOLDERS['object_mask']}/{sample_id}.png",
            "effect_mask": f"{_FOLDERS['effect_mask']}/{sample_id}.png",
        }
        stored = {}
        for name, mask in (("object_mask", object_mask), ("effect_mask", effect_mask)):
            try:
                stored[name] = mask_to_stored(mask)
            except InvalidInputError as exc:
                raise InvalidInputError(f"sample {sample_id!r}, {name}: {exc}") from None
        io.write_image(self.root / paths["image"], image)
        io.write_image(self.root / paths["background"], background)
        io.write_mask(self.root / paths["object_mask"], stored["object_mask"])
        io.write_mask(self.root / paths["effect_mask"], stored["effect_mask"])
        record = PairedRecord(
            sample_id,
            paths["image"],
            paths["background"],
            paths["object_mask"],
            paths["effect_mask"],
            bool(phase2),
            dict(meta or {}),
        )
        with open(self.manifest, "a", encoding="utf-8") as handle:
            jsonl.append_line(handle, record.to_json())
        self._ids.add(sample_id)
        return record

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


__all__ = ["MANIFEST_NAME", "MASK_VIEWS", "MaskView", "PairedDataset", "PairedDatasetWriter", "PairedRecord",
           "PairedSample", "binary_view", "check_id", "check_mask_view", "mask_to_stored", "read_manifest",
           "read_soft_mask"]

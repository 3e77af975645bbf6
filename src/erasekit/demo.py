"""The out-of-the-box demo: remove objects from real photos that scikit-image ships, with masks we drew.

The photos come from ``skimage.data`` (bundled in the scikit-image wheel, so nothing is downloaded). The
object masks are polygons in each photo's pixel coordinates, written by the erasekit authors and stored in
``erasekit/data/demo_masks.json``. :func:`run_demo` writes, per photo, the input, the mask, the result (and
the method's own alpha map when it has one), plus one comparison sheet ``comparison.png`` with a row per
photo: before | mask overlay | after.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from . import io, masks
from .types import InvalidInputError

MASKS_RESOURCE = "demo_masks.json"

# Polygons are drawn on the object's outline; a few pixels of dilation catch the anti-aliased edge and halo.
DEMO_DILATE = 4

_SHEET_ROW_HEIGHT = 300
_SHEET_GAP = 8
_SHEET_LABEL = 44
_OVERLAY_RGB = np.array([255, 40, 40], np.float32)


@dataclass(frozen=True)
class DemoObject:
    """One object to remove: its name and its outline as polygons."""

    name: str
    polygons: tuple[tuple[tuple[int, int], ...], ...]


@dataclass(frozen=True)
class DemoPhoto:
    """One bundled photo and the objects the demo removes from it.

    ``keep_out`` polygons mark regions PatchMatch must not copy patches from (its sampling area is everything
    else): in ``coffee`` the spoon's handle lies along the cup's white rim, and PatchMatch copied the rim into
    the handle as a white block; with the cup kept out it continues the saucer and the wood instead.
    """

    name: str
    loader: str  # the skimage.data function that returns the photo
    credit: str
    objects: tuple[DemoObject, ...]
    keep_out: tuple[tuple[tuple[int, int], ...], ...] = ()

    def pixels(self) -> np.ndarray:
        """The photo as uint8 RGB H×W×3 (grey photos are replicated into three channels)."""
        import skimage.data

        array = getattr(skimage.data, self.loader)()
        return io.read_image(array).pixels

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The union of the objects' polygons, float32 H×W in {0, 1}."""
        return masks.polygon_to_mask([poly for obj in self.objects for poly in obj.polygons], shape)

    def sampling_area(self, shape: tuple[int, int]) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
        """The patchmatch method's ``sampling_area`` for this photo (everything but ``keep_out``; in
        whole-image coordinates, so it needs hd_strategy ``original``), or None when it keeps nothing out."""
        if not self.keep_out:
            return None
        allowed = masks.polygon_to_mask(list(self.keep_out), shape) == 0
        return lambda _image, _hole: allowed


@dataclass
class DemoRecord:
    """What the demo did for one photo."""

    photo: str
    objects: list[str]
    method: str
    seconds: float
    masked_fraction: float
    files: dict[str, Path] = field(default_factory=dict)

    def summary_line(self) -> str:
        return (f"{self.photo:<10} {self.method:<11} {self.seconds:6.2f} s  {', '.join(self.objects)} "
                f"({100 * self.masked_fraction:.1f}% of the image)")


def demo_photos() -> list[DemoPhoto]:
    """Every demo photo, in the order they appear on the comparison sheet."""
    text = resources.files("erasekit").joinpath("data", MASKS_RESOURCE).read_text(encoding="utf-8")
    spec = json.loads(text)
    photos = []
    for name, entry in spec["photos"].items():
        objects = tuple(
            DemoObject(obj["name"], _polygons(obj["polygons"])) for obj in entry["objects"]
        )
        photos.append(DemoPhoto(name=name, loader=entry["loader"], credit=entry["credit"], objects=objects,
                                keep_out=_polygons(entry.get("keep_out", []))))
    return photos


def _polygons(spec: list) -> tuple[tuple[tuple[int, int], ...], ...]:
    return tuple(tuple((int(x), int(y)) for x, y in poly) for poly in spec)


def select_photos(names: Sequence[str] | None) -> list[DemoPhoto]:
    """The named photos (all when ``names`` is empty), with a clear error for an unknown name."""
    photos = demo_photos()
    if not names:
        return photos
    by_name = {p.name: p for p in photos}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise InvalidInputError(
            f"unknown demo photo(s): {', '.join(unknown)}; choose from {', '.join(by_name)}"
        )
    return [by_name[n] for n in dict.fromkeys(names)]


def mask_overlay(image: np.ndarray, mask: np.ndarray, strength: float = 0.55) -> np.ndarray:
    """The image with the mask tinted red and its outline drawn, for the comparison sheet."""
    import cv2

    inside = mask > 0
    out = image.astype(np.float32)
    out[inside] = out[inside] * (1.0 - strength) + _OVERLAY_RGB * strength
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 255, 255), 1)
    return out


def comparison_sheet(rows: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """One PNG-ready grid: a row per photo (label, before, mask overlay, after).

    Each row is scaled to the same height.
    """

    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=16)
    scaled: list[tuple[str, list[Image.Image]]] = []
    for label, *arrays in rows:
        h, w = arrays[0].shape[:2]
        width = max(1, round(w * _SHEET_ROW_HEIGHT / h))
        scaled.append(
            (
                label,
                [
                    Image.fromarray(a).resize((width, _SHEET_ROW_HEIGHT), Image.Resampling.LANCZOS)
                    for a in arrays
                ],
            )
        )
    sheet_w = _SHEET_GAP + max(sum(p.width + _SHEET_GAP for p in panels) for _, panels in scaled)
    sheet_h = len(scaled) * (_SHEET_LABEL + _SHEET_ROW_HEIGHT + _SHEET_GAP) + _SHEET_GAP
    sheet = Image.new("RGB", (sheet_w, sheet_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = _SHEET_GAP
    for label, panels in scaled:
        draw.text((_SHEET_GAP, y + 2), label, fill=(0, 0, 0), font=font)
        x = _SHEET_GAP
        for caption, panel in zip(("before", "mask", "after"), panels):
            draw.text((x, y + 22), caption, fill=(90, 90, 90), font=font)
            sheet.paste(panel, (x, y + _SHEET_LABEL))
            x += panel.width + _SHEET_GAP
        y += _SHEET_LABEL + _SHEET_ROW_HEIGHT + _SHEET_GAP
    return np.asarray(sheet)


def run_demo(
    out_dir: str | Path,
    *,
    method: str = "auto",
    photos: Sequence[str] | None = None,
    seed: int = 0,
    report: Callable[[DemoRecord], None] | None = None,
) -> list[DemoRecord]:
    """Remove the demo objects from the bundled photos with ``method`` and write everything under ``out_dir``.

    Files per photo: ``NAME_input.png``, ``NAME_mask.png`` (the polygons, before dilation),
    ``NAME_result.png`` and,
    for methods with their own effect map, ``NAME_alpha.png``. Plus ``comparison.png`` and ``summary.json``.
    ``report`` is called with each photo's record as soon as it is done.
    """
    from . import load_remover
    from .registry import resolve_auto
    from .types import RemovalRequest

    chosen = select_photos(photos)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out '{out}' is an existing file, not a folder; choose a folder")
    name = resolve_auto() if method == "auto" else method
    remover = load_remover(name)  # loaded once, reused for every photo
    records: list[DemoRecord] = []
    rows = []
    for photo in chosen:
        image = photo.pixels()
        mask = photo.mask(image.shape[:2])
        # Each method's own HD strategy (PatchMatch's keeps its patch search near the object), except where
        # the photo keeps regions out of PatchMatch's sampling area (DemoPhoto.keep_out).
        area = photo.sampling_area(image.shape[:2]) if remover.name == "patchmatch" else None
        start = time.perf_counter()
        result = remover(RemovalRequest(
            image=image, mask=mask, seed=seed, dilate=DEMO_DILATE,
            hd_strategy=None if area is None else "original",
            options={} if area is None else {"sampling_area": area},
        ))
        seconds = time.perf_counter() - start
        files = {
            "input": io.write_image(out / f"{photo.name}_input.png", image),
            "mask": io.write_mask(out / f"{photo.name}_mask.png", mask),
            "result": io.write_image(out / f"{photo.name}_result.png", result.image),
        }
        # Every remover reports the region it filled as `alpha`; only a method's own (soft or wider) effect
        # map is worth a file, the dilated mask already is the mask file.
        if result.alpha is not None and not np.array_equal(
            result.alpha > 0, masks.dilate(mask, DEMO_DILATE) > 0
        ):
            files["alpha"] = io.write_mask(out / f"{photo.name}_alpha.png", result.alpha)
        record = DemoRecord(
            photo=photo.name,
            objects=[o.name for o in photo.objects],
            method=result.method,
            seconds=seconds,
            masked_fraction=float(mask.mean()),
            files=files,
        )
        records.append(record)
        rows.append(
            (
                f"{photo.name}: {', '.join(record.objects)} ({result.method}, {seconds:.1f} s)",
                image,
                mask_overlay(image, mask),
                result.image,
            )
        )
        if report is not None:
            report(record)
    io.write_image(out / "comparison.png", comparison_sheet(rows))
    summary = [
        {
            "photo": r.photo,
            "objects": r.objects,
            "method": r.method,
            "seconds": round(r.seconds, 3),
            "masked_fraction": round(r.masked_fraction, 5),
            "credit": p.credit,
            "files": {k: v.name for k, v in r.files.items()},
        }
        for r, p in zip(records, chosen)
    ]
    _write_json(out / "summary.json", summary)
    return records


def _write_json(path: Path, payload) -> None:
    """Atomic like every other output (:mod:`erasekit.atomic`), with the mode the umask decides (0644 under
    the usual 022), not mkstemp's 0600."""
    from .atomic import write_json

    write_json(path, payload)


__all__ = ["DEMO_DILATE", "DemoObject", "DemoPhoto", "DemoRecord", "comparison_sheet", "demo_photos",
           "mask_overlay", "run_demo", "select_photos"]

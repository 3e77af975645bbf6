"""Real training pairs (x_gen, x_gt): a registered method run over a paired dataset (PixPerfect Sec. 3.2).

The paper trains on simulated artifacts because real diffusion outputs vary by model and prompt and often
lack a ground truth; it does not rule real pairs out. Where a dataset does have clean backgrounds (the paired
format, CORNE, RORD, ...), any registered method can produce x_gen for each input: the method's output,
pasted back by the remover base, so x_gen equals the input outside the mask; x_gt is the dataset's
background. The trainer mixes such pairs into its batches at ``real_pairs.fraction``.

On disk, one triplet per sample, written so an interrupted run resumes where it stopped::

    DIR/<id>_gen.png  DIR/<id>_gt.png  DIR/<id>_mask.png  DIR/<id>.json   (the sidecar is written last)

A sample whose sidecar exists and names the same method, options and seed is skipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .... import io
from ....atomic import write_text
from ....types import InvalidInputError, RemovalRequest


@dataclass(frozen=True)
class RealPair:
    x_gen: np.ndarray  # uint8 H×W×3
    x_gt: np.ndarray  # uint8 H×W×3
    mask: np.ndarray  # float32 H×W in {0, 1}


def _settings(method: str, load: dict, options: dict, seed: int, mask: str) -> dict[str, Any]:
    return {"method": method, "load": load, "options": options, "seed": seed, "mask": mask}


def produce_real_pairs(
    dataset: str | os.PathLike,
    out: str | os.PathLike,
    method: str,
    *,
    layout: str = "auto",
    load_options: dict[str, Any] | None = None,
    call_options: dict[str, Any] | None = None,
    mask: str = "object",
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> int:
    """Run ``method`` over ``dataset`` and write the pairs into ``out``; returns how many were produced now
    (samples already there with the same settings are skipped)."""
    from tqdm.auto import tqdm

    from ....eval.datasets import open_dataset
    from ....registry import load_remover

    if mask not in ("object", "effect"):
        raise InvalidInputError(f"real_pairs.mask must be object or effect, got {mask!r}")
    load, options = dict(load_options or {}), dict(call_options or {})
    settings = _settings(method, load, options, seed, mask)
    data = open_dataset(dataset, layout).subset(limit)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remover = None
    produced = 0
    for sample_id in tqdm(data.ids, disable=not progress, desc=f"real pairs ({method})"):
        sidecar = out / f"{sample_id}.json"
        if sidecar.is_file() and json.loads(sidecar.read_text()) == settings:
            continue
        record = data[sample_id]
        if record.background is None:
            raise InvalidInputError(f"sample {sample_id!r} has no clean background: real pairs need x_gt")
        remover = remover or load_remover(method, **load)
        region = record.mask(mask)
        result = remover(RemovalRequest(record.image, region, seed=seed, options=dict(options)))
        io.write_image(out / f"{sample_id}_gen.png", result.image)
        io.write_image(out / f"{sample_id}_gt.png", record.background)
        io.write_mask(out / f"{sample_id}_mask.png", (region > 0).astype(np.float32))
        write_text(sidecar, json.dumps(settings))  # last: its presence marks a complete triplet
        produced += 1
    return produced


def pair_ids(folder: str | os.PathLike) -> list[str]:
    """The complete triplets in ``folder`` (those with a sidecar), sorted."""
    folder = Path(folder)
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def load_pair(folder: str | os.PathLike, sample_id: str) -> RealPair:
    folder = Path(folder)
    x_gen = io.read_image(folder / f"{sample_id}_gen.png").pixels
    x_gt = io.read_image(folder / f"{sample_id}_gt.png").pixels
    mask = io.read_mask(folder / f"{sample_id}_mask.png")
    if x_gen.shape != x_gt.shape or mask.shape != x_gt.shape[:2]:
        raise InvalidInputError(f"real pair {sample_id!r} in {folder}: sizes differ")
    return RealPair(x_gen, x_gt, (mask > 0).astype(np.float32))


__all__ = ["RealPair", "load_pair", "pair_ids", "produce_real_pairs"]

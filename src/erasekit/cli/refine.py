"""``erasekit refine EDITED --original ORIG --mask M -o OUT``: refine a result made by another tool.

The same two steps the remover base runs after a method (:meth:`erasekit.methods.base.Remover.__call__`):
the refiners on (original, edited, mask), then paste-back through the mask, so pixels outside the mask are the
original's bit for bit. PixPerfect's Table 2 refines OmniPaint, PowerPaint and CLIPAway outputs this way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.console import Console

from ..types import InvalidInputError


def register(app: typer.Typer) -> None:
    app.command("refine")(refine_command)


def refine_edit(
    original: np.ndarray, edited: np.ndarray, mask: np.ndarray, refine: str
) -> tuple[np.ndarray, dict[str, float]]:
    """Refine ``edited`` (an edit of ``original`` inside ``mask``) and paste it back.

    Returns (image, timings)."""
    from ..hd import paste_back
    from ..refiners import apply_refiners, parse_refine

    refiners = parse_refine(refine)
    if not refiners:
        raise InvalidInputError("--refine names no refiner")
    if edited.shape != original.shape:
        raise InvalidInputError(
            f"the edited image is {edited.shape[1]}×{edited.shape[0]} but the original is "
            f"{original.shape[1]}×{original.shape[0]}"
        )
    if not mask.any():
        return original.copy(), {}
    refined, timings = apply_refiners(refiners, original, edited, mask)
    return paste_back(original, refined, mask), timings


def refine_command(
    edited: Path = typer.Argument(..., help="the edited photo (any tool's output)"),
    original: Path = typer.Option(..., "--original", help="the photo before the edit"),
    mask: Path = typer.Option(..., "--mask", "-m", help="mask PNG of the edited region: any nonzero pixel"),
    out: Path = typer.Option(..., "--out", "-o", help="output file (format from the extension)"),
    refine: str = typer.Option(
        "pixperfect", "--refine", help="refiner(s), e.g. pixperfect:pool=4 or poisson"
    ),
    dilate: int = typer.Option(0, "--dilate", help="grow the mask by this many pixels"),
) -> None:
    """Refine EDITED against ORIGINAL inside the mask and write the result to OUT."""
    from .. import io
    from .. import masks as M

    loaded = io.read_image(original)
    edit = io.read_image(edited).pixels
    region = io.read_mask(mask, shape=loaded.pixels.shape[:2])
    if dilate:
        region = M.dilate(region, dilate)
    result, timings = refine_edit(loaded.pixels, edit, region, refine)
    io.write_image(out, result, like=loaded)
    Console(stderr=True).print(
        f"refine {refine}: wrote {out} in {sum(timings.values()):.2f}s", highlight=False
    )

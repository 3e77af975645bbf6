"""``erasekit osor-convert`` (OSOR weights between the authors' .pth and erasekit's folder format) and
``erasekit alpha-overlay`` (an OSOR alpha map drawn over the photo, like the paper's Fig. 8)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    app.command("osor-convert")(convert_command)
    app.command("alpha-overlay")(overlay_command)


def convert_command(
    src: Path = typer.Argument(..., help="OSOR weights: an authors' *_phase{1,2}.pth or an erasekit folder"),
    dst: Path = typer.Argument(..., help="output: a folder (to erasekit) or a .pth file (to official)"),
    to: str = typer.Option(None, "--to", help="official | erasekit (default: the other format than SRC's)"),
    backbone: str = typer.Option(None, "--backbone", help="sdxl | flux (default: read from the keys)"),
    timestep: float = typer.Option(None, "--timestep", help="training noise level to record (t / s)"),
) -> None:
    """Convert OSOR weights between the authors' release format and erasekit's safetensors format."""
    from erasekit.methods.osor.weights import convert_weights, load_osor_weights
    from erasekit.types import InvalidInputError

    if backbone not in (None, "sdxl", "flux"):
        raise InvalidInputError(f"--backbone must be sdxl or flux, got {backbone!r}")
    if to not in (None, "official", "erasekit"):
        raise InvalidInputError(f"--to must be official or erasekit, got {to!r}")
    written = convert_weights(src, dst, to=to, backbone=backbone, timestep=timestep)  # type: ignore[arg-type]
    weights = load_osor_weights(written)
    Console(stderr=True).print(
        f"wrote {written}: OSOR {weights.backbone} phase {weights.phase}, rank {weights.rank}, "
        f"{len(weights.target_modules)} LoRA modules", highlight=False)


def overlay_command(
    image: Path = typer.Argument(..., help="the input photo"),
    alpha: Path = typer.Argument(..., help="alpha map PNG (from `erasekit remove ... --save-alpha`)"),
    out: Path = typer.Option(..., "--out", "-o", help="overlay image to write"),
    mask: Path = typer.Option(None, "--mask", "-m", help="conditioning mask, drawn as an outline"),
    strength: float = typer.Option(0.65, "--strength", help="overlay opacity at alpha = 1"),
) -> None:
    """Draw an alpha map over the photo (with the mask outline), like OSOR's Fig. 8."""
    from erasekit import io
    from erasekit.convert import uint8_to_mask
    from erasekit.methods.osor.viz import write_alpha_overlay
    from erasekit.types import InvalidInputError

    pixels = io.read_image(image).pixels
    # Alpha maps are soft (read_mask would binarise): take the grey level of the decoded PNG.
    alpha_map = uint8_to_mask(io.read_image(alpha).pixels[..., 0])
    if alpha_map.shape != pixels.shape[:2]:
        raise InvalidInputError(
            f"alpha map size {alpha_map.shape[1]}×{alpha_map.shape[0]} does not match image "
            f"size {pixels.shape[1]}×{pixels.shape[0]}"
        )
    mask_map = None if mask is None else io.read_mask(mask, shape=pixels.shape[:2])
    write_alpha_overlay(out, pixels, alpha_map, mask_map, strength=strength)
    Console(stderr=True).print(f"wrote {out}", highlight=False)

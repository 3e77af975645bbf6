"""Core commands: remove, batch, demo, methods.

Exit codes (shared by every command, see :mod:`erasekit.cli`): 0 success, 1 internal error, 2 bad input,
3 missing weights, 4 resource limit; ``batch`` adds 5 when some images failed (see :mod:`erasekit.batch`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..types import InvalidInputError

REFINE_HELP = ("refiner(s) run on the method's output before paste-back, in order, e.g. poisson or "
               "color-match,poisson; options as NAME:KEY=VALUE (color-match:ring=24)")


def register(app: typer.Typer) -> None:
    app.command("remove")(remove_command)
    app.command("batch")(batch_command)
    app.command("demo")(demo_command)
    app.command("methods")(methods_command)


def parse_option_values(items: list[str] | None) -> dict[str, Any]:
    """``--option KEY=VALUE`` values: ``["steps=4", "negative_prompt=blurry"]`` -> typed dict (JSON literals,
    else strings)."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InvalidInputError(f"--option expects KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)  # numbers, true/false, null, quoted strings, lists
        except ValueError:
            value = raw
        options[key] = value
    return options


def method_options(*, option: list[str] | None = None, **flags: Any) -> dict[str, Any]:
    """Options for a method from the CLI: only the flags given, so a method that does not take one reports it
    instead of ignoring it, then every ``--option KEY=VALUE``."""
    return {**{k: v for k, v in flags.items() if v is not None}, **parse_option_values(option)}


def remove_command(
    image: Path = typer.Argument(..., help="input photo"),
    mask: Path = typer.Option(None, "--mask", "-m", help="mask PNG: any nonzero pixel is removed"),
    out: Path = typer.Option(..., "--out", "-o", help="output file (format from the extension)"),
    method: str = typer.Option("auto", "--method", help="method name (see `erasekit methods`)"),
    dilate: int = typer.Option(0, "--dilate", help="grow the mask by this many pixels"),
    seed: int = typer.Option(None, "--seed", help="random seed for stochastic methods"),
    hd_strategy: str = typer.Option(None, "--hd-strategy", help="original | resize[:LIMIT] | crop[:MARGIN]"),
    device: str = typer.Option(None, "--device", help="cpu, cuda, mps (diffusion methods)"),
    resize_mask: bool = typer.Option(False, "--resize-mask", help="accept a mask of another size (nearest)"),
    prompt: str = typer.Option(None, "--prompt", help="text prompt (diffusion and text-guided methods)"),
    model: str = typer.Option(None, "--model", help="backbone preset, local diffusers folder or Hub id"),
    steps: int = typer.Option(None, "--steps", help="denoising steps (diffusion methods)"),
    guidance: float = typer.Option(None, "--guidance", help="guidance scale (diffusion methods)"),
    allow_download: bool = typer.Option(False, "--allow-download", help="fetch missing weights from the Hub"),
    option: list[str] = typer.Option(None, "--option", "-O", help="method option KEY=VALUE (repeatable)"),
    weights: str = typer.Option(None, "--weights", help="method weights file/folder (OSOR: *_phase2.pth or folder)"),
    timestep: float = typer.Option(None, "--timestep", help="one-step noise level (OSOR: SDXL t, FLUX s)"),
    save_alpha: Path = typer.Option(None, "--save-alpha", help="also write the edited-region alpha map (PNG)"),
    refine: str = typer.Option(None, "--refine", help=REFINE_HELP),
) -> None:
    """Remove the masked object from IMAGE and write the result to OUT."""
    import erasekit
    from erasekit import io

    loaded = io.read_image(image)
    options = method_options(option=option, device=device, model=model, steps=steps, guidance=guidance,
                             allow_download=allow_download or None, weights=weights, timestep=timestep)
    result = erasekit.remove(loaded.pixels, mask, method=method, prompt=prompt, seed=seed, dilate=dilate,
                             hd_strategy=hd_strategy, refine=refine, resize_mask=resize_mask, **options)
    io.write_image(out, result.image, like=loaded)
    if save_alpha is not None and result.alpha is not None:
        io.write_mask(save_alpha, result.alpha)
    note = " (empty mask: unchanged)" if result.unchanged else ""
    Console(stderr=True).print(f"{result.method}: wrote {out} in {result.timings['total']:.2f}s{note}",
                               highlight=False)


def methods_command() -> None:
    """List every method, what it needs and whether it is available here."""
    import erasekit

    table = Table(title="erasekit methods")
    for col in ("method", "available", "description", "needs"):
        table.add_column(col)
    for info in erasekit.available_methods():
        needs = ", ".join(f"{w.name} ({'ok' if w.present else 'missing'})" for w in info.weights) or "-"
        table.add_row(info.name, "yes" if info.available else "no", info.description, needs)
    Console().print(table)


def batch_command(
    images: list[str] = typer.Argument(..., help="image files, folders or glob patterns ('in/*.jpg')"),
    masks: Path = typer.Option(..., "--masks", "-m", help="mask folder: photo.jpg <- photo.png or photo_mask.png"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (same names and formats as the inputs)"),
    method: str = typer.Option("auto", "--method", help="method name (see `erasekit methods`)"),
    dilate: int = typer.Option(0, "--dilate", help="grow every mask by this many pixels"),
    seed: int = typer.Option(None, "--seed", help="random seed for stochastic methods"),
    hd_strategy: str = typer.Option(None, "--hd-strategy", help="original | resize[:LIMIT] | crop[:MARGIN]"),
    device: str = typer.Option(None, "--device", help="cpu, cuda, mps (diffusion methods)"),
    model: str = typer.Option(None, "--model", help="backbone preset, local diffusers folder or Hub id"),
    weights: str = typer.Option(None, "--weights", help="method weights file/folder (OSOR)"),
    steps: int = typer.Option(None, "--steps", help="denoising steps (diffusion methods)"),
    option: list[str] = typer.Option(None, "--option", "-O", help="method option KEY=VALUE (repeatable)"),
    resize_mask: bool = typer.Option(False, "--resize-mask", help="accept masks of another size (nearest)"),
    skip_existing: bool = typer.Option(True, "--skip-existing/--overwrite",
                                       help="skip images whose output exists (resume), or redo them"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
    refine: str = typer.Option(None, "--refine", help=REFINE_HELP),
) -> None:
    """Remove objects from many images; resumable. Writes OUT/batch_report.jsonl (one record per image).

    Exit code 0 when every image succeeded or was skipped; when every image failed with the same error, that
    error's code (2 bad input, 3 missing weights, 4 resource limit, 1 internal); otherwise 5.
    """
    from erasekit.batch import run_batch

    console = Console(stderr=True)
    summary = run_batch(images, masks, out, method=method, dilate=dilate, seed=seed, hd_strategy=hd_strategy,
                        options=method_options(option=option, device=device, model=model, weights=weights,
                                               steps=steps), skip_existing=skip_existing,
                        resize_mask=resize_mask, progress=progress, console=console, refine=refine)
    if summary.stale_temps_removed:
        console.print(f"removed {summary.stale_temps_removed} temporary file(s) left by an interrupted run")
    for table in summary.tables():
        console.print(table)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def demo_command(
    out: Path = typer.Option(Path("demo"), "--out", "-o", help="folder for the demo images"),
    method: str = typer.Option("auto", "--method", help="method name (see `erasekit methods`)"),
    photos: str = typer.Option(None, "--photos",
                               help="comma-separated subset of: astronaut, coffee, rocket, camera"),
    seed: int = typer.Option(0, "--seed", help="random seed for stochastic methods"),
) -> None:
    """Remove objects from real photos bundled with scikit-image; writes before/after images and comparison.png."""
    from erasekit.demo import run_demo

    console = Console(soft_wrap=True)
    names = [n.strip() for n in photos.split(",") if n.strip()] if photos else None
    records = run_demo(out, method=method, photos=names, seed=seed,
                       report=lambda record: console.print(record.summary_line(), highlight=False))
    total = sum(r.seconds for r in records)
    console.print(f"{len(records)} photos in {total:.1f} s; results in {out}/, side by side in "
                  f"{out / 'comparison.png'}", highlight=False)

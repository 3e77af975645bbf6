"""Core commands: remove, methods."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def register(app: typer.Typer) -> None:
    app.command("remove")(remove_command)
    app.command("methods")(methods_command)


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
) -> None:
    """Remove the masked object from IMAGE and write the result to OUT."""
    import erasekit
    from erasekit import io

    loaded = io.read_image(image)
    options = {"device": device} if device else {}
    result = erasekit.remove(loaded.pixels, mask, method=method, seed=seed, dilate=dilate, hd_strategy=hd_strategy,
                             resize_mask=resize_mask, **options)
    io.write_image(out, result.image, like=loaded)
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

"""Backbone commands: ``erasekit models`` (what is here, from where, how big, used by which methods) and
``erasekit download NAME`` (the one place, with ``--allow-download``, where weights are fetched).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..types import InvalidInputError


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)
    app.command("download")(download_command)


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _methods_by_backbone() -> dict[str, list[str]]:
    """Preset name -> methods whose weight requirements name it."""
    from .. import registry

    users: dict[str, list[str]] = {}
    for name in registry.method_names():
        for req in registry.get_method(name).weights:
            users.setdefault(req.name, []).append(name)
    return users


def models_command(
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """List the diffusion backbone presets.

    For each: Hub id, where it resolves locally, size on disk, which methods use it.
    """

    from ..backbones.presets import PRESETS, find_local, folder_size, hf_cache_dir, models_dir

    users = _methods_by_backbone()
    rows: list[dict[str, Any]] = []  # one JSON object per preset
    for preset in PRESETS.values():
        found = find_local(preset)
        rows.append(
            {
                "name": preset.name,
                "hub_id": preset.hub_id,
                "family": preset.family,
                "task": preset.task,
                "present": found is not None,
                "source": found.source if found else None,
                "path": str(found.path) if found else None,
                "size_bytes": folder_size(found.path) if found else None,
                "download_gb": preset.approx_download_gb,
                "gated": preset.gated,
                "methods": users.get(preset.name, []),
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="erasekit backbones")
    table.add_column("preset", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("size", no_wrap=True)
    table.add_column("used by")
    table.add_column("hub id")
    for r in rows:
        status = f"ok ({r['source']})" if r["present"] else "missing"
        size = _human_size(r["size_bytes"]) if r["present"] else f"~{r['download_gb']:.1f} GB"
        table.add_row(
            r["name"],
            status,
            size,
            ", ".join(r["methods"]) or "-",
            r["hub_id"] + (" (gated)" if r["gated"] else ""),
        )
    console = Console()
    console.print(table)
    for r in rows:
        if r["present"]:
            console.print(f"{r['name']}: {r['path']}", highlight=False, soft_wrap=True)
        else:
            console.print(
                f"{r['name']}: fetch with `erasekit download {r['name']}`", highlight=False, soft_wrap=True
            )
    console.print(
        f"searched: --model PATH, $ERASEKIT_MODELS_DIR ({models_dir() or 'unset'}), "
        f"Hugging Face cache ({hf_cache_dir()})",
        highlight=False,
        soft_wrap=True,
    )


_TO_HELP = (
    "download into this folder instead of the Hugging Face cache (default: $ERASEKIT_MODELS_DIR/NAME if set)"
)


def download_command(
    name: str = typer.Argument(
        ..., help="backbone preset (see `erasekit models`) or a diffusers Hub id org/repo"
    ),
    local_dir: Path = typer.Option(None, "--to", help=_TO_HELP),
    revision: str = typer.Option(None, "--revision", help="branch, tag or commit on the Hub"),
) -> None:
    """Fetch a backbone from the Hugging Face Hub (only the files diffusers needs; resumes if interrupted)."""
    from ..backbones.presets import PRESETS, download, folder_size, models_dir

    if name not in PRESETS and name.count("/") != 1:
        raise InvalidInputError(
            f"unknown backbone {name!r}; choose one of {', '.join(PRESETS)} or a Hub id org/repo"
        )
    target = local_dir
    if target is None and models_dir() is not None:
        target = models_dir() / (name if name in PRESETS else Path(*name.split("/")))
    console = Console(stderr=True)
    hub_id = PRESETS[name].hub_id if name in PRESETS else name
    console.print(f"downloading {hub_id} -> {target or 'Hugging Face cache'}", highlight=False)
    folder = download(name, local_dir=target, revision=revision)
    console.print(f"{name}: ready at {folder} ({_human_size(folder_size(folder))})", highlight=False)

"""``erasekit train osor --config FILE.yaml`` (and ``erasekit train pixperfect``, see
:mod:`erasekit.refiners.pixperfect.train`): OSOR Phase I / II training from a YAML config.

``--config`` takes a file or the name of a packaged config (``osor_sdxl_phase1``, ``osor_sdxl_phase2``,
``osor_flux_phase1``, ``osor_flux_phase2``); ``--set KEY=VALUE`` overrides any field (dotted for sections,
e.g. ``--set optim.lr_generator=2e-5 --set data.path=/data/corne``). A run resumes from the newest checkpoint
in its output folder. Multi-GPU: ``accelerate launch -m erasekit train osor --config ...``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

train_app = typer.Typer(
    help="Train removal models (OSOR Phase I / II, EraDiff CRO, CLIPAway's MLP) and the PixPerfect refiner.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")


# The options every trainer takes, declared once.
CONFIG_HELP = "YAML config file or packaged config name"
SET_OPTION = typer.Option(None, "--set", help="override a setting: KEY=VALUE (dotted keys)")
OUTPUT_OPTION = typer.Option(None, "--output-dir", "-o", help="where checkpoints and weights go")
STEPS_OPTION = typer.Option(None, "--max-steps", min=1, help="optimizer steps (default: the paper's)")
PROGRESS_OPTION = typer.Option(False, "--no-progress", help="no progress bar")


def _config(config: str, overrides: list[str] | None, output_dir: str | None, max_steps: int | None,
            packaged: Callable[[str], Path]) -> tuple[Path, dict[str, Any]]:
    """The config file to read and the overrides its flags add (``--set``, ``--output-dir``,
    ``--max-steps``)."""
    from ..training.config import config_path, parse_overrides

    extra = parse_overrides(list(overrides or []))
    if output_dir is not None:
        extra["output_dir"] = output_dir
    if max_steps is not None:
        extra["max_steps"] = max_steps
    return config_path(config, packaged), extra


def _report(label: str, result: Any) -> None:
    resumed = f" (resumed from {result.resumed_from})" if result.resumed_from else ""
    Console(stderr=True).print(f"{label}: step {result.step}{resumed}; weights {result.weights_dir}; "
                               f"metrics {result.metrics_path}", highlight=False)


@train_app.command("osor")
def osor_command(
    config: str = typer.Option(..., "--config", "-c", help=CONFIG_HELP),
    overrides: list[str] = SET_OPTION,
    output_dir: str | None = OUTPUT_OPTION,
    max_steps: int | None = STEPS_OPTION,
    no_progress: bool = PROGRESS_OPTION,
) -> None:
    """Train OSOR (one phase, one backbone); writes erasekit-format weights to OUTPUT/osor."""
    from ..methods.osor.train.config import load_config, packaged_config
    from ..methods.osor.train.trainer import train_osor

    cfg = load_config(*_config(config, overrides, output_dir, max_steps, packaged_config))
    _report(f"OSOR {cfg.backbone} phase {cfg.phase}", train_osor(cfg, progress=not no_progress))


@train_app.command("pixperfect")
def pixperfect_command(
    config: str = typer.Option("pixperfect", "--config", "-c", help=CONFIG_HELP),
    overrides: list[str] = SET_OPTION,
    output_dir: str | None = OUTPUT_OPTION,
    max_steps: int | None = STEPS_OPTION,
    no_progress: bool = PROGRESS_OPTION,
) -> None:
    """Train the PixPerfect refiner on photos with simulated artifacts; weights to OUTPUT/pixperfect."""
    from ..refiners.pixperfect.train.config import load_config, packaged_config
    from ..refiners.pixperfect.train.trainer import train_pixperfect

    cfg = load_config(*_config(config, overrides, output_dir, max_steps, packaged_config))
    _report("PixPerfect", train_pixperfect(cfg, progress=not no_progress))


@train_app.command("eradiff")
def eradiff_command(
    config: str = typer.Option(..., "--config", "-c", help=CONFIG_HELP + " (eradiff_sd2)"),
    overrides: list[str] = SET_OPTION,
    output_dir: str | None = OUTPUT_OPTION,
    max_steps: int | None = STEPS_OPTION,
    no_progress: bool = PROGRESS_OPTION,
) -> None:
    """Train EraDiff's UNet with Chain-Rectifying Optimization; writes weights to OUTPUT/eradiff."""
    from ..methods.eradiff.train.config import load_config, packaged_config
    from ..methods.eradiff.train.trainer import train_eradiff

    cfg = load_config(*_config(config, overrides, output_dir, max_steps, packaged_config))
    _report("EraDiff CRO", train_eradiff(cfg, progress=not no_progress))


@train_app.command("clipaway-mlp")
def clipaway_mlp_command(
    config: str = typer.Option("clipaway_mlp", "--config", "-c", help=CONFIG_HELP + " (clipaway_mlp)"),
    overrides: list[str] = SET_OPTION,
    output_dir: str | None = OUTPUT_OPTION,
    max_steps: int | None = STEPS_OPTION,
    no_progress: bool = PROGRESS_OPTION,
) -> None:
    """Train CLIPAway's MLP (AlphaCLIP → IP-Adapter space, Algorithm 1); weights to
    OUTPUT/CLIPAway/model.safetensors."""
    from ..methods.clipaway.train.config import load_config, packaged_config
    from ..methods.clipaway.train.trainer import train_clipaway_mlp

    cfg = load_config(*_config(config, overrides, output_dir, max_steps, packaged_config))
    _report("CLIPAway MLP", train_clipaway_mlp(cfg, progress=not no_progress))

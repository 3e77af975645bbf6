"""``erasekit train osor --config FILE.yaml`` (and ``erasekit train pixperfect``, see
:mod:`erasekit.refiners.pixperfect.train`): OSOR Phase I / II training from a YAML config.

``--config`` takes a file or the name of a packaged config (``osor_sdxl_phase1``, ``osor_sdxl_phase2``,
``osor_flux_phase1``, ``osor_flux_phase2``); ``--set KEY=VALUE`` overrides any field (dotted for sections,
e.g.
``--set optim.lr_generator=2e-5 --set data.path=/data/corne``). A run resumes from the newest checkpoint in
its
output folder. Multi-GPU: ``accelerate launch -m erasekit train osor --config ...``.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

train_app = typer.Typer(
    help="Train removal models (OSOR Phase I / II, EraDiff CRO) and the PixPerfect refiner.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")


@train_app.command("osor")
def osor_command(
    config: str = typer.Option(..., "--config", "-c", help="YAML config file or packaged config name"),
    overrides: list[str] = typer.Option(None, "--set", help="override a setting: KEY=VALUE (dotted keys)"),
    output_dir: str | None = typer.Option(
        None, "--output-dir", "-o", help="where checkpoints and weights go"
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", help="optimizer steps (default: the paper's)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
) -> None:
    """Train OSOR (one phase, one backbone); writes erasekit-format weights to OUTPUT/osor."""
    from ..methods.osor.train.config import load_config, packaged_config, parse_overrides

    path = Path(config).expanduser()
    if not path.is_file() and not config.endswith((".yaml", ".yml")):
        path = packaged_config(config)
    extra = parse_overrides(list(overrides or []))
    if output_dir is not None:
        extra["output_dir"] = output_dir
    if max_steps is not None:
        extra["max_steps"] = max_steps
    cfg = load_config(path, extra)
    from ..methods.osor.train.trainer import train_osor

    result = train_osor(cfg, progress=not no_progress)
    Console(stderr=True).print(
        f"OSOR {cfg.backbone} phase {cfg.phase}: step {result.step}"
        f"{f' (resumed from {result.resumed_from})' if result.resumed_from else ''}; "
        f"weights {result.weights_dir}; metrics {result.metrics_path}",
        highlight=False,
    )


@train_app.command("pixperfect")
def pixperfect_command(
    config: str = typer.Option("pixperfect", "--config", "-c", help="YAML config file or packaged name"),
    overrides: list[str] = typer.Option(None, "--set", help="override a setting: KEY=VALUE (dotted keys)"),
    output_dir: str | None = typer.Option(None, "--output-dir", "-o", help="checkpoints and weights go here"),
    max_steps: int | None = typer.Option(None, "--max-steps", help="optimizer steps"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
) -> None:
    """Train the PixPerfect refiner on photos with simulated artifacts; weights to OUTPUT/pixperfect."""
    from ..methods.osor.train.config import parse_overrides
    from ..refiners.pixperfect.train.config import load_config, packaged_config
    from ..refiners.pixperfect.train.trainer import train_pixperfect

    path = Path(config).expanduser()
    if not path.is_file() and not config.endswith((".yaml", ".yml")):
        path = packaged_config(config)
    extra = parse_overrides(list(overrides or []))
    if output_dir is not None:
        extra["output_dir"] = output_dir
    if max_steps is not None:
        extra["max_steps"] = max_steps
    result = train_pixperfect(load_config(path, extra), progress=not no_progress)
    resumed = f" (resumed from {result.resumed_from})" if result.resumed_from else ""
    Console(stderr=True).print(
        f"PixPerfect: step {result.step}{resumed}; weights {result.weights_dir}; "
        f"metrics {result.metrics_path}",
        highlight=False,
    )


@train_app.command("eradiff")
def eradiff_command(
    config: str = typer.Option(..., "--config", "-c", help="YAML config or packaged config (eradiff_sd2)"),
    overrides: list[str] = typer.Option(None, "--set", help="override a setting: KEY=VALUE (dotted keys)"),
    output_dir: str | None = typer.Option(None, "--output-dir", "-o", help="checkpoints and weights go here"),
    max_steps: int | None = typer.Option(None, "--max-steps", help="optimizer steps"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
) -> None:
    """Train EraDiff's UNet with Chain-Rectifying Optimization; writes weights to OUTPUT/eradiff."""
    from ..methods.eradiff.train.config import load_config, packaged_config
    from ..methods.osor.train.config import parse_overrides  # generic KEY=VALUE parsing

    path = Path(config).expanduser()
    if not path.is_file() and not config.endswith((".yaml", ".yml")):
        path = packaged_config(config)
    extra = parse_overrides(list(overrides or []))
    if output_dir is not None:
        extra["output_dir"] = output_dir
    if max_steps is not None:
        extra["max_steps"] = max_steps
    cfg = load_config(path, extra)
    from ..methods.eradiff.train.trainer import train_eradiff

    result = train_eradiff(cfg, progress=not no_progress)
    Console(stderr=True).print(
        f"EraDiff CRO: step {result.step}"
        f"{f' (resumed from {result.resumed_from})' if result.resumed_from else ''}; "
        f"weights {result.weights_dir}; metrics {result.metrics_path}",
        highlight=False,
    )

"""Data commands: ``erasekit synth`` and ``erasekit savp``.

``synth`` writes synthetic effect scenes; ``savp`` builds a paired dataset from instruction-edit triplets.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..types import InvalidInputError


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_command)
    app.command("savp")(savp_command)


def synth_command(
    output: Path = typer.Option(..., "-o", "--output", help="dataset folder to create or extend"),
    count: int = typer.Option(100, "-n", "--count", help="number of scenes"),
    size: int = typer.Option(64, "--size", help="scene side in pixels"),
    seed: int = typer.Option(0, "--seed", help="scene i depends only on (seed, i)"),
    triplets: bool = typer.Option(
        False,
        "--triplets",
        help="write SAVP triplets (an add and a remove per scene) instead of a paired dataset",
    ),
) -> None:
    """Generate synthetic effect scenes (photo crops + objects with shadows and reflections)."""
    from ..data.synthetic import generate_synthetic_dataset, write_synthetic_triplets

    console = Console(stderr=True)
    if count < 0 or size < 16:
        raise InvalidInputError("need --count >= 0 and --size >= 16")
    if triplets:
        manifest = write_synthetic_triplets(output, count, size=size, seed=seed)
        console.print(f"wrote {2 * count} triplets to {manifest}")
    else:
        generate_synthetic_dataset(output, count, size=size, seed=seed, progress=True)
        console.print(f"paired dataset with {count} scenes in {output}")


def savp_command(
    triplets: Path = typer.Option(
        ..., "--triplets", help="JSONL manifest of (original, edited, instruction)"
    ),
    output: Path = typer.Option(..., "-o", "--output", help="paired dataset folder (created or resumed)"),
    executor: str = typer.Option("local", "--executor", help="local (process pool) or ray"),
    workers: int = typer.Option(1, "--workers", help="worker processes / Ray actors"),
    debug_sheets: bool = typer.Option(False, "--debug-sheets", help="write debug/<id>.png per triplet"),
    detector: str = typer.Option(
        None,
        "--detector",
        help="GroundingDINO folder or cached Hub id (default IDEA-Research/grounding-dino-"
        "base); 'oracle-truth' reads truth boxes from the manifest (testing only)",
    ),
    segmenter: str = typer.Option(
        None,
        "--segmenter",
        help="SAM2/SAM folder or cached Hub id (default facebook/sam2.1-hiera-large); "
        "'grabcut' (OpenCV) or 'oracle-truth'",
    ),
    device: str = typer.Option(
        None, "--device", help="torch device for the models (default: cuda if available)"
    ),
    config: Path = typer.Option(
        None, "--config", help="YAML with SAVP constants to override (Table 6 names)"
    ),
) -> None:
    """Verify instruction-edit triplets and write effect-aware removal pairs (OSOR's SAVP)."""
    from ..data.savp import SAVPConfig
    from ..data.savp_models import DEFAULT_DETECTOR, DEFAULT_SEGMENTER
    from ..data.savp_run import ModelSpec, run_savp

    spec = ModelSpec(
        detector=detector or DEFAULT_DETECTOR, segmenter=segmenter or DEFAULT_SEGMENTER, device=device
    )
    cfg = SAVPConfig.from_yaml(config) if config else SAVPConfig()
    stats = run_savp(
        triplets,
        output,
        spec=spec,
        config=cfg,
        executor=executor,
        workers=workers,
        debug_sheets=debug_sheets,
        progress=True,
    )
    Console().print(stats.table())

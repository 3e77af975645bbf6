"""Data commands: ``erasekit synth``, ``erasekit savp`` and ``erasekit data eradiff-pairs``.

``synth`` writes synthetic effect scenes; ``savp`` builds a paired dataset from instruction-edit triplets;
``data eradiff-pairs`` builds EraDiff's object-pasted pairs from photos.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..types import InvalidInputError


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_command)
    app.command("savp")(savp_command)
    data_app = typer.Typer(no_args_is_help=True, help="Build training datasets.")
    data_app.command("eradiff-pairs")(eradiff_pairs_command)
    app.add_typer(data_app, name="data")


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


def eradiff_pairs_command(
    images: list[Path] = typer.Argument(..., help="source photos: files, folders or glob patterns"),
    output: Path = typer.Option(..., "-o", "--output", help="paired dataset folder (created or resumed)"),
    segmenter: str = typer.Option(
        "sam2", "--segmenter",
        help="primary-object segmenter: sam2 (facebook/sam2.1-hiera-large, cached), a SAM2/SAM folder or "
        "cached Hub id, grabcut (OpenCV, weight-free stand-in) or masks:DIR (DIR/<stem>.png)"),
    copies: int = typer.Option(1, "--copies", help="pairs per source photo"),
    target: str = typer.Option("same", "--target", help="paste onto the same photo, another one, or either"),
    max_rotation: float = typer.Option(30.0, "--max-rotation", help="degrees, uniform in ±this"),
    scale_min: float = typer.Option(0.5, "--scale-min", help="smallest object scale"),
    scale_max: float = typer.Option(1.0, "--scale-max", help="largest object scale"),
    flip_prob: float = typer.Option(0.5, "--flip-prob", help="probability of a horizontal flip"),
    seed: int = typer.Option(0, "--seed", help="pair (i, k) depends only on (seed, i, k)"),
    debug_sheets: bool = typer.Option(False, "--debug-sheets", help="write debug/<id>.png per pair"),
    device: str = typer.Option(None, "--device", help="torch device for SAM2 (default: cuda if available)"),
) -> None:
    """EraDiff training pairs (arXiv:2503.07026 Sec. 4.1): segment, transform and paste each photo's primary
    object; x_obj (with the pasted copy) is the image, the photo is the background."""
    from ..data.eradiff_pairs import PairConfig, build_eradiff_pairs, make_segmenter

    config = PairConfig(copies=copies, target=target, max_rotation=max_rotation,  # type: ignore[arg-type]
                        scale=(scale_min, scale_max), flip_prob=flip_prob)
    primary = make_segmenter(segmenter, device=device, box_margin=config.box_margin)
    stats = build_eradiff_pairs([str(p) for p in images], output, config=config, seed=seed, segmenter=primary,
                                debug_sheets=debug_sheets, progress=True)
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(stats.skipped.items())) or "none"
    Console(stderr=True).print(f"{output}: {stats.written} pairs written, {stats.existing} already there, "
                               f"skipped: {skipped}", highlight=False)

"""``erasekit bench`` and ``erasekit report``.

``bench`` runs methods over a dataset and scores them; ``report`` rebuilds the HTML report.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..types import InvalidInputError


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
    app.command("report")(report_command)


def _per_method(items: list[str] | None, flag: str) -> dict[str, dict[str, str]]:
    """``["sd15-inpaint:steps=2", "sd15-inpaint:model=/m"]`` ->
    ``{"sd15-inpaint": {"steps": "2", "model": "/m"}}`` (values still text)."""
    from .core import parse_option_values

    out: dict[str, dict[str, str]] = {}
    for item in items or []:
        method, sep, rest = item.partition(":")
        if not sep or not method or "=" not in rest:
            raise InvalidInputError(f"{flag} expects METHOD:KEY=VALUE, got {item!r}")
        out.setdefault(method.strip(), {}).update(parse_option_values([rest], flag))
    return out


def _load_options(items: list[str] | None) -> dict[str, dict]:
    """``--load METHOD:KEY=VALUE``: factory keyword arguments, read as JSON literals (else strings)."""
    from .core import literal

    return {
        method: {k: literal(v) for k, v in texts.items()}
        for method, texts in _per_method(items, "--load").items()
    }


def _call_options(items: list[str] | None) -> dict[str, dict]:
    """``-O METHOD:KEY=VALUE``: per-call options parsed by each method's declared types."""
    from ..registry import check_call, get_method

    return {
        method: check_call(get_method(method), texts, from_python=False)
        for method, texts in _per_method(items, "--option").items()
    }


def _key_values(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise InvalidInputError(f"{flag} expects KEY=PATH, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def bench_command(
    dataset: str = typer.Option(
        None, "--dataset", "-d",
        help="dataset folder or object-store prefix (paired format or a benchmark layout)",
    ),
    methods: str = typer.Option(
        "patchmatch,telea", "--methods", help="comma-separated methods or chains (telea+poisson): a row each"
    ),
    mask: str = typer.Option("both", "--mask", help="object | effect | both"),
    metrics: str = typer.Option(
        "fid,cmmd,lpips,psnr,ssim,cfd",
        "--metrics",
        help="comma-separated: psnr,ssim,psnr_mask,ssim_mask,lpips,fid,kid,local_fid,cmmd,cfd,clip,"
        "ids,musiq,maniqa",
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="results folder (reused: finished outputs are cached)"
    ),
    layout: str = typer.Option(
        "auto",
        "--layout",
        help="auto | paired | corne | rord | removalbench | omnipaint | coco | coco-dilate5 | openimages | "
        "inpainting",
    ),
    limit: int = typer.Option(None, "--limit", help="only the first N samples"),
    seed: int = typer.Option(0, "--seed", help="seed passed to every method"),
    warmup: int = typer.Option(1, "--warmup", help="untimed calls before timing each method"),
    device: str = typer.Option("cpu", "--device", help="device for the metric networks"),
    load: list[str] = typer.Option(
        None, "--load", help="method load option METHOD:KEY=VALUE (e.g. sd15-inpaint:model=/models/sd15)"
    ),
    option: list[str] = typer.Option(None, "--option", "-O", help="method call option METHOD:KEY=VALUE"),
    weights: list[str] = typer.Option(None, "--weights", help="metric weights KEY=PATH (see --list-metrics)"),
    cfd_reference_quirks: bool = typer.Option(
        False, "--cfd-reference-quirks", help="reproduce the OmniPaint CFD reference code's quirks"
    ),
    clip_classes: str = typer.Option(None, "--clip-classes", help="comma-separated classes for CLIP acc@k"),
    report: bool = typer.Option(True, "--report/--no-report", help="also write report/index.html"),
    tracemalloc: bool = typer.Option(True, "--tracemalloc/--no-tracemalloc", help="trace Python allocations"),
    list_metrics: bool = typer.Option(
        False, "--list-metrics", help="show metric weight files and where they resolve, then exit"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    executor: str = typer.Option(
        "local", "--executor", help="local | ray (outputs on Ray actors; docs/cluster.md)"
    ),
    workers: int = typer.Option(1, "--workers", help="Ray actors, one model each (--executor ray)"),
    preset: str = typer.Option(
        None,
        "--preset",
        help="a paper's table (sets methods, metrics and mask): osor-table1 | eradiff-table1 | "
        "clipaway-table1 | pixperfect-table2 | magicremover-table1; refiner weights via --load "
        "pixperfect:weights=DIR",
    ),
) -> None:
    """Benchmark removal methods on a paired dataset.

    Writes a per-image CSV, summary JSON, Table-1 Markdown and an HTML report.
    """

    if list_metrics:
        _print_weights(_key_values(weights, "--weights"))
        return
    if dataset is None or out is None:
        raise InvalidInputError("--dataset and --out are required")
    from ..eval.report import build_report
    from ..eval.runner import BenchConfig, run_benchmark

    load_options = _load_options(load)
    table = None
    if preset is not None:
        from ..eval.presets import get_preset

        table = get_preset(preset)
        methods, metrics, mask = ",".join(table.methods), ",".join(table.metrics), table.mask
    cfg = BenchConfig(
        dataset=str(dataset),
        out=str(out),
        methods=[m.strip() for m in methods.split(",") if m.strip()],
        mask=mask,
        metrics=[m.strip() for m in metrics.split(",") if m.strip()],
        layout=layout,
        seed=seed,
        warmup=warmup,
        limit=limit,
        device=device,
        load_options=load_options,
        call_options=_call_options(option),
        weights=_key_values(weights, "--weights"),
        cfd_reference_quirks=cfd_reference_quirks,
        clip_classes=[c.strip() for c in clip_classes.split(",")] if clip_classes else None,
        trace_python_memory=tracemalloc,
        progress=not quiet,
        executor=executor,
        workers=workers,
        entries=table.entries(load_options) if table is not None else {},
    )
    result = run_benchmark(cfg)
    if table is not None:
        from ..eval.presets import preset_table

        text = preset_table(table, result.summary)
        (result.out / f"{table.name}.md").write_text(text)
        typer.echo(text)
    else:
        typer.echo((result.out / "table.md").read_text())
    if report:
        typer.echo(f"report: {build_report(result.out)}")
    typer.echo(f"results: {result.out}")


def report_command(
    results: Path = typer.Argument(..., help="a results folder written by `erasekit bench`"),
    samples: int = typer.Option(8, "--samples", help="how many samples get comparison grids"),
) -> None:
    """Rebuild the static HTML report (grids + charts) of a benchmark results folder."""
    from ..eval.report import build_report

    typer.echo(str(build_report(results, max_samples=samples)))


def _print_weights(explicit: dict[str, str]) -> None:
    from ..eval.weights import resolve, weights_table
    from ..types import MissingWeightsError

    rows = []
    for row in weights_table():
        try:
            r = resolve(row["key"], explicit.get(row["key"]))
            where = f"{r.path} ({r.source}, {r.verified})"
        except MissingWeightsError as exc:
            where = f"missing: {exc}"
        rows.append({**row, "resolves_to": where})
    typer.echo(json.dumps(rows, indent=1))

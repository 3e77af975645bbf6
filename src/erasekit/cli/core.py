"""Core commands: remove, batch, demo, methods.

Exit codes (shared by every command, see :mod:`erasekit.cli`): 0 success, 1 internal error, 2 bad input,
3 missing weights, 4 resource limit; ``batch`` adds 5 when some images failed (see :mod:`erasekit.batch`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ..types import InvalidInputError, MaskOrPromptError

REFINE_HELP = ("refiner(s) run on the method's output before paste-back, in order, e.g. poisson or "
               "color-match,poisson; options as NAME:KEY=VALUE (color-match:ring=24)")


T = TypeVar("T")


def interruptible(work: Callable[[], T]) -> T:
    """``work()`` in a daemon thread while this (main) thread waits for it, so Ctrl+C takes effect at once.

    Python runs its SIGINT handler only in the main thread, between bytecodes: a long native call there
    (PatchMatch's C fill, an OpenCV inpaint) would hold Ctrl+C back until it returns, tens of seconds on a
    large photo. Waiting here in short joins lets the KeyboardInterrupt through; the abandoned worker dies
    with the process. Every output is written atomically, so nothing half-written is left behind (a batch
    removes the temp files of an interrupted run when it next starts)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 (re-raised in the waiting thread, below)
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="erasekit-work", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def register(app: typer.Typer) -> None:
    app.command("remove")(remove_command)
    app.command("batch")(batch_command)
    app.command("demo")(demo_command)
    app.command("methods")(methods_command)


def parse_option_values(items: list[str] | None, flag: str = "--option") -> dict[str, str]:
    """``KEY=VALUE`` items -> {key: raw text}; ``-`` in keys reads as ``_``. Values stay text: their meaning
    depends on the option (see :func:`typed_options`)."""
    texts: dict[str, str] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InvalidInputError(f"{flag} expects KEY=VALUE, got {item!r}")
        texts[key] = raw
    return texts


def literal(text: str) -> Any:
    """A load option's text as a JSON literal (numbers, true/false, null, quoted strings), else the string.
    Load options (``offload``, ``dtype`` ...) are the factory's keyword arguments, not a typed declaration."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def typed_options(method: str, texts: dict[str, str]) -> dict[str, Any]:
    """``-O KEY=VALUE`` texts for ``method``: per-call options parsed by the method's declared types
    (``paste_back=no`` is False, ``steps=3.5`` an error naming the range), load options read by
    :func:`literal`. A name that is neither is refused here, with the names the method takes."""
    from ..registry import check_call, get_method, load_options

    spec = get_method(method)
    declared: set[str] = set(spec.call_options or ())
    loads = load_options(spec)
    per_call = {k: v for k, v in texts.items() if k in declared or k not in loads}
    return {**{k: literal(v) for k, v in texts.items() if k not in per_call},
            **check_call(spec, per_call, from_python=False)}


def method_options(method: str, *, mask_given: bool = True, option: list[str] | None = None,
                   prompt_given: bool = False, **flags: Any) -> dict[str, Any]:
    """Options for a method from the CLI: only the flags given, so a method that does not take one reports it
    instead of ignoring it, then every ``--option KEY=VALUE`` (see :func:`typed_options`). ``--device`` is
    checked by :func:`device_flag` first."""
    from ..chain import parse_chain, resolve_auto_for_prompt
    from ..masking import text_available
    from ..registry import get_method, load_options, resolve_auto

    given = {k: v for k, v in flags.items() if v is not None}
    texts = parse_option_values(option)
    name = parse_chain(method).method  # a chain's options are its method's ("telea+poisson" -> telea)
    if name == "auto":
        if not texts and "device" not in given:  # nothing to check: `auto` is resolved where the removal runs
            return given
        if prompt_given and not mask_given:  # the order erasekit.chain documents
            name = resolve_auto_for_prompt(text_available())[0]
        else:
            name = resolve_auto(mask_given=mask_given)
    if "device" in given:
        takes_device = "device" in load_options(get_method(name))
        given["device"] = device_flag(name, given["device"], takes_device=takes_device)
        if given["device"] is None:
            del given["device"]
    return {**given, **typed_options(name, texts)}


def device_flag(method: str, device: str, *, takes_device: bool) -> str | None:
    """``--device`` checked for every method, as the diffusion backbones check it (``tpu`` is unknown,
    ``cuda`` without a GPU is refused). A method that runs on the CPU only accepts ``cpu`` (None: nothing to
    pass on) and refuses any other device, as ``--prompt`` is refused where a method ignores it."""
    from ..backbones.device import resolve_device

    resolved = resolve_device(device)
    if takes_device:
        return device
    if resolved.type != "cpu":
        raise InvalidInputError(f"method {method!r} runs on the CPU only: drop --device {device}, or choose "
                                "a method that runs on a GPU (erasekit methods)")
    return None


# Flags `remove` and `batch` share, declared once (Typer reads the declaration from the default value).
METHOD_OPTION = typer.Option("auto", "--method", help="method name (see `erasekit methods`)")
SEED_OPTION = typer.Option(None, "--seed", help="random seed for stochastic methods")
HD_STRATEGY_OPTION = typer.Option(None, "--hd-strategy", help="original | resize[:LIMIT] | crop[:MARGIN]")
DEVICE_OPTION = typer.Option(None, "--device", help="cpu, cuda, mps (diffusion methods)")
MODEL_OPTION = typer.Option(None, "--model", help="backbone preset, local diffusers folder or Hub id")
STEPS_OPTION = typer.Option(None, "--steps", help="denoising steps (diffusion methods)")
METHOD_OPTIONS_OPTION = typer.Option(None, "--option", "-O", help="method option KEY=VALUE (repeatable)")
# Text -> mask (erasekit.masking): used when a masked method gets --prompt and no --mask.
MASK_SOURCE_OPTION = typer.Option(
    None, "--mask-source", help="text -> mask: auto | sam3 | grounding-dino-sam2"
)
INSTANCES_OPTION = typer.Option(None, "--instances", help="text -> mask: all | largest | N (N best scores)")
SCORE_THRESHOLD_OPTION = typer.Option(
    None, "--score-threshold", help="text -> mask: keep instances scoring above this (sam3 0.5, gdino 0.35)")
MASK_GROW_OPTION = typer.Option(None, "--mask-grow", help="text -> mask: grow the mask by N px (default 5)")
SAM3_OPTION = typer.Option(None, "--sam3", help="SAM 3 folder or Hub id (text -> mask)")
DETECTOR_OPTION = typer.Option(None, "--detector", help="Grounding DINO folder or Hub id (text -> mask)")
SEGMENTER_OPTION = typer.Option(None, "--segmenter", help="SAM 2 folder or Hub id (text -> mask)")


def remove_command(
    image: Path = typer.Argument(..., metavar="IMAGE", help="input photo"),
    mask: Path = typer.Option(None, "--mask", "-m", help="mask PNG: any nonzero pixel is removed"),
    out: Path = typer.Option(..., "--out", "-o", help="output file (format from the extension)"),
    method: str = METHOD_OPTION,
    dilate: int = typer.Option(0, "--dilate", help="grow the mask by this many pixels"),
    seed: int = SEED_OPTION,
    hd_strategy: str = HD_STRATEGY_OPTION,
    device: str = DEVICE_OPTION,
    resize_mask: bool = typer.Option(False, "--resize-mask", help="accept a mask of another size (nearest)"),
    prompt: str = typer.Option(None, "--prompt", help="text prompt (diffusion and text-guided methods)"),
    target: str = typer.Option(None, "--target", help="what to remove, words of the prompt (magicremover)"),
    model: str = MODEL_OPTION,
    steps: int = STEPS_OPTION,
    guidance: float = typer.Option(None, "--guidance", help="guidance scale (diffusion methods)"),
    allow_download: bool = typer.Option(False, "--allow-download", help="fetch missing weights from the Hub"),
    option: list[str] = METHOD_OPTIONS_OPTION,
    weights: str = typer.Option(
        None, "--weights", help="method weights file/folder (OSOR: *_phase2.pth or folder)"
    ),
    timestep: float = typer.Option(None, "--timestep", help="one-step noise level (OSOR: SDXL t, FLUX s)"),
    save_alpha: Path = typer.Option(
        None, "--save-alpha", help="also write the edited-region alpha map (PNG)"
    ),
    refine: str = typer.Option(None, "--refine", help=REFINE_HELP),
    mask_source: str = MASK_SOURCE_OPTION,
    instances: str = INSTANCES_OPTION,
    score_threshold: float = SCORE_THRESHOLD_OPTION,
    mask_grow: int = MASK_GROW_OPTION,
    sam3: str = SAM3_OPTION,
    detector: str = DETECTOR_OPTION,
    segmenter: str = SEGMENTER_OPTION,
    save_mask: Path = typer.Option(None, "--save-mask", help="also write the mask the method got (PNG)"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="allow OUT to be IMAGE itself (replaces the photo)"
    ),
) -> None:
    """Remove the masked object (or what --prompt names) from IMAGE and write the result to OUT.

    METHOD may be a chain, e.g. telea+poisson. A masked method with --prompt and no --mask segments what the
    prompt names first (SAM 3, or Grounding DINO + SAM 2; see docs/masking.md)."""
    import erasekit
    from erasekit import io

    if not overwrite and _same_path(out, image):
        raise InvalidInputError(f"output '{out}' is the input photo; choose another output, or pass "
                                "--overwrite to replace the original")
    if mask is None and not prompt:
        raise MaskOrPromptError()
    loaded = io.read_image(image)
    options = method_options(
        method,
        mask_given=mask is not None,
        prompt_given=prompt is not None,
        option=option,
        device=device,
        model=model,
        steps=steps,
        guidance=guidance,
        allow_download=allow_download or None,
        weights=weights,
        timestep=timestep,
        target=target,
    )
    result = interruptible(lambda: erasekit.remove(
        loaded.pixels,
        mask,
        method=method,
        prompt=prompt,
        seed=seed,
        dilate=dilate,
        hd_strategy=hd_strategy,
        refine=refine,
        resize_mask=resize_mask,
        **options,
        **{k: v for k, v in {"mask_source": mask_source, "instances": instances, "sam3": sam3,
                             "score_threshold": score_threshold, "mask_grow": mask_grow, "detector": detector,
                             "segmenter": segmenter}.items() if v is not None},
    ))
    io.write_image(out, result.image, like=loaded)
    if save_alpha is not None and result.alpha is not None:
        io.write_mask(save_alpha, result.alpha)
    if save_mask is not None and result.mask is not None:
        io.write_mask(save_mask, result.mask)
    note = " (empty mask: unchanged)" if result.unchanged else ""
    found = result.metadata.get("mask_source", {})
    if "instances_kept" in found:
        kept, total = len(found["instances_kept"]), found["instances_found"]
        note += f" (mask: {found['source']}, {kept} of {total} instances)"
    chain = result.metadata.get("chain", result.method)
    Console(stderr=True).print(
        f"{chain}: wrote {out} in {result.timings['total']:.2f}s{note}", highlight=False
    )


def _same_path(a: Path, b: Path) -> bool:
    """Whether two paths name one file (also through links or ``./``), before anything is written."""
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


def methods_command(
    options: str = typer.Option(
        None,
        "--options",
        metavar="METHOD",
        help="show METHOD's per-call options (-O KEY=VALUE): type, range, default, help",
    ),
) -> None:
    """List every method, what it needs and whether it is available here."""
    import erasekit

    if options is not None:
        _print_options(options)
        return
    table = Table(title="erasekit methods")
    for col in ("method", "available", "description", "needs", "options"):
        table.add_column(col)
    for info in erasekit.available_methods():
        needs = ", ".join(f"{w.name} ({'ok' if w.present else 'missing'})" for w in info.weights) or "-"
        declared = erasekit.get_method(info.name).call_options
        names = "?" if declared is None else ", ".join(o.name for o in declared.public()) or "-"
        table.add_row(info.name, "yes" if info.available else "no", info.description, needs, names)
    Console().print(table)


def _print_options(method: str) -> None:
    import erasekit

    spec = erasekit.get_method(method)
    declared = spec.call_options
    if declared is None:
        raise InvalidInputError(f"method {method!r} declares no per-call options ahead of loading")
    takes_prompt = getattr(spec.factory, "takes_prompt", False)
    prompt = "takes a prompt (--prompt)" if takes_prompt else "takes no prompt"
    table = Table(title=f"{method}: per-call options (-O KEY=VALUE); {prompt}")
    for col in ("option", "type", "allowed", "default", "help"):
        table.add_column(col)
    for o in declared.values():
        default = o.default_note if o.default is None and o.default_note else json.dumps(o.default)
        kind = f"{o.type_name} (Python API only)" if o.python_only else o.type_name
        table.add_row(o.name, kind, o.allowed(), default, o.help)
    Console().print(table)


def batch_command(
    images: list[str] = typer.Argument(..., metavar="IMAGES...",
                                       help="image files, folders, glob patterns ('in/*.jpg') or "
                                       "object-store prefixes (s3://bucket/photos/)"),
    masks: str = typer.Option(
        ..., "--masks", "-m",
        help="mask folder or prefix (s3://...): photo.jpg <- photo.png or photo_mask.png",
    ),
    out: str = typer.Option(
        ..., "--out", "-o", help="output folder, local or mounted (same names and formats as the inputs)"
    ),
    method: str = METHOD_OPTION,
    dilate: int = typer.Option(0, "--dilate", help="grow every mask by this many pixels"),
    seed: int = SEED_OPTION,
    hd_strategy: str = HD_STRATEGY_OPTION,
    device: str = DEVICE_OPTION,
    model: str = MODEL_OPTION,
    weights: str = typer.Option(None, "--weights", help="method weights file/folder (OSOR)"),
    steps: int = STEPS_OPTION,
    option: list[str] = METHOD_OPTIONS_OPTION,
    resize_mask: bool = typer.Option(False, "--resize-mask", help="accept masks of another size (nearest)"),
    skip_existing: bool = typer.Option(
        True, "--skip-existing/--overwrite", help="skip images whose output exists (resume), or redo them"
    ),
    in_place: bool = typer.Option(
        False, "--in-place", help="allow OUT to hold the input photos: they are replaced by their results"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
    refine: str = typer.Option(None, "--refine", help=REFINE_HELP),
    executor: str = typer.Option(
        "local", "--executor", help="local | ray (Ray Data actors; docs/cluster.md)"
    ),
    workers: int = typer.Option(1, "--workers", help="Ray actors, one model each (--executor ray)"),
) -> None:
    """Remove objects from many images; resumable. Writes OUT/batch_report.jsonl (one record per image).

    Exit code 0 when every image succeeded or was skipped; when every image failed with the same error, that
    error's code (2 bad input, 3 missing weights, 4 resource limit, 1 internal); otherwise 5.
    """
    from erasekit.batch import run_batch

    console = Console(stderr=True)
    summary = interruptible(lambda: run_batch(
        images,
        masks,
        out,
        method=method,
        dilate=dilate,
        seed=seed,
        hd_strategy=hd_strategy,
        options=method_options(
            method, option=option, device=device, model=model, weights=weights, steps=steps
        ),
        skip_existing=skip_existing,
        in_place=in_place,
        resize_mask=resize_mask,
        progress=progress,
        console=console,
        refine=refine,
        executor=executor,
        workers=workers,
    ))
    if summary.stale_temps_removed:
        console.print(f"removed {summary.stale_temps_removed} temporary file(s) left by an interrupted run")
    for table in summary.tables():
        console.print(table)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def demo_command(
    out: Path = typer.Option(Path("demo"), "--out", "-o", help="folder for the demo images"),
    method: str = METHOD_OPTION,
    photos: str = typer.Option(
        None, "--photos", help="comma-separated subset of: astronaut, coffee, rocket, camera"
    ),
    seed: int = typer.Option(0, "--seed", help="random seed for stochastic methods"),
) -> None:
    """Remove objects from real photos bundled with scikit-image.

    Writes before/after images and comparison.png.
    """

    from erasekit.demo import run_demo

    console = Console(soft_wrap=True)
    names = [n.strip() for n in photos.split(",") if n.strip()] if photos else None
    records = interruptible(lambda: run_demo(
        out,
        method=method,
        photos=names,
        seed=seed,
        report=lambda record: console.print(record.summary_line(), highlight=False),
    ))
    total = sum(r.seconds for r in records)
    console.print(
        f"{len(records)} photos in {total:.1f} s; results in {out}/, side by side in "
        f"{out / 'comparison.png'}",
        highlight=False,
    )

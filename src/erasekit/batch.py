"""Batch removal: many photos, masks matched by file stem, a per-image report, and resume after a kill.

Inputs are files, folders (their image files, not recursive) or glob patterns (``**`` recurses). Each image
``photo.jpg`` takes its mask from the mask folder, first match wins:

1. ``photo.png``, 2. ``photo_mask.png``, 3. ``photo.<ext>``, 4. ``photo_mask.<ext>`` for any other image
extension (in alphabetical order). A file that is the image itself never counts as its mask. The mask folder
is listed once when the batch starts and every image's mask is chosen from that listing (:class:`MaskIndex`):
a folder of a million masks costs one directory scan, not a scan per image; a mask added during a run is seen
by the next run.

The output is ``OUTDIR/photo.jpg`` (same name, same format as the input, EXIF/ICC kept by :mod:`erasekit.io`).

Object stores: inputs and the mask folder may be URLs (``s3://bucket/photos/``,
``s3://bucket/photos/*.jpg``, ``gs://...``, ``memory://...``; :mod:`erasekit.objstore`, through fsspec).
An input prefix is listed once, as a folder is; a mask prefix is listed once when the batch starts, as a mask
folder is, so a million images cost one paged listing, not a request per candidate mask name. Each image and
mask is then one GET, by whichever process runs the image (the Ray actors fetch their own). The output
folder must be a local or mounted folder (the lock, the report and the atomic renames below need a POSIX
folder): a URL output is refused (exit 2).

Resume: outputs are written atomically (temp file + rename, :func:`erasekit.io.write_image`), so an output
that exists is complete; a re-run skips it (unless ``skip_existing=False``). Temp files a killed run left
behind are deleted when the next run starts. A lock on ``OUTDIR/.erasekit-batch.lock`` keeps two batches from
writing into the same folder at once (the kernel drops the lock when a process dies, even on SIGKILL).

Report: ``OUTDIR/batch_report.jsonl`` describes the latest run, one JSON record per image, written (and
synced) as each image finishes, so a killed run's report is complete up to the kill. Failures (corrupt image,
missing mask, size mismatch, ...) are recorded and the batch goes on.

Executors: ``local`` (default) runs the images one after another in this process. ``ray`` maps them over a Ray
Data actor pool, one remover per actor (``num_gpus=1`` per actor when the cluster has GPUs and the method is
not a weight-free fill); each actor runs the same per-image code as the local executor and writes its outputs
atomically, while this process keeps the lock, decides what to skip and writes the report, so resume and the
report behave exactly as above and the outputs are the same bytes. See docs/cluster.md.

Exit code (:attr:`BatchSummary.exit_code`): 0 when nothing failed; when every image failed with the same error
class, that class's code (2 bad input, 3 missing weights, 4 resource limit, 1 internal); otherwise
:data:`PARTIAL_FAILURE_EXIT_CODE` (5).
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import os
import posixpath
import re
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import io, jsonl, objstore
from .types import ErasekitError, InvalidInputError, RemovalRequest

REPORT_NAME = "batch_report.jsonl"
LOCK_NAME = ".erasekit-batch.lock"
PARTIAL_FAILURE_EXIT_CODE = 5
MASK_SUFFIXES = ("", "_mask")

# The temp names erasekit.io's atomic writer uses: ".{name}.{12 hex digits}.tmp" beside the target.
_TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.tmp$")


def image_extensions() -> frozenset[str]:
    """Lower-case extensions (".jpg", ...) of every format Pillow can open here."""
    from PIL import Image

    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


# ------------------------------------------------------------------------------------------------------------
# Finding the work
# ------------------------------------------------------------------------------------------------------------
def collect_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files, folders and glob patterns into image paths, in the order given, without duplicates.

    A path that does not exist (or a pattern that matches nothing) is kept as it is, so the batch records it
    as a failed item instead of silently doing less work. Object-store URLs: :func:`collect_sources`.
    """
    found = collect_sources(inputs)
    urls = [item for item in found if isinstance(item, str)]
    if urls:
        raise InvalidInputError(f"'{urls[0]}': object-store URLs are read by `erasekit batch`, not here")
    return [item for item in found if isinstance(item, Path)]


def collect_sources(inputs: Sequence[str | os.PathLike]) -> list[Path | str]:
    """:func:`collect_images`, where inputs may also be URLs (``s3://bucket/photos/``: a prefix, one object
    or a glob), which expand the same way to object URLs (str), one listing per input
    (:func:`erasekit.objstore.list_images`)."""
    extensions = image_extensions()
    found: list[Path | str] = []
    for item in inputs:
        text = os.fspath(item)
        if objstore.is_url(text):
            found.extend(objstore.list_images(text, extensions))
            continue
        path = Path(text)
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions
                )
            )
        elif path.exists() or not glob.has_magic(text):
            found.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            files = [m for m in matches if m.is_file() and m.suffix.lower() in extensions]
            found.extend(files or [path])
    unique: dict[str, Path | str] = {}
    for entry in found:
        unique.setdefault(entry if isinstance(entry, str) else os.path.abspath(entry), entry)
    return list(unique.values())


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def find_mask(image: Path, mask_dir: Path) -> Path:
    """The mask for one ``image`` in ``mask_dir``, or InvalidInputError naming the rules (module docstring).
    Lists the folder: for many images build one :class:`MaskIndex` instead."""
    return Path(MaskIndex.listed(os.fspath(mask_dir)).find(image))


def _no_mask(image_name: str, mask_dir: str | os.PathLike) -> InvalidInputError:
    stem = posixpath.splitext(image_name)[0]
    return InvalidInputError(
        f"no mask for '{image_name}' in '{mask_dir}' (expected {stem}.png or {stem}_mask.png)"
    )


class MaskIndex:
    """The masks of one mask folder or object-store prefix, found by the module docstring's rules from the
    names alone: built once from one listing, then each lookup is a few dictionary reads.

    The names are indexed by every prefix that ends before a dot (``a.b.png`` under ``a`` and ``a.b``), which
    is what rules 3 and 4's pattern ``{stem}{suffix}.*`` asks for."""

    def __init__(self, folder: str, names: Collection[str]):
        self.folder = folder
        self.names = frozenset(names)
        self._by_prefix: dict[str, list[str]] = {}
        for item in sorted(self.names):
            for i, char in enumerate(item):
                if char == ".":
                    self._by_prefix.setdefault(item[:i], []).append(item)

    @classmethod
    def listed(cls, location: str) -> MaskIndex:
        """One listing of folder or prefix ``location`` (the files directly in it; for a URL,
        :func:`erasekit.objstore.list_names`)."""
        if objstore.is_url(location):
            return cls(location, objstore.list_names(location))
        try:
            with os.scandir(location) as entries:
                return cls(location, [e.name for e in entries if e.is_file()])
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidInputError(f"mask folder '{location}' does not exist") from None

    def candidates(self, stem: str) -> list[str]:
        """The names present for ``stem``, in the rules' order."""
        extensions = image_extensions()
        ordered = [f"{stem}{suffix}.png" for suffix in MASK_SUFFIXES]
        for suffix in MASK_SUFFIXES:
            pattern = f"{glob.escape(stem + suffix)}.*"
            for other in self._by_prefix.get(stem + suffix, []):
                ext = posixpath.splitext(other)[1].lower()
                if fnmatch.fnmatchcase(other, pattern) and ext in extensions and ext != ".png":
                    ordered.append(other)
        return [n for n in ordered if n in self.names]

    def find(self, image: str | os.PathLike) -> str:
        """The path or URL of ``image``'s mask, or InvalidInputError naming the rules."""
        image_name = objstore.name(image)
        url = objstore.is_url(self.folder)
        for candidate in self.candidates(posixpath.splitext(image_name)[0]):
            location = objstore.join(self.folder, candidate) if url else os.path.join(self.folder, candidate)
            if candidate != image_name:
                return location
            same = (objstore.same_object(location, os.fspath(image)) if url
                    else _same_file(Path(location), Path(image)))
            if not same:
                return location  # the image itself never counts as its mask
        raise _no_mask(image_name, self.folder)


def clean_stale_temps(folder: Path) -> list[Path]:
    """Delete the temp files an interrupted atomic write left in ``folder``; returns what was removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        if path.is_file() and _TEMP_PATTERN.match(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def _output_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the output folder for the whole run (POSIX advisory lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: no fcntl; running two batches into one folder is then the user's business
        yield
        return
    handle = open(out_dir / LOCK_NAME, "a+")  # noqa: SIM115 (held for the duration of the context)
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidInputError(
                f"another erasekit batch is writing to '{out_dir}'; wait for it to finish"
            ) from None
        yield
    finally:
        handle.close()


# ------------------------------------------------------------------------------------------------------------
# Records and summary
# ------------------------------------------------------------------------------------------------------------
@dataclass
class BatchRecord:
    """One image's line in the report."""

    image: str
    status: str  # "ok" | "skipped" | "failed"
    output: str | None = None
    mask: str | None = None
    method: str | None = None
    chain: str | None = None  # the method and its refiners, "telea+poisson" (erasekit.chain)
    error: str | None = None  # exception class name
    exit_code: int | None = None  # what that error class maps to on the command line
    message: str | None = None
    unchanged: bool = False  # empty mask: the output is a copy of the input
    timings: dict[str, float] = field(default_factory=dict)
    run: str = ""
    finished_at: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass
class BatchSummary:
    records: list[BatchRecord]
    method: str
    out_dir: Path
    report_path: Path
    seconds: float
    stale_temps_removed: int = 0

    def by_status(self, status: str) -> list[BatchRecord]:
        return [r for r in self.records if r.status == status]

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(r.status for r in self.records)
        return {status: counts.get(status, 0) for status in ("ok", "skipped", "failed")}

    @property
    def exit_code(self) -> int:
        """0 if nothing failed; the shared error class's code if every image failed the same way; else 5."""
        failed = self.by_status("failed")
        if not failed:
            return 0
        if len(failed) == len(self.records) and len({r.error for r in failed}) == 1:
            return failed[0].exit_code or 1
        return PARTIAL_FAILURE_EXIT_CODE

    def tables(self):
        """Rich tables: the counts, then one row per failure."""
        from rich.table import Table

        done = self.by_status("ok")
        counts = Table(title=f"batch summary ({self.method}, {self.seconds:.1f} s)")
        for col in ("ok", "skipped", "failed", "mean s / image", "report"):
            counts.add_column(col)
        mean = sum(r.timings.get("total", 0.0) for r in done) / len(done) if done else 0.0
        c = self.counts
        counts.add_row(
            str(c["ok"]), str(c["skipped"]), str(c["failed"]), f"{mean:.2f}", str(self.report_path)
        )
        tables = [counts]
        failed = self.by_status("failed")
        if failed:
            failures = Table(title="failures")
            for col in ("image", "error", "message"):
                failures.add_column(col)
            for r in failed:
                failures.add_row(r.image, r.error or "", r.message or "")
            tables.append(failures)
        return tables


def read_report(path: str | os.PathLike) -> list[BatchRecord]:
    """Load a report; a last line cut short by a kill is ignored."""
    with warnings.catch_warnings():  # a torn last line is expected after a kill, not news
        warnings.simplefilter("ignore")
        return [BatchRecord(**record) for _, record in jsonl.read_lines(path)]


class _ReportWriter:
    """Appends one synced JSON line per record.

    So the report survives a kill up to the last finished image.
    """

    def __init__(self, path: Path):
        self.path = path
        self._stream = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, record: BatchRecord) -> None:
        jsonl.append_line(self._stream, record.to_json())

    def close(self) -> None:
        self._stream.close()


# ------------------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------------------
def _failure(record: BatchRecord, exc: BaseException) -> BatchRecord:
    record.status = "failed"
    record.error = type(exc).__name__
    record.exit_code = exc.exit_code if isinstance(exc, ErasekitError) else 1
    record.message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return record


def _process(
    remover,
    image: str,
    mask_dir: str,
    output: Path,
    request_args: dict[str, Any],
    resize_mask: bool,
    record: BatchRecord,
    in_place: bool = False,
    mask_url: str | None = None,
) -> BatchRecord:
    """One image: read, find its mask, remove, write. ``image`` is a path or a URL; ``mask_url`` is the mask
    (a path or URL) the driver chose from its one listing of ``mask_dir`` (None: there is none)."""
    t0 = time.perf_counter()
    loaded: io.LoadedImage
    if objstore.is_url(image):
        loaded = io.read_image(objstore.read_bytes(image, "image"))  # one GET, decoded from memory
    else:
        image_path = Path(image)
        if not in_place and output.resolve() == image_path.resolve():
            raise InvalidInputError(
                f"output '{output}' would overwrite the input; choose another output folder"
            )
        if not image_path.is_file():
            raise InvalidInputError(f"image '{image_path}' does not exist")
        loaded = io.read_image(image_path)
    if mask_url is None:
        raise _no_mask(objstore.name(image), mask_dir)
    record.mask = mask_url
    mask_source = objstore.read_bytes(mask_url, "mask") if objstore.is_url(mask_url) else Path(mask_url)
    mask, values = io.read_mask_pair(mask_source, shape=loaded.pixels.shape[:2], resize=resize_mask)
    # Only methods that condition on soft values (OSOR) get them; see RemovalRequest.soft_mask.
    soft = values if getattr(remover, "consumes_soft_mask", False) else None
    t1 = time.perf_counter()
    result = remover(RemovalRequest(image=loaded.pixels, mask=mask, soft_mask=soft, **request_args))
    t2 = time.perf_counter()
    io.write_image(output, result.image, like=loaded)
    t3 = time.perf_counter()
    record.status = "ok"
    record.method = result.method
    record.chain = result.metadata.get("chain")
    record.unchanged = result.unchanged
    record.timings = {"read": t1 - t0, "remove": t2 - t1, "write": t3 - t2, "total": t3 - t0}
    return record


EXECUTORS = ("local", "ray")


def run_batch(
    inputs: Sequence[str | os.PathLike],
    mask_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    method: str = "auto",
    dilate: int = 0,
    seed: int | None = None,
    hd_strategy: Any = None,
    options: dict[str, Any] | None = None,
    skip_existing: bool = True,
    resize_mask: bool = False,
    progress: bool = True,
    console=None,
    refine: Any = None,
    executor: str = "local",
    workers: int = 1,
    gpus_per_worker: float | None = None,
    in_place: bool = False,
) -> BatchSummary:
    """Remove the masked objects from every input image; see the module docstring for the rules.

    ``method`` may be a chain (``"telea+poisson"``, :mod:`erasekit.chain`); ``refine`` names further refiners
    every image gets, as in :func:`erasekit.remove`. Each record's ``chain`` says what ran.

    An output folder that holds input photos is refused (their results would replace them, and the report and
    lock file would land among them) unless ``in_place=True``; then those photos are always redone.

    The remover is loaded once. ``options`` are split as :func:`erasekit.remove` splits them: those the
    method's factory takes (``device``, ``model`` ...) load the model, the rest are per-call options
    (``steps`` ...), checked against the method's declaration before anything runs. Raises only for problems
    that stop the whole batch (no images at all, a missing mask folder, an unavailable method); everything
    that concerns one image is recorded in the report instead.

    ``executor="ray"`` runs the images on Ray Data with ``workers`` actors, one remover each (see
    :func:`_ray_records`); the lock, skip, report and atomic writes stay with this process, so resume works
    as for the local executor and the outputs are the same bytes.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .chain import parse_chain
    from .hd import HDStrategy
    from .refiners import parse_refine
    from .registry import get_method, load_remover, method_info, resolve_auto, split_options

    start = time.perf_counter()
    if executor not in EXECUTORS:
        raise InvalidInputError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if workers < 1:
        raise InvalidInputError(f"workers must be >= 1, got {workers}")
    if objstore.is_url(out_dir):
        raise InvalidInputError(
            f"the output folder must be a local or mounted folder, not '{out_dir}': resume relies on its "
            "lock file and atomic renames; write to a local or shared folder (or a bucket mounted with "
            "gcsfuse) and copy it up afterwards (docs/cluster.md)"
        )
    images = collect_sources(inputs)
    if not images:
        raise InvalidInputError("no images to process (give files, folders or glob patterns)")
    masks_dir = os.fspath(mask_dir)
    mask_index = MaskIndex.listed(masks_dir)  # one listing for the whole batch (a missing folder: exit 2)
    out = Path(out_dir)
    own = [p for p in images
           if isinstance(p, Path) and (out / p.name).exists() and _same_file(out / p.name, p)]
    if own and not in_place:
        raise InvalidInputError(
            f"output folder '{out}' holds {len(own)} of the input photos; choose another folder, or pass "
            "--in-place to replace them with their results"
        )
    strategy = (
        HDStrategy.parse(hd_strategy) if hd_strategy is not None else None
    )  # bad value: fail before work
    chain = parse_chain(method)
    refine_value = chain.refine(refine)
    refiners = parse_refine(refine_value)  # an unknown refiner fails the batch once, not every image
    name = resolve_auto() if chain.method == "auto" else chain.method
    # Per-call options are checked here, before the model loads: otherwise every image would fail alike.
    spec = get_method(name)
    load_opts, call_options = split_options(spec, dict(options or {}))
    request_args = {
        "seed": seed,
        "dilate": dilate,
        "hd_strategy": strategy,
        "refine": refiners,
        "options": call_options,
    }
    if executor == "local":
        remover = load_remover(name, **load_opts)  # once for the whole batch
    elif not method_info(spec).available and all(load_opts.get(k) is None for k in ("model", "weights")):
        load_remover(name, **load_opts)  # raises the usual MissingWeightsError before Ray starts

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"cannot create output folder '{out}': {exc.strerror or exc}") from None
    run_id = uuid.uuid4().hex[:12]
    console = console or Console(stderr=True)
    records: list[BatchRecord] = []
    with _output_lock(out):
        stale = clean_stale_temps(out)
        report = _ReportWriter(out / REPORT_NAME)
        claimed: dict[str, Path | str] = {}
        decided: list[BatchRecord | None] = []  # None: to process
        todo: list[BatchRecord] = []
        for image_path in images:
            output = out / objstore.name(image_path)
            record = BatchRecord(image=str(image_path), status="failed", output=str(output), run=run_id)
            first = claimed.setdefault(output.name, image_path)
            if first is not image_path:
                decided.append(_failure(record, InvalidInputError(
                    f"output name '{output.name}' is already taken by '{first}' in this batch")))
            elif (skip_existing and output.exists()
                  and not (in_place and isinstance(image_path, Path) and _same_file(output, image_path))):
                record.status = "skipped"
                record.message = "output exists"
                decided.append(record)
            else:
                decided.append(None)
                todo.append(record)
        # Masks: chosen here, from the one listing, for both executors alike.
        mask_urls = [_listed_mask(mask_index, r.image) for r in todo]
        done: Iterator[BatchRecord]
        if executor == "local":
            done = (_process_or_fail(remover, r, masks_dir, request_args, resize_mask, in_place, mask_urls[i])
                    for i, r in enumerate(todo))
        else:
            job = {"method": name, "load_options": load_opts, "options": call_options, "seed": seed,
                   "dilate": dilate, "hd_strategy": hd_strategy, "refine": refine_value,
                   "mask_dir": masks_dir, "resize_mask": resize_mask, "in_place": in_place}
            done = _ray_records(todo, job, workers=workers, gpus_per_worker=gpus_per_worker,
                                mask_urls=mask_urls)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        try:
            with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
                task = bar.add_task(f"erasing ({chain.with_method(name).name})", total=len(images))
                for ready in decided:
                    record = ready if ready is not None else next(done)
                    record.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
                    records.append(record)
                    report.write(record)
                    bar.advance(task)
        finally:
            report.close()
            if hasattr(done, "close"):
                done.close()  # a Ray run interrupted here releases its actors
    return BatchSummary(
        records=records,
        method=name,
        out_dir=out,
        report_path=out / REPORT_NAME,
        seconds=time.perf_counter() - start,
        stale_temps_removed=len(stale),
    )


def _listed_mask(index: MaskIndex, image: str) -> str | None:
    try:
        return index.find(image)
    except InvalidInputError:
        return None  # recorded as the missing mask when the image is processed, as for a folder


def _process_or_fail(remover, record: BatchRecord, mask_dir: str, request_args: dict[str, Any],
                     resize_mask: bool, in_place: bool = False, mask_url: str | None = None) -> BatchRecord:
    """One image as the local executor and every Ray actor run it: processed, or its failure recorded."""
    assert record.output is not None
    try:
        _process(remover, record.image, mask_dir, Path(record.output), request_args, resize_mask,
                 record, in_place=in_place, mask_url=mask_url)
    except Exception as exc:  # noqa: BLE001 (one image's failure never stops the batch)
        _failure(record, exc)
    return record


# ------------------------------------------------------------------------------------------------------------
# The Ray executor
# ------------------------------------------------------------------------------------------------------------
class RayBatchWorker:
    """A Ray Data actor: loads the remover once, then runs :func:`_process_or_fail` on each row."""

    def __init__(self, job: dict[str, Any]):
        from .hd import HDStrategy
        from .refiners import parse_refine
        from .registry import load_remover

        self.remover = load_remover(job["method"], **job["load_options"])
        self.mask_dir = str(job["mask_dir"])
        self.resize_mask = bool(job["resize_mask"])
        self.in_place = bool(job["in_place"])
        hd = job["hd_strategy"]
        self.request_args = {"seed": job["seed"], "dilate": job["dilate"],
                             "hd_strategy": HDStrategy.parse(hd) if hd is not None else None,
                             "refine": parse_refine(job["refine"]), "options": job["options"]}

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        done = [_process_or_fail(self.remover, BatchRecord(**json.loads(row)), self.mask_dir,
                                 self.request_args, self.resize_mask, self.in_place, mask or None).to_json()
                for row, mask in zip(batch["record"], batch["mask"], strict=True)]
        return {"record": np.array(done, dtype=object)}


def ray_gpus_per_worker(ray, method: str) -> float:
    """1 GPU per actor when the cluster has GPUs and the method is not a weight-free fill, else 0."""
    from .registry import get_method

    has_gpus = float(ray.cluster_resources().get("GPU", 0)) > 0
    return 1.0 if has_gpus and get_method(method).family != "classical" else 0.0


def _ray_records(todo: list[BatchRecord], job: dict[str, Any], *, workers: int,
                 gpus_per_worker: float | None, mask_urls: list[str | None] | None = None
                 ) -> Iterator[BatchRecord]:
    """The processed records, in input order, from a Ray Data ``map_batches`` over ``workers`` actors.

    Connects to the cluster this process is attached to (``ray.init(address=...)`` beforehand, or
    ``RAY_ADDRESS``), else starts a local instance and stops it afterwards. Outputs are written by the actors
    (atomic writes into the output folder, which must be shared storage on a cluster); records come back to
    this process, which writes the report. Rows carry only the record and the mask URL the driver chose (for
    a URL mask folder): each actor fetches its image and mask bytes itself."""
    if not todo:
        return
    with ray_session(workers) as ray:
        gpus = ray_gpus_per_worker(ray, job["method"]) if gpus_per_worker is None else gpus_per_worker
        masks = mask_urls if mask_urls is not None else [None] * len(todo)
        rows = [{"record": r.to_json(), "mask": m or ""} for r, m in zip(todo, masks, strict=True)]
        dataset = ray.data.from_items(rows).map_batches(
            RayBatchWorker,
            fn_constructor_kwargs={"job": job},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
            num_gpus=gpus,
        )
        for row in dataset.iter_rows():
            yield BatchRecord(**json.loads(row["record"]))


@contextlib.contextmanager
def ray_session(workers: int) -> Iterator[Any]:
    """The ``ray`` module, connected: to the cluster this process is attached to (``ray.init`` beforehand, or
    ``RAY_ADDRESS``), else to a local instance started here and stopped on exit. Ray Data returns rows in
    input order and shows no progress bars of its own."""
    try:
        import ray
    except ImportError:
        raise InvalidInputError("the ray executor needs Ray: pip install 'erasekit[cluster]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if os.environ.get("RAY_ADDRESS"):
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        yield ray
    finally:
        if started_here:  # a cluster the caller connected to stays up; a local one we started does not
            ray.shutdown()


__all__ = [
    "EXECUTORS",
    "LOCK_NAME",
    "PARTIAL_FAILURE_EXIT_CODE",
    "REPORT_NAME",
    "BatchRecord",
    "BatchSummary",
    "MaskIndex",
    "RayBatchWorker",
    "clean_stale_temps",
    "collect_images",
    "collect_sources",
    "find_mask",
    "image_extensions",
    "ray_session",
    "read_report",
    "run_batch",
]

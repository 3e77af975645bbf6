"""The benchmark runner: methods × mask settings over a dataset, cached outputs, latency, memory, metrics.

Layout of a results folder::

    RESULTS/outputs/<method>/<object|effect>/<id>.png   the method's output (plus <id>_alpha.png, <id>.json)
    RESULTS/per_image.csv                               one row per (method, mask, image): timings, memory,
                                                        metrics
    RESULTS/summary.json                                config, dataset, metric settings + weights,
                                                        unavailable metrics/methods with reasons, aggregated
                                                        values
    RESULTS/table.md                                    the OSOR Table 1 layout (methods × metrics per mask)
    RESULTS/dataset/                                    a dataset given as a URL (s3://...): its local copy

Resumable: an output is reused when its sidecar JSON carries the same cache key — a hash of the method name,
its load and call options, the seed, the mask setting, the fingerprint of the method's weights and the exact
input pixels and mask (for a method that conditions on soft masks, OSOR, also the mask's soft values when the
dataset has any: :class:`~erasekit.eval.datasets.EvalRecord`). Per-image metric values are cached in the same
sidecar, per (output, metric): keyed by the output, target and mask pixels and the metric's name, weights
fingerprint and settings, so a warm rerun recomputes only set-level statistics (FID, CMMD ...) and metrics
whose settings changed.

Latency is measured per image with ``time.perf_counter`` around the remover call, after ``warmup`` untimed
calls on the first image; peak memory per call is the process RSS peak (sampled every 2 ms), the tracemalloc
peak of Python allocations (numpy included) and, on CUDA, ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import threading
import time
import tracemalloc
from dataclasses import asdict, dataclass, field, replace
from io import StringIO
from pathlib import Path
from typing import Any, Self

import numpy as np

from .. import io, objstore
from ..atomic import write_text
from ..convert import uint8_to_mask
from ..types import ErasekitError, InvalidInputError
from .datasets import EvalDataset, EvalRecord, open_dataset
from .entries import BenchEntry
from .metrics import Metric, Sample
from .suite import LOWER_IS_BETTER, MetricFactory, build_suite, parse_metrics
from .weights import fingerprint

# What each method run records beside its metrics, in per_image.csv column order.
RUN_COLUMNS = ("latency_s", "peak_rss_mb", "rss_increase_mb", "peak_python_mb", "peak_cuda_mb", "cached")

MASK_MODES = {"object": ("object",), "effect": ("effect",), "both": ("object", "effect")}


@dataclass
class BenchConfig:
    dataset: str
    out: str
    methods: list[str]
    mask: str = "both"
    metrics: list[str] = field(default_factory=lambda: ["psnr", "ssim", "lpips", "fid", "cmmd", "cfd"])
    layout: str = "auto"
    seed: int = 0
    warmup: int = 1
    limit: int | None = None
    device: str = "cpu"
    load_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method
    call_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method
    weights: dict[str, str] = field(default_factory=dict)  # metric weight key -> path
    cfd_reference_quirks: bool = False
    clip_classes: list[str] | None = None
    trace_python_memory: bool = True
    progress: bool = True
    executor: str = "local"  # or "ray": outputs computed on Ray Data actors (erasekit.eval.ray_bench)
    workers: int = 1  # Ray actors
    # Row name (an entry of ``methods``) -> what it runs; a name not here is a method or a chain
    # ("telea+poisson", erasekit.chain) and runs as BenchEntry.from_chain reads it.
    entries: dict[str, BenchEntry] = field(default_factory=dict)

    def mask_modes(self) -> tuple[str, ...]:
        if self.mask not in MASK_MODES:
            raise InvalidInputError(f"--mask must be object, effect or both, got {self.mask!r}")
        return MASK_MODES[self.mask]


# ------------------------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------------------------
def _rss_bytes() -> int:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss


class PeakMemory:
    """Peak RSS (sampling thread), tracemalloc peak and CUDA peak during a ``with`` block, in MiB."""

    def __init__(self, trace_python: bool = True):
        self.trace_python = trace_python
        self.result: dict[str, float | None] = {}

    def __enter__(self) -> Self:
        self._stop = threading.Event()
        self._peak = _rss_bytes()
        self._base = self._peak

        def sample():
            while not self._stop.wait(0.002):
                self._peak = max(self._peak, _rss_bytes())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        if self.trace_python:
            tracemalloc.start()
        self._cuda = self._cuda_available()
        if self._cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        return self

    @staticmethod
    def _cuda_available() -> bool:
        import sys

        torch = sys.modules.get("torch")  # never import torch just to ask
        return bool(torch is not None and torch.cuda.is_available())

    def __exit__(self, *exc) -> None:
        py_peak = None
        if self.trace_python:
            py_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        mib = 1024.0**2
        cuda = None
        if self._cuda:
            import torch

            cuda = torch.cuda.max_memory_allocated() / mib
        self.result = {
            "peak_rss_mb": self._peak / mib,
            "rss_increase_mb": (self._peak - self._base) / mib,
            "peak_python_mb": None if py_peak is None else py_peak / mib,
            "peak_cuda_mb": cuda,
        }


# ------------------------------------------------------------------------------------------------------------
# Methods and their cache keys
# ------------------------------------------------------------------------------------------------------------
def method_weights_fingerprint(name: str, load_options: dict[str, Any]) -> str:
    """Fingerprint of what the method loads: an explicit model/weights path if given, else each registered
    weight requirement's resolved location (a description for in-process libraries)."""
    from ..registry import get_method, method_info

    parts = []
    for key in ("model", "weights"):
        value = load_options.get(key)
        if value is not None:
            parts.append(fingerprint(value) if Path(str(value)).exists() else str(value))
    if not parts:
        for status in method_info(get_method(name)).weights:
            loc = status.location
            parts.append(fingerprint(loc) if loc and Path(loc).exists() else f"{status.name}:{loc}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _array_digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def cache_key(
    method: str,
    load_options: dict,
    call_options: dict,
    seed: int,
    mode: str,
    weights_fp: str,
    record: EvalRecord,
    *,
    soft: bool = False,
) -> str:
    """``soft``: the method conditions on soft masks (``consumes_soft_mask``); then the record's soft values,
    when it has any, are part of the input. Other methods' keys never depend on them."""
    arrays = [record.image, record.mask(mode)]
    soft_mask = record.soft_mask(mode) if soft else None
    if soft_mask is not None:
        arrays.append(soft_mask)
    payload = json.dumps(
        {
            "method": method,
            "load": load_options,
            "call": call_options,
            "seed": seed,
            "mask": mode,
            "weights": weights_fp,
            "input": _array_digest(*arrays),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class RunOutput:
    image: np.ndarray
    alpha: np.ndarray | None
    info: dict[str, Any]


def _output_paths(out: Path, method: str, mode: str, sample_id: str) -> tuple[Path, Path, Path]:
    # A chain's refiner options may hold ':' and '/' (pixperfect:weights=/w): not in a folder name.
    folder = out / "outputs" / re.sub(r"[^A-Za-z0-9_.+-]", "_", method) / mode
    return folder / f"{sample_id}.png", folder / f"{sample_id}_alpha.png", folder / f"{sample_id}.json"


def _load_cached(paths, key: str) -> RunOutput | None:
    image_path, alpha_path, meta_path = paths
    if not (meta_path.is_file() and image_path.is_file()):
        return None
    try:
        info = json.loads(meta_path.read_text())
    except ValueError:
        return None
    if info.get("key") != key:
        return None
    image = io.read_image(image_path).pixels
    alpha = None
    if alpha_path.is_file():  # read the 8-bit PNG directly: io.read_mask binarises, alphas are soft
        from PIL import Image

        with Image.open(alpha_path) as im:
            alpha = uint8_to_mask(np.asarray(im.convert("L")))
    return RunOutput(image, alpha, {**info, "cached": True})


def _per_image_only(metric: Metric) -> bool:
    """A metric whose whole result is its per-image values (no set-level ``compute``): those values can be
    cached per output. Set metrics (FID, CMMD ...) accumulate features and always see every sample."""
    return type(metric).compute is Metric.compute


def metric_key(name: str, metric: Metric, sample: Sample) -> str:
    """What one metric's value on one output depends on: the metric (name, weights, settings), the pixels."""
    arrays = [sample.output, sample.mask] + ([sample.target] if sample.target is not None else [])
    payload = json.dumps({"metric": name, "weights": metric.fingerprint, "settings": metric.settings(),
                          "pixels": _array_digest(*arrays)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _save_metric_values(meta_path: Path, info: dict[str, Any], cached: dict[str, Any]) -> None:
    """The output's sidecar with its per-image metric values (atomic, like the output itself)."""
    kept = {k: v for k, v in info.items() if k != "cached"}
    data = json.dumps({**kept, "metrics": cached}, indent=1).encode()
    io._atomic_write(meta_path, lambda stream: stream.write(data))


def _run_one(
    remover, record: EvalRecord, mode: str, cfg: BenchConfig, call_options: dict, entry: BenchEntry
) -> RunOutput:
    # Only methods that condition on soft values (OSOR) get the mask file's soft values; every other method
    # gets exactly the binary mask (see RemovalRequest.soft_mask).
    soft = record.soft_mask(mode) if getattr(remover, "consumes_soft_mask", False) else None
    request = entry.request(record, record.mask(mode), cfg.seed, dict(call_options), soft_mask=soft)
    with PeakMemory(cfg.trace_python_memory) as mem:
        t0 = time.perf_counter()
        result = remover(request)
        latency = time.perf_counter() - t0
    return RunOutput(result.image, result.alpha, {"latency_s": latency, **mem.result, "cached": False})


def _save(paths, run: RunOutput, key: str) -> None:
    image_path, alpha_path, meta_path = paths
    image_path.parent.mkdir(parents=True, exist_ok=True)
    io.write_image(image_path, run.image)
    if run.alpha is not None:
        io.write_mask(alpha_path, run.alpha)
    sidecar = json.dumps({**{k: v for k, v in run.info.items() if k != "cached"}, "key": key}, indent=1)
    write_text(meta_path, sidecar)  # the sidecar is written last: its presence marks a complete output


# ------------------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------------------
@dataclass
class BenchResult:
    out: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def _mean(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(finite)) if finite else None


def run_benchmark(cfg: BenchConfig, *, networks: dict | None = None) -> BenchResult:
    """Run every method on every record under each mask setting, then score the outputs.

    ``networks``: preloaded metric networks by weight key (tests pass tiny ones).
    """

    from ..registry import check_call, get_method, load_remover

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    modes = cfg.mask_modes()
    metric_names = parse_metrics(cfg.metrics)
    if not cfg.methods:
        raise InvalidInputError("no methods given")
    if cfg.executor not in ("local", "ray") or cfg.workers < 1:
        raise InvalidInputError(f"executor must be local or ray with workers >= 1, got {cfg.executor!r}, "
                                f"{cfg.workers}")
    if objstore.is_url(cfg.dataset):  # the readers are path-based: copy it once (erasekit.objstore.mirror)
        cfg = replace(cfg, dataset=str(objstore.mirror(cfg.dataset, out / "dataset")))
    dataset: EvalDataset = open_dataset(cfg.dataset, cfg.layout).subset(cfg.limit)
    if len(dataset) == 0:
        raise InvalidInputError(f"dataset '{cfg.dataset}' has no samples")
    classes = cfg.clip_classes
    if "clip" in metric_names and not classes:
        labels = sorted({r.label for r in dataset if r.label})
        classes = labels or None
    suite = build_suite(
        metric_names,
        weights=cfg.weights,
        device=cfg.device,
        networks=networks,
        cfd_reference_quirks=cfg.cfd_reference_quirks,
        clip_classes=classes,
    )

    from ..refiners import get_refiner

    for name in cfg.methods:  # a typo is bad input (exit 2), not an "unavailable" row
        chain = (cfg.entries.get(name) or BenchEntry.from_chain(name)).chain()
        get_method(chain.method)
        for refiner in chain.refiners:
            get_refiner(refiner.split(":", 1)[0].strip())  # NAME[:KEY=VALUE...]
    rows: list[dict[str, Any]] = []
    runs: dict[str, dict[str, Any]] = {}
    methods_unavailable: dict[str, str] = {}

    for item in cfg.methods:  # one row each: a method, a chain ("telea+poisson") or a preset's entry
        entry = cfg.entries.get(item) or BenchEntry.from_chain(item)
        chain = entry.chain()
        row_name = item if item in cfg.entries else chain.name
        method = entry.method
        load_opts = dict(cfg.load_options.get(item, cfg.load_options.get(method, {})))
        call_opts = dict(cfg.call_options.get(item, cfg.call_options.get(method, {})))
        try:
            remover = load_remover(method, **load_opts)
            weights_fp = method_weights_fingerprint(method, load_opts)
            if item in cfg.entries:  # method and chain rows keep the cache keys they always had
                weights_fp += json.dumps(entry.key(), sort_keys=True)
        except ErasekitError as exc:
            methods_unavailable[row_name] = str(exc)
            continue
        # Checked once, not per sample; typed values also make the cache key canonical ("2" and 2 alike).
        call_opts = check_call(get_method(method), call_opts)
        soft = bool(getattr(remover, "consumes_soft_mask", False))  # its cache key covers soft values
        warmed = False
        fresh: set[str] = set()  # keys computed on Ray in this run
        if cfg.executor == "ray":
            from .ray_bench import fill_on_ray

            wanted = [(i, m, cache_key(row_name, load_opts, call_opts, cfg.seed, m, weights_fp, dataset[i],
                                       soft=soft))
                      for m in modes for i in dataset.ids]
            missing = [(i, m, k) for i, m, k in wanted
                       if _load_cached(_output_paths(out, row_name, m, i), k) is None]
            fresh = fill_on_ray(cfg, row_name, entry, load_opts, call_opts, missing)
        for mode in modes:
            metrics = {name: f.make() for name, f in suite.items() if f.make is not None}
            run_rows = []
            for sample_id in _progress(dataset.ids, len(dataset), f"{method}/{mode}", cfg.progress):
                record = dataset[sample_id]
                key = cache_key(row_name, load_opts, call_opts, cfg.seed, mode, weights_fp, record, soft=soft)
                paths = _output_paths(out, row_name, mode, sample_id)
                run = _load_cached(paths, key)
                if run is not None and key in fresh:
                    run.info["cached"] = False
                if run is None:
                    if not warmed:
                        for _ in range(cfg.warmup):  # untimed: first-call costs (lazy init, kernels) excluded
                            _run_one(remover, record, mode, cfg, call_opts, entry)
                        warmed = True
                    run = _run_one(remover, record, mode, cfg, call_opts, entry)
                    _save(paths, run, key)
                row: dict[str, Any] = {
                    "method": row_name,
                    "mask": mode,
                    "id": sample_id,
                    **{k: run.info.get(k) for k in RUN_COLUMNS},
                }
                sample = Sample(
                    sample_id, run.image, record.background, record.mask(mode), record.image, record.label
                )
                stored = run.info.get("metrics") or {}
                computed: dict[str, Any] = {}
                for name, metric in metrics.items():
                    if suite[name].needs_target and record.background is None:
                        continue
                    if not _per_image_only(metric):
                        row.update(metric.update(sample))
                        continue
                    mkey = metric_key(name, metric, sample)
                    hit = stored.get(name)
                    per_image = hit["values"] if isinstance(hit, dict) and hit.get("key") == mkey else None
                    if per_image is None:
                        per_image = metric.update(sample)
                    computed[name] = {"key": mkey, "values": per_image}
                    row.update(per_image)
                if computed != stored:
                    _save_metric_values(paths[2], {**run.info, "key": key}, computed)
                run_rows.append(row)
            values: dict[str, float | None] = {}
            per_image_cols = {c for r in run_rows for c in r} - {"method", "mask", "id", "cached"}
            for col in sorted(per_image_cols):
                values[col] = _mean([r.get(col) for r in run_rows])
            for name, metric in metrics.items():
                values.update(
                    {k: (None if v is None or math.isnan(v) else v) for k, v in metric.compute().items()}
                )
            for factory in suite.values():  # unavailable metrics stay visible as missing values
                for col in factory.columns:
                    values.setdefault(col, None)
            runs[f"{row_name}/{mode}"] = {
                "method": row_name,
                "chain": {"method": method, "refiners": list(chain.refiners)},
                "mask": mode,
                "n": len(run_rows),
                "values": values,
                "cached": sum(bool(r["cached"]) for r in run_rows),
            }
            rows += run_rows

    summary = {
        "config": {k: v for k, v in asdict(cfg).items() if k != "progress"},
        "dataset": {"path": str(dataset.root), "layout": dataset.name, "n": len(dataset)},
        "metrics": {
            n: {
                "columns": list(f.columns),
                "available": f.unavailable is None,
                "unavailable": f.unavailable,
                "settings": f.settings,
                "weights": f.weights,
                "lower_is_better": n in LOWER_IS_BETTER,
            }
            for n, f in suite.items()
        },
        "methods_unavailable": methods_unavailable,
        "runs": runs,
        "conventions": {
            "pixels": "RGB, data range 255",
            "latency": f"seconds per image, {cfg.warmup} warm-up call(s) excluded",
            "memory": "MiB; RSS peak sampled every 2 ms, tracemalloc peak, CUDA peak",
        },
    }
    write_results(out, rows, summary, suite)
    return BenchResult(out, rows, summary)


# ------------------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------------------
def _fmt(v: Any, col: str) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return f"{v:.4f}" if col not in ("psnr", "psnr_mask", "fid", "local_fid") else f"{v:.3f}"
    return str(v)


def table_markdown(summary: dict[str, Any], columns: list[str]) -> str:
    """OSOR Table 1 layout: one row per method, latency, then the metric columns once per mask setting."""
    modes = list(dict.fromkeys(r["mask"] for r in summary["runs"].values()))
    methods = list(dict.fromkeys(r["method"] for r in summary["runs"].values()))
    arrow = {c: "↓" if c.replace("_mask", "") in LOWER_IS_BETTER else "↑" for c in columns}
    label = {"object": "object mask", "effect": "object-effect mask"}
    head = ["Method", "Latency (s)"] + [
        f"{c.upper()}{arrow[c]} ({label.get(m, m)})" for m in modes for c in columns
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in methods:
        lat = _mean(
            [
                summary["runs"][f"{method}/{m}"]["values"].get("latency_s")
                for m in modes
                if f"{method}/{m}" in summary["runs"]
            ]
        )
        cells = [method, _fmt(lat, "latency")]
        for m in modes:
            vals = summary["runs"].get(f"{method}/{m}", {}).get("values", {})
            cells += [_fmt(vals.get(c), c) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"- {n}: unavailable — {m['unavailable']}" for n, m in summary["metrics"].items() if m["unavailable"]
    ]
    notes += [f"- method {n}: unavailable — {r}" for n, r in summary["methods_unavailable"].items()]
    fid = (
        summary["metrics"].get("fid") or summary["metrics"].get("kid") or summary["metrics"].get("local_fid")
    )
    if fid and fid["available"]:
        s = fid["settings"]
        notes.append(
            f"- FID features: {s.get('network')}; resize: {s.get('resize')}; antialias: {s.get('antialias')}"
        )
    notes.append(
        f"- n = {summary['dataset']['n']} images ({summary['dataset']['layout']}); pixel metrics on RGB "
        "with data range 255; latency excludes warm-up"
    )
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def write_results(out: Path, rows: list[dict], summary: dict, suite: dict[str, MetricFactory]) -> None:
    columns = [c for f in suite.values() for c in f.columns]
    fieldnames = ["method", "mask", "id", *RUN_COLUMNS] + [c for c in columns if any(c in r for r in rows)]
    table = StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=fieldnames, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fieldnames})
    write_text(out / "per_image.csv", table.getvalue())
    # Python's json writes inf (PSNR of identical images) as Infinity, which json.loads reads back.
    write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    write_text(out / "table.md", table_markdown(summary, columns))

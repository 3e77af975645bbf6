"""Running SAVP over a triplet manifest: executors, the decision log, resumption and the Table 7 statistics.

Input: a JSONL manifest, one triplet per line::

    {"id": "t0001", "original": "imgs/a.png", "edited": "imgs/a_edit.png", "instruction": "Add a red mug"}

(paths relative to the manifest's folder; ``id`` defaults to the line number; other keys are kept — ``truth``
is read by the ``oracle-truth`` stand-ins). Output, in the dataset folder:

* the paired dataset (:mod:`erasekit.data.paired`) with the accepted samples,
* ``savp_decisions.jsonl``: one line per processed triplet (accepted, or the rejection stage and reason, plus
the
  numbers that decided it),
* ``savp_stats.json``: the Table 7-style statistics over the whole decision log,
* ``debug/<id>.png`` sheets with ``debug_sheets=True``.

Resumable and idempotent: triplets already in the decision log are skipped, so an interrupted run continues
and a finished one changes nothing. Only the driver process writes files (except debug sheets, one file per
sample, written atomically by the workers), so appends never interleave.

Executors: ``local`` runs in-process for one worker and in a process pool otherwise; ``ray`` maps a Ray Data
dataset over the manifest with one model-holding actor per worker (``concurrency``), for clusters.
"""

from __future__ import annotations

import io as _bytes_io
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import io, jsonl
from ..atomic import write_text
from ..masks import Box
from ..types import InvalidInputError
from .paired import PairedDatasetWriter, check_id
from .savp import REASONS, SAVP, SAVPConfig, SAVPResult, instruction_kind
from .savp_models import (
    DEFAULT_DETECTOR,
    DEFAULT_SEGMENTER,
    Detector,
    GrabCutSegmenter,
    GroundingDinoDetector,
    OracleDetector,
    OracleSegmenter,
    SamSegmenter,
    Segmenter,
)

DECISIONS_NAME = "savp_decisions.jsonl"
STATS_NAME = "savp_stats.json"
ORACLE = "oracle-truth"


# ---- triplets ----------------------------------------------------------------------------------------------
@dataclass
class Triplet:
    id: str
    original: str      # absolute paths
    edited: str
    instruction: str
    truth: dict[str, Any] | None = None


def read_triplets(manifest: str | os.PathLike) -> list[Triplet]:
    path = Path(manifest)
    if not path.is_file():
        raise InvalidInputError(f"triplet manifest '{path}' not found")
    base = path.parent
    out: list[Triplet] = []
    seen: set[str] = set()
    for number, raw in jsonl.read_lines(path):
        where = f"{path.name} line {number}"
        missing = [k for k in ("original", "edited", "instruction") if not isinstance(raw.get(k), str)]
        if missing:
            raise InvalidInputError(f"{where}: missing or non-string field(s) {', '.join(missing)}")
        sample_id = check_id(str(raw.get("id", f"t{number:07d}")))
        if sample_id in seen:
            raise InvalidInputError(f"{where}: duplicate id {sample_id!r}")
        seen.add(sample_id)
        files = {}
        for key in ("original", "edited"):
            file = Path(raw[key]) if Path(raw[key]).is_absolute() else base / raw[key]
            if not file.is_file():
                raise InvalidInputError(f"{where}: {key} image '{raw[key]}' not found")
            files[key] = str(file)
        truth = raw.get("truth")
        if isinstance(truth, dict):
            truth = {k: (str(base / v) if k.endswith("_mask") else v) for k, v in truth.items()}
        out.append(Triplet(sample_id, files["original"], files["edited"], raw["instruction"], truth))
    return out


# ---- models per worker -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """What each worker loads.

    ``detector``: a GroundingDINO folder / cached Hub id, or ``oracle-truth`` (boxes from each triplet's
    ``truth.object_box``: a stand-in for tests and the synthetic benchmark, not detection).
    ``segmenter``: a SAM2/SAM folder / cached Hub id, ``grabcut`` (OpenCV), or ``oracle-truth`` (the truth
    mask).
    """

    detector: str = DEFAULT_DETECTOR
    segmenter: str = DEFAULT_SEGMENTER
    device: str | None = None


class _Models:
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self._detector: GroundingDinoDetector | None = None
        self._segmenter: SamSegmenter | None = None

    def detector(self, triplet: Triplet) -> Detector:
        if self.spec.detector == ORACLE:
            box = (triplet.truth or {}).get("object_box")
            if box is None:
                raise InvalidInputError(
                    f"triplet {triplet.id!r}: the oracle-truth detector needs truth.object_box"
                )
            return OracleDetector([Box(*map(int, box))])
        if self._detector is None:
            self._detector = GroundingDinoDetector(self.spec.detector, device=self.spec.device)
        return self._detector

    def segmenter(self, triplet: Triplet) -> Segmenter:
        if self.spec.segmenter == ORACLE:
            path = (triplet.truth or {}).get("object_mask")
            if path is None:
                raise InvalidInputError(
                    f"triplet {triplet.id!r}: the oracle-truth segmenter needs truth.object_mask"
                )
            return OracleSegmenter(io.read_mask(path))
        if self.spec.segmenter == "grabcut":
            return GrabCutSegmenter()
        if self._segmenter is None:
            self._segmenter = SamSegmenter(self.spec.segmenter, device=self.spec.device)
        return self._segmenter


@dataclass
class Outcome:
    id: str
    decision: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # shot, gt, object_mask, effect_mask when accepted
    meta: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        buffer = _bytes_io.BytesIO()
        # Numeric arrays only (from_row's np.load refuses pickles as well).
        np.savez_compressed(buffer, allow_pickle=False, **self.arrays)
        return {
            "id": self.id,
            "json": json.dumps({"decision": self.decision, "meta": self.meta}),
            "arrays": buffer.getvalue(),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Outcome:
        payload = json.loads(row["json"])
        with np.load(_bytes_io.BytesIO(row["arrays"])) as data:
            arrays = {k: data[k] for k in data.files}
        return cls(str(row["id"]), payload["decision"], arrays, payload["meta"])


class SAVPWorker:
    """Processes one triplet at a time; holds the loaded models for its process (or Ray actor)."""

    def __init__(self, spec: ModelSpec, config: SAVPConfig, debug_dir: str | None = None):
        self.models = _Models(spec)
        self.config = config
        self.debug_dir = Path(debug_dir) if debug_dir else None

    def __call__(self, triplet: Triplet) -> Outcome:
        meta: dict[str, Any] = {"source": "savp", "instruction": triplet.instruction}
        try:
            original = io.read_image(triplet.original).pixels
            edited = io.read_image(triplet.edited).pixels
        except InvalidInputError as exc:
            return Outcome(
                triplet.id,
                {
                    "accepted": False,
                    "stage": "input",
                    "reason": "unreadable_image",
                    "kind": instruction_kind(triplet.instruction),
                    "phase2": False,
                    "error": str(exc),
                },
                meta=meta,
            )
        pipeline = SAVP(self.models.detector(triplet), self.models.segmenter(triplet), self.config)
        result = pipeline(original, edited, triplet.instruction)
        if self.debug_dir is not None:
            from .savp_debug import debug_sheet

            io.write_image(
                self.debug_dir / f"{triplet.id}.png", debug_sheet(result, original, edited, title=triplet.id)
            )
        arrays: dict[str, np.ndarray] = {}
        if result.accepted:
            # An accepted result went through both algorithms, which set all of these.
            assert (
                result.shot is not None
                and result.gt is not None
                and result.object_mask is not None
                and result.effect_mask is not None
                and result.effect_ratio is not None
            )
            arrays = {
                "shot": result.shot,
                "gt": result.gt,
                "object_mask": result.object_mask.astype(np.uint8),
                "effect_mask": result.effect_mask.astype(np.uint8),
            }
            meta.update(kind=result.kind, effect_ratio=round(float(result.effect_ratio), 4))
        return Outcome(triplet.id, _jsonable(result), arrays, meta)


def _jsonable(result: SAVPResult) -> dict[str, Any]:
    decision = result.decision()
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in decision.items()}


# ---- executors ---------------------------------------------------------------------------------------------
_WORKER: SAVPWorker | None = None


def _init_process(spec: ModelSpec, config: SAVPConfig, debug_dir: str | None) -> None:
    global _WORKER
    import sys

    import cv2

    # One process per core: library thread pools inside each would oversubscribe the machine.
    cv2.setNumThreads(1)
    if "torch" in sys.modules:  # importing torch just to configure it would cost seconds per worker
        sys.modules["torch"].set_num_threads(1)
    _WORKER = SAVPWorker(spec, config, debug_dir)


def _process(triplet: Triplet) -> Outcome:
    assert _WORKER is not None
    return _WORKER(triplet)


def run_local(
    triplets: list[Triplet],
    spec: ModelSpec,
    config: SAVPConfig,
    *,
    workers: int = 1,
    debug_dir: str | None = None,
) -> Iterator[Outcome]:
    """In-process for one worker, a process pool otherwise. Results come back in manifest order."""
    if workers <= 1:
        worker = SAVPWorker(spec, config, debug_dir)
        for triplet in triplets:
            yield worker(triplet)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # Plain fork is unsafe once the driver has run torch/OpenMP (a forked child can inherit a held lock and
    # hang); forkserver forks from a clean server that has imported this module once, so workers still start
    # fast.
    context: mp.context.BaseContext
    if "forkserver" in mp.get_all_start_methods():
        context = mp.get_context("forkserver")
        context.set_forkserver_preload([__name__])
    else:
        context = mp.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_process, initargs=(spec, config, debug_dir)
    ) as pool:
        yield from pool.map(_process, triplets, chunksize=max(1, min(8, len(triplets) // (workers * 4) or 1)))


class _RayActor:
    """Ray Data callable class: one per actor, models loaded once."""

    def __init__(self, spec: dict, config: dict, debug_dir: str | None):
        self.worker = SAVPWorker(ModelSpec(**spec), SAVPConfig(**config), debug_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [self.worker(Triplet(**json.loads(p))).to_row() for p in batch["payload"]]
        return {
            "id": np.array([r["id"] for r in rows], dtype=object),
            "json": np.array([r["json"] for r in rows], dtype=object),
            "arrays": np.array([r["arrays"] for r in rows], dtype=object),
        }


def run_ray(
    triplets: list[Triplet],
    spec: ModelSpec,
    config: SAVPConfig,
    *,
    workers: int = 1,
    debug_dir: str | None = None,
) -> Iterator[Outcome]:
    """Ray Data over the manifest: ``map_batches`` with ``workers`` actors. Uses a running Ray cluster if this
    process is connected to one (``ray.init(address=...)`` beforehand), else starts a local one."""
    try:
        import ray
    except ImportError:
        raise InvalidInputError("the ray executor needs Ray: pip install 'erasekit[cluster]'") from None
    if not triplets:
        return
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
    try:
        yield from _ray_outcomes(ray, triplets, spec, config, workers, debug_dir)
    finally:
        if started_here:  # a cluster the caller connected to stays up; a local one we started does not
            ray.shutdown()


def _ray_outcomes(
    ray, triplets: list[Triplet], spec: ModelSpec, config: SAVPConfig, workers: int, debug_dir: str | None
) -> Iterator[Outcome]:
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    payloads = [{"payload": json.dumps(asdict(t))} for t in triplets]
    dataset = ray.data.from_items(payloads).map_batches(
        _RayActor,
        fn_constructor_kwargs={"spec": asdict(spec), "config": asdict(config), "debug_dir": debug_dir},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=max(1, workers)),  # `concurrency=` is deprecated in Ray 2.60
        num_cpus=1,
    )
    for row in dataset.iter_rows():
        yield Outcome.from_row(row)


EXECUTORS = {"local": run_local, "ray": run_ray}


# ---- decision log and statistics ---------------------------------------------------------------------------
def _read_decisions(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    jsonl.repair_torn_tail(path)  # an interrupted append: drop it
    return {record["id"]: record for _, record in jsonl.read_lines(path)}


@dataclass
class SAVPStats:
    """Counts behind the Table 7-style table."""

    source: int = 0
    add: int = 0
    remove: int = 0
    retained: int = 0
    phase2: int = 0
    rejections: dict[str, int] = field(default_factory=dict)  # "stage: reason" -> count

    @classmethod
    def from_decisions(cls, decisions: Iterable[dict[str, Any]]) -> SAVPStats:
        stats = cls()
        reasons: Counter[str] = Counter()
        for d in decisions:
            stats.source += 1
            stats.add += d.get("kind") == "add"
            stats.remove += d.get("kind") == "remove"
            if d.get("accepted"):
                stats.retained += 1
                stats.phase2 += bool(d.get("phase2"))
            else:
                reasons[f"{d.get('stage')}: {d.get('reason')}"] += 1
        stats.rejections = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
        return stats

    def rows(self) -> list[tuple[str, int, str]]:
        def pct(n: int, d: int, of: str = "") -> str:
            return f"{100.0 * n / d:.2f}%{of}" if d else "—"

        rows = [("Source samples", self.source, ""),
                ("Add-object samples", self.add, pct(self.add, self.source)),
                ("Remove-object samples", self.remove, pct(self.remove, self.source)),
                ("Add/remove total", self.add + self.remove, pct(self.add + self.remove, self.source)),
                ("Retained (paired dataset)", self.retained, pct(self.retained, self.source, " of source")),
                ("Phase II subset", self.phase2, pct(self.phase2, self.retained, " of retained"))]
        rows += [
            (f"Rejected — {k}", v, pct(v, self.source, " of source")) for k, v in self.rejections.items()
        ]
        return rows

    def table(self):
        from rich.table import Table

        table = Table(title="SAVP statistics (OSOR arXiv:2606.28094 Table 7 layout)")
        table.add_column("Statistic")
        table.add_column("Count", justify="right")
        table.add_column("Ratio", justify="right")
        for name, count, ratio in self.rows():
            table.add_row(name, f"{count:,}", ratio)
        return table


def run_savp(
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    spec: ModelSpec | None = None,
    config: SAVPConfig | None = None,
    executor: str = "local",
    workers: int = 1,
    debug_sheets: bool = False,
    progress: bool = True,
) -> SAVPStats:
    """Process every triplet not yet in the decision log; return statistics over the whole log."""
    if executor not in EXECUTORS:
        raise InvalidInputError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if workers < 1:
        raise InvalidInputError(f"workers must be >= 1, got {workers}")
    spec = spec or ModelSpec()
    config = config or SAVPConfig()
    out = Path(out_dir)
    triplets = read_triplets(manifest)
    writer = PairedDatasetWriter(out)
    log_path = out / DECISIONS_NAME
    decisions = _read_decisions(log_path)
    pending = [t for t in triplets if t.id not in decisions]
    debug_dir = str(out / "debug") if debug_sheets else None
    outcomes: Iterable[Outcome] = EXECUTORS[executor](
        pending, spec, config, workers=workers, debug_dir=debug_dir
    )
    if progress:
        from tqdm import tqdm

        outcomes = tqdm(outcomes, total=len(pending), desc="SAVP", unit="triplet")
    with open(log_path, "a", encoding="utf-8") as log:
        for outcome in outcomes:
            if outcome.decision.get("accepted") and outcome.id not in writer:
                a = outcome.arrays
                writer.add(
                    outcome.id,
                    a["shot"],
                    a["gt"],
                    a["object_mask"].astype(np.float32),
                    a["effect_mask"].astype(np.float32),
                    phase2=bool(outcome.decision.get("phase2")),
                    meta=outcome.meta,
                )
            line = {"id": outcome.id, **outcome.decision}
            jsonl.append_line(log, line)
            decisions[outcome.id] = line
    known = {t.id for t in triplets}
    stats = SAVPStats.from_decisions(d for i, d in decisions.items() if i in known)
    text = json.dumps({**asdict(stats), "config": asdict(config)}, indent=2)
    write_text(out / STATS_NAME, text)
    return stats


__all__ = ["DECISIONS_NAME", "EXECUTORS", "ORACLE", "REASONS", "STATS_NAME", "ModelSpec", "SAVPStats",
           "SAVPWorker", "Triplet", "read_triplets", "run_local", "run_ray", "run_savp"]

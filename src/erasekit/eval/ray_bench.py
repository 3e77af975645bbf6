"""``erasekit bench --executor ray``: the methods' outputs computed on Ray Data actors, one remover each.

The benchmark runner (:mod:`.runner`) keeps everything else: before it scores a chain, :func:`fill_on_ray`
runs every (sample, mask) pair whose output is not cached yet on ``workers`` actors; each actor loads the
remover once, runs the same :func:`~erasekit.eval.runner._run_one` (its warm-up calls included) and writes the
output through the same :func:`~erasekit.eval.runner._save` (sidecar last, so a present sidecar marks a
complete output). The runner then reads those outputs as it reads cached ones and scores them in this process;
their rows say ``cached = False``. Outputs go to the results folder, which must be on storage the actors see
(docs/cluster.md). """

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .entries import BenchEntry


class BenchWorker:
    """A Ray Data actor: one remover, the dataset opened once."""

    def __init__(self, job: dict[str, Any]):
        from ..registry import load_remover
        from .datasets import open_dataset
        from .runner import BenchConfig

        self.cfg = BenchConfig(**job["config"])
        self.remover = load_remover(job["method"], **job["load_options"])
        self.dataset = open_dataset(self.cfg.dataset, self.cfg.layout).subset(self.cfg.limit)
        self.job = job
        self.warmed = False

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from .runner import _output_paths, _run_one, _save

        done = []
        for item in batch["item"]:
            sample_id, mode, key = json.loads(item)
            record = self.dataset[sample_id]
            entry = BenchEntry(**self.job["entry"])
            args = (self.remover, record, mode, self.cfg, self.job["options"], entry)
            if not self.warmed:  # untimed, as the local runner does before its first timed call
                for _ in range(self.cfg.warmup):
                    _run_one(*args)
                self.warmed = True
            run = _run_one(*args)
            _save(_output_paths(Path(self.cfg.out), self.job["row"], mode, sample_id), run, key)
            done.append(key)
        return {"key": np.array(done, dtype=object)}


def fill_on_ray(
    cfg,
    row: str,
    entry: BenchEntry,
    load_opts: dict[str, Any],
    call_opts: dict[str, Any],
    missing: list[tuple[str, str, str]],
) -> set[str]:
    """Compute the ``missing`` (sample id, mask mode, cache key) outputs of bench row ``row`` (what
    ``entry`` runs) on Ray; returns their keys."""
    from ..batch import ray_gpus_per_worker, ray_session

    if not missing:
        return set()
    job = {
        "config": {k: v for k, v in asdict(cfg).items() if k != "entries"},  # the row travels as "entry"
        "method": entry.method,
        "row": row,
        "entry": asdict(entry),
        "load_options": load_opts,
        "options": call_opts,
    }
    with ray_session(cfg.workers) as ray:
        dataset = ray.data.from_items([{"item": json.dumps(m)} for m in missing]).map_batches(
            BenchWorker,
            fn_constructor_kwargs={"job": job},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=cfg.workers),
            num_cpus=1,
            num_gpus=ray_gpus_per_worker(ray, entry.method),
        )
        return {str(row["key"]) for row in dataset.iter_rows()}


__all__ = ["BenchWorker", "fill_on_ray"]

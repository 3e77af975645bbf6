"""The checkpoint layout every trainer shares, its metrics log, and what a run returns.

``OUTPUT/checkpoints/step-NNNNNNN/`` holds Accelerate's state plus ``trainer_state.json``, written last: a
folder without it is an interrupted save and is never resumed from. Folders are named by optimizer step (not
by save count, as Accelerate's automatic naming would), so a resumed run and an uninterrupted one line up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import jsonl
from ..atomic import write_text

STATE_FILE = "trainer_state.json"
CHECKPOINT_PREFIX = "step-"


@dataclass
class TrainResult:
    """What a training run returns (and ``erasekit train`` prints)."""

    step: int
    output_dir: Path
    weights_dir: Path
    metrics_path: Path
    resumed_from: int  # the step the run resumed from; 0 for a fresh run


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return output_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{step:07d}"


def mark_complete(folder: Path, step: int) -> None:
    """Write the state file that marks ``folder`` as a complete checkpoint (call it after everything else)."""
    (folder / STATE_FILE).write_text(json.dumps({"step": step}) + "\n")


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Every complete checkpoint under ``output_dir``, oldest first."""
    root = output_dir / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob(CHECKPOINT_PREFIX + "*") if (p / STATE_FILE).is_file()]
    return sorted(done, key=checkpoint_step)


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    done = complete_checkpoints(output_dir)
    return done[-1] if done else None


def checkpoint_step(folder: Path) -> int:
    return int(folder.name[len(CHECKPOINT_PREFIX):])


def open_metrics(output_dir: Path, resumed_step: int) -> Path:
    """``OUTPUT/metrics.jsonl``, made consistent with the checkpoint a run resumes from.

    A line torn by a kill mid-write is cut off, and lines logged after ``resumed_step`` (work the resumed run
    redoes) are dropped."""
    path = output_dir / "metrics.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        jsonl.repair_torn_tail(path)
        kept = [record for _, record in jsonl.read_lines(path) if int(record.get("step", 0)) <= resumed_step]
        write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
    return path


def log_metrics(path: Path, record: Mapping[str, Any]) -> None:
    """Append one durable record to a metrics file from :func:`open_metrics`."""
    with path.open("a", encoding="utf-8") as stream:
        jsonl.append_line(stream, record)


__all__ = ["CHECKPOINT_PREFIX", "STATE_FILE", "TrainResult", "checkpoint_dir", "checkpoint_step",
           "complete_checkpoints", "latest_checkpoint", "log_metrics", "mark_complete", "open_metrics"]

"""The checkpoint layout every trainer shares, and what a run returns.

``OUTPUT/checkpoints/step-NNNNNNN/`` holds Accelerate's state plus ``trainer_state.json``, written last: a
folder without it is an interrupted save and is never resumed from. Folders are named by optimizer step (not
by save count, as Accelerate's automatic naming would), so a resumed run and an uninterrupted one line up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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


__all__ = ["CHECKPOINT_PREFIX", "STATE_FILE", "TrainResult", "checkpoint_dir", "checkpoint_step",
           "complete_checkpoints", "latest_checkpoint", "mark_complete"]

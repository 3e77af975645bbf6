"""The checkpoint layout and metrics log every trainer shares (erasekit.training.checkpoints)."""

from __future__ import annotations

import json

from erasekit.training.checkpoints import (
    checkpoint_dir,
    latest_checkpoint,
    log_metrics,
    mark_complete,
    open_metrics,
)


def test_the_newest_complete_checkpoint_wins_and_an_interrupted_save_is_ignored(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step in (2, 10):
        folder = checkpoint_dir(tmp_path, step)
        folder.mkdir(parents=True)
        mark_complete(folder, step)
    checkpoint_dir(tmp_path, 12).mkdir()  # killed before its state file: never resumed from
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step-0000010"
    assert json.loads((latest_checkpoint(tmp_path) / "trainer_state.json").read_text()) == {"step": 10}


def test_resume_cuts_a_torn_line_and_the_steps_it_will_redo(tmp_path):
    path = open_metrics(tmp_path, 0)
    for step in (1, 2, 3, 4):
        log_metrics(path, {"step": step, "loss": 1.0 / step})
    with path.open("a") as stream:
        stream.write('{"step": 5, "lo')  # a kill mid-write
    path = open_metrics(tmp_path, 2)  # resuming from the step-2 checkpoint
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]
    log_metrics(path, {"step": 3, "loss": 0.5})
    assert path.read_text().splitlines()[-1] == '{"step": 3, "loss": 0.5}'

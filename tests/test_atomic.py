"""erasekit.atomic: every atomic write goes through it, it fsyncs the file and its folder, and a failed write
leaves the old file and no temporary litter. A source scan fails if a hand-written temp-then-rename comes back
anywhere else in the package."""

from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import pytest

import erasekit
from erasekit import atomic

PACKAGE = Path(erasekit.__file__).parent


def _fsyncs(monkeypatch) -> list[bool]:
    """Record each fsync as True for a folder, False for a file."""
    seen: list[bool] = []
    real = os.fsync

    def fsync(fd):
        seen.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_writes_replace_the_file_and_fsync_file_then_folder(tmp_path, monkeypatch):
    seen = _fsyncs(monkeypatch)
    target = tmp_path / "sub" / "a.json"
    atomic.write_json(target, {"x": 1})
    assert json.loads(target.read_text()) == {"x": 1}
    assert target.read_text().endswith("\n")
    if os.name == "posix":
        assert seen == [False, True]
    atomic.write_text(target, "second")
    atomic.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert target.read_text() == "second" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.json", "b.bin", "sub"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def half(stream):
        stream.write(b"partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        atomic.atomic_write(target, half)
    with pytest.raises(RuntimeError, match="killed"), atomic.atomic_path(target, suffix=".png") as temp:
        assert temp.name.endswith(".png") and temp.parent == tmp_path
        temp.write_bytes(b"partial")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_path_serves_writers_that_need_a_file_name(tmp_path, monkeypatch):
    import torch

    seen = _fsyncs(monkeypatch)
    target = tmp_path / "weights.pt"
    with atomic.atomic_path(target) as temp:
        assert not target.exists()
        torch.save({"w": torch.arange(3)}, temp)
    assert torch.equal(torch.load(target)["w"], torch.arange(3))
    if os.name == "posix":
        assert seen == [False, True]
    assert [p.name for p in tmp_path.iterdir()] == ["weights.pt"]


def test_io_write_errors_stay_one_line_erasekit_errors(tmp_path):
    import numpy as np

    from erasekit import io
    from erasekit.types import ErasekitError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ErasekitError, match="cannot create folder"):
        io.write_image(blocker / "out.png", np.zeros((4, 4, 3), np.uint8))


# ------------------------------------------------------------------------------------------------------------
# No hand-written temp-then-rename outside erasekit/atomic.py
# ------------------------------------------------------------------------------------------------------------
def _hand_written_renames(source: str) -> list[int]:
    """Lines of ``os.replace``/``os.rename``/``shutil.move`` calls, and of ``X.replace(Y)``/``X.rename(Y)``
    (pathlib) whose receiver names a temporary file. ``str.replace`` takes two arguments and is not matched.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, receiver = node.func.attr, node.func.value
        if isinstance(receiver, ast.Name) and (receiver.id, name) in (
            ("os", "replace"), ("os", "rename"), ("shutil", "move")
        ):
            found.append(node.lineno)
        elif name in ("replace", "rename") and len(node.args) == 1 and not node.keywords:
            text = ast.unparse(receiver).lower()
            if "tmp" in text or "temp" in text:
                found.append(node.lineno)
    return found


def test_the_scan_finds_the_hand_written_patterns():
    sample = (
        "import os\n"
        "os.replace(tmp, path)\n"
        "tmp.replace(meta_path)\n"
        "(out / 'summary.json.tmp').replace(out / 'summary.json')\n"
        "temp_file.rename(target)\n"
        "text.replace('a', 'b')\n"
        "dataclasses.replace(x, y=1)\n"
        "options.replace(timestep=3)\n"
    )
    assert _hand_written_renames(sample) == [2, 3, 4, 5]


def test_no_hand_written_temp_then_rename_outside_atomic():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "atomic.py" or path.parent != PACKAGE
        for line in _hand_written_renames(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, f"write through erasekit.atomic instead: {offenders}"

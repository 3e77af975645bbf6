"""benchmarks/gpu_suite.py --dry-run: the GPU suite's code path (meta-device construction, materialisation,
the OSOR engines, the baselines' samplers, EraDiff's SRA, CLIPAway's encoders, the MagicRemover cost model and
the PixPerfect refiner) runs on the CPU with tiny configurations and prints one complete table. Timings are
not checked (they are not tests' business)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_dry_run_prints_every_row():
    # In a child process, as a user runs it: the suite builds a dozen models on the meta device and
    # materialises them, and the test process must not inherit whatever global state that leaves (a later
    # SciPy k-d tree query crashed in the same process).
    done = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_suite.py"), "--dry-run", "--steps", "1",
                           "--repeats", "1"], check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| row")]
    names = [row.split(" | ")[0].lstrip("| ") for row in rows]
    for expected in (
        "sdxl-inpaint-1 (CFG)",
        "osor-sdxl 1 step (LoRA unmerged, default)",
        "osor-sdxl 1 step (merged LoRA)",
        "flux-fill-1",
        "osor-flux 1 step (LoRA unmerged, default)",
        "sd2-inpaint-1 (CFG)",
        "eradiff SRA, one UNet call (CFG)",
        "pixperfect refiner (default width)",
        "sd15-inpaint-1 (CFG)",
        "magicremover total (cost model)",
    ):
        assert expected in names, f"{expected!r} missing from the table:\n{out}"
    assert any(name.startswith("clipaway extra encoders") for name in names)
    osor = next(row for row in rows if row.startswith("| osor-sdxl 1 step (LoRA unmerged"))
    assert "× vs sdxl-inpaint-1" in osor  # the speed-up against the baseline of the same run


def test_the_suite_refuses_to_run_without_a_gpu_unless_dry(monkeypatch, capsys):
    import pytest
    import torch

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_suite

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        gpu_suite.main([])
    assert "--dry-run" in capsys.readouterr().err

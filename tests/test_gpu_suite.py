"""benchmarks/gpu_suite.py --dry-run: the GPU suite's code path (meta-device construction, materialisation,
the OSOR engines, the baselines' samplers, EraDiff's SRA, CLIPAway's encoders, the MagicRemover cost model and
the PixPerfect refiner) runs on the CPU with tiny configurations and prints one complete table. Timings are
not checked (they are not tests' business)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_dry_run_prints_every_row(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("gpu_suite", None)
    import gpu_suite

    assert gpu_suite.main(["--dry-run", "--steps", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
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

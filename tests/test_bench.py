"""`erasekit bench` end to end on synthetic effect scenes: weight-free methods and a tiny diffusion method."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from erasekit.cli import main
from erasekit.data.synthetic import generate_synthetic_dataset
from erasekit.eval.datasets import open_dataset
from erasekit.eval.features import Loaded
from erasekit.eval.metrics import psnr
from erasekit.eval.networks import AlexNetTrunk
from erasekit.eval.report import build_report
from erasekit.eval.runner import BenchConfig, run_benchmark

N = 2


class TinyFeatures(nn.Module):
    """A small random "Inception": uint8 N×3×H×W -> 16-d features, through the same FID/KID code path."""

    num_features = 16

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))

    def forward(self, x):
        return torch.relu(self.conv(x.float() / 255.0)).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "ds", N, size=64, seed=0)


@pytest.fixture(scope="module")
def lpips_trunk(tmp_path_factory) -> Path:
    g = torch.Generator().manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "alexnet.pth"
    torch.save(
        {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in AlexNetTrunk().state_dict().items()}, path
    )
    return path


def test_bench_end_to_end_with_resume_and_report(dataset, lpips_trunk, tmp_path, tiny):
    tiny_sd15 = tiny("sd15-inpaint")
    out = tmp_path / "results"
    cfg = BenchConfig(
        dataset=str(dataset),
        out=str(out),
        methods=["patchmatch", "telea", "sd15-inpaint"],
        mask="both",
        metrics=["psnr", "ssim", "psnr_mask", "ssim_mask", "lpips", "fid", "kid", "local_fid", "cmmd"],
        load_options={"sd15-inpaint": {"model": str(tiny_sd15), "progress_bar": False}},
        call_options={"sd15-inpaint": {"steps": 2}},
        weights={"alexnet": str(lpips_trunk)},
        progress=False,
        trace_python_memory=False,
    )
    networks = {"inception-fid": Loaded(TinyFeatures(), [], {})}
    result = run_benchmark(cfg, networks=networks)

    with open(out / "per_image.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 2 * N
    assert {r["method"] for r in rows} == {"patchmatch", "telea", "sd15-inpaint"}
    assert all(float(r["latency_s"]) > 0 and float(r["peak_rss_mb"]) > 0 for r in rows)
    assert all(r["lpips"] and r["psnr_mask"] for r in rows)

    # The per-image PSNR is the metric of the cached output against the ground truth.
    ds = open_dataset(dataset)
    rec = ds[ds.ids[0]]
    saved = np.asarray(Image.open(out / "outputs/telea/effect" / f"{rec.id}.png"))
    row = next(r for r in rows if r["method"] == "telea" and r["mask"] == "effect" and r["id"] == rec.id)
    assert float(row["psnr"]) == pytest.approx(psnr(saved, rec.background))
    # Pixels outside the effect mask are the input's, so the method only changed what it was asked to.
    outside = rec.effect_mask < 0.5
    assert np.array_equal(saved[outside], rec.image[outside])

    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["cmmd"]["available"] is False
    assert "clip-vit-large-patch14-336" in summary["metrics"]["cmmd"]["unavailable"]
    assert summary["metrics"]["fid"]["settings"]["resize"].startswith("TF1.x-compatible bilinear")
    for key in ("patchmatch/object", "telea/effect", "sd15-inpaint/object"):
        values = summary["runs"][key]["values"]
        assert values["fid"] is not None and values["kid"] is not None and values["local_fid"] is not None
        assert values["cmmd"] is None
    table = (out / "table.md").read_text()
    assert "| sd15-inpaint |" in table and "object-effect mask" in table and "cmmd: unavailable" in table

    # Resume: a second run reuses every output (same cache keys) and recomputes the same metrics.
    again = run_benchmark(cfg, networks=networks)
    assert all(r["cached"] for r in again.rows)
    assert (
        again.summary["runs"]["telea/object"]["values"]["psnr"]
        == result.summary["runs"]["telea/object"]["values"]["psnr"]
    )
    index = build_report(out)
    html = index.read_text()
    assert index.is_file() and "chart_psnr.png" in html and f"grid_{rec.id}_effect.png" in html
    assert (index.parent / "chart_lpips.png").is_file() and (
        index.parent / f"grid_{rec.id}_object.png"
    ).is_file()
    assert "TF1.x-compatible bilinear" in html

    # Anything in the cache key changed (here the seed) means the method runs again.
    reseeded = BenchConfig(**{**cfg.__dict__, "methods": ["telea"], "mask": "object", "seed": 1})
    assert not any(r["cached"] for r in run_benchmark(reseeded, networks=networks).rows)


def test_bench_cli_weight_free_and_errors(dataset, tmp_path, capsys):
    out = tmp_path / "cli-results"
    code = main(
        ["bench", "--dataset", str(dataset), "--methods", "patchmatch,ns", "--mask", "object", "--metrics",
         "psnr,ssim,lpips,cfd", "-o", str(out), "--quiet", "--limit", "2"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| patchmatch |" in printed and "report:" in printed
    assert (out / "report" / "index.html").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"]["n"] == 2 and summary["metrics"]["cfd"]["available"] is False

    assert main(["bench", "--dataset", str(tmp_path / "nope"), "-o", str(out), "--quiet"]) == 2
    assert main(["bench", "--dataset", str(dataset), "-o", str(out), "--metrics", "bogus", "--quiet"]) == 2
    assert main(["bench", "--dataset", str(dataset), "-o", str(out), "--mask", "shadow", "--quiet"]) == 2
    assert main(["report", str(tmp_path / "empty")]) == 2


def test_dataset_layouts(tmp_path):
    from erasekit import io

    rng = np.random.default_rng(0)
    root = tmp_path / "removalbench"
    for folder in ("input", "mask", "gt"):
        (root / folder).mkdir(parents=True)
    for stem in ("a", "b"):
        img = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
        io.write_image(root / "input" / f"{stem}.png", img)
        io.write_image(root / "gt" / f"{stem}.png", img)
        m = np.zeros((32, 48), np.float32)
        m[5:15, 10:20] = 1
        io.write_mask(root / "mask" / f"{stem}.png", m)
    ds = open_dataset(root)
    assert ds.name == "removalbench" and ds.ids == ["a", "b"]
    rec = ds["a"]
    assert rec.background.shape == rec.image.shape and np.array_equal(rec.object_mask, rec.effect_mask)
    from erasekit.types import InvalidInputError

    with pytest.raises(InvalidInputError, match="cannot tell the layout"):
        open_dataset(tmp_path)
    with pytest.raises(InvalidInputError, match="unknown layout"):
        open_dataset(root, "no-such-layout")


def test_bench_call_options_are_typed_by_the_declaration(dataset, tmp_path, capsys):
    out = tmp_path / "typed"
    base = ["bench", "--dataset", str(dataset), "--methods", "ns", "--mask", "object", "--metrics", "psnr",
            "-o", str(out), "--quiet", "--limit", "2"]
    assert main([*base, "-O", "ns:radius=3"]) == 0
    # The same option given as a number from Python reuses every cached output: one canonical cache key.
    cfg = BenchConfig(
        dataset=str(dataset),
        out=str(out),
        methods=["ns"],
        mask="object",
        metrics=["psnr"],
        limit=2,
        call_options={"ns": {"radius": 3}},
        progress=False,
        trace_python_memory=False,
    )
    run_benchmark(cfg)
    with open(out / "per_image.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(r["cached"] == "True" for r in rows)
    capsys.readouterr()
    assert main([*base, "-O", "ns:radius=0"]) == 2
    assert "ns option radius must be an integer in [1, 64], got '0'" in capsys.readouterr().err
    assert main([*base, "-O", "ns:stepz=3"]) == 2
    assert "method 'ns' does not take option(s): stepz; it takes: radius" in capsys.readouterr().err


def test_a_typo_in_the_method_list_is_exit_2_before_anything_runs(dataset, tmp_path, capsys):
    out = tmp_path / "typo"
    code = main(["bench", "--dataset", str(dataset), "--methods", "telea,patchmach", "--metrics", "psnr",
                 "-o", str(out), "--quiet", "--no-report"])
    assert code == 2
    assert "unknown method 'patchmach'" in capsys.readouterr().err
    assert not (out / "outputs").exists()


def test_a_warm_rerun_reuses_every_per_image_metric_value(dataset, tmp_path, monkeypatch):
    """Metric values are cached per (output, metric): the rerun computes none of them, and gives the same
    numbers; a metric whose settings change (here: PixelMetrics' recorded settings) is computed again."""
    from erasekit.eval import metrics as M

    calls = {"ssim": 0}
    real_ssim = M.ssim

    def counted(*args, **kwargs):
        calls["ssim"] += 1
        return real_ssim(*args, **kwargs)

    monkeypatch.setattr(M, "ssim", counted)
    cfg = BenchConfig(dataset=str(dataset), out=str(tmp_path / "r"), methods=["telea"], mask="object",
                      metrics=["psnr", "ssim"], progress=False, trace_python_memory=False)
    cold = run_benchmark(cfg)
    assert calls["ssim"] == N  # one per sample
    warm = run_benchmark(cfg)
    assert calls["ssim"] == N  # nothing recomputed
    assert [r["cached"] for r in warm.rows] == [True] * N
    strip = ("latency_s", "peak_rss_mb", "rss_increase_mb", "peak_python_mb", "peak_cuda_mb", "cached")
    assert [{k: v for k, v in r.items() if k not in strip} for r in warm.rows] == [
        {k: v for k, v in r.items() if k not in strip} for r in cold.rows]
    monkeypatch.setattr(M.PixelMetrics, "settings", lambda self: {"changed": True})
    run_benchmark(cfg)
    assert calls["ssim"] == 2 * N

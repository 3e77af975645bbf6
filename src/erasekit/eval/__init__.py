"""Evaluation harness: the papers' metrics, a benchmark runner over paired datasets, and static reports.

    from erasekit.eval import BenchConfig, run_benchmark, build_report
    result = run_benchmark(BenchConfig(dataset="data/synth", out="results", methods=["patchmatch", "telea"],
                                       metrics=["psnr", "ssim", "lpips", "fid"]))
    build_report(result.out)

Metric definitions are in :mod:`erasekit.eval.metrics` and :mod:`erasekit.eval.cfd`; weight files and their
checksums in :mod:`erasekit.eval.weights`; docs/evaluation.md has the whole picture.
"""

from .metrics import fid_from_features, kid_from_features, local_crop_box, mmd_rbf, psnr, ssim
from .report import build_report
from .runner import BenchConfig, BenchResult, run_benchmark

__all__ = ["BenchConfig", "BenchResult", "build_report", "fid_from_features", "kid_from_features",
           "local_crop_box", "mmd_rbf", "psnr", "run_benchmark", "ssim"]

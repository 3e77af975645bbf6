"""SAVP on synthetic triplets: acceptance, mask quality against exact ground truth, throughput.

Each synthetic scene (erasekit.data.synthetic: photo crop + object with a soft cast shadow and/or a mirror
reflection) gives two triplets, "Add a <object>" (original = clean, edited = shot) and "Remove the <object>"
(original = shot, edited = clean). SAVP runs with the paper's Table 6 constants.

Honesty notes, printed with the table:
* the detector is an ORACLE: it returns the true object box (there are no GroundingDINO weights offline), so
the
  semantic stage measures the geometry rules (IoU / scale / collapse), not detection quality;
* the segmenter is OpenCV GrabCut prompted with the validated box (weight-free), or the oracle mask with
  ``--segmenter oracle-truth``; SAM2 is not measured here.

    python benchmarks/savp_quality.py --scenes 100 --size 256 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from erasekit import io
from erasekit.data import PairedDataset
from erasekit.data.savp import SAVPConfig
from erasekit.data.savp_run import DECISIONS_NAME, ModelSpec, read_triplets, run_savp
from erasekit.data.synthetic import write_synthetic_triplets


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def quality(manifest: Path, dataset: Path) -> dict[str, float]:
    truth = {t.id: t.truth for t in read_triplets(manifest)}
    decisions = [json.loads(x) for x in (dataset / DECISIONS_NAME).read_text().splitlines()]
    ds = PairedDataset(dataset)
    eff, obj, fuse_recall = [], [], []
    for sample in ds:
        t = truth[sample.id]
        true_effect = io.read_mask(t["effect_mask"])
        true_object = io.read_mask(t["object_mask"])
        eff.append(_iou(sample.effect_mask, true_effect))
        obj.append(_iou(sample.object_mask, true_object))
        fuse_recall.append(float((sample.effect_mask[true_effect > 0] > 0).mean()))
    reasons: dict[str, int] = {}
    for d in decisions:
        if not d["accepted"]:
            key = f"{d['stage']}: {d['reason']}"
            reasons[key] = reasons.get(key, 0) + 1
    return {"n": len(decisions), "accepted": len(ds), "phase2": len(ds.phase2_ids()),
            "effect_iou": float(np.mean(eff)) if eff else float("nan"),
            "object_iou": float(np.mean(obj)) if obj else float("nan"),
            "effect_recall": float(np.mean(fuse_recall)) if fuse_recall else float("nan"), "reasons": reasons}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenes", type=int, default=100, help="scenes (two triplets each)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--segmenter", default="grabcut", choices=["grabcut", "oracle-truth"])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="savp_bench_"))
    manifest = write_synthetic_triplets(work / "triplets", args.scenes, size=args.size, seed=args.seed)
    n = 2 * args.scenes
    spec = ModelSpec(detector="oracle-truth", segmenter=args.segmenter)
    speeds = {}
    result = None
    for workers in args.workers:
        out = work / f"dataset_w{workers}"
        start = time.perf_counter()
        run_savp(manifest, out, spec=spec, config=SAVPConfig(), workers=workers, progress=False)
        speeds[workers] = n / (time.perf_counter() - start)
        current = quality(manifest, out)
        if result is not None:
            assert current == result, "results differ between worker counts"
        result = current
    assert result is not None
    segmenter = "OpenCV GrabCut (box prompt)" if args.segmenter == "grabcut" else "ORACLE (true object mask)"
    print(
        f"\nSAVP on {n} synthetic triplets ({args.scenes} scenes × add/remove, {args.size}×{args.size}, "
        f"seed {args.seed}); Table 6 constants"
    )
    print(f"detector: ORACLE (true object box — not GroundingDINO); segmenter: {segmenter}\n")
    print("| metric | value |")
    print("| --- | --- |")
    print(f"| triplets | {result['n']} |")
    print(f"| acceptance rate | {result['accepted'] / result['n']:.1%} ({result['accepted']}) |")
    print(f"| Phase II subset (of accepted) | {result['phase2'] / max(result['accepted'], 1):.1%} |")
    print(f"| IoU effect-aware mask m_gt vs true effect mask | {result['effect_iou']:.3f} |")
    print(f"| recall of the true effect mask by m_gt | {result['effect_recall']:.3f} |")
    print(f"| IoU object-core mask m_obj vs true object mask | {result['object_iou']:.3f} |")
    for workers, speed in speeds.items():
        print(f"| samples/s, {workers} worker{'s' if workers > 1 else ''} (local executor) | {speed:.2f} |")
    for reason, count in sorted(result["reasons"].items(), key=lambda kv: -kv[1]):
        print(f"| rejected — {reason} | {count / result['n']:.1%} ({count}) |")
    print(f"\n(work folder: {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

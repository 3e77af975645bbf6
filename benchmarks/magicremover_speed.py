"""MagicRemover's cost per stage against one plain SD1.5 sampling call, on the tiny SD1.5 (CPU by default).

For the paper's settings (null-text inversion, N = 10 inner steps) and the fast option (negative-prompt
inversion), it reports seconds per stage (DDIM inversion, null-text optimisation, two-branch sampling) and the
UNet evaluations per image per stage, counted by a forward hook on the UNet: ``calls`` (UNet forward passes)
and ``rows`` (batch rows through the UNet; a CFG call has 2, a two-branch call 4). The counts are the cost
model on real hardware, where a 512-px SD1.5 UNet row dominates everything else; the tiny model's seconds
mostly measure Python overhead. Null-text calls include a backward pass each (not counted separately).

Then it re-runs the same image with another λ: the inversion cache leaves only the sampling.

    python benchmarks/magicremover_speed.py              # 50 steps, ~1 minute on 2 cores
    python benchmarks/magicremover_speed.py --steps 10   # quicker (counts scale with the steps)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

PROMPT = "a photo of a cat"


class UNetCounter:
    """Counts the UNet's forward calls and batch rows."""

    def __init__(self, unet):
        self.calls = self.rows = 0
        self.handle = unet.register_forward_pre_hook(self._count)

    def _count(self, module, args):
        self.calls += 1
        self.rows += int(args[0].shape[0])


def plain_sampling(pipe, steps: int, size: int, counter: UNetCounter) -> dict:
    import torch

    from erasekit.diffusion.loop import text_to_image

    counter.calls = counter.rows = 0
    start = time.perf_counter()
    text_to_image(pipe, PROMPT, num_inference_steps=steps, height=size, width=size,
                  generator=torch.Generator().manual_seed(0))
    return {"seconds": time.perf_counter() - start, "unet_calls": counter.calls, "unet_rows": counter.rows}


def one_removal(remover, image: np.ndarray, options: dict, counter: UNetCounter) -> dict:
    """Seconds and UNet calls/rows per stage: each stage ends at its last progress report."""
    from erasekit.types import RemovalRequest

    marks: dict[str, tuple[float, int, int]] = {}

    def on_stage(stage: str, step: int, total: int) -> None:
        if step == total:
            marks[stage] = (time.perf_counter(), counter.calls, counter.rows)

    counter.calls = counter.rows = 0
    start = time.perf_counter()
    remover(RemovalRequest(image, None, prompt=PROMPT, options={**options, "stage_progress": on_stage}))
    total = time.perf_counter() - start
    stages, previous = {}, (start, 0, 0)
    for stage in ("inversion", "null-text", "sampling"):
        if stage in marks:
            now = marks[stage]
            stages[stage] = {"seconds": now[0] - previous[0], "unet_calls": now[1] - previous[1],
                             "unet_rows": now[2] - previous[2]}
            previous = now
    return {"total_seconds": total, "unet_calls": counter.calls, "unet_rows": counter.rows, "stages": stages}


def table(report: dict) -> str:
    """One row per stage and setting; ratios against the plain sampling call of the same run."""
    plain = report["plain_sampling"]

    def row(label: str, seconds: float, calls: int, rows: int) -> str:
        return (f"| {label} | {seconds:.3f} | {seconds / plain['seconds']:.2f}× | {calls} | {rows} | "
                f"{rows / plain['unet_rows']:.2f}× |")

    setting = f"{report['steps']} steps, {report['size']}², {report['device']}"
    lines = [f"| {setting} | seconds | × plain | UNet calls | UNet rows | rows × plain |",
             "|---|---|---|---|---|---|",
             row("plain SD1.5 sampling (PNDM, CFG; baseline)", plain["seconds"], plain["unet_calls"],
                 plain["unet_rows"])]
    for name in ("paper (null-text, N=10)", "fast (negative-prompt)"):
        for call, label in (("first_call", "first call"), ("second_lambda", "second λ, inversion cached")):
            result = report[name][call]
            for stage, cost in result["stages"].items():
                lines.append(row(f"{name}, {label}: {stage}", cost["seconds"], cost["unet_calls"],
                                 cost["unet_rows"]))
            lines.append(row(f"**{name}, {label}: total**", result["total_seconds"], result["unet_calls"],
                             result["unet_rows"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (paper: 50)")
    parser.add_argument("--size", type=int, default=64, help="working size of the tiny model (paper: 512)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON too")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # steadier timings on a shared CPU; ratios are taken within this run
    from erasekit.methods.magicremover import MagicRemover
    from erasekit.testing import build_tiny_pipeline

    pipe = build_tiny_pipeline("sd15").to(args.device)
    counter = UNetCounter(pipe.unet)
    photo = Image.fromarray(data.chelsea()).resize((args.size, args.size), Image.Resampling.BICUBIC)
    image = np.asarray(photo)
    plain_sampling(pipe, 2, args.size, counter)  # warm-up: torch's first calls pay one-off set-up costs
    report: dict = {"steps": args.steps, "size": args.size, "device": args.device,
                    "plain_sampling": plain_sampling(pipe, args.steps, args.size, counter)}
    settings = (("paper (null-text, N=10)", "null-text"), ("fast (negative-prompt)", "negative-prompt"))
    for name, inversion in settings:
        remover = MagicRemover(pipeline=pipe, resolution=args.size, progress_bar=False)
        options = {"target": "cat", "steps": args.steps, "inversion": inversion}
        first = one_removal(remover, image, options, counter)
        second = one_removal(remover, image, {**options, "lam": 0.5}, counter)  # cache hit: sampling only
        report[name] = {"first_call": first, "second_lambda": second}
    print(table(report))
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

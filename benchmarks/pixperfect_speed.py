"""PixPerfect's cost: refiner seconds vs resolution, the cost of inference-time pooling, and its share of a
diffusion call.

The paper (Sec. 4, App. B) reports 2.7 s for the refiner on top of FLUX-Fill's 9.7 s at 512² on an A100: the
refiner adds 28 % to the diffusion call (22 % of the total), and pooling costs "≤ 1.3×". Here, on this CPU:

* the default ~41M-parameter generator (random weights: speed does not depend on them), fp32, no grad, one
  image, median of ``--repeats`` timed calls after one warm-up, at each side in ``--sides``;
* pooling with N = 4 copies, one copy per forward (``pool_batch=1``, the default) and all four in one forward
  (``pool_batch=4``), as ratios to N = 1, through the refiner itself (crop, pooling, selection);
* the diffusion baseline: one UNet forward of the real SD2-Inpainting architecture (random weights, built
  from its config: 865M parameters) at the same side, batch 2 (classifier-free guidance), projected to a
  50-step call (the UNet dominates; text encoder and VAE excluded, so the share is an upper bound).
  FLUX-Fill (12B) cannot run on this machine; the paper's baseline is FLUX, ours SD2, so compare the shares
  with that in mind.

    python benchmarks/pixperfect_speed.py                   # sides 64, 128, 256; UNet at 256 (minutes)
    python benchmarks/pixperfect_speed.py --sides 512 --unet-side 512   # the paper's size (slow, ~6 GB)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from erasekit.refiners import load_refiner
from erasekit.refiners.pixperfect.network import PixPerfectConfig, PixPerfectGenerator, count_parameters
from erasekit.refiners.pixperfect.weights import save_weights

PAPER_REFINER_S, PAPER_FLUX_S = 2.7, 9.7


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def refiner_case(weights: str, side: int, pool: int, pool_batch: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    output = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    region = np.zeros((side, side), np.float32)
    region[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 1
    # context = side: the crop is the whole image, so "side" is the refined resolution.
    refiner = load_refiner("pixperfect", weights=weights, pool=pool, pool_batch=pool_batch, context=side)
    return median_time(lambda: refiner(image, output, region), repeats)


def unet_step_seconds(side: int, repeats: int) -> float:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(  # SD2-Inpainting's UNet config (stabilityai/stable-diffusion-2-inpainting)
        sample_size=side // 8, in_channels=9, out_channels=4, cross_attention_dim=1024,
        attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
        block_out_channels=(320, 640, 1280, 1280),
    ).eval()
    latents = torch.randn(2, 9, side // 8, side // 8)
    text = torch.randn(2, 77, 1024)
    with torch.no_grad():
        return median_time(lambda: unet(latents, 500, encoder_hidden_states=text), repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sides", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--unet-side", type=int, default=256, help="0 skips the diffusion baseline")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    generator = PixPerfectGenerator(PixPerfectConfig())
    folder = save_weights(generator, Path(tempfile.mkdtemp(prefix="pp-speed-")) / "pixperfect")
    print(f"PixPerfect generator: {count_parameters(generator) / 1e6:.1f}M parameters, fp32, CPU, "
          f"{torch.get_num_threads()} threads; median of {args.repeats}\n")
    print("| side | refiner (s) | pool=4 / pool=1 | pool=4 batched / pool=1 | refiner / smallest side |")
    print("|---|---|---|---|---|")
    seconds: dict[int, float] = {}
    for side in args.sides:
        one = refiner_case(str(folder), side, 1, 1, args.repeats)
        four = refiner_case(str(folder), side, 4, 1, args.repeats)
        batched = refiner_case(str(folder), side, 4, 4, args.repeats)
        seconds[side] = one
        print(f"| {side} | {one:.3f} | {four / one:.2f} | {batched / one:.2f} | "
              f"{one / seconds[args.sides[0]]:.2f} |")
    if args.unet_side:
        side = args.unet_side
        refine = seconds.get(side) or refiner_case(str(folder), side, 1, 1, args.repeats)
        step = unet_step_seconds(side, args.repeats)
        call = 50 * step
        print(f"\nAt {side}²: refiner {refine:.3f} s; SD2-Inpainting UNet step (batch 2) {step:.3f} s, "
              f"projected 50-step call {call:.1f} s; the refiner adds {100 * refine / call:.1f} % to it "
              f"({100 * refine / (call + refine):.1f} % of the total). Paper, A100, FLUX-Fill at 512²: "
              f"{PAPER_REFINER_S} s on {PAPER_FLUX_S} s, adds {100 * PAPER_REFINER_S / PAPER_FLUX_S:.1f} % "
              f"({100 * PAPER_REFINER_S / (PAPER_REFINER_S + PAPER_FLUX_S):.1f} % of the total).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

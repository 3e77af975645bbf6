"""What CLIPAway adds to a plain SD1.5 inpainting call: two AlphaCLIP passes + the MLP + Eq. 2.

Two measurements:

* **FLOPs of the real architectures**, counted by ``torch.utils.flop_counter.FlopCounterMode`` on the *meta*
  device (shapes only: nothing is allocated or downloaded): AlphaCLIP ViT-L/14 at 224 px over a batch of two
  (foreground + background alpha), the Table 2 MLP over three rows (fg, bg, the unconditional zeros), against
  SD1.5's UNet (the runwayml/botp inpainting config: 9 input channels, 64×64 latents, 77 text + 4 IP tokens)
  run 50 steps × 2 (classifier-free guidance). The VAE is left out of both sides (it is the same work).
* **Wall time on the tiny models** of ``erasekit.testing`` (``clipaway`` against ``sd15-inpaint`` on the same
  tiny backbone, CPU): plumbing overhead only; tiny models say nothing about real proportions.

    python benchmarks/clipaway_speed.py            # ~1 minute on 2 idle cores
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def real_architecture_flops(steps: int = 50) -> dict[str, float]:
    from diffusers import UNet2DConditionModel

    from erasekit.methods.clipaway.alpha_clip import AlphaClipVisionModel, alpha_clip_l14_config
    from erasekit.methods.clipaway.mlp import ClipAwayMLP

    meta = torch.device("meta")
    with meta:
        alpha_clip = AlphaClipVisionModel(alpha_clip_l14_config())
        mlp = ClipAwayMLP()
        # SD1.5 inpainting's UNet config (the fields that differ from diffusers' defaults).
        unet = UNet2DConditionModel(in_channels=9, sample_size=64, cross_attention_dim=768,
                                    attention_head_dim=8)
    unet.eval()
    passes = _flops(lambda: alpha_clip(torch.empty(2, 3, 224, 224, device=meta),
                                       torch.empty(2, 1, 224, 224, device=meta)))
    projection = _flops(lambda: mlp(torch.empty(3, 768, device=meta)))  # fg, bg, zeros; Eq. 2 is O(1024)
    embed = passes + projection
    unet_call = _flops(lambda: unet(torch.empty(2, 9, 64, 64, device=meta), 500,
                                    encoder_hidden_states=torch.empty(2, 81, 768, device=meta)))
    sampling = unet_call * steps
    return {"alpha_clip_two_passes_gflops": passes / 1e9, "mlp_gflops": projection / 1e9,
            "clipaway_embedding_gflops": embed / 1e9, "unet_cfg_call_gflops": unet_call / 1e9,
            f"sampling_{steps}_steps_gflops": sampling / 1e9, "overhead_percent": 100 * embed / sampling}


def tiny_wall_time(repeats: int = 3) -> dict[str, float]:
    import erasekit
    from erasekit.testing import write_tiny_weights
    from erasekit.types import RemovalRequest

    folder = tempfile.mkdtemp()
    options = write_tiny_weights("clipaway", folder)
    clipaway = erasekit.load_remover("clipaway", device="cpu", progress_bar=False, **options)
    plain = erasekit.load_remover("sd15-inpaint", model=options["model"], device="cpu", progress_bar=False)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[16:40, 16:40] = 1
    times = {}
    for name, remover in (("sd15-inpaint", plain), ("clipaway", clipaway)):
        remover(RemovalRequest(image, mask, seed=0, options={"steps": 50}))  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            remover(RemovalRequest(image, mask, seed=0, options={"steps": 50}))
        times[f"{name}_tiny_seconds"] = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        clipaway.embedder.embed([image], [mask])
    times["embedding_tiny_seconds"] = (time.perf_counter() - start) / repeats
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--skip-tiny", action="store_true", help="FLOPs only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = real_architecture_flops(args.steps)
    if not args.skip_tiny:
        report.update(tiny_wall_time())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

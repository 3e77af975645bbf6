"""What CLIPAway adds to a plain SD1.5 inpainting call: two AlphaCLIP passes + the MLP + Eq. 2.

Two measurements:

* **FLOPs of the real architectures**, counted by ``torch.utils.flop_counter.FlopCounterMode`` on the *meta*
  device (shapes only: nothing is allocated or downloaded): AlphaCLIP ViT-L/14 at 224 px over a batch of two
  (foreground + background alpha), the Table 2 MLP over three rows (fg, bg, the unconditional zeros), against
  SD1.5's UNet (the runwayml/botp inpainting config: 9 input channels, 64×64 latents, 77 text + 4 IP tokens)
  run 50 steps × 2 (classifier-free guidance). The VAE is left out of both sides (it is the same work).
* **Wall time on the tiny models** of ``erasekit.testing`` (``clipaway`` against ``sd15-inpaint`` on the same
  tiny backbone, CPU, 50 steps): plumbing overhead only; tiny models say nothing about real proportions. Also
  ``remove_many`` (4 images per diffusers call) against one call per image.

It also counts what ``erasekit train clipaway-mlp`` saves by caching the frozen encoders' embeddings: one
training step of batch 8 through AlphaCLIP + IP-Adapter's ViT-H/14 (the authors' loop) against one step of the
MLP on cached vectors.

    python benchmarks/clipaway_speed.py            # ~1 minute on 2 idle cores
    python benchmarks/clipaway_speed.py --skip-tiny  # FLOPs only, seconds
"""

from __future__ import annotations

import argparse
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
    """GFLOPs of the real architectures, counted on the meta device."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from erasekit.methods.clipaway.alpha_clip import AlphaClipVisionModel, alpha_clip_l14_config
    from erasekit.methods.clipaway.mlp import ClipAwayMLP

    meta = torch.device("meta")
    with meta:
        alpha_clip = AlphaClipVisionModel(alpha_clip_l14_config())
        mlp = ClipAwayMLP()
        # SD1.5 inpainting's UNet config (the fields that differ from diffusers' defaults).
        unet = UNet2DConditionModel(in_channels=9, sample_size=64, cross_attention_dim=768,
                                    attention_head_dim=8)
        # IP-Adapter SD1.5's image encoder: OpenCLIP ViT-H/14 (h94/IP-Adapter models/image_encoder config).
        vit_h = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
            image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5))
    unet.eval()
    passes = _flops(lambda: alpha_clip(torch.empty(2, 3, 224, 224, device=meta),
                                       torch.empty(2, 1, 224, 224, device=meta)))
    projection = _flops(lambda: mlp(torch.empty(3, 768, device=meta)))  # fg, bg, zeros; Eq. 2 is O(1024)
    unet_call = _flops(lambda: unet(torch.empty(2, 9, 64, 64, device=meta), 500,
                                    encoder_hidden_states=torch.empty(2, 81, 768, device=meta)))
    batch = 8
    encoders = _flops(lambda: alpha_clip(torch.empty(batch, 3, 224, 224, device=meta),
                                         torch.empty(batch, 1, 224, 224, device=meta)))
    encoders += _flops(lambda: vit_h(pixel_values=torch.empty(batch, 3, 224, 224, device=meta)))
    mlp_step = 3 * _flops(lambda: mlp(torch.empty(batch, 768, device=meta)))  # forward + backward ≈ 3×
    g = 1e9
    return {"passes": passes / g, "mlp": projection / g, "embedding": (passes + projection) / g,
            "unet_call": unet_call / g, "sampling": unet_call * steps / g, "steps": steps,
            "train_encoders": encoders / g, "train_mlp_step": mlp_step / g}


def tiny_wall_time(repeats: int = 3) -> dict[str, float]:
    """Seconds per call on the tiny models (CPU)."""
    import erasekit
    from erasekit.testing import write_tiny_weights
    from erasekit.types import RemovalRequest

    folder = tempfile.mkdtemp()
    options = write_tiny_weights("clipaway", folder)
    clipaway = erasekit.load_remover("clipaway", device="cpu", progress_bar=False, **options)
    plain = erasekit.load_remover("sd15-inpaint", model=options["model"], device="cpu", progress_bar=False)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    mask = np.zeros((64, 64), np.float32)
    mask[16:40, 16:40] = 1
    times = {}

    def timed(fn) -> float:
        fn()  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats

    for name, remover in (("sd15-inpaint", plain), ("clipaway", clipaway)):
        request = RemovalRequest(images[0], mask, seed=0, options={"steps": 50})
        times[name] = timed(lambda r=remover, q=request: r(q))
    times["embedding"] = timed(lambda: clipaway.embedder.embed([images[0]], [mask]))
    requests = [RemovalRequest(image, mask, seed=i, options={"steps": 50}) for i, image in enumerate(images)]
    times["one_by_one_4"] = timed(lambda: [clipaway(r) for r in requests]) / len(requests)
    times["remove_many_4"] = timed(lambda: clipaway.remove_many(requests, batch_size=4)) / len(requests)
    return times


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def flops_table(f: dict[str, float]) -> str:
    sampling = f["sampling"]

    def share(value: float, digits: int = 2) -> str:
        return f"{100 * value / sampling:.{digits}f} %"

    lines = [_row("real architectures (FLOPs on the meta device)", "GFLOPs", "share of the plain call"),
             _row("---", "---", "---"),
             _row("SD1.5-inpainting UNet, one guided step (batch 2, 64×64, 81 tokens)",
                  f"{f['unet_call']:,.2f}", ""),
             _row(f"plain `sd15-inpaint` call: {f['steps']:.0f} guided steps (baseline)", f"{sampling:,.2f}",
                  "100 %"),
             _row("AlphaCLIP ViT-L/14, two passes (fg + bg alpha) at 224 px", f"{f['passes']:,.2f}",
                  share(f["passes"])),
             _row("MLP over fg, bg and the zeros row (+ Eq. 2)", f"{f['mlp']:,.3f}", share(f["mlp"], 5)),
             _row("**CLIPAway's embedding, total**", f"{f['embedding']:,.2f}",
                  f"**{share(f['embedding'])}** (target ≤ 5 %)"),
             "",
             _row("MLP training, one step of batch 8", "GFLOPs", "ratio"),
             _row("---", "---", "---"),
             _row("AlphaCLIP + ViT-H/14 forwards (uncached, the authors' loop)",
                  f"{f['train_encoders']:,.1f}", f"{f['train_encoders'] / f['train_mlp_step']:,.0f}×"),
             _row("MLP forward + backward on cached embeddings", f"{f['train_mlp_step']:.3f}", "1×")]
    return "\n".join(lines)


def tiny_table(t: dict[str, float]) -> str:
    base = t["sd15-inpaint"]
    rows = [("`sd15-inpaint` (baseline)", "sd15-inpaint"), ("`clipaway`", "clipaway"),
            ("its embedding alone (2 AlphaCLIP passes + MLP + Eq. 2)", "embedding"),
            ("`clipaway`, 4 images one by one, per image", "one_by_one_4"),
            ("`clipaway.remove_many`, 4 images in one call, per image", "remove_many_4")]
    lines = [_row("tiny models, CPU, 64×64, 50 steps", "seconds", "ratio"), _row("---", "---", "---")]
    lines += [_row(label, f"{t[key]:.4f}", f"{t[key] / base:.3f}") for label, key in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-tiny", action="store_true", help="FLOPs only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(flops_table(real_architecture_flops(args.steps)))
    if not args.skip_tiny:
        print()
        print(tiny_table(tiny_wall_time(args.repeats)))


if __name__ == "__main__":
    main()

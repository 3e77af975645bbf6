"""Self-Rectifying Attention vs stock attention: time per layer at the real SD2 UNet's self-attention shapes,
and end to end on the tiny SD2-Inpaint model (arXiv:2503.07026 Sec. 4.2 claims "without any additional
computational cost").

Per layer: one diffusers ``Attention`` of SD2's width at each resolution of a 512² image — (heads 5, 4096
tokens, dim 320), (10, 1024, 640), (20, 256, 1280), batch 2 for classifier-free guidance — run with
``AttnProcessor2_0`` (stock) and with erasekit's SRA processor (the 0/−inf bias of the resolution built once,
broadcast over batch and heads), masked area ~25 %. The bias build is timed separately: it happens once per
resolution per call, not per layer or step. Memory: the cached bias is N² elements (4096² × 4 B = 64 MiB in
fp32, 32 MiB in fp16) per resolution, shared by every layer, head and step.

    python benchmarks/eradiff_speed.py            # CPU: a few minutes on 2 cores
    python benchmarks/eradiff_speed.py --quick    # the 1024- and 256-token layers only
    python benchmarks/eradiff_speed.py --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from erasekit.methods.eradiff.attention import MaskedSelfAttentionRule, MaskedSelfAttnProcessor

SHAPES = [(5, 4096, 320), (10, 1024, 640), (20, 256, 1280)]  # heads, tokens, channels (dim_head 64)


def timed(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def layer_table(shapes, device: str, dtype: torch.dtype, repeats: int) -> list[str]:
    mask = torch.zeros(512, 512)
    mask[128:384, 128:384] = 1  # 25 % of the image
    rows = ["| heads | tokens | stock (ms) | SRA (ms) | ratio | bias build, once per call (ms) | bias MiB |",
            "|---|---|---|---|---|---|---|"]
    for heads, tokens, channels in shapes:
        attn = Attention(query_dim=channels, heads=heads, dim_head=channels // heads).to(device, dtype).eval()
        x = torch.randn(2, tokens, channels, device=device, dtype=dtype)
        stock = AttnProcessor2_0()
        with torch.no_grad():
            t_stock = timed(lambda s=stock, a=attn, q=x: s(a, q), repeats, device)
            rule = MaskedSelfAttentionRule(mask.to(device))
            sra = MaskedSelfAttnProcessor("layer", rule)
            t_build = timed(lambda r=rule, n=tokens: r._build(n, dtype, torch.device(device)), 1, device)
            t_sra = timed(lambda s=sra, a=attn, q=x: s(a, q), repeats, device)
        bias = rule.bias("layer", x[:, None], x[:, None])
        mib = 0.0 if bias is None else bias.numel() * bias.element_size() / 2 ** 20
        rows.append(f"| {heads} | {tokens} | {t_stock * 1e3:.2f} | {t_sra * 1e3:.2f} | {t_sra / t_stock:.3f} "
                    f"| {t_build * 1e3:.2f} | {mib:.0f} |")
    return rows


def end_to_end(repeats: int) -> list[str]:
    from erasekit.methods.eradiff import EraDiffRemover
    from erasekit.testing import tiny_pipeline
    from erasekit.types import RemovalRequest

    remover = EraDiffRemover(pipeline=tiny_pipeline("sd2-inpaint"), progress_bar=False)
    image = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    mask = np.zeros((256, 256), np.float32)
    mask[64:192, 64:192] = 1
    times = {}
    for rule in ("none", "sra"):
        request = RemovalRequest(image, mask, seed=0, options={"steps": 10, "rule": rule})
        times[rule] = timed(lambda r=request: remover(r), repeats, "cpu")
    return ["| tiny SD2-Inpaint, 256², 10 steps | stock (s) | SRA (s) | ratio |", "|---|---|---|---|",
            f"| end to end | {times['none']:.3f} | {times['sra']:.3f} | {times['sra'] / times['none']:.3f} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    shapes = SHAPES[1:] if args.quick else SHAPES
    print("\n".join(layer_table(shapes, args.device, getattr(torch, args.dtype), args.repeats)))
    print()
    print("\n".join(end_to_end(args.repeats)))


if __name__ == "__main__":
    main()

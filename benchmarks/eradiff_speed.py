"""Self-Rectifying Attention vs stock attention: time per layer at the real SD2 UNet's self-attention shapes,
and end to end on the tiny SD2-Inpaint model (arXiv:2503.07026 Sec. 4.2 claims "without any additional
computational cost"; the issue's target is ≤ 1.05× stock).

Per layer: one diffusers ``Attention`` of SD2's width at each resolution of a 512² image — (heads 5, 4096
tokens, dim 320), (10, 1024, 640), (20, 256, 1280), batch 2 for classifier-free guidance — run with
``AttnProcessor2_0`` (stock) and with erasekit's SRA processors in the three implementations (``-O impl``):

``bias``   the cached (1, 1, N, N) float 0/−inf bias, one SDPA;
``bool``   the cached (1, 1, N, N) boolean mask, one SDPA;
``split``  no mask tensor: background queries over all keys, masked queries over the gathered background
           keys/values (two flash-eligible SDPA calls, gathers and one scatter).

The variants run in interleaved rounds (round r runs every variant once, in a rotated order) so that load
changes on a shared machine hit them alike; the table shows the median per variant and its ratio to stock
in the same run. The rule's per-call build (mask → tokens → bias / bool / indices) happens once per
resolution per call and is timed separately. Memory: the cached tensor per resolution (bias N²·dtype bytes,
bool N² bytes, split the token indices), plus the split's transient gathered copies of Q, K, V per layer; on
CUDA also the measured peak allocation of one layer call above the inputs.

    python benchmarks/eradiff_speed.py            # CPU: a few minutes on 2 cores
    python benchmarks/eradiff_speed.py --quick    # the 1024- and 256-token layers only, fewer rounds
    python benchmarks/eradiff_speed.py --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from erasekit.methods.eradiff.attention import MaskedSelfAttentionRule, processor_factory

SHAPES = [(5, 4096, 320), (10, 1024, 640), (20, 256, 1280)]  # heads, tokens, channels (dim_head 64)
IMPLS = ("bias", "bool", "split")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, device: str) -> dict[str, float]:
    """Median seconds per variant over ``rounds`` rounds, each round running every variant once."""
    names = list(fns)
    for name in names:  # warm-up
        fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            sync(device)
            start = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cached_mib(rule: MaskedSelfAttentionRule) -> float:
    total = 0
    for value in rule._cache.values():
        tensors = [] if value is None else [value] if isinstance(value, torch.Tensor) else [
            t for pair in value if pair is not None for t in pair]
        total += sum(t.numel() * t.element_size() for t in tensors)
    return total / 2 ** 20


def peak_mib(fn: Callable[[], object], device: str) -> float | None:
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2 ** 20


def layer_table(shapes, device: str, dtype: torch.dtype, rounds: int) -> list[str]:
    mask = torch.zeros(512, 512)
    mask[128:384, 128:384] = 1  # 25 % of the image
    rows = [("| heads | tokens | stock (ms) | bias / stock | bool / stock | split / stock "
             "| build bias / bool / split (ms, once per call) | cached MiB bias / bool / split "
             "| split transient MiB | peak MiB stock / bias / bool / split |"),
            "|---|---|---|---|---|---|---|---|---|---|"]
    for heads, tokens, channels in shapes:
        attn = Attention(query_dim=channels, heads=heads, dim_head=channels // heads).to(device, dtype).eval()
        x = torch.randn(2, tokens, channels, device=device, dtype=dtype)
        rules = {impl: MaskedSelfAttentionRule(mask.to(device), impl=impl) for impl in IMPLS}  # type: ignore[arg-type]
        processors = {"stock": AttnProcessor2_0(), **{impl: processor_factory(r)("layer")
                                                      for impl, r in rules.items()}}
        builds = {}
        for impl, rule in rules.items():  # the first call builds the cache: timed alone, then kept
            q = x.view(2, tokens, heads, -1).transpose(1, 2)
            sync(device)
            start = time.perf_counter()
            {"bias": rule.bias, "bool": rule.allowed, "split": rule.split}[impl]("layer", q, q)
            sync(device)
            builds[impl] = time.perf_counter() - start
        with torch.no_grad():
            fns = {name: (lambda p=p, a=attn, h=x: p(a, h)) for name, p in processors.items()}
            median = interleaved(fns, rounds, device)
            peaks = {name: peak_mib(fn, device) for name, fn in fns.items()}
        q_bytes = x.numel() * x.element_size()
        transient = 3 * q_bytes / 2 ** 20  # at most: gathered Q (all rows, in two parts), background K and V
        peak = "n/a (CPU)" if device != "cuda" else " / ".join(f"{peaks[n]:.0f}" for n in ("stock", *IMPLS))
        rows.append(
            f"| {heads} | {tokens} | {median['stock'] * 1e3:.2f} | "
            + " | ".join(f"{median[impl] / median['stock']:.3f}" for impl in IMPLS)
            + " | " + " / ".join(f"{builds[impl] * 1e3:.1f}" for impl in IMPLS)
            + " | " + " / ".join(f"{cached_mib(rules[impl]):.2f}" for impl in IMPLS)
            + f" | ≤ {transient:.0f} | {peak} |")
    return rows


def end_to_end(rounds: int) -> list[str]:
    from erasekit.methods.eradiff import EraDiffRemover
    from erasekit.testing import tiny_pipeline
    from erasekit.types import RemovalRequest

    remover = EraDiffRemover(pipeline=tiny_pipeline("sd2-inpaint"), progress_bar=False)
    image = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    mask = np.zeros((256, 256), np.float32)
    mask[64:192, 64:192] = 1
    fns = {}
    for name, options in [("stock", {"rule": "none"}), *((impl, {"impl": impl}) for impl in IMPLS)]:
        request = RemovalRequest(image, mask, seed=0, options={"steps": 10, **options})
        fns[name] = lambda r=request: remover(r)
    median = interleaved(fns, rounds, "cpu")
    return [("| tiny SD2-Inpaint, 256², 10 steps, CPU | stock (s) | bias / stock | bool / stock "
            "| split / stock |"),
            "|---|---|---|---|---|",
            f"| end to end | {median['stock']:.3f} | "
            + " | ".join(f"{median[impl] / median['stock']:.3f}" for impl in IMPLS) + " |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = SHAPES[1:] if args.quick else SHAPES
    rounds = min(args.rounds, 5) if args.quick else args.rounds
    print(f"per layer, {args.device} {args.dtype}, {torch.get_num_threads()} CPU threads, batch 2 (CFG), "
          f"mask 25 %, median of {rounds} interleaved rounds")
    print("\n".join(layer_table(shapes, args.device, getattr(torch, args.dtype), rounds)))
    print()
    print("\n".join(end_to_end(rounds)))


if __name__ == "__main__":
    main()

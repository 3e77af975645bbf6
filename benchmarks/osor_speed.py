"""OSOR speed and overhead: one step vs the 50-step multi-step baselines, and the alpha head's parameter cost.

Three tables:

1. Wall time per image of ``osor-sdxl`` / ``osor-flux`` against ``sdxl-inpaint`` / ``flux-fill`` (diffusers'
   pipelines, 50 steps, strength 1) on the SAME tiny backbones (erasekit.testing), so the ratio isolates the
   step count. The network-time ratio approaches the number of network calls; the end-to-end ratio is lower on
   tiny backbones, whose VAE costs more than their network (on real models the network dominates; the paper
   reports 4×–30× against baselines with their own settings).
2. Where OSOR's time goes: VAE encode, one network call, VAE decode, and everything else (resizing,
conversion,
   compositing, paste-back). Target: "everything else" ≤ 10 % of the total.
3. The alpha head's parameter overhead on the REAL architectures (configs below, copied from the checkpoints'
   ``unet/config.json`` / ``transformer/config.json``), instantiated on the meta device (no weights, no
   memory). The paper (App. B.5) reports 2,881 (SDXL) and 12,292 (FLUX).

Run:  python benchmarks/osor_speed.py [--size 256] [--repeats 3] [--device cpu]
Timings on tiny models measure pipeline overhead, not real-model latency; treat them as relative.
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import time

import numpy as np

# diffusers/stable-diffusion-xl-1.0-inpainting-0.1, unet/config.json (architecture fields).
SDXL_INPAINT_UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 9,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}
# black-forest-labs/FLUX.1-Fill-dev, transformer/config.json.
FLUX_FILL_TRANSFORMER_CONFIG = {
    "_class_name": "FluxTransformer2DModel",
    "attention_head_dim": 128,
    "axes_dims_rope": [16, 56, 56],
    "guidance_embeds": True,
    "in_channels": 384,
    "joint_attention_dim": 4096,
    "num_attention_heads": 24,
    "num_layers": 19,
    "num_single_layers": 38,
    "out_channels": 64,
    "patch_size": 1,
    "pooled_projection_dim": 768,
}
PAPER_OVERHEAD = {"sdxl": 2881, "flux": 12292}


def alpha_head_overhead() -> list[dict]:
    """Parameters added by the alpha head on the real architectures.

    Built on the meta device: no weights are allocated.
    """
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel

    from erasekit.methods.osor.alpha_head import add_alpha_head, alpha_head_parameter_count

    rows = []
    for family, cls, config in (
        ("sdxl", UNet2DConditionModel, SDXL_INPAINT_UNET_CONFIG),
        ("flux", FluxTransformer2DModel, FLUX_FILL_TRANSFORMER_CONFIG),
    ):
        with init_empty_weights():
            model = cls.from_config(config)
        before = sum(p.numel() for p in model.parameters())
        predicted = alpha_head_parameter_count(model)
        add_alpha_head(model)
        after = sum(p.numel() for p in model.parameters())
        assert after - before == predicted
        rows.append(
            {
                "backbone": family,
                "params": before,
                "added": after - before,
                "paper": PAPER_OVERHEAD[family],
                "share": (after - before) / before,
                "fp32_kib": (after - before) * 4 / 1024,
            }
        )
    return rows


def _scene(size: int):
    from skimage import data
    from skimage.transform import resize

    photo = (resize(data.astronaut(), (size, size), anti_aliasing=True) * 255).astype(np.uint8)
    mask = np.zeros((size, size), np.float32)
    mask[size // 4 : size // 2, size // 3 : 2 * size // 3] = 1
    return photo, mask


def _median_time(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up (lazy imports, prompt caching, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


class _NetTimer:
    """Forward pre/post hooks that count a network's calls and add up their wall time."""

    def __init__(self, module) -> None:
        self.n, self.seconds, self._start = 0, 0.0, 0.0
        self.hooks = [module.register_forward_pre_hook(self._pre), module.register_forward_hook(self._post)]

    def _pre(self, *args) -> None:
        self._start = time.perf_counter()

    def _post(self, *args) -> None:
        self.n += 1
        self.seconds += time.perf_counter() - self._start

    def reset(self) -> None:
        self.n, self.seconds = 0, 0.0

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


def speed(size: int, repeats: int, device: str | None) -> tuple[list[dict], list[dict]]:
    from erasekit.methods.baselines import FluxFillRemover, SDXLInpaintRemover
    from erasekit.methods.osor import OsorFluxRemover, OsorSDXLRemover
    from erasekit.testing import build_tiny_pipeline
    from erasekit.types import RemovalRequest

    image, mask = _scene(size)
    speed_rows, share_rows = [], []
    for tiny, osor_cls, base_cls in (
        ("sdxl-inpaint", OsorSDXLRemover, SDXLInpaintRemover),
        ("flux-fill", OsorFluxRemover, FluxFillRemover),
    ):
        pipe = build_tiny_pipeline(tiny)
        if device:
            pipe.to(device)
        osor = osor_cls(pipeline=copy.deepcopy(pipe), weights="none")
        base = base_cls(pipeline=pipe, progress_bar=False)
        timer = _NetTimer(pipe.unet if tiny == "sdxl-inpaint" else pipe.transformer)
        request = RemovalRequest(image, mask, seed=0, hd_strategy="original")
        base_request = RemovalRequest(
            image, mask, seed=0, hd_strategy="original", options={"steps": 50, "strength": 1.0}
        )
        t_osor, result = _median_time(functools.partial(osor, request), repeats)
        timer.reset()
        t_base, _ = _median_time(functools.partial(base, base_request), repeats)
        timer.remove()
        runs = repeats + 1
        speed_rows.append(
            {
                "backbone": tiny,
                "osor_s": t_osor,
                "baseline_s": t_base,
                "ratio": t_base / t_osor,
                "baseline_net_calls": timer.n // runs,
                # network time only: the part of the ratio that the step count decides
                "net_ratio": (timer.seconds / runs) / osor.last_timings["denoiser"],
            }
        )
        inside = osor.last_timings
        total = result.timings["total"]
        other = total - sum(inside.values())
        share_rows.append(
            {"backbone": tiny, "total_s": total, **inside, "other_s": other, "other_share": other / total}
        )
    return speed_rows, share_rows


def _table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    header = "| " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(format(row[key], fmt) for key, _, fmt in columns) + " |" for row in rows]
    return "\n".join([header, rule, *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="square test image side (pixels)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median reported)")
    parser.add_argument(
        "--device", default=None, help="cpu / cuda (default: where the tiny models are built)"
    )
    parser.add_argument("--skip-speed", action="store_true", help="only the parameter-overhead table")
    args = parser.parse_args()

    if not args.skip_speed:
        speed_rows, share_rows = speed(args.size, args.repeats, args.device)
        print(
            f"\nOSOR one step vs 50-step baselines, tiny backbones, {args.size}×{args.size}, "
            f"median of {args.repeats}"
        )
        print(
            _table(
                speed_rows,
                [("backbone", "backbone", "s"), ("osor_s", "OSOR s", ".4f"),
                 ("baseline_s", "baseline (50 steps) s", ".4f"), ("ratio", "speed-up", ".1f"),
                 ("baseline_net_calls", "baseline network calls", "d"),
                 ("net_ratio", "network-time ratio", ".1f")],
            )
        )
        print("\nWhere OSOR's time goes (one call)")
        print(
            _table(
                share_rows,
                [("backbone", "backbone", "s"), ("total_s", "total s", ".4f"),
                 ("vae_encode", "VAE encode s", ".4f"), ("denoiser", "network s", ".4f"),
                 ("vae_decode", "VAE decode s", ".4f"), ("other_s", "other s", ".4f"),
                 ("other_share", "other share", ".1%")],
            )
        )
    print("\nAlpha head parameter overhead on the real architectures (meta device)")
    print(
        _table(
            alpha_head_overhead(),
            [("backbone", "backbone", "s"), ("params", "backbone params", ",d"),
             ("added", "alpha head adds", ",d"), ("paper", "paper (App. B.5)", ",d"),
             ("share", "share", ".2e"), ("fp32_kib", "fp32 KiB", ".1f")],
        )
    )


if __name__ == "__main__":
    main()

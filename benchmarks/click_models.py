"""Click-to-select cost per model family: the image encoder once per photo, then each click (prompt encoder +
mask decoder), for the real architectures of the checkpoints `erasekit serve --click-model` takes.

Each model is built from its real configuration with seeded random weights, saved in the Hub layout and loaded
through :class:`erasekit.masking.clicks.ClickSegmenter` (the server's path), so the numbers are time and size
only, never mask quality. The photo is a real one (scikit-image's ``coffee``, 400×600); every model resizes it
to its 1024 input. All models are loaded at once and run in interleaved rounds (a rotated order each round);
embed: the median of ``--repeats`` after one warm-up; a click: the median of ``5 × --repeats``. Ratios are
against the default, SAM 2.1 Hiera-L, measured in the same run.

Configurations (from the checkpoints' config files and the authors' YAMLs):

* ``sam2.1-hiera-large``: Hiera, embed dim 144, heads 2, blocks [2, 6, 36, 4], global attention in blocks
  23/33/43, windows [8, 4, 16, 8] (``sam2.1_hiera_l.yaml``);
* ``sam2.1-hiera-tiny``: transformers' ``Sam2Config`` defaults (embed dim 96, blocks [1, 2, 7, 2]);
* ``sam-vit-base`` / ``sam-vit-huge``: transformers' ``SamConfig`` defaults (ViT-B: 768 wide, 12 layers) and
  ViT-H (1280 wide, 32 layers, global attention in 7/15/23/31; ``--huge``, about 2.5 GB of fp32 weights).

SlimSAM is not built here: its pruned widths are in its own ``config.json``, which this machine cannot fetch;
its paper (arXiv:2312.05284) reports 9.1M parameters (1.4 % of SAM-H's) and 23 GMACs (0.8 %).

    python benchmarks/click_models.py               # CPU, 2 threads: a few minutes
    python benchmarks/click_models.py --huge --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import skimage.data
import torch

from erasekit.masking.clicks import ClickSegmenter


def _sam2(large: bool) -> torch.nn.Module:
    from transformers import Sam2Config, Sam2HieraDetConfig, Sam2Model, Sam2VisionConfig

    if not large:
        return Sam2Model(Sam2Config())
    hiera = Sam2HieraDetConfig(
        hidden_size=144,
        num_attention_heads=2,
        blocks_per_stage=[2, 6, 36, 4],
        embed_dim_per_stage=[144, 288, 576, 1152],
        num_attention_heads_per_stage=[2, 4, 8, 16],
        window_size_per_stage=[8, 4, 16, 8],
        global_attention_blocks=[23, 33, 43],
        window_positional_embedding_background_size=[7, 7],
    )
    vision = Sam2VisionConfig(backbone_config=hiera, backbone_channel_list=[1152, 576, 288, 144])
    return Sam2Model(Sam2Config(vision_config=vision))


def _sam(huge: bool) -> torch.nn.Module:
    from transformers import SamConfig, SamModel, SamVisionConfig

    if not huge:
        return SamModel(SamConfig())
    vision = SamVisionConfig(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                             global_attn_indexes=[7, 15, 23, 31])
    return SamModel(SamConfig(vision_config=vision))


def _sam_preprocessor(folder: Path) -> None:
    """preprocessor_config.json as facebook/sam-vit-* ship it (SamImageProcessor's defaults)."""
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    config = {
        "image_processor_type": "SamImageProcessor", "processor_class": "SamProcessor", "do_resize": True,
        "size": {"longest_edge": 1024}, "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": list(IMAGENET_DEFAULT_MEAN),
        "image_std": list(IMAGENET_DEFAULT_STD), "do_pad": True, "pad_size": {"height": 1024, "width": 1024},
        "do_convert_rgb": True,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(config))


MODELS: dict[str, Callable[[], torch.nn.Module]] = {
    "sam2.1-hiera-large": lambda: _sam2(True),
    "sam2.1-hiera-tiny": lambda: _sam2(False),
    "sam-vit-base": lambda: _sam(False),
    "sam-vit-huge": lambda: _sam(True),
}


def _seconds(sync: Callable[[], None], fn: Callable[..., object], *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)
    sync()
    return time.perf_counter() - t0


def load(name: str, root: Path, device: str) -> tuple[ClickSegmenter, float, float]:
    """(the model loaded as the server loads it, parameters in millions, image-encoder parameters)."""
    torch.manual_seed(0)
    model = MODELS[name]()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    encoder = sum(p.numel() for p in model.vision_encoder.parameters()) / 1e6
    folder = root / name
    model.save_pretrained(folder)
    del model
    if name.startswith("sam-"):
        _sam_preprocessor(folder)
    return ClickSegmenter(str(folder), device=device), params, encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--huge", action="store_true", help="also SAM ViT-H (about 2.5 GB of fp32 weights)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = ["sam2.1-hiera-large", "sam2.1-hiera-tiny", "sam-vit-base"]
    names += ["sam-vit-huge"] if args.huge else []
    photo = np.ascontiguousarray(skimage.data.coffee())
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    points = [[300.0, 200.0], [50.0, 50.0], [320.0, 220.0]]
    times: dict[str, dict[str, list[float]]] = {n: {"embed": [], "one": [], "three": []} for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        models = {name: load(name, Path(tmp), args.device) for name in names}
        embeddings = {name: clicks.embed(photo) for name, (clicks, _, _) in models.items()}  # warm-up
        # Interleaved rounds in a rotated order, so load changes on a shared machine hit every model alike.
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[: r % len(names)]:
                clicks, embedding = models[name][0], embeddings[name]
                times[name]["embed"].append(_seconds(sync, clicks.embed, photo))
                for _ in range(5):
                    times[name]["one"].append(_seconds(sync, clicks.decode, embedding, points[:1], [1]))
                    times[name]["three"].append(_seconds(sync, clicks.decode, embedding, points, [1, 0, 1]))
            print(f"round {r + 1}/{args.repeats}", flush=True)
    rows = {
        name: {
            "params": models[name][1],
            "encoder": models[name][2],
            "embed": statistics.median(times[name]["embed"]),
            "one": statistics.median(times[name]["one"]) * 1e3,
            "three": statistics.median(times[name]["three"]) * 1e3,
        }
        for name in names
    }
    base = rows["sam2.1-hiera-large"]
    print(f"\n{args.device}, {args.threads} threads, photo 400×600, median of {args.repeats} embeds\n")
    print("| click model (architecture) | params M (image encoder) | embed s | × default | click ms, 1 point "
          "| click ms, 3 points |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in rows.items():
        print(f"| {name} | {row['params']:.1f} ({row['encoder']:.1f}) | {row['embed']:.2f} | "
              f"{row['embed'] / base['embed']:.2f} | {row['one']:.1f} | {row['three']:.1f} |")


if __name__ == "__main__":
    main()

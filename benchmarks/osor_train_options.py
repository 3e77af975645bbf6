"""What each kept erasekit training option changes against the authors' default (OSOR, issue 12).

The authors' behaviour is every default in ``erasekit.methods.osor.train.config``; erasekit's former choices
stay as named options. This script measures, for each, the difference it makes on the quantity it touches:

* ``discriminator.targets: exact_occupancy`` — patch targets at the authors' 512×848 size (a 64-px-stride
  grid does not divide 848), exact coverage vs torch area pooling, on SAVP-like masks;
* ``discriminator.blur: erasekit`` — the head's BlurPool output, 4-tap replicate vs 5-tap reflect, on N(0, 1)
  feature maps (relative L2) and at the border of a constant map;
* ``vae_posterior: mode`` and ``vae_dtype: fp32`` — the encoded latent against the authors' bf16 posterior
  sample, relative to the latent's standard deviation (on the toy's pretrained VAE when its cache exists,
  else on the tiny random test VAE: the ratio, not the scale, carries over);
* ``schedule: joint`` — network calls per optimizer step and CPU seconds per step on the tiny SDXL backbone,
  both schedules timed in this run.

    python benchmarks/osor_train_options.py [--vae PATH_TO_DIFFUSERS_FOLDER]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch


def savp_like_masks(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """Blobs with an elongated shadow, SAVP-like effect masks at training size."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = np.zeros((h, w), np.uint8)
        cx, cy = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
        cv2.ellipse(m, (cx, cy), (int(rng.integers(30, 150)), int(rng.integers(30, 150))), 0, 0, 360, 1, -1)
        axes = (int(rng.integers(60, 200)), 25)
        cv2.ellipse(m, (cx + 60, cy + 80), axes, float(rng.uniform(0, 90)), 0, 360, 1, -1)
        out.append(m.astype(np.float32))
    return out


def targets_row() -> str:
    from erasekit.methods.osor.train.discriminator import PatchTargets

    masks = torch.from_numpy(np.stack(savp_like_masks(16, 512, 848)))[:, None]
    grids = [(64, 106), (32, 53), (16, 27), (8, 14)]  # strides 8..64 of a 512×848 image (ceil halving)
    authors = PatchTargets("occupancy")(masks, grids)
    exact = PatchTargets("exact_occupancy")(masks, grids)
    diffs = torch.cat([(a - e).abs().flatten() for a, e in zip(authors, exact)])
    return (f"| discriminator.targets=exact_occupancy | patch targets, 512×848 | max {diffs.max():.4f}, "
            f"mean {diffs.mean():.5f} |")


def blur_row() -> str:
    from erasekit.methods.osor.train.discriminator import BlurPool2d

    x = torch.randn(4, 64, 64, 106, generator=torch.Generator().manual_seed(0))
    a, e = BlurPool2d(64)(x), BlurPool2d(64, kind="erasekit")(x)
    rel = ((a - e).norm() / a.norm()).item()
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 64, 64, 64).contiguous()
    border = (BlurPool2d(64)(ramp) - BlurPool2d(64, kind="erasekit")(ramp))[..., :, -1].abs().max().item()
    return (f"| discriminator.blur=erasekit | BlurPool output, N(0,1) features | relative L2 {rel:.3f}; "
            f"last column of a 0→1 ramp off by {border:.3f} |")


def vae_rows(vae_path: str | None) -> list[str]:
    from diffusers import AutoencoderKL

    from erasekit.backbones import latents as L
    from erasekit.convert import image_to_tensor
    from erasekit.data.paired import PairedDataset
    from erasekit.data.synthetic import generate_synthetic_dataset

    if vae_path:
        vae, which = AutoencoderKL.from_pretrained(vae_path, subfolder="vae"), "the toy's pretrained VAE"
    else:
        from erasekit.testing import build_tiny_pipeline

        vae, which = build_tiny_pipeline("sdxl-inpaint", seed=0).vae, "the tiny random VAE"
    vae.eval()
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_synthetic_dataset(Path(tmp) / "s", 16, size=64, seed=5)
        images = image_to_tensor(np.stack([s.image for s in PairedDataset(data)]))
    with torch.no_grad():
        mode32 = L.encode(vae, images)
        gens = [torch.Generator().manual_seed(i) for i in range(len(images))]
        sample32 = L.encode(vae, images, generator=gens, sample=True)  # type: ignore[arg-type]
        vae16 = vae.to(torch.bfloat16)
        gens = [torch.Generator().manual_seed(i) for i in range(len(images))]
        sample16 = L.encode(vae16, images.to(torch.bfloat16), generator=gens, sample=True).float()  # type: ignore[arg-type]
        vae.to(torch.float32)
    std = sample16.std().item()
    return [
        (f"| vae_posterior=mode | latent, mean abs(sample − mode) / std(z) ({which}) | "
         f"{(sample32 - mode32).abs().mean().item() / std:.4f} |"),
        (f"| vae_dtype=fp32 | latent, mean abs(bf16 − fp32) / std(z), same posterior draw ({which}) | "
         f"{(sample16 - sample32).abs().mean().item() / std:.4f} |"),
    ]


def schedule_rows() -> list[str]:
    from erasekit.data.synthetic import generate_synthetic_dataset
    from erasekit.methods.osor.train.config import OsorTrainConfig
    from erasekit.methods.osor.train.trainer import OsorTrainer
    from erasekit.testing import write_tiny_pipeline
    from erasekit.testing.training import write_tiny_openclip_convnext

    rows, times = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = write_tiny_pipeline("sdxl-inpaint", root / "model")
        data = generate_synthetic_dataset(root / "data", 8, size=64, seed=0)
        trunk = write_tiny_openclip_convnext(root / "trunk")
        for schedule in ("alternate", "joint"):
            cfg = OsorTrainConfig(
                backbone="sdxl", phase=1, model=str(model), output_dir=str(root / schedule),
                data={"path": str(data), "resolution": 64}, lora={"rank": 4},
                discriminator={"trunk": str(trunk), "hidden": 16}, loss={"perceptual": 0.0}, max_steps=6,
                global_batch_size=2, per_device_batch_size=2, mixed_precision="no", device="cpu",
                gradient_checkpointing=False, schedule=schedule, checkpoint_every=1000, log_every=1000,
            )
            trainer = OsorTrainer(cfg)
            calls = {"n": 0}
            forward = trainer.generator_forward

            def counting(*args, _f=forward, _c=calls):
                _c["n"] += 1
                return _f(*args)

            trainer.generator_forward = counting  # type: ignore[method-assign]
            batches = iter(trainer._loader(0))
            trainer.train_step(batches, 0)  # warm-up
            start, calls["n"] = time.perf_counter(), 0
            for step in range(1, 6):
                trainer.train_step(batches, step)
            times[schedule] = (time.perf_counter() - start) / 5
            rows.append((schedule, calls["n"] / 5, trainer.micro_batches_per_step()))
    alt = times["alternate"]
    return [f"| schedule={s} | generator forwards / batches per step | {f:.0f} / {b}; "
            f"{times[s]:.3f} s per step ({times[s] / alt:.2f}× alternate) |" for s, f, b in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", default=None, help="a diffusers folder to take vae/ from (default tiny)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| option (erasekit's former choice) | measured on | difference from the authors' default |")
    print("|---|---|---|")
    for row in [targets_row(), blur_row(), *vae_rows(args.vae), *schedule_rows()]:
        print(row, flush=True)


if __name__ == "__main__":
    main()

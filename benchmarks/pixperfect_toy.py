"""PixPerfect Table 4 in miniature, on a CPU: does the discriminative loss, and does pooling, help?

**A toy, honestly labelled.** The paper trains a 41M network on ~300M images at 1024² for a week on 32 A100s
and evaluates FLUX-Fill outputs on MISATO. Here:

* photos: scikit-image's bundled photos (and Debian's wallpaper packages when installed under
  /usr/share/backgrounds, /usr/share/wallpapers or /usr/share/images/desktop-base). Training photos and
  held-out evaluation photos are disjoint (chelsea and the motorcycle are held out);
* pairs: ``--crop`` px crops with simulated artifacts (``artifacts.simulate_artifacts``, Table 5, no VAE
  module) on CoModGAN-style masks; evaluation pairs come from the held-out photos with fixed seeds;
* refiners: a small generator of the same architecture (``--width``), trained with erasekit's trainer for
  ``--steps`` steps at batch ``--batch`` (minutes of CPU), twice from the same seed: with the pixel-space loss
  only (Eq. 1: L_disc never switched on) and with the discriminative loss added after a warm-up of a third of
  the steps (Eq. 4). The perceptual term is LPIPS-VGG when its weights resolve, else the trainer's stand-in;
* rows (Table 4's): paste-back only (x_gen as given: the simulated artifacts, pasted back), the refiner with
  the pixel loss, + the discriminative loss, + inference-time pooling (N = 4);
* columns: L1 (×255, mean absolute error per channel, averaged over pairs) and PSNR (from the MSE pooled
  over pairs) inside the mask and in a boundary band (the
  mask's pixels within ``--band`` px of its edge, where seams are), and LPIPS (whole image) when its weights
  resolve. Outside the mask every row equals the truth (paste-back), so inside-mask numbers are the signal.

    python benchmarks/pixperfect_toy.py                  # ~15 minutes on 2 loaded cores
    python benchmarks/pixperfect_toy.py --steps 60 --eval 8   # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from erasekit import io
from erasekit.hd import paste_back
from erasekit.refiners import load_refiner
from erasekit.refiners.pixperfect.artifacts import free_form_mask, simulate_artifacts
from erasekit.refiners.pixperfect.network import PixPerfectConfig, PixPerfectGenerator, count_parameters
from erasekit.refiners.pixperfect.train.config import load_config, packaged_config
from erasekit.refiners.pixperfect.train.trainer import PixPerfectTrainer

TRAIN = ("astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
HELD_OUT = ("chelsea", "stereo_motorcycle")
WALLPAPER_DIRS = ("/usr/share/backgrounds", "/usr/share/wallpapers", "/usr/share/images/desktop-base")


def skimage_photo(name: str) -> np.ndarray:
    photo = getattr(data, name)()
    return np.ascontiguousarray(photo[0] if isinstance(photo, tuple) else photo)[..., :3]


def wallpapers() -> list[Path]:
    found = []
    for folder in map(Path, WALLPAPER_DIRS):
        if folder.is_dir():
            found += [p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    return sorted(found)


def training_folder(folder: Path) -> tuple[Path, list[str]]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name in TRAIN:
        io.write_image(folder / f"{name}.png", skimage_photo(name))
        names.append(name)
    for i, path in enumerate(wallpapers()):
        pixels = io.read_image(path).pixels
        scale = 1024 / max(pixels.shape[:2])
        if scale < 1:
            pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        io.write_image(folder / f"wallpaper_{i}.png", pixels)
        names.append(path.name)
    return folder, names


def evaluation_pairs(n: int, crop: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(x_gen, x_gt, mask) uint8/uint8/float32 from held-out photos, seeded."""
    pairs = []
    for i in range(n):
        rng = np.random.default_rng([12345, i])
        photo = skimage_photo(HELD_OUT[i % len(HELD_OUT)])
        top = int(rng.integers(0, photo.shape[0] - crop + 1))
        left = int(rng.integers(0, photo.shape[1] - crop + 1))
        x = np.ascontiguousarray(photo[top : top + crop, left : left + crop])
        mask = free_form_mask(x.shape[:2], rng, hole_range=(0.1, 0.4))
        pair = simulate_artifacts(x, mask, rng)

        def u8(a):
            return np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)

        pairs.append((u8(pair.x_gen), u8(pair.x_gt), pair.mask.astype(np.float32)))
    return pairs


def network_config(width: int) -> PixPerfectConfig:
    return PixPerfectConfig(
        width=width, max_width=4 * width, num_downsamples=3, ffc_blocks=1, style_dim=4 * width
    )


def train(args, photos: Path, out: Path, disc: bool) -> tuple[str, float, str]:
    net = network_config(args.width)
    cfg = load_config(packaged_config(), {
        "data_dir": str(photos), "output_dir": str(out), "crop": args.crop, "batch_size": args.batch,
        "max_steps": args.steps, "warmup_steps": args.steps // 3 if disc else args.steps + 1,
        "checkpoint_every": args.steps, "discriminator_width": 16, "network": net.to_dict(), "seed": 0,
    })
    t0 = time.perf_counter()
    trainer = PixPerfectTrainer(cfg, cpu=True)
    result = trainer.train(progress=False)
    return str(result.weights_dir), time.perf_counter() - t0, trainer.perceptual_name


def band_of(mask: np.ndarray, width: int) -> np.ndarray:
    inside = (mask > 0).astype(np.uint8)
    eroded = cv2.erode(inside, np.ones((2 * width + 1, 2 * width + 1), np.uint8))
    return (inside > 0) & (eroded == 0)


def scores(out: np.ndarray, gt: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """(L1, MSE) over the region's pixels and channels; PSNR is taken from the MSE pooled over all pairs,
    so a pair the simulation left unchanged inside the mask (MSE 0) does not make the mean infinite."""
    diff = out.astype(np.float64)[region] - gt.astype(np.float64)[region]
    return float(np.abs(diff).mean()), float((diff**2).mean())


def psnr(mse: list[float]) -> float:
    mean = float(np.mean(mse))
    return 10 * np.log10(255.0**2 / mean) if mean > 0 else float("inf")


def lpips_metric():
    from erasekit.eval.features import load_lpips
    from erasekit.eval.metrics import LPIPSMetric
    from erasekit.types import MissingWeightsError

    try:
        return LPIPSMetric(load_lpips().model), None
    except MissingWeightsError as exc:
        return None, str(exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--eval", type=int, default=24, help="held-out evaluation pairs")
    parser.add_argument("--band", type=int, default=6, help="boundary band width in px (inside the mask)")
    parser.add_argument("--pool", type=int, default=4)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="pp-toy-"))
    photos, names = training_folder(work / "photos")
    params = count_parameters(PixPerfectGenerator(network_config(args.width)))
    pixel_weights, pixel_s, perceptual = train(args, photos, work / "pixel", disc=False)
    disc_weights, disc_s, _ = train(args, photos, work / "disc", disc=True)
    pairs = evaluation_pairs(args.eval, args.crop)
    lpips, lpips_missing = lpips_metric()
    rows = {
        "paste-back only (x_gen)": None,
        "refiner, pixel loss": load_refiner("pixperfect", weights=pixel_weights, context=args.crop),
        "refiner, + discriminative loss": load_refiner("pixperfect", weights=disc_weights, context=args.crop),
        f"+ inference-time pooling (N = {args.pool})": load_refiner(
            "pixperfect", weights=disc_weights, context=args.crop, pool=args.pool, seed=0),
    }
    print(f"Toy Table 4: {args.steps} steps × batch {args.batch} at {args.crop}², a {params / 1e6:.2f}M "
          f"generator (width {args.width}); perceptual term: {perceptual}; training {pixel_s:.0f} s + "
          f"{disc_s:.0f} s on this CPU.\nTraining photos: {', '.join(names)}; held out: "
          f"{', '.join(HELD_OUT)} ({args.eval} pairs, simulated artifacts, no VAE module). "
          "Not the paper's setting: a toy.\n")
    header = "| output | L1 mask ↓ | PSNR mask ↑ | L1 band ↓ | PSNR band ↑ |"
    header += " LPIPS ↓ |" if lpips else ""
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for label, refiner in rows.items():
        per: dict[str, list[float]] = {"l1m": [], "pm": [], "l1b": [], "pb": [], "lp": []}
        for x_gen, x_gt, mask in pairs:
            out = x_gen if refiner is None else paste_back(x_gen, refiner(x_gen, x_gen, mask), mask)
            l1m, pm = scores(out, x_gt, mask > 0)
            l1b, pb = scores(out, x_gt, band_of(mask, args.band))
            per["l1m"].append(l1m)
            per["pm"].append(pm)
            per["l1b"].append(l1b)
            per["pb"].append(pb)
            if lpips is not None:
                per["lp"].append(lpips.distance(out, x_gt))
        cells = [f"{np.mean(per['l1m']):.2f}", f"{psnr(per['pm']):.2f}", f"{np.mean(per['l1b']):.2f}",
                 f"{psnr(per['pb']):.2f}"] + ([f"{np.mean(per['lp']):.4f}"] if lpips else [])
        print(f"| {label} | " + " | ".join(cells) + " |")
    if lpips_missing:
        print(f"\nLPIPS not shown: {lpips_missing}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

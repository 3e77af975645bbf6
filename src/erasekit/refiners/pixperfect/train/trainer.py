"""The PixPerfect training loop (Sec. 3, 4.1, App. C) on Accelerate.

Each step draws a batch of crops from the image folder, a CoModGAN-style mask per crop and simulated artifacts
(:mod:`..artifacts`), adds Gaussian noise to the generator's input (Sec. 3.3), then takes one generator step
on Eq. 4 (Eq. 1 only during the warm-up) and one discriminator step on D and D' with R1 (App. C), both with
Adam at a constant learning rate.

Determinism and resume: every random draw of a step comes from generators seeded by (seed, step), so a run
resumed from a checkpoint continues exactly as the uninterrupted run would (tested). Checkpoints:
``output_dir/checkpoints/step-NNNNNNN/`` (``accelerator.save_state`` + ``trainer_state.json``); the newest is
resumed automatically. Weights in the refiner's format go to ``output_dir/pixperfect/`` at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ....training.checkpoints import (
    TrainResult,
    checkpoint_dir,
    checkpoint_step,
    latest_checkpoint,
    log_metrics,
    mark_complete,
    open_metrics,
)
from ....types import InvalidInputError
from ..artifacts import free_form_mask, simulate_artifacts
from ..losses import MaskConditionedDiscriminator, PerceptualLoss, PixPerfectLoss
from ..network import PixPerfectGenerator
from ..tone_map import DiscriminativeToneMap
from ..weights import save_weights
from .config import PixPerfectTrainConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def image_files(folder: str | Path) -> list[Path]:
    files = sorted(p for p in Path(folder).expanduser().rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvalidInputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return files


def default_perceptual(choice: str) -> tuple[PerceptualLoss, str]:
    """LPIPS-VGG through erasekit's module when its weights resolve; else the test stand-in (``auto``)."""
    from ....testing.training import TinyPerceptual
    from ....training.perceptual import load_lpips_vgg
    from ....types import MissingWeightsError

    if choice == "stand-in":
        return TinyPerceptual(), "stand-in (not LPIPS)"
    try:
        return load_lpips_vgg(), "lpips-vgg"
    except MissingWeightsError:
        if choice == "lpips":
            raise
        return TinyPerceptual(), "stand-in (not LPIPS: LPIPS-VGG weights not found)"


def _random_crop(
    image: np.ndarray, size: int, rng: np.random.Generator, *, around: np.ndarray | None = None
) -> np.ndarray:
    """A size×size crop (small images upscaled first); with ``around`` (a mask of the image's size), the
    crop holds a random one of its nonzero pixels."""
    import cv2

    height, width = image.shape[:2]
    if min(height, width) < size:  # upscale small photos so a crop fits
        scale = size / min(height, width)
        shape = (max(size, round(width * scale)), max(size, round(height * scale)))
        if around is not None:
            around = cv2.resize(around, shape, interpolation=cv2.INTER_NEAREST)
        # Channels beyond 4 (an image stacked with its pair) are resized in groups OpenCV accepts.
        image = np.concatenate(
            [cv2.resize(np.ascontiguousarray(image[..., i : i + 3]), shape, interpolation=cv2.INTER_CUBIC)
             .reshape(shape[1], shape[0], -1) for i in range(0, image.shape[2], 3)], axis=2)
        height, width = image.shape[:2]
    if around is not None and np.any(around > 0):
        ys, xs = np.nonzero(around > 0)
        k = int(rng.integers(0, len(ys)))
        top = int(rng.integers(max(0, ys[k] - size + 1), min(ys[k], height - size) + 1))
        left = int(rng.integers(max(0, xs[k] - size + 1), min(xs[k], width - size) + 1))
        return np.ascontiguousarray(image[top : top + size, left : left + size])
    top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    return np.ascontiguousarray(image[top : top + size, left : left + size])


class PixPerfectTrainer:
    def __init__(
        self,
        config: PixPerfectTrainConfig,
        *,
        perceptual: PerceptualLoss | None = None,
        cpu: bool | None = None,
    ):
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration

        if config.data_dir is None:
            raise InvalidInputError("set data_dir (a folder of photos), e.g. --set data_dir=/photos")
        self.config = cfg = config
        self.output_dir = Path(cfg.output_dir).expanduser()
        self.files = image_files(config.data_dir)
        self.accelerator = acc = Accelerator(
            cpu=not torch.cuda.is_available() if cpu is None else cpu,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir)),
        )
        torch.manual_seed(cfg.seed)  # initial weights
        generator = PixPerfectGenerator(cfg.network_config())
        d_pixel = MaskConditionedDiscriminator(cfg.discriminator_width)
        d_disc = MaskConditionedDiscriminator(cfg.discriminator_width)
        if perceptual is None:
            perceptual, self.perceptual_name = default_perceptual(cfg.perceptual)
        else:
            self.perceptual_name = type(perceptual).__name__
        self.loss = PixPerfectLoss(
            perceptual,
            d_pixel,
            d_disc,
            tone_map=DiscriminativeToneMap(cfg.tone_degree),
            weights=cfg.loss.weights(),
        ).to(acc.device)
        opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=cfg.betas)
        opt_d = torch.optim.Adam([*d_pixel.parameters(), *d_disc.parameters()], lr=cfg.lr, betas=cfg.betas)
        self.generator, self.d_pixel, self.d_disc, self.opt_g, self.opt_d = acc.prepare(
            generator, d_pixel, d_disc, opt_g, opt_d
        )
        self.vae = self._load_vae(cfg.vae)
        self.real_dir, self.real_ids = self._real_pairs()
        self.step = 0

    def _real_pairs(self) -> tuple[Path | None, list[str]]:
        """The real-pair folder and its complete pairs (produced first when a dataset and method are set)."""
        from .real_pairs import pair_ids, produce_real_pairs

        rp = self.config.real_pairs
        if rp.fraction == 0:
            return None, []
        folder = Path(rp.dir).expanduser() if rp.dir else self.output_dir / "real_pairs"
        if rp.dataset is not None:
            if rp.method is None:
                raise InvalidInputError("real_pairs.dataset needs real_pairs.method (a registered method)")
            if self.accelerator.is_main_process:
                produce_real_pairs(rp.dataset, folder, rp.method, layout=rp.layout, load_options=rp.load,
                                   call_options=rp.options, mask=rp.mask, seed=self.config.seed,
                                   limit=rp.limit)
            self.accelerator.wait_for_everyone()
        ids = pair_ids(folder)
        if not ids:
            raise InvalidInputError(
                f"real_pairs.fraction is {rp.fraction} but {folder} holds no pairs; set real_pairs.dataset "
                "and real_pairs.method to produce them"
            )
        return folder, ids

    def _real_item(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """A crop of a random real pair holding pixels both inside and outside the mask, or None."""
        from .real_pairs import load_pair

        assert self.real_dir is not None
        pair = load_pair(self.real_dir, self.real_ids[int(rng.integers(0, len(self.real_ids)))])
        mask_u8 = (pair.mask[..., None] * 255).astype(np.uint8)
        stacked = np.concatenate([pair.x_gen, pair.x_gt, mask_u8], axis=2)
        crop = _random_crop(stacked, self.config.crop, rng, around=pair.mask)
        x_gen, x_gt = crop[..., :3], crop[..., 3:6]
        mask = (crop[..., 6] > 127).astype(np.float32)
        if not 0 < mask.mean() < 1:
            return None
        return x_gen.astype(np.float32) / 255.0, x_gt.astype(np.float32) / 255.0, mask

    def _load_vae(self, path: str | None) -> Any:
        if path is None:
            return None
        from diffusers import AutoencoderKL

        return AutoencoderKL.from_pretrained(path).eval().requires_grad_(False)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The step's batch, a pure function of (seed, step)."""
        from ....io import read_image

        rng = np.random.default_rng([self.config.seed, step])
        gens, gts, masks = [], [], []
        for _ in range(self.config.batch_size):
            if self.real_ids and rng.random() < self.config.real_pairs.fraction:
                real = self._real_item(rng)
                if real is not None:
                    gens.append(real[0])
                    gts.append(real[1])
                    masks.append(real[2])
                    continue
            photo = read_image(self.files[int(rng.integers(0, len(self.files)))]).pixels
            crop = _random_crop(photo, self.config.crop, rng)
            mask = free_form_mask(crop.shape[:2], rng)
            pair = simulate_artifacts(crop, mask, rng, vae=self.vae, inpainter=self.config.inpainter)
            gens.append(pair.x_gen)
            gts.append(pair.x_gt)
            masks.append(pair.mask)
        device = self.accelerator.device

        def stack(arrays: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.stack(arrays)).to(device)

        return {
            "x_gen": stack(gens).permute(0, 3, 1, 2),
            "x_gt": stack(gts).permute(0, 3, 1, 2),
            "mask": stack(masks)[:, None],
        }

    def train_step(self, step: int) -> dict[str, float]:
        cfg, acc = self.config, self.accelerator
        batch = self.batch(step)
        torch_rng = torch.Generator(device="cpu").manual_seed(cfg.seed * 1_000_003 + step)
        noise = torch.randn(batch["x_gen"].shape, generator=torch_rng).to(acc.device) * cfg.input_noise
        use_disc = step >= cfg.warmup_steps
        prediction = self.generator((batch["x_gen"] + noise).clamp(0, 1), batch["mask"])
        fit_seed = int(torch.randint(0, 2**62, (1,), generator=torch_rng))
        g_loss, terms = self.loss.generator_loss(
            prediction,
            batch["x_gt"],
            batch["mask"],
            use_disc=use_disc,
            generator=torch.Generator().manual_seed(fit_seed),
        )
        self.opt_g.zero_grad(set_to_none=True)
        acc.backward(g_loss)
        self.opt_g.step()
        d_loss = self.loss.discriminator_loss(
            prediction.detach(),
            batch["x_gt"],
            batch["mask"],
            use_disc=use_disc,
            generator=torch.Generator().manual_seed(fit_seed),
        )
        self.opt_d.zero_grad(set_to_none=True)
        acc.backward(d_loss)
        self.opt_d.step()
        return {
            "step": step,
            **{k: float(v.detach()) for k, v in terms.items()},
            "d_loss": float(d_loss.detach()),
        }

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        folder = checkpoint_dir(self.output_dir, self.step)
        self.accelerator.save_state(str(folder))
        if self.accelerator.is_main_process:
            mark_complete(folder, self.step)
        return folder

    def resume(self) -> Path | None:
        folder = latest_checkpoint(self.output_dir)
        if folder is None:
            return None
        self.accelerator.load_state(str(folder))
        self.step = checkpoint_step(folder)
        return folder

    def train(self, *, stop_after: int | None = None, progress: bool = True) -> TrainResult:
        from tqdm.auto import tqdm

        cfg = self.config
        resumed = self.resume()
        end = cfg.max_steps if stop_after is None else min(cfg.max_steps, self.step + stop_after)
        metrics_path = open_metrics(self.output_dir, self.step)
        bar = tqdm(total=end, initial=self.step, disable=not progress, desc="pixperfect")
        while self.step < end:
            record = self.train_step(self.step)
            self.step += 1
            log_metrics(metrics_path, {**record, "step": self.step})  # steps completed, as the other trainers
            bar.update(1)
            bar.set_postfix(loss=f"{record['total']:.3f}")
            if self.step % cfg.checkpoint_every == 0 or self.step == end:
                self.save_checkpoint()
        bar.close()
        weights_dir = save_weights(
            self.accelerator.unwrap_model(self.generator), self.output_dir / "pixperfect"
        )
        return TrainResult(self.step, self.output_dir, weights_dir, metrics_path,
                           checkpoint_step(resumed) if resumed else 0)


def train_pixperfect(config: PixPerfectTrainConfig, **kwargs: Any) -> TrainResult:
    progress = kwargs.pop("progress", True)
    stop_after = kwargs.pop("stop_after", None)
    return PixPerfectTrainer(config, **kwargs).train(stop_after=stop_after, progress=progress)

"""Toy-scale Table 3 of EraDiff (arXiv:2503.07026): CRO fine-tuning and SRA sampling, each on and off, on
generated scenes, at denoising strength 1.0 and 0.6 (Sec. 5.4's leak-the-object setting). CPU, minutes.

Honestly a toy, not the paper's experiment:

* data: generated 32×32 scenes: a smooth two-colour background with a sinusoidal texture (x_ori) and one
  vivid ellipse or rectangle pasted on it (x_obj); the mask is the pasted shape. Held-out scenes come from
  other seeds.
* model: a tiny **pixel-space** inpainting UNet (diffusers' ``UNet2DConditionModel``, 7 input channels =
  x_t, mask, masked image; self-attention at 16×16 and 8×8; a constant zero text context), no VAE.
* "SD2-Inpaint" stand-in: the UNet pretrained with the standard inpainting objective (ε-prediction, Eq. 3)
  on x_obj with the object's own mask half of the time and random boxes otherwise — like SD2-Inpaint it
  learns to fill an object-shaped hole with an object ("the model's optimization objective is to reconstruct
  these objects rather than eliminate them", Sec. 4.1).
* fine-tuning from it, same steps, batches, seed and learning rate for both: **standard** (ε-prediction with
  x_0 = x_ori, the removal target) vs **CRO** (Eq. 6–9 through ``erasekit.methods.eradiff.train.cro``, the
  functions the real trainer uses). Adam at 3e-4, not the paper's 3e-6 (a randomly initialised toy).
* sampling: DDIM, ``--steps`` steps, no guidance, the same noise for every row; strength 1 starts from pure
  noise, strength 0.6 from the noised x_obj (the object leaks into the start); SRA through erasekit's
  processors (``MaskedSelfAttentionRule`` with ``vae_factor=1``: pixel-space tokens); paste-back outside
  the mask.

Measures on the held-out scenes, inside the mask (pixel values 0–255):

* ``L1 to x_ori``: mean absolute difference of the fill from the true background (↓);
* ``object back``: share of scenes whose fill is closer (L1) to the removed object than to the background (↓);
* ``foreign fill``: share of scenes whose fill is further from the background than half the object's own
  contrast, L1(fill, x_ori) > ½·L1(x_obj, x_ori): the removed object back *or* a new one (↓).

    python benchmarks/eradiff_toy.py --quick     # ~4 CPU minutes (12 min wall on a loaded 2-core machine)
    python benchmarks/eradiff_toy.py             # longer training, more held-out scenes
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

from erasekit.diffusion.attention import LayerSelector, installed_processors
from erasekit.methods.eradiff.attention import MaskedSelfAttentionRule, processor_factory
from erasekit.methods.eradiff.train import cro

SIZE = 32
SETTINGS = {
    "quick": {"pretrain": 300, "finetune": 150, "batch": 8, "test": 48, "steps": 20},
    "full": {"pretrain": 1500, "finetune": 600, "batch": 32, "test": 256, "steps": 50},
}
LR_PRETRAIN, LR_FINETUNE = 1e-3, 3e-4
GAMMA_MAX = 100


# ------------------------------------------------------------------------------------------------------------
# Scenes
# ------------------------------------------------------------------------------------------------------------
def scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_ori, x_obj, mask): float32 H×W×3 in [0, 1] twice, and the pasted shape as float32 H×W."""
    yy, xx = np.mgrid[:SIZE, :SIZE] / (SIZE - 1)
    angle, wave = rng.uniform(0, 2 * np.pi, 2)
    ramp = np.clip(0.5 + (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)), 0, 1)[..., None]
    low, high = rng.uniform(0.25, 0.75, (2, 3))
    texture = 0.06 * np.sin(2 * np.pi * rng.uniform(2, 4) * (np.cos(wave) * xx + np.sin(wave) * yy)
                            + rng.uniform(0, 2 * np.pi))[..., None]
    x_ori = np.clip(low * (1 - ramp) + high * ramp + texture, 0, 1)
    cy, cx = rng.uniform(8, SIZE - 8, 2)
    ry, rx = rng.uniform(3, 7, 2)
    if rng.random() < 0.5:
        mask = ((yy * (SIZE - 1) - cy) / ry) ** 2 + ((xx * (SIZE - 1) - cx) / rx) ** 2 <= 1
    else:
        mask = (np.abs(yy * (SIZE - 1) - cy) <= ry) & (np.abs(xx * (SIZE - 1) - cx) <= rx)
    hue = rng.uniform(0, 1)
    colour = np.clip(np.abs(((hue * 6 + np.array([0, 4, 2])) % 6) - 3) - 1, 0, 1) * 0.9 + 0.05  # vivid
    x_obj = x_ori.copy()
    x_obj[mask] = colour
    return x_ori.astype(np.float32), x_obj.astype(np.float32), mask.astype(np.float32)


def scenes(n: int, seed: int) -> dict[str, torch.Tensor]:
    """A batch: ``x_ori``, ``x_obj`` (N, 3, H, W) in [-1, 1]; ``mask`` (N, 1, H, W)."""
    rng = np.random.default_rng(seed)
    ori, obj, mask = zip(*(scene(rng) for _ in range(n)), strict=True)
    to = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2) * 2 - 1
    return {"x_ori": to(ori), "x_obj": to(obj), "mask": torch.from_numpy(np.stack(mask))[:, None]}


def box_masks(n: int, rng: np.random.Generator) -> torch.Tensor:
    masks = torch.zeros(n, 1, SIZE, SIZE)
    for m in masks:
        h, w = rng.integers(6, 18, 2)
        top, left = rng.integers(0, SIZE - h), rng.integers(0, SIZE - w)
        m[:, top:top + h, left:left + w] = 1
    return masks


# ------------------------------------------------------------------------------------------------------------
# Model and training
# ------------------------------------------------------------------------------------------------------------
def tiny_unet(seed: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=SIZE, in_channels=7, out_channels=3, layers_per_block=1, block_out_channels=(16, 32, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8)


def context(n: int) -> torch.Tensor:
    return torch.zeros(n, 1, 16)  # no text: a constant context for the cross-attention layers


def model_input(x_t: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """The inpainting UNet's input: [x_t, mask, masked image], as SD2-Inpaint's 9 channels (pixels here)."""
    return torch.cat([x_t, mask, image * (mask < 0.5)], dim=1)


def eps_loss(unet, x0, mask, image, alpha_bar, g: torch.Generator) -> torch.Tensor:
    """Eq. 3: the standard ε-prediction objective at t ~ U{1..T} (diffusers' index t − 1)."""
    t = torch.randint(1, len(alpha_bar), (x0.shape[0],), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    x_t = cro.noised(x0, alpha_bar[t].float(), noise)
    eps = unet(model_input(x_t, mask, image), t - 1, encoder_hidden_states=context(len(t))).sample
    return F.mse_loss(eps, noise)


def cro_step_loss(unet, batch, alpha_bar, g: torch.Generator) -> torch.Tensor:
    """Eq. 6–9 (Algorithm 1) with the same functions as erasekit's CRO trainer."""
    x_ori, x_obj, mask = batch["x_ori"], batch["x_obj"], batch["mask"]
    t, s = cro.sample_timesteps(x_ori.shape[0], len(alpha_bar) - 1, GAMMA_MAX, g)
    noise = torch.randn(x_ori.shape, generator=g)
    x_t, x_s = cro.chain_states(x_ori, x_obj, noise, t, s, alpha_bar)
    x_t, x_s = x_t.float(), x_s.float()
    eps = unet(model_input(x_t, mask, x_obj), t - 1, encoder_hidden_states=context(len(t))).sample
    return cro.cro_loss(x_s, cro.ddim_jump(x_t, eps, alpha_bar[t].float(), alpha_bar[s].float()))


def train(unet, steps: int, lr: float, loss_fn, batch_size: int, seed: int, label: str) -> None:
    optimizer = torch.optim.Adam(unet.parameters(), lr=lr)
    unet.train()
    start, losses = time.perf_counter(), []
    for step in range(steps):
        g = torch.Generator().manual_seed(seed * 100_000 + step)
        loss = loss_fn(unet, scenes(batch_size, seed * 100_000 + step), g,
                       np.random.default_rng(seed * 100_000 + step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    unet.eval()
    print(f"# {label}: {steps} steps in {time.perf_counter() - start:.0f} s, "
          f"loss {np.mean(losses[:10]):.4f} → {np.mean(losses[-10:]):.4f}", flush=True)


# ------------------------------------------------------------------------------------------------------------
# Sampling and measures
# ------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def sample(unet, batch, *, strength: float, sra: bool, steps: int, seed: int) -> torch.Tensor:
    """DDIM inpainting as diffusers' inpainting pipeline does it (strength 1: pure noise; else the noised
    image at the strength's first timestep), then paste-back; (N, 3, H, W) in [-1, 1]."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps[steps - min(int(steps * strength), steps):]
    image, mask = batch["x_obj"], batch["mask"]
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(seed))
    x = noise if strength >= 1 else scheduler.add_noise(image, noise, timesteps[:1])
    rule = MaskedSelfAttentionRule(mask[:, 0], vae_factor=1) if sra else None
    with (installed_processors(unet, LayerSelector(kind="self"), factory=processor_factory(rule))
          if rule is not None else _nothing()):
        for t in timesteps:
            eps = unet(model_input(x, mask, image), t, encoder_hidden_states=context(len(x))).sample
            x = scheduler.step(eps, t, x).prev_sample
    return mask * x.clamp(-1, 1) + (1 - mask) * image


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def measures(fill: torch.Tensor, batch) -> dict[str, float]:
    to255 = lambda x: (x.clamp(-1, 1) + 1) * 127.5
    fill, x_ori, x_obj, mask = to255(fill), to255(batch["x_ori"]), to255(batch["x_obj"]), batch["mask"]
    area = mask.sum(dim=(1, 2, 3)) * 3

    def l1(a, b):
        return ((a - b).abs() * mask).sum(dim=(1, 2, 3)) / area

    to_bg, to_obj, contrast = l1(fill, x_ori), l1(fill, x_obj), l1(x_obj, x_ori)
    return {"l1": float(to_bg.mean()), "back": float((to_obj < to_bg).float().mean()),
            "foreign": float((to_bg > 0.5 * contrast).float().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: tiny ops gain nothing from more, and a loaded machine's "
                             "spinning threads cost a lot)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = SETTINGS["quick" if args.quick else "full"]
    from diffusers import DDPMScheduler

    alpha_bar = cro.alphas_bar_with_clean(DDPMScheduler(num_train_timesteps=1000,
                                                        beta_schedule="linear").alphas_cumprod)
    started = time.perf_counter()

    def pretrain_loss(unet, batch, g, rng):  # SD2-Inpaint stand-in: reconstruct x_obj, object masks half
        n = batch["x_obj"].shape[0]
        use_object = torch.rand(n, generator=g) < 0.5
        mask = torch.where(use_object.view(-1, 1, 1, 1), batch["mask"], box_masks(n, rng))
        return eps_loss(unet, batch["x_obj"], mask, batch["x_obj"], alpha_bar.float(), g)

    def standard_loss(unet, batch, g, rng):  # standard fine-tune: ε-prediction towards x_ori
        return eps_loss(unet, batch["x_ori"], batch["mask"], batch["x_obj"], alpha_bar.float(), g)

    def cro_loss(unet, batch, g, rng):
        return cro_step_loss(unet, batch, alpha_bar, g)

    base = tiny_unet(args.seed)
    train(base, cfg["pretrain"], LR_PRETRAIN, pretrain_loss, cfg["batch"], args.seed + 1, "pretrain (base)")
    models = {"base (no fine-tune)": base}
    for label, loss_fn in (("standard fine-tune", standard_loss), ("CRO fine-tune", cro_loss)):
        model = copy.deepcopy(base)
        train(model, cfg["finetune"], LR_FINETUNE, loss_fn, cfg["batch"], args.seed + 2, label)
        models[label] = model

    held_out = scenes(cfg["test"], seed=10_000 + args.seed)
    rows = ["| model | attention | strength | L1 to x_ori ↓ | object back ↓ | foreign fill ↓ |",
            "|---|---|---|---|---|---|"]
    m = measures(held_out["x_obj"], held_out)
    rows.append(f"| (input: object left in) | – | – | {m['l1']:.1f} | {m['back']:.2f} | {m['foreign']:.2f} |")
    for label, model in models.items():
        for strength in (1.0, 0.6):
            for sra in (False, True):
                fill = sample(model, held_out, strength=strength, sra=sra, steps=cfg["steps"], seed=args.seed)
                m = measures(fill, held_out)
                rows.append(f"| {label} | {'SRA' if sra else 'stock'} | {strength} | {m['l1']:.1f} | "
                            f"{m['back']:.2f} | {m['foreign']:.2f} |")
    elapsed = time.perf_counter() - started
    print(f"\nEraDiff Table 3 in miniature (toy, pixel space, {SIZE}² generated scenes, {cfg['test']} "
          f"held-out, {cfg['steps']} DDIM steps, seed {args.seed}; {elapsed:.0f} s in all)")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

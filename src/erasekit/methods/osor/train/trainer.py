"""OSOR training, Phase I and Phase II (Sec. 3.3–3.4, App. B.1), with Hugging Face Accelerate.

What is trained: a peft LoRA on the backbone's denoiser (the authors' target modules and ranks, ``lora_alpha =
rank``, Gaussian init) plus the full terminal layer (SDXL ``conv_out`` / FLUX ``proj_out``, kept in float32;
in Phase II it carries the alpha head), and the discriminator's four patch heads. Everything else is frozen.

One step, as in the paper:

* **generator** — the one-step forward of :mod:`erasekit.methods.osor` (the engine's ``denoise``: Eq. 3–5,
12),
  blended in latent space with the max-pooled conditioning mask (Phase I, Eq. 6) or the predicted alpha (Phase
  II, Eq. 13), decoded to x̂; loss L_G(m_gt) = λ_rec·Eq. 9 + λ_per·LPIPS + λ_adv·Eq. 8 (Eq. 10), plus Eq. 14
  in Phase II. Phase I conditions on m_gt; Phase II on an incomplete mask m_in (one perturbation mode per
  batch, drawn by
  :class:`erasekit.methods.osor.train.conditioning.IncompleteMaskSampler`), while the losses always use m_gt.
* **discriminator** — Eq. 7 with occupancy targets and λ_r1·R1 on the head inputs (Eq. 16), on x̂ detached.

Engineering: Accelerate gives the device, mixed precision (bf16/fp16 autocast, fp16 loss scaling), the process
group and checkpoint/RNG state. Gradients are accumulated by hand (loss / k, step every k micro-batches) and,
with several processes, averaged over processes once per optimizer step (StyleGAN2-style) — the models are not
wrapped in DistributedDataParallel because R1 needs ``autograd.grad`` on head inputs, which DDP does not
support, and because the denoiser is called through the OSOR engine. All randomness of a step (noise, mask
perturbation, batch order, augmentation) is derived from (seed, step), so a run resumed from a checkpoint
continues exactly where it stopped.

Outputs in ``output_dir``: ``checkpoints/step-NNNNNNN/`` (``accelerator.save_state`` + ``trainer_state.json``
+ the
weights in erasekit's OSOR format under ``osor/``), ``osor/`` (final weights; ``erasekit remove --method
osor-sdxl --weights OUTPUT/osor``), ``metrics.jsonl`` and ``config.yaml`` (the resolved config).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ....training.checkpoints import (
    TrainResult,
    checkpoint_dir,
    complete_checkpoints,
    latest_checkpoint,
    log_metrics,
    mark_complete,
    open_metrics,
)
from ....types import InvalidInputError
from .config import OsorTrainConfig
from .discriminator import ConvNextTrunk, OccupancyDiscriminator, PatchTargets
from .losses import (
    alpha_loss,
    discriminator_loss,
    effect_mask_to_latent,
    generator_adversarial_loss,
    masked_l1,
    r1_penalty,
)

logger = logging.getLogger(__name__)

PerceptualLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------------------------------------
# Data: deterministic batches for any step (resume-exact), a common size per batch
# ------------------------------------------------------------------------------------------------------------
class StepBatchSampler:
    """Yields this process's micro-batches of dataset indices from micro-batch ``start`` on, forever.

    Epoch e is a permutation drawn from (seed, e); a global micro-batch holds ``batch_size × num_replicas``
    indices, of which process ``rank`` takes its slice. Items are ``(epoch, index)`` so per-epoch augmentation
    works in worker processes too.
    """

    def __init__(
        self,
        n_items: int,
        batch_size: int,
        *,
        seed: int,
        start: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        self.per_epoch = n_items // (batch_size * num_replicas)
        if self.per_epoch < 1:
            raise InvalidInputError(
                f"dataset has {n_items} samples, fewer than one global batch "
                f"({batch_size} × {num_replicas} processes)"
            )
        self.n, self.bs, self.seed, self.start, self.replicas, self.rank = (
            n_items,
            batch_size,
            seed,
            start,
            num_replicas,
            rank,
        )

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = self.start
        while True:
            epoch, pos = divmod(g, self.per_epoch)
            order = torch.randperm(
                self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch)
            )
            width = self.bs * self.replicas
            chunk = order[pos * width : (pos + 1) * width][self.rank * self.bs : (self.rank + 1) * self.bs]
            yield [(epoch, int(i)) for i in chunk]
            g += 1

    def __len__(self) -> int:  # an endless sampler; DataLoader only needs this for its length hint
        return 2**62


class _EpochIndexed(torch.utils.data.Dataset):
    """Lets the sampler choose the augmentation epoch per item (``(epoch, index)`` keys)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


def _window(extent: np.ndarray, size: int, crop: int) -> int:
    """Start of a ``crop``-long window in ``size`` centred on the masked extent, clamped to the image."""
    idx = np.flatnonzero(extent)
    centre = (idx[0] + idx[-1] + 1) / 2 if len(idx) else size / 2
    return int(min(max(round(centre - crop / 2), 0), size - crop))


def collate_common_size(items: list[dict[str, Any]], multiple: int = 16) -> dict[str, Any]:
    """Stack samples of different sizes by cropping all to the batch's smallest H×W.

    The common size is a multiple of ``multiple``, each window centred on its effect mask. Same-size batches
    are stacked unchanged.
    """
    from ....data.loader import collate_paired

    h = min(item["image"].shape[-2] for item in items) // multiple * multiple
    w = min(item["image"].shape[-1] for item in items) // multiple * multiple
    if h < multiple or w < multiple:
        raise InvalidInputError(f"a training sample is smaller than {multiple}×{multiple} pixels")
    cropped = []
    for item in items:
        eff = item["effect_mask"][0].numpy() > 0
        top = _window(eff.any(axis=1), eff.shape[0], h)
        left = _window(eff.any(axis=0), eff.shape[1], w)
        cropped.append(
            {
                k: (v[..., top : top + h, left : left + w] if torch.is_tensor(v) and v.ndim == 3 else v)
                for k, v in item.items()
            }
        )
    return collate_paired(cropped)


# ------------------------------------------------------------------------------------------------------------
# Model set-up
# ------------------------------------------------------------------------------------------------------------
def _engine_for(config: OsorTrainConfig, pipe):
    from ..remover import REMOVERS

    return REMOVERS[config.backbone].engine_cls(pipe, prompt=config.prompt)


def prepare_denoiser(denoiser, config: OsorTrainConfig, *, seed: int = 0) -> list[torch.nn.Parameter]:
    """Freeze ``denoiser``, add the LoRA and (Phase II) the alpha head, unfreeze the terminal layer.

    The LoRA is fresh, or Phase I weights for Phase II via ``init_weights``. Returns the trainable parameters
    (all cast to float32).
    """
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig, inject_adapter_in_model

    from ..alpha_head import add_alpha_head, spec_of
    from ..weights import ADAPTER_NAME, OFFICIAL_TARGETS, apply_osor_weights, load_osor_weights

    denoiser.requires_grad_(False)
    if config.init_weights:
        weights = load_osor_weights(config.init_weights, config.backbone)
        if weights.phase > config.phase:
            raise InvalidInputError(
                f"init_weights {config.init_weights} are Phase {weights.phase}; "
                f"cannot start Phase {config.phase} from them"
            )
        report = apply_osor_weights(denoiser, weights, merge=False)  # adapters stay separate and trainable
        logger.info("initialised from %s: %s", config.init_weights, report.summary())
    else:
        targets = config.lora.target_modules or list(OFFICIAL_TARGETS[config.backbone])
        rank, alpha = config.lora.rank, config.lora.alpha
        assert rank is not None and alpha is not None, "prepare_denoiser takes a resolved() config"
        # peft annotates lora_alpha as int but only computes lora_alpha / r with it; the config's is a float.
        lora = LoraConfig(
            r=rank,
            lora_alpha=alpha,  # type: ignore[arg-type]
            target_modules=targets,
            init_lora_weights="gaussian" if config.lora.init == "gaussian" else True,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            inject_adapter_in_model(lora, denoiser, adapter_name=ADAPTER_NAME)
    if config.phase == 2:
        add_alpha_head(denoiser, seed=seed)
    head = getattr(denoiser, spec_of(denoiser).attribute)
    head.requires_grad_(True)
    # LoRA and the terminal layer train in float32 (App. B.5).
    cast_training_params(denoiser, dtype=torch.float32)
    trainable = []
    for name, p in denoiser.named_parameters():
        if p.requires_grad:
            if not (f".{ADAPTER_NAME}." in name or name.startswith(spec_of(denoiser).attribute + ".")):
                raise RuntimeError(f"unexpected trainable parameter {name}")
            trainable.append(p)
    return trainable


def export_weights(denoiser, config: OsorTrainConfig, timestep: float):
    """The trained parameters as :class:`erasekit.methods.osor.weights.OsorWeights`.

    LoRA in peft's adapter-free key names, the terminal layer in full; ready for ``save_erasekit`` /
    ``save_official``.
    """
    from peft import get_peft_model_state_dict

    from ..alpha_head import spec_of
    from ..weights import ADAPTER_NAME, OsorWeights

    lora = {
        k: v.detach().float().cpu().clone()
        for k, v in get_peft_model_state_dict(denoiser, adapter_name=ADAPTER_NAME).items()
    }
    layer = getattr(denoiser, spec_of(denoiser).attribute)
    head = {"weight": layer.weight.detach().float().cpu().clone()}
    if layer.bias is not None:
        head["bias"] = layer.bias.detach().float().cpu().clone()
    ranks = {k.rsplit(".lora_A", 1)[0]: int(v.shape[0]) for k, v in lora.items() if ".lora_A." in k}
    rank = max(set(ranks.values()), key=list(ranks.values()).count) if ranks else int(config.lora.rank or 0)
    peft_config = getattr(denoiser, "peft_config", {}).get(ADAPTER_NAME)
    lora_alpha = float(peft_config.lora_alpha if peft_config is not None else config.lora.alpha or rank)
    return OsorWeights(
        backbone=config.backbone,
        phase=config.phase,
        rank=rank,
        lora_alpha=lora_alpha,
        lora=lora,
        head=head,
        timestep=timestep,
        prompt=config.prompt,
        source="erasekit train osor",
        rank_pattern={m: r for m, r in ranks.items() if r != rank},
    )


class _TrainableState:
    """What a checkpoint must restore besides the optimizers.

    The trainable tensors and the discriminator heads (including spectral norm's power-iteration vectors), and
    the step counter.
    """

    def __init__(self, params: dict[str, torch.nn.Parameter], heads: torch.nn.Module):
        self.params, self.heads, self.step = params, heads, 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "heads": {k: v.detach().cpu() for k, v in self.heads.state_dict().items()},
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for k, v in state["params"].items():
                self.params[k].copy_(v)
        self.heads.load_state_dict(state["heads"])
        self.step = int(state["step"])


# ------------------------------------------------------------------------------------------------------------
# The trainer
# ------------------------------------------------------------------------------------------------------------
class OsorTrainer:
    """Builds everything from a config; :meth:`train` runs (or resumes) to ``max_steps``.

    ``perceptual_loss``: any ``(x̂, x_bg) -> scalar`` (default LPIPS-VGG from local weights; not loaded when
    its weight is 0). ``discriminator``: an :class:`OccupancyDiscriminator` (default: the config's open_clip
    trunk). ``pipeline``: an already loaded diffusers pipeline (default: ``config.model``).
    """

    def __init__(
        self,
        config: OsorTrainConfig,
        *,
        perceptual_loss: PerceptualLoss | None = None,
        discriminator: OccupancyDiscriminator | None = None,
        pipeline: Any = None,
    ):
        from accelerate import Accelerator
        from accelerate.state import PartialState
        from accelerate.utils import ProjectConfiguration
        from diffusers.training_utils import cast_training_params

        self.config = cfg = config.resolved()
        self.output_dir = Path(cfg.output_dir)
        cpu = cfg.device == "cpu"
        processes = PartialState(cpu=cpu).num_processes
        self.accum = cfg.accumulation_steps(processes)
        self.accelerator = acc = Accelerator(
            mixed_precision=cfg.mixed_precision,
            cpu=cpu,
            log_with=cfg.report_to or None,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir)
            ),
        )
        self.device = acc.device
        weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
            cfg.mixed_precision
        ]

        # backbone and the one-step engine of the inference method
        if pipeline is None:
            pipeline = self._load_pipeline(cfg)
        self.pipe = pipeline
        self.engine = _engine_for(cfg, pipeline)
        self.timestep = self.engine.check_timestep(cfg.timestep)
        self.vae = pipeline.vae.to(self.device, torch.float32).requires_grad_(
            False
        )  # fp32, as diffusers' scripts
        self.denoiser = self.engine.denoiser
        self.trainable = prepare_denoiser(self.denoiser, cfg, seed=cfg.seed)  # loads init weights in fp32
        self.denoiser.to(self.device, weight_dtype)  # frozen weights in the compute dtype ...
        cast_training_params(self.denoiser, dtype=torch.float32)  # ... trainable ones stay float32 (App. B.5)
        self.denoiser.train()
        if cfg.gradient_checkpointing:
            self.denoiser.enable_gradient_checkpointing()
        for name in (
            "text_encoder",
            "text_encoder_2",
        ):  # encode the fixed prompt once on the device, then drop them
            if getattr(pipeline, name, None) is not None:
                getattr(pipeline, name).to(self.device)
        self.engine.release_text_encoders()

        # discriminator, targets, perceptual loss
        if discriminator is None:
            trunk = ConvNextTrunk.from_openclip(
                cfg.discriminator.trunk,
                norm_eps=cfg.discriminator.norm_eps,
                allow_download=cfg.allow_download,
            )
            with torch.random.fork_rng(devices=[]):  # the heads' initialisation depends on the seed only
                torch.manual_seed(cfg.seed)
                discriminator = OccupancyDiscriminator(trunk, hidden=cfg.discriminator.hidden)
        self.disc = discriminator
        self.disc.to(self.device)
        self.disc.trunk.to(dtype=weight_dtype)
        self.targets = PatchTargets(cfg.discriminator.targets, cfg.discriminator.sigma)
        if perceptual_loss is None and cfg.loss.perceptual:
            from ....training.perceptual import load_lpips_vgg

            perceptual_loss = load_lpips_vgg(cfg.loss.lpips_trunk, cfg.loss.lpips_heads)
        if isinstance(perceptual_loss, torch.nn.Module):
            perceptual_loss.to(self.device)
        self.perceptual = perceptual_loss

        # optimisers (prepared for fp16 loss scaling and checkpointing)
        o = cfg.optim
        opt_g = torch.optim.AdamW(
            self.trainable, lr=o.lr_generator, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
        )
        opt_d = torch.optim.AdamW(
            self.disc.heads.parameters(),
            lr=o.lr_discriminator,
            betas=o.betas,
            eps=o.eps,
            weight_decay=o.weight_decay,
        )
        self.opt_g, self.opt_d = acc.prepare(opt_g, opt_d)
        names = {id(p): n for n, p in self.denoiser.named_parameters()}
        self.state = _TrainableState({names[id(p)]: p for p in self.trainable}, self.disc.heads)
        acc.register_for_checkpointing(self.state)

        from .conditioning import IncompleteMaskSampler

        self.mask_sampler = IncompleteMaskSampler(seed=cfg.seed) if cfg.phase == 2 else None

    @staticmethod
    def _load_pipeline(cfg: OsorTrainConfig):
        from ....backbones.loading import BackboneOptions, load_backbone
        from ..remover import REMOVERS

        # Loaded in float32 on the CPU; the trainer then places each part on the device in its training dtype.
        options = BackboneOptions(
            model=cfg.model, device="cpu", dtype="fp32", allow_download=cfg.allow_download
        )
        return load_backbone(REMOVERS[cfg.backbone].preset_name, options)

    # ---- data ----------------------------------------------------------------------------------------------
    def _loader(self, start_micro: int):
        from ....data.loader import PairedTorchDataset
        from ....data.transforms import RESIZE_RULES, PairedAugment

        cfg, acc = self.config, self.accelerator
        resolution, batch_size = cfg.data.resolution, cfg.per_device_batch_size
        assert resolution is not None and batch_size is not None, "the trainer's config is resolved()"
        rule = dataclasses.replace(RESIZE_RULES[cfg.backbone], target=resolution)
        dataset = PairedTorchDataset(
            cfg.data.path,
            resize=rule,
            augment=PairedAugment(flip_p=cfg.data.flip_p, crop_scale=cfg.data.crop_scale),
            seed=cfg.seed,
            phase2_only=bool(cfg.data.phase2_only),
        )
        sampler = StepBatchSampler(
            len(dataset),
            batch_size,
            seed=cfg.seed,
            start=start_micro,
            num_replicas=acc.num_processes,
            rank=acc.process_index,
        )
        return torch.utils.data.DataLoader(
            _EpochIndexed(dataset),
            batch_sampler=sampler,
            collate_fn=collate_common_size,
            num_workers=cfg.data.num_workers,
        )

    def _step_rng(self, step: int, micro: int) -> tuple[torch.Generator, np.random.Generator]:
        key = [self.config.seed, step, micro, self.accelerator.process_index]
        return (
            torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0])),
            np.random.default_rng(key),
        )

    # ---- one micro-batch -----------------------------------------------------------------------------------
    def generator_forward(
        self, batch: dict[str, torch.Tensor], cond_mask: torch.Tensor, noise_gen: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """The inference method's one-step restoration, differentiable.

        Returns x̂ (decoded), the blend weight and the alpha logits (Phase II).
        """
        blend = "alpha" if self.config.phase == 2 else "mask"  # Eq. 13 / Eq. 6
        out = self.engine.forward(
            batch["image"].to(self.device),
            cond_mask.to(self.device),
            lambda shape: torch.randn(shape, generator=noise_gen),
            timestep=self.timestep,
            blend=blend,
        )
        return {"x_hat": out.images.float(), "weight": out.weight, "logits": out.logits}

    def _micro_step(self, batch, step: int, micro: int) -> dict[str, float]:
        cfg, acc, w = self.config, self.accelerator, self.config.loss
        noise_gen, rng = self._step_rng(step, micro)
        effect = batch["effect_mask"].float()
        if self.mask_sampler is not None:
            self.mask_sampler.rng = rng  # one mode per batch, reproducible per (seed, step)
            _, cond = self.mask_sampler.condition_batch(batch)
        else:
            cond = effect
        bg = batch["background"].to(self.device)
        effect = effect.to(self.device)
        logs: dict[str, float] = {}

        # ---- generator (Eq. 10, + Eq. 14 in Phase II) ----
        self.disc.heads.requires_grad_(False)
        with acc.autocast():
            out = self.generator_forward(batch, cond, noise_gen)
            x_hat = out["x_hat"]
            fake_logits = [t.float() for t in self.disc(x_hat)]
        targets = self.targets(effect, [t.shape[-2:] for t in fake_logits])
        l_rec = masked_l1(x_hat, bg, effect)
        l_adv = generator_adversarial_loss(fake_logits, targets)
        assert w.l1 is not None, "the trainer's config is resolved()"
        loss_g = w.l1 * l_rec + w.adversarial * l_adv
        if w.perceptual:
            assert self.perceptual is not None, "loaded in __init__ whenever its weight is non-zero"
            with acc.autocast():
                l_per = self.perceptual(x_hat, bg).float()
            loss_g = loss_g + w.perceptual * l_per
            logs["lpips"] = l_per.item()
        if cfg.phase == 2:
            latent_h, latent_w = out["logits"].shape[-2:]
            target_z = effect_mask_to_latent(effect, (latent_h, latent_w))
            parts = alpha_loss(out["logits"], target_z, bce_weight=w.bce, dice_weight=w.dice)
            loss_g = loss_g + parts["alpha"]
            logs.update(bce=parts["bce"].item(), dice=parts["dice"].item())
        acc.backward(loss_g / self.accum)

        # ---- discriminator (Eq. 7 + λ_r1 R1, Eq. 16) ----
        self.disc.heads.requires_grad_(True)
        with torch.no_grad(), acc.autocast():
            real_feats = [f.float() for f in self.disc.features(bg)]
            fake_feats = [f.float() for f in self.disc.features(x_hat.detach())]
        with acc.autocast():
            real_logits = [t.float() for t in self.disc.head_logits(real_feats)]
            fake_logits_d = [t.float() for t in self.disc.head_logits(fake_feats)]
        l_d = discriminator_loss(real_logits, fake_logits_d, targets)
        l_r1 = r1_penalty(list(self.disc.heads), real_feats)
        acc.backward((l_d + w.r1 * l_r1) / self.accum)
        logs.update(
            loss_g=loss_g.item(), l1=l_rec.item(), adv=l_adv.item(), loss_d=l_d.item(), r1=l_r1.item()
        )
        return logs

    def _optimizer_step(self) -> None:
        acc, clip = self.accelerator, self.config.optim.max_grad_norm
        for params, opt in ((self.trainable, self.opt_g), (list(self.disc.heads.parameters()), self.opt_d)):
            if (
                acc.num_processes > 1
            ):  # average over processes once per optimizer step (no DDP wrapper, see above)
                for p in params:
                    if p.grad is not None:
                        p.grad = acc.reduce(p.grad, reduction="mean")
            if clip:
                acc.clip_grad_norm_(params, clip)
            opt.step()
            opt.zero_grad(set_to_none=True)

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def save_weights(self, folder: Path) -> Path:
        from ..weights import save_erasekit

        return save_erasekit(export_weights(self.denoiser, self.config, self.timestep), folder)

    def save_checkpoint(self, step: int) -> Path:
        acc = self.accelerator
        folder = checkpoint_dir(self.output_dir, step)
        self.state.step = step
        acc.save_state(str(folder))
        if acc.is_main_process:
            self.save_weights(folder / "osor")
            mark_complete(folder, step)  # written last: marks it complete
            # Rotation by hand: Accelerate's ProjectConfiguration(total_limit=...) deletes the oldest folders
            # before the new checkpoint is written, complete or not (with a limit of 1 a crash while saving
            # leaves none), and names folders by save count, not by step.
            done = complete_checkpoints(self.output_dir)
            for old in done[: -max(1, self.config.keep_checkpoints)]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return folder

    def resume(self) -> int:
        found = latest_checkpoint(self.output_dir)
        if found is None:
            return 0
        self.accelerator.load_state(str(found))
        logger.info("resumed from %s (step %d)", found, self.state.step)
        return self.state.step

    # ---- the loop ------------------------------------------------------------------------------------------
    def train(self, *, stop_after: int | None = None, progress: bool = True) -> TrainResult:
        """Train (resuming from the newest checkpoint in ``output_dir``) until ``max_steps``.

        ``stop_after`` ends the run early after that step's checkpoint, like an interruption.
        """
        from tqdm import tqdm

        cfg, acc = self.config, self.accelerator
        max_steps = cfg.max_steps
        assert max_steps is not None, "the trainer's config is resolved()"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if acc.is_main_process:
            (self.output_dir / "config.yaml").write_text(
                yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
            )
        start = step = self.resume()
        metrics_path = self.output_dir / "metrics.jsonl"
        if acc.is_main_process:
            open_metrics(self.output_dir, start)
        if cfg.report_to:
            acc.init_trackers("osor", config=cfg.model_dump(mode="json"))
        end = max_steps if stop_after is None else min(max_steps, stop_after)
        window: list[dict[str, float]] = []
        tick = time.perf_counter()
        batches = iter(self._loader(start * self.accum))
        bar = tqdm(
            total=max_steps,
            initial=step,
            desc=f"OSOR {cfg.backbone} phase {cfg.phase}",
            disable=not (progress and acc.is_local_main_process),
        )
        while step < end:
            micro_logs = []
            for micro in range(self.accum):
                micro_logs.append(self._micro_step(next(batches), step, micro))
            self._optimizer_step()
            step += 1
            bar.update(1)
            window.append({k: float(np.mean([m[k] for m in micro_logs])) for k in micro_logs[0]})
            if step % cfg.log_every == 0 or step == end:
                record = {
                    "step": step,
                    **{k: float(np.mean([r[k] for r in window])) for k in window[0]},
                    "lr_g": self.opt_g.param_groups[0]["lr"],
                    "lr_d": self.opt_d.param_groups[0]["lr"],
                    "sec_per_step": (time.perf_counter() - tick) / len(window),
                }
                record = {
                    k: (
                        acc.reduce(torch.tensor(v, device=self.device), "mean").item()
                        if acc.num_processes > 1 and k != "step"
                        else v
                    )
                    for k, v in record.items()
                }
                if acc.is_main_process:
                    log_metrics(metrics_path, record)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k in ("loss_g", "loss_d")})
                if cfg.report_to:
                    acc.log({k: v for k, v in record.items() if k != "step"}, step=step)
                window, tick = [], time.perf_counter()
            if step % cfg.checkpoint_every == 0 or step == end:
                self.save_checkpoint(step)
        bar.close()
        weights_dir = self.output_dir / "osor"
        if acc.is_main_process and step >= max_steps:
            self.save_weights(weights_dir)
        acc.wait_for_everyone()
        if cfg.report_to:
            acc.end_training()
        if any(not math.isfinite(v) for r in window for v in r.values()):
            raise RuntimeError("training diverged (non-finite loss)")
        return TrainResult(step, self.output_dir, weights_dir, metrics_path, start)


def train_osor(config: OsorTrainConfig, **kwargs: Any) -> TrainResult:
    """Build an :class:`OsorTrainer` and run it.

    ``kwargs``: ``perceptual_loss``, ``discriminator``, ``pipeline`` for the trainer; ``stop_after``,
    ``progress`` for :meth:`OsorTrainer.train`.
    """
    train_kwargs = {k: kwargs.pop(k) for k in ("stop_after", "progress") if k in kwargs}
    return OsorTrainer(config, **kwargs).train(**train_kwargs)


__all__ = ["OsorTrainer", "StepBatchSampler", "TrainResult", "collate_common_size", "export_weights",
           "prepare_denoiser", "train_osor"]

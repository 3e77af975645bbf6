"""OSOR training, Phase I and Phase II (Sec. 3.3–3.4, App. B.1), with Hugging Face Accelerate.

What is trained: a peft LoRA on the backbone's denoiser (the authors' target modules and ranks, ``lora_alpha =
rank``, Gaussian init) plus the full terminal layer (SDXL ``conv_out`` / FLUX ``proj_out``, kept in float32;
in Phase II it carries the alpha head), and the discriminator's four patch heads. Everything else is frozen.

The loop is the authors' (Zhouqm-Git/osor, ``src/engine/train_phase{1,2}.py``); one optimizer step is:

* **generator batch** — the one-step restoration (the engine's ``denoise``: Eq. 3–5, 12) on a VAE posterior
  *sample* of the shot, blended in latent space with the max-pooled conditioning mask (Phase I, Eq. 6) or the
  predicted alpha (Phase II, Eq. 13), decoded to x̂; loss L_G(m_gt) = λ_rec·Eq. 9 + λ_per·LPIPS + λ_adv·Eq. 8
  (Eq. 10), plus Eq. 14 in Phase II. The discriminator's heads are in ``eval()`` here, so spectral norm's
  power iteration does not advance. Gradients are clipped (generator only). Phase I conditions on m_gt; Phase
  II on an incomplete mask m_in (one perturbation mode per batch, drawn by
  :class:`erasekit.methods.osor.train.conditioning.IncompleteMaskSampler`), while the losses use m_gt.
* **discriminator batch** — the *next* batch: x̂ recomputed under ``no_grad`` with the just-updated generator,
  then Eq. 7 with occupancy targets and λ_r1·R1 on the head inputs (Eq. 16).

``schedule: joint`` keeps erasekit's former loop (both updates on one batch, the discriminator on the
generator step's x̂). With gradient accumulation k, k batches go to the generator, then k to the discriminator.

Engineering: Accelerate gives the device, autocast and the process group and saves the checkpoint state. Each
optimizer has its own loss scaler (:class:`erasekit.training.optim.ScaledOptimizer`; fp16 only). Gradients are
accumulated by hand (loss / k) and, with several processes, averaged over processes once per optimizer step —
the models are not wrapped in DistributedDataParallel because R1 needs ``autograd.grad`` on head inputs, which
DDP does not support, and because the denoiser is called through the OSOR engine. Batches come from
aspect-ratio buckets (the authors' ``src/data/sampler.py``), formed at the global batch size and split over
processes, and every random draw of a sample (posterior sample, noise, mask perturbation) is keyed by (seed,
micro-batch, position in the global batch): the same global batch trains the same way on any number of
processes, and a run resumed from a checkpoint continues exactly where it stopped.

Outputs in ``output_dir``: ``checkpoints/step-NNNNNNN/`` (``accelerator.save_state`` + ``trainer_state.json``
+ the weights in erasekit's OSOR format under ``osor/``), ``osor/`` (final weights, with
``discriminator_heads.safetensors`` for Phase II to start from; ``erasekit remove --method osor-sdxl --weights
OUTPUT/osor``), ``metrics.jsonl`` and ``config.yaml`` (the resolved config).
"""

from __future__ import annotations

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
class BucketBatchSampler:
    """This process's micro-batches of dataset indices, from micro-batch ``start`` on, forever.

    Aspect-ratio buckets as the authors' ``DistributedAspectRatioBucketSampler``: items are grouped by
    ``keys[i]`` (their source size), so a batch never mixes sizes and nothing is cropped. Per epoch e (a
    generator seeded from (seed, e)): bucket order, items within a bucket and the batches are shuffled; a
    bucket's incomplete last batch is dropped. Unlike the authors', batches are formed at the *global* size
    ``batch_size × num_replicas`` and each process takes its slice, so the global batch does not depend on the
    process count. Items are ``(epoch, index)`` so per-epoch augmentation works in worker processes too.
    """

    def __init__(
        self,
        keys: list,
        batch_size: int,
        *,
        seed: int,
        start: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        self.keys, self.bs, self.seed, self.start = list(keys), batch_size, seed, start
        self.replicas, self.rank = num_replicas, rank
        self.buckets: dict = {}
        for i, key in enumerate(self.keys):
            self.buckets.setdefault(key, []).append(i)
        width = batch_size * num_replicas
        self.per_epoch = sum(len(v) // width for v in self.buckets.values())
        if self.per_epoch < 1:
            raise InvalidInputError(
                f"dataset has {len(self.keys)} samples in {len(self.buckets)} size bucket(s), none with a "
                f"full global batch ({batch_size} × {num_replicas} processes)"
            )
        self._epoch: tuple[int, list[list[int]]] | None = None

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The global batches of ``epoch``, in order."""
        if self._epoch is not None and self._epoch[0] == epoch:
            return self._epoch[1]
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        keys = list(self.buckets)
        keys = [keys[i] for i in torch.randperm(len(keys), generator=g).tolist()]
        width = self.bs * self.replicas
        batches = []
        for key in keys:
            items = self.buckets[key]
            items = [items[i] for i in torch.randperm(len(items), generator=g).tolist()]
            batches += [items[i : i + width] for i in range(0, len(items) - width + 1, width)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        self._epoch = (epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = self.start
        while True:
            epoch, pos = divmod(g, self.per_epoch)
            batch = self.epoch_batches(epoch)[pos][self.rank * self.bs : (self.rank + 1) * self.bs]
            yield [(epoch, i) for i in batch]
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


def source_sizes(dataset) -> list[tuple[int, int]]:
    """(H, W) of every item's shot from the file headers: the bucket keys (the authors' cached sizes)."""
    from PIL import Image

    sizes = []
    for source in dataset.indices:
        record = dataset.dataset.records[source]
        with Image.open(dataset.dataset.root / record.image) as img:
            sizes.append((img.height, img.width))
    return sizes


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
        # The exported weights record the inference timestep (400 / 0.4), whatever the phase trained at.
        from ..recipe import TIMESTEP

        self.inference_timestep = float(TIMESTEP[cfg.backbone])
        vae_dtype = weight_dtype if cfg.vae_dtype == "compute" else torch.float32  # authors': compute dtype
        self.vae = pipeline.vae.to(self.device, vae_dtype).requires_grad_(False)
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
                discriminator = OccupancyDiscriminator(
                    trunk, hidden=cfg.discriminator.hidden, blur=cfg.discriminator.blur
                )
        self.disc = discriminator
        self.heads_loaded_from: Path | None = None
        if cfg.phase == 2 and cfg.init_weights and cfg.discriminator.init_from_phase1:
            self.heads_loaded_from = load_discriminator_heads(self.disc.heads, cfg.init_weights)
        self.disc.to(self.device)
        self.disc.trunk.to(dtype=weight_dtype)
        self.targets = PatchTargets(cfg.discriminator.targets, cfg.discriminator.sigma)
        if perceptual_loss is None and cfg.loss.perceptual:
            from ....training.perceptual import load_lpips_vgg

            perceptual_loss = load_lpips_vgg(cfg.loss.lpips_trunk, cfg.loss.lpips_heads)
        if isinstance(perceptual_loss, torch.nn.Module):
            perceptual_loss.to(self.device)
        self.perceptual = perceptual_loss

        # optimisers: each with its own loss scaler (fp16), checkpointed with the run
        from ....training.optim import ScaledOptimizer

        o, fp16 = cfg.optim, cfg.mixed_precision == "fp16"
        heads = list(self.disc.heads.parameters())
        self.opt_g = ScaledOptimizer(
            torch.optim.AdamW(self.trainable, lr=o.lr_generator, betas=o.betas, eps=o.eps,
                              weight_decay=o.weight_decay),
            self.trainable, device_type=self.device.type, fp16=fp16, max_grad_norm=o.max_grad_norm,
        )
        self.opt_d = ScaledOptimizer(  # the authors clip the generator's gradients only
            torch.optim.AdamW(heads, lr=o.lr_discriminator, betas=o.betas, eps=o.eps,
                              weight_decay=o.weight_decay),
            heads, device_type=self.device.type, fp16=fp16,
        )
        names = {id(p): n for n, p in self.denoiser.named_parameters()}
        self.state = _TrainableState({names[id(p)]: p for p in self.trainable}, self.disc.heads)
        for obj in (self.state, self.opt_g, self.opt_d):
            acc.register_for_checkpointing(obj)

        from ..recipe import MASK_OPERATORS
        from .conditioning import IncompleteMaskSampler

        self.mask_sampler = (
            IncompleteMaskSampler(seed=cfg.seed, operators=MASK_OPERATORS[cfg.backbone])
            if cfg.phase == 2 else None
        )
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
    def dataset(self):
        from ....data.loader import PairedTorchDataset
        from ....data.transforms import BackboneResize, PairedAugment

        cfg = self.config
        augment = None
        if cfg.data.flip_p > 0 or cfg.data.crop_scale != (1.0, 1.0):  # off by default, as the authors train
            augment = PairedAugment(flip_p=cfg.data.flip_p, crop_scale=cfg.data.crop_scale)
        return PairedTorchDataset(
            cfg.data.path,
            resize=BackboneResize(cfg.backbone, cfg.data.resolution, upscale=True),  # the training rule
            augment=augment,
            seed=cfg.seed,
            phase2_only=bool(cfg.data.phase2_only),
            masks="soft",  # the authors' /255 masks (Zhouqm-Git/osor src/data/dataset.py), NEAREST-resized
        )

    def _loader(self, start_micro: int):
        from ....data.loader import collate_paired

        cfg, acc = self.config, self.accelerator
        batch_size = cfg.per_device_batch_size
        assert batch_size is not None, "the trainer's config is resolved()"
        dataset = self.dataset()
        sampler = BucketBatchSampler(
            source_sizes(dataset),
            batch_size,
            seed=cfg.seed,
            start=start_micro,
            num_replicas=acc.num_processes,
            rank=acc.process_index,
        )
        return torch.utils.data.DataLoader(
            _EpochIndexed(dataset),
            batch_sampler=sampler,
            collate_fn=collate_paired,
            num_workers=cfg.data.num_workers,
        )

    def _item_keys(self, micro_index: int, n: int) -> list[list[int]]:
        """One RNG key per sample of this process's micro-batch: (seed, micro-batch, global-batch slot)."""
        first = self.accelerator.process_index * n
        return [[self.config.seed, micro_index, first + j] for j in range(n)]

    # ---- the generator's forward ---------------------------------------------------------------------------
    def generator_forward(
        self, images: torch.Tensor, cond_mask: torch.Tensor, keys: list[list[int]]
    ) -> dict[str, torch.Tensor]:
        """The inference method's one-step restoration, differentiable, on a posterior sample of the shot.

        As the authors train: z̄ is a VAE posterior sample (``vae_posterior: sample``), the engine's
        ``denoise`` gives x̂0 (and the alpha logits), the blend is Eq. 13 (Phase II) or Eq. 6 (Phase I), and
        the VAE decodes. Returns x̂ (float32), the blend weight and the logits."""
        from ....backbones import latents as L
        from ..alpha_head import alpha_from_logits
        from ..engine import composite

        gens = [torch.Generator().manual_seed(int(np.random.SeedSequence(k + [0]).generate_state(1)[0]))
                for k in keys]
        images = images.to(self.device, self.vae.dtype)
        with torch.no_grad():
            # One generator per sample (diffusers' randn_tensor takes a list): the draw does not depend on
            # the batch size.
            z_lq = L.encode(self.vae, images, generator=gens,  # type: ignore[arg-type]
                            sample=self.config.vae_posterior == "sample")
        noise = torch.cat([torch.randn((1, *z_lq.shape[1:]), generator=g) for g in gens]).to(z_lq)
        cond_mask = cond_mask.to(self.device, z_lq.dtype)
        _, x0, logits = self.engine.denoise(z_lq, noise, cond_mask, self.timestep)
        if self.config.phase == 2:
            assert logits is not None, "Phase II adds the alpha head"
            weight = alpha_from_logits(logits)  # Eq. 12
        else:
            weight = L.mask_to_latent(cond_mask, (int(z_lq.shape[-2]), int(z_lq.shape[-1])), "max")
        z_out = composite(x0, z_lq, weight)  # Eq. 13 / Eq. 6
        x_hat = L.decode(self.vae, z_out.to(self.vae.dtype)).float()
        return {"x_hat": x_hat, "weight": weight, "logits": logits}

    def _condition(self, batch, keys: list[list[int]]) -> torch.Tensor:
        """m_in: m_gt in Phase I; one perturbation mode per global batch in Phase II (per-item randomness)."""
        effect = batch["effect_mask"].float()
        if self.mask_sampler is None:
            return effect
        rng = np.random.default_rng(keys[0][:2])  # the mode: one per global batch
        item_rngs = [np.random.default_rng(k) for k in keys]  # each sample's own perturbation
        _, cond = self.mask_sampler.condition_batch(batch, rng=rng, item_rngs=item_rngs)
        return cond

    # ---- the two updates -----------------------------------------------------------------------------------
    def _generator_loss(self, batch, keys) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """L_G (Eq. 10, + Eq. 14 in Phase II) on one micro-batch, with the heads in eval() and frozen."""
        cfg, acc, w = self.config, self.accelerator, self.config.loss
        cond = self._condition(batch, keys)
        bg = batch["background"].to(self.device)
        effect = batch["effect_mask"].float().to(self.device)
        self.disc.heads.eval().requires_grad_(False)  # spectral norm's power iteration does not advance here
        logs: dict[str, float] = {}
        with acc.autocast():
            out = self.generator_forward(batch["image"], cond, keys)
            x_hat = out["x_hat"]
            fake_logits = [t.float() for t in self.disc(x_hat)]
        targets = self.targets(effect, _grid_sizes(fake_logits))
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
        logs.update(loss_g=loss_g.item(), l1=l_rec.item(), adv=l_adv.item())
        return loss_g, logs, x_hat

    def _discriminator_loss(self, batch, x_hat: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 7 + λ_r1·R1 (Eq. 16) on one micro-batch and its x̂, with the heads in train()."""
        acc, w = self.accelerator, self.config.loss
        bg = batch["background"].to(self.device)
        effect = batch["effect_mask"].float().to(self.device)
        self.disc.heads.train().requires_grad_(True)
        with torch.no_grad(), acc.autocast():
            real_feats = [f.float() for f in self.disc.features(bg)]
            fake_feats = [f.float() for f in self.disc.features(x_hat.detach())]
        with acc.autocast():
            real_logits = [t.float() for t in self.disc.head_logits(real_feats)]
            fake_logits = [t.float() for t in self.disc.head_logits(fake_feats)]
        targets = self.targets(effect, _grid_sizes(fake_logits))
        l_d = discriminator_loss(real_logits, fake_logits, targets)
        l_r1 = r1_penalty(list(self.disc.heads), real_feats)
        return l_d + w.r1 * l_r1, {"loss_d": l_d.item(), "r1": l_r1.item()}

    def generator_step(self, batches: list, first_micro: int) -> dict[str, float]:
        """Accumulate L_G over ``batches`` and step the generator. Returns the mean logs."""
        logs = []
        for i, batch in enumerate(batches):
            keys = self._item_keys(first_micro + i, len(batch["id"]))
            loss, record, _ = self._generator_loss(batch, keys)
            self.opt_g.backward(loss / len(batches))
            logs.append(record)
        self.opt_g.step(self._reduce)
        return _mean(logs)

    def discriminator_step(self, batches: list, first_micro: int) -> dict[str, float]:
        """x̂ recomputed under no_grad with the current generator on ``batches``, then the D update."""
        logs = []
        for i, batch in enumerate(batches):
            keys = self._item_keys(first_micro + i, len(batch["id"]))
            with torch.no_grad(), self.accelerator.autocast():
                x_hat = self.generator_forward(batch["image"], self._condition(batch, keys), keys)["x_hat"]
            loss, record = self._discriminator_loss(batch, x_hat)
            self.opt_d.backward(loss / len(batches))
            logs.append(record)
        self.opt_d.step(self._reduce)
        return _mean(logs)

    def joint_step(self, batches: list, first_micro: int) -> dict[str, float]:
        """erasekit's former loop (``schedule: joint``): both updates on one batch, D on the G step's x̂."""
        logs = []
        for i, batch in enumerate(batches):
            keys = self._item_keys(first_micro + i, len(batch["id"]))
            loss_g, record, x_hat = self._generator_loss(batch, keys)
            self.opt_g.backward(loss_g / len(batches))
            loss_d, record_d = self._discriminator_loss(batch, x_hat.detach())
            self.opt_d.backward(loss_d / len(batches))
            logs.append({**record, **record_d})
        self.opt_g.step(self._reduce)
        self.opt_d.step(self._reduce)
        return _mean(logs)

    def _reduce(self, grad: torch.Tensor) -> torch.Tensor:
        # Average over processes once per optimizer step (no DDP wrapper, see the module docstring).
        return self.accelerator.reduce(grad, reduction="mean") if self.accelerator.num_processes > 1 else grad

    def micro_batches_per_step(self) -> int:
        return self.accum * (2 if self.config.schedule == "alternate" else 1)

    def train_step(self, batches: Iterator, step: int) -> dict[str, float]:
        """One optimizer step (a generator and a discriminator update) from the next micro-batches."""
        first = step * self.micro_batches_per_step()
        if self.config.schedule == "joint":
            return self.joint_step([next(batches) for _ in range(self.accum)], first)
        logs = self.generator_step([next(batches) for _ in range(self.accum)], first)
        logs.update(self.discriminator_step([next(batches) for _ in range(self.accum)], first + self.accum))
        return logs

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def save_weights(self, folder: Path) -> Path:
        from ..weights import save_erasekit

        out = save_erasekit(export_weights(self.denoiser, self.config, self.inference_timestep), folder)
        save_discriminator_heads(self.disc.heads, Path(out))
        return out

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
        batches = iter(self._loader(start * self.micro_batches_per_step()))
        bar = tqdm(
            total=max_steps,
            initial=step,
            desc=f"OSOR {cfg.backbone} phase {cfg.phase}",
            disable=not (progress and acc.is_local_main_process),
        )
        while step < end:
            window.append(self.train_step(batches, step))
            step += 1
            bar.update(1)
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


def _grid_sizes(logits: list[torch.Tensor]) -> list[tuple[int, int]]:
    return [(int(t.shape[-2]), int(t.shape[-1])) for t in logits]


def _mean(records: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in records])) for k in records[0]}


HEADS_FILE = "discriminator_heads.safetensors"


def save_discriminator_heads(heads: torch.nn.Module, folder: Path) -> Path:
    """The heads' state (spectral norm's vectors included) beside the exported weights, for Phase II."""
    from safetensors.torch import save

    from ....atomic import write_bytes

    tensors = {k: v.detach().float().cpu().contiguous() for k, v in heads.state_dict().items()}
    return write_bytes(Path(folder) / HEADS_FILE, save(tensors))


def load_discriminator_heads(heads: torch.nn.Module, init_weights: str | Path) -> Path | None:
    """Phase II starts its heads from Phase I's (the authors load Phase I's discriminator state).

    ``init_weights`` is the Phase I weights folder (or a file in it); without a heads file beside it the heads
    stay fresh, with a warning, as the authors' trainer does."""
    from safetensors.torch import load_file

    folder = Path(init_weights)
    path = (folder if folder.is_dir() else folder.parent) / HEADS_FILE
    if not path.is_file():
        logger.warning("no %s beside %s: the discriminator heads start fresh", HEADS_FILE, init_weights)
        return None
    state = load_file(str(path))
    try:
        heads.load_state_dict({k: v.to(heads.state_dict()[k].dtype) for k, v in state.items()})
    except (RuntimeError, KeyError) as exc:
        raise InvalidInputError(f"{path} does not fit this discriminator's heads: {exc}") from None
    return path


def train_osor(config: OsorTrainConfig, **kwargs: Any) -> TrainResult:
    """Build an :class:`OsorTrainer` and run it.

    ``kwargs``: ``perceptual_loss``, ``discriminator``, ``pipeline`` for the trainer; ``stop_after``,
    ``progress`` for :meth:`OsorTrainer.train`.
    """
    train_kwargs = {k: kwargs.pop(k) for k in ("stop_after", "progress") if k in kwargs}
    return OsorTrainer(config, **kwargs).train(**train_kwargs)


__all__ = ["HEADS_FILE", "BucketBatchSampler", "OsorTrainer", "TrainResult", "export_weights",
           "load_discriminator_heads", "prepare_denoiser", "save_discriminator_heads", "source_sizes",
           "train_osor"]

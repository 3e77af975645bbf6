"""EraDiff Chain-Rectifying Optimization on SD2-Inpainting with Hugging Face Accelerate
(arXiv:2503.07026, Algorithm 1, Sec. 5.1).

One optimizer step, per sample of the batch (:mod:`.cro` has the equations):

* x_ori, x_obj and the masked image x_obj·(1 − m) are VAE-encoded (the posterior's mode, so a step is a
  function of its inputs and the seed alone); the mask m is brought to the latent size as diffusers'
  inpainting pipeline does (``F.interpolate``, nearest). The UNet's inpainting condition is built from x_obj
  with the pasted object's mask: the image a user gives at inference contains the object.
* t ~ U{1..T}, γ ~ U{1..min(γ_m, t)}, one ε; x_t^mix and x_{t−γ}^mix by Eq. 6–7;
* ε_θ(x_t^mix, t) → x̂_{t−γ} by the DDIM jump of Eq. 8; loss Eq. 9 (MSE); Adam at 3e-6.

What trains: the whole UNet (default; fp32 master weights, autocast for ``mixed_precision``) or a peft LoRA
(``lora:``), merged into the UNet on export so there is one weights format. VAE and text encoder are frozen.
All randomness of a step (batch order, t, γ, ε) is drawn from (seed, micro-batch index), so a run resumed from
a checkpoint continues exactly as the uninterrupted run would.

Outputs in ``output_dir``: ``checkpoints/step-NNNNNNN/`` (``accelerator.save_state`` +
``trainer_state.json``), ``eradiff/`` (the weights; ``erasekit remove --method eradiff --weights
OUTPUT/eradiff``), ``metrics.jsonl`` and ``config.yaml``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from ....training.batches import batch_indices
from ....training.checkpoints import (
    TrainResult,
    checkpoint_dir,
    checkpoint_step,
    latest_checkpoint,
    log_metrics,
    mark_complete,
    open_metrics,
)
from ..weights import save_weights
from .config import EraDiffTrainConfig
from .cro import alphas_bar_with_clean, chain_states, cro_loss, ddim_jump, sample_timesteps

logger = logging.getLogger(__name__)


def step_generator(seed: int, micro_batch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + micro_batch + 1)


def prepare_unet(unet: Any, config: EraDiffTrainConfig) -> list[torch.nn.Parameter]:
    """Make the UNet trainable (whole, or a fresh LoRA on it) in float32; return the trainable parameters."""
    unet.requires_grad_(config.lora is None)
    if config.lora is not None:
        from peft import LoraConfig

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            unet.add_adapter(LoraConfig(r=config.lora.rank, lora_alpha=config.lora.alpha or config.lora.rank,
                                        target_modules=config.lora.target_modules,
                                        init_lora_weights="gaussian"))
    unet.to(torch.float32)
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    return [p for p in unet.parameters() if p.requires_grad]


def merged_unet(unet: Any, lora: bool) -> Any:
    """The UNet to export: a copy with the LoRA folded in (diffusers' ``fuse_lora``), or the UNet itself."""
    if not lora:
        return unet
    merged = copy.deepcopy(unet)
    merged.fuse_lora()
    merged.unload_lora()
    return merged


class CroStep:
    """Eq. 6–9 for one batch on the pipeline's frozen VAE and text encoder: ``loss(unet, batch,
    generator)``."""

    def __init__(self, pipe: Any, config: EraDiffTrainConfig, device: torch.device):
        self.pipe, self.config, self.device = pipe, config, device
        self.alpha_bar = alphas_bar_with_clean(pipe.scheduler.alphas_cumprod).to(device)
        self.num_train_timesteps = int(pipe.scheduler.config.num_train_timesteps)
        with torch.no_grad():
            embeds, _ = pipe.encode_prompt(config.prompt, device, 1, False)
        self.prompt_embeds = embeds.float()

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        latents = vae.encode(images.to(self.device, vae.dtype)).latent_dist.mode()
        return (latents * vae.config.scaling_factor).float()

    def loss(self, unet: Any, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        x_obj_pixels = batch["image"]
        mask = batch["object_mask"]
        x_ori, x_obj = self.encode(batch["background"]), self.encode(x_obj_pixels)
        masked = self.encode(x_obj_pixels * (mask < 0.5))  # the pipeline's masked image
        mask_latent = F.interpolate(mask.to(self.device).float(), size=x_obj.shape[-2:])
        t, s = sample_timesteps(x_obj.shape[0], self.num_train_timesteps, self.config.cro.gamma_max,
                                generator)
        noise = torch.randn(x_obj.shape, generator=generator).to(self.device)
        t, s = t.to(self.device), s.to(self.device)
        x_t, x_s = chain_states(x_ori, x_obj, noise, t, s, self.alpha_bar, mixup=self.config.cro.mixup,
                                constant=self.config.cro.constant_lambda)
        model_input = torch.cat([x_t, mask_latent, masked], dim=1)
        context = self.prompt_embeds.expand(x_t.shape[0], -1, -1)
        eps = unet(model_input, t - 1, encoder_hidden_states=context).sample  # diffusers' index is t − 1
        prediction = ddim_jump(x_t, eps.float(), self.alpha_bar[t], self.alpha_bar[s])
        return cro_loss(x_s, prediction)


def train_eradiff(config: EraDiffTrainConfig, *, progress: bool = True, pipeline: Any = None) -> TrainResult:
    """Run CRO training to ``config.max_steps`` optimizer steps, resuming from the newest checkpoint in
    ``config.output_dir``; write the EraDiff weights. ``pipeline``: an already loaded SD2-Inpaint pipeline."""
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from ....backbones.loading import BackboneOptions, load_backbone
    from ....data.loader import PairedTorchDataset, collate_paired
    from ....data.transforms import ResizeRule
    from ....diffusion.attention import LayerSelector, installed_processors
    from ..attention import MaskedSelfAttentionRule, processor_factory

    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=config.device == "cpu",
                              gradient_accumulation_steps=config.gradient_accumulation_steps)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    pipe = pipeline if pipeline is not None else load_backbone(
        "sd2-inpaint", BackboneOptions(model=config.model, device=str(accelerator.device), dtype="float32"))
    pipe.vae.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    unet = pipe.unet
    trainable = prepare_unet(unet, config)
    step_fn = CroStep(pipe, config, accelerator.device)
    o = config.optim
    optimizer = torch.optim.Adam(trainable, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    ema = EMAModel(trainable, decay=config.ema_decay) if config.ema_decay else None
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)

    resize = ResizeRule("short", config.data.resolution, multiple=8) if config.data.resolution else None
    # The binary view of the masks: the paper's mask is binary, M ∈ {0, 1}^{H×W} (arXiv:2503.07026 Sec. 3),
    # and erasekit's pairs mark where the paste changed pixels (α > 0, erasekit.data.eradiff_pairs).
    dataset = PairedTorchDataset(config.data.path, resize=resize, seed=config.seed, masks="binary")
    start, resumed_from = 0, 0
    latest = latest_checkpoint(output_dir)
    if latest is not None:
        accelerator.load_state(str(latest))
        start = resumed_from = checkpoint_step(latest)
        logger.info("resumed from %s (step %d)", latest, start)

    metrics_path = output_dir / "metrics.jsonl"
    if accelerator.is_main_process:
        open_metrics(output_dir, start)
    bar = tqdm(total=config.max_steps, initial=start, disable=not progress or not accelerator.is_main_process,
               desc="eradiff CRO")
    accumulation = config.gradient_accumulation_steps
    step = start
    while step < config.max_steps:
        losses = []
        for k in range(accumulation):
            micro = step * accumulation + k
            batch = collate_paired([dataset[i] for i in batch_indices(micro, len(dataset), config.batch_size,
                                                                       config.seed)])
            # SRA (optional) stays installed through backward: gradient checkpointing re-runs the forward.
            sra = contextlib.nullcontext() if not config.cro.sra else installed_processors(
                accelerator.unwrap_model(unet), LayerSelector(kind="self"), factory=processor_factory(
                    MaskedSelfAttentionRule(batch["object_mask"][:, 0], vae_factor=pipe.vae_scale_factor)))
            with accelerator.accumulate(unet), sra:
                with accelerator.autocast():
                    loss = step_fn.loss(unet, batch, step_generator(config.seed, micro))
                accelerator.backward(loss)
                if accelerator.sync_gradients and o.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(trainable, o.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        step += 1
        if ema is not None:
            ema.step(trainable)
        bar.update(1)
        if accelerator.is_main_process and (step % config.log_every == 0 or step == config.max_steps):
            log_metrics(metrics_path, {"step": step, "loss": sum(losses) / len(losses)})
        if step % config.checkpoint_every == 0 or step == config.max_steps:
            checkpoint = checkpoint_dir(output_dir, step)
            accelerator.save_state(str(checkpoint))
            if accelerator.is_main_process:
                mark_complete(checkpoint, step)
    bar.close()

    accelerator.wait_for_everyone()
    weights_dir = output_dir / "eradiff"
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(unet)
        if ema is not None:
            model = copy.deepcopy(model)
            ema.copy_to([p for p in model.parameters() if p.requires_grad])
        recipe = {"paper": "arXiv:2503.07026", "steps": step, **config.model_dump(mode="json")}
        save_weights(merged_unet(model, config.lora is not None), weights_dir, base=config.model,
                     recipe=recipe)
    return TrainResult(step=step, output_dir=output_dir, weights_dir=weights_dir, metrics_path=metrics_path,
                       resumed_from=resumed_from)


__all__ = ["CroStep", "TrainResult", "batch_indices", "merged_unet", "prepare_unet", "step_generator",
           "train_eradiff"]

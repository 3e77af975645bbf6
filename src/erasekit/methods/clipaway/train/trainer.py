"""CLIPAway's MLP training with Hugging Face Accelerate (arXiv:2406.09368, Algorithm 1, App. A.2).

One step: a batch of cached (AlphaCLIP embedding with an all-ones alpha, IP-Adapter image encoder
``image_embeds``) pairs (:mod:`.features`), the MLP on the first, MSE against the second, Adam (lr 1e-5,
weight decay 1e-4; torch's Adam adds the decay to the gradient, as the authors' ``torch.optim.Adam`` does).
The MLP starts from torch's default initialisation under the config's seed (or ``mlp.init``).

The batch of step s is a function of (seed, s) alone — epoch e is a permutation drawn from (seed, e), and the
batch is a slice of it — and the optimizer state is checkpointed, so a run resumed from a checkpoint continues
exactly as the uninterrupted run would. With several processes (``accelerate launch``) step s draws one global
batch of ``batch_size × num_processes`` and each process takes its slice; gradients average over processes.

Outputs in ``output_dir``: ``checkpoints/step-NNNNNNN/`` (``accelerator.save_state`` +
``trainer_state.json``),
``CLIPAway/model.safetensors`` (the MLP in the released ``nn.Sequential`` key layout: ``clipaway`` loads it
with ``mlp=OUTPUT/CLIPAway/model.safetensors``, or ``weights=`` a folder holding it in the authors' ``ckpts/``
layout), ``metrics.jsonl``, ``config.yaml`` and, unless ``cache_dir`` points elsewhere, ``cache/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from ....atomic import atomic_path
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
from ....types import InvalidInputError
from ..mlp import ClipAwayMLP, load_mlp
from ..weights import LAYOUT, resolve_file, resolve_image_encoder
from .config import ClipAwayMlpTrainConfig
from .features import FeatureCache, cache_key, list_images, load_encoders

logger = logging.getLogger(__name__)

WEIGHTS_SUBDIR, WEIGHTS_FILE = LAYOUT["mlp"].split("/")  # CLIPAway/model.safetensors, the authors' layout


def initial_mlp(config: ClipAwayMlpTrainConfig, in_dim: int, out_dim: int) -> ClipAwayMLP:
    """Table 2's MLP for these widths: torch's default initialisation under the seed, or ``mlp.init``."""
    if config.mlp.init is not None:
        mlp = load_mlp(config.mlp.init)
        if (mlp.in_dim, mlp.out_dim) != (in_dim, out_dim):
            raise InvalidInputError(f"mlp.init maps {mlp.in_dim}→{mlp.out_dim}, the encoders need "
                                    f"{in_dim}→{out_dim}")
        return mlp.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return ClipAwayMLP(in_dim, out_dim, config.mlp.hidden_layers)


def save_mlp(mlp: ClipAwayMLP, path: Path) -> None:
    """The released layout: the Sequential's state dict, float32, as ``model.safetensors``."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in mlp.state_dict().items()}, str(temp))


def train_clipaway_mlp(config: ClipAwayMlpTrainConfig, *, progress: bool = True) -> TrainResult:
    """Train the MLP to ``config.max_steps`` steps, resuming from the newest checkpoint in
    ``config.output_dir``; the embeddings come from the cache (computed first where missing)."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=config.device == "cpu")
    device = accelerator.device
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        dumped = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        (output_dir / "config.yaml").write_text(dumped)

    # ---- the frozen encoders' embeddings, once ------------------------------------------------------------
    enc = config.encoders
    alpha_clip = resolve_file("alpha_clip", enc.alpha_clip, weights=enc.weights)
    image_encoder = resolve_image_encoder(enc.image_encoder, weights=enc.weights,
                                          allow_download=enc.allow_download)
    root = Path(config.data.path).expanduser()
    images = list_images(root, config.data.limit)
    key = cache_key(alpha_clip, image_encoder, config.data.image_size, root, images)
    cache_root = Path(config.cache_dir).expanduser() if config.cache_dir else output_dir / "cache"
    cache = FeatureCache(cache_root / key, images, root, config.shard_size)
    encoded = cache.build(lambda: load_encoders(alpha_clip, image_encoder, device), config.data.image_size,
                          config.encode_batch_size, process_index=accelerator.process_index,
                          num_processes=accelerator.num_processes,
                          progress=progress and accelerator.is_local_main_process)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        cache.write_manifest()
    logger.info("embedding cache %s: %d images, %d encoded by this process", cache.folder, len(images),
                encoded)
    inputs, targets = cache.load()

    # ---- the MLP -------------------------------------------------------------------------------------------
    mlp = initial_mlp(config, inputs.shape[1], targets.shape[1]).to(device).train()
    o = config.optim
    optimizer = torch.optim.Adam(mlp.parameters(), lr=o.lr, betas=o.betas, eps=o.eps,
                                 weight_decay=o.weight_decay)
    mlp, optimizer = accelerator.prepare(mlp, optimizer)
    start = resumed_from = 0
    latest = latest_checkpoint(output_dir)
    if latest is not None:
        accelerator.load_state(str(latest))
        start = resumed_from = checkpoint_step(latest)
        logger.info("resumed from %s (step %d)", latest, start)

    metrics_path = output_dir / "metrics.jsonl"
    if accelerator.is_main_process:
        open_metrics(output_dir, start)
    bar = tqdm(total=config.max_steps, initial=start, desc="clipaway-mlp",
               disable=not progress or not accelerator.is_main_process)
    rank, world, per_process = accelerator.process_index, accelerator.num_processes, config.batch_size
    step = start
    while step < config.max_steps:
        batch = batch_indices(step, len(inputs), per_process * world, config.seed)
        mine = batch[rank * per_process:(rank + 1) * per_process]
        with accelerator.autocast():
            loss = F.mse_loss(mlp(inputs[mine].to(device)).float(), targets[mine].to(device))
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        if step % config.log_every == 0 or step == config.max_steps:
            mean_loss = float(accelerator.reduce(loss.detach(), reduction="mean"))
            bar.set_postfix(loss=f"{mean_loss:.4g}")
            if accelerator.is_main_process:
                log_metrics(metrics_path, {"step": step, "loss": mean_loss})
        if step % config.checkpoint_every == 0 or step == config.max_steps:
            checkpoint = checkpoint_dir(output_dir, step)
            accelerator.save_state(str(checkpoint))
            if accelerator.is_main_process:
                mark_complete(checkpoint, step)
    bar.close()

    accelerator.wait_for_everyone()
    weights_dir = output_dir / WEIGHTS_SUBDIR
    if accelerator.is_main_process:
        save_mlp(accelerator.unwrap_model(mlp), weights_dir / WEIGHTS_FILE)
    return TrainResult(step=step, output_dir=output_dir, weights_dir=weights_dir, metrics_path=metrics_path,
                       resumed_from=resumed_from)


__all__ = ["WEIGHTS_FILE", "WEIGHTS_SUBDIR", "batch_indices", "initial_mlp", "save_mlp", "train_clipaway_mlp"]

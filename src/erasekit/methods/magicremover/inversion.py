"""Text-image alignment (MagicRemover arXiv:2310.02848, Sec. 3.2, Eq. 6): DDIM inversion with the conditional
embedding, then null-text optimisation (prompt-to-prompt's null-text inversion, arXiv:2211.09794, Sec. 3.2),
or negative-prompt inversion (arXiv:2305.16807) as the fast option; and a cache of both.

Null-text optimisation follows prompt-to-prompt's reference settings: at sampling step i, up to
``inner_steps`` (N = 10) Adam steps on the null embedding ∅_i with learning rate 1e-2·(1 − i/100), stopping
early once the loss is below ε + i·2e-5 (ε = 1e-5), under guidance w = 7.5. The paper says "about 100 steps
at each sampling moment" (Sec. 3.4); prompt-to-prompt's code, which it builds on, uses 10 — N is a
parameter, 10 by default.

Eq. 6 writes the squared L2 norm; the reference minimises the mean squared error (the same minimiser, the ε
threshold being set on the mean), and so does this module.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ...diffusion.inversion import Inversion, ddim_inversion
from ...diffusion.loop import PromptEmbeddings, Scheduler, UNet
from .grad import frozen

InversionMode = Literal["null-text", "negative-prompt"]
# progress(stage, step, total): the stage names are "inversion" and "null-text".
StageProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class InversionSettings:
    """How an image is aligned with its prompt. ``mode``: ``"null-text"`` (Eq. 6 optimisation) or
    ``"negative-prompt"`` (∅_t = the prompt's embedding, no optimisation: with it, guided sampling is the
    conditional DDIM sampler that inverts the inversion exactly up to its ε approximation)."""

    steps: int = 50
    guidance: float = 7.5
    mode: InversionMode = "null-text"
    inner_steps: int = 10
    epsilon: float = 1e-5
    learning_rate: float = 1e-2


@dataclass
class AlignedInversion:
    """The DDIM trajectory and the per-sampling-step null embeddings ``null[i]`` (sampling step i runs at
    ``inversion.timesteps[-1 - i]``). ``losses[i]`` is the last Eq. 6 loss at step i (empty for
    negative-prompt inversion)."""

    inversion: Inversion
    null: list[torch.Tensor]
    losses: list[float]

    @property
    def start(self) -> torch.Tensor:
        """z_T, where both sampling branches start."""
        return self.inversion.latents[-1]


def invert(unet: UNet, sampler: Scheduler, inverse: Scheduler, latents: torch.Tensor,
           embeddings: PromptEmbeddings, settings: InversionSettings, *,
           progress: StageProgress | None = None) -> AlignedInversion:
    """Algorithm 1, lines 2–3: DDIM-invert z_0 (``latents``) with the conditional embedding (guidance 1), then
    align: null-text optimisation or negative-prompt inversion. ``embeddings.negative`` is ∅'s starting value
    (the empty prompt's embedding). ``sampler`` is a DDIM scheduler; its timesteps are set here."""
    inversion = ddim_inversion(unet, inverse, latents, PromptEmbeddings(embeddings.positive),
                               num_inference_steps=settings.steps)
    if progress is not None:
        progress("inversion", settings.steps, settings.steps)
    if settings.mode == "negative-prompt":
        return AlignedInversion(inversion, [embeddings.positive] * settings.steps, [])
    if embeddings.negative is None:
        raise ValueError("null-text optimisation starts from the empty prompt's embedding: pass negative=")
    return null_text_optimisation(unet, sampler, inversion, embeddings.positive, embeddings.negative,
                                  settings, progress=progress)


def null_text_optimisation(unet: UNet, sampler: Scheduler, inversion: Inversion, cond: torch.Tensor,
                           null: torch.Tensor, settings: InversionSettings, *,
                           progress: StageProgress | None = None) -> AlignedInversion:
    """Eq. 6 at each sampling step i: min over ∅_i of MSE(z^inv_{t−1}, DDIM-step(ε̂(z_t; ∅_i))), with ε̂ the
    guided prediction ε_u + w(ε_c − ε_u); ∅_i starts from ∅_{i−1} and z_t follows the optimised trajectory,
    as in prompt-to-prompt. Gradients go to ∅_i only (``torch.autograd.grad``): UNet parameters get none."""
    sampler.set_timesteps(settings.steps, device=cond.device)
    latents = inversion.latents
    current = latents[-1]
    nulls: list[torch.Tensor] = []
    losses: list[float] = []
    threshold_step = 2e-5  # prompt-to-prompt's per-step growth of the early-stop threshold
    for i, t in enumerate(sampler.timesteps):
        target = latents[-2 - i]
        with torch.no_grad():
            eps_cond = unet(current, t, encoder_hidden_states=cond, return_dict=False)[0]
        null = null.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([null], lr=settings.learning_rate * (1.0 - i / 100.0))
        loss_value = float("nan")
        for _ in range(settings.inner_steps):
            with torch.enable_grad(), frozen(unet):
                eps_null = unet(current, t, encoder_hidden_states=null, return_dict=False)[0]
                eps = eps_null + settings.guidance * (eps_cond - eps_null)
                previous = sampler.step(eps, t, current, return_dict=False)[0]
                loss = F.mse_loss(previous, target)
                (null.grad,) = torch.autograd.grad(loss, [null])
            optimizer.step()
            loss_value = loss.item()
            if loss_value < settings.epsilon + i * threshold_step:
                break
        null = null.detach()
        nulls.append(null)
        losses.append(loss_value)
        with torch.no_grad():
            eps_null = unet(current, t, encoder_hidden_states=null, return_dict=False)[0]
            eps = eps_null + settings.guidance * (eps_cond - eps_null)
            current = sampler.step(eps, t, current, return_dict=False)[0]
        if progress is not None:
            progress("null-text", i + 1, settings.steps)
    return AlignedInversion(inversion, nulls, losses)


# ------------------------------------------------------------------------------------------------------------
# The cache: re-running with another λ or window costs only the sampling
# ------------------------------------------------------------------------------------------------------------
def image_key(image: np.ndarray) -> str:
    """SHA-256 of the working-size pixels and their shape."""
    digest = hashlib.sha256(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


CacheKey = tuple[str, str, str, tuple[object, ...]]


def cache_key(model: str, image: np.ndarray, prompt: str, settings: InversionSettings) -> CacheKey:
    return (model, image_key(image), prompt, astuple(settings))


class InversionCache:
    """Aligned inversions by (model, image hash, prompt, settings), in memory and, with ``folder``, on disk as
    safetensors (one file per key, named by the key's hash). Thread-safe; a disk entry is loaded onto
    ``device``."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = None if folder is None else Path(folder)
        self._entries: dict[CacheKey, AlignedInversion] = {}
        self._lock = threading.Lock()

    def get(self, key: CacheKey, compute: Callable[[], AlignedInversion], *,
            device: torch.device | str = "cpu") -> AlignedInversion:
        with self._lock:
            if key in self._entries:
                return self._entries[key]
        entry = self._read(key, device)
        if entry is None:
            entry = compute()
            self._write(key, entry)
        with self._lock:
            self._entries[key] = entry
        return entry

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _path(self, key: CacheKey) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{hashlib.sha256(repr(key).encode()).hexdigest()}.safetensors"

    def _read(self, key: CacheKey, device: torch.device | str) -> AlignedInversion | None:
        from safetensors.torch import load_file

        path = self._path(key)
        if path is None or not path.is_file():
            return None
        tensors = load_file(str(path), device=str(device))
        count, steps = int(tensors["count"].item()), int(tensors["steps"].item())
        latents = [tensors[f"latent.{k}"] for k in range(count)]
        nulls = [tensors[f"null.{k}"] for k in range(steps)]
        losses = tensors["losses"].tolist()
        return AlignedInversion(Inversion(latents, tensors["timesteps"]), nulls, losses)

    def _write(self, key: CacheKey, entry: AlignedInversion) -> None:
        from safetensors.torch import save_file

        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # Clones: negative-prompt inversion repeats one tensor, and safetensors refuses shared storage.
        tensors = {f"latent.{k}": z.detach().cpu().clone() for k, z in enumerate(entry.inversion.latents)}
        tensors.update({f"null.{k}": n.detach().cpu().clone() for k, n in enumerate(entry.null)})
        tensors.update(count=torch.tensor(len(entry.inversion.latents)), steps=torch.tensor(len(entry.null)),
                       timesteps=entry.inversion.timesteps.cpu(),
                       losses=torch.tensor(entry.losses, dtype=torch.float64))
        save_file(tensors, str(path))

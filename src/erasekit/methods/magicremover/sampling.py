"""Algorithm 1's sampling loop (MagicRemover arXiv:2310.02848, App. A.1, lines 4–14): a reconstruction branch
and an editing branch, both from z_T, evaluated in one batched UNet call per evaluation.

The batch rows are ``[rec/∅_t, edit/∅_t, rec/y, edit/y]``: CFG halves as diffusers orders them, each half
holding both branches. The reconstruction branch samples with ε̂ alone (with null-text inversion it retraces
the image); the editing branch reads the reconstruction branch's self-attention K/V (Eq. 10) and is guided by
the cross-attention of its conditional row (Eq. 7–9), with classifier optimisation (Eq. 12) in t1 < t < t2.

This is not :func:`~erasekit.diffusion.loop.denoise` with hooks: a step here re-evaluates the UNet at one t
(lines 9–10), differentiates through it, and splits the DDIM update (line 13) — not one call per step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...diffusion.attention import AttentionStore, ExplicitAttnProcessor, LayerSelector, installed_processors
from ...diffusion.loop import Scheduler, UNet
from .attention_maps import Target, removal_weight, target_maps
from .grad import frozen
from .guidance import (
    GuidanceSettings,
    alphas,
    attention_energy,
    classifier_update,
    eq13_guided_noise,
    guided_noise,
    mask_energy,
    split_ddim_step,
)
from .inversion import AlignedInversion
from .self_attention import SharedKVProcessor

# Batch rows of one evaluation.
REC_NULL, EDIT_NULL, REC_COND, EDIT_COND = range(4)
KV_SOURCES = (REC_NULL, REC_NULL, REC_COND, REC_COND)  # Eq. 10: both editing rows read their half's rec row
OWN_KV = (REC_NULL, EDIT_NULL, REC_COND, EDIT_COND)
# How an optional mask M enters (App. A.4): "term" adds ∇(ẑ_{t−1} − z^inv_{t−1})⊙(1 − M) to Eq. 9; "eq13"
# replaces Eq. 9's map weighting by M (Eq. 13). The paper found no significant difference between the two.
MASK_RULES = ("term", "eq13")


@dataclass
class Evaluation:
    """One batched call: ε̂ of both branches, the editing branch's ε̂^guid (ε̂ when unguided), and the
    reconstruction branch's removal map Σ_m Π_n A (h×w, detached) — what ``result.alpha`` is built from."""

    rec: torch.Tensor
    edit: torch.Tensor
    edit_guided: torch.Tensor
    rec_weight: torch.Tensor


@dataclass
class SamplingResult:
    edited: torch.Tensor
    reconstructed: torch.Tensor
    removal_map: torch.Tensor  # Σ over the steps with t < t2 of the reconstruction branch's map, max 1


class TwoBranchSampler:
    """Samples both branches for one image (batch 1). ``cond`` is the prompt embedding, ``target`` the parsed
    target; ``keep`` (1 − M on the latent grid) switches on the optional mask, used as ``mask_rule`` says
    (:data:`MASK_RULES`); ``inject_kv`` Eq. 10."""

    def __init__(self, unet: UNet, scheduler: Scheduler, cond: torch.Tensor, target: Target,
                 settings: GuidanceSettings, *, guidance_scale: float = 7.5, inject_kv: bool = True,
                 keep: torch.Tensor | None = None, mask_rule: str = "term"):
        if mask_rule not in MASK_RULES:
            raise ValueError(f"mask_rule must be one of {', '.join(MASK_RULES)}, got {mask_rule!r}")
        self.unet = unet
        self.scheduler = scheduler
        self.cond = cond
        self.target = target
        self.settings = settings
        self.guidance_scale = guidance_scale
        self.keep = keep
        self.mask_rule = mask_rule
        self.store = AttentionStore(average_heads=True, device=None, detach=False)
        self.kv_sources = KV_SOURCES if inject_kv else OWN_KV

    def processor(self, layer: str) -> ExplicitAttnProcessor | SharedKVProcessor:
        if layer.endswith(".attn2.processor"):
            return ExplicitAttnProcessor(layer, store=self.store)
        return SharedKVProcessor(ExplicitAttnProcessor(layer), self.kv_sources)

    def run(self, aligned: AlignedInversion, *,
            progress: Callable[[int, int], None] | None = None) -> SamplingResult:
        timesteps = self.scheduler.timesteps
        z_rec = z_edit = aligned.start
        inverted = aligned.inversion.latents
        total_map = torch.zeros(z_rec.shape[-2:], device=z_rec.device)
        with installed_processors(self.unet, LayerSelector(kind="both"), factory=self.processor):
            for i, t in enumerate(timesteps):
                null, step = aligned.null[i], int(t)
                target_prev = inverted[-2 - i]
                if self.settings.guided(step):
                    ev = self.evaluate(z_rec, z_edit, t, null, target_prev)
                    if self.settings.optimised(step):
                        alpha = alphas(self.scheduler, t)[0]
                        for _ in range(self.settings.opt_steps):
                            # Line 10 applied to the current z_t^opt (as written, with z_t on the right, every
                            # iteration would give the same z_t^opt).
                            z_edit = classifier_update(z_edit, ev.edit, ev.edit_guided, alpha)
                            ev = self.evaluate(z_rec, z_edit, t, null, target_prev)
                    z_edit = split_ddim_step(z_edit, ev.edit, ev.edit_guided, *alphas(self.scheduler, t))
                else:
                    with torch.no_grad():
                        ev = self.evaluate(z_rec, z_edit, t, null, target_prev, guide=False)
                    z_edit = self.scheduler.step(ev.edit, t, z_edit, return_dict=False)[0]
                z_rec = self.scheduler.step(ev.rec, t, z_rec, return_dict=False)[0]
                if step < self.settings.t2:
                    total_map = total_map + ev.rec_weight
                if progress is not None:
                    progress(i + 1, len(timesteps))
        peak = total_map.max()
        removal_map = total_map / peak if peak > 0 else total_map
        return SamplingResult(z_edit, z_rec, removal_map)

    def evaluate(self, z_rec: torch.Tensor, z_edit: torch.Tensor, t: torch.Tensor, null: torch.Tensor,
                 target_prev: torch.Tensor, *, guide: bool = True) -> Evaluation:
        """ε̂ of both branches at (z_rec, z_edit, t) and, with ``guide``, ε̂^guid of the editing branch: the
        gradient of Σ g over the editing row's maps reaches z_edit only (the UNet is frozen for the call)."""
        size = (int(z_edit.shape[-2]), int(z_edit.shape[-1]))
        z = z_edit.detach().requires_grad_(guide)
        with torch.enable_grad() if guide else contextlib.nullcontext(), frozen(self.unet):
            rec, edit = self._noise(z_rec, z, t, null)
            maps = self.store.maps[self.store.step]
            rec_weight = removal_weight(target_maps(maps, REC_COND, self.target, size)).detach()
            guided = edit
            if guide:
                guided = self._guided(z, edit, t, target_prev, maps, size)
        self.store.clear()  # drops the maps' graph
        return Evaluation(rec.detach(), edit.detach(), guided, rec_weight)

    def _guided(self, z: torch.Tensor, edit: torch.Tensor, t: torch.Tensor, target_prev: torch.Tensor,
                maps: dict[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """ε̂^guid of the editing branch: ε̂ − v·Σ_m Π_n A ⊙ ∇_z Σ g (Eq. 8–9); with a mask, minus v·∇_z of the
        mask energy (``term``, App. A.4) or with M replacing the map weighting (``eq13``, Eq. 13)."""
        edit_maps = target_maps(maps, EDIT_COND, self.target, size)
        energy = torch.stack([attention_energy(a, self.settings.lam) for words in edit_maps
                              for a in words]).sum()
        term = self.keep is not None and self.mask_rule == "term"
        (grad,) = torch.autograd.grad(energy, [z], retain_graph=term)
        if self.keep is not None and self.mask_rule == "eq13":
            return eq13_guided_noise(edit.detach(), 1.0 - self.keep, grad, self.settings.weight)
        weight = removal_weight(edit_maps).detach()
        if self.keep is None:
            return guided_noise(edit.detach(), weight, grad, self.settings.weight)
        alpha, alpha_prev = alphas(self.scheduler, t)
        predicted = split_ddim_step(z, edit, edit, alpha, alpha_prev)
        (mask_grad,) = torch.autograd.grad(mask_energy(predicted, target_prev, self.keep), [z])
        guided = guided_noise(edit.detach(), weight, grad, self.settings.weight)
        return guided - self.settings.weight * mask_grad

    def _noise(self, z_rec: torch.Tensor, z_edit: torch.Tensor, t: torch.Tensor,
               null: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.store.clear()
        latents = torch.cat([z_rec, z_edit, z_rec, z_edit])
        context = torch.cat([null, null, self.cond, self.cond])
        output = self.unet(self.scheduler.scale_model_input(latents, t), t, encoder_hidden_states=context,
                           return_dict=False)[0]
        rec_null, edit_null, rec_cond, edit_cond = output.chunk(4)
        w = self.guidance_scale
        return rec_null + w * (rec_cond - rec_null), edit_null + w * (edit_cond - edit_null)

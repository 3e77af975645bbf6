"""Noising at a given timestep and the one-step clean-latent estimate, per parametrisation.

One-step methods (OSOR) and training code need the scheduler's maths without running a sampling loop. These
functions restate it on plain tensors and are pinned by tests to diffusers' own schedulers:

* :func:`add_noise` — ``z_t = sqrt(ᾱ_t)·x0 + sqrt(1-ᾱ_t)·ε`` (DDPM/DDIM ``add_noise``);
* :func:`flow_noise` — ``z_s = s·ε + (1-s)·x0`` (``FlowMatchEulerDiscreteScheduler.scale_noise``);
* :func:`predict_x0` — the scheduler's ``pred_original_sample`` for epsilon, v-prediction and flow (velocity)
  outputs: ``(z_t - sqrt(1-ᾱ_t)·ε)/sqrt(ᾱ_t)``, ``sqrt(ᾱ_t)·z_t - sqrt(1-ᾱ_t)·v`` and ``z_s - s·v``.

The expressions keep diffusers' operation order and dtypes so results agree exactly, not just closely.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    import torch

Parametrization = Literal["epsilon", "v_prediction", "flow"]
PARAMETRIZATIONS: tuple[str, ...] = ("epsilon", "v_prediction", "flow")


def alphas_cumprod(schedule: Any) -> torch.Tensor:
    """ᾱ_t of a DDPM-family scheduler (anything with ``alphas_cumprod``), or the tensor itself."""
    import torch

    if isinstance(schedule, torch.Tensor):
        return schedule
    table = getattr(schedule, "alphas_cumprod", None)
    if table is None:
        raise ValueError(
            f"{type(schedule).__name__} has no alphas_cumprod (is it a flow-matching scheduler?)"
        )
    return table


def _timesteps(t: Any, device) -> torch.Tensor:
    import torch

    return torch.as_tensor(t, device=device, dtype=torch.long)


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample vector (or a scalar) over the remaining dimensions of ``like``."""
    values = values.flatten()
    while values.ndim < like.ndim:
        values = values.unsqueeze(-1)
    return values


def add_noise(schedule: Any, x0: torch.Tensor, noise: torch.Tensor, t: Any) -> torch.Tensor:
    """Forward diffusion to integer timestep(s) ``t`` (DDPMScheduler/DDIMScheduler.add_noise)."""
    acp = alphas_cumprod(schedule).to(device=x0.device).to(dtype=x0.dtype)
    steps = _timesteps(t, x0.device)
    sqrt_alpha = _per_sample(acp[steps] ** 0.5, x0)
    sqrt_one_minus = _per_sample((1 - acp[steps]) ** 0.5, x0)
    return sqrt_alpha * x0 + sqrt_one_minus * noise


def flow_noise(x0: torch.Tensor, noise: torch.Tensor, s: Any) -> torch.Tensor:
    """Flow-matching interpolation ``(1-s)·x0 + s·noise`` at noise level ``s``.

    ``s`` is in [0, 1]: a Python number, or a tensor with one value per sample. A Python number stays a
    Python number, so torch multiplies with the exact coefficients ``1-s`` and ``s`` (in its float32 op math
    for bf16/fp16 tensors) instead of first rounding them to the tensor's dtype: in bf16, 0.4 would become
    0.40039 and 0.6 0.5996. In float32 both forms give the same bits.
    """

    import torch

    if isinstance(s, (int, float)):
        return (1.0 - s) * x0 + s * noise
    sigma = _per_sample(torch.as_tensor(s, device=x0.device, dtype=x0.dtype), x0)
    return (1.0 - sigma) * x0 + sigma * noise


def predict_x0(
    model_output: torch.Tensor,
    z_t: torch.Tensor,
    t: Any,
    parametrization: Parametrization = "epsilon",
    *,
    schedule: Any = None,
    clip_sample_range: float | None = None,
) -> torch.Tensor:
    """The one-step clean-latent estimate x̂0 from a model output at ``t``.

    ``epsilon`` / ``v_prediction``: ``t`` is an integer timestep (or one per sample) and ``schedule`` the
    scheduler (or its ``alphas_cumprod``); equals ``step(...).pred_original_sample`` of DDPM/DDIM with
    ``clip_sample`` off (pass ``clip_sample_range`` to clamp like ``clip_sample=True``). ``flow``: ``t`` is
    the noise level s in [0, 1] and the output a velocity; equals the Euler step of
    FlowMatchEulerDiscreteScheduler from s to 0.
    """
    import torch

    if parametrization == "flow":
        sigma = torch.as_tensor(t, device=z_t.device, dtype=torch.float32)
        if sigma.ndim:  # one level per sample
            sigma = _per_sample(sigma, z_t)
        # diffusers' Euler step upcasts to float32 and casts back; do the same so fp16/bf16 agree too.
        x0 = (z_t.to(torch.float32) + (0.0 - sigma) * model_output).to(model_output.dtype)
    elif parametrization in ("epsilon", "v_prediction"):
        if schedule is None:
            raise ValueError(f"predict_x0 with {parametrization!r} needs the scheduler (schedule=...)")
        acp = alphas_cumprod(schedule)
        steps = _timesteps(t, acp.device)
        alpha = acp[steps]
        if alpha.ndim:  # one timestep per sample: broadcast, in the sample's dtype
            alpha = _per_sample(alpha.to(device=z_t.device, dtype=z_t.dtype), z_t)
        else:
            alpha = alpha.to(z_t.device)
        beta = 1 - alpha
        if parametrization == "epsilon":
            x0 = (z_t - beta**0.5 * model_output) / alpha**0.5
        else:
            x0 = (alpha**0.5) * z_t - (beta**0.5) * model_output
    else:
        raise ValueError(
            f"unknown parametrization {parametrization!r}; choose one of {', '.join(PARAMETRIZATIONS)}"
        )
    if clip_sample_range is not None:
        x0 = x0.clamp(-clip_sample_range, clip_sample_range)
    return x0


def parametrization_of(scheduler: Any) -> Parametrization:
    """What the model predicts, read from a scheduler's config (flow-matching schedulers predict velocity)."""
    if "FlowMatch" in type(scheduler).__name__:
        return "flow"
    kind = getattr(scheduler.config, "prediction_type", "epsilon")
    if kind not in ("epsilon", "v_prediction"):
        raise ValueError(f"unsupported prediction_type {kind!r}")
    return cast(Parametrization, kind)


__all__ = ["PARAMETRIZATIONS", "Parametrization", "add_noise", "alphas_cumprod", "flow_noise",
           "parametrization_of", "predict_x0"]

"""One optimizer with its own loss scaler: what a GAN trainer steps twice per iteration.

Accelerate gives every prepared optimizer the accelerator's one ``GradScaler``. With a generator and a
discriminator, each ``step()`` then updates the same scale, so the discriminator's gradients (scaled by the
scale in force at its backward) can be unscaled with a scale the generator's step has just changed, and an
overflow in one network shrinks the other's scale. :class:`ScaledOptimizer` pairs each optimizer with its own
``torch.amp.GradScaler`` (enabled for fp16 only; bf16 and fp32 need no scaling) and runs the standard sequence
scale → backward → (reduce) → unscale → clip → step → update, from torch's AMP recipe for several optimizers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class ScaledOptimizer:
    """``optimizer`` over ``params`` with a private ``GradScaler``.

    ``device_type``: where the scaler lives ("cuda", "cpu"); ``fp16``: whether loss scaling is on;
    ``max_grad_norm``: clip the unscaled gradients to this norm before the step (None: no clipping).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        params: Iterable[torch.nn.Parameter],
        *,
        device_type: str,
        fp16: bool,
        max_grad_norm: float | None = None,
    ):
        self.optimizer = optimizer
        self.params = list(params)
        self.max_grad_norm = max_grad_norm
        self.scaler = torch.amp.GradScaler(device_type, enabled=fp16)

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss`` multiplied by this optimizer's current scale."""
        self.scaler.scale(loss).backward()

    def step(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> bool:
        """Apply the accumulated gradients; returns False when an overflow made the scaler skip the step.

        ``reduce`` (e.g. a mean over processes) is applied to every gradient before unscaling.
        """
        if reduce is not None:
            for p in self.params:
                if p.grad is not None:
                    p.grad = reduce(p.grad)
        self.scaler.unscale_(self.optimizer)
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return not self.scaler.is_enabled() or self.scaler.get_scale() >= scale

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


__all__ = ["ScaledOptimizer"]

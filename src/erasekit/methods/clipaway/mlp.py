"""CLIPAway's MLP from AlphaCLIP's embedding space to IP-Adapter's (arXiv:2406.09368, Sec. 3.2, Table 2).

IP-Adapter SD1.5 conditions on OpenCLIP ViT-H/14 image embeddings (1024-d); AlphaCLIP ViT-L/14 gives
768-d embeddings. The MLP maps one to the other: three [Linear, LayerNorm, GELU] at the input width, one
widening to the output width, two more at the output width, and a final Linear. It is an ``nn.Sequential``
so its state-dict keys are the layer indices (``0.weight`` … ``18.bias``), exactly those of the authors'
released ``model.safetensors``, which therefore loads unchanged and strictly.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ...types import InvalidInputError


class ClipAwayMLP(nn.Sequential):
    """Table 2's MLP. ``hidden_layers`` [Linear, LayerNorm, GELU] triples: the first ``hidden_layers // 2``
    at ``in_dim``, the next one from ``in_dim`` to ``out_dim``, the rest at ``out_dim``; then a final
    Linear(out_dim, out_dim). The defaults are the released model's (768 → 1024, six triples)."""

    def __init__(self, in_dim: int = 768, out_dim: int = 1024, hidden_layers: int = 6):
        layers: list[nn.Module] = []
        for i in range(hidden_layers):
            width_in = in_dim if i <= hidden_layers // 2 else out_dim
            width_out = in_dim if i < hidden_layers // 2 else out_dim
            layers += [nn.Linear(width_in, width_out), nn.LayerNorm(width_out), nn.GELU()]
        layers.append(nn.Linear(out_dim, out_dim))
        super().__init__(*layers)
        self.in_dim, self.out_dim, self.hidden_layers = in_dim, out_dim, hidden_layers


def mlp_shape_from_state_dict(state: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    """(in_dim, out_dim, hidden_layers) of a Sequential-keyed state dict of :class:`ClipAwayMLP`."""
    linear = sorted(int(k.split(".")[0]) for k, v in state.items() if k.endswith(".weight") and v.ndim == 2)
    if not linear or "0.weight" not in state:
        raise InvalidInputError("not a CLIPAway MLP state dict: no Sequential Linear keys "
                                "(0.weight, 3.weight, …)")
    return state["0.weight"].shape[1], state[f"{linear[-1]}.weight"].shape[0], len(linear) - 1


def load_mlp(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> ClipAwayMLP:
    """Load the released ``model.safetensors`` (or one ``erasekit train clipaway-mlp`` wrote), strictly."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    mlp = ClipAwayMLP(*mlp_shape_from_state_dict(state))
    mlp.load_state_dict(state, strict=True)
    return mlp.to(device=device, dtype=torch.float32).eval().requires_grad_(False)


__all__ = ["ClipAwayMLP", "load_mlp", "mlp_shape_from_state_dict"]

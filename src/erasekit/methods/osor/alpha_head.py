"""OSOR's alpha head (App. B.5): widen the backbone's terminal layer by the alpha-logit channels.

* SDXL-Inpainting: the UNet's ``conv_out`` goes from 4 to 5 output channels; channel 4 is the alpha logit at
latent
  resolution.
* FLUX Fill: the transformer's ``proj_out`` goes from 64 to 68 output features; the 4 extra features are one
alpha
  channel in FLUX's 2×2-packed token layout and unpack to a single channel at latent resolution.

The old output rows are copied, so the backbone's native prediction (the first 4 / 64 outputs) is unchanged by
the expansion; the new rows are freshly initialised (Kaiming-normal weights and zero bias, as the authors do).
The model config's ``out_channels`` is updated with :meth:`register_to_config`, so ``save_pretrained`` /
``from_pretrained`` rebuild the expanded layer. ``alpha = sigmoid(logits)`` (Eq. 12).

No library ships this layer surgery (diffusers can only rebuild a model with another ``out_channels``,
dropping the pretrained head), hence this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from ...types import InvalidInputError

if TYPE_CHECKING:
    import torch

Family = Literal["sdxl", "flux"]


@dataclass(frozen=True)
class HeadSpec:
    """Where a backbone's terminal layer is and how wide its native and alpha outputs are."""

    family: Family
    attribute: str          # the terminal layer's attribute on the model
    native: int             # native output channels (SDXL latent channels / FLUX packed channels)
    alpha: int              # extra output channels holding the alpha logits

    @property
    def expanded(self) -> int:
        return self.native + self.alpha


SDXL_HEAD = HeadSpec("sdxl", "conv_out", 4, 1)
FLUX_HEAD = HeadSpec("flux", "proj_out", 64, 4)


def family_of(model: Any) -> Family:
    """``sdxl`` for a UNet (anything with ``conv_out``), ``flux`` for a FLUX transformer.

    A FLUX transformer is anything with ``proj_out`` + ``x_embedder``.
    """
    if hasattr(model, "conv_out"):
        return "sdxl"
    if hasattr(model, "proj_out") and hasattr(model, "x_embedder"):
        return "flux"
    raise TypeError(f"{type(model).__name__} is neither an SDXL UNet nor a FLUX transformer")


def _out_width(layer) -> int:
    return layer.out_channels if hasattr(layer, "out_channels") else layer.out_features


def spec_of(model: Any) -> HeadSpec:
    """The head layout for ``model``'s family."""
    return SDXL_HEAD if family_of(model) == "sdxl" else FLUX_HEAD


def has_alpha_head(model: Any) -> bool:
    """True when the terminal layer already carries the alpha channels (5 for SDXL, 68 for FLUX)."""
    spec = spec_of(model)
    return _out_width(getattr(model, spec.attribute)) == spec.expanded


def _widened(
    layer: torch.nn.Module, extra: int, generator: torch.Generator | None
) -> torch.nn.Conv2d | torch.nn.Linear:
    """A copy of ``layer`` (Conv2d or Linear) with ``extra`` more outputs.

    Old rows are copied, new rows are Kaiming-normal.
    """
    import torch
    from torch import nn

    if not isinstance(layer, (nn.Conv2d, nn.Linear)):
        raise TypeError(f"cannot widen a {type(layer).__name__}; expected Conv2d or Linear")
    weight = layer.weight
    kwargs: dict[str, Any] = {"device": weight.device, "dtype": weight.dtype, "bias": layer.bias is not None}
    new: nn.Conv2d | nn.Linear
    if isinstance(layer, nn.Conv2d):
        # Conv2d stores its geometry as 2-tuples (torch's _pair); torch annotates them as tuple[int, ...].
        new = nn.Conv2d(
            layer.in_channels,
            layer.out_channels + extra,
            cast("tuple[int, int]", layer.kernel_size),
            stride=cast("tuple[int, int]", layer.stride),
            padding=cast("str | tuple[int, int]", layer.padding),
            dilation=cast("tuple[int, int]", layer.dilation),
            groups=layer.groups,
            padding_mode=layer.padding_mode,
            **kwargs,
        )
        old_out = layer.out_channels
    else:
        new = nn.Linear(layer.in_features, layer.out_features + extra, **kwargs)
        old_out = layer.out_features
    with torch.no_grad():
        new.weight[:old_out].copy_(weight)
        if weight.device.type != "meta":
            # Initialise in float32 with our own generator (reproducible, and kaiming on bf16 is coarse), then
            # cast.
            fresh = torch.empty(new.weight[old_out:].shape, dtype=torch.float32)
            nn.init.kaiming_normal_(fresh, nonlinearity="relu", generator=generator)
            new.weight[old_out:].copy_(fresh.to(weight.dtype))
        if layer.bias is not None:
            assert new.bias is not None, "built with bias=True when the old layer has one"
            new.bias[:old_out].copy_(layer.bias)
            new.bias[old_out:].zero_()
    new.requires_grad_(weight.requires_grad)
    return new


def add_alpha_head(model: Any, *, seed: int = 0) -> Any:
    """Expand ``model``'s terminal layer in place by the alpha channels (no-op if already expanded).

    SDXL ``conv_out`` 4→5, FLUX ``proj_out`` 64→68 (App. B.5); the config's ``out_channels`` follows.
    Returns ``model``.
    """
    import torch

    if has_alpha_head(model):
        return model
    spec = spec_of(model)
    layer = getattr(model, spec.attribute)
    if _out_width(layer) != spec.native:
        raise InvalidInputError(
            f"{spec.attribute} has {_out_width(layer)} outputs; OSOR's {spec.family} head expects "
            f"{spec.native} (or {spec.expanded} with the alpha head)"
        )
    generator = torch.Generator("cpu").manual_seed(seed)
    setattr(model, spec.attribute, _widened(layer, spec.alpha, generator))
    # The config drives from_pretrained: UNet2DConditionModel builds conv_out with out_channels, and
    # FluxTransformer2DModel builds proj_out with patch_size² · out_channels (patch_size is 1 for FLUX).
    model.register_to_config(out_channels=spec.expanded)
    return model


def split_output(output: torch.Tensor, family: Family) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a backbone output into (native prediction, alpha logits or None).

    SDXL: N×5×h×w -> (N×4×h×w, N×1×h×w) (Eq. 12's u and ℓ). FLUX: N×L×68 -> (N×L×64, N×L×4), logits still
    packed.
    """
    if family == "sdxl":
        native, extra = output[:, : SDXL_HEAD.native], output[:, SDXL_HEAD.native :]
    else:
        native, extra = output[..., : FLUX_HEAD.native], output[..., FLUX_HEAD.native :]
    return native, (extra if extra.shape[1 if family == "sdxl" else -1] else None)


def alpha_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Eq. 12: α̂ = σ(ℓ), computed in float32 so a bf16 backbone still gives a smooth alpha."""
    import torch

    return torch.sigmoid(logits.float())


def alpha_head_parameter_count(model: Any) -> int:
    """Parameters the alpha head adds to ``model`` (which must not have it yet).

    New weight rows plus biases.
    """
    spec = spec_of(model)
    layer = getattr(model, spec.attribute)
    per_output = layer.weight[0].numel() + (1 if layer.bias is not None else 0)
    return spec.alpha * per_output


__all__ = ["FLUX_HEAD", "SDXL_HEAD", "HeadSpec", "add_alpha_head", "alpha_from_logits",
           "alpha_head_parameter_count", "family_of", "has_alpha_head", "spec_of", "split_output"]

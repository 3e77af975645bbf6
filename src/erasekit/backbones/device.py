"""Device and precision choices for diffusion backbones, and how a loaded pipeline is placed.

``auto`` picks CUDA, then Apple MPS, then CPU. Precision ``auto`` is float32 on CPU (half precision is slow or
unsupported there), bfloat16 for FLUX on a GPU (its activations overflow float16) and float16 for SD/SDXL on a
GPU. The SDXL VAE overflows in float16; its config says ``force_upcast`` and both diffusers' pipelines and
:mod:`erasekit.backbones.latents` then run it in float32, so nothing else is needed here.

Small GPUs: ``offload="model"`` keeps each component on the CPU until it runs (accelerate hooks, via
diffusers' ``enable_model_cpu_offload``), ``offload="sequential"`` streams weights layer by layer (slowest,
least memory), ``attention_slicing`` computes attention in slices, ``vae_tiling`` decodes large images tile by
tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..types import InvalidInputError

if TYPE_CHECKING:
    import torch

OffloadMode = Literal["none", "model", "sequential"]

_DTYPE_NAMES = {
    "fp32": "float32", "float32": "float32", "float": "float32",
    "fp16": "float16", "float16": "float16", "half": "float16",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
}


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> the best device here; an explicit name is checked to exist."""
    import torch

    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    # torch also parses device types erasekit never places a pipeline on (xla, meta, hpu, ...): refused alike.
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise InvalidInputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' was requested but no CUDA GPU is available (use --device cpu)")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise InvalidInputError(
            "device 'mps' was requested but Apple MPS is not available (use --device cpu)"
        )
    return device


def resolve_dtype(
    dtype: str | torch.dtype | None, device: torch.device, *, family: str = "sd"
) -> torch.dtype:
    """Parse ``fp32``/``fp16``/``bf16`` (and torch dtypes); ``None``/``auto`` picks per device and family."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cpu":
            return torch.float32
        if family == "flux":
            return torch.bfloat16
        return torch.float16
    key = _DTYPE_NAMES.get(str(dtype).lower())
    if key is None:
        raise InvalidInputError(f"unknown dtype {dtype!r}; use auto, fp32, fp16 or bf16")
    return getattr(torch, key)


@dataclass(frozen=True, kw_only=True)
class PlacementOptions:
    """How to put a pipeline on its device.

    ``attention_slicing``: False, True/"auto", "max" or a slice size.
    """

    offload: OffloadMode = "none"
    attention_slicing: bool | str | int = False
    vae_tiling: bool = False

    def __post_init__(self) -> None:
        if self.offload not in ("none", "model", "sequential"):
            raise InvalidInputError(f"offload must be none, model or sequential, got {self.offload!r}")


def place_pipeline(pipe: Any, device: torch.device, options: PlacementOptions | None = None) -> Any:
    """Move ``pipe`` to ``device`` (or install CPU-offload hooks) and apply the memory options.

    Returns ``pipe``.
    """
    options = options or PlacementOptions()
    if options.offload != "none":
        if device.type == "cpu":
            raise InvalidInputError(
                "CPU offload needs a GPU device; on the CPU the model already lives in RAM"
            )
        if options.offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    if options.attention_slicing:
        size = "auto" if options.attention_slicing is True else options.attention_slicing
        # Only modules that support slicing take it (UNets do, the FLUX transformer does not).
        pipe.enable_attention_slicing(size)
    if options.vae_tiling and getattr(pipe, "vae", None) is not None:
        pipe.vae.enable_tiling()
    return pipe


__all__ = ["OffloadMode", "PlacementOptions", "place_pipeline", "resolve_device", "resolve_dtype"]

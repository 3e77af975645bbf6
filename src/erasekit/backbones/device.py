"""Device and precision choices for diffusion backbones, and how a loaded pipeline is placed.

``auto`` picks CUDA, then Apple MPS, then CPU. Precision ``auto`` (:data:`AUTO_DTYPE`, per backbone family):

* CPU: float32 (half precision is slow or unsupported there);
* CUDA: bfloat16 for SDXL and FLUX where the GPU supports it (``torch.cuda.is_bf16_supported()``: Ampere and
  newer), as OSOR's authors run both; float16 for SD 1.5/2 (their released checkpoints' ``fp16`` variant).
  Without bf16 support SDXL falls back to float16 and FLUX to float32 (FLUX's activations overflow float16);
* MPS: float16 for SD/SDXL, bfloat16 for FLUX.

The SDXL VAE overflows in float16; its config says ``force_upcast`` and both diffusers' pipelines and
:mod:`erasekit.backbones.latents` then run it in float32 (bf16 has float32's range and needs no upcast).

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
        return getattr(torch, auto_dtype_name(device, family))
    key = _DTYPE_NAMES.get(str(dtype).lower())
    if key is None:
        raise InvalidInputError(f"unknown dtype {dtype!r}; use auto, fp32, fp16 or bf16")
    return getattr(torch, key)


# Precision ``auto`` per (device type, family): (with bf16 support, without). See the module docstring.
AUTO_DTYPE: dict[tuple[str, str], tuple[str, str]] = {
    ("cuda", "sd"): ("float16", "float16"),
    ("cuda", "sdxl"): ("bfloat16", "float16"),
    ("cuda", "flux"): ("bfloat16", "float32"),
    ("mps", "sd"): ("float16", "float16"),
    ("mps", "sdxl"): ("float16", "float16"),
    ("mps", "flux"): ("bfloat16", "bfloat16"),
}


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 at full speed (CUDA: compute capability 8.0+)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    return device.type == "mps"


def auto_dtype_name(device: torch.device, family: str = "sd", *, bf16: bool | None = None) -> str:
    """The torch dtype name ``auto`` resolves to on ``device`` for a ``family`` backbone.

    ``bf16`` overrides the device's bf16 support (tests and the GPU suite's dry run use it).
    """
    if device.type == "cpu":
        return "float32"
    with_bf16, without = AUTO_DTYPE.get((device.type, family), ("float16", "float16"))
    return with_bf16 if (bf16_supported(device) if bf16 is None else bf16) else without


@dataclass(frozen=True, kw_only=True)
class PlacementOptions:
    """How to put a pipeline on its device.

    ``attention_slicing``: False, True/"auto", "max" or a slice size.
    """

    offload: OffloadMode = "none"
    attention_slicing: bool | str | int = False
    vae_tiling: bool | str = False  # True, False or "auto" (tile only beyond fast.VAE_TILE_SIDE px per side)

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
    if options.vae_tiling:
        from .fast import FastPaths, configure_vae

        configure_vae(getattr(pipe, "vae", None), FastPaths(vae_tiling=options.vae_tiling).vae_tiling)
    return pipe


__all__ = ["AUTO_DTYPE", "OffloadMode", "PlacementOptions", "auto_dtype_name", "bf16_supported",
           "place_pipeline", "resolve_device", "resolve_dtype"]

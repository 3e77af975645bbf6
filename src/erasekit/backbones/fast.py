"""Fast paths for a loaded pipeline: ``torch.compile``, channels_last, fused QKV, VAE tiling/slicing.

Each is a load option of the diffusion methods (``-O compile=true`` on the CLI, ``compile=True`` in
``erasekit.load_remover`` / ``erasekit.remove``) and changes speed or memory, not the model:
``tests/test_fast_paths.py`` checks each against the eager float32 path on tiny models (tolerances in
docs/speed.md). ``benchmarks/gpu_suite.py`` measures them at real size.

* ``compile``: :meth:`torch.nn.Module.compile` on the denoiser (UNet / transformer) and the VAE, *in place*:
  the module keeps its identity and parameter names, so LoRA adapters injected later (OSOR) are traced at the
  first call. ``True`` is inductor's default mode; a string names the mode (``"max-autotune"``, ...). The
  first call pays the compile time; ``benchmarks/gpu_suite.py`` reports it separately.
* ``channels_last``: the convolutional modules (UNet, VAE) in NHWC memory, cuDNN's fastest conv layout. The
  FLUX transformer is all linear layers and is left alone.
* ``fuse_qkv``: diffusers' ``fuse_qkv_projections`` (one matmul for Q, K and V). The fused weights are
  copies, so adapters attached to ``to_q``/``to_k``/``to_v`` would be bypassed: fuse only once the weights
  are final (OSOR refuses it with unmerged LoRA).
* ``vae_tiling``: ``True`` tiles with diffusers' defaults (tiles of the VAE's ``sample_size``); ``"auto"``
  keeps every image up to :data:`VAE_TILE_SIDE` px per side in one piece and tiles only beyond (4K inputs),
  with slicing on (one image of a batch at a time: the same numbers, less memory).

diffusers and torch provide every mechanism here; this module only chooses what to apply to which component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..types import InvalidInputError

# "auto" VAE tiling: sides up to this many pixels decode in one piece, larger ones (3840×2160, 4096²) in
# tiles of this size with diffusers' 25 % overlap.
VAE_TILE_SIDE = 2048

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "no", "0", "off", "none", ""):
        return False
    return None


@dataclass(frozen=True, kw_only=True)
class FastPaths:
    """Which fast paths to apply. ``compile``: False, True or a torch.compile mode; ``compile_backend``: the
    torch.compile backend (``"inductor"``; tests use ``"eager"`` to check the plumbing quickly)."""

    compile: bool | str = False
    channels_last: bool = False
    fuse_qkv: bool = False
    vae_tiling: bool | str = False
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        flag = _as_bool(self.compile)
        if flag is None and self.compile not in COMPILE_MODES:
            raise InvalidInputError(
                f"compile must be true, false or a mode ({', '.join(COMPILE_MODES)}), got {self.compile!r}"
            )
        object.__setattr__(self, "compile", flag if flag is not None else self.compile)
        tiling = _as_bool(self.vae_tiling)
        if tiling is None and self.vae_tiling != "auto":
            raise InvalidInputError(f"vae_tiling must be true, false or auto, got {self.vae_tiling!r}")
        object.__setattr__(self, "vae_tiling", tiling if tiling is not None else "auto")

    @property
    def any(self) -> bool:
        return bool(self.compile or self.channels_last or self.fuse_qkv or self.vae_tiling)


def denoiser_of(pipe: Any) -> Any:
    """The pipeline's denoising network: ``unet`` or ``transformer``."""
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


def has_unmerged_adapters(model: Any) -> bool:
    """Whether peft adapters are attached (unmerged) anywhere in ``model``."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # peft absent: nothing can be attached
        return False
    return any(isinstance(m, BaseTunerLayer) and not m.merged for m in model.modules())


def configure_vae(vae: Any, tiling: bool | str) -> None:
    """VAE tiling: True -> diffusers' tiles; "auto" -> one piece up to VAE_TILE_SIDE, and slicing."""
    if not tiling or vae is None:
        return
    vae.enable_tiling()
    if tiling == "auto":
        vae.enable_slicing()
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        vae.tile_sample_min_size = VAE_TILE_SIDE
        vae.tile_latent_min_size = VAE_TILE_SIDE // factor


def apply_fast_paths(pipe: Any, fast: FastPaths) -> Any:
    """Apply ``fast`` to ``pipe``'s denoiser and VAE in place (order: layout, fusion, tiling, compile).

    Returns ``pipe``. Raises :class:`InvalidInputError` for ``fuse_qkv`` on a model with unmerged adapters.
    """
    import torch

    denoiser, vae = denoiser_of(pipe), getattr(pipe, "vae", None)
    modules = [m for m in (denoiser, vae) if m is not None]
    if fast.channels_last:
        for module in modules:
            convolutional = any(isinstance(m, torch.nn.Conv2d) for m in module.modules())
            if convolutional and not hasattr(module, "x_embedder"):  # not the FLUX transformer
                module.to(memory_format=torch.channels_last)
    if fast.fuse_qkv:
        if denoiser is not None and has_unmerged_adapters(denoiser):
            raise InvalidInputError(
                "fuse_qkv would bypass unmerged LoRA adapters on to_q/to_k/to_v; load with merge_lora=true"
            )
        for module in modules:
            if hasattr(module, "fuse_qkv_projections"):
                module.fuse_qkv_projections()
    configure_vae(vae, fast.vae_tiling)
    if fast.compile:
        mode = None if fast.compile is True or fast.compile == "default" else str(fast.compile)
        options = {"mode": mode} if fast.compile_backend == "inductor" else {}  # modes are inductor's
        for module in modules:
            module.compile(backend=fast.compile_backend, dynamic=False, **options)
    return pipe


__all__ = ["COMPILE_MODES", "VAE_TILE_SIDE", "FastPaths", "apply_fast_paths", "configure_vae", "denoiser_of",
           "has_unmerged_adapters"]

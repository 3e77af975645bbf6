"""The base of removers that run a diffusers pipeline, and the determinism and caching rules they share.

:class:`DiffusionRemover` adds to :class:`~erasekit.methods.base.Remover` what every diffusion method needs:

* the backbone, loaded once from the method's preset by :func:`~erasekit.backbones.loading.load_backbone`
  (or an already loaded pipeline), with the same keyword load options for every method;
* a per-call lock: diffusers pipelines keep per-call state on the object (guidance scale, step index,
  scheduler timesteps), so one remover runs one call at a time, whatever the number of threads calling it;
* progress: diffusers' own tqdm bar (``progress_bar``) and an optional ``progress(step, total)`` callable,
  called after each denoising step through diffusers' ``callback_on_step_end``;
* per-image noise: :func:`per_image_generators` gives one CPU generator per image, so an image's noise
  depends on its seed only — not on the device, nor on the rest of the batch (``randn_tensor`` with a list);
* :class:`PromptEmbeddingCache`: fixed prompts are encoded once per key and kept (FLUX's T5-XXL alone is
  ~9 GB, so a method with a fixed prompt can drop its text encoders once the prompt is cached).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..backbones.loading import BackboneOptions, load_backbone
from ..backbones.presets import PRESETS, BackbonePreset
from ..methods.base import Remover

if TYPE_CHECKING:
    import os

    import torch

ProgressFn = Callable[[int, int], None]


# ------------------------------------------------------------------------------------------------------------
# Noise: one CPU generator per image
# ------------------------------------------------------------------------------------------------------------
def per_image_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """``[torch.Generator("cpu").manual_seed(seed) for seed in seeds]``: the generator list diffusers'
    pipelines and ``randn_tensor`` take to draw each image's noise from its own seed. CPU generators give the
    same numbers on every device (diffusers draws on the CPU and moves the tensor)."""
    import torch

    return [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]


def per_image_noise(shape: Sequence[int], seeds: Sequence[int], *, device: Any = None,
                    dtype: Any = None) -> torch.Tensor:
    """Standard normal noise of ``shape`` (N×…), image i drawn from ``seeds[i]`` alone.

    Image i's noise is ``torch.randn((1, *shape[1:]), generator=Generator("cpu").manual_seed(seeds[i]))``,
    drawn by diffusers' ``randn_tensor`` in float32 on the CPU, then moved to ``device`` and cast to
    ``dtype`` (drawing in float32 first keeps the numbers the same whatever the compute precision)."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    if len(seeds) != shape[0]:
        raise ValueError(f"{len(seeds)} seeds for a batch of {shape[0]} images")
    noise = randn_tensor(tuple(shape), generator=per_image_generators(seeds), device=torch.device("cpu"),
                         dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)


# ------------------------------------------------------------------------------------------------------------
# Prompt embeddings, encoded once
# ------------------------------------------------------------------------------------------------------------
class PromptEmbeddingCache:
    """Prompt embeddings computed once per key and kept for the life of the cache. Thread-safe: concurrent
    first requests for one key encode it once.

    The key says what the embeddings depend on (backbone, prompt, device, dtype); ``encode`` computes them.
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, dict[str, torch.Tensor]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, encode: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        with self._lock:
            if key not in self._entries:
                self._entries[key] = encode()
            return self._entries[key]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries


# ------------------------------------------------------------------------------------------------------------
# The remover base
# ------------------------------------------------------------------------------------------------------------
class DiffusionRemover(Remover):
    """A remover around one loaded diffusers pipeline. Subclasses set ``preset_name`` and implement
    ``inpaint``."""

    preset_name: ClassVar[str]
    # A method that changes its network after loading (OSOR's weights) applies the fast paths itself, after.
    defer_fast_paths: ClassVar[bool] = False

    def __init__(self, model: str | os.PathLike | None = None, device: str | None = None,
                 dtype: str | None = None, allow_download: bool = False, offload: str = "none",
                 attention_slicing: bool | str | int = False, vae_tiling: bool | str = False,
                 pipeline: Any = None, progress_bar: bool = True, compile: bool | str = False,
                 channels_last: bool = False, fuse_qkv: bool = False):
        """Load the backbone (offline first); the options are :class:`BackboneOptions`' fields. ``pipeline``:
        an already loaded pipeline to use instead (no loading). ``progress_bar``: diffusers' tqdm bar.
        ``compile``, ``channels_last``, ``fuse_qkv``: fast paths (:mod:`erasekit.backbones.fast`,
        docs/speed.md)."""
        from ..backbones.fast import FastPaths

        self.fast_paths = FastPaths(compile=compile, channels_last=channels_last, fuse_qkv=fuse_qkv)
        self.backbone = BackboneOptions(
            model=model, device=device, dtype=dtype, allow_download=allow_download,
            offload=offload, attention_slicing=attention_slicing, vae_tiling=vae_tiling)  # type: ignore[arg-type]
        self.loaded_pipeline = pipeline is None  # this remover loaded the pipeline (so nobody else holds it)
        self.pipe = load_backbone(self.preset_name, self.backbone) if pipeline is None else pipeline
        self.model = str(model) if model is not None else self.preset_name
        self.progress_bar = progress_bar
        self.progress: ProgressFn | None = None
        self.lock = threading.Lock()
        if not self.defer_fast_paths:
            self.apply_fast_paths()

    def apply_fast_paths(self) -> None:
        """Apply the load options ``compile``/``channels_last``/``fuse_qkv`` to the pipeline (once)."""
        from ..backbones.fast import apply_fast_paths

        apply_fast_paths(self.pipe, self.fast_paths)

    @property
    def preset(self) -> BackbonePreset:
        return PRESETS[self.preset_name]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "backbone": self.preset_name, "model": self.model}

    @staticmethod
    def generators(seeds: Sequence[int]) -> list[torch.Generator]:
        """One CPU generator per image (see :func:`per_image_generators`)."""
        return per_image_generators(seeds)

    def run_pipeline(self, *, progress: ProgressFn | None = None, **kwargs: Any) -> Any:
        """``self.pipe(**kwargs)`` under the per-call lock, with this remover's progress bar; ``progress(step,
        total)`` is called after each denoising step."""
        if progress is not None:
            kwargs["callback_on_step_end"] = step_reporter(progress)
        with self.lock:
            self.pipe.set_progress_bar_config(disable=not self.progress_bar, desc=self.name, leave=False)
            return self.pipe(**kwargs)


def step_reporter(progress: ProgressFn) -> Callable[..., dict[str, Any]]:
    """A diffusers ``callback_on_step_end`` that calls ``progress(steps done, total steps)``."""

    def on_step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        progress(step + 1, int(getattr(pipe, "num_timesteps", 0) or 0))
        return callback_kwargs

    return on_step_end


__all__ = ["DiffusionRemover", "ProgressFn", "PromptEmbeddingCache", "per_image_generators",
           "per_image_noise", "step_reporter"]

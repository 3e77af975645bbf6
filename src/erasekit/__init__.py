"""erasekit — remove objects from photos, with their shadows and reflections.

The small public API::

    import erasekit
    result = erasekit.remove("photo.jpg", "mask.png", method="auto", seed=0)
    result.to_pil().save("clean.png")

    remover = erasekit.load_remover("patchmatch")          # build once, reuse across calls
    result = erasekit.remove("photo.jpg", "mask.png", refine="color-match,poisson")  # then paste-back
    for info in erasekit.available_methods(): print(info.name, info.available, info.reason)
"""

from __future__ import annotations

import threading
from typing import Any

from .hd import HDStrategy, SizeConstraints
from .registry import available_methods, get_method, load_remover, resolve_auto, split_options  # noqa: F401
from .types import (
    ErasekitError,
    InvalidInputError,
    MaskOrPromptError,
    MissingWeightsError,
    RemovalRequest,
    RemovalResult,
    ResourceLimitError,
    UnknownMethodError,
)

__version__ = "0.1.0"

_CACHE_SIZE = 2
_cache: dict[tuple, Any] = {}
_cache_lock = threading.Lock()


def _cached_remover(name: str, load_opts: dict[str, Any]):
    """Keep the last few removers so repeated ``remove()`` calls do not reload models."""
    key = (name, tuple(sorted((k, repr(v)) for k, v in load_opts.items())))
    with _cache_lock:
        if key in _cache:
            _cache[key] = _cache.pop(key)  # most recently used goes last
            return _cache[key]
        remover = load_remover(name, **load_opts)
        _cache[key] = remover
        while len(_cache) > _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        return remover


def remove(image: Any, mask: Any = None, *, method: str = "auto", prompt: str | None = None,
           seed: int | None = None, dilate: int = 0, hd_strategy: HDStrategy | str | None = None,
           refine: Any = None, resize_mask: bool = False, **options: Any) -> RemovalResult:
    """Remove what ``mask`` marks (or what ``prompt`` names, for mask-free methods) from ``image``.

    ``image``: a path, bytes, PIL image or uint8 RGB array. ``mask``: the same kinds; any nonzero pixel means
    remove (an RGBA mask uses its alpha). A mask of another size is an error unless ``resize_mask=True``.
    Options the method's factory takes (``device``, ``model``, ``weights`` ...) load the model (cached across
    calls); all others are per-call options (``steps``, ``timestep`` ...), checked against the method's
    declaration before the model loads (``erasekit methods --options NAME`` lists them). ``refine`` names
    refiners that run on the method's output before paste-back, in order (``"poisson"``,
    ``"color-match,poisson"``, a list; see
    :mod:`erasekit.refiners`). An empty mask returns the input unchanged with ``result.unchanged = True``.

    ``method`` may name a chain, ``"telea+poisson"`` (:mod:`erasekit.chain`). A masked method given a
    ``prompt`` and no mask segments what the prompt names first (:mod:`erasekit.masking`; its options
    ``mask_source``, ``instances``, ``score_threshold``, ``mask_grow``, ``sam3``, ``detector``, ``segmenter``
    go in ``options`` too); ``result.mask`` is the mask the method got and ``result.metadata["mask_source"]``
    says where it came from.
    """
    from .chain import run_removal

    return run_removal(image, mask, method=method, prompt=prompt, seed=seed, dilate=dilate,
                       hd_strategy=hd_strategy, refine=refine, resize_mask=resize_mask, options=options,
                       load=_cached_remover)


__all__ = ["ErasekitError", "HDStrategy", "InvalidInputError", "MaskOrPromptError", "MissingWeightsError",
           "RemovalRequest", "RemovalResult", "ResourceLimitError", "SizeConstraints", "UnknownMethodError",
           "__version__", "available_methods", "load_remover", "remove"]

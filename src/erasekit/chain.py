"""A chain: mask source -> remover -> refiner(s), named the same way in the API, CLI, server, batch and bench.

Chain names join a method and its refiners with ``+``: ``telea+poisson``, ``osor-sdxl+pixperfect``,
``clipaway+color-match+poisson`` (refiner options as usual: ``osor-sdxl+pixperfect:weights=/w:pool=4``). The
same chain can be given as separate keywords (``method="osor-sdxl", refine="pixperfect"``); both spellings
mean the same chain and record the same name. :func:`parse_chain` is the one parser.

The mask source is not part of the name; it is what the request carries: a drawn mask, a text prompt for a
masked method (:mod:`erasekit.masking`), clicks (the web UI sends their mask as a drawn one), or nothing for a
mask-free method. Results record both: ``metadata["chain"]`` (the name, with ``auto`` resolved) and
``metadata["mask_source"]`` (``{"source": "drawn"}``, ``{"source": "none"}``, or the segmenter, ``sam3`` or
``grounding-dino-sam2``, with its settings and the instances it kept).

``auto`` with a prompt and no mask picks, in this order (:func:`resolve_auto_for_prompt`):

1. text -> mask -> the best available *learned* masked method (OSOR, CLIPAway, ... by ``auto_priority``): a
   segmenter localises the object more reliably than attention maps, and the masked methods are the stronger
   removers (OSOR needs one network call where MagicRemover needs ~900 UNet rows);
2. ``magicremover``: it removes from the words alone, so it runs when no segmenter or learned masked method is
   here;
3. text -> mask -> the best weight-free fill (PatchMatch): a segmenter but no learned weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .types import InvalidInputError, MaskOrPromptError, MissingWeightsError, RemovalResult

SEPARATOR = "+"
@dataclass(frozen=True)
class Chain:
    """A method and the refiners (spec texts, ``NAME[:KEY=VALUE...]``) that run after it, in order."""

    method: str
    refiners: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return SEPARATOR.join((self.method, *self.refiners))

    def with_method(self, method: str) -> Chain:
        return Chain(method, self.refiners)

    def refine(self, extra: Any = None) -> list[Any] | None:
        """The request's ``refine`` value: the chain's refiners, then ``extra`` (a string, Refiner or
        list)."""
        items: list[Any] = list(self.refiners)
        if extra is not None:
            items += list(extra) if isinstance(extra, (list, tuple)) else [extra]
        return items or None


def parse_chain(text: str) -> Chain:
    """``"telea+poisson"`` -> Chain("telea", ("poisson",)); ``"telea"`` -> Chain("telea")."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"a chain is METHOD[+REFINER...], got {text!r}")
    parts = [p.strip() for p in text.split(SEPARATOR)]
    if any(not p for p in parts):
        raise InvalidInputError(f"empty step in chain {text!r} (write METHOD+REFINER, e.g. telea+poisson)")
    return Chain(parts[0], tuple(parts[1:]))


# ---- auto with a prompt ------------------------------------------------------------------------------------
def resolve_auto_for_prompt(text_available: bool) -> tuple[str, bool]:
    """(method, whether text -> mask runs first) for ``auto`` with a prompt and no mask; order in the module
    docstring."""
    from .registry import _REGISTRY, _ensure_loaded, method_info

    _ensure_loaded()
    ranked = sorted(
        (s for s in _REGISTRY.values() if s.auto_priority is not None),
        key=lambda s: (-(s.auto_priority or 0), s.name),
    )
    here = [s for s in ranked if method_info(s).available]
    learned = [s for s in here if s.requires_mask and s.family != "classical"]
    if text_available and learned:
        return learned[0].name, True
    if "magicremover" in {s.name for s in here}:
        return "magicremover", False
    fills = [s for s in here if s.requires_mask]
    if text_available and fills:
        return fills[0].name, True
    raise MissingWeightsError(
        "auto with a prompt and no mask needs a text -> mask segmenter (`hf download facebook/sam3`) or "
        "MagicRemover's weights (erasekit download sd15); or draw a mask"
    )


# ---- one removal -------------------------------------------------------------------------------------------
def run_removal(
    image: Any,
    mask: Any = None,
    *,
    method: str = "auto",
    prompt: str | None = None,
    seed: int | None = None,
    dilate: int = 0,
    hd_strategy: Any = None,
    refine: Any = None,
    resize_mask: bool = False,
    options: dict[str, Any] | None = None,
    load: Callable[[str, dict[str, Any]], Any] | None = None,
) -> RemovalResult:
    """What :func:`erasekit.remove` does: chain name, mask source (drawn or text -> mask), remover, refiners.

    ``options`` holds the method's options and the mask source's (:data:`erasekit.masking.OPTION_KEYS`);
    ``load(name, load_options)`` returns a (cached) remover."""
    from . import io
    from .masking import TextMaskOptions, text_available, text_to_mask
    from .registry import get_method, load_remover, resolve_auto, split_options
    from .types import RemovalRequest

    options = dict(options or {})
    text_opts = TextMaskOptions.pop_from(options)
    chain = parse_chain(method)
    pixels = io.read_image(image).pixels
    # One decode gives the binary mask every method fills and the soft values (for methods that condition on
    # them, e.g. OSOR; see RemovalRequest.soft_mask).
    mask_array, soft_array = (
        (None, None) if mask is None else io.read_mask_pair(mask, shape=pixels.shape[:2], resize=resize_mask)
    )
    if mask_array is None and not prompt:
        raise MaskOrPromptError()
    name = chain.method
    if name == "auto":
        if mask_array is None and prompt is not None:
            name, use_text = resolve_auto_for_prompt(text_available(text_opts))
        else:
            name, use_text = resolve_auto(mask_given=mask_array is not None), False
    else:
        use_text = mask_array is None and prompt is not None and get_method(name).requires_mask
    spec = get_method(name)
    if spec.requires_mask and mask_array is None and not use_text:
        raise MaskOrPromptError(f"method {name!r} needs a mask")
    if not use_text and text_opts != TextMaskOptions():
        raise InvalidInputError(
            "mask-source options (instances, score_threshold, mask_grow, sam3, ...) apply "
            "only to a prompt with no mask"
        )
    source: dict[str, Any] = {"source": "drawn"} if mask_array is not None else {"source": "none"}
    method_prompt = prompt
    if use_text:
        assert prompt is not None
        found = text_to_mask(pixels, prompt, text_opts)
        mask_array, source, method_prompt = found.mask, found.metadata(), None  # the prompt named the mask
        soft_array = None
    load_opts, call_opts = split_options(spec, options, prompt=method_prompt)
    remover = (load or (lambda n, o: load_remover(n, **o)))(name, load_opts)
    request = RemovalRequest(
        image=pixels,
        mask=mask_array,
        prompt=method_prompt,
        seed=seed,
        dilate=dilate,
        hd_strategy=hd_strategy,
        refine=chain.refine(refine),
        options=call_opts,
        soft_mask=soft_array if getattr(remover, "consumes_soft_mask", False) else None,
    )
    result = remover(request)
    result.mask = mask_array
    result.metadata["mask_source"] = source
    return result


__all__ = ["SEPARATOR", "Chain", "parse_chain", "resolve_auto_for_prompt", "run_removal"]

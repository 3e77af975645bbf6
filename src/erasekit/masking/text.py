"""Text -> mask: the mask source that runs in front of a masked method when the user names the object.

``text_to_mask(image, "the spoon", TextMaskOptions(...))`` runs a segmenter, keeps the instances the
``instances`` rule picks (:mod:`.instances`), unites them and grows the union by ``mask_grow`` pixels (default
:data:`DEFAULT_GROW` = 5, a disk, :func:`erasekit.masks.dilate`): segmenters trace the object's edge tightly
and the fill needs the anti-aliased rim and a little context; IOPaint and Grounded-SAM inpainting demos dilate
for the same reason. The grown mask is what the remover gets, unchanged.

Sources (``mask_source``):

* ``sam3`` — SAM 3 (:mod:`.sam3`), a phrase straight to instance masks; score threshold 0.5 by default (the
  transformers model card's value).
* ``grounding-dino-sam2`` — Grounding DINO boxes prompting SAM 2 (:mod:`.grounded`, SAVP's adapters);
  threshold 0.35 by default (Grounded-SAM 2's box threshold).
* ``auto`` (default) — SAM 3 when its weights resolve, else Grounding DINO + SAM 2 when both resolve, else a
  :class:`~erasekit.types.MissingWeightsError` naming the command that fetches SAM 3.

Weights resolve from an explicit folder (``sam3=DIR``, ``detector=DIR``, ``segmenter=DIR``), then
``$ERASEKIT_MODELS_DIR/<name>`` or ``$ERASEKIT_MODELS_DIR/<org>/<repo>``, then the local Hugging Face cache;
never the network. Loaded segmenters are cached (two at most), like removers. """

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import masks as M
from ..data.savp_models import DEFAULT_DETECTOR, DEFAULT_SEGMENTER
from ..types import InvalidInputError, MissingWeightsError
from .instances import Instance, parse_instances, select, union
from .sam3 import DEFAULT_SAM3

SOURCES = ("sam3", "grounding-dino-sam2")
DEFAULT_GROW = 5
DEFAULT_THRESHOLD = {"sam3": 0.5, "grounding-dino-sam2": 0.35}
FETCH_HINT = f"hf download {DEFAULT_SAM3}"

# API / server keyword -> TextMaskOptions field. These are the mask source's options, taken out of a remove()
# call's keywords before the method sees them.
OPTION_KEYS = {
    "mask_source": "source",
    "sam3": "sam3",
    "detector": "detector",
    "segmenter": "segmenter",
    "instances": "instances",
    "score_threshold": "score_threshold",
    "mask_grow": "mask_grow",
    "mask_device": "device",
}


class TextSegmenter(Protocol):
    name: str

    def instances(self, image: np.ndarray, prompt: str, *, threshold: float) -> list[Instance]: ...

    def describe(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class TextMaskOptions:
    source: str = "auto"
    sam3: str | None = None
    detector: str | None = None
    segmenter: str | None = None
    instances: str | int = "all"
    score_threshold: float | None = None  # None: the source's default (DEFAULT_THRESHOLD)
    mask_grow: int = DEFAULT_GROW
    device: str | None = None

    def __post_init__(self) -> None:
        if self.source not in ("auto", *SOURCES):
            raise InvalidInputError(f"mask_source must be auto, {' or '.join(SOURCES)}, got {self.source!r}")
        object.__setattr__(self, "instances", parse_instances(self.instances))
        if self.score_threshold is not None and not 0.0 <= float(self.score_threshold) < 1.0:
            raise InvalidInputError(f"score_threshold must be in [0, 1), got {self.score_threshold}")
        if int(self.mask_grow) < 0:
            raise InvalidInputError(f"mask_grow must be >= 0 pixels, got {self.mask_grow}")

    @classmethod
    def pop_from(cls, options: dict[str, Any]) -> TextMaskOptions:
        """Take the mask-source keywords (:data:`OPTION_KEYS`) out of ``options`` (changed in place)."""
        taken = {OPTION_KEYS[k]: options.pop(k) for k in list(options) if k in OPTION_KEYS}
        taken = {k: v for k, v in taken.items() if v is not None}
        if "score_threshold" in taken:
            taken["score_threshold"] = float(taken["score_threshold"])
        if "mask_grow" in taken:
            taken["mask_grow"] = int(taken["mask_grow"])
        return cls(**taken)

    def as_keywords(self) -> dict[str, Any]:
        """The inverse of :meth:`pop_from`: keywords that rebuild these options (defaults left out)."""
        by_field = {v: k for k, v in OPTION_KEYS.items()}
        default = TextMaskOptions()
        return {
            by_field[f.name]: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }


@dataclass
class TextMask:
    """What the mask source produced: ``mask`` (float32 H×W, grown) goes to the remover as it is."""

    mask: np.ndarray
    segmented: np.ndarray  # the union before growing
    kept: list[Instance]
    found: int
    source: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return {
            **self.source,
            "instances_found": self.found,
            "instances_kept": [i.as_dict() for i in self.kept],
        }


# ---- where weights are -------------------------------------------------------------------------------------
def locate(hub_id: str) -> str | None:
    """A local folder (``$ERASEKIT_MODELS_DIR``) or cached snapshot holding ``hub_id``'s config.json, or None.
    Never touches the network."""
    from ..backbones.presets import hf_cache_dir, models_dir

    root = models_dir()
    if root is not None:
        for folder in (root / hub_id.split("/")[-1], root.joinpath(*hub_id.split("/"))):
            if (folder / "config.json").is_file():
                return str(folder)
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, "config.json", cache_dir=hf_cache_dir())
    return str(Path(found).parent) if isinstance(found, str) else None


def resolve(opts: TextMaskOptions) -> tuple[str, dict[str, str]]:
    """(source name, folders/ids to load) for ``opts``; MissingWeightsError when nothing resolves locally."""
    sam3 = opts.sam3 or locate(DEFAULT_SAM3)
    detector = opts.detector or locate(DEFAULT_DETECTOR)
    segmenter = opts.segmenter or locate(DEFAULT_SEGMENTER)
    source = opts.source
    if source == "auto":
        explicit_pair = opts.detector is not None or opts.segmenter is not None
        if sam3 is not None and not (explicit_pair and opts.sam3 is None):
            source = "sam3"
        elif detector is not None and segmenter is not None:
            source = "grounding-dino-sam2"
        else:
            raise MissingWeightsError(
                "text -> mask needs SAM 3 (or Grounding DINO + SAM 2) weights: fetch them with "
                f"`{FETCH_HINT}` (or `hf download {DEFAULT_DETECTOR}` and `hf download {DEFAULT_SEGMENTER}`)"
            )
    if source == "sam3":
        return source, {"sam3": sam3 or DEFAULT_SAM3}
    return source, {"detector": detector or DEFAULT_DETECTOR, "segmenter": segmenter or DEFAULT_SEGMENTER}


def available(opts: TextMaskOptions | None = None) -> bool:
    """Whether some text -> mask source resolves locally (``auto``'s first choice needs it)."""
    try:
        resolve(opts or TextMaskOptions())
    except MissingWeightsError:
        return False
    return True


# ---- loading (cached) --------------------------------------------------------------------------------------
_CACHE_SIZE = 2
_cache: dict[tuple, TextSegmenter] = {}
_cache_lock = threading.Lock()


def load_segmenter(source: str, paths: Mapping[str, str], device: str | None = None) -> TextSegmenter:
    key = (source, tuple(sorted(paths.items())), device)
    with _cache_lock:
        if key in _cache:
            _cache[key] = _cache.pop(key)
            return _cache[key]
        segmenter: TextSegmenter
        if source == "sam3":
            from .sam3 import Sam3TextSegmenter

            segmenter = Sam3TextSegmenter(paths["sam3"], device=device)
        else:
            from .grounded import GroundedSam2

            segmenter = GroundedSam2(paths["detector"], paths["segmenter"], device=device)
        _cache[key] = segmenter
        while len(_cache) > _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        return segmenter


def text_to_mask(image: np.ndarray, prompt: str, opts: TextMaskOptions | None = None) -> TextMask:
    """Segment what ``prompt`` names in ``image`` (uint8 H×W×3) into one grown mask (see the module
    docstring).

    Nothing found above the threshold is an InvalidInputError (exit 2 / HTTP 422) saying what to try."""
    opts = opts or TextMaskOptions()
    if not prompt or not prompt.strip():
        raise InvalidInputError("the prompt is empty: say what to remove, or draw a mask")
    source, paths = resolve(opts)
    segmenter = load_segmenter(source, paths, opts.device)
    threshold = DEFAULT_THRESHOLD[source] if opts.score_threshold is None else float(opts.score_threshold)
    found = segmenter.instances(image, prompt.strip(), threshold=threshold)
    kept = select(found, opts.instances)
    segmented = union(kept, image.shape[:2])
    if not segmented.any():
        raise InvalidInputError(
            f"{source} found nothing matching {prompt.strip()!r} with score > {threshold:g}: rephrase, lower "
            "--score-threshold, or draw a mask"
        )
    grown = M.dilate(segmented, int(opts.mask_grow))
    described = {
        **segmenter.describe(),
        "prompt": prompt.strip(),
        "instances": opts.instances,
        "score_threshold": threshold,
        "mask_grow": int(opts.mask_grow),
    }
    return TextMask(grown, segmented, kept, len(found), described)

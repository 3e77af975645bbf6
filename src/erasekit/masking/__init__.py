"""Mask sources: what runs in front of a masked method to say what to remove.

* :mod:`.text` — text -> mask (:func:`text_to_mask`): SAM 3 (:mod:`.sam3`) or Grounding DINO + SAM 2
  (:mod:`.grounded`, SAVP's adapters), instance selection (:mod:`.instances`) and the documented dilation.
* :mod:`.clicks` — positive/negative clicks -> mask with SAM 2's prompt encoder and mask decoder, the image
  embedded once (the web UI's Select tool).

The user guide is docs/masking.md.
"""

from __future__ import annotations

from .instances import Instance, parse_instances
from .text import (
    DEFAULT_GROW,
    DEFAULT_THRESHOLD,
    OPTION_KEYS,
    SOURCES,
    TextMask,
    TextMaskOptions,
    available,
    resolve,
    text_to_mask,
)

text_available = available

__all__ = [
    "DEFAULT_GROW",
    "DEFAULT_THRESHOLD",
    "OPTION_KEYS",
    "SOURCES",
    "Instance",
    "TextMask",
    "TextMaskOptions",
    "available",
    "parse_instances",
    "resolve",
    "text_available",
    "text_to_mask",
]

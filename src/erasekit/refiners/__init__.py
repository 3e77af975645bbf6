"""Built-in refiners: steps after any method that improve its fill before paste-back (see :mod:`.base`).

Importing this package registers them; each module owns its registration. A request selects refiners by name
(``refine="color-match,poisson"``; :func:`parse_refine` reads every accepted form).
"""

from __future__ import annotations

from . import color_match, pixperfect, poisson
from .base import Refiner, apply_refiners
from .registry import RefinerSpec, get_refiner, load_refiner, parse_refine, refiner_names, register_refiner

for _module in (poisson, color_match, pixperfect):
    _module.register()

__all__ = ["Refiner", "RefinerSpec", "apply_refiners", "get_refiner", "load_refiner", "parse_refine",
           "refiner_names", "register_refiner"]

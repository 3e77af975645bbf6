"""Refiner registry: name -> factory, and the one parser of a request's ``refine`` value.

Mirrors :mod:`erasekit.registry` for methods: refiners register a :class:`RefinerSpec` when
:mod:`erasekit.refiners` is imported (which importing this module always does first). A request names refiners
as

* ``None`` or ``""`` — no refiner (the method's output is pasted back as it is);
* ``"poisson"`` — one refiner with its defaults; ``"color-match:ring=24"`` — with options (``KEY=VALUE`` after
  the name, separated by ``:``; values are JSON literals, else strings);
* ``"color-match,poisson"`` or ``["color-match", "poisson"]`` — a chain, run in that order; a list may also
  hold :class:`~erasekit.refiners.base.Refiner` instances.

Built refiners are cached by name and options, so a refiner that loads weights (PixPerfect) loads them once.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..types import InvalidInputError
from .base import Refiner

OptionValue = bool | int | float | str


@dataclass(frozen=True)
class RefinerSpec:
    name: str
    description: str
    factory: Callable[..., Refiner]  # (**options) -> Refiner
    paper: str | None = None


_REGISTRY: dict[str, RefinerSpec] = {}


def register_refiner(spec: RefinerSpec, *, replace: bool = False) -> RefinerSpec:
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"refiner {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    _build.cache_clear()  # a replaced factory must not be served from the cache
    return spec


def refiner_names() -> list[str]:
    return sorted(_REGISTRY)


def get_refiner(name: str) -> RefinerSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidInputError(f"unknown refiner {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def option_names(spec: RefinerSpec) -> set[str]:
    """Names of the keyword options the refiner's factory takes."""
    params = inspect.signature(spec.factory).parameters.values()
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


@functools.lru_cache(maxsize=16)
def _build(name: str, options_json: str) -> Refiner:
    # Keyed by the options' JSON, not their tuple: in a tuple True == 1 and 1 == 1.0 would share an entry.
    return _REGISTRY[name].factory(**json.loads(options_json))


def load_refiner(name: str, **options: OptionValue) -> Refiner:
    """The refiner registered as ``name`` built with ``options`` (cached: refiners hold no per-call state)."""
    spec = get_refiner(name)
    unknown = set(options) - option_names(spec)
    if unknown:
        takes = ", ".join(sorted(option_names(spec))) or "none"
        raise InvalidInputError(f"refiner {name!r} does not take option(s): {', '.join(sorted(unknown))}; "
                                f"it takes: {takes}")
    for key, value in options.items():
        if not isinstance(value, (bool, int, float, str)):
            raise InvalidInputError(f"refiner {name!r} option {key}: expected a number, boolean or string, "
                                    f"got {value!r}")
    return _build(name, json.dumps(options, sort_keys=True))


def _parse_one(text: str) -> Refiner:
    """``NAME`` or ``NAME:KEY=VALUE[:KEY=VALUE...]``."""
    name, *items = (part.strip() for part in text.split(":"))
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"refiner option must be KEY=VALUE, got {item!r} in {text!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        options[key.strip().replace("-", "_")] = value
    return load_refiner(name, **options)


def parse_refine(value: str | Refiner | Sequence[str | Refiner] | None) -> tuple[Refiner, ...]:
    """The refiners a request's ``refine`` value names, in the order they run (see the module docstring)."""
    if value is None:
        return ()
    items: Sequence[str | Refiner]
    if isinstance(value, (str, Refiner)):
        items = [value]
    elif isinstance(value, Sequence):
        items = value
    else:
        raise InvalidInputError(f"refine must be a name, a comma-separated string or a list, got {value!r}")
    chain: list[Refiner] = []
    for item in items:
        if isinstance(item, Refiner):
            chain.append(item)
        elif isinstance(item, str):
            chain.extend(_parse_one(part) for part in item.split(",") if part.strip())
        else:
            raise InvalidInputError(f"refine entries must be refiner names or Refiner instances, got "
                                    f"{item!r}")
    return tuple(chain)

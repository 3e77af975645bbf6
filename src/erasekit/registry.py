"""Method registry: name -> factory, with the weights each method needs and whether they are here.

Methods register a :class:`MethodSpec` at import time of :mod:`erasekit.methods.builtin`. ``auto`` picks
the available method with the highest ``auto_priority`` (weight-free methods have the lowest priority, so any
method whose weights resolve locally wins over them).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .options import OptionSet
from .types import InvalidInputError, MaskOrPromptError, MissingWeightsError, UnknownMethodError


@dataclass(frozen=True)
class WeightRequirement:
    """One thing a method needs on disk (or in the process).

    ``locate`` returns where it resolves locally (a path or a short description) or None when it is missing;
    it must never touch the network. ``fetch_hint`` is the one command that gets it.
    """

    name: str
    description: str
    locate: Callable[[], str | None]
    hub_id: str | None = None
    fetch_hint: str | None = None
    # Load options that supply this requirement when given (e.g. an explicit file path): load_remover then
    # leaves its resolution, and any error, to the factory.
    supplied_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    factory: Callable[..., Any]  # (**load options) -> Remover
    weights: tuple[WeightRequirement, ...] = ()
    auto_priority: int | None = 0  # None: never chosen by "auto"
    requires_mask: bool = True
    family: str = "classical"
    paper: str | None = None

    @property
    def call_options(self) -> OptionSet | None:
        """The per-call options the method's remover class declares; None when the factory is not a remover
        class (then only the loaded remover can check them)."""
        declared = getattr(self.factory, "call_options", None)
        return declared if isinstance(declared, OptionSet) else None


@dataclass(frozen=True)
class WeightStatus:
    name: str
    description: str
    present: bool
    location: str | None
    hub_id: str | None
    fetch_hint: str | None


@dataclass(frozen=True)
class MethodInfo:
    """What ``available_methods()`` reports for one method."""

    name: str
    description: str
    family: str
    requires_mask: bool
    available: bool
    reason: str | None
    weights: tuple[WeightStatus, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "family": self.family,
                "requires_mask": self.requires_mask, "available": self.available, "reason": self.reason,
                "weights": [w.__dict__ for w in self.weights]}


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"method {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    from .methods import builtin  # noqa: F401  (registers the built-in methods)


def method_names() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(f"unknown method {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def method_info(spec: MethodSpec) -> MethodInfo:
    statuses = []
    for req in spec.weights:
        try:
            location = req.locate()
        except Exception as exc:  # noqa: BLE001  (a broken resolver must not break listing)
            location = None
            desc = f"{req.description} (resolver failed: {exc})"
        else:
            desc = req.description
        statuses.append(
            WeightStatus(req.name, desc, location is not None, location, req.hub_id, req.fetch_hint)
        )
    missing = [s for s in statuses if not s.present]
    reason = None
    if missing:
        hints = "; ".join(f"{s.name}: {s.fetch_hint}" if s.fetch_hint else s.name for s in missing)
        reason = f"missing weights — {hints}"
    return MethodInfo(
        spec.name, spec.description, spec.family, spec.requires_mask, not missing, reason, tuple(statuses)
    )


def available_methods(*, only_available: bool = False) -> list[MethodInfo]:
    """Every registered method with its description, required weights and whether they are present."""
    _ensure_loaded()
    infos = [method_info(_REGISTRY[n]) for n in sorted(_REGISTRY)]
    return [i for i in infos if i.available] if only_available else infos


def resolve_auto(*, mask_given: bool = True) -> str:
    """The best available method: highest auto_priority whose weights resolve locally."""
    _ensure_loaded()
    # A mask selects the masked methods; no mask selects the mask-free (text-guided) ones.
    candidates = [
        (s.auto_priority, s)
        for s in _REGISTRY.values()
        if s.auto_priority is not None and s.requires_mask == mask_given
    ]
    for _, spec in sorted(candidates, key=lambda ranked: (-ranked[0], ranked[1].name)):
        if method_info(spec).available:
            return spec.name
    if not mask_given:  # the user forgot the mask: bad input, not missing weights (pypatchmatch is there)
        why = "; ".join(f"{spec.name}: {method_info(spec).reason}" for _, spec in candidates)
        raise MaskOrPromptError(f"no mask-free method is available here ({why})" if why else None)
    raise MissingWeightsError(
        "no method is available for this request (install pypatchmatch or download weights)"
    )


def load_options(spec: MethodSpec) -> set[str]:
    """Names of the keyword options the factory takes (used to split load options from per-call options)."""
    params = inspect.signature(spec.factory).parameters.values()
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def check_call(
    spec: MethodSpec, options: dict[str, Any], *, prompt: str | None = None, from_python: bool = True
) -> dict[str, Any]:
    """Per-call options checked against the method's declaration before anything loads (typed values), and a
    prompt refused if the method takes none. ``from_python=False`` for text and network input."""
    check = getattr(spec.factory, "check_call", None)
    if check is None:  # a plain factory function: the remover it builds checks each call
        return dict(options)
    return check(options, prompt=prompt, from_python=from_python)


def split_options(
    spec: MethodSpec,
    options: dict[str, Any],
    *,
    prompt: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(load options the factory takes, per-call options): how ``remove()`` and ``batch`` route one option
    dict.

    A name the method declares per call is a per-call option even where the factory takes it too (patchmatch's
    ``patch_size`` sets the loaded remover's default): no model is reloaded for it. Per-call options come back
    validated and typed by :func:`check_call`, so a bad one fails before the model loads."""
    declared: set[str] = set(spec.call_options or ())
    accepted = load_options(spec)
    load = {k: v for k, v in options.items() if k in accepted and k not in declared}
    call = {k: v for k, v in options.items() if k not in load}
    return load, check_call(spec, call, prompt=prompt)


def load_remover(name: str = "auto", **options: Any):
    """Build a remover once and reuse it across calls. ``options`` go to the method's factory."""
    if name == "auto":
        name = resolve_auto()
    spec = get_method(name)
    info = method_info(spec)
    # An explicit model/weights location is checked by the factory itself (it may be a local folder).
    explicit = any(options.get(k) is not None for k in ("model", "weights"))
    unsupplied = [status for status, req in zip(info.weights, spec.weights, strict=True)
                  if not status.present and not any(options.get(k) is not None for k in req.supplied_by)]
    if unsupplied and not explicit:
        hints = "; ".join(f"{s.name}: {s.fetch_hint}" if s.fetch_hint else s.name for s in unsupplied)
        raise MissingWeightsError(f"method {name!r} is unavailable: missing weights — {hints}")
    unknown = set(options) - load_options(spec)
    if unknown:
        raise InvalidInputError(f"method {name!r} does not take load option(s): {', '.join(sorted(unknown))}")
    return spec.factory(**options)

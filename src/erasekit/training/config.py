"""YAML training configs, the same way for every trainer: read, apply ``--set`` overrides, validate.

A trainer declares its config as a pydantic model; :func:`read_config` turns a YAML file plus overrides into
that model, and every mistake (unreadable file, bad YAML, a wrong field) becomes a one-line
:class:`~erasekit.types.InvalidInputError` naming the file and the field.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ValidationError

from ..types import InvalidInputError

Config = TypeVar("Config", bound=BaseModel)


# Accelerate's mixed-precision setting for every trainer's config. YAML 1.1 reads a bare `no` as false, so a
# config that says `mixed_precision: no` means "no".
MixedPrecision = Annotated[
    Literal["no", "fp16", "bf16"], BeforeValidator(lambda value: "no" if value is False else value)
]


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise InvalidInputError(f"cannot set {dotted}: {part} is not a section")
    node[leaf] = value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=2e-5", "max_steps=10"]`` -> a nested dict (values parsed as YAML scalars)."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"override {item!r} is not KEY=VALUE")
        _set_path(tree, key.strip(), yaml.safe_load(raw))
    return tree


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, section by section (nested dicts merge, anything else replaces)."""
    out = dict(base)
    for key, value in extra.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if nested else value
    return out


def first_error(exc: ValidationError) -> str:
    """pydantic's first complaint as ``field.path: message (and N more)``."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "config"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"


def read_config(path: str | os.PathLike, model: type[Config],
                overrides: dict[str, Any] | None = None) -> Config:
    """Read the YAML file at ``path``, merge ``overrides`` (a nested dict) and validate it as ``model``."""
    path = Path(path).expanduser()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise InvalidInputError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise InvalidInputError(f"config {path} must be a mapping of settings")
    try:
        return model.model_validate(merge(raw, overrides or {}))
    except ValidationError as exc:
        raise InvalidInputError(f"config {path}: {first_error(exc)}") from None


def packaged_file(package: str, name: str, prefix: str) -> Path:
    """A YAML config shipped in ``package``'s ``configs/`` folder, named with or without ``prefix`` and
    ``.yaml`` (``osor_sdxl_phase1`` is ``erasekit.methods.osor.train/configs/sdxl_phase1.yaml``)."""
    from importlib.resources import files

    folder = files(package) / "configs"
    path = Path(str(folder / f"{name.removesuffix('.yaml').removeprefix(prefix)}.yaml"))
    if not path.is_file():
        shipped = sorted(prefix + f.name.removesuffix(".yaml") for f in folder.iterdir()
                         if f.name.endswith(".yaml"))
        raise InvalidInputError(f"no packaged config {name!r} (packaged: {', '.join(shipped)})")
    return path


def config_path(name_or_path: str, packaged: Callable[[str], Path]) -> Path:
    """A config file as given, or else the packaged config of that name (``packaged`` finds it)."""
    path = Path(name_or_path).expanduser()
    if path.is_file() or name_or_path.endswith((".yaml", ".yml")):
        return path
    return packaged(name_or_path)


__all__ = ["MixedPrecision", "config_path", "first_error", "merge", "packaged_file", "parse_overrides",
           "read_config"]

"""Typed per-call options: each method declares them once; every entry point validates through that one
declaration.

A remover lists its per-call options as an :class:`OptionSet` class attribute (``call_options``): for each
option its type, default, allowed range or choices and help. The same declaration then

* validates Python values (``erasekit.remove(steps=20)``, ``RemovalRequest.options``) and hands the method
  typed values with the defaults filled in (:meth:`OptionSet.resolve`);
* parses text (``erasekit remove -O paste_back=no``, form fields): a string given for a non-string option is
  read by the option's type, so ``"no"`` is ``False`` and ``"3.5"`` is no integer;
* describes itself for ``erasekit methods --options NAME`` and the server's ``GET /api/v1/methods``.

Defaults that depend on loaded weights (OSOR's training timestep, its blend) are declared as ``default=None``
with a ``default_note`` saying where they come from; the loaded remover binds them with
:meth:`OptionSet.with_defaults`.

Every error is an :class:`~erasekit.types.InvalidInputError` naming the method, the option, the value and what
is allowed, so the CLI exits 2 and the server answers 422 with the same sentence.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .types import InvalidInputError

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_INTEGER_TEXT = re.compile(r"[+-]?\d+")
_TYPE_NAMES: dict[Any, str] = {bool: "bool", int: "int", float: "float", str: "str", Callable: "callable"}


@dataclass(frozen=True)
class Range:
    """An interval of allowed numbers; each end is inclusive unless said otherwise. ``str()`` is the maths
    notation (``[1, 1000]``, ``(0, 1]``) that error messages and listings show."""

    low: float
    high: float
    low_inclusive: bool = True
    high_inclusive: bool = True

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, (int, float)):
            return False
        above = value >= self.low if self.low_inclusive else value > self.low
        below = value <= self.high if self.high_inclusive else value < self.high
        return above and below

    def __str__(self) -> str:
        return (f"{'[' if self.low_inclusive else '('}{_number(self.low)}, "
                f"{_number(self.high)}{']' if self.high_inclusive else ')'}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class Option:
    """One per-call option.

    ``type`` is ``bool``, ``int``, ``float``, ``str`` or ``collections.abc.Callable``. Numbers need a
    ``range``; strings may name ``choices``. ``default=None`` means "off" for a ``nullable`` option, otherwise
    "resolved by the loaded remover" (say how in ``default_note``). ``python_only`` options (callables) cannot
    come from text or over the network. ``allow_nonfinite`` lets a float be nan or ±inf (outside any range).
    """

    name: str
    type: Any  # bool, int, float, str or collections.abc.Callable
    help: str
    default: Any = None
    range: Range | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    python_only: bool = False
    allow_nonfinite: bool = False
    default_note: str | None = None

    def __post_init__(self) -> None:
        if self.type not in _TYPE_NAMES:
            raise TypeError(f"option {self.name!r}: unsupported type {self.type!r}")
        if self.type in (int, float) and self.range is None:
            raise TypeError(f"option {self.name!r}: a number needs a range")
        if self.choices is not None and self.type is not str:
            raise TypeError(f"option {self.name!r}: choices apply to strings only")
        if self.type is Callable and not self.python_only:
            raise TypeError(f"option {self.name!r}: a callable cannot come from text, declare it python_only")
        if self.default is not None:
            try:
                self.check(self.default, owner="declared default:")
            except InvalidInputError as exc:
                raise TypeError(str(exc)) from None

    # ---- what the option allows, in words (error messages and listings) ------------------------------------
    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.type]

    def allowed(self) -> str:
        """In words: ``an integer in [1, 1000]``, ``one of alpha, mask``, ``a boolean (true/false, ...)``."""
        if self.type is bool:
            text = "a boolean (true/false, yes/no, on/off, 1/0)"
        elif self.type is int:
            text = f"an integer in {self.range}"
        elif self.type is float:
            text = f"a number in {self.range}" + (" (or nan/inf)" if self.allow_nonfinite else "")
        elif self.choices is not None:
            text = f"one of {', '.join(self.choices)}"
        elif self.type is str:
            text = "a string"
        else:
            text = "a callable"
        return text + (" or null" if self.nullable else "")

    # ---- checking one value --------------------------------------------------------------------------------
    def check(self, value: Any, *, owner: str, from_python: bool = True) -> Any:
        """``value`` as this option's type, or an InvalidInputError naming ``owner``, the option and range.

        A string given for a non-string option is parsed as text. ``from_python=False`` (CLI, server) refuses
        ``python_only`` options."""
        if self.python_only and not from_python:
            raise InvalidInputError(f"{owner} option {self.name} can only be set from Python ({self.help})")
        if value is None:
            if self.nullable:
                return None
            raise self._error(value, owner)
        if isinstance(value, str) and self.type is not str:
            return self._check_number_or_bool(self._parse_text(value, owner), value, owner)
        return self._check_number_or_bool(value, value, owner)

    def _parse_text(self, text: str, owner: str) -> Any:
        word = text.strip().lower()
        if self.type is bool:
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
        elif self.type is int:
            if _INTEGER_TEXT.fullmatch(word):
                return int(word)
        elif self.type is float:
            # also "1e-3", "nan", "inf"; finiteness is checked next. Unparseable text falls to the error.
            with contextlib.suppress(ValueError):
                return float(word)
        raise self._error(text, owner)

    def _check_number_or_bool(self, value: Any, shown: Any, owner: str) -> Any:
        kind = self.type
        if kind is bool:
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
        elif kind is int:
            # 4.0 is 4 (JSON clients may send floats), 3.5 is not.
            if (_is_number(value) and (isinstance(value, numbers.Integral) or float(value).is_integer())
                    and int(value) in self._range):
                return int(value)
        elif kind is float:
            if _is_number(value):
                number = float(value)
                if math.isfinite(number) and number in self._range:
                    return number
                if not math.isfinite(number) and self.allow_nonfinite:
                    return number
        elif kind is str:
            if isinstance(value, str) and (self.choices is None or value in self.choices):
                return value
        elif callable(value):
            return value
        raise self._error(shown, owner)

    @property
    def _range(self) -> Range:
        assert self.range is not None, "numbers are declared with a range (__post_init__)"
        return self.range

    def _error(self, value: Any, owner: str) -> InvalidInputError:
        return InvalidInputError(f"{owner} option {self.name} must be {self.allowed()}, got {value!r}")

    def describe(self) -> dict[str, Any]:
        """JSON-able: name, type, default (or how it is resolved), range or choices, help."""
        return {"name": self.name, "type": self.type_name, "default": self.default,
                "default_note": self.default_note, "allowed": self.allowed(),
                "range": None if self.range is None else str(self.range),
                "choices": None if self.choices is None else list(self.choices), "help": self.help}


def _is_number(value: Any) -> bool:
    """A real number that is no boolean: bool is an int subclass, but True is no patch size."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


class OptionSet(Mapping[str, Option]):
    """A method's per-call options, in declaration order. Immutable: ``with_defaults``/``replace`` copy."""

    def __init__(self, *options: Option):
        self._options: dict[str, Option] = {}
        for option in options:
            if option.name in self._options:
                raise TypeError(f"option {option.name!r} is declared twice")
            self._options[option.name] = option

    def __getitem__(self, name: str) -> Option:
        return self._options[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._options)

    def __len__(self) -> int:
        return len(self._options)

    def __repr__(self) -> str:
        return f"OptionSet({', '.join(self._options)})"

    def __or__(self, other: OptionSet) -> OptionSet:
        return OptionSet(*self.values(), *other.values())

    def public(self) -> list[Option]:
        """The options a client can send as text or JSON (not the python_only ones)."""
        return [o for o in self.values() if not o.python_only]

    # ---- validation ----------------------------------------------------------------------------------------
    def validate(self, values: Mapping[str, Any], *, owner: str, from_python: bool = True) -> dict[str, Any]:
        """The given options as typed values; an unknown name or a bad value is an InvalidInputError.

        ``owner`` is the method's name (it starts every message). ``from_python=False`` is for text and
        network input: python_only options are refused there."""
        unknown = set(values) - set(self._options)
        if unknown:
            names = [o.name for o in (self.values() if from_python else self.public())]
            takes = f"it takes: {', '.join(names)}" if names else "it takes no per-call options"
            raise InvalidInputError(f"method {owner!r} does not take option(s): "
                                    f"{', '.join(sorted(unknown))}; {takes}")
        return {name: self._options[name].check(value, owner=owner, from_python=from_python)
                for name, value in values.items()}

    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.values()}

    def resolve(self, values: Mapping[str, Any], *, owner: str) -> dict[str, Any]:
        """Every declared option: the defaults, overridden by ``values`` (validated)."""
        return {**self.defaults(), **self.validate(values, owner=owner)}

    # ---- binding what only a loaded remover knows ----------------------------------------------------------
    def with_defaults(self, *, owner: str, **defaults: Any) -> OptionSet:
        """The same options with these defaults, each checked against its declaration (a remover binds the
        defaults its weights or constructor arguments decide)."""
        checked = self.validate(defaults, owner=owner)
        return self.replace(**{name: {"default": value} for name, value in checked.items()})

    def replace(self, **changes: Mapping[str, Any]) -> OptionSet:
        """The same options with some fields changed: ``replace(timestep={"range": Range(0, 999)})``."""
        missing = set(changes) - set(self._options)
        if missing:
            raise KeyError(f"no option(s) {', '.join(sorted(missing))} to replace")
        return OptionSet(*(dataclasses.replace(o, **changes[o.name]) if o.name in changes else o
                           for o in self.values()))

    def describe(self, *, public: bool = False) -> list[dict[str, Any]]:
        return [o.describe() for o in (self.public() if public else self.values())]


__all__ = ["Option", "OptionSet", "Range"]

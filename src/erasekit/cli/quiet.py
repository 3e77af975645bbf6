"""Quiet by default: the libraries' own logging and loading bars stay off unless ``--verbose``.

On a plain diffusion call transformers says "install torchvision" (erasekit does not need it), diffusers
logs which modules it keeps in float32, and both draw loading bars. None of that is for an erasekit user.
erasekit's own output (results, errors, the denoising-step bar, batch progress, training bars) is not touched.

transformers and Hugging Face Hub read their settings from the environment when they are imported; diffusers
reads its verbosity there too, but turns its loading bar off only through
``diffusers.utils.logging.disable_progress_bar``. The libraries are imported lazily, deep inside a command
(``erasekit --help`` must not pay for them), so a one-shot import hook makes that call right after the logging
module first loads, or it is made at once when the module is already loaded (in-process callers, the tests).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

# Read by the libraries at import time. A value the user set is kept (setdefault).
QUIET_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DIFFUSERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}
_LOGGING_MODULES = ("transformers.utils.logging", "diffusers.utils.logging")


def _restore(module: Any, level: int, bars: bool) -> None:
    module.set_verbosity(level)
    if bars:
        module.enable_progress_bar()


def _silence(module: ModuleType) -> None:
    """One library's logging module: errors only, no progress bars."""
    module.set_verbosity_error()
    module.disable_progress_bar()


class _LoaderThenCallback(importlib.abc.Loader):
    """Loads a module with its own loader, then runs a callback on it."""

    def __init__(self, loader: Any, callback: Callable[[ModuleType], None]):
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._callback(module)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``callback`` on each named module right after its first import (then forgets that name)."""

    def __init__(self, names: tuple[str, ...], callback: Callable[[ModuleType], None]):
        self._pending = set(names)
        self._callback = callback

    def find_spec(self, fullname: str, path: Any,
                  target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._pending:
            return None
        self._pending.discard(fullname)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _LoaderThenCallback(spec.loader, self._callback)
                return spec
            if spec is not None:
                return spec
        return None


@contextlib.contextmanager
def quiet_libraries(verbose: bool = False) -> Iterator[None]:
    """Within the block, transformers, diffusers and the Hub log errors only and draw no loading bars (unless
    ``verbose``). The environment is restored afterwards; libraries first imported inside stay quiet."""
    if verbose:
        yield
        return
    added = {key: value for key, value in QUIET_ENVIRONMENT.items() if key not in os.environ}
    os.environ.update(added)
    restore: list[Callable[[], None]] = []
    for name in _LOGGING_MODULES:
        module = sys.modules.get(name)
        if module is not None:
            level, bars = module.get_verbosity(), module.is_progress_bar_enabled()
            _silence(module)
            restore.append(functools.partial(_restore, module, level, bars))
    hub = sys.modules.get("huggingface_hub.utils")
    if hub is not None and not hub.are_progress_bars_disabled():
        hub.disable_progress_bars()
        restore.append(hub.enable_progress_bars)
    hook = _AfterImport(tuple(n for n in _LOGGING_MODULES if n not in sys.modules), _silence)
    sys.meta_path.insert(0, hook)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(hook)
        for undo in restore:
            undo()
        for key in added:
            os.environ.pop(key, None)


__all__ = ["QUIET_ENVIRONMENT", "quiet_libraries"]

"""Built-in methods: the remover contract (:mod:`.base`) and one module or package per method.

Importing :mod:`erasekit.methods.builtin` registers the built-in methods (the registry does it on first use);
each method module owns its registrations. This package itself imports no method module, so shared layers such
as :mod:`erasekit.diffusion` can build on :mod:`.base` while the methods build on them.

Method modules import their heavy libraries (diffusers, transformers) lazily, at first use, so listing methods
and the weight-free path stay fast.
"""

from __future__ import annotations

from .base import Remover

__all__ = ["Remover"]

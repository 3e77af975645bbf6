"""Built-in methods. Importing this package registers them; each module owns its registrations.

Method modules import their heavy libraries (diffusers, transformers) lazily, at first use, so listing methods and
the weight-free path stay fast.
"""

from __future__ import annotations

from . import baselines, classical, osor
from .base import Remover

for _module in (classical, baselines, osor):
    _module.register()

__all__ = ["Remover"]

"""Importing this module registers the built-in methods, once (the registry imports it on first use)."""

from __future__ import annotations

from . import baselines, classical, magicremover, osor

for _module in (classical, baselines, osor, magicremover):
    _module.register()

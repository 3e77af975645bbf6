"""Importing this module registers the built-in methods, once (the registry imports it on first use)."""

from __future__ import annotations

from . import baselines, classical, clipaway, eradiff, lama, magicremover, osor

for _module in (classical, baselines, osor, eradiff, clipaway, magicremover, lama):
    _module.register()

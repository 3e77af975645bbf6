"""A method's backbone, loaded one way: the load options every diffusion method takes, and their pipeline.

Diffusion removers and trainers all start from one diffusers checkpoint of a known preset.
:class:`BackboneOptions` holds the user's load options (``model``, ``device``, ``dtype``, ``allow_download``,
on top of :class:`~erasekit.backbones.device.PlacementOptions`); :func:`load_backbone` turns them into a
placed pipeline of the preset's diffusers class, offline first (:func:`.presets.load_pipeline`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .device import PlacementOptions
from .presets import PRESETS, get_preset, load_pipeline


@dataclass(frozen=True, kw_only=True)
class BackboneOptions(PlacementOptions):
    """Where a backbone comes from and where it runs: the placement options plus checkpoint and device.

    ``model``: a preset name, a local diffusers folder or a Hub id ``org/repo`` (None: the method's preset).
    ``device``/``dtype``: ``auto`` or None picks per machine (see :mod:`erasekit.backbones.device`).
    ``allow_download``: fetch from the Hub if nothing local has the weights. The fields are the keyword load
    options of every diffusion method, by the same names.
    """

    model: str | os.PathLike | None = None
    device: str | None = None
    dtype: str | None = None
    allow_download: bool = False


def load_backbone(preset_name: str, options: BackboneOptions) -> Any:
    """Load ``options.model`` (default: preset ``preset_name``) as that preset's pipeline class, placed.

    A local folder is read with the preset's loading rules (its class, its optional components); another
    preset's name or a Hub id is resolved offline first and loaded into this preset's class, so for example an
    SD 2 checkpoint can serve a method written for SD 1.5.
    """
    import diffusers

    preset = get_preset(preset_name)
    pipeline_cls = getattr(diffusers, preset.pipeline_class)
    model = options.model
    local = model is not None and str(model) not in PRESETS and Path(model).expanduser().exists()
    return load_pipeline(preset if model is None or local else str(model), path=model if local else None,
                         device=options.device, dtype=options.dtype, allow_download=options.allow_download,
                         pipeline_cls=pipeline_cls, placement=options)


__all__ = ["BackboneOptions", "load_backbone"]

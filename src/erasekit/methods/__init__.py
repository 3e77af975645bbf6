"""Built-in methods. Importing this package registers them; each module owns its registrations."""

from __future__ import annotations

from ..registry import MethodSpec, WeightRequirement, register_method
from .base import Remover
from .classical import NavierStokesRemover, PatchMatchRemover, TeleaRemover, patchmatch_location

register_method(MethodSpec(
    name="patchmatch",
    description="PatchMatch exemplar fill (weight-free, the default on a fresh machine)",
    factory=PatchMatchRemover,
    weights=(WeightRequirement("pypatchmatch", "compiled PatchMatch library", patchmatch_location,
                               fetch_hint="pip install pypatchmatch"),),
    auto_priority=0,
    paper="Barnes et al., SIGGRAPH 2009",
))
register_method(MethodSpec(
    name="telea", description="OpenCV fast-marching inpainting (Telea 2004); fastest, blurry on large holes",
    factory=TeleaRemover, auto_priority=-2, paper="Telea, JGT 2004",
))
register_method(MethodSpec(
    name="ns", description="OpenCV Navier-Stokes inpainting (Bertalmio et al. 2001); smooth fills",
    factory=NavierStokesRemover, auto_priority=-1, paper="Bertalmio et al., CVPR 2001",
))

from .baselines import register as _register_baselines  # noqa: E402  (diffusers loads lazily, at first use)

_register_baselines()

from .osor import register as _register_osor  # noqa: E402

_register_osor()

__all__ = ["Remover"]

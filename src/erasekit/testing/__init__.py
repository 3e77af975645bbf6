"""Tiny, randomly initialised models of the real architectures, in the real on-disk layouts, built offline.

One entry point per method::

    from erasekit.testing import write_tiny_weights
    options = write_tiny_weights("osor-sdxl", "/tmp/tiny")   # writes everything the method needs
    remover = erasekit.load_remover("osor-sdxl", **options)  # loads as real weights load
    # erasekit remove photo.png -m mask.png --method osor-sdxl --model /tmp/tiny/sdxl-inpaint
    #   --weights /tmp/tiny/osor_sdxl_phase2.pth -o out.png

The returned load options name the written files. The pieces: :mod:`.pipelines` (tiny diffusers pipelines
saved with ``save_pretrained``), :mod:`.osor` (OSOR LoRA + alpha-head files in the authors' ``.pth`` layout
and erasekit's folder layout), :mod:`.training` (training-only stand-ins: the discriminator trunk in
open_clip's layout).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .osor import write_tiny_osor_weights
from .pipelines import TINY_NAMES, TinyCheckpoints, build_tiny_pipeline, tiny_pipeline, write_tiny_pipeline


def _weight_free(folder: Path) -> dict[str, Any]:
    return {}


def _baseline(backbone: str) -> Callable[[Path], dict[str, Any]]:
    def write(folder: Path) -> dict[str, Any]:
        return {"model": str(write_tiny_pipeline(backbone, folder / backbone))}

    return write


def _osor(family: str) -> Callable[[Path], dict[str, Any]]:
    def write(folder: Path) -> dict[str, Any]:
        from .osor import TINY_BACKBONE

        backbone = TINY_BACKBONE[family]
        model = folder / backbone
        if not (model / "model_index.json").is_file():
            write_tiny_pipeline(backbone, model)
        weights = write_tiny_osor_weights(family, folder / f"osor_{family}_phase2.pth", phase=2)  # type: ignore[arg-type]
        return {"model": str(model), "weights": str(weights)}

    return write


def _eradiff(folder: Path) -> dict[str, Any]:
    from .eradiff import write_tiny_eradiff_weights

    model = folder / "sd2-inpaint"
    if not (model / "model_index.json").is_file():
        write_tiny_pipeline("sd2-inpaint", model)
    return {"model": str(model), "weights": str(write_tiny_eradiff_weights(model, folder / "eradiff"))}


def _clipaway(folder: Path) -> dict[str, Any]:
    from .clipaway import write_tiny_clipaway_weights

    model = folder / "sd15-inpaint"
    if not (model / "model_index.json").is_file():
        write_tiny_pipeline("sd15-inpaint", model)
    return {"model": str(model), "weights": str(write_tiny_clipaway_weights(folder / "clipaway"))}


def _pixperfect(folder: Path) -> dict[str, Any]:
    # A refiner, not a method: the options are the refiner's, passed as refine=f"pixperfect:weights={DIR}".
    from .pixperfect import write_tiny_pixperfect_weights

    return {"weights": str(write_tiny_pixperfect_weights(folder / "pixperfect"))}


def _sam3(folder: Path) -> dict[str, Any]:
    # A mask source, not a method: the options go to erasekit.remove(..., prompt=...) beside the method's.
    from .segment import write_tiny_sam3

    return {"mask_source": "sam3", "sam3": str(write_tiny_sam3(folder / "sam3"))}


def _grounding_dino_sam2(folder: Path) -> dict[str, Any]:
    from .segment import write_tiny_grounding_dino, write_tiny_sam2

    detector, segmenter = write_tiny_grounding_dino(folder / "gdino"), write_tiny_sam2(folder / "sam2")
    return {"mask_source": "grounding-dino-sam2", "detector": str(detector), "segmenter": str(segmenter)}


def _sam(folder: Path) -> dict[str, Any]:
    # SAM v1: a segmenter, not a method. `segmenter=` is the Grounding DINO path's keyword in erasekit.remove;
    # the same folder is the server's click model (ServerSettings(click_model=...), `serve --click-model`).
    from .segment import write_tiny_sam

    return {"segmenter": str(write_tiny_sam(folder / "sam"))}


def _lama(folder: Path) -> dict[str, Any]:
    from .lama import write_tiny_lama_weights

    return {"weights": str(write_tiny_lama_weights(folder / "lama"))}


# method (or refiner) name -> writer(folder) -> load options. A new method adds its writer here.
TINY_WEIGHT_WRITERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "patchmatch": _weight_free,
    "telea": _weight_free,
    "ns": _weight_free,
    "sd15-inpaint": _baseline("sd15-inpaint"),
    "sd2-inpaint": _baseline("sd2-inpaint"),
    "sdxl-inpaint": _baseline("sdxl-inpaint"),
    "flux-fill": _baseline("flux-fill"),
    "osor-sdxl": _osor("sdxl"),
    "osor-flux": _osor("flux"),
    "eradiff": _eradiff,
    "clipaway": _clipaway,
    "magicremover": _baseline("sd15"),
    "pixperfect": _pixperfect,
    "sam3": _sam3,
    "grounding-dino-sam2": _grounding_dino_sam2,
    "sam": _sam,
    "lama": _lama,
}


def write_tiny_weights(method: str, folder: str | Path) -> dict[str, Any]:
    """Write tiny random weights for ``method`` under ``folder`` in the real checkpoints' layouts.

    Returns the load options (``model``, ``weights``, ...) that make
    ``erasekit.load_remover(method, **options)`` run offline."""
    if method not in TINY_WEIGHT_WRITERS:
        raise ValueError(
            f"no tiny weights for method {method!r}; known: {', '.join(sorted(TINY_WEIGHT_WRITERS))}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return TINY_WEIGHT_WRITERS[method](folder)


__all__ = ["TINY_NAMES", "TINY_WEIGHT_WRITERS", "TinyCheckpoints", "build_tiny_pipeline", "tiny_pipeline",
           "write_tiny_osor_weights", "write_tiny_pipeline", "write_tiny_weights"]

"""PixPerfect weights on disk: a folder with ``pixperfect.safetensors`` (the generator's state dict) and
``pixperfect.json`` (its :class:`~.network.PixPerfectConfig` plus a format version).

There are no released PixPerfect weights (the paper publishes none): the files come from ``erasekit train
pixperfect`` or, for tests, ``erasekit.testing.write_tiny_weights("pixperfect", DIR)``. The default folder is
``$ERASEKIT_MODELS_DIR/pixperfect/``, the place every method's weights live.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...backbones.presets import MODELS_DIR_ENV, models_dir
from ...types import InvalidInputError, MissingWeightsError
from .network import PixPerfectConfig, PixPerfectGenerator

WEIGHTS_FILE = "pixperfect.safetensors"
CONFIG_FILE = "pixperfect.json"
FORMAT_VERSION = 1


def default_weights_dir() -> Path | None:
    root = models_dir()
    return root / "pixperfect" if root is not None else None


def save_weights(generator: PixPerfectGenerator, folder: str | os.PathLike) -> Path:
    """Write the generator's weights and config into ``folder``; returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(
        json.dumps({"format_version": FORMAT_VERSION, "config": generator.config.to_dict()}, indent=2) + "\n"
    )
    return folder


def load_generator(folder: str | os.PathLike | None = None) -> PixPerfectGenerator:
    """The generator in ``folder`` (default ``$ERASEKIT_MODELS_DIR/pixperfect``), in eval mode, on the CPU."""
    from safetensors.torch import load_file

    if folder is None:
        folder = default_weights_dir()
        if folder is None:
            raise MissingWeightsError(
                f"PixPerfect weights not found: put {WEIGHTS_FILE} and {CONFIG_FILE} in "
                f"${MODELS_DIR_ENV}/pixperfect/ (set ${MODELS_DIR_ENV}), or pass "
                "pixperfect:weights=DIR; train them with `erasekit train pixperfect` "
                "(no weights are published)"
            )
    folder = Path(folder).expanduser()
    missing = [name for name in (WEIGHTS_FILE, CONFIG_FILE) if not (folder / name).is_file()]
    if missing:
        raise MissingWeightsError(
            f"PixPerfect weights not found: {', '.join(str(folder / n) for n in missing)} "
            f"missing; put {WEIGHTS_FILE} and {CONFIG_FILE} in {folder} (train them with "
            "`erasekit train pixperfect`; no weights are published)"
        )
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
        config = PixPerfectConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{folder / CONFIG_FILE} is not a PixPerfect config: {exc}") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise InvalidInputError(
            f"{folder / CONFIG_FILE}: format_version {meta.get('format_version')!r}, "
            f"expected {FORMAT_VERSION}"
        )
    generator = PixPerfectGenerator(config)
    try:
        generator.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=True)
    except RuntimeError as exc:
        raise InvalidInputError(
            f"{folder / WEIGHTS_FILE} does not fit the config in {CONFIG_FILE}: {str(exc).splitlines()[0]}"
        ) from None
    return generator.eval().requires_grad_(False)


__all__ = ["CONFIG_FILE", "FORMAT_VERSION", "WEIGHTS_FILE", "default_weights_dir", "load_generator",
           "save_weights"]

"""Backbone presets and offline-first checkpoint resolution.

A preset names one diffusers checkpoint on the Hugging Face Hub and says how to load it. Weights are looked up
locally, in this order, and the network is used only when the caller explicitly allows it:

1. an explicit local path (``--model PATH`` / ``model=PATH`` / ``path=``): a diffusers folder with
``model_index.json``;
2. ``$ERASEKIT_MODELS_DIR/<preset name>/`` or ``$ERASEKIT_MODELS_DIR/<org>/<repo>/`` (the Hub id as folders),
e.g.
   ``$ERASEKIT_MODELS_DIR/sdxl-inpaint`` or
   ``$ERASEKIT_MODELS_DIR/diffusers/stable-diffusion-xl-1.0-inpainting-0.1``;
3. the local Hugging Face cache (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``), read with
   ``huggingface_hub.snapshot_download(local_files_only=True)`` — never a network request.

If none has the weights, :class:`~erasekit.types.MissingWeightsError` names the preset, the Hub id and the
command that fetches it (``erasekit download NAME``). Downloads happen only in :func:`download` (the
``download`` command) or when ``allow_download=True`` (``--allow-download``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..types import InvalidInputError, MissingWeightsError
from .device import PlacementOptions, place_pipeline, resolve_device, resolve_dtype

if TYPE_CHECKING:
    import torch

Family = Literal["sd", "sdxl", "flux"]
Source = Literal["path", "models_dir", "hf_cache", "download"]

MODELS_DIR_ENV = "ERASEKIT_MODELS_DIR"

# Components whose folders must hold weights (not just a config) for a checkpoint to count as present.
_WEIGHT_COMPONENTS = frozenset({"unet", "transformer", "vae", "text_encoder", "text_encoder_2"})
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
# Files a diffusers checkpoint folder never needs: other frameworks, single-file dumps, EMA-less/variant
# copies.
_IGNORE_DEFAULT = ("*.bin", "*.ckpt", "*.msgpack", "*.onnx", "*.onnx_data", "*.pb", "*.h5", "*.non_ema.*",
                   "*.fp16.*", "*.ema.*")
_SD_LOAD_KWARGS = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


@dataclass(frozen=True)
class BackbonePreset:
    """One diffusers checkpoint and how erasekit loads it."""

    name: str
    hub_id: str
    pipeline_class: str  # diffusers class that loads it (StableDiffusionXLInpaintPipeline, ...)
    family: Family
    task: Literal["inpaint", "text2image"]
    components: tuple[str, ...]  # sub-folders to fetch (model_index.json lists them)
    description: str
    gated: bool = False  # the Hub requires accepting a licence and a token
    approx_download_gb: float = 0.0
    load_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def allow_patterns(self) -> list[str]:
        """Files ``erasekit download`` fetches.

        The index plus configs, tokenizer files and safetensors per component.
        """
        patterns = ["model_index.json"]
        for comp in self.components:
            patterns += [f"{comp}/*.json", f"{comp}/*.txt", f"{comp}/*.model", f"{comp}/*.safetensors"]
        return patterns

    @property
    def ignore_patterns(self) -> list[str]:
        return list(_IGNORE_DEFAULT)


def _sd_components(extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return ("scheduler", "text_encoder", "tokenizer", "unet", "vae") + extra


PRESETS: dict[str, BackbonePreset] = {
    p.name: p
    for p in (
        BackbonePreset(
            name="sd15-inpaint",
            hub_id="botp/stable-diffusion-v1-5-inpainting",
            pipeline_class="StableDiffusionInpaintPipeline",
            family="sd",
            task="inpaint",
            components=_sd_components(),
            description="Stable Diffusion 1.5 inpainting (9-channel UNet)",
            approx_download_gb=2.1,
            load_kwargs=_SD_LOAD_KWARGS,
        ),
        BackbonePreset(
            name="sd2-inpaint",
            hub_id="stabilityai/stable-diffusion-2-inpainting",
            pipeline_class="StableDiffusionInpaintPipeline",
            family="sd",
            task="inpaint",
            components=_sd_components(),
            description="Stable Diffusion 2 inpainting (512 px, OpenCLIP ViT-H)",
            approx_download_gb=2.6,
            load_kwargs=_SD_LOAD_KWARGS,
        ),
        BackbonePreset(
            name="sdxl-inpaint",
            hub_id="diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
            pipeline_class="StableDiffusionXLInpaintPipeline",
            family="sdxl",
            task="inpaint",
            components=_sd_components(("text_encoder_2", "tokenizer_2")),
            description="SDXL 1.0 inpainting 0.1 (the OSOR SDXL backbone)",
            approx_download_gb=10.3,
        ),
        BackbonePreset(
            name="flux-fill",
            hub_id="black-forest-labs/FLUX.1-Fill-dev",
            pipeline_class="FluxFillPipeline",
            family="flux",
            task="inpaint",
            components=(
                "scheduler",
                "text_encoder",
                "text_encoder_2",
                "tokenizer",
                "tokenizer_2",
                "transformer",
                "vae",
            ),
            description="FLUX.1 Fill dev (the OSOR FLUX backbone; gated on the Hub)",
            gated=True,
            approx_download_gb=33.8,
        ),
        BackbonePreset(
            name="sd15",
            hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
            pipeline_class="StableDiffusionPipeline",
            family="sd",
            task="text2image",
            components=_sd_components(),
            description="Stable Diffusion 1.5 text-to-image (mask-free methods)",
            approx_download_gb=2.1,
            load_kwargs=_SD_LOAD_KWARGS,
        ),
        BackbonePreset(
            name="sd21-base",
            hub_id="stabilityai/stable-diffusion-2-1-base",
            pipeline_class="StableDiffusionPipeline",
            family="sd",
            task="text2image",
            components=_sd_components(),
            description="Stable Diffusion 2.1 base text-to-image, 512 px",
            approx_download_gb=2.6,
            load_kwargs=_SD_LOAD_KWARGS,
        ),
    )
}


def get_preset(name: str) -> BackbonePreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInputError(f"unknown backbone preset {name!r}; known: {', '.join(PRESETS)}") from None


def preset_for_hub_id(hub_id: str) -> BackbonePreset | None:
    return next((p for p in PRESETS.values() if p.hub_id == hub_id), None)


# ------------------------------------------------------------------------------------------------------------
# Where things live
# ------------------------------------------------------------------------------------------------------------
def models_dir() -> Path | None:
    value = os.environ.get(MODELS_DIR_ENV)
    return Path(value).expanduser() if value else None


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time.

    huggingface_hub itself reads it at import.
    """
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def checkpoint_problem(folder: Path, components: tuple[str, ...] = ()) -> str | None:
    """Why ``folder`` is not a usable diffusers checkpoint, or None when it looks complete."""
    if not folder.is_dir():
        return f"{folder} is not a folder"
    index = folder / "model_index.json"
    if not index.is_file():
        return f"{folder} has no model_index.json (not a diffusers pipeline folder)"
    if not components:
        try:
            entries = json.loads(index.read_text())
        except (OSError, ValueError) as exc:
            return f"{index} is unreadable: {exc}"
        components = tuple(
            k
            for k, v in entries.items()
            if not k.startswith("_") and isinstance(v, list) and v[0] is not None
        )
    for comp in components:
        sub = folder / comp
        if not sub.is_dir():
            return f"{folder} lacks the {comp}/ folder"
        if comp in _WEIGHT_COMPONENTS and not any(f.name.endswith(_WEIGHT_SUFFIXES) for f in sub.iterdir()):
            return f"{sub} has no weights (.safetensors)"
    return None


@dataclass(frozen=True)
class Resolved:
    path: Path
    source: Source


def _candidates_in_models_dir(preset: BackbonePreset | None, hub_id: str | None) -> list[Path]:
    root = models_dir()
    if root is None:
        return []
    out = []
    if preset is not None:
        out.append(root / preset.name)
    if hub_id:
        out.append(root.joinpath(*hub_id.split("/")))
    return out


def _from_hf_cache(hub_id: str, preset: BackbonePreset | None) -> Path | None:
    """The cached snapshot of ``hub_id`` if it is complete. Local files only: no request is made."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(
            hub_id,
            local_files_only=True,
            cache_dir=hf_cache_dir(),
            allow_patterns=preset.allow_patterns if preset else None,
        )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    folder = Path(snapshot)
    return folder if checkpoint_problem(folder, preset.components if preset else ()) is None else None


def find_local(preset_or_id: BackbonePreset | str) -> Resolved | None:
    """Where a preset (or a Hub id) resolves on this machine without the network, or None."""
    preset = preset_or_id if isinstance(preset_or_id, BackbonePreset) else PRESETS.get(preset_or_id)
    hub_id = preset.hub_id if preset else str(preset_or_id)
    components = preset.components if preset else ()
    for folder in _candidates_in_models_dir(preset, hub_id if "/" in hub_id else None):
        if checkpoint_problem(folder, components) is None:
            return Resolved(folder, "models_dir")
    if "/" in hub_id:
        cached = _from_hf_cache(hub_id, preset)
        if cached is not None:
            return Resolved(cached, "hf_cache")
    return None


def locate_preset(name: str) -> str | None:
    """For ``WeightRequirement.locate``: the local folder of preset ``name``, or None.

    Never touches the network.
    """
    found = find_local(get_preset(name))
    return None if found is None else str(found.path)


def _missing_message(preset: BackbonePreset | None, hub_id: str) -> str:
    root = models_dir()
    where = (
        f"${MODELS_DIR_ENV} ({root})" if root else f"${MODELS_DIR_ENV} (unset)"
    ) + f" and the Hugging Face cache ({hf_cache_dir()})"
    if preset is None:
        return (
            f"checkpoint {hub_id!r} is not on this machine (looked in {where}); download it with "
            f"`hf download {hub_id}` or pass allow_download=True / --allow-download"
        )
    gated = (
        " (gated: accept its licence on huggingface.co and run `hf auth login` first)" if preset.gated else ""
    )
    return (
        f"backbone {preset.name!r} (Hub id {preset.hub_id}) is not on this machine (looked in {where}); "
        f"fetch it with: erasekit download {preset.name}{gated}"
    )


def resolve_model_path(
    preset_or_path: BackbonePreset | str | os.PathLike,
    *,
    path: str | os.PathLike | None = None,
    allow_download: bool = False,
) -> Path:
    """The local folder to load.

    Order: explicit path > ``$ERASEKIT_MODELS_DIR`` > HF cache (> download).

    ``preset_or_path`` is a preset (or its name), a local folder, or a Hub id ``org/repo``. ``path`` overrides
    everything. Raises :class:`MissingWeightsError` (with the fetch command) when nothing local has the
    weights and ``allow_download`` is False; :class:`InvalidInputError` for an explicit path that is not a
    checkpoint.
    """
    return resolve(preset_or_path, path=path, allow_download=allow_download).path


def resolve(
    preset_or_path: BackbonePreset | str | os.PathLike,
    *,
    path: str | os.PathLike | None = None,
    allow_download: bool = False,
) -> Resolved:
    """Like :func:`resolve_model_path`, also saying where the weights came from."""
    explicit = Path(path).expanduser() if path is not None else None
    preset: BackbonePreset | None = None
    if isinstance(preset_or_path, BackbonePreset):
        preset = preset_or_path
    elif str(preset_or_path) in PRESETS:
        preset = PRESETS[str(preset_or_path)]
    elif explicit is None and Path(preset_or_path).expanduser().exists():
        explicit = Path(preset_or_path).expanduser()
    if explicit is not None:
        problem = checkpoint_problem(explicit) if explicit.exists() else f"{explicit} does not exist"
        if problem:
            raise InvalidInputError(f"cannot use model path: {problem}")
        return Resolved(explicit, "path")
    hub_id = preset.hub_id if preset else str(preset_or_path)
    if preset is None and (hub_id.count("/") != 1 or hub_id.startswith((".", "/", "~"))):
        raise InvalidInputError(
            f"{hub_id!r} is neither a backbone preset ({', '.join(PRESETS)}), an existing "
            f"folder nor a Hub id org/repo"
        )
    preset = preset or preset_for_hub_id(hub_id)
    found = find_local(preset or hub_id)
    if found is not None:
        return found
    if not allow_download:
        raise MissingWeightsError(_missing_message(preset, hub_id))
    return Resolved(download(preset or hub_id), "download")


# ------------------------------------------------------------------------------------------------------------
# Download (only on explicit request)
# ------------------------------------------------------------------------------------------------------------
def download(
    preset_or_id: BackbonePreset | str,
    *,
    local_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
) -> Path:
    """Fetch a preset (or any diffusers Hub repo) with ``huggingface_hub.snapshot_download``.

    Only the files a diffusers pipeline needs are fetched (``allow_patterns``). Interrupted downloads resume:
    the hub client keeps partial files and continues them on the next call. Without ``local_dir`` the files go
    to the Hugging Face cache, where :func:`find_local` finds them.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    preset = preset_or_id if isinstance(preset_or_id, BackbonePreset) else PRESETS.get(str(preset_or_id))
    hub_id = preset.hub_id if preset else str(preset_or_id)
    kwargs: dict[str, Any] = {"revision": revision, "token": token}
    if preset is not None:
        kwargs.update(allow_patterns=preset.allow_patterns, ignore_patterns=preset.ignore_patterns)
    else:
        kwargs.update(ignore_patterns=list(_IGNORE_DEFAULT))
    if local_dir is not None:
        kwargs["local_dir"] = str(local_dir)
    else:
        kwargs["cache_dir"] = str(hf_cache_dir())
    label = preset.name if preset else hub_id
    try:
        folder = snapshot_download(hub_id, **kwargs)
    except GatedRepoError:
        raise MissingWeightsError(
            f"{hub_id} is gated: accept its licence on https://huggingface.co/{hub_id} and "
            f"log in with `hf auth login`, then rerun `erasekit download {label}`"
        ) from None
    except RepositoryNotFoundError:
        raise MissingWeightsError(f"Hub repository {hub_id} was not found (or needs a token)") from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
        raise MissingWeightsError(
            f"cannot download {hub_id}: offline ({_one_line(exc)}); unset HF_HUB_OFFLINE "
            f"and check the network"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise MissingWeightsError(
            f"downloading {hub_id} failed: {_one_line(exc)}; rerun `erasekit download {label}` to resume"
        ) from None
    return Path(folder)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ------------------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------------------
def _read_index(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read {folder / 'model_index.json'}: {_one_line(exc)}") from None


def load_pipeline(
    preset: BackbonePreset | str | os.PathLike,
    *,
    path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    allow_download: bool = False,
    pipeline_cls: Any = None,
    variant: str | None = None,
    placement: PlacementOptions | None = None,
):
    """Resolve (offline first) and load a diffusers pipeline, placed on ``device``.

    The pipeline is built with diffusers' own classes.

    ``preset``: a preset or its name, a local folder or a Hub id. ``pipeline_cls`` overrides the class (e.g.
    to load an inpainting checkpoint's components into another pipeline). ``dtype``:
    ``auto``/fp32/fp16/bf16.
    """
    import diffusers

    resolved = resolve(preset, path=path, allow_download=allow_download)
    index = _read_index(resolved.path)
    if isinstance(preset, BackbonePreset):
        spec: BackbonePreset | None = preset
    else:
        spec = PRESETS.get(str(preset)) or preset_for_class(index.get("_class_name"))
    if pipeline_cls is None:
        # A named preset decides its class; a bare folder or Hub id says its own in model_index.json.
        named = isinstance(preset, BackbonePreset) or str(preset) in PRESETS
        cls_name = spec.pipeline_class if named and spec else index.get("_class_name", "DiffusionPipeline")
        pipeline_cls = getattr(diffusers, cls_name, diffusers.DiffusionPipeline)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev, family=spec.family if spec else "sd")
    kwargs = dict(spec.load_kwargs) if spec else {}
    # Drop optional components the folder does not declare (a tiny or pruned checkpoint may lack them).
    kwargs = {k: v for k, v in kwargs.items() if k == "requires_safety_checker" or k in index}
    if "requires_safety_checker" in kwargs and "safety_checker" not in index:
        kwargs.pop("requires_safety_checker")
    kwargs[_dtype_keyword()] = torch_dtype
    try:
        pipe = pipeline_cls.from_pretrained(resolved.path, local_files_only=True, variant=variant, **kwargs)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InvalidInputError(
            f"cannot load {getattr(pipeline_cls, '__name__', pipeline_cls)} from "
            f"{resolved.path}: {_one_line(exc)}"
        ) from None
    place_pipeline(pipe, dev, placement or PlacementOptions())
    return pipe


def _dtype_keyword() -> str:
    """The dtype keyword this diffusers version takes.

    diffusers renamed ``torch_dtype`` to ``dtype`` (and warns on the old name).
    """
    try:
        from diffusers.utils.deprecation_utils import _TORCH_DTYPE_DEPRECATION_MESSAGE  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


def preset_for_class(class_name: str | None) -> BackbonePreset | None:
    """The first preset loaded by diffusers class ``class_name``.

    Used to pick family defaults for local folders.
    """
    return next((p for p in PRESETS.values() if p.pipeline_class == class_name), None)


def folder_size(folder: Path) -> int:
    """Bytes on disk under ``folder`` (following the HF cache's symlinks to their blobs)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


__all__ = ["MODELS_DIR_ENV", "PRESETS", "BackbonePreset", "Resolved", "checkpoint_problem", "download",
           "find_local", "folder_size", "get_preset", "hf_cache_dir", "load_pipeline", "locate_preset",
           "models_dir", "preset_for_class", "preset_for_hub_id", "resolve", "resolve_model_path"]

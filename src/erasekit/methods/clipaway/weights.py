"""Where CLIPAway's three weight files resolve, offline first.

CLIPAway needs, besides its SD1.5-inpainting backbone (a backbone preset, resolved like every other):

* ``AlphaCLIP/clip_l14_grit+mim_fultune_6xe.pth`` — AlphaCLIP ViT-L/14 (SunzeY/AlphaCLIP);
* ``CLIPAway/model.safetensors`` — the trained MLP;
* ``IPAdapter/ip-adapter_sd15.bin`` — IP-Adapter SD1.5 (Hub repo ``h94/IP-Adapter``, ``models/``).

The first two are published by the authors on Google Drive only (no Hub repository), so they come from a
local path: an explicit file, a ``weights`` folder laid out like the authors' ``ckpts/`` folder (the names
above), or ``$ERASEKIT_MODELS_DIR/clipaway/`` in that layout. IP-Adapter resolves the same way and then
the Hub way: the Hugging Face cache, or a download when allowed. A file that is nowhere raises
:class:`MissingWeightsError` saying which file, where it goes and where it is published.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...backbones.presets import hf_cache_dir, models_dir
from ...types import InvalidInputError, MissingWeightsError

ALPHA_CLIP_FILE = "clip_l14_grit+mim_fultune_6xe.pth"
MLP_FILE = "model.safetensors"
MODELS_SUBDIR = "clipaway"
IP_ADAPTER_REPO = "h94/IP-Adapter"
IP_ADAPTER_FILE = "ip-adapter_sd15.bin"
IP_ADAPTER_SUBFOLDER = "models"
# Place of each file inside a weights folder: the authors' ckpts/ layout (download_pretrained_models.sh).
LAYOUT = {"alpha_clip": f"AlphaCLIP/{ALPHA_CLIP_FILE}", "mlp": f"CLIPAway/{MLP_FILE}",
          "ip_adapter": f"IPAdapter/{IP_ADAPTER_FILE}"}
# Google Drive file ids from the authors' download_pretrained_models.sh (github.com/YigitEkin/CLIPAway).
DRIVE_IDS = {"alpha_clip": "1JfzOTvjf0tqBtKWwpBJtjYxdHi-06dbk", "mlp": "1lFHAT2dF5GVRJLxkF1039D53gixHXaTx"}
_PUBLISHERS = {"alpha_clip": "AlphaCLIP's authors (github.com/SunzeY/AlphaCLIP)",
               "mlp": "CLIPAway's authors (github.com/YigitEkin/CLIPAway)"}


@dataclass(frozen=True)
class ClipAwayFiles:
    alpha_clip: Path
    mlp: Path
    ip_adapter: Path


def default_folder() -> Path | None:
    """``$ERASEKIT_MODELS_DIR/clipaway`` (None when the variable is unset)."""
    root = models_dir()
    return None if root is None else root / MODELS_SUBDIR


def _explicit(kind: str, path: str | os.PathLike) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise InvalidInputError(f"CLIPAway {kind} file {file} does not exist")
    return file


def _in_folders(kind: str, folder: str | os.PathLike | None) -> tuple[Path | None, list[Path]]:
    """The file of ``kind`` in the given weights folder or the default one, and every place looked at."""
    places = [Path(f).expanduser() / LAYOUT[kind] for f in (folder, default_folder()) if f is not None]
    root = models_dir()
    if kind == "ip_adapter" and root is not None:  # the Hub id as folders, like the backbone presets
        places.append(root.joinpath(*IP_ADAPTER_REPO.split("/"), IP_ADAPTER_SUBFOLDER, IP_ADAPTER_FILE))
    return next((p for p in places if p.is_file()), None), places


def _ip_adapter_from_hub(allow_download: bool) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(IP_ADAPTER_REPO, IP_ADAPTER_FILE, subfolder=IP_ADAPTER_SUBFOLDER,
                                    cache_dir=hf_cache_dir(), local_files_only=not allow_download))
    except (LocalEntryNotFoundError, FileNotFoundError):
        return None
    except OSError as exc:  # network errors when a download was allowed
        raise MissingWeightsError(f"downloading {IP_ADAPTER_REPO}/{IP_ADAPTER_SUBFOLDER}/{IP_ADAPTER_FILE} "
                                  f"failed: {exc}") from None


def missing_message(kind: str, looked: list[Path]) -> str:
    where = ", ".join(str(p) for p in looked) or "nowhere (no weights folder, $ERASEKIT_MODELS_DIR unset)"
    name = LAYOUT[kind].rsplit("/", 1)[1]
    target = (f"<weights folder>/{LAYOUT[kind]} (default folder: "
              f"$ERASEKIT_MODELS_DIR/{MODELS_SUBDIR}/{LAYOUT[kind]})")
    if kind == "ip_adapter":
        return (f"CLIPAway needs {name} (IP-Adapter SD1.5); looked in {where} and the Hugging Face cache "
                f"({hf_cache_dir()}). Put it at {target}, or fetch it with `hf download {IP_ADAPTER_REPO} "
                f"{IP_ADAPTER_SUBFOLDER}/{name}`, or pass allow_download=True / --allow-download")
    return (f"CLIPAway needs {name}; looked in {where}. Put it at {target}. {_PUBLISHERS[kind]} publish it "
            f"on Google Drive only: https://drive.google.com/file/d/{DRIVE_IDS[kind]} (e.g. `gdown "
            f"{DRIVE_IDS[kind]}`)")


def locate(kind: str, folder: str | os.PathLike | None = None) -> Path | None:
    """Where the file of ``kind`` (``alpha_clip``, ``mlp``, ``ip_adapter``) is on this machine, or None.
    Never touches the network."""
    found, _ = _in_folders(kind, folder)
    if found is None and kind == "ip_adapter":
        found = _ip_adapter_from_hub(allow_download=False)
    return found


def resolve_files(weights: str | os.PathLike | None = None, *, alpha_clip: str | os.PathLike | None = None,
                  mlp: str | os.PathLike | None = None, ip_adapter: str | os.PathLike | None = None,
                  allow_download: bool = False) -> ClipAwayFiles:
    """The three files: explicit paths first, then the ``weights`` folder, ``$ERASEKIT_MODELS_DIR/clipaway``,
    and for IP-Adapter the Hugging Face cache (or a download when ``allow_download``)."""
    if weights is not None and not Path(weights).expanduser().is_dir():
        raise InvalidInputError(f"CLIPAway weights folder {weights} is not a folder")
    explicit = {"alpha_clip": alpha_clip, "mlp": mlp, "ip_adapter": ip_adapter}
    return ClipAwayFiles(**{kind: resolve_file(kind, path, weights=weights, allow_download=allow_download)
                            for kind, path in explicit.items()})


def resolve_file(kind: str, path: str | os.PathLike | None = None, *,
                 weights: str | os.PathLike | None = None, allow_download: bool = False) -> Path:
    """One file of ``kind``: ``path`` when given, else as :func:`resolve_files` looks for it."""
    if path is not None:
        return _explicit(kind, path)
    file, looked = _in_folders(kind, weights)
    if file is None and kind == "ip_adapter":
        file = _ip_adapter_from_hub(allow_download)
    if file is None:
        raise MissingWeightsError(missing_message(kind, looked))
    return file


# Training only (``erasekit train clipaway-mlp``): IP-Adapter's own image encoder, OpenCLIP ViT-H/14 in
# transformers' CLIPVisionModelWithProjection layout (h94/IP-Adapter ``models/image_encoder``; the authors
# keep it at ``ckpts/IPAdapter/image_encoder``).
IMAGE_ENCODER_LAYOUT = "IPAdapter/image_encoder"
IMAGE_ENCODER_SUBFOLDER = f"{IP_ADAPTER_SUBFOLDER}/image_encoder"


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def resolve_image_encoder(path: str | os.PathLike | None = None, *, weights: str | os.PathLike | None = None,
                          allow_download: bool = False) -> Path:
    """The folder of IP-Adapter SD1.5's image encoder: ``path``, else ``weights``/IPAdapter/image_encoder,
    ``$ERASEKIT_MODELS_DIR/clipaway/IPAdapter/image_encoder``, ``$ERASEKIT_MODELS_DIR/h94/IP-Adapter/models/
    image_encoder``, the Hugging Face cache (or a download when ``allow_download``)."""
    if path is not None:
        folder = Path(path).expanduser()
        if not _is_model_folder(folder):
            raise InvalidInputError(f"IP-Adapter image encoder folder {folder} has no config.json")
        return folder
    folders = (weights, default_folder())
    places = [Path(f).expanduser() / IMAGE_ENCODER_LAYOUT for f in folders if f is not None]
    root = models_dir()
    if root is not None:
        places.append(root.joinpath(*IP_ADAPTER_REPO.split("/"), IMAGE_ENCODER_SUBFOLDER))
    found = next((p for p in places if _is_model_folder(p)), None)
    if found is not None:
        return found
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(IP_ADAPTER_REPO, allow_patterns=[f"{IMAGE_ENCODER_SUBFOLDER}/*"],
                                          cache_dir=hf_cache_dir(), local_files_only=not allow_download))
    except (LocalEntryNotFoundError, FileNotFoundError):
        snapshot = None
    except OSError as exc:
        raise MissingWeightsError(f"downloading {IP_ADAPTER_REPO}/{IMAGE_ENCODER_SUBFOLDER} failed: {exc}") \
            from None
    if snapshot is not None and _is_model_folder(snapshot / IMAGE_ENCODER_SUBFOLDER):
        return snapshot / IMAGE_ENCODER_SUBFOLDER
    where = ", ".join(str(p) for p in places) or "no weights folder ($ERASEKIT_MODELS_DIR unset)"
    raise MissingWeightsError(
        f"training CLIPAway's MLP needs IP-Adapter's image encoder (OpenCLIP ViT-H/14); looked in {where} "
        f"and the Hugging Face cache ({hf_cache_dir()}). Fetch it with `hf download {IP_ADAPTER_REPO} "
        f"--include '{IMAGE_ENCODER_SUBFOLDER}/*'`, or set encoders.image_encoder, or pass allow_download")


__all__ = [
    "ALPHA_CLIP_FILE",
    "DRIVE_IDS",
    "IMAGE_ENCODER_LAYOUT",
    "IP_ADAPTER_FILE",
    "IP_ADAPTER_REPO",
    "LAYOUT",
    "MLP_FILE",
    "MODELS_SUBDIR",
    "ClipAwayFiles",
    "default_folder",
    "locate",
    "missing_message",
    "resolve_file",
    "resolve_files",
    "resolve_image_encoder",
]

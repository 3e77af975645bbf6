"""OSOR weights: the authors' released ``.pth`` format, erasekit's safetensors format, backbone loading.

What OSOR trains (Sec. 3.3, App. B.5) is a peft LoRA (``lora_alpha = rank``, so the LoRA scale is 1) on the
frozen backbone plus the full terminal layer (SDXL ``conv_out``, FLUX ``proj_out``; 5 / 68 outputs once the
alpha head is added in Phase II). Two on-disk formats carry it:

* **official** — ``*_phase1.pth`` / ``*_phase2.pth`` from the Hub repo ``QinmingZhou/OSOR``: a plain
``torch.save``'d
  state dict of the trainable parameters of the authors' wrapper module, so keys look like
  ``unet.down_blocks.1.attentions.0.proj_in.lora_A.default.weight`` / ``unet.conv_out.weight`` (SDXL,
  diffusers' ``add_adapter``) or
  ``transformer.base_model.model.transformer_blocks.0.attn.to_q.lora_A.default.weight`` /
  ``transformer.base_model.model.proj_out.weight`` (FLUX, peft's ``get_peft_model``); DDP/compile wrappers may
  add ``module.`` / ``_orig_mod.``. SDXL uses rank 256 (attention, feed-forward, resnet convs,
  ``proj_in``/``proj_out``), FLUX rank 64.
* **erasekit** — a folder with ``osor_config.json`` (backbone, phase, rank, lora_alpha, timestep, target
modules,
  head width, prompt) and ``osor_weights.safetensors`` whose keys are module paths relative to the backbone
  model in peft's adapter-free naming (``down_blocks.1.attentions.0.proj_in.lora_A.weight``,
  ``conv_out.weight``).

Both read into :class:`OsorWeights`; :func:`convert_weights` writes either format from either.
:func:`apply_osor_weights` injects the adapters with peft (``inject_adapter_in_model`` with a ``LoraConfig``
whose
targets are exactly the checkpoint's module names), loads them non-strictly with
``set_peft_model_state_dict``,
copies the terminal layer (adding the alpha head first for Phase II weights) and reports missing/unexpected
keys.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from ...atomic import atomic_path, write_json
from ...types import InvalidInputError, MissingWeightsError
from .alpha_head import FLUX_HEAD, SDXL_HEAD, add_alpha_head, family_of, has_alpha_head
from .recipe import TIMESTEP, Backbone

if TYPE_CHECKING:
    import torch
    from torch.nn.modules.module import _IncompatibleKeys

logger = logging.getLogger(__name__)

WeightFormat = Literal["official", "erasekit"]

FORMAT_NAME = "erasekit-osor"
FORMAT_VERSION = 1
CONFIG_FILE = "osor_config.json"
WEIGHTS_FILE = "osor_weights.safetensors"
ADAPTER_NAME = "osor"

HUB_REPO = "QinmingZhou/OSOR"
# Files of the authors' release on the Hub, per backbone and phase.
HUB_FILES = {
    ("sdxl", 1): "osor-sdxlinpainting/weights/sdxlinpainting_phase1.pth",
    ("sdxl", 2): "osor-sdxlinpainting/weights/sdxlinpainting_phase2.pth",
    ("flux", 1): "osor-fluxfill/weights/fluxfill_phase1.pth",
    ("flux", 2): "osor-fluxfill/weights/fluxfill_phase2.pth",
}
# The authors' LoRA targets (peft module-name suffixes; ranks in recipe.LORA_RANK), for trainer and fixtures.
OFFICIAL_TARGETS: dict[str, tuple[str, ...]] = {
    "sdxl": (
        "to_k",
        "to_q",
        "to_v",
        "to_out.0",
        "conv",
        "conv1",
        "conv2",
        "conv_shortcut",
        "proj_in",
        "proj_out",
        "ff.net.2",
        "ff.net.0.proj",
    ),
    "flux": ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "ff.net.0.proj", "ff.net.2", "proj_mlp"),
}
# Prefix of the backbone inside the authors' wrapper module (see the module docstring).
OFFICIAL_PREFIX = {"sdxl": "unet.", "flux": "transformer.base_model.model."}
HEADS = {"sdxl": SDXL_HEAD, "flux": FLUX_HEAD}

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_BACKBONE_PREFIXES = ("transformer.base_model.model.", "base_model.model.", "unet.", "transformer.")
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B)(?:\.(?P<adapter>[^.]+))?\.weight$")


def _lora_parts(key: str) -> tuple[str, str]:
    """(module path, ``lora_A``/``lora_B``) of a LoRA weight key (``OsorWeights.lora`` holds only those)."""
    match = _LORA_KEY.match(key)
    if match is None:
        raise InvalidInputError(f"{key!r} is not a LoRA key (MODULE.lora_A.weight or MODULE.lora_B.weight)")
    return match["module"], match["part"]


@dataclass
class OsorWeights:
    """OSOR's trained parameters in one neutral form.

    ``lora``: ``{module path}.lora_A.weight`` / ``.lora_B.weight`` tensors; ``head``: ``weight``/``bias`` of
    the terminal layer (5/68 rows for Phase II, 4/64 for Phase I); ``other``: keys that are neither (reported
    as unexpected when applied). ``timestep``: SDXL's integer DDPM timestep t or FLUX's flow noise level s.
    """

    backbone: Backbone
    phase: int
    rank: int
    lora_alpha: float
    lora: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]
    timestep: float | None = None
    prompt: str | None = None
    source: str | None = None
    other: dict[str, torch.Tensor] = field(default_factory=dict)
    rank_pattern: dict[str, int] = field(default_factory=dict)

    @property
    def target_modules(self) -> list[str]:
        return sorted({_lora_parts(k)[0] for k in self.lora})

    def config(self) -> dict[str, Any]:
        """The JSON config of the erasekit format."""
        head = HEADS[self.backbone]
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "backbone": self.backbone,
            "phase": self.phase,
            "rank": self.rank,
            "lora_alpha": self.lora_alpha,
            "rank_pattern": self.rank_pattern,
            "timestep": self.timestep if self.timestep is not None else TIMESTEP[self.backbone],
            "prompt": self.prompt,
            "target_modules": self.target_modules,
            "head": {
                "layer": head.attribute,
                "out_channels": int(self.head["weight"].shape[0]) if self.head else None,
            },
            "source": self.source,
        }


@dataclass(frozen=True)
class LoadReport:
    """What :func:`apply_osor_weights` did: adapters injected, head loaded, and keys that did not fit."""

    lora_modules: int
    head: str
    missing_keys: tuple[str, ...]
    unexpected_keys: tuple[str, ...]
    merged: bool

    def summary(self) -> str:
        text = f"{self.lora_modules} LoRA modules, head {self.head}"
        if self.missing_keys:
            text += f"; {len(self.missing_keys)} missing (e.g. {', '.join(self.missing_keys[:3])})"
        if self.unexpected_keys:
            text += f"; {len(self.unexpected_keys)} unexpected (e.g. {', '.join(self.unexpected_keys[:3])})"
        return text


# ------------------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------------------
def _strip(key: str, prefixes: tuple[str, ...]) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _guess_backbone(keys: list[str], head: dict[str, torch.Tensor]) -> Backbone:
    if any(k.startswith("transformer.") for k in keys):
        return "flux"
    if any(k.startswith("unet.") for k in keys):
        return "sdxl"
    if "weight" in head:
        return "sdxl" if head["weight"].ndim == 4 else "flux"
    raise InvalidInputError("cannot tell whether these OSOR weights are for SDXL or FLUX; pass backbone=")


def _phase_from_head(backbone: Backbone, head: dict[str, torch.Tensor]) -> int:
    spec = HEADS[backbone]
    if "weight" not in head:
        raise InvalidInputError(f"OSOR weights lack the terminal layer ({spec.attribute}.weight)")
    rows = int(head["weight"].shape[0])
    if rows == spec.expanded:
        return 2
    if rows == spec.native:
        return 1
    raise InvalidInputError(
        f"{spec.attribute}.weight has {rows} output rows; OSOR {backbone} expects "
        f"{spec.native} (Phase I) or {spec.expanded} (Phase II, alpha head)"
    )


def _ranks(lora: dict[str, torch.Tensor]) -> tuple[int, dict[str, int]]:
    """The common LoRA rank and a per-module pattern for modules that differ (peft's ``rank_pattern``)."""
    ranks = {_lora_parts(k)[0]: int(v.shape[0]) for k, v in lora.items() if ".lora_A." in k}
    if not ranks:
        return 0, {}
    values = sorted(ranks.values())
    common = max(set(values), key=values.count)
    return common, {m: r for m, r in ranks.items() if r != common}


def split_state_dict(
    state: dict[str, torch.Tensor], backbone: Backbone | None = None, *, source: str | None = None
) -> OsorWeights:
    """Sort an official-format state dict into LoRA, head and other keys.

    Adapter names and prefixes are removed.
    """
    raw_keys = [_strip(k, _WRAPPER_PREFIXES) for k in state]
    lora: dict[str, Any] = {}
    head: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for raw, value in zip(raw_keys, state.values()):
        key = _strip(raw, _BACKBONE_PREFIXES)
        match = _LORA_KEY.match(key)
        if match:
            lora[f"{match['module']}.{match['part']}.weight"] = value
        elif key in ("conv_out.weight", "conv_out.bias", "proj_out.weight", "proj_out.bias"):
            head[key.split(".", 1)[1]] = value
        else:
            other[raw] = value
    try:
        found = _guess_backbone(raw_keys, head)
    except InvalidInputError:
        if backbone is None:
            raise
        found = backbone  # the keys do not tell; the caller's backbone stands
    if backbone is not None and found != backbone:
        raise InvalidInputError(f"{source or 'these weights'} holds OSOR weights for {found}, not {backbone}")
    rank, pattern = _ranks(lora)
    return OsorWeights(
        backbone=found,
        phase=_phase_from_head(found, head),
        rank=rank,
        lora_alpha=float(rank),
        lora=lora,
        head=head,
        other=other,
        rank_pattern=pattern,
        source=source,
        timestep=TIMESTEP[found],
    )


def read_official(path: str | os.PathLike, backbone: Backbone | None = None) -> OsorWeights:
    """Read an authors' ``*_phase{1,2}.pth`` file.

    ``torch.load`` with ``weights_only=True``: tensors only.
    """
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise InvalidInputError(f"cannot read OSOR weights {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidInputError(f"{path} is not a state dict of tensors (expected the authors' *_phase*.pth)")
    weights = split_state_dict(state, backbone, source=path.name)
    name_phase = re.search(r"phase([12])", path.name)
    if name_phase and int(name_phase.group(1)) != weights.phase:
        logger.warning(
            "%s is named phase %s but its head says phase %d", path.name, name_phase.group(1), weights.phase
        )
    return weights


def read_erasekit(path: str | os.PathLike) -> OsorWeights:
    """Read erasekit's format: a folder (or its ``.safetensors`` file) with ``osor_config.json`` beside it."""
    from safetensors.torch import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights_file = path if path.is_file() else folder / WEIGHTS_FILE
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
        tensors = load_file(str(weights_file))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read OSOR weights in {folder}: {str(exc).splitlines()[0]}") from None
    if config.get("format") != FORMAT_NAME:
        raise InvalidInputError(f"{folder / CONFIG_FILE} is not an {FORMAT_NAME} config")
    backbone = config["backbone"]
    if backbone not in HEADS:
        raise InvalidInputError(f"unknown OSOR backbone {backbone!r} in {folder / CONFIG_FILE}")
    head_attr = HEADS[backbone].attribute
    lora = {k: v for k, v in tensors.items() if _LORA_KEY.match(k)}
    head = {
        k.split(".", 1)[1]: v for k, v in tensors.items() if k in (f"{head_attr}.weight", f"{head_attr}.bias")
    }
    other = {k: v for k, v in tensors.items() if k not in lora and not k.startswith(head_attr + ".")}
    weights = OsorWeights(
        backbone=backbone,
        phase=int(config["phase"]),
        rank=int(config["rank"]),
        lora_alpha=float(config["lora_alpha"]),
        lora=lora,
        head=head,
        other=other,
        timestep=config.get("timestep"),
        prompt=config.get("prompt"),
        source=config.get("source"),
        rank_pattern=dict(config.get("rank_pattern") or {}),
    )
    if _phase_from_head(backbone, head) != weights.phase:
        raise InvalidInputError(
            f"{folder / CONFIG_FILE} says phase {weights.phase} but the head has "
            f"{head['weight'].shape[0]} outputs"
        )
    return weights


def detect_format(path: str | os.PathLike) -> WeightFormat:
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        return "erasekit"
    return "official"


def load_osor_weights(path: str | os.PathLike, backbone: Backbone | None = None) -> OsorWeights:
    """Read OSOR weights in either format.

    A ``.pth`` file: official; a folder or ``.safetensors``: erasekit.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingWeightsError(
            f"OSOR weights not found at {path}; get the authors' release with: "
            f"hf download {HUB_REPO} --include '*/weights/*.pth'"
        )
    weights = read_erasekit(path) if detect_format(path) == "erasekit" else read_official(path, backbone)
    if backbone is not None and weights.backbone != backbone:
        raise InvalidInputError(f"{path} holds OSOR weights for {weights.backbone}, not {backbone}")
    return weights


# ------------------------------------------------------------------------------------------------------------
# Writing and converting
# ------------------------------------------------------------------------------------------------------------
def save_erasekit(weights: OsorWeights, folder: str | os.PathLike) -> Path:
    """Write ``osor_config.json`` + ``osor_weights.safetensors`` into ``folder``.

    Atomically, file by file.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    head_attr = HEADS[weights.backbone].attribute
    tensors = {**weights.lora, **{f"{head_attr}.{k}": v for k, v in weights.head.items()}}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(folder / WEIGHTS_FILE) as temp:
        save_file(tensors, str(temp), metadata={"format": FORMAT_NAME})
    write_json(folder / CONFIG_FILE, weights.config())
    return folder


def official_state_dict(weights: OsorWeights, adapter: str = "default") -> dict[str, torch.Tensor]:
    """The state dict the authors' loaders expect (their wrapper's prefixes and peft's adapter name)."""
    prefix = OFFICIAL_PREFIX[weights.backbone]
    state = {}
    for key, value in weights.lora.items():
        module, part = _lora_parts(key)
        state[f"{prefix}{module}.{part}.{adapter}.weight"] = value
    head_attr = HEADS[weights.backbone].attribute
    for key, value in weights.head.items():
        state[f"{prefix}{head_attr}.{key}"] = value
    return state


def save_official(weights: OsorWeights, path: str | os.PathLike) -> Path:
    """Write the authors' ``.pth`` layout (``torch.save`` of a plain dict), atomically."""
    import torch

    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in official_state_dict(weights).items()}
    with atomic_path(path) as temp:
        torch.save(state, temp)
    return path


def convert_weights(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    to: WeightFormat | None = None,
    backbone: Backbone | None = None,
    timestep: float | None = None,
) -> Path:
    """Convert OSOR weights between the official ``.pth`` and erasekit's folder format.

    ``to`` defaults to the other format than ``src``'s. ``timestep`` records the training noise level in the
    erasekit config (default: the paper's, t = 400 / s = 0.4).
    """
    weights = load_osor_weights(src, backbone)
    if timestep is not None:
        weights.timestep = timestep
    target = to or ("erasekit" if detect_format(src) == "official" else "official")
    if target == "erasekit":
        return save_erasekit(weights, dst)
    if target == "official":
        return save_official(weights, dst)
    raise InvalidInputError(f"unknown OSOR weight format {to!r}; choose official or erasekit")


# ------------------------------------------------------------------------------------------------------------
# Applying to a backbone
# ------------------------------------------------------------------------------------------------------------
def _supported_layer(module: Any) -> bool:
    from torch import nn

    return isinstance(module, (nn.Linear, nn.Conv2d))


# The authors' adapter precision per backbone: SDXL's adapters come from diffusers' ``add_adapter``, which
# creates them in the UNet's dtype (bf16); FLUX's come from peft's ``get_peft_model``, whose
# ``autocast_adapter_dtype`` makes bf16/fp16 adapters float32 (and the generator is never cast afterwards).
AdapterDtype = Literal["model", "float32"]
ADAPTER_DTYPE: dict[str, AdapterDtype] = {"sdxl": "model", "flux": "float32"}


def apply_osor_weights(
    model: Any, weights: OsorWeights, *, merge: bool = False, adapter_dtype: AdapterDtype | None = None
) -> LoadReport:
    """Put ``weights`` into ``model`` (a UNet2DConditionModel or FluxTransformer2DModel), in place.

    Phase II weights first add the alpha head. LoRA modules the model does not have, and keys that are neither
    LoRA nor head, are reported as unexpected (a warning names them); a LoRA module missing half its pair is
    reported as missing.

    The default keeps the LoRA layers unmerged, as the authors' inference does, with adapters in
    ``adapter_dtype`` (default :data:`ADAPTER_DTYPE` of the family: the model's dtype for SDXL, float32 for
    FLUX; peft then runs the adapter branch in that dtype and casts the sum back). The adapters are cast
    *before* the weights are loaded, so float32 adapters keep the file's full precision. ``merge=True`` folds
    the LoRA into the base weights instead (diffusers' ``fuse_lora``, i.e. peft's ``merge`` per layer, in the
    model's dtype) and removes the wrappers (``unload_lora``): inference then costs exactly what the plain
    backbone costs, and in bf16 the outputs move (docs/osor.md, "Inference numerics").
    """
    import torch
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    if adapter_dtype not in (None, "model", "float32"):
        raise InvalidInputError(f"adapter_dtype must be 'model' or 'float32', got {adapter_dtype!r}")
    family = family_of(model)
    if family != weights.backbone:
        raise InvalidInputError(f"OSOR weights are for {weights.backbone} but the backbone is {family}")
    spec = HEADS[family]
    if weights.phase == 2 and not has_alpha_head(model):
        add_alpha_head(model)
    layer = getattr(model, spec.attribute)
    if tuple(weights.head["weight"].shape) != tuple(layer.weight.shape):
        raise InvalidInputError(
            f"OSOR {spec.attribute}.weight has shape {tuple(weights.head['weight'].shape)}, "
            f"the backbone's is {tuple(layer.weight.shape)} (wrong backbone size or phase?)"
        )
    with torch.no_grad():
        layer.weight.copy_(weights.head["weight"].to(layer.weight))
        if layer.bias is not None and "bias" in weights.head:
            layer.bias.copy_(weights.head["bias"].to(layer.bias))
    missing_head = [f"{spec.attribute}.bias"] if layer.bias is not None and "bias" not in weights.head else []

    modules = dict(model.named_modules())
    by_module: dict[str, set[str]] = {}
    for key in weights.lora:
        module, part = _lora_parts(key)
        by_module.setdefault(module, set()).add(part)
    usable = sorted(
        m
        for m, parts in by_module.items()
        if m in modules and _supported_layer(modules[m]) and parts == {"lora_A", "lora_B"}
    )
    unexpected = [
        k
        for k in weights.lora
        if _lora_parts(k)[0] not in usable
        and not (_lora_parts(k)[0] in modules and _supported_layer(modules[_lora_parts(k)[0]]))
    ]
    unexpected += list(weights.other)
    missing = [
        f"{m}.{part}.weight"
        for m, parts in by_module.items()
        if m in modules
        for part in {"lora_A", "lora_B"} - parts
    ] + missing_head
    if weights.lora and not usable:
        raise InvalidInputError(
            f"none of the {len(by_module)} LoRA modules in the OSOR weights exist in this "
            f"{family} backbone (e.g. {next(iter(by_module))}); wrong backbone?"
        )
    if usable:
        # peft annotates lora_alpha as int but only computes lora_alpha / r with it; OSOR's is a float.
        config = LoraConfig(
            r=weights.rank,
            lora_alpha=weights.lora_alpha,  # type: ignore[arg-type]
            target_modules=usable,
            rank_pattern={m: r for m, r in weights.rank_pattern.items() if m in usable},
            alpha_pattern={
                m: r * weights.lora_alpha / weights.rank
                for m, r in weights.rank_pattern.items()
                if m in usable
            },
            init_lora_weights=True,
        )
        inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
        if (adapter_dtype or ADAPTER_DTYPE[family]) == "float32":
            from peft.tuners.tuners_utils import cast_adapter_dtype

            # peft's own autocast (what get_peft_model does): bf16/fp16 adapter weights become float32.
            cast_adapter_dtype(model, ADAPTER_NAME, autocast_adapter_dtype=True)
        state = {k: v for k, v in weights.lora.items() if _lora_parts(k)[0] in usable}
        # peft annotates the result as a bare namedtuple; it is the one Module.load_state_dict returns.
        result = cast("_IncompatibleKeys", set_peft_model_state_dict(model, state, adapter_name=ADAPTER_NAME))
        unexpected += list(result.unexpected_keys)
        missing += [k for k in result.missing_keys if f".{ADAPTER_NAME}." in k and "lora_" in k]
        if merge:  # diffusers' own fold of every LoRA layer into its base layer, then the wrappers removed
            model.fuse_lora()
            model.unload_lora()
    report = LoadReport(
        len(usable),
        f"{spec.attribute} {tuple(layer.weight.shape)}",
        tuple(missing),
        tuple(unexpected),
        merge and bool(usable),
    )
    if missing or unexpected:
        logger.warning("OSOR weights loaded non-strictly: %s", report.summary())
    return report


# ------------------------------------------------------------------------------------------------------------
# Locating released weights locally
# ------------------------------------------------------------------------------------------------------------
def locate_weights(backbone: Backbone, phase: int = 2) -> str | None:
    """Where the released weights are on this machine, without the network.

    ``$ERASEKIT_MODELS_DIR/osor/<file>`` or the Hugging Face cache of ``QinmingZhou/OSOR``. None when absent.
    """
    from ...backbones.presets import models_dir

    filename = HUB_FILES[(backbone, phase)]
    root = models_dir()
    if root is not None:
        for candidate in (
            root / "osor" / Path(filename).name,
            root / "osor" / filename,
            root / HUB_REPO / filename,
        ):
            if candidate.is_file():
                return str(candidate)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return hf_hub_download(HUB_REPO, filename, local_files_only=True)
    except (LocalEntryNotFoundError, EntryNotFoundError, OSError, ValueError):  # not cached here: absent
        return None


def fetch_hint(backbone: Backbone) -> str:
    folder = HUB_FILES[(backbone, 2)].split("/weights/")[0]
    return f"hf download {HUB_REPO} --include '{folder}/weights/*.pth'"


__all__ = ["ADAPTER_DTYPE", "ADAPTER_NAME", "CONFIG_FILE", "HUB_FILES", "HUB_REPO", "OFFICIAL_PREFIX",
           "OFFICIAL_TARGETS", "WEIGHTS_FILE", "AdapterDtype", "LoadReport", "OsorWeights",
           "apply_osor_weights", "convert_weights", "detect_format", "fetch_hint", "load_osor_weights",
           "locate_weights", "official_state_dict", "read_erasekit", "read_official", "save_erasekit",
           "save_official", "split_state_dict"]

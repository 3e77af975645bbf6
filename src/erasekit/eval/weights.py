"""Where the feature networks (metrics, and the LPIPS-VGG training loss) come from.

Local files only, never the network.

Search order for every entry of :data:`METRIC_WEIGHTS` (first hit wins):

1. an explicit path given by the caller (a file, or a folder for Hugging Face models);
2. ``$ERASEKIT_WEIGHTS_DIR/<file name>`` (or ``<folder name>/`` for Hugging Face models);
3. the standard caches: torch hub's ``checkpoints/`` folder (``torch.hub.get_dir()``), files that ship inside
an
   installed package (torchmetrics and lpips both bundle the LPIPS v0.1 linear heads), and the Hugging Face
   hub cache read offline (``huggingface_hub.snapshot_download(..., local_files_only=True)``).

Checksums: a file found under its standard name in 2. or 3. is verified against the table (the full sha256
where it is known, otherwise the 8-hex prefix that torch hub file names carry). A mismatch makes the metric
unavailable with the reason; it is never loaded. An explicit path is trusted (it may be a converted or tiny
test checkpoint) and its fingerprint is recorded in the report instead. Folders (Hugging Face snapshots) are
fingerprinted, not verified.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ..types import MissingWeightsError

WEIGHTS_DIR_ENV = "ERASEKIT_WEIGHTS_DIR"


@dataclass(frozen=True)
class WeightSpec:
    """One file (or Hugging Face folder) a metric needs."""

    key: str
    used_by: str
    filename: str | None = None  # single-file checkpoints
    hub_id: str | None = None  # Hugging Face model folders
    sha256: str | None = None  # full digest where known
    sha256_prefix: str | None = None  # torch hub naming convention: first 8 hex digits of the sha256
    url: str | None = None
    package_files: tuple[
        tuple[str, str], ...
    ] = ()  # (package, relative path) files bundled by installed packages

    @property
    def folder_name(self) -> str | None:
        return self.hub_id.split("/")[-1] if self.hub_id else None

    def fetch_hint(self) -> str:
        if self.hub_id:
            return (
                f"hf download {self.hub_id} (or put the folder at "
                f"${WEIGHTS_DIR_ENV}/{self.folder_name})"
            )
        return f"download {self.url} to ${WEIGHTS_DIR_ENV}/{self.filename} or {_torch_hub_checkpoints()}/"


# The table of expected files. Digests: LPIPS heads computed from the lpips 0.1.4 wheel (identical to the copy
# bundled in torchmetrics); the two torch hub files carry their sha256 prefix in the name (the full digest is
# not recorded here, the prefix is what torch.hub itself checks). Hugging Face folders are pinned by hub id.
METRIC_WEIGHTS: dict[str, WeightSpec] = {
    s.key: s
    for s in (
        WeightSpec(
            "alexnet",
            "LPIPS trunk (torchvision AlexNet, ImageNet)",
            filename="alexnet-owt-7be5be79.pth",
            sha256_prefix="7be5be79",
            url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        ),
        WeightSpec(
            "lpips-alex-v0.1",
            "LPIPS v0.1 linear heads (AlexNet)",
            filename="alex.pth",
            sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
            url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
            package_files=(
                ("torchmetrics", "functional/image/lpips_models/alex.pth"),
                ("lpips", "weights/v0.1/alex.pth"),
            ),
        ),
        WeightSpec(
            "vgg16",
            "LPIPS-VGG trunk for OSOR training (torchvision VGG16, ImageNet)",
            filename="vgg16-397923af.pth",
            sha256_prefix="397923af",
            url="https://download.pytorch.org/models/vgg16-397923af.pth",
        ),
        WeightSpec(
            "lpips-vgg-v0.1",
            "LPIPS v0.1 linear heads (VGG16), OSOR training",
            filename="vgg.pth",
            sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
            url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
            package_files=(
                ("torchmetrics", "functional/image/lpips_models/vgg.pth"),
                ("lpips", "weights/v0.1/vgg.pth"),
            ),
        ),
        WeightSpec(
            "inception-fid",
            "FID/KID/Local FID (TF Inception 2015-12-05, ported to PyTorch)",
            filename="pt_inception-2015-12-05-6726825d.pth",
            sha256_prefix="6726825d",
            url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
        ),
        WeightSpec(
            "clip-vit-l14-336",
            "CMMD (CLIP ViT-L/14@336 image embeddings)",
            hub_id="openai/clip-vit-large-patch14-336",
        ),
        WeightSpec(
            "clip-vit-b32",
            "CLIP distance / CLIP acc@k (CLIP ViT-B/32)",
            hub_id="openai/clip-vit-base-patch32",
        ),
        WeightSpec("dinov2-giant", "CFD features (DINOv2 giant)", hub_id="facebook/dinov2-giant"),
        WeightSpec(
            "sam-vit-huge", "CFD segments (SAM ViT-H automatic masks)", hub_id="facebook/sam-vit-huge"
        ),
    )
}

# torch-fidelity publishes the same Inception file under another name (same sha256 prefix).
_ALIASES = {"inception-fid": ("weights-inception-2015-12-05-6726825d.pth",)}


@dataclass(frozen=True)
class ResolvedWeight:
    key: str
    path: Path
    source: str  # "explicit", "env", "torch-hub", "package:<name>", "hf-cache"
    verified: str  # "sha256", "sha256-prefix", "trusted (explicit path)", "folder"
    fingerprint: str  # short digest recorded in reports and cache keys

    def as_dict(self) -> dict[str, str]:
        return {
            "key": self.key,
            "path": str(self.path),
            "source": self.source,
            "verified": self.verified,
            "fingerprint": self.fingerprint,
        }


def _torch_hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(path: str | os.PathLike) -> str:
    """A short, cheap identity of a file or folder: sha256 over (relative name, size, mtime) of every file.

    Cheap enough to compute on every run for multi-gigabyte checkpoints; it changes whenever a file is
    replaced.
    """
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(
            f"{f.relative_to(root) if f != root else f.name}|{st.st_size}|{int(st.st_mtime)}\n".encode()
        )
    return digest.hexdigest()[:16]


def _verify(spec: WeightSpec, path: Path) -> str:
    """Check a standard-name file against the table; return how it was verified, raise on mismatch."""
    if spec.sha256 is None and spec.sha256_prefix is None:
        return "unverified (no checksum known)"
    digest = sha256_file(path)
    if spec.sha256 is not None:
        if digest != spec.sha256:
            raise MissingWeightsError(
                f"{path} has sha256 {digest[:12]}…, expected {spec.sha256[:12]}… "
                f"({spec.used_by}); re-download it"
            )
        return "sha256"
    assert spec.sha256_prefix is not None  # the no-checksum case returned above
    if not digest.startswith(spec.sha256_prefix):
        raise MissingWeightsError(
            f"{path} has sha256 {digest[:12]}…, expected prefix {spec.sha256_prefix} "
            f"({spec.used_by}); re-download it"
        )
    return "sha256-prefix"


def _package_file(package: str, relative: str) -> Path | None:
    # find_spec locates the package without importing it (lpips' __init__ imports torchvision, absent here).
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def _hf_snapshot(hub_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, local_files_only=True))
    except (ImportError, OSError, ValueError):  # not cached (LocalEntryNotFoundError), or no huggingface_hub
        return None


def resolve(key: str, explicit: str | os.PathLike | None = None) -> ResolvedWeight:
    """Find the weights ``key`` locally.

    Otherwise raise :class:`MissingWeightsError` saying what is missing and how to get it.
    """

    try:
        spec = METRIC_WEIGHTS[key]
    except KeyError:
        raise MissingWeightsError(
            f"unknown metric weights {key!r}; known: {', '.join(METRIC_WEIGHTS)}"
        ) from None
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise MissingWeightsError(f"{spec.used_by}: {path} does not exist")
        return ResolvedWeight(key, path, "explicit", "trusted (explicit path)", fingerprint(path))

    candidates: list[tuple[Path, str]] = []
    env = os.environ.get(WEIGHTS_DIR_ENV)
    names = ((spec.filename,) if spec.filename else ()) + _ALIASES.get(key, ())
    if env:
        root = Path(env).expanduser()
        if spec.folder_name:  # set exactly when hub_id is
            candidates.append((root / spec.folder_name, "env"))
        candidates += [(root / n, "env") for n in names]
    if spec.filename:
        hub = _torch_hub_checkpoints()
        candidates += [(hub / n, "torch-hub") for n in names]
        for package, relative in spec.package_files:
            found = _package_file(package, relative)
            if found is not None:
                candidates.append((found, f"package:{package}"))
    for path, source in candidates:
        if path.is_dir() and spec.hub_id:
            return ResolvedWeight(key, path, source, "folder", fingerprint(path))
        if path.is_file():
            return ResolvedWeight(key, path, source, _verify(spec, path), fingerprint(path))
    if spec.hub_id:
        snap = _hf_snapshot(spec.hub_id)
        if snap is not None:
            return ResolvedWeight(key, snap, "hf-cache", "folder", fingerprint(snap))
    raise MissingWeightsError(f"{spec.used_by}: weights not found locally; {spec.fetch_hint()}")


def weights_table() -> list[dict[str, str]]:
    """The expected files with checksums (for docs and ``erasekit bench --list-metrics``)."""
    rows = []
    for s in METRIC_WEIGHTS.values():
        checksum = s.sha256 or (
            f"prefix {s.sha256_prefix}" if s.sha256_prefix else "folder (pinned by hub id)"
        )
        rows.append(
            {
                "key": s.key,
                "used_by": s.used_by,
                "file": s.filename or f"{s.folder_name}/ ({s.hub_id})",
                "sha256": checksum,
            }
        )
    return rows

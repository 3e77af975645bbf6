"""The two frozen encoders' embeddings of every training image, computed once and cached on disk.

Algorithm 1 trains the MLP alone: AlphaCLIP (all-ones alpha) and IP-Adapter's ViT-H/14 image encoder are
frozen and see each image unchanged in every epoch (the authors' dataset has no augmentation), so each
image's pair (AlphaCLIP embedding, target ``image_embeds``) is a constant. Computing it once turns 300k steps
of two ViT forwards into 300k steps of an MLP on cached vectors; the ViT-H target is the expensive part.

Layout: ``CACHE/<key>/shard-NNNNN.safetensors`` (``alpha_clip`` N×768, ``target`` N×1024, float32) for
``shard_size`` images each, and ``manifest.json`` once every shard is there. ``key`` hashes the encoder files,
the image size and the image list (relative paths and byte sizes), so a changed input gets a new cache and
never a stale one. A shard is written to a temporary name and renamed, so a killed run leaves whole shards
only and the next run computes just the missing ones; with several processes each computes every
``num_processes``-th shard.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ....atomic import atomic_path, write_text
from ....types import InvalidInputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # what the authors' TrainDataset reads
_FINGERPRINT_BYTES = 1 << 20
CACHE_VERSION = 1


def list_images(folder: str | os.PathLike, limit: int | None = None) -> list[Path]:
    """Every image under ``folder`` (recursively; COCO's ``train2017/`` or its parent), sorted by relative
    path; the first ``limit`` when given."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InvalidInputError(f"training images folder {root} does not exist")
    files = sorted((p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise InvalidInputError(f"no {'/'.join(IMAGE_SUFFIXES)} images under {root}")
    return files[:limit] if limit is not None else files


def file_fingerprint(path: Path) -> list[Any]:
    """A cheap identity of a weight file (name, size, SHA-256 of its first and last MiB) or of every file in a
    model folder; hashing whole multi-GB checkpoints on every run would cost more than it protects."""
    if path.is_dir():
        return [[p.relative_to(path).as_posix(), *file_fingerprint(p)[1:]]
                for p in sorted(path.rglob("*")) if p.is_file()]
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        digest.update(stream.read(_FINGERPRINT_BYTES))
        if size > _FINGERPRINT_BYTES:
            stream.seek(max(_FINGERPRINT_BYTES, size - _FINGERPRINT_BYTES))
            digest.update(stream.read())
    return [path.name, size, digest.hexdigest()]


def cache_key(alpha_clip: Path, image_encoder: Path, image_size: int, root: Path,
              images: Sequence[Path]) -> str:
    payload = {"version": CACHE_VERSION, "alpha_clip": file_fingerprint(alpha_clip),
               "image_encoder": file_fingerprint(image_encoder), "image_size": image_size,
               "images": [[p.relative_to(root).as_posix(), p.stat().st_size] for p in images]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def read_training_image(path: Path, size: int) -> np.ndarray:
    """The authors' dataset: RGB, resized to size×size (PIL bicubic, ``Image.resize``'s default)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            resized = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    except (OSError, UnidentifiedImageError) as exc:
        raise InvalidInputError(f"cannot read training image {path}: {exc}") from None
    return np.asarray(resized, dtype=np.uint8)


@dataclass
class Encoders:
    """AlphaCLIP and the target image encoder, frozen, float32, on one device."""

    alpha_clip: Any  # AlphaClipVisionModel
    image_encoder: Any  # transformers.CLIPVisionModelWithProjection
    device: torch.device

    def __post_init__(self) -> None:
        from transformers import CLIPImageProcessorPil

        from ..embedding import square_frame_processor

        self.alpha_size = int(self.alpha_clip.image_size)
        self.alpha_processor = square_frame_processor(self.alpha_size)
        # The authors call CLIPImageProcessor() with its defaults (shortest side 224, bicubic, centre crop
        # 224, OpenAI mean/std); the side follows the encoder so that tiny test encoders fit (224: ViT-H/14).
        side = int(self.image_encoder.config.image_size)
        self.target_processor = CLIPImageProcessorPil(size={"shortest_edge": side},
                                                      crop_size={"height": side, "width": side})

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """(AlphaCLIP embeddings with an all-ones alpha, the target's ``image_embeds``), float32, CPU."""
        from ..embedding import alpha_values, clip_pixel_values

        pixels = clip_pixel_values(self.alpha_processor, images).to(self.device)
        ones = [np.ones((self.alpha_size, self.alpha_size), np.float32)] * len(images)
        inputs = self.alpha_clip(pixels, alpha_values(ones, self.alpha_size).to(self.device))
        target_pixels = clip_pixel_values(self.target_processor, images).to(self.device)
        targets = self.image_encoder(pixel_values=target_pixels).image_embeds
        return inputs.float().cpu(), targets.float().cpu()


def load_encoders(alpha_clip: Path, image_encoder: Path, device: torch.device) -> Encoders:
    from transformers import CLIPVisionModelWithProjection

    from ..alpha_clip import load_alpha_clip

    encoder: Any = CLIPVisionModelWithProjection.from_pretrained(str(image_encoder), dtype=torch.float32)
    encoder.to(device).eval().requires_grad_(False)  # typed Any: transformers' stubs type .to oddly
    return Encoders(load_alpha_clip(alpha_clip, device=device), encoder, device)


class FeatureCache:
    """The cached embeddings of one (encoders, image size, image list) key under ``folder``."""

    def __init__(self, folder: Path, images: Sequence[Path], root: Path, shard_size: int):
        self.folder, self.images, self.root, self.shard_size = folder, list(images), root, shard_size
        self.shards = (len(self.images) + shard_size - 1) // shard_size

    def shard_path(self, index: int) -> Path:
        return self.folder / f"shard-{index:05d}.safetensors"

    def missing(self, process_index: int = 0, num_processes: int = 1) -> list[int]:
        """The shards this process has to compute (every ``num_processes``-th, those not on disk)."""
        mine = range(process_index, self.shards, num_processes)
        return [i for i in mine if not self.shard_path(i).is_file()]

    def build(self, encoders: Callable[[], Encoders], image_size: int, encode_batch_size: int, *,
              process_index: int = 0, num_processes: int = 1, progress: bool = True) -> int:
        """Compute this process's missing shards (the encoders load only if one is missing); returns how many
        images it encoded."""
        from safetensors.torch import save_file
        from tqdm.auto import tqdm

        todo = self.missing(process_index, num_processes)
        if not todo:
            return 0
        self.folder.mkdir(parents=True, exist_ok=True)
        models = encoders()
        total = sum(len(self._shard_images(i)) for i in todo)
        bar = tqdm(total=total, disable=not progress, desc="clipaway-mlp: caching embeddings")
        for index in todo:
            inputs, targets = [], []
            files = self._shard_images(index)
            for start in range(0, len(files), encode_batch_size):
                batch = [read_training_image(p, image_size) for p in files[start:start + encode_batch_size]]
                a, t = models.encode(batch)
                inputs.append(a)
                targets.append(t)
                bar.update(len(batch))
            tensors = {"alpha_clip": torch.cat(inputs).contiguous(),
                       "target": torch.cat(targets).contiguous()}
            with atomic_path(self.shard_path(index)) as temp:  # a killed run leaves no half shard
                save_file(tensors, str(temp))
        bar.close()
        return total

    def write_manifest(self) -> None:
        manifest = {"version": CACHE_VERSION, "count": len(self.images), "shards": self.shards,
                    "images": [p.relative_to(self.root).as_posix() for p in self.images]}
        write_text(self.folder / "manifest.json", json.dumps(manifest) + "\n")

    def load(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every image's (AlphaCLIP embedding, target embedding), in image order."""
        from safetensors.torch import load_file

        parts = [load_file(str(self.shard_path(i))) for i in range(self.shards)]
        inputs = torch.cat([p["alpha_clip"] for p in parts])
        targets = torch.cat([p["target"] for p in parts])
        if inputs.shape[0] != len(self.images):
            raise InvalidInputError(f"embedding cache {self.folder} holds {inputs.shape[0]} rows for "
                                    f"{len(self.images)} images; delete it to rebuild")
        return inputs, targets

    def _shard_images(self, index: int) -> list[Path]:
        return self.images[index * self.shard_size:(index + 1) * self.shard_size]


__all__ = ["IMAGE_SUFFIXES", "Encoders", "FeatureCache", "cache_key", "file_fingerprint", "list_images",
           "load_encoders", "read_training_image"]

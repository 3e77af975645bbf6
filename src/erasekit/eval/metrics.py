"""The metrics of the papers' tables, each with its exact definition.

Conventions shared by all metrics: images are uint8 RGB H×W×3 arrays; ``output`` is a method's result,
``target`` the ground-truth background; ``mask`` is float32 H×W, pixels > 0.5 count as inside. Pixel metrics
use the RGB values with a fixed data range of **255** (never per-image ranges). Feature metrics take their
networks as arguments (see
:mod:`erasekit.eval.features` for the loaders), so tests pass tiny random networks through the same code.

Per-image metrics: :func:`psnr`, :func:`ssim` (each also inside the mask), :class:`LPIPSMetric`.
Set metrics: :class:`FIDMetric` + KID, :class:`LocalFIDMetric` (crops, :func:`local_crop_box`),
:class:`CMMDMetric`
(:func:`mmd_rbf`), CLIP distance / accuracy@k (:class:`CLIPRemovalMetric`), CFD (:mod:`erasekit.eval.cfd`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..types import InvalidInputError
from .features import clip_cmmd_pixels, clip_eval_pixels, fid_settings, to_uint8_tensor

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_KERNEL = 11  # 2·int(3.5·σ + 0.5) + 1, scikit-image's Gaussian window for σ = 1.5
# SSIM runs in float32 (speed); its mean stays this close to scikit-image's float64 value (4 decimals, as
# papers report it).
SSIM_FLOAT32_TOLERANCE = 5e-5
CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0


def _check_pair(output: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
    if output.shape != target.shape or output.ndim != 3 or output.shape[2] != 3:
        raise InvalidInputError(
            f"output {output.shape} and target {target.shape} must both be H×W×3 of one size"
        )
    if mask is not None and mask.shape != output.shape[:2]:
        raise InvalidInputError(f"mask {mask.shape} does not match image {output.shape[:2]}")


def _inside(mask: np.ndarray) -> np.ndarray:
    return np.asarray(mask) > 0.5


# ------------------------------------------------------------------------------------------------------------
# PSNR / SSIM
# ------------------------------------------------------------------------------------------------------------
def psnr(output: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over the RGB values: 10·log10(255² / MSE).

    MSE is averaged over all pixels and the three channels — or, with ``mask``, over the pixels inside the
    mask only (each counted in three channels). Identical images give +inf; an empty mask gives NaN (nothing
    to measure).
    """
    _check_pair(output, target, mask)
    diff = output.astype(np.float64) - target.astype(np.float64)
    if mask is not None:
        inside = _inside(mask)
        if not inside.any():
            return float("nan")
        diff = diff[inside]
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


def ssim_map(output: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The per-pixel SSIM map (Wang et al. 2004), averaged over RGB channels: Gaussian window σ = 1.5 (11×11),
    K1 = 0.01, K2 = 0.03, data range 255, population (not sample) covariances. Computed with torchmetrics.

    In float32, about 10× faster than float64 on a CPU; the mean differs from scikit-image's float64 value by
    at most :data:`SSIM_FLOAT32_TOLERANCE` (tests/test_metrics.py measures it on photos)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a = torch.from_numpy(np.ascontiguousarray(output)).permute(2, 0, 1)[None].float()
    b = torch.from_numpy(np.ascontiguousarray(target)).permute(2, 0, 1)[None].float()
    _, full = structural_similarity_index_measure(
        a,
        b,
        data_range=DATA_RANGE,
        gaussian_kernel=True,
        sigma=SSIM_SIGMA,
        kernel_size=SSIM_KERNEL,
        return_full_image=True,
    )
    return full[0].mean(dim=0).double().numpy()


def ssim(output: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over the image interior.

    The 5-pixel border where the 11×11 window leaves the image is excluded, as scikit-image and the original
    MATLAB code do. With ``mask``: the mean of the same SSIM map over the mask's pixels in that interior (the
    window still sees the context around the hole). Empty → NaN.
    """
    _check_pair(output, target, mask)
    h, w = output.shape[:2]
    pad = (SSIM_KERNEL - 1) // 2
    if h <= 2 * pad or w <= 2 * pad:
        raise InvalidInputError(f"SSIM needs images larger than {2 * pad + 1}×{2 * pad + 1} pixels")
    smap = ssim_map(output, target)
    region = np.zeros((h, w), bool)
    region[pad : h - pad, pad : w - pad] = True
    if mask is not None:
        region &= _inside(mask)
        if not region.any():
            return float("nan")
    return float(smap[region].mean())


# ------------------------------------------------------------------------------------------------------------
# Accumulating metrics (per-image values and/or one value for the whole set)
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One evaluated image.

    The method ``output``, the ground-truth ``target`` background, the ``mask`` the method was given, the
    original ``image`` (with the object) and, when the dataset has one, the object's class ``label``.
    """

    id: str
    output: np.ndarray
    target: np.ndarray | None
    mask: np.ndarray
    image: np.ndarray
    label: str | None = None

    def require_target(self) -> np.ndarray:
        """The ground truth, for metrics that need one (the runner gives them only samples that have it)."""
        if self.target is None:
            raise InvalidInputError(f"sample {self.id!r} has no ground-truth background")
        return self.target


class Metric:
    """Base of the accumulating metrics the benchmark runs.

    ``update`` returns this sample's per-image values (may be empty); ``compute`` returns set-level values;
    ``settings`` is recorded in every report.
    """

    name = "metric"
    needs_target = True
    fingerprint = "none"

    def update(self, sample: Sample) -> dict[str, float]:
        return {}

    def compute(self) -> dict[str, float]:
        return {}

    def settings(self) -> dict:
        return {}


class PixelMetrics(Metric):
    """PSNR and SSIM on the whole image and inside the mask (no weights)."""

    name = "psnr_ssim"

    def __init__(self, which: tuple[str, ...] = ("psnr", "ssim", "psnr_mask", "ssim_mask")):
        self.which = which

    def update(self, s: Sample) -> dict[str, float]:
        target = s.require_target()
        fns = {
            "psnr": lambda: psnr(s.output, target),
            "ssim": lambda: ssim(s.output, target),
            "psnr_mask": lambda: psnr(s.output, target, s.mask),
            "ssim_mask": lambda: ssim(s.output, target, s.mask),
        }
        return {k: fns[k]() for k in self.which}

    def settings(self) -> dict:
        return {
            "color": "RGB",
            "data_range": 255,
            "ssim_window": "gaussian sigma=1.5, 11x11, 5-px border excluded",
            "mask_rule": "mask > 0.5",
        }


class LPIPSMetric(Metric):
    """LPIPS v0.1 with the AlexNet trunk between output and target.

    At full resolution (inputs scaled to [-1, 1]), one distance per image; the set value is the mean. ``net``
    is an :class:`~erasekit.eval.networks.LPIPSAlex`.
    """

    name = "lpips"

    def __init__(self, net: nn.Module, device: str = "cpu", fingerprint: str = "none"):
        self.net, self.device, self.fingerprint = net, device, fingerprint

    def distance(self, output: np.ndarray, target: np.ndarray) -> float:
        a = to_uint8_tensor(output, self.device).float() / 127.5 - 1.0
        b = to_uint8_tensor(target, self.device).float() / 127.5 - 1.0
        with torch.no_grad():
            return float(self.net(a, b)[0])

    def update(self, s: Sample) -> dict[str, float]:
        return {"lpips": self.distance(s.output, s.require_target())}

    def settings(self) -> dict:
        return {"net": "alex", "version": "0.1", "resolution": "full image, no resize"}


class PrecomputedFeatures(nn.Module):
    """An identity "feature network": lets torchmetrics' FID/KID consume features computed elsewhere (cached,
    or computed once and shared by FID and KID)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fid_from_features(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> float:
    """FID between two feature sets (N×D), computed by torchmetrics.

    ‖μ_r − μ_f‖² + Tr(Σ_r + Σ_f − 2(Σ_r Σ_f)^½) with sample (N−1) covariances (Heusel et al. 2017).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = torch.as_tensor(np.asarray(real)).double(), torch.as_tensor(np.asarray(fake)).double()
    fid = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1]), normalize=False)
    fid.set_dtype(torch.float64)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    return float(fid.compute())


def kid_from_features(
    real, fake, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018) by torchmetrics: unbiased MMD² with the cubic polynomial kernel
    (x·y/d + 1)³, averaged over ``subsets`` random subsets of ``min(subset_size, N)`` — small-sample friendly.
    Returns (mean, std). Subsets are drawn from a forked RNG seeded with ``seed`` (reproducible)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = torch.as_tensor(np.asarray(real)).double(), torch.as_tensor(np.asarray(fake)).double()
    n = min(len(real), len(fake))
    if n < 2:
        return float("nan"), float("nan")
    import warnings

    with (
        warnings.catch_warnings()
    ):  # torchmetrics warns that KID keeps features in memory: that is the point here
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(
            feature=PrecomputedFeatures(real.shape[1]),
            subsets=subsets,
            subset_size=min(subset_size, n),
            normalize=False,
        )
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = kid.compute()
    return float(mean), float(std)


class _FeatureSetMetric(Metric):
    """Collects one feature vector per real and per fake image, then compares the two sets.

    Images are queued by size and embedded in batches of ``batch_size`` (the set statistic does not depend on
    the order); ground-truth features are cached by key in ``real_cache``, which the benchmark shares between
    methods.
    """

    def __init__(
        self,
        extractor: nn.Module,
        device: str = "cpu",
        fingerprint: str = "none",
        *,
        real_cache: dict | None = None,
        which: tuple[str, ...] | None = None,
        batch_size: int = 8,
    ):
        self.extractor, self.device, self.fingerprint = extractor, device, fingerprint
        self.real_cache = real_cache if real_cache is not None else {}
        self.which, self.batch_size = which, batch_size
        self.real: list[torch.Tensor] = []
        self.fake: list[torch.Tensor] = []
        self._pending: dict[tuple, list[tuple[str, tuple | None, np.ndarray]]] = {}

    def add(self, kind: str, image: np.ndarray, key: tuple | None = None) -> None:
        if kind == "real" and key is not None and key in self.real_cache:
            self.real.append(self.real_cache[key])
            return
        group = self._pending.setdefault(image.shape, [])
        group.append((kind, key, np.ascontiguousarray(image)))
        if len(group) >= self.batch_size:
            self._flush(image.shape)

    def _flush(self, shape: tuple | None = None) -> None:
        for shp in [shape] if shape is not None else list(self._pending):
            group = self._pending.pop(shp, [])
            if not group:
                continue
            with torch.no_grad():
                feats = (
                    self.extractor(to_uint8_tensor([img for _, _, img in group], self.device)).double().cpu()
                )
            for (kind, key, _), f in zip(group, feats):
                f = f[None]
                if kind == "fake":
                    self.fake.append(f)
                    continue
                self.real.append(f)
                if key is not None:
                    self.real_cache[key] = f

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._flush()
        if not self.real:
            return torch.zeros(0, 0, dtype=torch.float64), torch.zeros(0, 0, dtype=torch.float64)
        return torch.cat(self.real), torch.cat(self.fake)


class FIDMetric(_FeatureSetMetric):
    """FID and KID between the set of outputs and the set of ground-truth backgrounds, on TF-Inception pool3
    features (2048-d; resize/antialias settings in :func:`~erasekit.eval.features.fid_settings`)."""

    name = "fid"

    def update(self, s: Sample) -> dict[str, float]:
        self.add("real", s.require_target(), ("full", s.id))
        self.add("fake", s.output)
        return {}

    def compute(self) -> dict[str, float]:
        which = self.which or ("fid", "kid")
        real, fake = self.stacked()
        if len(real) < 2:
            return {k: float("nan") for k in which}
        out = {}
        if "fid" in which:
            out["fid"] = fid_from_features(real, fake)
        if "kid" in which:
            out["kid"] = kid_from_features(real, fake)[0]
        return out

    def settings(self) -> dict:
        return {**fid_settings(), "kid": "cubic polynomial kernel, 100 subsets of min(1000, N), seed 0"}


def local_crop_box(
    mask: np.ndarray, *, context: float = 0.5, min_side: int = 64
) -> tuple[int, int, int, int]:
    """The Local FID crop around a mask: (top, left, bottom, right), half-open.

    Procedure (ours — no public code fixes one): take the bounding box of the mask pixels (> 0.5), make it
    square with side ``s = max(h, w) · (1 + context)`` (by default half the box size of context, a quarter on
    each side), at least ``min_side`` pixels and at most the image's shorter side; centre it on the box centre
    and shift it so it lies inside the image. An empty mask gives the centred largest square.
    """
    inside = _inside(mask)
    H, W = inside.shape
    limit = min(H, W)
    if inside.any():
        rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        side = math.ceil(max(bottom - top, right - left) * (1.0 + context))
        cy, cx = (top + bottom) / 2.0, (left + right) / 2.0
    else:
        side, cy, cx = limit, H / 2.0, W / 2.0
    side = int(min(max(side, min_side), limit))
    y0 = int(min(max(round(cy - side / 2.0), 0), H - side))
    x0 = int(min(max(round(cx - side / 2.0), 0), W - side))
    return y0, x0, y0 + side, x0 + side


class LocalFIDMetric(_FeatureSetMetric):
    """Local FID (EraDiff Sec. 5.1, after SmartBrush): FID on crops around each mask — the same
    :func:`local_crop_box` cut from the output and from the ground truth — with the FID Inception features
    (the
    crops are resized to 299 by the network like whole images)."""

    name = "local_fid"

    def update(self, s: Sample) -> dict[str, float]:
        y0, x0, y1, x1 = local_crop_box(s.mask)
        self.add("real", s.require_target()[y0:y1, x0:x1], ("crop", s.id, y0, x0, y1, x1))
        self.add("fake", s.output[y0:y1, x0:x1])
        return {}

    def compute(self) -> dict[str, float]:
        real, fake = self.stacked()
        if len(real) < 2:
            return {"local_fid": float("nan")}
        return {"local_fid": fid_from_features(real, fake)}

    def settings(self) -> dict:
        return {
            **fid_settings(),
            "crop": "square around the mask bbox, side = 1.5 x max(h, w), >= 64 px, clamped inside the image",
        }


# ------------------------------------------------------------------------------------------------------------
# CMMD
# ------------------------------------------------------------------------------------------------------------
def mmd_rbf(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    sigma: float = CMMD_SIGMA,
    scale: float = CMMD_SCALE,
) -> float:
    """Biased MMD² with the Gaussian RBF kernel k(a, b) = exp(−‖a − b‖² / (2σ²)), times ``scale``:
    scale · (mean K_xx + mean K_yy − 2 mean K_xy), diagonals included (CMMD, Jayasumana et al. CVPR 2024).

    In-house because no installed library implements CMMD (torchmetrics has no CLIP-MMD); it is a few lines.
    """

    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    gamma = 1.0 / (2.0 * sigma**2)

    def k(a, b):
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return torch.exp(-gamma * d2.clamp_min(0.0)).mean()

    return float(scale * (k(x, x) + k(y, y) - 2.0 * k(x, y)))


class CMMDMetric(Metric):
    """CMMD between outputs and ground truths.

    CLIP ViT-L/14@336 image embeddings (``image_embeds``), L2-normalised, then :func:`mmd_rbf` with σ = 10,
    ×1000. ``model`` is a transformers ``CLIPVisionModelWithProjection``.
    """

    name = "cmmd"

    def __init__(self, model, image_size: int, device: str = "cpu", fingerprint: str = "none"):
        self.model, self.size, self.device, self.fingerprint = model, image_size, device, fingerprint
        self.real: list[torch.Tensor] = []
        self.fake: list[torch.Tensor] = []

    def embed(self, images: list[np.ndarray]) -> torch.Tensor:
        with torch.no_grad():
            emb = self.model(pixel_values=clip_cmmd_pixels(images, self.size, self.device)).image_embeds
        emb = emb.double().cpu()
        return emb / emb.norm(dim=-1, keepdim=True)

    def update(self, s: Sample) -> dict[str, float]:
        self.real.append(self.embed([s.require_target()]))
        self.fake.append(self.embed([s.output]))
        return {}

    def compute(self) -> dict[str, float]:
        if not self.real:
            return {"cmmd": float("nan")}
        return {"cmmd": mmd_rbf(torch.cat(self.real), torch.cat(self.fake))}

    def settings(self) -> dict:
        return {
            "embedding": "CLIP image_embeds, L2-normalised",
            "resize": f"bicubic {self.size}x{self.size}, whole image, no antialias",
            "normalisation": "transformers CLIPImageProcessorPil",
            "sigma": CMMD_SIGMA,
            "scale": CMMD_SCALE,
            "estimator": "biased",
        }


# ------------------------------------------------------------------------------------------------------------
# CLIP distance and CLIP accuracy@k (Inst-Inpaint, as used by CLIPAway Sec. 4.3)
# ------------------------------------------------------------------------------------------------------------
def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (left, top, right, bottom), half-open, of the mask pixels; None when empty."""
    inside = _inside(mask)
    if not inside.any():
        return None
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def inst_inpaint_crop(image: np.ndarray, box: tuple[int, int, int, int], resolution: int = 256) -> np.ndarray:
    """Inst-Inpaint's region crop.

    The image resized to resolution×resolution (PIL bilinear), the object box scaled by the same factors
    (truncated to int) and cut out.
    """

    from PIL import Image

    h, w = image.shape[:2]
    im = Image.fromarray(image).resize((resolution, resolution), Image.Resampling.BILINEAR)
    sx, sy = resolution / w, resolution / h
    left, top, right, bottom = int(box[0] * sx), int(box[1] * sy), int(box[2] * sx), int(box[3] * sy)
    right, bottom = max(right, left + 1), max(bottom, top + 1)
    return np.asarray(im.crop((left, top, right, bottom)))


class CLIPRemovalMetric(Metric):
    """Did the object go? CLIP ViT-B/32 on the object's box cut from the input and from the output
    (:func:`inst_inpaint_crop`, then CLIP's own resize/centre-crop to 224).

    * ``clip_dist`` = 1 − cos(e_in, e_out) of the two crops' image embeddings (larger: more changed).
    * ``clip_acc@k``: zero-shot classify both crops over the prompts "a photo of a {class}" for every class in
      ``classes``; success when the input crop's top-1 class is not among the output crop's top-k (k = 1, 3,
      5). The set values are success percentages. Needs object labels (``Sample.label``) only to be in the
      class list.
    """

    name = "clip"
    needs_target = False

    def __init__(self, model, tokenizer, classes: list[str], device: str = "cpu", fingerprint: str = "none"):
        if not classes:
            raise InvalidInputError("CLIP accuracy needs a non-empty list of object classes")
        self.model, self.device, self.fingerprint = model, device, fingerprint
        self.classes = list(classes)
        self.size = model.config.vision_config.image_size
        tokens = tokenizer([f"a photo of a {c}" for c in self.classes], padding=True, return_tensors="pt")
        with torch.no_grad():
            text = model.get_text_features(**{k: v.to(device) for k, v in tokens.items()})
        text = getattr(text, "pooler_output", text)
        self.text = text / text.norm(dim=-1, keepdim=True)
        self.hits: dict[int, list[float]] = {1: [], 3: [], 5: []}

    def _embed(self, crops: list[np.ndarray]) -> torch.Tensor:
        with torch.no_grad():
            e = self.model.get_image_features(pixel_values=clip_eval_pixels(crops, self.size, self.device))
        e = getattr(e, "pooler_output", e)
        return e / e.norm(dim=-1, keepdim=True)

    def update(self, s: Sample) -> dict[str, float]:
        box = mask_box(s.mask)
        if box is None:
            return {}
        e = self._embed([inst_inpaint_crop(s.image, box), inst_inpaint_crop(s.output, box)])
        dist = float(1.0 - (e[0] * e[1]).sum())
        logits = e @ self.text.T  # CLIP's logit scale does not change rankings
        source_top1 = int(logits[0].argmax())
        ranked = torch.argsort(logits[1], descending=True).tolist()
        out = {"clip_dist": dist}
        for k in self.hits:
            success = float(source_top1 not in ranked[:k])
            self.hits[k].append(success)
            out[f"clip_acc@{k}"] = 100.0 * success
        return out

    def settings(self) -> dict:
        return {
            "model": "CLIP ViT-B/32",
            "crop": "image resized to 256x256 bilinear, mask bbox scaled and cut, "
            "CLIP bicubic short-side resize (long side truncated) + centre crop",
            "preprocessing": "transformers CLIPImageProcessorPil",
            "prompt": "a photo of a {class}",
            "classes": len(self.classes),
        }

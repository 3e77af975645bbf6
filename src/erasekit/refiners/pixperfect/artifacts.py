"""Training pairs (x_gen, x_gt) from clean photos by simulating local-editing artifacts (Sec. 3.2, App. C).

Every module is a function ``module(x_gen, x_gt, mask, rng) -> (x_gen, x_gt)`` on float32 H×W×3 images in [0,
1] and a binary H×W mask, seeded only by the ``numpy.random.Generator`` it is given, and confined to its
region: a *foreground* module changes x_gen inside the mask only and leaves x_gt alone; a *background* module
changes x_gen outside the mask only. A background artifact (a colour cast, JPEG) belongs to the photo, not to
the edit, so the truth gets it too: x_gt becomes T(x_gt) everywhere and x_gen takes T(x_gt) outside the mask —
the refiner must then match the fill to the changed surroundings. Hence the invariant of every pair (tested):
x_gen equals x_gt bit for bit outside the mask, as a pasted-back edit does.

:func:`simulate_artifacts` runs the modules of Table 5 in a fixed order, each firing with its probability:

=========================  ===========  =============================================================
module                      probability  what it does
=========================  ===========  =============================================================
background colour           0.8          one colour-shift scheme (below) on the photo, kept outside the mask
sensor noise / JPEG / blur  0.5          one of the three, on the foreground, the background or both
content discontinuity       0.5          a classical inpainter re-fills a band straddling the mask edge;
                                         the part inside the mask is kept (the background is composited back)
foreground colour           0.8          one colour-shift scheme inside the mask
VAE compression             0.5          an ``AutoencoderKL`` encode/decode round trip inside the mask
soft / hard boundary        1.0          the artifacts blended in through a dilated or eroded, blurred mask
=========================  ===========  =============================================================

Colour shifts (App. C): a *linear gradient* (coordinates projected on a random direction, normalised to [0,
1]), *random blobs* (soft ellipses, merged by maximum) or a *uniform* blend, each an alpha α in Eq. 5, x_sim =
α·x_img + (1 − α)·x_jit, with x_jit a colour-jittered copy.

Choices (docs/pixperfect.md): the paper gives probabilities but no magnitudes; the ranges below are ours, set
so that a shift is visible but subtle (jitter of up to ±8 % brightness / contrast / saturation and ±3 % hue).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ... import masks as M

Image = np.ndarray  # float32 H×W×3 in [0, 1]
Module = Callable[[Image, Image, np.ndarray, np.random.Generator], tuple[Image, Image]]

# Table 5.
PROBABILITIES: dict[str, float] = {
    "background_color": 0.8,
    "texture": 0.5,
    "content_discontinuity": 0.5,
    "foreground_color": 0.8,
    "vae": 0.5,
    "boundary_mixing": 1.0,
}


# ---- masks -------------------------------------------------------------------------------------------------
def free_form_mask(
    shape: tuple[int, int], rng: np.random.Generator, *, hole_range: tuple[float, float] = (0.05, 0.5)
) -> np.ndarray:
    """A CoModGAN-style free-form mask (Zhao et al., ICLR 2021, their ``RandomMask``): random rectangles and
    brush strokes (random walks of thick lines with round joints) until the covered share reaches a target
    drawn
    from ``hole_range``. Written after that recipe, with our stroke parameters; float32 H×W in {0, 1}."""
    height, width = shape
    target = rng.uniform(*hole_range)
    mask = np.zeros(shape, np.uint8)
    side = min(height, width)
    for _ in range(64):  # bounded: a target near 1 stops after a fixed amount of drawing
        if mask.mean() >= target:
            break
        if rng.random() < 0.5:
            h = int(rng.integers(max(side // 10, 1), max(side // 2, 2)))
            w = int(rng.integers(max(side // 10, 1), max(side // 2, 2)))
            top, left = int(rng.integers(0, max(height - h, 1))), int(rng.integers(0, max(width - w, 1)))
            mask[top : top + h, left : left + w] = 1
        else:
            x, y = float(rng.uniform(0, width)), float(rng.uniform(0, height))
            brush = int(rng.integers(max(side // 40, 1), max(side // 12, 2)))
            for _ in range(int(rng.integers(2, 8))):
                angle = rng.uniform(0, 2 * np.pi)
                length = rng.uniform(side / 10, side / 3)
                nx = float(np.clip(x + length * np.cos(angle), 0, width - 1))
                ny = float(np.clip(y + length * np.sin(angle), 0, height - 1))
                cv2.line(mask, (int(x), int(y)), (int(nx), int(ny)), 1, brush)
                cv2.circle(mask, (int(nx), int(ny)), brush // 2, 1, -1)
                x, y = nx, ny
    if mask.all():  # a pair needs surroundings
        mask[0, 0] = 0
    if not mask.any():
        mask[height // 2, width // 2] = 1
    return mask.astype(np.float32)


# ---- colour shifts (App. C) --------------------------------------------------------------------------------
def color_jitter(image: Image, rng: np.random.Generator) -> Image:
    """Brightness, contrast, saturation and hue jitter (torchvision's ColorJitter operations, in numpy)."""
    out = image * rng.uniform(0.92, 1.08)
    mean = out.mean()
    out = (out - mean) * rng.uniform(0.92, 1.08) + mean
    gray = out @ np.array([0.299, 0.587, 0.114], np.float32)
    out = (out - gray[..., None]) * rng.uniform(0.92, 1.08) + gray[..., None]
    hsv = cv2.cvtColor(np.clip(out, 0, 1).astype(np.float32), cv2.COLOR_RGB2HSV)  # H in degrees
    hsv[..., 0] = (hsv[..., 0] + 360.0 * rng.uniform(-0.03, 0.03)) % 360.0
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0.0, 1.0).astype(np.float32)


def gradient_alpha(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Linear gradient: normalised x–y coordinates projected on a random unit vector, rescaled to [0, 1]."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    projection = np.cos(angle) * xs / max(shape[1] - 1, 1) + np.sin(angle) * ys / max(shape[0] - 1, 1)
    span = projection.max() - projection.min()
    return ((projection - projection.min()) / span if span > 0 else np.zeros(shape)).astype(np.float32)


def blob_alpha(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One to three soft rotated ellipses, 1 at the centre decaying to 0 at the edge, merged by maximum."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    alpha = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        ay, ax = rng.uniform(0.15, 0.5) * shape[0], rng.uniform(0.15, 0.5) * shape[1]
        theta = rng.uniform(0, np.pi)
        u = (xs - cx) * np.cos(theta) + (ys - cy) * np.sin(theta)
        v = -(xs - cx) * np.sin(theta) + (ys - cy) * np.cos(theta)
        radius = np.sqrt((u / ax) ** 2 + (v / ay) ** 2)
        alpha = np.maximum(alpha, np.clip(1.0 - radius, 0.0, 1.0) ** 2)
    return 1.0 - alpha  # α weights the original (Eq. 5): the blob is where the jittered copy shows


def color_shift(image: Image, rng: np.random.Generator) -> Image:
    """Eq. 5 with one of App. C's three alphas: linear gradient, random blobs or a uniform blend."""
    jittered = color_jitter(image, rng)
    scheme = int(rng.integers(0, 3))
    if scheme == 0:
        alpha = gradient_alpha(image.shape[:2], rng)
    elif scheme == 1:
        alpha = blob_alpha(image.shape[:2], rng)
    else:
        alpha = np.full(image.shape[:2], rng.uniform(0.0, 0.5), np.float32)
    return (alpha[..., None] * image + (1.0 - alpha[..., None]) * jittered).astype(np.float32)


# ---- texture: noise / JPEG / blur --------------------------------------------------------------------------
def degrade_texture(image: Image, rng: np.random.Generator) -> Image:
    """Sensor noise (Gaussian, σ ≤ 3 %), JPEG (quality 30–90, OpenCV's encoder) or Gaussian blur (σ 0.5–2)."""
    kind = int(rng.integers(0, 3))
    if kind == 0:
        noisy = image + rng.normal(0.0, rng.uniform(0.005, 0.03), image.shape).astype(np.float32)
        return np.clip(noisy, 0.0, 1.0).astype(np.float32)
    if kind == 1:
        bgr = cv2.cvtColor(_to_uint8(image), cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
        decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
        assert ok and decoded is not None  # an in-memory uint8 image always encodes and decodes
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.5, 2.0)), borderType=cv2.BORDER_REFLECT)


# ---- modules -----------------------------------------------------------------------------------------------
def _inside(mask: np.ndarray) -> np.ndarray:
    return (np.asarray(mask) > 0)[..., None]


def background_color(x_gen: Image, x_gt: Image, mask: np.ndarray, rng: np.random.Generator):
    """Background colour augmentation: the photo gets a colour shift, the fill does not (region: outside)."""
    shifted = color_shift(x_gt, rng)
    return np.where(_inside(mask), x_gen, shifted), shifted


TEXTURE_SIDES = ("foreground", "background", "both")


def texture(
    x_gen: Image, x_gt: Image, mask: np.ndarray, rng: np.random.Generator, *, side: str | None = None
):
    """Noise / JPEG / blur on the foreground, the background, or each independently (region: ``side``, drawn
    uniformly from :data:`TEXTURE_SIDES` when not given)."""
    inside = _inside(mask)
    side = side or TEXTURE_SIDES[int(rng.integers(0, 3))]
    if side in ("background", "both"):
        x_gt = degrade_texture(x_gt, rng)
        x_gen = np.where(inside, x_gen, x_gt)
    if side in ("foreground", "both"):
        x_gen = np.where(inside, degrade_texture(x_gen, rng), x_gen)
    return x_gen, x_gt


def content_discontinuity(
    x_gen: Image, x_gt: Image, mask: np.ndarray, rng: np.random.Generator, *, inpainter: str = "telea"
):
    """A band straddling the mask edge is re-filled by erasekit's classical inpainter (``telea`` or
    ``patchmatch``); only its inside part is kept (region: inside)."""
    from ...registry import load_remover
    from ...types import RemovalRequest

    width = int(rng.integers(2, max(3, min(mask.shape) // 16)))
    hard = (np.asarray(mask) > 0).astype(np.float32)
    band = np.clip(M.dilate(hard, width) - M.erode(hard, width), 0.0, 1.0)
    request = RemovalRequest(image=_to_uint8(x_gen), mask=band, seed=int(rng.integers(0, 2**31)))
    filled = load_remover(inpainter)(request).image.astype(np.float32) / 255.0
    keep = (band > 0)[..., None] & _inside(mask)
    return np.where(keep, filled, x_gen), x_gt


def foreground_color(x_gen: Image, x_gt: Image, mask: np.ndarray, rng: np.random.Generator):
    """Foreground colour augmentation: a colour shift of the fill (region: inside)."""
    return np.where(_inside(mask), color_shift(x_gen, rng), x_gen), x_gt


def vae_round_trip(x_gen: Image, x_gt: Image, mask: np.ndarray, rng: np.random.Generator, *, vae: Any):
    """VAE compression: ``vae`` (any diffusers ``AutoencoderKL``) encodes and decodes the image; the decoded
    pixels replace the fill (region: inside). Padded to the VAE's multiple of 8 (reflect)."""
    import torch

    height, width = x_gen.shape[:2]
    pad_h, pad_w = -height % 8, -width % 8
    padded = np.pad(
        x_gen, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect" if min(height, width) > 8 else "edge"
    )
    parameter = next(vae.parameters())
    tensor = torch.from_numpy(np.ascontiguousarray(padded)).permute(2, 0, 1)[None]
    tensor = tensor.to(device=parameter.device, dtype=parameter.dtype) * 2.0 - 1.0
    with torch.no_grad():
        latents = vae.encode(tensor).latent_dist.mode()
        decoded = vae.decode(latents).sample
    out = ((decoded[0].float().clamp(-1, 1) + 1.0) / 2.0).permute(1, 2, 0).cpu().numpy()[:height, :width]
    return np.where(_inside(mask), out.astype(np.float32), x_gen), x_gt


def boundary_mixing(x_gen: Image, x_gt: Image, mask: np.ndarray, rng: np.random.Generator):
    """Soft / hard seams: the artifacts are blended in through the mask dilated or eroded by a few pixels and
    Gaussian-blurred with a random kernel (σ 0 = hard … 4 px);
    outside the mask x_gen stays (region: inside)."""
    hard = (np.asarray(mask) > 0).astype(np.float32)
    pixels = int(rng.integers(0, 6))
    composition = M.dilate(hard, pixels) if rng.random() < 0.5 else M.erode(hard, pixels)
    sigma = float(rng.uniform(0.0, 4.0))
    if sigma > 0.3:
        composition = cv2.GaussianBlur(composition, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)
    alpha = composition[..., None]
    mixed = (alpha * x_gen + (1.0 - alpha) * x_gt).astype(np.float32)
    return np.where(_inside(mask), mixed, x_gen), x_gt


# ---- the pipeline ------------------------------------------------------------------------------------------
@dataclass
class SimulatedPair:
    x_gen: Image  # the simulated edit, float32 H×W×3 in [0, 1]
    x_gt: Image  # its truth
    mask: np.ndarray  # float32 H×W in {0, 1}
    applied: tuple[str, ...]  # the modules that fired, in order


def simulate_artifacts(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    vae: Any = None,
    inpainter: str = "telea",
    probabilities: dict[str, float] | None = None,
) -> SimulatedPair:
    """One training pair from a clean uint8 (or [0, 1] float) photo and a mask; see the module docstring.

    Without ``vae`` the VAE module never fires (its draw is still made, so the other modules' randomness does
    not
    depend on whether a VAE is given)."""
    p = {**PROBABILITIES, **(probabilities or {})}
    clean = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    hard = (np.asarray(mask) > 0).astype(np.float32)
    modules: list[tuple[str, Module]] = [
        ("background_color", background_color),
        ("texture", texture),
        ("content_discontinuity", lambda g, t, m, r: content_discontinuity(g, t, m, r, inpainter=inpainter)),
        ("foreground_color", foreground_color),
        ("vae", lambda g, t, m, r: vae_round_trip(g, t, m, r, vae=vae)),
        ("boundary_mixing", boundary_mixing),
    ]
    x_gen, x_gt, applied = clean.copy(), clean.copy(), []
    for name, module in modules:
        fires = rng.random() < p[name]
        if fires and not (name == "vae" and vae is None):
            x_gen, x_gt = module(x_gen, x_gt, hard, rng)
            applied.append(name)
    return SimulatedPair(x_gen.astype(np.float32), x_gt.astype(np.float32), hard, tuple(applied))


def _to_uint8(image: Image) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def write_sample_sheet(image: np.ndarray, path: str, *, seed: int = 0, vae: Any = None) -> str:
    """A PNG sheet, one row per artifact module forced on (plus the full pipeline):
    x_gt | x_gen | |diff|×8."""
    rng = np.random.default_rng(seed)
    mask = free_form_mask(image.shape[:2], rng, hole_range=(0.15, 0.3))
    rows = []
    names = [n for n in PROBABILITIES if n != "vae" or vae is not None] + ["all"]
    for name in names:
        only = {n: (1.0 if n == name or name == "all" else 0.0) for n in PROBABILITIES}
        pair = simulate_artifacts(image, mask, np.random.default_rng(seed + 1), vae=vae, probabilities=only)
        diff = np.clip(np.abs(pair.x_gen - pair.x_gt) * 8.0, 0.0, 1.0)
        rows.append(np.concatenate([pair.x_gt, pair.x_gen, diff], axis=1))
    sheet = _to_uint8(np.concatenate(rows, axis=0))
    cv2.imwrite(path, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path


__all__ = ["PROBABILITIES", "TEXTURE_SIDES", "SimulatedPair", "background_color", "blob_alpha",
           "boundary_mixing", "color_jitter", "color_shift", "content_discontinuity", "degrade_texture",
           "foreground_color", "free_form_mask", "gradient_alpha", "simulate_artifacts", "texture",
           "vae_round_trip", "write_sample_sheet"]

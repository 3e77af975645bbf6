"""OSOR inference numerics: how much each of the authors' numerics (the defaults) moves the output against the
choice erasekit made before (the OSOR fidelity issue, items 15-20), on the tiny Phase II weights.

Each row runs the same scene twice on the same tiny backbone, seed and weights, changing one thing: the new
default against the old behaviour. Columns: the largest change of any pixel (0-255 levels) and the share of
pixels that changed, over the image as users get it (pasted back through mask ∪ alpha). The tiny models are
random, so the sizes say how large a rounding-level change can get through a VAE, not what a real
checkpoint shows; the zero rows are exact.

The "old" paths are re-created here, not kept in the package: x̂0 and the blend in the model dtype (a 0-d ᾱ_t),
the flow noising with coefficients rounded to the model dtype, x̂0 = z_s - s·v with s in float32.

Run:  python benchmarks/osor_numerics.py [--size 96]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image

from erasekit.backbones import latents as L
from erasekit.backbones import schedule as S
from erasekit.demo import demo_photos
from erasekit.methods.osor import engine as E
from erasekit.methods.osor.alpha_head import split_output
from erasekit.methods.osor.remover import REMOVERS
from erasekit.testing import tiny_pipeline
from erasekit.testing.osor import TINY_BACKBONE, official_state_dict_for
from erasekit.types import RemovalRequest


def scene(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A demo photo at ``size`` px wide, its binary mask and the same mask after a JPEG round trip (/255)."""
    photo = demo_photos()[0]
    pixels = photo.pixels()
    h = round(size * pixels.shape[0] / pixels.shape[1])
    image = np.asarray(Image.fromarray(pixels).resize((size, h), Image.Resampling.BICUBIC))
    mask8 = Image.fromarray((photo.mask(pixels.shape[:2]) > 0).astype(np.uint8) * 255)
    binary = (np.asarray(mask8.resize((size, h), Image.Resampling.NEAREST)) > 0).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray((binary * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=75)
    jpeg = np.asarray(Image.open(buffer).convert("L"), dtype=np.float32) / 255.0
    return image, binary, jpeg


def remover(family: str, dtype: torch.dtype, weights_dir, **kwargs):
    path = weights_dir / f"{family}.pth"
    if not path.exists():
        torch.save(official_state_dict_for(family, phase=2), path)  # type: ignore[arg-type]
    pipe = copy.deepcopy(tiny_pipeline(TINY_BACKBONE[family])).to(dtype)
    return REMOVERS[family](pipeline=pipe, weights=path, **kwargs)


# ---- the old behaviours ------------------------------------------------------------------------------------
@contextlib.contextmanager
def old_sdxl_x0_and_blend() -> Iterator[None]:
    """x̂0 from a 0-d ᾱ_t (stays in the model dtype) and the blend in that dtype."""
    original = E.SDXLEngine.denoise

    def denoise(self, z_lq, noise, mask, timestep):
        steps = torch.full((z_lq.shape[0],), timestep, dtype=torch.long, device=z_lq.device)
        z_t = S.add_noise(self.scheduler, z_lq, noise, steps)
        out = self.denoiser(**self.conditioning(z_t, z_lq, mask, timestep), return_dict=False)[0]
        eps, logits = split_output(out, "sdxl")
        cfg = self.scheduler.config
        clip = cfg.clip_sample_range if getattr(cfg, "clip_sample", False) else None
        x0 = S.predict_x0(eps, z_t, timestep, "epsilon", schedule=self.scheduler, clip_sample_range=clip)
        return z_t, x0, logits

    E.SDXLEngine.denoise = denoise  # type: ignore[method-assign]
    try:
        yield
    finally:
        E.SDXLEngine.denoise = original  # type: ignore[method-assign]


@contextlib.contextmanager
def old_flux(noising: bool, x0: bool) -> Iterator[None]:
    """FLUX's old noising (coefficients rounded to the model dtype) and/or old x̂0 (s in float32)."""
    original = E.FluxEngine.denoise

    def denoise(self, z_lq, noise, mask, timestep, guidance=None):
        hw = tuple(z_lq.shape[-2:])
        z, n = L.pack_latents(z_lq), L.pack_latents(noise)
        level = torch.full((z.shape[0],), timestep) if noising else float(timestep)
        z_t = S.flow_noise(z, n, level)
        out = self.denoiser(**self.conditioning(z_t, z_lq, mask, timestep, guidance), return_dict=False)[0]
        v, logits = split_output(out, "flux")
        if x0:
            x0_packed = S.predict_x0(v, z_t, timestep, "flow")
        else:
            x0_packed = z_t - torch.full((z_t.shape[0], 1, 1), timestep, dtype=z_t.dtype) * v
        unpacked = None if logits is None else L.unpack_latents(logits, hw)
        return L.unpack_latents(z_t, hw), L.unpack_latents(x0_packed, hw), unpacked

    E.FluxEngine.denoise = denoise  # type: ignore[method-assign]
    try:
        yield
    finally:
        E.FluxEngine.denoise = original  # type: ignore[method-assign]


# ---- the table ---------------------------------------------------------------------------------------------
def difference(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    delta = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)
    return int(delta.max()), float((delta > 0).mean() * 100)


def main() -> None:
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96, help="scene width in pixels")
    args = parser.parse_args()
    image, binary, jpeg = scene(args.size)
    request = RemovalRequest(image, binary, seed=0)
    rows: list[tuple[str, str, str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        def run(r, req=request, layout: str = "channels_last") -> np.ndarray:
            r.engine.input_layout = layout
            return r(req).image

        for family in ("sdxl", "flux"):
            for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
                default = remover(family, dtype, folder)
                merged = remover(family, dtype, folder, merge_lora=True)
                unmerged = remover(family, dtype, folder, merge_lora=False)
                if family == "sdxl" and name == "bf16":
                    with old_sdxl_x0_and_blend():
                        old = run(default)
                    rows.append((family, name, "x̂0 + blend in fp32 (item 15) vs model dtype",
                                 *difference(run(default), old)))
                if family == "flux" and name == "bf16":
                    with old_flux(noising=True, x0=False):
                        old = run(default)
                    rows.append((family, name, "noising 0.6/0.4 exact (item 16) vs rounded",
                                 *difference(run(default), old)))
                    with old_flux(noising=False, x0=True):
                        old = run(default)
                    rows.append((family, name, "x̂0 with bf16 s (authors) vs fp32 s",
                                 *difference(run(default), old)))
                rows.append((family, name, "LoRA unmerged (item 17) vs merged",
                             *difference(run(unmerged), run(merged))))
                soft = RemovalRequest(image, jpeg, seed=0)
                binarised = RemovalRequest(image, jpeg, seed=0, options={"soft_mask": False})
                rows.append((family, name, "soft JPEG mask (item 18) vs binarised",
                             *difference(run(default, soft), run(default, binarised))))
                rows.append((family, name, "channels_last input (item 20) vs contiguous",
                             *difference(run(default), run(default, layout="contiguous"))))
    region = float((binary > 0).mean() * 100)
    print(f"scene {image.shape[1]}×{image.shape[0]}, mask {region:.1f} % of the pixels, "
          "tiny Phase II weights, seed 0, CPU")
    print(f"{'backbone':9} {'dtype':5} {'change (new vs old)':46} {'max Δ levels':>12} {'pixels ≠ %':>10}")
    for family, name, change, levels, share in rows:
        print(f"{family:9} {name:5} {change:46} {levels:12d} {share:10.2f}")


if __name__ == "__main__":
    main()

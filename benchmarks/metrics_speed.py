"""Images per second of erasekit's FID and LPIPS paths vs direct torchmetrics calls with the same networks.

    python benchmarks/metrics_speed.py [--n 16] [--size 256] [--device cpu] [--batch 8]

FID: erasekit's :class:`FIDMetric` (one image per update, ground-truth features cached across methods,
features handed to torchmetrics through an identity module) vs
``torchmetrics.image.fid.FrechetInceptionDistance`` with the same :class:`FIDInceptionV3` as ``feature=`` and
batched updates. LPIPS: erasekit's :class:`LPIPSMetric` (one pair per call) vs torchmetrics' LPIPS module with
the same AlexNet trunk and v0.1 heads, batched. Randomly initialised networks of the real architectures are
used (no weights are downloadable here); speed does not depend on the weight values. Both paths produce the
same numbers, which the table's last column checks.

torchmetrics' LPIPS builds its trunk with torchvision, which cannot be installed beside our CPU torch; this
script gives it the same AlexNet through a minimal ``torchvision.models`` stand-in (benchmark only).
"""

from __future__ import annotations

import argparse
import sys
import time
import types

import numpy as np
import skimage.data
import torch
from PIL import Image


def _images(n: int, size: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    rng = np.random.default_rng(seed)
    real, fake = [], []
    for i in range(n):
        p = np.asarray(Image.fromarray(photos[i % len(photos)]).resize((size, size), Image.BICUBIC))
        real.append(p)
        fake.append(np.clip(p.astype(np.int16) + rng.integers(-20, 21, p.shape), 0, 255).astype(np.uint8))
    return real, fake


def _random_state(module: torch.nn.Module, seed: int) -> dict:
    """PyTorch's default initialisation of ``module``'s architecture under a fixed seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return type(module)().state_dict()


def _timed(fn) -> tuple[float, object]:
    fn()  # warm-up (allocations, first kernels)
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def bench_fid(real, fake, device: str, batch: int):
    from torchmetrics.image.fid import FrechetInceptionDistance

    from erasekit.eval.metrics import FIDMetric, Sample
    from erasekit.eval.networks import FIDInceptionV3

    net = FIDInceptionV3()
    net.load_weights(_random_state(net, 0))
    net = net.to(device)
    mask = np.ones(real[0].shape[:2], np.float32)

    def ours():
        metric = FIDMetric(net, device, which=("fid",))
        for i, (r, f) in enumerate(zip(real, fake)):
            metric.update(Sample(str(i), f, r, mask, r))
        return metric.compute()["fid"]

    def direct():
        fid = FrechetInceptionDistance(feature=net, normalize=False).to(device)
        for i in range(0, len(real), batch):
            fid.update(
                torch.from_numpy(np.stack(real[i : i + batch])).permute(0, 3, 1, 2).to(device), real=True
            )
            fid.update(
                torch.from_numpy(np.stack(fake[i : i + batch])).permute(0, 3, 1, 2).to(device), real=False
            )
        return float(fid.compute())

    return _timed(ours), _timed(direct)


def bench_lpips(real, fake, device: str, batch: int):
    import torchmetrics.functional.image.lpips as tml

    from erasekit.eval.metrics import LPIPSMetric, Sample
    from erasekit.eval.networks import AlexNetTrunk, LPIPSAlex

    trunk = _random_state(AlexNetTrunk(), 1)
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(AlexNetTrunk.CHANNELS)}
    ours_net = LPIPSAlex().load_weights(trunk, heads).to(device)

    def alexnet(pretrained=False, weights=None, **_):
        net = AlexNetTrunk()
        net.load_state_dict(trunk)
        return net

    models = types.ModuleType("torchvision.models")
    models.alexnet, models.AlexNet_Weights = alexnet, types.SimpleNamespace(DEFAULT=None)
    tv = types.ModuleType("torchvision")
    tv.models = models
    sys.modules.setdefault("torchvision", tv)
    sys.modules.setdefault("torchvision.models", models)
    tml._TORCHVISION_AVAILABLE = True
    ref = tml._LPIPS(pretrained=False, net="alex").eval()
    ref.load_state_dict(heads, strict=False)
    ref = ref.to(device)
    mask = np.ones(real[0].shape[:2], np.float32)

    def ours():
        metric = LPIPSMetric(ours_net, device)
        return float(
            np.mean(
                [
                    metric.update(Sample(str(i), f, r, mask, r))["lpips"]
                    for i, (r, f) in enumerate(zip(real, fake))
                ]
            )
        )

    def direct():
        vals = []
        with torch.no_grad():
            for i in range(0, len(real), batch):
                a = (
                    torch.from_numpy(np.stack(fake[i : i + batch])).permute(0, 3, 1, 2).float().to(device)
                    / 127.5
                    - 1
                )
                b = (
                    torch.from_numpy(np.stack(real[i : i + batch])).permute(0, 3, 1, 2).float().to(device)
                    / 127.5
                    - 1
                )
                vals.append(ref(a, b).flatten().cpu())
        return float(torch.cat(vals).mean())

    return _timed(ours), _timed(direct)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=16, help="image pairs")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8, help="batch size of the direct torchmetrics calls")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    real, fake = _images(args.n, args.size, 0)
    print(
        f"{args.n} pairs of {args.size}x{args.size} images, device {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print("| metric | path | images/s | value |\n|---|---|---|---|")
    for name, fn in (("FID", bench_fid), ("LPIPS", bench_lpips)):
        (t_ours, v_ours), (t_direct, v_direct) = fn(real, fake, args.device, args.batch)
        images = 2 * args.n if name == "FID" else args.n  # FID embeds real and fake images
        print(
            f"| {name} | erasekit ({'per image' if name == 'LPIPS' else 'batched by size, GT cache'}) | "
            f"{images / t_ours:.2f} | {v_ours:.6g} |"
        )
        print(
            f"| {name} | torchmetrics direct (batch {args.batch}) | "
            f"{images / t_direct:.2f} | {v_direct:.6g} |"
        )


if __name__ == "__main__":
    main()

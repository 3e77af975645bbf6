"""Which metrics a benchmark computes, and how each one's network is found.

``build_suite(names, ...)`` loads each metric's networks once and returns a :class:`MetricFactory` per metric
(fresh accumulators per method × mask run) or, when its weights are missing, an "unavailable" entry with the
reason — metrics are never silently skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..types import ErasekitError, InvalidInputError
from . import features as FT
from .metrics import (
    CLIPRemovalMetric,
    CMMDMetric,
    FIDMetric,
    LocalFIDMetric,
    LPIPSMetric,
    Metric,
    PixelMetrics,
)

# metric name -> the columns it produces
METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "psnr": ("psnr",), "ssim": ("ssim",), "psnr_mask": ("psnr_mask",), "ssim_mask": ("ssim_mask",),
    "lpips": ("lpips",), "fid": ("fid",), "kid": ("kid",), "local_fid": ("local_fid",), "cmmd": ("cmmd",),
    "cfd": ("cfd",), "clip": ("clip_dist", "clip_acc@1", "clip_acc@3", "clip_acc@5"),
    "ids": ("u_ids", "p_ids"), "musiq": ("musiq",), "maniqa": ("maniqa",), "l1": ("l1",),
}
DEFAULT_METRICS = ("fid", "cmmd", "lpips", "psnr", "ssim", "cfd")  # OSOR Table 1's columns
LOWER_IS_BETTER = {"fid", "kid", "local_fid", "cmmd", "lpips", "cfd", "l1"}


@dataclass
class MetricFactory:
    name: str
    make: Callable[[], Metric] | None
    columns: tuple[str, ...]
    unavailable: str | None = None
    weights: list[dict] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    needs_target: bool = True


def parse_metrics(text: str | list[str]) -> list[str]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in METRIC_COLUMNS]
    if unknown:
        raise InvalidInputError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRIC_COLUMNS)}")
    if not names:
        raise InvalidInputError("no metrics requested")
    return list(dict.fromkeys(names))


def build_suite(names: list[str], *, weights: dict[str, str] | None = None, device: str = "cpu",
                networks: dict[str, FT.Loaded] | None = None, cfd_reference_quirks: bool = False,
                clip_classes: list[str] | None = None) -> dict[str, MetricFactory]:
    """The metric factories for ``names``.

    ``weights``: explicit paths by weight key (see :data:`erasekit.eval.weights.METRIC_WEIGHTS`);
    ``networks``: already loaded networks by the same keys (used instead of loading).
    """

    weights, networks = dict(weights or {}), dict(networks or {})

    def net(key: str, loader: Callable[..., FT.Loaded], *args) -> FT.Loaded:
        if key not in networks:
            networks[key] = loader(*args)
        return networks[key]

    suite: dict[str, MetricFactory] = {}
    pixel = [n for n in names if n in ("psnr", "ssim", "psnr_mask", "ssim_mask")]
    fid_real_cache: dict = {}
    for name in names:
        cols = METRIC_COLUMNS[name]
        try:
            if name in pixel:
                suite[name] = MetricFactory(
                    name, partial(PixelMetrics, (name,)), cols, settings=PixelMetrics().settings()
                )
            elif name == "lpips":
                loaded = net(
                    "lpips",
                    lambda: FT.load_lpips(
                        weights.get("alexnet"), weights.get("lpips-alex-v0.1"), device=device
                    ),
                )
                suite[name] = MetricFactory(
                    name,
                    partial(LPIPSMetric, loaded.model, device, loaded.fingerprint()),
                    cols,
                    weights=[w.as_dict() for w in loaded.weights],
                    settings={"net": "alex", "version": "0.1"},
                )
            elif name == "kid" and "fid" in names:
                # One feature pass serves both: the fid metric also reports kid (see the fid entry).
                suite[name] = MetricFactory(name, None, cols, settings={"computed_with": "fid"})
            elif name in ("fid", "kid", "local_fid"):
                loaded = net(
                    "inception-fid",
                    lambda: FT.load_fid_inception(weights.get("inception-fid"), device=device),
                )
                cls = LocalFIDMetric if name == "local_fid" else FIDMetric
                which = ("fid", "kid") if name == "fid" and "kid" in names else (name,)
                suite[name] = MetricFactory(
                    name,
                    partial(
                        cls,
                        loaded.model,
                        device,
                        loaded.fingerprint(),
                        real_cache=fid_real_cache,
                        which=which,
                    ),
                    cols,
                    weights=[w.as_dict() for w in loaded.weights],
                    settings=cls(loaded.model).settings(),
                )
            elif name == "cmmd":
                loaded = net(
                    "clip-vit-l14-336",
                    lambda: FT.load_clip("clip-vit-l14-336", weights.get("clip-vit-l14-336"), device=device),
                )
                size = loaded.settings["image_size"]
                suite[name] = MetricFactory(
                    name,
                    partial(CMMDMetric, loaded.model, size, device, loaded.fingerprint()),
                    cols,
                    weights=[w.as_dict() for w in loaded.weights],
                    settings=CMMDMetric(None, size).settings(),
                )
            elif name == "cfd":
                from .cfd import CFDMetric

                dino = net("dinov2-giant", lambda: FT.load_dinov2(weights.get("dinov2-giant"), device=device))
                sam = net("sam-vit-huge", lambda: FT.load_sam(weights.get("sam-vit-huge"), device=device))
                fp = f"{dino.fingerprint()}+{sam.fingerprint()}"
                make_cfd = partial(
                    CFDMetric,
                    dino.model,
                    sam.model,
                    sam.extra["processor"],
                    device=device,
                    fingerprint=fp,
                    reference_quirks=cfd_reference_quirks,
                )
                suite[name] = MetricFactory(
                    name,
                    make_cfd,
                    cols,
                    weights=[w.as_dict() for w in dino.weights + sam.weights],
                    settings={"reference_quirks": cfd_reference_quirks},
                    needs_target=False,
                )
            elif name == "l1":
                from .l1 import L1Metric

                suite[name] = MetricFactory(name, L1Metric, cols, settings=L1Metric().settings())
            elif name == "ids":
                from .ids import IDSMetric

                loaded = net(
                    "inception-fid",
                    lambda: FT.load_fid_inception(weights.get("inception-fid"), device=device),
                )
                suite[name] = MetricFactory(
                    name,
                    partial(IDSMetric, loaded.model, device, loaded.fingerprint()),
                    cols,
                    weights=[w.as_dict() for w in loaded.weights],
                    settings=IDSMetric(None).settings(),
                )
            elif name in ("musiq", "maniqa"):
                from .noref import NoReferenceMetric, load_noref

                model = net(
                    name,
                    partial(lambda n: FT.Loaded(load_noref(n, weights.get(n), device=device), []), name),
                )
                suite[name] = MetricFactory(
                    name,
                    partial(NoReferenceMetric, name, model.model, device),
                    cols,
                    settings=NoReferenceMetric(name, None).settings(),
                    needs_target=False,
                )
            elif name == "clip":
                loaded = net(
                    "clip-vit-b32",
                    lambda: FT.load_clip(
                        "clip-vit-b32", weights.get("clip-vit-b32"), device=device, with_text=True
                    ),
                )
                if not clip_classes:
                    raise InvalidInputError(
                        "CLIP accuracy needs object classes: the dataset has no labels and "
                        "no --clip-classes were given"
                    )
                make_clip = partial(
                    CLIPRemovalMetric,
                    loaded.model,
                    loaded.extra["tokenizer"],
                    clip_classes,
                    device,
                    loaded.fingerprint(),
                )
                suite[name] = MetricFactory(
                    name,
                    make_clip,
                    cols,
                    weights=[w.as_dict() for w in loaded.weights],
                    settings={"classes": len(clip_classes)},
                    needs_target=False,
                )
        except ErasekitError as exc:
            suite[name] = MetricFactory(name, None, cols, unavailable=str(exc))
    if "kid" in suite and suite["kid"].settings.get("computed_with") == "fid":
        fid = suite["fid"]
        suite["kid"].unavailable, suite["kid"].weights = fid.unavailable, fid.weights
    return suite

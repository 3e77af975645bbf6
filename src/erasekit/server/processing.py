"""The work of one API call outside the model: decode and validate the upload, build the RemovalRequest, and
encode the result. Kept apart from the routes so /remove and /jobs share it exactly.
"""

from __future__ import annotations

import base64
import io as _io
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import io
from ..chain import parse_chain
from ..refiners import parse_refine
from ..registry import check_call, get_method, load_options, resolve_auto
from ..types import InvalidInputError, RemovalRequest, RemovalResult
from .schemas import MEDIA_TYPES, RemoveResponse
from .settings import ServerSettings
from .uploads import RemoveInput


@dataclass
class PreparedJob:
    method: str
    request: RemovalRequest
    source: io.LoadedImage
    output_format: str
    quality: int | None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class EncodedResult:
    method: str
    width: int
    height: int
    image: bytes
    image_format: str
    alpha_png: bytes | None
    unchanged: bool
    timings: dict[str, float]
    metadata: dict[str, Any]

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.image_format]

    def to_response(self) -> RemoveResponse:
        return RemoveResponse(
            method=self.method, width=self.width, height=self.height,
            image=base64.b64encode(self.image).decode("ascii"), image_format=self.image_format,  # type: ignore[arg-type]
            alpha=base64.b64encode(self.alpha_png).decode("ascii") if self.alpha_png is not None else None,
            unchanged=self.unchanged, timings=self.timings, metadata=self.metadata)

    def headers(self) -> dict[str, str]:
        return {
            "X-Erasekit-Method": self.method,
            "X-Erasekit-Timings": json.dumps(self.timings),
            "Content-Disposition": (
                f'inline; filename="erasekit-result.{self.image_format.replace("jpeg", "jpg")}"'
            ),
        }


def choose_method(requested: str | None, settings: ServerSettings, mask_given: bool) -> str:
    name = requested or settings.default_method
    if name == "auto":
        return resolve_auto(mask_given=mask_given)
    get_method(name)  # UnknownMethodError (422) for names nobody registered
    return name


def prepare(upload: RemoveInput, settings: ServerSettings) -> PreparedJob:
    """Decode and check everything before the job takes a queue slot.

    Runs in a worker thread: decoding is CPU-bound.
    """
    t0 = time.perf_counter()
    opts = upload.options
    chain = parse_chain(opts.method or settings.default_method)  # "telea+poisson" (erasekit.chain)
    method = choose_method(chain.method, settings, upload.mask is not None)
    spec = get_method(method)
    # Factory options (model, weights, device, ...) can name server paths: clients may not set them, unless
    # the method also declares the same name per call (patchmatch's patch_size), which is plain data.
    server_side = set(opts.options) & (load_options(spec) - set(spec.call_options or ()))
    if server_side:
        raise InvalidInputError(
            f"option(s) {', '.join(sorted(server_side))} of {method!r} are set when the server "
            "starts, not per request"
        )
    # The method's own declaration, as for the CLI and the API; checked before the job takes a queue slot
    # (the remover would say the same, but only after loading its model). Python-only options (progress) are
    # refused.
    options = check_call(spec, dict(opts.options), prompt=opts.prompt, from_python=False)
    refiners = parse_refine(chain.refine(opts.refine))  # an unknown refiner: 422 before anything is decoded
    source = io.read_image(upload.image, max_pixels=settings.max_pixels)
    mask = None
    if upload.mask is not None:
        mask = io.read_mask(
            upload.mask,
            shape=source.pixels.shape[:2],
            resize=opts.resize_mask,
            max_pixels=settings.max_pixels,
        )
    elif spec.requires_mask:
        raise InvalidInputError(f"method {method!r} needs a mask (send a 'mask' along with the image)")
    request = RemovalRequest(
        image=source.pixels,
        mask=mask,
        prompt=opts.prompt,
        seed=opts.seed,
        dilate=opts.dilate,
        hd_strategy=opts.hd_strategy,
        refine=refiners,
        options=options,
    )
    return PreparedJob(
        method, request, source, opts.output_format, opts.quality, {"decode": time.perf_counter() - t0}
    )


def _json_safe(value: Any) -> Any:
    """Metadata as plain JSON: numpy scalars become numbers, callables and other objects their repr."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


_PNG_COMPRESS_LEVEL = 1


def encode(job: PreparedJob, result: RemovalResult, queue_seconds: float) -> EncodedResult:
    t0 = time.perf_counter()
    fmt = job.output_format
    # Fast PNG compression: an interactive answer matters more than a few percent of bytes.
    image = io.encode_image(
        result.image,
        fmt.upper(),
        like=job.source,
        quality=job.quality,
        png_compress_level=_PNG_COMPRESS_LEVEL,
    )
    alpha_png = None
    if result.alpha is not None:
        buffer = _io.BytesIO()
        result.alpha_pil().save(buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
        alpha_png = buffer.getvalue()
    timings = {
        **job.timings,
        "queue": queue_seconds,
        **{k: float(v) for k, v in result.timings.items()},
        "encode": time.perf_counter() - t0,
    }
    height, width = result.image.shape[:2]
    return EncodedResult(
        result.method,
        width,
        height,
        image,
        fmt,
        alpha_png,
        result.unchanged,
        timings,
        _json_safe(result.metadata),
    )

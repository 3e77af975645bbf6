"""The work of one API call outside the model: decode and validate the upload, build the RemovalRequest, and
encode the result. Kept apart from the routes so /remove and /jobs share it exactly.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import dataclasses
import io as _io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import io
from ..chain import parse_chain, resolve_auto_for_prompt
from ..convert import mask_to_uint8
from ..masking import OPTION_KEYS, TextMaskOptions, text_available, text_to_mask
from ..masking.text import resolve as resolve_segmenter
from ..refiners import parse_refine
from ..refiners.registry import get_refiner
from ..registry import check_call, get_method, load_options, resolve_auto
from ..types import MASK_OR_PROMPT, InvalidInputError, RemovalRequest, RemovalResult
from .schemas import MEDIA_TYPES, RemoveResponse
from .settings import ServerSettings
from .uploads import RemoveInput

# The largest dilation a request may ask for. Dilation costs O(pixels) whatever the radius (a thresholded
# distance transform), so this only keeps requests meaningful; it is also cut at the image's longer side.
MAX_DILATE = 1024

# Mask-source options (erasekit.masking) a client may send in `options`: plain numbers and names. The
# segmenter folders (sam3, detector, segmenter) and its device are the server's: they resolve as
# erasekit.masking does by default ($ERASEKIT_MODELS_DIR, the local Hugging Face cache), never from a request,
# like refiner paths.
CLIENT_MASK_OPTIONS = frozenset({"mask_source", "instances", "score_threshold", "mask_grow"})


@dataclass
class TextMaskStep:
    """Text -> mask for a masked method given a prompt and no mask. It runs inside the job, once the job has
    started (:meth:`erasekit.server.workers.MethodWorker.run`): it is model work, so it counts against the
    job's time budget and holds its queue slot. It puts the grown mask into the request, as
    :func:`erasekit.chain.run_removal` does, and keeps the mask source's metadata."""

    prompt: str
    options: TextMaskOptions
    metadata: dict[str, Any] = field(default_factory=dict)

    def __call__(self, request: RemovalRequest) -> None:
        found = text_to_mask(request.image, self.prompt, self.options)
        request.mask = found.mask
        # Weight locations stay on the server (as in /methods): the segmenter's folders by their last name.
        self.metadata = {
            k: Path(v).name if k in _SEGMENTER_FOLDERS and isinstance(v, str) else v
            for k, v in found.metadata().items()
        }


_SEGMENTER_FOLDERS = frozenset({"model", "detector", "segmenter"})


@dataclass
class PreparedJob:
    method: str
    request: RemovalRequest
    source: io.LoadedImage
    output_format: str
    quality: int | None
    timings: dict[str, float] = field(default_factory=dict)
    text_mask: TextMaskStep | None = None

    @property
    def mask_source(self) -> dict[str, Any]:
        """``metadata["mask_source"]`` as erasekit.remove records it."""
        if self.text_mask is not None:
            return self.text_mask.metadata
        return {"source": "drawn" if self.request.mask is not None else "none"}

    def release(self) -> None:
        """Drop this record's hold on the pixels (the running job keeps its own until it ends); what
        encoding needs from the source (format, EXIF, ICC, JPEG tables) stays."""
        self.source = dataclasses.replace(self.source, pixels=np.zeros((0, 0, 3), np.uint8))


_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


def release_memory() -> None:
    """Give freed heap pages back to the system (glibc ``malloc_trim``).

    A job's arrays are freed when it ends, but glibc keeps the pages for reuse, so without this the process
    stays at its peak for good (measured: 1.7–2.6 GB after a burst of 8192² uploads).
    """
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


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
    mask_png: bytes | None = None  # the mask text -> mask made, when it made one

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.image_format]

    def to_response(self) -> RemoveResponse:
        return RemoveResponse(
            method=self.method, width=self.width, height=self.height,
            image=base64.b64encode(self.image).decode("ascii"), image_format=self.image_format,  # type: ignore[arg-type]
            alpha=base64.b64encode(self.alpha_png).decode("ascii") if self.alpha_png is not None else None,
            mask=base64.b64encode(self.mask_png).decode("ascii") if self.mask_png is not None else None,
            unchanged=self.unchanged, timings=self.timings, metadata=self.metadata)

    def headers(self) -> dict[str, str]:
        return {
            "X-Erasekit-Method": self.method,
            "X-Erasekit-Timings": json.dumps(self.timings),
            "Content-Disposition": (
                f'inline; filename="erasekit-result.{self.image_format.replace("jpeg", "jpg")}"'
            ),
        }


def choose_method(
    requested: str | None,
    settings: ServerSettings,
    mask_given: bool,
    prompt_given: bool = True,
    text: TextMaskOptions | None = None,
) -> tuple[str, bool]:
    """(method, whether text -> mask runs first). ``text``: the mask-source options when the request has a
    prompt and no mask (``auto`` then follows :func:`erasekit.chain.resolve_auto_for_prompt`)."""
    name = requested or settings.default_method
    if name == "auto":
        if not mask_given and not prompt_given:
            raise InvalidInputError(MASK_OR_PROMPT)
        if text is not None:
            return resolve_auto_for_prompt(text_available(text))
        if not mask_given:  # a target alone: only a mask-free method can use it (missing weights: 503)
            return resolve_auto_for_prompt(False)
        return resolve_auto(mask_given=mask_given), False
    spec = get_method(name)  # UnknownMethodError (422) for names nobody registered
    return name, text is not None and spec.requires_mask


def _mask_source_options(options: dict[str, Any]) -> TextMaskOptions:
    """Take the mask-source keywords out of ``options`` (in place); path-valued ones are refused."""
    server_side = sorted((set(options) & set(OPTION_KEYS)) - CLIENT_MASK_OPTIONS)
    if server_side:
        raise InvalidInputError(
            f"mask-source option(s) {', '.join(server_side)} name a path or device on the server; they are "
            "set when the server starts, not per request (per-request ones: "
            f"{', '.join(sorted(CLIENT_MASK_OPTIONS))})"
        )
    return TextMaskOptions.pop_from(options)


def prepare(upload: RemoveInput, settings: ServerSettings) -> PreparedJob:
    """Decode and check everything before the job takes a queue slot.

    Runs in a worker thread: decoding is CPU-bound.
    """
    t0 = time.perf_counter()
    opts = upload.options
    chain = parse_chain(opts.method or settings.default_method)  # "telea+poisson" (erasekit.chain)
    per_call = dict(opts.options)
    text_opts = _mask_source_options(per_call)  # erasekit.masking's keywords, as erasekit.remove takes them
    mask_given = upload.mask is not None
    method, use_text = choose_method(
        chain.method,
        settings,
        mask_given,
        bool(opts.prompt or opts.target),
        text_opts if opts.prompt and not mask_given else None,
    )
    if not use_text and text_opts != TextMaskOptions():
        raise InvalidInputError(
            "mask-source options (instances, score_threshold, mask_grow, mask_source) apply only to a prompt "
            "with no mask"
        )
    text_mask = None
    if use_text:
        assert opts.prompt is not None
        resolve_segmenter(text_opts)  # missing segmenter weights: 503 naming the fetch command, before a slot
        text_mask = TextMaskStep(opts.prompt, text_opts)
    method_prompt = None if use_text else opts.prompt  # the prompt named the mask (erasekit.chain)
    spec = get_method(method)
    # Factory options (model, weights, device, ...) can name server paths: clients may not set them, unless
    # the method also declares the same name per call (patchmatch's patch_size), which is plain data.
    server_side = set(per_call) & (load_options(spec) - set(spec.call_options or ()))
    if server_side:
        raise InvalidInputError(
            f"option(s) {', '.join(sorted(server_side))} of {method!r} are set when the server "
            "starts, not per request"
        )
    # The method's own declaration, as for the CLI and the API; checked before the job takes a queue slot
    # (the remover would say the same, but only after loading its model). Python-only options (progress) are
    # refused.
    if opts.target is not None:
        if "target" in per_call:
            raise InvalidInputError("give the target once: as the 'target' field or in 'options', not both")
        per_call["target"] = opts.target
    options = check_call(spec, per_call, prompt=method_prompt, from_python=False)
    refine = chain.refine(opts.refine)
    for entry in refine or ():
        if isinstance(entry, str):
            _refuse_server_side_refiner_options(entry)
    refiners = parse_refine(refine)  # an unknown refiner is a 422 before anything is decoded
    formats = settings.extra_formats or None  # None: $ERASEKIT_EXTRA_FORMATS decides
    source = io.read_image(upload.image, max_pixels=settings.max_pixels, extra_formats=formats)
    longer = max(source.pixels.shape[:2])
    if opts.dilate > longer:
        raise InvalidInputError(
            f"dilate {opts.dilate} is larger than the image's longer side ({longer} px); at most {longer}"
        )
    mask = soft = None
    if upload.mask is not None:
        mask, soft = io.read_mask_pair(
            upload.mask,
            shape=source.pixels.shape[:2],
            resize=opts.resize_mask,
            max_pixels=settings.max_pixels,
            extra_formats=formats,
        )
    elif spec.requires_mask and text_mask is None:
        raise InvalidInputError(
            f"method {method!r} needs a mask (send a 'mask' along with the image, or a 'prompt' naming "
            "what to remove)"
        )
    request = RemovalRequest(
        image=source.pixels,
        mask=mask,
        prompt=method_prompt,
        seed=opts.seed,
        dilate=opts.dilate,
        hd_strategy=opts.hd_strategy,
        refine=refiners,
        options=options,
        # soft values only for methods that condition on them (OSOR); see RemovalRequest.soft_mask
        soft_mask=soft if getattr(spec.factory, "consumes_soft_mask", False) else None,
    )
    return PreparedJob(
        method,
        request,
        source,
        opts.output_format,
        opts.quality,
        {"decode": time.perf_counter() - t0},
        text_mask,
    )


# Refiner options a client may set are plain numbers and booleans; text values (a weights folder, a device)
# would let a client name server paths or hardware, so they are set when the server starts, never per request.
def _refuse_server_side_refiner_options(refine: str | None) -> None:
    for entry in (refine or "").split(","):
        name, *items = (part.strip() for part in entry.split(":"))
        for item in items:
            key, _, raw = item.partition("=")
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
            if isinstance(value, str) or value is None:
                get_refiner(name)  # an unknown refiner says so first
                raise InvalidInputError(
                    f"refiner option {name}:{key.strip()} takes a path or name on the server; it is set when "
                    "the server starts, not per request (per-request refiner options are numbers or booleans)"
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
    mask_png = None
    if job.text_mask is not None and job.request.mask is not None:
        buffer = _io.BytesIO()
        eight = mask_to_uint8(np.asarray(job.request.mask, np.float32))  # as io.write_mask (--save-mask)
        Image.fromarray(eight, "L").save(buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
        mask_png = buffer.getvalue()
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
        _json_safe({**result.metadata, "mask_source": job.mask_source}),
        mask_png,
    )

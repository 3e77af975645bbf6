"""The API's request and response models. Every field is documented (it shows in /openapi.json and /docs) and
every request model forbids unknown fields, so a misspelt option is a 422, never silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_PHOTO_FORMATS = "the photo: PNG, JPEG, WebP, TIFF, BMP or GIF (HEIF/AVIF with a plugin)"
OutputFormat = Literal["png", "jpeg", "webp"]
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

# Per-call method options are scalars (steps, guidance, strength, patch_size, ...). Anything richer is a 422.
OptionValue = bool | int | float | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RemoveOptions(_Strict):
    """How to remove: the method and its settings. Shared by the JSON body and the multipart form."""

    method: str | None = Field(
        None,
        max_length=64,
        description="method name from GET /api/v1/methods; 'auto' picks "
        "the best available; omitted: the server's default (`erasekit serve --method`)",
        examples=["patchmatch"],
    )
    dilate: int = Field(
        0, ge=0, le=1024,
        description="grow the mask by this many pixels before removing (at most the image's longer side)",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=2**63 - 1,
        description="random seed; the same seed gives the same result on the same device",
    )
    prompt: str | None = Field(
        None,
        max_length=2000,
        description="text prompt (diffusion and text-guided methods); with a masked method and no mask, "
        "what to remove: the server segments it first (text -> mask, SAM 3 or Grounding DINO + SAM 2)",
    )
    target: str | None = Field(
        None,
        max_length=200,
        description="the word(s) naming what to remove, for methods that take a target (magicremover); "
        "the same as options.target",
    )
    hd_strategy: str | None = Field(
        None,
        pattern=r"^(original|crop(:\d{1,5})?|resize(:\d{1,5})?)$",
        description="large-image strategy: original | resize[:LIMIT] | crop[:MARGIN]; "
        "omitted: the method's default",
    )
    refine: str | None = Field(
        None,
        max_length=256,
        description="refiner(s) from GET /api/v1/methods run on "
        "the method's output before paste-back, comma-separated, in order; options as "
        "NAME:KEY=VALUE; an unknown name is a 422",
        examples=["color-match,poisson"],
    )
    resize_mask: bool = Field(
        False,
        description="accept a mask of another size than the image (nearest resize); "
        "otherwise a size mismatch is a 422",
    )
    output_format: OutputFormat = Field(
        "png", description="encoding of the result image; the alpha is always PNG"
    )
    quality: int | None = Field(
        None, ge=1, le=100, description="JPEG/WebP quality (default: the source's JPEG settings, else 95)"
    )
    options: dict[str, OptionValue] = Field(
        default_factory=dict,
        max_length=32,
        description='method-specific per-call options, e.g. {"steps": 20} for '
        'diffusion methods or {"patch_size": 5} for patchmatch; unknown ones are '
        "a 422. Model-loading options (model, weights, device) are server-side "
        "only. With a prompt and no mask, also the mask source's instances (all|largest|N), "
        "score_threshold, mask_grow and mask_source (auto|sam3|grounding-dino-sam2).",
    )


class RemoveJSONRequest(RemoveOptions):
    """POST /api/v1/remove (and /api/v1/jobs) with ``Content-Type: application/json``."""

    image: str = Field(
        ...,
        min_length=1,
        description="the photo: base64 (standard or URL-safe alphabet) or a data "
        "URL such as data:image/jpeg;base64,...; PNG, JPEG, WebP, TIFF, BMP or GIF (HEIF/AVIF with a plugin)",
    )
    mask: str | None = Field(
        None,
        description="the mask, encoded like `image`; any nonzero pixel is removed (RGBA "
        "masks use their alpha). Required unless the method is mask-free",
    )


class RemoveResponse(BaseModel):
    """The result of one removal."""

    method: str = Field(..., description="the method that ran (after resolving 'auto')")
    width: int = Field(..., description="result width in pixels (always the input's)")
    height: int = Field(..., description="result height in pixels (always the input's)")
    image: str = Field(..., description="the result, base64-encoded in `image_format`")
    image_format: OutputFormat = Field(..., description="encoding of `image`")
    alpha: str | None = Field(
        ...,
        description="base64 PNG (8-bit grey) of the region the method edited: its "
        "effect-aware alpha where it has one, else the processed (dilated) mask",
    )
    mask: str | None = Field(
        None,
        description="base64 PNG (8-bit grey, 255 = removed) of the mask the method got when the server "
        "made it from `prompt` (text -> mask: a masked method, a prompt and no mask); null for a drawn mask",
    )
    unchanged: bool = Field(..., description="true when the mask was empty and the input came back unchanged")
    timings: dict[str, float] = Field(
        ...,
        description="seconds per stage: decode, queue (waiting for the method), "
        "the method's own stages (prepare, inpaint, refine:NAME per refiner, "
        "paste, total), encode",
    )
    metadata: dict[str, Any] = Field(
        ...,
        description="settings that produced the result (seed, dilate, HD "
        "strategy, method options, the remover's description, the refiners' "
        "descriptions under `refine`)",
    )


class WeightOut(BaseModel):
    name: str = Field(..., description="what the method needs")
    description: str
    present: bool = Field(..., description="whether it resolves on the server (locations are not disclosed)")
    hub_id: str | None = Field(None, description="Hugging Face Hub id it comes from, if any")
    fetch_hint: str | None = Field(None, description="the command that fetches it on the server")


class OptionOut(BaseModel):
    """One per-call option a method declares (send it in `options`)."""

    name: str
    type: Literal["bool", "int", "float", "str"]
    default: OptionValue | None = Field(
        None,
        description="the value used when the option is not sent; null "
        "when the loaded model decides it (see default_note) or it is off",
    )
    default_note: str | None = Field(None, description="how the default is chosen when the model decides it")
    allowed: str = Field(..., description="what the option accepts, in words: its range or choices")
    range: str | None = Field(None, description="allowed interval, e.g. '[1, 1000]' or '(0, 1]'")
    choices: list[str] | None = Field(None, description="allowed values of a string option")
    help: str


class MethodOut(BaseModel):
    name: str = Field(..., description="the value to send as `method`")
    description: str
    family: str = Field(..., description="classical, diffusion, ...")
    requires_mask: bool = Field(..., description="false for mask-free (text-guided) methods")
    available: bool = Field(..., description="whether it can run on this server now")
    reason: str | None = Field(None, description="why it is unavailable")
    default: bool = Field(..., description="the method used when a request names none")
    streams_progress: bool | None = Field(
        None,
        description="whether jobs of this method report per-step progress "
        "(known once the method is loaded; null before)",
    )
    weights: list[WeightOut] = Field(default_factory=list)
    takes_prompt: bool | None = Field(
        None,
        description="whether `prompt` reaches the method (a prompt sent to one that ignores it is a "
        "422); null when the method declares nothing",
    )
    options: list[OptionOut] | None = Field(
        None,
        description="the per-call options it takes; an unknown one or a value outside its range is a "
        "422. Null when the method declares none ahead of loading",
    )


class RefinerOut(BaseModel):
    name: str = Field(..., description="the value to send in `refine`")
    description: str


class MethodsResponse(BaseModel):
    default: str = Field(..., description="the method a request without `method` gets")
    methods: list[MethodOut]
    refiners: list[RefinerOut] = Field(
        default_factory=list, description="refiners a request may name in `refine`"
    )


class QueueOut(BaseModel):
    capacity: int = Field(..., description="jobs that may run or wait at once before the server answers 503")
    in_flight: int = Field(..., description="jobs running or waiting now")
    loaded_methods: list[str] = Field(..., description="methods whose model is in memory")


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    auth: bool = Field(..., description="whether API calls need 'Authorization: Bearer <token>'")
    queue: QueueOut
    limits: dict[str, int] = Field(..., description="max_upload_bytes and max_pixels")


class JobCreated(BaseModel):
    id: str = Field(..., description="job id (unguessable)")
    status: Literal["queued", "running", "done", "error", "cancelled"]
    events_url: str = Field(
        ..., description="GET: server-sent events (queued, started, progress, done, error)"
    )
    result_url: str = Field(
        ..., description="GET: the RemoveResponse once done (?format=image for raw bytes)"
    )


class JobStatus(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "error", "cancelled"]
    method: str
    progress: dict[str, int] | None = Field(
        None, description="last {step, total} reported by a step-based method"
    )
    error: dict[str, str] | None = Field(None, description="{type, message} when status is error")


class ErrorDetail(BaseModel):
    type: str = Field(
        ...,
        description="machine-readable kind, e.g. InvalidInputError, ResourceLimitError, "
        "ServerBusyError, Unauthorized, ValidationError",
    )
    message: str = Field(..., description="one line a person can act on")


class ErrorResponse(BaseModel):
    error: ErrorDetail


# Multipart: the same options as form fields; files for image and mask; `options` as a JSON object string.
MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["image"],
    "additionalProperties": False,
    "properties": {
        "image": {"type": "string", "format": "binary", "description": _PHOTO_FORMATS},
        "mask": {
            "type": "string",
            "format": "binary",
            "description": "the mask; any nonzero pixel is removed",
        },
        **{
            name: {**schema, "description": schema.get("description", "")}
            for name, schema in RemoveOptions.model_json_schema()["properties"].items()
            if name != "options"
        },
        "options": {
            "type": "string",
            "description": 'method-specific options as a JSON object, e.g. {"steps": 20}',
        },
    },
}

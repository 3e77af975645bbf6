"""Turning a request body into (options, image bytes, mask bytes), in memory, within the size limits.

Two encodings reach the same place: ``application/json`` with base64 images (:class:`RemoveJSONRequest`) and
``multipart/form-data`` with files plus the same options as form fields. The body size is bounded while it
streams (FastAPI's ``max_body_size`` on the app), so neither path ever holds more than the limit.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from .errors import BadRequestError, UnsupportedMediaTypeError
from .schemas import RemoveJSONRequest, RemoveOptions

_FORM_FIELDS = set(RemoveOptions.model_fields)
_MAX_TEXT_FIELD = 64 * 1024


@dataclass
class RemoveInput:
    options: RemoveOptions
    image: bytes
    mask: bytes | None


class _InMemoryMultiPartParser(MultiPartParser):
    """Starlette's multipart parser with the spool size raised to the body limit.

    Starlette spools uploads above 1 MiB to a temporary file on disk; the request body is already capped at
    ``max_upload_bytes``, so with that spool size an upload never leaves memory and no temporary file exists.
    """

    def __init__(self, *args, spool_max_size: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.spool_max_size = spool_max_size


def decode_base64(value: str, what: str) -> bytes:
    """Standard or URL-safe base64, optionally as a data URL (``data:image/png;base64,...``)."""
    text = value.strip()
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise BadRequestError(f"{what}: a data URL must be base64-encoded (data:<type>;base64,<data>)")
    text = "".join(text.split())
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(f"{what} is not valid base64") from None


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_remove_input(request: Request, max_upload_bytes: int) -> RemoveInput:
    kind = media_type(request)
    if kind == "application/json":
        return await _from_json(request)
    if kind == "multipart/form-data":
        return await _from_multipart(request, max_upload_bytes)
    raise UnsupportedMediaTypeError(
        f"unsupported Content-Type {kind or '(none)'!r}; send multipart/form-data (files image, mask) or "
        "application/json (base64 image, mask)")


async def _from_json(request: Request) -> RemoveInput:
    body = await request.body()
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequestError(
            f"request body is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})"
        ) from None
    parsed = RemoveJSONRequest.model_validate(payload)  # ValidationError -> 422 (unknown fields included)
    options = RemoveOptions.model_validate(parsed.model_dump(exclude={"image", "mask"}))
    image = decode_base64(parsed.image, "image")
    mask = decode_base64(parsed.mask, "mask") if parsed.mask is not None else None
    return RemoveInput(options, image, mask)


async def _from_multipart(request: Request, max_upload_bytes: int) -> RemoveInput:
    parser = _InMemoryMultiPartParser(
        request.headers,
        request.stream(),
        max_files=2,
        max_fields=len(_FORM_FIELDS),
        max_part_size=_MAX_TEXT_FIELD,
        spool_max_size=max_upload_bytes,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadRequestError(f"malformed multipart body: {exc.message}") from None
    try:
        files: dict[str, bytes] = {}
        fields: dict[str, object] = {}
        for name, value in form.multi_items():
            if name in files or name in fields:
                raise BadRequestError(f"form field {name!r} was sent more than once")
            if isinstance(value, UploadFile):
                if name not in ("image", "mask"):
                    raise _unknown(name)
                files[name] = await value.read()
            elif name in ("image", "mask"):
                raise BadRequestError(f"form field {name!r} must be a file upload")
            else:
                fields[name] = value
        if "image" not in files:
            raise _missing_image()
        if "options" in fields:
            try:
                fields["options"] = json.loads(str(fields["options"]))
            except json.JSONDecodeError:
                raise BadRequestError(
                    "form field 'options' must be a JSON object, e.g. {\"steps\": 20}"
                ) from None
        options = RemoveOptions.model_validate(fields)  # unknown form fields -> 422
        return RemoveInput(options, files["image"], files.get("mask"))
    finally:
        await form.close()


def _unknown(name: str) -> ValidationError:
    return ValidationError.from_exception_data(
        "RemoveOptions", [{"type": "extra_forbidden", "loc": (name,), "input": "(file)"}]
    )


def _missing_image() -> ValidationError:
    return ValidationError.from_exception_data(
        "RemoveOptions", [{"type": "missing", "loc": ("image",), "input": {}}]
    )

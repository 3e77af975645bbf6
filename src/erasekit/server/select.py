"""Click-to-select and find-by-text for the web UI: ``/api/v1/select/{embed,click,text}``.

* ``POST /select/embed`` — body: the photo's bytes. Decodes it and runs SAM 2's image encoder once; answers
  ``{"id", "width", "height"}``. The id is the SHA-256 of the bytes (16 hex digits), so the same photo is
  embedded once however often it is sent; the last :data:`CACHE_SIZE` photos stay cached.
* ``POST /select/click`` — JSON ``{"id", "points": [[x, y], ...], "labels": [1, 0, ...]}`` (photo pixels;
  1 = the object, 0 = not the object). Runs only SAM 2's prompt encoder and mask decoder on the cached
  embedding (:mod:`erasekit.masking.clicks`); answers the mask as an 8-bit PNG (255 = selected).
* ``POST /select/text`` — JSON ``{"id", "prompt", "instances"?, "score_threshold"?, "mask_grow"?}``. Text ->
  mask through :mod:`erasekit.masking` on the cached photo; answers the grown mask as a PNG with the number of
  instances kept in ``X-Erasekit-Instances``.

Models resolve as everywhere else (``$ERASEKIT_MODELS_DIR``, the local Hugging Face cache; never the network):
SAM 2 for clicks (``facebook/sam2.1-hiera-large``), SAM 3 or Grounding DINO + SAM 2 for text. A missing
checkpoint is the usual 503 naming the command that fetches it. The app mounts this router behind the same
token check as ``/remove``.
"""

from __future__ import annotations

import hashlib
import io as _io
import threading
from collections import OrderedDict
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from .. import io
from ..types import InvalidInputError

CACHE_SIZE = 4


class ClickRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    points: Annotated[list[tuple[float, float]], Field(min_length=1, max_length=64)]
    labels: Annotated[list[int], Field(min_length=1, max_length=64)]


class TextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    prompt: Annotated[str, Field(min_length=1, max_length=200)]
    instances: str | None = None
    score_threshold: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None
    mask_grow: Annotated[int, Field(ge=0, le=256)] | None = None


class _Photos:
    """Decoded photos and their SAM 2 embeddings by id (LRU); the click model loads on first use."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, tuple[np.ndarray, object | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._model = None

    def clicks(self):
        from ..data.savp_models import DEFAULT_SEGMENTER
        from ..masking.clicks import ClickSegmenter
        from ..masking.text import locate

        with self._lock:
            if self._model is None:
                self._model = ClickSegmenter(locate(DEFAULT_SEGMENTER) or DEFAULT_SEGMENTER)
            return self._model

    def put(self, key: str, pixels: np.ndarray, embedding) -> None:
        with self._lock:
            self._items[key] = (pixels, embedding)
            self._items.move_to_end(key)
            while len(self._items) > CACHE_SIZE:
                self._items.popitem(last=False)

    def get(self, key: str) -> tuple[np.ndarray, object | None]:
        with self._lock:
            if key not in self._items:
                raise HTTPException(
                    404, f"photo {key!r} is not embedded (or was evicted): POST /select/embed first"
                )
            self._items.move_to_end(key)
            return self._items[key]


def _png(mask: np.ndarray) -> bytes:
    from PIL import Image

    buffer = _io.BytesIO()
    Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def router() -> APIRouter:
    """The select endpoints (mount under the API prefix, behind the token check)."""
    photos = _Photos()
    api = APIRouter(prefix="/api/v1/select", tags=["select"])

    @api.post("/embed", summary="Decode a photo and embed it once for click selection")
    async def embed(request: Request) -> JSONResponse:
        body = await request.body()
        if not body:
            raise InvalidInputError("send the photo's bytes as the request body")
        key = hashlib.sha256(body).hexdigest()[:16]

        def work():
            pixels = io.read_image(body, max_pixels=request.app.state.settings.max_pixels).pixels
            return pixels, photos.clicks().embed(pixels)

        pixels, embedding = await run_in_threadpool(work)
        photos.put(key, pixels, embedding)
        return JSONResponse({"id": key, "width": int(pixels.shape[1]), "height": int(pixels.shape[0])})

    @api.post(
        "/click",
        summary="Positive/negative clicks -> mask (SAM 2's decoder only)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def click(body: ClickRequest) -> Response:
        _, embedding = photos.get(body.id)
        mask = await run_in_threadpool(photos.clicks().decode, embedding, body.points, body.labels)
        return Response(_png(mask), media_type="image/png")

    @api.post(
        "/text",
        summary="A phrase -> mask (SAM 3, or Grounding DINO + SAM 2)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def text(body: TextRequest) -> Response:
        from ..masking import TextMaskOptions, text_to_mask

        pixels, _ = photos.get(body.id)
        options = TextMaskOptions.pop_from(body.model_dump(exclude={"id", "prompt"}))
        found = await run_in_threadpool(text_to_mask, pixels, body.prompt, options)
        return Response(
            _png(found.mask), media_type="image/png", headers={"X-Erasekit-Instances": str(len(found.kept))}
        )

    return api


__all__ = ["CACHE_SIZE", "ClickRequest", "TextRequest", "router"]

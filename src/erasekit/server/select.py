"""Click-to-select and find-by-text for the web UI: ``/api/v1/select/{embed,click,text}``.

* ``POST /select/embed`` — body: the photo's bytes. Decodes it and runs the click model's image encoder
  once; answers ``{"id", "width", "height"}``. The id is the SHA-256 of the bytes (16 hex digits), so the same
  photo is embedded once however often it is sent; the last :data:`CACHE_SIZE` photos stay cached.
* ``POST /select/click`` — JSON ``{"id", "points": [[x, y], ...], "labels": [1, 0, ...]}`` (photo pixels;
  1 = the object, 0 = not the object). Runs only the prompt encoder and mask decoder on the cached
  embedding (:mod:`erasekit.masking.clicks`); answers the mask as an 8-bit PNG (255 = selected).
* ``POST /select/text`` — JSON ``{"id", "prompt", "instances"?, "score_threshold"?, "mask_grow"?}``. Text ->
  mask through :mod:`erasekit.masking` on the cached photo; answers the grown mask as a PNG with the number of
  instances kept in ``X-Erasekit-Instances``.

Models resolve as everywhere else (``$ERASEKIT_MODELS_DIR``, the local Hugging Face cache; never the network):
the server's ``click_model`` for clicks (default ``facebook/sam2.1-hiera-large``; any SAM 2 or SAM v1
checkpoint, :func:`click_model_folder`), SAM 3 or Grounding DINO + SAM 2 for text. A missing checkpoint is the
usual 503 naming the command that fetches it. The app mounts this router behind the same token check as
``/remove``.
"""

from __future__ import annotations

import hashlib
import io as _io
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Annotated

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from .. import io
from ..types import InvalidInputError

if TYPE_CHECKING:
    from ..masking.clicks import ClickSegmenter, Embedding

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


def click_model_folder(name: str) -> str:
    """Where the click model ``name`` (the server's ``click_model``) loads from: a Hub id through
    ``$ERASEKIT_MODELS_DIR`` or the local Hugging Face cache (:func:`erasekit.masking.text.locate`), anything
    else as the folder it names. Unresolved, it stays as given and loading says what to fetch."""
    from pathlib import Path

    from ..masking.text import locate

    hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()
    return (locate(name) or name) if hub_id else name


class _Photos:
    """Decoded photos and their image embeddings by id (LRU); the click model loads on first use."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, tuple[np.ndarray, Embedding]] = OrderedDict()
        self._lock = threading.Lock()
        self._model: ClickSegmenter | None = None

    def clicks(self, name: str) -> ClickSegmenter:
        from ..masking.clicks import ClickSegmenter

        with self._lock:
            if self._model is None:  # the server's click_model is fixed when it starts
                self._model = ClickSegmenter(click_model_folder(name))
            return self._model

    def put(self, key: str, pixels: np.ndarray, embedding: Embedding) -> None:
        with self._lock:
            self._items[key] = (pixels, embedding)
            self._items.move_to_end(key)
            while len(self._items) > CACHE_SIZE:
                self._items.popitem(last=False)

    def cached(self, key: str) -> tuple[np.ndarray, Embedding] | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def get(self, key: str) -> tuple[np.ndarray, Embedding]:
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
        seen = photos.cached(key)
        if seen is not None:  # the same bytes again: no decode, no image encoder
            return JSONResponse({"id": key, "width": int(seen[0].shape[1]), "height": int(seen[0].shape[0])})

        def work():
            pixels = io.read_image(body, max_pixels=request.app.state.settings.max_pixels).pixels
            return pixels, photos.clicks(request.app.state.settings.click_model).embed(pixels)

        pixels, embedding = await run_in_threadpool(work)
        photos.put(key, pixels, embedding)
        return JSONResponse({"id": key, "width": int(pixels.shape[1]), "height": int(pixels.shape[0])})

    @api.post(
        "/click",
        summary="Positive/negative clicks -> mask (the click model's decoder only)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def click(body: ClickRequest, request: Request) -> Response:
        _, embedding = photos.get(body.id)
        model = photos.clicks(request.app.state.settings.click_model)
        mask = await run_in_threadpool(model.decode, embedding, body.points, body.labels)
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


__all__ = ["CACHE_SIZE", "ClickRequest", "TextRequest", "click_model_folder", "router"]

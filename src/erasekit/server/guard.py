"""Checks that run before a request body is read, and the limits on reading it.

In order, for every HTTP request:

1. **Host** must name this server (the bound name, a loopback name or ``allowed_hosts``); otherwise 400. A
   DNS-rebinding page reaches a loopback server under its own name, so this is what keeps it out.
2. **Cross-site writes**: a POST/PUT/PATCH/DELETE whose ``Sec-Fetch-Site`` is ``cross-site`` or ``same-site``,
   or whose ``Origin`` is not this server's, is 403 unless the origin is on the CORS allow-list. Browsers send
   these headers on no-cors form posts too, which CORS alone does not stop.
3. **Declared size** over ``max_upload_bytes``: 413 (FastAPI's own cap counts streamed bytes; it stays).
4. **Admission**: an upload to /remove or /jobs while the work queue is full is 503 before its body is read;
   every body needs an upload slot (at most ``max_uploads`` at once, their declared bytes within
   ``upload_budget_bytes``), else 503 with Retry-After.
5. **Read timeout**: a body that stalls ``read_timeout_s`` between chunks, or averages under
   ``min_upload_rate`` bytes/s after that long, is 408. A client that disconnects mid-upload is one log line.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from .errors import UploadTimeoutError, error_response, log
from .settings import ServerSettings

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def cross_site_reason(headers: Headers, settings: ServerSettings) -> str | None:
    """Why a state-changing request counts as cross-site, or None when it may go on."""
    origin = headers.get("origin")
    if origin is not None and origin in settings.cors_origins:
        return None
    site = headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return f"Sec-Fetch-Site is {site}"
    if origin is not None and (
        origin == "null" or urlsplit(origin).netloc.lower() != headers.get("host", "").lower()
    ):
        return f"Origin {origin} is not this server"
    return None


class UploadGate:
    """Upload slots: how many bodies are read at once and how many bytes they declare."""

    def __init__(self, max_uploads: int, budget_bytes: int):
        self.max_uploads = max_uploads
        self.budget_bytes = budget_bytes
        self.active = 0
        self.declared = 0

    def acquire(self, nbytes: int) -> bool:
        if self.active >= self.max_uploads or self.declared + nbytes > self.budget_bytes:
            return False
        self.active += 1
        self.declared += nbytes
        return True

    def release(self, nbytes: int) -> None:
        self.active -= 1
        self.declared -= nbytes


class RequestGuard:
    """ASGI middleware applying the module's checks; ``queue_full`` says whether the work queue is full."""

    def __init__(self, app, settings: ServerSettings, queue, uploads_paths: frozenset[str]):
        self.app = app
        self.settings = settings
        self.queue = queue
        self.upload_paths = uploads_paths
        self.gate = UploadGate(settings.max_uploads, settings.upload_budget_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.settings
        headers = Headers(scope=scope)
        method = scope["method"]
        refusal = None
        if not settings.answers_host(headers.get("host")):
            refusal = error_response(400, "BadHost", f"this server does not answer to Host "
                                     f"{headers.get('host', '(none)')!r}; use 127.0.0.1 or localhost, or "
                                     "start it with --allow-host NAME")
        elif method in UNSAFE_METHODS and (reason := cross_site_reason(headers, settings)) is not None:
            refusal = error_response(403, "Forbidden", f"cross-site request refused ({reason}); add the "
                                     "origin with --cors-origin to allow it")
        declared_text = headers.get("content-length", "")
        declared = int(declared_text) if declared_text.isdigit() else None
        if refusal is None and declared is not None and declared > settings.max_upload_bytes:
            refusal = error_response(
                413, "ResourceLimitError", f"request body of {declared:,} bytes is larger than the server's "
                f"limit of {settings.max_upload_bytes:,} bytes", {"Connection": "close"})
        if refusal is None and method == "POST" and scope["path"] in self.upload_paths and self.queue.full:
            busy = self.queue.busy_error()
            retry = {"Retry-After": str(busy.retry_after)}
            refusal = error_response(503, "ServerBusyError", str(busy), retry)
        if refusal is None and method in BODY_METHODS and declared != 0:
            nbytes = declared if declared is not None else settings.max_upload_bytes
            if not self.gate.acquire(nbytes):
                retry = "2"  # a normal upload takes well under a second; a slot frees up soon
                refusal = error_response(503, "ServerBusyError", "too many uploads in progress; retry later",
                                         {"Retry-After": retry})
            else:
                body = _TimedBody(receive, settings, declared, lambda n=nbytes: self.gate.release(n))
                try:
                    await self.app(scope, body.receive, send)
                finally:
                    body.finish()
                return
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _TimedBody:
    """A ``receive`` that enforces the read timeout and minimum rate and frees the upload slot as soon as
    the body is complete (or the request ends)."""

    def __init__(self, receive, settings: ServerSettings, declared: int | None, release):
        self._receive = receive
        self._settings = settings
        self._declared = declared
        self._release = release
        self._released = False
        self._done = False
        self._received = 0
        self._started = time.monotonic()

    def finish(self) -> None:
        self._done = True
        if not self._released:
            self._released = True
            self._release()

    async def receive(self):
        if self._done:
            return await self._receive()
        settings = self._settings
        try:
            message = await asyncio.wait_for(self._receive(), settings.read_timeout_s)
        except TimeoutError:
            self.finish()
            raise UploadTimeoutError(
                f"the request body stalled for {settings.read_timeout_s:g} s after {self._received:,} bytes"
            ) from None
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.finish()
                return message
            elapsed = time.monotonic() - self._started
            if elapsed > settings.read_timeout_s and self._received < settings.min_upload_rate * elapsed:
                self.finish()
                raise UploadTimeoutError(
                    f"the request body arrived at {self._received / elapsed:,.0f} bytes/s, under the "
                    f"server's minimum of {settings.min_upload_rate:,} bytes/s"
                )
        elif message["type"] == "http.disconnect":
            log.info("client disconnected during upload after %s of %s bytes", f"{self._received:,}",
                     f"{self._declared:,}" if self._declared is not None else "(unknown)")
            self.finish()
        return message

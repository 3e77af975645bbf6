"""The FastAPI application: REST API, progress streams and the web UI.

Endpoints (all JSON errors are ``{"error": {"type", "message"}}``)::

    GET  /                         the web UI (static, no build step)
    GET  /api/v1/health            liveness, queue state, limits (no token needed)
    GET  /api/v1/methods           every registered method, whether it is available and why not; the refiners
    POST /api/v1/remove            image + mask (or a prompt: text -> mask in the job) -> result (JSON with
                                   base64, or raw bytes with ?format=image)
    POST /api/v1/jobs              same body; returns 202 and a job id at once
    GET  /api/v1/jobs/{id}         job status
    GET  /api/v1/jobs/{id}/events  server-sent events: queued, started, progress {step, total}, done | error
    GET  /api/v1/jobs/{id}/result  the finished job's result, like /remove
    DELETE /api/v1/jobs/{id}       cancel a job (it stops at its next step; a classical fill is killed)

Safety: before a body is read, the Host must name this server (400), cross-site writes are refused (403), the
queue and upload slots must have room (503) and a declared size must fit (413) — see :mod:`.guard`; bodies are
capped while they stream (413) and must keep a minimum rate (408); decoded images are capped by pixel count
(413); every job has a time budget; a token, when set, is required on every API call except health; CORS is
off unless origins are given; the web UI's files are read once at start-up and served from memory, so no path
a client sends ever reaches the file system; uploads and results live in memory only.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException

from .. import __version__
from ..refiners import get_refiner, refiner_names
from ..registry import available_methods, get_method, load_options, load_remover
from ..types import ErasekitError, InvalidInputError
from . import processing, select
from .cancel import CancelToken
from .errors import JobCancelledError, install_error_handlers, log
from .guard import RequestGuard
from .jobs import Job, JobStore
from .schemas import (
    MULTIPART_SCHEMA,
    ErrorResponse,
    HealthResponse,
    JobCreated,
    JobStatus,
    MethodOut,
    MethodsResponse,
    OptionOut,
    QueueOut,
    RefinerOut,
    RemoveJSONRequest,
    RemoveResponse,
    WeightOut,
)
from .settings import ServerSettings
from .uploads import read_remove_input
from .workers import Slot, WorkQueue, isolate_classical

API = "/api/v1"
_DISCONNECT_POLL_S = 0.25

_bearer = HTTPBearer(
    auto_error=False, description="the token given to `erasekit serve --token` (only when set)"
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "malformed request (JSON, base64 or multipart), or a Host this server does not answer to",
        401: "missing or wrong bearer token",
        403: "cross-site request (Origin / Sec-Fetch-Site) from an origin not on the CORS allow-list",
        408: "the request body stalled or arrived under the minimum rate",
        413: "request body or image too large, or the job ran past the time budget",
        415: "unsupported Content-Type",
        422: "invalid input: unknown field, bad option, unreadable image, mask size mismatch, unknown method",
        503: "queue, upload slots or result memory full (see Retry-After), or the method's weights missing",
    }.items()
}

_REMOVE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": MULTIPART_SCHEMA},
            "application/json": {"schema": RemoveJSONRequest.model_json_schema()},
        },
    }
}

_STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
    "select.js": "text/javascript; charset=utf-8",
}
_UPLOAD_PATHS = frozenset({f"{API}/remove", f"{API}/jobs"})
_UI_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _ErasekitApp(FastAPI):
    def build_middleware_stack(self):
        state = self.state
        return RequestGuard(super().build_middleware_stack(), state.settings, state.queue, _UPLOAD_PATHS)


def _load_static() -> dict[str, bytes]:
    root = resources.files("erasekit.server") / "static"
    return {name: (root / name).read_bytes() for name in ("index.html", "docs.html", *_STATIC_FILES)}


# ------------------------------------------------------------------------------------------------------------
# Dependencies
# ------------------------------------------------------------------------------------------------------------
def _settings(request: Request) -> ServerSettings:
    return request.app.state.settings


def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    token = _settings(request).token
    if token is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise HTTPException(
            401,
            "missing or wrong bearer token (send 'Authorization: Bearer <token>')",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _job(request: Request, job_id: str) -> Job:
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r} (unknown or expired)")
    return job


FormatParam = Annotated[
    Literal["json", "image"],
    Query(
        description="json: a RemoveResponse with base64 images; image: the result's raw bytes "
        "(timings in the X-Erasekit-Timings header)"
    ),
]


def _respond(result: processing.EncodedResult, fmt: str) -> Response:
    if fmt == "image":
        return Response(
            result.image,
            media_type=result.media_type,
            headers={**result.headers(), "X-Content-Type-Options": "nosniff"},
        )
    return JSONResponse(result.to_response().model_dump())


# ------------------------------------------------------------------------------------------------------------
# The app
# ------------------------------------------------------------------------------------------------------------
def _checked_load_options(settings: ServerSettings) -> dict[str, dict[str, Any]]:
    """``settings.load_options``, refused now (not at the first request) for an unknown method or option."""
    for name, options in settings.load_options.items():
        spec = get_method(name)
        unknown = set(options) - load_options(spec)
        if unknown:
            raise InvalidInputError(
                f"method {name!r} does not take load option(s): {', '.join(sorted(unknown))}")
        if options and settings.isolate_classical and isolate_classical(name):
            raise InvalidInputError(f"method {name!r} runs in a child process and takes no load options here")
    return settings.load_options


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """Build the app for ``settings`` (defaults: loopback, no token). Nothing is loaded until first use."""
    settings = settings or ServerSettings()
    settings.check_exposure()
    static = _load_static()
    per_method = _checked_load_options(settings)

    def loader(name: str) -> Any:
        return load_remover(name, **per_method.get(name, {}))

    queue = WorkQueue(settings.queue_size, loader,
                      isolate=isolate_classical if settings.isolate_classical else (lambda name: False))
    jobs = JobStore(settings.max_jobs, settings.job_ttl_s, settings.result_budget_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        queue.shutdown()

    app = _ErasekitApp(
        title="erasekit",
        version=__version__,
        lifespan=lifespan,
        summary="Remove objects from photos, with their shadows and reflections.",
        description=(
            "REST API of `erasekit serve`. Send a photo and a mask; get the photo without the object. "
            'Errors are `{"error": {"type", "message"}}`.'
        ),
        max_body_size=settings.max_upload_bytes,
        # Swagger UI and ReDoc load from a CDN, blank offline: /docs and /redoc are a local page instead.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.queue = queue
    app.state.jobs = jobs
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["Retry-After", "X-Erasekit-Method", "X-Erasekit-Timings"],
            max_age=600,
        )

    # ---- web UI --------------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(static["index.html"], media_type="text/html; charset=utf-8", headers=_UI_HEADERS)

    @app.get("/docs", include_in_schema=False)
    @app.get("/redoc", include_in_schema=False)
    async def docs() -> Response:
        return HTMLResponse(static["docs.html"], headers=_UI_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        if name not in _STATIC_FILES:  # a fixed table, never a file-system lookup
            raise HTTPException(404, "not found")
        return Response(static[name], media_type=_STATIC_FILES[name], headers=_UI_HEADERS)

    # ---- API -----------------------------------------------------------------------------------------------
    api = APIRouter(prefix=API, responses=_ERRORS)
    private = APIRouter(prefix=API, dependencies=[Depends(require_token)], responses=_ERRORS)

    @api.get("/health", tags=["server"], summary="Liveness, queue state and limits")
    async def health() -> HealthResponse:
        return HealthResponse(
            version=__version__,
            auth=settings.token is not None,
            queue=QueueOut(capacity=queue.capacity, in_flight=queue.in_flight, loaded_methods=queue.loaded()),
            limits={
                "max_upload_bytes": settings.max_upload_bytes,
                "max_pixels": settings.max_pixels,
                "job_timeout_s": int(settings.job_timeout_s),
                "max_dilate": processing.MAX_DILATE,
            },
        )

    @private.get("/methods", tags=["methods"], summary="Every method, whether it can run here, and why not")
    async def methods() -> MethodsResponse:
        infos = await run_in_threadpool(available_methods)
        default = settings.default_method
        out = []
        for info in infos:
            worker = queue.loaded_worker(info.name)
            spec = get_method(info.name)
            declared = spec.call_options
            out.append(
                MethodOut(
                    name=info.name,
                    description=info.description,
                    family=info.family,
                    requires_mask=info.requires_mask,
                    available=info.available,
                    reason=info.reason,
                    default=info.name == default,
                    streams_progress=worker.streams_progress if worker else None,
                    # Weight locations stay on the server: they are local paths.
                    weights=[
                        WeightOut(
                            name=w.name,
                            description=w.description,
                            present=w.present,
                            hub_id=w.hub_id,
                            fetch_hint=w.fetch_hint,
                        )
                        for w in info.weights
                    ],
                    takes_prompt=getattr(spec.factory, "takes_prompt", None),
                    options=(
                        None if declared is None else [OptionOut(**o) for o in declared.describe(public=True)]
                    ),
                )
            )
        refiners = [
            RefinerOut(name=r.name, description=r.description) for r in map(get_refiner, refiner_names())
        ]
        return MethodsResponse(default=default, methods=out, refiners=refiners)

    async def _admit_and_prepare(request: Request) -> tuple[Slot, processing.PreparedJob]:
        """Parse the body (the guard admitted it: queue room, an upload slot), take a queue slot (503 when
        full), then decode. So decoded images never exceed the bound."""
        upload = await read_remove_input(request, settings.max_upload_bytes)
        slot = queue.admit()
        try:
            return slot, await run_in_threadpool(processing.prepare, upload, settings)
        except BaseException:
            slot.release()
            raise

    @private.post(
        "/remove",
        tags=["remove"],
        summary="Remove the masked object and return the result",
        openapi_extra=_REMOVE_BODY,
        responses={
            200: {
                "model": RemoveResponse,
                "description": "the result (JSON, or raw bytes with ?format=image)",
                "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}},
            }
        },
    )
    async def remove(request: Request, format: FormatParam = "json") -> Response:
        slot, job = await _admit_and_prepare(request)
        token = CancelToken(settings.job_timeout_s)
        future = asyncio.wrap_future(
            queue.submit(slot, job.method, job.request, token=token, before=job.text_mask)
        )
        job.release()
        # A client that goes away cancels its work: poll for the disconnect while the job runs.
        while not (await asyncio.wait({future}, timeout=_DISCONNECT_POLL_S))[0]:
            if await request.is_disconnected():
                token.cancel("the client disconnected")
                log.info("client disconnected from /remove; its %s job is cancelled", job.method)
                future.add_done_callback(lambda f: f.exception())  # consumed: no "never retrieved" warning
                raise JobCancelledError("the client disconnected")
        outcome = future.result()
        encoded = await run_in_threadpool(processing.encode, job, outcome.result, outcome.queue_seconds)
        del outcome
        processing.release_memory()
        return _respond(encoded, format)

    @private.post(
        "/jobs",
        tags=["jobs"],
        status_code=202,
        openapi_extra=_REMOVE_BODY,
        summary="Submit a removal and follow its progress as server-sent events",
    )
    async def submit_job(request: Request) -> JobCreated:
        slot, prepared = await _admit_and_prepare(request)
        token = CancelToken(settings.job_timeout_s)
        try:
            job = jobs.create(prepared.method, token)
        except BaseException:
            slot.release()
            raise

        def started() -> None:
            job.publish("started", {"method": prepared.method}, status="running")

        def progress(step: int, total: int) -> None:
            job.progress = {"step": int(step), "total": int(total)}
            job.publish("progress", dict(job.progress))

        job.publish("queued", {"method": prepared.method})  # first, so it always precedes "started"
        try:
            future = queue.submit(
                slot,
                prepared.method,
                prepared.request,
                progress=progress,
                on_start=started,
                token=token,
                before=prepared.text_mask,
            )
        except ErasekitError:
            jobs.discard(job.id)
            raise
        prepared.release()

        def finished(fut) -> None:
            try:
                if fut.cancelled():
                    raise JobCancelledError(f"the job was cancelled ({token.reason or 'server stopping'})")
                outcome = fut.result()
                job.response = processing.encode(prepared, outcome.result, outcome.queue_seconds)
                del outcome
            except JobCancelledError as exc:
                job.error = {"type": "JobCancelledError", "message": str(exc), "status": "410"}
                job.publish("error", {"type": "JobCancelledError", "message": str(exc), "status": 410},
                            status="cancelled")
                return
            except BaseException as exc:  # noqa: BLE001 - every outcome becomes an event
                status = exc.http_status if isinstance(exc, ErasekitError) else 500
                kind = type(exc).__name__ if isinstance(exc, ErasekitError) else "InternalError"
                message = (
                    str(exc) if isinstance(exc, ErasekitError) else f"internal error ({type(exc).__name__})"
                )
                if not isinstance(exc, ErasekitError):
                    log.error("job %s failed", job.id, exc_info=exc)
                job.error = {"type": kind, "message": " ".join(message.split()), "status": str(status)}
                job.publish(
                    "error", {"type": kind, "message": job.error["message"], "status": status}, status="error"
                )
                return
            finally:
                job.future = None  # the Future holds the RemovalResult's arrays: let them go now
                processing.release_memory()
            job.publish(
                "done",
                {
                    "method": job.response.method,
                    "timings": job.response.timings,
                    "unchanged": job.response.unchanged,
                    "result_url": f"{API}/jobs/{job.id}/result",
                },
                status="done",
            )

        job.future = future
        future.add_done_callback(finished)
        return JobCreated(
            id=job.id,
            status=job.status,
            events_url=f"{API}/jobs/{job.id}/events",
            result_url=f"{API}/jobs/{job.id}/result",
        )

    @private.get("/jobs/{job_id}", tags=["jobs"], summary="A job's status")
    async def job_status(job: Annotated[Job, Depends(_job)]) -> JobStatus:
        error = {k: v for k, v in job.error.items() if k != "status"} if job.error else None
        return JobStatus(id=job.id, status=job.status, method=job.method, progress=job.progress, error=error)

    @private.delete(
        "/jobs/{job_id}",
        tags=["jobs"],
        summary="Cancel a job: it stops at its next step (a classical fill is killed)",
    )
    async def cancel_job(job: Annotated[Job, Depends(_job)]) -> JobStatus:
        if not job.finished and job.token is not None:
            job.token.cancel("cancelled by DELETE")  # a running job stops at its next step
            if job.future is not None:
                job.future.cancel()  # one not yet started never runs
        return await job_status(job)

    @private.get(
        "/jobs/{job_id}/events",
        tags=["jobs"],
        response_class=EventSourceResponse,
        summary="Server-sent events: queued, started, progress {step, total}, then done or error",
    )
    async def job_events(
        job: Annotated[Job, Depends(_job)],
        last_event_id: Annotated[int | None, Header(description="resume after this event id")] = None,
    ) -> AsyncIterable[ServerSentEvent]:
        async for index, event in job.follow():
            if last_event_id is not None and index <= last_event_id:
                continue
            yield ServerSentEvent(event=event.name, data=event.data, id=str(index))

    @private.get(
        "/jobs/{job_id}/result",
        tags=["jobs"],
        summary="A finished job's result (like /remove)",
        responses={
            200: {"model": RemoveResponse, "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}},
            409: {"model": ErrorResponse, "description": "the job has not finished yet"},
        },
    )
    async def job_result(job: Annotated[Job, Depends(_job)], format: FormatParam = "json") -> Response:
        if job.error is not None:
            return JSONResponse(
                {"error": {"type": job.error["type"], "message": job.error["message"]}},
                status_code=int(job.error["status"]),
            )
        if job.response is None:
            return JSONResponse(
                {"error": {"type": "NotReady", "message": f"job {job.id} is {job.status}"}}, status_code=409
            )
        return _respond(job.response, format)

    app.include_router(api)
    app.include_router(private)
    # click-to-select and find-by-text (select.py), behind the same token check
    app.include_router(select.router(), dependencies=[Depends(require_token)], responses=_ERRORS)
    return app

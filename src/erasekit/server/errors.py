"""Every error the API returns has one shape: ``{"error": {"type": ..., "message": ...}}``.

Status codes come from the exception hierarchy (``ErasekitError.http_status``): bad input 422, resource limits
413, missing weights 503. Malformed requests (undecodable JSON or base64, a broken multipart body) are 400; a
body that does not match the schema (unknown field, wrong type) is 422; an unsupported Content-Type is 415.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from ..types import ErasekitError, ResourceLimitError

log = logging.getLogger("erasekit.server")


class ServerBusyError(ErasekitError):
    """The bounded queue is full; the client should retry after ``retry_after`` seconds."""

    exit_code = 1
    http_status = 503

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class BadRequestError(ErasekitError):
    """The request could not be parsed at all (malformed JSON, base64 or multipart)."""

    exit_code = 2
    http_status = 400


class UnsupportedMediaTypeError(ErasekitError):
    exit_code = 2
    http_status = 415


class ForbiddenError(ErasekitError):
    """A cross-site request that would change state (Origin / Sec-Fetch-Site), or a Host the server does not
    answer to (400 is used for that one: it is not the client's identity that is wrong)."""

    exit_code = 2
    http_status = 403


class UploadTimeoutError(ErasekitError):
    """The body arrived too slowly (idle past the read timeout, or under the minimum rate)."""

    exit_code = 2
    http_status = 408


class JobCancelledError(ErasekitError):
    """The job was cancelled (DELETE, or its client went away) before it finished."""

    exit_code = 1
    http_status = 410


class JobTimeoutError(ResourceLimitError):
    """The job ran past the server's time budget per job and was stopped."""


def error_response(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def validation_message(errors: Sequence[Mapping[str, Any]]) -> str:
    """Pydantic's error list as one line: 'options.steps: Input should be a valid integer; extra: ...'."""
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",)) or "body"
        msg = "unknown field" if err.get("type") == "extra_forbidden" else err.get("msg", "invalid")
        parts.append(f"{loc}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return _one_line("; ".join(parts) + more)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ErasekitError)
    async def _erasekit(request: Request, exc: ErasekitError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, ServerBusyError) else None
        if isinstance(exc, UploadTimeoutError):
            log.info("upload refused: %s", exc)
            headers = {"Connection": "close"}  # the rest of the body is not read
        if exc.http_status >= 500 and not isinstance(exc, ServerBusyError):
            log.warning("%s: %s", type(exc).__name__, exc)
        return error_response(exc.http_status, type(exc).__name__, _one_line(str(exc)), headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        # Nobody is listening; the guard has logged the one line this deserves.
        return Response(status_code=499)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "ValidationError", validation_message(list(exc.errors())))

    @app.exception_handler(ValidationError)
    async def _validation(request: Request, exc: ValidationError) -> JSONResponse:
        return error_response(422, "ValidationError", validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        kinds = {401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed", 413: "ResourceLimitError"}
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 413:
            limit = getattr(request.app.state, "settings", None)
            if limit is not None:
                message = (
                    f"request body is larger than the server's limit of {limit.max_upload_bytes:,} bytes"
                )
        return error_response(
            exc.status_code,
            kinds.get(exc.status_code, "HTTPError"),
            _one_line(message),
            dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        # No exception text to the client: it may name server paths. The log has the traceback.
        return error_response(
            500, "InternalError", f"internal error ({type(exc).__name__}); see the server log"
        )

"""Server settings: what `erasekit serve` was started with, validated once, before anything listens.

The one rule enforced here that is not a simple bound: a server reachable from other machines (any host that
is not a loopback address) must have a token, because the API runs models on the caller's behalf.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..data.savp_models import DEFAULT_SEGMENTER
from ..io import DEFAULT_MAX_PIXELS
from ..types import InvalidInputError

DEFAULT_MAX_UPLOAD_BYTES = 64 * 1024 * 1024


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def host_name(header: str) -> str:
    """The name in a Host header: lower case, without the port (``[::1]:8080`` -> ``::1``)."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: addresses no other machine can reach."""
    if host.strip().lower() == "localhost" or host.strip().lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so it counts as exposed


class ServerSettings(BaseModel):
    """Everything the app factory needs. Immutable; unknown fields are an error like everywhere in the API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="address to bind")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0: any free port)")
    default_method: str = Field(default="auto",
                                description="method used when a request names none ('auto': best available)")
    token: str | None = Field(default=None, min_length=8,
                              description="bearer token every API call must present")
    max_upload_bytes: int = Field(
        default=DEFAULT_MAX_UPLOAD_BYTES,
        ge=1024,
        description="largest request body; larger bodies get 413 while still streaming",
    )
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS, ge=1, description="largest image (width × height); larger is 413"
    )
    queue_size: int = Field(
        default=4, ge=1, le=256, description="jobs running or waiting at once; more get 503"
    )
    max_jobs: int = Field(
        default=32, ge=1, description="progress jobs kept in memory (finished ones job_ttl_s); past it 503"
    )
    job_ttl_s: float = Field(
        default=600.0, gt=0, description="seconds a finished job's result stays available"
    )
    cors_origins: tuple[str, ...] = Field(default=(), description="origins allowed by CORS (empty: CORS off)")
    allowed_hosts: tuple[str, ...] = Field(
        default=(),
        description="Host names answered besides the bound one and the loopback names (DNS-rebinding guard)",
    )
    job_timeout_s: float = Field(
        default=300.0, gt=0, le=86400, description="seconds one job may run before it is stopped (413)"
    )
    max_uploads: int = Field(
        default=16, ge=1, le=1024, description="request bodies read at once; more get 503"
    )
    upload_budget_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="declared bytes of the bodies read at once (a body without Content-Length counts as "
        "max_upload_bytes); past it, 503",
    )
    read_timeout_s: float = Field(
        default=15.0, gt=0, le=3600, description="seconds a body may stall between two chunks (408)"
    )
    min_upload_rate: int = Field(
        default=16 * 1024,
        ge=0,
        description="bytes/s a body must average once read_timeout_s has passed (408); 0: no minimum",
    )
    result_budget_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024,
        description="encoded bytes of the finished jobs' results kept at once; past it new jobs get 503",
    )
    isolate_classical: bool = Field(
        default=True,
        description="run classical fills (OpenCV, PatchMatch: C calls that cannot be interrupted) in a child "
        "process that is killed on cancel or timeout",
    )
    extra_formats: tuple[str, ...] = Field(
        default=(), description="image formats accepted besides PNG, JPEG, WebP, TIFF, BMP, GIF (HEIF/AVIF)"
    )
    preload: bool = Field(default=True, description="load the default method when the server starts")
    click_model: str = Field(
        default=DEFAULT_SEGMENTER,
        min_length=1,
        description="SAM 2 or SAM checkpoint for click-to-select (`erasekit serve --click-model`): a "
        "Hub id found in $ERASEKIT_MODELS_DIR or the local Hugging Face cache, or a folder; its config.json "
        "picks the family",
    )
    load_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="keyword load options per method name, used whenever the server loads it (`erasekit "
        "serve --load METHOD:KEY=VALUE`), e.g. {'osor-sdxl': {'compile': True}}",
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_scheme_and_host(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        """Each origin starts with ``http://`` or ``https://`` and has no trailing slash, the form browsers
        send in ``Origin``; this also refuses the ``*`` wildcard."""
        for origin in origins:
            if not origin.startswith(("http://", "https://")) or origin.endswith("/"):
                raise ValueError(f"CORS origin must look like https://example.org (no path), got {origin!r}")
        return origins

    def check_exposure(self) -> None:
        """Refuse to serve on a non-loopback address without a token.

        The caller turns the error into an exit code.
        """
        if not is_loopback(self.host) and not self.token:
            raise InvalidInputError(
                f"refusing to listen on {self.host}, which other machines can reach, without a token; "
                "pass --token SECRET (clients send 'Authorization: Bearer SECRET') or bind to 127.0.0.1"
            )

    def answers_host(self, header: str | None) -> bool:
        """Whether a request's Host header names this server: the bound name, a loopback name or an
        allow-listed one. A wildcard bind (0.0.0.0, ::) needs a token, so it answers any name."""
        if is_wildcard(self.host):
            return True
        if not header:
            return False
        name = host_name(header)
        return (
            is_loopback(name)
            or name == host_name(self.host)
            or name in {host_name(h) for h in self.allowed_hosts}
        )

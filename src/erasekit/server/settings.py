"""Server settings: what `erasekit serve` was started with, validated once, before anything listens.

The one rule enforced here that is not a simple bound: a server reachable from other machines (any host that
is not a loopback address) must have a token, because the API runs models on the caller's behalf.
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..io import DEFAULT_MAX_PIXELS
from ..types import InvalidInputError

DEFAULT_MAX_UPLOAD_BYTES = 64 * 1024 * 1024


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: addresses no other machine can reach."""
    if host.strip().lower() == "localhost":
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
        default=32, ge=1, description="finished progress jobs kept in memory for their result"
    )
    job_ttl_s: float = Field(
        default=600.0, gt=0, description="seconds a finished job's result stays available"
    )
    cors_origins: tuple[str, ...] = Field(default=(), description="origins allowed by CORS (empty: CORS off)")
    preload: bool = Field(default=True, description="load the default method when the server starts")

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

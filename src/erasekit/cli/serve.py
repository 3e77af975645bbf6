"""`erasekit serve`: the web UI and REST API on one port."""

from __future__ import annotations

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)


def serve_command(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="address to bind; anything but loopback needs --token"
    ),
    port: int = typer.Option(8080, "--port", help="TCP port"),
    method: str = typer.Option(
        "auto", "--method", help="default method (loaded at start); 'auto': best available"
    ),
    token: str = typer.Option(
        None,
        "--token",
        envvar="ERASEKIT_TOKEN",
        help="require 'Authorization: Bearer TOKEN' on API calls (or set ERASEKIT_TOKEN)",
    ),
    cors_origin: list[str] = typer.Option(
        None,
        "--cors-origin",
        help="allow this origin via CORS, e.g. https://example.org (repeatable; default: CORS off)",
    ),
    allow_host: list[str] = typer.Option(
        None,
        "--allow-host",
        help="also answer requests for this Host name (repeatable; loopback names and --host always work)",
    ),
    job_timeout: float = typer.Option(
        300, "--job-timeout", help="seconds a job may run before it is stopped"
    ),
    max_upload_mb: float = typer.Option(
        64, "--max-upload-mb", help="largest request body in MiB (413 above)"
    ),
    max_pixels: int = typer.Option(
        None,
        "--max-pixels",
        help="largest image in pixels (413 above; default: erasekit's 8192×8192 or $ERASEKIT_MAX_PIXELS)",
    ),
    queue_size: int = typer.Option(4, "--queue-size", help="jobs running or waiting at once; more get 503"),
    preload: bool = typer.Option(
        True, "--preload/--no-preload", help="load the default method before serving"
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level"),
    click_model: str = typer.Option(
        None,
        "--click-model",
        help="SAM 2 or SAM checkpoint for the web UI's click-to-select: a Hub id (local cache or "
        "$ERASEKIT_MODELS_DIR) or a folder, e.g. facebook/sam-vit-base "
        "(default: facebook/sam2.1-hiera-large)",
    ),
    load: list[str] = typer.Option(
        None,
        "--load",
        help="load option METHOD:KEY=VALUE used whenever the server loads METHOD, e.g. "
        "osor-sdxl:compile=true (repeatable; as in bench)",
    ),
) -> None:
    """Serve the web UI and the REST API (docs at /docs, schema at /openapi.json)."""
    from pydantic import ValidationError

    from ..data.savp_models import DEFAULT_SEGMENTER
    from ..io import pixel_limit
    from ..server.settings import ServerSettings
    from ..types import ErasekitError, InvalidInputError
    from .bench import _load_options

    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise ErasekitError(
            f"the server needs FastAPI and uvicorn ({exc.name} is missing); "
            "run: pip install 'erasekit[server]'"
        ) from None
    try:
        settings = ServerSettings(
            host=host,
            port=port,
            default_method=method,
            token=token,
            max_upload_bytes=int(max_upload_mb * 1024 * 1024),
            max_pixels=max_pixels or pixel_limit() or 2**62,
            queue_size=queue_size,
            cors_origins=tuple(cor for cor in (cors_origin or ())),
            preload=preload,
            allowed_hosts=tuple(allow_host or ()),
            job_timeout_s=job_timeout,
            load_options=_load_options(load),
            click_model=click_model or DEFAULT_SEGMENTER,
        )
    except ValidationError as exc:
        from ..server.errors import validation_message

        raise InvalidInputError(f"bad server option: {validation_message(exc.errors())}") from None
    settings.check_exposure()

    from ..registry import resolve_auto
    from ..server.app import create_app

    app = create_app(settings)
    console = Console(stderr=True)
    if settings.preload:
        name = resolve_auto() if method == "auto" else method
        app.state.queue.worker(name)  # unknown method or missing weights: a clear error and exit code here
        console.print(f"loaded method {name!r}", highlight=False)
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"erasekit {'(token required) ' if token else ''}on http://{shown}:{port}/  — API docs at /docs",
        highlight=False,
    )
    # The server's own lines (refused uploads, disconnects) next to uvicorn's, at the same level.
    import logging

    server_log = logging.getLogger("erasekit.server")
    if not server_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        server_log.addHandler(handler)
    server_log.setLevel(log_level.upper())
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)

"""The web app and REST API (`erasekit serve`).

Needs the ``server`` extra: ``pip install 'erasekit[server]'``.
"""

from __future__ import annotations

from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def create_app(settings: ServerSettings | None = None):
    """Build the FastAPI app.

    Imported lazily so ``import erasekit.server`` works without FastAPI installed.
    """
    from .app import create_app as _create_app

    return _create_app(settings)

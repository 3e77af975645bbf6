"""The ``erasekit`` command: one module per verb group, wired in :mod:`erasekit.cli.main`."""

from .main import app, main, run

__all__ = ["app", "main", "run"]

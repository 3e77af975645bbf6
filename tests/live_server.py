"""Test support, not a test module: erasekit's server on a real socket, and the web UI in headless Chromium.

Used by test_server_hardening.py (socket-level behaviour) and the two browser test files; the ``browser``
fixture is in conftest.py. Importable by name because pytest's default import mode puts this folder on
sys.path. Callers skip before importing it when uvicorn is missing.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from typing import Self

import uvicorn

from erasekit.server import ServerSettings, create_app

# Debian's chromium (no Playwright browser download); None where it is not installed.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class LiveServer:
    """The app for ``settings`` under uvicorn on 127.0.0.1 and a free port, in a daemon thread."""

    def __init__(self, settings: ServerSettings):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def raw(self, head: str, body: bytes = b"") -> socket.socket:
        """A socket that has sent ``head`` (lines joined with CRLF) and ``body``: what clients cannot send."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        return sock


def open_page(browser, url: str, **context_options):
    """(context, page, JavaScript errors) for the web UI at ``url``, once its method list has loaded."""
    # bypass_csp: the UI forbids eval (CSP), which Playwright's wait_for_function uses to poll.
    options = {"viewport": {"width": 1280, "height": 800}, **context_options}
    context = browser.new_context(accept_downloads=True, bypass_csp=True, **options)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function("document.getElementById('method').options.length > 0")
    return context, page, errors


def client_point(page, x: float, y: float) -> tuple[float, float]:
    """Image pixel (x, y) -> the page coordinates where it is shown (through the UI's own view transform)."""
    box = page.locator("#view").bounding_box()
    view = page.evaluate("({...state.view, ratio: view.width / view.getBoundingClientRect().width})")
    return (
        box["x"] + (x * view["scale"] + view["tx"]) / view["ratio"],
        box["y"] + (y * view["scale"] + view["ty"]) / view["ratio"],
    )

"""Classical fills in a child process, so a job can be stopped mid-call.

OpenCV's and PatchMatch's fills are single C calls: a thread running one cannot be interrupted (Ctrl+C in
the CLI waited 23 s). Each such method gets a few long-lived child processes (:class:`ChildPool`, one call at
a time each); the request goes over a pipe, the result comes back the same way, and while it
waits the parent checks the job's :class:`~.cancel.CancelToken`. When the token fires the child is killed
(SIGKILL) and the next call starts a fresh one.

The children are forked from a clean fork server (``multiprocessing``'s "forkserver" start method), never from
the threaded server process itself.
"""

from __future__ import annotations

import json
import multiprocessing
import pickle
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from ..refiners import parse_refine
from ..registry import get_method, load_remover
from ..types import ErasekitError, RemovalRequest, RemovalResult
from .cancel import CancelToken

_POLL_S = 0.05
# A fork server where there is one (Linux, macOS): it imports erasekit and the registry once, and each child
# forks from it ready to load. Elsewhere (Windows) children are spawned.
_FORKSERVER = "forkserver" in multiprocessing.get_all_start_methods()
_CONTEXT: Any = multiprocessing.get_context("forkserver" if _FORKSERVER else "spawn")
if _FORKSERVER:
    _CONTEXT.set_forkserver_preload([__name__])


def _warm() -> None:
    """Import what the built-in methods need, in the fork server (so children fork with it loaded)."""
    import contextlib

    for name in ("telea",):
        with contextlib.suppress(Exception):
            get_method(name)
    import cv2  # noqa: F401 - the classical fills' library


if multiprocessing.parent_process() is not None:  # imported in the fork server, not in the server itself
    _warm()


def _serve(name: str, conn) -> None:  # runs in the child
    try:
        remover = load_remover(name)
    except BaseException as exc:  # noqa: BLE001 - a load error goes back to the parent as is
        conn.send((False, _portable(exc)))
        return
    conn.send((True, None))
    while True:
        try:
            request, refine = conn.recv()
        except EOFError:
            return
        try:
            request = replace(request, refine=parse_refine(refine))
            conn.send((True, remover(request)))
        except BaseException as exc:  # noqa: BLE001 - every failure is the caller's answer
            conn.send((False, _portable(exc)))


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it pickles (erasekit's errors do), else a RuntimeError naming it."""
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def refine_text(request: RemovalRequest) -> str | None:
    """The refiners as the text the child parses again, or None when one of them is not a registered
    name with plain options (then the job runs in-process)."""
    parts = []
    for refiner in request.refine:
        described = refiner.describe()
        options = {k: v for k, v in described.items() if k != "name"}
        texts = [json.dumps(v) for v in options.values() if isinstance(v, (bool, int, float, str))]
        if len(texts) != len(options) or any(c in t for t in texts for c in ":,"):
            return None
        pairs = (f"{k}={t}" for k, t in zip(options, texts, strict=True))
        parts.append(":".join([described["name"], *pairs]))
    return ",".join(parts)


class ChildProcessRemover:
    """One method, loaded and run in a child process that can be killed."""

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Any = None
        self._start()  # load errors (missing library, weights) surface here, as for an in-process load

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _start(self) -> None:
        parent, child = _CONTEXT.Pipe()
        process = _CONTEXT.Process(target=_serve, args=(self.name, child), daemon=True,
                                   name=f"erasekit-{self.name}")
        process.start()
        child.close()
        try:
            ok, error = parent.recv()
        except EOFError:
            process.join()
            raise RuntimeError(f"the {self.name!r} worker process exited while loading") from None
        if not ok:
            process.join()
            raise error
        self._process, self._conn = process, parent

    def __call__(self, request: RemovalRequest, token: CancelToken, refine: str) -> RemovalResult:
        if self._process is None or not self._process.is_alive():
            self._start()
        self._conn.send((replace(request, refine=()), refine))
        while not self._conn.poll(_POLL_S):
            if not self._process.is_alive():
                self.stop()
                raise RuntimeError(f"the {self.name!r} worker process died")
            try:
                token.check()
            except ErasekitError:
                self.stop()  # the C call cannot be interrupted: end the process running it
                raise
        ok, payload = self._conn.recv()
        if not ok:
            raise payload
        return payload

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
            self._conn.close()
        self._process = self._conn = None


class ChildPool:
    """Up to ``size`` children of one method, so its calls run side by side: each child has its own copy of
    the method, so there is no shared per-call state to protect (unlike an in-process model). One long fill
    then holds one child, not every request for that method."""

    def __init__(self, name: str, size: int):
        self.name = name
        self._slots = threading.Semaphore(size)
        self._lock = threading.Lock()
        self._idle = [ChildProcessRemover(name)]  # the first loads now: load errors surface at load time
        self._all = list(self._idle)

    @contextmanager
    def lease(self) -> Iterator[ChildProcessRemover]:
        with self._slots:
            with self._lock:
                child = self._idle.pop() if self._idle else None
            if child is None:
                child = ChildProcessRemover(self.name)
                with self._lock:
                    self._all.append(child)
            try:
                yield child
            finally:
                with self._lock:
                    self._idle.append(child)

    def stop(self) -> None:
        with self._lock:
            children = list(self._all)
        for child in children:
            child.stop()

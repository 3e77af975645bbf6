"""Running removals for many clients: one model instance per method, one call at a time per instance, and a
bounded number of jobs in flight.

Why a lock per method: a loaded model (a diffusers pipeline, the native PatchMatch library) keeps per-call
state on the object, so two requests must never run through the same instance at once (IOPaint's shared-model
race). Methods are independent of each other, so two different methods may run side by side.

Why a bound: every admitted job holds its decoded image in memory while it waits. Past ``capacity`` jobs
(running plus waiting) the server answers 503 with a Retry-After estimated from recent job durations, instead
of queueing without limit.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..registry import get_method, load_remover
from ..types import RemovalRequest, RemovalResult
from .cancel import CancelToken
from .errors import ServerBusyError
from .isolation import ChildPool, refine_text

ProgressFn = Callable[[int, int], None]
# Work that completes the request once the job runs (text -> mask puts the mask in): inside the time budget.
BeforeFn = Callable[[RemovalRequest], None]


class MethodWorker:
    """One loaded remover and the lock that serialises calls to it.

    An isolated method (a classical fill) lives in child processes (:class:`ChildPool`), which run its calls
    side by side; a request whose refiners cannot be sent there by name runs in-process instead, loading the
    remover here on first need.
    """

    def __init__(self, name: str, remover: Any, loader: Callable[[str], Any] = load_remover):
        self.name = name
        self.pool = remover if isinstance(remover, ChildPool) else None
        self.remover: Any = None if self.pool is not None else remover
        self._loader = loader
        self.lock = threading.Lock()

    @property
    def streams_progress(self) -> bool:
        """Whether the remover reports per-step progress: a ``progress`` attribute (diffusion baselines) or a
        ``progress`` per-call option."""
        remover = self.remover
        if remover is None:
            return False
        return hasattr(remover, "progress") or "progress" in getattr(remover, "call_options", ())

    def run(self, request: RemovalRequest, progress: ProgressFn | None = None,
            on_start: Callable[[], None] | None = None, token: CancelToken | None = None,
            before: BeforeFn | None = None) -> RemovalResult:
        token = token or CancelToken(float("inf"))

        def begin() -> None:
            token.start()
            token.check()  # cancelled while it waited for the method
            if on_start is not None:
                on_start()
            if before is not None:
                before(request)  # one model call, not interruptible: checked for time and cancel after it
                token.check()

        text = refine_text(request) if self.pool is not None else None
        if self.pool is not None and text is not None:
            with self.pool.lease() as child:
                begin()
                return child(request, token, text)
        with self.lock:
            begin()
            if self.remover is None:
                self.remover = self._loader(self.name)
            if not self.streams_progress:
                return self.remover(request)

            def step(done: int, total: int) -> None:
                token.check()  # a cancelled or overdue diffusion job stops at its next step
                if progress is not None:
                    progress(done, total)

            if hasattr(self.remover, "progress"):
                # Safe to set on the shared instance: we hold its lock for the whole call.
                previous = self.remover.progress
                self.remover.progress = step
                try:
                    return self.remover(request)
                finally:
                    self.remover.progress = previous
            request.options = {**request.options, "progress": step}
            return self.remover(request)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop()


class Slot:
    """One admitted job's place in the queue; releasing it twice is harmless."""

    def __init__(self, queue: WorkQueue):
        self._queue = queue
        self._held = True
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._queue._release()


@dataclass
class Outcome:
    result: RemovalResult
    queue_seconds: float


class WorkQueue:
    """Admission control plus a thread pool; removers are loaded lazily, once, on first use."""

    def __init__(self, capacity: int, loader: Callable[[str], Any] = load_remover, *,
                 isolate: Callable[[str], bool] = lambda name: False):
        self.capacity = capacity
        self._loader = loader
        self._isolate = isolate
        # Children per isolated method: as many as can run at once, within the queue.
        self._children = max(1, min(capacity, os.cpu_count() or 1))
        self._lock = threading.Lock()
        self._in_flight = 0
        self._workers: dict[str, MethodWorker] = {}
        self._load_locks: dict[str, threading.Lock] = {}
        self._mean_seconds = 1.0  # exponential moving average of job durations, for Retry-After
        # One thread per admitted job at most: a waiting job blocks on its method's lock, not on the pool.
        self._pool = ThreadPoolExecutor(max_workers=capacity, thread_name_prefix="erasekit-job")

    # ---- state ---------------------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self._in_flight

    def loaded(self) -> list[str]:
        return sorted(self._workers)

    def loaded_worker(self, name: str) -> MethodWorker | None:
        return self._workers.get(name)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: about one job's duration (clamped to 1..120)."""
        return int(min(120, max(1, math.ceil(self._mean_seconds))))

    # ---- loading -------------------------------------------------------------------------------------------
    def worker(self, name: str) -> MethodWorker:
        """The worker for ``name``, loading its remover the first time.

        Load errors, such as missing weights, propagate.
        """
        worker = self._workers.get(name)
        if worker is not None:
            return worker
        with self._lock:
            load_lock = self._load_locks.setdefault(name, threading.Lock())
        with load_lock:  # two first requests for the same method load it once
            worker = self._workers.get(name)
            if worker is None:
                isolated = self._isolate(name)
                remover = ChildPool(name, self._children) if isolated else self._loader(name)
                worker = MethodWorker(name, remover, self._loader)
                self._workers[name] = worker
        return worker

    # ---- running -------------------------------------------------------------------------------------------
    @property
    def full(self) -> bool:
        return self._in_flight >= self.capacity

    def busy_error(self) -> ServerBusyError:
        return ServerBusyError(
            f"the server is busy ({self._in_flight} jobs running or waiting); retry later",
            retry_after=self.retry_after(),
        )

    def admit(self) -> Slot:
        """Reserve a place for one job or raise :class:`ServerBusyError` (503) at once.

        The slot is taken before the upload is decoded, so decoded images in memory are bounded by
        ``capacity`` too; release it if the job never gets submitted (bad input).
        """
        with self._lock:
            if self._in_flight >= self.capacity:
                raise self.busy_error()
            self._in_flight += 1
        return Slot(self)

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def submit(
        self,
        slot: Slot,
        method: str,
        request: RemovalRequest,
        *,
        progress: ProgressFn | None = None,
        on_start: Callable[[], None] | None = None,
        token: CancelToken | None = None,
        before: BeforeFn | None = None,
    ) -> Future[Outcome]:
        """Run ``request`` with ``method`` in the pool; the slot is released when the job ends. ``token``
        stops it (cancel, time budget); ``before`` completes the request once the job has started."""
        submitted = time.perf_counter()

        def job() -> Outcome:
            started = [submitted]

            def mark_started() -> None:
                started[0] = time.perf_counter()
                if on_start is not None:
                    on_start()

            try:
                result = self.worker(method).run(request, progress, mark_started, token, before)
                elapsed = time.perf_counter() - started[0]
                with self._lock:
                    self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * elapsed
                return Outcome(result, started[0] - submitted)
            finally:
                slot.release()

        try:
            future = self._pool.submit(job)
        except RuntimeError:  # the pool is shut down: the server is stopping
            slot.release()
            raise ServerBusyError("the server is shutting down", retry_after=self.retry_after()) from None
        # A job cancelled before it started (client gone, shutdown) never runs its `finally`: free the slot
        # here.
        future.add_done_callback(lambda _: slot.release())
        return future

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for worker in list(self._workers.values()):
            worker.stop()


def isolate_classical(name: str) -> bool:
    """Whether ``name`` is a classical fill (one uninterruptible C call), run in a child process."""
    return get_method(name).family == "classical"

"""Progress jobs: submit a removal, then follow it as server-sent events and fetch the result.

A job's events are appended by the worker thread (``queued``, ``started``, ``progress`` per denoising step for
step-based methods, then ``done`` or ``error``) and read by any number of SSE streams, each in its own event
loop position. Every reader gets the full history from the start, so a client that subscribes late misses
nothing.

Jobs are kept in memory only (no files): at most ``max_jobs`` of them, finished ones expire after ``ttl``
seconds.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ServerBusyError

Status = Literal["queued", "running", "done", "error"]


@dataclass
class Event:
    name: str
    data: dict[str, Any]


@dataclass
class Job:
    id: str
    method: str
    status: Status = "queued"
    events: list[Event] = field(default_factory=list)
    response: Any = None  # processing.EncodedResult once done
    error: dict[str, str] | None = None
    progress: dict[str, int] | None = None
    finished_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "error")

    # ---- writing (any thread) ------------------------------------------------------------------------------
    def publish(self, name: str, data: dict[str, Any], *, status: Status | None = None) -> None:
        with self._lock:
            if status is not None:
                self.status = status
                if status in ("done", "error"):
                    self.finished_at = time.monotonic()
            self.events.append(Event(name, {"job": self.id, **data}))
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # that reader's loop has closed: nobody is listening there any more

    # ---- reading (async) -----------------------------------------------------------------------------------
    async def follow(self) -> AsyncIterator[tuple[int, Event]]:
        """Every event from the first, waiting for new ones until the job finishes."""
        index = 0
        while True:
            with self._lock:
                pending = self.events[index:]
                finished = self.finished
                wake = None
                if not pending and not finished:
                    wake = asyncio.Event()
                    self._waiters.append((asyncio.get_running_loop(), wake))
            for event in pending:
                yield index, event
                index += 1
            if wake is not None:
                await wake.wait()
            elif finished and not pending:
                return


class JobStore:
    """The bounded, in-memory table of jobs."""

    def __init__(self, max_jobs: int, ttl: float):
        self.max_jobs = max_jobs
        self.ttl = ttl
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self) -> None:
        now = time.monotonic()
        for job_id in [
            j.id for j in self._jobs.values() if j.finished_at is not None and now - j.finished_at > self.ttl
        ]:
            del self._jobs[job_id]
        # Over the bound: drop the oldest finished jobs; unfinished ones are bounded by the work queue.
        finished = [j.id for j in self._jobs.values() if j.finished]
        while len(self._jobs) >= self.max_jobs and finished:
            del self._jobs[finished.pop(0)]

    def create(self, method: str) -> Job:
        with self._lock:
            self._expire()
            if len(self._jobs) >= self.max_jobs:
                raise ServerBusyError("too many unfinished jobs; retry later", retry_after=5)
            job = Job(id=secrets.token_urlsafe(16), method=method)
            self._jobs[job.id] = job
            return job

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._expire()
            return self._jobs.get(job_id)

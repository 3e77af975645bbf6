"""Progress jobs: submit a removal, then follow it as server-sent events and fetch the result.

A job's events are appended by the worker thread (``queued``, ``started``, ``progress`` per denoising step for
step-based methods, then ``done`` or ``error``) and read by any number of SSE streams, each in its own event
loop position. Every reader gets the full history from the start, so a client that subscribes late misses
nothing.

Jobs are kept in memory only (no files): at most ``max_jobs`` of them, and their finished results (encoded
bytes, never arrays) within ``result_budget`` bytes. A finished job stays for ``ttl`` seconds, never less:
when the table or the budget is full a new job gets 503 with the time until the oldest result expires,
instead of evicting a result a client may still fetch.
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

from .cancel import CancelToken
from .errors import ServerBusyError

Status = Literal["queued", "running", "done", "error", "cancelled"]


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
    token: CancelToken | None = None
    future: Any = None  # the running job's Future until it ends
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "error", "cancelled")

    @property
    def held_bytes(self) -> int:
        """Bytes of the encoded result this job keeps."""
        if self.response is None:
            return 0
        response = self.response
        return len(response.image) + len(response.alpha_png or b"") + len(response.mask_png or b"")

    # ---- writing (any thread) ------------------------------------------------------------------------------
    def publish(self, name: str, data: dict[str, Any], *, status: Status | None = None) -> None:
        with self._lock:
            if status is not None:
                self.status = status
                if status in ("done", "error", "cancelled"):
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

    def __init__(self, max_jobs: int, ttl: float, result_budget: int | None = None):
        self.max_jobs = max_jobs
        self.ttl = ttl
        self.result_budget = result_budget
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self) -> None:
        """Drop the finished jobs older than the TTL, and only those."""
        now = time.monotonic()
        for job_id in [
            j.id for j in self._jobs.values() if j.finished_at is not None and now - j.finished_at > self.ttl
        ]:
            del self._jobs[job_id]

    @property
    def held_bytes(self) -> int:
        return sum(job.held_bytes for job in list(self._jobs.values()))

    def _retry_after(self) -> int:
        now = time.monotonic()
        ends = [j.finished_at + self.ttl - now for j in self._jobs.values() if j.finished_at is not None]
        return int(min(120, max(1, min(ends, default=5))))

    def create(self, method: str, token: CancelToken | None = None) -> Job:
        with self._lock:
            self._expire()
            if len(self._jobs) >= self.max_jobs:
                raise ServerBusyError(
                    f"{len(self._jobs)} jobs are kept (results stay {self.ttl:g} s); retry later",
                    retry_after=self._retry_after(),
                )
            if self.result_budget is not None and self.held_bytes >= self.result_budget:
                raise ServerBusyError(
                    "finished results fill the server's result memory; retry later",
                    retry_after=self._retry_after(),
                )
            job = Job(id=secrets.token_urlsafe(16), method=method, token=token)
            self._jobs[job.id] = job
            return job

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._expire()
            return self._jobs.get(job_id)

    def __len__(self) -> int:
        return len(self._jobs)

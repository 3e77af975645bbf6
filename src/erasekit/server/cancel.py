"""A job's stop signal: cancelled by a client (DELETE, or a /remove client that went away) or out of time.

Step-based methods check it at every denoising step (through their progress hook); classical fills run in a
child process that is killed when it fires (:mod:`.isolation`). The time budget counts from the moment the job
starts running, not while it waits for its method.
"""

from __future__ import annotations

import threading
import time

from .errors import JobCancelledError, JobTimeoutError


class CancelToken:
    def __init__(self, budget_s: float):
        self.budget_s = budget_s
        self.deadline: float | None = None
        self.reason: str | None = None
        self._event = threading.Event()

    def start(self) -> None:
        self.deadline = time.monotonic() + self.budget_s

    def cancel(self, reason: str = "cancelled") -> None:
        if self.reason is None:
            self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise if the job must stop now."""
        if self._event.is_set():
            raise JobCancelledError(f"the job was cancelled ({self.reason})")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise JobTimeoutError(
                f"the job ran past the server's time budget of {self.budget_s:g} s and was stopped; "
                "use fewer steps, a smaller image or a smaller mask"
            )

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` or until cancelled; True when cancelled."""
        return self._event.wait(seconds)

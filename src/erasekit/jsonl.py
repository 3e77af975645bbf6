"""Crash-safe JSON-lines files: the dataset manifests, decision logs and batch reports erasekit appends to.

Each record is appended, flushed and fsynced before the next one starts, so a killed process leaves at most
one torn last line (one without its newline). Readers ignore that line with a warning;
:func:`repair_torn_tail` removes it before a writer appends again.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from .types import InvalidInputError


def append_line(stream: IO[str], record: Mapping[str, Any] | str) -> None:
    """Append one record (a mapping, or an already serialised JSON object) and make it durable."""
    stream.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    stream.flush()
    os.fsync(stream.fileno())


def repair_torn_tail(path: str | os.PathLike) -> None:
    """Cut an interrupted last line off ``path`` (no-op when the file is missing or ends in a newline)."""
    path = Path(path)
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)  # 0 when the only line is torn
            handle.flush()
            os.fsync(handle.fileno())


def read_lines(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for every complete, non-blank line.

    A torn last line is skipped with a warning; a complete line that is not a JSON object is an
    :class:`InvalidInputError` naming the file and line.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines[-1] != "":
        warnings.warn(f"{path}: ignoring an incomplete last line (interrupted write)", stacklevel=2)
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InvalidInputError(f"{where}: expected a JSON object")
        yield number, record

"""Atomic, durable file writes: the one place in erasekit that writes a temporary file and renames it.

A reader (or a resumed run) sees either the old file or the complete new one, never a torn one, and after a
power loss the rename is not lost: the data is fsynced before the rename and the folder after it (POSIX needs
both; Windows has no folder fsync and needs neither). The temporary file sits beside the target (a rename
within one file system is atomic), is created with ``O_EXCL`` under a random name (two writers never share
one) and is removed when the write fails, so a failed write leaves the old file untouched and no litter.

* :func:`write_bytes` / :func:`write_text` / :func:`write_json`: write a payload;
* :func:`atomic_write`: write through ``write(stream)`` (CSV writers, PIL's ``save``, ...);
* :func:`atomic_path`: a context manager yielding a temporary path, for libraries that only write by file
  name (``torch.save``, safetensors' ``save_file``, ``cv2.imwrite``).

The standard library has no such helper (``tempfile`` + ``os.replace`` is the recipe), hence this module;
``tests/test_atomic.py`` fails if a hand-written temp-then-rename appears anywhere else in the package.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "atomic_write", "fsync_folder", "write_bytes", "write_json", "write_text"]


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename inside ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on a folder; the rename happened
            os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(path: Path) -> tuple[int, Path]:
    """An exclusive new file beside ``path``: (open descriptor, its path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(16):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            # 0o666: the umask decides the permissions, as for any new file.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file beside '{path}'")


def _commit(temp: Path, path: Path) -> None:
    os.replace(temp, path)
    fsync_folder(path.parent)


@contextlib.contextmanager
def _discard_on_error(temp: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` through ``write(binary_stream)``, atomically and durably. Returns the path."""
    path = Path(path)
    fd, temp = _create_temp(path)
    with _discard_on_error(temp):
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        _commit(temp, path)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write by name; on success it is fsynced and renamed.

    ``suffix`` is appended to the temporary name for writers that choose a format by extension
    (``cv2.imwrite(temp, ...)`` with ``suffix=".png"``). On an exception the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    fd, temp = _create_temp(path)
    os.close(fd)
    named = temp.with_name(temp.name + suffix) if suffix else temp
    if named != temp:
        os.replace(temp, named)
    with _discard_on_error(named):
        yield named
        with open(named, "rb+") as stream:
            os.fsync(stream.fileno())
        _commit(named, path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically replace ``path`` with ``data``."""
    return atomic_write(path, lambda stream: stream.write(data))


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Atomically replace ``path`` with ``text``."""
    return write_bytes(path, text.encode(encoding))


def write_json(path: str | os.PathLike, payload: Any, *, indent: int | None = 2, **dumps: Any) -> Path:
    """Atomically replace ``path`` with ``payload`` as JSON (and a final newline)."""
    return write_text(path, json.dumps(payload, indent=indent, **dumps) + "\n")

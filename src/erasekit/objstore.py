"""Object-store URLs (``s3://``, ``gs://``, ``az://``, ``memory://``, ...) for batch inputs, mask folders and
benchmark datasets, read through `fsspec <https://filesystem-spec.readthedocs.io>`_.

fsspec is the field's common layer over object stores: ``s3fs`` serves ``s3://``, ``gcsfs`` ``gs://``,
``adlfs`` ``az://``, and ``memory://`` is built in (one store per process: tests and the local executor
only, Ray actors cannot see it). erasekit does not configure them: credentials and
endpoints come from each backend's usual sources (for S3 the ``AWS_*`` environment variables, including
``AWS_ENDPOINT_URL`` for MinIO and other S3-compatible stores, ``~/.aws/config`` and instance roles), or from
fsspec's own ``FSSPEC_<PROTOCOL>_<OPTION>`` variables (``FSSPEC_S3_ANON=true``).

What costs a request: a prefix is listed once (:func:`list_images`, :func:`list_names`; a listing of a large
prefix is paged by the backend, 1,000 keys a request on S3), an object is fetched with one GET
(:func:`read_bytes`). Listings are never served from fsspec's listing cache: each call asks the store again,
so a resumed run sees what is there now.

A scheme whose backend is not installed, or one fsspec does not know, is one :class:`InvalidInputError`
(exit 2) naming the package to install.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from .types import InvalidInputError

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


def is_url(location: str | os.PathLike) -> bool:
    """True for ``scheme://...`` (an object store, or any fsspec protocol); False for a local path."""
    return isinstance(location, str) and _SCHEME.match(location) is not None


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec file system, path inside it) for ``url``; a missing backend or unknown scheme is exit 2."""
    match = _SCHEME.match(url)
    scheme = match.group("scheme").lower() if match else ""
    try:
        import fsspec  # type: ignore[import-untyped]
        from fsspec.registry import known_implementations  # type: ignore[import-untyped]
    except ImportError:
        raise InvalidInputError(
            f"reading '{scheme}://' URLs needs fsspec: pip install 'erasekit[cluster]'"
        ) from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError:
        known = known_implementations.get(scheme, {})
        package = str(known.get("class", "")).split(".")[0] or "its fsspec backend"
        raise InvalidInputError(
            f"reading '{scheme}://' URLs needs the {package} package: pip install {package}"
        ) from None
    except ValueError as exc:
        raise InvalidInputError(f"cannot use '{url}': {exc} (no fsspec backend for '{scheme}://')") from None


def name(location: str | os.PathLike) -> str:
    """The last component of a URL or path: ``s3://b/photos/cat.jpg`` -> ``cat.jpg``."""
    text = os.fspath(location)
    return posixpath.basename(text.rstrip("/")) if is_url(text) else Path(text).name


def join(url: str, child: str) -> str:
    """``url`` (a prefix) / ``child``."""
    return url.rstrip("/") + "/" + child


def same_object(a: str, b: str) -> bool:
    """Whether two URLs name the same object (``memory://x/a.png`` and ``memory:///x/a.png`` do)."""
    fs_a, path_a = filesystem(a)
    fs_b, path_b = filesystem(b)
    return type(fs_a) is type(fs_b) and path_a.rstrip("/") == path_b.rstrip("/")


def _fresh(fs: Any, path: str) -> None:
    """Forget fsspec's cached listing of ``path`` so the next call asks the store."""
    fs.invalidate_cache(path)


def _kind(fs: Any, path: str) -> str | None:
    """"file", "directory" or None (nothing there)."""
    try:
        return str(fs.info(path).get("type"))
    except FileNotFoundError:
        return None


def _magic_at(text: str) -> int | None:
    found = [i for i in (text.find(c) for c in "*?[") if i >= 0]
    return min(found) if found else None


def _files(fs: Any, entries: list[dict[str, Any]], extensions: Collection[str], url: str, path: str
           ) -> list[str]:
    """URLs of the image objects among listing ``entries`` (hidden names left out), sorted, spelled as the
    user spelled ``url`` (fs path ``path``) up to its last fixed folder (memory:// would add a slash)."""
    path_root, url_root = path, url
    if (cut := _magic_at(path)) is not None:  # a glob: up to the folder before its first wildcard
        path_root = path[: max(path.rfind("/", 0, cut), 0)]
        url_root = url[: url.rfind("/", 0, _magic_at(url))]
    urls = []
    for entry in entries:
        key = str(entry["name"]).rstrip("/")
        base = posixpath.basename(key)
        if entry.get("type") != "file" or base.startswith("."):
            continue
        if posixpath.splitext(base)[1].lower() in extensions:
            inside = key.startswith(path_root.rstrip("/") + "/")
            urls.append(join(url_root, key[len(path_root.rstrip("/")) + 1:]) if inside
                        else fs.unstrip_protocol(key))
    return sorted(urls)


@contextlib.contextmanager
def _listing(url: str) -> Iterator[None]:
    """A listing that fails for a reason other than "nothing there" (credentials, endpoint, permissions) is
    the user's URL or configuration: one line, exit 2, before the batch does any work."""
    try:
        yield
    except (FileNotFoundError, InvalidInputError):
        raise
    except PermissionError:
        raise InvalidInputError(f"cannot list '{url}': permission denied") from None
    except Exception as exc:  # noqa: BLE001 (each backend raises its own classes: botocore, google-auth, ...)
        raise InvalidInputError(f"cannot list '{url}': {type(exc).__name__}: {exc}") from None


def list_images(url: str, extensions: Collection[str]) -> list[str]:
    """The image objects ``url`` names: itself if it is one object, those directly under it if it is a
    prefix (one listing, not recursive, as for a folder), those a glob pattern matches (``**`` recurses).
    Nothing there: ``[url]`` (the batch records it as a failed item instead of silently doing less)."""
    import glob

    fs, path = filesystem(url)
    _fresh(fs, path)
    with _listing(url):
        if glob.has_magic(path):
            found = fs.glob(path, detail=True)
            return _files(fs, list(found.values()), extensions, url, path) or [url]
        if _kind(fs, path) == "directory":
            return _files(fs, fs.ls(path, detail=True), extensions, url, path)
    return [url]


def list_names(url: str) -> set[str]:
    """The object names directly under prefix ``url``, from one listing; a missing prefix raises."""
    fs, path = filesystem(url)
    _fresh(fs, path)
    try:
        with _listing(url):
            entries = fs.ls(path, detail=True)
            if not entries and _kind(fs, path) is None:
                raise FileNotFoundError(path)
    except FileNotFoundError:
        raise InvalidInputError(f"mask folder '{url}' does not exist") from None
    return {posixpath.basename(str(e["name"]).rstrip("/")) for e in entries if e.get("type") == "file"}


MAX_OBJECT_BYTES_ENV = "ERASEKIT_MAX_OBJECT_BYTES"
DEFAULT_MAX_OBJECT_BYTES = 1 << 30  # 1 GiB: past any photo the pixel limit lets through, short of filling RAM


def max_object_bytes() -> int:
    """The largest object :func:`read_bytes` fetches: ``$ERASEKIT_MAX_OBJECT_BYTES``, else 1 GiB."""
    raw = os.environ.get(MAX_OBJECT_BYTES_ENV, "").strip().replace("_", "")
    if not raw:
        return DEFAULT_MAX_OBJECT_BYTES
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidInputError(f"{MAX_OBJECT_BYTES_ENV} must be a whole number of bytes >= 1, got {raw!r}")
    return int(raw)


def read_bytes(url: str, what: str = "object") -> bytes:
    """The bytes of one object (one GET); missing or forbidden is an :class:`InvalidInputError`, one larger
    than :func:`max_object_bytes` a :class:`~erasekit.types.ResourceLimitError` (exit 4). The GET asks for
    one byte more than the limit (a ranged read), so an oversized object is never downloaded whole."""
    from .types import ResourceLimitError

    limit = max_object_bytes()
    fs, path = filesystem(url)
    try:
        data = bytes(fs.cat_file(path, start=0, end=limit + 1))
        if len(data) > limit:
            raise ResourceLimitError(
                f"{what} '{url}' is larger than {limit} bytes; raise {MAX_OBJECT_BYTES_ENV} to read it"
            )
        return data
    except FileNotFoundError:
        raise InvalidInputError(f"{what} '{url}' does not exist") from None
    except PermissionError:
        raise InvalidInputError(f"cannot read {what} '{url}': permission denied") from None
    except IsADirectoryError:
        raise InvalidInputError(f"cannot read {what} '{url}': it is a prefix, not an object") from None


def mirror(url: str, folder: str | os.PathLike) -> Path:
    """Copy every object under prefix ``url`` (recursively) into ``folder``, keeping the relative layout.

    One recursive listing; objects whose copy already exists with the same size are not fetched again, and
    each copy is written atomically (:mod:`erasekit.atomic`), so an interrupted mirror resumes. For the
    benchmark's datasets (thousands of files, read many times by path-based readers), not for batch inputs.
    """
    from .atomic import write_bytes

    fs, path = filesystem(url)
    _fresh(fs, path)
    root = path.rstrip("/")
    with _listing(url):
        entries = fs.find(root, detail=True)
    if not entries:
        raise InvalidInputError(f"dataset '{url}' has no objects")
    destination = Path(folder)
    for key, info in sorted(entries.items()):
        relative = posixpath.relpath(str(key), root)
        if relative.startswith("..") or any(part in ("", ".", "..") for part in relative.split("/")):
            continue  # a key that would land outside the copy
        target = destination.joinpath(*relative.split("/"))
        if target.is_file() and target.stat().st_size == int(info.get("size") or -1):
            continue
        write_bytes(target, read_bytes(fs.unstrip_protocol(key), "dataset object"))
    return destination


__all__ = ["filesystem", "is_url", "join", "list_images", "list_names", "mirror", "name", "read_bytes",
           "same_object"]

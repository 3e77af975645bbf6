"""A real S3 endpoint on this machine for tests and benchmarks: moto's server (``moto[server]``) on
127.0.0.1, reached by s3fs through the standard ``AWS_ENDPOINT_URL`` variable, as a MinIO would be.

Nothing leaves the machine: moto keeps the buckets in memory and speaks the S3 REST protocol (listing pages,
GETs, PUTs) over HTTP, so the code under test runs unchanged against it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ..types import InvalidInputError

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def local_s3_unavailable() -> str | None:
    """Why :func:`local_s3` cannot run here (a missing package), or None."""
    for module, package in (("s3fs", "s3fs"), ("moto.server", "moto[server]"), ("flask", "moto[server]")):
        try:
            __import__(module)
        except ImportError:
            return f"needs {package} (pip install 'erasekit[dev]')"
    return None


@contextlib.contextmanager
def local_s3() -> Iterator[str]:
    """Start moto's S3 server on a free local port and point ``AWS_*`` at it; yields the endpoint URL.

    The environment is restored afterwards. Child processes started inside (a CLI run, a local Ray
    instance) inherit the endpoint and the dummy credentials.
    """
    reason = local_s3_unavailable()
    if reason is not None:
        raise InvalidInputError(f"a local S3 server {reason}")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _forget_s3_clients()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in (*S3_ENV, "AWS_ENDPOINT_URL")}
    os.environ.update(S3_ENV, AWS_ENDPOINT_URL=endpoint)
    try:
        yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
        _forget_s3_clients()


def _forget_s3_clients() -> None:
    """fsspec reuses one S3 client per set of arguments: drop them, so the next endpoint gets a new one."""
    from s3fs import S3FileSystem  # type: ignore[import-untyped]

    S3FileSystem.clear_instance_cache()


def upload(folder: str | os.PathLike, url: str) -> list[str]:
    """Put every file under ``folder`` (recursively, keeping the layout) under prefix ``url``, creating
    the bucket if needed; returns the object URLs."""
    from ..objstore import filesystem, join

    fs, path = filesystem(url)
    bucket = path.split("/", 1)[0]
    if bucket and not fs.exists(bucket):  # memory:// paths start with "/": no bucket to make
        fs.mkdir(bucket)
    root = Path(folder)
    urls = []
    for file in sorted(root.rglob("*")):
        if file.is_file():
            target = join(url, file.relative_to(root).as_posix())
            fs.pipe_file(filesystem(target)[1], file.read_bytes())
            urls.append(target)
    fs.invalidate_cache()
    return urls


__all__ = ["S3_ENV", "local_s3", "local_s3_unavailable", "upload"]

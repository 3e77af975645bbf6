"""Issue 18: the server under attack. Work per request is bounded (dilation, steps, a time budget), jobs can
be cancelled (DELETE, a /remove client that goes away, a classical fill killed in its child process), Host and
cross-site checks run before the body, uploads are admitted, counted and timed, results are kept as bytes
within a budget and never evicted early, image formats are allow-listed, and the small defects of item 14.

Socket-level behaviour (a body that never comes, a client that goes away) runs against a real uvicorn server
on 127.0.0.1; the rest uses Starlette's test client.
"""

from __future__ import annotations

import gc
import io
import logging
import socket
import threading
import time
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import test_server as base  # pytest's default import mode puts this file's folder on sys.path
from erasekit import registry
from erasekit.methods.base import Remover
from erasekit.options import Option, OptionSet, Range
from erasekit.server import ServerSettings, create_app
from erasekit.server.cancel import CancelToken
from erasekit.server.errors import JobCancelledError
from erasekit.server.isolation import ChildProcessRemover
from erasekit.server.jobs import JobStore
from erasekit.types import RemovalRequest
from live_server import LiveServer
from test_server import MASK, PHOTO, TestClient, expect_error, files, png

API = "/api/v1"
fake_method = base.fake_method  # the same fixture: fake removers registered for one test


# ------------------------------------------------------------------------------------------------------------
# Fakes and a live server
# ------------------------------------------------------------------------------------------------------------
class SlowStepper(Remover):
    """A step-based method whose steps take 20 ms each; records how many steps ran."""

    name: ClassVar[str] = "slow-stepper"
    call_options = OptionSet(Option("steps", int, default=200, range=Range(1, 1000), help="steps"))
    steps_run: ClassVar[int] = 0

    def __init__(self):
        self.progress = None

    def inpaint(self, image, mask, request):
        total = request.options["steps"]
        for i in range(total):
            time.sleep(0.02)
            type(self).steps_run = i + 1
            if self.progress is not None:
                self.progress(i + 1, total)
        out = image.copy()
        out[mask > 0] = 0
        return out, None


@pytest.fixture(autouse=True)
def _fresh_counters():
    SlowStepper.steps_run = 0
    TargetTaker.seen.clear()


class TargetTaker(Remover):
    """A method that takes a ``target`` per call, like MagicRemover; returns the input."""

    name: ClassVar[str] = "target-taker"
    call_options = OptionSet(Option("target", str, nullable=True, help="what to remove"))
    seen: ClassVar[list] = []

    def inpaint(self, image, mask, request):
        type(self).seen.append(request.options["target"])
        return image.copy(), None


def _status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def _multipart(method: str, extra: dict[str, str] | None = None) -> tuple[str, bytes]:
    boundary = "erasekitboundary"
    parts = []
    for name, (filename, content) in {"image": ("a.png", png(PHOTO)), "mask": ("m.png", png(MASK))}.items():
        disposition = f'form-data; name="{name}"; filename="{filename}"'
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n"
                     .encode() + content + b"\r\n")
    for name, value in {"method": method, **(extra or {})}.items():
        disposition = f'form-data; name="{name}"'
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts) + f"--{boundary}--\r\n".encode()


def _post_head(port: int, path: str, content_type: str, length: int, extra: str = "") -> str:
    return (f"POST {path} HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Type: {content_type}\n"
            f"Content-Length: {length}\n{extra}")


# ------------------------------------------------------------------------------------------------------------
# 1-2. Work per request: dilation, option ranges, a time budget
# ------------------------------------------------------------------------------------------------------------
def test_dilation_is_bounded_by_the_image_and_the_schema():
    with TestClient(create_app(ServerSettings())) as c:
        expect_error(c.post(f"{API}/remove", files=files(), data={"method": "telea", "dilate": "97"}), 422,
                     "InvalidInputError", "longer side (96 px)")
        huge = c.post(f"{API}/remove", files=files(), data={"method": "telea", "dilate": "100000"})
        expect_error(huge, 422)
        ok = c.post(f"{API}/remove", files=files(), data={"method": "telea", "dilate": "12"})
        assert ok.status_code == 200 and ok.json()["metadata"]["dilate"] == 12


def test_every_numeric_option_of_every_method_has_a_bounded_range_and_steps_bombs_are_422():
    for name in registry.method_names():
        declared = registry.get_method(name).call_options
        for option in map(declared.__getitem__, declared or ()):
            if option.type in (int, float):
                span = option.range
                bounded = span is not None and np.isfinite([span.low, span.high]).all()
                assert bounded, (name, option.name)
    with TestClient(create_app(ServerSettings())) as c:
        # Checked against the declaration before anything loads (sd2-inpaint has no weights here).
        expect_error(c.post(f"{API}/remove", files=files(), data={"method": "sd2-inpaint",
                                                                  "options": '{"steps": 100000}'}),
                     422, contains="steps")


def test_a_job_past_its_time_budget_stops_at_the_next_step(fake_method):
    name, _, _ = fake_method(SlowStepper)
    with TestClient(create_app(ServerSettings(job_timeout_s=0.3))) as c:
        expect_error(c.post(f"{API}/remove", files=files(), data={"method": name}), 413, "JobTimeoutError",
                     "time budget of 0.3 s")
    assert SlowStepper.steps_run < 200


# ------------------------------------------------------------------------------------------------------------
# 3. Cancel: DELETE, a client that goes away, a classical fill in a child process
# ------------------------------------------------------------------------------------------------------------
def test_delete_cancels_a_running_job_at_its_next_step(fake_method):
    name, _, _ = fake_method(SlowStepper)
    with TestClient(create_app(ServerSettings())) as c:
        job = c.post(f"{API}/jobs", files=files(), data={"method": name}).json()
        while c.get(f"{API}/jobs/{job['id']}").json()["progress"] is None:
            time.sleep(0.01)
        assert c.delete(f"{API}/jobs/{job['id']}").status_code == 200
        deadline = time.monotonic() + 10
        while c.get(f"{API}/jobs/{job['id']}").json()["status"] != "cancelled":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        stopped_at = SlowStepper.steps_run
        time.sleep(0.1)
        assert SlowStepper.steps_run == stopped_at < 200  # it stopped, and does not go on
        expect_error(c.get(job["result_url"]), 410, "JobCancelledError", "DELETE")
        assert c.get(f"{API}/health").json()["queue"]["in_flight"] == 0
        expect_error(c.delete(f"{API}/jobs/unknown"), 404)


def test_a_client_that_disconnects_from_remove_cancels_its_work(fake_method, caplog):
    name, _, _ = fake_method(SlowStepper)
    content_type, body = _multipart(name)
    with LiveServer(ServerSettings()) as server, caplog.at_level(logging.INFO, "erasekit.server"):
        sock = server.raw(_post_head(server.port, f"{API}/remove", content_type, len(body)), body)
        deadline = time.monotonic() + 10
        while SlowStepper.steps_run < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        sock.close()
        while "disconnected from /remove" not in caplog.text:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.2)
        stopped_at = SlowStepper.steps_run
        time.sleep(0.2)
        assert SlowStepper.steps_run == stopped_at < 200


def test_a_classical_fill_is_killed_in_its_child_process_and_the_next_call_gets_a_fresh_one():
    size = 1024
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.float32)
    mask[size // 8 : -size // 8, size // 8 : -size // 8] = 1  # seconds of Telea: one uncancellable C call
    child = ChildProcessRemover("telea")
    try:
        first_pid = child.pid
        token = CancelToken(60)
        token.start()
        threading.Timer(0.3, token.cancel, args=("test",)).start()
        with pytest.raises(JobCancelledError, match="test"):
            child(RemovalRequest(image=image, mask=mask), token, "")
        assert child.pid is None
        with pytest.raises(ProcessLookupError):
            import os

            os.kill(first_pid, 0)  # the process running the fill is gone
        small = RemovalRequest(image=image[:64, :64], mask=mask[:64, :64] * 0 + np.pad(np.ones((8, 8)), 28))
        result = child(small, CancelToken(60), "color-match:ring=4")
        assert child.pid not in (None, first_pid)
        assert result.metadata["refine"][0]["name"] == "color-match"
    finally:
        child.stop()


# ------------------------------------------------------------------------------------------------------------
# 4. Host allow-list and cross-site writes, before the body is read
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("host", "status"), [
    ("127.0.0.1:8080", 200), ("localhost", 200), ("[::1]:8080", 200), ("evil.example", 400),
    ("photos.lan", 200), ("", 400),
])
def test_only_the_bound_loopback_and_allow_listed_hosts_are_answered(host, status):
    app = create_app(ServerSettings(allowed_hosts=("photos.lan",)))
    with TestClient(app) as c:
        response = c.get(f"{API}/health", headers={"Host": host})
        assert response.status_code == status
        if status == 400:
            expect_error(response, 400, "BadHost", "--allow-host")


@pytest.mark.parametrize(("headers", "status"), [
    ({"Origin": "http://evil.example"}, 403),
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3000"}, 403),
    ({"Origin": "null"}, 403),
    ({"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"}, 200),
    ({"Sec-Fetch-Site": "none"}, 200),
    ({"Origin": "https://example.org", "Sec-Fetch-Site": "cross-site"}, 200),  # on the CORS allow-list
])
def test_cross_site_writes_are_refused_unless_the_origin_is_allow_listed(headers, status):
    with TestClient(create_app(ServerSettings(cors_origins=("https://example.org",)))) as c:
        response = c.post(f"{API}/remove", files=files(), data={"method": "telea"}, headers=headers)
        assert response.status_code == status, response.text
        if status == 403:
            expect_error(response, 403, "Forbidden", "cross-site")
        assert c.delete(f"{API}/jobs/x", headers=headers).status_code == (403 if status == 403 else 404)
        assert c.get(f"{API}/health", headers=headers).status_code == 200  # reads are not state-changing


def test_host_origin_and_a_full_queue_are_refused_before_the_body_is_read(fake_method):
    name, _, _ = fake_method(SlowStepper)
    with LiveServer(ServerSettings(queue_size=1)) as server:
        for extra, status in (("Origin: http://evil.example\n", 403), ("Host: evil.example\n", 400)):
            head = _post_head(server.port, f"{API}/remove", "image/png", 10**6, extra)
            if extra.startswith("Host"):
                head = head.replace(f"Host: 127.0.0.1:{server.port}\n", "")
            with server.raw(head) as sock:  # headers only: the body never comes
                assert _status(sock) == status
        content_type, body = _multipart(name, {"options": '{"steps": 50}'})
        with server.raw(_post_head(server.port, f"{API}/jobs", content_type, len(body)), body) as busy:
            assert _status(busy) == 202
            with server.raw(_post_head(server.port, f"{API}/remove", content_type, len(body))) as sock:
                assert _status(sock) == 503  # the queue is full: answered without reading a byte


# ------------------------------------------------------------------------------------------------------------
# 5-7. Uploads: slots, read timeout, minimum rate, one log line per disconnect
# ------------------------------------------------------------------------------------------------------------
def test_upload_slots_read_timeout_and_one_log_line_per_disconnect(caplog):
    settings = ServerSettings(max_uploads=1, read_timeout_s=0.5, min_upload_rate=0)
    content_type, body = _multipart("telea")
    with LiveServer(settings) as server, caplog.at_level(logging.INFO, "erasekit.server"):
        head = _post_head(server.port, f"{API}/remove", content_type, len(body))
        with server.raw(head, body[:100]) as slow:
            time.sleep(0.1)
            with server.raw(head, body) as second:
                assert _status(second) == 503  # the one upload slot is held
            assert _status(slow) == 408  # stalled past the read timeout
        with server.raw(head, body) as fine:
            assert _status(fine) == 200  # the slot came back
        for _ in range(3):
            sock = server.raw(head, body[:100])
            time.sleep(0.1)
            sock.close()
            deadline = time.monotonic() + 5
            while caplog.text.count("disconnected during upload") < _ + 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        time.sleep(0.2)
        lines = [r for r in caplog.records if r.name == "erasekit.server"]
        assert sum("disconnected during upload" in r.getMessage() for r in lines) == 3
        assert not any(r.exc_info or r.levelno >= logging.ERROR for r in caplog.records)  # no tracebacks


def test_a_body_under_the_minimum_rate_is_408():
    settings = ServerSettings(read_timeout_s=0.3, min_upload_rate=10**6)
    content_type, body = _multipart("telea")
    head = f"{API}/remove", content_type, len(body)
    with LiveServer(settings) as server, server.raw(_post_head(server.port, *head), body[:10]) as sock:
        for i in range(10, 400, 10):  # a trickle that never stalls long enough for the idle timeout
            try:
                sock.sendall(body[i : i + 10])
            except OSError:
                break
            time.sleep(0.05)
        assert _status(sock) == 408


def test_results_are_bytes_within_a_budget_and_never_evicted_before_their_ttl():
    from erasekit.server.errors import ServerBusyError
    from erasekit.server.processing import EncodedResult

    store = JobStore(max_jobs=3, ttl=0.5, result_budget=1000)
    first = store.create("telea")
    first.response = EncodedResult("telea", 1, 1, b"x" * 1200, "png", None, False, {}, {})
    first.publish("done", {}, status="done")
    with pytest.raises(ServerBusyError, match="result memory") as busy:
        store.create("telea")  # over the byte budget: refused, and the finished result stays
    assert 1 <= busy.value.retry_after <= 1 and store.get(first.id) is first
    first.response.image = b"x" * 10
    for _ in range(2):
        store.create("telea")
    with pytest.raises(ServerBusyError, match="jobs are kept"):
        store.create("telea")  # full table: still no early eviction
    assert store.get(first.id) is first
    time.sleep(0.6)
    assert store.get(first.id) is None  # gone after its TTL, and only then
    store.create("telea")


def test_a_finished_job_releases_its_arrays(fake_method):
    name, _, _ = fake_method(SlowStepper)
    with TestClient(create_app(ServerSettings())) as c:
        job = c.post(f"{API}/jobs", files=files(), data={"method": name, "options": '{"steps": 1}'}).json()
        while c.get(f"{API}/jobs/{job['id']}").json()["status"] != "done":
            time.sleep(0.01)
        time.sleep(0.05)
        gc.collect()
        big = [o for o in gc.get_objects() if isinstance(o, RemovalRequest) and o.image.shape == PHOTO.shape]
        assert big == []  # no request (and so no decoded image or mask) outlives its job
        assert c.get(job["result_url"]).status_code == 200  # the result is kept, as encoded bytes


# ------------------------------------------------------------------------------------------------------------
# 8. Formats; 14. small defects; the target field; server-side refiner options
# ------------------------------------------------------------------------------------------------------------
def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(PHOTO).save(buffer, format=fmt)
    return buffer.getvalue()


def test_the_server_accepts_photo_formats_and_refuses_others_unless_opted_in(monkeypatch):
    monkeypatch.delenv("ERASEKIT_EXTRA_FORMATS", raising=False)
    with TestClient(create_app(ServerSettings())) as c:
        for fmt in ("JPEG", "WEBP", "BMP", "GIF", "TIFF"):
            ok = c.post(f"{API}/remove", files=files(image=_encoded(fmt)), data={"method": "telea"})
            assert ok.status_code == 200, (fmt, ok.text)
        for fmt in ("ICO", "PPM"):
            expect_error(c.post(f"{API}/remove", files=files(image=_encoded(fmt)), data={"method": "telea"}),
                         422, "InvalidInputError", f"looks like {fmt}")
    with TestClient(create_app(ServerSettings(extra_formats=("PPM",)))) as c:
        ppm = c.post(f"{API}/remove", files=files(image=_encoded("PPM")), data={"method": "telea"})
        assert ppm.is_success


def test_no_mask_with_auto_is_422_draw_a_mask_or_give_a_prompt():
    with TestClient(create_app(ServerSettings())) as c:
        response = c.post(f"{API}/remove", files={"image": ("a.png", png(PHOTO), "image/png")},
                          data={"method": "auto"})
        expect_error(response, 422, "InvalidInputError", "draw a mask or give a prompt")


def test_docs_and_redoc_work_offline():
    with TestClient(create_app(ServerSettings())) as c:
        for path in ("/docs", "/redoc"):
            page = c.get(path)
            assert page.status_code == 200 and "/openapi.json" in page.text
            assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
        script = c.get("/static/docs.js")
        assert script.status_code == 200 and "/openapi.json" in script.text
        assert "delete" in c.get("/openapi.json").json()["paths"][f"{API}/jobs/{{job_id}}"]


def test_target_is_a_form_field_for_methods_that_take_one(fake_method):
    name, _, _ = fake_method(TargetTaker)
    with TestClient(create_app(ServerSettings())) as c:
        assert c.post(f"{API}/remove", files=files(), data={"method": name, "target": "the dog"}).is_success
        assert TargetTaker.seen[-1] == "the dog"
        expect_error(c.post(f"{API}/remove", files=files(), data={"method": "telea", "target": "dog"}), 422,
                     contains="target")
        # A target alone is enough for 'auto' to look for a mask-free method (none is available here: 503).
        no_mask = c.post(f"{API}/remove", files={"image": ("a.png", png(PHOTO), "image/png")},
                         data={"method": "auto", "target": "dog"})
        assert no_mask.status_code != 422


def test_refiner_options_naming_server_paths_are_refused():
    with TestClient(create_app(ServerSettings())) as c:
        for refine in ("pixperfect:weights=/etc", 'pixperfect:weights="/tmp"', "color-match,pixperfect:x=a"):
            expect_error(c.post(f"{API}/remove", files=files(), data={"method": "telea", "refine": refine}),
                         422, "InvalidInputError", "set when the server starts")
        form = {"method": "telea", "refine": "color-match:ring=8"}
        fine = c.post(f"{API}/remove", files=files(), data=form)
        assert fine.is_success


def test_a_classical_method_runs_calls_side_by_side_in_separate_children():
    from erasekit.server.isolation import ChildPool

    pool = ChildPool("telea", 2)
    try:
        with pool.lease() as first, pool.lease() as second:
            assert first is not second and first.pid != second.pid  # a long fill does not hold the other call
        with pool.lease() as again:
            assert again in (first, second)  # children are reused
    finally:
        pool.stop()

"""REST API: every endpoint, every error status, the queue, progress streams, auth, CORS and memory-only
uploads.

Slow or step-based behaviour comes from small fake removers registered under unique names for one test and
removed afterwards; everything else runs the real weight-free methods on a real photo.
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
import threading
import uuid
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.transform import resize

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")
from fastapi.testclient import TestClient as _TestClient

import erasekit
from erasekit import masks as M
from erasekit import registry
from erasekit.methods.base import Remover
from erasekit.options import Option, OptionSet, Range
from erasekit.registry import MethodSpec, WeightRequirement
from erasekit.server import ServerSettings, create_app
from erasekit.server.settings import is_loopback
from erasekit.types import InvalidInputError


def TestClient(app, **kwargs):
    """Starlette's test client under a Host the server answers to (it sends 'testserver' by default)."""
    return _TestClient(app, base_url="http://127.0.0.1:8080", **kwargs)


# ------------------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------------------
def _photo() -> np.ndarray:
    small = resize(data.astronaut(), (72, 96), anti_aliasing=True, preserve_range=True)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


PHOTO = _photo()
MASK = np.zeros(PHOTO.shape[:2], np.uint8)
MASK[20:40, 30:55] = 255


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def decode(b64_text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64_text))))


def files(image: bytes | None = None, mask: bytes | None = None) -> dict:
    out = {"image": ("photo.png", png(PHOTO) if image is None else image, "image/png")}
    out["mask"] = ("mask.png", png(MASK) if mask is None else mask, "image/png")
    return out


def json_body(**extra) -> dict:
    return {"image": b64(png(PHOTO)), "mask": b64(png(MASK)), **extra}


@pytest.fixture
def client():
    with TestClient(create_app(ServerSettings())) as c:
        yield c


def expect_error(response, status: int, kind: str | None = None, contains: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    assert "\n" not in body["error"]["message"]
    if kind is not None:
        assert body["error"]["type"] == kind, body
    if contains is not None:
        assert contains in body["error"]["message"], body
    return body["error"]


# ------------------------------------------------------------------------------------------------------------
# Fake removers for queue / progress behaviour (registered per test under a unique name)
# ------------------------------------------------------------------------------------------------------------
class GatedRemover(Remover):
    """Blocks inside inpaint until released; records how many calls overlap."""

    name: ClassVar[str] = "gated"

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Event()
        self.active = 0
        self.max_active = 0
        self.calls = 0
        self._count = threading.Lock()

    def inpaint(self, image, mask, request):
        with self._count:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        self.entered.set()
        assert self.release.wait(20), "test never released the gated remover"
        with self._count:
            self.active -= 1
        out = image.copy()
        out[mask > 0] = 0
        return out, None


STEPS = Option("steps", int, default=3, range=Range(1, 100), help="steps to report")


class SteppingRemover(Remover):
    """A step-based method: reports progress(step, total) through a ``progress`` attribute, like the diffusion
    baselines do."""

    name: ClassVar[str] = "stepping"
    call_options = OptionSet(STEPS)

    def __init__(self):
        self.progress = None

    def inpaint(self, image, mask, request):
        steps = request.options["steps"]
        for i in range(steps):
            if self.progress is not None:
                self.progress(i + 1, steps)
        out = image.copy()
        out[mask > 0] = 255
        return out, mask


class OptionSteppingRemover(Remover):
    """A step-based method that takes the progress hook as a per-call option instead of an attribute."""

    name: ClassVar[str] = "option-stepping"
    call_options = OptionSet(
        STEPS, Option("progress", Callable, nullable=True, python_only=True, help="progress(step, total)")
    )

    def inpaint(self, image, mask, request):
        steps = request.options["steps"]
        for i in range(steps):
            if request.options["progress"] is not None:
                request.options["progress"](i + 1, steps)
        out = image.copy()
        out[mask > 0] = 255
        return out, mask


class FailingRemover(Remover):
    name: ClassVar[str] = "failing"

    def inpaint(self, image, mask, request):
        raise InvalidInputError("this fake method rejects every image")


@pytest.fixture
def fake_method():
    created: list[str] = []
    factories: dict[str, object] = {}

    def make(remover_cls, *, weights=()):
        name = f"test-{remover_cls.name}-{uuid.uuid4().hex[:8]}"
        instance_box: list = []

        def factory():
            factories[name] = factories.get(name, 0) + 1
            instance = remover_cls()
            instance_box.append(instance)
            return instance

        registry.register_method(
            MethodSpec(
                name=name,
                description=f"test double {remover_cls.__name__}",
                factory=factory,
                weights=weights,
                auto_priority=None,
                family="test",
            )
        )
        created.append(name)
        return name, instance_box, factories

    yield make
    for name in created:
        registry._REGISTRY.pop(
            name, None
        )  # the registry has no public unregister: tests clean up after themselves


# ------------------------------------------------------------------------------------------------------------
# health, methods, UI
# ------------------------------------------------------------------------------------------------------------
def test_health_reports_queue_and_limits(client):
    body = client.get("/api/v1/health").json()
    assert body["status"] == "ok" and body["version"] == erasekit.__version__
    assert body["auth"] is False
    assert body["queue"] == {"capacity": 4, "in_flight": 0, "loaded_methods": []}
    assert body["limits"]["max_upload_bytes"] == ServerSettings().max_upload_bytes


def test_methods_lists_the_registry_without_server_paths(client):
    body = client.get("/api/v1/methods").json()
    listed = {m["name"]: m for m in body["methods"]}
    assert set(listed) == {i.name for i in erasekit.available_methods()}
    assert body["default"] == "auto"
    for name in ("patchmatch", "telea", "ns"):
        assert listed[name]["available"] and listed[name]["reason"] is None
    for m in listed.values():
        assert m["available"] or m["reason"]  # unavailable methods say why
        assert all("location" not in w for w in m["weights"])  # local paths stay on the server
    assert listed["patchmatch"]["weights"][0]["present"] is True


def test_methods_marks_the_configured_default_and_what_streams_progress(fake_method):
    name, _, _ = fake_method(SteppingRemover)
    with TestClient(create_app(ServerSettings(default_method=name))) as c:
        before = {m["name"]: m for m in c.get("/api/v1/methods").json()["methods"]}
        assert before[name]["default"] is True and before[name]["streams_progress"] is None  # not loaded yet
        assert c.post("/api/v1/remove", files=files()).status_code == 200
        after = {m["name"]: m for m in c.get("/api/v1/methods").json()["methods"]}
        assert after[name]["streams_progress"] is True
        assert c.get("/api/v1/health").json()["queue"]["loaded_methods"] == [name]


def test_web_ui_is_served_from_memory_with_a_content_security_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<canvas id="view"' in page.text
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").status_code == 200
    # Only the fixed table of UI files exists; nothing else under /static, however it is spelt.
    for path in (
        "/static/index.html",
        "/static/..%2Fapp.py",
        "/static/%2e%2e/settings.py",
        "/static/__init__.py",
    ):
        assert client.get(path).status_code == 404, path


# ------------------------------------------------------------------------------------------------------------
# /remove
# ------------------------------------------------------------------------------------------------------------
def test_multipart_remove_returns_the_library_result_and_alpha(client):
    response = client.post("/api/v1/remove", files=files(), data={"method": "telea", "dilate": "3"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == "telea" and (body["width"], body["height"]) == (96, 72)
    assert body["image_format"] == "png" and body["unchanged"] is False
    result = decode(body["image"])
    # Exactly what the library returns for the same call: the server adds transport, nothing else.
    expected = erasekit.remove(PHOTO, MASK, method="telea", dilate=3)
    np.testing.assert_array_equal(result, expected.image)
    region = M.dilate(MASK.astype(np.float32) / 255, 3) > 0
    np.testing.assert_array_equal(result[~region], PHOTO[~region])
    assert np.abs(result[region].astype(int) - PHOTO[region]).mean() > 5
    np.testing.assert_array_equal(decode(body["alpha"]) > 0, region)
    assert {"decode", "queue", "inpaint", "total", "encode"} <= set(body["timings"])
    assert body["metadata"]["dilate"] == 3 and body["metadata"]["method"] == "telea"


def test_json_base64_data_urls_and_raw_image_agree(client):
    as_json = client.post("/api/v1/remove", json=json_body(method="patchmatch", seed=7))
    data_url = client.post(
        "/api/v1/remove",
        json={
            "image": "data:image/png;base64," + b64(png(PHOTO)),
            "mask": "data:image/png;base64," + b64(png(MASK)),
            "method": "patchmatch",
            "seed": 7,
        },
    )
    raw = client.post("/api/v1/remove?format=image", json=json_body(method="patchmatch", seed=7))
    assert as_json.status_code == data_url.status_code == raw.status_code == 200
    assert raw.headers["content-type"] == "image/png" and raw.headers["x-erasekit-method"] == "patchmatch"
    assert "inpaint" in json.loads(raw.headers["x-erasekit-timings"])
    first = decode(as_json.json()["image"])
    np.testing.assert_array_equal(first, decode(data_url.json()["image"]))
    np.testing.assert_array_equal(first, np.asarray(Image.open(io.BytesIO(raw.content))))
    np.testing.assert_array_equal(first, erasekit.remove(PHOTO, MASK, method="patchmatch", seed=7).image)


def test_output_format_and_method_options_are_honoured(client):
    response = client.post(
        "/api/v1/remove?format=image",
        files=files(),
        data={
            "method": "patchmatch",
            "output_format": "jpeg",
            "quality": "80",
            "options": json.dumps({"patch_size": 2}),
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).format == "JPEG"
    meta = client.post(
        "/api/v1/remove", json=json_body(method="patchmatch", options={"patch_size": 2})
    ).json()
    assert meta["metadata"]["options"] == {"patch_size": 2}


def test_refine_returns_the_library_result_and_records_the_refiners(client):
    for send in (
        {"files": files(), "data": {"method": "telea", "refine": "color-match,poisson"}},
        {"json": json_body(method="telea", refine="color-match,poisson")},
    ):
        response = client.post("/api/v1/remove", **send)
        assert response.status_code == 200, response.text
        body = response.json()
        expected = erasekit.remove(PHOTO, MASK, method="telea", refine="color-match,poisson")
        np.testing.assert_array_equal(decode(body["image"]), expected.image)
        assert body["metadata"]["refine"] == [{"name": "color-match", "ring": 16}, {"name": "poisson"}]
        assert {"refine:color-match", "refine:poisson"} <= set(body["timings"])


def test_methods_lists_the_refiners(client):
    refiners = {r["name"]: r for r in client.get("/api/v1/methods").json()["refiners"]}
    assert {"poisson", "color-match"} <= set(refiners)
    assert all(r["description"] for r in refiners.values())


@pytest.mark.parametrize(
    "method, options, prompt",
    [("telea", {"radius": 65}, None), ("patchmatch", {"patch_size": 0}, None),
     ("patchmatch", {"steps": 3}, None), ("sd15-inpaint", {"strength": 1.5}, None),
     ("osor-sdxl", {"timestep": 40.5}, None), ("osor-flux", {"paste_back": "maybe"}, None),
     ("ns", {}, "a brick wall")],
)
def test_bad_options_and_ignored_prompts_are_422_with_the_apis_own_message(client, method, options, prompt):
    with pytest.raises(InvalidInputError):  # the Python API, checked before any model loads
        erasekit.remove(PHOTO, MASK, method=method, prompt=prompt, **options)
    # The same check for network input, whose list of options leaves out the Python-only ones (callables such
    # as patchmatch's sampling_area), which a client cannot send.
    with pytest.raises(InvalidInputError) as api:
        registry.check_call(registry.get_method(method), options, prompt=prompt, from_python=False)
    body = json_body(method=method, options=options, prompt=prompt)
    error = expect_error(client.post("/api/v1/remove", json=body), 422, "InvalidInputError")
    assert error["message"] == str(api.value)
    assert "sampling_area" not in error["message"]


def test_option_values_sent_as_text_are_read_by_the_declared_type(client):
    as_text = client.post(
        "/api/v1/remove",
        files=files(),
        data={"method": "patchmatch", "seed": "3", "options": json.dumps({"patch_size": "2"})},
    )
    as_number = client.post(
        "/api/v1/remove", json=json_body(method="patchmatch", seed=3, options={"patch_size": 2})
    )
    assert as_text.status_code == as_number.status_code == 200, as_text.text
    assert as_text.json()["metadata"]["options"] == {"patch_size": 2}
    np.testing.assert_array_equal(decode(as_text.json()["image"]), decode(as_number.json()["image"]))


def test_methods_list_each_declared_option_with_its_range(client):
    methods = {m["name"]: m for m in client.get("/api/v1/methods").json()["methods"]}
    assert methods["telea"]["takes_prompt"] is False and methods["sd15-inpaint"]["takes_prompt"] is True
    radius_help = erasekit.get_method("telea").call_options["radius"].help
    assert methods["telea"]["options"] == [
        {
            "name": "radius",
            "type": "int",
            "default": 5,
            "default_note": None,
            "allowed": "an integer in [1, 64]",
            "range": "[1, 64]",
            "choices": None,
            "help": radius_help,
        }
    ]
    sd15 = {o["name"]: o for o in methods["sd15-inpaint"]["options"]}
    assert set(sd15) == {"steps", "guidance", "strength", "negative_prompt"}  # progress is the server's own
    assert sd15["strength"]["range"] == "(0, 1]" and sd15["steps"]["default"] == 50
    blend = {o["name"]: o for o in methods["osor-sdxl"]["options"]}["blend"]
    assert blend["choices"] == ["alpha", "mask"] and blend["default"] is None
    assert "alpha head" in blend["default_note"]


def test_empty_mask_comes_back_unchanged(client):
    body = client.post("/api/v1/remove", files=files(mask=png(np.zeros_like(MASK)))).json()
    assert body["unchanged"] is True
    np.testing.assert_array_equal(decode(body["image"]), PHOTO)


def test_mask_of_another_size_needs_resize_mask(client):
    small = np.asarray(Image.fromarray(MASK).resize((48, 36), Image.NEAREST))
    expect_error(
        client.post("/api/v1/remove", files=files(mask=png(small))),
        422,
        "InvalidInputError",
        "does not match image size",
    )
    assert (
        client.post("/api/v1/remove", files=files(mask=png(small)), data={"resize_mask": "true"}).status_code
        == 200
    )


# ------------------------------------------------------------------------------------------------------------
# Error statuses
# ------------------------------------------------------------------------------------------------------------
def test_400_for_unparseable_requests(client):
    headers = {"content-type": "application/json"}
    expect_error(client.post("/api/v1/remove", content=b"{not json", headers=headers), 400, "BadRequestError")
    expect_error(
        client.post("/api/v1/remove", json=json_body(image="!!!not base64!!!")),
        400,
        "BadRequestError",
        "base64",
    )
    expect_error(
        client.post("/api/v1/remove", json=json_body(image="data:image/png,rawtext")),
        400,
        "BadRequestError",
        "data URL",
    )
    broken = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\nabc'
    expect_error(
        client.post("/api/v1/remove", content=broken, headers={"content-type": "multipart/form-data"}),
        400,
        "BadRequestError",
    )
    expect_error(
        client.post("/api/v1/remove", files=files(), data={"options": "{steps: 3"}),
        400,
        "BadRequestError",
        "options",
    )
    expect_error(
        client.post("/api/v1/remove", data={"image": "not a file"}, files={"mask": ("m.png", png(MASK))}),
        400,
        "BadRequestError",
        "file upload",
    )


def test_415_for_other_content_types(client):
    expect_error(
        client.post("/api/v1/remove", content=png(PHOTO), headers={"content-type": "image/png"}),
        415,
        "UnsupportedMediaTypeError",
    )
    expect_error(client.post("/api/v1/remove"), 415)


@pytest.mark.parametrize(
    "payload, needle",
    [(json_body(bogus=1), "bogus: unknown field"), (json_body(dilate=-1), "dilate"),
     (json_body(seed="abc"), "seed"), (json_body(hd_strategy="crop:../etc"), "hd_strategy"),
     (json_body(output_format="bmp"), "output_format"),
     (json_body(options={"steps": [1, 2]}), "options.steps"), ({"mask": b64(png(MASK))}, "image")],
)
def test_422_for_schema_violations_including_unknown_fields(client, payload, needle):
    expect_error(client.post("/api/v1/remove", json=payload), 422, "ValidationError", needle)


def test_422_for_unknown_form_fields_and_files(client):
    expect_error(
        client.post("/api/v1/remove", files=files(), data={"dilation": "3"}),
        422,
        "ValidationError",
        "dilation: unknown field",
    )
    other = {"image": files()["image"], "other": ("x.png", png(MASK), "image/png")}
    expect_error(client.post("/api/v1/remove", files=other), 422, "ValidationError", "other: unknown field")
    three = {
        **files(),
        "other": ("x.png", png(MASK), "image/png"),
    }  # more files than image + mask: refused early
    expect_error(client.post("/api/v1/remove", files=three), 400, "BadRequestError", "Too many files")
    expect_error(
        client.post("/api/v1/remove", files={"mask": ("m.png", png(MASK))}), 422, "ValidationError", "image"
    )


@pytest.mark.parametrize(
    "change, needle",
    [({"image": b64(b"definitely not an image")}, "not an image file"),
     ({"image": b64(png(PHOTO)[:200])}, "truncated or corrupt"),
     ({"mask": b64(b"garbage")}, "cannot read mask"), ({"mask": None, "method": "telea"}, "needs a mask"),
     ({"mask": b64(png(np.full_like(MASK, 255)))}, "whole image"),
     ({"method": "no-such-method"}, "unknown method"),
     ({"method": "patchmatch", "options": {"steps": 3}}, "does not take option"),
     ({"refine": "sharpen"}, "unknown refiner 'sharpen'; known: color-match, pixperfect, poisson"),
     ({"refine": "poisson:strength=2"}, "does not take option(s): strength")],
)
def test_422_for_invalid_images_masks_methods_and_options(client, change, needle):
    expect_error(client.post("/api/v1/remove", json=json_body(**change)), 422, None, needle)


def test_model_loading_options_never_reach_the_server_file_system(client, fake_method):
    # 'model' / 'weights' / 'device' are factory options: they can name local folders, so clients cannot set
    # them.
    for option in ("model", "weights", "device", "allow_download"):
        error = expect_error(
            client.post("/api/v1/remove", json=json_body(method="sd15-inpaint", options={option: "/etc"})),
            422,
        )
        assert "set when the server starts" in error["message"] or "does not take" in error["message"], error
    body = json_body(method="sd15-inpaint", options={"progress": "x"})
    expect_error(client.post("/api/v1/remove", json=body), 422, None, "progress can only be set from Python")


def test_413_for_bodies_over_the_limit_while_streaming():
    with TestClient(create_app(ServerSettings(max_upload_bytes=4096))) as c:
        declared = c.post(
            "/api/v1/remove", content=b"x" * 10_000, headers={"content-type": "application/json"}
        )
        expect_error(declared, 413, "ResourceLimitError", "4,096")

        def chunks():  # no Content-Length: the limit applies while the body streams in
            for _ in range(10):
                yield b"y" * 1000

        streamed = c.post(
            "/api/v1/remove", content=chunks(), headers={"content-type": "multipart/form-data; boundary=abc"}
        )
        assert "content-length" not in streamed.request.headers
        expect_error(streamed, 413, "ResourceLimitError", "4,096")


def test_413_for_images_over_the_pixel_limit():
    with TestClient(create_app(ServerSettings(max_pixels=50 * 50))) as c:
        expect_error(c.post("/api/v1/remove", files=files()), 413, "ResourceLimitError", "6,912 pixels")


def test_401_without_the_token_and_200_with_it(fake_method):
    token = "s3cret-token-123"
    with TestClient(create_app(ServerSettings(token=token))) as c:
        assert c.get("/api/v1/health").json()["auth"] is True  # health stays open for probes
        assert c.get("/").status_code == 200
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-000"},
            {"Authorization": f"Basic {token}"},
            {"Authorization": token},
        ):
            r = c.get("/api/v1/methods", headers=headers)
            expect_error(r, 401, "Unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
            expect_error(c.post("/api/v1/remove", files=files(), headers=headers), 401)
            expect_error(c.post("/api/v1/jobs", files=files(), headers=headers), 401)
            expect_error(c.get("/api/v1/jobs/abc/events", headers=headers), 401)
        good = {"Authorization": f"Bearer {token}"}
        assert c.get("/api/v1/methods", headers=good).status_code == 200
        assert (
            c.post("/api/v1/remove", files=files(), data={"method": "telea"}, headers=good).status_code == 200
        )


def test_404_and_405_are_json_errors(client):
    expect_error(client.get("/api/v1/jobs/not-a-job"), 404, "NotFound")
    expect_error(client.get("/api/v1/jobs/not-a-job/events"), 404, "NotFound")
    expect_error(client.get("/api/v1/jobs/not-a-job/result"), 404, "NotFound")
    expect_error(client.get("/api/v1/nothing"), 404, "NotFound")
    expect_error(client.put("/api/v1/remove"), 405, "MethodNotAllowed")


def test_503_when_weights_are_missing(client, fake_method):
    missing = WeightRequirement(
        "fake-checkpoint", "a checkpoint nobody has", lambda: None, fetch_hint="erasekit download fake"
    )
    name, _, _ = fake_method(SteppingRemover, weights=(missing,))
    expect_error(
        client.post("/api/v1/remove", json=json_body(method=name)),
        503,
        "MissingWeightsError",
        "erasekit download fake",
    )


def test_queue_full_is_503_with_retry_after_and_one_instance_runs_one_call_at_a_time(fake_method):
    name, instances, factories = fake_method(GatedRemover)
    with TestClient(create_app(ServerSettings(queue_size=2, default_method=name))) as c:
        first = c.post("/api/v1/jobs", files=files())
        second = c.post("/api/v1/jobs", files=files())
        assert first.status_code == second.status_code == 202
        remover = instances[0]
        assert remover.entered.wait(10)
        assert c.get("/api/v1/health").json()["queue"]["in_flight"] == 2
        busy = c.post("/api/v1/remove", files=files())
        expect_error(busy, 503, "ServerBusyError", "busy")
        assert int(busy.headers["retry-after"]) >= 1
        expect_error(c.post("/api/v1/jobs", files=files()), 503, "ServerBusyError")
        # The slot is taken before decoding: a full server does not even decode (so memory stays bounded).
        expect_error(
            c.post("/api/v1/remove", json=json_body(image=b64(b"not an image"))), 503, "ServerBusyError"
        )
        # Not finished yet: the result is a 409, its status says running or queued.
        expect_error(c.get(first.json()["result_url"]), 409, "NotReady")
        assert c.get(f"/api/v1/jobs/{first.json()['id']}").json()["status"] in ("running", "queued")
        remover.release.set()
        for job in (first, second):
            statuses = _drain(c, job.json()["events_url"])
            assert statuses[-1][0] == "done"
            assert c.get(job.json()["result_url"]).status_code == 200
        assert factories[name] == 1 and len(instances) == 1  # loaded once, shared
        assert remover.calls == 2 and remover.max_active == 1  # behind its lock: never two calls at once
        assert c.get("/api/v1/health").json()["queue"]["in_flight"] == 0
        assert c.post("/api/v1/remove", files=files()).status_code == 200  # room again


def test_queue_slots_are_released_exactly_once_and_on_shutdown():
    from erasekit.server.errors import ServerBusyError
    from erasekit.server.workers import WorkQueue

    queue = WorkQueue(1, loader=lambda name: GatedRemover())
    slot = queue.admit()
    with pytest.raises(ServerBusyError):
        queue.admit()
    slot.release()
    slot.release()  # idempotent: the count never goes below zero
    assert queue.in_flight == 0
    queue.shutdown()
    request = erasekit.RemovalRequest(PHOTO, MASK.astype(np.float32) / 255)
    with pytest.raises(ServerBusyError, match="shutting down"):
        queue.submit(queue.admit(), "gated", request)
    assert queue.in_flight == 0


def _drain(c: TestClient, url: str, headers: dict | None = None) -> list[tuple[str, dict, str]]:
    events, name, data, event_id = [], None, None, None
    with c.stream("GET", url, headers=headers or {}) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line == "" and name is not None:
                events.append((name, data, event_id))
                name = None
    return events


# ------------------------------------------------------------------------------------------------------------
# Jobs and progress streams
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("remover_cls", [SteppingRemover, OptionSteppingRemover], ids=["attribute", "option"])
def test_step_based_methods_stream_progress_events(fake_method, remover_cls):
    name, _, _ = fake_method(remover_cls)
    with TestClient(create_app(ServerSettings())) as c:
        job = c.post("/api/v1/jobs", json=json_body(method=name, options={"steps": 4}))
        assert job.status_code == 202
        events = _drain(c, job.json()["events_url"])
        names = [e[0] for e in events]
        assert names == ["queued", "started", "progress", "progress", "progress", "progress", "done"]
        assert [e[1]["step"] for e in events if e[0] == "progress"] == [1, 2, 3, 4]
        assert all(
            e[1]["total"] == 4 and e[1]["job"] == job.json()["id"] for e in events if e[0] == "progress"
        )
        assert [e[2] for e in events] == [str(i) for i in range(7)]
        assert events[-1][1]["result_url"] == job.json()["result_url"]
        status = c.get(f"/api/v1/jobs/{job.json()['id']}").json()
        assert status["status"] == "done" and status["progress"] == {"step": 4, "total": 4}
        result = c.get(job.json()["result_url"]).json()
        region = MASK > 0
        image = decode(result["image"])
        assert (image[region] == 255).all() and (image[~region] == PHOTO[~region]).all()
        assert "progress" not in json.dumps(result["metadata"]["options"])  # the hook is not data
        raw = c.get(job.json()["result_url"] + "?format=image")
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(raw.content))), image)
        # A reader that reconnects with Last-Event-ID gets only what came after.
        resumed = _drain(c, job.json()["events_url"], headers={"Last-Event-ID": "4"})
        assert [e[2] for e in resumed] == ["5", "6"]


def test_weight_free_methods_stream_start_and_done(client):
    job = client.post("/api/v1/jobs", files=files(), data={"method": "telea"}).json()
    events = _drain(client, job["events_url"])
    assert [e[0] for e in events] == ["queued", "started", "done"]
    assert events[-1][1]["method"] == "telea"


def test_a_failing_job_reports_an_error_event_and_status(fake_method):
    name, _, _ = fake_method(FailingRemover)
    with TestClient(create_app(ServerSettings())) as c:
        job = c.post("/api/v1/jobs", json=json_body(method=name)).json()
        events = _drain(c, job["events_url"])
        assert [e[0] for e in events] == ["queued", "started", "error"]
        assert events[-1][1]["type"] == "InvalidInputError" and events[-1][1]["status"] == 422
        expect_error(c.get(job["result_url"]), 422, "InvalidInputError", "rejects every image")
        assert c.get(f"/api/v1/jobs/{job['id']}").json()["error"]["type"] == "InvalidInputError"


def test_bad_input_to_jobs_fails_before_a_job_exists(client):
    expect_error(client.post("/api/v1/jobs", json=json_body(unknown=True)), 422)
    expect_error(client.post("/api/v1/jobs", json=json_body(image=b64(b"nope"))), 422)
    assert client.get("/api/v1/health").json()["queue"]["in_flight"] == 0


# ------------------------------------------------------------------------------------------------------------
# Memory only: no temporary files
# ------------------------------------------------------------------------------------------------------------
class _TempSpy:
    def __init__(self, monkeypatch, directory):
        self.calls: list[str] = []
        monkeypatch.setattr(tempfile, "tempdir", str(directory))
        for fn in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
            original = getattr(tempfile, fn)
            monkeypatch.setattr(tempfile, fn, self._wrap(fn, original))

    def _wrap(self, fn, original):
        def spy(*args, **kwargs):
            self.calls.append(fn)
            return original(*args, **kwargs)

        return spy


def _big_photo_png() -> bytes:
    # Noise does not compress: a PNG over Starlette's 1 MiB spool threshold.
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    raw = png(noise)
    assert len(raw) > 1024 * 1024
    return raw


def test_uploads_and_results_never_touch_temporary_files(monkeypatch, tmp_path):
    import multiprocessing.util

    # multiprocessing makes one folder per process for its fork server's socket, on first use (here: the
    # classical fills' child processes). Made before the spy, as it is when an earlier test started them, so
    # the result does not depend on test order and the spy sees only what uploads and results do.
    multiprocessing.util.get_temp_dir()
    tempdir = tmp_path / "tmp"
    tempdir.mkdir()
    spy = _TempSpy(monkeypatch, tempdir)
    assert tempfile.gettempdir() == str(tempdir)
    big = _big_photo_png()
    mask = np.zeros((700, 700), np.uint8)
    mask[300:320, 300:330] = 255
    with TestClient(create_app(ServerSettings())) as c:
        r = c.post("/api/v1/remove", files=files(image=big, mask=png(mask)), data={"method": "telea"})
        assert r.status_code == 200, r.text
        job = c.post("/api/v1/jobs", files=files(image=big, mask=png(mask)), data={"method": "telea"}).json()
        assert _drain(c, job["events_url"])[-1][0] == "done"
        assert c.post("/api/v1/remove", json=json_body(method="telea")).status_code == 200
        expect_error(c.post("/api/v1/remove", files=files(image=big, mask=png(MASK))), 422)
    assert spy.calls == []
    assert list(tempdir.iterdir()) == []


def test_the_temp_file_spy_does_see_starlettes_default_spooling(monkeypatch, tmp_path):
    # The check above is meaningful: the stock multipart parser rolls a > 1 MiB upload over to a temporary
    # file.
    import anyio
    from starlette.formparsers import MultiPartParser
    from starlette.requests import Request

    spy = _TempSpy(monkeypatch, tmp_path)
    big = _big_photo_png()
    boundary = "spyboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + big
        + f"\r\n--{boundary}--\r\n".encode()
    )

    async def parse():
        async def stream():
            yield body

        request = Request(
            {
                "type": "http",
                "headers": [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
            }
        )
        form = await MultiPartParser(request.headers, stream()).parse()
        await form.close()

    anyio.run(parse)
    assert "TemporaryFile" in spy.calls


# ------------------------------------------------------------------------------------------------------------
# Exposure, CORS, OpenAPI, CLI
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.org", False)],
)
def test_loopback_detection(host, loopback):
    assert is_loopback(host) is loopback


def test_non_loopback_binding_requires_a_token():
    with pytest.raises(InvalidInputError, match="--token"):
        create_app(ServerSettings(host="0.0.0.0"))
    create_app(ServerSettings(host="0.0.0.0", token="long-enough-token"))


def test_serve_refuses_to_expose_without_a_token_and_checks_the_method(monkeypatch):
    import uvicorn

    from erasekit.cli import main

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append((app, kw)))
    monkeypatch.delenv("ERASEKIT_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert main(["serve", "--method", "no-such-method"]) == 2
    assert main(["serve", "--method", "sdxl-inpaint"]) in (0, 3)  # 3 unless someone has SDXL weights here
    started.clear()
    assert (
        main(
            ["serve", "--host", "0.0.0.0", "--token", "long-enough-token", "--port", "9999", "--method",
             "telea", "--queue-size", "2", "--cors-origin", "https://example.org"]
        )
        == 0
    )
    app, kwargs = started[0]
    assert kwargs["host"] == "0.0.0.0" and kwargs["port"] == 9999
    assert app.state.settings.token == "long-enough-token" and app.state.settings.queue_size == 2
    assert app.state.settings.cors_origins == ("https://example.org",)
    assert app.state.queue.loaded() == ["telea"]  # preloaded before serving
    assert main(["serve", "--cors-origin", "*"]) == 2


def test_cors_is_off_by_default_and_limited_to_configured_origins():
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(ServerSettings())) as c:
        r = c.options("/api/v1/remove", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        assert "access-control-allow-origin" not in c.get("/api/v1/health", headers=preflight).headers
    with TestClient(create_app(ServerSettings(cors_origins=("https://example.org",)))) as c:
        r = c.options("/api/v1/remove", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://example.org"
        other = c.options("/api/v1/remove", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_openapi_documents_every_field_and_both_body_encodings(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/v1/remove",
        "/api/v1/jobs",
        "/api/v1/methods",
        "/api/v1/health",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/events",
        "/api/v1/jobs/{job_id}/result",
    ):
        assert path in paths, path
    body = paths["/api/v1/remove"]["post"]["requestBody"]["content"]
    json_schema = body["application/json"]["schema"]
    assert json_schema["additionalProperties"] is False
    form = body["multipart/form-data"]["schema"]
    assert form["additionalProperties"] is False and form["properties"]["image"]["format"] == "binary"
    for props in (json_schema["properties"], form["properties"]):
        for name, prop in props.items():
            assert prop.get("description"), f"{name} is undocumented"
    responses = paths["/api/v1/remove"]["post"]["responses"]
    assert {"200", "400", "401", "413", "415", "422", "503"} <= set(responses)
    components = schema["components"]["schemas"]
    for model in ("RemoveResponse", "ErrorResponse", "MethodsResponse", "HealthResponse", "JobCreated"):
        assert model in components
    for name, prop in components["RemoveResponse"]["properties"].items():
        assert prop.get("description"), f"RemoveResponse.{name} is undocumented"
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


# ------------------------------------------------------------------------------------------------------------
# A real step-based method: the tiny SD 1.5 inpainting pipeline (diffusers), progress through the server
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.slow  # building the tiny pipeline imports diffusers and transformers
def test_diffusion_baseline_streams_one_progress_event_per_denoising_step():
    pytest.importorskip("diffusers")
    from erasekit.methods.baselines import SD15InpaintRemover
    from erasekit.testing import tiny_pipeline

    def factory():
        return SD15InpaintRemover(pipeline=tiny_pipeline("sd15-inpaint"), progress_bar=False)

    name = f"test-sd15-{uuid.uuid4().hex[:8]}"
    registry.register_method(
        MethodSpec(
            name=name,
            description="tiny SD 1.5 inpainting",
            factory=factory,
            auto_priority=None,
            family="diffusion",
        )
    )
    try:
        image = np.ascontiguousarray(PHOTO[:64, :64])
        mask = np.zeros((64, 64), np.uint8)
        mask[16:40, 20:44] = 255
        body = {
            "image": b64(png(image)),
            "mask": b64(png(mask)),
            "method": name,
            "seed": 3,
            "options": {"steps": 3},
        }
        with TestClient(create_app(ServerSettings())) as c:
            job = c.post("/api/v1/jobs", json=body)
            assert job.status_code == 202, job.text
            events = _drain(c, job.json()["events_url"])
            progress = [e[1] for e in events if e[0] == "progress"]
            assert [e[0] for e in events][:2] == ["queued", "started"] and events[-1][0] == "done"
            total = progress[0]["total"]
            assert total >= 3 and [p["step"] for p in progress] == list(range(1, total + 1))
            result = decode(c.get(job.json()["result_url"]).json()["image"])
        # Same seed and steps through the library directly: the server changes nothing.
        direct = factory()(
            erasekit.RemovalRequest(image, mask.astype(np.float32) / 255, seed=3, options={"steps": 3})
        )
        np.testing.assert_array_equal(result, direct.image)
    finally:
        registry._REGISTRY.pop(name, None)


# ------------------------------------------------------------------------------------------------------------
# Load options at server start (`erasekit serve --load METHOD:KEY=VALUE`)
# ------------------------------------------------------------------------------------------------------------
def test_serve_load_options_reach_the_servers_remover(monkeypatch, tmp_path):
    import uvicorn

    from erasekit.cli import main
    from erasekit.testing import write_tiny_weights

    model = write_tiny_weights("sd15-inpaint", tmp_path)["model"]
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(app))
    code = main(["serve", "--method", "sd15-inpaint", "--load", f"sd15-inpaint:model={model}",
                 "--load", "sd15-inpaint:compile=true", "--load", "sd15-inpaint:channels_last=true"])
    assert code == 0
    settings = started[0].state.settings
    assert settings.load_options == {"sd15-inpaint": {"model": model, "compile": True, "channels_last": True}}
    remover = started[0].state.queue.loaded_worker("sd15-inpaint").remover  # preloaded with the options
    assert remover.fast_paths.compile is True and remover.fast_paths.channels_last is True
    assert remover.pipe.unet._compiled_call_impl is not None  # compiled in place, traced at the first call


def test_serve_load_options_are_checked_before_serving(monkeypatch):
    import uvicorn

    from erasekit.cli import main

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    assert main(["serve", "--no-preload", "--load", "compile=true"]) == 2  # no METHOD:
    assert main(["serve", "--no-preload", "--load", "sd15-inpaint:no_such_option=1"]) == 2
    assert main(["serve", "--no-preload", "--load", "no-such-method:compile=true"]) == 2
    with pytest.raises(InvalidInputError, match="child process"):
        create_app(ServerSettings(load_options={"telea": {"radius": 3}}))

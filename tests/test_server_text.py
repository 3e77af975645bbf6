"""Text -> mask behind the REST API: /api/v1/remove and /api/v1/jobs with a prompt, a masked method (or a
chain, or auto) and no mask segment first, inside the job, and answer what erasekit.remove answers; the
mask-source options a client may and may not set; missing segmenter weights."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
import skimage.data
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

import erasekit
from erasekit import registry
from erasekit.server import ServerSettings, create_app
from erasekit.testing import write_tiny_weights

ROCKET = np.ascontiguousarray(skimage.data.rocket()[::3, ::3])  # 143×214, a real photo
SEGMENT = {"instances": 1, "score_threshold": 0.0}  # the tiny SAM 3's scores are low: keep its best instance


@pytest.fixture(scope="module")
def sam3_dir(tmp_path_factory):
    """Tiny SAM 3 where the server finds it by default: $ERASEKIT_MODELS_DIR/sam3 (masking.text.locate)."""
    root = tmp_path_factory.mktemp("models")
    folder = write_tiny_weights("sam3", root)["sam3"]
    monkey = pytest.MonkeyPatch()
    monkey.setenv("ERASEKIT_MODELS_DIR", str(root))
    monkey.setenv("HF_HUB_CACHE", str(root / "empty-hf-cache"))
    monkey.setenv("HF_HUB_OFFLINE", "1")
    yield folder
    monkey.undo()


def client(**settings) -> TestClient:
    return TestClient(create_app(ServerSettings(**settings)), base_url="http://127.0.0.1:8080")


def png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode(text: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(text))) as im:
        return np.asarray(im)


def body(**extra) -> dict:
    return {"image": png(ROCKET), "prompt": "the rocket", "options": dict(SEGMENT), **extra}


def test_remove_with_a_prompt_and_no_mask_equals_erasekit_remove(sam3_dir):
    expected = erasekit.remove(ROCKET, None, prompt="the rocket", method="telea", sam3=sam3_dir, **SEGMENT)
    with client() as c:
        response = c.post("/api/v1/remove", json=body(method="telea"))
    assert response.status_code == 200, response.text
    out = response.json()
    np.testing.assert_array_equal(decode(out["image"]), expected.image)
    np.testing.assert_array_equal(decode(out["mask"]) > 127, expected.mask > 0)  # the mask telea got
    assert 0 < expected.mask.mean() < 1
    source, api = out["metadata"]["mask_source"], expected.metadata["mask_source"]
    assert source["model"] == "sam3" and api["model"] == sam3_dir  # server paths are not disclosed
    assert {**source, "model": None} == json.loads(json.dumps({**api, "model": None}))
    assert len(source["instances_kept"]) == 1 and source["instances"] == 1
    assert out["metadata"]["chain"] == "telea" and out["method"] == "telea"


def test_chains_auto_and_jobs_segment_inside_the_job(sam3_dir):
    """A chain through /jobs equals /remove and the API; auto follows erasekit.chain's documented order (here:
    no learned weights, no MagicRemover -> text -> mask -> the best fill)."""
    expected = erasekit.remove(ROCKET, None, prompt="the rocket", method="telea+poisson", sam3=sam3_dir,
                               **SEGMENT)
    auto = erasekit.remove(ROCKET, None, prompt="the rocket", sam3=sam3_dir, **SEGMENT)
    assert auto.method == registry.resolve_auto(mask_given=True)
    with client() as c:
        job = c.post("/api/v1/jobs", json=body(method="telea+poisson"))
        assert job.status_code == 202, job.text
        for _ in range(600):
            result = c.get(job.json()["result_url"])
            if result.status_code != 409:
                break
            time.sleep(0.05)
        assert result.status_code == 200, result.text
        via_auto = c.post("/api/v1/remove", json=body(method="auto")).json()
    out = result.json()
    np.testing.assert_array_equal(decode(out["image"]), expected.image)
    assert out["metadata"]["chain"] == "telea+poisson" and out["metadata"]["mask_source"]["source"] == "sam3"
    assert via_auto["method"] == auto.method
    np.testing.assert_array_equal(decode(via_auto["image"]), auto.image)


def test_segmentation_runs_in_the_job_and_counts_against_its_time_budget(sam3_dir, monkeypatch):
    from erasekit.server import processing

    real, seen = processing.text_to_mask, []

    def slow(*args, **kwargs):
        seen.append(threading.current_thread().name)
        time.sleep(0.6)
        return real(*args, **kwargs)

    monkeypatch.setattr(processing, "text_to_mask", slow)
    with client(job_timeout_s=0.3) as c:
        response = c.post("/api/v1/remove", json=body(method="telea"))
    assert response.status_code == 413 and "time budget" in response.json()["error"]["message"]
    assert seen and seen[0].startswith("erasekit-job")  # a job thread, holding the job's queue slot


@pytest.mark.parametrize(
    "options, needle",
    [({"sam3": "/etc"}, "set when the server starts"), ({"segmenter": "x"}, "set when the server starts"),
     ({"mask_device": "cuda"}, "set when the server starts"), ({"instances": "some"}, "instances"),
     ({"score_threshold": 1.5}, "score_threshold")],
)
def test_path_valued_and_bad_mask_options_are_422(sam3_dir, options, needle):
    with client() as c:
        response = c.post("/api/v1/remove", json=body(method="telea", options=options))
    assert response.status_code == 422 and needle in response.json()["error"]["message"]


def test_mask_options_with_a_drawn_mask_and_no_prompt_no_mask_are_422(sam3_dir):
    mask = np.zeros(ROCKET.shape[:2], np.uint8)
    mask[10:30, 10:30] = 255
    with client() as c:
        drawn = c.post("/api/v1/remove", json=body(method="telea", mask=png(mask)))
        bare = c.post("/api/v1/remove", json={"image": png(ROCKET), "method": "telea"})
    assert drawn.status_code == 422 and "only to a prompt with no mask" in drawn.json()["error"]["message"]
    assert bare.status_code == 422 and "needs a mask" in bare.json()["error"]["message"]


def test_missing_segmenter_weights_are_503_naming_the_fetch_command(offline_hub):
    with client() as c:
        response = c.post("/api/v1/remove", json=body(method="telea"))
        jobs = c.post("/api/v1/jobs", json=body(method="osor-sdxl"))
    for answer in (response, jobs):
        assert answer.status_code == 503
        assert answer.json()["error"]["type"] == "MissingWeightsError"
        assert "hf download facebook/sam3" in answer.json()["error"]["message"]

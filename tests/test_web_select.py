"""Click-to-select and Find in the web UI, in headless Chromium (see tests/test_web_e2e.py for the setup):
a click on the photo gives a mask preview equal to SAM 2's decoder answer for the same points, Shift+click
refines it in the same undo step, Remove gives a result; Find turns words into a mask layer; the endpoints'
error cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from skimage import data

pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install 'erasekit[server]')")
from live_server import CHROMIUM, LiveServer, client_point

if CHROMIUM is None:
    pytest.skip("headless Chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

from erasekit.server import ServerSettings, create_app

pytestmark = pytest.mark.browser
PHOTO = np.ascontiguousarray(data.astronaut()[::2, ::2])  # 256×256 real photo


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """$ERASEKIT_MODELS_DIR with tiny SAM 2 and Grounding DINO under their Hub repo names (no SAM 3, so Find
    takes the Grounding DINO + SAM 2 path)."""
    from erasekit.testing.segment import write_tiny_grounding_dino, write_tiny_sam2

    root = tmp_path_factory.mktemp("models")
    write_tiny_sam2(root / "sam2.1-hiera-large")
    write_tiny_grounding_dino(root / "grounding-dino-base")
    monkey = pytest.MonkeyPatch()
    monkey.setenv("ERASEKIT_MODELS_DIR", str(root))
    monkey.setenv("HF_HUB_CACHE", str(root / "empty-hf-cache"))
    yield root
    monkey.undo()


@pytest.fixture(scope="module")
def server_url(models):
    with LiveServer(ServerSettings(default_method="telea")) as server:
        yield server.url


MASK_JS = """() => {
  const c = state.mask.getContext('2d').getImageData(0, 0, state.mask.width, state.mask.height);
  const out = []; for (let i = 3; i < c.data.length; i += 4) out.push(c.data[i] > 127 ? 1 : 0);
  return out; }"""


def _browser_mask(page) -> np.ndarray:
    return np.asarray(page.evaluate(MASK_JS), bool).reshape(PHOTO.shape[:2])


def test_click_select_previews_a_mask_then_remove(page, models, tmp_path):
    from erasekit.masking.clicks import ClickSegmenter

    Image.fromarray(PHOTO).save(tmp_path / "astronaut.png")
    page.set_input_files("#file", str(tmp_path / "astronaut.png"))
    page.wait_for_function("document.body.dataset.state === 'ready'")
    page.click("#tool-select")
    assert page.evaluate("state.tool") == "select"

    with page.expect_request("**/api/v1/select/click") as first:
        page.mouse.click(*client_point(page, 100, 60))
    page.wait_for_function("state.strokes.length === 1 && state.strokes[0].tool === 'layer'")
    sent = json.loads(first.value.post_data)
    assert sent["labels"] == [1] and len(sent["points"]) == 1
    # The preview is SAM 2's decoder answer for the same click, computed here without the server.
    segmenter = ClickSegmenter(str(models / "sam2.1-hiera-large"), device="cpu")
    embedding = segmenter.embed(PHOTO)
    np.testing.assert_array_equal(
        _browser_mask(page), segmenter.decode(embedding, sent["points"], sent["labels"])
    )

    # Shift+click: "not the object"; the same selection, refined (still one undo step).
    with page.expect_request("**/api/v1/select/click") as second:
        page.keyboard.down("Shift")
        page.mouse.click(*client_point(page, 20, 200))
        page.keyboard.up("Shift")
    sent = json.loads(second.value.post_data)
    assert sent["labels"] == [1, 0] and len(sent["points"]) == 2
    page.wait_for_function("state.strokes.length === 1")
    expected = segmenter.decode(embedding, sent["points"], sent["labels"])
    page.wait_for_timeout(300)
    np.testing.assert_array_equal(_browser_mask(page), expected)
    assert 0 < expected.mean() < 1

    # The brush edits the selection: a stroke on top adds to it.
    page.click("#tool-brush")
    assert page.evaluate("state.tool") == "brush"

    page.select_option("#method", "telea")
    page.click("#run")
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=60_000)
    assert page.evaluate("document.body.dataset.state") == "done", page.text_content("#status")
    assert page.evaluate("state.result !== null")


def test_find_turns_words_into_a_mask_layer(page, models, tmp_path):
    from erasekit.masking import TextMaskOptions, text_to_mask

    Image.fromarray(PHOTO).save(tmp_path / "astronaut.png")
    page.set_input_files("#file", str(tmp_path / "astronaut.png"))
    page.wait_for_function("document.body.dataset.state === 'ready'")
    page.fill("#find-text", "the man")
    page.press("#find-text", "Enter")
    page.wait_for_function("state.strokes.length === 1 && state.strokes[0].tool === 'layer'", timeout=30_000)
    expected = text_to_mask(PHOTO, "the man", TextMaskOptions()).mask > 0
    np.testing.assert_array_equal(_browser_mask(page), expected)
    page.keyboard.press("Control+z")
    assert page.evaluate("state.strokes.length") == 0


def test_select_endpoint_errors(server_url, tmp_path):
    from fastapi.testclient import TestClient

    client = TestClient(create_app(), base_url="http://127.0.0.1:8080")  # a loopback Host (server guard)
    assert (
        client.post(
            "/api/v1/select/click", json={"id": "nope", "points": [[1, 1]], "labels": [1]}
        ).status_code
        == 404
    )
    assert client.post("/api/v1/select/embed", content=b"").status_code == 422
    assert client.post("/api/v1/select/embed", content=b"not an image").status_code == 422
    buffer = tmp_path / "p.png"
    Image.fromarray(PHOTO).save(buffer)
    embedded = client.post("/api/v1/select/embed", content=buffer.read_bytes()).json()
    assert embedded["width"] == 256 and len(embedded["id"]) == 16
    outside = client.post(
        "/api/v1/select/click", json={"id": embedded["id"], "points": [[999, 1]], "labels": [1]}
    )
    assert outside.status_code == 422 and "inside" in outside.json()["error"]["message"]
    bad_label = client.post(
        "/api/v1/select/click", json={"id": embedded["id"], "points": [[1, 1]], "labels": [3]}
    )
    assert bad_label.status_code == 422

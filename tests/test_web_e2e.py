"""The web UI end to end in headless Chromium: load a real photo, paint a stroke, remove, download, compare.

Needs Debian's chromium and the Playwright Python package (no Playwright browser download)::

    apt-get install -y chromium && pip install playwright

The server runs in a background thread (uvicorn on 127.0.0.1, a free port). The result and the mask are read
back through the UI's own download buttons, so the check covers the whole path a user takes. Set
``ERASEKIT_UPDATE_SCREENSHOT=1`` to refresh docs/img/webui.png from this test.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("headless Chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install playwright)"
)
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install 'erasekit[server]')")

from erasekit.server import ServerSettings, create_app

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "webui.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url():
    app = create_app(ServerSettings(default_method="patchmatch", port=_free_port()))
    config = uvicorn.Config(app, host="127.0.0.1", port=app.state.settings.port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, server_url):
    # bypass_csp: the UI forbids eval (CSP), which Playwright's wait_for_function uses to poll.
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, accept_downloads=True, bypass_csp=True
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server_url)
    page.wait_for_function("document.getElementById('method').options.length > 0")
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def _client_point(page, x: float, y: float) -> tuple[float, float]:
    """Image pixel (x, y) -> the page coordinates where it is shown (through the UI's own view transform)."""
    box = page.locator("#view").bounding_box()
    view = page.evaluate("({...state.view, ratio: view.width / view.getBoundingClientRect().width})")
    return (
        box["x"] + (x * view["scale"] + view["tx"]) / view["ratio"],
        box["y"] + (y * view["scale"] + view["ty"]) / view["ratio"],
    )


def _stroke(page, points: list[tuple[float, float]]) -> None:
    start = _client_point(page, *points[0])
    page.mouse.move(*start)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(*_client_point(page, x, y), steps=8)
    page.mouse.up()


def _download(page, button: str, path: Path) -> np.ndarray:
    with page.expect_download() as info:
        page.click(button)
    info.value.save_as(path)
    return np.asarray(Image.open(path).convert("RGB"))


def _open_photo(page, photo: np.ndarray, path: Path) -> None:
    Image.fromarray(photo).save(path)
    page.set_input_files("#file", str(path))
    page.wait_for_function("document.body.dataset.state === 'ready'")


def test_paint_remove_compare_download(page, tmp_path):
    photo = data.astronaut()  # 512×512 real photo
    _open_photo(page, photo, tmp_path / "astronaut.png")
    options = page.eval_on_selector_all("#method option", "els => els.map(e => e.value)")
    assert page.input_value("#method") == "patchmatch"  # the server's default is preselected
    assert {"patchmatch", "telea", "ns"} <= set(options)
    assert not {"sd15-inpaint", "sdxl-inpaint", "flux-fill"} & set(options)  # unavailable here: not offered
    refiners = page.eval_on_selector_all("#refine option", "els => els.map(e => e.value)")
    assert refiners[0] == "" and {"poisson", "color-match"} <= set(refiners)  # "none", then the registry

    # Keyboard: ] grows the brush, B/E switch tools.
    page.keyboard.press("]")
    assert page.evaluate("state.size") == 48
    page.keyboard.press("e")
    assert page.evaluate("state.tool") == "eraser"
    page.keyboard.press("b")

    # A wide brush down the space shuttle on the right of the photo.
    page.fill("#size", "96")
    page.dispatch_event("#size", "input")
    _stroke(page, [(428, 6), (428, 150), (400, 215), (425, 285)])
    assert page.evaluate("state.strokes.length") == 1
    # Undo / redo with the shortcuts.
    page.keyboard.press("Control+z")
    assert page.evaluate("state.strokes.length") == 0 and page.is_disabled("#run")
    page.keyboard.press("Control+Shift+z")
    assert page.evaluate("state.strokes.length") == 1 and page.is_enabled("#run")

    page.click("#run")
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=60_000)
    assert page.evaluate("document.body.dataset.state") == "done", page.text_content("#status")

    result = _download(page, "#download-result", tmp_path / "result.png")
    mask = _download(page, "#download-mask", tmp_path / "mask.png")[..., 0] > 0
    assert result.shape == photo.shape and mask.shape == photo.shape[:2]  # full resolution both ways
    assert 15000 < mask.sum() < 45000 and mask[150, 400] and not mask[400, 100]

    changed = np.any(result != photo, axis=-1)
    assert changed[mask].mean() > 0.5  # the stroke was filled in
    dilate = int(page.input_value("#dilate"))
    # The server grows the mask by a Euclidean disk of `dilate` pixels; beyond that nothing may change.
    distance = ndimage.distance_transform_edt(~mask)
    far = distance > dilate + 1
    assert not changed[far].any()  # pixels away from the stroke are bit-identical
    assert far.mean() > 0.8

    # The edited-region overlay and the compare slider only exist once there is a result.
    page.check("#alpha")
    page.fill("#compare", "50")
    page.dispatch_event("#compare", "input")
    page.screenshot(path=str(tmp_path / "webui.png"))
    if os.environ.get("ERASEKIT_UPDATE_SCREENSHOT"):
        page.uncheck("#alpha")
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SCREENSHOT))
    assert (tmp_path / "webui.png").stat().st_size > 10_000

    # Iterate: the result becomes the next input, with an empty mask.
    page.click("#iterate")
    page.wait_for_function("state.strokes.length === 0 && state.result === null && state.source !== null")
    assert page.is_disabled("#run")


def test_large_photo_is_shown_downscaled_but_masked_and_processed_at_full_resolution(page, tmp_path):
    # A real photo upscaled past the UI's 2048-pixel display limit.
    photo = np.asarray(Image.fromarray(data.coffee()).resize((2400, 1600), Image.BICUBIC))
    _open_photo(page, photo, tmp_path / "coffee.jpg")
    shown = page.evaluate("[state.source.display.width, state.source.display.height, state.mask.width]")
    assert shown[0] == 2048 and shown[1] == round(1600 * 2048 / 2400) and shown[2] == 2400

    page.select_option("#method", "telea")  # the method selector reaches the server
    page.select_option("#refine", "poisson")  # so does the refiner selector
    page.fill("#dilate", "0")
    page.dispatch_event("#dilate", "input")
    _stroke(page, [(1500, 700), (1700, 760)])
    page.click("#run")
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=90_000)
    assert page.evaluate("document.body.dataset.state") == "done", page.text_content("#status")

    source = np.asarray(Image.open(tmp_path / "coffee.jpg").convert("RGB"))
    result = _download(page, "#download-result", tmp_path / "result.png")
    mask = _download(page, "#download-mask", tmp_path / "mask.png")[..., 0] > 0
    assert result.shape == source.shape and mask.shape == source.shape[:2]
    ys, xs = np.nonzero(mask)
    assert 1400 < xs.mean() < 1800 and 650 < ys.mean() < 810  # painted where it was shown, in full-res pixels
    # The server decodes the JPEG with the same Pillow as this test and returns PNG: exact comparison works.
    changed = np.any(result != source, axis=-1)
    assert changed[mask].mean() > 0.5
    assert "telea" in page.text_content("#status")
    assert not changed[ndimage.distance_transform_edt(~mask) > 1].any()

"""Fixtures shared by every test file, and one test home for the whole suite."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# The suite never sees this machine's Hugging Face cache, torch hub checkpoints or erasekit weight folders:
# results must not depend on what a user downloaded. Set at import, before any test module imports
# huggingface_hub (which reads these variables once, when it is first imported).
TEST_HOME = Path(tempfile.mkdtemp(prefix="erasekit-test-home-"))
os.environ["HF_HOME"] = str(TEST_HOME / "huggingface")
os.environ["TORCH_HOME"] = str(TEST_HOME / "torch")
for _key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_DATASETS_CACHE",
             "ERASEKIT_MODELS_DIR", "ERASEKIT_WEIGHTS_DIR"):
    os.environ.pop(_key, None)
atexit.register(shutil.rmtree, TEST_HOME, ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads; on a two-core CI machine extra threads only add
    contention."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's) through Playwright, one per test module: the web UI tests'."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    from live_server import CHROMIUM, CHROMIUM_ARGS

    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, server_url):
    """The web UI at the test module's ``server_url`` in a fresh browser context; a JavaScript error on the
    page fails the test."""
    from live_server import open_page

    context, page, errors = open_page(browser, server_url)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Tiny diffusion checkpoints in the real on-disk layout, written once per session and shared."""
    from erasekit.testing import TinyCheckpoints

    return TinyCheckpoints(tmp_path_factory.getbasetemp() / "erasekit-tiny")


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """No weights anywhere and no network: an empty ``$ERASEKIT_MODELS_DIR`` (``tmp_path/models``) and Hugging
    Face cache (``tmp_path/hf-cache``), offline mode, and any non-local ``snapshot_download`` fails the
    test."""
    import huggingface_hub

    monkeypatch.setenv("ERASEKIT_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    real = huggingface_hub.snapshot_download

    def guarded(*args, **kwargs):
        assert kwargs.get("local_files_only"), "a download was attempted"
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", guarded)
    return tmp_path


@pytest.fixture
def osor_conditioning(monkeypatch):
    """The mask channel of every OSOR SDXL UNet call (the max-pooled conditioning mask the network gets)."""
    import torch

    from erasekit.methods.osor.engine import SDXLEngine

    seen: list[torch.Tensor] = []
    original = SDXLEngine.conditioning

    def recording(self, z_t, z_lq, mask, timestep):
        out = original(self, z_t, z_lq, mask, timestep)
        seen.append(out["sample"][:, 4:5].detach().float().clone())
        return out

    monkeypatch.setattr(SDXLEngine, "conditioning", recording)
    return seen

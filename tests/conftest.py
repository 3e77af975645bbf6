"""Fixtures shared by every test file."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads; on a two-core CI machine extra threads only add contention."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Tiny diffusion checkpoints in the real on-disk layout, written once per session and shared."""
    from erasekit.testing import TinyCheckpoints

    return TinyCheckpoints(tmp_path_factory.getbasetemp() / "erasekit-tiny")

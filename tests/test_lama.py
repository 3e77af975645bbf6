"""The ``lama`` method: Big LaMa TorchScript with IOPaint's processing, on tiny weights of its contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

import erasekit
from erasekit.methods.lama import pad_to_multiple
from erasekit.registry import resolve_auto
from erasekit.testing import write_tiny_weights
from erasekit.types import InvalidInputError, MissingWeightsError


@pytest.fixture(scope="module")
def lama_weights(tmp_path_factory):
    return write_tiny_weights("lama", tmp_path_factory.mktemp("lama"))["weights"]


def _photo_and_mask(h: int = 61, w: int = 83):
    photo = np.ascontiguousarray(data.astronaut()[:h, :w])
    mask = np.zeros((h, w), np.float32)
    mask[20:45, 30:60] = 1
    return photo, mask


def test_output_outside_the_mask_is_the_input_bit_for_bit(lama_weights):
    photo, mask = _photo_and_mask()  # 61×83: neither side a multiple of 8
    result = erasekit.remove(photo, mask, method="lama", weights=lama_weights)
    assert result.image.shape == photo.shape and result.image.dtype == np.uint8
    assert np.array_equal(result.image[mask == 0], photo[mask == 0])
    assert not np.array_equal(result.image[mask > 0], photo[mask > 0])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_sides_off_the_multiple_of_8_are_padded_and_cropped(lama_weights):
    model = torch.jit.load(lama_weights)
    photo, mask = _photo_and_mask()
    with pytest.raises(RuntimeError):  # the network itself needs multiples of 8 ...
        model(torch.rand(1, 3, 61, 83), torch.zeros(1, 1, 61, 83))
    out = erasekit.remove(photo, mask, method="lama", weights=lama_weights).image  # ... the method pads
    # Inside the mask the fill equals the network's on IOPaint's padded input, truncated to uint8.
    padded = np.pad(photo, ((0, 3), (0, 5), (0, 0)), mode="symmetric")
    padded_mask = np.pad(mask, ((0, 3), (0, 5)), mode="symmetric")
    x = torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        expected = model(x, torch.from_numpy(padded_mask)[None, None])[0].permute(1, 2, 0).numpy()
    expected = np.clip(expected * 255, 0, 255).astype(np.uint8)[:61, :83]
    assert np.array_equal(out[mask > 0], expected[mask > 0])


def test_padding_is_iopaints_symmetric_bottom_right_pad():
    a = np.arange(15).reshape(3, 5)
    padded = pad_to_multiple(a)
    assert padded.shape == (8, 8)
    assert np.array_equal(padded[:3, :5], a)
    # 'symmetric' repeats the edge: rows 3, 4, 5 are rows 2, 1, 0; columns 5, 6, 7 are columns 4, 3, 2.
    assert np.array_equal(padded[3:6, :5], a[::-1])
    assert np.array_equal(padded[:3, 5:8], a[:, [4, 3, 2]])
    assert pad_to_multiple(np.zeros((16, 8, 3))).shape == (16, 8, 3)  # already a multiple: unchanged


def test_missing_weights_name_the_file_and_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ERASEKIT_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError, match=r"big-lama\.pt.*github\.com/Sanster.*ERASEKIT_MODELS_DIR"):
        erasekit.load_remover("lama")


def test_a_file_that_is_not_torchscript_is_a_clear_error(tmp_path):
    bad = tmp_path / "big-lama.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(InvalidInputError, match="not a TorchScript LaMa model"):
        erasekit.load_remover("lama", weights=str(bad))


def test_weights_resolve_from_the_models_dir_and_iopaints_cache(lama_weights, tmp_path, monkeypatch):
    import shutil

    monkeypatch.delenv("ERASEKIT_MODELS_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(lama_weights, tmp_path / "torch" / "hub" / "checkpoints" / "big-lama.pt")
    assert erasekit.load_remover("lama").weights.startswith(str(tmp_path / "torch"))
    (tmp_path / "models" / "lama").mkdir(parents=True)
    shutil.copy(lama_weights, tmp_path / "models" / "lama" / "big-lama.pt")
    monkeypatch.setenv("ERASEKIT_MODELS_DIR", str(tmp_path / "models"))
    assert erasekit.load_remover("lama").weights == str(tmp_path / "models" / "lama" / "big-lama.pt")


def test_auto_prefers_lama_over_patchmatch_when_its_weights_are_present(lama_weights, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("ERASEKIT_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert resolve_auto() != "lama"
    (tmp_path / "models" / "lama").mkdir(parents=True)
    shutil.copy(lama_weights, tmp_path / "models" / "lama" / "big-lama.pt")
    assert resolve_auto() == "lama"

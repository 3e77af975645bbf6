"""The ``eradiff`` method: equal to the sd2-inpaint baseline with rule=none, SRA changes only the masked
region, processors restored, weights, options, registration and the CLI end to end (tiny weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

import erasekit
from erasekit.cli import main
from erasekit.methods.eradiff.attention import MaskedSelfAttnProcessor, SplitSelfAttnProcessor
from erasekit.methods.eradiff.remover import parse_layers
from erasekit.testing import write_tiny_weights
from erasekit.types import InvalidInputError, MissingWeightsError, RemovalRequest

OPTIONS = {"steps": 3}


@pytest.fixture(scope="module")
def tiny_eradiff(tmp_path_factory):
    return write_tiny_weights("eradiff", tmp_path_factory.mktemp("eradiff"))


@pytest.fixture(scope="module")
def stock(tiny_eradiff):
    return erasekit.load_remover("eradiff", model=tiny_eradiff["model"], device="cpu", progress_bar=False)


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    image = (rng.random((64, 80, 3)) * 255).astype(np.uint8)
    mask = np.zeros((64, 80), np.float32)
    mask[16:44, 24:60] = 1
    return image, mask


def remove(remover, scene, **options):
    image, mask = scene
    return remover(RemovalRequest(image, mask, seed=0, options={**OPTIONS, **options}))


def test_rule_none_equals_the_sd2_inpaint_baseline(tiny_eradiff, stock, scene):
    baseline = erasekit.load_remover("sd2-inpaint", model=tiny_eradiff["model"], device="cpu",
                                     progress_bar=False)
    for options in ({}, {"strength": 0.6, "guidance": 3.0, "negative_prompt": None}):
        expected = remove(baseline, scene, **options).image
        assert np.array_equal(remove(stock, scene, rule="none", **options).image, expected)


@pytest.mark.parametrize("rule", ["sra", "key_mask"])
def test_a_rule_changes_the_fill_and_nothing_outside_the_mask(stock, scene, rule):
    plain = remove(stock, scene, rule="none").image
    ruled = remove(stock, scene, rule=rule).image
    inside = scene[1] > 0
    assert (ruled != plain)[inside].any()
    assert np.array_equal(ruled[~inside], scene[0][~inside])


@pytest.mark.parametrize(("rule", "impl"), [("sra", "bias"), ("key_mask", "bias"), ("sra", "split")])
def test_the_call_restores_every_processor(stock, scene, rule, impl):
    before = stock.pipe.unet.attn_processors
    remove(stock, scene, rule=rule, impl=impl)
    after = stock.pipe.unet.attn_processors
    assert all(after[k] is before[k] for k in before)
    assert not any(isinstance(p, (MaskedSelfAttnProcessor, SplitSelfAttnProcessor)) for p in after.values())


@pytest.mark.parametrize("rule", ["sra", "key_mask"])
def test_the_three_implementations_give_the_same_image(stock, scene, rule):
    bias = remove(stock, scene, rule=rule, impl="bias").image.astype(int)
    for impl in ("bool", "split"):  # equal attention within 1e-6: at most a rounding flip of one level
        assert np.abs(remove(stock, scene, rule=rule, impl=impl).image.astype(int) - bias).max() <= 1


def test_sra_is_deterministic_and_layers_select_what_it_changes(stock, scene):
    a = remove(stock, scene).image
    assert np.array_equal(a, remove(stock, scene).image)
    up_only = remove(stock, scene, layers="up").image
    assert not np.array_equal(up_only, a)
    assert np.array_equal(remove(stock, scene, layers="0-3").image, remove(stock, scene, layers="all").image)


def test_weights_change_the_unet_and_the_metadata_says_which_variant(tiny_eradiff, stock, scene):
    trained = erasekit.load_remover("eradiff", **tiny_eradiff, device="cpu", progress_bar=False)
    assert stock.describe()["variant"] == "w/o CRO" and stock.describe()["cro"] is False
    result = remove(trained, scene)
    assert result.metadata["remover"]["variant"] == "EraDiff"
    assert not np.array_equal(result.image, remove(stock, scene).image)


def test_bad_options_and_weights_are_refused(tmp_path, tiny_eradiff, stock, scene):
    with pytest.raises(InvalidInputError, match="layers"):
        remove(stock, scene, layers="9-40")
    with pytest.raises(InvalidInputError, match="layers"):
        remove(stock, scene, layers="sideways")
    with pytest.raises(InvalidInputError, match="rule"):
        remove(stock, scene, rule="soft")
    with pytest.raises(MissingWeightsError):
        erasekit.load_remover("eradiff", model=tiny_eradiff["model"], weights=tmp_path, device="cpu")
    (tmp_path / "eradiff.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(InvalidInputError, match="format"):
        erasekit.load_remover("eradiff", model=tiny_eradiff["model"], weights=tmp_path, device="cpu")


def test_parse_layers():
    assert parse_layers("all").kind == "self" and parse_layers("all").indices is None
    assert parse_layers("7-9, 12").indices == frozenset({7, 8, 9, 12})
    assert parse_layers("down,up_blocks.1").blocks == ("down", "up_blocks.1")


def test_registered_with_its_options():
    spec = erasekit.registry.get_method("eradiff")
    assert spec.auto_priority is None and spec.call_options is not None
    assert spec.call_options["rule"].default == "sra" and spec.call_options["strength"].default == 1.0


def test_cli_remove_end_to_end(tmp_path, tiny_eradiff, scene):
    from PIL import Image

    image, mask = scene
    Image.fromarray(image).save(tmp_path / "in.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code = main(["remove", str(tmp_path / "in.png"), "-m", str(tmp_path / "mask.png"), "-o", str(out),
                 "--method", "eradiff", "--model", tiny_eradiff["model"],
                 "--weights", tiny_eradiff["weights"], "--device", "cpu", "--seed", "0",
                 "-O", "steps=2", "-O", "rule=key_mask", "-O", "grid=half"])
    assert code == 0
    result = np.asarray(Image.open(out).convert("RGB"))
    assert result.shape == image.shape and np.array_equal(result[mask == 0], image[mask == 0])

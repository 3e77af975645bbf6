"""Text -> mask in front of a masked method (erasekit.masking): SAM 3 and Grounding DINO + SAM 2 with tiny
weights in their real layouts, end to end from the CLI on real photos; the segmenter's mask reaches the
remover unchanged apart from the documented dilation; instance rules; auto's order; the error cases."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from PIL import Image
from skimage.morphology import binary_dilation, disk

import erasekit
from erasekit.cli import main
from erasekit.masking import DEFAULT_GROW, Instance, TextMaskOptions, text_to_mask
from erasekit.masking.instances import select, union
from erasekit.masks import Box
from erasekit.testing import write_tiny_weights


@pytest.fixture(scope="module")
def segmenters(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmenters")
    return {
        "sam3": write_tiny_weights("sam3", root),
        "gdino": write_tiny_weights("grounding-dino-sam2", root),
    }


@pytest.fixture(scope="module")
def rocket(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "rocket.png"
    Image.fromarray(np.ascontiguousarray(skimage.data.rocket()[::3, ::3])).save(path)  # 143×214, real photo
    return path


def _read(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_sam3_preprocessing_and_scores_follow_transformers(segmenters):
    """Pixels as transformers' PIL image transforms make them; scores and masks as
    Sam3Processor.post_process_instance_segmentation defines them (sigmoid × presence, bilinear, > 0.5)."""
    import torch
    from transformers.image_transforms import normalize, rescale, resize
    from transformers.image_utils import PILImageResampling

    from erasekit.masking.sam3 import Sam3TextSegmenter

    seg = Sam3TextSegmenter(segmenters["sam3"]["sam3"], device="cpu")
    image = np.ascontiguousarray(skimage.data.astronaut()[:90, :130])
    side = seg.size[0]
    ref = resize(image, (side, side), resample=PILImageResampling.BILINEAR)
    ref = normalize(rescale(ref.astype(np.float32), 1 / 255), mean=[0.5] * 3, std=[0.5] * 3)
    ours = seg.pixel_values(image)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)

    found = seg.instances(image, "the man", threshold=0.0)
    text = seg.tokenizer(["the man"], padding="max_length", max_length=32, return_tensors="pt")
    with torch.no_grad():
        out = seg.model(pixel_values=torch.from_numpy(ref.transpose(2, 0, 1).copy())[None], **text)
    scores = torch.sigmoid(out.pred_logits[0]) * torch.sigmoid(out.presence_logits[0])
    assert [i.score for i in found] == pytest.approx(scores.tolist(), abs=1e-5)
    masks = torch.nn.functional.interpolate(torch.sigmoid(out.pred_masks), size=(90, 130), mode="bilinear")[0]
    for instance, mask in zip(found, masks):
        assert np.mean(instance.mask != (mask.numpy() > 0.5)) < 1e-3


@pytest.mark.parametrize("path", ["sam3", "gdino"])
def test_cli_text_to_mask_to_removal_on_a_real_photo(path, segmenters, rocket, tmp_path):
    """`erasekit remove photo --prompt ... --method telea` (no --mask): the saved mask is the segmenter's best
    instance grown by the documented 5 px, the method filled exactly that, and nothing outside it changed."""
    from erasekit.masking.text import load_segmenter, resolve

    opts = segmenters[path]
    flags = (
        ["--sam3", opts["sam3"]]
        if path == "sam3"
        else ["--detector", opts["detector"], "--segmenter", opts["segmenter"]]
    )
    out, saved = tmp_path / "out.png", tmp_path / "mask.png"
    code = main(
        [
            "remove",
            str(rocket),
            "--prompt",
            "the rocket",
            "--method",
            "telea",
            *flags,
            "--instances",
            "1",
            "--score-threshold",
            "0",
            "--save-mask",
            str(saved),
            "-o",
            str(out),
        ]
    )
    assert code == 0
    image = _read(rocket)
    # The segmenter alone, called directly: its top-scoring instance.
    options = TextMaskOptions.pop_from(dict(opts))
    segmenter = load_segmenter(*resolve(options))
    best = max(segmenter.instances(image, "the rocket", threshold=0.0), key=lambda i: i.score)
    expected = binary_dilation(best.mask, disk(DEFAULT_GROW))  # scikit-image, not erasekit.masks
    assert 0 < expected.mean() < 1
    np.testing.assert_array_equal(_read(saved) > 127, expected)
    result = erasekit.remove(
        rocket, method="telea", prompt="the rocket", instances=1, score_threshold=0.0, **opts
    )
    np.testing.assert_array_equal(result.mask > 0, expected)  # what the remover got
    np.testing.assert_array_equal(result.alpha > 0, expected)  # what telea filled (its processed mask)
    written = _read(out)
    np.testing.assert_array_equal(written[~expected], image[~expected])
    assert (written[expected] != image[expected]).any()
    assert result.metadata["mask_source"]["source"] == opts["mask_source"]
    assert result.metadata["mask_source"]["mask_grow"] == DEFAULT_GROW
    assert result.metadata["chain"] == "telea"


def test_text_mask_with_a_learned_method_and_a_refiner_chain(segmenters, rocket, tmp_path):
    """OSOR (tiny weights) behind text -> mask, as a chain with a refiner: the API records the chain."""
    options = write_tiny_weights("osor-sdxl", tmp_path / "osor")
    result = erasekit.remove(
        rocket,
        method="osor-sdxl+poisson",
        prompt="the rocket",
        instances="largest",
        score_threshold=0.0,
        **segmenters["sam3"],
        **options,
    )
    assert (
        result.metadata["chain"] == "osor-sdxl+poisson" and result.metadata["mask_source"]["source"] == "sam3"
    )
    opts = TextMaskOptions.pop_from(dict(segmenters["sam3"], instances="largest", score_threshold=0.0))
    np.testing.assert_array_equal(result.mask, text_to_mask(_read(rocket), "the rocket", opts).mask)
    assert result.image.shape == _read(rocket).shape


def test_grow_option_and_instance_rules(segmenters):
    image = np.ascontiguousarray(skimage.data.coffee()[::4, ::4])
    base = dict(segmenters["sam3"], score_threshold=0.0)
    grown = text_to_mask(
        image, "the cup", TextMaskOptions.pop_from({**base, "instances": "all", "mask_grow": 0})
    )
    assert np.array_equal(grown.mask, grown.segmented) and len(grown.kept) == grown.found == 8
    largest = text_to_mask(image, "the cup", TextMaskOptions.pop_from({**base, "instances": "largest"}))
    assert len(largest.kept) == 1 and largest.kept[0].mask.sum() == max(i.mask.sum() for i in grown.kept)


def test_select_and_union_rules():
    def inst(score, cells):
        mask = np.zeros((4, 4), bool)
        for r, c in cells:
            mask[r, c] = True
        return Instance(mask, score, Box(0, 0, 4, 4))

    a, b, c = inst(0.9, [(0, 0)]), inst(0.5, [(1, 1), (1, 2), (2, 2)]), inst(0.7, [(3, 3), (3, 2)])
    assert select([a, b, c], "all") == [a, c, b]
    assert select([a, b, c], "largest") == [b]
    assert select([a, b, c], 2) == [a, c]
    assert union([a, c], (4, 4)).sum() == 3 and union([], (4, 4)).sum() == 0
    for bad in ("0", "some", -1):
        with pytest.raises(erasekit.InvalidInputError, match="all, largest or a count"):
            TextMaskOptions(instances=bad)


def test_errors_are_one_line_with_their_exit_codes(segmenters, rocket, tmp_path, offline_hub, capsys):
    out = str(tmp_path / "o.png")
    # A masked method, no prompt, no mask: exit 2 saying what to give.
    assert main(["remove", str(rocket), "--method", "telea", "-o", out]) == 2
    assert "--mask" in capsys.readouterr().err
    # Segmenter weights missing: exit 3 naming the command that fetches them.
    assert main(["remove", str(rocket), "--method", "telea", "--prompt", "the rocket", "-o", out]) == 3
    assert "hf download facebook/sam3" in capsys.readouterr().err
    assert (
        main(
            [
                "remove",
                str(rocket),
                "--method",
                "telea",
                "--prompt",
                "x",
                "--sam3",
                str(tmp_path / "none"),
                "-o",
                out,
            ]
        )
        == 3
    )
    assert "hf download facebook/sam3 --local-dir" in capsys.readouterr().err
    # Nothing above the threshold: exit 2, nothing written.
    assert (
        main(
            [
                "remove",
                str(rocket),
                "--method",
                "telea",
                "--prompt",
                "the rocket",
                "--sam3",
                segmenters["sam3"]["sam3"],
                "--score-threshold",
                "0.999",
                "-o",
                out,
            ]
        )
        == 2
    )
    assert "found nothing matching" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
    # Mask-source options with a drawn mask would be ignored: refused instead.
    mask = np.zeros(_read(rocket).shape[:2], np.float32)
    mask[10:20, 10:20] = 1
    with pytest.raises(erasekit.InvalidInputError, match="only to a prompt with no mask"):
        erasekit.remove(rocket, mask, method="telea", instances=1)


def test_auto_with_a_prompt_prefers_text_mask_then_magicremover_then_a_fill(monkeypatch):
    from erasekit import chain, registry

    present: set[str] = set()
    real = registry.method_info

    def info(spec):
        got = real(spec)
        return registry.MethodInfo(
            got.name,
            got.description,
            got.family,
            got.requires_mask,
            spec.family == "classical" or spec.name in present,
            None,
            got.weights,
        )

    monkeypatch.setattr(registry, "method_info", info)
    fill = registry.resolve_auto(mask_given=True)
    assert chain.resolve_auto_for_prompt(True) == (fill, True)
    present.add("magicremover")
    assert chain.resolve_auto_for_prompt(True) == ("magicremover", False)
    assert chain.resolve_auto_for_prompt(False) == ("magicremover", False)
    present.add("osor-sdxl")
    assert chain.resolve_auto_for_prompt(True) == ("osor-sdxl", True)
    present.clear()
    monkeypatch.setattr(
        registry,
        "method_info",
        lambda spec: registry.MethodInfo(
            spec.name, "", spec.family, spec.requires_mask, False, "missing", ()
        ),
    )
    with pytest.raises(erasekit.MissingWeightsError, match="hf download facebook/sam3"):
        chain.resolve_auto_for_prompt(True)


def test_cli_auto_with_a_prompt_segments_then_fills(segmenters, rocket, tmp_path, offline_hub):
    """No learned weights and no MagicRemover here: `auto` + a prompt = text -> mask -> the best fill."""
    from erasekit import registry

    out, saved = tmp_path / "out.png", tmp_path / "mask.png"
    code = main(["remove", str(rocket), "--prompt", "the rocket", "--sam3", segmenters["sam3"]["sam3"],
                 "--score-threshold", "0", "--instances", "1", "--save-mask", str(saved), "-o", str(out)])
    assert code == 0
    result = erasekit.remove(rocket, prompt="the rocket", instances=1, score_threshold=0.0,
                             **segmenters["sam3"])
    assert result.method == registry.resolve_auto(mask_given=True)
    np.testing.assert_array_equal(_read(saved) > 127, result.mask > 0)
    np.testing.assert_array_equal(_read(out), result.image)

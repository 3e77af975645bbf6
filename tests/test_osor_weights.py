"""OSOR weights: the authors' .pth layout (built independently by erasekit.testing.osor the way their training
code saves it), erasekit's safetensors format, conversion both ways, non-strict peft loading with clear
reports."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from erasekit.methods.osor import OsorSDXLRemover
from erasekit.methods.osor.alpha_head import has_alpha_head
from erasekit.methods.osor.weights import split_state_dict
from erasekit.testing import tiny_pipeline
from erasekit.testing.osor import official_state_dict_for, tiny_osor_remover, write_tiny_osor_weights
from erasekit.types import InvalidInputError, MissingWeightsError, RemovalRequest


def _remover(family: str, **kwargs):
    return tiny_osor_remover(family, **kwargs)


def _scene(h: int = 32, w: int = 48):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.float32)
    mask[h // 4 : h // 2, w // 4 : w // 2] = 1
    return image, mask


def _run(remover, image, mask, capture: bool = False):
    """One engine call; with ``capture`` also the denoiser's keyword arguments and output."""
    from erasekit.convert import image_to_tensor, mask_to_tensor

    calls, outputs = [], []
    hooks = []
    if capture:
        net = remover.engine.denoiser
        hooks = [
            net.register_forward_pre_hook(lambda m, a, kw: calls.append(dict(kw)), with_kwargs=True),
            net.register_forward_hook(lambda m, a, kw, out: outputs.append(out[0]), with_kwargs=True),
        ]
    out = remover.engine.run(image_to_tensor(image), mask_to_tensor(mask), [0])
    for h in hooks:
        h.remove()
    return out, calls, outputs


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    root = tmp_path_factory.mktemp("osor-weights")
    return {
        (fam, phase): write_tiny_osor_weights(fam, root / f"tiny_{fam}_phase{phase}.pth", phase=phase)
        for fam in ("sdxl", "flux")
        for phase in (1, 2)
    }


def test_official_keys_are_sorted_into_lora_and_head_whatever_the_wrappers():
    state = official_state_dict_for("flux", phase=2)
    assert any(k.startswith("transformer.base_model.model.") and ".lora_A.default." in k for k in state)
    wrapped = {f"module._orig_mod.{k}": v for k, v in state.items()}  # DDP + torch.compile prefixes
    weights = split_state_dict(wrapped)
    assert (weights.backbone, weights.phase, weights.rank, weights.lora_alpha) == ("flux", 2, 4, 4.0)
    assert set(weights.head) == {"weight", "bias"} and weights.head["weight"].shape == (68, 32)
    assert not weights.other
    assert "transformer_blocks.0.attn.to_q.lora_A.weight" in weights.lora
    # The authors' literal "single_transformer_blocks.*.proj_out" never matched in peft: no LoRA there.
    assert not any(
        m.startswith("single_transformer_blocks") and m.endswith("proj_out") for m in weights.target_modules
    )


def _authors_reference_unet(state_dict):
    """The authors' way: add_adapter with their LoraConfig, a new 5-channel conv_out, load non-strictly."""
    from peft import LoraConfig
    from torch import nn

    from erasekit.methods.osor.weights import OFFICIAL_TARGETS

    wrapper = nn.Module()
    wrapper.unet = copy.deepcopy(tiny_pipeline("sdxl-inpaint").unet)
    wrapper.unet.add_adapter(
        LoraConfig(
            r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=list(OFFICIAL_TARGETS["sdxl"])
        )
    )
    old = wrapper.unet.conv_out
    wrapper.unet.conv_out = nn.Conv2d(old.in_channels, 5, 3, padding=1)
    result = wrapper.load_state_dict(state_dict, strict=False)
    assert not result.unexpected_keys
    return wrapper.unet.eval()


@pytest.mark.parametrize("merge", [True, False])
def test_official_sdxl_weights_equal_the_authors_loading_and_change_the_output(official, merge):
    remover = _remover("sdxl", weights=official[("sdxl", 2)], merge_lora=merge)
    report = remover.load_report
    assert report.lora_modules > 0 and not report.missing_keys and not report.unexpected_keys
    ref = _authors_reference_unet(torch.load(official[("sdxl", 2)], weights_only=True))
    image, mask = _scene()
    out, calls, outputs = _run(remover, image, mask, capture=True)
    with torch.no_grad():
        expected = ref(**calls[0])[0]  # the captured call already says return_dict=False
    torch.testing.assert_close(outputs[0], expected, rtol=1e-4, atol=1e-5)
    bare, _, _ = _run(_remover("sdxl"), image, mask)
    assert not torch.allclose(out.z_out, bare.z_out, atol=1e-3)
    assert remover.defaults.blend == "alpha"


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_weight_formats_convert_both_ways_and_load_the_same(official, family, tmp_path):
    from erasekit.methods.osor.weights import convert_weights, load_osor_weights

    src = official[(family, 2)]
    folder = convert_weights(src, tmp_path / "ours")
    assert (folder / "osor_config.json").is_file() and (folder / "osor_weights.safetensors").is_file()
    back = convert_weights(folder, tmp_path / "back.pth")
    original = torch.load(src, weights_only=True)
    again = torch.load(back, weights_only=True)
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)
    ours = load_osor_weights(folder)
    assert (ours.backbone, ours.phase, ours.rank, ours.lora_alpha) == (family, 2, 4, 4.0)
    image, mask = _scene()
    a = _remover(family, weights=src)(RemovalRequest(image, mask, seed=0))
    b = _remover(family, weights=folder)(RemovalRequest(image, mask, seed=0))
    assert np.array_equal(a.image, b.image)


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_phase1_weights_have_no_alpha_head_and_hard_blend(official, family):
    remover = _remover(family, weights=official[(family, 1)])
    assert not has_alpha_head(remover.engine.denoiser) and remover.defaults.blend == "mask"
    image, mask = _scene()
    result = remover(RemovalRequest(image, mask, seed=0))
    assert np.array_equal(result.image[result.alpha == 0], image[result.alpha == 0])
    with pytest.raises(InvalidInputError, match="alpha head"):
        remover(RemovalRequest(image, mask, options={"blend": "alpha"}))


def test_weight_errors_are_clear(official, tmp_path):
    with pytest.raises(InvalidInputError, match="for sdxl, not flux"):
        _remover("flux", weights=official[("sdxl", 2)])
    with pytest.raises(MissingWeightsError, match="not found"):
        _remover("sdxl", weights=tmp_path / "missing_phase2.pth")
    with pytest.raises(MissingWeightsError, match="hf download QinmingZhou/OSOR"):
        OsorSDXLRemover(
            pipeline=copy.deepcopy(tiny_pipeline("sdxl-inpaint"))
        )  # nothing given, nothing cached
    with pytest.raises(InvalidInputError, match="SDXL inpainting UNet"):
        OsorSDXLRemover(pipeline=copy.deepcopy(tiny_pipeline("sd15-inpaint")), weights="none")
    bad = tmp_path / "bad.pth"
    torch.save({"unet.conv_out.weight": torch.zeros(7, 16, 3, 3)}, bad)
    with pytest.raises(InvalidInputError, match="7 output rows"):
        _remover("sdxl", weights=bad)
    extra = official_state_dict_for("sdxl", phase=2)
    extra["unet.not_a_block.to_q.lora_A.default.weight"] = torch.zeros(4, 8)
    extra["unet.not_a_block.to_q.lora_B.default.weight"] = torch.zeros(8, 4)
    torch.save(extra, tmp_path / "extra_phase2.pth")
    report = _remover("sdxl", weights=tmp_path / "extra_phase2.pth").load_report
    assert report.unexpected_keys == ("not_a_block.to_q.lora_A.weight", "not_a_block.to_q.lora_B.weight")


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_merged_lora_is_the_base_weight_plus_scaled_b_times_a_and_leaves_no_adapter(official, family):
    from peft.tuners.tuners_utils import BaseTunerLayer
    from torch import nn

    from erasekit.methods.osor.weights import apply_osor_weights, load_osor_weights

    weights = load_osor_weights(official[(family, 2)])
    pipe = tiny_pipeline("sdxl-inpaint" if family == "sdxl" else "flux-fill")
    base = copy.deepcopy(pipe.unet if family == "sdxl" else pipe.transformer)
    original = {k: v.clone() for k, v in base.state_dict().items()}
    apply_osor_weights(base, weights, merge=True)
    assert not any(isinstance(m, BaseTunerLayer) for m in base.modules()) and not hasattr(base, "peft_config")
    modules = dict(base.named_modules())
    scale = weights.lora_alpha / weights.rank
    checked = 0
    for name in weights.target_modules:
        if not isinstance(modules[name], nn.Linear):
            continue  # convolutions: checked through the output, against the authors' loading, above
        a, b = weights.lora[f"{name}.lora_A.weight"], weights.lora[f"{name}.lora_B.weight"]
        expected = original[f"{name}.weight"] + (b @ a) * scale
        torch.testing.assert_close(modules[name].weight.detach(), expected, rtol=0, atol=1e-7)
        checked += 1
    assert checked > 0

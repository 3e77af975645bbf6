"""Tiny-model fixtures: real architectures, real on-disk layout, deterministic, built without the network."""

from __future__ import annotations

import json
import socket

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from erasekit.backbones.presets import PRESETS, checkpoint_problem
from erasekit.testing import TINY_NAMES, TinyCheckpoints, build_tiny_pipeline, tiny_pipeline


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("name", TINY_NAMES)
def test_written_checkpoint_has_the_hub_layout_and_loads_offline(name, tiny, no_network):
    path = tiny(name)
    preset = PRESETS[name]
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == preset.pipeline_class
    assert checkpoint_problem(path, preset.components) is None
    for comp in preset.components:
        files = {f.name for f in (path / comp).iterdir()}
        if comp in ("unet", "transformer", "vae"):
            assert {"config.json", "diffusion_pytorch_model.safetensors"} <= files
        elif comp.startswith("text_encoder"):
            assert {"config.json", "model.safetensors"} <= files
        elif comp == "scheduler":
            assert "scheduler_config.json" in files
        else:
            assert "tokenizer_config.json" in files
    pipe = getattr(diffusers, preset.pipeline_class).from_pretrained(path, local_files_only=True)
    ref = tiny_pipeline(name)
    for comp in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, comp, None)
        if module is None:
            continue
        for (k, v), (k2, v2) in zip(module.state_dict().items(), getattr(ref, comp).state_dict().items()):
            assert k == k2 and torch.equal(v, v2), f"{comp}.{k} differs after save/load"


def test_architectures_match_the_real_checkpoints():
    for name in ("sd15-inpaint", "sd2-inpaint"):
        pipe = tiny_pipeline(name)
        assert pipe.unet.config.in_channels == 9 and pipe.vae_scale_factor == 8
    assert tiny_pipeline("sd2-inpaint").unet.config.use_linear_projection
    assert tiny_pipeline("sd15").unet.config.in_channels == 4
    assert tiny_pipeline("sd21-base").unet.config.in_channels == 4
    sdxl = tiny_pipeline("sdxl-inpaint")
    assert sdxl.unet.config.in_channels == 9 and sdxl.unet.config.addition_embed_type == "text_time"
    assert sdxl.unet.config.cross_attention_dim == (sdxl.text_encoder.config.hidden_size
                                                   + sdxl.text_encoder_2.config.hidden_size)
    assert sdxl.vae.config.scaling_factor == 0.13025  # the real SDXL VAE's
    flux = tiny_pipeline("flux-fill")
    tc = flux.transformer.config
    # 64 packed latent + 64 packed masked-image latent + 256 packed 8×8-unshuffled mask channels
    assert tc.in_channels == 384 and tc.out_channels == 64 and tc.guidance_embeds
    assert flux.vae.config.latent_channels == 16 and flux.vae_scale_factor == 8
    assert (flux.vae.config.shift_factor, flux.vae.config.scaling_factor) == (0.1159, 0.3611)  # FLUX.1's VAE
    assert type(flux.tokenizer_2).__name__.startswith("T5Tokenizer")


def test_tokenizers_are_word_level_for_erasekit_prompts():
    tok = tiny_pipeline("sd15-inpaint").tokenizer
    ids = tok("Remove the instance of object").input_ids
    assert tok.convert_ids_to_tokens(ids)[1:-1] == [
        "remove</w>",
        "the</w>",
        "instance</w>",
        "of</w>",
        "object</w>",
    ]
    t5 = tiny_pipeline("flux-fill").tokenizer_2
    assert "<unk>" not in t5.convert_ids_to_tokens(t5("Remove the instance of object").input_ids)


def test_building_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = build_tiny_pipeline("sd15", seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_tiny_pipeline("sd15", seed=7)
    c = build_tiny_pipeline("sd15", seed=8)
    wa, wb, wc = (p.unet.conv_in.weight for p in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_tiny_pipeline_is_cached_and_unknown_names_fail():
    assert tiny_pipeline("sd15") is tiny_pipeline("sd15")
    with pytest.raises(ValueError, match="no tiny pipeline"):
        build_tiny_pipeline("sd3")


def test_tiny_checkpoints_write_once(tmp_path):
    ckpts = TinyCheckpoints(tmp_path)
    first = ckpts("sd15")
    stamp = (first / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert ckpts("sd15") == first
    assert (first / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp

"""Diffusion baselines: equal to calling diffusers' pipelines directly, offline-first loading, CLI and
auto."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import erasekit
from erasekit.backbones import presets as P
from erasekit.cli import main
from erasekit.hd import paste_back
from erasekit.methods.baselines import REMOVAL_NEGATIVE_PROMPT, REMOVAL_PROMPT
from erasekit.types import InvalidInputError, MissingWeightsError, RemovalRequest

PIPELINES = {
    "sd15-inpaint": "StableDiffusionInpaintPipeline",
    "sd2-inpaint": "StableDiffusionInpaintPipeline",
    "sdxl-inpaint": "StableDiffusionXLInpaintPipeline",
    "flux-fill": "FluxFillPipeline",
}
# (guidance, strength) each remover uses by default
DEFAULTS = {
    "sd15-inpaint": (7.5, 1.0),
    "sd2-inpaint": (7.5, 1.0),
    "sdxl-inpaint": (8.0, 0.99),
    "flux-fill": (30.0, 1.0),
}


def _scene(h=64, w=64):
    """A smooth synthetic photo with an 'object' in it, and the object's mask."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.stack([xx / w * 200 + 20, yy / h * 180 + 30, (xx + yy) / (h + w) * 150 + 50], -1)
    image[h // 4 : h // 2, w // 3 : 2 * w // 3] = (200, 30, 40)
    mask = np.zeros((h, w), np.float32)
    mask[h // 4 - 2 : h // 2 + 2, w // 3 - 2 : 2 * w // 3 + 2] = 1
    return image.astype(np.uint8), mask


def _direct(name, path, image, mask, *, steps, seed):
    """The reference: the diffusers pipeline called by hand, exactly as its documentation shows."""
    from PIL import Image

    pipe = getattr(diffusers, PIPELINES[name]).from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    guidance, strength = DEFAULTS[name]
    kwargs = {
        "prompt": REMOVAL_PROMPT,
        "image": Image.fromarray(image),
        "mask_image": Image.fromarray((mask * 255).astype(np.uint8)),
        "height": image.shape[0],
        "width": image.shape[1],
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "strength": strength,
        "generator": torch.Generator().manual_seed(seed),
    }
    if name != "flux-fill":
        kwargs["negative_prompt"] = REMOVAL_NEGATIVE_PROMPT
    return np.asarray(pipe(**kwargs).images[0])


@pytest.mark.parametrize("name", list(PIPELINES))
def test_baseline_equals_diffusers_pipeline_exactly(name, tiny):
    path = tiny(name)
    image, mask = _scene()
    remover = erasekit.load_remover(name, model=str(path), device="cpu", progress_bar=False)
    steps_seen = []
    result = remover(
        RemovalRequest(
            image,
            mask,
            seed=3,
            hd_strategy="original",
            options={"steps": 2, "progress": lambda i, n: steps_seen.append((i, n))},
        )
    )
    direct = _direct(name, path, image, mask, steps=2, seed=3)
    assert np.array_equal(result.image, paste_back(image, direct, mask))
    outside = mask == 0
    assert np.array_equal(result.image[outside], image[outside])  # paste-back: untouched outside the mask
    assert not np.array_equal(result.image[~outside], image[~outside])  # the masked object was repainted
    total = steps_seen[-1][1]
    assert [s for s, _ in steps_seen] == list(range(1, total + 1)) and total >= 1
    assert result.method == name and result.metadata["remover"]["backbone"] == name


@pytest.fixture(scope="module")
def sd15(tiny):
    """One tiny SD 1.5 inpainting remover shared by the light tests of this module."""
    path = tiny("sd15-inpaint")
    return erasekit.load_remover("sd15-inpaint", model=str(path), progress_bar=False)


def test_remover_attribute_progress_and_prompt_override(tiny):
    path = tiny("sd15-inpaint")
    image, mask = _scene()
    remover = erasekit.load_remover("sd15-inpaint", model=str(path), progress_bar=False)
    seen = []
    remover.progress = lambda i, n: seen.append(i)
    a = remover(RemovalRequest(image, mask, seed=0, prompt="clean wall", options={"steps": 2}))
    b = remover(RemovalRequest(image, mask, seed=0, options={"steps": 2}))
    half = len(seen) // 2  # PNDM (SD 1.5's scheduler) runs one extra warm-up step
    assert half >= 2 and seen[:half] == seen[half:] == list(range(1, half + 1))
    assert not np.array_equal(a.image, b.image)  # the prompt reached the pipeline


def test_odd_sizes_are_padded_to_the_multiple_and_cropped_back(tiny):
    image, mask = _scene(50, 70)
    remover = erasekit.load_remover("flux-fill", model=str(tiny("flux-fill")), progress_bar=False)
    assert remover.constraints.size_multiple == 16
    result = remover(RemovalRequest(image, mask, seed=0, options={"steps": 1}))
    assert result.image.shape == image.shape
    assert np.array_equal(result.image[mask == 0], image[mask == 0])


def test_empty_mask_returns_input_without_sampling(sd15):
    image, _ = _scene()
    result = sd15(
        RemovalRequest(
            image,
            np.zeros(image.shape[:2], np.float32),
            options={"progress": lambda i, n: pytest.fail("sampled on an empty mask")},
        )
    )
    assert result.unchanged and np.array_equal(result.image, image)


@pytest.mark.parametrize(
    "options, match",
    [({"steps": 0}, "steps must be"), ({"strength": 1.5}, "strength must be"), ({"guidance": -1}, "guidance"),
     ({"steps": "many"}, "steps must be an integer in \\[1, 1000\\], got 'many'"),
     ({"sampler": "ddim"}, "does not take"), ({"progress": 3}, "callable"),
     ({"steps": 1, "strength": 0.5}, "no denoising step")],
)
def test_bad_options_are_invalid_input(sd15, options, match):
    image, mask = _scene()
    with pytest.raises(InvalidInputError, match=match):
        sd15(RemovalRequest(image, mask, options=options))


def test_flux_fill_has_no_negative_prompt(tiny):
    image, mask = _scene()
    remover = erasekit.load_remover("flux-fill", model=str(tiny("flux-fill")), progress_bar=False)
    with pytest.raises(InvalidInputError, match="negative_prompt"):
        remover(RemovalRequest(image, mask, options={"negative_prompt": "x"}))


# ------------------------------------------------------------------------------------------------------------
# weights: missing, resolved, auto
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PIPELINES))
def test_missing_weights_error_and_no_network(offline_hub, name):
    info = {i.name: i for i in erasekit.available_methods()}[name]
    assert not info.available and f"erasekit download {name}" in info.reason
    with pytest.raises(MissingWeightsError, match=f"erasekit download {name}"):
        erasekit.load_remover(name)
    # the factory itself (e.g. reached with model=<preset>) says the same
    with pytest.raises(MissingWeightsError) as err:
        erasekit.load_remover(name, model=name)
    assert P.PRESETS[name].hub_id in str(err.value)


def test_cli_missing_weights_exit_code_3(offline_hub, tmp_path, capsys):
    from PIL import Image

    image, mask = _scene()
    Image.fromarray(image).save(tmp_path / "in.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "m.png")
    code = main(
        ["remove", str(tmp_path / "in.png"), "--mask", str(tmp_path / "m.png"), "--method", "sdxl-inpaint",
         "-o", str(tmp_path / "out.png")]
    )
    assert code == 3 and not (tmp_path / "out.png").exists()
    err = capsys.readouterr().err
    assert "erasekit download sdxl-inpaint" in err and "Traceback" not in err


def test_weights_in_models_dir_make_methods_available_and_auto_prefers_strongest(
    offline_hub, tiny, monkeypatch
):
    monkeypatch.setattr(erasekit, "_cache", {})  # keep the remover loaded here out of other tests' way
    models = offline_hub / "models"
    models.mkdir()
    (models / "sd15-inpaint").symlink_to(tiny("sd15-inpaint"), target_is_directory=True)
    assert erasekit.resolve_auto() == "sd15-inpaint"
    (models / "sdxl-inpaint").symlink_to(tiny("sdxl-inpaint"), target_is_directory=True)
    assert erasekit.resolve_auto() == "sdxl-inpaint"
    image, mask = _scene()
    result = erasekit.remove(image, mask, method="auto", seed=0, steps=2, progress_bar=False)
    assert result.method == "sdxl-inpaint" and np.array_equal(result.image[mask == 0], image[mask == 0])


def test_cli_remove_with_tiny_checkpoint(tiny, tmp_path, capsys):
    from PIL import Image

    image, mask = _scene()
    Image.fromarray(image).save(tmp_path / "in.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "m.png")
    out = tmp_path / "out.png"
    code = main(
        ["remove", str(tmp_path / "in.png"), "--mask", str(tmp_path / "m.png"), "--method", "sdxl-inpaint",
         "--model", str(tiny("sdxl-inpaint")), "--steps", "2", "--seed", "0", "--option", "strength=0.5",
         "-o", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    written = np.asarray(Image.open(out).convert("RGB"))
    assert written.shape == image.shape and np.array_equal(written[mask == 0], image[mask == 0])
    # a flag the method does not take is reported, not dropped
    code = main(
        ["remove", str(tmp_path / "in.png"), "--mask", str(tmp_path / "m.png"), "--method", "telea",
         "--steps", "2", "-o", str(tmp_path / "o2.png")]
    )
    assert code == 2 and "steps" in capsys.readouterr().err


def test_cli_models_json_reports_location_size_and_users(offline_hub, tiny, capsys):
    models = offline_hub / "models"
    models.mkdir()
    (models / "flux-fill").symlink_to(tiny("flux-fill"), target_is_directory=True)
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(P.PRESETS)
    flux = rows["flux-fill"]
    assert flux["present"] and flux["source"] == "models_dir" and flux["size_bytes"] > 100_000
    assert "flux-fill" in flux["methods"] and not rows["sdxl-inpaint"]["present"]
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "sdxl-inpaint: fetch with `erasekit download sdxl-inpaint`" in lines
    assert f"flux-fill: {offline_hub / 'models' / 'flux-fill'}" in lines


def test_cli_download_uses_snapshot_download_with_allow_patterns(offline_hub, tiny, monkeypatch, capsys):
    import huggingface_hub

    calls = []

    def fake(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tiny("sd2-inpaint"))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    assert main(["download", "sd2-inpaint"]) == 0
    repo_id, kwargs = calls[0]
    assert repo_id == "stabilityai/stable-diffusion-2-inpainting"
    assert kwargs["local_dir"] == str(offline_hub / "models" / "sd2-inpaint")  # $ERASEKIT_MODELS_DIR/NAME
    assert "model_index.json" in kwargs["allow_patterns"] and "unet/*.safetensors" in kwargs["allow_patterns"]
    assert "*.ckpt" in kwargs["ignore_patterns"]
    assert main(["download", "sd2-inpaint", "--to", str(offline_hub / "elsewhere")]) == 0
    assert calls[1][1]["local_dir"] == str(offline_hub / "elsewhere")
    assert main(["download", "not-a-model"]) == 2


def test_cli_download_gated_repo_is_a_clear_error(offline_hub, monkeypatch, capsys):
    import httpx
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def gated(repo_id, **kwargs):
        url = f"https://huggingface.co/{repo_id}"
        raise GatedRepoError("403 gated", response=httpx.Response(403, request=httpx.Request("GET", url)))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    assert main(["download", "flux-fill"]) == 3
    err = capsys.readouterr().err
    assert "gated" in err and "hf auth login" in err

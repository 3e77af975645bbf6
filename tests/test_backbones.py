"""Backbones: scheduler maths and latent codecs agree exactly with diffusers; offline-first checkpoint
resolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from erasekit.backbones import device as D
from erasekit.backbones import latents as L
from erasekit.backbones import presets as P
from erasekit.backbones import schedule as S
from erasekit.testing import tiny_pipeline
from erasekit.types import InvalidInputError, MissingWeightsError


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------------------
# schedule: exact agreement with diffusers' schedulers
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ["DDPMScheduler", "DDIMScheduler"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_add_noise_equals_scheduler(cls, dtype):
    sched = getattr(diffusers, cls)(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    x0 = torch.randn(3, 4, 8, 8, generator=_gen(1)).to(dtype)
    noise = torch.randn(3, 4, 8, 8, generator=_gen(2)).to(dtype)
    t = torch.tensor([0, 400, 999])
    assert torch.equal(S.add_noise(sched, x0, noise, t), sched.add_noise(x0, noise, t))
    # a scalar timestep (OSOR's t = 400) equals the batch form with that timestep repeated
    assert torch.equal(
        S.add_noise(sched, x0, noise, 400), sched.add_noise(x0, noise, torch.tensor([400] * 3))
    )


@pytest.mark.parametrize("cls", ["DDPMScheduler", "DDIMScheduler"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("t", [1, 400, 999])
def test_predict_x0_equals_pred_original_sample(cls, prediction_type, t):
    sched = getattr(diffusers, cls)(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type=prediction_type,
        clip_sample=False,
    )
    sched.set_timesteps(1000)
    z = torch.randn(2, 4, 8, 8, generator=_gen(3))
    out = torch.randn(2, 4, 8, 8, generator=_gen(4))
    ref = sched.step(out, t, z).pred_original_sample
    assert torch.equal(S.predict_x0(out, z, t, prediction_type, schedule=sched), ref)
    assert S.parametrization_of(sched) == prediction_type


def test_predict_x0_clip_matches_clip_sample():
    sched = diffusers.DDPMScheduler(clip_sample=True, clip_sample_range=1.0)
    z = 3 * torch.randn(1, 4, 8, 8, generator=_gen(5))
    eps = torch.randn(1, 4, 8, 8, generator=_gen(6))
    ref = sched.step(eps, 400, z, generator=_gen(0)).pred_original_sample
    assert torch.equal(S.predict_x0(eps, z, 400, "epsilon", schedule=sched, clip_sample_range=1.0), ref)


def test_predict_x0_inverts_add_noise():
    sched = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    x0 = torch.randn(2, 4, 8, 8, generator=_gen(7), dtype=torch.float64)
    eps = torch.randn(2, 4, 8, 8, generator=_gen(8), dtype=torch.float64)
    acp = sched.alphas_cumprod.double()
    zt = S.add_noise(acp, x0, eps, 400)
    torch.testing.assert_close(S.predict_x0(eps, zt, 400, "epsilon", schedule=acp), x0)
    v = acp[400] ** 0.5 * eps - (1 - acp[400]) ** 0.5 * x0  # the v target (Salimans & Ho 2022)
    torch.testing.assert_close(S.predict_x0(v, zt, 400, "v_prediction", schedule=acp), x0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_flow_noise_equals_scale_noise_and_x0_equals_euler_step(dtype):
    s = 0.4  # OSOR's FLUX noise level
    sched = diffusers.FlowMatchEulerDiscreteScheduler()
    sched.set_timesteps(sigmas=[s])
    t = sched.timesteps[0]
    x0 = torch.randn(2, 16, 4, 4, generator=_gen(9)).to(dtype)
    noise = torch.randn(2, 16, 4, 4, generator=_gen(10)).to(dtype)
    # A per-sample tensor of levels is rounded to the sample's dtype, as diffusers' scale_noise rounds its
    # sigmas; a Python float keeps its exact value and agrees with it in float32 (test_osor_numerics checks
    # the bf16 case against float64).
    per_sample = torch.full((2,), s)
    assert torch.equal(S.flow_noise(x0, noise, per_sample), sched.scale_noise(x0, t[None], noise))
    if dtype == torch.float32:
        assert torch.equal(S.flow_noise(x0, noise, s), sched.scale_noise(x0, t[None], noise))
    v = torch.randn(2, 16, 4, 4, generator=_gen(11)).to(dtype)
    z = S.flow_noise(x0, noise, per_sample)
    ref = sched.step(v, t, z).prev_sample  # one Euler step from s to 0 is the clean estimate
    assert torch.equal(S.predict_x0(v, z, s, "flow"), ref)
    assert S.parametrization_of(sched) == "flow"


def test_predict_x0_rejects_unknown_parametrization_and_missing_schedule():
    z = torch.zeros(1, 4, 2, 2)
    with pytest.raises(ValueError, match="unknown parametrization"):
        S.predict_x0(z, z, 1, "sample")
    with pytest.raises(ValueError, match="needs the scheduler"):
        S.predict_x0(z, z, 1, "epsilon")


# ------------------------------------------------------------------------------------------------------------
# latents: exact agreement with diffusers' pipelines
# ------------------------------------------------------------------------------------------------------------
def test_pack_unpack_equal_flux_pipeline():
    from diffusers import FluxPipeline

    z = torch.randn(2, 16, 6, 10, generator=_gen(12))
    packed = L.pack_latents(z)
    assert torch.equal(packed, FluxPipeline._pack_latents(z, 2, 16, 6, 10))
    assert torch.equal(L.unpack_latents(packed, (6, 10)), FluxPipeline._unpack_latents(packed, 48, 80, 8))
    assert torch.equal(L.unpack_latents(packed, (6, 10)), z)
    with pytest.raises(ValueError):
        L.pack_latents(torch.zeros(1, 16, 5, 4))


def test_fill_mask_tokens_equal_flux_fill_prepare_mask_latents():
    pipe = tiny_pipeline("flux-fill")
    mask = (torch.rand(1, 1, 32, 48, generator=_gen(13)) > 0.5).float()
    image = torch.rand(1, 3, 32, 48, generator=_gen(14)) * 2 - 1
    ref_mask, ref_latents = pipe.prepare_mask_latents(
        mask, image, 1, 16, 1, 32, 48, torch.float32, "cpu", _gen(0)
    )
    assert torch.equal(L.fill_mask_tokens(mask), ref_mask)
    ours = L.pack_latents(L.encode(pipe.vae, image, generator=_gen(0), sample=True))
    assert torch.equal(ours, ref_latents)


@pytest.mark.parametrize("name", ["sd15-inpaint", "sdxl-inpaint"])
def test_encode_equals_inpaint_pipeline_vae_encoding(name):
    pipe = tiny_pipeline(name)
    image = torch.rand(1, 3, 32, 32, generator=_gen(15)) * 2 - 1
    ref = pipe._encode_vae_image(image, generator=_gen(0))
    assert torch.equal(L.encode(pipe.vae, image, generator=_gen(0), sample=True), ref)


@pytest.mark.parametrize("name", ["sd15-inpaint", "flux-fill"])
def test_decode_equals_pipeline_decode(name):
    pipe = tiny_pipeline(name)
    vae = pipe.vae
    z = torch.randn(1, vae.config.latent_channels, 4, 4, generator=_gen(16))
    if name == "flux-fill":
        ref = vae.decode(z / vae.config.scaling_factor + vae.config.shift_factor, return_dict=False)[0]
    else:
        ref = vae.decode(z / vae.config.scaling_factor, return_dict=False)[0]
    assert torch.equal(L.decode(vae, z), ref)
    assert L.vae_scale_factor(vae) == pipe.vae_scale_factor == 8


def test_encode_decode_roundtrip_uses_mean_by_default():
    vae = tiny_pipeline("sd15-inpaint").vae
    image = torch.rand(1, 3, 16, 16, generator=_gen(17)) * 2 - 1
    assert torch.equal(L.encode(vae, image), L.encode(vae, image))  # posterior mean: deterministic
    assert L.decode(vae, L.encode(vae, image)).shape == image.shape


def test_encode_honours_force_upcast_for_fp16_vae():
    vae = tiny_pipeline("sdxl-inpaint").vae
    assert vae.config.force_upcast
    half = type(vae).from_config(vae.config)
    half.load_state_dict(vae.state_dict())
    half = half.to(torch.float16)
    image = (torch.rand(1, 3, 16, 16, generator=_gen(18)) * 2 - 1).half()
    z = L.encode(half, image)
    assert z.dtype == torch.float16 and half.dtype == torch.float16  # computed in fp32, VAE restored
    ref = vae.config.scaling_factor * vae.encode(image.float()).latent_dist.mode()
    torch.testing.assert_close(z.float(), ref, atol=2e-3, rtol=2e-3)


def test_mask_to_latent_nearest_equals_sd_inpaint_and_max_is_conservative():
    pipe = tiny_pipeline("sd15-inpaint")
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 9:11, 17:18] = 1  # a thin stroke that nearest sampling misses
    ref, _ = pipe.prepare_mask_latents(
        mask, torch.zeros(1, 4, 4, 4), 1, 32, 32, torch.float32, "cpu", None, False
    )
    assert torch.equal(L.mask_to_latent(mask, (4, 4), "nearest"), ref)
    pooled = L.mask_to_latent(mask, (4, 4), "max")
    expected = torch.zeros(1, 1, 4, 4)
    expected[..., 1, 2] = 1
    assert torch.equal(pooled, expected)
    assert L.mask_to_latent(mask, (4, 4), "nearest").sum() == 0
    from erasekit.masks import max_pool_to_grid

    assert np.array_equal(pooled[0, 0].numpy(), max_pool_to_grid(mask[0, 0].numpy(), 8))
    assert L.mask_to_latent(torch.ones(1, 1, 30, 30), (4, 4), "max").shape == (1, 1, 4, 4)


# ------------------------------------------------------------------------------------------------------------
# presets: resolution order, missing weights, no network
# ------------------------------------------------------------------------------------------------------------
def _fake_hf_cache(cache: Path, hub_id: str, source: Path) -> Path:
    """The hub cache layout: models--org--repo/{refs/main, snapshots/<commit>/...} (files as symlinks to
    blobs)."""
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    blobs = repo / "blobs"
    blobs.mkdir()
    for f in source.rglob("*"):
        if f.is_file():
            blob = blobs / f"{abs(hash(str(f))):x}"
            blob.write_bytes(f.read_bytes())
            dest = snap / f.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(blob)
    return snap


@pytest.mark.parametrize("name", list(P.PRESETS))
def test_missing_weights_message_names_preset_hub_id_and_command(offline_hub, name):
    with pytest.raises(MissingWeightsError) as err:
        P.resolve_model_path(name)
    msg = str(err.value)
    assert name in msg and P.PRESETS[name].hub_id in msg and f"erasekit download {name}" in msg
    assert "\n" not in msg
    assert P.locate_preset(name) is None


def test_resolution_order_explicit_then_models_dir_then_hf_cache(offline_hub, tiny, monkeypatch):
    src = tiny("sd15-inpaint")
    hub_id = P.PRESETS["sd15-inpaint"].hub_id
    snap = _fake_hf_cache(offline_hub / "hf-cache", hub_id, src)
    found = P.resolve("sd15-inpaint")
    assert found.source == "hf_cache" and found.path == snap
    assert P.locate_preset("sd15-inpaint") == str(snap)

    models = offline_hub / "models"
    by_hub_layout = models.joinpath(*hub_id.split("/"))
    by_hub_layout.parent.mkdir(parents=True)
    by_hub_layout.symlink_to(src, target_is_directory=True)
    monkeypatch.setenv(P.MODELS_DIR_ENV, str(models))
    assert P.resolve("sd15-inpaint") == P.Resolved(by_hub_layout, "models_dir")
    by_name = models / "sd15-inpaint"
    by_name.symlink_to(src, target_is_directory=True)
    assert P.resolve("sd15-inpaint") == P.Resolved(by_name, "models_dir")

    explicit = tiny("sd2-inpaint")
    assert P.resolve("sd15-inpaint", path=explicit) == P.Resolved(explicit, "path")
    assert P.resolve_model_path(explicit) == explicit  # a folder on its own
    assert P.resolve_model_path(hub_id) == by_name  # a Hub id of a preset resolves like the preset


def test_incomplete_cache_snapshot_is_not_accepted(offline_hub, tiny):
    src = tiny("sd15-inpaint")
    snap = _fake_hf_cache(offline_hub / "hf-cache", P.PRESETS["sd15-inpaint"].hub_id, src)
    for f in (snap / "unet").iterdir():
        if f.name.endswith(".safetensors"):
            f.unlink()
    with pytest.raises(MissingWeightsError):
        P.resolve_model_path("sd15-inpaint")


def test_bad_explicit_paths_are_invalid_input(offline_hub, tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        P.resolve_model_path("sd15-inpaint", path=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="model_index.json"):
        P.resolve_model_path(tmp_path / "empty")
    with pytest.raises(InvalidInputError, match="neither a backbone preset"):
        P.resolve_model_path("no-such-preset")


def test_unknown_hub_id_missing_offline(offline_hub):
    with pytest.raises(MissingWeightsError, match="someone/some-model"):
        P.resolve_model_path("someone/some-model")


def test_allow_download_calls_snapshot_download_with_patterns(offline_hub, tiny, monkeypatch):
    import huggingface_hub

    calls = []

    def fake(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        if kwargs.get("local_files_only"):
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        return str(tiny("sdxl-inpaint"))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    found = P.resolve("sdxl-inpaint", allow_download=True)
    assert found.source == "download" and found.path == tiny("sdxl-inpaint")
    repo_id, kwargs = calls[-1]
    assert repo_id == P.PRESETS["sdxl-inpaint"].hub_id and not kwargs.get("local_files_only")
    assert "unet/*.safetensors" in kwargs["allow_patterns"] and "*.fp16.*" in kwargs["ignore_patterns"]


def test_load_pipeline_reads_tiny_checkpoint_like_a_real_one(tiny, offline_hub):
    path = tiny("sdxl-inpaint")
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLInpaintPipeline"
    for comp in P.PRESETS["sdxl-inpaint"].components:
        assert (path / comp).is_dir()
    pipe = P.load_pipeline("sdxl-inpaint", path=path, device="cpu")
    assert type(pipe).__name__ == "StableDiffusionXLInpaintPipeline" and pipe.unet.dtype == torch.float32
    ref = tiny_pipeline("sdxl-inpaint")
    for (k, v), (k2, v2) in zip(pipe.unet.state_dict().items(), ref.unet.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    # a bare folder loads with the class its model_index.json names
    assert type(P.load_pipeline(path)).__name__ == "StableDiffusionXLInpaintPipeline"


def test_load_pipeline_sd_preset_skips_safety_checker(tiny, offline_hub):
    pipe = P.load_pipeline("sd15-inpaint", path=tiny("sd15-inpaint"), dtype="fp32")
    assert pipe.safety_checker is None


# ------------------------------------------------------------------------------------------------------------
# device
# ------------------------------------------------------------------------------------------------------------
def test_device_and_dtype_resolution(monkeypatch):
    cpu = torch.device("cpu")
    assert D.resolve_device("cpu") == cpu
    assert D.resolve_device(None).type in ("cpu", "cuda", "mps")
    assert D.resolve_dtype(None, cpu) == torch.float32
    cuda = torch.device("cuda")
    # A bf16 GPU (Ampere+): bf16 for SDXL and FLUX, as OSOR's authors run them; fp16 for SD 1.5/2.
    monkeypatch.setattr(D, "bf16_supported", lambda device: True)
    assert D.resolve_dtype("auto", cuda, family="flux") == torch.bfloat16
    assert D.resolve_dtype("auto", cuda, family="sdxl") == torch.bfloat16
    assert D.resolve_dtype("auto", cuda, family="sd") == torch.float16
    # An older GPU: SDXL falls back to fp16, FLUX (which overflows fp16) to fp32.
    monkeypatch.setattr(D, "bf16_supported", lambda device: False)
    assert D.resolve_dtype("auto", cuda, family="sdxl") == torch.float16
    assert D.resolve_dtype("auto", cuda, family="flux") == torch.float32
    monkeypatch.undo()
    assert D.resolve_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(InvalidInputError, match="unknown dtype"):
        D.resolve_dtype("int8", cpu)
    with pytest.raises(InvalidInputError, match="unknown device"):
        D.resolve_device("tpu-9000")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="no CUDA"):
            D.resolve_device("cuda")
    with pytest.raises(InvalidInputError, match="offload"):
        D.PlacementOptions(offload="sometimes")


def test_place_pipeline_applies_attention_slicing(tiny):
    pipe = P.load_pipeline(
        "sd15-inpaint",
        path=tiny("sd15-inpaint"),
        placement=D.PlacementOptions(attention_slicing=True, vae_tiling=True),
    )
    assert pipe.vae.use_tiling
    sliced = [m for m in pipe.unet.modules() if type(m).__name__ == "Attention"]
    assert sliced and all(type(m.processor).__name__ == "SlicedAttnProcessor" for m in sliced)
    with pytest.raises(InvalidInputError, match="needs a GPU"):
        D.place_pipeline(pipe, torch.device("cpu"), D.PlacementOptions(offload="model"))

"""CLIPAway (arXiv:2406.09368): AlphaCLIP against a reference forward written from the authors' description,
the MLP in the released key layout, Eq. 2, the preprocessing frame, the missing-weights message, and the
``clipaway`` remover against a direct diffusers call."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from torch import nn
from torch.nn import functional as F

from erasekit.methods.clipaway.alpha_clip import convert_alpha_clip_state_dict, load_alpha_clip
from erasekit.methods.clipaway.embedding import ClipAwayEmbedder, eq2_projection, foreground_alpha
from erasekit.methods.clipaway.mlp import ClipAwayMLP, load_mlp
from erasekit.testing.clipaway import TINY_ALPHA_CLIP, alpha_clip_state_dict
from erasekit.types import InvalidInputError, MissingWeightsError


# ------------------------------------------------------------------------------------------------------------
# AlphaCLIP
# ------------------------------------------------------------------------------------------------------------
def _reference_alpha_clip(state: dict, x: torch.Tensor, alpha: torch.Tensor, heads: int) -> torch.Tensor:
    """AlphaCLIP's visual forward from its description, on the raw authors'-layout tensors: conv1(x) +
    conv1_alpha(alpha), class token, positional embedding, ln_pre, blocks of fused-qkv attention and a
    QuickGELU MLP (pre-norm), ln_post on the class token, ``@ proj``."""
    width = state["conv1.weight"].shape[0]
    patch = state["conv1.weight"].shape[-1]
    tokens = F.conv2d(x, state["conv1.weight"], stride=patch) + F.conv2d(alpha, state["conv1_alpha.weight"],
                                                                         stride=patch)
    tokens = tokens.flatten(2).transpose(1, 2)
    cls = state["class_embedding"].expand(x.shape[0], 1, width)
    h = torch.cat([cls, tokens], dim=1) + state["positional_embedding"]

    def ln(t, name):
        return F.layer_norm(t, (width,), state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-5)

    h = ln(h, "ln_pre")
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("transformer.resblocks."))
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        y = ln(h, p + "ln_1")
        q, k, v = F.linear(y, state[p + "attn.in_proj.weight"], state[p + "attn.in_proj.bias"]).chunk(3, -1)
        n, length, _ = q.shape
        q, k, v = (t.reshape(n, length, heads, width // heads).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(width // heads), dim=-1)
        attended = (weights @ v).transpose(1, 2).reshape(n, length, width)
        h = h + F.linear(attended, state[p + "attn.out_proj.weight"], state[p + "attn.out_proj.bias"])
        y = F.linear(ln(h, p + "ln_2"), state[p + "mlp.c_fc.weight"], state[p + "mlp.c_fc.bias"])
        y = y * torch.sigmoid(1.702 * y)  # QuickGELU
        h = h + F.linear(y, state[p + "mlp.c_proj.weight"], state[p + "mlp.c_proj.bias"])
    return ln(h[:, 0], "ln_post") @ state["proj"]


def _inputs(n: int = 2, size: int = TINY_ALPHA_CLIP.image_size):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(n, 3, size, size, generator=generator)
    return x, torch.randn(n, 1, size, size, generator=generator)


def test_alpha_clip_from_the_authors_layout_equals_the_reference_forward(tmp_path):
    state = alpha_clip_state_dict(TINY_ALPHA_CLIP, seed=1)
    torch.save(state, tmp_path / "alpha.pth")
    model = load_alpha_clip(tmp_path / "alpha.pth")
    assert model.config.num_attention_heads == 2  # 128 wide, 64-wide heads as in ViT-L/14
    x, alpha = _inputs()
    with torch.no_grad():
        out = model(x, alpha)
    expected = _reference_alpha_clip(state, x, alpha, heads=2)
    assert out.shape == (2, TINY_ALPHA_CLIP.output_dim)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # The alpha matters: another alpha, another embedding.
    with torch.no_grad():
        assert not torch.allclose(model(x, -alpha), out, atol=1e-3)


def test_alpha_clip_with_a_zero_alpha_conv_is_transformers_clip_exactly(tmp_path):
    from transformers import CLIPVisionModelWithProjection

    state = alpha_clip_state_dict(TINY_ALPHA_CLIP, seed=2, zero_alpha=True)
    torch.save(state, tmp_path / "alpha.pth")
    model = load_alpha_clip(tmp_path / "alpha.pth")
    clip = CLIPVisionModelWithProjection(model.config).eval()
    converted = convert_alpha_clip_state_dict(state)
    clip.load_state_dict({k.removeprefix("clip."): v for k, v in converted.items() if k.startswith("clip.")},
                         strict=True)
    x, alpha = _inputs()
    with torch.no_grad():
        assert torch.equal(model(x, alpha), clip(pixel_values=x).image_embeds)


def test_alpha_clip_loading_is_strict(tmp_path):
    state = alpha_clip_state_dict(TINY_ALPHA_CLIP)
    with pytest.raises(InvalidInputError, match="unexpected key.*visual.extra"):
        convert_alpha_clip_state_dict({**state, "visual.extra": torch.zeros(1)})
    del state["transformer.resblocks.1.mlp.c_proj.bias"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(RuntimeError, match="Missing key"):
        load_alpha_clip(tmp_path / "broken.pth")


# ------------------------------------------------------------------------------------------------------------
# MLP
# ------------------------------------------------------------------------------------------------------------
def _authors_mlp(alpha_clip_dim: int, ip_dim: int, hidden_layers: int = 6) -> nn.Sequential:
    """Table 2 as the authors build it: a flat list of modules, the widening at index hidden_layers // 2."""
    layers: list[nn.Module] = []
    for i in range(hidden_layers):
        if i < hidden_layers // 2:
            layers += [nn.Linear(alpha_clip_dim, alpha_clip_dim), nn.LayerNorm(alpha_clip_dim)]
        elif i == hidden_layers // 2:
            layers += [nn.Linear(alpha_clip_dim, ip_dim), nn.LayerNorm(ip_dim)]
        else:
            layers += [nn.Linear(ip_dim, ip_dim), nn.LayerNorm(ip_dim)]
        layers.append(nn.GELU())
    layers.append(nn.Linear(ip_dim, ip_dim))
    return nn.Sequential(*layers)


def test_mlp_has_the_released_key_layout():
    released = {k: tuple(v.shape) for k, v in _authors_mlp(768, 1024).state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in ClipAwayMLP().state_dict().items()}
    assert ours == released
    assert sorted({int(k.split(".")[0]) for k in ours}) == [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18]


def test_mlp_loads_a_released_style_file_unchanged_and_strictly(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    authors = _authors_mlp(16, 24).eval()
    save_file(authors.state_dict(), str(tmp_path / "model.safetensors"))
    mlp = load_mlp(tmp_path / "model.safetensors")
    assert (mlp.in_dim, mlp.out_dim, mlp.hidden_layers) == (16, 24, 6)
    x = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.equal(mlp(x), authors(x))
    save_file({**authors.state_dict(), "19.weight": torch.zeros(24, 24)}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(RuntimeError):
        load_mlp(tmp_path / "extra.safetensors")


# ------------------------------------------------------------------------------------------------------------
# Embeddings
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    from erasekit.testing import write_tiny_weights

    return write_tiny_weights("clipaway", tmp_path_factory.mktemp("clipaway"))


@pytest.fixture(scope="module")
def embedder(tiny_files):
    from erasekit.methods.clipaway.weights import resolve_files

    files = resolve_files(tiny_files["weights"])
    return ClipAwayEmbedder(load_alpha_clip(files.alpha_clip), load_mlp(files.mlp))


def _scene(h: int = 64, w: int = 96):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.float32)
    mask[20:40, 30:60] = 1
    return image, mask


def test_eq2_leaves_a_vector_orthogonal_to_fg():
    generator = torch.Generator().manual_seed(0)
    bg, fg = torch.randn(4, 32, generator=generator), torch.randn(4, 32, generator=generator)
    e = eq2_projection(bg, fg)
    torch.testing.assert_close((e * fg).sum(-1), torch.zeros(4), atol=1e-5, rtol=0)
    # What is removed is along fg only: bg − e is parallel to fg.
    removed = bg - e
    cosine = F.cosine_similarity(removed, fg, dim=-1).abs()
    torch.testing.assert_close(cosine, torch.ones(4), atol=1e-5, rtol=0)


def test_embedder_projects_bg_against_fg_and_the_unconditional_is_mlp_of_zero(embedder):
    image, mask = _scene()
    out = embedder.embed([image, image[:, ::-1].copy()], [mask, mask[:, ::-1].copy()])
    cosine = F.cosine_similarity(out.projected, out.foreground, dim=-1)
    assert cosine.abs().max() < 1e-5
    assert not torch.allclose(out.foreground, out.background)
    with torch.no_grad():
        assert torch.equal(out.unconditional, embedder.mlp(torch.zeros(1, embedder.mlp.in_dim)))
    assert out.unconditional.abs().sum() > 0  # MLP(0) is not zeros
    (embeds,) = out.ip_adapter_image_embeds()
    assert embeds.shape == (4, 1, embedder.mlp.out_dim)
    assert torch.equal(embeds[:2, 0], out.unconditional.expand(2, -1))  # negatives first
    assert torch.equal(embeds[2:, 0], out.projected)


def test_alpha_is_normalised_like_alpha_clip_and_dilated_like_the_authors(embedder):
    values = embedder.alpha_values([np.ones((50, 70)), np.zeros((50, 70))])
    assert torch.allclose(values[0], torch.full_like(values[0], 0.5 / 0.26))
    assert torch.allclose(values[1], torch.full_like(values[1], -0.5 / 0.26))
    import cv2

    mask = np.zeros((40, 40), np.float32)
    mask[18:22, 18:22] = 1
    grown = foreground_alpha(mask)
    # 5 iterations of a 5×5 square grow a square by 2 pixels per side each: 4 + 2·2·5 = 24 wide.
    assert grown.sum() == 24 * 24
    assert np.array_equal(grown, cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8),
                                            iterations=5).astype(np.float32))


@pytest.mark.parametrize("shape", [(40, 120), (150, 50)])
def test_non_square_inputs_keep_image_and_alpha_aligned(embedder, shape):
    # A red block on grey with the mask exactly on it: after preprocessing, red pixels and alpha coincide.
    h, w = shape
    image = np.full((h, w, 3), 128, np.uint8)
    mask = np.zeros((h, w), np.float32)
    mask[h // 16: h // 3, w // 16: w // 3] = 1  # near a corner, where a centre crop cuts
    image[mask > 0] = (255, 0, 0)
    mean = torch.tensor(embedder.image_processor.image_mean)[:, None, None]
    std = torch.tensor(embedder.image_processor.image_std)[:, None, None]

    def red(pixels):
        rgb = pixels * std + mean
        return (rgb[0] - rgb[1]) > 0.5

    def centroid(region):
        ys, xs = torch.nonzero(region, as_tuple=True)
        return torch.stack([ys.float().mean(), xs.float().mean()])

    alpha = embedder.alpha_values([mask])[0, 0] > 0
    ours = red(embedder.pixel_values([image])[0])
    assert (centroid(ours) - centroid(alpha)).abs().max() < 0.5  # within half a pixel of 28
    assert (ours & alpha).sum() / (ours | alpha).sum() > 0.9
    # CLIP's own resize-shortest-side + centre crop applied to the image alone would move it off its alpha.
    from PIL import Image
    from transformers import CLIPImageProcessorPil

    size = embedder.size
    cropping = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    cropped = red(cropping(images=[Image.fromarray(image)], return_tensors="pt").pixel_values[0])
    assert (cropped & alpha).sum() / (cropped | alpha).sum() < 0.5


# ------------------------------------------------------------------------------------------------------------
# Weights
# ------------------------------------------------------------------------------------------------------------
def test_missing_weights_say_which_file_where_it_goes_and_where_it_is_published(tmp_path, monkeypatch):
    from erasekit.methods.clipaway.weights import resolve_files

    monkeypatch.setenv("ERASEKIT_MODELS_DIR", str(tmp_path / "models"))
    with pytest.raises(MissingWeightsError) as info:
        resolve_files()
    message = str(info.value)
    assert "clip_l14_grit+mim_fultune_6xe.pth" in message
    target = tmp_path / "models" / "clipaway" / "AlphaCLIP" / "clip_l14_grit+mim_fultune_6xe.pth"
    assert str(target) in message
    assert "Google Drive" in message
    (tmp_path / "models" / "clipaway" / "AlphaCLIP").mkdir(parents=True)
    (tmp_path / "models" / "clipaway" / "AlphaCLIP" / "clip_l14_grit+mim_fultune_6xe.pth").write_bytes(b"x")
    with pytest.raises(MissingWeightsError, match=r"CLIPAway/model\.safetensors.*Google Drive"):
        resolve_files()


def test_load_remover_without_clipaway_files_fails_before_the_backbone_loads(tiny, tmp_path, monkeypatch):
    import erasekit

    monkeypatch.setenv("ERASEKIT_MODELS_DIR", str(tmp_path / "models"))
    with pytest.raises(MissingWeightsError, match="clip_l14_grit"):
        erasekit.load_remover("clipaway", model=str(tmp_path / "no-such-backbone"))


# ------------------------------------------------------------------------------------------------------------
# The remover
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def remover(tiny_files):
    import erasekit

    return erasekit.load_remover("clipaway", device="cpu", progress_bar=False, **tiny_files)


def test_clipaway_equals_a_direct_diffusers_call_with_the_same_embeds(remover, tiny_files):
    from diffusers import StableDiffusionInpaintPipeline
    from PIL import Image

    from erasekit.methods.clipaway import AUTHORS_NEGATIVE_PROMPT
    from erasekit.types import RemovalRequest

    image, mask = _scene()
    result = remover(RemovalRequest(image, mask, seed=7, options={"steps": 3}))

    pipe = StableDiffusionInpaintPipeline.from_pretrained(tiny_files["model"], safety_checker=None,
                                                          requires_safety_checker=False)
    ip_file = remover.files.ip_adapter
    pipe.load_ip_adapter(str(ip_file.parent), subfolder="", weight_name=ip_file.name,
                         image_encoder_folder=None)
    pipe.set_progress_bar_config(disable=True)
    dilated = foreground_alpha(mask)  # the authors dilate the mask for the pipeline and the alpha alike
    embeds = remover.embedder.ip_adapter_image_embeds([image], [dilated])
    direct = pipe(prompt="", negative_prompt=AUTHORS_NEGATIVE_PROMPT, image=Image.fromarray(image),
                  mask_image=Image.fromarray((dilated * 255).astype(np.uint8)), height=64, width=96,
                  num_inference_steps=3, guidance_scale=7.5, strength=1.0,
                  generator=[torch.Generator("cpu").manual_seed(7)], ip_adapter_image_embeds=embeds).images[0]
    direct = np.asarray(direct.convert("RGB"))
    inside = dilated > 0
    np.testing.assert_array_equal(result.image[inside], direct[inside])
    np.testing.assert_array_equal(result.image[~inside], image[~inside])

    # The UNet takes the IP tokens: without them (scale 0) the fill differs.
    without = remover(RemovalRequest(image, mask, seed=7, options={"steps": 3, "ip_scale": 0.0}))
    assert not np.array_equal(without.image[inside], result.image[inside])


def test_clipaway_defaults_are_the_authors(remover):
    from erasekit.types import RemovalRequest

    d = remover.call_options.defaults()
    assert (d["steps"], d["guidance"], d["strength"]) == (50, 7.5, 1.0)
    assert (d["ip_scale"], d["mask_dilation"]) == (1.0, 5)
    assert d["negative_prompt"] == "monochrome, lowres, bad anatomy, worst quality, low quality"
    image, mask = _scene()
    request = remover.resolve_request(RemovalRequest(image, mask))
    kwargs = remover.pipeline_kwargs(image, foreground_alpha(mask), request)
    assert kwargs["prompt"] == ""
    expected_noise = torch.randn(4, generator=torch.Generator("cpu").manual_seed(42))
    assert torch.equal(torch.randn(4, generator=kwargs["generator"][0]), expected_noise)  # seed 42, CPU


def test_cli_remove_with_clipaway_end_to_end(tiny_files, tmp_path):
    from PIL import Image

    from erasekit.cli import main

    image, mask = _scene()
    Image.fromarray(image).save(tmp_path / "photo.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    assert main(["remove", str(tmp_path / "photo.png"), "-m", str(tmp_path / "mask.png"), "-o", str(out),
                 "--method", "clipaway", "--model", tiny_files["model"], "--weights", tiny_files["weights"],
                 "--steps", "2", "--device", "cpu", "-O", "mask_dilation=2"]) == 0
    result = np.asarray(Image.open(out).convert("RGB"))
    outside = foreground_alpha(mask, 2) == 0
    np.testing.assert_array_equal(result[outside], image[outside])
    assert not np.array_equal(result[~outside], image[~outside])


def test_remove_many_batches_the_sampling_and_equals_one_by_one(remover, monkeypatch):
    """Two 64×96 requests share one pipeline call (each with its own seed and IP-Adapter rows), a 64×64 one
    runs alone, an empty mask runs none; every result equals the remover's one-by-one result within 1 level
    (a batch of 4 UNet rows sums in another order than a batch of 2 on the CPU; mixed IP tokens would be
    tens of levels off)."""
    from erasekit.types import RemovalRequest

    rng = np.random.default_rng(3)
    image_a, mask_a = _scene()
    image_b = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    mask_b = np.zeros((64, 96), np.float32)
    mask_b[5:25, 60:90] = 1
    image_c = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    mask_c = np.zeros((64, 64), np.float32)
    mask_c[30:50, 10:30] = 1
    options = {"steps": 2}
    requests = [RemovalRequest(image_a, mask_a, seed=1, options=options),
                RemovalRequest(image_c, mask_c, seed=2, options=options),
                RemovalRequest(image_b, mask_b, seed=3, options=options),
                RemovalRequest(image_b, np.zeros_like(mask_b), seed=4, options=options)]
    one_by_one = [remover(r) for r in requests]

    batch_sizes: list[int] = []
    run = remover.run_pipeline

    def counting(**kwargs):
        batch_sizes.append(len(kwargs["image"]) if isinstance(kwargs["image"], list) else 1)
        return run(**kwargs)

    monkeypatch.setattr(remover, "run_pipeline", counting)
    batched = remover.remove_many(requests)
    assert sorted(batch_sizes) == [1, 2]
    for single, many in zip(one_by_one, batched, strict=True):
        _assert_within_one_level(many.image, single.image)
        assert many.unchanged == single.unchanged
    # The images' IP tokens did not mix: the same pair with the seeds swapped still matches one by one.
    swapped = remover.remove_many([RemovalRequest(image_b, mask_b, seed=1, options=options),
                                   RemovalRequest(image_a, mask_a, seed=3, options=options)])
    _assert_within_one_level(swapped[0].image,
                             remover(RemovalRequest(image_b, mask_b, seed=1, options=options)).image)
    with pytest.raises(InvalidInputError, match="batch_size"):
        remover.remove_many(requests, batch_size=0)


def _assert_within_one_level(a: np.ndarray, b: np.ndarray) -> None:
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1, diff.max()
    assert diff.mean() < 0.05, diff.mean()


def test_explicit_alpha_clip_and_mlp_paths_satisfy_the_availability_check(tiny_files, offline_hub):
    """With SD1.5-inpainting and IP-Adapter in $ERASEKIT_MODELS_DIR but no CLIPAway folder, the method is
    unavailable, and ``alpha_clip=`` / ``mlp=`` paths make it load (no ``weights`` or ``model`` given)."""
    import shutil
    from pathlib import Path

    import erasekit
    from erasekit.backbones.presets import PRESETS, models_dir
    from erasekit.methods.clipaway.weights import LAYOUT

    root = models_dir()
    assert root is not None
    shutil.copytree(tiny_files["model"], root.joinpath(*PRESETS["sd15-inpaint"].hub_id.split("/")))
    weights = Path(tiny_files["weights"])
    ip_target = root / "h94" / "IP-Adapter" / "models" / "ip-adapter_sd15.bin"
    ip_target.parent.mkdir(parents=True)
    shutil.copy(weights / LAYOUT["ip_adapter"], ip_target)

    info = {m.name: m for m in erasekit.available_methods()}["clipaway"]
    assert not info.available
    assert {w.name for w in info.weights if not w.present} == {"clipaway-alpha-clip", "clipaway-mlp"}
    with pytest.raises(MissingWeightsError, match="clipaway-mlp") as missing:
        erasekit.load_remover("clipaway", device="cpu", alpha_clip=str(weights / LAYOUT["alpha_clip"]))
    assert "clipaway-alpha-clip" not in str(missing.value)
    remover = erasekit.load_remover("clipaway", device="cpu", progress_bar=False,
                                    alpha_clip=str(weights / LAYOUT["alpha_clip"]),
                                    mlp=str(weights / LAYOUT["mlp"]))
    assert remover.files.ip_adapter == ip_target
    with pytest.raises(InvalidInputError, match="does not exist"):
        erasekit.load_remover("clipaway", device="cpu", alpha_clip=str(weights / "nothing.pth"),
                              mlp=str(weights / LAYOUT["mlp"]))

"""Click-to-select with SAM v1 checkpoints (``SamModel``: SAM ViT-B/L/H, SlimSAM) next to SAM 2: a tiny
random SamModel in the Hub's folder layout (``write_tiny_weights("sam", DIR)``) through the path a real
checkpoint takes. Preprocessing and point coordinates equal transformers' ``SamProcessor``; the mask equals
``SamModel`` + ``SamProcessor.post_process_masks`` run here; the image encoder runs once per photo and each
click only the prompt encoder and mask decoder; the server's click model is a setting (``erasekit serve
--click-model``); the Grounding DINO text path takes a SAM v1 segmenter too; bad input is a clear error."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import skimage.data
from PIL import Image

from erasekit.masking.clicks import ClickSegmenter
from erasekit.testing import write_tiny_weights
from erasekit.types import InvalidInputError, MissingWeightsError

PORTRAIT = np.ascontiguousarray(skimage.data.astronaut()[:150:2, 40:150:2])  # 75×55, real photo
LANDSCAPE = np.ascontiguousarray(skimage.data.rocket()[::5, ::5])  # 86×128, real photo
CLICKS = [  # (points in photo pixels, labels): one click (three candidates), then a refined selection
    ([[20.0, 30.5]], [1]),
    ([[20.0, 30.5], [50.0, 5.0], [33.25, 60.75]], [1, 0, 1]),
]


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory) -> str:
    return write_tiny_weights("sam", tmp_path_factory.mktemp("sam"))["segmenter"]


@pytest.fixture(scope="module")
def clicks(sam_dir) -> ClickSegmenter:
    return ClickSegmenter(sam_dir, device="cpu")


@pytest.fixture(scope="module")
def reference(sam_dir):
    """transformers' own SAM, loaded on its own (not through erasekit)."""
    from transformers import SamModel, SamProcessor

    return SamModel.from_pretrained(sam_dir).eval(), SamProcessor.from_pretrained(sam_dir)


def _processor_inputs(processor, image, points, labels):
    return processor(
        images=Image.fromarray(image), input_points=[[points]], input_labels=[[labels]], return_tensors="pt"
    )


def test_tiny_sam_is_written_in_the_hub_layout_and_picked_by_its_config(sam_dir, clicks):
    from pathlib import Path

    files = {p.name for p in Path(sam_dir).iterdir()}
    assert files == {"config.json", "model.safetensors", "preprocessor_config.json"}
    assert json.loads((Path(sam_dir) / "config.json").read_text())["model_type"] == "sam"
    assert type(clicks.family).__name__ == "SamPoints" and clicks.name == "sam-clicks"
    assert clicks.describe()["model_type"] == "sam"


@pytest.mark.parametrize("image", [PORTRAIT, LANDSCAPE], ids=["portrait", "landscape"])
def test_pixels_sizes_and_point_coordinates_equal_sam_processor(clicks, reference, image):
    """What reaches the image encoder and the prompt encoder equals SamProcessor's output for the same photo
    and clicks, exactly (values, shapes and dtypes)."""
    import torch

    _, processor = reference
    seen: dict[str, torch.Tensor] = {}

    def grab_pixels(module, args, kwargs):
        seen["pixel_values"] = args[0] if args else kwargs["pixel_values"]

    def grab_prompts(module, args, kwargs):
        seen["input_points"], seen["input_labels"] = kwargs["input_points"], kwargs["input_labels"]

    model = clicks.sam.model
    handles = [
        model.vision_encoder.register_forward_pre_hook(grab_pixels, with_kwargs=True),
        model.prompt_encoder.register_forward_pre_hook(grab_prompts, with_kwargs=True),
    ]
    try:
        embedding = clicks.embed(image)
        points, labels = CLICKS[1]
        clicks.decode(embedding, points, labels)
    finally:
        for handle in handles:
            handle.remove()
    expected = _processor_inputs(processor, image, points, labels)
    assert torch.equal(seen["pixel_values"], expected["pixel_values"])
    assert embedding.shape == tuple(expected["original_sizes"][0].tolist()) == image.shape[:2]
    assert embedding.input_size == tuple(expected["reshaped_input_sizes"][0].tolist())
    assert max(embedding.input_size) == 64 and embedding.input_size != (64, 64)  # resized, then padded
    for key in ("input_points", "input_labels"):
        assert seen[key].dtype == expected[key].dtype and torch.equal(seen[key], expected[key]), key


@pytest.mark.parametrize("image", [PORTRAIT, LANDSCAPE], ids=["portrait", "landscape"])
def test_click_masks_equal_sam_model_and_post_process_masks(clicks, reference, image):
    """The reference runs the whole SamModel on the processor's inputs (image encoder included) and
    post-processes with SamProcessor.post_process_masks; one click keeps the best predicted IoU of three."""
    import torch

    model, processor = reference
    embedding = clicks.embed(image)
    for points, labels in CLICKS:
        inputs = _processor_inputs(processor, image, points, labels)
        with torch.no_grad():
            out = model(
                pixel_values=inputs["pixel_values"],
                input_points=inputs["input_points"],
                input_labels=inputs["input_labels"],
                multimask_output=len(points) == 1,
            )
        masks = processor.post_process_masks(
            out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )[0]
        assert masks.shape[1] == (3 if len(points) == 1 else 1)
        expected = masks[0, int(out.iou_scores[0, 0].argmax())].numpy()
        ours = clicks.decode(embedding, points, labels)
        assert ours.dtype == bool and ours.shape == image.shape[:2]
        assert 0 < expected.sum() < expected.size  # a mask with both sides, so equality says something
        np.testing.assert_array_equal(ours, expected)


class _Calls:
    """Counts forward calls of a model's submodules."""

    def __init__(self, model, names):
        self.counts = dict.fromkeys(names, 0)
        self._handles = [getattr(model, n).register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name):
        def count(module, args, output):
            self.counts[name] += 1

        return count

    def close(self):
        for handle in self._handles:
            handle.remove()


def test_embed_once_then_each_click_runs_only_the_prompt_encoder_and_mask_decoder(clicks):
    calls = _Calls(clicks.sam.model, ["vision_encoder", "prompt_encoder", "mask_decoder"])
    try:
        embedding = clicks.embed(LANDSCAPE)
        assert calls.counts == {"vision_encoder": 1, "prompt_encoder": 0, "mask_decoder": 0}
        first = clicks.decode(embedding, *CLICKS[0])
        clicks.decode(embedding, *CLICKS[1])
        again = clicks.decode(embedding, *CLICKS[0])
        assert calls.counts == {"vision_encoder": 1, "prompt_encoder": 3, "mask_decoder": 3}
        np.testing.assert_array_equal(first, again)
    finally:
        calls.close()


def test_bad_clicks_and_checkpoints_are_clear_errors(clicks, tmp_path):
    embedding = clicks.embed(PORTRAIT)  # 55 wide, 75 high
    with pytest.raises(InvalidInputError, match="inside the 55×75 photo"):
        clicks.decode(embedding, [[55.0, 10.0]], [1])
    with pytest.raises(InvalidInputError, match="inside"):
        clicks.decode(embedding, [[10.0, -0.5]], [1])
    with pytest.raises(InvalidInputError, match="one label .* per click"):
        clicks.decode(embedding, [[10.0, 10.0], [20.0, 20.0]], [1])
    with pytest.raises(InvalidInputError, match="one label .* per click"):
        clicks.decode(embedding, [], [])
    with pytest.raises(InvalidInputError, match=r"\(x, y\) pair"):
        clicks.decode(embedding, [[10.0, 10.0, 1.0]], [1])
    with pytest.raises(InvalidInputError, match="labels are 1"):
        clicks.decode(embedding, [[10.0, 10.0]], [2])
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InvalidInputError, match="'bert' checkpoint, not SAM2 or SAM"):
        ClickSegmenter(str(tmp_path / "bert"), device="cpu")
    with pytest.raises(MissingWeightsError, match="does not exist.*hf download"):
        ClickSegmenter(str(tmp_path / "no-such-folder"), device="cpu")


# ---- the server ------------------------------------------------------------------------------------------
def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def models_dir(sam_dir, tmp_path, monkeypatch):
    """$ERASEKIT_MODELS_DIR holding the tiny SAM under the Hub name sam-vit-base; an empty HF cache."""
    import shutil

    shutil.copytree(sam_dir, tmp_path / "models" / "sam-vit-base")
    monkeypatch.setenv("ERASEKIT_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    return tmp_path / "models"


def _client(**settings):
    from fastapi.testclient import TestClient

    from erasekit.server import ServerSettings, create_app

    app = create_app(ServerSettings(default_method="telea", preload=False, **settings))
    return TestClient(app, base_url="http://127.0.0.1:8080")  # a loopback Host (the server's Host guard)


def test_server_selects_with_a_sam_v1_click_model(models_dir, clicks, monkeypatch):
    """`click_model` by Hub id, found in $ERASEKIT_MODELS_DIR: the answers equal ClickSegmenter's, the photo
    is embedded once however often it is sent, and each click runs the mask decoder only."""
    from transformers.models.sam import modeling_sam

    embedding = clicks.embed(LANDSCAPE)
    expected = [clicks.decode(embedding, points, labels) for points, labels in CLICKS]
    counts = {"SamVisionEncoder": 0, "SamMaskDecoder": 0}
    for name in counts:
        cls = getattr(modeling_sam, name)

        def counting(self, *args, _forward=cls.forward, _name=name, **kwargs):
            counts[_name] += 1
            return _forward(self, *args, **kwargs)

        monkeypatch.setattr(cls, "forward", counting)
    client = _client(click_model="facebook/sam-vit-base")
    body = _png(LANDSCAPE)
    first = client.post("/api/v1/select/embed", content=body)
    assert first.status_code == 200, first.text
    again = client.post("/api/v1/select/embed", content=body).json()
    assert again == first.json() and again["width"] == 128 and again["height"] == 86
    for (points, labels), mask in zip(CLICKS, expected):
        request = {"id": again["id"], "points": points, "labels": labels}
        answer = client.post("/api/v1/select/click", json=request)
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(answer.content)) as im:
            np.testing.assert_array_equal(np.asarray(im) == 255, mask)
    assert counts == {"SamVisionEncoder": 1, "SamMaskDecoder": len(CLICKS)}

    outside = client.post(
        "/api/v1/select/click", json={"id": again["id"], "points": [[128, 1]], "labels": [1]}
    )
    assert outside.status_code == 422 and "inside the 128×86 photo" in outside.json()["error"]["message"]
    mismatch = client.post(
        "/api/v1/select/click", json={"id": again["id"], "points": [[1, 1], [2, 2]], "labels": [1]}
    )
    assert mismatch.status_code == 422 and "one label" in mismatch.json()["error"]["message"]


def test_server_click_model_missing_is_503_naming_the_fetch_command(models_dir, tmp_path):
    client = _client(click_model="facebook/sam-vit-huge")  # not in the models folder, not in the HF cache
    answer = client.post("/api/v1/select/embed", content=_png(PORTRAIT))
    assert answer.status_code == 503
    assert "hf download facebook/sam-vit-huge" in answer.json()["error"]["message"]
    folder = _client(click_model=str(tmp_path / "no-sam-here"))
    answer = folder.post("/api/v1/select/embed", content=_png(PORTRAIT))
    assert answer.status_code == 503 and "does not exist" in answer.json()["error"]["message"]


def test_serve_click_model_option_reaches_the_settings(monkeypatch):
    import uvicorn

    from erasekit.cli import main
    from erasekit.data.savp_models import DEFAULT_SEGMENTER

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(app))
    monkeypatch.delenv("ERASEKIT_TOKEN", raising=False)
    assert main(["serve", "--method", "telea", "--click-model", "Zigeng/SlimSAM-uniform-77"]) == 0
    assert main(["serve", "--method", "telea"]) == 0
    chosen = [app.state.settings.click_model for app in started]
    assert chosen == ["Zigeng/SlimSAM-uniform-77", DEFAULT_SEGMENTER]


# ---- text -> mask: Grounding DINO boxes prompting a SAM v1 segmenter -------------------------------------
def test_grounding_dino_text_path_takes_a_sam_v1_segmenter(sam_dir, reference, tmp_path):
    """The segmenter's masks equal SamModel + post_process_masks for the kept instances' boxes."""
    import torch

    from erasekit.masking import TextMaskOptions, text_to_mask

    options = write_tiny_weights("grounding-dino-sam2", tmp_path)
    found = text_to_mask(
        LANDSCAPE,
        "the rocket",
        TextMaskOptions(
            source="grounding-dino-sam2",
            detector=options["detector"],
            segmenter=sam_dir,
            score_threshold=0.0,
            mask_grow=0,
            device="cpu",
        ),
    )
    assert found.source["segmenter"] == sam_dir and found.kept
    model, processor = reference
    boxes = [[i.box.left, i.box.top, i.box.right, i.box.bottom] for i in found.kept]
    inputs = processor(images=Image.fromarray(LANDSCAPE), input_boxes=[boxes], return_tensors="pt")
    with torch.no_grad():
        out = model(
            pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"], multimask_output=False
        )
    masks = processor.post_process_masks(
        out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )
    np.testing.assert_array_equal(found.segmented > 0, masks[0][:, 0].numpy().any(axis=0))

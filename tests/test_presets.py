"""Paper presets (`erasekit bench --preset`), the rows they need (refiners, prompts, withheld masks) and the
dataset adapters they point at (COCO, OpenImages V5, inpainting)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from erasekit.cli import main
from erasekit.data.synthetic import generate_synthetic_dataset
from erasekit.eval.datasets import EvalRecord, open_dataset
from erasekit.eval.entries import BenchEntry
from erasekit.eval.presets import PRESETS, Preset, PresetColumn, PresetRow, get_preset, preset_table
from erasekit.eval.runner import BenchConfig, run_benchmark
from erasekit.testing import write_tiny_weights
from erasekit.types import InvalidInputError


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return generate_synthetic_dataset(tmp_path_factory.mktemp("scenes") / "ds", 2, size=48, seed=0)


# ---- presets -----------------------------------------------------------------------------------------------
def test_each_preset_lists_the_papers_rows_and_metrics_in_order():
    assert list(PRESETS) == ["osor-table1", "eradiff-table1", "clipaway-table1", "pixperfect-table2",
                             "magicremover-table1"]
    osor = get_preset("osor-table1")
    assert [r.label for r in osor.rows] == ["OmniPaint", "ObjectClear", "AttentiveEraser", "FLUX-Fill",
                                            "OmniEraser", "SDXL-INP", "CLIPAway", "OSOR(SDXL)", "OSOR(FLUX)"]
    assert osor.mask == "both"
    assert [c.header for c in osor.columns][:3] == ["Latency (s)", "FID↓ obj", "CMMD↓ obj"]
    assert get_preset("eradiff-table1").methods == ["sd2-inpaint", "lama", "eradiff"]
    assert get_preset("clipaway-table1").methods == ["lama", "sd15-inpaint", "clipaway"]
    assert [c.column for c in get_preset("pixperfect-table2").columns] == ["fid", "lpips", "l1", "psnr"]
    magic = get_preset("magicremover-table1").entries()
    assert magic["magicremover-nomask"].withhold_mask and not magic["magicremover-mask"].withhold_mask
    with pytest.raises(InvalidInputError, match="unknown preset"):
        get_preset("osor-table9")


def test_refiner_options_reach_the_chain_row():
    entries = get_preset("pixperfect-table2").entries({"pixperfect": {"weights": "/w"}})
    assert entries["clipaway+pixperfect"].refine == "pixperfect:weights=/w"


def test_entry_builds_per_sample_prompt_target_and_withholds_the_mask():
    image = np.zeros((8, 8, 3), np.uint8)
    mask = np.ones((8, 8), np.float32)
    record = EvalRecord("a", image, image, mask, mask, "cup")
    entry = BenchEntry("magicremover", prompt="a photo of a {label}", label_options=("target",),
                       withhold_mask=True)
    request = entry.request(record, mask, 3, {"steps": 2})
    assert request.prompt == "a photo of a cup" and request.options == {"steps": 2, "target": "cup"}
    assert request.mask is None and request.seed == 3
    plain = BenchEntry("telea").request(record, mask, 0, {})
    assert plain.mask is mask and plain.prompt is None and plain.refine is None


def test_a_preset_table_runs_end_to_end_in_the_papers_order(scenes, tmp_path):
    lama = write_tiny_weights("lama", tmp_path / "w")
    preset = Preset(
        "test", "A table", "paper", "scenes", "paired", "object", ("psnr", "l1", "fid"),
        (PresetRow("Missing"), PresetRow("LaMa", "lama"), PresetRow("Telea", "telea"),
         PresetRow("+ Poisson", "telea+poisson", BenchEntry("telea", refine="poisson"))),
        (PresetColumn("L1↓", "l1"), PresetColumn("PSNR↑", "psnr"), PresetColumn("FID↓", "fid")),
    )
    cfg = BenchConfig(dataset=str(scenes), out=str(tmp_path / "out"), methods=preset.methods, mask="object",
                      metrics=list(preset.metrics), load_options={"lama": lama}, progress=False,
                      trace_python_memory=False, weights={"inception-fid": str(tmp_path / "missing.pth")},
                      entries=preset.entries())
    result = run_benchmark(cfg)
    lines = preset_table(preset, result.summary).splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| Method")]
    assert [r.split(" | ")[0][2:] for r in rows] == ["Missing", "LaMa", "Telea", "+ Poisson"]
    assert rows[0] == "| Missing | — | — | — |"
    values = result.summary["runs"]
    assert rows[2] == f"| Telea | {values['telea/object']['values']['l1']:.4f} | " \
                      f"{values['telea/object']['values']['psnr']:.3f} | n/a |"
    assert any(line.startswith("- fid: unavailable") for line in lines)
    # The chain row ran poisson after telea: its outputs differ from telea's, and only inside the mask.
    data = open_dataset(scenes)
    for sample_id in data.ids:
        plain = np.asarray(Image.open(tmp_path / "out" / "outputs" / "telea" / "object" / f"{sample_id}.png"))
        chained = np.asarray(
            Image.open(tmp_path / "out" / "outputs" / "telea+poisson" / "object" / f"{sample_id}.png"))
        outside = data[sample_id].object_mask == 0
        assert np.array_equal(chained[outside], plain[outside])
    assert values["telea+poisson/object"]["values"]["l1"] != values["telea/object"]["values"]["l1"]


def test_cli_preset_prints_the_table_and_marks_missing_weights(scenes, tmp_path, offline_hub):
    lama = write_tiny_weights("lama", tmp_path / "w")["weights"]
    out = tmp_path / "results"
    code = main(["bench", "--preset", "eradiff-table1", "--dataset", str(scenes), "--out", str(out), "-q",
                 "--load", f"lama:weights={lama}", "--no-report", "--no-tracemalloc"])
    assert code == 0
    text = (out / "eradiff-table1.md").read_text()
    assert "| Method | FID↓ | LPIPS↓ | Local FID↓ |" in text
    assert "| SD2-Inpaint* | — | — | — |" in text and "| LaMa | n/a | n/a | n/a |" in text
    assert "- sd2-inpaint: method unavailable" in text and "- eradiff: method unavailable" in text
    assert "- fid: unavailable" in text
    assert (out / "outputs" / "lama" / "object").is_dir()


# ---- dataset adapters --------------------------------------------------------------------------------------
def test_coco_adapter_one_sample_per_polygon_instance(tmp_path):
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations").mkdir()
    photo = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "val2017" / "000000000007.jpg", quality=100)
    annotations = {
        "images": [{"id": 7, "file_name": "000000000007.jpg", "height": 20, "width": 30}],
        "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 11, "image_id": 7, "category_id": 1, "iscrowd": 0,
             "segmentation": [[4, 5, 10, 5, 10, 9, 4, 9]]},
            {"id": 12, "image_id": 7, "category_id": 2, "iscrowd": 1,
             "segmentation": {"counts": [600], "size": [20, 30]}},
        ],
    }
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(annotations))
    data = open_dataset(tmp_path)  # auto-detected
    assert data.name == "coco" and data.ids == ["000000000007_11"]  # the crowd RLE is skipped
    record = data["000000000007_11"]
    expected = np.zeros((20, 30), np.float32)
    expected[5:10, 4:11] = 1  # the polygon's integer corners, inclusive
    assert np.array_equal(record.object_mask, expected) and record.label == "cup"
    assert np.array_equal(record.background, record.image)  # the reference is the source photo
    dilated = open_dataset(tmp_path, "coco-dilate5")["000000000007_11"].object_mask
    grown = np.zeros((20, 30), np.float32)
    grown[3:12, 2:13] = 1  # a 5×5 kernel grows the box by 2 pixels on every side
    assert np.array_equal(dilated, grown)


def test_openimages_adapter_reads_the_segmentation_csv(tmp_path):
    (tmp_path / "validation").mkdir()
    (tmp_path / "validation-masks").mkdir()
    Image.fromarray(np.full((16, 24, 3), 90, np.uint8)).save(tmp_path / "validation" / "abc.jpg")
    small = np.zeros((8, 12), np.uint8)
    small[2:6, 3:9] = 255
    Image.fromarray(small).save(tmp_path / "validation-masks" / "abc_m01_x.png")
    with open(tmp_path / "validation-annotations-object-segmentation.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["MaskPath", "ImageID", "LabelName", "BoxID"])
        writer.writerow(["abc_m01_x.png", "abc", "/m/01", "x"])
    with open(tmp_path / "class-descriptions-boxable.csv", "w", newline="") as fh:
        csv.writer(fh).writerow(["/m/01", "Tree"])
    data = open_dataset(tmp_path)
    record = data["abc_m01_x"]
    assert data.name == "openimages" and record.label == "Tree" and record.object_mask.shape == (16, 24)
    assert record.object_mask[4:12, 6:18].all() and record.object_mask.sum() == 8 * 12


def test_inpainting_layout_uses_the_image_as_ground_truth(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((8, 8, 3), 50, np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "masks" / "a.png")
    record = open_dataset(tmp_path, "inpainting")["a"]
    assert np.array_equal(record.background, record.image) and record.object_mask.all()

"""Chains (erasekit.chain): one parser; the same chain through the API, CLI, server, batch and bench, recorded
in result metadata, the batch report and bench rows."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import skimage.data
from PIL import Image

import erasekit
from erasekit.chain import Chain, parse_chain
from erasekit.cli import main


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chain")
    image = np.ascontiguousarray(skimage.data.chelsea()[::3, ::3])  # 100×151, a real photo
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[30:60, 50:90] = 255
    Image.fromarray(image).save(folder / "cat.png")
    Image.fromarray(mask).save(folder / "cat_mask.png")
    return folder


def test_parser():
    assert parse_chain("telea+poisson") == Chain("telea", ("poisson",))
    assert parse_chain(" osor-sdxl + pixperfect:weights=/w:pool=4 ").refiners == (
        "pixperfect:weights=/w:pool=4",
    )
    assert parse_chain("telea").name == "telea" and parse_chain("a+b+c").name == "a+b+c"
    assert Chain("telea", ("poisson",)).refine("color-match") == ["poisson", "color-match"]
    assert Chain("telea").refine() is None
    for bad in ("", "telea+", "+poisson", "telea++poisson"):
        with pytest.raises(erasekit.InvalidInputError):
            parse_chain(bad)


def test_api_and_cli_spellings_are_one_chain(photo, tmp_path):
    image, mask = photo / "cat.png", photo / "cat_mask.png"
    joined = erasekit.remove(image, mask, method="telea+poisson")
    split = erasekit.remove(image, mask, method="telea", refine="poisson")
    by_hand = erasekit.remove(image, mask, method="telea", refine=[erasekit.refiners.load_refiner("poisson")])
    assert np.array_equal(joined.image, split.image) and np.array_equal(joined.image, by_hand.image)
    assert joined.metadata["chain"] == split.metadata["chain"] == "telea+poisson"
    assert joined.metadata["mask_source"] == {"source": "drawn"}
    assert not np.array_equal(joined.image, erasekit.remove(image, mask, method="telea").image)
    assert (
        main(
            [
                "remove",
                str(image),
                "-m",
                str(mask),
                "--method",
                "telea+poisson",
                "-o",
                str(tmp_path / "o.png"),
            ]
        )
        == 0
    )
    with Image.open(tmp_path / "o.png") as im:
        assert np.array_equal(np.asarray(im), joined.image)
    assert (
        main(["remove", str(image), "-m", str(mask), "--method", "telea+nope", "-o", str(tmp_path / "x.png")])
        == 2
    )


def test_batch_report_has_a_chain_column(photo, tmp_path):
    images, masks = tmp_path / "in", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    (images / "cat.png").write_bytes((photo / "cat.png").read_bytes())
    (masks / "cat.png").write_bytes((photo / "cat_mask.png").read_bytes())
    assert (
        main(
            [
                "batch",
                str(images),
                "-m",
                str(masks),
                "-o",
                str(tmp_path / "out"),
                "--method",
                "telea",
                "--refine",
                "poisson",
                "--no-progress",
            ]
        )
        == 0
    )
    record = json.loads((tmp_path / "out" / "batch_report.jsonl").read_text().splitlines()[0])
    assert record["chain"] == "telea+poisson" and record["method"] == "telea"


def test_bench_gives_one_row_per_chain(tmp_path, capsys):
    from erasekit.data.synthetic import generate_synthetic_dataset

    dataset = generate_synthetic_dataset(tmp_path / "ds", 2, size=64, seed=0)
    out = tmp_path / "bench"
    assert (
        main(
            [
                "bench",
                "--dataset",
                str(dataset),
                "--methods",
                "telea+poisson,telea",
                "--mask",
                "object",
                "--metrics",
                "psnr",
                "-o",
                str(out),
                "--quiet",
                "--no-report",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| telea+poisson |" in printed and "| telea |" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"]["telea+poisson/object"]["chain"] == {"method": "telea", "refiners": ["poisson"]}
    from erasekit.eval.datasets import open_dataset

    record = open_dataset(str(dataset), "auto")[open_dataset(str(dataset), "auto").ids[0]]
    expected = erasekit.remove(record.image, record.mask("object"), method="telea+poisson", seed=0).image
    with Image.open(out / "outputs" / "telea+poisson" / "object" / f"{record.id}.png") as im:
        assert np.array_equal(np.asarray(im), expected)


def test_server_method_field_takes_a_chain(photo):
    from fastapi.testclient import TestClient

    from erasekit.server import create_app

    client = TestClient(create_app(), base_url="http://127.0.0.1:8080")  # a loopback Host (server guard)
    with open(photo / "cat.png", "rb") as image, open(photo / "cat_mask.png", "rb") as mask:
        response = client.post(
            "/api/v1/remove",
            files={"image": image, "mask": mask},
            data={"method": "telea+poisson", "output_format": "png"},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metadata"]["chain"] == "telea+poisson"
    expected = erasekit.remove(photo / "cat.png", photo / "cat_mask.png", method="telea+poisson").image
    with Image.open(io.BytesIO(base64.b64decode(body["image"]))) as im:
        assert np.array_equal(np.asarray(im), expected)

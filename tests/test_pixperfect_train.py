"""``erasekit train pixperfect``: the loss falls on a tiny model, resume continues exactly, the CLI runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage import data

from erasekit import io
from erasekit.cli import main
from erasekit.refiners.pixperfect.train.config import load_config, packaged_config
from erasekit.refiners.pixperfect.train.trainer import PixPerfectTrainer
from erasekit.refiners.pixperfect.weights import load_generator
from erasekit.testing.pixperfect import tiny_config
from erasekit.testing.training import TinyPerceptual
from erasekit.types import InvalidInputError

TINY = {
    "crop": 32,
    "batch_size": 2,
    "warmup_steps": 2,
    "checkpoint_every": 2,
    "discriminator_width": 4,
    "perceptual": "stand-in",
    "network": tiny_config().to_dict(),
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "chelsea", "coffee"):
        io.write_image(folder / f"{name}.png", np.ascontiguousarray(getattr(data, name)()[::8, ::8]))
    return folder


def _config(photos, out, **extra):
    return load_config(packaged_config(), {**TINY, "data_dir": str(photos), "output_dir": str(out), **extra})


def test_packaged_config_has_the_papers_settings():
    cfg = load_config(packaged_config())
    assert cfg.lr == 5e-4 and cfg.warmup_steps > 0 and cfg.tone_degree == 5
    assert (cfg.loss.l1, cfg.loss.perceptual, cfg.loss.adversarial, cfg.loss.r1_gamma) == (64, 5, 1, 1)
    with pytest.raises(InvalidInputError, match="lrr"):
        load_config(packaged_config(), {"lrr": 1})


def test_loss_falls_on_a_tiny_model(photos, tmp_path):
    # Pixel terms only, so the measure is the generator learning to undo the artifacts; measured on a fixed
    # batch the training never draws (step 10**6), without input noise.
    cfg = _config(
        photos,
        tmp_path,
        max_steps=60,
        batch_size=4,
        warmup_steps=1000,
        lr=2e-3,
        loss={"adversarial": 0.0},
        checkpoint_every=1000,
    )
    trainer = PixPerfectTrainer(cfg, perceptual=TinyPerceptual(), cpu=True)
    held_out = trainer.batch(10**6)

    def l1() -> float:
        with torch.no_grad():
            return float(
                (trainer.generator(held_out["x_gen"], held_out["mask"]) - held_out["x_gt"]).abs().mean()
            )

    before = l1()
    trainer.train(progress=False)
    assert l1() < 0.8 * before


def test_resume_continues_exactly(photos, tmp_path):
    straight = PixPerfectTrainer(_config(photos, tmp_path / "a", max_steps=4), cpu=True)
    straight.train(progress=False)
    first = PixPerfectTrainer(_config(photos, tmp_path / "b", max_steps=4), cpu=True)
    assert first.train(stop_after=2, progress=False).step == 2
    resumed = PixPerfectTrainer(_config(photos, tmp_path / "b", max_steps=4), cpu=True)
    result = resumed.train(progress=False)
    assert (
        result.step == 4 and result.resumed_from == 2
    )
    a, b = (
        straight.accelerator.unwrap_model(straight.generator),
        resumed.accelerator.unwrap_model(resumed.generator),
    )
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    for d_a, d_b in ((straight.d_pixel, resumed.d_pixel), (straight.d_disc, resumed.d_disc)):
        assert all(torch.equal(p, q) for p, q in zip(d_a.state_dict().values(), d_b.state_dict().values()))


def test_cli_trains_and_writes_refiner_weights(photos, tmp_path):
    args = ["train", "pixperfect", "--output-dir", str(tmp_path), "--max-steps", "2", "--no-progress",
            "--set", f"data_dir={photos}"] + [f"--set={k}={json.dumps(v)}" for k, v in TINY.items()]
    assert main(args) == 0
    generator = load_generator(tmp_path / "pixperfect")
    assert generator.config == tiny_config()
    assert main(["train", "pixperfect", "--max-steps", "1", "--no-progress"]) == 2  # no data_dir


# ---- real (x_gen, x_gt) pairs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    from erasekit.data.synthetic import generate_synthetic_dataset

    return generate_synthetic_dataset(tmp_path_factory.mktemp("paired") / "ds", 3, size=48, seed=0)


def test_real_pairs_are_the_methods_pasted_back_output_and_resume(paired, tmp_path):
    import erasekit
    from erasekit.eval.datasets import open_dataset
    from erasekit.refiners.pixperfect.train.real_pairs import load_pair, pair_ids, produce_real_pairs

    out = tmp_path / "pairs"
    assert produce_real_pairs(paired, out, "telea", limit=2, progress=False) == 2
    assert produce_real_pairs(paired, out, "telea", progress=False) == 1  # resumes: only the third is new
    assert produce_real_pairs(paired, out, "telea", progress=False) == 0
    assert produce_real_pairs(paired, out, "ns", progress=False) == 3  # other settings: redone
    data = open_dataset(paired)
    assert pair_ids(out) == sorted(data.ids)
    for sample_id in data.ids:
        record, pair = data[sample_id], load_pair(out, sample_id)
        expected = erasekit.remove(record.image, record.object_mask, method="ns", seed=0).image
        assert np.array_equal(pair.x_gen, expected)
        assert np.array_equal(pair.x_gt, record.background)
        assert np.array_equal(pair.mask, (record.object_mask > 0).astype(np.float32))


def test_training_mixes_real_pairs_at_the_configured_fraction(photos, paired, tmp_path):
    cfg = _config(photos, tmp_path / "run", batch_size=8, crop=32,
                  real_pairs={"fraction": 0.5, "dataset": str(paired), "method": "telea"})
    trainer = PixPerfectTrainer(cfg, perceptual=TinyPerceptual(), cpu=True)
    from erasekit.refiners.pixperfect.train.real_pairs import load_pair

    pairs = [load_pair(trainer.real_dir, i) for i in trainer.real_ids]
    real = total = 0
    for step in range(12):
        batch = trainer.batch(step)
        for gen, gt in zip(batch["x_gen"], batch["x_gt"], strict=True):
            total += 1
            # A real item is a crop of a pair's (method output, background); simulated ones come from photos.
            gt_u8 = np.rint(gt.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            real += any(_is_crop_of(gt_u8, p.x_gt) for p in pairs)
        assert torch.equal(batch["x_gen"], trainer.batch(step)["x_gen"])  # still a function of (seed, step)
    assert abs(real / total - 0.5) <= 4 * np.sqrt(0.25 / total)  # binomial bound
    with pytest.raises(InvalidInputError, match="holds no pairs"):
        PixPerfectTrainer(_config(photos, tmp_path / "empty", real_pairs={"fraction": 0.3}),
                          perceptual=TinyPerceptual(), cpu=True)


def _is_crop_of(crop: np.ndarray, image: np.ndarray) -> bool:
    import cv2

    if image.shape[0] < crop.shape[0] or image.shape[1] < crop.shape[1]:
        return False
    return bool(cv2.matchTemplate(image, crop, cv2.TM_SQDIFF).min() == 0)

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

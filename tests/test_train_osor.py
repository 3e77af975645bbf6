"""OSOR trainer on tiny models: what is trained, Phase II from Phase I, CLI end to end, exact resume,
inference load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

from erasekit.data.loader import collate_paired
from erasekit.methods.osor.train.config import OsorTrainConfig, load_config
from erasekit.methods.osor.train.trainer import OsorTrainer, train_osor
from erasekit.testing.training import TinyPerceptual, write_tiny_openclip_convnext
from erasekit.training.checkpoints import latest_checkpoint
from erasekit.types import InvalidInputError

SIZE = 32


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny):
    from erasekit.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("osor-train")
    model = tiny.path("sdxl-inpaint")
    data = generate_synthetic_dataset(root / "data", 4, size=SIZE, seed=0)
    trunk = write_tiny_openclip_convnext(root / "trunk")
    return {"root": root, "model": model, "data": data, "trunk": trunk, "tiny": tiny}


def tiny_settings(env, output_dir: Path, **extra) -> dict:
    settings = {
        "backbone": "sdxl",
        "phase": 1,
        "model": str(env["model"]),
        "output_dir": str(output_dir),
        "data": {
            "path": str(env["data"]),
            "resolution": SIZE,
            "phase2_only": False,
            "crop_scale": (1.0, 1.0),
        },
        "lora": {"rank": 4},
        "discriminator": {"trunk": str(env["trunk"]), "hidden": 8},
        "loss": {"perceptual": 0.0},
        "max_steps": 2,
        "global_batch_size": 2,
        "per_device_batch_size": 1,
        "mixed_precision": "no",
        "device": "cpu",
        "gradient_checkpointing": False,
        "log_every": 1,
        "checkpoint_every": 1,
    }
    for key, value in extra.items():
        settings[key] = {**settings[key], **value} if isinstance(value, dict) else value
    return settings


# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["sdxl", "flux"])
def test_phase2_starts_from_phase1_and_gradients_reach_only_trainables(env, tmp_path, backbone):
    from erasekit.methods.osor.weights import HEADS, load_osor_weights
    from erasekit.testing.osor import write_tiny_osor_weights

    phase1 = write_tiny_osor_weights(backbone, tmp_path / "tiny_phase1.pth", phase=1, rank=4)
    model = env["model"] if backbone == "sdxl" else env["tiny"].path("flux-fill")
    cfg = OsorTrainConfig(
        **tiny_settings(
            env,
            tmp_path / "out",
            backbone=backbone,
            model=str(model),
            phase=2,
            init_weights=str(phase1),
            loss={"perceptual": 5.0},
        )
    )
    trainer = OsorTrainer(cfg, perceptual_loss=TinyPerceptual())
    unet = trainer.denoiser
    head_name = HEADS[backbone].attribute
    head = getattr(unet, head_name)

    # Phase II starts from Phase I: LoRA values and the native head rows are the Phase I weights
    ref = load_osor_weights(phase1, backbone)
    module = dict(unet.named_modules())
    for key, value in ref.lora.items():
        name, part = key.rsplit(".", 2)[0], key.rsplit(".", 2)[1]
        torch.testing.assert_close(getattr(module[name], part)["osor"].weight.detach(), value)
    native = HEADS[backbone].native
    assert head.weight.shape[0] == HEADS[backbone].expanded
    torch.testing.assert_close(head.weight[:native].detach(), ref.head["weight"])
    assert all(p.dtype == torch.float32 for p in trainer.trainable)

    batch = collate_paired([trainer._loader(0).dataset[(0, i)] for i in range(2)])
    keys = trainer._item_keys(0, 2)
    loss_g, logs, x_hat = trainer._generator_loss(batch, keys)
    loss_g.backward()
    loss_d, logs_d = trainer._discriminator_loss(batch, x_hat.detach())
    loss_d.backward()
    assert {"l1", "lpips", "adv", "bce", "dice"} <= set(logs) and {"loss_d", "r1"} <= set(logs_d)

    trained = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert trained and all(".osor." in n or n.startswith(head_name + ".") for n in trained)
    for name, p in unet.named_parameters():
        if name in trained:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            if ".lora_B." in name or name.startswith(head_name + "."):
                assert p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    assert head.weight.grad[native:].abs().sum() > 0  # the alpha channels learn
    assert all(p.grad is None for p in trainer.vae.parameters())
    assert all(p.grad is None for p in trainer.disc.trunk.parameters())
    for name, p in trainer.disc.heads.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_cli_train_resume_and_load_for_inference(env, tmp_path):
    from erasekit import load_remover
    from erasekit.cli import main

    out = tmp_path / "run"
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_settings(env, out)))

    # an interrupted run: stopped after step 1 (its checkpoint is complete, the final weights are not written)
    first = train_osor(load_config(config_file), stop_after=1, progress=False)
    assert first.step == 1 and latest_checkpoint(out).name == "step-0000001"
    assert not (out / "osor").exists()

    # the CLI picks it up and continues from the saved step
    assert main(["train", "osor", "--config", str(config_file), "--no-progress"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert latest_checkpoint(out).name == "step-0000002"

    # the resumed run ends exactly where an uninterrupted run ends
    straight = train_osor(
        load_config(config_file, {"output_dir": str(tmp_path / "straight")}), progress=False
    )
    assert straight.resumed_from == 0 and straight.step == 2
    from safetensors.torch import load_file

    resumed = load_file(str(out / "osor" / "osor_weights.safetensors"))
    uninterrupted = load_file(str(tmp_path / "straight" / "osor" / "osor_weights.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=0, atol=1e-6, msg=key)
    initial = load_file(
        str(first.output_dir / "checkpoints" / "step-0000001" / "osor" / "osor_weights.safetensors")
    )
    assert any(not torch.equal(initial[k], resumed[k]) for k in resumed)  # step 2 changed the weights

    # the checkpoint is in the inference method's format
    remover = load_remover("osor-sdxl", model=str(env["model"]), weights=str(out / "osor"), device="cpu")
    assert remover.describe()["phase"] == 1 and remover.load_report.lora_modules > 0
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[8:20, 8:20] = 1
    result = remover(__import__("erasekit").types.RemovalRequest(image=image, mask=mask))
    assert result.image.shape == image.shape
    # Every pixel outside the paste region (mask ∪ the alpha head's region) is the input's, bit for bit; the
    # region holds the mask, and the check covers most of the image, not a handful of pixels.
    edited = np.maximum(mask, result.alpha) > 0
    assert edited[mask > 0].all() and (~edited).sum() >= SIZE * SIZE - 4 * int(mask.sum())
    np.testing.assert_array_equal(result.image[~edited], image[~edited])
    assert not np.array_equal(result.image[mask > 0], image[mask > 0])  # the masked region was filled


def test_config_errors_are_one_line(tmp_path, env):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**tiny_settings(env, tmp_path), "phase": 3}))
    with pytest.raises(InvalidInputError, match="phase"):
        load_config(bad)
    from erasekit.cli import main

    assert main(["train", "osor", "--config", str(bad)]) == 2  # bad input: exit code 2, one line
    assert main(["train", "osor", "--config", str(bad), "--set", "phase"]) == 2
    cfg = OsorTrainConfig(**tiny_settings(env, tmp_path, global_batch_size=3, per_device_batch_size=2))
    with pytest.raises(InvalidInputError, match="global batch"):
        cfg.resolved().accumulation_steps(1)


# The authors' values (Zhouqm-Git/osor, osor-{sdxlinpainting,fluxfill}/configs/phase{1,2}.yaml and
# src/engine/train_phase*.py), typed here from their files, not from erasekit's recipe.
AUTHORS = {
    # backbone: rank, l1, lpips, per-GPU batch, model_t per phase, resolution rule value
    "sdxl": (256, 0.25, 5.0, 2, {1: 600.0, 2: 400.0}, 512),
    "flux": (64, 0.5, 3.0, 2, {1: 0.4, 2: 0.4}, None),
}


def test_packaged_configs_equal_the_authors():
    from erasekit.methods.osor.train.config import packaged_config

    for backbone in ("sdxl", "flux"):
        for phase, steps in ((1, 15000), (2, 5000)):
            c = load_config(packaged_config(f"osor_{backbone}_phase{phase}")).resolved()
            rank, l1, per, pdb, t, res = AUTHORS[backbone]
            assert (c.lora.rank, c.lora.alpha, c.loss.l1, c.loss.perceptual, c.per_device_batch_size,
                    c.timestep, c.data.resolution, c.max_steps) == (
                        rank, rank, l1, per, pdb, t[phase], res, steps)
            assert (c.loss.adversarial, c.loss.r1, c.loss.bce, c.loss.dice) == (0.3, 60000.0, 1.0, 2.0)
            assert (c.optim.lr_generator, c.optim.lr_discriminator, c.global_batch_size) == (1e-5, 1e-5, 16)
            # torch.optim.AdamW with its defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01
            assert (c.optim.betas, c.optim.eps, c.optim.weight_decay, c.optim.max_grad_norm) == (
                (0.9, 0.999), 1e-8, 0.01, 1.0)
            assert (c.seed, c.mixed_precision, c.schedule, c.vae_dtype, c.vae_posterior) == (
                42, "bf16", "alternate", "compute", "sample")
            assert (c.data.flip_p, c.data.crop_scale) == (0.0, (1.0, 1.0))  # no flip, no crop
            assert (c.discriminator.targets, c.discriminator.blur) == ("occupancy", "authors")
            assert c.discriminator.trunk.startswith("laion/CLIP-convnext_xxlarge")
            assert (c.init_weights is not None) == (phase == 2)
            # the bare model's defaults resolve to the same values as the packaged files
            bare = OsorTrainConfig(backbone=backbone, phase=phase, model="m", output_dir="o",
                                   data={"path": "d"}).resolved()
            assert (bare.timestep, bare.seed, bare.optim.weight_decay, bare.data.resolution,
                    bare.per_device_batch_size) == (t[phase], 42, 0.01, res, pdb)


def test_recipe_constants_equal_the_authors():
    from erasekit.masks import PERTURBATION_PROBABILITIES
    from erasekit.methods.osor import recipe

    assert recipe.TRAIN_SEED == 42
    assert recipe.TRAIN_TIMESTEP == {("sdxl", 1): 600, ("sdxl", 2): 400, ("flux", 1): 0.4, ("flux", 2): 0.4}
    assert recipe.TIMESTEP == {"sdxl": 400, "flux": 0.4}  # inference keeps 400 for both weight files
    sdxl, flux = recipe.MASK_OPERATORS["sdxl"], recipe.MASK_OPERATORS["flux"]
    # src/data/augment.py MaskAugmentor defaults (SDXL) and osor-fluxfill's
    def values(ops):
        return ops.shrink_keep, ops.expand_iterations, ops.shift_px, ops.expand_kernels, ops.hole_kernels

    assert values(sdxl) == (
        (0.5, 0.7), (1, 3), 35, (7, 11, 17), (17, 21, 31))
    assert values(flux) == (
        (0.5, 0.7), (1, 3), 50, (11, 17, 21), (21, 31, 41))
    for ops in (sdxl, flux):
        assert (ops.hole_seed_p, ops.hole_min_keep, ops.binarize_above) == (0.0005, 0.4, 128)
    # src/data/collate.py ConsistentMaskCollate
    assert PERTURBATION_PROBABILITIES == {"shrink": 0.35, "expand": 0.2, "holes": 0.1, "shift": 0.05,
                                          "object_core": 0.3}

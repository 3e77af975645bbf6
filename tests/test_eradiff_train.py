"""EraDiff CRO (arXiv:2503.07026 Eq. 6–9, Algorithm 1): the equations against a hand computation, the
timestep draw, gradients only on trainable parameters, resume equals an uninterrupted run, the CLI, the
weights."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

import erasekit
from erasekit.cli import main
from erasekit.data.paired import PairedDatasetWriter
from erasekit.methods.eradiff.train import cro
from erasekit.methods.eradiff.train.config import load_config, packaged_config
from erasekit.methods.eradiff.train.trainer import CroStep, prepare_unet, train_eradiff
from erasekit.testing import tiny_pipeline, write_tiny_pipeline


def test_eq_6_to_9_on_a_constructed_batch_equal_a_hand_computation():
    # ᾱ table [ᾱ_0 = 1, ᾱ_1 = 0.81, ᾱ_2 = 0.64]; sample 0 jumps 2 → 1, sample 1 jumps 1 → 0.
    alpha_bar = cro.alphas_bar_with_clean(torch.tensor([0.81, 0.64]))
    x_ori = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1)
    x_obj = torch.tensor([3.0, -1.0]).view(2, 1, 1, 1)
    eps = torch.tensor([0.5, -0.25]).view(2, 1, 1, 1)
    t, s = torch.tensor([2, 1]), torch.tensor([1, 0])
    x_t, x_s = cro.chain_states(x_ori.double(), x_obj.double(), eps.double(), t, s, alpha_bar)
    # by hand: λ = 1 − ᾱ; x̃ = (1−λ)·x_ori + λ·x_obj; x = √ᾱ·x̃ + √(1−ᾱ)·ε
    x_t0 = 0.8 * (0.64 * 1 + 0.36 * 3) + 0.6 * 0.5            # 1.676
    x_s0 = 0.9 * (0.81 * 1 + 0.19 * 3) + math.sqrt(0.19) * 0.5
    x_t1 = 0.9 * (0.81 * 2 + 0.19 * -1) + math.sqrt(0.19) * -0.25
    x_s1 = 2.0  # t − γ = 0: the clean background exactly
    assert torch.allclose(x_t.flatten(), torch.tensor([x_t0, x_t1], dtype=torch.float64))
    assert torch.allclose(x_s.flatten(), torch.tensor([x_s0, x_s1], dtype=torch.float64))
    # Eq. 8 with a predicted ε of 0.1 for sample 0: x̂_0 = (x_t − 0.6·0.1)/0.8, x̂_s = 0.9·x̂_0 + √0.19·0.1
    pred_eps = torch.tensor([0.1, 0.0], dtype=torch.float64).view(2, 1, 1, 1)
    jump = cro.ddim_jump(x_t, pred_eps, alpha_bar[t], alpha_bar[s])
    hand0 = 0.9 * (x_t0 - 0.06) / 0.8 + math.sqrt(0.19) * 0.1
    hand1 = 1.0 * x_t1 / 0.9
    assert torch.allclose(jump.flatten(), torch.tensor([hand0, hand1], dtype=torch.float64))
    # Eq. 9: the mean squared difference
    loss = cro.cro_loss(x_s, jump)
    assert math.isclose(float(loss), ((x_s0 - hand0) ** 2 + (x_s1 - hand1) ** 2) / 2, rel_tol=1e-6)
    # the true ε makes Eq. 8 land on x_{t−γ} exactly: the chain shares one ε and λ only moves x̃
    same_t, same_s = cro.chain_states(x_ori.double(), x_ori.double(), eps.double(), t, s, alpha_bar)
    assert torch.allclose(cro.ddim_jump(same_t, eps.double(), alpha_bar[t], alpha_bar[s]), same_s)


def test_without_mixup_lambda_is_constant():
    alpha_bar = cro.alphas_bar_with_clean(torch.linspace(0.99, 0.01, 10))
    assert torch.equal(cro.mixup_lambda(alpha_bar, mixup=False, constant=0.3), torch.full((11,), 0.3,
                                                                                           dtype=torch.float64))
    lam = cro.mixup_lambda(alpha_bar)
    assert lam[0] == 0 and bool((lam[1:] > lam[:-1]).all())  # increasing, λ_0 = 0 (Eq. 6 at t = 0)


def test_timestep_draw_keeps_the_jump_in_range():
    t, s = cro.sample_timesteps(20000, 1000, 100, torch.Generator().manual_seed(0))
    gamma = t - s
    assert int(t.min()) == 1 and int(t.max()) == 1000 and int(s.min()) == 0
    assert int(gamma.min()) == 1 and int(gamma.max()) == 100 and bool((gamma <= t).all())


# ------------------------------------------------------------------------------------------------------------
# The trainer on the tiny SD2-Inpaint model
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    with PairedDatasetWriter(root) as writer:
        for i in range(4):
            background = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
            mask = np.zeros((64, 64), np.float32)
            mask[8 + 4 * i:40, 16:48] = 1
            image = background.copy()
            image[mask > 0] = (40 * i, 200, 90)
            writer.add(f"{i:03d}", image, background, mask, mask, phase2=False)
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_tiny_pipeline("sd2-inpaint", tmp_path_factory.mktemp("model") / "sd2-inpaint")


def config_for(model, paired, out, **extra):
    raw = {"model": str(model), "data": {"path": str(paired)}, "output_dir": str(out), "max_steps": 4,
           "batch_size": 2, "checkpoint_every": 2, "log_every": 1, "device": "cpu", "optim": {"lr": 1e-3},
           # one precision for every run in this process: Accelerate's state is a process-wide singleton
           "mixed_precision": "no",
           **extra}
    return load_config(packaged_config("eradiff_sd2"), raw)


@pytest.mark.parametrize("lora", [None, {"rank": 2}])
def test_gradients_reach_only_the_trainable_parameters(model, paired, tmp_path, lora):
    import copy

    pipe = copy.deepcopy(tiny_pipeline("sd2-inpaint"))
    config = config_for(model, paired, tmp_path, lora=lora)
    pipe.vae.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    trainable = prepare_unet(pipe.unet, config)
    names = {n for n, p in pipe.unet.named_parameters() if p.requires_grad}
    if lora:
        assert names and all("lora_" in n for n in names)
    else:
        assert names == {n for n, _ in pipe.unet.named_parameters()}
    from erasekit.data.loader import PairedTorchDataset, collate_paired

    dataset = PairedTorchDataset(paired)
    batch = collate_paired([dataset[0], dataset[1]])
    loss = CroStep(pipe, config, torch.device("cpu")).loss(pipe.unet, batch, torch.Generator().manual_seed(0))
    loss.backward()
    with_grad = {n for n, p in pipe.unet.named_parameters() if p.grad is not None}
    assert with_grad and with_grad <= names
    assert len(trainable) == len(names)
    for module in (pipe.vae, pipe.text_encoder):
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())


def test_resume_equals_an_uninterrupted_run(model, paired, tmp_path):
    full = train_eradiff(config_for(model, paired, tmp_path / "full"), progress=False)
    train_eradiff(config_for(model, paired, tmp_path / "split", max_steps=2), progress=False)
    resumed = train_eradiff(config_for(model, paired, tmp_path / "split"), progress=False)
    assert full.step == resumed.step == 4 and resumed.resumed_from == 2
    from safetensors.torch import load_file

    a, b = load_file(str(full.weights_dir / "unet.safetensors")), load_file(str(resumed.weights_dir /
                                                                               "unet.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    base = tiny_pipeline("sd2-inpaint").unet.state_dict()
    assert any(not torch.equal(a[k], base[k]) for k in a)  # training moved the weights
    lines = full.metrics_path.read_text().splitlines()
    assert len(lines) == 4 and all(np.isfinite(json.loads(line)["loss"]) for line in lines)


def test_lora_run_exports_a_merged_unet_the_remover_loads(model, paired, tmp_path):
    result = train_eradiff(config_for(model, paired, tmp_path, max_steps=1, lora={"rank": 2},
                                      cro={"mixup": False, "sra": True}), progress=False)
    remover = erasekit.load_remover("eradiff", model=str(model), weights=str(result.weights_dir),
                                    device="cpu", progress_bar=False)
    assert remover.describe()["variant"] == "EraDiff"


def test_cli_train_eradiff(model, paired, tmp_path):
    code = main(["train", "eradiff", "--config", "eradiff_sd2", "--no-progress", "--max-steps", "1",
                 "-o", str(tmp_path), "--set", f"model={model}", "--set", f"data.path={paired}",
                 "--set", "batch_size=2", "--set", "device=cpu", "--set", "data.resolution=null",
                 "--set", "mixed_precision=no", "--set", "gradient_checkpointing=false"])
    assert code == 0 and (tmp_path / "eradiff" / "eradiff.json").is_file()


def test_bad_config_is_one_line_error(tmp_path):
    from erasekit.types import InvalidInputError

    with pytest.raises(InvalidInputError, match="gamma_max"):
        load_config(packaged_config("eradiff_sd2"), {"cro": {"gamma_max": 0}})
    with pytest.raises(InvalidInputError, match="no packaged config"):
        packaged_config("eradiff_sdxl")

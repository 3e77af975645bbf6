"""The OSOR training loop as the authors run it: alternating batches, Phase II heads from Phase I, one loss
scaler per optimizer, two processes over gloo equal to one, and resume after a torn metrics line."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

from erasekit.methods.osor.train.config import OsorTrainConfig
from erasekit.methods.osor.train.trainer import HEADS_FILE, OsorTrainer, train_osor
from erasekit.testing.training import write_tiny_openclip_convnext
from erasekit.training.optim import ScaledOptimizer

SIZE = 32


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny):
    from erasekit.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("osor-loop")
    return {
        "model": tiny.path("sdxl-inpaint"),
        "data": generate_synthetic_dataset(root / "data", 4, size=SIZE, seed=0),
        "trunk": write_tiny_openclip_convnext(root / "trunk"),
    }


def settings(env, output_dir, **extra) -> dict:
    base = {
        "backbone": "sdxl", "phase": 1, "model": str(env["model"]), "output_dir": str(output_dir),
        "data": {"path": str(env["data"]), "resolution": SIZE, "phase2_only": False},
        "lora": {"rank": 4}, "discriminator": {"trunk": str(env["trunk"]), "hidden": 8},
        "loss": {"perceptual": 0.0}, "max_steps": 2, "global_batch_size": 2, "per_device_batch_size": 2,
        "mixed_precision": "no", "device": "cpu", "gradient_checkpointing": False, "log_every": 1,
        "checkpoint_every": 1,
    }
    for key, value in extra.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) else value
    return base


# ------------------------------------------------------------------------------------------------------------
def test_generator_and_discriminator_alternate_batches(env, tmp_path):
    trainer = OsorTrainer(OsorTrainConfig(**settings(env, tmp_path / "run", max_steps=2)))
    events: list[tuple] = []
    forward = trainer.generator_forward

    def recording_forward(images, cond, keys):
        events.append(("x_hat", torch.is_grad_enabled(), trainer.disc.heads.training, keys[0][1],
                       trainer.trainable[0].detach().clone()))
        return forward(images, cond, keys)

    trainer.generator_forward = recording_forward
    for name, opt in (("G", trainer.opt_g), ("D", trainer.opt_d)):
        step = opt.step

        def recording_step(reduce=None, _name=name, _step=step):
            events.append((_name,))
            return _step(reduce)

        opt.step = recording_step
    trainer.train(progress=False)
    kinds = [e[0] for e in events]
    assert kinds == ["x_hat", "G", "x_hat", "D"] * 2  # one batch each, G first
    g_batches = [e for e in events if e[0] == "x_hat"][0::2]
    d_batches = [e for e in events if e[0] == "x_hat"][1::2]
    # G on even micro-batches with gradients and the heads in eval() (spectral norm frozen) ...
    assert [e[3] for e in g_batches] == [0, 2] and all(e[1] and not e[2] for e in g_batches)
    # ... D on odd ones, x̂ recomputed without gradients by the generator the G step has just updated
    assert [e[3] for e in d_batches] == [1, 3] and not any(e[1] for e in d_batches)
    for g, d in zip(g_batches, d_batches):
        assert not torch.equal(g[4], d[4])  # the generator changed between its batch and the D batch


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps one process-wide mixed precision: a test that changes it starts and ends afresh."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_vae_runs_in_the_compute_dtype_on_a_posterior_sample(env, tmp_path, fresh_accelerate_state):
    from erasekit.backbones import latents as L

    trainer = OsorTrainer(OsorTrainConfig(**settings(env, tmp_path / "bf16", mixed_precision="bf16")))
    assert trainer.vae.dtype == torch.bfloat16  # the authors' weight_dtype
    fp32 = OsorTrainer(OsorTrainConfig(**settings(env, tmp_path / "fp32", mixed_precision="bf16",
                                                  vae_dtype="fp32", vae_posterior="mode")))
    assert fp32.vae.dtype == torch.float32
    images = torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    seen = []
    encode = L.encode

    def recording_encode(vae, x, generator=None, sample=False):
        out = encode(vae, x, generator=generator, sample=sample)
        seen.append((sample, out))
        return out

    L.encode = recording_encode
    try:
        mask = torch.zeros(2, 1, SIZE, SIZE)
        keys = trainer._item_keys(0, 2)
        with torch.no_grad(), trainer.accelerator.autocast():  # as the trainer calls it
            trainer.generator_forward(images, mask, keys)
            trainer.generator_forward(images[:1], mask[:1], keys[:1])  # the same draw for the same slot
            fp32.generator_forward(images, mask, keys)
    finally:
        L.encode = encode
    (s1, z1), (s2, z2), (s3, _) = seen
    assert (s1, s2, s3) == (True, True, False)
    assert torch.equal(z1[:1], z2)  # keyed per sample: batch-size invariant
    mode = encode(trainer.vae, images.to(torch.bfloat16))
    assert not torch.allclose(z1.float(), mode.float())  # a sample, not the mode


def test_phase2_loads_phase1_heads(env, tmp_path):
    from erasekit.methods.osor.weights import load_osor_weights

    phase1 = train_osor(OsorTrainConfig(**settings(env, tmp_path / "p1", max_steps=1)), progress=False)
    heads_file = phase1.weights_dir / HEADS_FILE
    assert heads_file.is_file()
    # trained at the authors' Phase I t = 600; the weights record the inference t = 400
    assert OsorTrainConfig(**settings(env, "o")).resolved().timestep == 600
    assert load_osor_weights(phase1.weights_dir, "sdxl").timestep == 400
    from safetensors.torch import load_file

    saved = load_file(str(heads_file))
    fresh = OsorTrainer(OsorTrainConfig(**settings(env, tmp_path / "fresh", phase=2, init_weights=str(
        phase1.weights_dir), discriminator={"init_from_phase1": False})))
    p2 = OsorTrainer(OsorTrainConfig(**settings(env, tmp_path / "p2", phase=2,
                                                init_weights=str(phase1.weights_dir))))
    assert p2.heads_loaded_from == heads_file and fresh.heads_loaded_from is None
    state = p2.disc.heads.state_dict()
    assert saved.keys() == state.keys()
    for key, value in saved.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    assert any(not torch.equal(fresh.disc.heads.state_dict()[k], v) for k, v in saved.items())


def test_each_optimizer_has_its_own_loss_scaler():
    """fp16 on CPU: an overflow in the generator halves only the generator's scale and skips only its step;
    the discriminator's gradients are unscaled with the scale they were scaled by."""
    g_param, d_param = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt_g = ScaledOptimizer(torch.optim.SGD([g_param], lr=0.1), [g_param], device_type="cpu", fp16=True,
                            max_grad_norm=1.0)
    opt_d = ScaledOptimizer(torch.optim.SGD([d_param], lr=0.1), [d_param], device_type="cpu", fp16=True)
    start = opt_g.scaler.get_scale()
    assert opt_d.scaler.get_scale() == start and opt_g.scaler is not opt_d.scaler

    opt_g.backward((g_param * float("inf")).sum())  # overflow in the generator
    assert opt_g.step() is False
    assert torch.equal(g_param.detach(), torch.ones(3))  # step skipped
    assert opt_g.scaler.get_scale() == start * 0.5  # backoff 0.5, generator only
    assert opt_d.scaler.get_scale() == start

    opt_d.backward((2.0 * d_param).sum())  # gradient 2 per element, scaled by the D scaler's own scale
    assert torch.equal(d_param.grad, torch.full((3,), 2.0 * start))
    assert opt_d.step() is True
    torch.testing.assert_close(d_param.detach(), torch.full((3,), 1.0 - 0.1 * 2.0))  # unscaled exactly
    assert opt_d.scaler.get_scale() == start  # no overflow: unchanged until growth_interval steps

    opt_g.backward((g_param ** 2).sum())  # a finite step now; clipped to norm 1 after unscaling
    assert opt_g.step() is True
    expected = 1.0 - 0.1 * 2.0 / (torch.tensor(2.0 * 3**0.5))  # gradient (2, 2, 2) clipped to norm 1
    torch.testing.assert_close(g_param.detach(), torch.full((3,), float(expected)))
    state = opt_g.state_dict()
    fresh = ScaledOptimizer(torch.optim.SGD([g_param], lr=0.1), [g_param], device_type="cpu", fp16=True)
    fresh.load_state_dict(state)
    assert fresh.scaler.get_scale() == start * 0.5


def test_resume_after_a_torn_metrics_line(env, tmp_path):
    out = tmp_path / "run"
    cfg = OsorTrainConfig(**settings(env, out))
    first = train_osor(cfg, stop_after=1, progress=False)
    assert first.step == 1
    with (out / "metrics.jsonl").open("a") as stream:
        stream.write('{"step": 2, "loss_g": 0.3')  # killed mid-write: no closing brace, no newline
    result = train_osor(cfg, progress=False)
    assert result.resumed_from == 1 and result.step == 2
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


# ------------------------------------------------------------------------------------------------------------
# Two processes over gloo (no DDP: the trainer's own gradient all-reduce) against one process, same global
# batch. Phase I: its losses are means of per-sample terms, so splitting the batch over processes changes only
# the order of float sums. (Phase II's one Dice over the per-process batch is not decomposable, as with DDP.)
TWO_PROCESS_ATOL = 2e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_process_worker(rank: int, config: dict, port: int) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
                       "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2"})
    torch.set_num_threads(1)
    from accelerate.state import AcceleratorState, GradientState

    # A forked child inherits the parent's (single-process) Accelerate singletons: start it afresh.
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    cfg = OsorTrainConfig(**config)
    trainer = OsorTrainer(cfg)
    acc = trainer.accelerator
    assert (acc.num_processes, acc.process_index, trainer.accum) == (2, rank, 1)
    first = trainer.train(stop_after=1, progress=False)  # interrupted after step 1 ...
    assert first.step == 1
    resumed = train_osor(cfg, progress=False)  # ... and resumed from the two-process checkpoint
    assert resumed.resumed_from == 1 and resumed.step == 2


def test_two_processes_over_gloo_equal_one_process(env, tmp_path):
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    two = settings(env, tmp_path / "two", per_device_batch_size=1)
    mp.start_processes(_two_process_worker, args=(two, _free_port()), nprocs=2, start_method="fork")
    one = train_osor(OsorTrainConfig(**settings(env, tmp_path / "one")), progress=False)
    a = load_file(str(Path(two["output_dir"]) / "osor" / "osor_weights.safetensors"))
    b = load_file(str(one.weights_dir / "osor_weights.safetensors"))
    assert a.keys() == b.keys()
    step1 = tmp_path / "two" / "checkpoints" / "step-0000001" / "osor"
    initial = load_file(str(step1 / "osor_weights.safetensors"))
    assert any(not torch.equal(a[k], initial[k]) for k in a)  # step 2 trained
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"two processes vs one: max |Δ weight| = {worst:.3g}")
    assert worst <= TWO_PROCESS_ATOL, worst
    heads_a = load_file(str(Path(two["output_dir"]) / "osor" / HEADS_FILE))
    heads_b = load_file(str(one.weights_dir / HEADS_FILE))
    for key in heads_a:
        torch.testing.assert_close(heads_a[key], heads_b[key], rtol=0, atol=TWO_PROCESS_ATOL, msg=key)

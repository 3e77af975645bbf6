"""OSOR losses (Eqs. 7, 8, 9, 14, 16) on hand-computed inputs."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from torch import nn

from erasekit.methods.osor.train import losses as L
from erasekit.methods.osor.train.discriminator import PatchHead


def _nll_real(logit):  # −log σ(l), written the naive way as the reference
    return -torch.log(torch.sigmoid(logit))


def _nll_fake(logit):  # −log(1 − σ(l))
    return -torch.log(1 - torch.sigmoid(logit))


def test_loss_weights_are_the_papers():
    from erasekit.methods.osor.train.config import OsorTrainConfig

    def resolved(backbone, **loss):
        return OsorTrainConfig(backbone=backbone, phase=1, model="m", output_dir="o", data={"path": "d"},
                               loss=loss).resolved().loss

    sdxl, flux = resolved("sdxl"), resolved("flux")  # App. B.1
    assert (sdxl.l1, sdxl.perceptual, sdxl.adversarial, sdxl.r1, sdxl.bce, sdxl.dice) == (
        0.25,
        5,
        0.3,
        60000,
        1,
        2,
    )
    assert (flux.l1, flux.perceptual, flux.adversarial, flux.r1, flux.bce, flux.dice) == (
        0.5,
        3,
        0.3,
        60000,
        1,
        2,
    )
    set_here = resolved("flux", l1=0.0, r1=10.0)  # a value the config sets wins, even 0
    assert (set_here.l1, set_here.r1, set_here.perceptual) == (0.0, 10.0, 3)


def test_discriminator_loss_eq7_fractional_targets():
    real = [torch.tensor([[[0.5, -1.0]]]), torch.tensor([[[2.0]]])]
    fake = [torch.tensor([[[1.0, -0.5]]]), torch.tensor([[[0.3]]])]
    w = [torch.tensor([[[0.25, 1.0]]]), torch.tensor([[[0.0]]])]
    expected = 0.0
    for r, f, t in zip(real, fake, w):
        expected += _nll_real(r).mean() + ((1 - t) * _nll_real(f) + t * _nll_fake(f)).mean()
    got = L.discriminator_loss(real, fake, w)
    assert torch.allclose(got, expected, atol=1e-6)
    # a generated patch that is entirely preserved context (w̃ = 0) is a real patch
    zero = [torch.zeros(1, 1, 1)]
    assert torch.allclose(
        L.discriminator_loss([torch.tensor([[[3.0]]])], [torch.tensor([[[3.0]]])], zero),
        2 * _nll_real(torch.tensor(3.0)),
    )


def test_generator_loss_eq8_is_area_normalised():
    fake = torch.tensor([[[0.0, 2.0], [-1.0, 5.0]]])
    w = torch.tensor([[[1.0, 0.5], [0.0, 0.0]]])
    expected = (1.0 * _nll_real(torch.tensor(0.0)) + 0.5 * _nll_real(torch.tensor(2.0))) / 1.5
    assert torch.allclose(L.generator_adversarial_loss([fake], [w]), expected, atol=1e-6)
    # scale-free in the mask area: the same logits under a larger mask give the same value
    big = torch.full((1, 4, 4), -1.0)
    small_w, big_w = torch.zeros(1, 4, 4), torch.ones(1, 4, 4)
    small_w[0, 0, 0] = 1
    assert torch.allclose(
        L.generator_adversarial_loss([big], [small_w]),
        L.generator_adversarial_loss([big], [big_w]),
        atol=1e-5,
    )


def test_masked_l1_eq9_is_the_authors_one_channel_normalisation():
    pred = torch.zeros(1, 3, 2, 2)
    target = torch.zeros(1, 3, 2, 2)
    target[:, :, 0, 0] = 1.0  # error 1 inside the mask
    target[:, :, 1, 1] = 5.0  # error outside the mask is ignored
    w = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # ‖w ⊙ diff‖₁ = 3 (one pixel × 3 channels), ‖w‖₁ of the one-channel mask = 2
    assert torch.allclose(L.masked_l1(pred, target, w), torch.tensor(1.5))
    # full mask = 3 × the plain per-channel L1 (the authors' scale: the sum over channels per pixel)
    full = torch.ones(1, 1, 2, 2)
    assert torch.allclose(L.masked_l1(pred, target, full), 3 * (pred - target).abs().mean())


def test_authors_losses_on_a_constructed_batch():
    """L1, Dice and the GAN terms on one batch, against the authors' formulas (src/utils/losses.py) written
    out by hand: per-sample sums over plain Python numbers."""
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    mask = (torch.rand(2, 1, 4, 4, generator=g) > 0.5).float() * 0.75
    mask[1] = 0.0  # an empty mask: the 1e-4 clamp keeps the term finite (0 / 1e-4)
    ref = 0.0
    for b in range(2):
        num = sum(abs(mask[b, 0, y, x].item() * (pred[b, c, y, x] - target[b, c, y, x]).item())
                  for c in range(3) for y in range(4) for x in range(4))
        den = max(sum(mask[b, 0].flatten().tolist()), 1e-4)
        ref += num / den / 2
    assert L.masked_l1(pred, target, mask).item() == pytest.approx(ref, rel=1e-6)

    # Dice: one over the whole flattened batch (not a mean of per-sample Dice)
    p = torch.rand(3, 1, 2, 3, generator=g)
    t = (torch.rand(3, 1, 2, 3, generator=g) > 0.4).float()
    pf, tf = p.flatten().tolist(), t.flatten().tolist()
    dice = 1 - (2 * sum(a * b for a, b in zip(pf, tf)) + 1) / (sum(pf) + sum(tf) + 1)
    assert L.dice_loss(p, t).item() == pytest.approx(dice, rel=1e-6)
    per_sample = sum(1 - (2 * (p[i] * t[i]).sum() + 1) / (p[i].sum() + t[i].sum() + 1) for i in range(3)) / 3
    assert abs(L.dice_loss(p, t).item() - per_sample.item()) > 1e-4  # the old per-sample rule differs

    # GAN: per-sample area-normalised generator term with the 1e-4 clamp; D term with soft targets 1 − w̃
    fake = torch.randn(2, 3, 3, generator=g)
    real = torch.randn(2, 3, 3, generator=g)
    w = torch.rand(2, 3, 3, generator=g)
    w[1] = 0.0
    gen = 0.0
    for b in range(2):
        wb, fb = w[b].flatten().tolist(), fake[b].flatten().tolist()
        num = sum(wb[i] * math.log1p(math.exp(-fb[i])) for i in range(9))
        gen += num / max(w[b].sum().item(), 1e-4) / 2
    assert L.generator_adversarial_loss([fake], [w]).item() == pytest.approx(gen, rel=1e-6)

    def bce(logit, target):  # BCEWithLogits, by hand
        s = 1 / (1 + math.exp(-logit))
        return -(target * math.log(s) + (1 - target) * math.log(1 - s))

    d = 0.0
    for b in range(2):
        d += sum(bce(real[b].flatten()[i].item(), 1.0) for i in range(9)) / 9 / 2
        d += sum(bce(fake[b].flatten()[i].item(), 1 - w[b].flatten()[i].item()) for i in range(9)) / 9 / 2
    assert L.discriminator_loss([real], [fake], [w]).item() == pytest.approx(d, rel=1e-5)


def test_bce_and_dice_on_known_inputs():
    logits = torch.zeros(1, 1, 2, 2)  # α = 0.5 everywhere
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    out = L.alpha_loss(logits, target, bce_weight=1.0, dice_weight=2.0, smooth=1.0)
    assert torch.allclose(out["bce"], torch.tensor(math.log(2)))
    dice = 1 - (2 * 1.0 + 1) / (2.0 + 2.0 + 1)  # Σpm = 1, Σp = 2, Σm = 2
    assert torch.allclose(out["dice"], torch.tensor(dice))
    assert torch.allclose(out["alpha"], out["bce"] + 2 * out["dice"])
    # a perfect, confident prediction drives both to ~0
    perfect = L.alpha_loss((target * 2 - 1) * 50, target, bce_weight=1.0, dice_weight=2.0, smooth=1e-6)
    assert perfect["bce"] < 1e-6 and perfect["dice"] < 1e-6


def test_effect_mask_max_pooled_to_latent():
    m = torch.zeros(1, 1, 16, 16)
    m[0, 0, 9, 2] = 1.0  # one pixel marks its whole 8×8 latent cell
    z = L.effect_mask_to_latent(m, (2, 2))
    assert z[0, 0].tolist() == [[0.0, 0.0], [1.0, 0.0]]


def test_r1_closed_form_on_linear_head():
    # h(f) = Σ_c a_c f_c (1×1 conv): ∇_f Σ_p h = a at every position, so (1/|f|)‖∇‖² = Σ_c a_c² HW / (C HW) =
    # mean(a²)
    head = nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([1.0, -2.0, 3.0]).view(1, 3, 1, 1))
    feats = torch.randn(2, 3, 4, 5)
    got = L.r1_penalty([head], [feats])
    assert torch.allclose(got, torch.tensor((1 + 4 + 9) / 3.0))


def test_r1_matches_definition_on_tiny_patch_head():
    torch.manual_seed(0)
    heads = [PatchHead(4, hidden=8), PatchHead(6, hidden=8)]
    feats = [torch.randn(2, 4, 6, 6), torch.randn(2, 6, 3, 3)]
    for (
        h
    ) in heads:  # settle spectral norm's power iteration so both evaluations use the same normalised weight
        h.eval()
    got = L.r1_penalty(heads, feats)
    per_scale = []
    for head, f in zip(heads, feats):
        values = []
        for b in range(
            f.shape[0]
        ):  # per-sample definition: ∇ of that sample's summed logits, squared, / |f_b|
            fb = f[b : b + 1].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(head(fb).sum(), fb)
            values.append(g.pow(2).sum() / fb.numel())
        per_scale.append(torch.stack(values).mean())
    expected = torch.stack(per_scale).mean()
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-9)
    # the penalty trains the heads' weights (create_graph); biases do not change an input gradient
    got.backward()
    weights = [p for n, p in heads[0].named_parameters() if n.endswith("weight.original")]
    assert len(weights) == 2 and all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)


def test_lpips_vgg_loads_published_layout_and_is_a_distance(tmp_path, monkeypatch):
    from erasekit.eval.networks import LPIPSVGG
    from erasekit.training.perceptual import load_lpips_vgg
    from erasekit.types import MissingWeightsError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("ERASEKIT_WEIGHTS_DIR", raising=False)
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        load_lpips_vgg()
    # a VGG16 trunk file in torchvision's key layout (random values) loads with the bundled lpips heads
    torch.manual_seed(0)
    trunk = tmp_path / "vgg16-397923af.pth"
    torch.save({f"features.{k}": v for k, v in LPIPSVGG().net.features.state_dict().items()}, trunk)
    try:
        lpips = load_lpips_vgg(trunk=trunk)
    except MissingWeightsError:
        pytest.skip("no installed package bundles the lpips v0.1 VGG heads")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    assert lpips.distance(x, x).abs().max() < 1e-6
    d = lpips(y, x)
    d.backward()
    assert d > 0 and y.grad.abs().sum() > 0 and all(p.grad is None for p in lpips.parameters())

"""EraDiff's attention rules (arXiv:2503.07026 Eq. 10–11; Attentive Eraser's key mask): the processor against
a naive reference written here, background rows, empty masks, the token grid, install and restore."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from erasekit.diffusion.attention import LayerSelector, installed_processors
from erasekit.methods.eradiff.attention import (
    MaskedSelfAttentionRule,
    MaskedSelfAttnProcessor,
    SplitSelfAttnProcessor,
    mask_to_tokens,
    processor_factory,
    token_grid,
)
from erasekit.testing import tiny_pipeline


# ------------------------------------------------------------------------------------------------------------
# Reference, written independently of the implementation: loops over token blocks, an explicit softmax.
# ------------------------------------------------------------------------------------------------------------
def reference_token_mask(mask: np.ndarray, rows: int, cols: int, side: int, grid: str) -> np.ndarray:
    out = np.zeros(rows * cols, bool)
    for r in range(rows):
        for c in range(cols):
            block = mask[r * side:(r + 1) * side, c * side:(c + 1) * side] > 0.5  # clipped at the edge
            out[r * cols + c] = block.any() if grid == "any" else block.mean() >= 0.5
    return out


def reference_bias(m: np.ndarray, rule: str) -> torch.Tensor:
    n = len(m)
    bias = torch.zeros(n, n, dtype=torch.float64)
    blocked_value = -math.inf if rule == "sra" else torch.finfo(torch.float32).min
    for i in range(n):
        row = [(m[i] and m[j]) if rule == "sra" else m[j] for j in range(n)]
        if all(row):  # no allowed key: standard attention
            continue
        for j in range(n):
            if row[j]:
                bias[i, j] = blocked_value
    return bias


def reference_attention(attn: Attention, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    b, n, _ = x.shape
    h = attn.heads
    q, k, v = (f(x).double().view(b, n, h, -1).transpose(1, 2) for f in (attn.to_q, attn.to_k, attn.to_v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1)
    return attn.to_out[0].double()(out).float()


def layer(heads: int, dim_head: int = 8, seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    return Attention(query_dim=heads * dim_head, heads=heads, dim_head=dim_head).eval()


def random_mask(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), np.float32)
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    mask[top:top + rng.integers(5, height // 2 + 6), left:left + rng.integers(5, width // 2 + 6)] = 1
    return mask


CASES = [  # (batch, heads, latent rows, latent cols)
    (1, 1, 4, 4), (2, 4, 8, 8), (3, 2, 5, 7), (2, 5, 16, 12)]


def processor(rule: MaskedSelfAttentionRule, name: str = "layer"):
    return processor_factory(rule)(name)


@pytest.mark.parametrize("impl", ["bias", "bool", "split"])
@pytest.mark.parametrize("rule", ["sra", "key_mask"])
@pytest.mark.parametrize(("batch", "heads", "rows", "cols"), CASES)
def test_processor_equals_the_naive_reference(impl, rule, batch, heads, rows, cols):
    attn = layer(heads)
    mask = random_mask(rows * 8, cols * 8, seed=rows * cols)
    x = torch.randn(batch, rows * cols, attn.inner_dim, generator=torch.Generator().manual_seed(1))
    rule_ = MaskedSelfAttentionRule(torch.from_numpy(mask), rule=rule, impl=impl)
    with torch.no_grad():
        out = processor(rule_)(attn, x)
        bias = reference_bias(reference_token_mask(mask, rows, cols, 8, "any"), rule)
        expected = reference_attention(attn, x, bias)
    assert torch.allclose(out, expected, rtol=0, atol=1e-6), (out - expected).abs().max()


@pytest.mark.parametrize(("batch", "heads", "rows", "cols"), CASES)
def test_background_query_rows_equal_standard_attention(batch, heads, rows, cols):
    attn = layer(heads)
    mask = random_mask(rows * 8, cols * 8, seed=7)
    x = torch.randn(batch, rows * cols, attn.inner_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        sra = MaskedSelfAttnProcessor("layer", MaskedSelfAttentionRule(torch.from_numpy(mask)))(attn, x)
        stock = AttnProcessor2_0()(attn, x)
    background = ~torch.from_numpy(reference_token_mask(mask, rows, cols, 8, "any"))
    assert background.any() and (~background).any()
    assert torch.allclose(sra[:, background], stock[:, background], rtol=0, atol=1e-6)
    assert not torch.allclose(sra[:, ~background], stock[:, ~background], atol=1e-3)  # masked rows do change


@pytest.mark.parametrize("impl", ["bias", "bool", "split"])
@pytest.mark.parametrize("rule", ["sra", "key_mask"])
def test_empty_and_full_masks_are_bit_identical_to_the_stock_processor(rule, impl):
    attn = layer(4)
    x = torch.randn(2, 64, attn.inner_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        stock = AttnProcessor2_0()(attn, x)
        for mask in (torch.zeros(64, 64), torch.ones(64, 64)):  # full: every row falls back
            out = processor(MaskedSelfAttentionRule(mask, rule=rule, impl=impl))(attn, x)
            assert torch.equal(out, stock)


@pytest.mark.parametrize("impl", ["bool", "split"])
@pytest.mark.parametrize("rule", ["sra", "key_mask"])
def test_bool_and_split_equal_the_bias_form_including_gradients(rule, impl):
    # a batch of two different masks (one of them empty at this resolution) under guidance: UNet batch 4
    masks = torch.stack([torch.from_numpy(random_mask(64, 48, seed=5)), torch.zeros(64, 48)])
    attn = layer(3, seed=4)
    x = torch.randn(4, 48, attn.inner_dim, generator=torch.Generator().manual_seed(6))
    results = []
    for form in ("bias", impl):
        attn.zero_grad()
        xi = x.clone().requires_grad_(True)
        out = processor(MaskedSelfAttentionRule(masks, rule=rule, impl=form))(attn, xi)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), xi.grad, [p.grad.clone() for p in attn.parameters()]))
    (out_a, gx_a, gp_a), (out_b, gx_b, gp_b) = results
    assert torch.allclose(out_a, out_b, rtol=0, atol=1e-6)
    assert torch.allclose(gx_a, gx_b, rtol=0, atol=1e-6)
    # parameter gradients sum over every token and sample: 1e-6 of their scale (fp32 rounding is ~2e-7)
    for a, b in zip(gp_a, gp_b, strict=True):
        assert float((a - b).abs().max()) <= 1e-6 * max(1.0, float(a.abs().max()))


def test_split_gathers_only_background_keys_for_masked_queries():
    # Independent check of the split itself: masked query rows equal attention over the background keys alone.
    from erasekit.methods.eradiff.attention import split_attention

    g = torch.Generator().manual_seed(8)
    q, k, v = (torch.randn(2, 3, 10, 4, generator=g, dtype=torch.float64) for _ in range(3))
    masked, background = torch.tensor([1, 4, 5]), torch.tensor([0, 2, 3, 6, 7, 8, 9])
    out = split_attention(q, k, v, masked, background, rule="sra")
    for i in range(10):
        keys = background if i in masked.tolist() else torch.arange(10)
        probs = (q[:, :, i:i + 1] @ k[:, :, keys].transpose(-1, -2) / 2.0).softmax(-1)
        assert torch.allclose(out[:, :, i:i + 1], probs @ v[:, :, keys], rtol=0, atol=1e-12)


def test_the_bias_is_built_once_per_resolution_and_broadcast_over_batch_and_heads():
    rule = MaskedSelfAttentionRule(torch.from_numpy(random_mask(64, 64, seed=0)))
    q = torch.zeros(2, 4, 64, 8)
    first = rule.bias("a", q, q)
    assert first is not None and first.shape == (1, 1, 64, 64)
    assert rule.bias("b", q, q) is first  # another layer at this resolution: the same tensor
    assert set(torch.unique(first).tolist()) == {0.0, -math.inf}


def test_a_batch_of_masks_is_repeated_for_the_guidance_halves():
    masks = torch.stack([torch.from_numpy(random_mask(32, 32, seed=s)) for s in (0, 1)])
    rule = MaskedSelfAttentionRule(masks)
    q = torch.zeros(4, 1, 16, 8)  # [uncond × 2, cond × 2]
    bias = rule.bias("a", q, q)
    one = MaskedSelfAttentionRule(masks[1]).bias("a", q[:1], q[:1])
    assert bias.shape == (4, 1, 16, 16) and torch.equal(bias[1], bias[3]) and torch.equal(bias[3], one[0])
    with pytest.raises(ValueError, match="multiple"):
        rule.bias("a", torch.zeros(3, 1, 16, 8), torch.zeros(3, 1, 16, 8))


@pytest.mark.parametrize("grid", ["any", "half"])
@pytest.mark.parametrize(("height", "width"), [(64, 64), (40, 56), (72, 24)])
def test_mask_to_tokens_matches_blocks_at_every_unet_resolution(grid, height, width):
    mask = random_mask(height, width, seed=height + width)
    rows, cols, side = math.ceil(height / 8), math.ceil(width / 8), 8
    for _ in range(3):  # the latent, then each ceil-halving down block
        assert token_grid(height, width, rows * cols) == (rows, cols, side)
        tokens = mask_to_tokens(torch.from_numpy(mask)[None], rows * cols, grid=grid)[0].numpy()
        assert np.array_equal(tokens, reference_token_mask(mask, rows, cols, side, grid))
        rows, cols, side = math.ceil(rows / 2), math.ceil(cols / 2), side * 2


def test_any_pixel_marks_a_token_half_needs_half_its_area():
    mask = torch.zeros(1, 16, 16)
    mask[0, 0, 0] = 1  # one pixel of token 0
    mask[0, 8:12, 8:16] = 1  # exactly half of token 3
    assert mask_to_tokens(mask, 4, grid="any").tolist() == [[True, False, False, True]]
    assert mask_to_tokens(mask, 4, grid="half").tolist() == [[False, False, False, True]]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="no UNet resolution"):
        token_grid(64, 64, 50)
    with pytest.raises(ValueError, match="rule"):
        MaskedSelfAttentionRule(torch.zeros(8, 8), rule="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grid"):
        MaskedSelfAttentionRule(torch.zeros(8, 8), grid="most")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="impl"):
        MaskedSelfAttentionRule(torch.zeros(8, 8), impl="flash")  # type: ignore[arg-type]
    q = torch.zeros(1, 1, 1, 8)
    with pytest.raises(ValueError, match="self-attention"):
        MaskedSelfAttentionRule(torch.ones(8, 8)).bias("x", q, torch.zeros(1, 1, 77, 8))


# ------------------------------------------------------------------------------------------------------------
# On the tiny SD2-Inpaint UNet
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def unet():
    return copy.deepcopy(tiny_pipeline("sd2-inpaint").unet)


def run(unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample, context = torch.randn(2, 9, 16, 16, generator=g), torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        return unet(sample, torch.tensor(500), encoder_hidden_states=context).sample


@pytest.mark.parametrize(("rule", "impl"), [("sra", "bias"), ("key_mask", "bias"), ("sra", "split")])
def test_processors_change_the_unet_for_the_call_only(unet, rule, impl):
    untouched = copy.deepcopy(unet)
    before = unet.attn_processors
    mask = torch.zeros(128, 128)
    mask[32:96, 40:90] = 1
    factory = processor_factory(MaskedSelfAttentionRule(mask, rule=rule, impl=impl))
    kind = SplitSelfAttnProcessor if impl == "split" else MaskedSelfAttnProcessor
    with installed_processors(unet, LayerSelector(kind="self"), factory=factory) as installed:
        assert all(isinstance(p, kind) for p in installed.values())
        assert all(k.endswith("attn1.processor") for k in installed)
        during = run(unet)
    after = unet.attn_processors
    assert all(after[k] is before[k] for k in before)
    assert not torch.equal(during, run(untouched))
    assert torch.equal(run(unet), run(untouched))

"""erasekit.diffusion.attention: layer selection, install/restore, the explicit processor, the attention
store."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from erasekit.diffusion.attention import (
    AttentionStore,
    ExplicitAttnProcessor,
    LayerSelector,
    installed_processors,
)
from erasekit.testing import tiny_pipeline

# fp32 tolerance between the explicit softmax path and SDPA (measured: ≤ 7e-7 on the tiny UNet's output).
FP32 = {"rtol": 1e-5, "atol": 1e-6}

DOWN, MID, UP0, UP1 = ("down_blocks.1.attentions.0", "mid_block.attentions.0", "up_blocks.0.attentions.0",
                       "up_blocks.0.attentions.1")


def key(block: str, attn: str) -> str:
    return f"{block}.transformer_blocks.0.{attn}.processor"


@pytest.fixture(scope="module")
def unet():
    return copy.deepcopy(tiny_pipeline("sd15").unet)  # a private copy: the cached pipeline is shared


@pytest.fixture(scope="module")
def unet_inputs():
    g = torch.Generator().manual_seed(0)
    # 16×16 latents: 64 tokens in the attention blocks of the tiny UNet (8×8 after its one downsampling)
    return torch.randn(2, 4, 16, 16, generator=g), torch.tensor(500), torch.randn(2, 77, 32, generator=g)


def run(unet, inputs):
    sample, t, context = inputs
    with torch.no_grad():
        return unet(sample, t, encoder_hidden_states=context).sample


def explicit(store=None, rule=None):
    return lambda layer: ExplicitAttnProcessor(layer, rule=rule, store=store)


# ----------------------------------------------------------------------------------------------------------
# Selection
# ----------------------------------------------------------------------------------------------------------
def test_selector_picks_exactly_the_layers_asked_for_in_forward_order(unet):
    assert LayerSelector(kind="self").select(unet) == [key(b, "attn1") for b in (DOWN, MID, UP0, UP1)]
    assert LayerSelector(kind="cross").select(unet) == [key(b, "attn2") for b in (DOWN, MID, UP0, UP1)]
    assert len(LayerSelector().select(unet)) == len(unet.attn_processors) == 8
    assert LayerSelector(kind="self", blocks=("up",)).select(unet) == [key(UP0, "attn1"), key(UP1, "attn1")]
    assert LayerSelector(kind="cross", blocks=("down", "mid")).select(unet) == [key(DOWN, "attn2"),
                                                                                 key(MID, "attn2")]
    assert LayerSelector(blocks=(UP1,)).select(unet) == [key(UP1, "attn1"), key(UP1, "attn2")]
    # indices count the layers of that kind in forward order (down, mid, up), whatever `blocks` keeps
    assert LayerSelector(kind="self", indices=(1, 3)).select(unet) == [key(MID, "attn1"), key(UP1, "attn1")]
    assert LayerSelector(kind="self", blocks=("up",), indices=(1, 2)).select(unet) == [key(UP0, "attn1")]


@pytest.mark.parametrize(("selector", "message"), [
    (LayerSelector(blocks=("upp",)), "no attention layers under"),
    (LayerSelector(kind="self", indices=(4,)), "out of range"),
    (LayerSelector(kind="self", blocks=("down",), indices=(3,)), "selects no attention layer"),
    (LayerSelector(kind="selfish"), "kind must be"),  # type: ignore[arg-type]
])
def test_selector_errors_name_the_problem(unet, selector, message):
    with pytest.raises(ValueError, match=message):
        selector.select(unet)


# ----------------------------------------------------------------------------------------------------------
# Install / restore
# ----------------------------------------------------------------------------------------------------------
def test_install_then_restore_leaves_the_model_bit_identical(unet, unet_inputs):
    before_processors = unet.attn_processors
    before = run(unet, unet_inputs)
    up_self = LayerSelector(kind="self", blocks=("up",))
    chosen = up_self.select(unet)
    with installed_processors(unet, up_self, factory=explicit()) as installed:
        assert sorted(installed) == sorted(chosen)
        now = unet.attn_processors
        for name, processor in now.items():
            if name in chosen:
                assert processor is installed[name] and isinstance(processor, ExplicitAttnProcessor)
                assert processor.layer == name
            else:
                assert processor is before_processors[name]
    after = unet.attn_processors
    assert all(after[name] is before_processors[name] for name in before_processors)
    assert torch.equal(run(unet, unet_inputs), before)


def test_one_shared_processor_and_restore_on_exception(unet):
    before_processors = unet.attn_processors
    shared = AttnProcessor2_0()
    with pytest.raises(RuntimeError, match="boom"), \
            installed_processors(unet, LayerSelector(kind="cross"), processor=shared):
        assert all(unet.attn_processors[k] is shared for k in LayerSelector(kind="cross").select(unet))
        raise RuntimeError("boom")
    assert all(unet.attn_processors[name] is p for name, p in before_processors.items())


def test_install_needs_exactly_one_of_processor_or_factory(unet):
    with pytest.raises(ValueError, match="exactly one"), installed_processors(unet, LayerSelector()):
        pass
    with pytest.raises(ValueError, match="exactly one"), \
            installed_processors(unet, LayerSelector(), processor=AttnProcessor2_0(), factory=explicit()):
        pass


# ----------------------------------------------------------------------------------------------------------
# The explicit processor against diffusers' own
# ----------------------------------------------------------------------------------------------------------
def test_without_rule_or_store_the_unet_output_equals_diffusers(unet, unet_inputs):
    stock = run(unet, unet_inputs)
    with installed_processors(unet, LayerSelector(), factory=explicit()):
        assert torch.equal(run(unet, unet_inputs), stock)  # SDPA path: AttnProcessor2_0's very computation
    with installed_processors(unet, LayerSelector(), factory=explicit(store=AttentionStore())):
        torch.testing.assert_close(run(unet, unet_inputs), stock, **FP32)  # explicit softmax path


@pytest.mark.parametrize("record", [False, True])
def test_processor_follows_attn_processor_semantics(record):
    """Group norm, cross-attention norm, residual, rescale_output_factor and an attention mask, on 4-D
    input."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        attn = Attention(query_dim=16, cross_attention_dim=12, heads=2, dim_head=8, norm_num_groups=4,
                         cross_attention_norm="layer_norm", residual_connection=True,
                         rescale_output_factor=2.0, bias=True)
        hidden = torch.randn(2, 16, 4, 5)
        context = torch.randn(2, 7, 12)
        mask = torch.zeros(2, 1, 7)
        mask[:, :, 5:] = -10000.0  # diffusers' additive padding mask
    with torch.no_grad():
        expected = AttnProcessor2_0()(attn, hidden, context, mask)
        store = AttentionStore() if record else None
        got = ExplicitAttnProcessor("layer", store=store)(attn, hidden, context, mask)
    torch.testing.assert_close(got, expected, **FP32)
    if record:
        assert store is not None and store.maps[0]["layer"][..., 5:].max() < 1e-6  # masked keys get no weight


# ----------------------------------------------------------------------------------------------------------
# The attention store
# ----------------------------------------------------------------------------------------------------------
def layer_inputs(unet, names):
    """A forward pre-hook on each named Attention module captures what it receives."""
    captured: dict[str, tuple] = {}
    handles = []
    for name in names:
        module = unet.get_submodule(name.removesuffix(".processor"))

        def grab(module, args, kwargs, name=name):
            hidden = args[0] if args else kwargs["hidden_states"]
            captured[name] = (hidden, kwargs.get("encoder_hidden_states"))

        handles.append(module.register_forward_pre_hook(grab, with_kwargs=True))
    return captured, handles


def reference_probs(attn, hidden, context):
    """softmax(QKᵀ/√d) from the layer's weights, written out here."""
    context = hidden if context is None else context
    q = torch.nn.functional.linear(hidden, attn.to_q.weight, attn.to_q.bias)
    k = torch.nn.functional.linear(context, attn.to_k.weight, attn.to_k.bias)
    batch, heads = q.shape[0], attn.heads
    d = q.shape[-1] // heads
    q = q.reshape(batch, -1, heads, d).permute(0, 2, 1, 3)
    k = k.reshape(batch, -1, heads, d).permute(0, 2, 1, 3)
    return torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, dim=-1)


def test_captured_maps_equal_softmax_qk_of_the_layer(unet, unet_inputs):
    names = LayerSelector().select(unet)
    store = AttentionStore()
    captured, handles = layer_inputs(unet, names)
    try:
        with installed_processors(unet, LayerSelector(), factory=explicit(store=store)):
            run(unet, unet_inputs)
    finally:
        for handle in handles:
            handle.remove()
    assert set(store.maps) == {0} and set(store.maps[0]) == set(names)
    for name in names:
        attn = unet.get_submodule(name.removesuffix(".processor"))
        with torch.no_grad():
            expected = reference_probs(attn, *captured[name])
        got = store.maps[0][name]
        assert got.device.type == "cpu" and got.shape == (2, attn.heads, 64, 77 if "attn2" in name else 64)
        torch.testing.assert_close(got, expected, **FP32)


def test_store_keeps_only_chosen_layers_and_steps_averaged_over_heads(unet, unet_inputs):
    chosen = LayerSelector(kind="cross", blocks=("up",)).select(unet)
    store = AttentionStore(layers=chosen[:1], steps={1}, average_heads=True)
    full = AttentionStore()
    with installed_processors(unet, LayerSelector(kind="cross"), factory=explicit(store=store)):
        for step in range(3):
            store.step = step
            run(unet, unet_inputs)
    with installed_processors(unet, LayerSelector(kind="cross"), factory=explicit(store=full)):
        run(unet, unet_inputs)
    assert list(store.maps) == [1] and list(store.maps[1]) == chosen[:1]
    torch.testing.assert_close(store.maps[1][chosen[0]], full.maps[0][chosen[0]].mean(dim=1))
    store.clear()
    assert store.maps == {} and store.step == 0


def test_store_can_keep_the_graph_for_guidance(unet, unet_inputs):
    store = AttentionStore(device=None, detach=False)
    sample, t, context = unet_inputs
    sample = sample.clone().requires_grad_(True)
    name = LayerSelector(kind="cross", indices=(0,)).select(unet)
    with installed_processors(unet, LayerSelector(kind="cross", indices=(0,)), factory=explicit(store=store)):
        unet(sample, t, encoder_hidden_states=context)
    (grad,) = torch.autograd.grad(store.maps[0][name[0]][..., 3].sum(), sample)
    assert grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------------------
# Rules: an additive bias, and the fallback for rows with no allowed key
# ----------------------------------------------------------------------------------------------------------
class FixedBias:
    def __init__(self, bias):
        self.bias_tensor = bias
        self.calls: list[tuple[str, tuple, tuple]] = []

    def bias(self, layer, query, key):
        self.calls.append((layer, tuple(query.shape), tuple(key.shape)))
        return self.bias_tensor


def attention_call(rule, store):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        attn = Attention(query_dim=16, heads=2, dim_head=8)
        hidden = torch.randn(2, 6, 16)
    with torch.no_grad():
        out = ExplicitAttnProcessor("self", rule=rule, store=store)(attn, hidden)
        return out, reference_probs(attn, hidden, None), attn, hidden


def test_rule_bias_is_added_to_the_scores():
    bias = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    rule = FixedBias(bias)
    store = AttentionStore()
    recorded, plain, _, _ = attention_call(rule, store)
    assert rule.calls == [("self", (2, 2, 6, 8), (2, 2, 6, 8))]
    # softmax(s + b) = softmax(s)·eᵇ renormalised: an independent way to write the biased probabilities
    expected = plain * bias.exp()
    torch.testing.assert_close(store.maps[0]["self"], expected / expected.sum(-1, keepdim=True), **FP32)
    sdpa, _, _, _ = attention_call(rule, None)  # the same bias through scaled_dot_product_attention
    torch.testing.assert_close(sdpa, recorded, **FP32)


def test_rows_with_no_allowed_key_fall_back_to_standard_attention():
    bias = torch.zeros(1, 1, 6, 6)
    bias[..., :3, :] = float("-inf")        # queries 0–2: every key blocked -> standard attention
    bias[..., 3:, :2] = float("-inf")       # queries 3–5: keys 0–1 blocked
    store = AttentionStore()
    recorded, plain, _attn, _hidden = attention_call(FixedBias(bias), store)
    probs = store.maps[0]["self"]
    assert torch.isfinite(probs).all() and torch.isfinite(recorded).all()
    torch.testing.assert_close(probs[..., :3, :], plain[..., :3, :], **FP32)
    assert probs[..., 3:, :2].max() == 0
    kept = plain[..., 3:, 2:]
    torch.testing.assert_close(probs[..., 3:, 2:], kept / kept.sum(-1, keepdim=True), **FP32)
    sdpa, _, _, _ = attention_call(FixedBias(bias), None)
    assert torch.isfinite(sdpa).all()
    torch.testing.assert_close(sdpa, recorded, **FP32)

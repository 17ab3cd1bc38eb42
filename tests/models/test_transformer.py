"""The Chapter 9 Transformer: shapes, causal masking, the parameter-count formula, each residual wiring."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skiplib.blocks.transformer import WIRINGS, CausalSelfAttention, TransformerBlock
from skiplib.models import count_parameters
from skiplib.models.transformer import Transformer, TransformerConfig, parameter_count


def small(wiring: str = "pre_ln", **kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(**{"vocab_size": 11, "block_size": 16, "n_layer": 3, "n_head": 4,
                                            "n_embd": 32, "wiring": wiring, **kw}))


@pytest.mark.parametrize("wiring", WIRINGS)
def test_logits_shape_no_nan_and_every_parameter_gets_a_gradient(wiring):
    model = small(wiring)
    idx = torch.randint(0, 11, (5, 16), generator=torch.Generator().manual_seed(1))
    logits = model(idx)
    assert logits.shape == (5, 16, 11)
    assert torch.isfinite(logits).all()
    logits.logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    if wiring != "rezero":  # rezero's branches get zero gradient while alpha = 0 (tested below)
        assert all(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("wiring", WIRINGS)
def test_a_future_token_never_changes_an_earlier_output(wiring):
    model = small(wiring).eval()
    if wiring == "rezero":  # open the gates, or every layer is the identity and the test proves nothing
        for block in model.h:
            block.alpha_1.data.fill_(0.7)
            block.alpha_2.data.fill_(0.7)
    idx = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(2))
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 3) % 11
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_attention_mask_is_what_makes_it_causal():
    attn = CausalSelfAttention(16, 2, 8)
    attn.causal.fill_(True)  # a bidirectional layer: now a later token does change an earlier output
    x = torch.randn(1, 8, 16)
    y = x.clone()
    y[:, -1] += 1.0
    assert not torch.allclose(attn(x)[:, 0], attn(y)[:, 0])


@pytest.mark.parametrize("wiring", WIRINGS)
@pytest.mark.parametrize("n_embd, n_layer, vocab, block", [(32, 3, 11, 16), (64, 1, 5, 9), (48, 6, 101, 33)])
def test_parameter_count_formula(wiring, n_embd, n_layer, vocab, block):
    config = TransformerConfig(vocab, block, n_layer, 4, n_embd, wiring)
    assert count_parameters(Transformer(config)) == parameter_count(config)


def test_parameter_count_of_a_known_size():
    # one layer, C = 64: attention 4*64^2 + 4*64, MLP 8*64^2 + 5*64, two LayerNorms 4*64
    config = TransformerConfig(vocab_size=10, block_size=8, n_layer=1, n_head=4, n_embd=64)
    layer = 4 * 64 * 64 + 4 * 64 + 8 * 64 * 64 + 5 * 64 + 4 * 64
    assert parameter_count(config) == 10 * 64 + 8 * 64 + layer + 2 * 64 + 10 * 64 == 51_904


def _sublayers_as_functions(block: TransformerBlock):
    return block.attn, block.mlp, block.ln_1, block.ln_2


def test_each_wiring_computes_its_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 32)
    pre = TransformerBlock(32, 4, 8, "pre_ln")
    post = TransformerBlock(32, 4, 8, "post_ln")
    none = TransformerBlock(32, 4, 8, "none")
    for other in (post, none):
        other.load_state_dict(pre.state_dict())
    attn, mlp, ln_1, ln_2 = _sublayers_as_functions(pre)
    with torch.no_grad():
        h = x + attn(ln_1(x))
        assert torch.allclose(pre(x), h + mlp(ln_2(h)), atol=1e-6)
        h = ln_1(x + attn(x))
        assert torch.allclose(post(x), ln_2(h + mlp(h)), atol=1e-6)
        assert torch.allclose(none(x), mlp(ln_2(attn(ln_1(x)))), atol=1e-6)


def test_rezero_starts_as_the_identity_and_has_no_layernorm():
    block = TransformerBlock(32, 4, 8, "rezero")
    x = torch.randn(2, 6, 32)
    assert torch.equal(block(x), x)
    assert not any(isinstance(m, nn.LayerNorm) for m in block.modules())
    with torch.no_grad():
        block.alpha_1.fill_(0.5)
        block.alpha_2.fill_(0.25)
        h = x + 0.5 * block.attn(x)
        assert torch.allclose(block(x), h + 0.25 * block.mlp(h), atol=1e-6)
    block.alpha_1.data.zero_()
    block.alpha_2.data.zero_()
    block(x).sum().backward()
    assert block.alpha_1.grad.abs() > 0 and block.alpha_2.grad.abs() > 0
    assert all(p.grad.abs().sum() == 0 for n, p in block.named_parameters() if not n.startswith("alpha"))


@pytest.mark.parametrize("wiring", ["pre_ln", "rezero"])
def test_branches_add_up_to_the_block(wiring):
    block = TransformerBlock(32, 4, 8, wiring)
    if wiring == "rezero":
        block.alpha_1.data.fill_(0.3)
        block.alpha_2.data.fill_(-0.6)
    x = torch.randn(2, 6, 32)
    with torch.no_grad():
        out, a, m = block.branches(x)
        assert torch.equal(out, block(x))
        assert torch.allclose(out, x + a + m, atol=1e-6)


def test_branches_refuses_a_wiring_that_does_not_add():
    with pytest.raises(ValueError, match="post_ln"):
        TransformerBlock(32, 4, 8, "post_ln").branches(torch.randn(1, 2, 32))


def test_final_layernorm_only_where_the_stream_is_unnormalised():
    assert isinstance(small("pre_ln").ln_f, nn.LayerNorm)
    assert isinstance(small("none").ln_f, nn.LayerNorm)
    assert isinstance(small("post_ln").ln_f, nn.Identity)
    assert isinstance(small("rezero").ln_f, nn.Identity)


@pytest.mark.parametrize("kwargs, message", [
    ({"wiring": "sandwich"}, "wiring must be one of pre_ln, post_ln, none, rezero"),
    ({"n_embd": 30}, "n_embd must be divisible by n_head"),
    ({"n_layer": 0}, "n_layer"),
    ({"vocab_size": -1}, "vocab_size"),
])
def test_bad_config_says_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig(**{"vocab_size": 11, "block_size": 16, "n_layer": 2, "n_head": 4, "n_embd": 32, **kwargs})


def test_too_long_or_misshapen_input_is_refused():
    model = small()
    with pytest.raises(ValueError, match="longer than block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[batch, steps\]"):
        model(torch.zeros(17, dtype=torch.long))

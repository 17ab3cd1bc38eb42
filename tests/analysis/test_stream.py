"""Chapter 9's residual-stream measurements: exact decomposition, per-layer gradients, lesions, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skiplib.analysis.stream import delete_layer_losses, layer_grad_norms, stream_norms, stream_shares
from skiplib.data.sequences import SortTask
from skiplib.models.transformer import Transformer, TransformerConfig
from skiplib.train.sequence import masked_loss

TASK = SortTask(4, 5)
BATCH = TASK.batch(16, seed=0)


def model(wiring: str = "pre_ln", n_layer: int = 3) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(TASK.vocab_size, TASK.block_size, n_layer, 2, 16, wiring))


@pytest.mark.parametrize("wiring", ["pre_ln", "rezero"])
def test_shares_sum_to_one_and_the_parts_rebuild_the_stream(wiring):
    m = model(wiring)
    if wiring == "rezero":
        for block in m.h:
            block.alpha_1.data.fill_(0.4)
            block.alpha_2.data.fill_(0.2)
    shares = stream_shares(m, BATCH[0])
    assert shares["attn"].shape == shares["mlp"].shape == (3,)
    total = shares["embedding"] + shares["attn"].sum() + shares["mlp"].sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)
    assert shares["residual_error"].item() < 1e-4


def test_rezero_at_initialisation_is_all_embedding():
    shares = stream_shares(model("rezero"), BATCH[0])
    assert shares["embedding"].item() == pytest.approx(1.0)
    assert shares["attn"].abs().max() == 0 and shares["mlp"].abs().max() == 0


def test_stream_norms_match_a_hand_loop():
    m = model().eval()
    with torch.no_grad():
        x = m.embed(BATCH[0])
        expected = [x.norm(dim=-1).mean()]
        for block in m.h:
            x = block(x)
            expected.append(x.norm(dim=-1).mean())
    assert torch.allclose(stream_norms(m, BATCH[0]), torch.stack(expected))


def test_post_ln_stream_is_renormalised_after_every_layer():
    norms = stream_norms(model("post_ln"), BATCH[0])
    assert torch.allclose(norms[1:], torch.full((3,), 16 ** 0.5), rtol=1e-3)  # LayerNorm: unit variance, C = 16


def test_layer_grad_norms_equal_autograd_and_leave_no_grads():
    m = model()
    got = layer_grad_norms(m, *BATCH)
    assert all(p.grad is None for p in m.parameters())
    masked_loss(m(BATCH[0]), BATCH[1], BATCH[2]).backward()
    for i, block in enumerate(m.h):
        expected = torch.cat([p.grad.flatten() for p in block.parameters()]).norm()
        assert got[i].item() == pytest.approx(expected.item(), rel=1e-5)


def test_deleting_a_layer_that_does_nothing_changes_nothing():
    m = model()
    with torch.no_grad():  # make layer 1 add nothing: its output projections are zero
        for lin in (m.h[1].attn.c_proj, m.h[1].mlp.c_proj):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
    full, without = delete_layer_losses(m, *BATCH)
    assert without.shape == (3,)
    assert without[1].item() == pytest.approx(full, abs=1e-6)
    assert without[0].item() != pytest.approx(full, abs=1e-6)


def test_what_is_not_a_transformer_or_has_no_stream_is_refused():
    with pytest.raises(ValueError, match="Transformer"):
        stream_norms(nn.Linear(2, 2), BATCH[0])
    with pytest.raises(ValueError, match="post_ln model has no additive stream"):
        stream_shares(model("post_ln"), BATCH[0])

"""He et al. (2016b)'s five residual units: each computes its order, the clean-path ones are the identity
when their branch is silenced, and the two that exist elsewhere in skiplib agree with it exactly."""

from __future__ import annotations

import pytest
import torch

from skiplib.blocks import BasicBlock, PreActBlock
from skiplib.blocks.orders import ORDERS, OrderedBlock
from skiplib.models import count_parameters, create_model
from skiplib.models.orders import OrderNet

CLEAN = {"relu_before_add", "relu_only_preact", "full_preact"}  # nothing on the shortcut path


def signed(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))  # negative values too


@pytest.mark.parametrize("order", ORDERS)
def test_silenced_block_is_the_identity_only_where_the_path_is_clean(order):
    block = OrderedBlock(16, 16, 1, order)
    block.zero_init_last()
    block.eval()
    x = signed(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), x) == (order in CLEAN)


@pytest.mark.parametrize("order", ORDERS)
def test_downsampling_shapes_and_every_parameter_learns(order):
    block = OrderedBlock(16, 32, 2, order)
    out = block(signed(2, 16, 8, 8))
    assert out.shape == (2, 32, 4, 4)
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


def test_relu_before_add_can_only_add():
    block = OrderedBlock(16, 16, 1, "relu_before_add").eval()
    x = signed(2, 16, 8, 8)
    with torch.no_grad():
        assert (block(x) - x).min() >= 0  # the branch ends in a ReLU: it never subtracts


@pytest.mark.parametrize("order, reference", [
    ("original", lambda: BasicBlock(16, 32, 2, "identity")),
    ("full_preact", lambda: PreActBlock(16, 32, 2, "identity")),
])
def test_original_and_full_preact_are_skiplibs_blocks(order, reference):
    torch.manual_seed(0)
    ref = reference()
    for m in ref.modules():  # non-trivial BN statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    mine = OrderedBlock(16, 32, 2, order)
    mine.load_state_dict(ref.state_dict(), strict=True)
    x = signed(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.equal(mine.eval()(x), ref.eval()(x))


@pytest.mark.parametrize("order", ORDERS)
def test_order_nets_classify_and_original_has_resnets_parameters(order):
    net = OrderNet(20, order)
    assert net(signed(3, 3, 16, 16)).shape == (3, 10)
    final_bn = 2 * 64 if order in ("relu_only_preact", "full_preact") else 0  # one BN-ReLU after the last block
    # full pre-activation normalises a downsampling block's input: 16, not 32, channels (layer2), 32, not 64 (layer3)
    narrower = 2 * (32 - 16) + 2 * (64 - 32) if order == "full_preact" else 0
    assert count_parameters(net) == count_parameters(create_model("resnet20")) + final_bn - narrower


def test_bad_order_says_what_is_allowed():
    with pytest.raises(ValueError, match="order must be one of original, bn_after_add"):
        OrderedBlock(16, 16, 1, "sandwich")
    with pytest.raises(ValueError, match="6n\\+2"):
        OrderNet(21)

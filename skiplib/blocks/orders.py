"""Where the activation goes: the five residual units of He et al. (2016b), Fig. 4 (Chapter 4).

The same two 3x3 convolutions, two batch norms and two ReLUs, arranged five ways around the addition:

* ``original``: conv-BN-ReLU-conv-BN, add, ReLU (He et al. 2016a): a ReLU sits on the shortcut path.
* ``bn_after_add``: conv-BN-ReLU-conv, add, BN, ReLU: a BN *and* a ReLU on the path.
* ``relu_before_add``: conv-BN-ReLU-conv-BN-ReLU, add: the path is clean, but the branch can only add
  non-negative values.
* ``relu_only_preact``: ReLU-conv-BN-ReLU-conv-BN, add: clean path, the last BN is not followed by a ReLU.
* ``full_preact``: BN-ReLU-conv-BN-ReLU-conv, add (:class:`~skiplib.blocks.preact.PreActBlock`): clean path.

Shortcuts are option A (:class:`~skiplib.blocks.residual.PadShortcut`) where the shape changes, as in
the CIFAR nets, so that the five differ only in the order of their operations.
"""

from __future__ import annotations

import torch
from torch import nn

from skiplib.blocks.residual import PadShortcut, conv3x3
from skiplib.checks import check_positive_ints

ORDERS = ("original", "bn_after_add", "relu_before_add", "relu_only_preact", "full_preact")
PRE_ACTIVATION = ("relu_only_preact", "full_preact")  # the orders whose blocks start with an activation


def check_order(order: str) -> str:
    """``order`` if it is one of :data:`ORDERS`, else a ValueError naming them."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
    return order


class OrderedBlock(nn.Module):
    """A residual unit of He et al. (2016b) Fig. 4 with its BN and ReLU placed as ``order`` says (Chapter 4)."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, order: str = "full_preact") -> None:
        super().__init__()
        check_positive_ints(in_channels=in_channels, out_channels=out_channels, stride=stride)
        self.order = check_order(order)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.conv2 = conv3x3(out_channels, out_channels)
        # full pre-activation normalises the block's input; every other order normalises a conv output
        self.bn1 = nn.BatchNorm2d(in_channels if order == "full_preact" else out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        same = stride == 1 and in_channels == out_channels
        self.downsample = None if same else PadShortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        if self.order == "full_preact":
            out = self.conv1(self.relu(self.bn1(x)))
            out = self.conv2(self.relu(self.bn2(out)))
            return out + identity
        if self.order == "relu_only_preact":
            out = self.bn1(self.conv1(self.relu(x)))
            out = self.bn2(self.conv2(self.relu(out)))
            return out + identity
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out)
        if self.order == "bn_after_add":
            return self.relu(self.bn2(out + identity))
        out = self.bn2(out)
        if self.order == "relu_before_add":
            return self.relu(out) + identity
        return self.relu(out + identity)  # original

    @torch.no_grad()
    def zero_init_last(self) -> None:
        """Silence the branch: zero the last conv (its output, and anything normalised from it before the
        addition, is then zero), so the block computes only what its shortcut path does to x."""
        nn.init.zeros_(self.conv2.weight)
        if self.order != "bn_after_add":  # here bn2 acts on the sum, not on the branch
            nn.init.zeros_(self.bn2.bias)

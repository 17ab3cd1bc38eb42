"""Convolutional highway networks (Srivastava et al. 2015), taught in Chapter 3.

* :class:`HighwayCifarNet`: the CIFAR ResNet's layout (He et al. 2016, 6n+2 weighted layers)
  with every residual block's two conv layers replaced by two convolutional highway layers;
  Chapter 3 compares it with the ResNet of the same depth at a matched parameter count.
* :func:`gate_activity`: the transform-gate values T(x) of every highway layer for a batch.

Registry names: ``highway20`` / ``highway32`` / ``highway56``. The thin fully-connected highway
nets of the paper's depth experiment are in :mod:`skiplib.models.fc`.
"""

from __future__ import annotations

import torch
from torch import nn

from skiplib.blocks.highway import DEFAULT_GATE_BIAS, ConvHighwayLayer, check_gate_bias
from skiplib.models.cifar import check_cifar_net
from skiplib.models.registry import fixed_by_name, register_model
from skiplib.models.stages import make_stage

HIGHWAY_CIFAR_WIDTHS = (11, 23, 45)  # ~ResNet widths / sqrt(2): the gate conv doubles each layer's weights


class HighwayCifarNet(nn.Module):
    """Highway net with the CIFAR ResNet's layout (Chapter 3): conv1-bn1-relu, three stages of
    2n :class:`ConvHighwayLayer` (the first of stages 2 and 3 with stride 2), average pooling, fc.
    ``depth = 6n + 2`` weighted layers on the transform path, like ResNet-(6n+2)."""

    def __init__(self, depth: int = 20, num_classes: int = 10, widths: tuple[int, int, int] = HIGHWAY_CIFAR_WIDTHS,
                 gate_bias: float = DEFAULT_GATE_BIAS, in_channels: int = 3) -> None:
        super().__init__()
        widths, n = check_cifar_net("highway CIFAR net", depth, widths, num_classes, in_channels)
        self.depth = depth
        self.gate_bias = check_gate_bias(gate_bias)
        layer = lambda cin, cout, stride: ConvHighwayLayer(cin, cout, stride, self.gate_bias)  # noqa: E731
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        # 2n highway layers per stage: each stands for one conv layer of the ResNet's n two-conv blocks
        self.layer1 = make_stage(layer, widths[0], widths[0], 2 * n, 1)
        self.layer2 = make_stage(layer, widths[0], widths[1], 2 * n, 2)
        self.layer3 = make_stage(layer, widths[1], widths[2], 2 * n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def highway_layers(model: nn.Module) -> list[nn.Module]:
    """The highway layers of ``model`` (anything with a ``transform_gate`` method), in forward order."""
    return [m for m in model.modules() if hasattr(m, "transform_gate")]


@torch.no_grad()
def gate_activity(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Transform-gate values T(x) of every highway layer of ``model`` on the batch ``x``
    (one tensor per layer, shaped like the layer's output), in eval mode. Chapter 3, Fig. 2 of
    the paper: 0 means the layer carries its input, 1 means it transforms it."""
    layers = highway_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no highway layers (no module with transform_gate)")
    gates: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda m, inp, out: gates.append(m.transform_gate(inp[0]).detach()))
             for m in layers]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return gates


HIGHWAY_CIFAR_DEPTHS = (20, 32, 56)


def _register_depth(depth: int) -> None:
    # depth is fixed by the name; a closure, not a default argument (``_d=56``) that a caller could override
    hint = f"use create_model('highway<depth>') for depth in {HIGHWAY_CIFAR_DEPTHS}, or HighwayCifarNet(depth=...)"
    register_model(f"highway{depth}")(
        lambda **kw: HighwayCifarNet(**fixed_by_name(f"highway{depth}", kw, hint, depth=depth)))


for _depth in HIGHWAY_CIFAR_DEPTHS:
    _register_depth(_depth)

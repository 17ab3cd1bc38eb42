"""Fully-connected nets.

* :class:`FCNet`: thin fully-connected nets for the depth experiment of Srivastava et al. (2015,
  Fig. 1; Chapter 3): a plain first layer maps the (flattened) input to ``width`` units, then
  ``depth - 1`` highway or plain layers, then a linear classifier. Highway layers of 50 units and
  plain layers of 71 units have about the same number of parameters (5,100 vs 5,112), as in the
  paper. No batch normalisation, as in the paper.
* :class:`ShatterNet`: Balduzzi et al.'s (2017) net on 1-D inputs for the shattered-gradients
  experiment (Chapter 8), plain or residual, with batch norm.

Registry names: ``highway_fc`` and ``plain_fc`` (``depth``, ``width``, ``in_features``,
``gate_bias`` keywords).
"""

from __future__ import annotations

import torch
from torch import nn

from skiplib.blocks.highway import DEFAULT_GATE_BIAS, HighwayLayer, check_gate_bias
from skiplib.checks import check_positive_ints
from skiplib.models.registry import fixed_by_name, register_model

FC_KINDS = ("highway", "plain")
FC_WIDTHS = {"highway": 50, "plain": 71}  # the paper's thin layers: ~5,000 parameters each


class PlainLayer(nn.Module):
    """y = relu(H x + b_H), He-initialised: the plain counterpart of a highway layer (Chapter 3)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.H = nn.Linear(in_features, out_features)
        nn.init.kaiming_normal_(self.H.weight, nonlinearity="relu")
        nn.init.zeros_(self.H.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.H(x))


class FCNet(nn.Module):
    """A thin fully-connected net of ``depth`` hidden layers: ``stem`` (plain), ``depth - 1``
    highway or plain ``layers``, and the classifier ``fc``. Inputs of any shape [N, ...] are
    flattened. Chapter 3's depth experiment."""

    def __init__(self, depth: int = 10, kind: str = "highway", width: int | None = None, in_features: int = 192,
                 num_classes: int = 10, gate_bias: float = DEFAULT_GATE_BIAS) -> None:
        super().__init__()
        if kind not in FC_KINDS:
            raise ValueError(f"unknown kind {kind!r}: allowed values are {', '.join(map(repr, FC_KINDS))}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 2:
            raise ValueError(f"depth (number of hidden layers) must be an int >= 2, got {depth!r}")
        width = FC_WIDTHS[kind] if width is None else width
        check_positive_ints(width=width, in_features=in_features, num_classes=num_classes)
        self.depth, self.kind, self.width = depth, kind, width
        self.gate_bias = check_gate_bias(gate_bias)
        self.stem = PlainLayer(in_features, width)
        if kind == "highway":
            layers = [HighwayLayer(width, gate_bias) for _ in range(depth - 1)]
        else:
            layers = [PlainLayer(width, width) for _ in range(depth - 1)]
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = self.stem(x)
        x = self.layers(x)
        return self.fc(x)


class ShatterNet(nn.Module):
    """A fully connected ReLU net on 1-D inputs, for the shattered-gradients experiment
    (Balduzzi et al. 2017, Fig. 1; Chapter 8): ``depth`` hidden layers of ``width`` units with
    batch norm, plain (x -> relu(bn(Wx))) or residual (x -> x + W relu(bn(x)))."""

    def __init__(self, depth: int, width: int = 200, residual: bool = False, in_features: int = 1) -> None:
        super().__init__()
        check_positive_ints(depth=depth, width=width, in_features=in_features)
        self.residual = residual
        self.inp = nn.Linear(in_features, width)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.norms = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(depth))
        self.out = nn.Linear(width, 1)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for layer, bn in zip(self.layers, self.norms):
            if self.residual:
                h = h + layer(torch.relu(bn(h)))
            else:
                h = torch.relu(bn(layer(h)))
        return self.out(h)


_FC_HINT = "use create_model('highway_fc') or create_model('plain_fc'), or FCNet(kind=...)"
register_model("highway_fc")(lambda **kw: FCNet(**fixed_by_name("highway_fc", kw, _FC_HINT, kind="highway")))
register_model("plain_fc")(lambda **kw: FCNet(**fixed_by_name("plain_fc", kw, _FC_HINT, kind="plain")))

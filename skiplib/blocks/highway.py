"""Highway layers (Srivastava, Greff & Schmidhuber 2015), taught in Chapter 3.

A highway layer mixes a transform H(x) with its own input, weighted by a learned
*transform gate* T(x) = sigmoid(W_T x + b_T):

    y = H(x) * T(x) + x * (1 - T(x))

The gate bias b_T starts negative (the paper used -1 ... -3, deeper nets more negative), so a
fresh layer mostly *carries* its input: a deep highway net starts close to a shallow one and
the gradient reaches every layer through the carry path, as an LSTM's cell state carries it
through time. With b_T -> -inf the layer is the identity, with b_T -> +inf it is H(x).

* :class:`HighwayLayer`: the fully-connected layer (H = ReLU(Linear), T = Linear + sigmoid);
* :class:`FreeCarryHighwayLayer`: the same with a carry gate C of its own (y = H T + x C);
* :class:`ConvHighwayLayer`: the convolutional layer (H = ReLU(BN(conv3x3)), T = conv3x3 +
  sigmoid), with a parameter-free zero-padding carry where the shape changes (like option A).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from skiplib.blocks.residual import PadShortcut, conv3x3
from skiplib.checks import check_positive_ints

DEFAULT_GATE_BIAS = -2.0  # inside the paper's range -1 ... -3


def check_gate_bias(gate_bias: float) -> float:
    """Return ``gate_bias`` as a float if it is a finite number, else raise a ValueError."""
    if isinstance(gate_bias, bool) or not isinstance(gate_bias, (int, float)) or not math.isfinite(gate_bias):
        raise ValueError(f"gate_bias must be a finite number (the paper used -1 ... -3), got {gate_bias!r}")
    return float(gate_bias)


class HighwayLayer(nn.Module):
    """Fully-connected highway layer: y = relu(H x + b_H) * T(x) + x * (1 - T(x)), T = sigmoid(W_T x + b_T).

    Chapter 3. ``H`` and ``T`` are ``nn.Linear(features, features)``; ``H`` gets He
    initialisation, ``T.bias`` starts at ``gate_bias`` (negative: carry by default).
    """

    def __init__(self, features: int, gate_bias: float = DEFAULT_GATE_BIAS) -> None:
        super().__init__()
        check_positive_ints(features=features)
        self.gate_bias = check_gate_bias(gate_bias)
        self.H = nn.Linear(features, features)
        self.T = nn.Linear(features, features)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He-normal H weights, zero H bias; PyTorch's default (small) T weights, so at the start the
        bias ``gate_bias`` sets T(x)."""
        nn.init.kaiming_normal_(self.H.weight, nonlinearity="relu")
        nn.init.zeros_(self.H.bias)
        nn.init.constant_(self.T.bias, self.gate_bias)

    def transform_gate(self, x: torch.Tensor) -> torch.Tensor:
        """T(x) = sigmoid(W_T x + b_T), in (0, 1); 0 means "carry x", 1 means "use H(x)"."""
        return torch.sigmoid(self.T(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.H(x))
        t = self.transform_gate(x)
        out = h * t
        out = out + x * (1 - t)  # the carry path; not in-place (hooks may hold `out`)
        return out

    def extra_repr(self) -> str:
        return f"gate_bias={self.gate_bias}"


class FreeCarryHighwayLayer(HighwayLayer):
    """The paper's general highway layer, y = H(x) * T(x) + x * C(x), with a *carry gate*
    C(x) = sigmoid(W_C x + b_C) of its own instead of C = 1 - T (Srivastava et al. 2015, eq. 2;
    they then chose C = 1 - T). Chapter 3's exercise: ``C.bias`` starts at ``carry_bias``, positive,
    so that a fresh layer carries its input; nothing ties T + C to 1, so the layer can also shrink
    the carried signal (both gates closed) or add H on top of a full carry (both open).
    """

    def __init__(self, features: int, gate_bias: float = DEFAULT_GATE_BIAS,
                 carry_bias: float = -DEFAULT_GATE_BIAS) -> None:
        self.carry_bias = check_gate_bias(carry_bias)
        super().__init__(features, gate_bias)
        self.C = nn.Linear(features, features)
        nn.init.constant_(self.C.bias, self.carry_bias)

    def carry_gate(self, x: torch.Tensor) -> torch.Tensor:
        """C(x) = sigmoid(W_C x + b_C), in (0, 1): how much of x is carried."""
        return torch.sigmoid(self.C(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.H(x)) * self.transform_gate(x) + x * self.carry_gate(x)

    def extra_repr(self) -> str:
        return f"gate_bias={self.gate_bias}, carry_bias={self.carry_bias}"


class ConvHighwayLayer(nn.Module):
    """Convolutional highway layer (Chapter 3): H = relu(BN(conv3x3)), T = sigmoid(conv3x3 + b_T).

    Where the shape changes (``stride`` > 1 or more channels) the carried input is subsampled
    and zero-padded (``PadShortcut``, like the ResNets' option A), so the carry path has no
    parameters. Attributes: ``conv``, ``bn`` (the transform H), ``gate`` (T, with bias),
    ``shortcut`` (None or the padding carry).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 gate_bias: float = DEFAULT_GATE_BIAS) -> None:
        super().__init__()
        check_positive_ints(in_channels=in_channels, out_channels=out_channels)
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        self.gate_bias = check_gate_bias(gate_bias)
        self.conv = conv3x3(in_channels, out_channels, stride)
        self.bn = nn.BatchNorm2d(out_channels)
        self.gate = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=True)
        same = stride == 1 and in_channels == out_channels
        self.shortcut = None if same else PadShortcut(in_channels, out_channels, stride)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He-normal transform conv (fan_out, as the ResNets), BN scale 1 / shift 0; the gate conv keeps
        PyTorch's default (small) weights, so at the start its bias ``gate_bias`` sets T(x)."""
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        nn.init.constant_(self.gate.bias, self.gate_bias)

    def transform_gate(self, x: torch.Tensor) -> torch.Tensor:
        """T(x) per output channel and pixel, in (0, 1)."""
        return torch.sigmoid(self.gate(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        t = self.transform_gate(x)
        carry = x if self.shortcut is None else self.shortcut(x)
        out = h * t
        out = out + carry * (1 - t)
        return out

    def extra_repr(self) -> str:
        return f"gate_bias={self.gate_bias}"

"""Dense layer, dense block and transition layer (Huang et al. 2017), taught in Chapter 5.

Where a residual block *adds* its input to what it computes, a dense layer *concatenates*:
layer ``l`` of a dense block sees the block input and the ``growth_rate`` (k) new feature maps
of every earlier layer, ``k0 + (l - 1) * k`` channels, and contributes k new ones.

* :class:`DenseLayer`: BN-ReLU-Conv1x1 bottleneck to ``bn_size * k`` channels, then
  BN-ReLU-Conv3x3 to k channels (DenseNet-B); with ``bn_size=None`` just BN-ReLU-Conv3x3
  (the plain DenseNet). Like torchvision's ``_DenseLayer`` it returns only its k *new*
  features; the block concatenates. ``memory_efficient=True`` recomputes the concatenation,
  BN and ReLU (and the bottleneck conv) in the backward pass instead of storing them
  (gradient checkpointing, Pleiss et al. 2017): same outputs, same gradients, same BN running
  statistics, memory linear instead of quadratic in the number of layers.
* :class:`DenseBlock`: ``num_layers`` dense layers named ``denselayer1..``; returns the
  concatenation of its input and all new features.
* :class:`Transition`: BN-ReLU-Conv1x1 to ``floor(compression * channels)`` channels, then a
  2x2 average pool (the "C" in DenseNet-BC when ``compression < 1``).

Attribute names follow ``torchvision.models.densenet`` so that checkpoints interchange.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from skiplib.checks import check_positive_ints


def dense_channels(in_channels: int, growth_rate: int, layer: int) -> int:
    """Input channels of dense layer ``layer`` (1-based) of a block: k0 + (l - 1) * k (Chapter 5)."""
    return in_channels + (layer - 1) * growth_rate


class DenseLayer(nn.Module):
    """One dense layer: [BN-ReLU-Conv1x1(bn_size*k)]-BN-ReLU-Conv3x3(k) on the concatenation of its inputs.

    ``forward`` takes a tensor or a list of tensors (the block input and the earlier layers'
    outputs) and returns the ``growth_rate`` new feature maps only.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int | None = 4, drop_rate: float = 0.0,
                 memory_efficient: bool = False) -> None:
        super().__init__()
        check_positive_ints(in_channels=in_channels, growth_rate=growth_rate)
        if bn_size is not None:
            check_positive_ints(**{"bn_size (None for no bottleneck)": bn_size})
        if not 0.0 <= float(drop_rate) < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        self.bottleneck = bn_size is not None
        self.in_channels, self.growth_rate = in_channels, growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()  # not in-place (torchvision's is): hooks may hold the BN output
        if self.bottleneck:
            inner = bn_size * growth_rate
            self.conv1 = nn.Conv2d(in_channels, inner, kernel_size=1, stride=1, bias=False)
            self.norm2 = nn.BatchNorm2d(inner)
            self.relu2 = nn.ReLU()
            self.conv2 = nn.Conv2d(inner, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop_rate = float(drop_rate)
        self.memory_efficient = bool(memory_efficient)

    def _norm1(self, x: Tensor, update_stats: bool) -> Tensor:
        if update_stats or not self.norm1.training:
            return self.norm1(x)
        # the recomputation in the backward pass: same batch statistics, but momentum 0, so the
        # running statistics, updated once by the forward call, stay as they are
        n = self.norm1
        return F.batch_norm(x, n.running_mean, n.running_var, n.weight, n.bias, True, 0.0, n.eps)

    def bn_function(self, inputs: list[Tensor], update_stats: bool = True) -> Tensor:
        """The part whose size grows with the layer index: concatenate, BN, ReLU, then the
        bottleneck 1x1 conv (or, without a bottleneck, the 3x3 conv)."""
        x = torch.cat(inputs, 1)
        x = self._norm1(x, update_stats)
        x = self.relu1(x)
        return self.conv1(x)

    def _checkpointed(self, inputs: list[Tensor]) -> Tensor:
        calls = []

        def closure(*tensors: Tensor) -> Tensor:
            calls.append(None)  # first call: the forward pass; later ones: recomputation
            return self.bn_function(list(tensors), update_stats=len(calls) == 1)

        return cp.checkpoint(closure, *inputs, use_reentrant=False)

    def forward(self, x: Tensor | list[Tensor]) -> Tensor:
        inputs = [x] if isinstance(x, Tensor) else list(x)
        if self.memory_efficient and torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
            out = self._checkpointed(inputs)
        else:
            out = self.bn_function(inputs)
        if self.bottleneck:
            out = self.norm2(out)
            out = self.relu2(out)
            out = self.conv2(out)
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out

    def extra_repr(self) -> str:
        return f"bottleneck={self.bottleneck}, memory_efficient={self.memory_efficient}"


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; the output concatenates the input and every layer's k new maps:
    ``in_channels + num_layers * growth_rate`` channels at the input's resolution (Chapter 5)."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int | None = 4,
                 drop_rate: float = 0.0, memory_efficient: bool = False) -> None:
        super().__init__()
        check_positive_ints(num_layers=num_layers)
        for i in range(num_layers):
            layer = DenseLayer(dense_channels(in_channels, growth_rate, i + 1), growth_rate, bn_size, drop_rate,
                               memory_efficient)
            self.add_module(f"denselayer{i + 1}", layer)
        self.in_channels = in_channels
        self.out_channels = in_channels + num_layers * growth_rate

    def set_memory_efficient(self, on: bool = True) -> None:
        """Switch checkpointing on or off in every layer (the weights stay the same)."""
        for layer in self.values():
            layer.memory_efficient = bool(on)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.values():
            new = layer(features)
            features.append(new)
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-Conv1x1 to ``floor(compression * in_channels)`` channels, then 2x2 average pooling:
    halves the resolution between dense blocks and, with ``compression < 1``, the channels too."""

    def __init__(self, in_channels: int, compression: float = 1.0) -> None:
        super().__init__()
        check_positive_ints(in_channels=in_channels)
        if not 0.0 < float(compression) <= 1.0:
            raise ValueError(f"compression (theta) must be in (0, 1], got {compression!r}")
        self.out_channels = transition_channels(in_channels, compression)
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(in_channels, self.out_channels, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


def transition_channels(in_channels: int, compression: float) -> int:
    """Output channels of a transition layer: floor(theta * m), as in torchvision (m // 2 for theta = 0.5)."""
    return max(1, int(math.floor(compression * in_channels + 1e-9)))


def feature_reuse(block: DenseBlock, following: nn.Module | None = None) -> Tensor:
    """Huang et al.'s Fig. 5 for one dense block: entry [s, t] is the mean absolute weight that
    target layer t (1..L; L + 1 is ``following``, the transition's conv or the classifier, if
    given) puts on the maps of source s (0 = the block input, s >= 1 = dense layer s), taken over
    its first conv's (or linear layer's) input channels from that source and normalised so that
    each target's largest entry is 1. Entries with s >= t (no connection) are NaN. Chapter 5."""
    k, k0 = next(iter(block.values())).growth_rate, block.in_channels
    weights = [layer.conv1.weight for layer in block.values()]
    if following is not None:
        w = getattr(following, "conv", following).weight
        if w.shape[1] != block.out_channels:
            raise ValueError(f"the following layer reads {w.shape[1]} channels, the block gives {block.out_channels}")
        weights.append(w)
    n_targets = len(weights)
    out = torch.full((len(block) + 1, n_targets), float("nan"))
    with torch.no_grad():
        for t, w in enumerate(weights):
            per_channel = w.detach().abs().transpose(0, 1).reshape(w.shape[1], -1).mean(1).cpu()
            bounds = [0, k0] + [k0 + k * (s + 1) for s in range(t)]
            for s in range(len(bounds) - 1):
                out[s, t] = per_channel[bounds[s]:bounds[s + 1]].mean()
            out[:, t] /= out[:, t].nan_to_num(0.0).max()
    return out

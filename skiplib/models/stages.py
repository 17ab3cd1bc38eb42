"""What the course's staged nets share (Chapters 1, 3, 4 and 8): a stage of blocks, built once.

The CIFAR ResNets and their plain twins, the pre-activation ResNets, the ImageNet ResNets and
the highway nets all stack their blocks in ``nn.Sequential`` stages named ``layer1, layer2, …``
(torchvision's names). Within a stage only the first block changes the width and the
resolution; :func:`make_stage` builds that pattern. :class:`StagedNet` gives the ResNets the two
methods the chapters use on any of them: ``blocks()`` (the units of lesion studies and
per-block gradient probes) and ``zero_init_last()`` (each block starts as its shortcut).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def make_stage(block: Callable[[int, int, int], nn.Module], in_channels: int, channels: int, blocks: int,
               stride: int, *, expansion: int = 1) -> nn.Sequential:
    """``blocks`` blocks ``block(in_channels, channels, stride)``: the first reads ``in_channels``
    with ``stride`` (where a stage widens and halves the resolution), the others read the first
    one's output, ``channels * expansion`` channels (4 for a bottleneck block), with stride 1."""
    layers = [block(in_channels, channels, stride)]
    layers += [block(channels * expansion, channels, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class StagedNet(nn.Module):
    """A net whose blocks sit in the stages named by ``stage_names`` (``layer1..3``; the ImageNet
    ResNet has ``layer4`` too), each block with a ``zero_init_last()`` method."""

    stage_names: tuple[str, ...] = ("layer1", "layer2", "layer3")

    def blocks(self) -> list[nn.Module]:
        """All blocks in forward order."""
        return [b for name in self.stage_names for b in getattr(self, name)]

    def zero_init_last(self) -> None:
        """Zero-init every block's last layer (Goyal et al. 2017): each residual block then starts
        as its shortcut, each plain block as the zero map (see the blocks' ``zero_init_last``)."""
        for block in self.blocks():
            block.zero_init_last()

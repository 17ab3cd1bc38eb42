"""Building blocks, one file per family of skip connection.

``residual``: plain and residual blocks with shortcut options (Chapters 1, 2 and 4).
``bottleneck``: the bottleneck residual block (Chapter 4).
``preact``: the pre-activation residual block (Chapters 4, 7 and 8).
``highway``: fully-connected and convolutional highway layers (Chapter 3).
``dense``: dense layer, dense block and transition layer (Chapter 5).
``unet``: the U-Net parts DoubleConv, Down, Up, OutConv (Chapter 6; residual DoubleConv, Chapter 7).
``transformer``: causal self-attention, the MLP and a Transformer layer whose residual wiring
(pre-LN, post-LN, none, ReZero) is a switch (Chapter 9; imported as ``skiplib.blocks.transformer``).
"""

from skiplib.blocks.bottleneck import Bottleneck
from skiplib.blocks.dense import DenseBlock, DenseLayer, Transition
from skiplib.blocks.highway import ConvHighwayLayer, FreeCarryHighwayLayer, HighwayLayer
from skiplib.blocks.preact import PreActBlock
from skiplib.blocks.residual import (
    SHORTCUTS,
    BasicBlock,
    PadShortcut,
    check_shortcut,
    conv1x1,
    conv3x3,
    he_init_,
    make_shortcut,
)
from skiplib.blocks.unet import DoubleConv, Down, OutConv, Up

__all__ = [
    "SHORTCUTS", "check_shortcut", "BasicBlock", "PadShortcut", "conv1x1", "conv3x3", "he_init_", "make_shortcut",
    "Bottleneck", "PreActBlock", "HighwayLayer", "FreeCarryHighwayLayer", "ConvHighwayLayer", "DenseLayer",
    "DenseBlock", "Transition", "DoubleConv", "Down", "Up", "OutConv",
]

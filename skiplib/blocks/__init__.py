"""Building blocks, one file per family of skip connection.

``residual``: plain and residual blocks with shortcut options (Chapters 1, 2 and 4).
``bottleneck``: the bottleneck and pre-activation residual blocks (Chapter 4).
"""

from skiplib.blocks.bottleneck import Bottleneck, PreActBlock
from skiplib.blocks.residual import (
    check_shortcut,
    SHORTCUTS,
    BasicBlock,
    PadShortcut,
    conv1x1,
    conv3x3,
    he_init_,
    make_shortcut,
)

__all__ = [
    "SHORTCUTS", "check_shortcut", "BasicBlock", "PadShortcut", "conv1x1", "conv3x3", "he_init_", "make_shortcut",
    "Bottleneck", "PreActBlock",
]

"""Building blocks, one file per family of skip connection.

``residual``: plain and residual blocks with shortcut options (Chapters 1, 2 and 4).
"""

from skiplib.blocks.residual import (
    check_shortcut,
    SHORTCUTS,
    BasicBlock,
    PadShortcut,
    conv1x1,
    conv3x3,
    make_shortcut,
)

__all__ = [
    "SHORTCUTS", "check_shortcut", "BasicBlock", "PadShortcut", "conv1x1", "conv3x3", "make_shortcut",
]

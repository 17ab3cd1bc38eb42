"""Box-and-arrow diagrams that explain an idea before any code runs (Chapters 2, 3, 4 and 6).

Every function draws one picture on a new figure and returns it; the caller shows it, glues it
into the book or closes it. Only matplotlib is needed: the diagrams take no data, so a notebook
can draw them before it has trained anything. They follow the active matplotlib style
(:func:`skiplib.plots.use_style`), which the notebooks apply first.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

# the colours of skiplib.plots.PALETTE, with their light tints for box faces
_BLUE, _RED, _GREEN = "#2166ac", "#b2182b", "#1b7837"
_BLUE_FACE, _RED_FACE, _GREEN_FACE = "#deebf7", "#fde0dd", "#e5f5e0"


def _check_depth(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def nested_classes(shallow: int, deep: int) -> Figure:
    """Chapter 2, Figure 2.1: growing but non-nested function classes (left) against the nested
    classes of plain nets, plain-``shallow`` inside plain-``deep`` (right), with the target
    :math:`f^*`, the trained shallow net and where SGD lands for the deep one."""
    _check_depth("shallow", shallow)
    _check_depth("deep", deep)
    if shallow > deep:
        raise ValueError(f"the shallow depth must not exceed the deep one, got shallow={shallow}, deep={deep}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    star = (2.8, 0.3)
    blues = ["#c6dbef", "#6baed6", "#2171b5"]
    # (centre, width, height, label, where the label goes)
    left = [((1.0, 0.0), 1.6, 1.2, "$\\mathcal{F}_1$", (1.0, 0.2)),
            ((-0.6, 0.6), 2.8, 1.8, "$\\mathcal{F}_2$", (-0.5, 1.05)),
            ((-1.5, -0.6), 3.2, 2.4, "$\\mathcal{F}_3$", (-1.9, -1.2))]
    right = [((-1.6, 0.0), 2.0, 1.4, f"$\\mathcal{{F}}_{{{shallow}}}$", (-2.15, 0.05)),
             ((-0.9, 0.1), 3.4, 2.3, f"$\\mathcal{{F}}_{{{deep}}}$", (0.25, 0.45)),
             ((-0.2, 0.2), 4.8, 3.3, "$\\mathcal{F}_{\\cdots}$", (1.15, 1.05))]
    for ax, classes, title in ((axes[0], left, "growing, non-nested classes"),
                               (axes[1], right, "nested classes (plain nets)")):
        for i, ((cx, cy), w, h, name, at) in reversed(list(enumerate(classes))):
            ax.add_patch(Ellipse((cx, cy), w, h, facecolor=blues[i], alpha=0.5, edgecolor=blues[2], lw=1))
            ax.text(*at, name, fontsize=12, ha="center", va="center")
        ax.plot(*star, marker="*", markersize=16, color=_RED)
        ax.annotate("$f^*$", star, xytext=(6, 6), textcoords="offset points", fontsize=12, color=_RED)
        ax.set_xlim(-3.2, 3.4)
        ax.set_ylim(-1.9, 1.9)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(title)
    axes[1].plot(-0.85, -0.15, "o", color="#053061")
    axes[1].annotate(f"trained plain-{shallow}\n(and its deep copy)", (-0.85, -0.15), xytext=(0, -30),
                     textcoords="offset points", fontsize=8, ha="center")
    axes[1].plot(-1.4, 0.85, "X", color=_RED, markersize=9)
    axes[1].annotate(f"plain-{deep} trained\nfrom scratch", (-1.4, 0.85), xytext=(-48, -4), textcoords="offset points",
                     fontsize=8, ha="center")
    return fig


def highway_layer() -> Figure:
    """Chapter 3: a highway layer. The input feeds the transform H and the gate T; the output is
    H(x) weighted by T plus the carried input weighted by 1 - T."""
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    ax.axis("off")
    box = dict(boxstyle="round,pad=0.4", fc=_BLUE_FACE, ec=_BLUE)
    gate = dict(boxstyle="round,pad=0.4", fc=_GREEN_FACE, ec=_GREEN)
    circle = dict(boxstyle="circle,pad=0.2", fc="white", ec="black")
    arrow = dict(arrowstyle="->", color="black", lw=1.4)
    gate_arrow = dict(arrowstyle="->", color=_GREEN, lw=1.4)
    ax.text(5, 9.5, "$x$", fontsize=14, ha="center", va="center")
    ax.annotate("", xy=(2.4, 7.6), xytext=(4.8, 9.2), arrowprops=arrow)
    ax.annotate("", xy=(5.0, 7.6), xytext=(5.0, 9.2), arrowprops=arrow)
    ax.text(2.4, 7.1, "transform $H$\nrelu$(W_H x + b_H)$", ha="center", va="center", bbox=box, fontsize=10)
    ax.text(5.0, 7.1, "gate $T$\n$\\sigma(W_T x + b_T)$", ha="center", va="center", bbox=gate, fontsize=10)
    ax.text(2.4, 4.6, "$\\times$", ha="center", va="center", fontsize=15, bbox=circle)
    ax.text(7.6, 4.6, "$\\times$", ha="center", va="center", fontsize=15, bbox=circle)
    ax.annotate("", xy=(2.4, 5.0), xytext=(2.4, 6.4), arrowprops=arrow)
    ax.annotate("", xy=(2.75, 4.75), xytext=(4.6, 6.5), arrowprops=gate_arrow)
    ax.text(3.9, 5.4, "$T$", color=_GREEN, fontsize=12)
    ax.annotate("", xy=(7.25, 4.75), xytext=(5.4, 6.5), arrowprops=gate_arrow)
    ax.text(6.5, 5.85, "$1-T$", color=_GREEN, fontsize=12)
    carry = dict(arrowstyle="->", color=_RED, lw=1.8, connectionstyle="arc3,rad=-0.35")
    ax.annotate("", xy=(7.6, 5.0), xytext=(5.3, 9.4), arrowprops=carry)
    ax.text(8.6, 7.9, "carry $x$", color=_RED, ha="center", fontsize=11)
    ax.text(5.0, 2.4, "$+$", ha="center", va="center", fontsize=16, bbox=circle)
    ax.annotate("", xy=(4.7, 2.6), xytext=(2.4, 4.2), arrowprops=arrow)
    ax.annotate("", xy=(5.3, 2.6), xytext=(7.6, 4.2), arrowprops=arrow)
    ax.annotate("", xy=(5.0, 0.7), xytext=(5.0, 2.0), arrowprops=arrow)
    ax.text(5.0, 0.25, "$y = H(x)\\,T(x) + x\\,(1 - T(x))$", ha="center", fontsize=12)
    return fig


def residual_block() -> Figure:
    """Chapter 4: the residual block of He et al. (2016a), Fig. 2: two weight layers compute
    F(x), the identity shortcut carries x past them, and the sum goes through a last ReLU."""
    fig, ax = plt.subplots(figsize=(5.0, 4.6))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    ax.axis("off")
    box = dict(boxstyle="round,pad=0.4", fc=_BLUE_FACE, ec=_BLUE)
    arrow = dict(arrowstyle="->", color="black", lw=1.4)
    ax.annotate("", xy=(4, 8.1), xytext=(4, 9.6), arrowprops=arrow)
    ax.text(4.2, 9.4, "$x$", fontsize=13)
    ax.text(4, 7.6, "weight layer (conv 3×3, BN)", ha="center", va="center", bbox=box)
    ax.annotate("", xy=(4, 6.1), xytext=(4, 7.1), arrowprops=arrow)
    ax.text(4, 5.6, "relu", ha="center", va="center")
    ax.annotate("", xy=(4, 4.6), xytext=(4, 5.2), arrowprops=arrow)
    ax.text(4, 4.1, "weight layer (conv 3×3, BN)", ha="center", va="center", bbox=box)
    ax.annotate("", xy=(4, 2.45), xytext=(4, 3.6), arrowprops=arrow)
    ax.text(4, 2.1, "$+$", ha="center", va="center", fontsize=16,
            bbox=dict(boxstyle="circle,pad=0.2", fc="white", ec="black"))
    ax.text(2.3, 3.1, "$F(x)$", fontsize=12, ha="center")
    # a square arc out to the right and back: the shortcut visibly bypasses both weight layers
    skip = dict(arrowstyle="->", color=_RED, lw=1.8,
                connectionstyle="arc,angleA=0,angleB=0,armA=60,armB=60,rad=10")
    ax.annotate("", xy=(4.35, 2.1), xytext=(4.0, 9.0), arrowprops=skip)
    ax.text(7.2, 5.6, "identity\nshortcut $x$", color=_RED, ha="center", va="center")
    ax.annotate("", xy=(4, 0.4), xytext=(4, 1.7), arrowprops=arrow)
    ax.text(4.2, 0.9, "relu", fontsize=11)
    ax.text(4.2, 0.1, "$y = \\mathrm{relu}(F(x) + x)$", fontsize=12)
    return fig


def unet(depth: int = 4, base: int = 64) -> Figure:
    """Chapter 6: the "U" of Ronneberger et al. (2015). Encoder levels on the left, decoder levels
    on the right (boxes hold the channels, ``base`` doubled per level), the bottleneck at the
    bottom, and the long skips (dashed) across; the defaults are the paper's network."""
    _check_depth("depth", depth)
    _check_depth("base", base)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ax.set_xlim(-1.0, 2 * depth + 2.0)
    ax.set_ylim(-0.8, depth + 0.9)
    ax.axis("off")
    enc = dict(boxstyle="round,pad=0.3", fc=_BLUE_FACE, ec=_BLUE)
    dec = dict(boxstyle="round,pad=0.3", fc=_RED_FACE, ec=_RED)
    pos_enc = {level: (level, depth - level) for level in range(depth)}
    pos_dec = {level: (2 * depth + 1 - level, depth - level) for level in range(depth)}
    pos_enc[depth] = pos_dec[depth] = (depth + 0.5, 0)  # the bottleneck
    for level in range(depth + 1):
        c = base * 2**level
        bottleneck = dict(enc, fc="#c6dbef")  # a darker face: the deepest level
        ax.text(*pos_enc[level], f"{c}", ha="center", va="center", bbox=enc if level < depth else bottleneck)
        if level < depth:
            ax.text(*pos_dec[level], f"{c}", ha="center", va="center", bbox=dec)
            arrow = dict(shrinkA=14, shrinkB=14, lw=1.4)  # stop short of the boxes
            ax.annotate("", xy=pos_dec[level], xytext=pos_enc[level],
                        arrowprops=dict(arrow, arrowstyle="->", color=_GREEN, ls="--"))
            ax.annotate("", xy=pos_enc[level + 1], xytext=pos_enc[level],
                        arrowprops=dict(arrow, arrowstyle="->", color=_BLUE))
            ax.annotate("", xy=pos_dec[level], xytext=pos_dec[level + 1],
                        arrowprops=dict(arrow, arrowstyle="->", color=_RED))
        ax.text(-0.6, depth - level, f"1/{2**level}" if level else "full", ha="right", va="center", fontsize=9,
                color="0.4")
    ax.text(depth + 0.5, depth + 0.55, "long skips: copy and concatenate", color=_GREEN, ha="center")
    ax.text(0.6, 0.5, "encoder\n(max-pool ↓)", color=_BLUE, ha="center")
    ax.text(2 * depth + 0.4, 0.5, "decoder\n(up-conv ↑)", color=_RED, ha="center")
    ax.text(depth + 0.5, -0.6, "bottleneck", ha="center", color="0.3")
    ax.text(-0.6, depth + 0.55, "resolution", ha="right", fontsize=9, color="0.4")
    return fig


def dense_block(in_channels: int = 16, growth_rate: int = 12, layers: int = 4) -> Figure:
    """Chapter 5: a dense block. Every layer H_l reads the concatenation of the block input and all
    earlier outputs (one arrow per connection, ``layers * (layers + 1) / 2`` of them) and adds
    ``growth_rate`` maps; the bar below each layer shows the channels it reads, k0 + (l-1) k."""
    for name, value in (("in_channels", in_channels), ("growth_rate", growth_rate), ("layers", layers)):
        _check_depth(name, value)
    fig, ax = plt.subplots(figsize=(1.7 * layers + 2.6, 4.4))
    ax.set_xlim(-0.8, layers + 0.9)
    ax.set_ylim(-2.3, 2.6)
    ax.axis("off")
    box = dict(boxstyle="round,pad=0.35", fc=_BLUE_FACE, ec=_BLUE)
    maps = dict(boxstyle="round,pad=0.3", fc=_GREEN_FACE, ec=_GREEN)
    ax.text(0, 0, f"$x_0$\n{in_channels} ch", ha="center", va="center", bbox=maps)
    widest = in_channels + layers * growth_rate
    for ell in range(1, layers + 1):
        ax.text(ell, 0, f"$H_{{{ell}}}$", ha="center", va="center", bbox=box, fontsize=12)
        ax.text(ell + 0.42, -0.55, f"$x_{{{ell}}}$: {growth_rate}", ha="center", fontsize=8, color=_GREEN)
        for src in range(ell):  # one arc from every earlier map into H_l: the concatenation
            ax.annotate("", xy=(ell - 0.12, 0.25), xytext=(src + 0.1, 0.3),
                        arrowprops=dict(arrowstyle="->", color=_RED, lw=1.1, shrinkA=6, shrinkB=4,
                                        connectionstyle=f"arc3,rad={-0.25 - 0.08 * (ell - src)}"))
        reads = in_channels + (ell - 1) * growth_rate
        ax.add_patch(plt.Rectangle((ell - 0.3, -2.0), 0.6, 1.2 * reads / widest, fc=_RED_FACE, ec=_RED))
        ax.text(ell, -2.0 + 1.2 * reads / widest + 0.08, f"{reads}", ha="center", fontsize=8)
    ax.text(-0.7, -1.6, "channels\nread", fontsize=8, color="0.4")
    ax.text(layers / 2 + 0.5, 2.35, "concatenate: every earlier map feeds every later layer", color=_RED,
            ha="center")
    ax.text(layers + 0.75, 0, f"out: {widest} ch", ha="left", va="center", fontsize=9, rotation=90)
    return fig


def resnet_stages(blocks: tuple[int, ...] = (3, 4, 6, 3), widths: tuple[int, ...] = (64, 128, 256, 512),
                  image_size: int = 224) -> Figure:
    """Chapter 4: the stage map of an ImageNet ResNet (defaults: ResNet-34). The stem shrinks the
    image fourfold; each stage is a row of residual blocks (one square each) at one resolution and
    width; the first block of stages 2-4 halves the resolution through a projection shortcut."""
    if len(blocks) != len(widths) or not blocks:
        raise ValueError(f"blocks and widths need one entry per stage, got {len(blocks)} and {len(widths)}")
    for name, value in [("image_size", image_size), *((f"blocks[{i}]", b) for i, b in enumerate(blocks)),
                        *((f"widths[{i}]", w) for i, w in enumerate(widths))]:
        _check_depth(name, value)
    fig, ax = plt.subplots(figsize=(10, 1.1 * len(blocks) + 2.2))
    ax.set_xlim(-0.5, max(blocks) + 5.2)
    ax.set_ylim(-len(blocks) - 1.4, 1.3)
    ax.axis("off")
    layers = 2 * sum(blocks) + 2
    ax.text(0, 0.6, f"ResNet-{layers}: {image_size}×{image_size} image", fontsize=11, weight="bold")
    stem = f"stem: conv 7×7, {widths[0]}, /2 → max-pool /2 → {image_size // 4}×{image_size // 4}"
    ax.text(0, 0, stem, bbox=dict(boxstyle="round,pad=0.3", fc="0.92", ec="0.5"))
    size = image_size // 4
    for s, (n, width) in enumerate(zip(blocks, widths)):
        y = -1.1 * (s + 1)
        if s:
            size //= 2
        ax.text(0, y, f"layer{s + 1}\n{width} ch, {size}×{size}", va="center", fontsize=9)
        for b in range(n):
            down = s > 0 and b == 0  # this block halves the resolution and doubles the width
            ax.add_patch(plt.Rectangle((2.2 + b, y - 0.35), 0.8, 0.7, fc=_RED_FACE if down else _BLUE_FACE,
                                       ec=_RED if down else _BLUE, lw=1.2))
            ax.text(2.6 + b, y, "/2" if down else "", ha="center", va="center", fontsize=8, color=_RED)
        ax.text(2.4 + max(blocks), y, f"{n} blocks × 2 conv 3×3", va="center", fontsize=9, color="0.3")
    ax.text(0, -1.1 * (len(blocks) + 1), f"global average pool → fc {widths[-1]} → 1000 classes",
            bbox=dict(boxstyle="round,pad=0.3", fc="0.92", ec="0.5"))
    ax.text(max(blocks) + 2.4, 0.6, "■ block with projection shortcut (/2)", color=_RED, fontsize=8)
    return fig


def unrolled_paths(n_blocks: int = 3) -> Figure:
    """Chapter 8: Veit et al.'s unrolled view. Left: ``n_blocks`` residual blocks in a row. Right: the
    ``2 ** n_blocks`` paths they contain, one row each, filled where the path goes through a branch
    F_i and hollow where it takes the shortcut; rows are grouped by path length k."""
    _check_depth("n_blocks", n_blocks)
    if n_blocks > 6:
        raise ValueError(f"n_blocks must be at most 6 (64 paths fit one figure), got {n_blocks}")
    paths = sorted(range(2**n_blocks), key=lambda p: (bin(p).count("1"), p))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.42 * len(paths) + 1.6), width_ratios=[1, 1.3])
    for ax in (left, right):
        ax.axis("off")
    left.set_xlim(-0.5, n_blocks + 0.5)
    left.set_ylim(-1.5, 1.5)
    for i in range(n_blocks):
        left.text(i + 0.5, 0.6, f"$F_{{{i + 1}}}$", ha="center", va="center", fontsize=12,
                  bbox=dict(boxstyle="round,pad=0.35", fc=_BLUE_FACE, ec=_BLUE))
        left.annotate("", xy=(i + 1, 0), xytext=(i, 0), arrowprops=dict(arrowstyle="->", color=_RED, lw=1.6))
        branch = dict(arrowstyle="->", color=_BLUE, lw=1.2, shrinkA=4, shrinkB=9)
        left.annotate("", xy=(i + 0.5, 0.6), xytext=(i, 0), arrowprops=branch)  # into the branch F_i ...
        left.annotate("", xy=(i + 1, 0), xytext=(i + 0.5, 0.6), arrowprops=branch)  # ... and added back
        left.text(i + 1, 0, "$+$", ha="center", va="center", bbox=dict(boxstyle="circle,pad=0.15", fc="white", ec="k"))
    left.text(0, -0.35, "$x_0$", ha="center")
    left.text(n_blocks, -0.35, f"$x_{{{n_blocks}}}$", ha="center")
    left.set_title(f"{n_blocks} residual blocks: $x_{{i}} = x_{{i-1}} + F_i(x_{{i-1}})$")
    right.set_xlim(-1.6, n_blocks + 0.8)
    right.set_ylim(len(paths), -1)
    for row, p in enumerate(paths):
        k = bin(p).count("1")
        right.plot([0, n_blocks - 1], [row, row], color="0.7", lw=1, zorder=0)
        for i in range(n_blocks):
            used = bool(p >> i & 1)
            right.scatter(i, row, s=160, marker="s", zorder=1, color=_BLUE if used else "white", edgecolors=_BLUE)
        right.text(n_blocks - 0.4, row, f"k = {k}", va="center", fontsize=9)
    right.set_xticks([])
    for i in range(n_blocks):
        right.text(i, -0.8, f"$F_{{{i + 1}}}$", ha="center")
    right.set_title(f"unrolled: {2**n_blocks} paths (filled: through $F_i$, hollow: shortcut)")
    return fig

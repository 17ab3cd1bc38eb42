"""skiplib.diagrams: each diagram is a Figure holding the labels its chapter's caption names."""

from __future__ import annotations

import ast
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

from skiplib import diagrams  # noqa: E402


def texts(fig: Figure) -> list[str]:
    """Every text artist of the figure (titles, labels, annotations), in drawing order."""
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


def boxed(fig: Figure) -> list[str]:
    """The texts drawn inside a box (a bbox patch): the diagram's boxes and operator circles."""
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_bbox_patch() is not None]


# every test closes the figures it makes (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("no_figures_left")


def test_nested_classes_names_both_depths_and_nests_three_classes_per_panel():
    fig = diagrams.nested_classes(14, 32)
    try:
        assert isinstance(fig, Figure) and len(fig.axes) == 2
        left, right = fig.axes
        assert left.get_title() == "growing, non-nested classes"
        assert right.get_title() == "nested classes (plain nets)"
        assert sum(isinstance(p, Ellipse) for p in left.patches) == 3
        assert sum(isinstance(p, Ellipse) for p in right.patches) == 3
        labels = texts(fig)
        assert "$\\mathcal{F}_{14}$" in labels and "$\\mathcal{F}_{32}$" in labels
        assert "trained plain-14\n(and its deep copy)" in labels
        assert "plain-32 trained\nfrom scratch" in labels
        assert labels.count("$f^*$") == 2
    finally:
        plt.close(fig)


def test_nested_classes_refuses_a_shallow_net_deeper_than_the_deep_one():
    with pytest.raises(ValueError, match="shallow depth must not exceed"):
        diagrams.nested_classes(32, 14)
    with pytest.raises(ValueError, match="deep must be a positive int"):
        diagrams.nested_classes(14, 0)


def test_highway_layer_has_transform_gate_and_both_operators():
    fig = diagrams.highway_layer()
    try:
        assert isinstance(fig, Figure) and len(fig.axes) == 1
        boxes = boxed(fig)
        assert "transform $H$\nrelu$(W_H x + b_H)$" in boxes
        assert "gate $T$\n$\\sigma(W_T x + b_T)$" in boxes
        assert boxes.count("$\\times$") == 2 and boxes.count("$+$") == 1
        labels = texts(fig)
        assert {"$x$", "$T$", "$1-T$", "carry $x$", "$y = H(x)\\,T(x) + x\\,(1 - T(x))$"} <= set(labels)
    finally:
        plt.close(fig)


def test_residual_block_has_two_weight_layers_a_sum_and_the_shortcut():
    fig = diagrams.residual_block()
    try:
        assert isinstance(fig, Figure) and len(fig.axes) == 1
        boxes = boxed(fig)
        assert boxes.count("weight layer (conv 3×3, BN)") == 2
        assert boxes.count("$+$") == 1
        labels = texts(fig)
        assert "identity\nshortcut $x$" in labels and "$F(x)$" in labels
        assert "$y = \\mathrm{relu}(F(x) + x)$" in labels
    finally:
        plt.close(fig)


@pytest.mark.parametrize("depth, base", [(4, 64), (2, 8)])
def test_unet_boxes_double_the_channels_per_level_on_both_sides(depth, base):
    fig = diagrams.unet(depth=depth, base=base)
    try:
        assert isinstance(fig, Figure) and len(fig.axes) == 1
        boxes = boxed(fig)
        # every level but the bottleneck has an encoder and a decoder box; the bottleneck one box
        expected = sorted([str(base * 2**level) for level in range(depth)] * 2 + [str(base * 2**depth)])
        assert sorted(boxes) == expected
        labels = texts(fig)
        # the resolution of every level, the bottleneck's included
        resolutions = [t for t in labels if t == "full" or t.startswith("1/")]
        assert resolutions == ["full"] + [f"1/{2**level}" for level in range(1, depth + 1)]
        assert {"long skips: copy and concatenate", "bottleneck", "encoder\n(max-pool ↓)",
                "decoder\n(up-conv ↑)"} <= set(labels)
        # one skip, one down and one up arrow per level above the bottleneck
        arrows = [a for a in fig.axes[0].texts if isinstance(a, matplotlib.text.Annotation)]
        assert len(arrows) == 3 * depth
    finally:
        plt.close(fig)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_unet_refuses_a_depth_that_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="depth must be a positive int"):
        diagrams.unet(depth=bad)


def test_diagrams_import_nothing_from_skiplib_but_plots():
    # diagrams sits beside plots in the import order: anything deeper would pull torch into a drawing
    tree = ast.parse(Path(diagrams.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {m for m in imported if m.startswith("skiplib")} <= {"skiplib.plots"}


def inked(fig: Figure) -> float:
    """The share of pixels that differ from the figure's background: an empty drawing gives 0."""
    import numpy as np

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return float((rgba[..., :3] != rgba[0, 0, :3]).any(axis=-1).mean())


def arrows(fig: Figure, color: str) -> int:
    """Annotations drawn as arrows of one colour (the diagrams' connections)."""
    return sum(1 for a in fig.axes[0].texts if getattr(a, "arrow_patch", None) is not None
               and matplotlib.colors.same_color(a.arrow_patch.get_edgecolor(), color))


@pytest.mark.parametrize("layers", [1, 4, 6])
def test_dense_block_draws_one_arrow_per_connection_and_the_channel_growth(layers):
    fig = diagrams.dense_block(16, 12, layers)
    try:
        assert inked(fig) > 0.01
        assert arrows(fig, diagrams._RED) == layers * (layers + 1) // 2  # H_l reads x_0 ... x_{l-1}
        bars = [p for p in fig.axes[0].patches if isinstance(p, matplotlib.patches.Rectangle)]
        reads = [16 + (ell - 1) * 12 for ell in range(1, layers + 1)]
        assert [round(b.get_height() * (16 + layers * 12) / 1.2) for b in bars] == reads
        assert all(str(r) in texts(fig) for r in reads)
        assert f"out: {16 + layers * 12} ch" in texts(fig)
    finally:
        plt.close(fig)


def test_resnet_stages_matches_resnet34():
    from skiplib.models.imagenet import resnet34

    net = resnet34()
    blocks = tuple(len(getattr(net, f"layer{i}")) for i in range(1, 5))
    widths = tuple(getattr(net, f"layer{i}")[0].conv1.out_channels for i in range(1, 5))
    fig = diagrams.resnet_stages(blocks, widths)
    try:
        assert inked(fig) > 0.01
        squares = [p for p in fig.axes[0].patches if isinstance(p, matplotlib.patches.Rectangle)]
        assert len(squares) == sum(blocks) == 16
        down = [p for p in squares if matplotlib.colors.same_color(p.get_edgecolor(), diagrams._RED)]
        assert len(down) == 3  # the first block of layer2, layer3 and layer4 halves the resolution
        labels = texts(fig)
        assert "ResNet-34: 224×224 image" in labels
        assert "layer4\n512 ch, 7×7" in labels
    finally:
        plt.close(fig)


def test_resnet_stages_refuses_mismatched_stages():
    with pytest.raises(ValueError, match="one entry per stage"):
        diagrams.resnet_stages((3, 4), (64,))
    with pytest.raises(ValueError, match=r"blocks\[1\] must be a positive int"):
        diagrams.resnet_stages((3, 0), (64, 128))


@pytest.mark.parametrize("n", [1, 3, 4])
def test_unrolled_paths_shows_every_path_once_grouped_by_length(n):
    import math

    fig = diagrams.unrolled_paths(n)
    try:
        assert inked(fig) > 0.01
        right = fig.axes[1]
        marks = [c for c in right.collections]
        assert len(marks) == n * 2**n  # one square per block per path
        lengths = [t.get_text() for t in right.texts if t.get_text().startswith("k = ")]
        assert lengths == [f"k = {k}" for k in range(n + 1) for _ in range(math.comb(n, k))]
    finally:
        plt.close(fig)


def test_unrolled_paths_refuses_too_many_blocks():
    with pytest.raises(ValueError, match="at most 6"):
        diagrams.unrolled_paths(7)
    with pytest.raises(ValueError, match="n_blocks must be a positive int"):
        diagrams.unrolled_paths(0)

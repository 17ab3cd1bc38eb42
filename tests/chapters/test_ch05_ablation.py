"""Chapter 5's helpers around the connection ablation: the evaluation draw, the far/near summary,
the rank correlation with the weight heatmap, the largest cut and the figure."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from skiplib.analysis.reuse import ConnectionAblation  # noqa: E402
from skiplib.chapters import ch05_densenets as ch5  # noqa: E402
from skiplib.data import DeviceLoader  # noqa: E402

NAN = math.nan


def _result(per_image: list[torch.Tensor]) -> ConnectionAblation:
    n = per_image[0].shape[-1]
    return ConnectionAblation([r.mean(-1) for r in per_image], [r.std(-1) / n ** 0.5 for r in per_image], per_image,
                              1.0, n)


def _connected(layers: int, images: int, value: float = 0.0) -> torch.Tensor:
    """Per-image rises of a block of ``layers`` dense layers: ``value`` where connected, NaN elsewhere."""
    r = torch.full((layers + 1, layers + 1, images), NAN)
    for t in range(layers + 1):
        r[: t + 1, t] = value
    return r


def test_ablation_images_is_a_seeded_draw_across_classes():
    y = torch.arange(10).repeat_interleave(10)  # stored in class order, like the JPEG copy's folders
    x = y.float()[:, None, None, None].expand(100, 3, 2, 2)
    loader = DeviceLoader(x, y, 16)
    xa, ya = ch5.ablation_images(loader, 20, seed=0)
    assert xa.shape == (20, 3, 2, 2) and torch.equal(xa[:, 0, 0, 0], ya.float())  # images keep their labels
    assert len(torch.unique(ya)) > 5  # the first 20 would be classes 0 and 1 only
    assert torch.equal(ch5.ablation_images(loader, 20, seed=0)[1], ya)
    assert not torch.equal(ch5.ablation_images(loader, 20, seed=1)[1], ya)


def test_far_and_near_averages_the_right_cuts_per_image():
    r = _connected(4, 2)  # deep layers: 3 and 4 (columns 2, 3); far cuts (0,2) (1,2) (0,3) (1,3) (2,3)
    r[0, 2] = torch.tensor([1.0, 3.0])
    r[1, 2] = torch.tensor([1.0, 3.0])
    r[0, 3] = torch.tensor([6.0, 2.0])
    r[0, 0] = 100.0  # layer 1 is not deep; its only source is not two layers back
    r[1, 1] = 100.0  # nor is layer 2
    r[0, 4] = 100.0  # the transition is not a dense layer
    r[2, 2] = torch.tensor([2.0, 4.0])  # the previous layer of layer 3
    rows = ch5.far_and_near(_result([r]))
    assert [row["block"] for row in rows] == [1, "all"] and rows[0]["targets"] == [3, 4]
    assert rows[0]["far_cuts"] == rows[1]["far_cuts"] == 5
    far = torch.tensor([(1 + 1 + 6) / 5, (3 + 3 + 2) / 5])  # per image
    assert rows[0]["far"] == pytest.approx(far.mean().item())
    assert rows[0]["far_se"] == pytest.approx((far.std() / 2 ** 0.5).item())
    assert rows[0]["near"] == pytest.approx(1.5)  # ((2 + 0) / 2 + (4 + 0) / 2) / 2
    assert rows[0]["diff"] == pytest.approx(far.mean().item() - 1.5)
    assert rows[1]["far"] == pytest.approx(rows[0]["far"])


def test_far_and_near_pools_blocks_with_equal_weight_and_refuses_one_layer_blocks():
    a, b = _connected(2, 3, 1.0), _connected(4, 3, 3.0)
    rows = ch5.far_and_near(_result([a, b]))
    assert [r["far"] for r in rows] == pytest.approx([1.0, 3.0, 2.0])
    assert rows[2]["far_cuts"] == 1 + 5 and rows[2]["far_se"] == 0
    with pytest.raises(ValueError, match="two layers back"):
        ch5.far_and_near(_result([_connected(1, 3)]))


def test_rank_correlation_of_maps():
    m = torch.tensor([[1.0, 0.5, 0.2], [NAN, 2.0, 0.4], [NAN, NAN, 3.0]])
    assert ch5.rank_correlation([m], [m * 10]) == pytest.approx(1.0)
    assert ch5.rank_correlation([m], [-m]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="laid out alike"):
        ch5.rank_correlation([m], [m[:2, :2]])


def test_largest_cut_names_source_target_and_block():
    a, b = _connected(2, 2, 0.1), _connected(2, 2, 0.1)
    a[1, 2] = 0.5
    assert ch5.largest_cut(_result([a, b])) == ("dense layer 1 of block 1 cut from its transition", pytest.approx(0.5))
    b[0, 1] = 0.9
    assert ch5.largest_cut(_result([a, b])) == ("the input of block 2 cut from dense layer 2", pytest.approx(0.9))
    b[2, 2] = 1.0
    assert ch5.largest_cut(_result([a, b]))[0] == "dense layer 2 of block 2 cut from the classifier"


def test_plot_ablation_marks_the_cuts_within_noise():
    r = _connected(2, 4, 0.0)
    r[0, 0] = torch.tensor([1.0, 1.1, 0.9, 1.0])  # clearly above noise; every other cut is 0
    fig = ch5.plot_ablation(_result([r, r.clone(), r.clone()]))
    assert [ax.get_title() for ax in fig.axes[:3]] == [f"dense block {i}: loss increase when cut" for i in (1, 2, 3)]
    marks = [line for line in fig.axes[0].get_lines() if line.get_marker() == "x"]
    assert len(marks) == 5  # the six connected cells but the one above noise
    plt.close(fig)

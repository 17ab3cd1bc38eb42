"""The helpers that Chapters 2, 3, 4 and 6 moved out of their notebooks: what they compute
(running means, score tables, top-1 titles, photos) and how they refuse bad input."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from skiplib.chapters import ch02_identity, ch03_highway, ch04_resnets, ch06_unet  # noqa: E402
from skiplib.data import synthetic_cifar10  # noqa: E402
from skiplib.train import History  # noqa: E402

# matplotlib's imshow converts torch tensors through __array__ and warns about numpy 2's copy keyword
IMSHOW_TENSOR = "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"


# every test closes the figures it makes (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("no_figures_left")


# ------------------------------------------------------------------ Chapter 2
def test_running_mean_averages_each_window():
    np.testing.assert_allclose(ch02_identity.running_mean([1.0, 3.0, 5.0, 7.0], 2), [2.0, 4.0, 6.0])
    np.testing.assert_allclose(ch02_identity.running_mean([1.0, 3.0, 5.0], 1), [1.0, 3.0, 5.0])
    np.testing.assert_allclose(ch02_identity.running_mean([1.0, 3.0, 5.0], 3), [3.0])


@pytest.mark.parametrize("window", [0, 4, 1.5, True])
def test_running_mean_refuses_a_window_that_does_not_fit(window):
    with pytest.raises(ValueError, match="window must be an int from 1 to len"):
        ch02_identity.running_mean([1.0, 2.0, 3.0], window)


def test_zero_init_figure_draws_each_run_and_its_running_mean():
    curves = {"resnet14": [3.0, 2.0, 2.5, 1.0], "resnet14, zero-init last BN": [2.3, 2.2, 2.0, 1.9]}
    fig = ch02_identity.plot_zero_init_steps(curves, window=2, title="first steps")
    try:
        lines = fig.axes[0].get_lines()
        assert len(lines) == 4  # raw and smoothed per run
        smooth = lines[1]
        np.testing.assert_allclose(smooth.get_ydata(), [2.5, 2.25, 1.75])
        np.testing.assert_array_equal(smooth.get_xdata(), [2, 3, 4])  # a window's last step
        assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == list(curves)
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="exactly two runs"):
        ch02_identity.plot_zero_init_steps({"one": [1.0, 2.0]}, window=1, title="")


def test_shrink_and_noise_figures_refuse_incomplete_data():
    with pytest.raises(ValueError, match="missing \\['residual'\\]"):
        ch02_identity.plot_shrink([1.0, 0.1], {"plain": {"to_zero": [1, 0.1], "to_id": [0.5, 1]}})
    with pytest.raises(ValueError, match="one loss per sigma"):
        ch02_identity.plot_noise_sweep([0.1, 0.2], [1.0], base_loss=0.5, he_range=(0.06, 0.12), shallow=8, deep=14)
    with pytest.raises(ValueError, match="one loss per sigma"):
        ch02_identity.plot_noise_sweep([0.1, 0.2], [1.0, 2.0], base_loss=0.5, he_range=(0.06, 0.12), shallow=8,
                                       deep=14, train_mode=([1.0], 0.5))


def test_noise_figure_marks_the_slider_point():
    fig = ch02_identity.plot_noise_sweep([0.01, 0.1], [0.5, 3.0], base_loss=0.4, he_range=(0.06, 0.12),
                                         shallow=8, deep=14, marker=(0.05, 1.5))
    try:
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert labels == ["plain-14 copy, eval mode (stored statistics)", "exact copy (= plain-8), eval mode",
                          "std of He-initialised weights", "σ = 0.05 (eval mode)"]
    finally:
        plt.close(fig)


def test_noise_figure_adds_the_training_mode_sweep():
    fig = ch02_identity.plot_noise_sweep([0.01, 0.1], [0.5, 3.0], base_loss=0.4, he_range=(0.06, 0.12),
                                         shallow=8, deep=14, train_mode=([0.45, 2.0], 0.42))
    try:
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_legend().get_texts()][2:4] == [
            "copy with BN fitted to the data, training mode", "plain-8, training mode"]
        assert list(ax.get_lines()[2].get_ydata()) == [0.45, 2.0] and list(ax.get_lines()[3].get_ydata()) == [0.42] * 2
    finally:
        plt.close(fig)


# ------------------------------------------------------------------ Chapter 3
def _history(losses):
    return History([{"epoch": i + 1, "train_loss": v, "train_err": 0.5, "test_err": 0.6, "seconds": 1.0}
                    for i, v in enumerate(losses)])


def test_depth_sweep_figure_leaves_out_diverged_runs():
    best = {(kind, d): ch03_highway.FCRun(kind, d, 0.1, _history([2.3, 2.0]), None, 1.0)
            for kind in ("plain", "highway") for d in (10, 20)}
    best["plain", 20].history = None  # diverged: final loss inf, no curve
    fig = ch03_highway.plot_depth_sweep(best, [10, 20])
    try:
        left, right = fig.axes
        assert math.isinf(left.get_lines()[0].get_ydata()[1])
        assert [t.get_text() for t in right.get_legend().get_texts()] == ["plain-10", "highway-10", "highway-20"]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="no run for \\[\\('plain', 50\\), \\('highway', 50\\)\\]"):
        ch03_highway.plot_depth_sweep(best, [10, 50])


def test_highway_vs_resnet_figure_needs_one_time_per_run():
    histories = {"resnet8": _history([1.0]), "highway8": _history([1.1])}
    fig = ch03_highway.plot_highway_vs_resnet(histories, [1.5, 2.5])
    try:
        assert [p.get_height() for p in fig.axes[1].patches] == [1.5, 2.5]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="one time per run"):
        ch03_highway.plot_highway_vs_resnet(histories, [1.5])


# ------------------------------------------------------------------ Chapter 4
def test_example_photos_are_a_photo_then_the_first_cifar_test_images(monkeypatch):
    calls = []

    def fake_load(split, **kw):
        calls.append((split, kw))
        return synthetic_cifar10(8)

    monkeypatch.setattr(ch04_resnets, "load_cifar10", fake_load)
    photos = ch04_resnets.example_photos(3, allow_synthetic=True)
    assert calls == [("test", {"allow_synthetic": True, "verbose": False})]
    assert len(photos) == 4 and all(p.dtype == torch.uint8 and p.shape[0] == 3 for p in photos)
    assert photos[0].shape[1:] != (32, 32)  # the photo keeps its own size
    for got, expected in zip(photos[1:], synthetic_cifar10(8).images[:3]):
        assert torch.equal(got, expected)
    with pytest.raises(ValueError, match="n_cifar must be an int >= 0"):
        ch04_resnets.example_photos(-1)


@pytest.mark.filterwarnings(IMSHOW_TENSOR)
def test_top1_titles_name_the_most_probable_class():
    photos = [torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(3, 8, 8, dtype=torch.uint8)]
    probs = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    fig = ch04_resnets.plot_top1(photos, probs, ["cat", "dog", "ship"])
    try:
        assert [ax.get_title() for ax in fig.axes] == ["dog\n70%", "cat\n50%"]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="probs must have shape \\(2, 4\\)"):
        ch04_resnets.plot_top1(photos, probs, ["cat", "dog", "ship", "car"])


# ------------------------------------------------------------------ Chapter 6
SCORES = {"dice": 0.81234, "iou": 0.7, "boundary_f1": 0.9, "cell_f1": 0.5, "loss": 0.3}


def test_scores_table_has_a_row_per_model_with_every_score():
    table = ch06_unet.scores_table({"with skips": SCORES, "without skips": {**SCORES, "dice": 0.4}},
                                   {"with skips": 12_345, "without skips": 11_000})
    assert table.splitlines() == [
        "| model | parameters | Dice | IoU | boundary F1 (1 px) | cell F1 |",
        "|---|---:|---:|---:|---:|---:|",
        "| with skips | 12,345 | 0.812 | 0.700 | 0.900 | 0.500 |",
        "| without skips | 11,000 | 0.400 | 0.700 | 0.900 | 0.500 |",
    ]


def test_ablation_table_names_the_resolutions_of_the_skips_kept():
    assert ch06_unet.skips_kept((True, False, True), 64) == "64², 16²"
    assert ch06_unet.skips_kept((False, False), 64) == "none"
    masks = {"all skips": (True, True), "no skips": (False, False)}
    table = ch06_unet.ablation_table(masks, {k: SCORES for k in masks}, {"all skips": 10, "no skips": 8}, 32)
    assert table.splitlines()[2:] == ["| all skips | 32², 16² | 10 | 0.812 | 0.700 | 0.900 | 0.500 |",
                                      "| no skips | none | 8 | 0.812 | 0.700 | 0.900 | 0.500 |"]
    with pytest.raises(ValueError, match="scores lack \\['cell_f1'\\]"):
        ch06_unet.scores_table({"m": {k: v for k, v in SCORES.items() if k != "cell_f1"}}, {"m": 1})


@pytest.mark.filterwarnings(IMSHOW_TENSOR)
def test_level_maps_figure_needs_both_maps_at_every_level():
    maps = {(kind, level): torch.rand(16 >> level, 16 >> level) for kind in ("skip", "upsampled") for level in range(2)}
    fig = ch06_unet.plot_level_maps(torch.rand(16, 16), torch.zeros(16, 16), maps)
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert titles == ["input", "skip, level 0\n16×16", "skip, level 1\n8×8",
                          "target", "upsampled, level 0\n16×16", "upsampled, level 1\n8×8"]
    finally:
        plt.close(fig)
    del maps["upsampled", 1]
    with pytest.raises(ValueError, match="a 'skip' and an 'upsampled' map for each level"):
        ch06_unet.plot_level_maps(torch.rand(16, 16), torch.zeros(16, 16), maps)

"""The chapter modules' helpers that the notebooks and the CLI share (Chapters 1, 5, 7, 8):
one training loop for plain/residual pairs, the CLI's profile and config, and the measuring and
plotting helpers that keep the notebooks' cells short."""

from __future__ import annotations

import argparse
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from skiplib.chapters import ch01_degradation as ch1  # noqa: E402
from skiplib.chapters import ch05_densenets as ch5  # noqa: E402
from skiplib.chapters import ch07_comparison as ch7  # noqa: E402
from skiplib.chapters import ch08_why as ch8  # noqa: E402
from skiplib.data import DeviceLoader  # noqa: E402
from skiplib.models import count_parameters  # noqa: E402
from skiplib.models.densenet import PARAMETERS, cifar_densenet, densenet121  # noqa: E402
from skiplib.train import History, run_checkpoint  # noqa: E402

RECIPE = {"seed": 0, "epochs": 1, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "onecycle",
          "depths": [20]}


def tiny_loaders() -> tuple[DeviceLoader, DeviceLoader]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    return DeviceLoader(x, y, 32, shuffle=True, augment=True, pad=1, seed=0), DeviceLoader(x[:32], y[:32], 32)


def without_seconds(histories: dict[str, History]) -> dict[str, list[dict]]:
    return {k: [{kk: v for kk, v in r.items() if kk != "seconds"} for r in h.records] for k, h in histories.items()}


# --- Chapter 1: one training loop, the CLI's profile and config --------------------------------

def test_train_families_trains_depth_by_depth_from_one_start(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(tmp_path))
    finished = {}
    models, histories = ch1.train_families(RECIPE, *tiny_loaders(), device="cpu", depths=[20, 32], progress=False,
                                           experiment="degradation", data={"source": "test"}, histories=finished)
    assert list(models) == list(histories) == ["plain20", "resnet20", "plain32", "resnet32"]
    assert finished == histories
    for label in models:  # checkpointed where run_checkpoint says, with the data and the seed recorded
        path = run_checkpoint("degradation", RECIPE, label)
        assert torch.load(path, weights_only=True)["fingerprint"]["data"] == {"source": "test", "seed": 0}
    # every net starts from the same seed and batches: trained alone, the last one ends the same
    _, alone = ch1.train_families(RECIPE, *tiny_loaders(), device="cpu", families=("resnet",), depths=[32],
                                  progress=False)
    assert without_seconds(alone) == {"resnet32": without_seconds(histories)["resnet32"]}


def test_train_families_checkpoints_under_the_key_it_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(tmp_path))
    key = {"depth": 20, "lr": 0.05}
    ch1.train_families(RECIPE, *tiny_loaders(), device="cpu", families=("plain",), experiment="landscape", key=key,
                       progress=False)
    assert [p for p in tmp_path.rglob("*.pt")] == [run_checkpoint("landscape", key, "plain20")]


def test_profile_and_config_overrides_epochs_only_when_given():
    profile, cfg = ch1.profile_and_config(argparse.Namespace(profile="smoke", epochs=None), ch1.config)
    assert profile.name == "smoke" and cfg == ch1.config(profile)
    assert ch1.profile_and_config(argparse.Namespace(profile="smoke", epochs=3), ch7.config)[1]["epochs"] == 3
    # a command without --epochs (a Namespace without the option) keeps the profile's epochs
    assert ch1.profile_and_config(argparse.Namespace(profile="smoke"), ch8.config)[1] == ch8.config(profile)


def test_plot_families_puts_plain_nets_left_and_resnets_right():
    fig, axes = plt.subplots(1, 2)
    records = [{"epoch": 1, "train_err": 0.5}]
    ch1.plot_families({"plain20": records, "resnet20": records, "plain56": records}, axes, note=" (x)")
    assert [line.get_label() for line in axes[0].get_lines()] == ["plain20", "plain56"]
    assert [line.get_label() for line in axes[1].get_lines()] == ["resnet20"]
    assert [ax.get_title() for ax in axes] == ["plain (x)", "residual (option A shortcuts) (x)"]
    plt.close(fig)


# --- Chapter 5: cost, feature reuse, the figures ----------------------------------------------

def test_dense_net_is_the_papers_densenet_bc():
    net = ch5.dense_net({"dense_depth": 100, "growth_rate": 12})
    assert count_parameters(net) == PARAMETERS["densenet_bc100"]


def test_training_cost_counts_parameters_multiply_adds_and_memory():
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    cost = ch5.training_cost(conv, size=8, batch=2)
    assert cost["params"] == 4 * 3 * 9
    assert cost["macs"] == 4 * 8 * 8 * (3 * 9)  # one 27-term dot product per output value
    assert 0 < cost["mem"] <= cost["peak"]


def test_training_cost_measures_the_model_where_it_is_even_beside_a_gpu(monkeypatch):
    # torchinfo moves a model to CUDA whenever CUDA is available unless told the device; on the GPU
    # profile's first run that left a CPU input for a CUDA model (found by gpu-check on an H200)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    cost = ch5.training_cost(conv, size=8, batch=2)
    assert cost["params"] == 4 * 3 * 9 and conv.weight.device.type == "cpu"


def test_reuse_maps_one_per_block_and_refuses_an_imagenet_densenet():
    net = cifar_densenet(16, 4, bottleneck=True, compression=0.5)  # 2 layers per block
    maps = ch5.reuse_maps(net)
    assert [tuple(m.shape) for m in maps] == [(3, 3)] * 3  # sources in, 1, 2; targets 1, 2, then the next layer
    for m in maps:  # each target normalised to a largest entry of 1; a source after its target is not connected
        assert torch.equal(m.nan_to_num(0.0).amax(0), torch.ones(3)) and torch.isnan(m[2, 0])
    with pytest.raises(ValueError, match="three dense blocks"):
        ch5.reuse_maps(densenet121())


def test_far_mean_and_smallest_read_the_maps():
    nan = math.nan
    m = torch.tensor([[1.0, 0.5, 0.2], [nan, 1.0, 0.4], [nan, nan, 1.0]])
    assert ch5.far_mean([m]) == pytest.approx(0.4)  # only source 1 of target 3 is two layers back
    assert ch5.far_mean([m, m * 0.5]) == pytest.approx(0.3)
    assert ch5.smallest([m, m * 0.5]) == pytest.approx((0.2 + 0.1) / 2)


def test_relative_change_is_the_norm_of_the_update_over_the_initial_norm():
    initial, trained = nn.Linear(2, 1, bias=False), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        initial.weight.copy_(torch.tensor([[3.0, 4.0]]))
        trained.weight.copy_(torch.tensor([[3.0, 5.0]]))
    assert ch5.relative_change(trained, initial) == pytest.approx(1 / 5)
    assert ch5.relative_change(initial, initial) == 0


def test_plot_reuse_and_plot_efficiency_draw_every_panel():
    maps = ch5.reuse_maps(cifar_densenet(16, 4, bottleneck=True, compression=0.5))
    fig = ch5.plot_reuse({"a": maps, "b": maps})
    assert [ax.get_title() for ax in fig.axes[:6]] == [f"dense block {i}: {w}" for w in "ab" for i in (1, 2, 3)]
    assert [t.get_text() for t in fig.axes[2].get_xticklabels()][-1] == "C"  # the last block feeds the classifier
    h = History([{"epoch": 1, "train_err": 0.5, "test_err": 0.6}, {"epoch": 2, "train_err": 0.4, "test_err": 0.5}])
    reference = {"runs": [{"model": "densenet_bc100", "parameters": 769_162, "test_err": 0.05}]}
    fig2 = ch5.plot_efficiency({"A": h, "B": h}, {"A": 1000, "B": 3000}, {"A": "red", "B": "blue"}, reference)
    left, right = fig2.axes
    assert len(left.get_lines()) == 4 and len(right.collections) == 3  # two runs, one reference run
    assert right.get_xlim()[1] == pytest.approx(1.2 * 3000 / 1e6)
    plt.close("all")


# --- Chapter 7: curves against depth --------------------------------------------------------------

ROWS = [{"family": "plain", "depth": 32, "train_err_mean": 0.6, "train_err_std": 0.02},
        {"family": "residual", "depth": 8, "train_err_mean": 0.3, "train_err_std": 0.01},
        {"family": "plain", "depth": 8, "train_err_mean": 0.4, "train_err_std": 0.01}]


def test_by_family_sorts_each_family_by_depth():
    curves = ch7.by_family(ROWS, "train_err")
    assert list(curves) == ["plain", "residual"]  # in order of appearance
    depths, mean, std = curves["plain"]
    assert depths == [8, 32] and mean.tolist() == [0.4, 0.6] and std.tolist() == [0.01, 0.02]


def test_plot_vs_depth_labels_families_and_plots_percent():
    fig, ax = plt.subplots()
    ch7.plot_vs_depth(ROWS, "train_err", ax, "t")
    labels = [c.get_label() for c in ax.containers]
    assert labels == ["plain", "residual"] and ax.get_ylabel() == "train error (%)" and ax.get_title() == "t"
    assert ax.containers[0].lines[0].get_ydata().tolist() == pytest.approx([40.0, 60.0])
    plt.close(fig)


def test_chapter_5_and_8_use_chapter_1s_loaders():
    assert ch5.loaders is ch1.loaders and ch8.loaders is ch1.loaders


def test_identity_verdict_says_where_residual_stacks_win_and_why_they_lose():
    from skiplib.chapters.ch02_identity import identity_verdict

    def fit(before, after):
        return {"before": before, "after": after}

    plain = [fit(1.0, 0.05), fit(1.0, 0.2), fit(1.0, 0.4)]
    all_won = identity_verdict([2, 16, 32], {"plain": plain, "residual": [fit(0.5, 0.0), fit(4, 0.1), fit(9, 0.3)]})
    assert all_won.startswith("Residual blocks of the same layers end lower at every depth")
    lost = identity_verdict([2, 16, 32], {"plain": plain, "residual": [fit(0.5, 0.0), fit(4, 0.1), fit(16.5, 0.73)]})
    assert "end lower at $k = 2, 16$" in lost and "but not at $k = 32$ (from 16.50" in lost and "0.730" in lost
    with pytest.raises(ValueError, match="one plain and one residual fit per depth"):
        identity_verdict([2, 4], {"plain": plain, "residual": plain})

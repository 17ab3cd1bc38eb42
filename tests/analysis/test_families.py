"""Chapter 7's harness: matched budgets, FLOP counts, reproducible records, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skiplib.analysis import families as C
from skiplib.chapters import ch07_comparison as experiment
from skiplib.data import DeviceLoader, synthetic_cifar10, to_float
from skiplib.models import count_parameters
from skiplib.profile import get_profile


def test_flops_of_a_convolution_and_a_linear_layer_by_hand():
    # conv: every one of the 8 x 16 x 16 outputs is a sum of 3 x 3 x 3 products; linear: 10 x 4
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 4))
    assert C.count_flops(conv, (3, 16, 16)) == 2 * (8 * 16 * 16 * 27 + 8 * 16 * 16 * 4)
    strided_grouped = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4, bias=False)
    assert C.count_flops(strided_grouped, (8, 16, 16)) == 2 * (16 * 8 * 8 * (8 // 4) * 9)


def test_flops_of_resnet20_at_32x32_match_the_usual_figure():
    # ResNet-20 for CIFAR-10 is usually quoted at about 41M multiply-adds
    macs = C.count_flops(C.get_family("residual").build(20, 64), (3, 32, 32)) / 2
    assert 40.5e6 < macs < 41.5e6


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu"])
def test_every_family_matches_the_chapter_budget_within_5_percent(name):
    cfg = experiment.config(get_profile(name, device="cpu"))  # sizes only: no gpu-without-CUDA warning
    for family in cfg["families"]:
        for target in cfg["depths"]:
            depth = C.get_family(family).nearest_depth(target)
            width, params = C.matched_width(family, depth, cfg["budget"])
            assert abs(params / cfg["budget"] - 1) <= 0.05, (family, depth, width, params)
            assert params == count_parameters(C.get_family(family).build(depth, width))


def test_matched_width_is_the_closest_and_says_when_the_budget_cannot_be_met():
    family = C.get_family("residual")
    width, params = C.matched_width(family, 20, 269_722)
    assert (width, params) == (64, 269_722)  # ResNet-20 itself: widths 16, 32, 64
    with pytest.raises(ValueError, match="tolerance"):
        C.matched_width(family, 20, 300, tolerance=0.05)
    with pytest.raises(ValueError, match="6n\\+2"):
        C.matched_width(family, 21, 100_000)
    with pytest.raises(ValueError, match="registered families are plain, highway"):
        C.get_family("gated-dense")


def test_nearest_depth_follows_each_family_rule():
    assert C.get_family("residual").nearest_depth(30) == 32
    assert C.get_family("dense").nearest_depth(8) == 10
    assert C.get_family("dense").nearest_depth(32) == 34


def test_register_family_refuses_a_taken_name():
    with pytest.raises(ValueError, match="exists already"):
        C.register_family(C.get_family("plain"))


def _loaders(seed: int):
    ds = synthetic_cifar10(96, seed=seed)
    x = to_float(ds.images, 16)
    train = DeviceLoader(x, ds.labels, 32, shuffle=True, augment=True, pad=2, seed=seed)
    test = DeviceLoader(x[:64], ds.labels[:64], 32, seed=seed)
    return train, test


def test_identical_seeds_give_identical_records():
    kwargs = dict(loaders=_loaders, epochs=1, seeds=[0, 1], device="cpu")
    a = C.compare(["residual", "dense"], [8], 20_000, **kwargs)
    b = C.compare(["residual", "dense"], [8], 20_000, **kwargs)
    strip = lambda rs: [{k: v for k, v in r.items() if k not in C.TIMING_FIELDS} for r in rs]  # noqa: E731
    assert strip(a) == strip(b)
    assert [r["seed"] for r in a] == [0, 1, 0, 1]
    assert a[0]["train_err"] != a[1]["train_err"] or a[0]["test_loss"] != a[1]["test_loss"], "seeds must differ"
    for r in a:
        assert r["peak_memory_bytes"] > 0 and r["flops_per_image"] > 0 and r["img_per_s"] > 0
        assert 0 <= r["train_err"] <= 1


def test_summarise_gives_mean_and_sample_spread():
    base = {"family": "residual", "skip": "+", "depth": 8, "width": 4, "params": 10, "flops_per_image": 1,
            "peak_memory_bytes": 1}
    rows = C.summarise([{**base, "train_err": 0.2, "test_err": 0.3, "img_per_s": 10.0},
                        {**base, "train_err": 0.4, "test_err": 0.5, "img_per_s": 30.0}])
    assert len(rows) == 1 and rows[0]["seeds"] == 2
    assert rows[0]["train_err_mean"] == pytest.approx(0.3)
    assert rows[0]["train_err_std"] == pytest.approx(0.1414213, rel=1e-5)
    assert rows[0]["img_per_s_mean"] == pytest.approx(20.0)


def test_peak_memory_counts_the_activations_of_a_step():
    model = C.get_family("plain").build(8, 16)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    small = C.peak_training_memory(model, x, y)
    large = C.peak_training_memory(model, torch.randn(32, 3, 16, 16), torch.randint(0, 10, (32,)))
    assert small > 0 and 3.0 < large / small < 5.0  # activations grow with the batch
    assert C.peak_training_memory(model, x, y) == small


def test_experiment_rejects_unknown_families():
    cfg = {**experiment.config(get_profile("smoke")), "families": ["plain", "gated"]}
    with pytest.raises(ValueError, match="gated"):
        experiment.run(cfg, device="cpu", allow_synthetic=True)


# ------------------------------------------------------------------------------------------
# The exercise: a ReZero block, graded by skiplib.exercises.check_rezero_block

from skiplib.blocks import PadShortcut  # noqa: E402
from skiplib.exercises import check_rezero_block  # noqa: E402


def _rezero(alpha_init=0.0, relu_after=False, as_parameter=True):
    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.residual = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.shortcut = PadShortcut(cin, cout, stride) if (cin, stride) != (cout, 1) else nn.Identity()
            alpha = torch.full((1,), alpha_init)
            self.alpha = nn.Parameter(alpha) if as_parameter else alpha

        def forward(self, x):
            y = self.shortcut(x) + self.alpha * self.residual(x)
            return torch.relu(y) if relu_after else y

    return Block


def test_rezero_grader_accepts_a_correct_block(capsys):
    assert check_rezero_block(_rezero())
    assert "5/5 checks passed" in capsys.readouterr().out


@pytest.mark.parametrize("mistake,message", [
    (dict(relu_after=True), "ReLU after the addition"),
    (dict(alpha_init=1.0), "is alpha initialised to zero"),
    (dict(as_parameter=False), "must be an nn.Parameter"),
])
def test_rezero_grader_names_the_mistake(mistake, message, capsys):
    assert not check_rezero_block(_rezero(**mistake))
    assert message in capsys.readouterr().out


def test_a_custom_block_plugs_into_the_cifar_net_and_the_harness():
    family = C.Family("rezero-test", "x + a*F(x)", "6n+2", lambda d: d >= 8 and (d - 2) % 6 == 0,
                      lambda d, w: C.CifarResNet(d, widths=C._stage_widths(w), block=_rezero()))
    C.register_family(family, replace=True)
    try:
        width, params = C.matched_width("rezero-test", 8, 25_000)
        net = family.build(8, width)
        assert len(net.blocks()) == 3 and all(hasattr(b, "alpha") for b in net.blocks())
        assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    finally:
        C.FAMILIES.pop("rezero-test")

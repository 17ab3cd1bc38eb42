import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from skiplib import plots
from skiplib.analysis import probes  # noqa: E402
from skiplib.models import create_model  # noqa: E402


def test_gradient_norms_one_per_weighted_layer_and_model_untouched():
    torch.manual_seed(0)
    model = create_model("plain20").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    norms = probes.gradient_norms(model, x, y)
    assert len(norms) == 20  # 19 convs + 1 linear: depth counts weighted layers
    assert list(norms)[0] == "conv1" and list(norms)[-1] == "fc"
    assert all(v > 0 for v in norms.values())
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    assert all(p.grad is None for p in model.parameters())


def test_gradient_norms_match_autograd():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10))
    x, y = torch.randn(4, 3, 2, 2), torch.randint(0, 10, (4,))
    norms = probes.gradient_norms(model, x, y)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert norms["1"] == pytest.approx(model[1].weight.grad.norm().item())


def test_gradient_norms_errors():
    with pytest.raises(ValueError, match="samples"):
        probes.gradient_norms(create_model("plain20"), torch.randn(2, 3, 8, 8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="no Conv2d"):
        probes.gradient_norms(torch.nn.Flatten(), torch.randn(2, 3), torch.zeros(2, dtype=torch.long))


def test_activation_norms_restore_mode_and_remove_hooks():
    model = create_model("resnet20").train()
    out = probes.activation_norms(model, torch.randn(2, 3, 8, 8))
    assert len(out) == 20 and model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_plots_draw_labelled_axes():
    plots.use_style()
    fig, ax = plt.subplots()
    hist = {"plain20": [{"epoch": 1, "train_err": 0.5}, {"epoch": 2, "train_err": 0.4}],
            "resnet20": [{"epoch": 1, "train_err": 0.45}, {"epoch": 2, "train_err": 0.3}]}
    plots.plot_curves(hist, "train_err", ax=ax)
    assert ax.get_xlabel() == "epoch" and "%" in ax.get_ylabel()
    assert [line.get_label() for line in ax.get_lines()] == ["plain20", "resnet20"]
    assert ax.get_lines()[1].get_ydata()[1] == pytest.approx(30.0)
    assert plots.color_for("plain20") != plots.color_for("resnet20")
    plots.plot_grad_norms({"plain20": {"a": 1.0, "b": 0.5}}, ax=ax)
    with pytest.raises(ValueError, match="no epochs"):
        plots.plot_curves({"x": []}, ax=ax)
    plt.close(fig)

"""Chapter 3: highway layers (gate limits, shapes, gradients), highway nets in the registry,
the parameter matching the chapter relies on, and the highway-layer grader."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skiplib.blocks import ConvHighwayLayer, FreeCarryHighwayLayer, HighwayLayer
from skiplib.chapters.ch03_highway import config as chapter_config
from skiplib.exercises import check_free_carry_highway, check_highway_layer
from skiplib.models import count_parameters, create_model, list_models
from skiplib.models.fc import FCNet
from skiplib.models.highway import HighwayCifarNet, gate_activity, highway_layers
from skiplib.profile import get_profile


def test_very_negative_gate_bias_is_identity():
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    assert torch.allclose(HighwayLayer(16, gate_bias=-40.0)(x), x, atol=1e-6)
    conv = ConvHighwayLayer(4, 4, gate_bias=-40.0).eval()
    xc = torch.randn(2, 4, 6, 6)
    assert torch.allclose(conv(xc), xc, atol=1e-6)


def test_very_positive_gate_bias_is_transform():
    torch.manual_seed(0)
    layer = HighwayLayer(16, gate_bias=40.0)
    x = torch.randn(8, 16)
    assert torch.allclose(layer(x), F.relu(layer.H(x)), atol=1e-6)
    conv = ConvHighwayLayer(4, 8, stride=2, gate_bias=40.0).eval()
    xc = torch.randn(2, 4, 6, 6)
    assert torch.allclose(conv(xc), F.relu(conv.bn(conv.conv(xc))), atol=1e-6)


def test_forward_is_the_highway_equation():
    torch.manual_seed(0)
    layer = HighwayLayer(5, gate_bias=0.3)
    x = torch.randn(3, 5)
    t = torch.sigmoid(x @ layer.T.weight.T + layer.T.bias)
    h = F.relu(x @ layer.H.weight.T + layer.H.bias)
    assert torch.allclose(layer(x), h * t + x * (1 - t), atol=1e-6)


def test_gate_bias_initialisation_and_default():
    assert torch.equal(HighwayLayer(7, gate_bias=-3.0).T.bias, torch.full((7,), -3.0))
    assert -3.0 <= HighwayLayer(7).gate_bias <= -1.0  # the paper's range
    assert torch.equal(ConvHighwayLayer(3, 5).gate.bias, torch.full((5,), HighwayLayer(1).gate_bias))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "-2", None, True])
def test_bad_gate_bias_raises(bad):
    with pytest.raises(ValueError, match="gate_bias must be a finite number"):
        HighwayLayer(4, gate_bias=bad)


def test_conv_layer_shapes_and_padding_carry():
    assert ConvHighwayLayer(8, 8).shortcut is None
    layer = ConvHighwayLayer(8, 16, stride=2, gate_bias=-40.0).eval()
    x = torch.randn(2, 8, 8, 8)
    out = layer(x)
    assert out.shape == (2, 16, 4, 4)
    assert torch.allclose(out[:, :8], x[:, :, ::2, ::2], atol=1e-6) and out[:, 8:].abs().max() < 1e-6
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        ConvHighwayLayer(8, 8, stride=3)


@pytest.mark.parametrize("layer,x", [(HighwayLayer(6), torch.randn(4, 6)),
                                     (ConvHighwayLayer(4, 8, stride=2), torch.randn(2, 4, 8, 8))])
def test_layer_gradients_reach_every_parameter(layer, x):
    x.requires_grad_(True)
    layer(x).square().mean().backward()
    missing = [n for n, p in layer.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing and x.grad is not None


HIGHWAY_NAMES = ["highway_fc", "plain_fc", "highway20", "highway32", "highway56"]


def test_highway_family_is_registered():
    assert set(HIGHWAY_NAMES) <= set(list_models())


@pytest.mark.parametrize("name", HIGHWAY_NAMES)
def test_registry_models_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.randn(2, 3, 8, 8) if name.endswith("_fc") else torch.randn(2, 3, 16, 16)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


def test_fc_nets_paper_layer_sizes_and_depth():
    # the paper's thin nets: 50 highway units vs 71 plain units, about 5,000 parameters per layer
    hw, plain = create_model("highway_fc", depth=20), create_model("plain_fc", depth=20)
    assert count_parameters(hw.layers[0]) == 5_100 and count_parameters(plain.layers[0]) == 5_112
    assert len(hw.layers) == len(plain.layers) == 19 and len(highway_layers(hw)) == 19
    with pytest.raises(ValueError, match="kind"):
        FCNet(kind="gated")
    with pytest.raises(ValueError, match="depth"):
        create_model("plain_fc", depth=1)


@pytest.mark.parametrize("depth", [20, 32, 56])
def test_highway_cifar_net_matches_resnet_parameters(depth):
    hw, res = count_parameters(create_model(f"highway{depth}")), count_parameters(create_model(f"resnet{depth}"))
    assert abs(hw / res - 1) < 0.01, (hw, res)
    assert len(highway_layers(create_model(f"highway{depth}"))) == depth - 2


def test_highway_cifar_bad_depth():
    with pytest.raises(ValueError, match="6n\\+2"):
        HighwayCifarNet(depth=21)


def test_gate_activity_shapes_and_range():
    model = create_model("highway_fc", depth=5, gate_bias=-2.0)
    gates = gate_activity(model, torch.randn(7, 3, 8, 8))
    assert len(gates) == 4 and all(g.shape == (7, 50) for g in gates)
    assert all(((g > 0) & (g < 1)).all() for g in gates)
    with pytest.raises(ValueError, match="no highway layers"):
        gate_activity(create_model("plain_fc", depth=3), torch.randn(2, 192))


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu"])
def test_chapter_config(name):
    cfg = chapter_config(get_profile(name, device="cpu"))
    assert cfg["profile"] == name and cfg["depths"][0] == 10
    assert set(cfg["depths"]) <= {10, 20, 50, 100} and (cfg["conv_depth"] - 2) % 6 == 0


def test_cli_writes_depth_experiment_with_provenance(tmp_path):
    import json

    from skiplib.cli import main

    assert main(["highway", "--profile", "smoke", "--out-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "highway-depth-smoke.json").read_text())
    cfg = chapter_config(get_profile("smoke", device="cpu"))
    assert set(data["best"]) == {f"{k}{d}" for k in ("plain", "highway") for d in cfg["depths"]}
    assert len(data["runs"]) == 2 * len(cfg["depths"]) * len(cfg["fc_lrs"])
    assert data["provenance"]["data_source"] and data["provenance"]["profile"] == "smoke"


def test_diverging_run_counts_as_failed_not_error():
    from skiplib.chapters.ch03_highway import train_fc

    torch.manual_seed(0)
    x, y = torch.randn(64, 12) * 1e3, torch.randint(0, 10, (64,))
    run = train_fc("highway", 2, 1e6, x, y, epochs=2, batch_size=16)
    assert run.history is None and run.final_loss == float("inf")


# ---------------------------------------------------------------- the grader
class GoodHighway(nn.Module):
    def __init__(self, features, gate_bias=-2.0):
        super().__init__()
        self.H = nn.Linear(features, features)
        self.T = nn.Linear(features, features)
        nn.init.constant_(self.T.bias, gate_bias)

    def gate(self, x):
        return torch.sigmoid(self.T(x))

    def forward(self, x):
        t = self.gate(x)
        return F.relu(self.H(x)) * t + x * (1 - t)


def variant(forward=None, gate=None, init_bias=True):
    class Variant(GoodHighway):
        def __init__(self, features, gate_bias=-2.0):
            super().__init__(features, gate_bias)
            if not init_bias:
                nn.init.zeros_(self.T.bias)

    if forward is not None:
        Variant.forward = forward
    if gate is not None:
        Variant.gate = gate
    return Variant


def test_grader_accepts_correct_layer(capsys):
    assert check_highway_layer(GoodHighway)
    assert "5/5 checks passed" in capsys.readouterr().out
    assert check_highway_layer(HighwayLayer, verbose=False)


@pytest.mark.parametrize("forward,message", [
    (lambda self, x: x * self.gate(x) + F.relu(self.H(x)) * (1 - self.gate(x)), "the gates are swapped"),
    (lambda self, x: F.relu(self.H(x)) + x, "the gate is missing"),
    (lambda self, x: F.relu(self.H(x)) * self.gate(x), "the carry term is missing"),
    (lambda self, x: F.relu(self.H(x)) * self.gate(x) + x, "the carry gate is missing"),
    (lambda self, x: F.relu(self.H(x)) + 0 * self.T(x), "the gates are missing"),
])
def test_grader_names_wrong_gating(forward, message, capsys):
    assert not check_highway_layer(variant(forward=forward))
    out = capsys.readouterr().out
    assert "✗ same output as skiplib.blocks.HighwayLayer" in out and message in out


@pytest.mark.parametrize("gate", [lambda self, x: torch.tanh(self.T(x)), lambda self, x: F.relu(self.T(x)),
                                  lambda self, x: self.T(x)])
def test_grader_names_wrong_gate_nonlinearity(gate, capsys):
    assert not check_highway_layer(variant(gate=gate))
    assert "the transform gate must be a sigmoid" in capsys.readouterr().out


def test_grader_names_bias_init_not_negative(capsys):
    assert not check_highway_layer(variant(init_bias=False))
    out = capsys.readouterr().out
    assert "✗ transform-gate bias starts at gate_bias" in out and "not negative" in out
    assert "✓ same output as skiplib.blocks.HighwayLayer" in out  # the forward itself is right


def test_grader_names_wrong_attributes(capsys):
    class Renamed(nn.Module):
        def __init__(self, features, gate_bias=-2.0):
            super().__init__()
            self.transform = nn.Linear(features, features)
            self.gate = nn.Linear(features, features)

        def forward(self, x):
            return x

    assert not check_highway_layer(Renamed)
    assert "self.H should be nn.Linear(features, features)" in capsys.readouterr().out


def test_grader_reports_placeholder_as_not_attempted(capsys):
    class Todo(nn.Module):
        def __init__(self, features, gate_bias=-2.0):
            super().__init__()
            raise NotImplementedError

    assert not check_highway_layer(Todo)
    assert "not attempted" in capsys.readouterr().out


# --- the chapter's exercise: a highway layer with a carry gate of its own ----------------------

class GoodFreeCarry(nn.Module):
    def __init__(self, features, gate_bias=-2.0, carry_bias=2.0):
        super().__init__()
        self.H, self.T, self.C = (nn.Linear(features, features) for _ in range(3))
        nn.init.constant_(self.T.bias, gate_bias)
        nn.init.constant_(self.C.bias, carry_bias)

    def forward(self, x):
        return F.relu(self.H(x)) * torch.sigmoid(self.T(x)) + x * torch.sigmoid(self.C(x))


def free_variant(forward):
    class Variant(GoodFreeCarry):
        pass

    Variant.forward = forward
    return Variant


def test_free_carry_layer_is_the_papers_general_form():
    layer = FreeCarryHighwayLayer(5, gate_bias=-40.0, carry_bias=40.0)
    x = torch.randn(3, 5)
    assert torch.allclose(layer(x), x, atol=1e-6)  # transform closed, carry open: the identity
    with torch.no_grad():
        layer.C.bias.fill_(-40.0)
    assert torch.allclose(layer(x), torch.zeros_like(x), atol=1e-6)  # both closed: nothing passes
    assert torch.equal(FreeCarryHighwayLayer(5).C.bias, torch.full((5,), 2.0))
    with pytest.raises(ValueError, match="finite number"):
        FreeCarryHighwayLayer(5, carry_bias=float("nan"))


def test_free_carry_grader_accepts_correct_layers(capsys):
    assert check_free_carry_highway(GoodFreeCarry)
    assert "5/5 checks passed" in capsys.readouterr().out
    assert check_free_carry_highway(FreeCarryHighwayLayer, verbose=False)
    assert not check_free_carry_highway(HighwayLayer, verbose=False)  # the simplified layer has no carry gate


@pytest.mark.parametrize("forward,message", [
    (lambda self, x: F.relu(self.H(x)) * torch.sigmoid(self.T(x)) + x * (1 - torch.sigmoid(self.T(x)))
     + 0 * self.C(x), "the carry gate is 1 - T(x)"),
    (lambda self, x: F.relu(self.H(x)) * torch.sigmoid(self.C(x)) + x * torch.sigmoid(self.T(x)), "the gates are swapped"),
    (lambda self, x: F.relu(self.H(x)) * torch.sigmoid(self.T(x)) + x + 0 * self.C(x), "the carry is not gated"),
    (lambda self, x: F.relu(self.H(x)) * torch.sigmoid(self.T(x)) + x * self.C(x), "the carry gate must be a sigmoid"),
])
def test_free_carry_grader_names_the_mistake(forward, message, capsys):
    assert not check_free_carry_highway(free_variant(forward=forward))
    out = capsys.readouterr().out
    assert "✗ same output as skiplib.blocks.FreeCarryHighwayLayer" in out and message in out


class ClosedCarryByDefault(GoodFreeCarry):
    def __init__(self, features, gate_bias=-2.0, carry_bias=-2.0):  # honours the argument, wrong default
        super().__init__(features, gate_bias, carry_bias)


class IgnoresCarryBias(GoodFreeCarry):
    def __init__(self, features, gate_bias=-2.0, carry_bias=2.0):
        super().__init__(features, gate_bias, 2.0)


def test_free_carry_grader_checks_how_the_gates_start(capsys):
    assert not check_free_carry_highway(ClosedCarryByDefault)
    assert "the carry gate open (carry_bias > 0)" in capsys.readouterr().out
    assert not check_free_carry_highway(IgnoresCarryBias)
    assert "with carry_bias=3.0 every entry of self.C.bias should be 3.0" in capsys.readouterr().out

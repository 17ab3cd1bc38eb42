"""Chapter 5, DenseNets: paper parameter counts, channel arithmetic, memory-efficient == naive, the
memory measurement, and the dense-layer grader. densenet121 against torchvision (state_dict,
pretrained weights): tests/models/test_pretrained.py."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skiplib.analysis.memory import TensorMemory, block_memory_curve, growth_exponent, step_memory
from skiplib.blocks import DenseBlock, DenseLayer, Transition
from skiplib.exercises.ch05_densenets import check_dense_layer
from skiplib.models import count_parameters, create_model, list_models
from skiplib.models.densenet import PARAMETERS, DenseNet, cifar_densenet

NAMES = ["densenet40", "densenet_bc100", "densenet121"]


@pytest.mark.parametrize("name,expected", [("densenet40", 1_019_722), ("densenet_bc100", 769_162),
                                           ("densenet121", 7_978_856)])
def test_paper_parameter_counts(name, expected):
    assert PARAMETERS[name] == expected
    assert count_parameters(create_model(name)) == expected


def test_family_is_registered():
    assert set(NAMES) <= set(list_models())


def test_channel_counts_after_each_block_and_transition():
    model = cifar_densenet(100, 12, bottleneck=True, compression=0.5)  # DenseNet-BC-100
    shapes = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
             for name, m in model.features.named_children()]
    model(torch.randn(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    # 2k = 24 stem channels; each block adds 16 * 12 = 192; transitions halve channels and resolution
    assert shapes == {"conv0": (24, 32, 32), "denseblock1": (216, 32, 32), "transition1": (108, 16, 16),
                      "denseblock2": (300, 16, 16), "transition2": (150, 8, 8), "denseblock3": (342, 8, 8),
                      "norm5": (342, 8, 8)}
    d40 = cifar_densenet(40, 12)  # no compression: the transition keeps the channels
    assert [b.out_channels for b in d40.dense_blocks()] == [160, 304, 448]
    assert [m.out_channels for m in d40.features if isinstance(m, Transition)] == [160, 304]


def test_dense_layer_returns_k_new_maps_and_block_concatenates():
    layer = DenseLayer(20, 6)
    assert layer([torch.randn(2, 8, 5, 5), torch.randn(2, 6, 5, 5), torch.randn(2, 6, 5, 5)]).shape == (2, 6, 5, 5)
    block = DenseBlock(4, 8, 6, bn_size=None).eval()
    x = torch.randn(2, 8, 5, 5)
    y = block(x)
    assert y.shape == (2, 8 + 4 * 6, 5, 5) and torch.equal(y[:, :8], x)  # the input is passed on unchanged
    assert [layer.conv1.in_channels for layer in block.values()] == [8, 14, 20, 26]  # k0 + (l-1) k


@pytest.mark.parametrize("bn_size", [4, None])
def test_memory_efficient_gives_identical_outputs_gradients_and_statistics(bn_size):
    torch.manual_seed(0)
    naive = DenseBlock(5, 8, 6, bn_size=bn_size, drop_rate=0.0)
    efficient = copy.deepcopy(naive)
    efficient.set_memory_efficient(True)
    for _step in range(2):  # the second step uses the running statistics updated by the first
        x = torch.randn(4, 8, 8, 8)
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = naive(xa), efficient(xb)
        assert torch.equal(ya, yb)
        g = torch.randn_like(ya)
        ya.backward(g)
        yb.backward(g)
        assert torch.equal(xa.grad, xb.grad)
        for (name, p), q in zip(naive.named_parameters(), efficient.parameters()):
            assert torch.equal(p.grad, q.grad), name
        # recomputation in backward must not update BN's running statistics a second time
        for (name, a), b in zip(naive.named_buffers(), efficient.buffers()):
            assert torch.equal(a, b), name
    naive.eval(), efficient.eval()
    with torch.no_grad():
        assert torch.equal(naive(x), efficient(x))


def test_memory_efficient_network_flag():
    torch.manual_seed(0)
    a = create_model("densenet_bc100", num_classes=10)
    b = create_model("densenet_bc100", num_classes=10, memory_efficient=True)
    b.load_state_dict(a.state_dict())
    assert all(layer.memory_efficient for layer in b.dense_layers()) and len(b.dense_layers()) == 48
    x = torch.randn(2, 3, 16, 16)
    ya, yb = a(x), b(x)
    assert torch.equal(ya, yb)
    ya.sum().backward()
    yb.sum().backward()
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(a.parameters(), b.parameters()))


def test_tensor_memory_counts_live_storages_once():
    with TensorMemory() as mem:
        a = torch.zeros(1000)  # 4000 bytes
        view = a[:10]  # a view: no new storage
        b = torch.ones(500)  # 2000 bytes
        assert mem.current == 6000
        del a, b
        assert mem.current == 4000  # the view keeps a's storage alive
        del view
    assert mem.current == 0 and mem.peak == 6000


def test_memory_curves_naive_quadratic_efficient_linear():
    rows = block_memory_curve([4, 8, 16], batch=2, image_size=8)
    naive = [r["peak_mib"] for r in rows if r["mode"] == "naive"]
    eff = [r["peak_mib"] for r in rows if r["mode"] == "memory-efficient"]
    assert all(e < n for e, n in zip(eff, naive))
    assert growth_exponent([8, 16], naive[1:]) > 1.4
    assert 0.8 < growth_exponent([8, 16], eff[1:]) < 1.15
    assert step_memory(DenseBlock(2, 4, 4), torch.randn(1, 4, 4, 4))["peak_mib"] > 0


def test_measured_forward_memory_matches_the_count_of_saved_maps():
    """Chapter 5's exercise: naive 2(k0 + (l-1)k) + 8k maps per layer, memory-efficient 9k, plus the output."""
    L, k0, k, batch, size = 8, 16, 8, 2, 8
    one_map = batch * size * size * 4 / 2**20  # MiB of one float32 channel
    block = DenseBlock(L, k0, k, bn_size=4)
    naive = step_memory(block, torch.randn(batch, k0, size, size))["forward_mib"] / one_map
    block.set_memory_efficient(True)
    efficient = step_memory(block, torch.randn(batch, k0, size, size))["forward_mib"] / one_map
    out = k0 + L * k
    assert naive == pytest.approx(2 * L * k0 + k * L * (L - 1) + 8 * k * L + out, rel=0.02)  # + BN's saved statistics
    assert efficient == pytest.approx(9 * k * L - k + out, rel=0.02)


def test_growth_exponent():
    assert growth_exponent([1, 2, 4], [3, 12, 48]) == pytest.approx(2)
    with pytest.raises(ValueError, match="two depths"):
        growth_exponent([4], [1])


@pytest.mark.parametrize("kwargs,match", [
    ({"depth": 41}, "3n\\+4"), ({"depth": 43, "bottleneck": True}, "6n\\+4"), ({"depth": "40"}, "3n\\+4"),
    ({"depth": 40, "compression": 0.0}, "compression"), ({"depth": 40, "growth_rate": 0}, "growth_rate"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cifar_densenet(**kwargs)


@pytest.mark.parametrize("kwargs,match", [({"block_config": ()}, "block_config"), ({"stem": "tiny"}, "cifar, imagenet"),
                                          ({"num_classes": 0}, "num_classes")])
def test_densenet_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DenseNet(**kwargs)


# ---------------------------------------------------------------------------------------------
# the grader of the coding exercise


class GoodLayer(nn.Module):
    def __init__(self, in_channels, growth_rate, bn_size=4):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, inputs):
        x = torch.cat(inputs, 1)
        x = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(x)))


def _bad(forward):
    return type("BadLayer", (GoodLayer,), {"forward": forward})


def test_grader_accepts_correct_layer(capsys):
    assert check_dense_layer(GoodLayer)
    assert "7/7 checks passed" in capsys.readouterr().out
    assert check_dense_layer(lambda c, k, bn_size=4: DenseLayer(c, k, bn_size), verbose=False)


@pytest.mark.parametrize("dim", [0, 2, -1])
def test_grader_names_the_wrong_concatenation_dimension(capsys, dim):
    def forward(self, inputs):
        x = torch.cat(inputs, dim)
        return self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))

    assert not check_dense_layer(_bad(forward))
    out = capsys.readouterr().out
    name = {0: "0 (the batch)", 2: "2 (the height)", -1: "3 (the width)"}[dim]
    assert f"✗ concatenates along the channel dimension: you concatenated along dimension {name}" in out


def test_grader_names_a_missing_bottleneck(capsys):
    def forward(self, inputs):
        return self.conv2(F.relu(self.norm2(F.relu(self.norm1(torch.cat(inputs, 1))))))

    assert not check_dense_layer(_bad(forward))
    assert "✗ BN-ReLU-Conv1x1 bottleneck, then BN-ReLU-Conv3x3: the bottleneck is missing" in capsys.readouterr().out


def test_grader_names_returning_the_concatenation(capsys):
    def forward(self, inputs):
        x = torch.cat(inputs, 1)
        new = self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))
        return torch.cat([x, new], 1)

    assert not check_dense_layer(_bad(forward))
    out = capsys.readouterr().out
    assert "✗ returns only the k new feature maps" in out and "returns only its k = 8 new feature maps" in out


def test_grader_names_post_activation_order(capsys):
    def forward(self, inputs):  # conv-BN-ReLU (ResNet order) instead of BN-ReLU-conv
        x = torch.cat(inputs, 1)
        x = F.relu(self.norm2(self.conv1(x)))
        return F.relu(self.conv2(x))

    assert not check_dense_layer(_bad(forward))
    out = capsys.readouterr().out
    assert "conv1 → norm2 → conv2" in out and "BN and ReLU come *before* each conv" in out


@pytest.mark.parametrize("which", [1, 2])
def test_grader_names_a_missing_relu(capsys, which):
    def forward(self, inputs):
        x = self.norm1(torch.cat(inputs, 1))
        x = self.norm2(self.conv1(x if which == 1 else F.relu(x)))
        return self.conv2(x if which == 2 else F.relu(x))

    assert not check_dense_layer(_bad(forward))
    assert f"a ReLU is missing between norm{which} and conv{which}" in capsys.readouterr().out


def test_grader_names_reversed_order_and_placeholder(capsys):
    def reversed_forward(self, inputs):
        return GoodLayer.forward(self, inputs[::-1])

    assert not check_dense_layer(_bad(reversed_forward))
    assert "the block input first" in capsys.readouterr().out

    def placeholder(self, inputs):
        raise NotImplementedError

    assert not check_dense_layer(_bad(placeholder))
    assert "not attempted" in capsys.readouterr().out

"""Chapter 8 probes: gradient per block, shattered gradients, lesion, path lengths; preact models."""

import math

import pytest
import torch
from torch import nn

from skiplib.analysis import ensemble as paths
from skiplib.analysis import probes
from skiplib.models import cifar_resnet, create_model, list_models
from skiplib.models.fc import ShatterNet
from skiplib.models.preact import PreActCifarResNet


@pytest.mark.parametrize("name", [n for n in list_models() if n.startswith("preact")])
def test_preact_registry_models(name):
    # their forward and backward pass: test_models.py, with every registered model
    assert len(create_model(name).blocks()) == 3 * (int(name[6:]) - 2) // 6


def test_preact_zero_init_and_errors():
    model = PreActCifarResNet(20).eval()
    model.zero_init_last()
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(model.layer1[1](x), x)
    with pytest.raises(ValueError, match="6n\\+2"):
        PreActCifarResNet(21)


def test_block_gradient_norms_aggregate_layers():
    torch.manual_seed(0)
    model = cifar_resnet(14)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    per_block = probes.block_gradient_norms(model, x, y)
    per_layer = probes.gradient_norms(model, x, y)
    assert len(per_block) == 6
    want = math.sqrt(per_layer["layer2.1.conv1"] ** 2 + per_layer["layer2.1.conv2"] ** 2)
    assert per_block[3] == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="blocks"):
        net = nn.Sequential(nn.Flatten(), nn.Linear(3, 10))
        probes.block_gradient_norms(net, torch.randn(2, 3), torch.zeros(2, dtype=torch.long))


def test_line_gradients_are_exact_directional_derivatives():
    torch.manual_seed(0)
    lin = nn.Linear(3, 1)
    start, end = torch.zeros(3), torch.tensor([1.0, 2.0, 3.0])
    g = probes.line_gradients(lin, start, end, points=5)
    # a linear map has the same derivative everywhere: w . (end - start), up to the projection's sign
    expected = (lin.weight[0] * (end - start)).sum().item()
    assert g.abs() == pytest.approx(torch.full((5,), abs(expected)), rel=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        probes.line_gradients(lin, torch.zeros(3), torch.zeros(2))


def test_calibrated_bn_makes_samples_independent():
    torch.manual_seed(0)
    net = ShatterNet(4, width=16)
    xs = torch.linspace(-2, 2, 32).view(-1, 1)
    probes.calibrate_bn(net, xs)
    assert not net.training
    full = net(xs)
    assert torch.allclose(full[:5], net(xs[:5]), atol=1e-6)  # the batch no longer matters
    assert torch.allclose(net.norms[0].running_mean, net.layers[0](net.inp(xs)).mean(0), atol=1e-5)


def test_calibrate_bn_in_chunks_averages_the_chunks():
    torch.manual_seed(0)
    x = torch.randn(96, 3, 8, 8)
    one, chunked = cifar_resnet(8), cifar_resnet(8)
    chunked.load_state_dict(one.state_dict())
    assert probes.calibrate_bn(one, x) is one and probes.calibrate_bn(chunked, x, batch_size=32) is chunked
    assert not chunked.training
    stem_out = one.conv1(x).transpose(0, 1).flatten(1)
    assert torch.allclose(one.bn1.running_mean, stem_out.mean(1), atol=1e-6)  # one batch: its statistics
    # three equal chunks: the mean of their means is the mean of x; the variance is the mean of theirs
    chunk_vars = torch.stack([stem_out[:, i:i + 32 * 64].var(1) for i in range(0, 96 * 64, 32 * 64)])
    assert torch.allclose(chunked.bn1.running_mean, one.bn1.running_mean, atol=1e-6)
    assert torch.allclose(chunked.bn1.running_var, chunk_vars.mean(0), atol=1e-5)
    assert int(chunked.bn1.num_batches_tracked) == 3
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            probes.calibrate_bn(chunked, x, batch_size=bad)
    with pytest.raises(ValueError, match="empty"):
        probes.calibrate_bn(chunked, x[:0])


def test_autocorrelation_separates_noise_from_smooth_series():
    t = torch.linspace(0, 6.28, 256)
    smooth = probes.autocorrelation(torch.sin(t), 3)
    noise = probes.autocorrelation(torch.randn(256, generator=torch.Generator().manual_seed(0)), 3)
    assert smooth[0] == 1.0 and smooth[1] > 0.95
    assert abs(noise[1]) < 0.2
    with pytest.raises(ValueError, match="too short"):
        probes.autocorrelation(torch.randn(4), 10)


def test_shattering_deep_plain_vs_residual():
    # Balduzzi et al.'s replication in miniature: at depth 24 plain gradients decorrelate, residual ones do not
    acs = {}
    for residual in (False, True):
        torch.manual_seed(0)
        net = ShatterNet(24, width=100, residual=residual)
        xs = torch.linspace(-2, 2, 256).view(-1, 1)
        probes.calibrate_bn(net, xs)
        acs[residual] = probes.autocorrelation(probes.line_gradients(net, xs[0], xs[-1], 256), 1)[1]
    assert acs[True] > 0.6 and abs(acs[False]) < 0.4, acs


def test_deleting_a_block_keeps_shapes_and_model():
    torch.manual_seed(0)
    model = cifar_resnet(14).eval()
    x = torch.randn(2, 3, 16, 16)
    for i in range(len(model.blocks())):
        lesioned = paths.delete_block(model, i)
        assert lesioned(x).shape == (2, 10)
        assert len(lesioned.blocks()) == len(model.blocks())
    assert all(isinstance(b, nn.Module) and not isinstance(b, paths.SkipOnly) for b in model.blocks())
    assert paths.deletable_blocks(model) == list(range(6))


def test_deleting_a_zero_branch_block_changes_nothing():
    torch.manual_seed(0)
    model = cifar_resnet(14)
    with torch.no_grad():
        model.train()(torch.randn(8, 3, 16, 16))
    model.eval()
    model.layer2[0].zero_init_last()  # a downsampling block whose branch is exactly zero
    model.layer1[1].zero_init_last()
    x = torch.randn(2, 3, 16, 16)
    for i in (1, 2):
        torch.testing.assert_close(paths.delete_block(model, i)(x), model(x))


def test_plain_net_lesion_rules():
    plain = cifar_resnet(14, shortcut="none").eval()
    assert paths.deletable_blocks(plain) == [0, 1, 3, 5]  # not the two downsampling blocks
    with pytest.raises(ValueError, match="changes the shape"):
        paths.delete_block(plain, 2)
    assert isinstance(paths.delete_block(plain, 1).layer1[1], nn.Identity)
    with pytest.raises(ValueError, match="block index"):
        paths.delete_block(plain, 6)


def test_swap_blocks():
    torch.manual_seed(0)
    model = cifar_resnet(20).eval()
    swapped = paths.swap_blocks(model, 0, 1)
    assert torch.equal(swapped.layer1[0].conv1.weight, model.layer1[1].conv1.weight)
    assert swapped(torch.randn(1, 3, 16, 16)).shape == (1, 10)
    with pytest.raises(ValueError, match="different widths"):
        paths.swap_blocks(model, 0, 4)
    with pytest.raises(ValueError, match="changes the shape"):
        paths.swap_blocks(model, 3, 4)


@pytest.mark.parametrize("n", [0, 1, 5, 27, 54])
def test_path_length_counts_sum_to_two_to_the_n(n):
    counts = paths.path_length_counts(n)
    assert len(counts) == n + 1 and sum(counts) == 2**n and counts[0] == counts[-1] == 1
    with pytest.raises(ValueError, match="non-negative"):
        paths.path_length_counts(-1)


def test_path_gradients_with_zero_branches_only_short_path_survives():
    torch.manual_seed(0)
    model = cifar_resnet(14)
    model.zero_init_last()  # every branch ends in BN scale 0: its Jacobian is zero
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    g = paths.path_gradient_norms(model, x, y, samples=2)
    assert set(g) == set(range(7)) and g[0] > 0
    assert all(g[k] == 0 for k in range(1, 7))
    # with F = 0 the single shortcut-only path carries the whole gradient at the first block's input
    model.eval()
    stem = model.relu(model.bn1(model.conv1(x))).detach().requires_grad_(True)
    h = stem
    for b in model.blocks():
        h = b(h)
    full = torch.autograd.grad(nn.functional.cross_entropy(model.fc(torch.flatten(model.avgpool(h), 1)), y), stem)[0]
    assert g[0] == pytest.approx(full.norm().item(), rel=1e-5)


def test_path_gradients_reject_plain_nets():
    with pytest.raises(ValueError, match="residual net"):
        paths.path_gradient_norms(create_model("plain20"), torch.randn(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))


# --- the chapter's grader -------------------------------------------------------------------

def _right(d, w):
    f = d.reshape(d.shape[0], -1)
    scale = w.reshape(w.shape[0], -1).norm(dim=1, keepdim=True) / f.norm(dim=1, keepdim=True)
    return (f * scale).reshape(d.shape)


def _vn(t, dims):
    return torch.linalg.vector_norm(t, dim=dims, keepdim=True)


def test_grader_accepts_correct_and_names_each_mistake(capsys):
    from skiplib.chapters.ch08_why import config as chapter_config
    from skiplib.exercises import check_filter_normalize
    from skiplib.profile import get_profile

    assert check_filter_normalize(_right, verbose=False)
    wrong = {
        "layer-wise": lambda d, w: d * w.norm() / d.norm(),
        "input* channel": lambda d, w: d * _vn(w, [i for i in range(d.dim()) if i != 1])
        / _vn(d, [i for i in range(d.dim()) if i != 1]),
        "norm 1": lambda d, w: (d.reshape(len(d), -1) / d.reshape(len(d), -1).norm(dim=1, keepdim=True)).reshape(d.shape),
        "weights themselves": lambda d, w: w.clone(),
        "in place": lambda d, w: d.mul_(_right(d, w) / d),
        "keep that shape": lambda d, w: _right(d, w).flatten(),
    }
    for phrase, fn in wrong.items():
        capsys.readouterr()
        assert not check_filter_normalize(fn)
        assert phrase in capsys.readouterr().out, phrase
    for name in ("smoke", "cpu", "gpu"):
        cfg = chapter_config(get_profile(name, device="cpu"))
        assert cfg["grid_points"] % 2 == 1 and cfg["depth"] in (20, 32, 44, 56, 110)
    grids = [chapter_config(get_profile(name, device="cpu"))["grid_points"] for name in ("smoke", "cpu", "gpu")]
    assert grids == sorted(grids) and grids[-1] < 51  # coarser than Li et al.'s 51x51: minutes on a T4


def test_geometric_decay_recovers_the_rate_and_says_how_well_it_fits():
    fit = paths.geometric_decay([0, 1, 2, 3, 4], [8.0, 4.0, 2.0, 1.0, 0.5])
    assert fit["factor"] == pytest.approx(0.5) and fit["scale"] == pytest.approx(8.0) and fit["r2"] == pytest.approx(1.0)
    zigzag = paths.geometric_decay([0, 1, 2, 3], [1.0, 3.0, 1.0, 3.0])
    assert zigzag["r2"] < 0.5
    with pytest.raises(ValueError, match="positive"):
        paths.geometric_decay([0, 1, 2], [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="at least 3"):
        paths.geometric_decay([0, 1], [1.0, 2.0])


def test_block_output_gradients_follow_the_backward_signal_from_block_to_block():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    resnet = cifar_resnet(20)
    resnet.zero_init_last()  # every branch outputs 0, so dloss/dx_l is passed back unchanged (but for ReLUs)
    g = probes.block_output_gradient_norms(resnet, x, y)
    assert len(g) == 9 and all(v > 0 for v in g)
    # option A's downsampling blocks (4 and 7) reshape the signal: within a stage the norm is carried unchanged
    assert g[0] == pytest.approx(g[2], rel=1e-5) and g[3] == pytest.approx(g[5], rel=1e-5)
    plain = cifar_resnet(20, shortcut="none").eval()
    probes.block_output_gradient_norms(plain, x, y)
    assert not plain.training  # the model's mode is restored
    with pytest.raises(ValueError, match="no .blocks"):
        probes.block_output_gradient_norms(nn.Linear(3, 10), x, y)

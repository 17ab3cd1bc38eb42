"""skiplib.analysis.reuse (Chapter 5): cutting one connection of a dense block at a time."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skiplib.analysis import reuse
from skiplib.analysis.reuse import connection_ablation
from skiplib.blocks.dense import feature_reuse
from skiplib.data import DeviceLoader
from skiplib.models import cifar_resnet
from skiplib.models.densenet import DenseNet, cifar_densenet


def _net(**kwargs) -> DenseNet:
    torch.manual_seed(0)
    net = cifar_densenet(16, 4, bottleneck=True, compression=0.5, **kwargs)  # 2 layers per block
    with torch.no_grad():  # BN statistics that are not the identity
        net.train()(torch.randn(32, 3, 8, 8))
    return net.eval()


def _data(n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def _followers(net: DenseNet) -> list[nn.Module]:
    return [net.features.transition1, net.features.transition2, net.classifier]


def test_maps_have_the_layout_and_nan_pattern_of_the_weight_heatmap():
    net = _net()
    result = connection_ablation(net, _data())
    assert result.images == 16 and math.isfinite(result.base_loss)
    blocks = net.dense_blocks()
    for m, e, block, follower in zip(result.increase, result.stderr, blocks, _followers(net)):
        heat = feature_reuse(block, follower)
        assert m.shape == e.shape == heat.shape == (3, 3)  # sources in, 1, 2; targets 1, 2, then T or C
        assert torch.equal(torch.isnan(m), torch.isnan(heat)) and torch.equal(torch.isnan(e), torch.isnan(heat))
        assert torch.isfinite(m[~torch.isnan(heat)]).all()


def test_a_densenet_with_two_blocks_and_the_imagenet_stem_has_a_map_per_block():
    torch.manual_seed(0)
    net = DenseNet(growth_rate=4, block_config=(2, 3), num_init_features=8, bn_size=None, num_classes=10).eval()
    result = connection_ablation(net, (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))))
    assert [tuple(m.shape) for m in result.increase] == [(3, 3), (4, 4)]
    assert torch.isnan(result.increase[1][3, 2]) and not torch.isnan(result.increase[1][3, 3])


def test_staged_forward_gives_what_a_hook_on_the_whole_network_gives():
    # the reference: cut the connection with a pre-hook and run the whole network, nothing cached
    net, (x, y) = _net(), _data()
    result = connection_ablation(net, (x, y))
    with torch.no_grad():
        base = F.cross_entropy(net(x), y, reduction="none")
        for b, (block, follower) in enumerate(zip(net.dense_blocks(), _followers(net))):
            targets = [layer.conv1 for layer in block.values()] + [getattr(follower, "conv", follower)]
            for t, target in enumerate(targets):
                for s in range(t + 1):
                    lo = 0 if s == 0 else block.in_channels + (s - 1) * 4
                    hi = block.in_channels + s * 4
                    handle = target.register_forward_pre_hook(reuse._zero_channels(lo, hi))
                    rise = F.cross_entropy(net(x), y, reduction="none") - base
                    handle.remove()
                    assert result.increase[b][s, t].item() == pytest.approx(rise.mean().item(), abs=1e-5)
                    assert result.stderr[b][s, t].item() == pytest.approx(rise.std().item() / 4, abs=1e-5)


def test_a_connection_with_zero_weights_changes_nothing():
    net, data = _net(), _data()
    layer2 = net.features.denseblock1.denselayer2
    k0 = net.features.denseblock1.in_channels
    with torch.no_grad():
        layer2.conv1.weight[:, k0:k0 + 4] = 0  # dense layer 2 of block 1 ignores layer 1
        net.features.transition2.conv.weight[:, :net.features.denseblock2.in_channels] = 0  # T2 ignores block 2's input
        net.classifier.weight[:, -4:] = 0  # the classifier ignores the last dense layer
    result = connection_ablation(net, data)
    for b, s, t in ((0, 1, 1), (1, 0, 2), (2, 2, 2)):
        assert result.increase[b][s, t].item() == 0.0 and result.stderr[b][s, t].item() == 0.0
    assert result.increase[0][0, 1].item() != 0.0  # the other sources of the same target still count


def test_cutting_the_only_path_to_the_classifier_costs_exactly_the_information_it_carried():
    # block 3's last layer reads only block 3's input, and the classifier reads only that layer:
    # cutting either connection leaves logits of exactly 0 (BN keeps its initial statistics), a loss of log 10
    torch.manual_seed(0)
    net = cifar_densenet(16, 4, bottleneck=True, compression=0.5).eval()
    block = net.features.denseblock3
    k0 = block.in_channels
    with torch.no_grad():
        block.denselayer2.conv1.weight[:, k0:] = 0
        net.classifier.weight.zero_()
        net.classifier.weight[:, -4:] = 10 * torch.randn(10, 4)
        net.classifier.bias.zero_()
        x = torch.randn(16, 3, 8, 8)
        y = net(x).argmax(1)  # the network's own answers: its loss is below log 10
    result = connection_ablation(net, (x, y))
    assert result.base_loss < math.log(10)
    m = result.increase[2]
    assert m[0, 1].item() == pytest.approx(math.log(10) - result.base_loss, abs=1e-5)  # block input -> layer 2
    assert m[2, 2].item() == pytest.approx(math.log(10) - result.base_loss, abs=1e-5)  # layer 2 -> classifier
    assert m[0, 1].item() > 0
    # cut for one target only: layer 1 and the classifier still see the block input through layer 2
    assert m[0, 0].item() == 0.0 and m[0, 2].item() == 0.0 and m[1, 1].item() == 0.0


def test_the_model_is_left_as_it_was():
    net, (x, y) = _net(), _data()
    net.train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        before = net.eval()(x)
    net.train()
    connection_ablation(net, (x, y))
    assert net.training  # mode restored; run in eval mode, so no BN statistic moved
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in net.modules())
    with torch.no_grad():
        assert torch.equal(net.eval()(x), before)


def test_hooks_are_removed_and_the_mode_restored_on_error(monkeypatch):
    net = _net().train()

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(reuse, "_tail", broken)
    with pytest.raises(RuntimeError, match="boom"):
        connection_ablation(net, _data())
    assert net.training and not any(m._forward_pre_hooks for m in net.modules())


def test_a_loader_gives_what_one_batch_gives():
    net, (x, y) = _net(), _data()
    one = connection_ablation(net, (x, y))
    batched = connection_ablation(net, DeviceLoader(x, y, 10))  # batches of 10 and 6
    assert batched.images == 16 and batched.base_loss == pytest.approx(one.base_loss, abs=1e-6)
    for a, b in zip(one.increase, batched.increase):
        torch.testing.assert_close(a, b, equal_nan=True, atol=1e-5, rtol=1e-5)


def test_bad_input_raises_a_clear_error():
    with pytest.raises(ValueError, match="needs a skiplib DenseNet.*CifarResNet"):
        connection_ablation(cifar_resnet(8), _data())
    with pytest.raises(ValueError, match="needs a skiplib DenseNet"):
        connection_ablation(nn.Linear(3, 10), _data())
    with pytest.raises(ValueError, match="no images"):
        connection_ablation(_net(), [])
    with pytest.raises(ValueError, match="batch \\(x, y\\) or an iterable"):
        connection_ablation(_net(), 3)

    class Doubled(DenseNet):  # a forward that is not the stages in order: the cut would be wrong
        def forward(self, x):
            return 2 * super().forward(x)

    torch.manual_seed(0)
    net = Doubled(growth_rate=4, block_config=(2, 2), num_init_features=8, num_classes=10, stem="cifar").eval()
    with pytest.raises(ValueError, match="stage by stage"):
        connection_ablation(net, _data())

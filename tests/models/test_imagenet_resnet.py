"""ImageNet ResNet-18/34/50: parameter counts, gradients, shortcut options, argument checks.
Their state_dicts and pretrained weights against torchvision's: tests/models/test_pretrained.py."""

import pytest
import torch
import torchvision
from torch import nn

from skiplib.blocks import BasicBlock, Bottleneck
from skiplib.models import count_parameters, list_models
from skiplib.models.imagenet import TORCHVISION_PARAMETERS, ResNet, resnet18, resnet34, resnet50

ARCHS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_count_equals_torchvision(arch):
    ours, theirs = ARCHS[arch](), getattr(torchvision.models, arch)(weights=None)
    assert count_parameters(ours) == count_parameters(theirs) == TORCHVISION_PARAMETERS[arch]


def test_parameter_counts_are_the_published_ones():
    assert TORCHVISION_PARAMETERS == {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}


def test_imagenet_resnets_are_registered_next_to_cifar_ones():
    assert {"resnet18", "resnet34", "resnet50", "resnet20", "resnet56"} <= set(list_models())


def test_shortcut_options_change_only_the_shortcuts():
    a, b, c = (count_parameters(resnet34(shortcut=s)) for s in ("identity", "projection", "projection_all"))
    # B projects where the shape changes: the first block of stages 2-4
    assert b - a == sum(cin * cout + 2 * cout for cin, cout in ((64, 128), (128, 256), (256, 512)))
    # C also projects in the other 3 + 4 + 6 + 3 - 3 = 13 blocks
    assert c - b == 3 * (64 * 64 + 128) + 3 * (128 * 128 + 256) + 5 * (256 * 256 + 512) + 2 * (512 * 512 + 1024)


def test_zero_init_residual_zeroes_every_last_bn():
    model = resnet50(zero_init_residual=True)
    assert all(torch.count_nonzero(block.bn3.weight) == 0 for block in model.blocks())
    model = resnet18(zero_init_residual=True)
    assert all(torch.count_nonzero(block.bn2.weight) == 0 for block in model.blocks())


@pytest.mark.parametrize("args,kwargs,match", [
    ((BasicBlock, (2, 2, 2)), {}, "4 positive ints"),
    ((BasicBlock, (2, 2, 0, 2)), {}, r"layers\[2\] must be a positive int, got 0"),
    ((nn.Conv2d, (2, 2, 2, 2)), {}, "BasicBlock or Bottleneck"),
    ((Bottleneck, (3, 4, 6, 3)), {"num_classes": 0}, "num_classes"),
    ((BasicBlock, (2, 2, 2, 2)), {"shortcut": "gated"}, "projection_all"),
])
def test_bad_arguments_raise_value_error(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNet(*args, **kwargs)

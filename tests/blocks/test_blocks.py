"""Residual blocks of Chapter 4: Bottleneck, pre-activation, shortcut option C, zero_init_last;
and the chapter's exercise grader and run sizes."""

import pytest
import torch
from torch import nn

from skiplib.blocks import SHORTCUTS, BasicBlock, Bottleneck, PadShortcut, PreActBlock, make_shortcut
from skiplib.chapters.ch04_resnets import config as chapter_config
from skiplib.exercises import check_bottleneck
from skiplib.models import count_parameters, create_model
from skiplib.profile import get_profile

BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck, "preact": PreActBlock}
# (in_channels, planes, stride): same shape, wider output, and downsampling
SHAPES = [(16, 16, 1), (16, 32, 2), (8, 16, 1)]


def _randomise_bn(module: nn.Module, seed: int = 0, shifts: bool = True) -> nn.Module:
    """Non-trivial BN scales, shifts and statistics so that identities are not accidental.

    ``shifts=False`` keeps the BN biases at their initial zero, as zero_init_last assumes
    (Goyal et al. zero the scale at initialisation, when the shift is zero too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                if shifts:
                    m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return module


def test_original_shortcut_options_are_unchanged():
    # other chapters rely on these names and their order; option C was appended
    assert SHORTCUTS[:3] == ("identity", "projection", "none")
    assert "projection_all" in SHORTCUTS


@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize("shortcut", SHORTCUTS)
@pytest.mark.parametrize("in_channels,planes,stride", SHAPES)
def test_block_shapes_and_gradients(kind, shortcut, in_channels, planes, stride):
    block_cls = BLOCKS[kind]
    if kind == "bottleneck" and shortcut == "identity" and in_channels > planes * 4:
        pytest.skip("zero padding cannot reduce channels")
    torch.manual_seed(0)
    block = block_cls(in_channels, planes, stride, shortcut)
    x = torch.randn(2, in_channels, 8, 8)
    out = block(x)
    assert out.shape == (2, planes * block_cls.expansion, 8 // stride, 8 // stride)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in block.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


def test_bottleneck_is_1x1_3x3_1x1_with_expansion_4():
    block = Bottleneck(256, 64)
    assert Bottleneck.expansion == 4
    assert block.conv1.kernel_size == (1, 1) and block.conv2.kernel_size == (3, 3) and block.conv3.kernel_size == (1, 1)
    assert block.downsample is None  # 256 -> 256: identity shortcut
    # He et al. (2016a), Fig. 5: about 70k weights, the same order as a 64-channel basic block
    assert count_parameters(block) == 256 * 64 + 9 * 64 * 64 + 64 * 256 + 2 * (64 + 64 + 256)
    down = Bottleneck(256, 128, stride=2)
    assert down.conv2.stride == (2, 2) and down.conv1.stride == (1, 1)  # stride on the 3x3 ("v1.5")
    assert isinstance(down.downsample, nn.Sequential)


def test_bottleneck_forward_matches_its_definition():
    torch.manual_seed(0)
    block = _randomise_bn(Bottleneck(32, 16, stride=2)).eval()
    x = torch.randn(2, 32, 8, 8)
    f = block.bn1(block.conv1(x)).relu()
    f = block.bn2(block.conv2(f)).relu()
    f = block.bn3(block.conv3(f))
    torch.testing.assert_close(block(x), (f + block.downsample(x)).relu())


def test_preact_block_has_no_relu_after_the_addition():
    torch.manual_seed(0)
    block = _randomise_bn(PreActBlock(8, 8)).eval()
    x = torch.randn(2, 8, 6, 6)
    f = block.conv2(block.bn2(block.conv1(block.bn1(x).relu())).relu())
    out = block(x)
    torch.testing.assert_close(out, f + x)
    assert (out < 0).any()  # a ReLU after the sum would forbid this


def test_preact_shortcut_reads_the_raw_input():
    block = _randomise_bn(PreActBlock(8, 16, stride=2, shortcut="projection")).eval()
    block.zero_init_last()
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(block(x), block.downsample(x))


@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize("shortcut", ["identity", "projection", "projection_all"])
@pytest.mark.parametrize("in_channels,planes,stride", SHAPES)
def test_zero_init_last_zeroes_the_residual_branch(kind, shortcut, in_channels, planes, stride):
    block = _randomise_bn(BLOCKS[kind](in_channels, planes, stride, shortcut), shifts=False).eval()
    block.zero_init_last()
    x = torch.randn(2, in_channels, 8, 8)
    shortcut_out = x if block.downsample is None else block.downsample(x)
    expected = shortcut_out if kind == "preact" else shortcut_out.relu()
    assert torch.equal(block(x), expected)


@pytest.mark.parametrize("kind", BLOCKS)
def test_zero_init_last_makes_same_shape_block_an_identity(kind):
    block_cls = BLOCKS[kind]
    channels = 16 * block_cls.expansion
    block = _randomise_bn(block_cls(channels, 16, 1, "identity"), shifts=False).eval()
    block.zero_init_last()
    x = torch.rand(2, channels, 8, 8)  # non-negative, as after a ReLU (the pre-act block needs not even that)
    assert torch.equal(block(x), x)
    if kind == "preact":
        y = torch.randn(2, channels, 8, 8)
        assert torch.equal(block(y), y)


def test_option_c_projects_every_shortcut():
    proj = make_shortcut("projection_all", 16, 16, 1)
    assert isinstance(proj, nn.Sequential)
    assert count_parameters(proj) == 16 * 16 + 2 * 16
    b, c = BasicBlock(16, 16, 1, "projection"), BasicBlock(16, 16, 1, "projection_all")
    assert count_parameters(c) - count_parameters(b) == 16 * 16 + 2 * 16
    # where shapes change, options B and C are the same block
    assert count_parameters(BasicBlock(16, 32, 2, "projection_all")) == count_parameters(BasicBlock(16, 32, 2, "projection"))


def test_option_c_parameter_count_of_cifar_resnet20():
    b = count_parameters(create_model("resnet20", shortcut="projection"))
    c = count_parameters(create_model("resnet20", shortcut="projection_all"))
    # stages of 3 blocks at 16, 32, 64 channels; C adds a 1x1 conv + BN to the blocks B leaves alone
    extra = 3 * (16 * 16 + 2 * 16) + 2 * (32 * 32 + 2 * 32) + 2 * (64 * 64 + 2 * 64)
    assert c - b == extra
    assert b == 272_474


def test_basic_block_parameter_counts_unchanged():
    assert count_parameters(BasicBlock(16, 32, 2, "identity")) == 9 * 16 * 32 + 9 * 32 * 32 + 4 * 32
    assert count_parameters(BasicBlock(16, 32, 2, "none")) == count_parameters(BasicBlock(16, 32, 2, "identity"))
    assert count_parameters(BasicBlock(16, 32, 2, "projection")) == 9 * 16 * 32 + 9 * 32 * 32 + 4 * 32 + 16 * 32 + 2 * 32
    assert isinstance(make_shortcut("identity", 16, 32, 2), PadShortcut)
    assert make_shortcut("projection", 16, 16, 1) is None


@pytest.mark.parametrize("kind", ["bottleneck", "preact"])
@pytest.mark.parametrize("args", [(0, 16), (16, 0), (16, 16, 0), (16, 2.5), (True, 16), ("16", 16)])
def test_bad_sizes_raise_value_error(kind, args):
    with pytest.raises(ValueError, match="positive int"):
        BLOCKS[kind](*args)


@pytest.mark.parametrize("kind", BLOCKS)
def test_unknown_shortcut_lists_allowed_values(kind):
    with pytest.raises(ValueError) as e:
        BLOCKS[kind](16, 16, 1, "gated")
    for allowed in SHORTCUTS:
        assert allowed in str(e.value)


def test_bottleneck_zero_padding_cannot_shrink_channels():
    with pytest.raises(ValueError, match="projection"):
        Bottleneck(512, 64, 1, "identity")  # 512 -> 256 channels


# ----------------------------------------------------------------- Chapter 4's coding exercise


class _NoFinalRelu(Bottleneck):
    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + (x if self.downsample is None else self.downsample(x))


class _StrideOnFirstConv(Bottleneck):
    def __init__(self, in_channels, planes, stride=1):
        super().__init__(in_channels, planes, stride)
        self.conv1.stride, self.conv2.stride = (stride, stride), (1, 1)


class _NoShortcut(Bottleneck):
    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)))


class _ReluBeforeAdd(Bottleneck):
    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.relu(self.bn3(self.conv3(out)))
        return out + (x if self.downsample is None else self.downsample(x))


class _NoDownsample(Bottleneck):
    """Adds x itself even on stride 2, where the shapes differ."""

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + x)


class _Unfinished(nn.Module):
    expansion = 4

    def __init__(self, in_channels, planes, stride=1):
        super().__init__()
        raise NotImplementedError


def test_check_bottleneck_accepts_skiplibs_block(capsys):
    assert check_bottleneck(Bottleneck) is True
    assert "5/5 checks passed" in capsys.readouterr().out


@pytest.mark.parametrize("wrong,hint", [
    (_NoFinalRelu, "ReLU *after* adding"),
    (_StrideOnFirstConv, "stride belongs on the 3x3 conv"),
    (_NoShortcut, "ignores the shortcut"),
    (_ReluBeforeAdd, "not to bn3's output before it"),
    (_NoDownsample, "raised RuntimeError"),
    (_Unfinished, "NotImplementedError"),
    (lambda *a: 3, "not an nn.Module"),
    (nn.Identity, "missing"),
])
def test_check_bottleneck_rejects_mistakes_with_a_hint(wrong, hint, capsys):
    assert check_bottleneck(wrong) is False  # and never raises
    assert hint in capsys.readouterr().out


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu"])
def test_chapter_config_has_every_size(name):
    cfg = chapter_config(get_profile(name, device="cpu"))
    for key in ("grad_batch", "grad_image_size", "grad_depth", "train_depth", "image_size", "train_subset",
                "test_subset", "epochs", "download_weights", "summary_size", "lr", "batch_size", "seed"):
        assert key in cfg
    assert (cfg["train_depth"] - 2) % 6 == 0 and cfg["profile"] == name

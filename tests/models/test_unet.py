"""Chapter 6 (U-Net): paper parameter count, shapes and skip masks, the procedural data, the
metrics on hand-made masks, the segmentation training loop and the Up-step grader."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skiplib.blocks import DoubleConv, Down, OutConv, Up
from skiplib.chapters.ch06_unet import config as chapter_config
from skiplib.data import make_cells
from skiplib.data.cells import BOUNDARY, INTERIOR, boundary_f1, cell_f1, dice_iou, label_components
from skiplib.exercises import check_up_step
from skiplib.models import count_parameters, create_model, list_models
from skiplib.models.unet import PAPER_PARAMETERS, UNet
from skiplib.profile import get_profile
from skiplib.train.segmentation import fit_segmentation, predict

UNET_NAMES = ["unet", "unet_noskip"]


def test_paper_parameter_count():
    assert PAPER_PARAMETERS == 31_030_658
    assert count_parameters(UNet(in_channels=1, num_classes=2, base=64, depth=4)) == 31_030_658
    assert count_parameters(create_model("unet")) == 31_030_658


def test_noskip_drops_exactly_the_skip_input_weights():
    # without a skip, each decoder level's first 3x3 conv loses its c_i skip input channels
    full, plain = UNet(base=64, depth=4), UNet(base=64, depth=4, skips=False)
    lost = sum(9 * (64 * 2**i) * (64 * 2**i) for i in range(4))
    assert count_parameters(full) - count_parameters(plain) == lost
    # bilinear + 1x1 conv instead of a 2x2 transposed conv: 6 c^2 fewer weights per level
    assert count_parameters(full) - count_parameters(UNet(bilinear=True)) == sum(6 * (64 * 2**i) ** 2 for i in range(4))
    one = UNet(base=64, depth=4, skips=(True, False, True, True))
    assert count_parameters(full) - count_parameters(one) == 9 * 128 * 128


def test_unets_are_registered():
    assert set(UNET_NAMES) <= set(list_models())  # their forward and backward pass: test_models.py, with all models


@pytest.mark.parametrize("size", [(32, 32), (37, 45), (16, 17), (41, 16)])
@pytest.mark.parametrize("bilinear", [False, True])
def test_output_size_equals_input_size(size, bilinear):
    model = UNet(in_channels=3, num_classes=5, base=4, depth=4, bilinear=bilinear, batch_norm=True)
    assert model(torch.randn(2, 3, *size)).shape == (2, 5, *size)


def test_too_small_input_raises_clear_error():
    with pytest.raises(ValueError, match=r"H, W >= 2\*\*depth = 16"):
        UNet(base=4, depth=4)(torch.randn(1, 1, 15, 32))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="one bool per level"):
        UNet(depth=3, skips=(True, False))
    with pytest.raises(ValueError, match="depth must be a positive int"):
        UNet(depth=0)
    with pytest.raises(ValueError, match="in_channels must be even"):
        Up(7, 4)


def test_batch_norm_and_bias_options():
    plain = DoubleConv(4, 8)
    bn = DoubleConv(4, 8, batch_norm=True)
    assert plain.double_conv[0].bias is not None and bn.double_conv[0].bias is None  # bias=None: only without BN
    assert isinstance(bn.double_conv[1], nn.BatchNorm2d)
    assert DoubleConv(4, 8, batch_norm=True, bias=True).double_conv[0].bias is not None
    assert isinstance(Down(4, 8).maxpool_conv[0], nn.MaxPool2d)
    assert OutConv(8, 3)(torch.randn(1, 8, 5, 5)).shape == (1, 3, 5, 5)


def test_skip_mask_removes_exactly_one_information_path():
    model = UNet(base=4, depth=3, skips=(False, True, True))
    assert [up.skip for up in model.ups] == [True, True, False]  # ups run bottom-up: the mask is reversed
    # a skip-less Up reads only the skip's size: any skip content gives the same output
    torch.manual_seed(0)
    up = Up(8, 4, skip=False)
    x1, x2 = torch.randn(2, 8, 4, 5), torch.randn(2, 4, 9, 11)
    assert up.conv.double_conv[0].in_channels == 4
    assert torch.equal(up(x1, x2), up(x1, torch.randn_like(x2)))
    assert up(x1, x2).shape == (2, 4, 9, 11)


def test_up_concatenates_skip_first():
    torch.manual_seed(0)
    up = Up(8, 4)
    x1, x2 = torch.randn(1, 8, 3, 3), torch.randn(1, 4, 7, 6)
    want = up.conv(torch.cat([x2, F.pad(up.up(x1), [0, 0, 0, 1])], dim=1))
    assert torch.equal(up(x1, x2), want)


def test_data_is_deterministic_per_seed_and_consistent():
    a, b, c = make_cells(20, 32, seed=3), make_cells(20, 32, seed=3), make_cells(20, 32, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (20, 1, 32, 32) and a.masks.shape == (20, 32, 32) and a.masks.dtype == torch.int64
    assert set(a.masks.unique().tolist()) == {INTERIOR, BOUNDARY}
    # a boundary pixel sits wherever two 4-neighbours belong to different cells
    cells, m = a.cells, a.masks.bool()
    diff_right = cells[:, :, 1:] != cells[:, :, :-1]
    assert (m[:, :, :-1] | m[:, :, 1:])[diff_right].all()
    with pytest.raises(ValueError, match="size must be"):
        make_cells(2, size=4)


def _masks():
    t = torch.zeros(1, 8, 9, dtype=torch.int64)
    t[0, :, 4] = BOUNDARY  # a vertical membrane splits the image into two 8x4 cells
    return t


def test_metrics_on_hand_made_masks():
    t = _masks()
    assert dice_iou(t, t) == (1.0, 1.0) and boundary_f1(t, t) == 1.0 and cell_f1(t, t) == 1.0
    shifted = torch.zeros_like(t)
    shifted[0, :, 5] = BOUNDARY  # one pixel off: pixel scores 0, tolerant boundary F1 1
    assert dice_iou(shifted, t) == (0.0, 0.0)
    assert boundary_f1(shifted, t) == 1.0 and boundary_f1(shifted, t, tolerance=0) == 0.0
    gap = t.clone()
    gap[0, 3, 4] = INTERIOR  # one missing boundary pixel merges the two cells
    d, iou = dice_iou(gap, t)
    assert d == pytest.approx(2 * 7 / 15) and iou == pytest.approx(7 / 8)
    assert cell_f1(gap, t) == 0.0  # one merged cell matches neither true cell at IoU > 0.5
    thick = t.clone()
    thick[0, :, 3] = BOUNDARY  # a 2-pixel boundary: precision 1/2 at tolerance 0
    assert dice_iou(thick, t)[0] == pytest.approx(2 * 8 / 24) and cell_f1(thick, t) == 1.0


def test_label_components_four_connected():
    m = torch.tensor([[[1, 1, 0, 1], [0, 1, 0, 1], [1, 0, 0, 0]]], dtype=torch.bool)
    lab = label_components(m)
    assert (lab > 0).eq(m).all()
    assert len(lab[m].unique()) == 3  # the diagonal neighbour at (2, 0) is a component of its own
    assert lab[0, 0, 0] == lab[0, 1, 1] and lab[0, 0, 3] == lab[0, 1, 3]


def test_fit_segmentation_history_and_predict():
    data = make_cells(16, 16, seed=0)
    torch.manual_seed(0)
    model = UNet(base=4, depth=2, batch_norm=True)
    h = fit_segmentation(model, data, data[:4], epochs=2, batch_size=8, weight=(1, 3), progress=False, device="cpu")
    assert [r["epoch"] for r in h.records] == [1, 2]
    assert {"train_loss", "test_loss", "dice", "iou", "boundary_f1", "seconds"} <= set(h.last)
    assert predict(model, data.images[:3]).shape == (3, 16, 16)
    with pytest.raises(ValueError, match="epochs"):
        fit_segmentation(model, data, epochs=0)


def test_chapter_config_has_every_profile():
    for name in ("smoke", "cpu", "gpu"):
        cfg = chapter_config(get_profile(name, device="cpu"))
        assert cfg["size"] >= 2 ** cfg["depth"] and cfg["train_n"] >= cfg["batch_size"]


# ------------------------------------------------------------------------- the Up-step grader
class GoodUp(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        dh, dw = x2.shape[2] - x1.shape[2], x2.shape[3] - x1.shape[3]
        x1 = F.pad(x1, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


def _bad(forward):
    return type("BadUp", (GoodUp,), {"forward": forward})


def _pad(x1, x2):
    dh, dw = x2.shape[2] - x1.shape[2], x2.shape[3] - x1.shape[3]
    return F.pad(x1, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])


def test_grader_accepts_correct_up(capsys):
    assert check_up_step(GoodUp)
    assert "4/4 checks passed" in capsys.readouterr().out


BAD = {
    "wrong channel order": lambda self, x1, x2: self.conv(torch.cat([_pad(self.up(x1), x2), x2], dim=1)),
    "shape mismatch: the upsampled map is 8x10 but the skip is 9x11":
        lambda self, x1, x2: self.conv(torch.cat([x2, self.up(x1)], dim=1)),
    "concatenated along dim 0 (batch)": lambda self, x1, x2: self.conv(torch.cat([x2, _pad(self.up(x1), x2)], dim=0)),
    "concatenated along dim 3 (width)": lambda self, x1, x2: self.conv(torch.cat([x2, _pad(self.up(x1), x2)], dim=-1)),
    "missing conv": lambda self, x1, x2: torch.cat([x2, _pad(self.up(x1), x2)], dim=1),
    "do not crop the skip": lambda self, x1, x2: self.conv(torch.cat([x2[:, :, :x1.shape[2] * 2, :x1.shape[3] * 2],
                                                                      self.up(x1)], dim=1)),
    "padding on the wrong side": lambda self, x1, x2: self.conv(torch.cat(
        [x2, F.pad(self.up(x1), [x2.shape[3] - 2 * x1.shape[3], 0, x2.shape[2] - 2 * x1.shape[2], 0])], dim=1)),
}


@pytest.mark.parametrize("message", BAD)
def test_grader_rejects_and_names_each_mistake(message, capsys):
    assert not check_up_step(_bad(BAD[message]))
    assert message in capsys.readouterr().out


def test_grader_reports_unfinished_and_wrong_layers(capsys):
    def todo(self, x1, x2):
        raise NotImplementedError

    assert not check_up_step(_bad(todo))
    assert "not attempted" in capsys.readouterr().out

    class Renamed(GoodUp):
        def __init__(self, in_channels, out_channels):
            super().__init__(in_channels, out_channels)
            self.conv2 = self.conv
            del self.conv

    assert not check_up_step(Renamed)
    assert "same parameters" in capsys.readouterr().out


def test_plot_segmentation_marks_missed_boundaries():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skiplib.plots import plot_segmentation

    data = make_cells(2, 16, seed=0)
    fig = plot_segmentation(data.images, {"truth": data.masks, "empty": torch.zeros_like(data.masks)}, truth=data.masks)
    assert len(fig.axes) == 2 * 3 and fig.axes[1].get_title() == "truth"
    rgb = fig.axes[2].get_images()[0].get_array()  # the "empty" column: every true boundary pixel is red
    assert (rgb[data.masks[0].numpy() == BOUNDARY] == [0.84, 0.15, 0.16]).all()
    plt.close(fig)
    with pytest.raises(ValueError, match="shape"):
        plot_segmentation(data.images, {"bad": data.masks[:, :8]})


def test_residual_encoder_adds_short_skips_and_keeps_the_plain_unet_unchanged():
    from skiplib.blocks import DoubleConv
    from skiplib.models.unet import UNet

    plain = UNet(1, 2, base=4, depth=2, batch_norm=True)
    residual = UNet(1, 2, base=4, depth=2, batch_norm=True, residual_encoder=True)
    assert set(plain.state_dict()) < set(residual.state_dict())  # the plain net's keys are untouched
    # the 1 -> 4 and every widening encoder step get a 1x1 projection (+ BN); decoder unchanged
    extra = {k for k in residual.state_dict() if "shortcut" in k}
    assert extra and all(k.startswith(("inc.", "downs.")) for k in extra)
    x = torch.randn(2, 1, 16, 16)
    assert residual(x).shape == (2, 2, 16, 16)
    block = DoubleConv(4, 4, batch_norm=True, residual=True).eval()
    with torch.no_grad():
        for m in block.double_conv:
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.zero_()
    y = torch.relu(torch.randn(1, 4, 8, 8))
    assert torch.equal(block(y), y)  # a zeroed branch leaves relu(0 + x) = x: the short skip is an identity

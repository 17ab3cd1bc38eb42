"""Tests of skiplib.analysis.identity_bn (Chapter 2): the identity construction in the regime
training uses, where BN normalises with each batch's statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skiplib.analysis.identity import dataset_loss, deepen, inserted_block_names
from skiplib.analysis.identity_bn import fit_identity_bn, train_mode_loss
from skiplib.analysis.probes import calibrate_bn
from skiplib.data import DeviceLoader
from skiplib.models.cifar import CifarResNet


def _trained_like(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, as training would leave them."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.3)
    return model.eval()


def _setup(shortcut: str = "none"):
    torch.manual_seed(0)
    shallow = _trained_like(CifarResNet(8, shortcut=shortcut, widths=(4, 8, 8)))
    deep = deepen(shallow, 14)
    x = torch.randn(64, 3, 8, 8)
    y = torch.arange(64) % 10
    return shallow, deep, inserted_block_names(8, 14), x, y


def _logits(model: nn.Module, x: torch.Tensor, train: bool) -> torch.Tensor:
    model = model.train(train)
    with torch.no_grad():
        return model(x)


def test_fitted_bns_hold_their_inputs_statistics_and_pass_x_through_in_eval_mode():
    shallow, deep, names, x, _ = _setup()
    fitted = fit_identity_bn(deep, names, x, batch_size=16)
    # the inputs of the first inserted block are the output of the shallow net's first stage
    with torch.no_grad():
        h = shallow.layer1(shallow.relu(shallow.bn1(shallow.conv1(x))))
    bn = fitted.get_submodule(names[0]).bn1
    mean, var = h.double().mean((0, 2, 3)), h.double().var((0, 2, 3), unbiased=False)
    assert torch.allclose(bn.running_mean.double(), mean, atol=1e-5)
    assert torch.allclose(bn.running_var.double(), var, atol=1e-5)
    assert torch.allclose(bn.weight.double(), (var + bn.eps).sqrt(), atol=1e-5)
    assert torch.allclose(bn.bias.double(), mean, atol=1e-5)
    # eval mode: the fitted copy still computes the shallow net's function (up to rounding)
    assert (fitted.eval()(x) - shallow(x)).abs().max() < 1e-4
    # blocks that were not named keep their parameters exactly
    for name, p in deep.named_parameters():
        if not any(name.startswith(n + ".") for n in names):
            assert torch.equal(p, dict(fitted.named_parameters())[name])


def test_train_mode_breaks_the_hand_set_copy_and_the_fitted_one_survives_it():
    shallow, _, names, x, _ = _setup()
    # as after training: the stored statistics are those of the data, so eval-mode and train-mode
    # inputs of the inserted blocks agree and only the inserted BNs tell the two regimes apart
    calibrate_bn(shallow, x)
    deep = deepen(shallow, 14)
    fitted = fit_identity_bn(deep, names, x)
    reference = _logits(shallow, x, train=True)  # the shallow net, trained-mode BN, same batch
    hand_set = (_logits(deep, x, train=True) - reference).abs().max().item()
    fitted_err = (_logits(fitted, x, train=True) - reference).abs().max().item()
    # on the batch the statistics were fitted on, the fitted copy is the shallow net again, up to
    # calibrate_bn's running variances being unbiased where training mode divides by n (0.4% at layer3)
    assert fitted_err < 2e-2
    assert hand_set > 20 * fitted_err


def test_residual_copy_is_exact_in_training_mode_as_well():
    shallow, deep, _, x, _ = _setup("identity")
    assert torch.allclose(_logits(deep, x, train=True), _logits(shallow, x, train=True), atol=1e-5)


def test_train_mode_loss_leaves_the_model_alone_and_differs_from_eval_loss():
    _, deep, _, x, y = _setup()
    before = {k: v.clone() for k, v in deep.state_dict().items()}
    loader = DeviceLoader(x, y, batch_size=16)
    train_loss = train_mode_loss(deep, loader)
    assert not deep.training
    assert all(torch.equal(before[k], v) for k, v in deep.state_dict().items())
    assert set(train_loss) == {"loss", "err"} and 0 <= train_loss["err"] <= 1
    assert train_loss["loss"] != pytest.approx(dataset_loss(deep, loader)["loss"], rel=1e-3)
    # one training-mode pass over the whole set in one batch equals the mean loss on that batch
    full = train_mode_loss(deep, DeviceLoader(x, y, batch_size=64))
    logits = _logits(deep, x, train=True)
    assert full["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-6)


def test_bad_inputs_are_refused_clearly():
    _, deep, names, x, y = _setup()
    with pytest.raises(ValueError, match="no module named 'layer9.0'"):
        fit_identity_bn(deep, ["layer9.0"], x)
    with pytest.raises(ValueError, match="no BatchNorm"):
        fit_identity_bn(deep, ["fc"], x)
    with pytest.raises(ValueError, match="x is empty"):
        fit_identity_bn(deep, names, x[:0])
    with pytest.raises(ValueError, match="batch of one"):
        train_mode_loss(deep, DeviceLoader(x[:17], y[:17], batch_size=16))

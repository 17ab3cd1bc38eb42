"""Chapter 8's exercise: filter normalisation of a random direction for a whole network, graded by
``check_normalize_direction`` against ``skiplib.analysis.landscape.random_direction``."""

import pytest
import torch

from skiplib.analysis.landscape import random_direction
from skiplib.exercises import check_normalize_direction
from skiplib.exercises.ch08_why import _gaussian, _graded_net
from skiplib.models import create_model


def filters(d, w):
    d2, w2 = d.flatten(1), w.flatten(1)
    return (d2 * w2.norm(dim=1, keepdim=True) / d2.norm(dim=1, keepdim=True)).reshape(w.shape)


def good(direction, model, include_1d=False):
    out = {}
    for name, p in model.named_parameters():
        w = p.detach()
        if w.dim() <= 1:
            out[name] = w.clone() if include_1d else torch.zeros_like(w)
        else:
            out[name] = filters(direction[name], w)
    return out


def with_rule(multi=None, one=None):
    """``good`` with the rule for conv/linear weights (``multi(d, w)``) or for 1-D parameters
    (``one(d, w)``) replaced by a typical mistake."""
    def fn(direction, model, include_1d=False):
        out = good(direction, model, include_1d)
        for name, p in model.named_parameters():
            rule = multi if p.dim() >= 2 else one
            if rule is not None:
                out[name] = rule(direction[name], p.detach())
        return out
    return fn


def test_the_reference_solution_passes_and_equals_the_library(capsys):
    assert check_normalize_direction(good)
    assert "8/8 checks passed" in capsys.readouterr().out
    # the grader hands out random_direction's own draw: normalised, it is the library's direction
    net = create_model("resnet20")
    for include_1d in (False, True):
        mine, theirs = good(_gaussian(net, 3), net, include_1d), random_direction(net, 3, include_1d=include_1d)
        assert mine.keys() == theirs.keys()
        assert all(torch.allclose(mine[k], theirs[k], rtol=1e-5, atol=1e-7) for k in mine)


def test_the_graded_net_has_every_kind_of_tensor_and_filters_of_different_norms():
    net = _graded_net(0, scalar=True)
    dims = {p.dim() for p in net.parameters()}
    assert dims == {0, 1, 2, 4} and net.conv2.bias is not None and net.conv1.bias is None
    assert {n.rsplit(".", 1)[1] for n, _ in net.named_buffers()} == {"running_mean", "running_var", "num_batches_tracked"}
    norms = net.conv1.weight.detach().flatten(1).norm(dim=1)
    assert norms.max() > 1.5 * norms.min()  # else per-filter and per-layer scaling could agree
    assert not net.training


vn = torch.linalg.vector_norm
FILTERS = "conv and linear weights: each filter rescaled to its weight filter's norm"
ZERO = "biases and BN scales and shifts get a zero direction"


def _per_input(d, w):
    dims = [i for i in range(d.dim()) if i != 1]
    return d * vn(w, dim=dims, keepdim=True) / vn(d, dim=dims, keepdim=True)


@pytest.mark.parametrize("fn,failed,message", [
    (with_rule(multi=lambda d, w: d * w.norm() / d.norm()),
     FILTERS, "you scaled the whole tensor to the weight's norm (layer-wise normalisation)"),
    (with_rule(multi=_per_input), FILTERS, "you normalised per *input* channel (dim 1)"),
    (with_rule(multi=lambda d, w: d / d.flatten(1).norm(dim=1).reshape(-1, *[1] * (d.dim() - 1))),
     FILTERS, "each filter has norm 1"),
    (with_rule(one=lambda d, w: d.clone()), ZERO, "it kept its random values"),
    (with_rule(one=lambda d, w: w.clone()), ZERO, "it is the parameter itself (d = w, Li et al.'s choice only"),
    (with_rule(one=lambda d, w: filters(d.reshape(-1, 1), w.reshape(-1, 1)).reshape(d.shape)),
     ZERO, "each entry counted as a filter"),
])
def test_the_grader_names_the_normalisation_mistakes(fn, failed, message, capsys):
    assert not check_normalize_direction(fn)
    out = capsys.readouterr().out
    assert f"✗ {failed}: " in out and message in out


def test_a_layer_wise_direction_changes_the_landscape_of_a_rescaled_twin(capsys):
    assert not check_normalize_direction(with_rule(multi=lambda d, w: d * w.norm() / d.norm()))
    out = capsys.readouterr().out
    assert "✗ the same landscape for two parametrisations of one function" in out
    assert "the landscape depends on an arbitrary filter scale" in out


def over_state_dict(direction, model, include_1d=False):
    out = {}
    for name, w in model.state_dict().items():  # wrong: the buffers are in there too
        d = direction[name]
        out[name] = filters(d, w) if w.dim() >= 2 else torch.zeros_like(w)
    return out


def with_buffer_entries(direction, model, include_1d=False):
    out = good(direction, model, include_1d)
    return out | {n: torch.zeros_like(b) for n, b in model.named_buffers()}


def without_1d(direction, model, include_1d=False):
    return {k: v for k, v in good(direction, model, include_1d).items() if v.dim() >= 2}


def flattened(direction, model, include_1d=False):
    return {k: v.flatten() for k, v in good(direction, model, include_1d).items()}


@pytest.mark.parametrize("fn,message", [
    (over_state_dict, "your code looked up 'bn1.running_mean' in the direction: that is one of BN's running statistics"),
    (with_buffer_entries, "BN's running statistics and batch counter are buffers"),
    (without_1d, "no entry for ['bn1.weight', 'bn1.bias', 'conv2.bias'"),
    (flattened, "the entry for 'conv1.weight' has shape (108,), its parameter (4, 3, 3, 3)"),
    (lambda direction, model, include_1d=False: list(good(direction, model, include_1d).values()),
     "expected a dict parameter name -> tensor, got a list"),
])
def test_the_grader_names_wrong_entries_and_shapes(fn, message, capsys):
    assert not check_normalize_direction(fn)
    out = capsys.readouterr().out
    assert "✗ one entry per parameter (none for buffers), in its parameter's shape" in out
    assert message in out
    assert "skipped until the first check passes" in out


def in_place_direction(direction, model, include_1d=False):
    out = good(direction, model, include_1d)
    for k, v in out.items():
        direction[k].copy_(v)  # Li et al.'s code normalises in place (d.mul_): here the caller's draw is lost
    return direction


def scales_the_weights(direction, model, include_1d=False):
    with torch.no_grad():
        model.conv1.weight.mul_(2.0)
    return good(direction, model, include_1d)


def runs_in_train_mode(direction, model, include_1d=False):
    model.train()(torch.randn(2, 3, 4, 4))  # updates BN's running statistics
    model.eval()
    return good(direction, model, include_1d)


def attached(direction, model, include_1d=False):
    out = good(direction, model, include_1d)
    return out | {n: filters(direction[n], p) for n, p in model.named_parameters() if p.dim() >= 2}


def shares_memory(direction, model, include_1d=False):
    out = good(direction, model, include_1d)
    return out | {n: p.detach() for n, p in model.named_parameters() if include_1d and p.dim() <= 1}


@pytest.mark.parametrize("fn,failed,message", [
    (in_place_direction, "the model (weights, BN statistics) and the given direction are left unchanged",
     "changed the direction it was given"),
    (scales_the_weights, "the model (weights, BN statistics) and the given direction are left unchanged",
     "changed the weights ['conv1.weight'] in place"),
    (runs_in_train_mode, "the model (weights, BN statistics) and the given direction are left unchanged",
     "changed the buffers ['bn1.running_mean'"),
    (attached, "the result is new data", "is attached to the autograd graph (requires_grad=True)"),
    (shares_memory, "the result is new data", "with include_1d=True the entry for 'bn1.weight' shares memory with the parameter"),
])
def test_the_grader_names_inputs_changed_and_directions_tied_to_the_weights(fn, failed, message, capsys):
    assert not check_normalize_direction(fn)
    out = capsys.readouterr().out
    assert f"✗ {failed}" in out and message in out


def test_the_grader_needs_include_1d_and_a_scalar_treated_like_a_bias(capsys):
    def no_option(direction, model):
        return good(direction, model)

    assert not check_normalize_direction(no_option)
    out = capsys.readouterr().out
    assert "must take a keyword argument include_1d" in out and "7/8 checks passed" in out

    def dim_is_one(direction, model, include_1d=False):  # a 0-dim scalar falls through to the filters
        return {n: (torch.zeros_like(p) if p.dim() == 1 else filters(direction[n], p.detach()))
                for n, p in model.named_parameters()}

    assert not check_normalize_direction(dim_is_one)
    out = capsys.readouterr().out
    assert "✗ a 0-dim parameter (a scalar) is treated like a bias: on a 0-dim parameter" in out
    assert "(w.dim() <= 1)" in out


def test_an_untouched_stub_is_not_attempted(capsys):
    def my_filter_normalize(direction, model, include_1d=False):
        raise NotImplementedError

    assert not check_normalize_direction(my_filter_normalize)
    out = capsys.readouterr().out
    assert "not attempted yet (0/8 checks passed)" in out and "✗" not in out

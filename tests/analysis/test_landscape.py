"""skiplib.analysis.landscape (Chapter 8): filter-normalised directions, 1-D/2-D surfaces, interpolation."""

import numpy as np
import pytest
import torch
from torch import nn

from skiplib.analysis import landscape as L
from skiplib.models import cifar_resnet


def _trained_like(name: str = "resnet8") -> nn.Module:
    """A small model with non-trivial BN statistics, in eval mode."""
    torch.manual_seed(0)
    model = cifar_resnet(int(name[6:]))
    with torch.no_grad():
        model.train()(torch.randn(16, 3, 8, 8))
    return model.eval()


def test_filter_normalisation_matches_each_filter_norm():
    model = _trained_like()
    d = L.random_direction(model, seed=3)
    params = dict(model.named_parameters())
    conv = params["layer1.0.conv1.weight"]
    for i in range(conv.shape[0]):
        assert d["layer1.0.conv1.weight"][i].norm().item() == pytest.approx(conv[i].norm().item(), rel=1e-5)
    fc = params["fc.weight"]  # linear layer: one filter = one output row
    torch.testing.assert_close(d["fc.weight"].norm(dim=1), fc.detach().norm(dim=1))


def test_filter_normalize_function_and_errors():
    w, d = torch.randn(4, 3, 3, 3), torch.randn(4, 3, 3, 3)
    out = L.filter_normalize(d, w)
    torch.testing.assert_close(out.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1))
    # the direction inside each filter is kept, only its length changes
    cos = nn.functional.cosine_similarity(out.flatten(1), d.flatten(1))
    torch.testing.assert_close(cos, torch.ones(4))
    with pytest.raises(ValueError, match="shape"):
        L.filter_normalize(torch.randn(4, 3), torch.randn(3, 4))
    with pytest.raises(ValueError, match=">= 2 dims"):
        L.filter_normalize(torch.randn(5), torch.randn(5))


def test_ignored_parameters_get_zero_direction_and_option_includes_them():
    model = _trained_like()
    d = L.random_direction(model, seed=0)
    for name, p in model.named_parameters():
        if p.dim() <= 1:
            assert torch.count_nonzero(d[name]) == 0, name
        else:
            assert torch.count_nonzero(d[name]) > 0, name
    d_all = L.random_direction(model, seed=0, include_1d=True)
    assert torch.equal(d_all["bn1.weight"], model.bn1.weight.detach())  # Li et al.: d = w for 1-D parameters
    assert torch.equal(d_all["layer1.0.conv1.weight"], d["layer1.0.conv1.weight"])  # same random stream


def test_directions_reproduce_from_spec():
    model = _trained_like()
    spec = L.direction_spec([5, 6])
    again = L.directions_from_spec(model, spec)
    for seed, d in zip((5, 6), again):
        ref = L.random_direction(model, seed)
        assert all(torch.equal(ref[k], d[k]) for k in ref)
    assert not torch.equal(again[0]["conv1.weight"], again[1]["conv1.weight"])
    with pytest.raises(ValueError, match="seed"):
        L.random_direction(model, -1)


def test_surface_at_origin_equals_model_loss_and_model_is_restored():
    model = _trained_like()
    x, y = torch.randn(32, 3, 8, 8), torch.randint(0, 10, (32,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d1, d2 = L.random_direction(model, 1), L.random_direction(model, 2)
    s = L.surface_2d(model, x, y, d1, d2, L.grid(1.0, 3), L.grid(1.0, 3))
    with torch.no_grad():
        own = nn.functional.cross_entropy(model(x), y).item()
        err = (model(x).argmax(1) != y).float().mean().item()
    assert s["loss"][1][1] == pytest.approx(own, rel=1e-6)
    assert s["err"][1][1] == pytest.approx(err)
    assert np.array(s["loss"]).shape == (3, 3)
    assert s["loss"][0][0] != pytest.approx(own)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    one = L.surface_1d(model, x, y, d1, [0.0, 1.0])
    assert one["loss"][0] == pytest.approx(own, rel=1e-6)
    assert one["loss"][1] == pytest.approx(s["loss"][1][2], rel=1e-5)  # (a, b) = (1, 0) on the 2-D grid


def test_1d_slice_of_a_quadratic_is_the_known_parabola():
    # loss(w) = mean((x w^T - t)^2) is quadratic in w: along w + a d it is exactly
    # loss(w) + a * 2 <grad-ish> + a^2 * mean((x d^T)^2); check against the closed form.
    torch.manual_seed(0)
    model = nn.Linear(4, 1, bias=False)
    x, t = torch.randn(64, 4), torch.randn(64, 1)
    d = {"weight": torch.randn(1, 4)}
    alphas = [-2.0, -1.0, 0.0, 0.5, 1.0, 2.0]
    s = L.surface_1d(model, x, t, d, alphas, loss_fn=nn.functional.mse_loss)
    r0 = (x @ model.weight.detach().T - t).squeeze(1)
    u = (x @ d["weight"].T).squeeze(1)
    c0, c1, c2 = (r0 * r0).mean().item(), 2 * (r0 * u).mean().item(), (u * u).mean().item()
    expected = [c0 + c1 * a + c2 * a * a for a in alphas]
    assert s["loss"] == pytest.approx(expected, rel=1e-5)
    assert all(np.isnan(s["err"]))  # regression targets: no error rate


def test_batched_evaluation_equals_one_batch():
    model = _trained_like()
    x, y = torch.randn(20, 3, 8, 8), torch.randint(0, 10, (20,))
    a = L.batch_loss(model, x, y)
    b = L.batch_loss(model, x, y, batch_size=6)
    assert a[0] == pytest.approx(b[0], rel=1e-5) and a[1] == b[1]


def test_interpolation_endpoints_are_the_two_models():
    a, b = _trained_like("resnet8"), cifar_resnet(8).eval()
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))
    r = L.interpolate(a, b, x, y, [0.0, 0.5, 1.0])
    assert r["loss"][0] == pytest.approx(L.batch_loss(a, x, y)[0], rel=1e-6)
    assert r["loss"][2] == pytest.approx(L.batch_loss(b, x, y)[0], rel=1e-6)
    with pytest.raises(ValueError, match="same architecture"):
        L.interpolate(a, cifar_resnet(14), x, y, [0.0])


def test_roughness_numbers():
    xs = np.linspace(-1, 1, 11)
    bowl = np.add.outer(xs**2, xs**2)
    r = L.roughness(bowl)
    assert r["local_minima"] == 1 and r["nonconvex"] == 0.0 and r["range"] == pytest.approx(2.0)
    rng = np.random.default_rng(0)
    rough = L.roughness(bowl + rng.normal(0, 0.3, bowl.shape))
    assert rough["local_minima"] > 1 and rough["curvature"] > r["curvature"] and rough["nonconvex"] > 0.2
    with pytest.raises(ValueError, match="2-D grid"):
        L.roughness(np.zeros(5))


def test_rises_outward_is_one_for_rings_about_a_half_for_noise_and_low_off_centre():
    xs = np.linspace(-1, 1, 11)
    bowl = np.add.outer(xs**2, xs**2)
    assert L.roughness(bowl)["rises_outward"] == 1.0
    noise = np.random.default_rng(0).normal(size=(41, 41))
    assert 0.4 < L.roughness(noise)["rises_outward"] < 0.6
    # a bowl whose bottom is off the centre: the loss falls outward on the side towards its bottom
    shifted = np.add.outer((xs - 0.6) ** 2, xs**2)
    assert L.roughness(shifted)["rises_outward"] < 0.95


def test_grid_and_errors():
    assert L.grid(1.0, 5) == pytest.approx([-1, -0.5, 0, 0.5, 1])
    with pytest.raises(ValueError, match="points"):
        L.grid(1.0, 1)
    model = _trained_like()
    with pytest.raises(ValueError, match="lacks parameters"):
        L.surface_1d(model, torch.randn(2, 3, 8, 8), torch.zeros(2, dtype=torch.long), {"fc.weight": torch.zeros(10, 64)}, [0.0])


def test_experiment_helpers():
    from skiplib.chapters import ch08_why as lx
    from skiplib.data import DeviceLoader

    assert lx.paper_cost_ratio(51, 50_000, 32) == 1.0
    assert lx.paper_cost_ratio(11, 256, 16) == pytest.approx(51**2 * 50_000 * 4 / (121 * 256))
    # loader tensors sorted by class: the surface batch must still mix classes
    y = torch.arange(10).repeat_interleave(20)
    loader = DeviceLoader(torch.randn(200, 3, 4, 4), y, batch_size=50)
    xb, yb = lx.surface_batch(loader, 30, seed=0)
    assert xb.shape == (30, 3, 4, 4) and len(torch.unique(yb)) > 5
    assert torch.equal(lx.surface_batch(loader, 30, seed=0)[1], yb)
    model = cifar_resnet(8).eval()
    les = lx.lesion_curve(model, DeviceLoader(torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,)), batch_size=8))
    assert set(les["deleted"]) == {0, 1, 2} and 0 <= les["full"] <= 1


def test_cli_has_landscape_command(capsys):
    from skiplib.cli import main

    with pytest.raises(SystemExit):
        main(["landscape", "--help"])
    assert "--bench" in capsys.readouterr().out

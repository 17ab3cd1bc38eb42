"""Chapter 8's surfaces at matched training loss (skiplib.chapters.ch08_why.train_to_loss,
run_matched and ``python -m skiplib landscape --matched``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from skiplib import cli
from skiplib.chapters import ch08_why as ch8
from skiplib.data import DeviceLoader
from skiplib.models import create_model

RECIPE = {"seed": 0, "epochs": 1, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "onecycle"}


def tiny_loaders() -> tuple[DeviceLoader, DeviceLoader]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    return DeviceLoader(x, y, 32, shuffle=True, augment=True, pad=1, seed=0), DeviceLoader(x[:32], y[:32], 32)


def test_batch_loss_is_the_eval_mode_loss_and_keeps_the_mode():
    model = create_model("resnet20").train()
    x, y = torch.randn(8, 3, 8, 8), torch.arange(8)
    loss = ch8.batch_loss(model, x, y)
    assert model.training
    with torch.no_grad():
        assert loss == pytest.approx(F.cross_entropy(model.eval()(x), y).item())


def test_train_to_loss_stops_at_the_first_schedule_that_reaches_the_target():
    train, test = tiny_loaders()
    x, y = train.x[:16], train.y[:16]
    model, chosen, tried = ch8.train_to_loss(RECIPE, train, test, 100.0, x, y, device="cpu", label="resnet20",
                                             max_epochs=3)
    assert [t["epochs"] for t in tried] == [1] and chosen == tried[0]
    assert chosen["loss"] == pytest.approx(ch8.batch_loss(model, x, y))


@pytest.mark.parametrize("target, epochs", [(1.9, 1), (1.2, 2)])
def test_train_to_loss_returns_the_closer_of_the_last_two(monkeypatch, target, epochs):
    losses = iter([2.0, 1.0])  # the loss after a 1-epoch and a 2-epoch schedule
    monkeypatch.setattr(ch8, "batch_loss", lambda model, x, y: next(losses))
    train, test = tiny_loaders()
    model, chosen, tried = ch8.train_to_loss(RECIPE, train, test, target, train.x[:16], train.y[:16], device="cpu",
                                             label="plain20", max_epochs=5)
    assert tried == [{"epochs": 1, "loss": 2.0}, {"epochs": 2, "loss": 1.0}]
    assert chosen == tried[epochs - 1]
    # the model returned is the one trained for that many epochs (same seed and batches as a fresh run)
    fresh, _ = ch8.train_families({**RECIPE, "epochs": epochs}, *tiny_loaders(), device="cpu", families=("plain",),
                                  depths=[20], progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh["plain20"].state_dict().values()))


def test_train_to_loss_says_when_the_target_is_out_of_reach():
    train, test = tiny_loaders()
    with pytest.raises(ValueError, match="plain20 did not reach the target loss -1.000 in 2 epochs"):
        ch8.train_to_loss(RECIPE, train, test, -1.0, train.x[:16], train.y[:16], device="cpu", label="plain20",
                          max_epochs=2)


def test_cli_matched_run_is_a_separate_file_with_its_epochs(monkeypatch):
    seen = []
    monkeypatch.setattr(ch8, "main", lambda args: seen.append(args) or 0)
    assert cli.main(["landscape", "--matched", "--profile", "cpu", "--epochs", "40", "--tag", "matched"]) == 0
    (args,) = seen
    assert args.matched and args.epochs == 40 and args.tag == "matched"
    assert ch8.result_name("landscape", ch8.get_profile("cpu"), args) == "landscape-cpu-matched"


def test_matched_run_without_a_tag_does_not_overwrite_the_profiles_file(monkeypatch, tmp_path):
    saved = {}

    def fake_run_and_save(name, **kwargs):
        saved["name"] = name
        return {"matched": {}, "surfaces": {}}, tmp_path / f"{name}.json"

    monkeypatch.setattr(ch8, "run_and_save", fake_run_and_save)
    args = cli.argparse.Namespace(bench=False, matched=True, profile="smoke", epochs=None, tag=None, out_dir=tmp_path)
    assert ch8.main(args) == 0
    assert saved["name"] == "landscape-smoke-matched"

"""fit/evaluate: histories, determinism, checkpoint + resume after an interruption."""

import pytest
import torch

from skiplib.data import DeviceLoader
from skiplib.models import create_model
from skiplib.train import History, evaluate, fit


def tiny_data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y


def loaders(seed=0):
    x, y = tiny_data()
    train = DeviceLoader(x, y, 32, shuffle=True, augment=True, pad=1, seed=seed)
    test = DeviceLoader(x[:64], y[:64], 32)
    return train, test


def run(epochs=3, checkpoint=None, model=None):
    torch.manual_seed(0)
    model = model or create_model("resnet20", widths=(4, 8, 8))
    train, test = loaders()
    h = fit(model, train, test, epochs=epochs, lr=0.05, checkpoint=checkpoint, device="cpu", progress=False)
    return model, h


def strip_seconds(h):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in h.records]


def test_history_has_one_record_per_epoch_with_metrics():
    _, h = run(epochs=2)
    assert [r["epoch"] for r in h.records] == [1, 2]
    for key in ("train_loss", "train_err", "test_loss", "test_err", "lr", "seconds"):
        assert len(h.column(key)) == 2
    assert 0 <= h.last["train_err"] <= 1


def test_fit_is_deterministic():
    m1, h1 = run(epochs=2)
    m2, h2 = run(epochs=2)
    assert strip_seconds(h1) == strip_seconds(h2)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


class Disconnect(Exception):
    pass


class FlakyLoader:
    """Wraps a loader and raises mid-epoch, like a Colab disconnect."""

    def __init__(self, inner, fail_at_batch):
        self.inner, self.fail_at, self.count = inner, fail_at_batch, 0

    def __len__(self):
        return len(self.inner)

    def __iter__(self):
        for batch in self.inner:
            self.count += 1
            if self.count == self.fail_at:
                raise Disconnect()
            yield batch

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, s):
        self.inner.load_state_dict(s)


def test_interrupted_then_resumed_fit_equals_uninterrupted(tmp_path):
    ref_model, ref_h = run(epochs=3)

    ckpt = tmp_path / "run.pt"
    torch.manual_seed(0)
    model = create_model("resnet20", widths=(4, 8, 8))
    train, test = loaders()
    flaky = FlakyLoader(train, fail_at_batch=2 * len(train) + 2)  # dies inside epoch 3
    with pytest.raises(Disconnect):
        fit(model, flaky, test, epochs=3, lr=0.05, checkpoint=ckpt, device="cpu", progress=False)
    assert ckpt.exists()

    # a fresh kernel: new model object, new loaders, same call
    torch.manual_seed(123)  # the checkpoint restores the RNG; this must not matter
    model2 = create_model("resnet20", widths=(4, 8, 8))
    train2, test2 = loaders()
    h = fit(model2, train2, test2, epochs=3, lr=0.05, checkpoint=ckpt, device="cpu", progress=False)
    assert strip_seconds(h) == strip_seconds(ref_h)
    for (k, a), b in zip(ref_model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k


def test_finished_checkpoint_returns_history_without_training(tmp_path):
    ckpt = tmp_path / "done.pt"
    _, h = run(epochs=1, checkpoint=ckpt)
    model, h2 = run(epochs=1, checkpoint=ckpt)
    assert h2.records == h.records


def test_checkpoint_for_other_epoch_count_is_refused(tmp_path):
    ckpt = tmp_path / "c.pt"
    run(epochs=1, checkpoint=ckpt)
    with pytest.raises(ValueError, match="1-epoch run"):
        run(epochs=2, checkpoint=ckpt)


@pytest.mark.parametrize("kw,match", [({"epochs": 0}, "epochs"), ({"epochs": 1, "schedule": "step"}, "onecycle"),
                                      ({"epochs": 1, "lr": -1.0}, "lr")])
def test_bad_arguments(kw, match):
    train, _ = loaders()
    with pytest.raises(ValueError, match=match):
        fit(create_model("resnet20", widths=(4, 8, 8)), train, device="cpu", progress=False, **kw)


def test_evaluate_counts_errors_exactly():
    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            logits = torch.zeros(x.shape[0], 10)
            logits[:, 3] = 1.0
            return logits + self.w

    x = torch.zeros(10, 3, 4, 4)
    y = torch.tensor([3, 3, 3, 0, 1, 2, 3, 4, 5, 6])
    ev = evaluate(Constant(), DeviceLoader(x, y, 4))
    assert ev["err"] == pytest.approx(6 / 10)


def test_history_roundtrip_and_empty_last():
    h = History([{"epoch": 1, "train_err": 0.5}])
    assert History.from_dict(h.to_dict()).records == h.records
    with pytest.raises(ValueError, match="empty"):
        _ = History().last

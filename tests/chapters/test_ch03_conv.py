"""Chapter 3's reference runs: ``python -m skiplib highway --part conv`` (ResNet vs highway conv
net, several seeds) and the reference figures and sentences of both Chapter 3 experiments."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from skiplib.chapters import ch03_conv, ch03_highway  # noqa: E402
from skiplib.cli import main  # noqa: E402
from skiplib.profile import get_profile  # noqa: E402


def untimed(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(tmp_path / "checkpoints"))  # never ~/.cache/skiplib


def test_conv_cli_writes_histories_summary_and_provenance(tmp_path, checkpoints, capsys):
    argv = ["highway", "--part", "conv", "--profile", "smoke", "--seeds", "0", "1", "--tag", "t",
            "--out-dir", str(tmp_path)]
    assert main(argv) == 0
    data = json.loads((tmp_path / "highway-conv-smoke-t.json").read_text())
    assert {"experiment", "config", "histories", "summary", "provenance"} <= set(data)
    assert data["experiment"] == "highway-conv" and data["config"]["seeds"] == [0, 1]
    cfg = data["config"]
    nets = [f"resnet{cfg['depth']}", f"highway{cfg['depth']}"]
    assert set(data["histories"]) == set(nets) and set(data["summary"]) == set(nets)  # JSON sorts keys
    for label in nets:
        assert set(data["histories"][label]) == {"0", "1"}
        assert all(len(h) == cfg["epochs"] and {"train_err", "test_err", "seconds"} <= set(h[-1])
                   for h in data["histories"][label].values())
        row = data["summary"][label]
        assert row["seeds"] == 2 and row["params"] > 0 and row["seconds_per_epoch"] > 0
        finals = [h[-1]["train_err"] for h in data["histories"][label].values()]
        assert row["train_err_mean"] == pytest.approx(sum(finals) / 2)
        assert row["train_err_std"] == pytest.approx(abs(finals[0] - finals[1]) / 2 ** 0.5)
        # two seeds are two different runs (subset, initialisation, batch order)
        a, b = (untimed(data["histories"][label][s]) for s in ("0", "1"))
        assert a != b
    params = data["summary"]
    assert abs(params[nets[1]]["params"] / params[nets[0]]["params"] - 1) <= 0.05  # matched
    prov = data["provenance"]
    for key in ("command", "commit", "device", "data_source", "date", "seconds", "profile"):
        assert prov[key] not in (None, ""), key
    assert prov["profile"] == "smoke" and not (tmp_path / "highway-conv-smoke.json").exists()
    assert "s/epoch" in capsys.readouterr().out


def test_the_cli_trains_what_the_chapter_trains_and_the_same_seed_gives_the_same_numbers(checkpoints):
    cfg = ch03_conv.config(get_profile("smoke"))
    assert cfg["seeds"] == [ch03_highway.config(get_profile("smoke"))["seed"]]
    live, _ = ch03_conv.train_pair(cfg, 0, device="cpu", allow_synthetic=True, checkpoints=False, verbose=False)
    out = ch03_conv.run(cfg, device="cpu", allow_synthetic=True, progress=False)
    assert list(out["histories"]) == list(live)
    for label, history in live.items():
        assert untimed(out["histories"][label]["0"].records) == untimed(history.records)


def test_a_partial_run_is_resumed_without_training_its_finished_runs(checkpoints, monkeypatch):
    cfg = {**ch03_conv.config(get_profile("smoke")), "seeds": [0, 1]}
    first = ch03_conv.run({**cfg, "seeds": [0]}, device="cpu", allow_synthetic=True, progress=False)
    source = first["info"]["source"]
    previous = {"config": json.loads(json.dumps(cfg)), "provenance": {"data_source": source},
                "histories": ch03_conv.records(first["histories"])}
    trained = []
    real_fit = ch03_conv.fit
    monkeypatch.setattr(ch03_conv, "fit", lambda model, *a, desc=None, **kw: trained.append(desc)
                        or real_fit(model, *a, desc=desc, **kw))
    out = ch03_conv.run(cfg, device="cpu", allow_synthetic=True, progress=False, previous=previous)
    assert sorted(trained) == sorted(f"{label} seed 1" for label in out["histories"])
    for label, per_seed in out["histories"].items():
        assert set(per_seed) == {"0", "1"}
        assert per_seed["0"].records == first["histories"][label]["0"].records


@pytest.mark.parametrize("argv, message", [
    (["highway", "--seeds", "0", "1"], "--seeds applies to --part conv only"),
    (["highway", "--part", "depth", "--seeds", "0"], "--seeds applies to --part conv only"),
    (["highway", "--part", "dense"], "invalid choice"),
    (["highway", "--part", "conv", "--seeds", "-1"], "non-negative int"),
    (["highway", "--part", "conv", "--epochs", "0"], "positive int"),
])
def test_bad_highway_options_are_refused_clearly(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(ch03_highway, "main", lambda args: pytest.fail("must not train"))
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


# --- reference figures and sentences ------------------------------------------------------------

def _conv_result(finals: dict[str, list[float]], depth: int = 20) -> dict:
    histories = {f"{kind}{depth}": {str(s): [{"epoch": 1, "train_err": e + 0.1, "test_err": e + 0.15, "seconds": t},
                                             {"epoch": 2, "train_err": e, "test_err": e + 0.05, "seconds": t}]
                                    for s, e in enumerate(values)}
                 for (kind, values), t in zip(finals.items(), (2.0, 3.0))}
    return {"config": {"depth": depth, "epochs": 2, "train_subset": 5_000, "image_size": 16},
            "histories": histories, "summary": ch03_conv.summarise(histories, {k: 1000 for k in histories})}


@pytest.mark.parametrize("finals, live_gap, says", [
    ({"resnet": [0.30, 0.31, 0.29], "highway": [0.40, 0.41, 0.39]}, 0.05,
     ["the ResNet ends 10.0 points lower", "agrees with the live run"]),
    ({"resnet": [0.30, 0.31, 0.29], "highway": [0.40, 0.41, 0.39]}, -0.05,
     ["the ResNet ends 10.0 points lower", "contradicts the live run"]),
    ({"resnet": [0.30, 0.40, 0.20], "highway": [0.32, 0.42, 0.22]}, 0.05,
     ["within twice its standard error over seeds", "not borne out by the longer run"]),
    ({"resnet": [0.40, 0.41, 0.39], "highway": [0.30, 0.31, 0.29]}, None, ["the highway net ends 10.0 points lower"]),
])
def test_conv_reference_summary_says_which_net_wins_and_whether_the_live_run_agrees(finals, live_gap, says):
    text = ch03_conv.reference_summary(_conv_result(finals), live_gap)
    assert text.startswith("In the reference run (2 epochs on 5,000 images at 16×16, 3 seeds) ResNet-20 ends at ")
    assert "1.50 times as long per epoch" in text
    for phrase in says:
        assert phrase in text, text
    if live_gap is None:
        assert "live run" not in text


def test_conv_reference_figure_draws_both_nets():
    fig, axes = plt.subplots(1, 2)
    ch03_conv.plot_reference(_conv_result({"resnet": [0.3, 0.32], "highway": [0.35, 0.36]}), axes)
    assert all(ax.has_data() for ax in axes)
    assert len(axes[0].get_lines()) == 4  # train and test of each net
    plt.close(fig)


def _depth_result(losses: dict[tuple[str, int], float]) -> dict:
    runs = [{"kind": k, "depth": d, "lr": lr, "final_train_loss": None if lr == 0.5 else loss + lr,
             "train_loss": None if lr == 0.5 else [2.3, loss + lr]}
            for (k, d), loss in losses.items() for lr in (0.01, 0.1, 0.5)]
    return {"config": {"fc_epochs": 18, "fc_train_subset": 4_000, "fc_lrs": [0.01, 0.1, 0.5]}, "runs": runs}


@pytest.mark.parametrize("plain_deep, highway_deep, says", [
    (2.3, 1.2, "ends 1.10 below the plain net of its depth, and the highway nets degrade far less"),
    (2.3, 0.9, "ends 1.40 below the plain net of its depth, and the highway nets do not degrade with depth at all"),
    (1.5, 1.45, "a weaker form of the paper's ordering"),
    (1.2, 1.3, "the paper's ordering does not hold here"),
])
def test_depth_reference_summary_reads_the_best_run_per_depth(plain_deep, highway_deep, says):
    result = _depth_result({("plain", 10): 1.0, ("plain", 100): plain_deep,
                            ("highway", 10): 1.0, ("highway", 100): highway_deep})
    best, depths = ch03_highway.reference_best(result)
    assert depths == [10, 100] and best["plain", 10].lr == 0.01  # diverged runs (lr 0.5) never count
    text = ch03_highway.reference_summary(result)
    assert text.startswith("In the reference run (18 epochs per learning rate on 4,000 images, learning rates "
                           "0.01, 0.1, 0.5) the plain net's best training loss goes from 1.010 at depth 10 to ")
    assert says in text, text
    assert text.endswith("The plain net of depth 100 did best at the smallest learning rate of the sweep, so a "
                         "smaller one might have lowered its loss further.")
    fig, axes = plt.subplots(1, 2)
    ch03_highway.plot_reference(result, axes)
    assert all(ax.has_data() for ax in axes)
    plt.close(fig)

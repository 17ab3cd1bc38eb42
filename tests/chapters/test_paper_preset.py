"""Chapter 1's paper preset (``degradation --preset paper``): the recipe, its schedule in fit, the dry run."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from skiplib.analysis.families import count_flops
from skiplib.chapters import ch01_degradation as ch1
from skiplib.chapters import ch01_paper as paper
from skiplib.cli import main
from skiplib.data import DeviceLoader
from skiplib.models import create_model
from skiplib.profile import get_profile, seed_everything
from skiplib.tools import workload
from skiplib.train import Warmup, fit
from skiplib.train import loop as L
from skiplib.train.schedule import check_lr_steps, lr_at


def untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def no_data(*args, **kwargs):
    raise AssertionError("a dry run must not load data")


# --- the CLI ----------------------------------------------------------------------------------------

def test_dry_run_prints_the_papers_schedule_without_data(capsys, monkeypatch):
    monkeypatch.setattr(ch1, "cifar10_loaders", no_data)
    monkeypatch.setattr(ch1, "fit", no_data)
    assert main(["degradation", "--preset", "paper", "--depths", "20", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "64000 iterations" in out and "163.7 epochs of 391 steps" in out
    assert "divided by 10 at iterations 32000 (epoch 81.8), 48000 (epoch 122.8)" in out
    assert "batch 128" in out and "weight decay 0.0001" in out and "momentum 0.9 (plain, not Nesterov)" in out
    assert "4-pixel zero pad + random 32x32 crop + horizontal flip" in out and "all 50,000" in out
    assert "depths 20 x plain, resnet x seeds 0 = 2 runs" in out
    assert "ESTIMATED" in out and "resnet20" in out and "H200" in out
    assert "warm-up" not in out  # only depth 110 warms up


def test_dry_run_names_the_warm_up_for_depth_110(capsys):
    assert main(["degradation", "--preset", "paper", "--depths", "56,110", "--families", "resnet", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "warm-up: depth 110 at lr 0.01 until the training error" in out and "below 80%" in out
    assert "depths 56, 110 x resnet x seeds 0 = 2 runs" in out


@pytest.mark.parametrize("argv, depths, seeds", [
    (["--depths", "20", "56"], [20, 56], None),            # the nargs form of the stored reference runs
    (["--depths", "20,32,44,56,110"], [20, 32, 44, 56, 110], None),
    (["--depths", "20,32", "44", "--seeds", "0,1", "2"], [20, 32, 44], [0, 1, 2]),
])
def test_depth_and_seed_lists_take_spaces_and_commas(argv, depths, seeds, monkeypatch):
    seen = []
    monkeypatch.setattr(ch1, "main", lambda args: seen.append(args) or 0)
    assert main(["degradation", *argv]) == 0
    assert seen[0].depths == depths and seen[0].seeds == seeds


@pytest.mark.parametrize("argv, message", [
    (["--depths", "20,0"], "argument --depths: must be a positive int"),
    (["--depths", "20,"], "argument --depths: must be a positive int"),
    (["--seeds", "0,-1"], "argument --seeds: must be a non-negative int"),
    (["--lr-steps", "0"], "argument --lr-steps: must be a positive int"),
    (["--iterations", "0"], "argument --iterations: must be a positive int"),
    (["--preset", "resnet"], "invalid choice: 'resnet'"),
    (["--train-subset", "0"], "argument --train-subset: must be a number of training images from 1 to 50,000"),
    (["--train-subset", "60000"], "argument --train-subset: must be a number of training images from 1 to 50,000"),
    (["--train-subset", "half"], "or 'all', got 'half'"),
    (["--image-size", "4"], "argument --image-size: must be 8 to 32 pixels"),
    (["--image-size", "64"], "argument --image-size: must be 8 to 32 pixels"),
])
def test_bad_full_length_options_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["degradation", *argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_data_overrides_reach_the_runs_config(capsys, monkeypatch):
    monkeypatch.setattr(ch1, "cifar10_loaders", no_data)
    assert main(["degradation", "--profile", "cpu", "--train-subset", "all", "--image-size", "24", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "all 50,000 CIFAR-10 training images" in out and "at 24x24" in out
    cfg = ch1.profile_and_config(argparse.Namespace(profile="cpu", train_subset=2_000, image_size=None), ch1.config)[1]
    assert cfg["train_subset"] == 2_000 and cfg["image_size"] == ch1.config(get_profile("cpu"))["image_size"]


@pytest.mark.parametrize("argv, message", [
    (["--preset", "paper", "--epochs", "3"], "counts iterations: use --iterations N instead of --epochs"),
    (["--epochs", "3", "--iterations", "5"], "give --epochs or --iterations, not both"),
    (["--preset", "paper", "--lr-steps", "32000", "70000"], "lr step 70000 is not inside the run's 64000 iterations"),
    (["--preset", "paper", "--lr-steps", "48000", "32000"], "lr_steps must increase"),
])
def test_impossible_schedules_fail_before_training(argv, message, monkeypatch):
    monkeypatch.setattr(ch1, "cifar10_loaders", no_data)
    with pytest.raises(ValueError, match=message):
        main(["degradation", *argv, "--dry-run"])


def test_paper_preset_trains_with_its_schedule_and_writes_degradation_paper(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(tmp_path / "checkpoints"))
    calls = []
    real_fit = ch1.fit
    monkeypatch.setattr(ch1, "fit", lambda *a, **kw: calls.append(kw) or real_fit(*a, **kw))
    argv = ["degradation", "--profile", "smoke", "--preset", "paper", "--depths", "20", "--families", "resnet",
            "--iterations", "6", "--lr-steps", "2", "4", "--out-dir", str(tmp_path)]
    assert main(argv) == 0
    data = json.loads((tmp_path / "degradation-paper.json").read_text())
    cfg = data["config"]
    assert cfg["preset"] == "paper" and cfg["iterations"] == 6 and cfg["lr_steps"] == [2, 4] and "epochs" not in cfg
    assert cfg["batch_size"] == 128 and cfg["weight_decay"] == 1e-4 and cfg["train_subset"] is None
    (kw,) = calls
    assert kw["iterations"] == 6 and kw["lr_steps"] == [2, 4] and kw["nesterov"] is False and "epochs" not in kw
    assert "warmup" not in kw  # depth 20: only 110 warms up
    (record,) = data["histories"]["resnet20"]  # 6 iterations fit in the first epoch of 5,000 synthetic images
    assert record["step"] == 6 and record["lr"] == pytest.approx(0.1 * 0.1**2)
    assert data["provenance"]["world_size"] == 1


# --- the recipe -------------------------------------------------------------------------------------

def test_paper_config_is_he_et_al_section_4_2():
    cfg = paper.paper_config(get_profile("smoke"))
    assert (cfg["iterations"], cfg["lr_steps"], cfg["batch_size"], cfg["lr"]) == (64_000, [32_000, 48_000], 128, 0.1)
    assert (cfg["momentum"], cfg["nesterov"], cfg["weight_decay"], cfg["image_size"]) == (0.9, False, 1e-4, 32)
    assert cfg["train_subset"] is None and cfg["depths"] == [20, 32, 44, 56, 110]
    assert cfg["warmup"] == {"depths": [110], "lr": 0.01, "until_err": 0.8, "window": 20}
    assert paper.fit_kwargs(cfg, 110)["warmup"] == {"lr": 0.01, "until_err": 0.8, "window": 20}
    assert "warmup" not in paper.fit_kwargs(cfg, 56)


def test_profile_configs_give_fit_exactly_the_chapters_recipe():
    # the chapters' own runs must call fit as before: same keys, so the same numbers and checkpoints
    for name in ("smoke", "cpu", "gpu"):
        cfg = ch1.config(get_profile(name, device="cpu"))
        assert paper.fit_kwargs(cfg, 56) == {k: cfg[k] for k in ("epochs", "lr", "momentum", "weight_decay", "schedule")}


def test_estimate_counts_flops_of_each_net():
    cfg = paper.paper_config(get_profile("smoke"))
    est = paper.estimate(cfg, ["resnet20", "resnet56"], rate=1e12)
    epochs = 164  # 64000 iterations of 391 steps: the last epoch is cut short
    for name in ("resnet20", "resnet56"):
        fwd = count_flops(create_model(name), (3, 32, 32))
        assert est[name]["flops"] == fwd * (3 * 64_000 * 128 + epochs * 10_000)
        assert est[name]["here"] == pytest.approx(est[name]["flops"] / 1e12)
        assert est[name]["t4"] > est[name]["h200"] > est[name]["flops"] / (paper.T4_FLOPS * paper.H200_SPEEDUP)
    assert est["resnet56"]["flops"] > 2.5 * est["resnet20"]["flops"]


def test_gpu_assumptions_match_the_books_run_time_table():
    assert (paper.T4_FLOPS, paper.H200_SPEEDUP) == (workload.T4_FLOPS, workload.H200_SPEEDUP)
    assert (paper.TRAIN_OVERHEAD_S, paper.FORWARD_OVERHEAD_S) == (workload.TRAIN_OVERHEAD_S, workload.FORWARD_OVERHEAD_S)


# --- the schedule in fit ----------------------------------------------------------------------------

def test_multistep_lr_divides_by_ten_at_each_milestone():
    got = [lr_at("multistep", 0.1, s, 64_000, (32_000, 48_000)) for s in (0, 31_999, 32_000, 47_999, 48_000, 63_999)]
    assert got == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


@pytest.mark.parametrize("schedule, steps, message", [
    ("multistep", (), "needs lr_steps"),
    ("multistep", (5, 3), "must increase"),
    ("multistep", (10,), "not inside the run's 10 iterations"),
    ("multistep", (0,), "positive ints"),
    ("onecycle", (3,), "need schedule='multistep'"),
])
def test_bad_lr_steps_are_refused(schedule, steps, message):
    with pytest.raises(ValueError, match=message):
        check_lr_steps(schedule, steps, 10)


@pytest.mark.parametrize("kw, message", [({"lr": 0}, "lr must be positive"), ({"until_err": 1.5}, r"in \(0, 1\]"),
                                         ({"window": 0}, "positive int")])
def test_bad_warmups_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        Warmup(**kw)


def tiny_loader(n: int = 40, batch: int = 8) -> DeviceLoader:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)
    return DeviceLoader(x, y, batch, shuffle=True, augment=True, pad=1, device="cpu", seed=0)


def tiny_fit(**kw):
    seed_everything(0)
    model = create_model("resnet20", widths=(4, 4, 4))
    return fit(model, tiny_loader(), device="cpu", progress=False, **kw)


def test_iterations_stop_inside_an_epoch_with_the_step_schedule():
    h = tiny_fit(iterations=12, schedule="multistep", lr_steps=(4, 9), lr=0.1)
    assert [r["step"] for r in h.records] == [5, 10, 12]  # 5 batches per epoch, the third epoch cut short
    assert [r["lr"] for r in h.records] == pytest.approx([0.01, 0.001, 0.001])  # the lr of each epoch's last step


def test_fit_needs_epochs_or_iterations():
    for kw in ({}, {"epochs": 1, "iterations": 3}):
        with pytest.raises(ValueError, match="epochs or iterations, exactly one"):
            tiny_fit(**kw)


def test_warm_up_holds_its_lr_until_the_error_is_low_enough():
    never = tiny_fit(iterations=7, warmup=Warmup(lr=0.01, until_err=0.01, window=2), schedule="constant")
    assert [r["lr"] for r in never.records] == [0.01, 0.01] and never.records[-1]["warmup_steps"] == 7
    at_once = tiny_fit(iterations=7, warmup={"lr": 0.01, "until_err": 1.0, "window": 3}, schedule="constant")
    assert [r["lr"] for r in at_once.records] == [0.1, 0.1] and at_once.records[-1]["warmup_steps"] == 3


def test_a_resumed_warm_up_run_gives_the_uninterrupted_numbers(tmp_path, monkeypatch):
    # a window longer than an epoch: the warm-up is still on when the first epoch's checkpoint is written
    warm = {"lr": 0.01, "until_err": 0.95, "window": 7}
    kw = {"iterations": 14, "warmup": warm, "schedule": "multistep", "lr_steps": (8,)}
    whole = tiny_fit(**kw)
    assert whole.records[0]["warmup_steps"] == 5 and whole.records[1]["warmup_steps"] >= 7
    saves, real_save = [], L.save_checkpoint

    def interrupt_after_first_epoch(path, state):
        real_save(path, state)
        saves.append(path)
        if len(saves) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(L, "save_checkpoint", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        tiny_fit(checkpoint=tmp_path / "c.pt", **kw)
    resumed = tiny_fit(checkpoint=tmp_path / "c.pt", **kw)
    assert untimed(resumed.records) == untimed(whole.records)
    assert len(saves) == 3  # epoch 1 before the interruption, epochs 2 and 3 after it


def test_the_missing_paper_run_names_a_command_the_cli_takes(monkeypatch):
    from skiplib import results as R

    message = R.missing_result_message("degradation-paper")
    assert "`python -m skiplib degradation --preset paper --out-dir results` on a GPU" in message
    seen = []
    monkeypatch.setattr(ch1, "main", lambda args: seen.append(args) or 0)
    assert main(R.result_command("degradation-paper").split()[3:]) == 0
    assert seen[0].preset == "paper" and str(seen[0].out_dir) == "results"
    assert ch1.result_name("degradation", get_profile("gpu", device="cpu"), seen[0]) == "degradation-paper"

"""Chapter 5's reference run, ``python -m skiplib densenet`` (skiplib.chapters.ch05_reference): the
file it writes, seeds, determinism, resuming from a partial file, bad input, and the chapter's
efficiency figure reading the file."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from skiplib import plots  # noqa: E402
from skiplib import results as R  # noqa: E402
from skiplib.chapters import ch05_densenets as ch5  # noqa: E402
from skiplib.chapters import ch05_reference as ref  # noqa: E402
from skiplib.chapters.ch01_degradation import result_name  # noqa: E402
from skiplib.cli import main  # noqa: E402
from skiplib.profile import get_profile  # noqa: E402
from skiplib.train import History  # noqa: E402


def untimed(run: dict) -> dict:
    """A run record without its wall-clock times (the only numbers that may differ between runs)."""
    out = {k: v for k, v in run.items() if k != "seconds"}
    out["history"] = [{k: v for k, v in r.items() if k != "seconds"} for r in run["history"]]
    if "ablation" in run:
        out["ablation"] = {k: v for k, v in run["ablation"].items() if k != "seconds"}
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """``python -m skiplib densenet --profile smoke --seeds 0 1`` into a folder of its own."""
    tmp = tmp_path_factory.mktemp("densenet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKIPLIB_CHECKPOINTS", str(tmp / "checkpoints"))  # not the real ~/.cache/skiplib
        assert main(["densenet", "--profile", "smoke", "--seeds", "0", "1", "--tag", "t",
                     "--out-dir", str(tmp / "out")]) == 0
    return json.loads((tmp / "out" / "densenet-smoke-t.json").read_text(encoding="utf-8"))


def test_the_command_writes_runs_summary_and_provenance(written):
    assert written["experiment"] == "densenet" and "partial" not in written
    cfg = written["config"]
    assert cfg == {**ch5.config(get_profile("smoke")), "seeds": [0, 1]}
    models = [f"DenseNet-BC-{cfg['dense_depth']}", "ResNet-20"]
    assert [(r["model"], r["seed"]) for r in written["runs"]] == [(m, s) for s in (0, 1) for m in models]
    for r in written["runs"]:
        assert len(r["history"]) == cfg["epochs"] and r["test_err"] == r["history"][-1]["test_err"]
        assert r["parameters"] > 0 and r["seconds"] > 0
        assert ("ablation" in r) == (r["model"] == models[0])
    ab = written["runs"][0]["ablation"]
    assert set(ref.ABLATION_KEYS) <= set(ab) and ab["images"] == cfg["ablation_images"]
    assert ab["blocks"][-1]["block"] == "all" and isinstance(ab["top_cut"], str)
    assert len(ab["increase"]) == 3 and ab["increase"][0][1][0] is None  # layer 1 does not feed the input
    summary = written["summary"]
    assert summary["seeds"] == [0, 1] and list(summary["models"]) == models
    errs = [r["test_err"] for r in written["runs"] if r["model"] == models[0]]
    row = summary["models"][models[0]]["test_err"]
    assert row["n"] == 2 and row["mean"] == pytest.approx(sum(errs) / 2)
    assert row["std"] == pytest.approx(abs(errs[0] - errs[1]) / 2 ** 0.5)
    assert summary["ablation"]["far"]["n"] == 2
    prov = written["provenance"]
    for key in ("command", "commit", "device", "data_source", "date", "seconds", "profile"):
        assert prov[key] not in (None, ""), key
    assert prov["profile"] == "smoke"


def test_seeds_give_distinct_runs_and_a_seed_its_own_numbers(written, tmp_path):
    by_seed = {s: [untimed(r) for r in written["runs"] if r["seed"] == s] for s in (0, 1)}
    assert by_seed[0][0]["history"] != by_seed[1][0]["history"]
    assert by_seed[0][0]["ablation"]["base_loss"] != by_seed[1][0]["ablation"]["base_loss"]
    cfg = {**written["config"], "seeds": [1]}
    again = ref.run(cfg, device="cpu", allow_synthetic=True, progress=False)  # no checkpoints this time
    assert [untimed(r) for r in again["runs"]] == by_seed[1]


def test_a_partial_file_of_the_same_settings_is_resumed(written, tmp_path, monkeypatch):
    """The seeds an interrupted run finished are read back, not trained again."""
    previous = {**{k: written[k] for k in ("config", "provenance", "info")},
                "runs": [r for r in written["runs"] if r["seed"] == 0]}
    trained = []
    monkeypatch.setattr(ref, "run_seed", lambda cfg, seed, **kw: trained.append(seed) or [])
    out = ref.run(written["config"], device="cpu", allow_synthetic=True, progress=False, previous=previous)
    assert trained == [1] and out["runs"] == previous["runs"]


@pytest.mark.parametrize("argv, message", [
    (["densenet", "--seeds", "-1"], "non-negative int"),
    (["densenet", "--epochs", "0"], "positive int"),
    (["densenet", "--profile", "tpu"], "invalid choice"),
    (["densenet", "--depths", "40"], "unrecognized arguments"),
])
def test_bad_options_are_refused_with_what_is_allowed(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_repeated_seeds_are_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(tmp_path / "checkpoints"))
    with pytest.raises(ValueError, match="seeds must be distinct"):
        main(["densenet", "--profile", "smoke", "--seeds", "0", "0", "--out-dir", str(tmp_path)])
    assert not list(tmp_path.glob("*.json"))


def test_the_efficiency_figure_shows_the_reference_runs_once_per_model(written, no_figures_left):
    histories = {r["model"]: History(r["history"]) for r in written["runs"] if r["seed"] == 0}
    params = {r["model"]: r["parameters"] for r in written["runs"] if r["seed"] == 0}
    fig = ch5.plot_efficiency(histories, params, dict.fromkeys(params, "C0"), written)
    labels = fig.axes[1].get_legend_handles_labels()[1]
    assert labels == [f"{m} (this run)" for m in params] + [f"{m} (reference)" for m in params]
    assert len(fig.axes[1].collections) == len(params) + len(written["runs"])
    plt.close(fig)


def test_the_chapters_reference_command_writes_the_file_it_reads(monkeypatch):
    seen = []
    monkeypatch.setattr(ref, "main", lambda args: seen.append(args) or 0)
    words = ref.REFERENCE_COMMAND.split()
    assert words[:3] == ["python", "-m", "skiplib"] and main(words[3:]) == 0
    (args,) = seen
    assert result_name("densenet", get_profile(args.profile), args) == ref.REFERENCE


def test_the_chapter_draws_and_words_a_shipped_reference(written, tmp_path, monkeypatch, no_figures_left):
    monkeypatch.setattr(R, "_reference_dir", lambda: tmp_path)
    (tmp_path / f"{ref.REFERENCE}.json").write_text(json.dumps(written), encoding="utf-8")
    live = {**written["runs"][0]["ablation"], "far": 1.0, "far_se": 0.1, "diff_z": 5.0}
    monkeypatch.setattr(plots.plt, "show", lambda: None)
    assert plots.show_reference(ref.REFERENCE, lambda run, axes: ref.plot_reference(run, axes, live),
                                ncols=2) == written
    fig = plt.gcf()
    assert [ax.get_title() for ax in fig.axes] == ["test error (reference run)",
                                                   "connection ablation, mean per cut (reference run)"]
    assert fig.axes[1].get_legend_handles_labels()[1] == ["reference, one seed", "this run"]
    plt.close(fig)
    table = ref.comparison_table(written, live).splitlines()
    assert len(table) == 2 + len(ref.ROWS) and "over 2 seeds" in table[0]
    assert table[2].startswith(f"| {ref.ROWS[0][1]} | 1.0000 | ")
    text = ref.findings(written, live)
    assert f"same pair {written['config']['epochs']} epochs (2 seeds" in text
    assert "(this run: more than, so its reading holds in" in text and "(this run: yes)" in text

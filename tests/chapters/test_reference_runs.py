"""A chapter's committed reference run, shown beside its live run (skiplib.results.reference_run,
skiplib.plots.show_reference, each chapter's plot_reference), and how the experiments CLI saves one
(skiplib.results.run_and_save)."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from skiplib import plots  # noqa: E402
from skiplib import results as R  # noqa: E402
from skiplib.chapters import ch01_budget, ch01_degradation, ch07_comparison, ch08_why  # noqa: E402

PROVENANCE = {"command": "python -m skiplib degradation --profile gpu --out-dir results", "profile": "gpu",
              "device": "Tesla T4", "data_source": "CIFAR-10", "date": "2025-03-01T12:00:00+00:00",
              "seconds": 754.0, "commit": "0123456789abcdef0123"}
EPOCHS = [{"epoch": 1, "train_err": 0.6, "test_err": 0.62}, {"epoch": 2, "train_err": 0.5, "test_err": 0.55}]
SURFACE = {"xs": [-1.0, 0.0, 1.0], "ys": [-1.0, 0.0, 1.0], "loss": [[3.0, 2.0, 3.0], [2.0, 1.0, 2.0], [3.0, 2.0, 3.0]],
           "roughness": {"local_minima": 1, "nonconvex": 0.0, "range": 2.0}}
SUMMARY = [{"family": f, "depth": d, "train_err_mean": e, "train_err_std": 0.01}
           for f, d, e in (("plain", 8, 0.4), ("plain", 32, 0.6), ("residual", 8, 0.35), ("residual", 32, 0.3))]
# one reference run per chapter that plots one, shaped as the chapter's CLI writes it
RUNS = {
    "degradation-gpu": {"experiment": "degradation", "provenance": PROVENANCE,
                        "histories": {"plain20": EPOCHS, "resnet20": EPOCHS, "plain56": EPOCHS, "resnet56": EPOCHS}},
    "compare-gpu": {"experiment": "compare", "provenance": PROVENANCE, "summary": SUMMARY},
    "landscape-gpu": {"experiment": "landscape", "provenance": PROVENANCE,
                      "surfaces": {"plain56": SURFACE, "resnet56": SURFACE}},
}


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """skiplib ships exactly the runs of RUNS (in place of the repository's results/)."""
    monkeypatch.setattr(R, "_reference_dir", lambda: tmp_path)
    for name, run in RUNS.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(run), encoding="utf-8")
    return tmp_path


@pytest.fixture
def shown(monkeypatch):
    """The figures plt.show() was asked to show (none is displayed, every one is closed afterwards)."""
    figures = []
    monkeypatch.setattr(plots.plt, "show", lambda: figures.append(plt.gcf()))
    yield figures
    plt.close("all")


def unreachable(*args, **kwargs):
    raise AssertionError("must not be called")


# --- describe_provenance, reference_run ----------------------------------------------------------

def test_device_name_counts_threads_in_english(monkeypatch):
    monkeypatch.setattr(R.torch, "get_num_threads", lambda: 1)
    assert R.device_name(R.torch.device("cpu")).endswith("CPU, 1 thread")
    monkeypatch.setattr(R.torch, "get_num_threads", lambda: 2)
    assert R.device_name(R.torch.device("cpu")).endswith("CPU, 2 threads")


def test_describe_provenance_names_what_the_run_recorded():
    assert (R.describe_provenance(PROVENANCE)
            == "gpu profile, Tesla T4, CIFAR-10, 2025-03-01, 13 min, commit 0123456789ab")
    assert R.describe_provenance({"device": "x86_64 CPU, 2 threads", "seconds": 20}) == "x86_64 CPU, 2 threads, 0 min"
    assert R.describe_provenance({}) == ""
    # files written before device_name learnt the singular keep "1 threads"; captions read "1 thread"
    assert R.describe_provenance({"device": "x86_64 CPU, 1 threads"}) == "x86_64 CPU, 1 thread"
    assert R.describe_provenance({"device": "x86_64 CPU, 11 threads"}) == "x86_64 CPU, 11 threads"
    dirty = {"commit": "0123456789abcdef0123-dirty"}
    assert R.describe_provenance(dirty) == "commit 0123456789ab with uncommitted changes"


def test_reference_run_gives_the_run_and_its_caption(shipped):
    result, note = R.reference_run("degradation-gpu")
    assert result == RUNS["degradation-gpu"]
    assert note == "Reference run degradation-gpu: " + R.describe_provenance(PROVENANCE)


def test_reference_run_missing_says_how_to_make_it(shipped):
    (shipped / "compare-gpu.json").unlink()
    assert R.reference_run("compare-gpu") == (None, R.missing_result_message("compare-gpu"))
    assert "python -m skiplib compare --profile gpu" in R.reference_run("compare-gpu")[1]
    with pytest.raises(ValueError, match="plain file stem"):
        R.reference_run("../compare-gpu")


# --- show_reference and the chapters' plot_reference ---------------------------------------------

def test_show_reference_draws_the_run_and_captions_it(shipped, shown, capsys):
    calls = []
    result = plots.show_reference("degradation-gpu", lambda run, axes: calls.append((run, axes)), ncols=2,
                                  sharey=True)
    assert result == RUNS["degradation-gpu"] and len(shown) == 1 and capsys.readouterr().out == ""
    ((run, axes),) = calls
    assert run == result and list(axes) == shown[0].axes
    assert shown[0].get_suptitle() == R.reference_run("degradation-gpu")[1]


def test_show_reference_without_a_run_prints_the_message_and_draws_nothing(shipped, shown, capsys):
    (shipped / "landscape-gpu.json").unlink()
    assert plots.show_reference("landscape-gpu", unreachable, ncols=2) is None
    assert capsys.readouterr().out.strip() == R.missing_result_message("landscape-gpu")
    assert shown == [] and plt.get_fignums() == []  # no empty figure left behind


@pytest.mark.parametrize("name, chapter, ncols, titles", [
    ("degradation-gpu", ch01_degradation, 2,
     ["plain (reference run)", "residual (option A shortcuts) (reference run)"]),
    ("compare-gpu", ch07_comparison, 1, ["training error (reference run)"]),
    ("landscape-gpu", ch08_why, 2, ["plain56 (reference run)", "resnet56 (reference run)"]),
])
def test_each_chapter_draws_its_reference_run(shipped, shown, name, chapter, ncols, titles):
    assert plots.show_reference(name, chapter.plot_reference, ncols=ncols) == RUNS[name]
    (fig,) = shown
    assert [ax.get_title() for ax in fig.axes[:ncols]] == titles
    assert all(ax.has_data() for ax in fig.axes[:ncols])


# --- run_and_save -------------------------------------------------------------------------------

def save(tmp_path, run, body=lambda out: {"x": out.get("x")}):
    return R.run_and_save("demo-smoke", run=run, body=body, device=torch.device("cpu"), profile="smoke",
                          out_dir=tmp_path)


def test_run_and_save_writes_the_body_with_provenance(tmp_path):
    out, path = save(tmp_path, lambda partial: {"x": 1, "info": {"source": "synthetic"}, "seconds": 3.0})
    assert out["x"] == 1 and path == tmp_path / "demo-smoke.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["x"] == 1 and "partial" not in data
    prov = data["provenance"]
    assert (prov["data_source"], prov["seconds"], prov["profile"]) == ("synthetic", 3.0, "smoke")


def test_run_and_save_keeps_what_finished_on_ctrl_c(tmp_path, capsys):
    def interrupted(partial):
        partial["x"] = 2
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, interrupted)
    data = json.loads((tmp_path / "demo-smoke.partial.json").read_text(encoding="utf-8"))
    assert data["partial"] is True and data["x"] == 2 and data["provenance"]["data_source"] == "not loaded yet"
    assert not (tmp_path / "demo-smoke.json").exists()
    assert "interrupted" in capsys.readouterr().err


def test_run_and_save_refuses_an_unwritable_folder_before_running(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ValueError, match=r"--out-dir"):
        R.run_and_save("demo-smoke", run=unreachable, body=unreachable, device=torch.device("cpu"), profile="smoke",
                       out_dir=tmp_path / "a-file" / "sub")


# --- Chapter 1: the gap between plain-56 and plain-20 at growing budgets ---------------------------

def _degradation(epochs: int, plain20: float, plain56: float, *, size: int = 16, subset: int | None = 8_000,
                 resnet56: float | None = None) -> dict:
    def curve(final):
        return [{"epoch": e, "train_err": final + 0.1 * (epochs - e)} for e in range(1, epochs + 1)]

    histories = {"plain20": curve(plain20), "plain56": curve(plain56)}
    if resnet56 is not None:
        histories["resnet56"] = curve(resnet56)
    return {"config": {"image_size": size, "train_subset": subset}, "histories": histories,
            "provenance": {"device": "x86_64 CPU, 2 threads"}}


def test_budget_row_reads_the_final_errors_and_the_budget():
    row = ch01_budget.budget_row("long", _degradation(18, 0.30, 0.45, resnet56=0.25))
    assert row["epochs"] == 18 and row["images"] == 8_000 and row["passes"] == 144_000
    assert row["final"] == {"plain20": 0.30, "plain56": 0.45, "resnet56": 0.25}
    assert row["gap"] == pytest.approx(0.15)
    full = ch01_budget.budget_row("gpu", _degradation(15, 0.15, 0.33, size=32, subset=None))
    assert full["images"] == 50_000  # no subset: the whole training set
    only_resnets = {"config": {"image_size": 32, "train_subset": None}, "histories": {"resnet20": [{"train_err": 0.1}]}}
    assert ch01_budget.budget_row("resnets only", only_resnets) is None


def test_gap_table_lists_every_run_smallest_budget_first():
    rows = [ch01_budget.budget_row(n, _degradation(e, a, b)) for n, e, a, b in
            (("54 epochs", 54, 0.2, 0.25), ("6 epochs", 6, 0.5, 0.7))]
    table = ch01_budget.gap_table(rows).splitlines()
    assert table[2].startswith("| 6 epochs |") and "+20.0" in table[2] and table[2].endswith("| — | — |")
    assert table[3].startswith("| 54 epochs |") and "8,000 × 54" in table[3] and "+5.0" in table[3]


@pytest.mark.parametrize("gaps, verdict", [
    ((0.20, 0.05), "it shrinks as the budget grows, but does not close"),
    ((0.20, 0.005), "the gap closes as the budget grows"),
    ((0.10, 0.20), "it grows with the budget"),
    ((0.10, 0.105), "it holds as the budget grows"),
])
def test_gap_verdict_says_how_the_gap_moves(gaps, verdict):
    rows = [ch01_budget.budget_row(f"{e} epochs", _degradation(e, 0.3, 0.3 + g)) for e, g in zip((6, 18), gaps)]
    text = ch01_budget.gap_verdict(rows)
    assert text.startswith("On 16×16 images (8,000 of them) the gap is ")
    assert f"{100 * gaps[0]:.1f} points after 6 epochs" in text and verdict in text


def test_gap_verdict_compares_budgets_only_within_one_setting():
    rows = [ch01_budget.budget_row("cpu", _degradation(6, 0.3, 0.5)),
            ch01_budget.budget_row("gpu", _degradation(15, 0.15, 0.16, size=32, subset=None))]
    assert ch01_budget.gap_verdict(rows).startswith("No setting has been run at two budgets yet")


def test_gap_budget_figure_draws_one_line_per_setting_and_rings_the_live_run():
    rows = [ch01_budget.budget_row(n, _degradation(e, 0.3, 0.3 + g)) for n, e, g in
            (("your run", 6, 0.2), ("18 epochs", 18, 0.1), ("54 epochs", 54, 0.05))]
    rows.append(ch01_budget.budget_row("gpu", _degradation(15, 0.15, 0.25, size=32, subset=None)))
    rows[-1]["partial"] = True
    assert [k for k in ch01_budget.settings(rows)] == [(16, 8_000), (32, 50_000)]
    fig = ch01_budget.plot_gap_budget(rows, live="your run")
    ax_gap, ax_err = fig.axes
    lines = {line.get_label(): line for line in ax_gap.get_lines()}
    assert list(lines["16×16, 8,000 images"].get_ydata()) == pytest.approx([20.0, 10.0, 5.0])
    assert list(lines["16×16, 8,000 images"].get_xdata()) == [48_000, 144_000, 432_000]
    assert list(lines["your run"].get_xdata()) == [48_000] and lines["your run"].get_markerfacecolor() == "none"
    settings = [lines[k].get_color() for k in ("16×16, 8,000 images", "32×32, 50,000 images")]
    family_colors = {*plots.PALETTE["plain"], *plots.PALETTE["resnet"]}
    assert len(set(settings)) == 2 and not family_colors & set(settings)  # distinct, not plain/residual
    def faces(x):
        return {line.get_markerfacecolor() for line in ax_gap.get_lines() if list(line.get_xdata()) == [x]}

    assert "white" in faces(750_000) and "white" not in faces(144_000)  # only the partial run is hollow
    errors = [list(line.get_ydata()) for line in ax_err.get_lines()]
    for curve in ([30.0, 30.0, 30.0], [50.0, 40.0, 35.0]):  # plain-20, plain-56 of the 16x16 setting
        assert any(pytest.approx(curve) == e for e in errors), errors
    assert ax_gap.get_xscale() == "log"
    plt.close(fig)


def _four_nets(epochs: int, plain20: float, plain56: float, resnet20: float, resnet56: float, **kw) -> dict:
    run = _degradation(epochs, plain20, plain56, resnet56=resnet56, **kw)
    run["histories"]["resnet20"] = [{"epoch": epochs, "train_err": resnet20}]
    return run


def test_the_curves_reference_is_the_largest_run_with_most_nets():
    results = {"long-plain": _degradation(54, 0.2, 0.5),  # complete, but the plain pair only
               "gpu-partial": _four_nets(15, 0.1, 0.3, 0.05, 0.04, size=32, subset=None)}
    del results["gpu-partial"]["histories"]["resnet56"]
    results["gpu-partial"]["partial"] = True
    assert ch01_budget.curves_reference(results) == "gpu-partial"  # three nets beat two
    results["all-16px"] = _four_nets(15, 0.1, 0.3, 0.08, 0.07, subset=None)
    assert ch01_budget.curves_reference(results) == "all-16px"  # all four, complete
    results["subset-16px"] = _four_nets(60, 0.1, 0.3, 0.08, 0.07)
    assert ch01_budget.curves_reference(results) == "all-16px"  # more training images beat more epochs
    assert ch01_budget.curves_reference({}) is None


@pytest.mark.parametrize("resnet56, ending", [
    (0.07, "ResNet-56 1.0 points below ResNet-20: with shortcuts the deeper net is the better one"),
    (0.10, "ResNet-56 2.0 points above ResNet-20: shortcuts shrink the cost of depth, though"),
    (0.40, "ResNet-56 32.0 points above ResNet-20: here shortcuts do not reduce the cost of depth"),
])
def test_shortcut_verdict_sets_the_resnet_gap_beside_the_plain_gap(resnet56, ending):
    row = ch01_budget.budget_row("all", _four_nets(15, 0.10, 0.30, 0.08, resnet56, subset=None))
    text = ch01_budget.shortcut_verdict(row)
    assert text.startswith("On 50,000 training images at 16×16 (15 epochs), plain-56 ends 20.0 points above plain-20")
    assert ending in text


def test_shortcut_verdict_names_the_nets_a_run_lacks():
    text = ch01_budget.shortcut_verdict(ch01_budget.budget_row("e54", _degradation(6, 0.3, 0.5)))
    assert text.startswith("The run e54 did not train resnet20 or resnet56, so it cannot")


def test_paper_columns_take_each_settings_largest_budget():
    results = {"e18": _degradation(18, 0.3, 0.5), "e54": _degradation(54, 0.2, 0.5),
               "gpu": _degradation(15, 0.1, 0.3, size=32, subset=None)}
    rows = [ch01_budget.budget_row(n, r) for n, r in results.items()]
    columns = ch01_budget.paper_columns(rows, results)
    assert list(columns) == ["e54 (16×16, 8k images, 54 epochs)", "gpu (32×32, 50k images, 15 epochs)"]
    assert columns["gpu (32×32, 50k images, 15 epochs)"] is results["gpu"]["histories"]


def test_a_partial_reference_run_says_so_in_its_caption(shipped):
    run = {**RUNS["degradation-gpu"], "partial": True}
    (shipped / "degradation-gpu.json").write_text(json.dumps(run), encoding="utf-8")
    assert R.reference_run("degradation-gpu")[1].startswith("Reference run degradation-gpu (partial: ")


def test_compare_reference_summary_gives_each_familys_rise_and_names_unfinished_ones():
    summary = [{**row, "seeds": 3} for row in SUMMARY] + [{"family": "dense", "depth": 10, "train_err_mean": 0.5,
                                                           "train_err_std": 0.0, "seeds": 1}]
    run = {"config": {"epochs": 10, "train_subset": 10_000, "image_size": 32}, "summary": summary}
    text = ch07_comparison.reference_summary(run)
    assert text.startswith("In the reference run (10 epochs on 10,000 images at 32×32, up to 3 seeds per net)")
    run["provenance"] = PROVENANCE
    assert ch07_comparison.reference_summary(run).startswith("In the reference run on Tesla T4 (10 epochs")
    assert ch07_comparison.reference_title(run) == "Tesla T4: 10 epochs, 10,000 images at 32×32"
    assert "the plain net's by +20.0 points (depth 8 to 32, to 60.0%)" in text
    assert "the residual net's by -5.0 points" in text
    assert text.endswith("Not enough runs finished to compare depths for: DenseNet-BC.")


def test_a_runs_commit_is_the_one_it_started_from(tmp_path, monkeypatch):
    commits = iter(["started-at", "ended-at"])
    monkeypatch.setattr(R, "git_commit", lambda: next(commits))
    out, path = R.run_and_save("degradation-smoke", run=lambda partial: {"seconds": 1.0, "info": {"source": "x"}},
                               body=lambda out: {"experiment": "degradation"}, device=torch.device("cpu"),
                               profile="smoke", out_dir=tmp_path)
    assert json.loads(path.read_text())["provenance"]["commit"] == "started-at"

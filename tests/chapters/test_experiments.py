"""The experiments CLI: configs per profile, results with provenance, the benchmark runs."""

import json
import os
import tempfile
from pathlib import Path

import pytest

from skiplib.chapters import ch01_degradation as degradation
from skiplib.cli import main
from skiplib.data import data_dir
from skiplib.profile import get_profile
from skiplib.results import load_result
from skiplib.tools.bench import fit_vs_bare


def test_configs_share_one_recipe_and_grow_with_profile():
    cfgs = {p: degradation.config(get_profile(p, device="cpu")) for p in ("smoke", "cpu", "gpu")}
    for key in ("lr", "momentum", "weight_decay", "schedule", "batch_size"):
        assert len({c[key] for c in cfgs.values()}) == 1, key
    assert cfgs["gpu"]["train_subset"] is None and cfgs["gpu"]["image_size"] == 32
    assert cfgs["smoke"]["epochs"] <= cfgs["cpu"]["epochs"] <= cfgs["gpu"]["epochs"]
    assert set(cfgs["gpu"]["depths"]) == {20, 56}  # He et al.'s Fig. 1, sized for a Colab T4


def test_run_rejects_unknown_family():
    with pytest.raises(ValueError, match="plain"):
        degradation.run(degradation.config(get_profile("smoke")), families=("highway",))


def test_the_session_never_writes_into_the_real_data_folder():
    # The CLI and the notebooks load CIFAR-10 from the default data folder: tests/conftest.py makes
    # that a folder of the session's own, with the user's copy linked into it, never the user's.
    import conftest

    folder = data_dir()
    assert folder == Path(os.environ["SKIPLIB_DATA"]) and folder.is_relative_to(tempfile.gettempdir())
    assert folder.resolve() != conftest.REAL_DATA.resolve()
    for name in ("cifar10", "cifar-10-batches-py"):
        assert (folder / name).is_symlink() == (conftest.REAL_DATA / name).is_dir(), name


def test_cli_writes_result_with_provenance(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(tmp_path / "checkpoints"))  # not the real ~/.cache/skiplib
    monkeypatch.chdir(tmp_path)
    assert main(["degradation", "--profile", "smoke", "--out-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "degradation-smoke.json").read_text())
    assert set(data["histories"]) == {"plain20", "resnet20", "plain56", "resnet56"}
    assert all(len(h) == data["config"]["epochs"] for h in data["histories"].values())
    prov = data["provenance"]
    for key in ("command", "commit", "device", "data_source", "date", "seconds", "profile"):
        assert prov[key] not in (None, ""), key
    assert prov["command"].startswith("python -m skiplib") or "pytest" in prov["command"]
    assert load_result("degradation-smoke", tmp_path) == data
    assert load_result("degradation-smoke") is None  # --out-dir, not the shipped reference runs
    assert "final train error" in capsys.readouterr().out


def test_overrides_and_tag_make_a_separate_reference_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(tmp_path / "checkpoints"))
    assert main(["degradation", "--profile", "smoke", "--depths", "20", "--epochs", "2", "--tag", "long",
                 "--out-dir", str(tmp_path)]) == 0
    # one family of the same config: its net comes from the checkpoint the run above left
    assert main(["degradation", "--profile", "smoke", "--depths", "20", "--epochs", "2", "--families", "resnet",
                 "--tag", "resnet", "--out-dir", str(tmp_path)]) == 0
    only = json.loads((tmp_path / "degradation-smoke-resnet.json").read_text())
    assert set(only["histories"]) == {"resnet20"}
    assert not (tmp_path / "degradation-smoke.json").exists()  # the profile's own file is left alone
    data = json.loads((tmp_path / "degradation-smoke-long.json").read_text())
    assert data["config"]["depths"] == [20] and data["config"]["epochs"] == 2
    assert set(data["histories"]) == {"plain20", "resnet20"}
    assert all(len(h) == 2 for h in data["histories"].values())
    assert only["histories"]["resnet20"] == data["histories"]["resnet20"]


@pytest.mark.parametrize("argv, message", [
    (["degradation", "--depths", "0"], "positive int"),
    (["compare", "--seeds", "-1"], "non-negative int"),
    (["compare", "--seeds", "one"], "non-negative int"),
    (["degradation", "--tag", "../x"], "letters, digits"),
    (["highway", "--depths", "10"], "unrecognized arguments"),
    (["degradation", "--families", "highway"], "invalid choice"),  # its depths are fixed by the paper's figure
])
def test_bad_overrides_are_refused_with_what_is_allowed(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_same_command_same_numbers(tmp_path):
    cfg = {**degradation.config(get_profile("smoke")), "depths": [20], "train_subset": 256, "test_subset": 128}
    runs = [degradation.run(cfg, device="cpu", families=("plain",), allow_synthetic=True, progress=False) for _ in range(2)]
    a, b = (r["histories"]["plain20"].records for r in runs)
    def untimed(records):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    assert untimed(a) == untimed(b)


def test_bench_measures_both_loops():
    r = fit_vs_bare(steps=3)
    assert r["fit"] > 0 and r["bare"] > 0 and r["ratio"] == pytest.approx(r["fit"] / r["bare"])

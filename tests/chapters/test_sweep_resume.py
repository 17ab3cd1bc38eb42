"""An interrupted sweep, started again with the same command, skips the runs it finished (read back from
``<name>.partial.json``), resumes the interrupted run from its checkpoint, and ends with the numbers of
an uninterrupted sweep."""

from __future__ import annotations

import json

import pytest

from skiplib.analysis.families import TIMING_FIELDS
from skiplib.chapters import ch01_degradation as ch1
from skiplib.chapters import ch03_highway as ch3
from skiplib.chapters import ch07_comparison as ch7
from skiplib.cli import main
from skiplib.train import loop


def untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", *TIMING_FIELDS)} for r in records]


def run_cli(argv: list[str], out, checkpoints, monkeypatch) -> dict:
    monkeypatch.setenv("SKIPLIB_CHECKPOINTS", str(checkpoints))
    assert main([*argv, "--out-dir", str(out)]) == 0
    (path,) = out.glob("*.json")
    return json.loads(path.read_text())


def test_degradation_skips_finished_runs_and_resumes_the_interrupted_one(tmp_path, monkeypatch, capsys):
    argv = ["degradation", "--profile", "smoke", "--depths", "20", "--epochs", "2"]
    whole = run_cli(argv, tmp_path / "whole", tmp_path / "ck-whole", monkeypatch)

    out, ck = tmp_path / "out", tmp_path / "ck"
    saves, real_save = [], loop.save_checkpoint

    def stop_in_second_run(path, state):  # plain20 saves epochs 1 and 2, then resnet20 its epoch 1: Ctrl-C
        real_save(path, state)
        saves.append(path.name)
        if len(saves) == 3:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(loop, "save_checkpoint", stop_in_second_run)
        with pytest.raises(KeyboardInterrupt):
            run_cli(argv, out, ck, monkeypatch)
    partial = json.loads((out / "degradation-smoke.partial.json").read_text())
    assert partial["partial"] is True and list(partial["histories"]) == ["plain20"]
    capsys.readouterr()

    trained, real_fit = [], ch1.fit
    monkeypatch.setattr(ch1, "fit", lambda *a, **kw: trained.append(kw["desc"]) or real_fit(*a, **kw))
    final = run_cli(argv, out, ck, monkeypatch)
    assert trained == ["resnet20"]  # plain20 came back from the partial file, untrained
    resumed = capsys.readouterr().out
    assert "resnet20.pt after epoch 1/2" in resumed and "resumed from" in resumed  # went on from its checkpoint
    assert {k: untimed(h) for k, h in final["histories"].items()} == {k: untimed(h) for k, h in whole["histories"].items()}
    assert not (out / "degradation-smoke.partial.json").exists()  # the complete file replaces it


def test_a_partial_file_of_other_settings_is_not_used(tmp_path, monkeypatch, capsys):
    argv = ["degradation", "--profile", "smoke", "--depths", "20", "--families", "plain"]
    out = tmp_path / "out"
    out.mkdir()
    stale = {"config": {"depths": [20], "epochs": 99}, "histories": {"plain20": [{"epoch": 1, "train_err": 0.0}]},
             "provenance": {"data_source": "CIFAR-10"}, "partial": True}
    (out / "degradation-smoke.partial.json").write_text(json.dumps(stale))
    trained, real_fit = [], ch1.fit
    monkeypatch.setattr(ch1, "fit", lambda *a, **kw: trained.append(kw["desc"]) or real_fit(*a, **kw))
    final = run_cli(argv, out, tmp_path / "ck", monkeypatch)
    assert trained == ["plain20"] and final["histories"]["plain20"][0]["train_err"] > 0
    assert "not resuming from the partial results of an earlier run: its settings differ" in capsys.readouterr().err


def test_compare_skips_the_records_of_an_interrupted_sweep(tmp_path, monkeypatch):
    argv = ["compare", "--profile", "smoke", "--depths", "8", "--seeds", "0"]
    whole = run_cli(argv, tmp_path / "whole", tmp_path / "ck-whole", monkeypatch)
    out, ck = tmp_path / "out", tmp_path / "ck"
    calls, real_compare = [], ch7.compare

    def interrupt_third(families, *a, **kw):
        calls.append(families[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_compare(families, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(ch7, "compare", interrupt_third)
        with pytest.raises(KeyboardInterrupt):
            run_cli(argv, out, ck, monkeypatch)
    partial = json.loads((out / "compare-smoke.partial.json").read_text())
    assert [r["family"] for r in partial["records"]] == ["plain", "highway"]
    calls.clear()
    monkeypatch.setattr(ch7, "compare", lambda families, *a, **kw: calls.append(families[0]) or real_compare(families, *a, **kw))
    final = run_cli(argv, out, ck, monkeypatch)
    assert calls == ["residual", "preact", "dense"]
    assert untimed(final["records"]) == untimed(whole["records"])


def test_highway_sweep_skips_the_runs_of_an_interrupted_sweep(tmp_path, monkeypatch):
    argv = ["highway", "--profile", "smoke"]
    whole = run_cli(argv, tmp_path / "whole", tmp_path / "ck-whole", monkeypatch)
    out = tmp_path / "out"
    calls, real_train = [], ch3.train_fc

    def interrupt_third(kind, depth, lr, *a, **kw):
        calls.append((kind, depth, lr))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_train(kind, depth, lr, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(ch3, "train_fc", interrupt_third)
        with pytest.raises(KeyboardInterrupt):
            run_cli(argv, out, tmp_path / "ck", monkeypatch)
    done = calls[:2]
    calls.clear()
    monkeypatch.setattr(ch3, "train_fc", lambda *a, **kw: calls.append(a[:3]) or real_train(*a, **kw))
    final = run_cli(argv, out, tmp_path / "ck", monkeypatch)
    assert len(calls) == len(whole["runs"]) - 2 and not set(done) & set(calls)
    assert final["runs"] == whole["runs"] and final["best"] == whole["best"]

"""``python -m skiplib.tools gpu-check``: the harness that runs every chapter on a lent GPU, tested on the CPU
with ``--scaled-down`` (smoke sizes), tiny fake notebooks and one real chapter."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from skiplib.tools import gpucheck, gpureport
from skiplib.tools.__main__ import main

ITEM_KEYS = {"name", "kind", "status", "seconds", "peak_gpu_gib", "peak_gpu_reserved_gib", "fits_t4", "error",
             "traceback"}
PROVENANCE_KEYS = {"command", "commit", "device", "torch", "cuda", "profile", "scaled_down", "date", "total_seconds",
                   "budget_s", "finished"}


def _notebook(folder: Path, name: str, *sources: str) -> Path:
    path = folder / name
    nbformat.write(new_notebook(cells=[new_markdown_cell("# a fake chapter")] + [new_code_cell(s) for s in sources]),
                   path)
    return path


@pytest.fixture
def fake_book(tmp_path, monkeypatch) -> Path:
    """Three chapters: one that checks its environment, one that raises, one that passes after it."""
    monkeypatch.setenv("SKIPLIB_DATA", str(tmp_path / "data"))  # never the real ~/.cache/skiplib
    book = tmp_path / "book"
    book.mkdir()
    _notebook(book, "01_env.ipynb",
              "import os\n"
              "assert os.environ['SKIPLIB_PROFILE'] == 'smoke', os.environ['SKIPLIB_PROFILE']\n"
              f"assert os.environ['SKIPLIB_DATA'] == {str(tmp_path / 'data')!r}\n"
              "print('checkpoints in', os.environ['SKIPLIB_CHECKPOINTS'])")
    _notebook(book, "02_raises.ipynb", "x = 1",
              "def chapter_two():\n    raise ValueError('chapter two is broken')\n\nchapter_two()",
              "print('never reached')")
    _notebook(book, "03_after.ipynb", "print('the next chapter still runs')")
    return book


def _read(out: Path) -> dict:
    return json.loads((out / "gpu-check.json").read_text())


def test_failing_notebook_is_recorded_and_the_next_one_runs(fake_book, tmp_path):
    before = {p.name: p.read_bytes() for p in fake_book.iterdir()}
    out = tmp_path / "report"
    rc = main(["gpu-check", "--scaled-down", "--book", str(fake_book), "--no-experiments", "--no-self-check",
               "--out", str(out)])
    assert rc == 1  # something that ran failed
    report = _read(out)
    assert PROVENANCE_KEYS <= set(report["provenance"])
    prov = report["provenance"]
    assert prov["profile"] == "smoke" and prov["scaled_down"] is True and prov["finished"] is True
    assert prov["command"].startswith("python -m skiplib.tools gpu-check --scaled-down")
    items = {i["name"]: i for i in report["items"]}
    assert list(items) == ["01_env", "02_raises", "03_after"]
    for item in items.values():
        assert ITEM_KEYS <= set(item), item
        assert item["kind"] == "chapter" and item["seconds"] > 0
        assert item["peak_gpu_gib"] is None and item["fits_t4"] is None  # no CUDA here: recorded as unknown
    assert items["01_env"]["status"] == "pass", items["01_env"]
    bad = items["02_raises"]
    assert bad["status"] == "fail"
    assert bad["error"] == "ValueError: chapter two is broken"
    assert any("chapter_two()" in line for line in bad["traceback"]) and "ValueError" in bad["traceback"][-1]
    assert items["03_after"]["status"] == "pass"
    # the executed copies are kept in the report folder; book/ is untouched
    executed = nbformat.read(out / "notebooks" / "02_raises.ipynb", as_version=4)
    assert executed.cells[-1].source.startswith("# appended by `python -m skiplib.tools gpu-check`")
    assert {p.name: p.read_bytes() for p in fake_book.iterdir()} == before
    md = (out / "gpu-check.md").read_text()
    assert "| item | kind | status | seconds | peak GPU (GiB) | fits a T4 (15 GB) |" in md
    assert "| 02_raises | chapter | fail |" in md and "ValueError: chapter two is broken" in md
    assert "2 pass, 1 fail" in md


def test_budget_skips_later_items_and_the_report_is_written_after_each(fake_book, tmp_path, monkeypatch):
    out = tmp_path / "report"
    seen = []

    def slow_notebook(path, env, timeout, out_dir):
        seen.append(_read(out_dir))  # what a kill at this moment would leave behind
        time.sleep(0.5)
        return {"status": "pass", "seconds": 0.5, "error": None, "traceback": [],
                **gpucheck._memory_fields({"allocated": 2 * gpucheck.GiB, "reserved": 3 * gpucheck.GiB})}

    monkeypatch.setattr(gpucheck, "run_notebook", slow_notebook)
    rc = main(["gpu-check", "--scaled-down", "--book", str(fake_book), "--no-experiments", "--no-self-check",
               "--budget", "0.3", "--out", str(out)])
    assert rc == 0  # skipped items do not fail the run
    assert len(seen) == 1 and [i["status"] for i in seen[0]["items"]] == ["pending"] * 3
    assert seen[0]["provenance"]["finished"] is False
    items = _read(out)["items"]
    assert [i["status"] for i in items] == ["pass", "skipped", "skipped"]
    assert items[1]["error"] == "skipped (out of time)"
    assert items[0]["peak_gpu_gib"] == 2.0 and items[0]["fits_t4"] is True
    assert "| 03_after | chapter | skipped |" in (out / "gpu-check.md").read_text()


def test_chosen_chapters_and_experiments_run_in_the_given_order_and_lanes_merge(fake_book, tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(gpucheck, "run_notebook", lambda path, *a: ran.append(path.stem) or
                        {"status": "pass", "seconds": 1.0, "error": None, "traceback": []})
    monkeypatch.setattr(gpucheck, "run_experiment", lambda name, *a: ran.append(name) or
                        {"status": "fail", "seconds": 2.0, "error": "RuntimeError: x", "traceback": []})
    lanes = []
    for n, argv in enumerate([["--chapters", "3", "1", "--experiments", "landscape", "degradation"],
                              ["--chapters", "2", "--no-experiments"]]):
        out = tmp_path / f"lane{n}"
        main(["gpu-check", "--scaled-down", "--book", str(fake_book), "--no-self-check", "--out", str(out),
              "--note", "shared the GPU", *argv])
        lanes.append(_read(out))
    assert ran == ["03_after", "01_env", "landscape", "degradation", "02_raises"]
    assert "--experiments landscape degradation" in lanes[0]["provenance"]["command"]
    assert "Note: shared the GPU" in (tmp_path / "lane0" / "gpu-check.md").read_text()
    merged = gpureport.merge_reports(lanes, note="two lanes")
    assert [i["name"] for i in merged["items"]] == ["03_after", "01_env", "landscape", "degradation", "02_raises"]
    assert merged["provenance"]["lanes"] == [r["provenance"]["command"] for r in lanes]
    assert merged["provenance"]["note"] == "two lanes" and merged["provenance"]["finished"] is True
    with pytest.raises(SystemExit):
        main(["gpu-check", "--scaled-down", "--experiments", "nonsense"])
    with pytest.raises(ValueError, match="at least one"):
        gpureport.merge_reports([])


def test_memory_fields_decide_whether_a_t4_fits():
    assert gpucheck._memory_fields(None) == {"peak_gpu_gib": None, "peak_gpu_reserved_gib": None, "fits_t4": None}
    fits = gpucheck._memory_fields({"allocated": 13 * gpucheck.GiB, "reserved": 13.5 * gpucheck.GiB})
    assert fits["peak_gpu_gib"] == 13.0 and fits["fits_t4"] is True
    # the allocator's reserve plus the CUDA context must fit, not only what was allocated
    tight = gpucheck._memory_fields({"allocated": 13 * gpucheck.GiB, "reserved": 14.5 * gpucheck.GiB})
    assert tight["fits_t4"] is False
    line = f"noise\n{gpucheck.MARKER} " + json.dumps({"allocated": 5, "reserved": 8, "device": "X"}) + "\nmore"
    assert gpucheck._parse_marker(line) == {"allocated": 5, "reserved": 8, "device": "X"}


def test_missing_book_and_unknown_chapters_are_explained(tmp_path, fake_book):
    with pytest.raises(FileNotFoundError, match="source checkout"):
        gpucheck.find_notebooks(tmp_path / "no-book")
    with pytest.raises(ValueError, match=r"chapter\(s\) \[9\]"):
        gpucheck.find_notebooks(fake_book, [1, 9])
    assert [p.name for p in gpucheck.find_notebooks(fake_book, [3, 1])] == ["03_after.ipynb", "01_env.ipynb"]
    assert len(gpucheck.find_notebooks()) >= 8  # the checkout's chapters


def test_resume_self_check_passes_on_this_device():
    item = gpucheck.run_self_check()
    assert item["status"] == "pass", item
    assert "resumed history matches" in item["detail"]


def test_experiment_runs_in_a_subprocess_and_failures_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPLIB_DATA", str(tmp_path / "data"))
    env = {**os.environ, "SKIPLIB_PROFILE": "smoke", "SKIPLIB_CHECKPOINTS": str(tmp_path / "checkpoints")}
    item = gpucheck.run_experiment("highway", env, 300, tmp_path / "out")
    assert item["status"] == "pass", item
    assert item["command"] == f"python -m skiplib highway --profile smoke --out-dir {tmp_path / 'out' / 'results'}"
    result = json.loads((tmp_path / "out" / "results" / "highway-depth-smoke.json").read_text())
    assert result["provenance"]["command"] == item["command"]  # the wrapper runs the CLI as `python -m skiplib`
    bad = gpucheck.run_experiment("no-such-experiment", env, 300, tmp_path / "out")
    assert bad["status"] == "fail" and bad["error"].startswith("exit code 2"), bad
    assert (tmp_path / "out" / "logs" / "no-such-experiment.log").exists()


@pytest.mark.slow
def test_one_real_chapter_scaled_down(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPLIB_DATA", str(tmp_path / "data"))  # smoke: synthetic stand-in when no CIFAR copy
    out = tmp_path / "gpu-check"
    rc = main(["gpu-check", "--scaled-down", "--chapters", "1", "--no-experiments", "--out", str(out)])
    report = _read(out)
    assert [(i["name"], i["kind"]) for i in report["items"]] == [
        ("data", "self-check"), ("resume", "self-check"), ("01_degradation", "chapter")]
    assert "synthetic" in report["items"][0]["detail"] or "CIFAR-10" in report["items"][0]["detail"]
    assert all(i["status"] == "pass" for i in report["items"]), report["items"]
    assert rc == 0
    print(f"\nscaled-down chapter 1: {report['items'][2]['seconds']:.1f} s")


def test_bench_reads_measured_seconds_only_from_a_full_gpu_run():
    from skiplib.tools.bench import measured_gpu_seconds

    items = [{"name": "01_degradation", "kind": "chapter", "status": "pass", "seconds": 400.0},
             {"name": "02_identity_construction", "kind": "chapter", "status": "fail", "seconds": 12.0},
             {"name": "degradation", "kind": "experiment", "status": "pass", "seconds": 3.0, "note": "reused"},
             {"name": "highway", "kind": "experiment", "status": "pass", "seconds": 90.0}]
    report = {"provenance": {"scaled_down": False, "device": "NVIDIA H200"}, "items": items}
    assert measured_gpu_seconds(report) == ({1: 400.0, "highway": 90.0}, "NVIDIA H200")
    assert measured_gpu_seconds({**report, "provenance": {"scaled_down": True}}) == ({}, None)
    assert measured_gpu_seconds(None) == ({}, None)
    shared = {**report, "provenance": {**report["provenance"], "note": "ran as one of 6 processes sharing the GPU"}}
    assert measured_gpu_seconds(shared) == ({}, None)  # upper bounds, not timings

"""Every chapter runs where learners press "Open in Colab" (emulated: see tests/colab_emulation.py).

Slow (a pip install of skiplib per chapter), so it runs in ``make colab-test`` (called by
``.ci/run``), not in ``make test``. The report with each chapter's seconds goes to
``_build/colab-test/report.md``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import nbformat
import pytest

from skiplib.tools.notebooks import bootstrap_source

from colab_emulation import ENV_DIR, REPO_ROOT, ColabEmulator

pytestmark = [
    pytest.mark.colab,
    pytest.mark.skipif(os.environ.get("SKIPLIB_COLAB_EMULATION") != "1",
                       reason="the Colab emulation runs in `make colab-test` (SKIPLIB_COLAB_EMULATION=1)"),
]

CHAPTERS = sorted((REPO_ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
REPORT_DIR = REPO_ROOT / "_build" / "colab-test"


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    emulator = ColabEmulator(tmp_path_factory.mktemp("colab"))
    emulator.runs = []
    yield emulator
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "report.json").write_text(json.dumps([asdict(r) for r in emulator.runs], indent=1) + "\n")
    lines = ["| notebook | result | seconds (bootstrap install included) |", "|---|---|---|"]
    lines += [f"| {r.notebook} | {'ok' if r.ok else 'FAILED: ' + r.error} | {r.seconds:.1f} |" for r in emulator.runs]
    lines.append(f"| total | | {sum(r.seconds for r in emulator.runs):.1f} |")
    (REPORT_DIR / "report.md").write_text("\n".join(lines) + "\n")


def notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A test notebook")] + [nbformat.v4.new_code_cell(c) for c in cells]
    return nb


def test_there_are_nine_chapters():
    assert len(CHAPTERS) == 9, [p.name for p in CHAPTERS]


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_on_colab(colab, path):
    run = colab.run_notebook(path)
    colab.runs.append(run)
    assert run.ok, f"{path.name} fails on Colab: {run.error}\n" + "\n".join(run.outputs_tail)
    # the bootstrap's non-editable install, not the checkout, served the chapter
    assert Path(run.skiplib_file).is_relative_to(ENV_DIR), run.skiplib_file


def test_a_chapter_importing_a_book_tool_fails_on_colab(colab):
    run = colab.run_notebook(notebook(bootstrap_source(), "import skiplib\nfrom myst_nb import glue"), name="imports-myst-nb")
    assert not run.ok
    assert "ModuleNotFoundError" in run.error and "myst_nb" in run.error, run.error


def test_skiplib_is_not_preinstalled_on_the_emulated_colab(colab):
    # without the bootstrap cell, nothing of the course is there: the reset before each chapter works
    run = colab.run_notebook(notebook("import sys\nassert 'google.colab' in sys.modules", "import skiplib"),
                             name="no-bootstrap")
    assert not run.ok
    assert "No module named 'skiplib'" in run.error, run.error

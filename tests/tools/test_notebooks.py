"""skiplib.tools.notebooks.glue_only_cells: finding the cells that only feed the prose (issue 20)."""

from __future__ import annotations

import nbformat
import pytest

from skiplib.tools import notebooks


def _nb(*sources: str, tags: dict[int, list[str]] | None = None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title")]
    for i, src in enumerate(sources, start=1):
        nb.cells.append(nbformat.v4.new_code_cell(src, metadata={"tags": (tags or {}).get(i, [])}))
    return nb


GLUE_ONLY = [
    'glue("a", 1, display=False)',
    'x = h["a"]\nglue("a", x, display=False)\nglue("b", 2 * x, display=False)',
    'ph = run["histories"]\nlast = ph[deep].last\nglue("deep", last["train_err"], display=False)',
    'for name, v in rise.items():\n    glue(f"rise_{name}", float(v), display=False)',
    'myst_nb.glue("a", 1, False)',
    'total: float = 3.0\ntotal += 1\nglue("t", total, display=False)',
]

NOT_GLUE_ONLY = [
    'glue("a", 1)',  # displays the value: output the reader sees
    'glue("a", 1, display=True)',
    'glue("a", 1, display=False)\nprint("done")',
    'x = 1\nglue("a", 2, display=False)',  # x feeds nothing glued: it is computed for later cells
    'fig = plt.figure()\nglue("f", fig, display=False)',  # draws
    'ref = plots.show_reference("r", draw)\nglue("r", ref, display=False)',  # shows a figure
    'glue("a", 1, display=False)\nassert a > 0',
    'glue("a", 1, display=False)\nx',  # a bare expression is shown
    'for n in names:\n    print(n)',
    '%time glue("a", 1, display=False)',  # a magic: not plain Python
    "",
]


@pytest.mark.parametrize("source", GLUE_ONLY)
def test_glue_only_cells_are_found(source):
    found = notebooks.glue_only_cells(_nb("import torch", source))
    assert [c.index for c in found] == [2], source
    assert found[0].first_line == source.splitlines()[0] and not found[0].hidden


@pytest.mark.parametrize("source", NOT_GLUE_ONLY)
def test_cells_that_show_something_are_not_glue_only(source):
    assert notebooks.glue_only_cells(_nb(source)) == [], source


def test_executed_copies_are_judged_by_their_outputs():
    nb = _nb('v = f()\nglue("v", v, display=False)', 'w = g()\nglue("w", w, display=False)')
    record = nbformat.v4.new_output("display_data", {"application/papermill.record/text/plain": "1"},
                                    metadata={"scrapbook": {"name": "v", "mime_prefix": "application/papermill.record/"}})
    nb.cells[1].outputs = [record]  # myst-nb's invisible record of a glued value: still bookkeeping
    nb.cells[2].outputs = [record, nbformat.v4.new_output("stream", name="stdout", text="training...\n")]
    assert [c.index for c in notebooks.glue_only_cells(nb)] == [1]


def test_cli_lists_only_cells_the_website_shows(tmp_path, capsys):
    glue_line = 'glue("a", 1, display=False)'
    path = tmp_path / "ch.ipynb"
    nbformat.write(_nb(glue_line, glue_line, tags={2: ["remove-input"]}), str(path))
    assert [c.hidden for c in notebooks.glue_only_cells(path)] == [False, True]
    assert notebooks.main(["glue-only", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: cell 1: {glue_line}" in out and "cell 2" not in out

    nb = notebooks.read(path)
    nb.cells[1].metadata["tags"] = ["hide-input"]
    nbformat.write(nb, str(path))
    assert notebooks.main(["glue-only", str(tmp_path)]) == 0


def test_long_lines_finds_code_wider_than_the_site_column(tmp_path, capsys):
    wide = "x = " + "1 + " * 20 + "1"  # 85 characters
    assert len(wide) > notebooks.CODE_COLUMN_CHARS
    nb = _nb(notebooks.bootstrap_source(), f"y = 2\n{wide}", wide, wide, tags={3: ["remove-input"], 4: ["hide-input"]})
    # the bootstrap cell is generated and shared by every chapter; a removed cell is not on the page;
    # a hidden one is, once the reader opens it
    assert notebooks.long_lines(nb) == [(2, 2, wide), (4, 1, wide)]
    assert notebooks.long_lines(nb, width=len(wide)) == []
    path = tmp_path / "ch.ipynb"
    nbformat.write(nb, str(path))
    assert notebooks.main(["long-lines", str(path)]) == 1
    assert f"{path}: cell 2 line 2 ({len(wide)} characters)" in capsys.readouterr().out
    nbformat.write(_nb("y = 2"), str(path))
    assert notebooks.main(["long-lines", str(path)]) == 0

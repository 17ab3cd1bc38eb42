"""Notebook housekeeping for the course: the Colab bootstrap cell, output stripping, glue-only cells.

Used by the tests (``tests/test_repo.py``) and the Make targets (``make strip``); it needs
``nbformat`` and ``pyyaml`` but not torch. Command line::

    python -m skiplib.tools.notebooks sync-bootstrap [PATH ...]   # rewrite each first code cell
    python -m skiplib.tools.notebooks strip [PATH ...]            # clear outputs and volatile metadata
    python -m skiplib.tools.notebooks check [PATH ...]            # exit 1 if either is needed
    python -m skiplib.tools.notebooks glue-only [PATH ...]        # list glue-only cells the website shows
    python -m skiplib.tools.notebooks long-lines [PATH ...]       # list code lines wider than the site's column

PATH is a notebook or a folder searched for ``*.ipynb`` (default: the repository's ``book/``).
"""

from __future__ import annotations

import argparse
import ast
import copy
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP_TAG = "hide-input"
# Cell metadata that records how a notebook was last run, not what it says.
VOLATILE_CELL_KEYS = ("execution", "ExecuteTime", "collapsed", "scrolled", "executionInfo", "outputId")
VOLATILE_NOTEBOOK_KEYS = ("widgets", "signature")
# Characters of code the website's code column holds at the theme's default width, measured in a
# 1280 px window (14 px monospace, 8.43 px a character, 16 px padding each side of the <pre>): 77 in
# a shown cell (684 px), 75 in one opened from "Show code cell source" (666 px). make site-test
# measures the real thing; this is for finding long lines without building the book.
CODE_COLUMN_CHARS = 75
# Tags with which Jupyter Book keeps a cell's code off the page (hide-input: behind a toggle).
HIDING_TAGS = frozenset({"remove-input", "remove-cell", "hide-input", "hide-cell"})


def repository_url(config: str | Path | None = None) -> str:
    """The course repository URL, read from ``_config.yml`` (the one place it is written)."""
    path = Path(config) if config is not None else REPO_ROOT / "_config.yml"
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    url = (data.get("repository") or {}).get("url")
    if not url:
        raise ValueError(f"{path} has no repository.url")
    return str(url).rstrip("/")


def bootstrap_source(url: str | None = None) -> str:
    """The exact source of every chapter notebook's first code cell."""
    url = url or repository_url()
    return (
        "# Colab bootstrap: on Colab, install skiplib from the course repository; "
        "elsewhere the local install is used.\n"
        "import importlib.util, subprocess, sys\n"
        f'REPO_URL = "{url}"\n'
        'if "google.colab" in sys.modules and importlib.util.find_spec("skiplib") is None:\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"skiplib @ git+{REPO_URL}"], check=True)\n'
        "    importlib.invalidate_caches()"
    )


def notebook_paths(paths: Iterable[str | Path] | None = None) -> list[Path]:
    """Expand files and folders into a sorted list of notebooks (skipping checkpoints and builds)."""
    found: set[Path] = set()
    for p in [Path(p) for p in (paths or [REPO_ROOT / "book"])]:
        if p.is_dir():
            found.update(
                q for q in p.rglob("*.ipynb")
                if not {".ipynb_checkpoints", "_build"} & set(q.relative_to(p).parts)
            )
        elif p.suffix == ".ipynb" and p.exists():
            found.add(p)
        else:
            raise FileNotFoundError(f"not a notebook or folder: {p}")
    return sorted(found)


def read(path: str | Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def _write_if_changed(nb: nbformat.NotebookNode, path: Path) -> bool:
    text = nbformat.writes(nb)
    if not text.endswith("\n"):
        text += "\n"
    if path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def first_code_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    return next((c for c in nb.cells if c.cell_type == "code"), None)


def _looks_like_bootstrap(cell: nbformat.NotebookNode) -> bool:
    """An (old or current) bootstrap cell: safe to overwrite."""
    return cell.source.lstrip().startswith("# Colab bootstrap") or "REPO_URL" in cell.source


def set_bootstrap(nb: nbformat.NotebookNode, url: str | None = None) -> bool:
    """Make the first code cell the bootstrap cell, tagged ``hide-input``, in memory; True if changed.

    An existing bootstrap cell (one starting ``# Colab bootstrap``) is rewritten; otherwise a
    new cell is inserted before the first code cell.
    """
    source = bootstrap_source(url)
    cell = first_code_cell(nb)
    changed = False
    if cell is None or not _looks_like_bootstrap(cell):
        # Never overwrite a chapter's own code: insert the bootstrap before it (after the title).
        at = nb.cells.index(cell) if cell is not None else len(nb.cells)
        at = max(at, 1) if nb.cells and nb.cells[0].cell_type == "markdown" else at
        cell = nbformat.v4.new_code_cell()
        nb.cells.insert(at, cell)
        changed = True
    if cell.source != source:
        cell.source, changed = source, True
    tags = cell.metadata.setdefault("tags", [])
    if BOOTSTRAP_TAG not in tags:
        tags.append(BOOTSTRAP_TAG)
        changed = True
    return changed


def strip_notebook(nb: nbformat.NotebookNode) -> bool:
    """Clear outputs, execution counts and volatile metadata, in memory; True if anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code":
            if cell.get("outputs"):
                cell.outputs, changed = [], True
            if cell.get("execution_count") is not None:
                cell.execution_count, changed = None, True
        for key in VOLATILE_CELL_KEYS:
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
    for key in VOLATILE_NOTEBOOK_KEYS:
        if key in nb.metadata:
            del nb.metadata[key]
            changed = True
    return changed


def sync_bootstrap(paths: Iterable[str | Path] | None = None, url: str | None = None) -> list[Path]:
    """Rewrite the first code cell of each notebook to :func:`bootstrap_source`; return those changed."""
    changed = []
    for path in notebook_paths(paths):
        nb = read(path)
        if set_bootstrap(nb, url) and _write_if_changed(nb, path):
            changed.append(path)
    return changed


def strip_outputs(paths: Iterable[str | Path] | None = None) -> list[Path]:
    """Strip outputs and volatile metadata from each notebook in place; return those changed."""
    changed = []
    for path in notebook_paths(paths):
        nb = read(path)
        if strip_notebook(nb) and _write_if_changed(nb, path):
            changed.append(path)
    return changed


def problems(path: str | Path, url: str | None = None) -> list[str]:
    """What is wrong with a committed notebook: outputs left in, or an out-of-date bootstrap cell."""
    nb = read(path)
    found = []
    if strip_notebook(copy.deepcopy(nb)):
        found.append("has outputs, execution counts or volatile metadata (run `make strip`)")
    if set_bootstrap(copy.deepcopy(nb), url):
        found.append("first code cell is not the bootstrap cell (run `python -m skiplib.tools.notebooks sync-bootstrap`)")
    return found


@dataclass(frozen=True)
class GlueOnlyCell:
    """A code cell that only hands numbers to the prose: the reader gains nothing from its code."""

    index: int  # position in nb.cells (markdown cells counted)
    first_line: str
    tags: tuple[str, ...]

    @property
    def hidden(self) -> bool:
        return bool(HIDING_TAGS & set(self.tags))


def _is_glue_call(node: ast.AST) -> bool:
    """``glue(...)`` or ``x.glue(...)`` with ``display=False``: it records a value and prints nothing."""
    if not (isinstance(node, ast.Call) and (getattr(node.func, "id", None) == "glue"
                                            or getattr(node.func, "attr", None) == "glue")):
        return False
    shown = next((k.value for k in node.keywords if k.arg == "display"), None)
    if shown is None and len(node.args) >= 3:
        shown = node.args[2]
    return isinstance(shown, ast.Constant) and shown.value is False


def _visible(output: dict) -> bool:
    """An output the page shows: anything but myst-nb's record of a value glued with ``display=False``."""
    scrapbook = output.get("metadata", {}).get("scrapbook", {})
    return not (output.get("output_type") == "display_data" and scrapbook.get("mime_prefix"))


def _may_show(node: ast.AST) -> bool:
    """Calls something that prints or draws (print, display, plt.*, show_*/plot_*): in a stripped
    notebook the output cannot be looked at, so judge by the name."""
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            name = getattr(n.func, "id", None) or getattr(n.func, "attr", "")
            owner = getattr(getattr(n.func, "value", None), "id", None)
            if name in ("print", "display") or name.startswith(("show", "plot")) or owner == "plt":
                return True
    return False


def _names(node: ast.AST, ctx: type) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}


def _glue_only(body: list[ast.stmt], used: set[str]) -> bool:
    """Every statement a silent glue call, an assignment whose names a later one uses, or a ``for``
    loop of those. Walks backwards so that ``used`` holds the names the statements after need."""
    for stmt in reversed(body):
        if isinstance(stmt, ast.Expr) and _is_glue_call(stmt.value):
            used |= _names(stmt.value, ast.Load)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and stmt.value is not None:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            stored = set().union(*(_names(t, ast.Store) for t in targets))
            if not stored or not stored <= used or _may_show(stmt.value):  # a value nothing glues is for something else
                return False
            used |= _names(stmt.value, ast.Load) | set().union(*(_names(t, ast.Load) for t in targets))
        elif isinstance(stmt, ast.For) and not stmt.orelse:
            inner = set(used)
            if not _glue_only(stmt.body, inner) or not _names(stmt.target, ast.Store) & inner:
                return False
            used |= inner | _names(stmt.iter, ast.Load)
        else:
            return False
    return True


def glue_only_cells(nb: nbformat.NotebookNode | str | Path) -> list[GlueOnlyCell]:
    """The code cells of a notebook that only glue values for the prose and print nothing.

    Such a cell is bookkeeping: on the website it belongs behind ``remove-input`` (or
    ``hide-input``). A cell qualifies when every statement is a ``glue(..., display=False)``
    call, an assignment feeding one, or a ``for`` loop of those; anything else (a print, a plot,
    an assert, a bare expression) makes it a cell the reader may want to see. A notebook or its path;
    an executed copy (``_build/jupyter_execute/book``) is judged by its outputs as well, a stripped
    one by the names it calls (an assignment from ``print``/``display``/``plt.*``/``show*``/``plot*``
    does not count as bookkeeping)."""
    nb = read(nb) if isinstance(nb, (str, Path)) else nb
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip() or any(map(_visible, cell.get("outputs", []))):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython magics: not plain glue
            continue
        if tree.body and _glue_only(tree.body, set()):
            found.append(GlueOnlyCell(i, cell.source.strip().splitlines()[0], tuple(cell.metadata.get("tags", []))))
    return found


def long_lines(nb: nbformat.NotebookNode | str | Path, width: int = CODE_COLUMN_CHARS) -> list[tuple[int, int, str]]:
    """``(cell index, line number from 1, line)`` for every code line longer than ``width`` characters,
    which the website would show in a sideways-scrolling block. Cells the page does not show
    (``remove-input``/``remove-cell``) and the generated bootstrap cell are left out."""
    nb = read(nb) if isinstance(nb, (str, Path)) else nb
    return [(i, n, line) for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and not _looks_like_bootstrap(cell)
            and not {"remove-input", "remove-cell"} & set(cell.metadata.get("tags", []))
            for n, line in enumerate(cell.source.splitlines(), start=1) if len(line) > width]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skiplib.tools.notebooks", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in [
        ("sync-bootstrap", "rewrite each notebook's first code cell to the Colab bootstrap"),
        ("strip", "clear outputs, execution counts and volatile metadata"),
        ("check", "exit 1 listing notebooks with outputs or an out-of-date bootstrap"),
        ("glue-only", "exit 1 listing glue-only cells whose code the website shows (tag them remove-input)"),
        ("long-lines", f"exit 1 listing code lines over {CODE_COLUMN_CHARS} characters (the website's code column)"),
    ]:
        sub.add_parser(name, help=help_).add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.paths or None
    if args.command == "glue-only":
        shown = [(p, c) for p in notebook_paths(paths) for c in glue_only_cells(p) if not c.hidden]
        for p, c in shown:
            print(f"{p}: cell {c.index}: {c.first_line}")
        print(f"{len(shown)} glue-only cell(s) shown on the website")
        return 1 if shown else 0
    if args.command == "long-lines":
        found = [(p, *hit) for p in notebook_paths(paths) for hit in long_lines(p)]
        for p, i, n, line in found:
            print(f"{p}: cell {i} line {n} ({len(line)} characters): {line.strip()[:60]}")
        print(f"{len(found)} code line(s) wider than {CODE_COLUMN_CHARS} characters")
        return 1 if found else 0
    if args.command == "check":
        bad = {p: problems(p) for p in notebook_paths(paths)}
        bad = {p: msgs for p, msgs in bad.items() if msgs}
        for p, msgs in bad.items():
            for msg in msgs:
                print(f"{p}: {msg}")
        if not bad:
            print(f"{len(notebook_paths(paths))} notebook(s) clean")
        return 1 if bad else 0
    action = sync_bootstrap if args.command == "sync-bootstrap" else strip_outputs
    changed = action(paths)
    for p in changed:
        print(f"rewrote {p}")
    print(f"{len(changed)} notebook(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

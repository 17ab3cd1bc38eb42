"""Notebook housekeeping for the course: the Colab bootstrap cell and output stripping.

Used by the tests (``tests/test_repo.py``) and the Make targets (``make strip``); it needs
``nbformat`` and ``pyyaml`` but not torch. Command line::

    python -m skiplib.tools.notebooks sync-bootstrap [PATH ...]   # rewrite each first code cell
    python -m skiplib.tools.notebooks strip [PATH ...]            # clear outputs and volatile metadata
    python -m skiplib.tools.notebooks check [PATH ...]            # exit 1 if either is needed

PATH is a notebook or a folder searched for ``*.ipynb`` (default: the repository's ``book/``).
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Iterable
from pathlib import Path

import nbformat
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP_TAG = "hide-input"
# Cell metadata that records how a notebook was last run, not what it says.
VOLATILE_CELL_KEYS = ("execution", "ExecuteTime", "collapsed", "scrolled", "executionInfo", "outputId")
VOLATILE_NOTEBOOK_KEYS = ("widgets", "signature")


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skiplib.tools.notebooks", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in [
        ("sync-bootstrap", "rewrite each notebook's first code cell to the Colab bootstrap"),
        ("strip", "clear outputs, execution counts and volatile metadata"),
        ("check", "exit 1 listing notebooks with outputs or an out-of-date bootstrap"),
    ]:
        sub.add_parser(name, help=help_).add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.paths or None
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

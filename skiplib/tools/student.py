"""For instructors: solution-free student notebooks, an exercise table, and grading.

Used by ``make student`` / ``make grade`` and described in the book's instructor guide
(``book/instructors.md``). It needs nbformat, markdown-it-py (via myst-parser) and, to
grade, nbclient and ipykernel; not torch. Command line::

    python -m skiplib.tools.student build [SRC ...] OUT      # student set of the notebooks in SRC
    python -m skiplib.tools.student list [SRC ...]           # table of the exercises (markdown)
    python -m skiplib.tools.student links [--branch student]  # Colab links to the published student set
    python -m skiplib.tools.student grade DIR --out grades.csv [--timeout S] [--notebook-timeout S] [--feedback DIR]

Grading itself lives in :mod:`skiplib.tools.grading` (each submission in its own process and kernel).

A student notebook is the chapter notebook with every ``### BEGIN SOLUTION`` … ``### END
SOLUTION`` region of a code cell replaced by ``raise NotImplementedError`` (at the markers'
indentation), every sphinx-exercise solution directive removed, ``assert check_…(…)``
turned into ``check_…(…)`` (an unsolved exercise must not stop "Run all"), and outputs
stripped. The Colab bootstrap and every other cell are unchanged.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from skiplib.tools import notebooks

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"  # nbgrader's markers
PLACEHOLDER = "raise NotImplementedError"
SOLUTION_DIRECTIVES = ("solution", "solution-start", "solution-end")  # sphinx-exercise


# --- the student set -------------------------------------------------------------------


def clear_solutions(source: str, where: str = "cell") -> tuple[str, int]:
    """Replace each solution region (markers included) by ``raise NotImplementedError`` at the
    BEGIN marker's indentation; return the new source and the number of regions."""
    out, inside, regions = [], False, 0
    for line in source.splitlines(keepends=True):
        text = line.strip()
        if text.startswith(BEGIN):
            if inside:
                raise ValueError(f"{where}: {BEGIN!r} inside another solution region")
            inside, regions = True, regions + 1
            out.append(line[: len(line) - len(line.lstrip())] + PLACEHOLDER + "\n")
        elif text.startswith(END):
            if not inside:
                raise ValueError(f"{where}: {END!r} without a {BEGIN!r} before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN!r} without a matching {END!r}")
    new = "".join(out)
    return (new.rstrip("\n") if not source.endswith("\n") else new), regions


def _markdown_parser():
    from markdown_it import MarkdownIt  # myst-parser's own parser: fences as MyST reads them
    from mdit_py_plugins.colon_fence import colon_fence_plugin

    return MarkdownIt("commonmark").use(colon_fence_plugin)


def _directive_name(info: str) -> str | None:
    m = re.match(r"\{([\w:-]+)\}", info.strip())
    return m.group(1) if m else None


def remove_solution_directives(markdown: str) -> tuple[str, int]:
    """Remove sphinx-exercise ``{solution}`` blocks (backtick or colon fences) and gated
    ``{solution-start}`` … ``{solution-end}`` ranges; return the text and the number removed."""
    lines = markdown.splitlines(keepends=True)
    drop: set[int] = set()
    removed, start = 0, None
    for token in _markdown_parser().parse(markdown):
        if token.type not in ("fence", "colon_fence") or token.map is None:
            continue
        name = _directive_name(token.info)
        if name == "solution":
            drop.update(range(*token.map))
            removed += 1
        elif name == "solution-start":
            start = token.map[0]
        elif name == "solution-end" and start is not None:
            drop.update(range(start, token.map[1]))
            removed, start = removed + 1, None
    kept = [line for i, line in enumerate(lines) if i not in drop]
    text = re.sub(r"\n{3,}", "\n\n", "".join(kept)).strip("\n")
    return text, removed


def _check_calls(node: ast.AST) -> list[str]:
    """Names of the ``check_…`` functions called anywhere in ``node``, in order."""
    names = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name.startswith("check_") and name not in names:
                names.append(name)
    return names


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except SyntaxError:  # IPython magics or a learner's typo: not a check cell we can read
        return None


def unassert_checks(source: str) -> str:
    """``assert check_x(...)`` -> ``check_x(...)``: the instructor notebook asserts so that the
    book build fails on a wrong solution; the student notebook must run on past an unsolved one."""
    tree = _parse(source)
    if tree is None:
        return source
    lines = source.splitlines(keepends=True)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assert) and node.msg is None and isinstance(node.test, ast.Call)
                and _check_calls(node.test) and node.lineno == node.test.lineno):
            line = lines[node.lineno - 1]
            if line[node.col_offset:node.test.col_offset].strip() == "assert":
                lines[node.lineno - 1] = line[:node.col_offset] + line[node.test.col_offset:]
    return "".join(lines)


def student_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The student version of an instructor notebook (a new object; ``nb`` is not changed)."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.source, _ = clear_solutions(cell.source, f"{name}, cell {i}")
            cell.source = unassert_checks(cell.source)
        elif cell.cell_type == "markdown":
            cell.source, _ = remove_solution_directives(cell.source)
    nb.cells = [c for c in nb.cells if c.cell_type != "markdown" or c.source.strip()]
    notebooks.strip_notebook(nb)
    return nb


def build(sources: Iterable[str | Path], out: str | Path) -> list[Path]:
    """Write the student version of every notebook under ``sources`` into ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks.notebook_paths(sources):
        target = out / path.name
        nbformat.write(student_notebook(notebooks.read(path), path.name), str(target))
        written.append(target)
    return written


def colab_url(notebook: str, branch: str = "student", folder: str = "student") -> str:
    """The "Open in Colab" link of a published student notebook, from ``_config.yml``'s repository URL."""
    repo = notebooks.repository_url()
    if not repo.startswith("https://github.com/"):
        raise ValueError(f"Colab opens notebooks from GitHub only; the repository URL is {repo}")
    owner_repo = repo.removeprefix("https://github.com/").removesuffix(".git")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{folder}/{Path(notebook).name}"


# --- the exercise table ----------------------------------------------------------------


@dataclass
class Exercise:
    notebook: str
    id: str
    kind: str  # "coding" | "conceptual"
    title: str
    points: float = 1.0


def _grade_meta(cell) -> dict:
    return cell.metadata.get("nbgrader") or {}


def check_cells(nb: nbformat.NotebookNode) -> list[tuple[int, list[str], float]]:
    """(cell index, exercise ids, points) of every code cell that calls a ``check_…`` function.
    The id is the cell's nbgrader ``grade_id`` if it has one, else the check function's name."""
    found = []
    for i, cell in enumerate(nb.cells):
        tree = _parse(cell.source) if cell.cell_type == "code" else None
        names = _check_calls(tree) if tree is not None else []
        if names:
            meta = _grade_meta(cell)
            ids = [meta["grade_id"]] if meta.get("grade_id") else names
            found.append((i, ids, float(meta.get("points", 1))))
    return found


def exercises(nb: nbformat.NotebookNode, name: str) -> list[Exercise]:
    """Every exercise of a notebook: ``{exercise}`` directives and check cells, in order. A
    directive followed by a check cell (before the next directive) is one coding exercise."""
    found: list[Exercise] = []
    checks = {i: (ids, pts) for i, ids, pts in check_cells(nb)}
    fences = {i: [t for t in _markdown_parser().parse(c.source) if t.type in ("fence", "colon_fence")]
              for i, c in enumerate(nb.cells) if c.cell_type == "markdown"}
    answered = {t.info.split()[1] for ts in fences.values() for t in ts
                if _directive_name(t.info) == "solution" and len(t.info.split()) > 1}
    pending: Exercise | None = None  # the last directive without a written solution, until a check cell claims it
    for i in range(len(nb.cells)):
        if i in fences:
            for token in fences[i]:
                if _directive_name(token.info) == "exercise":
                    label = re.search(r"^:label:\s*(\S+)", token.content, re.M)
                    title = token.info.strip()[len("{exercise}"):].strip() or "(untitled)"
                    found.append(Exercise(name, label.group(1) if label else "", "conceptual", title))
                    pending = found[-1] if found[-1].id not in answered else None
        elif i in checks:
            ids, points = checks[i]
            for ex_id in ids:
                if pending is not None and pending.kind == "conceptual":
                    pending.kind, pending.id, pending.points = "coding", ex_id, points
                    pending = None
                else:
                    found.append(Exercise(name, ex_id, "coding", f"`{ex_id}`", points))
    return found


def exercise_table(sources: Iterable[str | Path] | None = None) -> str:
    rows = ["| notebook | exercise | type | title | points |", "|---|---|---|---|---|"]
    for path in notebooks.notebook_paths(sources):
        for ex in exercises(notebooks.read(path), path.name):
            points = f"{ex.points:g}" if ex.kind == "coding" else ""
            rows.append(f"| {ex.notebook} | {ex.id} | {ex.kind} | {ex.title} | {points} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skiplib.tools.student", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the student set: SRC... (notebooks or folders) then OUT")
    b.add_argument("paths", nargs="+", type=Path)
    sub.add_parser("list", help="print the exercises as a markdown table").add_argument("paths", nargs="*", type=Path)
    k = sub.add_parser("links", help="print the Colab link of each student notebook")
    k.add_argument("paths", nargs="*", type=Path)
    k.add_argument("--branch", default="student")
    g = sub.add_parser("grade", help="execute and score a folder of submitted notebooks, each in its own process")
    g.add_argument("folder", type=Path)
    g.add_argument("--out", type=Path, default=Path("grades.csv"))
    g.add_argument("--timeout", type=int, default=120, help="seconds per cell (default 120)")
    g.add_argument("--notebook-timeout", type=int, default=600,
                   help="seconds per notebook, kernel start included (default 600); then it is stopped")
    g.add_argument("--profile", default="smoke", choices=["smoke", "cpu", "gpu"])
    g.add_argument("--feedback", type=Path, help="also write the executed notebooks here, for the students")
    args = parser.parse_args(argv)
    if args.command == "build":
        if len(args.paths) < 2:
            parser.error("build needs at least one source and the output folder, e.g. `build book student`")
        written = build(args.paths[:-1], args.paths[-1])
        print(f"{len(written)} student notebook(s) written to {args.paths[-1]}/")
    elif args.command == "list":
        print(exercise_table(args.paths or None))
    elif args.command == "links":
        for path in notebooks.notebook_paths(args.paths or None):
            print(colab_url(path.name, args.branch))
    else:
        from skiplib.tools.grading import grade  # imports this module: here, not at the top

        if not args.folder.is_dir():
            parser.error(f"{args.folder} is not a folder of submitted notebooks")
        for name in ("timeout", "notebook_timeout"):
            if getattr(args, name) < 1:
                parser.error(f"--{name.replace('_', '-')} must be a positive number of seconds, "
                             f"got {getattr(args, name)}")
        rows = grade(args.folder, args.out, timeout=args.timeout, notebook_timeout=args.notebook_timeout,
                     profile=args.profile, feedback=args.feedback)
        print(f"{len(rows)} notebook(s) graded: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Student notebooks, the "not attempted" path of the graders, and the grading command.

Real chapter notebooks are only transformed here, never executed (too slow for the test
command); execution and grading use a tiny synthetic notebook with the same structure.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch.nn.functional as F

from skiplib.exercises import _runner, check_pad_shortcut, run_checks
from skiplib.tools import grading, notebooks, student

from _paths import ROOT

BOOK_NOTEBOOKS = notebooks.notebook_paths([ROOT / "book"])


def _ids(paths):
    return [p.name for p in paths]


def _solution_lines(source: str) -> list[str]:
    """The stripped, non-blank lines inside the solution regions of ``source``."""
    found, inside = [], False
    for line in source.splitlines():
        text = line.strip()
        if text.startswith(student.BEGIN):
            inside = True
        elif text.startswith(student.END):
            inside = False
        elif inside and text:
            found.append(text)
    return found


def _fences(markdown: str) -> list[str]:
    return [t.info.strip() for t in student._markdown_parser().parse(markdown) if t.type in ("fence", "colon_fence")]


# --- the transformation ----------------------------------------------------------------


def test_clear_solutions_keeps_the_markers_indentation():
    src = ("def f(x):\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n\n"
           "class A:\n    def g(self):\n        ### BEGIN SOLUTION\n        return 2\n        ### END SOLUTION")
    out, n = student.clear_solutions(src)
    assert n == 2
    assert out == ("def f(x):\n    raise NotImplementedError\n\n"
                   "class A:\n    def g(self):\n        raise NotImplementedError")
    ast.parse(out)


@pytest.mark.parametrize("src", ["### BEGIN SOLUTION\nx = 1\n", "x = 1\n### END SOLUTION\n",
                                 "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n"])
def test_clear_solutions_rejects_unbalanced_markers(src):
    with pytest.raises(ValueError, match="SOLUTION"):
        student.clear_solutions(src, "nb.ipynb, cell 3")


def test_solution_directives_are_removed_in_every_syntax():
    md = ("Intro\n\n```{exercise} Q\n:label: ex-a\nWhy?\n```\n\n````{solution} ex-a\n:class: dropdown\n"
          "Because\n```python\nsecret = 1\n```\n````\n\n:::{solution} ex-b\ncolon secret\n:::\n\n"
          "```{solution-start} ex-c\n```\ngated secret\n```{solution-end}\n```\nAfter")
    out, n = student.remove_solution_directives(md)
    assert n == 3
    assert "secret" not in out and "Because" not in out
    assert out == "Intro\n\n```{exercise} Q\n:label: ex-a\nWhy?\n```\n\nAfter"


def test_assert_around_a_check_is_dropped_in_the_student_version():
    src = "from m import check_x\n\nassert check_x(f)\nassert other(f)\nassert (check_y(f))"
    assert student.unassert_checks(src) == "from m import check_x\n\ncheck_x(f)\nassert other(f)\nassert (check_y(f))"
    assert student.unassert_checks("%time x = 1") == "%time x = 1"  # magics are left alone


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=_ids(BOOK_NOTEBOOKS))
def test_student_version_of_each_chapter_has_no_solutions(path: Path):
    teacher = notebooks.read(path)
    pupil = student.student_notebook(teacher, path.name)
    nbformat.validate(pupil)

    # No solution code: every line of every solution body is gone, unless the instructor
    # notebook also has that very line outside any solution region (e.g. a bare `)`).
    code = lambda nb: [c.source for c in nb.cells if c.cell_type == "code"]  # noqa: E731
    secret = {line for src in code(teacher) for line in _solution_lines(src)}
    public = {line.strip() for src in code(teacher) for line in student.clear_solutions(src)[0].splitlines()}
    left = {line.strip() for src in code(pupil) for line in src.splitlines()}
    assert not (secret - public) & left, f"solution lines left in: {sorted((secret - public) & left)}"
    assert not any(m in src for src in code(pupil) for m in (student.BEGIN, student.END))

    # No solution directive; every exercise directive kept.
    md = lambda nb: [f for c in nb.cells if c.cell_type == "markdown" for f in _fences(c.source)]  # noqa: E731
    assert not [f for f in md(pupil) if student._directive_name(f) in student.SOLUTION_DIRECTIVES]
    exercises = lambda nb: [f for f in md(nb) if student._directive_name(f) == "exercise"]  # noqa: E731
    assert exercises(pupil) == exercises(teacher)

    # Each solution region became a placeholder; outputs stripped; bootstrap untouched.
    regions = sum(student.clear_solutions(src)[1] for src in code(teacher))
    assert sum(src.count(student.PLACEHOLDER) for src in code(pupil)) >= regions
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in pupil.cells if c.cell_type == "code")
    assert notebooks.first_code_cell(pupil).source == notebooks.first_code_cell(teacher).source
    assert notebooks.first_code_cell(pupil).source == notebooks.bootstrap_source()

    # Still valid Python where it was, and every check cell is still there, without `assert`.
    for before, after in zip(code(teacher), code(pupil)):
        if student._parse(before) is not None:
            ast.parse(after)
    assert [ids for _, ids, _ in student.check_cells(pupil)] == [ids for _, ids, _ in student.check_cells(teacher)]
    for i, _, _ in student.check_cells(pupil):
        tree = ast.parse(pupil.cells[i].source)
        assert not any(isinstance(n, ast.Assert) and student._check_calls(n) for n in ast.walk(tree))


def test_build_writes_one_student_notebook_per_chapter(tmp_path: Path, capsys):
    assert student.main(["build", str(ROOT / "book"), str(tmp_path / "student")]) == 0
    written = sorted(p.name for p in (tmp_path / "student").glob("*.ipynb"))
    assert written == [p.name for p in BOOK_NOTEBOOKS]
    assert "student notebook(s) written" in capsys.readouterr().out
    assert notebooks.problems(tmp_path / "student" / written[0]) == []  # stripped, bootstrap intact


def test_exercise_table_lists_every_exercise_with_its_type():
    table = student.exercise_table([ROOT / "book"])
    for path in BOOK_NOTEBOOKS:
        nb = notebooks.read(path)
        for _, ids, _ in student.check_cells(nb):
            assert all(f"| {ex_id} | coding |" in table for ex_id in ids)
        labels = [f for c in nb.cells if c.cell_type == "markdown" for f in _fences(c.source)
                  if student._directive_name(f) == "exercise"]
        assert table.count(f"| {path.name} |") >= len(labels)


# --- the graders' "not attempted" path ---------------------------------------------------


def good(x, out_channels, stride):
    x = x[:, :, ::stride, ::stride]
    return F.pad(x, (0, 0, 0, 0, 0, out_channels - x.shape[1]))


def test_not_attempted_is_reported_without_a_trace(capsys):
    _runner._drain_records()

    def placeholder(x, out_channels, stride):
        raise NotImplementedError

    assert check_pad_shortcut(placeholder) is False
    out = capsys.readouterr().out
    assert "Option-A shortcut: not attempted yet (0/6 checks passed)" in out
    assert "Traceback" not in out and "✗" not in out
    assert json.loads(_runner._drain_records()) == [
        {"exercise": "check_pad_shortcut", "title": "Option-A shortcut", "passed": 0, "total": 6, "attempted": False}]


def test_a_grader_that_reports_the_placeholder_itself_counts_as_not_attempted(capsys):
    # like check_dirac_init, which catches the learner's exception and returns a sentence
    assert not run_checks("T", [("a", lambda: "your function raised NotImplementedError: "), ("b", lambda: None)])
    assert "T: not attempted yet (1/2 checks passed)" in capsys.readouterr().out


def test_results_go_to_the_grader_in_memory_never_through_print(capsys, monkeypatch):
    # No token to steal: a check prints only what the learner reads, and keeps its record in memory.
    monkeypatch.setenv("SKIPLIB_GRADE_TOKEN", "tok")  # what the old grader set; it must change nothing
    _runner._drain_records()
    assert check_pad_shortcut(good)
    out = capsys.readouterr().out
    assert "GRADE" not in out and "tok" not in out
    assert [r["passed"] for r in json.loads(_runner._drain_records())] == [6]
    assert _runner._drain_records() == "[]"  # drained: a record is counted once


@pytest.mark.parametrize("wrong, message", [
    # zeros prepended instead of appended
    (lambda x, c, s: F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, c - x.shape[1], 0)), "the first 16 channels should be x subsampled"),
    # average pooling instead of subsampling
    (lambda x, c, s: F.pad(F.avg_pool2d(x, s) if s > 1 else x, (0, 0, 0, 0, 0, c - x.shape[1])), "x[:, :, ::2, ::2]"),
    # forgot to subsample
    (lambda x, c, s: F.pad(x, (0, 0, 0, 0, 0, c - x.shape[1])), "the output should be (2, 32, 4, 4), got (2, 32, 8, 8)"),
    # padding only to the fixed width of one stage
    (lambda x, c, s: F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, 0, 32 - x.shape[1])), "does not match skiplib's PadShortcut"),
])
def test_check_pad_shortcut_rejects_realistic_mistakes(wrong, message, capsys):
    assert not check_pad_shortcut(wrong)
    out = capsys.readouterr().out
    assert message in out and "✗" in out and "Traceback" not in out


# --- grading a folder of submissions -------------------------------------------------------

BODY = ("    x = x[:, :, ::stride, ::stride]\n"
        "    return F.pad(x, (0, 0, 0, 0, 0, out_channels - x.shape[1]))\n")


def _instructor_notebook() -> nbformat.NotebookNode:
    """A chapter in miniature: title, bootstrap, a solution cell, two check cells (one with
    nbgrader metadata worth 2 points), and a conceptual exercise with its solution."""
    solution = nbformat.v4.new_code_cell(
        "import torch.nn.functional as F\n\n\ndef pad_shortcut(x, out_channels, stride):\n"
        f"    ### BEGIN SOLUTION\n{BODY}    ### END SOLUTION", metadata={"tags": ["hide-input"]})
    quiet = nbformat.v4.new_code_cell("check_pad_shortcut(pad_shortcut, verbose=False)",
                                      metadata={"nbgrader": {"grade_id": "pad-quiet", "points": 2}})
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Mini chapter\n\nGoals."),
        nbformat.v4.new_code_cell(notebooks.bootstrap_source("https://example.invalid/course"),
                                  metadata={"tags": ["hide-input"]}),
        solution,
        nbformat.v4.new_code_cell("from skiplib.exercises import check_pad_shortcut\n\nassert check_pad_shortcut(pad_shortcut)"),
        quiet,
        nbformat.v4.new_markdown_cell("```{exercise} Why?\n:label: ex-mini\nExplain.\n```\n\n"
                                      "```{solution} ex-mini\n:class: dropdown\nThe secret answer.\n```"),
        nbformat.v4.new_code_cell("print('end of notebook')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _answer(nb: nbformat.NotebookNode, body: str) -> nbformat.NotebookNode:
    """A learner's submission: the student notebook with the placeholder replaced by ``body``."""
    nb = nbformat.from_dict(nb)
    cell = nb.cells[2]
    assert "    raise NotImplementedError" in cell.source
    cell.source = cell.source.replace("    raise NotImplementedError", body.rstrip("\n"))
    return nb


def _with_cell(nb: nbformat.NotebookNode, at: int, source: str) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(nb)
    nb.cells.insert(at, nbformat.v4.new_code_cell(source))
    return nb


FORGE = """import json, os
token = os.environ.get("SKIPLIB_GRADE_TOKEN", "guess")
for ex in ("check_pad_shortcut", "pad-quiet"):
    print(f"GRADE {token} " + json.dumps({"exercise": ex, "title": "x", "passed": 6, "total": 6, "attempted": True}))
print("env seen by the kernel:", sorted(os.environ))
"""


def _outputs(folder: Path, name: str) -> str:
    nb = notebooks.read(folder / name)
    return "".join(o.get("text", "") + "".join(o.get("traceback", [])) for c in nb.cells
                   if c.cell_type == "code" for o in c.outputs)


@pytest.mark.slow
def test_grade_scores_a_folder_of_submissions(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("INSTRUCTOR_API_KEY", "s3cret-of-the-instructor")  # must not reach a submission
    teacher = _instructor_notebook()
    pupil = student.student_notebook(teacher)
    assert "secret" not in nbformat.writes(pupil) and "### BEGIN" not in nbformat.writes(pupil)
    subs = tmp_path / "submissions"
    subs.mkdir()
    nbformat.write(teacher, subs / "a_instructor.ipynb")
    nbformat.write(_answer(pupil, "    return F.pad(x[:, :, 1::stride, 1::stride], (0, 0, 0, 0, 0, out_channels - x.shape[1]))"),
                   subs / "b_wrong.ipynb")
    nbformat.write(pupil, subs / "c_unattempted.ipynb")
    nbformat.write(_answer(pupil, "    return x[:, :, ::stride"), subs / "d_syntax_error.ipynb")
    # Unattempted, but its check cells print pass lines in the format (and with the token) that
    # the old grader read from them.
    forged = nbformat.from_dict(pupil)
    for i, _, _ in student.check_cells(forged):
        forged.cells[i].source += "\n" + FORGE
    nbformat.write(forged, subs / "e_forged.ipynb")
    # Solved, but the kernel dies between the two check cells: the first one's result still counts.
    nbformat.write(_with_cell(_answer(pupil, BODY), 4, "import os\nos._exit(3)"), subs / "f_crashes.ipynb")
    (subs / "g_not_a_notebook.ipynb").write_text("{ this is not json")

    out, feedback = tmp_path / "grades.csv", tmp_path / "feedback"
    assert student.main(["grade", str(subs), "--out", str(out), "--timeout", "120", "--feedback", str(feedback)]) == 0

    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["notebook", "check_pad_shortcut", "pad-quiet", "total", "possible", "cell_errors", "status"]
    assert rows[1:6] == [
        ["a_instructor.ipynb", "1", "1", "3", "3", "0", "completed"],
        ["b_wrong.ipynb", "0.3333", "0.3333", "1", "3", "0", "completed"],
        ["c_unattempted.ipynb", "0", "0", "0", "3", "0", "completed"],
        ["d_syntax_error.ipynb", "0", "0", "0", "3", "3", "completed"],
        ["e_forged.ipynb", "0", "0", "0", "3", "0", "completed"],
    ]
    assert rows[6][:6] == ["f_crashes.ipynb", "1", "0", "1", "3", "0"]
    assert rows[6][6].startswith("kernel died in cell 5 of 8")
    assert rows[7][:6] == ["g_not_a_notebook.ipynb", "", "", "0", "", "0"]
    assert rows[7][6].startswith("not a readable notebook")

    # The student notebook runs to its end: each check says "not attempted", nothing raises.
    text = _outputs(feedback, "c_unattempted.ipynb")
    assert "Option-A shortcut: not attempted yet" in text and "end of notebook" in text
    assert "Traceback" not in text
    assert "6/6 checks passed" in _outputs(feedback, "a_instructor.ipynb")
    assert "✗ old channels carried through" in _outputs(feedback, "b_wrong.ipynb")
    assert "SyntaxError" in _outputs(feedback, "d_syntax_error.ipynb")
    # The forger found no token and none of the instructor's environment; the forged lines stay
    # visible in the feedback, as printed text, and count for nothing.
    forged_text = _outputs(feedback, "e_forged.ipynb")
    assert "GRADE guess {" in forged_text and "INSTRUCTOR_API_KEY" not in forged_text
    assert "'SKIPLIB_PROFILE'" in forged_text  # the line did print the environment
    assert "6/6 checks passed" in _outputs(feedback, "f_crashes.ipynb")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.slow
def test_a_notebook_that_never_ends_is_stopped_and_the_next_one_is_graded(tmp_path: Path):
    subs = tmp_path / "submissions"
    subs.mkdir()
    pid_file = tmp_path / "kernel.pid"
    # A loop that swallows the interrupt nbclient sends when a cell's time is up.
    loop = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))"),
        nbformat.v4.new_code_cell("while True:\n    try:\n        time.sleep(0.1)\n"
                                  "    except KeyboardInterrupt:\n        pass"),
        nbformat.v4.new_code_cell("print('never reached')"),
    ])
    nbformat.write(loop, subs / "a_loops_forever.ipynb")
    nxt = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('graded')")])
    nbformat.write(nxt, subs / "b_next.ipynb")
    t0 = time.monotonic()
    rows = grading.grade(subs, tmp_path / "grades.csv", timeout=3, notebook_timeout=15, feedback=tmp_path / "fb")
    assert time.monotonic() - t0 < 15 + 45  # the limit held (the rest: two kernel start-ups)
    assert rows[0]["notebook"] == "a_loops_forever.ipynb"
    assert rows[0]["status"] == "timed out after 15 s, in cell 2 of 3"
    assert rows[0]["cell_errors"] == "0" and rows[0]["possible"] == "0"
    assert not _alive(int(pid_file.read_text()))  # its kernel was killed, not left spinning
    assert (rows[1]["notebook"], rows[1]["status"]) == ("b_next.ipynb", "completed")
    assert "graded" in _outputs(tmp_path / "fb", "b_next.ipynb")


def test_a_grader_that_hangs_is_killed_and_reported(tmp_path: Path, monkeypatch):
    # The last line of defence, without a kernel: the child process itself overruns.
    monkeypatch.setattr(grading, "_child_command",
                        lambda *a, **k: [sys.executable, "-c", "import time; time.sleep(60)"])
    t0 = time.monotonic()
    r = grading.grade_in_subprocess(tmp_path / "x.ipynb", notebook_timeout=1, grace=1)
    assert time.monotonic() - t0 < 30
    assert r == {"scores": {}, "possible": None, "errors": 0,
                 "status": "timed out after 1 s; the grader had to be stopped"}


def test_a_grader_that_fails_is_reported_with_its_last_words(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(grading, "_child_command",
                        lambda *a, **k: [sys.executable, "-c", "import sys; sys.exit('nbclient is not installed')"])
    r = grading.grade_in_subprocess(tmp_path / "x.ipynb")
    assert r["status"] == "grader failed (exit code 1): nbclient is not installed" and r["scores"] == {}


def test_the_kernel_gets_no_secrets_but_what_skiplib_needs(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("INSTRUCTOR_API_KEY", "s3cret")
    monkeypatch.setenv("JUPYTER_TOKEN", "s3cret")
    monkeypatch.setenv("SKIPLIB_DATA", str(tmp_path / "data"))
    env = grading.kernel_env("smoke", tmp_path / "ckpt")
    assert "s3cret" not in env.values()
    assert env["SKIPLIB_DATA"] == str(tmp_path / "data") and env["PATH"] == os.environ["PATH"]
    assert env["SKIPLIB_PROFILE"] == "smoke" and env["SKIPLIB_CHECKPOINTS"] == str(tmp_path / "ckpt")


@pytest.mark.parametrize("args, message", [
    (["--timeout", "0"], "--timeout must be a positive number of seconds, got 0"),
    (["--notebook-timeout", "-5"], "--notebook-timeout must be a positive number of seconds, got -5"),
])
def test_grade_rejects_a_time_limit_that_is_not_positive(tmp_path: Path, args, message, capsys):
    with pytest.raises(SystemExit):
        student.main(["grade", str(tmp_path), "--out", str(tmp_path / "g.csv"), *args])
    assert message in capsys.readouterr().err


def test_colab_links_point_at_the_student_branch(capsys):
    repo = notebooks.repository_url().removeprefix("https://github.com/")
    assert student.colab_url("01_degradation.ipynb") == (
        f"https://colab.research.google.com/github/{repo}/blob/student/student/01_degradation.ipynb")
    assert student.main(["links", str(ROOT / "book")]) == 0
    assert capsys.readouterr().out.count("/blob/student/student/") == len(BOOK_NOTEBOOKS)

"""Grading submitted notebooks: ``python -m skiplib.tools.student grade DIR --out grades.csv``.

Described in the book's instructor guide (``book/instructors.md``, "Grading"). Each submission
runs in a process of its own (``python -m skiplib.tools.grading``), which starts a fresh Jupyter
kernel for it, so one submission can neither stop the batch nor see another's state:

- the learner's code runs only in that kernel, in an empty working folder, with a fresh
  checkpoint folder (no run resumes another student's training) and an environment reduced to
  what Python, torch and skiplib need (none of the instructor's tokens or keys);
- the checks' results (:func:`skiplib.exercises.run_checks` records) are collected after each
  cell through the kernel protocol's ``user_expressions``, never from printed output, so a
  forged "passed" line earns nothing; no secret sits in the kernel to steal;
- each cell has a time limit (interrupted when it passes) and the notebook as a whole has one
  (the kernel is killed when it passes, whatever the code does with the interrupt); the child
  process has one more, a little longer, in case the grader itself hangs;
- a notebook that times out, whose kernel dies, or that cannot be read is reported as such in
  the CSV's ``status`` column, with the scores of the checks that ran before.

It does not make grading safe against a learner who sets out to cheat or to harm: the code
runs with the grader's user rights (files, network), and code in the kernel can tamper with
the checks themselves. The checks are formative feedback; for an exam, grade inside an
isolation layer (a container or a throw-away virtual machine without network access).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from skiplib.tools import notebooks
from skiplib.tools.student import _grade_meta, check_cells

# What the learner's kernel may see of the grader's environment: enough for Python, torch
# (threads, CUDA), matplotlib and skiplib's data folder; everything else (API tokens, cloud
# keys, the instructor's own settings) stays out of the kernel and out of feedback copies.
KERNEL_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "SHELL",
              "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "LD_LIBRARY_PATH", "IPYTHONDIR", "MPLBACKEND",
              "MPLCONFIGDIR", "TORCH_HOME", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
              "SKIPLIB_DATA")
KERNEL_ENV_PREFIXES = ("LC_", "XDG_")
STATUS_OK = "completed"
CHILD_GRACE_S = 60  # beyond the notebook's limit, for kernel start-up and shutdown before the child is killed

# Evaluated in the kernel after each cell; its value comes back in the execute reply, not on stdout.
# It imports nothing: a notebook that never loaded the graders has no records.
_DRAIN = ("(lambda m: m._drain_records() if hasattr(m, '_drain_records') else '[]')"
          "(__import__('sys').modules.get('skiplib.exercises._runner'))")


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def kernel_env(profile: str, checkpoints: Path) -> dict[str, str]:
    """The environment a submission's kernel runs with (see ``KERNEL_ENV``)."""
    env = {k: v for k, v in os.environ.items() if k in KERNEL_ENV or k.startswith(KERNEL_ENV_PREFIXES)}
    return {**env, "SKIPLIB_PROFILE": profile, "SKIPLIB_CHECKPOINTS": str(checkpoints)}


def _records(reply: dict | None) -> list[dict]:
    expr = ((reply or {}).get("content", {}).get("user_expressions") or {}).get("records", {})
    if expr.get("status") != "ok":
        return []
    try:
        records = json.loads(ast.literal_eval(expr["data"]["text/plain"]))
    except (KeyError, ValueError, SyntaxError, TypeError):
        return []
    keys = {"exercise": str, "passed": int, "total": int, "attempted": bool}
    return [r for r in records if isinstance(r, dict) and all(isinstance(r.get(k), t) for k, t in keys.items())]


def _scores(nb, records: dict[int, list[dict]]) -> dict[str, tuple[float, float]]:
    """{exercise id: (score 0..1, points)} from the records collected after each check cell."""
    scores: dict[str, tuple[float, float]] = {}
    for i, ids, points in check_cells(nb):
        cell_records = records.get(i, [])
        by_cell = len(ids) == 1 and bool(_grade_meta(nb.cells[i]).get("grade_id"))
        for ex_id in ids:
            mine = cell_records if by_cell else [r for r in cell_records if r["exercise"] == ex_id]
            total = sum(r["total"] for r in mine)
            ok = total > 0 and all(r["attempted"] for r in mine)
            key, n = ex_id, 1
            while key in scores:  # the same check called in two cells
                n += 1
                key = f"{ex_id}_{n}"
            scores[key] = (sum(r["passed"] for r in mine) / total if ok else 0.0, points)
    return scores


def grade_notebook(path: str | Path, *, timeout: int = 120, notebook_timeout: int = 600, profile: str = "smoke",
                   feedback: str | Path | None = None) -> dict:
    """Execute one submitted notebook in a fresh kernel and score it, in this process.

    Returns ``{"scores": {exercise id: [score 0..1, points]}, "possible": sum of the points
    (None if unreadable), "errors": cells that raised, "status": "completed" or what stopped it}``.
    An exercise whose check did not report scores 0, and so does one "not attempted".
    :func:`grade` calls this in a child process per notebook."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from nbclient.util import ensure_async

    path = Path(path)
    try:
        nb = notebooks.read(path)
        check_cells(nb)
    except Exception as e:  # not JSON, not a notebook, ...: say so, the batch goes on
        return {"scores": {}, "possible": None, "errors": 0,
                "status": f"not a readable notebook ({type(e).__name__}: {e})"}
    work = Path(tempfile.mkdtemp(prefix="skiplib-grade-work-"))
    records: dict[int, list[dict]] = {}
    running = {"cell": None}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            interrupt_on_timeout=True, shutdown_kernel="immediate",
                            resources={"metadata": {"path": str(work)}})

    def started(**_):
        # Tell the parent which process group to kill should this process itself hang.
        pgid = getattr(getattr(client.km, "provisioner", None), "pgid", None)
        if pgid and os.environ.get("SKIPLIB_GRADE_KERNEL_PGID_FILE"):
            Path(os.environ["SKIPLIB_GRADE_KERNEL_PGID_FILE"]).write_text(str(pgid))

    def starting(cell, cell_index, **_):
        running["cell"] = cell_index

    async def executed(cell, cell_index, **_):
        msg_id = await ensure_async(client.kc.execute("", silent=True, store_history=False,
                                                      user_expressions={"records": _DRAIN}))
        records[cell_index] = _records(await client.async_wait_for_reply(msg_id))

    client.on_notebook_start, client.on_cell_execute, client.on_cell_executed = started, starting, executed
    env = kernel_env(profile, work / "checkpoints")

    def where() -> str:
        return "at start-up" if running["cell"] is None else f"in cell {running['cell'] + 1} of {len(nb.cells)}"

    status, timed_out = STATUS_OK, []

    async def run() -> None:
        task = asyncio.ensure_future(client.async_execute(env=env))
        done, _ = await asyncio.wait({task}, timeout=notebook_timeout)
        if not done:
            # nbclient turns the cancellation into DeadKernelError once it has killed the kernel
            # (shutdown_kernel="immediate"), so remember that it was the time limit.
            timed_out.append(where())
            task.cancel()
        await task

    try:
        asyncio.run(run())
    except (Exception, asyncio.CancelledError) as e:  # reported in the CSV: the batch goes on
        if isinstance(e, DeadKernelError):
            status = f"kernel died {where()} (a crash, os._exit or out of memory)"
        else:  # a kernel that would not start, a broken message, ...
            status = f"stopped {where()} ({type(e).__name__}: {e})"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if timed_out:
        status = f"timed out after {notebook_timeout} s, {timed_out[0]}"
    errors = sum(any(o.output_type == "error" for o in c.get("outputs", [])) for c in nb.cells if c.cell_type == "code")
    if feedback is not None:  # the learner's view: their outputs, nothing of the grader's
        Path(feedback).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(Path(feedback) / path.name))
    scores = _scores(nb, records)
    return {"scores": {k: list(v) for k, v in scores.items()}, "possible": sum(p for _, p in scores.values()),
            "errors": errors, "status": status}


def _child_command(path: Path, result: Path, *, timeout: int, notebook_timeout: int, profile: str,
                   feedback: str | Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "skiplib.tools.grading", str(path), "--result", str(result), "--timeout", str(timeout),
           "--notebook-timeout", str(notebook_timeout), "--profile", profile]
    return cmd + (["--feedback", str(feedback)] if feedback is not None else [])


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def grade_in_subprocess(path: Path, *, timeout: int = 120, notebook_timeout: int = 600, profile: str = "smoke",
                        feedback: str | Path | None = None, grace: float = CHILD_GRACE_S) -> dict:
    """:func:`grade_notebook` in a child process, killed with its kernel if it overruns; never raises."""
    with tempfile.TemporaryDirectory(prefix="skiplib-grade-") as tmp:
        result, pgid_file, log = Path(tmp) / "result.json", Path(tmp) / "kernel.pgid", Path(tmp) / "log.txt"
        cmd = _child_command(path, result, timeout=timeout, notebook_timeout=notebook_timeout, profile=profile,
                             feedback=feedback)
        env = {**os.environ, "SKIPLIB_GRADE_KERNEL_PGID_FILE": str(pgid_file)}
        with open(log, "wb") as out:
            child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                code = child.wait(notebook_timeout + grace)
            except subprocess.TimeoutExpired:
                _kill_group(child.pid)
                if pgid_file.is_file():  # the kernel runs in a process group of its own
                    _kill_group(int(pgid_file.read_text()))
                child.wait()
                return {"scores": {}, "possible": None, "errors": 0,
                        "status": f"timed out after {notebook_timeout} s; the grader had to be stopped"}
        if code == 0 and result.is_file():
            return json.loads(result.read_text())
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        return {"scores": {}, "possible": None, "errors": 0, "status": f"grader failed (exit code {code}): {tail}"}


def grade(folder: str | Path, out: str | Path, **kw) -> list[dict[str, str]]:
    """Grade every notebook under ``folder``, each in its own process; write a CSV with one row
    per notebook: the score of each exercise (passed/total checks, blank if the notebook has no
    such exercise), the total (points-weighted sum), the possible total, the number of cells that
    raised, and the status ("completed", or what stopped the notebook)."""
    results = {}
    for path in notebooks.notebook_paths([folder]):
        print(f"grading {path} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        results[str(path.relative_to(folder))] = r = grade_in_subprocess(path, **kw)
        print(f"  {r['status']} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    columns: list[str] = []
    for r in results.values():
        columns += [c for c in r["scores"] if c not in columns]
    rows = []
    for name, r in results.items():
        scores = r["scores"]
        row = {"notebook": name, **{c: _fmt(scores[c][0]) if c in scores else "" for c in columns}}
        row["total"] = _fmt(sum(s * p for s, p in scores.values()))
        row["possible"] = _fmt(r["possible"]) if r["possible"] is not None else ""  # blank: not known
        row["cell_errors"] = str(r["errors"])
        row["status"] = r["status"]
        rows.append(row)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["notebook", *columns, "total", "possible", "cell_errors", "status"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skiplib.tools.grading",
                                     description="grade one notebook (run by `python -m skiplib.tools.student grade`)")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--timeout", type=int, default=120)
    parser.add_argument("--notebook-timeout", type=int, default=600)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--feedback", type=Path)
    args = parser.parse_args(argv)
    result = grade_notebook(args.notebook, timeout=args.timeout, notebook_timeout=args.notebook_timeout,
                            profile=args.profile, feedback=args.feedback)
    args.result.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())

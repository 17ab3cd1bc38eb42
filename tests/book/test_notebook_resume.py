"""A Colab disconnect in the middle of a chapter's training loses at most one epoch.

Chapter 1 is run in a kernel that is killed (as a disconnect kills it) as soon as its training
cell has saved the first checkpoint; a fresh kernel then runs the chapter again with the same
checkpoint folder. The resumed chapter must load the finished run instead of training it, and
end with the same numbers as a run that was never interrupted.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import nbformat
import pytest

from _paths import ROOT

CHAPTER = ROOT / "book" / "01_degradation.ipynb"
TRAIN_CELL = "plain = ch.run("


def _client(nb, cwd):
    from nbclient import NotebookClient

    return NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})


def _run_until_training(env: dict, cwd: Path) -> nbformat.NotebookNode:
    """Run Chapter 1 to its first training cell and kill the kernel once a checkpoint exists."""
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.read(CHAPTER, as_version=4)
    client = _client(nb, cwd)
    checkpoints = Path(env["SKIPLIB_CHECKPOINTS"])
    with client.setup_kernel(env=env, cwd=str(cwd)):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if TRAIN_CELL not in cell.source:
                client.execute_cell(cell, index)
                continue

            def disconnect():
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline and not any(checkpoints.rglob("*.pt")):
                    time.sleep(0.05)
                os.kill(client.km.provisioner.process.pid, signal.SIGKILL)  # what a disconnect does

            killer = threading.Thread(target=disconnect)
            killer.start()
            with pytest.raises(DeadKernelError):
                client.execute_cell(cell, index)
            killer.join()
            return nb
    raise AssertionError(f"no cell containing {TRAIN_CELL!r} in {CHAPTER.name}")


def _training_output(nb) -> str:
    cell = next(c for c in nb.cells if c.cell_type == "code" and TRAIN_CELL in c.source)
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def _errors(text: str) -> list[str]:
    """The per-net error lines, without the seconds (a resumed run reports the killed kernel's)."""
    return [re.sub(r", \d+ s$", "", line) for line in text.splitlines() if "train error" in line]


@pytest.mark.slow
def test_chapter_1_resumes_after_a_disconnect(tmp_path):
    base = {**os.environ, "SKIPLIB_PROFILE": "smoke", "SKIPLIB_DATA": str(tmp_path / "data")}

    interrupted = {**base, "SKIPLIB_CHECKPOINTS": str(tmp_path / "interrupted")}
    _run_until_training(interrupted, tmp_path)
    saved = sorted(p.name for p in Path(interrupted["SKIPLIB_CHECKPOINTS"]).rglob("*.pt"))
    assert saved and "plain56.pt" not in saved, saved  # killed after the first net, before the second

    resumed_nb = nbformat.read(CHAPTER, as_version=4)
    _client(resumed_nb, tmp_path).execute(env=interrupted, cwd=str(tmp_path))
    resumed = _training_output(resumed_nb)
    assert re.search(r"finished run loaded from .*plain20\.pt after epoch 1/1", resumed), resumed

    fresh_env = {**base, "SKIPLIB_CHECKPOINTS": str(tmp_path / "fresh")}
    fresh_nb = nbformat.read(CHAPTER, as_version=4)
    _client(fresh_nb, tmp_path).execute(env=fresh_env, cwd=str(tmp_path))
    fresh = _training_output(fresh_nb)
    assert "loaded from" not in fresh
    assert _errors(resumed) == _errors(fresh) and len(_errors(fresh)) == 2, (resumed, fresh)

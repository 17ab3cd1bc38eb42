"""The whole book builds with warnings as errors (the check behind `make book`).

The build runs on a copy of the book sources in a temporary folder, in the ``smoke``
profile, so it is quick. It must never run in place: Jupyter Book's execution cache
(``_build/.jupyter_cache``) is keyed on the notebooks' code, not on ``SKIPLIB_PROFILE``, so
a smoke-profile build in the repository would leave tiny smoke-size outputs there that a
later ``make book`` would silently reuse for the website.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _paths import ROOT

SOURCES = ["_config.yml", "_toc.yml", "references.bib", "book"]
# Copied too when present: notebooks may read reference results relative to the book.
OPTIONAL_SOURCES = ["results"]


def _jupyter_book() -> str | None:
    beside = Path(sys.executable).with_name("jupyter-book")  # the same venv as pytest
    return str(beside) if beside.exists() else shutil.which("jupyter-book")


@pytest.mark.book
@pytest.mark.slow
def test_book_builds_without_warnings(tmp_path: Path):
    exe = _jupyter_book()
    if exe is None:
        pytest.skip("jupyter-book is not installed (pip install -e '.[book]')")
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("_build", ".ipynb_checkpoints", "__pycache__")
    for name in SOURCES + [n for n in OPTIONAL_SOURCES if (ROOT / n).exists()]:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)

    # its own checkpoint folder: it must train, not resume the runs nbval's kernels just finished
    env = {**os.environ, "SKIPLIB_PROFILE": "smoke", "SKIPLIB_CHECKPOINTS": str(tmp_path / "checkpoints")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        [exe, "build", str(src), "-n", "-W", "--keep-going"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"jupyter-book build failed ({proc.returncode}):\n{log[-8000:]}"
    html = src / "_build" / "html"
    for page in ("index.html", "book/intro.html", "book/01_degradation.html", "book/references.html"):
        assert (html / page).is_file(), f"{page} was not built:\n{log[-4000:]}"
    chapter = (html / "book" / "01_degradation.html").read_text(encoding="utf-8")
    assert "colab.research.google.com" in chapter, "the chapter has no Open-in-Colab button"

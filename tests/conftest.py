"""Shared test set-up.

The whole test session runs in the ``smoke`` profile unless the caller chose another one:
unit tests stay small, and the Jupyter kernels that nbval starts for ``book/*.ipynb``
inherit this process's environment, so the notebooks run at smoke size too (each within
the 60 s budget on 2 CPU cores). ``make test`` sets it explicitly as well.

The chapters checkpoint their trainings (so a Colab restart resumes them). In the tests
they checkpoint into a folder of this session's own, removed at its end: a notebook run
must train, never resume a run that an earlier session (or the user) finished.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("SKIPLIB_PROFILE", "smoke")
_CHECKPOINTS = tempfile.mkdtemp(prefix="skiplib-test-checkpoints-")
os.environ["SKIPLIB_CHECKPOINTS"] = _CHECKPOINTS
atexit.register(shutil.rmtree, _CHECKPOINTS, ignore_errors=True)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where _config.yml, _toc.yml and book/ live)."""
    return REPO_ROOT

"""Shared test set-up.

The whole test session runs in the ``smoke`` profile unless the caller chose another one:
unit tests stay small, and the Jupyter kernels that nbval starts for ``book/*.ipynb``
inherit this process's environment, so the notebooks run at smoke size too (each within
the 60 s budget on 2 CPU cores). ``make test`` sets it explicitly as well.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("SKIPLIB_PROFILE", "smoke")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where _config.yml, _toc.yml and book/ live)."""
    return REPO_ROOT

"""Shared test set-up.

The whole test session runs in the ``smoke`` profile unless the caller chose another one:
unit tests stay small, and the Jupyter kernels that nbval starts for ``book/*.ipynb``
inherit this process's environment, so the notebooks run at smoke size too (each within
the 60 s budget on 2 CPU cores). ``make test`` sets it explicitly as well.

The chapters checkpoint their trainings (so a Colab restart resumes them). In the tests
they checkpoint into a folder of this session's own, removed at its end: a notebook run
must train, never resume a run that an earlier session (or the user) finished.

Data likewise: ``SKIPLIB_DATA`` points at a folder of this session's own, so no test (nor
notebook, nor the experiments CLI) writes into the user's data folder (``make test`` exports
``SKIPLIB_DATA=$HOME/.cache/skiplib``). Where that folder holds CIFAR-10, the session folder
links to it, read only: the loader never writes into ``cifar10/`` or ``cifar-10-batches-py/``.
The user's decoded tensor caches are neither read nor written: the session decodes once into
its own folder (about 15 s for the JPEG copy on 2 cores).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from _paths import ROOT

os.environ.setdefault("SKIPLIB_PROFILE", "smoke")
_CHECKPOINTS = tempfile.mkdtemp(prefix="skiplib-test-checkpoints-")
os.environ["SKIPLIB_CHECKPOINTS"] = _CHECKPOINTS
atexit.register(shutil.rmtree, _CHECKPOINTS, ignore_errors=True)


# Where skiplib would look (an empty SKIPLIB_DATA means unset, as in skiplib.data.data_dir).
REAL_DATA = Path(os.environ.get("SKIPLIB_DATA") or Path.home() / ".cache" / "skiplib").expanduser()


def _session_data_folder(real: Path) -> str:
    session = Path(tempfile.mkdtemp(prefix="skiplib-test-data-"))
    for name in ("cifar10", "cifar-10-batches-py"):
        if (real / name).is_dir():
            (session / name).symlink_to((real / name).resolve(), target_is_directory=True)
    return str(session)


_DATA = _session_data_folder(REAL_DATA)
os.environ["SKIPLIB_DATA"] = _DATA
atexit.register(shutil.rmtree, _DATA, ignore_errors=True)  # removes the links, not what they point to


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where _config.yml, _toc.yml and book/ live): ``_paths.ROOT``, for tests
    that prefer a fixture; module-level code imports ``ROOT`` from ``_paths`` directly."""
    return ROOT


@pytest.fixture
def no_figures_left():
    """Fail a test that leaves a matplotlib figure open (a leak in a notebook full of figures)."""
    import matplotlib.pyplot as plt  # here: most tests never load matplotlib

    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before, "a test left a figure open"

"""Where the tests find the repository: defined once, imported by the test modules.

A constant and not only a fixture, because several tests need it at import time (the
``parametrize`` lists of notebooks, module constants such as a chapter's path), where
fixtures cannot reach. ``tests/`` is on ``sys.path`` under pytest (rootdir-relative
``conftest.py``), so ``from _paths import ROOT`` works in every test module.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

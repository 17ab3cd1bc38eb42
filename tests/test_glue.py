"""skiplib.glue: myst-nb's glue where the book is built, and still the figure where it is not (Colab)."""

import matplotlib

matplotlib.use("Agg")

import IPython.display
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from IPython.display import Markdown

from skiplib import glue as glue_module
from skiplib.glue import glue


@pytest.fixture
def shown(monkeypatch):
    """Pretend myst-nb is missing (as on Colab) and record what glue displays."""
    seen = []
    monkeypatch.setattr(glue_module, "have_myst_nb", lambda: False)
    monkeypatch.setattr(IPython.display, "display", lambda value: seen.append(value))
    return seen


def test_uses_myst_nb_when_it_is_importable(monkeypatch):
    myst_nb = pytest.importorskip("myst_nb")
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    glue("answer", 42, display=False)
    assert calls == [("answer", 42, False)]


@pytest.mark.parametrize("value, expected", [(np.float64(43001454697.2), 43001454697.2), (np.int64(7), 7),
                                             (torch.tensor(1.5), 1.5), (np.float32(0.25), 0.25)])
def test_scalars_reach_myst_nb_as_python_numbers(monkeypatch, value, expected):
    # numpy 2 prints np.float64(1.5), which {glue:text}`name:.2f` cannot format: the book build warned
    myst_nb = pytest.importorskip("myst_nb")
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append(value))
    glue("x", value, display=False)
    assert calls == [expected] and type(calls[0]) in (int, float)


@pytest.mark.parametrize("value", [3, 0.25, "plain20", np.float64(0.5), torch.tensor(1.5), None])
def test_numbers_for_the_prose_are_not_printed_without_myst_nb(shown, value):
    glue("n", value, display=False)
    assert shown == []


def test_display_true_always_shows(shown):
    glue("n", 7)
    assert shown == [7]


def test_content_glued_for_the_website_is_shown_without_myst_nb(shown):
    fig, ax = plt.subplots()
    md = Markdown("**verdict**")
    glue("fig", fig, display=False)
    glue("verdict", md, display=False)
    plt.close(fig)
    assert shown == [fig, md]


@pytest.mark.parametrize("name", ["", None, 3])
def test_rejects_a_bad_name(name):
    with pytest.raises(ValueError, match="non-empty string name"):
        glue(name, 1)

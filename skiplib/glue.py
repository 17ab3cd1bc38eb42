"""``glue``: hand a value computed in a notebook to the website's prose, wherever the notebook runs.

Every chapter quotes its numbers from the run ("plain-56 ends at {glue:text}`plain_deep_train`")
and shows some figures through ``{glue:figure}`` captions. That is myst-nb's ``glue``, a
book-build tool: it is not installed on Colab, nor by ``pip install skiplib``. Chapters
therefore import ``glue`` from here (``from skiplib.glue import glue``), never from myst-nb:

* where myst-nb is importable (the book build, ``make test``), this *is* ``myst_nb.glue``;
* elsewhere (Colab, a plain Jupyter install) the value is still shown where the reader needs
  it: with ``display=True`` always, and with ``display=False`` when it is content rather than
  a number for the prose (a matplotlib figure, Markdown, HTML, a table): on the website such
  values appear through a ``{glue:figure}``/``{glue:md}`` directive that Colab does not
  render, so the notebook shows them itself. Plain numbers and strings glued with
  ``display=False`` only feed the website's prose and are not printed.
"""

from __future__ import annotations

import importlib.util
from typing import Any

__all__ = ["glue", "have_myst_nb"]


def have_myst_nb() -> bool:
    """True when myst-nb (the book builder's notebook layer) is importable."""
    return importlib.util.find_spec("myst_nb") is not None


def _is_content(value: Any) -> bool:
    """A figure, Markdown/HTML object or table, as opposed to a number or string for the prose."""
    if isinstance(value, (bool, int, float, complex, str, bytes)) or value is None:
        return False
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy / torch scalars
        return False
    # IPython display objects, matplotlib figures and pandas tables all know how to render themselves
    return any(hasattr(value, attr) for attr in ("_repr_markdown_", "_repr_html_", "_repr_png_", "savefig"))


def glue(name: str, value: Any, display: bool = True) -> None:
    """Record ``value`` under ``name`` for the book's ``{glue:…}`` roles; show it where that is not possible.

    Same signature as ``myst_nb.glue``. Used by every chapter (see the module docstring)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"glue needs a non-empty string name, got {name!r}")
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        # a numpy or torch scalar: numpy 2 writes np.float64(1.5) as its text, which the website's
        # {glue:text}`name:.2f` cannot format, so hand over the plain Python number
        value = value.item()
    if have_myst_nb():
        from myst_nb import glue as myst_glue

        myst_glue(name, value, display=display)
        return
    if display or _is_content(value):
        from IPython.display import display as ipy_display

        ipy_display(value)

"""The reference runs, installed as the package data of ``skiplib.reference``.

This folder stays at the top of the repository (``results/``, where ``python -m skiplib
<experiment> --out-dir results`` writes), but ``pyproject.toml`` maps it onto the subpackage
``skiplib.reference`` (``package-dir``) and ships its ``*.json`` and ``*.csv`` files as package
data. So a normal, non-editable install (``pip install "skiplib @ git+URL"`` on Colab) carries
the reference runs inside ``skiplib/reference/``, and
:func:`skiplib.results.load_result` finds them with ``importlib.resources``
whether skiplib is installed from a wheel or editable from this checkout.

This file exists only to make the folder a package; it has no code. Do not import it as
``results``: it is not packaged under that name.
"""

"""One module per chapter: its run sizes per profile (``config(profile)``) and the runs that its
notebook and the command line (``python -m skiplib <experiment>``) share, so that a live run in
the notebook and a reference run in ``results/`` differ only by profile.

A notebook imports its chapter once: ``from skiplib.chapters import ch05_densenets as ch``.
"""

"""skiplib: the small package behind the course *Skip connections: why deep networks train*.

One room per concept; imports flow one way, left to right (``tests/test_layout.py`` checks it)::

    profile, checks, glue -> data -> blocks -> models -> train, results -> analysis, plots, diagrams
        -> chapters, exercises -> cli                       (tools: book tooling, on top of all)

``data``: CIFAR-10 and the synthetic cell images. ``blocks`` and ``models``: every skip family.
``train``: the training loops and their checkpoints. ``results``: provenance and the committed
reference runs. ``analysis``: the measurements behind "why skips work". ``chapters``: one module per
chapter, its run sizes (``config(profile)``) and the runs its notebook and ``python -m skiplib``
share. ``exercises``: one grader module per chapter. ``tools``: the website, student notebooks,
grading, benchmarks and the GPU check; never imported by the course code.
"""

__version__ = "0.1.0"

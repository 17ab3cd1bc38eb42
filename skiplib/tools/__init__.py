"""Book tooling: never imported by the course code (``skiplib`` outside ``tools``).

``site``: the Sphinx extension that makes the website work offline, and a link checker.
``notebooks``: strip outputs, keep the Colab bootstrap cells in sync, the repository URL.
``student`` and ``grading``: student notebooks, and grading submissions in isolated kernels.
``bench``, ``workload``, ``gpucheck`` and ``gpureport``: ``python -m skiplib.tools bench|gpu-check``:
timings, FLOP and run-time estimates, and every chapter run on a lent GPU with its report.

Its extra dependencies (``nbformat``, ``nbclient``, ``pyyaml``) come with ``pip install -e ".[tools]"``.
"""

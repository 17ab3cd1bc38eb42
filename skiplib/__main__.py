"""``python -m skiplib …``: the experiments CLI (see :mod:`skiplib.experiments`)."""

from skiplib.experiments import main

if __name__ == "__main__":
    raise SystemExit(main())

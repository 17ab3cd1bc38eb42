"""``python -m skiplib …``: the experiments CLI (see :mod:`skiplib.cli`)."""

from skiplib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""Heavy runs and benchmarks as a CLI: ``python -m skiplib <command>``.

Commands:

* ``degradation [--profile gpu]``: Chapter 1's experiment; writes ``results/degradation-<profile>.json``
  with provenance (command, commit, device, data source, date, seconds).
* ``bench``: seconds per notebook in the ``cpu`` profile, and ``fit`` throughput against a
  bare PyTorch loop.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    from skiplib.experiments import bench, degradation

    parser = argparse.ArgumentParser(prog="python -m skiplib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("degradation", help="Chapter 1: plain vs residual nets across depths")
    p.add_argument("--profile", choices=["smoke", "cpu", "gpu"], default=None, help="run size (default: $SKIPLIB_PROFILE)")
    p.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    p.add_argument("--out-dir", type=Path, default=None, help="where to write the JSON (default: results/)")
    p.set_defaults(func=degradation.main)

    p = sub.add_parser("bench", help="notebook seconds (cpu profile) and fit() vs a bare loop")
    p.add_argument("--no-notebooks", action="store_true", help="skip timing the notebooks")
    p.add_argument("--notebooks", nargs="*", type=Path, default=None, help="notebooks to time (default: book/*.ipynb)")
    p.add_argument("--steps", type=int, default=60, help="training steps per throughput measurement")
    p.set_defaults(func=bench.main)

    args = parser.parse_args(argv)
    return args.func(args)
